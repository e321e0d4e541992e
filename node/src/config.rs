//! Typed node configuration: TOML files of our own, or FastDFS's `tracker.conf` /
//! `storage.conf` / `client.conf` for the keys we implement.
//!
//! An unknown key or a bad value is a start-up error. Keys FastDFS knows but we do
//! not implement yet are logged and skipped, so an existing `.conf` still loads.

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
}

impl Default for TrunkConfig {
    fn default() -> Self {
        TrunkConfig {
            use_trunk_file: false,
            slot_min_size: 256,
            slot_max_size: 1024 * 1024,
            trunk_alloc_alignment_size: 256,
            trunk_file_size: 64 * 1024 * 1024,
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
        Ok(())
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
        Ok(())
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

/// Keys of FastDFS's conf files we accept and ignore (not implemented, or meaningless here).
const IGNORED_FASTDFS_KEYS: &[&str] = &[
    "disabled",
    "work_threads",
    "accept_threads",
    "min_buff_size",
    "thread_stack_size",
    "log_level",
    "run_by_group",
    "run_by_user",
    "sync_log_buff_interval",
    "trunk_free_space_merge",
    "delete_unused_trunk_files",
    "trunk_create_file_advance",
    "trunk_create_file_time_base",
    "trunk_create_file_interval",
    "trunk_create_file_space_threshold",
    "trunk_init_check_occupying",
    "trunk_init_reload_from_binlog",
    "trunk_compress_binlog_min_interval",
    "trunk_compress_binlog_interval",
    "trunk_compress_binlog_time_base",
    "trunk_binlog_max_backups",
    "store_slave_file_use_link",
    "rotate_error_log",
    "error_log_rotate_time",
    "compress_old_error_log",
    "compress_error_log_days_before",
    "rotate_error_log_size",
    "log_file_keep_days",
    "use_connection_pool",
    "connection_pool_max_idle_time",
    "http.server_port",
    "http.check_alive_interval",
    "http.check_alive_type",
    "http.check_alive_uri",
    "storage_ip_changed_auto_adjust",
    "sync_log_buff_interval",
    "thread_stack_size",
    "response_ip_addr_size",
    "address_family",
    "connect_timeout",
    "client_bind",
    "disk_rw_separated",
    "disk_reader_threads",
    "disk_writer_threads",
    "sync_wait_msec",
    "sync_interval",
    "sync_start_time",
    "sync_end_time",
    "write_mark_file_freq",
    "sync_min_threads",
    "sync_max_threads",
    "sync_binlog_buff_interval",
    "check_file_duplicate",
    "file_signature_method",
    "key_namespace",
    "keep_alive",
    "compress_binlog",
    "compress_binlog_time",
    "check_store_path_mark",
    "disk_recovery_threads",
    "file_sync_skip_invalid_record",
    "if_alias_prefix",
    "use_access_log",
    "rotate_access_log",
    "access_log_rotate_time",
    "compress_old_access_log",
    "compress_access_log_days_before",
    "rotate_access_log_size",
    "use_io_uring",
    "use_send_zc",
    "log_file_rotate_everyday",
    "log_file_rotate_time",
    "log_file_compress_old",
    "log_file_compress_days_before",
    "log_file_rotate_on_size",
    "log_file_delete_old_time",
    "bind_addr",
    "store_path_count",
    "tracker_server",
    "load_fdfs_parameters_from_tracker",
    "connect_first_by",
    "http.anti_steal.check_token",
    "http.anti_steal.secret_key",
    "http.tracker_server_port",
    "http.domain_name",
    "max_connections",
    "network_timeout",
    "base_path",
    "port",
    "buff_size",
    "group_name",
    "subdir_count_per_path",
    "heart_beat_interval",
    "stat_report_interval",
    "upload_priority",
    "file_distribute_path_mode",
    "file_distribute_rotate_count",
    "store_lookup",
    "store_group",
    "store_server",
    "store_path",
    "download_server",
    "reserved_storage_space",
    "check_active_interval",
    "storage_sync_file_max_delay",
    "storage_sync_file_max_time",
    "max_buff_size",
];

/// One `key = value` line of a FastDFS conf file.
#[derive(Debug, Clone)]
pub struct ConfLine {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Sections of FastDFS's sample confs (V6.13+) that hold only logging settings.
const IGNORED_FASTDFS_SECTIONS: &[&str] = &["error-log", "access-log"];

/// Reads FastDFS's INI-like format: `key = value`, `#` comments, `#include` ignored.
/// A key after a `[section]` line belongs to that section and is named `section.key`
/// (FastDFS reads only the global keys for its settings, so a `tracker_server` line
/// under `[access-log]` is not a tracker).
pub fn read_fastdfs_conf(path: &Path) -> Result<Vec<ConfLine>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            return Err(ConfigError::BadValue {
                path: path.into(),
                line: i + 1,
                key: l.into(),
                value: String::new(),
                reason: "expected key = value".into(),
            });
        };
        out.push(ConfLine {
            line: i + 1,
            key: match &section {
                Some(name) => format!("{name}.{}", k.trim()),
                None => k.trim().to_owned(),
            },
            value: v.trim().to_owned(),
        });
    }
    Ok(out)
}

fn parse_num<T: std::str::FromStr>(path: &Path, l: &ConfLine) -> Result<T, ConfigError> {
    l.value.parse().map_err(|_| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason: "not a number".into(),
    })
}

