//! Storage → tracker reporting: JOIN (81), BEAT (83), REPORT_DISK_USAGE (84),
//! SYNC_REPORT (89), SYNC_DEST_REQ/NOTIFY (87/88), PARAMETER_REQ (75),
//! GET_MY_IP (60), and the heartbeat reply that 83/84/89 share.
//!
//! ```text
//! JOIN request (145 bytes + tracker_count lines "host:port\n"):
//! | group[17] | port u64 | store_path_count u64 | subdir_count u64 | upload_priority u64 |
//! | join_time u64 | up_time u64 | version[8] | init_flag u8 | status i8 |
//! | storage_id[16] | current_tracker_ip[46] | tracker_count u64 |
//! JOIN reply (17 bytes): | my_status u8 | src_id[16] |
//!
//! heartbeat reply: | flags u8 | [leader brief] [trunk brief] [N × member brief] |
//! brief (67 bytes): | status u8 | port u32 | id[16] | ip[46] |
//! ```

use super::ProtoError;
use super::fields::{
    GROUP_NAME_LEN, IP_BUFF_LEN, Reader, STORAGE_ID_LEN, VERSION_LEN, put_fixed, put_u32, put_u64,
};
use super::monitor::{STATS_LEN, StorageStats};

/// Fixed part of the JOIN body.
pub const JOIN_FIXED_LEN: usize = 145;
/// Size of one [`StorageBrief`].
pub const BRIEF_LEN: usize = 67;
/// Most trackers a JOIN may list.
pub const MAX_TRACKERS: u64 = 16;

/// Body of STORAGE_JOIN (81).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinRequest {
    pub group: String,
    pub storage_port: u64,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    pub upload_priority: u64,
    pub join_time: u64,
    pub up_time: u64,
    pub version: String,
    /// True while the initial full copy has not been done (fresh data dir).
    pub init_flag: bool,
    /// Last status the storage knew for itself; −1 = unknown.
    pub status: i8,
    pub storage_id: String,
    /// The tracker address this storage dialled.
    pub current_tracker_ip: String,
    /// Every tracker the storage reports to, as `host:port`.
    pub trackers: Vec<String>,
}

impl JoinRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(JOIN_FIXED_LEN + self.trackers.len() * 24);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN + 1);
        for v in [
            self.storage_port,
            self.store_path_count,
            self.subdir_count_per_path,
            self.upload_priority,
            self.join_time,
            self.up_time,
        ] {
            put_u64(&mut out, v);
        }
        put_fixed(&mut out, self.version.as_bytes(), VERSION_LEN);
        out.push(u8::from(self.init_flag));
        out.push(self.status as u8);
        put_fixed(&mut out, self.storage_id.as_bytes(), STORAGE_ID_LEN);
        put_fixed(&mut out, self.current_tracker_ip.as_bytes(), IP_BUFF_LEN);
        put_u64(&mut out, self.trackers.len() as u64);
        for t in &self.trackers {
            out.extend_from_slice(t.as_bytes());
            out.push(b'\n');
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "storage join");
        let mut j = JoinRequest {
            group: r.fixed(GROUP_NAME_LEN + 1)?,
            storage_port: r.u64()?,
            store_path_count: r.u64()?,
            subdir_count_per_path: r.u64()?,
            upload_priority: r.u64()?,
            join_time: r.u64()?,
            up_time: r.u64()?,
            version: r.fixed(VERSION_LEN)?,
            init_flag: r.u8()? != 0,
            status: r.u8()? as i8,
            storage_id: r.fixed(STORAGE_ID_LEN)?,
            current_tracker_ip: r.fixed(IP_BUFF_LEN)?,
            trackers: Vec::new(),
        };
        let count = r.u64()?;
        if count == 0 || count > MAX_TRACKERS {
            return Err(ProtoError::BadField {
                what: "storage join",
                reason: format!("tracker_count {count} outside 1..={MAX_TRACKERS}"),
            });
        }
        let text = std::str::from_utf8(r.rest()).map_err(|_| ProtoError::BadField {
            what: "storage join",
            reason: "tracker list is not text".into(),
        })?;
        j.trackers = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if j.trackers.len() as u64 != count {
            return Err(ProtoError::BadField {
                what: "storage join",
                reason: format!("tracker_count {count} but {} lines", j.trackers.len()),
            });
        }
        Ok(j)
    }
}

/// Reply to JOIN: the status the tracker holds for the storage and its sync source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub status: u8,
    pub src_id: String,
}

