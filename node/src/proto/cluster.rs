//! Tracker ↔ tracker bodies (58, 64–68), admin requests (93, 108), cluster
//! statistics (96–98), storage-id lookups (69, 70, 71) and peer status reports
//! (76, 85, 86).
//!
//! ```text
//! 64 GET_STATUS reply (17):  | is_leader u8 | running_time u64 | restart_interval u64 |
//! 58 JOIN_LEADER (24):       | up_time u64 | version[8] | port u64 |
//! 65 PING_LEADER (12):       | alloc u32 | current u32 | max u32 |
//!    reply: N × | group[16] | trunk_server_id[16] |
//! 66/67 NOTIFY/COMMIT:       "ip:port" text, no NUL
//! 61 / 62 GET_SYS_FILES_START / END: empty both ways
//! 63 GET_ONE_SYS_FILE (9):   | file_index u8 | offset u64 |
//!    reply:                  | file_size u64 | piece of the file from offset |
//! 93 DELETE_STORAGE:         | group[16] | storage id, 1–15 bytes |
//! 69 FETCH_STORAGE_IDS:      | start_index u32 | [allow_empty u8] |   (4 or 5 bytes)
//!    reply:                  | total u32 | returned u32 | "id group host[:port][ rw=..]\n"… |
//! 70 / 71 request:           | group[16] | "ip:port" |   70 reply: id text; 71 reply: brief
//! 76 REPORT_STATUS:          | group[16] | brief (67) |
//! 85 REPLICA_CHG:            N × brief (67), N ≤ 32
//! 86 SYNC_SRC_REQ:           | group[16] | dest_id[16] |  reply: empty or | src_id[16] | until u64 |
//! 96 request:  | filter_by u8 | is_active u8 | is_leader u8 |
//!    reply:    | count u8 | count × 90: | host[52] | is_leader u8 | is_active u8 |
//!              | alloc u32 | current u32 | max u32 | version[8] | up_time u64 | last_heartbeat u64 |
//! 97 request:  | filter_by u8 | op_type u8 ('=' or '!') | status u8 | is_trunk_server u8 |
//!    reply:    | use_storage_id u8 | use_trunk_file u8 | count u32 | count × 106:
//!              | id[16] | host[52] | is_trunk u8 | status u8 | 3 × u32 | version[8] |
//!              | up_time u64 | last_heartbeat u64 |
//! 98 request:  | filter_by u8 | is_disk_available u8 | is_trunk_available u8 | is_space_available u8 |
//!    reply:    | use_trunk_file u8 | count u32 | count × 59:
//!              | group[17] | total | free | reserved | avail | trunk_free (u64) | disk u8 | trunk u8 |
//! ```

use super::ProtoError;
use super::fields::{
    GROUP_NAME_LEN, Reader, STORAGE_ID_LEN, VERSION_LEN, fixed_text, put_fixed, put_u32, put_u64,
};
use super::report::{BRIEF_LEN, StorageBrief};

/// Width of the `ip:port` host field in cluster-stat records (46 + 6).
pub const HOST_LEN: usize = 52;
/// Size of one 96 record.
pub const TRACKER_STAT_LEN: usize = 90;
/// Size of one 97 record.
pub const STORAGE_CLUSTER_STAT_LEN: usize = 106;
/// Size of one 98 record.
pub const VOLUME_STAT_LEN: usize = 59;
/// Most briefs a REPLICA_CHG may carry.
pub const MAX_REPLICA_BRIEFS: usize = 32;

fn text(body: &[u8], what: &'static str) -> Result<String, ProtoError> {
    String::from_utf8(body.to_vec()).map_err(|_| ProtoError::BadField {
        what,
        reason: "not text".into(),
    })
}

/// Reply to TRACKER_GET_STATUS (64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerStatus {
    pub is_leader: bool,
    /// Seconds running, rounded down to a multiple of 300.
    pub running_time: u64,
    /// Seconds the tracker was down before this start, rounded the same way.
    pub restart_interval: u64,
}

