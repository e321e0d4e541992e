//! `FdfsCluster`: the trackers and the settings every group of a cluster shares.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ImagePullPolicy, Scheduling};
use super::reserved_space::RESERVED_STORAGE_SPACE_PATTERN;
use super::storage_group::{GROUP_NAME_MAX_LEN, GROUP_NAME_PATTERN};

/// Largest number of trackers a FastDFS storage accepts in its configuration.
pub const MAX_TRACKERS: i32 = 16;

/// A FastDFS-compatible cluster: its trackers, the Services clients connect to, and the
/// settings shared by all of its storage groups. Groups are separate `StorageGroup` resources
/// that name this cluster in `spec.clusterRef`.
// Clippy reads the repeated `type_ = ...` of separate printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fdfs.dev",
    version = "v1alpha1",
    kind = "FdfsCluster",
    plural = "fdfsclusters",
    shortname = "fdfs",
    namespaced,
    status = "FdfsClusterStatus",
    derive = "PartialEq",
    doc = "A FastDFS-compatible cluster: trackers, client Service and cluster-wide settings.",
    printcolumn(
        name = "Trackers",
        type_ = "integer",
        json_path = ".spec.trackers.replicas",
        description = "Desired number of trackers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyTrackers",
        description = "Trackers that are ready"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "Tracker currently leading membership changes",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FdfsClusterSpec {
    /// Container image of the `fdfs-node` binary, used by trackers and storages alike. Defaults
    /// to the image the operator was started with (`--default-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// When to pull `image`; Kubernetes' default applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// The tracker Deployment.
    #[serde(default)]
    pub trackers: TrackerSpec,
    /// FastDFS settings shared by the trackers and every storage group.
    #[serde(default)]
    pub settings: ClusterSettings,
    /// The Service that FastDFS clients connect to.
    #[serde(default)]
    pub client_service: ClientServiceSpec,
}

/// The trackers: equal peers that every storage reports to, one of them leading membership
/// changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "!has(self.replicas) || self.replicas > 0 || (has(self.external) && size(self.external) > 0)"
)
    .message("with no tracker Pods (replicas: 0), external must name the trackers to use"))]
#[serde(rename_all = "camelCase")]
pub struct TrackerSpec {
    /// Number of tracker Pods: 0 when the storages only report to `external` trackers. FastDFS
    /// storages accept at most 16 trackers in all.
    #[serde(default = "default_tracker_replicas")]
    #[schemars(range(min = 0, max = MAX_TRACKERS))]
    pub replicas: i32,
    /// Trackers this operator does not run (`host:port`), such as those of a FastDFS cluster
    /// on VMs that the groups move from: the storages report to them as well as to the
    /// tracker Pods, and the operator reads group state from all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_TRACKERS))]
    #[schemars(inner(length(min = 3, max = 260), pattern(TRACKER_ENDPOINT_PATTERN)))]
    pub external: Vec<String>,
    /// The `storage_ids.conf` of the cluster the `external` trackers serve, kept in a
    /// ConfigMap of this namespace (with `useStorageId`): its storages are added to the
    /// operator's `storage_ids.conf`, so the tracker Pods and the new storages know the old
    /// storages by the ids the old trackers give them. Read again at each reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_storage_ids: Option<ConfigMapKeyRef>,
    /// CPU and memory requests and limits of each tracker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selection, tolerations, affinity and spreading of the tracker Pods.
    #[serde(default)]
    pub scheduling: Scheduling,
    /// FastDFS protocol port of the trackers.
    #[serde(default = "default_tracker_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// HTTP port of the trackers: health, readiness, metrics and the JSON cluster status.
    #[serde(default = "default_tracker_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http_port: i32,
    /// The small volume each tracker keeps its state on (known storages, sync timestamps),
    /// so a restarted or rescheduled tracker starts from it.
    #[serde(default)]
    pub volume: TrackerVolume,
}

/// Schema pattern of an external tracker: `host:port`, with an IPv6 host in brackets.
pub const TRACKER_ENDPOINT_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$";

impl Default for TrackerSpec {
    fn default() -> Self {
        Self {
            replicas: default_tracker_replicas(),
            external: Vec::new(),
            external_storage_ids: None,
            resources: None,
            scheduling: Scheduling::default(),
            port: default_tracker_port(),
            http_port: default_tracker_http_port(),
            volume: TrackerVolume::default(),
        }
    }
}

