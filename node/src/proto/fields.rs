//! Field helpers shared by all message families: fixed-width NUL-padded text,
//! big-endian integers, and a bounds-checked reader that never panics.

use super::ProtoError;

/// Width of the group name field in requests and client-facing replies.
pub const GROUP_NAME_LEN: usize = 16;
/// Longest storage id (16-byte field, NUL-terminated in C).
pub const STORAGE_ID_LEN: usize = 16;
/// Full IP buffer size in inter-server bodies and the storage brief (V6.11+).
pub const IP_BUFF_LEN: usize = 46;
/// Version text in JOIN and LIST_STORAGE.
pub const VERSION_LEN: usize = 8;

/// Width of IP fields in client-facing tracker replies (`response_ip_addr_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
pub enum IpWidth {
    /// 15 bytes: IPv4 mode, what every pre-V6.11 client expects.
    #[default]
    #[serde(rename = "15")]
    V4,
    /// 45 bytes: IPv6 mode (V6.11–V6.14 always, later when configured).
    #[serde(rename = "45")]
    V6,
}

impl IpWidth {
    /// Bytes of the IP field in tracker query replies.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            IpWidth::V4 => 15,
            IpWidth::V6 => 45,
        }
    }

    /// Bytes of the IP field in QUERY_FILE_INFO and the V6.15 storage-stat record.
    pub fn full_len(self) -> usize {
        self.len() + 1
    }

    pub fn from_len(len: usize) -> Option<Self> {
        match len {
            15 => Some(IpWidth::V4),
            45 => Some(IpWidth::V6),
            _ => None,
        }
    }
}

/// Appends `text` NUL-padded (or cut) to exactly `width` bytes.
pub fn put_fixed(out: &mut Vec<u8>, text: &[u8], width: usize) {
    let n = text.len().min(width);
    out.extend_from_slice(&text[..n]);
    out.resize(out.len() + (width - n), 0);
}

/// Text of a fixed-width field: everything before the first NUL.
pub fn fixed_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// A cursor over a body that turns every short read into a `ProtoError`.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(ProtoError::Truncated {
                what: self.what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, ProtoError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    pub fn u64(&mut self) -> Result<u64, ProtoError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    pub fn i64(&mut self) -> Result<i64, ProtoError> {
        Ok(self.u64()? as i64)
    }

    pub fn fixed(&mut self, width: usize) -> Result<String, ProtoError> {
        Ok(fixed_text(self.take(width)?))
    }

    /// Fails unless the whole body was consumed: FastDFS bodies have exact lengths.
    pub fn finish(self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::TrailingBytes {
                what: self.what,
                extra: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_fields_are_zero_filled_and_cut() {
        let mut out = Vec::new();
        put_fixed(&mut out, b"group1", 16);
        assert_eq!(out, b"group1\0\0\0\0\0\0\0\0\0\0");
        out.clear();
        put_fixed(&mut out, b"0123456789abcdefXYZ", 16);
        assert_eq!(out, b"0123456789abcdef");
        assert_eq!(fixed_text(b"ab\0stale"), "ab");
    }

    #[test]
    fn reader_reports_short_bodies() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert!(r.u64().is_err());
        assert_eq!(r.u8().ok(), Some(1));
        assert!(r.finish().is_err());
    }
}