impl TrackerStatus {
    pub const LEN: usize = 17;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(u8::from(self.is_leader));
        put_u64(&mut out, self.running_time);
        put_u64(&mut out, self.restart_interval);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "tracker status");
        let s = TrackerStatus {
            is_leader: r.u8()? != 0,
            running_time: r.u64()?,
            restart_interval: r.u64()?,
        };
        r.finish()?;
        Ok(s)
    }
}

/// Request of TRACKER_GET_ONE_SYS_FILE (63): a piece of system file `index` from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SysFileRequest {
    pub index: u8,
    pub offset: u64,
}

impl SysFileRequest {
    pub const LEN: usize = 9;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(self.index);
        put_u64(&mut out, self.offset);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sys file request");
        let q = SysFileRequest {
            index: r.u8()?,
            offset: r.u64()?,
        };
        r.finish()?;
        Ok(q)
    }
}

/// Reply to TRACKER_GET_ONE_SYS_FILE (63): the whole file's size and a piece of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysFilePiece {
    pub file_size: u64,
    pub data: Vec<u8>,
}

impl SysFilePiece {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.data.len());
        put_u64(&mut out, self.file_size);
        out.extend_from_slice(&self.data);
        out
    }

    /// As FastDFS's fetcher checks it: a size, and some content when the file is not empty.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sys file piece");
        let file_size = r.u64()?;
        let data = r.rest().to_vec();
        if i64::try_from(file_size).is_err() || (file_size > 0 && data.is_empty()) {
            return Err(ProtoError::BadField {
                what: "sys file piece",
                reason: format!("file size {file_size} with {} bytes", data.len()),
            });
        }
        Ok(SysFilePiece { file_size, data })
    }
}

/// Body of TRACKER_JOIN_LEADER (58).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinLeader {
    pub up_time: u64,
    pub version: String,
    /// The port the joining tracker serves on (its IP is the connection's).
    pub port: u64,
}

impl JoinLeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        put_u64(&mut out, self.up_time);
        put_fixed(&mut out, self.version.as_bytes(), VERSION_LEN);
        put_u64(&mut out, self.port);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "join leader");
        let j = JoinLeader {
            up_time: r.u64()?,
            version: r.fixed(VERSION_LEN)?,
            port: r.u64()?,
        };
        r.finish()?;
        if j.port == 0 || j.port > 65535 {
            return Err(ProtoError::BadField {
                what: "join leader",
                reason: format!("port {}", j.port),
            });
        }
        Ok(j)
    }
}

/// Body of TRACKER_PING_LEADER (65): the follower's connection counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PingLeader {
    pub connections: [u32; 3],
}

impl PingLeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        for c in self.connections {
            put_u32(&mut out, c);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "ping leader");
        let p = PingLeader {
            connections: [r.u32()?, r.u32()?, r.u32()?],
        };
        r.finish()?;
        Ok(p)
    }
}

/// One entry of a PING_LEADER reply: a group's trunk server, as the leader chose it
/// (an empty id: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTrunkServer {
    pub group: String,
    pub server_id: String,
}

impl GroupTrunkServer {
    const LEN: usize = GROUP_NAME_LEN + STORAGE_ID_LEN;

    pub fn encode_all(list: &[Self]) -> Vec<u8> {
        let mut out = Vec::with_capacity(list.len() * Self::LEN);
        for e in list {
            put_fixed(&mut out, e.group.as_bytes(), GROUP_NAME_LEN);
            put_fixed(&mut out, e.server_id.as_bytes(), STORAGE_ID_LEN);
        }
        out
    }

    pub fn decode_all(body: &[u8]) -> Result<Vec<Self>, ProtoError> {
        if !body.len().is_multiple_of(Self::LEN) {
            return Err(ProtoError::BadField {
                what: "ping leader reply",
                reason: format!("{} bytes is no whole number of 32-byte entries", body.len()),
            });
        }
        Ok(body
            .chunks_exact(Self::LEN)
            .map(|c| GroupTrunkServer {
                group: fixed_text(&c[..GROUP_NAME_LEN]),
                server_id: fixed_text(&c[GROUP_NAME_LEN..]),
            })
            .collect())
    }
}

