//! Monitor replies: group statistics (90/91) and storage statistics (92), in the
//! V6.15+ layouts that `fdfs_monitor` V6.16 and Java v1.39 read.
//!
//! ```text
//! group-stat (113 bytes):
//! | group_name[17] | total_mb | free_mb | reserved_mb | trunk_free_mb | storage_count |
//! | storage_port | readable_count | writable_count | current_write_server |
//! | store_path_count | subdir_count_per_path | current_trunk_file_id |   (all u64 BE)
//!
//! storage-stat (487 bytes IPv4, 517 bytes IPv6):
//! | status u8 | rw_mode u8 | id[16] | ip[16|46] | src_id[16] | version[8] |
//! | join_time | up_time | total_mb | free_mb | reserved_mb | upload_priority |
//! | store_path_count | subdir_count_per_path | current_write_path | storage_port |
//! | stats[348] | if_trunk_server u8 |
//!
//! stats (348 bytes, also the body of BEAT):
//! | alloc u32 | current u32 | max u32 | 38 × u64 counters | 4 × u64 timestamps |
//! ```

use super::ProtoError;
use super::fields::{
    GROUP_NAME_LEN, IpWidth, Reader, STORAGE_ID_LEN, VERSION_LEN, fixed_text, put_fixed, put_i64,
    put_u32, put_u64,
};

/// Size of a V6.13.1+ group-stat record.
pub const GROUP_STAT_LEN: usize = 113;
/// Size of a V4–V6.12 ("classic") group-stat record.
pub const CLASSIC_GROUP_STAT_LEN: usize = 105;
/// Size of a V5.04–V6.10 ("classic") storage-stat record.
pub const CLASSIC_STORAGE_STAT_LEN: usize = 612;

/// Which record layouts 90/91/92 answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
pub enum MonitorLayout {
    /// V6.15+: 113-byte group records, 487/517-byte storage records.
    #[default]
    #[serde(rename = "v6.16")]
    V616,
    /// V5.04–V6.10: 105-byte group records, 612-byte storage records
    /// (fdfs_client-py / py3fdfs, Java ≤ 1.3x).
    #[serde(rename = "classic")]
    Classic,
}
/// Size of the statistics block.
pub const STATS_LEN: usize = 348;
/// Number of u64 counters in the statistics block.
pub const COUNTER_COUNT: usize = 38;

/// Each counter's name, as `fdfs_monitor` prints it and `storage_stat.dat` keeps it.
pub const COUNTER_NAMES: [&str; COUNTER_COUNT] = [
    "total_upload_count",
    "success_upload_count",
    "total_append_count",
    "success_append_count",
    "total_modify_count",
    "success_modify_count",
    "total_truncate_count",
    "success_truncate_count",
    "total_set_meta_count",
    "success_set_meta_count",
    "total_delete_count",
    "success_delete_count",
    "total_download_count",
    "success_download_count",
    "total_get_meta_count",
    "success_get_meta_count",
    "total_create_link_count",
    "success_create_link_count",
    "total_delete_link_count",
    "success_delete_link_count",
    "total_upload_bytes",
    "success_upload_bytes",
    "total_append_bytes",
    "success_append_bytes",
    "total_modify_bytes",
    "success_modify_bytes",
    "total_download_bytes",
    "success_download_bytes",
    "total_sync_in_bytes",
    "success_sync_in_bytes",
    "total_sync_out_bytes",
    "success_sync_out_bytes",
    "total_file_open_count",
    "success_file_open_count",
    "total_file_read_count",
    "success_file_read_count",
    "total_file_write_count",
    "success_file_write_count",
];