/// A tracker's state volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackerVolume {
    /// Size of each tracker's volume claim.
    #[serde(default = "default_tracker_volume_size")]
    pub size: Quantity,
    /// StorageClass of the claims; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for TrackerVolume {
    fn default() -> Self {
        Self {
            size: default_tracker_volume_size(),
            storage_class_name: None,
        }
    }
}

fn default_tracker_volume_size() -> Quantity {
    Quantity("1Gi".into())
}

fn default_tracker_replicas() -> i32 {
    2
}

fn default_tracker_port() -> i32 {
    22122
}

fn default_tracker_http_port() -> i32 {
    8080
}

/// Cluster-wide FastDFS settings (`tracker.conf` and the parameters storages fetch from the
/// trackers).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "!(has(self.storeLookup) && self.storeLookup == 'SpecifiedGroup') || has(self.storeGroup)"
).message("storeGroup is required when storeLookup is SpecifiedGroup"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterSettings {
    /// How a tracker picks the group for an upload (FastDFS `store_lookup`). `LoadBalance`, the
    /// choice of FastDFS's sample configuration, sends uploads to the group with the most free
    /// space, so a newly added group fills up first.
    #[serde(default)]
    pub store_lookup: StoreLookup,
    /// The group every upload goes to when `storeLookup` is `SpecifiedGroup` (FastDFS
    /// `store_group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = GROUP_NAME_MAX_LEN), pattern(GROUP_NAME_PATTERN))]
    pub store_group: Option<String>,
    /// How a tracker picks the storage within the group for an upload (FastDFS `store_server`).
    #[serde(default)]
    pub store_server: StoreServer,
    /// How a storage picks one of its store paths for an upload (FastDFS `store_path`).
    #[serde(default)]
    pub store_path: StorePath,
    /// Which replica a tracker sends downloads to (FastDFS `download_server`).
    #[serde(default)]
    pub download_server: DownloadServer,
    /// Free space each storage keeps back from uploads (FastDFS `reserved_storage_space`): a
    /// ratio of each store path such as `10%` or `12.5%`, or a size with a binary unit such as
    /// `1024M` or `10G`.
    #[serde(default = "default_reserved_storage_space")]
    #[schemars(pattern(RESERVED_STORAGE_SPACE_PATTERN))]
    pub reserved_storage_space: String,
    /// Identify storages by stable server IDs instead of their IP address (FastDFS
    /// `use_storage_id`). Pod IPs change on restart, so turning this off is only meant for
    /// clusters that mix in storages outside Kubernetes. Fixed at creation: the file IDs already
    /// handed out depend on it.
    #[serde(default = "default_true")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("useStorageId is immutable"))]
    pub use_storage_id: bool,
    /// What new file IDs encode as their source storage: its server ID or its IP address
    /// (FastDFS `id_type_in_filename`). Fixed at creation: the file IDs already handed out
    /// depend on it.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("idTypeInFilename is immutable"))]
    pub id_type_in_filename: IdType,
    /// Choices between FastDFS versions whose replies differ on the wire.
    #[serde(default)]
    pub compat: CompatSettings,
    /// Secret key holding the anti-leech token secret checked on HTTP downloads (as
    /// fastdfs-nginx-module's `secret_key`). Token checks are off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_token_secret_ref: Option<SecretKeyRef>,
    /// Small-file merging (FastDFS trunk storage): small uploads go into slots of large trunk
    /// files handed out by one storage of each group, saving an inode per file. Off unless
    /// set; turning it on or off changes only where new uploads go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<TrunkSettings>,
}

/// FastDFS trunk storage settings (`use_trunk_file` and the slot and trunk file sizes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.slotMaxSize > self.slotMinSize")
    .message("slotMaxSize must be larger than slotMinSize"))]
#[x_kube(validation = Rule::new("self.slotMaxSize * 2 <= self.trunkFileSize")
    .message("slotMaxSize may be at most half of trunkFileSize"))]