impl JoinResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.status];
        put_fixed(&mut out, self.src_id.as_bytes(), STORAGE_ID_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "join reply");
        let status = r.u8()?;
        let src_id = r.fixed(STORAGE_ID_LEN)?;
        r.finish()?;
        Ok(JoinResponse { status, src_id })
    }
}

/// Body of BEAT (83): empty, or the statistics block when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatRequest {
    pub stats: Option<StorageStats>,
}

impl BeatRequest {
    pub fn encode(&self) -> Vec<u8> {
        self.stats
            .as_ref()
            .map(StorageStats::encode)
            .unwrap_or_default()
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        match body.len() {
            0 => Ok(BeatRequest { stats: None }),
            STATS_LEN => {
                let mut r = Reader::new(body, "beat");
                Ok(BeatRequest {
                    stats: Some(StorageStats::decode_from(&mut r)?),
                })
            }
            len => Err(ProtoError::BadLength { what: "beat", len }),
        }
    }
}

/// Body of REPORT_DISK_USAGE (84): total and free MB per store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub paths: Vec<PathUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathUsage {
    pub total_mb: u64,
    pub free_mb: u64,
}

impl DiskUsage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.paths.len() * 16);
        for p in &self.paths {
            put_u64(&mut out, p.total_mb);
            put_u64(&mut out, p.free_mb);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.is_empty() || !body.len().is_multiple_of(16) {
            return Err(ProtoError::BadLength {
                what: "disk usage",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body, "disk usage");
        let paths = (0..body.len() / 16)
            .map(|_| {
                Ok(PathUsage {
                    total_mb: r.u64()?,
                    free_mb: r.u64()?,
                })
            })
            .collect::<Result<_, ProtoError>>()?;
        Ok(DiskUsage { paths })
    }
}

/// A storage as listed in heartbeat replies and status reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageBrief {
    pub status: u8,
    pub port: u32,
    pub id: String,
    pub ip: String,
}

impl StorageBrief {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.status);
        put_u32(out, self.port);
        put_fixed(out, self.id.as_bytes(), STORAGE_ID_LEN);
        put_fixed(out, self.ip.as_bytes(), IP_BUFF_LEN);
    }

    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        Ok(StorageBrief {
            status: r.u8()?,
            port: r.u32()?,
            id: r.fixed(STORAGE_ID_LEN)?,
            ip: r.fixed(IP_BUFF_LEN)?,
        })
    }
}

/// Flags byte of the heartbeat reply.
pub mod change_flag {
    pub const LEADER: u8 = 1;
    pub const TRUNK: u8 = 2;
    pub const MEMBERS: u8 = 4;
}

/// Reply to 83, 84 and 89: changes the leader tracker pushes to the storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatReply {
    /// Some(brief) when the leader changed; an all-empty brief means "no leader".
    pub leader: Option<StorageBrief>,
    pub trunk: Option<StorageBrief>,
    pub members: Option<Vec<StorageBrief>>,
}

impl HeartbeatReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        let mut out = vec![0];
        for (flag, brief) in [
            (change_flag::LEADER, &self.leader),
            (change_flag::TRUNK, &self.trunk),
        ] {
            if let Some(b) = brief {
                flags |= flag;
                b.encode_into(&mut out);
            }
        }
        if let Some(members) = &self.members {
            flags |= change_flag::MEMBERS;
            for m in members {
                m.encode_into(&mut out);
            }
        }
        out[0] = flags;
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "heartbeat reply");
        let flags = r.u8()?;
        let mut reply = HeartbeatReply::default();
        if flags & change_flag::LEADER != 0 {
            reply.leader = Some(StorageBrief::decode_from(&mut r)?);
        }
        if flags & change_flag::TRUNK != 0 {
            reply.trunk = Some(StorageBrief::decode_from(&mut r)?);
        }
        if flags & change_flag::MEMBERS != 0 {
            if !r.remaining().is_multiple_of(BRIEF_LEN) {
                return Err(ProtoError::BadLength {
                    what: "heartbeat reply",
                    len: body.len(),
                });
            }
            let n = r.remaining() / BRIEF_LEN;
            reply.members = Some(
                (0..n)
                    .map(|_| StorageBrief::decode_from(&mut r))
                    .collect::<Result<_, _>>()?,
            );
        }
        r.finish()?;
        Ok(reply)
    }
}

/// A body of fixed-size records; a length that is not a whole number of them is refused.
fn decode_records<T>(
    body: &[u8],
    what: &'static str,
    record_len: usize,
    mut one: impl FnMut(&mut Reader<'_>) -> Result<T, ProtoError>,
) -> Result<Vec<T>, ProtoError> {
    if !body.len().is_multiple_of(record_len) {
        return Err(ProtoError::BadLength {
            what,
            len: body.len(),
        });
    }
    let mut r = Reader::new(body, what);
    (0..body.len() / record_len).map(|_| one(&mut r)).collect()
}

/// Body of SYNC_REPORT (89): per source storage, the last timestamp synced from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub entries: Vec<(String, u32)>,
}