/// Indices into [`StorageStats::counters`]; each count is a (total, success) pair.
pub mod counter {
    pub const TOTAL_UPLOAD: usize = 0;
    pub const SUCCESS_UPLOAD: usize = 1;
    pub const TOTAL_APPEND: usize = 2;
    pub const SUCCESS_APPEND: usize = 3;
    pub const TOTAL_MODIFY: usize = 4;
    pub const SUCCESS_MODIFY: usize = 5;
    pub const TOTAL_TRUNCATE: usize = 6;
    pub const SUCCESS_TRUNCATE: usize = 7;
    pub const TOTAL_SET_META: usize = 8;
    pub const SUCCESS_SET_META: usize = 9;
    pub const TOTAL_DELETE: usize = 10;
    pub const SUCCESS_DELETE: usize = 11;
    pub const TOTAL_DOWNLOAD: usize = 12;
    pub const SUCCESS_DOWNLOAD: usize = 13;
    pub const TOTAL_GET_META: usize = 14;
    pub const SUCCESS_GET_META: usize = 15;
    pub const TOTAL_CREATE_LINK: usize = 16;
    pub const SUCCESS_CREATE_LINK: usize = 17;
    pub const TOTAL_DELETE_LINK: usize = 18;
    pub const SUCCESS_DELETE_LINK: usize = 19;
    pub const TOTAL_UPLOAD_BYTES: usize = 20;
    pub const SUCCESS_UPLOAD_BYTES: usize = 21;
    pub const TOTAL_APPEND_BYTES: usize = 22;
    pub const SUCCESS_APPEND_BYTES: usize = 23;
    pub const TOTAL_MODIFY_BYTES: usize = 24;
    pub const SUCCESS_MODIFY_BYTES: usize = 25;
    pub const TOTAL_DOWNLOAD_BYTES: usize = 26;
    pub const SUCCESS_DOWNLOAD_BYTES: usize = 27;
    pub const TOTAL_SYNC_IN_BYTES: usize = 28;
    pub const SUCCESS_SYNC_IN_BYTES: usize = 29;
    pub const TOTAL_SYNC_OUT_BYTES: usize = 30;
    pub const SUCCESS_SYNC_OUT_BYTES: usize = 31;
    pub const TOTAL_FILE_OPEN: usize = 32;
    pub const SUCCESS_FILE_OPEN: usize = 33;
    pub const TOTAL_FILE_READ: usize = 34;
    pub const SUCCESS_FILE_READ: usize = 35;
    pub const TOTAL_FILE_WRITE: usize = 36;
    pub const SUCCESS_FILE_WRITE: usize = 37;
}

/// One group's statistics (reply record of 90 and 91).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStat {
    pub group: String,
    pub total_mb: u64,
    pub free_mb: u64,
    pub reserved_mb: u64,
    pub trunk_free_mb: u64,
    pub storage_count: u64,
    /// −1 when members listen on different ports.
    pub storage_port: i64,
    pub readable_count: u64,
    pub writable_count: u64,
    pub current_write_server: u64,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    /// −1 when trunk storage is off.
    pub current_trunk_file_id: i64,
}