/// Parses the `ip:port` text of 66/67 (and 95 replies).
pub fn decode_host_port(body: &[u8]) -> Result<std::net::SocketAddr, ProtoError> {
    let t = text(body, "ip:port")?;
    t.parse().map_err(|_| ProtoError::BadField {
        what: "ip:port",
        reason: format!("{t:?}"),
    })
}

/// Body of 93 (DELETE_STORAGE) and 94: a group and a storage id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAndId {
    pub group: String,
    pub id: String,
}

impl GroupAndId {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(&self.id.as_bytes()[..self.id.len().min(STORAGE_ID_LEN - 1)]);
        out
    }

    /// Accepts 1–15 id bytes, as 93 requires.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if !(GROUP_NAME_LEN + 1..GROUP_NAME_LEN + STORAGE_ID_LEN).contains(&body.len()) {
            return Err(ProtoError::BadLength {
                what: "group and storage id",
                len: body.len(),
            });
        }
        Ok(GroupAndId {
            group: fixed_text(&body[..GROUP_NAME_LEN]),
            id: fixed_text(&body[GROUP_NAME_LEN..]),
        })
    }
}

/// Body of 243 (this project's SERVER_FENCE_STORAGE): 1 to fence a member (no uploads are
/// routed to it; it still serves reads and replication) or 0 to lift the fence, then a
/// group and a storage id as 93 takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceRequest {
    pub fenced: bool,
    pub member: GroupAndId,
}

impl FenceRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.fenced)];
        out.extend_from_slice(&self.member.encode());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let (flag, rest) = body.split_first().ok_or(ProtoError::BadLength {
            what: "fence request",
            len: 0,
        })?;
        let fenced = match flag {
            0 => false,
            1 => true,
            other => {
                return Err(ProtoError::BadField {
                    what: "fence flag",
                    reason: format!("{other} is neither 0 nor 1"),
                });
            }
        };
        Ok(FenceRequest {
            fenced,
            member: GroupAndId::decode(rest)?,
        })
    }
}

/// Body of 78 (STORAGE_REPORT_IP_CHANGED): a group, the storage's old and new addresses,
/// each in a 46-byte field (V6.11 and later) or a 16-byte one (before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpChangedReport {
    pub group: String,
    pub old_ip: String,
    pub new_ip: String,
}

impl IpChangedReport {
    /// The V6.11+ layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + 2 * 46);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        put_fixed(&mut out, self.old_ip.as_bytes(), 46);
        put_fixed(&mut out, self.new_ip.as_bytes(), 46);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let width = match body.len().checked_sub(GROUP_NAME_LEN) {
            Some(92) => 46,
            Some(32) => 16,
            _ => {
                return Err(ProtoError::BadLength {
                    what: "IP changed report",
                    len: body.len(),
                });
            }
        };
        let ips = &body[GROUP_NAME_LEN..];
        Ok(IpChangedReport {
            group: fixed_text(&body[..GROUP_NAME_LEN]),
            old_ip: fixed_text(&ips[..width]),
            new_ip: fixed_text(&ips[width..]),
        })
    }
}

/// One line of the storage changelog a tracker sends in reply to 77:
/// `<unix time> <group> <storage id> <status> <new id>` (status 4 DELETED with an empty
/// new id, 3 IP_CHANGED with the new address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogLine {
    pub time: u64,
    pub group: String,
    pub id: String,
    pub status: u8,
    pub new_id: String,
}