/// FastDFS booleans: true/false, yes/no, on/off, 1/0.
fn parse_bool(path: &Path, l: &ConfLine) -> Result<bool, ConfigError> {
    match l.value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ConfigError::BadValue {
            path: path.into(),
            line: l.line,
            key: l.key.clone(),
            value: l.value.clone(),
            reason: "not a boolean".into(),
        }),
    }
}

/// Parses sizes like `256KB`, `1MB`, `4096`.
/// A byte size that must fit the protocol's 32-bit trunk fields.
fn parse_u32_bytes(path: &Path, l: &ConfLine) -> Result<u32, ConfigError> {
    u32::try_from(parse_bytes(path, l)?).map_err(|_| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason: "must be below 4 GB".into(),
    })
}

fn parse_bytes(path: &Path, l: &ConfLine) -> Result<u64, ConfigError> {
    let upper = l.value.to_ascii_uppercase();
    let digits = upper.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let mult = match &upper[digits.len()..] {
        "" | "B" => 1,
        "K" | "KB" => 1024,
        "M" | "MB" => 1024 * 1024,
        "G" | "GB" => 1024 * 1024 * 1024,
        _ => 0,
    };
    match digits.trim().parse::<u64>() {
        Ok(n) if mult > 0 => Ok(n * mult),
        _ => Err(ConfigError::BadValue {
            path: path.into(),
            line: l.line,
            key: l.key.clone(),
            value: l.value.clone(),
            reason: "not a size".into(),
        }),
    }
}

fn unknown_or_ignored(path: &Path, l: &ConfLine) -> Result<(), ConfigError> {
    let base = l.key.trim_end_matches(|c: char| c.is_ascii_digit());
    let in_ignored_section = l
        .key
        .split_once('.')
        .is_some_and(|(section, _)| IGNORED_FASTDFS_SECTIONS.contains(&section));
    if IGNORED_FASTDFS_KEYS.contains(&l.key.as_str())
        || in_ignored_section
        || base == "store_path"
        || (base.starts_with("store_path") && base.ends_with("_readonly"))
    {
        tracing::warn!(key = %l.key, file = %path.display(), "FastDFS setting not implemented; ignored");
        Ok(())
    } else {
        Err(ConfigError::UnknownKey {
            path: path.into(),
            line: l.line,
            key: l.key.clone(),
        })
    }
}

fn reserved(path: &Path, l: &ConfLine) -> Result<ReservedSpace, ConfigError> {
    ReservedSpace::parse(&l.value).map_err(|reason| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason,
    })
}