impl GroupStat {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_fixed(out, self.group.as_bytes(), GROUP_NAME_LEN + 1);
        for v in [
            self.total_mb,
            self.free_mb,
            self.reserved_mb,
            self.trunk_free_mb,
            self.storage_count,
        ] {
            put_u64(out, v);
        }
        put_i64(out, self.storage_port);
        for v in [
            self.readable_count,
            self.writable_count,
            self.current_write_server,
            self.store_path_count,
            self.subdir_count_per_path,
        ] {
            put_u64(out, v);
        }
        put_i64(out, self.current_trunk_file_id);
    }

    /// The classic 105-byte record: no reserved_mb, an HTTP port, one active count.
    pub fn encode_classic_into(&self, out: &mut Vec<u8>) {
        put_fixed(out, self.group.as_bytes(), GROUP_NAME_LEN + 1);
        for v in [
            self.total_mb,
            self.free_mb,
            self.trunk_free_mb,
            self.storage_count,
        ] {
            put_u64(out, v);
        }
        put_i64(out, self.storage_port);
        put_u64(out, 0); // storage_http_port, gone since V6.13
        for v in [
            self.writable_count,
            self.current_write_server,
            self.store_path_count,
            self.subdir_count_per_path,
        ] {
            put_u64(out, v);
        }
        put_i64(out, self.current_trunk_file_id);
    }

    pub fn encode_all_as(stats: &[GroupStat], layout: MonitorLayout) -> Vec<u8> {
        match layout {
            MonitorLayout::V616 => Self::encode_all(stats),
            MonitorLayout::Classic => {
                let mut out = Vec::with_capacity(stats.len() * CLASSIC_GROUP_STAT_LEN);
                for s in stats {
                    s.encode_classic_into(&mut out);
                }
                out
            }
        }
    }

    /// Decodes classic records (the active count lands in both readable and writable).
    pub fn decode_all_classic(body: &[u8]) -> Result<Vec<Self>, ProtoError> {
        if !body.len().is_multiple_of(CLASSIC_GROUP_STAT_LEN) {
            return Err(ProtoError::BadLength {
                what: "classic group-stat list",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body, "classic group-stat list");
        (0..body.len() / CLASSIC_GROUP_STAT_LEN)
            .map(|_| {
                let group = r.fixed(GROUP_NAME_LEN + 1)?;
                let total_mb = r.u64()?;
                let free_mb = r.u64()?;
                let trunk_free_mb = r.u64()?;
                let storage_count = r.u64()?;
                let storage_port = r.i64()?;
                let _http_port = r.u64()?;
                let active = r.u64()?;
                Ok(GroupStat {
                    group,
                    total_mb,
                    free_mb,
                    reserved_mb: 0,
                    trunk_free_mb,
                    storage_count,
                    storage_port,
                    readable_count: active,
                    writable_count: active,
                    current_write_server: r.u64()?,
                    store_path_count: r.u64()?,
                    subdir_count_per_path: r.u64()?,
                    current_trunk_file_id: r.i64()?,
                })
            })
            .collect()
    }

    fn decode_one(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        Ok(GroupStat {
            group: r.fixed(GROUP_NAME_LEN + 1)?,
            total_mb: r.u64()?,
            free_mb: r.u64()?,
            reserved_mb: r.u64()?,
            trunk_free_mb: r.u64()?,
            storage_count: r.u64()?,
            storage_port: r.i64()?,
            readable_count: r.u64()?,
            writable_count: r.u64()?,
            current_write_server: r.u64()?,
            store_path_count: r.u64()?,
            subdir_count_per_path: r.u64()?,
            current_trunk_file_id: r.i64()?,
        })
    }

    pub fn encode_all(stats: &[GroupStat]) -> Vec<u8> {
        let mut out = Vec::with_capacity(stats.len() * GROUP_STAT_LEN);
        for s in stats {
            s.encode_into(&mut out);
        }
        out
    }

    pub fn decode_all(body: &[u8]) -> Result<Vec<Self>, ProtoError> {
        if !body.len().is_multiple_of(GROUP_STAT_LEN) {
            return Err(ProtoError::BadLength {
                what: "group-stat list",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body, "group-stat list");
        (0..body.len() / GROUP_STAT_LEN)
            .map(|_| Self::decode_one(&mut r))
            .collect()
    }
}

/// The 348-byte statistics block a storage reports in BEAT and the tracker lists in 92.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageStats {
    /// alloc, current and max connection counts.
    pub connections: [u32; 3],
    pub counters: [u64; COUNTER_COUNT],
    pub last_source_update: u64,
    pub last_sync_update: u64,
    pub last_synced_timestamp: u64,
    pub last_heart_beat_time: u64,
}

impl Default for StorageStats {
    fn default() -> Self {
        StorageStats {
            connections: [0; 3],
            counters: [0; COUNTER_COUNT],
            last_source_update: 0,
            last_sync_update: 0,
            last_synced_timestamp: 0,
            last_heart_beat_time: 0,
        }
    }
}

impl StorageStats {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for c in self.connections {
            put_u32(out, c);
        }
        for c in self.counters {
            put_u64(out, c);
        }
        for t in [
            self.last_source_update,
            self.last_sync_update,
            self.last_synced_timestamp,
            self.last_heart_beat_time,
        ] {
            put_u64(out, t);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATS_LEN);
        self.encode_into(&mut out);
        out
    }

    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        let mut s = StorageStats::default();
        for c in &mut s.connections {
            *c = r.u32()?;
        }
        for c in &mut s.counters {
            *c = r.u64()?;
        }
        s.last_source_update = r.u64()?;
        s.last_sync_update = r.u64()?;
        s.last_synced_timestamp = r.u64()?;
        s.last_heart_beat_time = r.u64()?;
        Ok(s)
    }
}

/// How far a member's replication trails the rest of its group, judged as `fdfs_monitor` does:
/// the newest `last_source_update` among the other members against this member's
/// `last_synced_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncDelay {
    /// No other member has changed anything: nothing to be behind on.
    NothingToSync,
    /// Others have changes but this member has not reported receiving any.
    NeverSynced,
    Seconds(u64),
}

