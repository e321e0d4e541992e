//! Client → storage bodies. DELETE (12), GET_METADATA (15) and QUERY_FILE_INFO (22)
//! requests are a [`FileRequest`](super::query::FileRequest).
//!
//! ```text
//! UPLOAD (11/23):   | store_path_index u8 | file_size u64 | ext[6] | content… |
//! upload replies:   | group[16] | remote filename (no NUL) |           (11/21/23/38)
//! DOWNLOAD (14):    | offset u64 | length u64 (0 = to end) | group[16] | remote filename |
//!   reply:          raw file bytes, pkg_len = their count
//! SLAVE (21):       | master_len u64 | file_size u64 | prefix[16] | ext[6] | master | content… |
//! APPEND (24):      | name_len u64 | size u64 | name | content… |
//! MODIFY (34):      | name_len u64 | offset u64 | size u64 | name | content… |
//! TRUNCATE (36):    | name_len u64 | new_size u64 | name |
//! REGENERATE (38):  | name |
//! SET_METADATA (13):| name_len u64 | meta_len u64 | op 'O'/'M' | group[16] | name | meta |
//! FILE_INFO reply:  | size u64 | mtime u64 | crc32 (sign-extended) u64 | source ip[16|46] |
//! ```

use super::ProtoError;
use super::fields::{GROUP_NAME_LEN, Reader, fixed_text, put_fixed, put_u64};

/// Bytes of the upload body before the content.
pub const UPLOAD_HEAD_LEN: usize = 15;
/// Width of the ext field.
pub const EXT_LEN: usize = 6;
/// Store path index meaning "let the storage choose".
pub const ANY_STORE_PATH: u8 = 0xFF;

/// The fixed part of an UPLOAD_FILE / UPLOAD_APPENDER_FILE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadHead {
    pub store_path_index: u8,
    pub file_size: u64,
    /// Extension without the dot; may be empty.
    pub ext: String,
}

impl UploadHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(UPLOAD_HEAD_LEN);
        out.push(self.store_path_index);
        put_u64(&mut out, self.file_size);
        put_fixed(&mut out, self.ext.as_bytes(), EXT_LEN);
        out
    }

    /// Decodes the first 15 bytes of an upload body (the content follows).
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "upload");
        let store_path_index = r.u8()?;
        let file_size = r.u64()?;
        let ext = fixed_text(r.take(EXT_LEN)?);
        Ok(UploadHead {
            store_path_index,
            file_size,
            ext,
        })
    }
}

/// Reply to uploads: the group and the new remote filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadResponse {
    pub group: String,
    pub remote_filename: String,
}

impl UploadResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + self.remote_filename.len());
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(self.remote_filename.as_bytes());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.len() <= GROUP_NAME_LEN || body.len() >= GROUP_NAME_LEN + 128 {
            return Err(ProtoError::BadLength {
                what: "upload reply",
                len: body.len(),
            });
        }
        let group = fixed_text(&body[..GROUP_NAME_LEN]);
        let remote_filename = String::from_utf8(body[GROUP_NAME_LEN..].to_vec()).map_err(|_| {
            ProtoError::BadField {
                what: "upload reply",
                reason: "file name is not UTF-8".into(),
            }
        })?;
        Ok(UploadResponse {
            group,
            remote_filename,
        })
    }
}

/// Body of DOWNLOAD_FILE (14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRequest {
    pub offset: u64,
    /// 0 means "to the end of the file".
    pub length: u64,
    pub group: String,
    pub remote_filename: String,
}

impl DownloadRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.remote_filename.len());
        put_u64(&mut out, self.offset);
        put_u64(&mut out, self.length);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(self.remote_filename.as_bytes());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "download");
        let offset = r.u64()?;
        let length = r.u64()?;
        let group = r.fixed(GROUP_NAME_LEN)?;
        let remote_filename =
            String::from_utf8(r.rest().to_vec()).map_err(|_| ProtoError::BadField {
                what: "download",
                reason: "file name is not UTF-8".into(),
            })?;
        Ok(DownloadRequest {
            offset,
            length,
            group,
            remote_filename,
        })
    }
}

/// Fixed part of an UPLOAD_SLAVE_FILE body, before the master name.
pub const SLAVE_HEAD_LEN: usize = 38;
/// Width of the slave prefix field.
pub const PREFIX_LEN: usize = 16;

/// The fixed part of UPLOAD_SLAVE_FILE (21); the master name and content follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveHead {
    pub master_len: u64,
    pub file_size: u64,
    pub prefix: String,
    pub ext: String,
}

impl SlaveHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SLAVE_HEAD_LEN);
        put_u64(&mut out, self.master_len);
        put_u64(&mut out, self.file_size);
        put_fixed(&mut out, self.prefix.as_bytes(), PREFIX_LEN);
        put_fixed(&mut out, self.ext.as_bytes(), EXT_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "slave upload");
        Ok(SlaveHead {
            master_len: r.u64()?,
            file_size: r.u64()?,
            prefix: fixed_text(r.take(PREFIX_LEN)?),
            ext: fixed_text(r.take(EXT_LEN)?),
        })
    }
}

