//! Client ↔ tracker service queries (101–107): where to upload, where to read.
//!
//! ```text
//! 101/106 request: empty          104/107 request: group[16]
//! 102/103/105 request: group[16] + remote filename (no NUL)
//!
//! 101/104 reply (40 or 70 bytes):
//! +-----------+---------+----------+-------------+
//! | group[16] | ip[W]   | port u64 | path_idx u8 |
//! +-----------+---------+----------+-------------+
//! 106/107 reply: group[16] + N × (ip[W] + port u64) + path_idx u8
//! 102/103 reply (39 or 69 bytes): group[16] + ip[W] + port u64
//! 105 reply: V6.16: group[16] + N × (ip[W] + port u64)
//!            legacy: group[16] + ip[W] + port u64 + (N−1) × ip[W]
//! ```
//! W is 15 (IPv4 profile) or 45 (IPv6 profile).

use super::ProtoError;
use super::fields::{GROUP_NAME_LEN, IpWidth, Reader, fixed_text, put_fixed, put_u64};

/// Longest remote filename a tracker query accepts (FastDFS's 128-byte buffer).
pub const MAX_REMOTE_FILENAME_LEN: usize = 127;
/// Shortest remote filename a tracker query accepts.
pub const MIN_REMOTE_FILENAME_LEN: usize = 22;

/// One storage address as carried in query replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAddr {
    pub ip: String,
    pub port: u64,
}

/// Body of 104/107/90/108: exactly one 16-byte group name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRequest {
    pub group: String,
}

impl GroupRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.len() != GROUP_NAME_LEN {
            return Err(ProtoError::BadLength {
                what: "group request",
                len: body.len(),
            });
        }
        Ok(GroupRequest {
            group: fixed_text(body),
        })
    }
}

/// Body of 102/103/105 (tracker) and 12/15/22 (storage): group + remote filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    pub group: String,
    pub remote_filename: String,
}

impl FileRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + self.remote_filename.len());
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(self.remote_filename.as_bytes());
        out
    }

    /// Decodes with the tracker's length rule: 38 ≤ len < 144.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let name_len = body.len().saturating_sub(GROUP_NAME_LEN);
        if body.len() < GROUP_NAME_LEN
            || !(MIN_REMOTE_FILENAME_LEN..=MAX_REMOTE_FILENAME_LEN).contains(&name_len)
        {
            return Err(ProtoError::BadLength {
                what: "file request",
                len: body.len(),
            });
        }
        Self::decode_any_len(body)
    }

    /// Decodes without the tracker's length window (storages check names themselves).
    pub fn decode_any_len(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "file request");
        let group = r.fixed(GROUP_NAME_LEN)?;
        let name = r.rest();
        let remote_filename =
            String::from_utf8(name.to_vec()).map_err(|_| ProtoError::BadField {
                what: "file request",
                reason: "file name is not UTF-8".into(),
            })?;
        Ok(FileRequest {
            group,
            remote_filename,
        })
    }
}

/// Reply to 101/104: one storage and store path for an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTarget {
    pub group: String,
    pub addr: StorageAddr,
    /// Store path index the client echoes back in the upload (0xFF = storage chooses).
    pub store_path_index: u8,
}

impl StoreTarget {
    pub fn encode(&self, width: IpWidth) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + width.len() + 9);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        put_fixed(&mut out, self.addr.ip.as_bytes(), width.len());
        put_u64(&mut out, self.addr.port);
        out.push(self.store_path_index);
        out
    }

    /// Accepts exactly 40 or 70 bytes, as the C client does.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let width = IpWidth::from_len(body.len().wrapping_sub(GROUP_NAME_LEN + 9)).ok_or(
            ProtoError::BadLength {
                what: "store query reply",
                len: body.len(),
            },
        )?;
        let mut r = Reader::new(body, "store query reply");
        let group = r.fixed(GROUP_NAME_LEN)?;
        let ip = r.fixed(width.len())?;
        let port = r.u64()?;
        let store_path_index = r.u8()?;
        r.finish()?;
        Ok(StoreTarget {
            group,
            addr: StorageAddr { ip, port },
            store_path_index,
        })
    }
}

/// Reply to 106/107: every writable storage of the chosen group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTargets {
    pub group: String,
    pub servers: Vec<StorageAddr>,
    pub store_path_index: u8,
}

impl StoreTargets {
    pub fn encode(&self, width: IpWidth) -> Vec<u8> {
        let mut out = Vec::new();
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        for s in &self.servers {
            put_fixed(&mut out, s.ip.as_bytes(), width.len());
            put_u64(&mut out, s.port);
        }
        out.push(self.store_path_index);
        out
    }

    /// Decodes with a known width, or infers it from the length as the C client does.
    pub fn decode(body: &[u8], width: Option<IpWidth>) -> Result<Self, ProtoError> {
        let bad = ProtoError::BadLength {
            what: "store-all reply",
            len: body.len(),
        };
        let payload = body
            .len()
            .checked_sub(GROUP_NAME_LEN + 1)
            .ok_or_else(|| bad.clone())?;
        let width = match width {
            Some(w) => w,
            None if payload % (IpWidth::V4.len() + 8) == 0 => IpWidth::V4,
            None if payload % (IpWidth::V6.len() + 8) == 0 => IpWidth::V6,
            None => return Err(bad),
        };
        let entry = width.len() + 8;
        if payload == 0 || payload % entry != 0 {
            return Err(bad);
        }
        let mut r = Reader::new(body, "store-all reply");
        let group = r.fixed(GROUP_NAME_LEN)?;
        let mut servers = Vec::with_capacity(payload / entry);
        for _ in 0..payload / entry {
            let ip = r.fixed(width.len())?;
            let port = r.u64()?;
            servers.push(StorageAddr { ip, port });
        }
        let store_path_index = r.u8()?;
        r.finish()?;
        Ok(StoreTargets {
            group,
            servers,
            store_path_index,
        })
    }
}

