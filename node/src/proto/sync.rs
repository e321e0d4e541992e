//! Storage → storage replication bodies (every reply is header-only, except an
//! OK to SYNC_RENAME_FILE, which echoes the request body as FastDFS does).
//!
//! ```text
//! 16 CREATE / 18 UPDATE: | name_len u64 | file_size u64 | ts u32 | group[16] | name | content |
//!                        (no content when the header status is 17)
//! 17 DELETE:             | ts u32 | group[16] | name |
//! 25 APPEND / 35 MODIFY: | name_len u64 | offset u64 | length u64 | ts u32 | group[16] | name | content |
//! 37 TRUNCATE:           | name_len u64 | old_size u64 | new_size u64 | ts u32 | group[16] | name |
//! 19 LINK / 40 RENAME:   | len_a u64 | len_b u64 | ts u32 | group[16] | name_a | name_b |
//! 9 REPORT_SERVER_ID:    | storage_id[16] |
//! 26 FETCH_ONE_PATH_BINLOG (disk recovery):
//!   request:             | group[16] | store_path_index u8 |
//!   reply:               header pkg_len = 2^58 (unknown length), then
//!                        | "<ts> <op> <Mxx/HH/LL/name>[ <link target>]\n" … | text_len u64 |
//!                        and the server closes the connection.
//! ```
//! The group field of C senders may carry stale bytes after its NUL; readers cut there.

use super::ProtoError;
use super::fields::{GROUP_NAME_LEN, Reader, STORAGE_ID_LEN, put_fixed, put_u32, put_u64};

fn text(bytes: &[u8], what: &'static str) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::BadField {
        what,
        reason: "name is not UTF-8".into(),
    })
}

/// REPORT_SERVER_ID (9): a pushing peer names itself before its sync commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdReport {
    pub storage_id: String,
}

impl ServerIdReport {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STORAGE_ID_LEN);
        put_fixed(&mut out, self.storage_id.as_bytes(), STORAGE_ID_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "server id report");
        let storage_id = r.fixed(STORAGE_ID_LEN)?;
        r.finish()?;
        Ok(ServerIdReport { storage_id })
    }
}

/// Fixed part of 16/18 before the name.
pub const SYNC_FILE_HEAD_LEN: usize = 36;
/// Fixed part of 25/35/37 before the name.
pub const SYNC_RANGE_HEAD_LEN: usize = 44;

/// The fixed part of SYNC_CREATE_FILE / SYNC_UPDATE_FILE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFileHead {
    pub name_len: u64,
    pub file_size: u64,
    pub timestamp: u32,
    pub group: String,
}

impl SyncFileHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SYNC_FILE_HEAD_LEN);
        put_u64(&mut out, self.name_len);
        put_u64(&mut out, self.file_size);
        put_u32(&mut out, self.timestamp);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sync file");
        Ok(SyncFileHead {
            name_len: r.u64()?,
            file_size: r.u64()?,
            timestamp: r.u32()?,
            group: r.fixed(GROUP_NAME_LEN)?,
        })
    }
}

/// The fixed part of SYNC_APPEND_FILE / SYNC_MODIFY_FILE / SYNC_TRUNCATE_FILE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRangeHead {
    pub name_len: u64,
    /// Start offset (append, modify) or old size (truncate).
    pub a: u64,
    /// Length (append, modify) or new size (truncate).
    pub b: u64,
    pub timestamp: u32,
    pub group: String,
}

impl SyncRangeHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SYNC_RANGE_HEAD_LEN);
        put_u64(&mut out, self.name_len);
        put_u64(&mut out, self.a);
        put_u64(&mut out, self.b);
        put_u32(&mut out, self.timestamp);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sync range");
        Ok(SyncRangeHead {
            name_len: r.u64()?,
            a: r.u64()?,
            b: r.u64()?,
            timestamp: r.u32()?,
            group: r.fixed(GROUP_NAME_LEN)?,
        })
    }
}

/// SYNC_DELETE_FILE (17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDelete {
    pub timestamp: u32,
    pub group: String,
    pub name: String,
}

