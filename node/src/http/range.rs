//! The `Range: bytes=…` header, one range or several (RFC 9110 §14.1.2).

/// More ranges than this in one request are ignored: the whole file is sent.
pub const MAX_RANGES: usize = 16;
/// A multi-range answer carries at most this many bytes of the file, and no more than the
/// file has; a request for more gets the whole file (sent from the page cache, not built
/// in memory). A multipart body is built whole before it is sent, and a client that reads
/// it slowly keeps it: a connection holds at most this much.
pub const MAX_MULTIPART_BYTES: u64 = 1 << 20;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole file (also for bad syntax and too many ranges).
    Full,
    /// One inclusive byte range.
    Part { start: u64, end: u64 },
    /// Several inclusive byte ranges, in the order asked: a `multipart/byteranges` answer.
    Parts(Vec<(u64, u64)>),
    /// Syntactically valid but outside the file: 416.
    Unsatisfiable,
}

/// One range spec of a `bytes=` list.
enum Spec {
    Part(u64, u64),
    /// Valid, but starts past the end of the file.
    Outside,
    Invalid,
}

fn parse_one(spec: &str, size: u64) -> Spec {
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Spec::Invalid;
    };
    let (a, b) = (a.trim(), b.trim());
    let number = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Spec::Invalid,
        (true, false) => match number(b) {
            None => Spec::Invalid,
            Some(0) => Spec::Outside,
            Some(_) if size == 0 => Spec::Outside,
            Some(n) => Spec::Part(size.saturating_sub(n), size - 1),
        },
        (false, _) => {
            let Some(start) = number(a) else {
                return Spec::Invalid;
            };
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                number(b)
            };
            match end {
                None => Spec::Invalid,
                Some(end) if end < start => Spec::Invalid,
                Some(_) if start >= size => Spec::Outside,
                Some(end) => Spec::Part(start, end.min(size - 1)),
            }
        }
    }
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` and comma-separated lists of them.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(list) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    let specs: Vec<&str> = list.split(',').collect();
    if specs.len() > MAX_RANGES {
        return RangeRequest::Full;
    }
    let mut parts = Vec::with_capacity(specs.len());
    for spec in specs {
        match parse_one(spec, size) {
            Spec::Part(start, end) => parts.push((start, end)),
            Spec::Outside => {}
            // One bad spec makes the header unusable: it is ignored, as a whole.
            Spec::Invalid => return RangeRequest::Full,
        }
    }
    let total: u64 = parts.iter().map(|(s, e)| e - s + 1).sum();
    match parts.as_slice() {
        [] => RangeRequest::Unsatisfiable,
        [(start, end)] => RangeRequest::Part {
            start: *start,
            end: *end,
        },
        // Overlapping pieces adding up to more than the file are cheaper sent as the file.
        _ if total > MAX_MULTIPART_BYTES || total > size => RangeRequest::Full,
        _ => RangeRequest::Parts(parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_stay_small_and_never_exceed_the_file() {
        let mib = 1u64 << 20;
        // Sixteen copies of the whole of a 1 MiB file: the file, once.
        let copies = format!("bytes={}", ["0-1048575"; 16].join(","));
        assert_eq!(parse(Some(&copies), mib), RangeRequest::Full);
        // Two pieces of a large file adding up to more than the cap: the file.
        let large = "bytes=0-599999,1000000-1599999";
        assert_eq!(parse(Some(large), 10 * mib), RangeRequest::Full);
        // Small pieces, as a PDF reader asks: a multipart answer.
        assert_eq!(
            parse(Some("bytes=0-99,5000-5999"), 10 * mib),
            RangeRequest::Parts(vec![(0, 99), (5000, 5999)])
        );
    }

    #[test]
    fn forms() {
        assert_eq!(parse(None, 10), RangeRequest::Full);
        assert_eq!(
            parse(Some("bytes=0-3"), 10),
            RangeRequest::Part { start: 0, end: 3 }
        );
        assert_eq!(
            parse(Some("bytes=5-"), 10),
            RangeRequest::Part { start: 5, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-4"), 10),
            RangeRequest::Part { start: 6, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-40"), 10),
            RangeRequest::Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=3-100"), 10),
            RangeRequest::Part { start: 3, end: 9 }
        );
        assert_eq!(parse(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=x-1"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=5-2"), 10), RangeRequest::Full);
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse(Some("bytes=0-1, 4-5,-2"), 10),
            RangeRequest::Parts(vec![(0, 1), (4, 5), (8, 9)])
        );
        // Ranges past the end drop out; one left is a plain single range.
        assert_eq!(
            parse(Some("bytes=20-30,2-3"), 10),
            RangeRequest::Part { start: 2, end: 3 }
        );
        assert_eq!(
            parse(Some("bytes=20-30,40-"), 10),
            RangeRequest::Unsatisfiable
        );
        // One bad spec, too many ranges, or too many bytes: the whole file.
        assert_eq!(parse(Some("bytes=0-1,x"), 10), RangeRequest::Full);
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>();
        assert_eq!(
            parse(Some(&format!("bytes={}", many.join(","))), 100),
            RangeRequest::Full
        );
        let big = 64 << 20;
        assert_eq!(
            parse(Some("bytes=0-,0-"), big),
            RangeRequest::Full,
            "twice a 64 MiB file"
        );
    }
}
