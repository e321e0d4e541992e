//! Client → storage bodies implemented so far: UPLOAD_FILE (11), DOWNLOAD_FILE (14)
//! and DELETE_FILE (12, a [`FileRequest`](super::query::FileRequest)).
//!
//! ```text
//! UPLOAD request:   | store_path_index u8 | file_size u64 | ext[6] | content… |
//! UPLOAD reply:     | group[16] | remote filename (no NUL) |
//! DOWNLOAD request: | offset u64 | length u64 (0 = to end) | group[16] | remote filename |
//! DOWNLOAD reply:   raw file bytes, pkg_len = their count
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