#[serde(rename_all = "camelCase")]
pub struct TrunkSettings {
    /// Store small uploads in trunk files (FastDFS `use_trunk_file`).
    pub enabled: bool,
    /// Bytes of the smallest slot given out, its 24-byte header included (FastDFS
    /// `slot_min_size`).
    #[serde(default = "default_slot_min_size")]
    #[schemars(range(min = 64, max = 65536))]
    pub slot_min_size: i32,
    /// Files whose slot (24-byte header included) would be larger are stored on their own
    /// (FastDFS `slot_max_size`), in bytes.
    #[serde(default = "default_slot_max_size")]
    #[schemars(range(min = 128, max = 536870912))]
    pub slot_max_size: i32,
    /// Bytes of each trunk file (FastDFS `trunk_file_size`).
    #[serde(default = "default_trunk_file_size")]
    #[schemars(range(min = 4194304, max = 1073741824))]
    pub trunk_file_size: i32,
    /// Make trunk files ahead of need on a schedule (FastDFS `trunk_create_file_advance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_ahead: Option<TrunkCreateAhead>,
    /// A storage that becomes trunk server leaves out free blocks whose slot header on
    /// disk holds a file (FastDFS `trunk_init_check_occupying`).
    #[serde(default)]
    pub check_occupying: bool,
    /// Scheduled compaction of the trunk binlog (FastDFS `trunk_compress_binlog_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_compaction: Option<TrunkBinlogCompaction>,
}

/// Schema pattern of a time of day, `HH:MM` (UTC).
const TIME_OF_DAY_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// Schema pattern of a FastDFS size: bytes, or a number with K, M or G.
const FASTDFS_SIZE_PATTERN: &str = "^[0-9]{1,12}[KMG]?$";

/// Trunk files made ahead of need: at `at` and every `intervalSeconds` from it, until
/// `spaceThreshold` of trunk space is free.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkCreateAhead {
    /// Time of day of the first run, `HH:MM` UTC (FastDFS `trunk_create_file_time_base`).
    #[serde(default = "default_create_ahead_at")]
    #[schemars(pattern(TIME_OF_DAY_PATTERN))]
    pub at: String,
    /// Seconds between runs (FastDFS `trunk_create_file_interval`).
    #[serde(default = "default_day_seconds")]
    #[schemars(range(min = 1, max = 31536000))]
    pub interval_seconds: i32,
    /// Free trunk space to make up to, e.g. `20G` (FastDFS
    /// `trunk_create_file_space_threshold`).
    #[schemars(pattern(FASTDFS_SIZE_PATTERN))]
    pub space_threshold: String,
}

/// When the trunk server rewrites its trunk binlog as its free blocks alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkBinlogCompaction {
    /// Time of day of the first run, `HH:MM` UTC (FastDFS
    /// `trunk_compress_binlog_time_base`).
    #[serde(default = "default_compaction_at")]
    #[schemars(pattern(TIME_OF_DAY_PATTERN))]
    pub at: String,
    /// Seconds between runs; 0 runs none on a schedule (FastDFS
    /// `trunk_compress_binlog_interval`).
    #[serde(default = "default_day_seconds")]
    #[schemars(range(min = 0, max = 31536000))]
    pub interval_seconds: i32,
    /// Least seconds between two compactions forced by the binlog's length (FastDFS
    /// `trunk_compress_binlog_min_interval`).
    #[serde(default = "default_day_seconds")]
    #[schemars(range(min = 0, max = 31536000))]
    pub min_interval_seconds: i32,
}

fn default_create_ahead_at() -> String {
    "02:00".to_owned()
}

fn default_compaction_at() -> String {
    "03:00".to_owned()
}

fn default_day_seconds() -> i32 {
    86400
}

fn default_slot_min_size() -> i32 {
    256
}

fn default_slot_max_size() -> i32 {
    1024 * 1024
}

fn default_trunk_file_size() -> i32 {
    64 * 1024 * 1024
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            store_lookup: StoreLookup::default(),
            store_group: None,
            store_server: StoreServer::default(),
            store_path: StorePath::default(),
            download_server: DownloadServer::default(),
            reserved_storage_space: default_reserved_storage_space(),
            use_storage_id: default_true(),
            id_type_in_filename: IdType::default(),
            compat: CompatSettings::default(),
            http_token_secret_ref: None,
            trunk: None,
        }
    }
}

fn default_reserved_storage_space() -> String {
    "10%".to_owned()
}

fn default_true() -> bool {
    true
}

/// FastDFS `store_lookup`: how the group for an upload is chosen.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StoreLookup {
    /// Take the groups in turn.
    RoundRobin,
    /// Always use `storeGroup`.
    SpecifiedGroup,
    /// Use the group with the most free space.
    #[default]
    LoadBalance,
}