impl SyncDelete {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.name.len());
        put_u32(&mut out, self.timestamp);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(self.name.as_bytes());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sync delete");
        let timestamp = r.u32()?;
        let group = r.fixed(GROUP_NAME_LEN)?;
        Ok(SyncDelete {
            timestamp,
            group,
            name: text(r.rest(), "sync delete")?,
        })
    }
}

/// SYNC_CREATE_LINK (19) and SYNC_RENAME_FILE (40): two names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPair {
    pub timestamp: u32,
    pub group: String,
    /// Link name (19) or new name (40).
    pub first: String,
    /// Link target (19) or old name (40).
    pub second: String,
}

impl SyncPair {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + self.first.len() + self.second.len());
        put_u64(&mut out, self.first.len() as u64);
        put_u64(&mut out, self.second.len() as u64);
        put_u32(&mut out, self.timestamp);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(self.first.as_bytes());
        out.extend_from_slice(self.second.as_bytes());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sync name pair");
        let a = r.u64()?;
        let b = r.u64()?;
        let timestamp = r.u32()?;
        let group = r.fixed(GROUP_NAME_LEN)?;
        if Some(r.remaining() as u64) != a.checked_add(b) {
            return Err(ProtoError::BadLength {
                what: "sync name pair",
                len: body.len(),
            });
        }
        let first = text(r.take(a as usize)?, "sync name pair")?;
        let second = text(r.rest(), "sync name pair")?;
        Ok(SyncPair {
            timestamp,
            group,
            first,
            second,
        })
    }
}

/// Body length of FETCH_ONE_PATH_BINLOG (26).
pub const FETCH_BINLOG_LEN: usize = GROUP_NAME_LEN + 1;
/// `pkg_len` a FETCH_ONE_PATH_BINLOG reply announces: the length is not known in
/// advance, the server streams until it closes (FastDFS's `INFINITE_FILE_SIZE`).
pub const STREAMED_BODY_LEN: u64 = 1 << 58;

/// FETCH_ONE_PATH_BINLOG (26): one store path's slice of a peer's binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchBinlog {
    pub group: String,
    pub store_path_index: u8,
}

impl FetchBinlog {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FETCH_BINLOG_LEN);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.push(self.store_path_index);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.len() != FETCH_BINLOG_LEN {
            return Err(ProtoError::BadLength {
                what: "fetch one path binlog",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body, "fetch one path binlog");
        Ok(FetchBinlog {
            group: r.fixed(GROUP_NAME_LEN)?,
            store_path_index: r.u8()?,
        })
    }
}

/// Checks the trailer of a whole FETCH_ONE_PATH_BINLOG reply (everything read
/// until the server closed) and returns the binlog text before it.
pub fn binlog_reply_text(body: &[u8]) -> Result<&[u8], ProtoError> {
    let Some(split) = body.len().checked_sub(8) else {
        return Err(ProtoError::Truncated {
            what: "binlog reply",
            need: 8,
            have: body.len(),
        });
    };
    let (text, trailer) = body.split_at(split);
    let mut count = [0u8; 8];
    count.copy_from_slice(trailer);
    let count = u64::from_be_bytes(count);
    if count != text.len() as u64 {
        return Err(ProtoError::BadField {
            what: "binlog reply",
            reason: format!("trailer counts {count} bytes, {} were sent", text.len()),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_binlog_request_and_reply_trailer() {
        let req = FetchBinlog {
            group: "group2".into(),
            store_path_index: 0,
        };
        // The request recorded from a V6.16.1 probe (exchange #426).
        assert_eq!(
            hex::encode(req.encode()),
            "67726f7570320000000000000000000000"
        );
        assert_eq!(FetchBinlog::decode(&req.encode()).ok(), Some(req));
        assert!(FetchBinlog::decode(&[0u8; 16]).is_err());
        assert!(FetchBinlog::decode(&[0u8; 18]).is_err());
        let mut body = b"1 C M00/00/00/a\n".to_vec();
        body.extend_from_slice(&16u64.to_be_bytes());
        assert_eq!(
            binlog_reply_text(&body).ok(),
            Some(&b"1 C M00/00/00/a\n"[..])
        );
        body.pop();
        assert!(binlog_reply_text(&body).is_err());
        assert_eq!(binlog_reply_text(&0u64.to_be_bytes()).ok(), Some(&b""[..]));
    }
}
