//! File metadata: `<name>-m` beside the file, records `key\x02value` joined by
//! `\x01`, sorted by key byte-wise, no trailing separator (as FastDFS stores it).

use std::collections::BTreeMap;

/// Longest key FastDFS keeps; longer keys are cut.
pub const KEY_MAX: usize = 64;
/// Longest value FastDFS keeps; longer values are cut.
pub const VALUE_MAX: usize = 256;
/// Separates records.
pub const RECORD_SEP: u8 = 0x01;
/// Separates a key from its value.
pub const FIELD_SEP: u8 = 0x02;

/// Metadata records, kept sorted by key.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// Parses a metadata blob. A record without a key/value separator is skipped, and
/// only the first separator splits (a value may contain `\x02`), as FastDFS does.
pub fn parse(blob: &[u8]) -> Records {
    let mut out = Records::new();
    for row in blob.split(|&b| b == RECORD_SEP) {
        let Some(pos) = row.iter().position(|&b| b == FIELD_SEP) else {
            continue;
        };
        let (key, value) = (&row[..pos], &row[pos + 1..]);
        if key.is_empty() {
            continue;
        }
        out.insert(
            key[..key.len().min(KEY_MAX)].to_vec(),
            value[..value.len().min(VALUE_MAX)].to_vec(),
        );
    }
    out
}

/// Encodes records in FastDFS's stored form.
pub fn encode(records: &Records) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEP);
        }
        out.extend_from_slice(k);
        out.push(FIELD_SEP);
        out.extend_from_slice(v);
    }
    out
}

/// Builds a blob from string pairs (client side).
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let records: Records = pairs
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    encode(&records)
}

/// Turns a stored blob into string pairs (lossy for non-UTF-8 bytes).
pub fn to_pairs(blob: &[u8]) -> Vec<(String, String)> {
    parse(blob)
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_blob_round_trips() {
        // GET_METADATA reply recorded from FastDFS V6.16.1 (exchange 123).
        let blob = hex::decode(
            "617574686f72026d6501636f6c6f7202726564016865696768740237363801776964746802383030",
        )
        .expect("hex");
        let r = parse(&blob);
        assert_eq!(r.len(), 4);
        assert_eq!(r[&b"author".to_vec()], b"me");
        assert_eq!(encode(&r), blob);
    }

    #[test]
    fn sorted_cut_and_tolerant() {
        let long_key = "k".repeat(100);
        let long_value = "v".repeat(300);
        let blob = [
            b"zeta\x02last".as_slice(),
            b"\x01no-separator\x01",
            long_key.as_bytes(),
            b"\x02",
            long_value.as_bytes(),
            b"\x01alpha\x02a\x02b",
        ]
        .concat();
        let r = parse(&blob);
        let keys: Vec<&[u8]> = r.keys().map(Vec::as_slice).collect();
        assert_eq!(
            keys,
            [b"alpha".as_slice(), "k".repeat(64).as_bytes(), b"zeta"]
        );
        assert_eq!(r[&b"alpha".to_vec()], b"a\x02b");
        assert_eq!(r[&"k".repeat(64).into_bytes()].len(), VALUE_MAX);
        assert!(parse(b"").is_empty());
    }
}
