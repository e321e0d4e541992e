//! Typed node configuration: TOML files of our own, or FastDFS's `tracker.conf` /
//! `storage.conf` / `client.conf` for the keys we implement.
//!
//! An unknown key or a bad value is a start-up error. Keys FastDFS knows but we do
//! not implement yet are logged and skipped, so an existing `.conf` still loads.
//!
//! This module holds the types and the TOML reader; [`fastdfs`] reads FastDFS's files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::proto::IpWidth;
use crate::proto::monitor::MonitorLayout;
use crate::proto::query::FetchAllFormat;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config {path}, line {line}: unknown key {key:?}")]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error("config {path}, line {line}: bad value {value:?} for {key}: {reason}")]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        reason: String,
    },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// `reserved_storage_space`: an absolute amount or a share of the disk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReservedSpace {
    Mb(u64),
    /// Fraction in 0..1.
    Ratio(f64),
}

impl Default for ReservedSpace {
    fn default() -> Self {
        ReservedSpace::Mb(1024)
    }
}

impl ReservedSpace {
    /// Parses `10%`, `20.00%`, `1024MB`, `1G`, `512K`, and a bare number as bytes, as
    /// FastDFS V6 reads `reserved_storage_space` (kept in whole MB, rounded down).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(pct) = t.strip_suffix('%') {
            let v: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("{t:?} is not a percentage"))?;
            if !(0.0..100.0).contains(&v) {
                return Err(format!("{t:?} must be below 100%"));
            }
            return Ok(ReservedSpace::Ratio(v / 100.0));
        }
        let upper = t.to_ascii_uppercase();
        let digits = upper.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &upper[digits.len()..];
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a size"))?;
        let mb = match unit {
            "" => n >> 20,
            "K" | "KB" => n >> 10,
            "M" | "MB" => n,
            "G" | "GB" => n << 10,
            "T" | "TB" => n << 20,
            _ => return Err(format!("{t:?} has unknown unit {unit:?}")),
        };
        Ok(ReservedSpace::Mb(mb))
    }

    /// Reserved MB for a disk of `total_mb`.
    pub fn reserved_mb(&self, total_mb: u64) -> u64 {
        match *self {
            ReservedSpace::Mb(mb) => mb,
            ReservedSpace::Ratio(r) => (total_mb as f64 * r) as u64,
        }
    }

    /// Whether `free_mb` of `total_mb` leaves more than the reserve.
    pub fn has_room(&self, free_mb: u64, total_mb: u64) -> bool {
        match *self {
            ReservedSpace::Mb(mb) => free_mb > mb,
            ReservedSpace::Ratio(r) => total_mb > 0 && (free_mb as f64 / total_mb as f64) > r,
        }
    }

    /// The text FastDFS sends in PARAMETER_REQ.
    pub fn to_fastdfs_text(&self) -> String {
        match *self {
            ReservedSpace::Mb(mb) => format!("{mb}MB"),
            ReservedSpace::Ratio(r) => format!("{:.2}%", r * 100.0),
        }
    }
}

impl<'de> Deserialize<'de> for ReservedSpace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ReservedSpace::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Wire-compatibility choices where FastDFS versions disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compat {
    /// IP field width in tracker replies: 15 (default) or 45.
    pub ip_width: IpWidth,
    /// Form of the QUERY_FETCH_ALL (105) reply.
    pub fetch_all_format: FetchAllFormat,
    /// Record layouts of 90/91/92: `v6.16` (113/487 bytes) or `classic` (105/612 bytes).
    pub monitor_layout: MonitorLayout,
}

impl Compat {
    /// Short name printed next to a listen address, e.g. `ip45` or `ip15,classic`.
    pub fn profile_name(&self) -> String {
        let mut parts = vec![match self.ip_width {
            IpWidth::V4 => "ip15",
            IpWidth::V6 => "ip45",
        }];
        if self.fetch_all_format == FetchAllFormat::Legacy {
            parts.push("fetch-all-legacy");
        }
        if self.monitor_layout == MonitorLayout::Classic {
            parts.push("classic");
        }
        parts.join(",")
    }
}