impl SyncReport {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 20);
        for (id, ts) in &self.entries {
            put_fixed(&mut out, id.as_bytes(), STORAGE_ID_LEN);
            put_u32(&mut out, *ts);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.is_empty() {
            return Err(ProtoError::BadLength {
                what: "sync report",
                len: 0,
            });
        }
        let entries = decode_records(body, "sync report", STORAGE_ID_LEN + 4, |r| {
            Ok((r.fixed(STORAGE_ID_LEN)?, r.u32()?))
        })?;
        Ok(SyncReport { entries })
    }
}

/// How much of a storage's binlog one peer of its group has yet to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub peer_id: String,
    pub bytes: u64,
    /// Age of the oldest change not yet sent, in seconds; 0 when nothing waits.
    pub seconds: u64,
}

const BACKLOG_LEN: usize = STORAGE_ID_LEN + 8 + 8;

impl Backlog {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_fixed(out, self.peer_id.as_bytes(), STORAGE_ID_LEN);
        put_u64(out, self.bytes);
        put_u64(out, self.seconds);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        Ok(Backlog {
            peer_id: r.fixed(STORAGE_ID_LEN)?,
            bytes: r.u64()?,
            seconds: r.u64()?,
        })
    }
}

/// Body of SYNC_BACKLOG_REPORT (240, not in FastDFS): one entry per peer the storage pushes
/// to, none when it has no peer. FastDFS's own reports carry timestamps only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncBacklogReport {
    pub entries: Vec<Backlog>,
}

impl SyncBacklogReport {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * BACKLOG_LEN);
        for e in &self.entries {
            e.encode_into(&mut out);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let entries = decode_records(body, "sync backlog report", BACKLOG_LEN, |r| {
            Backlog::decode_from(r)
        })?;
        Ok(SyncBacklogReport { entries })
    }
}

/// One row of the LIST_SYNC_BACKLOG (241) reply: what `source_id` last said of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogRow {
    pub source_id: String,
    pub backlog: Backlog,
    /// When the tracker received the report (unix seconds).
    pub reported_at: u64,
}

const BACKLOG_ROW_LEN: usize = STORAGE_ID_LEN + BACKLOG_LEN + 8;

/// Reply to LIST_SYNC_BACKLOG (241), whose request is a group name (`GroupRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncBacklogListing {
    pub rows: Vec<BacklogRow>,
}

impl SyncBacklogListing {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.rows.len() * BACKLOG_ROW_LEN);
        for row in &self.rows {
            put_fixed(&mut out, row.source_id.as_bytes(), STORAGE_ID_LEN);
            row.backlog.encode_into(&mut out);
            put_u64(&mut out, row.reported_at);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let rows = decode_records(body, "sync backlog listing", BACKLOG_ROW_LEN, |r| {
            Ok(BacklogRow {
                source_id: r.fixed(STORAGE_ID_LEN)?,
                backlog: Backlog::decode_from(r)?,
                reported_at: r.u64()?,
            })
        })?;
        Ok(SyncBacklogListing { rows })
    }
}

/// A peer whose pushes a storage cannot apply: the FastDFS status its writes fail with
/// (ENOSPC, EIO, EPERM, ...) and since when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncProblem {
    pub source_id: String,
    pub status: u8,
    pub since: u64,
}

const PROBLEM_LEN: usize = STORAGE_ID_LEN + 8 + 8;

/// Body of SYNC_PROBLEM_REPORT (242, not in FastDFS): one entry per peer whose pushes the
/// storage cannot apply; empty once it applies everything again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncProblemReport {
    pub entries: Vec<SyncProblem>,
}

impl SyncProblemReport {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * PROBLEM_LEN);
        for e in &self.entries {
            put_fixed(&mut out, e.source_id.as_bytes(), STORAGE_ID_LEN);
            put_u64(&mut out, u64::from(e.status));
            put_u64(&mut out, e.since);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let entries = decode_records(body, "sync problem report", PROBLEM_LEN, |r| {
            let source_id = r.fixed(STORAGE_ID_LEN)?;
            let status = u8::try_from(r.u64()?).map_err(|_| ProtoError::BadField {
                what: "sync problem report",
                reason: "a status above 255".into(),
            })?;
            Ok(SyncProblem {
                source_id,
                status,
                since: r.u64()?,
            })
        })?;
        Ok(SyncProblemReport { entries })
    }
}