/// Builds a tracker config from FastDFS's `tracker.conf`.
pub fn tracker_from_fastdfs(path: &Path) -> Result<TrackerConfig, ConfigError> {
    let mut c = TrackerConfig::default();
    let mut bind_ip = "0.0.0.0".to_owned();
    let mut port = 22122u16;
    let mut http_port: Option<u16> = None;
    for l in read_fastdfs_conf(path)? {
        match l.key.as_str() {
            "bind_addr" if !l.value.is_empty() => bind_ip = l.value.clone(),
            "port" => port = parse_num(path, &l)?,
            "base_path" => c.base_path = PathBuf::from(&l.value),
            "store_lookup" => c.store_lookup = parse_num(path, &l)?,
            "store_group" => c.store_group = l.value.clone(),
            "store_server" => c.store_server = parse_num(path, &l)?,
            "store_path" => c.store_path = parse_num(path, &l)?,
            "download_server" => c.download_server = parse_num(path, &l)?,
            "reserved_storage_space" => c.reserved_storage_space = reserved(path, &l)?,
            "check_active_interval" => c.check_active_interval = parse_num(path, &l)?,
            "storage_sync_file_max_delay" => c.storage_sync_file_max_delay = parse_num(path, &l)?,
            "storage_sync_file_max_time" => c.storage_sync_file_max_time = parse_num(path, &l)?,
            "max_connections" => c.max_connections = parse_num(path, &l)?,
            "network_timeout" => {
                c.network_timeout = parse_num(path, &l)?;
                c.header_timeout = c.network_timeout;
            }
            "max_buff_size" => c.max_body_len = parse_bytes(path, &l)?,
            "allow_hosts" => c.allow_hosts.push(l.value.clone()),
            "use_trunk_file" => c.trunk.use_trunk_file = parse_bool(path, &l)?,
            "slot_min_size" => c.trunk.slot_min_size = parse_u32_bytes(path, &l)?,
            "slot_max_size" => c.trunk.slot_max_size = parse_u32_bytes(path, &l)?,
            "trunk_alloc_alignment_size" => {
                c.trunk.trunk_alloc_alignment_size = parse_u32_bytes(path, &l)?;
            }
            "trunk_file_size" => c.trunk.trunk_file_size = parse_u32_bytes(path, &l)?,
            "use_storage_id" => c.use_storage_id = parse_bool(path, &l)?,
            "trust_storage_server_id" => c.trust_storage_server_id = parse_bool(path, &l)?,
            "storage_ids_filename" => {
                let p = PathBuf::from(&l.value);
                // FastDFS reads a relative name next to tracker.conf.
                c.storage_ids_filename = match path.parent() {
                    Some(dir) if p.is_relative() => dir.join(p),
                    _ => p,
                };
            }
            "id_type_in_filename" => {
                c.id_type_in_filename = match l.value.as_str() {
                    "ip" => IdType::Ip,
                    "id" => IdType::Id,
                    _ => {
                        return Err(ConfigError::BadValue {
                            path: path.into(),
                            line: l.line,
                            key: l.key.clone(),
                            value: l.value.clone(),
                            reason: "ip or id".into(),
                        });
                    }
                }
            }
            "http.server_port" => {
                let p: u16 = parse_num(path, &l)?;
                http_port = Some(p);
            }
            "fetch_all_format" => {
                c.compat.fetch_all_format = match l.value.as_str() {
                    "v6.16" => FetchAllFormat::V616,
                    "legacy" => FetchAllFormat::Legacy,
                    _ => {
                        return Err(ConfigError::BadValue {
                            path: path.into(),
                            line: l.line,
                            key: l.key.clone(),
                            value: l.value.clone(),
                            reason: "v6.16 or legacy".into(),
                        });
                    }
                }
            }
            "response_ip_addr_size" => {
                // FastDFS: only `auto` gives 15-byte fields; anything else gives 45.
                c.compat.ip_width = if l.value.eq_ignore_ascii_case("auto") {
                    IpWidth::V4
                } else {
                    IpWidth::V6
                };
            }
            _ => unknown_or_ignored(path, &l)?,
        }
    }
    if let Some(p) = http_port {
        c.http_bind = format!("{bind_ip}:{p}");
    }
    c.bind = format!("{bind_ip}:{port}");
    c.trunk = c.trunk.normalized()?;
    c.validate()?;
    Ok(c)
}