impl SyncDelay {
    /// The delay of `member` among the storages of its group, as listed by 92.
    pub fn of_member(member: &StorageStat, group: &[StorageStat]) -> Self {
        SyncDelay::of(
            group
                .iter()
                .filter(|o| o.id != member.id)
                .map(|o| o.stats.last_source_update),
            member.stats.last_synced_timestamp,
        )
    }

    pub fn of(others_last_source_update: impl IntoIterator<Item = u64>, synced: u64) -> Self {
        let newest = others_last_source_update.into_iter().max().unwrap_or(0);
        if newest == 0 {
            SyncDelay::NothingToSync
        } else if synced == 0 {
            SyncDelay::NeverSynced
        } else {
            SyncDelay::Seconds(newest.saturating_sub(synced))
        }
    }

    /// Seconds behind; 0 when there is nothing to sync, `None` when never synced.
    pub fn seconds(self) -> Option<u64> {
        match self {
            SyncDelay::NothingToSync => Some(0),
            SyncDelay::NeverSynced => None,
            SyncDelay::Seconds(s) => Some(s),
        }
    }
}

/// `fdfs_monitor`'s suffix of the `last_synced_timestamp` line: empty, `(never synced)` or
/// `(1h:02m:03s delay)` style.
impl std::fmt::Display for SyncDelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = match *self {
            SyncDelay::NothingToSync => return Ok(()),
            SyncDelay::NeverSynced => return f.write_str("(never synced)"),
            SyncDelay::Seconds(s) => s,
        };
        let (day, rem) = (secs / 86_400, secs % 86_400);
        let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
        if day != 0 {
            write!(f, "({day} days {hour:02}h:{minute:02}m:{second:02}s delay)")
        } else if hour != 0 {
            write!(f, "({hour:02}h:{minute:02}m:{second:02}s delay)")
        } else if minute != 0 {
            write!(f, "({minute:02}m:{second:02}s delay)")
        } else {
            write!(f, "({second}s delay)")
        }
    }
}

/// One storage's statistics (reply record of 92), V6.15+ layout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageStat {
    pub status: u8,
    /// R_OK (4) | W_OK (2).
    pub rw_mode: u8,
    pub id: String,
    pub ip: String,
    pub src_id: String,
    pub version: String,
    pub join_time: u64,
    pub up_time: u64,
    pub total_mb: u64,
    pub free_mb: u64,
    pub reserved_mb: u64,
    pub upload_priority: u64,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    pub current_write_path: u64,
    pub storage_port: u64,
    pub stats: StorageStats,
    pub if_trunk_server: bool,
}

impl StorageStat {
    /// Record size for an IP width: 487 (IPv4) or 517 (IPv6).
    pub fn record_len(width: IpWidth) -> usize {
        1 + 1
            + STORAGE_ID_LEN
            + width.full_len()
            + STORAGE_ID_LEN
            + VERSION_LEN
            + 10 * 8
            + STATS_LEN
            + 1
    }

    pub fn encode_into(&self, out: &mut Vec<u8>, width: IpWidth) {
        out.push(self.status);
        out.push(self.rw_mode);
        put_fixed(out, self.id.as_bytes(), STORAGE_ID_LEN);
        put_fixed(out, self.ip.as_bytes(), width.full_len());
        put_fixed(out, self.src_id.as_bytes(), STORAGE_ID_LEN);
        put_fixed(out, self.version.as_bytes(), VERSION_LEN);
        for v in [
            self.join_time,
            self.up_time,
            self.total_mb,
            self.free_mb,
            self.reserved_mb,
            self.upload_priority,
            self.store_path_count,
            self.subdir_count_per_path,
            self.current_write_path,
            self.storage_port,
        ] {
            put_u64(out, v);
        }
        self.stats.encode_into(out);
        out.push(u8::from(self.if_trunk_server));
    }