/// FastDFS `store_server`: how the storage within a group is chosen for an upload.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StoreServer {
    /// Take the group's writable storages in turn.
    #[default]
    RoundRobin,
    /// The first writable storage in server-ID order.
    FirstById,
    /// The writable storage with the lowest upload priority.
    FirstByPriority,
}

/// FastDFS `store_path`: how a storage picks one of its store paths for an upload.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StorePath {
    /// Take the store paths in turn.
    #[default]
    RoundRobin,
    /// The store path with the most free space.
    LoadBalance,
}

/// FastDFS `download_server`: which replica serves a download.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DownloadServer {
    /// Take the replicas that already hold the file in turn.
    #[default]
    RoundRobin,
    /// The storage the file was uploaded to, when it is readable.
    SourceFirst,
}

/// FastDFS `id_type_in_filename`: what a file ID records as its source storage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IdType {
    /// The storage's server ID (needs `useStorageId`).
    #[default]
    Id,
    /// The storage's IPv4 address.
    Ip,
}

/// Wire-format choices where FastDFS versions disagree.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatSettings {
    /// Width in bytes of IP address fields in tracker replies: 15 (IPv4, understood by every
    /// client) or 45 (IPv6-capable, needs a client that expects it).
    #[serde(default = "default_ip_field_width")]
    #[schemars(extend("enum" = [15, 45]))]
    pub ip_field_width: i32,
    /// Reply format of the fetch-all query (command 105) when several replicas hold a file.
    #[serde(default)]
    pub fetch_all_format: FetchAllFormat,
}

impl Default for CompatSettings {
    fn default() -> Self {
        Self {
            ip_field_width: default_ip_field_width(),
            fetch_all_format: FetchAllFormat::default(),
        }
    }
}

fn default_ip_field_width() -> i32 {
    15
}

/// Reply format of FastDFS command 105 (query fetch all).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FetchAllFormat {
    /// FastDFS 6.16 and later: an address and a port for every replica.
    #[default]
    V616,
    /// FastDFS 6.15 and earlier (and the Java client): one port, then bare addresses.
    Legacy,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A key of a ConfigMap in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the ConfigMap's data.
    #[serde(default = "default_storage_ids_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_storage_ids_key() -> String {
    "storage_ids.conf".into()
}

/// The tracker Service that FastDFS clients use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClientServiceSpec {
    /// Kubernetes Service type. Use `NodePort` or `LoadBalancer` for clients outside the
    /// cluster; storages are then reached at the addresses they register, which must be
    /// routable from those clients.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// Also reachable on a port of every node.
    NodePort,
    /// Also reachable through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The value as Kubernetes spells it in a Service spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Observed state of an `FdfsCluster`, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FdfsClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` (kstatus), `Progressing` and `Degraded`, each with
    /// its own `observedGeneration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the `Reconciling` condition last changed its reason or message: the operator's
    /// clock for `Stalled` (no progress for the stall timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Time>,
    /// Number of tracker Pods that are ready.
    #[serde(default)]
    pub ready_trackers: i32,
    /// Address of the tracker currently leading membership changes, as the trackers report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// One entry per FastDFS group known to the trackers or declared by a `StorageGroup`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub groups: Vec<GroupSummary>,
    /// With `useStorageId` and `external` trackers: the lines the external trackers'
    /// `storage_ids.conf` needs for this cluster's storages, each with an address those
    /// trackers can resolve (the storage's outside address, else its Pod's IP). FastDFS
    /// trackers trust the id a storage reports (`trust_storage_server_id`, on by default),
    /// so a line stays valid when a Pod comes back at another address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_ids_for_external_trackers: Vec<String>,
}

/// Summary of one group, as seen from the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    /// FastDFS group name.
    pub name: String,
    /// Name of the `StorageGroup` declaring the group; unset for a group only the trackers
    /// know, such as one served from outside Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_group: Option<String>,
    /// Storages the trackers list in the group.
    #[serde(default)]
    pub members: i32,
    /// Storages in the ACTIVE state.
    #[serde(default)]
    pub active_members: i32,
    /// Space uploads can still use, in MiB, as the trackers compute it for the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_mb: Option<i64>,
    /// Total space of the group, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_mb: Option<i64>,
}
