//! Prometheus metrics of one storage node, held in its state (no globals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `in` (uploads, appends) or `out` (downloads).
    pub direction: &'static str,
    /// `protocol` or `http`.
    pub via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    pub store_path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

/// How an HTTP request for a file still on its way here was answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FreshLabels {
    /// `proxy` or `redirect`.
    pub mode: &'static str,
}

/// Whether an HTTP request found its file in memory.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// What became of a thumbnail request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThumbnailLabels {
    /// `made`, `stored` (served from its slave file), `refused`, `busy` or `failed`.
    pub outcome: &'static str,
}

/// A peer whose pushes this storage cannot apply, and the error they fail with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    pub source: String,
    /// errno name: `ENOSPC`, `EIO`, `EPERM`, ...
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `HEAD` or `other`.
    pub method: &'static str,
    pub code: u16,
}

/// Every metric the storage exports, with the registry that renders them.
#[derive(Debug)]
pub struct StorageMetrics {
    registry: Registry,
    pub requests: Family<CommandLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub disk_free: Family<PathLabels, Gauge>,
    pub disk_total: Family<PathLabels, Gauge>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub sync_lag_bytes: Family<PeerLabels, Gauge>,
    pub sync_lag_seconds: Family<PeerLabels, Gauge>,
    pub synced_records: Family<PeerLabels, Counter>,
    pub sync_apply_blocked: Family<ProblemLabels, Gauge>,
    pub sync_apply_failures: Family<ProblemLabels, Counter>,
    pub http_fresh_files: Family<FreshLabels, Counter>,
    pub http_thumbnails: Family<ThumbnailLabels, Counter>,
    pub thumbnail_seconds: Histogram,
    pub http_cache: Family<CacheLabels, Counter>,
    /// While this storage is its group's trunk server: free trunk bytes, free blocks
    /// (many small ones: fragmented space), and the newest trunk file id.
    pub trunk_free_bytes: Gauge,
    pub trunk_free_blocks: Gauge,
    pub trunk_file_id: Gauge,
    /// Small uploads stored as files of their own for want of a trunk slot.
    pub trunk_fallbacks: Counter,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl StorageMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fdfs_storage");
        let requests = Family::<CommandLabels, Counter>::default();
        registry.register(
            "requests",
            "Protocol requests by command and reply status",
            requests.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Protocol request latency by command",
            latency.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register("file_bytes", "File bytes received and sent", bytes.clone());
        let disk_free = Family::<PathLabels, Gauge>::default();
        registry.register(
            "disk_free_bytes",
            "Free bytes per store path",
            disk_free.clone(),
        );
        let disk_total = Family::<PathLabels, Gauge>::default();
        registry.register(
            "disk_total_bytes",
            "Size in bytes of each store path's filesystem",
            disk_total.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method and status code",
            http_requests.clone(),
        );
        let sync_lag_bytes = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "sync_lag_bytes",
            "Binlog bytes not yet pushed to each peer",
            sync_lag_bytes.clone(),
        );
        let sync_lag_seconds = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "sync_lag_seconds",
            "Age in seconds of the oldest change not yet pushed to each peer",
            sync_lag_seconds.clone(),
        );
        let synced_records = Family::<PeerLabels, Counter>::default();
        registry.register(
            "synced_records",
            "Binlog records pushed to each peer",
            synced_records.clone(),
        );
        let sync_apply_blocked = Family::<ProblemLabels, Gauge>::default();
        registry.register(
            "sync_apply_blocked",
            "1 while this storage cannot apply what a peer pushes, by peer and error",
            sync_apply_blocked.clone(),
        );
        let sync_apply_failures = Family::<ProblemLabels, Counter>::default();
        registry.register(
            "sync_apply_failures",
            "Pushed changes this storage failed to apply, by peer and error",
            sync_apply_failures.clone(),
        );
        let http_fresh_files = Family::<FreshLabels, Counter>::default();
        registry.register(
            "http_fresh_files",
            "HTTP requests for files not here yet, answered from their source member",
            http_fresh_files.clone(),
        );
        let http_thumbnails = Family::<ThumbnailLabels, Counter>::default();
        registry.register(
            "http_thumbnails",
            "Thumbnail requests by outcome",
            http_thumbnails.clone(),
        );
        let thumbnail_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "thumbnail_make_seconds",
            "Time to read, decode, resize, encode and store one thumbnail",
            thumbnail_seconds.clone(),
        );
        let http_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "http_cache_lookups",
            "HTTP file requests by whether the file was found in memory",
            http_cache.clone(),
        );
        let trunk_free_bytes = Gauge::default();
        registry.register(
            "trunk_free_bytes",
            "Free space in trunk files, while this storage is its group's trunk server",
            trunk_free_bytes.clone(),
        );
        let trunk_free_blocks = Gauge::default();
        registry.register(
            "trunk_free_blocks",
            "Free blocks in trunk files (many small ones: fragmented space), while this storage is the trunk server",
            trunk_free_blocks.clone(),
        );
        let trunk_file_id = Gauge::default();
        registry.register(
            "trunk_file_id",
            "Newest trunk file id, while this storage is the trunk server",
            trunk_file_id.clone(),
        );
        let trunk_fallbacks = Counter::default();
        registry.register(
            "trunk_fallbacks",
            "Small uploads stored as files of their own because no trunk slot could be had",
            trunk_fallbacks.clone(),
        );
        StorageMetrics {
            registry,
            trunk_free_bytes,
            trunk_free_blocks,
            trunk_file_id,
            trunk_fallbacks,
            http_cache,
            http_fresh_files,
            http_thumbnails,
            thumbnail_seconds,
            sync_apply_blocked,
            sync_apply_failures,
            requests,
            latency,
            bytes,
            disk_free,
            disk_total,
            http_requests,
            sync_lag_bytes,
            sync_lag_seconds,
            synced_records,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