/// What file names carry as their source with `use_storage_id` (`id_type_in_filename`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// The storage's IPv4 address.
    #[default]
    Ip,
    /// The storage's numeric id (survives address changes).
    Id,
}

impl IdType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdType::Ip => "ip",
            IdType::Id => "id",
        }
    }
}

/// An additional tracker port with its own compatibility profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    pub bind: String,
    pub compat: Compat,
}

/// Settings of the tracker role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Listen address.
    pub bind: String,
    /// Where the tracker keeps its state.
    pub base_path: PathBuf,
    /// Group choice: 0 round robin, 1 `store_group`, 2 most free space.
    pub store_lookup: u8,
    pub store_group: String,
    /// Storage choice: 0 round robin, 1 first by id, 2 by upload priority.
    pub store_server: u8,
    /// Store path choice: 0 round robin, 2 most free space.
    pub store_path: u8,
    /// Download server: 0 round robin, 1 source first.
    pub download_server: u8,
    pub reserved_storage_space: ReservedSpace,
    /// Seconds without a heartbeat before an ACTIVE storage goes OFFLINE.
    pub check_active_interval: u64,
    pub storage_sync_file_max_delay: u64,
    pub storage_sync_file_max_time: u64,
    pub max_connections: usize,
    /// Seconds a connection may stay idle or stall mid-packet.
    pub network_timeout: u64,
    /// Seconds a connection may sit idle between packets (clients pool connections).
    pub idle_timeout: u64,
    /// Seconds a new connection (or an HTTP keep-alive one) has to send a whole request
    /// header: 10 by default, FastDFS's `network_timeout` when a `.conf` file sets it.
    pub header_timeout: u64,
    /// Largest request body the tracker reads (`max_buff_size`).
    pub max_body_len: u64,
    pub compat: Compat,
    /// Identify storages by the ids of `storage_ids_filename` instead of their IPs.
    pub use_storage_id: bool,
    pub storage_ids_filename: PathBuf,
    /// With `use_storage_id`: name files after the storage id (`id`) or IP (`ip`).
    pub id_type_in_filename: IdType,
    /// Accept the storage id a storage announces in JOIN (FastDFS default: true).
    pub trust_storage_server_id: bool,
    /// Milliseconds between a follower's pings to the leader; 3 misses start an election.
    pub leader_ping_interval_ms: u64,
    /// More ports, each with its own compat profile (e.g. 45-byte IPs for old SDKs).
    pub listeners: Vec<ListenerConfig>,
    /// HTTP listener for `/api/v1/cluster`, `/healthz`, `/readyz`, `/metrics`; empty = none.
    pub http_bind: String,
    /// Client addresses that may connect (FastDFS's `allow_hosts`); empty allows all.
    pub allow_hosts: Vec<String>,
    /// Small files merged into trunk files; storages learn it through PARAMETER_REQ.
    pub trunk: TrunkConfig,
    /// Timers FastDFS has no key for.
    pub timers: TrackerTimers,
}