impl ChangelogLine {
    /// The well-formed lines of a reply; others are skipped (as FastDFS skips them).
    pub fn parse_all(body: &[u8]) -> Vec<ChangelogLine> {
        String::from_utf8_lossy(body)
            .split('\n')
            .filter_map(|line| {
                let cols: Vec<&str> = line.split(' ').collect();
                let [time, group, id, status, new_id] = cols.as_slice() else {
                    return None;
                };
                Some(ChangelogLine {
                    time: time.parse().ok()?,
                    group: (*group).to_owned(),
                    id: (*id).to_owned(),
                    status: status.parse().ok()?,
                    new_id: (*new_id).to_owned(),
                })
            })
            .collect()
    }
}

/// Body of 70 (GET_SERVER_ID) and 71 (GET_STATUS): a group and `ip:port` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAndHost {
    pub group: String,
    pub ip: String,
    pub port: u16,
}

impl GroupAndHost {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        out.extend_from_slice(format!("{}:{}", self.ip, self.port).as_bytes());
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if body.len() <= GROUP_NAME_LEN || body.len() > GROUP_NAME_LEN + 64 {
            return Err(ProtoError::BadLength {
                what: "group and host",
                len: body.len(),
            });
        }
        let group = fixed_text(&body[..GROUP_NAME_LEN]);
        let host = text(&body[GROUP_NAME_LEN..], "group and host")?;
        let bad = || ProtoError::BadField {
            what: "group and host",
            reason: format!("{host:?} is not ip:port"),
        };
        let (ip, port) = host.rsplit_once(':').ok_or_else(bad)?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(GroupAndHost {
            group,
            ip: ip.to_owned(),
            port,
        })
    }
}

/// Body of FETCH_STORAGE_IDS (69): 4 bytes before V6.11, 5 since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStorageIds {
    pub start_index: u32,
    /// None for the 4-byte form.
    pub allow_empty: Option<bool>,
}

impl FetchStorageIds {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5);
        put_u32(&mut out, self.start_index);
        if let Some(a) = self.allow_empty {
            out.push(u8::from(a));
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "fetch storage ids");
        let start_index = r.u32()?;
        let allow_empty = match body.len() {
            4 => None,
            5 => Some(r.u8()? != 0),
            len => {
                return Err(ProtoError::BadLength {
                    what: "fetch storage ids",
                    len,
                });
            }
        };
        Ok(FetchStorageIds {
            start_index,
            allow_empty,
        })
    }
}

/// Reply to 69: a page of storage_ids.conf lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageIdsPage {
    pub total: u32,
    pub lines: Vec<String>,
}

impl StorageIdsPage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.total);
        put_u32(&mut out, self.lines.len() as u32);
        for l in &self.lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "storage ids page");
        let total = r.u32()?;
        let returned = r.u32()? as usize;
        let t = text(r.rest(), "storage ids page")?;
        let lines: Vec<String> = t
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if lines.len() != returned || returned > total as usize {
            return Err(ProtoError::BadField {
                what: "storage ids page",
                reason: format!("{returned} announced of {total}, {} lines", lines.len()),
            });
        }
        Ok(StorageIdsPage { total, lines })
    }
}

/// Body of REPORT_STATUS (76): a group and the peer's brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportStatus {
    pub group: String,
    pub brief: StorageBrief,
}

impl ReportStatus {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + BRIEF_LEN);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        self.brief.encode_into(&mut out);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "report status");
        let group = r.fixed(GROUP_NAME_LEN)?;
        let brief = StorageBrief::decode_from(&mut r)?;
        r.finish()?;
        Ok(ReportStatus { group, brief })
    }
}

/// Body of REPLICA_CHG (85): 1–32 briefs.
pub fn decode_briefs(body: &[u8]) -> Result<Vec<StorageBrief>, ProtoError> {
    if body.is_empty()
        || !body.len().is_multiple_of(BRIEF_LEN)
        || body.len() / BRIEF_LEN > MAX_REPLICA_BRIEFS
    {
        return Err(ProtoError::BadLength {
            what: "replica change",
            len: body.len(),
        });
    }
    let mut r = Reader::new(body, "replica change");
    (0..body.len() / BRIEF_LEN)
        .map(|_| StorageBrief::decode_from(&mut r))
        .collect()
}