/// Reply to 102/103: the storage to download from or update on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    pub group: String,
    pub addr: StorageAddr,
}

impl FetchTarget {
    pub fn encode(&self, width: IpWidth) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + width.len() + 8);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        put_fixed(&mut out, self.addr.ip.as_bytes(), width.len());
        put_u64(&mut out, self.addr.port);
        out
    }

    /// Accepts exactly 39 or 69 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let width = IpWidth::from_len(body.len().wrapping_sub(GROUP_NAME_LEN + 8)).ok_or(
            ProtoError::BadLength {
                what: "fetch query reply",
                len: body.len(),
            },
        )?;
        let mut r = Reader::new(body, "fetch query reply");
        let group = r.fixed(GROUP_NAME_LEN)?;
        let ip = r.fixed(width.len())?;
        let port = r.u64()?;
        r.finish()?;
        Ok(FetchTarget {
            group,
            addr: StorageAddr { ip, port },
        })
    }
}

/// The two wire forms of the 105 reply (protocol notes §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchAllFormat {
    /// V6.16: a port for every server.
    #[default]
    #[serde(rename = "v6.16")]
    V616,
    /// ≤ V6.15: one port, then bare IPs (Java client).
    Legacy,
}

/// Reply to 105: every storage that can serve the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAll {
    pub group: String,
    pub servers: Vec<StorageAddr>,
}

impl FetchAll {
    pub fn encode(&self, width: IpWidth, format: FetchAllFormat) -> Vec<u8> {
        let mut out = Vec::new();
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        for (i, s) in self.servers.iter().enumerate() {
            put_fixed(&mut out, s.ip.as_bytes(), width.len());
            if i == 0 || format == FetchAllFormat::V616 {
                put_u64(&mut out, s.port);
            }
        }
        out
    }

    /// Decodes the V6.16 form, falling back to the legacy form when only it fits.
    pub fn decode(body: &[u8], width: Option<IpWidth>) -> Result<Self, ProtoError> {
        let bad = ProtoError::BadLength {
            what: "fetch-all reply",
            len: body.len(),
        };
        let payload = body
            .len()
            .checked_sub(GROUP_NAME_LEN)
            .ok_or_else(|| bad.clone())?;
        let widths: &[IpWidth] = match width {
            Some(ref w) => std::slice::from_ref(w),
            None => &[IpWidth::V4, IpWidth::V6],
        };
        for &w in widths {
            let mut r = Reader::new(body, "fetch-all reply");
            let group = r.fixed(GROUP_NAME_LEN)?;
            if payload > 0 && payload % (w.len() + 8) == 0 {
                let mut servers = Vec::new();
                while r.remaining() > 0 {
                    let ip = r.fixed(w.len())?;
                    servers.push(StorageAddr { ip, port: r.u64()? });
                }
                return Ok(FetchAll { group, servers });
            }
            if payload >= w.len() + 8 && (payload - w.len() - 8) % w.len() == 0 {
                let ip = r.fixed(w.len())?;
                let port = r.u64()?;
                let mut servers = vec![StorageAddr { ip, port }];
                while r.remaining() > 0 {
                    servers.push(StorageAddr {
                        ip: r.fixed(w.len())?,
                        port,
                    });
                }
                return Ok(FetchAll { group, servers });
            }
        }
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, port: u64) -> StorageAddr {
        StorageAddr {
            ip: ip.into(),
            port,
        }
    }

    #[test]
    fn store_target_sizes() {
        let t = StoreTarget {
            group: "group1".into(),
            addr: addr("127.0.0.2", 23000),
            store_path_index: 0,
        };
        assert_eq!(t.encode(IpWidth::V4).len(), 40);
        assert_eq!(t.encode(IpWidth::V6).len(), 70);
        assert_eq!(StoreTarget::decode(&t.encode(IpWidth::V6)).ok(), Some(t));
    }

    #[test]
    fn fetch_all_both_forms() {
        let all = FetchAll {
            group: "group1".into(),
            servers: vec![addr("127.0.0.2", 23000), addr("127.0.0.3", 23000)],
        };
        let v616 = all.encode(IpWidth::V4, FetchAllFormat::V616);
        let legacy = all.encode(IpWidth::V4, FetchAllFormat::Legacy);
        assert_eq!(v616.len(), 16 + 2 * 23);
        assert_eq!(legacy.len(), 39 + 15);
        assert_eq!(
            FetchAll::decode(&v616, Some(IpWidth::V4)).ok(),
            Some(all.clone())
        );
        assert_eq!(FetchAll::decode(&legacy, Some(IpWidth::V4)).ok(), Some(all));
    }

    #[test]
    fn file_request_length_window() {
        assert!(FileRequest::decode(&[0u8; 37]).is_err());
        assert!(FileRequest::decode(&[b'a'; 38]).is_ok());
        assert!(FileRequest::decode(&[b'a'; 144]).is_err());
    }
}