/// Builds a storage config from FastDFS's `storage.conf`.
pub fn storage_from_fastdfs(path: &Path) -> Result<StorageConfig, ConfigError> {
    let mut c = StorageConfig::default();
    let mut bind_ip = "0.0.0.0".to_owned();
    let mut port = 23000u16;
    let mut http_port: Option<u16> = None;
    let mut paths: Vec<(usize, PathBuf)> = Vec::new();
    for l in read_fastdfs_conf(path)? {
        let store_index = l
            .key
            .strip_prefix("store_path")
            .and_then(|n| n.parse::<usize>().ok());
        match l.key.as_str() {
            // The storage learns these from the tracker (PARAMETER_REQ); accepted for
            // configs that repeat the tracker's settings.
            "use_storage_id"
            | "storage_ids_filename"
            | "id_type_in_filename"
            | "trust_storage_server_id" => {}
            "http.server_port" => http_port = Some(parse_num(path, &l)?),
            "http.anti_steal.check_token" => c.http.check_token = parse_bool(path, &l)?,
            "http.anti_steal.secret_key" => c.http.secret_key = l.value.clone(),
            "http.anti_steal.token_ttl" => c.http.token_ttl = parse_num(path, &l)?,
            // This project's HTTP keys (thumbnails, the small-file memory).
            "http.thumbnail_preset" => {
                let preset =
                    ThumbnailPreset::parse(&l.value).map_err(|reason| ConfigError::BadValue {
                        path: path.into(),
                        line: l.line,
                        key: l.key.clone(),
                        value: l.value.clone(),
                        reason,
                    })?;
                c.http.thumbnails.presets.push(preset);
            }
            "http.thumbnail_max_source_pixels" => {
                c.http.thumbnails.max_source_pixels = parse_num(path, &l)?
            }
            "http.thumbnail_max_concurrent" => {
                c.http.thumbnails.max_concurrent = parse_num(path, &l)?
            }
            "http.cache_bytes" => c.http.cache_bytes = parse_bytes(path, &l)?,
            "http.cache_max_file" => c.http.cache_max_file = parse_bytes(path, &l)?,
            "bind_addr" if !l.value.is_empty() => bind_ip = l.value.clone(),
            "port" => port = parse_num(path, &l)?,
            "group_name" => c.group_name = l.value.clone(),
            "base_path" => c.base_path = PathBuf::from(&l.value),
            "subdir_count_per_path" => c.subdir_count_per_path = parse_num(path, &l)?,
            "tracker_server" => c.tracker_servers.push(l.value.clone()),
            "heart_beat_interval" => c.heart_beat_interval = parse_num(path, &l)?,
            "stat_report_interval" => c.stat_report_interval = parse_num(path, &l)?,
            "sync_stat_file_interval" => c.sync_stat_file_interval = parse_num(path, &l)?,
            "buff_size" => c.buff_size = parse_bytes(path, &l)?,
            "fsync_after_written_bytes" => c.fsync_after_written_bytes = parse_bytes(path, &l)?,
            "file_distribute_path_mode" => c.file_distribute_path_mode = parse_num(path, &l)?,
            "file_distribute_rotate_count" => c.file_distribute_rotate_count = parse_num(path, &l)?,
            "upload_priority" => c.upload_priority = parse_num(path, &l)?,
            "max_connections" => c.max_connections = parse_num(path, &l)?,
            "network_timeout" => {
                c.network_timeout = parse_num(path, &l)?;
                c.header_timeout = c.network_timeout;
            }
            "connect_timeout" => c.connect_timeout = parse_num(path, &l)?,
            "allow_hosts" => c.allow_hosts.push(l.value.clone()),
            k if k.starts_with("store_path") && k.ends_with("_readonly") => {
                let index = k
                    .trim_start_matches("store_path")
                    .trim_end_matches("_readonly")
                    .parse::<usize>();
                match (index, l.value.as_str()) {
                    (Ok(i), "true" | "1" | "yes" | "on") => c.readonly_store_paths.push(i),
                    (Ok(_), "false" | "0" | "no" | "off") => {}
                    _ => {
                        return Err(ConfigError::BadValue {
                            path: path.into(),
                            line: l.line,
                            key: l.key.clone(),
                            value: l.value.clone(),
                            reason: "expected a store path index and true/false".into(),
                        });
                    }
                }
            }
            "server_id" => c.server_id = l.value.clone(),
            "store_path_count" => {
                let _: u32 = parse_num(path, &l)?;
            }
            _ if store_index.is_some() => {
                paths.push((store_index.unwrap_or(0), PathBuf::from(&l.value)))
            }
            _ => unknown_or_ignored(path, &l)?,
        }
    }
    paths.sort_by_key(|(i, _)| *i);
    c.store_paths = paths.into_iter().map(|(_, p)| p).collect();
    if let Some(p) = http_port {
        c.http.bind = format!("{bind_ip}:{p}");
    }
    // Secrets come from the environment rather than a file when set (Kubernetes Secrets).
    if let Ok(key) = std::env::var("FDFS_HTTP_SECRET_KEY") {
        c.http.secret_key = key;
    }
    c.bind = format!("{bind_ip}:{port}");
    c.validate()?;
    Ok(c)
}

