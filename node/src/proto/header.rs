//! The 10-byte packet header that precedes every request and response.
//!
//! ```text
//!  0                               8       9      10
//! +-------------------------------+-------+-------+
//! | pkg_len: i64 big-endian       |  cmd  | status|
//! +-------------------------------+-------+-------+
//! ```
//!
//! `pkg_len` counts the body only. Responses always carry `cmd = 100`.

use super::{Command, ProtoError, Status};

/// Length of the header on the wire.
pub const HEADER_LEN: usize = 10;

/// A decoded packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Body length in bytes (never negative once decoded).
    pub body_len: u64,
    pub cmd: Command,
    /// Status for responses; flags for a few requests (QUERY_FILE_INFO, SYNC_CREATE).
    pub status: u8,
}

impl Header {
    pub fn request(cmd: Command, body_len: u64) -> Self {
        Header {
            body_len,
            cmd,
            status: 0,
        }
    }

    pub fn response(status: Status, body_len: u64) -> Self {
        Header {
            body_len,
            cmd: Command::Resp,
            status: status.into(),
        }
    }

    pub fn status(&self) -> Status {
        Status::from(self.status)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&self.body_len.to_be_bytes());
        out[8] = self.cmd.into();
        out[9] = self.status;
        out
    }

    /// Decodes a header, refusing negative lengths and bodies above `max_body`.
    ///
    /// The cap is checked here, before anything is allocated for the body, so a
    /// peer that announces 2^62 bytes costs nothing.
    pub fn decode(bytes: &[u8; HEADER_LEN], max_body: u64) -> Result<Self, ProtoError> {
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[..8]);
        let raw = i64::from_be_bytes(len);
        let cmd = Command::from(bytes[8]);
        if raw < 0 {
            return Err(ProtoError::NegativeLength { cmd, len: raw });
        }
        let body_len = raw as u64;
        if body_len > max_body {
            return Err(ProtoError::BodyTooLarge {
                cmd,
                len: body_len,
                max: max_body,
            });
        }
        Ok(Header {
            body_len,
            cmd,
            status: bytes[9],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header::request(Command::UploadFile, 115);
        let bytes = h.encode();
        assert_eq!(hex::encode(bytes), "00000000000000730b00");
        assert_eq!(Header::decode(&bytes, 1 << 20).ok(), Some(h));
    }

    #[test]
    fn refuses_lies() {
        let mut huge = Header::request(Command::UploadFile, 1 << 62).encode();
        assert!(matches!(
            Header::decode(&huge, 1 << 40),
            Err(ProtoError::BodyTooLarge { .. })
        ));
        huge[0] = 0xff;
        assert!(matches!(
            Header::decode(&huge, u64::MAX),
            Err(ProtoError::NegativeLength { .. })
        ));
    }
}