/// Trunk storage, as FastDFS's tracker.conf sets it (sizes in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrunkConfig {
    pub use_trunk_file: bool,
    /// The smallest slot given out; a smaller request still takes this much.
    pub slot_min_size: u32,
    /// Files whose slot (24-byte header included) would be larger are stored plain.
    pub slot_max_size: u32,
    /// Slot sizes are rounded up to a multiple of this (0: not rounded).
    pub trunk_alloc_alignment_size: u32,
    /// Bytes of each trunk file.
    pub trunk_file_size: u32,
    /// Make trunk files ahead of need, on a schedule, until this much trunk space is free.
    pub trunk_create_file_advance: bool,
    /// When the first advance creation of a day runs (UTC).
    pub trunk_create_file_time_base: TimeOfDay,
    /// Seconds between advance creations.
    pub trunk_create_file_interval: u32,
    /// Free trunk space (bytes) the advance creation makes up to.
    pub trunk_create_file_space_threshold: u64,
    /// A trunk server that loads its free space checks each free block's slot header on
    /// disk and leaves out blocks that hold a file.
    pub trunk_init_check_occupying: bool,
    /// Seconds that must pass between two compactions of the trunk binlog forced by its
    /// length (0: no wait).
    pub trunk_compress_binlog_min_interval: u32,
    /// Seconds between scheduled compactions of the trunk binlog (0: none scheduled).
    pub trunk_compress_binlog_interval: u32,
    /// When the first scheduled compaction of a day runs (UTC).
    pub trunk_compress_binlog_time_base: TimeOfDay,
}

/// A time of day, `HH:MM`, as FastDFS's schedule keys take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl TimeOfDay {
    /// Seconds from midnight.
    pub fn seconds(&self) -> u32 {
        u32::from(self.hour) * 3600 + u32::from(self.minute) * 60
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a time of day (HH:MM)");
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        let hour: u8 = h.trim().parse().map_err(|_| bad())?;
        let minute: u8 = m.trim().parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay { hour, minute })
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TimeOfDay::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Default for TrunkConfig {
    fn default() -> Self {
        TrunkConfig {
            use_trunk_file: false,
            slot_min_size: 256,
            slot_max_size: 1024 * 1024,
            trunk_alloc_alignment_size: 256,
            trunk_file_size: 64 * 1024 * 1024,
            trunk_create_file_advance: false,
            trunk_create_file_time_base: TimeOfDay { hour: 2, minute: 0 },
            trunk_create_file_interval: 86400,
            trunk_create_file_space_threshold: 20 * 1024 * 1024 * 1024,
            trunk_init_check_occupying: false,
            trunk_compress_binlog_min_interval: 86400,
            trunk_compress_binlog_interval: 86400,
            trunk_compress_binlog_time_base: TimeOfDay { hour: 3, minute: 0 },
        }
    }
}

impl TrunkConfig {
    /// FastDFS's adjustments: trunk files of at least 4 MB, and a slot of at most half a
    /// trunk file.
    pub fn normalized(mut self) -> Result<Self, ConfigError> {
        if self.slot_min_size <= crate::storage::trunk::HEADER_LEN as u32 {
            return Err(ConfigError::Invalid {
                key: "slot_min_size",
                reason: "must be above the 24-byte slot header".into(),
            });
        }
        if self.slot_max_size <= self.slot_min_size {
            return Err(ConfigError::Invalid {
                key: "slot_max_size",
                reason: "must be above slot_min_size".into(),
            });
        }
        self.trunk_file_size = self.trunk_file_size.max(4 * 1024 * 1024);
        self.slot_max_size = self.slot_max_size.min(self.trunk_file_size / 2);
        Ok(self)
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            bind: "0.0.0.0:22122".into(),
            base_path: PathBuf::from("fdfs-tracker"),
            store_lookup: 0,
            store_group: String::new(),
            store_server: 0,
            store_path: 0,
            download_server: 0,
            reserved_storage_space: ReservedSpace::default(),
            check_active_interval: 100,
            storage_sync_file_max_delay: 86400,
            storage_sync_file_max_time: 300,
            max_connections: 1024,
            network_timeout: 60,
            idle_timeout: 900,
            header_timeout: 10,
            max_body_len: 128 * 1024,
            compat: Compat::default(),
            use_storage_id: false,
            storage_ids_filename: PathBuf::from("storage_ids.conf"),
            id_type_in_filename: IdType::Ip,
            trust_storage_server_id: true,
            leader_ping_interval_ms: 1000,
            listeners: Vec::new(),
            http_bind: String::new(),
            allow_hosts: Vec::new(),
            trunk: TrunkConfig::default(),
            timers: TrackerTimers::default(),
        }
    }
}