pub fn encode_briefs(briefs: &[StorageBrief]) -> Vec<u8> {
    let mut out = Vec::with_capacity(briefs.len() * BRIEF_LEN);
    for b in briefs {
        b.encode_into(&mut out);
    }
    out
}

/// Body of SYNC_SRC_REQ (86): which group member is asking about which destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSrcReq {
    pub group: String,
    pub dest_id: String,
}

impl SyncSrcReq {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + STORAGE_ID_LEN);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        put_fixed(&mut out, self.dest_id.as_bytes(), STORAGE_ID_LEN);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "sync source request");
        let group = r.fixed(GROUP_NAME_LEN)?;
        let dest_id = r.fixed(STORAGE_ID_LEN)?;
        r.finish()?;
        Ok(SyncSrcReq { group, dest_id })
    }
}

/// Request of 96: which trackers to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerStatFilter {
    /// 1 = filter on is_active, 2 = filter on is_leader.
    pub filter_by: u8,
    pub is_active: bool,
    pub is_leader: bool,
}

impl TrackerStatFilter {
    pub fn encode(&self) -> Vec<u8> {
        vec![
            self.filter_by,
            u8::from(self.is_active),
            u8::from(self.is_leader),
        ]
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        match body {
            [f, a, l] => Ok(TrackerStatFilter {
                filter_by: *f,
                is_active: *a != 0,
                is_leader: *l != 0,
            }),
            _ => Err(ProtoError::BadLength {
                what: "tracker stat filter",
                len: body.len(),
            }),
        }
    }

    pub fn accepts(&self, s: &TrackerStat) -> bool {
        (self.filter_by & 1 == 0 || s.is_active == self.is_active)
            && (self.filter_by & 2 == 0 || s.is_leader == self.is_leader)
    }
}

/// One tracker in a 96 reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackerStat {
    pub host: String,
    pub is_leader: bool,
    pub is_active: bool,
    pub connections: [u32; 3],
    pub version: String,
    pub up_time: u64,
    pub last_heartbeat: u64,
}

impl TrackerStat {
    pub fn encode_all(list: &[TrackerStat]) -> Vec<u8> {
        let n = list.len().min(255);
        let mut out = Vec::with_capacity(1 + n * TRACKER_STAT_LEN);
        out.push(n as u8);
        for s in &list[..n] {
            put_fixed(&mut out, s.host.as_bytes(), HOST_LEN);
            out.push(u8::from(s.is_leader));
            out.push(u8::from(s.is_active));
            for c in s.connections {
                put_u32(&mut out, c);
            }
            put_fixed(&mut out, s.version.as_bytes(), VERSION_LEN);
            put_u64(&mut out, s.up_time);
            put_u64(&mut out, s.last_heartbeat);
        }
        out
    }

    pub fn decode_all(body: &[u8]) -> Result<Vec<Self>, ProtoError> {
        let mut r = Reader::new(body, "tracker stat list");
        let n = r.u8()? as usize;
        if r.remaining() != n * TRACKER_STAT_LEN {
            return Err(ProtoError::BadLength {
                what: "tracker stat list",
                len: body.len(),
            });
        }
        (0..n)
            .map(|_| {
                Ok(TrackerStat {
                    host: r.fixed(HOST_LEN)?,
                    is_leader: r.u8()? != 0,
                    is_active: r.u8()? != 0,
                    connections: [r.u32()?, r.u32()?, r.u32()?],
                    version: r.fixed(VERSION_LEN)?,
                    up_time: r.u64()?,
                    last_heartbeat: r.u64()?,
                })
            })
            .collect()
    }
}

/// Request of 97: which storages to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageStatFilter {
    /// 1 = filter on is_trunk_server, 2 = filter on status.
    pub filter_by: u8,
    /// `=` or `!`.
    pub op_type: u8,
    pub status: u8,
    pub is_trunk_server: bool,
}