    fn decode_one(r: &mut Reader<'_>, width: IpWidth) -> Result<Self, ProtoError> {
        Ok(StorageStat {
            status: r.u8()?,
            rw_mode: r.u8()?,
            id: r.fixed(STORAGE_ID_LEN)?,
            ip: r.fixed(width.full_len())?,
            src_id: r.fixed(STORAGE_ID_LEN)?,
            version: r.fixed(VERSION_LEN)?,
            join_time: r.u64()?,
            up_time: r.u64()?,
            total_mb: r.u64()?,
            free_mb: r.u64()?,
            reserved_mb: r.u64()?,
            upload_priority: r.u64()?,
            store_path_count: r.u64()?,
            subdir_count_per_path: r.u64()?,
            current_write_path: r.u64()?,
            storage_port: r.u64()?,
            stats: StorageStats::decode_from(r)?,
            if_trunk_server: r.u8()? != 0,
        })
    }

    pub fn encode_all(stats: &[StorageStat], width: IpWidth) -> Vec<u8> {
        let mut out = Vec::with_capacity(stats.len() * Self::record_len(width));
        for s in stats {
            s.encode_into(&mut out, width);
        }
        out
    }

    /// The classic 612-byte record (V5.04–V6.10): 16-byte IP, a 128-byte domain
    /// name, a 6-byte version, no rw_mode or reserved_mb, an HTTP port.
    pub fn encode_classic_into(&self, out: &mut Vec<u8>) {
        out.push(self.status);
        put_fixed(out, self.id.as_bytes(), STORAGE_ID_LEN);
        put_fixed(out, self.ip.as_bytes(), 16);
        put_fixed(out, b"", 128);
        put_fixed(out, self.src_id.as_bytes(), STORAGE_ID_LEN);
        put_fixed(out, self.version.as_bytes(), 6);
        for v in [
            self.join_time,
            self.up_time,
            self.total_mb,
            self.free_mb,
            self.upload_priority,
            self.store_path_count,
            self.subdir_count_per_path,
            self.current_write_path,
            self.storage_port,
            0, // storage_http_port
        ] {
            put_u64(out, v);
        }
        self.stats.encode_into(out);
        out.push(u8::from(self.if_trunk_server));
    }

    pub fn encode_all_as(stats: &[StorageStat], width: IpWidth, layout: MonitorLayout) -> Vec<u8> {
        match layout {
            MonitorLayout::V616 => Self::encode_all(stats, width),
            MonitorLayout::Classic => {
                let mut out = Vec::with_capacity(stats.len() * CLASSIC_STORAGE_STAT_LEN);
                for s in stats {
                    s.encode_classic_into(&mut out);
                }
                out
            }
        }
    }