/// Settings of the storage role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub bind: String,
    pub group_name: String,
    pub base_path: PathBuf,
    /// Store paths; empty means `base_path` alone.
    pub store_paths: Vec<PathBuf>,
    pub subdir_count_per_path: u32,
    /// Trackers as `host:port`; a host that resolves to several addresses names several trackers.
    pub tracker_servers: Vec<String>,
    pub heart_beat_interval: u64,
    pub stat_report_interval: u64,
    /// Seconds between two writes of `data/storage_stat.dat` (and one at shutdown).
    pub sync_stat_file_interval: u64,
    /// Bytes read or written per I/O step, and the cap on non-streamed bodies.
    pub buff_size: u64,
    /// fsync a file being written after every this many bytes, before it is put in place,
    /// and its directory after; 0 (the default, as FastDFS) leaves it to the kernel.
    pub fsync_after_written_bytes: u64,
    /// Milliseconds a caught-up push waits after the binlog grows before it reads and
    /// pushes what came (FastDFS's `sync_wait_msec`: how long its caught-up sync thread
    /// sleeps before reading the binlog again). Changes arriving in that time go together,
    /// with one wake-up of the push and of the peer for all of them; 0 pushes every
    /// change as it comes.
    pub sync_wait_msec: u64,
    pub file_distribute_path_mode: u8,
    pub file_distribute_rotate_count: u32,
    pub upload_priority: u64,
    pub max_connections: usize,
    pub network_timeout: u64,
    /// Seconds a connection may sit idle between packets (clients pool connections).
    pub idle_timeout: u64,
    /// Seconds a new connection (or an HTTP keep-alive one) has to send a whole request
    /// header: 10 by default, FastDFS's `network_timeout` when a `.conf` file sets it.
    pub header_timeout: u64,
    pub connect_timeout: u64,
    /// Indexes of store paths that take no new files (FastDFS `store_pathN_readonly`).
    pub readonly_store_paths: Vec<usize>,
    /// Store path choice when the client leaves it to us: 0 round robin, 2 most free
    /// space. The tracker's `store_path` setting overrides it once known.
    pub store_path_mode: u8,
    /// Space kept free on every store path; the tracker's setting overrides it once known.
    pub reserved_storage_space: ReservedSpace,
    /// Client addresses allowed to connect (`*`, an IP, a CIDR, or `10.0.0.[1-9,20]`).
    pub allow_hosts: Vec<String>,
    /// Wire-compatibility choices (QUERY_FILE_INFO's IP field width).
    pub compat: Compat,
    /// HTTP access to files, health and metrics.
    pub http: HttpConfig,
    /// This storage's id in `storage_ids.conf` (FastDFS `server_id`); empty = ask the tracker.
    pub server_id: String,
    /// Retry pauses and timers FastDFS has no key for.
    pub timers: StorageTimers,
}

/// The storage's HTTP side (what fastdfs-nginx-module offers, plus health and metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address; empty disables HTTP.
    pub bind: String,
    /// Check the anti-leech token (`token` and `ts` query parameters).
    pub check_token: bool,
    pub secret_key: String,
    /// Seconds a token stays valid.
    pub token_ttl: u64,
    /// What a request for a file this storage does not hold yet gets when the file's name
    /// says another member of the group is its source (fastdfs-nginx-module's
    /// `response_mode`): the file streamed from that member, or a redirect to it.
    pub response_mode: ResponseMode,
    /// How old (by the time in its name) such a file may be and still be taken as on its
    /// way here; older ones are 404 (FastDFS's `storage_sync_file_max_delay`).
    pub fresh_file_max_age: u64,
    /// Resized copies of images, made on request and kept as slave files.
    pub thumbnails: ThumbnailConfig,
    /// Memory for small files served over HTTP (0 turns the cache off).
    pub cache_bytes: u64,
    /// Largest file kept in that memory.
    pub cache_max_file: u64,
}