impl StorageStatFilter {
    pub fn encode(&self) -> Vec<u8> {
        vec![
            self.filter_by,
            self.op_type,
            self.status,
            u8::from(self.is_trunk_server),
        ]
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        match body {
            [f, op, st, t] if *f & 2 == 0 || matches!(op, b'=' | b'!') => Ok(StorageStatFilter {
                filter_by: *f,
                op_type: *op,
                status: *st,
                is_trunk_server: *t != 0,
            }),
            _ => Err(ProtoError::BadLength {
                what: "storage stat filter",
                len: body.len(),
            }),
        }
    }

    pub fn accepts(&self, s: &StorageClusterStat) -> bool {
        let status_ok = self.filter_by & 2 == 0
            || (if self.op_type == b'!' {
                s.status != self.status
            } else {
                s.status == self.status
            });
        status_ok && (self.filter_by & 1 == 0 || s.is_trunk_server == self.is_trunk_server)
    }
}

/// One storage in a 97 reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClusterStat {
    pub id: String,
    pub host: String,
    pub is_trunk_server: bool,
    pub status: u8,
    pub connections: [u32; 3],
    pub version: String,
    pub up_time: u64,
    pub last_heartbeat: u64,
}

/// Reply to 97.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClusterStats {
    pub use_storage_id: bool,
    pub use_trunk_file: bool,
    pub storages: Vec<StorageClusterStat>,
}

impl StorageClusterStats {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.storages.len() * STORAGE_CLUSTER_STAT_LEN);
        out.push(u8::from(self.use_storage_id));
        out.push(u8::from(self.use_trunk_file));
        put_u32(&mut out, self.storages.len() as u32);
        for s in &self.storages {
            put_fixed(&mut out, s.id.as_bytes(), STORAGE_ID_LEN);
            put_fixed(&mut out, s.host.as_bytes(), HOST_LEN);
            out.push(u8::from(s.is_trunk_server));
            out.push(s.status);
            for c in s.connections {
                put_u32(&mut out, c);
            }
            put_fixed(&mut out, s.version.as_bytes(), VERSION_LEN);
            put_u64(&mut out, s.up_time);
            put_u64(&mut out, s.last_heartbeat);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "storage cluster stat");
        let use_storage_id = r.u8()? != 0;
        let use_trunk_file = r.u8()? != 0;
        let n = r.u32()? as usize;
        if r.remaining() != n.saturating_mul(STORAGE_CLUSTER_STAT_LEN) {
            return Err(ProtoError::BadLength {
                what: "storage cluster stat",
                len: body.len(),
            });
        }
        let storages = (0..n)
            .map(|_| {
                Ok(StorageClusterStat {
                    id: r.fixed(STORAGE_ID_LEN)?,
                    host: r.fixed(HOST_LEN)?,
                    is_trunk_server: r.u8()? != 0,
                    status: r.u8()?,
                    connections: [r.u32()?, r.u32()?, r.u32()?],
                    version: r.fixed(VERSION_LEN)?,
                    up_time: r.u64()?,
                    last_heartbeat: r.u64()?,
                })
            })
            .collect::<Result<_, ProtoError>>()?;
        Ok(StorageClusterStats {
            use_storage_id,
            use_trunk_file,
            storages,
        })
    }
}

/// Request of 98: which groups to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolumeStatFilter {
    /// 1 = disk, 2 = trunk, 4 = space.
    pub filter_by: u8,
    pub is_disk_available: bool,
    pub is_trunk_available: bool,
    pub is_space_available: bool,
}

impl VolumeStatFilter {
    pub fn encode(&self) -> Vec<u8> {
        vec![
            self.filter_by,
            u8::from(self.is_disk_available),
            u8::from(self.is_trunk_available),
            u8::from(self.is_space_available),
        ]
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        match body {
            [f, d, t, s] => Ok(VolumeStatFilter {
                filter_by: *f,
                is_disk_available: *d != 0,
                is_trunk_available: *t != 0,
                is_space_available: *s != 0,
            }),
            _ => Err(ProtoError::BadLength {
                what: "volume stat filter",
                len: body.len(),
            }),
        }
    }