/// Body of SYNC_NOTIFY (88) and the non-empty reply of SYNC_DEST_REQ (87).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncSource {
    pub src_id: String,
    pub until: u64,
}

impl SyncSource {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STORAGE_ID_LEN + 8);
        put_fixed(&mut out, self.src_id.as_bytes(), STORAGE_ID_LEN);
        put_u64(&mut out, self.until);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sync source");
        let src_id = r.fixed(STORAGE_ID_LEN)?;
        let until = r.u64()?;
        r.finish()?;
        Ok(SyncSource { src_id, until })
    }
}

/// Reply to PARAMETER_REQ (75): ordered `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameters {
    pub entries: Vec<(String, String)>,
}

impl Parameters {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.entries {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let text = std::str::from_utf8(body).map_err(|_| ProtoError::BadField {
            what: "parameters",
            reason: "not text".into(),
        })?;
        let entries = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| ProtoError::BadField {
                        what: "parameters",
                        reason: format!("line {l:?}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Parameters { entries })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Body of GET_MY_IP (60): the storage's group and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetMyIpRequest {
    pub group: String,
    pub port: u32,
}

impl GetMyIpRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN + 1);
        put_u32(&mut out, self.port);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "get my ip");
        let group = r.fixed(GROUP_NAME_LEN + 1)?;
        let port = r.u32()?;
        r.finish()?;
        Ok(GetMyIpRequest { group, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_round_trip() {
        let j = JoinRequest {
            group: "group1".into(),
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 256,
            upload_priority: 10,
            version: "6.16.1".into(),
            status: -1,
            trackers: vec!["127.0.0.1:22122".into()],
            ..Default::default()
        };
        let bytes = j.encode();
        assert_eq!(bytes.len(), JOIN_FIXED_LEN + 16);
        assert_eq!(JoinRequest::decode(&bytes).ok(), Some(j));
    }

    #[test]
    fn heartbeat_reply_flags() {
        let empty = HeartbeatReply::default();
        assert_eq!(empty.encode(), vec![0]);
        let members = HeartbeatReply {
            members: Some(vec![StorageBrief::default()]),
            ..Default::default()
        };
        let bytes = members.encode();
        assert_eq!(bytes.len(), 1 + BRIEF_LEN);
        assert_eq!(bytes[0], change_flag::MEMBERS);
        assert_eq!(HeartbeatReply::decode(&bytes).ok(), Some(members));
    }

    #[test]
    fn sync_backlog_layouts() {
        let entry = Backlog {
            peer_id: "127.0.0.3".into(),
            bytes: 0x0102,
            seconds: 7,
        };
        let report = SyncBacklogReport {
            entries: vec![entry.clone()],
        };
        let bytes = report.encode();
        let mut expected = b"127.0.0.3".to_vec();
        expected.resize(STORAGE_ID_LEN, 0);
        expected.extend([0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(bytes, expected);
        assert_eq!(SyncBacklogReport::decode(&bytes).ok(), Some(report));
        assert_eq!(
            SyncBacklogReport::decode(&[]).ok(),
            Some(SyncBacklogReport::default())
        );
        assert!(SyncBacklogReport::decode(&bytes[..31]).is_err());

        let listing = SyncBacklogListing {
            rows: vec![BacklogRow {
                source_id: "127.0.0.2".into(),
                backlog: entry,
                reported_at: 1_800_000_000,
            }],
        };
        let bytes = listing.encode();
        assert_eq!(bytes.len(), 56);
        assert_eq!(&bytes[16..32], &expected[..16]);
        assert_eq!(SyncBacklogListing::decode(&bytes).ok(), Some(listing));
        assert!(SyncBacklogListing::decode(&bytes[..55]).is_err());
    }

    #[test]
    fn sync_problem_layout() {
        let report = SyncProblemReport {
            entries: vec![SyncProblem {
                source_id: "127.0.0.2".into(),
                status: 28,
                since: 0x0102,
            }],
        };
        let bytes = report.encode();
        let mut expected = b"127.0.0.2".to_vec();
        expected.resize(STORAGE_ID_LEN, 0);
        expected.extend([0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(bytes, expected);
        assert_eq!(SyncProblemReport::decode(&bytes).ok(), Some(report));
        assert_eq!(
            SyncProblemReport::decode(&[]).ok(),
            Some(SyncProblemReport::default())
        );
        assert!(SyncProblemReport::decode(&bytes[..31]).is_err());
        let mut too_big = bytes.clone();
        too_big[STORAGE_ID_LEN + 6] = 1;
        assert!(SyncProblemReport::decode(&too_big).is_err());
    }
}