/// The `tracker_server` lines of a FastDFS `client.conf`.
pub fn trackers_from_client_conf(path: &Path) -> Result<Vec<String>, ConfigError> {
    let lines = read_fastdfs_conf(path)?;
    let trackers: Vec<String> = lines
        .into_iter()
        .filter(|l| l.key == "tracker_server")
        .map(|l| l.value)
        .collect();
    if trackers.is_empty() {
        return Err(ConfigError::Invalid {
            key: "tracker_server",
            reason: format!("none in {}", path.display()),
        });
    }
    Ok(trackers)
}

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

    /// The active lines of FastDFS V6.16.1's sample `tracker.conf` (comments dropped).
    const V6_16_SAMPLE_TRACKER: &str = concat!(
        "disabled = false\n",
        "bind_addr =\n",
        "port = 22122\n",
        "address_family = auto\n",
        "response_ip_addr_size = auto\n",
        "connect_timeout = 5\n",
        "network_timeout = 60\n",
        "use_io_uring = false\n",
        "use_send_zc = true\n",
        "base_path = /opt/fastdfs\n",
        "max_connections = 1024\n",
        "accept_threads = 1\n",
        "work_threads = 4\n",
        "min_buff_size = 8KB\n",
        "max_buff_size = 128KB\n",
        "store_lookup = 2\n",
        "store_group = group2\n",
        "store_server = 0\n",
        "store_path = 0\n",
        "download_server = 0\n",
        "reserved_storage_space = 20%\n",
        "log_level = info\n",
        "run_by_group=\n",
        "run_by_user =\n",
        "allow_hosts = *\n",
        "check_active_interval = 120\n",
        "thread_stack_size = 256KB\n",
        "storage_ip_changed_auto_adjust = true\n",
        "storage_sync_file_max_delay = 86400\n",
        "storage_sync_file_max_time = 300\n",
        "use_trunk_file = false\n",
        "slot_min_size = 256\n",
        "slot_max_size = 1MB\n",
        "trunk_alloc_alignment_size = 256\n",
        "trunk_free_space_merge = true\n",
        "delete_unused_trunk_files = false\n",
        "trunk_file_size = 64MB\n",
        "trunk_create_file_advance = false\n",
        "trunk_create_file_time_base = 02:00\n",
        "trunk_create_file_interval = 86400\n",
        "trunk_create_file_space_threshold = 20G\n",
        "trunk_init_check_occupying = false\n",
        "trunk_init_reload_from_binlog = false\n",
        "trunk_compress_binlog_min_interval = 86400\n",
        "trunk_compress_binlog_interval = 86400\n",
        "trunk_compress_binlog_time_base = 03:00\n",
        "trunk_binlog_max_backups = 7\n",
        "use_storage_id = false\n",
        "storage_ids_filename = storage_ids.conf\n",
        "id_type_in_filename = id\n",
        "trust_storage_server_id = true\n",
        "store_slave_file_use_link = false\n",
        "use_connection_pool = true\n",
        "connection_pool_max_idle_time = 3600\n",
        "sync_log_buff_interval = 1\n",
        "log_file_rotate_everyday = true\n",
        "log_file_rotate_time = 00:00\n",
        "log_file_compress_old = false\n",
        "log_file_compress_days_before = 7\n",
        "log_file_rotate_on_size = 0\n",
        "log_file_keep_days = 15\n",
        "log_file_delete_old_time = 01:30\n",
        "[error-log]\n",
    );

    /// The active lines of FastDFS V6.16.1's sample `storage.conf` (comments dropped).
    const V6_16_SAMPLE_STORAGE: &str = concat!(
        "disabled = false\n",
        "group_name = group1\n",
        "bind_addr =\n",
        "client_bind = true\n",
        "port = 23000\n",
        "address_family = auto\n",
        "connect_timeout = 5\n",
        "network_timeout = 60\n",
        "use_io_uring = false\n",
        "use_send_zc = true\n",
        "heart_beat_interval = 30\n",
        "stat_report_interval = 60\n",
        "base_path = /opt/fastdfs\n",
        "max_connections = 1024\n",
        "buff_size = 256KB\n",
        "accept_threads = 1\n",
        "work_threads = 4\n",
        "disk_rw_separated = true\n",
        "disk_reader_threads = 2\n",
        "disk_writer_threads = 1\n",
        "sync_min_threads = 1\n",
        "sync_max_threads = auto\n",
        "sync_wait_msec = 10\n",
        "sync_interval = 0\n",
        "sync_start_time = 00:00\n",
        "sync_end_time = 23:59\n",
        "write_mark_file_freq = 500\n",
        "disk_recovery_threads = 4\n",
        "store_path_count = 1\n",
        "store_path0 = /opt/fastdfs\n",
        "subdir_count_per_path = 256\n",
        "tracker_server = 192.168.209.121:22122\n",
        "tracker_server = 192.168.209.122:22122\n",
        "log_level = info\n",
        "run_by_group =\n",
        "run_by_user =\n",
        "allow_hosts = *\n",
        "file_distribute_path_mode = 0\n",
        "file_distribute_rotate_count = 100\n",
        "fsync_after_written_bytes = 0\n",
        "sync_binlog_buff_interval = 1\n",
        "sync_stat_file_interval = 60\n",
        "thread_stack_size = 512KB\n",
        "upload_priority = 10\n",
        "if_alias_prefix =\n",
        "check_file_duplicate = 0\n",
        "file_signature_method = hash\n",
        "key_namespace = FastDFS\n",
        "keep_alive = 0\n",
        "file_sync_skip_invalid_record = false\n",
        "use_connection_pool = true\n",
        "connection_pool_max_idle_time = 3600\n",
        "compress_binlog = true\n",
        "compress_binlog_time = 01:30\n",
        "check_store_path_mark = true\n",
        "sync_log_buff_interval = 1\n",
        "log_file_rotate_everyday = true\n",
        "log_file_rotate_time = 00:00\n",
        "log_file_compress_old = false\n",
        "log_file_compress_days_before = 7\n",
        "log_file_rotate_on_size = 0\n",
        "log_file_keep_days = 15\n",
        "log_file_delete_old_time = 01:30\n",
        "[error-log]\n",
        "[access-log]\n",
        "enabled = false\n",
        "time_precision = us\n",
    );

    #[test]
    fn fastdfs_v6_16_sample_confs_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path().join("tracker.conf");
        std::fs::write(&t, V6_16_SAMPLE_TRACKER).expect("write");
        let c = tracker_from_fastdfs(&t).expect("the sample tracker.conf loads");
        assert_eq!(c.bind, "0.0.0.0:22122");
        assert_eq!(c.store_lookup, 2);
        // The conf's network_timeout is the header deadline too; without a conf, 10 s.
        assert_eq!((c.network_timeout, c.header_timeout), (60, 60));
        assert_eq!(TrackerConfig::default().header_timeout, 10);
        assert_eq!(StorageConfig::default().header_timeout, 10);
        let s = dir.path().join("storage.conf");
        std::fs::write(&s, V6_16_SAMPLE_STORAGE).expect("write");
        let c = storage_from_fastdfs(&s).expect("the sample storage.conf loads");
        assert_eq!(c.bind, "0.0.0.0:23000");
        assert_eq!(c.timeouts().header, Duration::from_secs(60));
        assert_eq!(c.tracker_servers.len(), 2);

        // Keys under a section are not global settings: FastDFS finds no tracker in
        // a tracker_server line placed after [access-log], and neither do we.
        let moved = V6_16_SAMPLE_STORAGE
            .lines()
            .filter(|l| !l.starts_with("tracker_server"))
            .chain(["tracker_server = 10.0.0.1:22122"])
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&s, moved).expect("write");
        assert!(storage_from_fastdfs(&s).is_ok_and(|c| c.tracker_servers.is_empty()));
        // Keys of other sections are unknown, named with their section.
        std::fs::write(&s, "port = 23000\n[extra]\nport = 1\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&s),
            Err(ConfigError::UnknownKey { key, .. }) if key == "extra.port"
        ));
    }

    #[test]
    fn thumbnail_and_cache_keys_in_a_storage_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = dir.path().join("storage.conf");
        let conf = "base_path = /data\nstore_path0 = /data\n\
                    http.thumbnail_preset = _150x150 150x150 cover\n\
                    http.thumbnail_preset = _m 320X320\n\
                    http.thumbnail_max_source_pixels = 1000000\n\
                    http.thumbnail_max_concurrent = 3\n\
                    http.cache_bytes = 8MB\nhttp.cache_max_file = 16KB\n";
        std::fs::write(&s, conf).expect("write");
        let c = storage_from_fastdfs(&s).expect("loads");
        let t = &c.http.thumbnails;
        assert_eq!(
            t.presets,
            [
                ThumbnailPreset {
                    name: "_150x150".into(),
                    width: 150,
                    height: 150,
                    fit: Fit::Cover
                },
                ThumbnailPreset {
                    name: "_m".into(),
                    width: 320,
                    height: 320,
                    fit: Fit::Contain
                },
            ]
        );
        assert_eq!((t.max_source_pixels, t.max_concurrent), (1_000_000, 3));
        assert_eq!(
            (c.http.cache_bytes, c.http.cache_max_file),
            (8 << 20, 16 << 10)
        );
        for (bad, why) in [
            ("http.thumbnail_preset = _s 150\n", "no height"),
            (
                "http.thumbnail_preset = _s 150x150 stretch\n",
                "unknown fit",
            ),
            (
                "http.thumbnail_preset = ../x 150x150\n",
                "a name that is no slave prefix",
            ),
            ("http.thumbnail_preset = _s 0x150\n", "a zero side"),
            (
                "http.thumbnail_preset = _s 9000x150\n",
                "a side over the limit",
            ),
            (
                "http.thumbnail_preset = _s 150x150\nhttp.thumbnail_preset = _s 20x20\n",
                "a name twice",
            ),
        ] {
            std::fs::write(&s, format!("base_path = /data\n{bad}")).expect("write");
            assert!(storage_from_fastdfs(&s).is_err(), "{why}");
        }
    }

    #[test]
    fn fastdfs_storage_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("storage.conf");
        std::fs::write(
            &p,
            "# comment\ngroup_name = group2\nport=23001\nbase_path=/data/fdfs\nstore_path_count=2\n\
             store_path0=/d0\nstore_path1=/d1\ntracker_server = 10.0.0.1:22122\n\
             tracker_server = tracker.svc:22122\nbuff_size = 256KB\nlog_level = info\n",
        )
        .expect("write");
        let c = storage_from_fastdfs(&p).expect("loads");
        assert_eq!(c.group_name, "group2");
        assert_eq!(c.bind, "0.0.0.0:23001");
        assert_eq!(
            c.store_paths,
            vec![PathBuf::from("/d0"), PathBuf::from("/d1")]
        );
        assert_eq!(c.tracker_servers.len(), 2);
        assert_eq!(c.buff_size, 256 * 1024);

        std::fs::write(&p, "no_such_key = 1\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&p),
            Err(ConfigError::UnknownKey { .. })
        ));
        std::fs::write(&p, "port = abc\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&p),
            Err(ConfigError::BadValue { .. })
        ));
    }

    #[test]
    fn trunk_keys_are_read_and_adjusted_as_fastdfs_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tracker.conf");
        // The sample's trunk keys: off, 256 B to 1 MB slots in 64 MB files.
        std::fs::write(&p, V6_16_SAMPLE_TRACKER).expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        assert_eq!(c.trunk, TrunkConfig::default());
        std::fs::write(
            &p,
            "use_trunk_file = true\nslot_min_size = 512\nslot_max_size = 8MB\n\
             trunk_alloc_alignment_size = 0\ntrunk_file_size = 1MB\n",
        )
        .expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        // Trunk files of at least 4 MB; a slot of at most half a trunk file.
        assert_eq!(
            c.trunk,
            TrunkConfig {
                use_trunk_file: true,
                slot_min_size: 512,
                slot_max_size: 2 * 1024 * 1024,
                trunk_alloc_alignment_size: 0,
                trunk_file_size: 4 * 1024 * 1024,
            }
        );
        for bad in [
            "slot_min_size = 24\n",
            "slot_min_size = 4096\nslot_max_size = 4096\n",
            "trunk_file_size = 8GB\n",
        ] {
            std::fs::write(&p, bad).expect("write");
            assert!(tracker_from_fastdfs(&p).is_err(), "{bad}");
        }
        let t: TrackerConfig =
            toml::from_str("[trunk]\nuse_trunk_file = true\nslot_max_size = 65536\n")
                .expect("toml");
        assert!(t.trunk.use_trunk_file);
        assert_eq!(t.trunk.slot_max_size, 65536);
    }

    #[test]
    fn fastdfs_tracker_conf_identity_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tracker.conf");
        std::fs::write(
            &p,
            "port = 22123\nuse_storage_id = true\nstorage_ids_filename = storage_ids.conf\n\
             id_type_in_filename = id\ntrust_storage_server_id = no\nstore_lookup = 2\n",
        )
        .expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        assert!(c.use_storage_id && !c.trust_storage_server_id);
        assert_eq!(c.id_type_in_filename, IdType::Id);
        // A relative ids file sits next to tracker.conf.
        assert_eq!(c.storage_ids_filename, dir.path().join("storage_ids.conf"));
        assert_eq!(c.bind, "0.0.0.0:22123");
        for bad in ["use_storage_id = maybe\n", "id_type_in_filename = name\n"] {
            std::fs::write(&p, bad).expect("write");
            assert!(
                matches!(tracker_from_fastdfs(&p), Err(ConfigError::BadValue { .. })),
                "{bad}"
            );
        }
        let s = dir.path().join("storage.conf");
        std::fs::write(&s, "server_id = 100001\n").expect("write");
        assert_eq!(storage_from_fastdfs(&s).expect("loads").server_id, "100001");
        let t: TrackerConfig = toml::from_str(
            "use_storage_id = true\nid_type_in_filename = \"id\"\n\
             [[listeners]]\nbind = \"127.0.0.1:22200\"\ncompat = { monitor_layout = \"classic\" }\n",
        )
        .expect("toml");
        assert_eq!(t.listeners[0].compat.monitor_layout, MonitorLayout::Classic);
        assert_eq!(t.listeners[0].compat.profile_name(), "ip15,classic");
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        let bad: Result<TrackerConfig, _> = toml::from_str("bnid = \"x\"");
        assert!(bad.is_err());
        let ok: TrackerConfig = toml::from_str("[compat]\nip_width = \"45\"").expect("parses");
        assert_eq!(ok.compat.ip_width, IpWidth::V6);
    }
}