/// The fixed part of APPEND_FILE (24) and MODIFY_FILE (34); the name and content follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteHead {
    pub name_len: u64,
    /// Offset for MODIFY; `None` for APPEND.
    pub offset: Option<u64>,
    pub size: u64,
}

impl WriteHead {
    pub fn len(modify: bool) -> usize {
        if modify { 24 } else { 16 }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        put_u64(&mut out, self.name_len);
        if let Some(off) = self.offset {
            put_u64(&mut out, off);
        }
        put_u64(&mut out, self.size);
        out
    }

    pub fn decode(body: &[u8], modify: bool) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, if modify { "modify" } else { "append" });
        let name_len = r.u64()?;
        let offset = if modify { Some(r.u64()?) } else { None };
        Ok(WriteHead {
            name_len,
            offset,
            size: r.u64()?,
        })
    }
}

/// TRUNCATE_FILE (36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateRequest {
    pub new_size: u64,
    pub remote_filename: String,
}

impl TruncateRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.remote_filename.len());
        put_u64(&mut out, self.remote_filename.len() as u64);
        put_u64(&mut out, self.new_size);
        out.extend_from_slice(self.remote_filename.as_bytes());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "truncate");
        let name_len = r.u64()?;
        let new_size = r.u64()?;
        if name_len != r.remaining() as u64 {
            return Err(ProtoError::BadLength {
                what: "truncate",
                len: body.len(),
            });
        }
        Ok(TruncateRequest {
            new_size,
            remote_filename: utf8(r.rest(), "truncate")?,
        })
    }
}

/// How SET_METADATA combines the new records with the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaOp {
    /// 'O': replace everything (an empty list deletes the metadata).
    Overwrite,
    /// 'M': union, new values winning.
    Merge,
}

/// SET_METADATA (13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMetadataRequest {
    pub op: MetaOp,
    pub group: String,
    pub remote_filename: String,
    /// Records `key\x02value` joined by `\x01`.
    pub meta: Vec<u8>,
}

impl SetMetadataRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.remote_filename.len() + self.meta.len());
        put_u64(&mut out, self.remote_filename.len() as u64);
        put_u64(&mut out, self.meta.len() as u64);
        out.push(match self.op {
            MetaOp::Overwrite => b'O',
            MetaOp::Merge => b'M',
        });
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(self.remote_filename.as_bytes());
        out.extend_from_slice(&self.meta);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "set metadata");
        let name_len = r.u64()?;
        let meta_len = r.u64()?;
        let op = match r.u8()? {
            b'O' => MetaOp::Overwrite,
            b'M' => MetaOp::Merge,
            other => {
                return Err(ProtoError::BadField {
                    what: "set metadata",
                    reason: format!("op flag {other:#04x}"),
                });
            }
        };
        let group = r.fixed(GROUP_NAME_LEN)?;
        if Some(r.remaining() as u64) != name_len.checked_add(meta_len)
            || name_len == 0
            || name_len > 127
        {
            return Err(ProtoError::BadLength {
                what: "set metadata",
                len: body.len(),
            });
        }
        let remote_filename = utf8(r.take(name_len as usize)?, "set metadata")?;
        Ok(SetMetadataRequest {
            op,
            group,
            remote_filename,
            meta: r.rest().to_vec(),
        })
    }
}

/// Reply to QUERY_FILE_INFO (22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub file_size: u64,
    /// The file's mtime.
    pub create_timestamp: u64,
    pub crc32: u32,
    pub source_ip: String,
}

impl FileInfo {
    /// Encodes with a 16-byte (IPv4 profile) or 46-byte IP field.
    pub fn encode(&self, ip_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + ip_len);
        put_u64(&mut out, self.file_size);
        put_u64(&mut out, self.create_timestamp);
        // FastDFS sign-extends the CRC into its 8-byte field.
        put_u64(&mut out, i64::from(self.crc32 as i32) as u64);
        put_fixed(&mut out, self.source_ip.as_bytes(), ip_len);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.len() != 40 && body.len() != 70 {
            return Err(ProtoError::BadLength {
                what: "file info",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body, "file info");
        Ok(FileInfo {
            file_size: r.u64()?,
            create_timestamp: r.u64()?,
            crc32: r.u64()? as u32,
            source_ip: fixed_text(r.rest()),
        })
    }
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::BadField {
        what,
        reason: "file name is not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_head_round_trip() {
        let h = UploadHead {
            store_path_index: ANY_STORE_PATH,
            file_size: 100,
            ext: "txt".into(),
        };
        let bytes = h.encode();
        assert_eq!(hex::encode(&bytes), "ff0000000000000064747874000000");
        assert_eq!(UploadHead::decode(&bytes).ok(), Some(h));
    }
}