/// Thumbnails on the fly: `GET /<file id>?w=150&h=150&fit=cover`, or the slave name
/// `/<master stem>_150x150.jpg`, for the sizes listed here only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThumbnailConfig {
    /// The sizes that may be made; none means thumbnails are off.
    pub presets: Vec<ThumbnailPreset>,
    /// Images with more pixels than this are not resized.
    pub max_source_pixels: u64,
    /// Image files larger than this are not read for resizing.
    pub max_source_bytes: u64,
    /// Memory a decoder may allocate for one image.
    pub max_decode_bytes: u64,
    /// A thumbnail larger than this is refused, not stored.
    pub max_output_bytes: u64,
    /// Thumbnails made at once; requests beyond wait up to `queue_timeout` seconds.
    pub max_concurrent: usize,
    pub queue_timeout: u64,
    /// JPEG quality of thumbnails, 1–100.
    pub jpeg_quality: u8,
}

/// One allowed size; `name` is the slave prefix its files carry (`_150x150`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailPreset {
    pub name: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub fit: Fit,
}

/// How an image is fitted to a preset's box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// The whole image, scaled down to fit inside the box (never enlarged).
    #[default]
    Contain,
    /// The box filled exactly, the image scaled and its overflow cut off centred.
    Cover,
}

impl ThumbnailPreset {
    /// `<name> <width>x<height> [cover|contain]`: one `http.thumbnail_preset` line of a
    /// storage `.conf` (this project's key; FastDFS has no thumbnails).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let (Some(name), Some(size)) = (words.next(), words.next()) else {
            return Err("expected `<name> <width>x<height> [cover|contain]`".into());
        };
        let (w, h) = size
            .split_once(['x', 'X'])
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .ok_or_else(|| format!("{size:?} is not <width>x<height>"))?;
        let fit = match words.next() {
            Some(f) => Fit::parse(f).ok_or_else(|| format!("{f:?} is not cover or contain"))?,
            None => Fit::default(),
        };
        if let Some(extra) = words.next() {
            return Err(format!("unexpected {extra:?}"));
        }
        Ok(ThumbnailPreset {
            name: name.into(),
            width: w,
            height: h,
            fit,
        })
    }
}

impl Fit {
    pub fn parse(text: &str) -> Option<Fit> {
        match text {
            "contain" => Some(Fit::Contain),
            "cover" => Some(Fit::Cover),
            _ => None,
        }
    }
}

/// Longest slave prefix FastDFS accepts (`FDFS_FILE_PREFIX_MAX_LEN`).
pub const MAX_SLAVE_PREFIX_LEN: usize = 16;
/// Largest thumbnail side.
pub const MAX_THUMBNAIL_SIDE: u32 = 4096;

impl Default for ThumbnailConfig {
    fn default() -> Self {
        ThumbnailConfig {
            presets: Vec::new(),
            max_source_pixels: 50_000_000,
            max_source_bytes: 32 << 20,
            max_decode_bytes: 512 << 20,
            max_output_bytes: 4 << 20,
            max_concurrent: 2,
            queue_timeout: 10,
            jpeg_quality: 85,
        }
    }
}

impl ThumbnailConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "http.thumbnails",
            reason,
        };
        for (i, p) in self.presets.iter().enumerate() {
            let prefix_ok = !p.name.is_empty()
                && p.name.len() <= MAX_SLAVE_PREFIX_LEN
                && p.name != "-m"
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
            if !prefix_ok {
                return Err(invalid(format!(
                    "preset name {:?}: 1 to {MAX_SLAVE_PREFIX_LEN} letters, digits, '_' or '-' (it is the slave prefix)",
                    p.name
                )));
            }
            if !(1..=MAX_THUMBNAIL_SIDE).contains(&p.width)
                || !(1..=MAX_THUMBNAIL_SIDE).contains(&p.height)
            {
                return Err(invalid(format!(
                    "preset {}: width and height from 1 to {MAX_THUMBNAIL_SIDE}",
                    p.name
                )));
            }
            // Two names for one size are allowed: a query for it maps to the first.
            if self.presets[..i].iter().any(|o| o.name == p.name) {
                return Err(invalid(format!("preset {} is listed twice", p.name)));
            }
        }
        if self.max_concurrent == 0 {
            return Err(invalid("max_concurrent: at least 1".into()));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(invalid("jpeg_quality: 1 to 100".into()));
        }
        Ok(())
    }
}