    pub fn accepts(&self, v: &VolumeStat) -> bool {
        let space = v.is_disk_available || v.is_trunk_available;
        (self.filter_by & 1 == 0 || v.is_disk_available == self.is_disk_available)
            && (self.filter_by & 2 == 0 || v.is_trunk_available == self.is_trunk_available)
            && (self.filter_by & 4 == 0 || space == self.is_space_available)
    }
}

/// One group in a 98 reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeStat {
    pub group: String,
    pub total_mb: u64,
    pub free_mb: u64,
    pub reserved_mb: u64,
    pub avail_mb: u64,
    pub trunk_free_mb: u64,
    pub is_disk_available: bool,
    pub is_trunk_available: bool,
}

/// Reply to 98.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeStats {
    pub use_trunk_file: bool,
    pub groups: Vec<VolumeStat>,
}

impl VolumeStats {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.groups.len() * VOLUME_STAT_LEN);
        out.push(u8::from(self.use_trunk_file));
        put_u32(&mut out, self.groups.len() as u32);
        for g in &self.groups {
            put_fixed(&mut out, g.group.as_bytes(), GROUP_NAME_LEN + 1);
            for v in [
                g.total_mb,
                g.free_mb,
                g.reserved_mb,
                g.avail_mb,
                g.trunk_free_mb,
            ] {
                put_u64(&mut out, v);
            }
            out.push(u8::from(g.is_disk_available));
            out.push(u8::from(g.is_trunk_available));
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "volume stat");
        let use_trunk_file = r.u8()? != 0;
        let n = r.u32()? as usize;
        if r.remaining() != n.saturating_mul(VOLUME_STAT_LEN) {
            return Err(ProtoError::BadLength {
                what: "volume stat",
                len: body.len(),
            });
        }
        let groups = (0..n)
            .map(|_| {
                Ok(VolumeStat {
                    group: r.fixed(GROUP_NAME_LEN + 1)?,
                    total_mb: r.u64()?,
                    free_mb: r.u64()?,
                    reserved_mb: r.u64()?,
                    avail_mb: r.u64()?,
                    trunk_free_mb: r.u64()?,
                    is_disk_available: r.u8()? != 0,
                    is_trunk_available: r.u8()? != 0,
                })
            })
            .collect::<Result<_, ProtoError>>()?;
        Ok(VolumeStats {
            use_trunk_file,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::query::GroupRequest;

    #[test]
    fn ping_leader_replies_carry_32_byte_trunk_server_entries() {
        let list = vec![
            GroupTrunkServer {
                group: "group1".into(),
                server_id: "192.168.0.10".into(),
            },
            GroupTrunkServer {
                group: "group2".into(),
                server_id: "100001".into(),
            },
        ];
        let bytes = GroupTrunkServer::encode_all(&list);
        assert_eq!(bytes.len(), 64);
        assert_eq!(&bytes[..6], b"group1");
        assert_eq!(&bytes[16..28], b"192.168.0.10");
        assert_eq!(bytes[28..32], [0; 4]);
        assert_eq!(GroupTrunkServer::decode_all(&bytes).ok(), Some(list));
        assert_eq!(GroupTrunkServer::decode_all(&[]).ok(), Some(Vec::new()));
        assert!(GroupTrunkServer::decode_all(&bytes[..40]).is_err());
    }

    #[test]
    fn fixed_sizes() {
        assert_eq!(TrackerStatus::default().encode().len(), TrackerStatus::LEN);
        assert_eq!(
            TrackerStat::encode_all(&[TrackerStat::default()]).len(),
            1 + TRACKER_STAT_LEN
        );
        let s = StorageClusterStats {
            storages: vec![StorageClusterStat::default()],
            ..Default::default()
        };
        assert_eq!(s.encode().len(), 6 + STORAGE_CLUSTER_STAT_LEN);
        let v = VolumeStats {
            groups: vec![VolumeStat::default()],
            ..Default::default()
        };
        assert_eq!(v.encode().len(), 5 + VOLUME_STAT_LEN);
        assert_eq!(
            JoinLeader {
                port: 22122,
                ..Default::default()
            }
            .encode()
            .len(),
            24
        );
    }

    #[test]
    fn host_and_id_bodies() {
        let mut body = GroupRequest {
            group: "group1".into(),
        }
        .encode();
        body.extend_from_slice(b"127.0.0.2:23000");
        let g = GroupAndHost::decode(&body).expect("ok");
        assert_eq!((g.ip.as_str(), g.port), ("127.0.0.2", 23000));
        body.truncate(16);
        body.extend_from_slice(b"nohost");
        assert!(GroupAndHost::decode(&body).is_err());
        assert!(GroupAndId::decode(&[0u8; 16]).is_err());
        assert_eq!(
            FetchStorageIds::decode(&[0, 0, 0, 1]).ok(),
            Some(FetchStorageIds {
                start_index: 1,
                allow_empty: None
            })
        );
        assert!(FetchStorageIds::decode(&[0, 0, 0]).is_err());
        assert!(decode_host_port(b"x").is_err());
        assert!(decode_briefs(&[0u8; 66]).is_err());
    }

    #[test]
    fn ip_changed_reports_take_both_address_widths() {
        let r = IpChangedReport {
            group: "group1".into(),
            old_ip: "10.0.0.1".into(),
            new_ip: "10.0.0.9".into(),
        };
        let wide = r.encode();
        assert_eq!(wide.len(), 16 + 92);
        assert_eq!(&wide[16..24], b"10.0.0.1");
        assert_eq!(&wide[16 + 46..16 + 54], b"10.0.0.9");
        assert_eq!(IpChangedReport::decode(&wide).expect("wide"), r);
        let mut narrow = wide[..16].to_vec();
        narrow.extend_from_slice(&wide[16..32]);
        narrow.extend_from_slice(&wide[62..78]);
        assert_eq!(IpChangedReport::decode(&narrow).expect("narrow"), r);
        for len in [0, 16, 47, 49, 107, 109] {
            assert!(IpChangedReport::decode(&vec![0; len]).is_err(), "{len}");
        }
    }

    #[test]
    fn changelog_lines_parse_as_fastdfs_writes_them() {
        let body = b"1796573095 group1 10.0.0.1 3 10.0.0.9\n1796573096 group1 10.0.0.3 4 \n\
                     garbage line\n1796573097 group2 x 4 \n";
        let lines = ChangelogLine::parse_all(body);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            ChangelogLine {
                time: 1_796_573_095,
                group: "group1".into(),
                id: "10.0.0.1".into(),
                status: 3,
                new_id: "10.0.0.9".into(),
            }
        );
        assert_eq!((lines[1].status, lines[1].new_id.as_str()), (4, ""));
        assert_eq!(lines[2].group, "group2");
    }

    #[test]
    fn fence_requests_carry_a_flag_then_a_member() {
        let r = FenceRequest {
            fenced: true,
            member: GroupAndId {
                group: "group1".into(),
                id: "100002".into(),
            },
        };
        let body = r.encode();
        assert_eq!(body[0], 1);
        assert_eq!(&body[1..7], b"group1");
        assert_eq!(&body[17..], b"100002");
        assert_eq!(FenceRequest::decode(&body).expect("decode"), r);
        let mut odd = body.clone();
        odd[0] = 2;
        assert!(
            matches!(
                FenceRequest::decode(&odd),
                Err(ProtoError::BadField {
                    what: "fence flag",
                    ..
                })
            ),
            "a bad flag is named as such"
        );
        assert!(FenceRequest::decode(&[]).is_err());
        assert!(FenceRequest::decode(&body[..17]).is_err(), "no id");
    }
}