    /// Decodes classic 612-byte records.
    pub fn decode_all_classic(body: &[u8]) -> Result<Vec<Self>, ProtoError> {
        if !body.len().is_multiple_of(CLASSIC_STORAGE_STAT_LEN) {
            return Err(ProtoError::BadLength {
                what: "classic storage-stat list",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body, "classic storage-stat list");
        (0..body.len() / CLASSIC_STORAGE_STAT_LEN)
            .map(|_| {
                let status = r.u8()?;
                let id = r.fixed(STORAGE_ID_LEN)?;
                let ip = r.fixed(16)?;
                let _domain = r.take(128)?;
                let src_id = r.fixed(STORAGE_ID_LEN)?;
                let version = r.fixed(6)?;
                let mut v = [0u64; 10];
                for x in &mut v {
                    *x = r.u64()?;
                }
                Ok(StorageStat {
                    status,
                    rw_mode: 6,
                    id,
                    ip,
                    src_id,
                    version,
                    join_time: v[0],
                    up_time: v[1],
                    total_mb: v[2],
                    free_mb: v[3],
                    reserved_mb: 0,
                    upload_priority: v[4],
                    store_path_count: v[5],
                    subdir_count_per_path: v[6],
                    current_write_path: v[7],
                    storage_port: v[8],
                    stats: StorageStats::decode_from(&mut r)?,
                    if_trunk_server: r.u8()? != 0,
                })
            })
            .collect()
    }

    /// Decodes a list, telling the variant apart by record size as clients do.
    pub fn decode_all(body: &[u8]) -> Result<Vec<Self>, ProtoError> {
        let width = [IpWidth::V4, IpWidth::V6]
            .into_iter()
            .find(|w| body.len().is_multiple_of(Self::record_len(*w)))
            .ok_or(ProtoError::BadLength {
                what: "storage-stat list",
                len: body.len(),
            })?;
        let n = body.len() / Self::record_len(width);
        let mut r = Reader::new(body, "storage-stat list");
        (0..n).map(|_| Self::decode_one(&mut r, width)).collect()
    }
}

/// Body of 92: a group and, optionally, one storage id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStorageRequest {
    pub group: String,
    pub storage_id: Option<String>,
}

impl ListStorageRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        if let Some(id) = &self.storage_id {
            out.extend_from_slice(&id.as_bytes()[..id.len().min(STORAGE_ID_LEN - 1)]);
        }
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        if !(GROUP_NAME_LEN..GROUP_NAME_LEN + STORAGE_ID_LEN).contains(&body.len()) {
            return Err(ProtoError::BadLength {
                what: "list-storage request",
                len: body.len(),
            });
        }
        let group = fixed_text(&body[..GROUP_NAME_LEN]);
        let id = fixed_text(&body[GROUP_NAME_LEN..]);
        Ok(ListStorageRequest {
            group,
            storage_id: (!id.is_empty()).then_some(id),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sync_delay_reads_like_fdfs_monitor() {
        assert_eq!(SyncDelay::of([], 5).to_string(), "");
        assert_eq!(SyncDelay::of([0, 0], 0), SyncDelay::NothingToSync);
        assert_eq!(SyncDelay::of([100], 0).to_string(), "(never synced)");
        assert_eq!(SyncDelay::of([100, 140], 133).to_string(), "(7s delay)");
        assert_eq!(
            SyncDelay::of([100], 100 - 61).to_string(),
            "(01m:01s delay)"
        );
        assert_eq!(
            SyncDelay::of([7200], 7200 - 3723).to_string(),
            "(01h:02m:03s delay)"
        );
        let two_days = 2 * 86_400 + 5;
        assert_eq!(
            SyncDelay::of([two_days], 1).to_string(),
            "(2 days 00h:00m:04s delay)"
        );
        // A member ahead of the others' last change is not behind.
        assert_eq!(SyncDelay::of([100], 150).seconds(), Some(0));
        assert_eq!(SyncDelay::NeverSynced.seconds(), None);
    }

    use super::*;

    #[test]
    fn record_sizes() {
        assert_eq!(StorageStat::record_len(IpWidth::V4), 487);
        assert_eq!(StorageStat::record_len(IpWidth::V6), 517);
        assert_eq!(StorageStats::default().encode().len(), STATS_LEN);
        let mut out = Vec::new();
        GroupStat::default().encode_into(&mut out);
        assert_eq!(out.len(), GROUP_STAT_LEN);
        out.clear();
        GroupStat::default().encode_classic_into(&mut out);
        assert_eq!(out.len(), CLASSIC_GROUP_STAT_LEN);
        out.clear();
        StorageStat::default().encode_classic_into(&mut out);
        assert_eq!(out.len(), CLASSIC_STORAGE_STAT_LEN);
    }

    #[test]
    fn classic_round_trip() {
        let g = GroupStat {
            group: "group1".into(),
            total_mb: 10,
            free_mb: 5,
            storage_count: 2,
            storage_port: 23000,
            readable_count: 1,
            writable_count: 1,
            store_path_count: 1,
            subdir_count_per_path: 256,
            current_trunk_file_id: -1,
            ..Default::default()
        };
        let bytes = GroupStat::encode_all_as(std::slice::from_ref(&g), MonitorLayout::Classic);
        assert_eq!(GroupStat::decode_all_classic(&bytes).ok(), Some(vec![g]));
        let s = StorageStat {
            status: 7,
            rw_mode: 6,
            id: "127.0.0.2".into(),
            ip: "127.0.0.2".into(),
            version: "6.16.1".into(),
            storage_port: 23000,
            ..Default::default()
        };
        let bytes = StorageStat::encode_all_as(
            std::slice::from_ref(&s),
            IpWidth::V4,
            MonitorLayout::Classic,
        );
        assert_eq!(bytes.len(), 612);
        let back = StorageStat::decode_all_classic(&bytes).expect("decodes");
        // The classic version field holds 6 bytes.
        assert_eq!(back[0].version, "6.16.1");
        assert_eq!(back[0].id, s.id);
    }
}