/// [`HttpConfig::response_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// Stream the file from its source member.
    Proxy,
    /// 302 to the source member's HTTP address.
    Redirect,
    /// 404 until the copy arrives.
    None,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: String::new(),
            check_token: false,
            secret_key: String::new(),
            token_ttl: 600,
            response_mode: ResponseMode::Proxy,
            fresh_file_max_age: 86_400,
            thumbnails: ThumbnailConfig::default(),
            cache_bytes: 32 << 20,
            cache_max_file: 64 << 10,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            bind: "0.0.0.0:23000".into(),
            group_name: "group1".into(),
            base_path: PathBuf::from("fdfs-storage"),
            store_paths: Vec::new(),
            subdir_count_per_path: 256,
            tracker_servers: Vec::new(),
            heart_beat_interval: 30,
            stat_report_interval: 60,
            sync_stat_file_interval: 60,
            buff_size: 256 * 1024,
            fsync_after_written_bytes: 0,
            sync_wait_msec: 10,
            file_distribute_path_mode: 0,
            file_distribute_rotate_count: 100,
            upload_priority: 10,
            max_connections: 1024,
            network_timeout: 60,
            idle_timeout: 900,
            header_timeout: 10,
            connect_timeout: 10,
            readonly_store_paths: Vec::new(),
            store_path_mode: 0,
            reserved_storage_space: ReservedSpace::default(),
            allow_hosts: Vec::new(),
            compat: Compat::default(),
            http: HttpConfig::default(),
            server_id: String::new(),
            timers: StorageTimers::default(),
        }
    }
}

impl StorageConfig {
    pub fn effective_store_paths(&self) -> Vec<PathBuf> {
        if self.store_paths.is_empty() {
            vec![self.base_path.clone()]
        } else {
            self.store_paths.clone()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !crate::fileid::valid_group(&self.group_name) {
            return Err(ConfigError::Invalid {
                key: "group_name",
                reason: format!("{:?} must be 1–16 ASCII letters or digits", self.group_name),
            });
        }
        if !(1..=256).contains(&self.subdir_count_per_path) {
            return Err(ConfigError::Invalid {
                key: "subdir_count_per_path",
                reason: "must be 1–256".into(),
            });
        }
        if self.effective_store_paths().len() > 256 {
            return Err(ConfigError::Invalid {
                key: "store_paths",
                reason: "at most 256".into(),
            });
        }
        if self.buff_size < 4096 {
            return Err(ConfigError::Invalid {
                key: "buff_size",
                reason: "at least 4096".into(),
            });
        }
        if ![0, 2].contains(&self.store_path_mode) {
            return Err(ConfigError::Invalid {
                key: "store_path_mode",
                reason: "0 or 2".into(),
            });
        }
        if let Err(reason) = crate::server::acl::AccessList::parse(&self.allow_hosts) {
            return Err(ConfigError::Invalid {
                key: "allow_hosts",
                reason,
            });
        }
        if self.http.check_token && self.http.secret_key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "http.secret_key",
                reason: "needed when check_token is on".into(),
            });
        }
        self.http.thumbnails.validate()?;
        if let Some(&i) = self
            .readonly_store_paths
            .iter()
            .find(|&&i| i >= self.effective_store_paths().len())
        {
            return Err(ConfigError::Invalid {
                key: "readonly_store_paths",
                reason: format!("no store path {i}"),
            });
        }
        if self.file_distribute_path_mode > 1 {
            return Err(ConfigError::Invalid {
                key: "file_distribute_path_mode",
                reason: "0 or 1".into(),
            });
        }
        self.timers.validate()
    }

    pub fn network_timeout(&self) -> Duration {
        Duration::from_secs(self.network_timeout.max(1))
    }

    /// The connection deadlines of the storage's ports.
    pub fn timeouts(&self) -> crate::server::Timeouts {
        crate::server::Timeouts {
            network: self.network_timeout(),
            idle: Duration::from_secs(self.idle_timeout.max(1)),
            header: Duration::from_secs(self.header_timeout.max(1)),
        }
    }
}

impl TrackerConfig {
    /// The connection deadlines of the tracker's ports.
    pub fn timeouts(&self) -> crate::server::Timeouts {
        crate::server::Timeouts {
            network: Duration::from_secs(self.network_timeout.max(1)),
            idle: Duration::from_secs(self.idle_timeout.max(1)),
            header: Duration::from_secs(self.header_timeout.max(1)),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |key: &'static str, v: u8, allowed: &[u8]| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: format!("{v} is not one of {allowed:?}"),
                })
            }
        };
        check("store_lookup", self.store_lookup, &[0, 1, 2])?;
        check("store_server", self.store_server, &[0, 1, 2])?;
        check("store_path", self.store_path, &[0, 2])?;
        check("download_server", self.download_server, &[0, 1])?;
        if let Err(reason) = crate::server::acl::AccessList::parse(&self.allow_hosts) {
            return Err(ConfigError::Invalid {
                key: "allow_hosts",
                reason,
            });
        }
        if self.leader_ping_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "leader_ping_interval_ms",
                reason: "must be above 0".into(),
            });
        }
        if self.store_lookup == 1 && !crate::fileid::valid_group(&self.store_group) {
            return Err(ConfigError::Invalid {
                key: "store_group",
                reason: "store_lookup=1 needs a valid group".into(),
            });
        }
        self.trunk.normalized()?;
        self.timers.validate()
    }
}

/// Loads a TOML file into `T`.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Toml {
        path: path.into(),
        source: Box::new(source),
    })
}

mod fastdfs;
mod timers;
pub use fastdfs::{
    ConfLine, read_fastdfs_conf, storage_from_fastdfs, tracker_from_fastdfs,
    trackers_from_client_conf,
};
pub use timers::{StorageTimers, TrackerTimers};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_space_forms() {
        assert_eq!(ReservedSpace::parse("10%"), Ok(ReservedSpace::Ratio(0.1)));
        assert_eq!(ReservedSpace::parse("1024MB"), Ok(ReservedSpace::Mb(1024)));
        assert_eq!(ReservedSpace::parse("2G"), Ok(ReservedSpace::Mb(2048)));
        assert_eq!(ReservedSpace::parse("1 t"), Ok(ReservedSpace::Mb(1 << 20)));
        // A bare number is bytes, as in FastDFS V6: 3 MiB and a bit is 3 MB.
        assert_eq!(ReservedSpace::parse("3146000"), Ok(ReservedSpace::Mb(3)));
        assert_eq!(ReservedSpace::parse("1000"), Ok(ReservedSpace::Mb(0)));
        assert!(ReservedSpace::parse("ten").is_err());
        assert!(ReservedSpace::parse("150%").is_err());
        assert!(ReservedSpace::Ratio(0.1).has_room(20, 100));
        assert!(!ReservedSpace::Mb(1024).has_room(1000, 5000));
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        let bad: Result<TrackerConfig, _> = toml::from_str("bnid = \"x\"");
        assert!(bad.is_err());
        let ok: TrackerConfig = toml::from_str("[compat]\nip_width = \"45\"").expect("parses");
        assert_eq!(ok.compat.ip_width, IpWidth::V6);
    }
}
