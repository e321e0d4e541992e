//! `StorageGroup`: one FastDFS group, run as a StatefulSet of storages that replicate each other.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::common::Scheduling;

/// Longest FastDFS group name, in bytes: the protocol carries it in a 16-byte field.
pub const GROUP_NAME_MAX_LEN: usize = 16;

/// Schema pattern for a FastDFS group name. FastDFS accepts ASCII letters and digits only, and
/// the name appears in every file ID (`group1/M00/...`).
pub const GROUP_NAME_PATTERN: &str = "^[A-Za-z0-9]{1,16}$";

/// Largest number of storages FastDFS trackers accept in one group.
pub const MAX_GROUP_REPLICAS: i32 = 32;

/// One FastDFS group of an `FdfsCluster`: a set of storages that each hold every file of the
/// group.
// Clippy reads the repeated `type_ = ...` of separate printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "fdfs.dev",
    version = "v1alpha1",
    kind = "StorageGroup",
    plural = "storagegroups",
    shortname = "sg",
    namespaced,
    status = "StorageGroupStatus",
    derive = "PartialEq",
    doc = "One FastDFS group: storages that replicate each other's files.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef",
        description = "FdfsCluster the group belongs to"
    ),
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".status.groupName",
        description = "FastDFS group name"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired number of storages"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Storages that are ACTIVE and caught up"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Reason of the Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// Adding or removing groupName later would rename the group out from under its files.
#[x_kube(validation = Rule::new("has(self.groupName) == has(oldSelf.groupName)")
    .message("groupName cannot be added or removed after creation"))]
#[serde(rename_all = "camelCase")]
pub struct StorageGroupSpec {
    /// Name of the `FdfsCluster`, in the same namespace, whose trackers this group joins.
    /// Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable"))]
    pub cluster_ref: String,
    /// FastDFS group name: 1 to 16 ASCII letters or digits. Defaults to `metadata.name`, which
    /// then must follow the same rule. It appears in every file ID of the group. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = GROUP_NAME_MAX_LEN), pattern(GROUP_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("groupName is immutable"))]
    pub group_name: Option<String>,
    /// Number of storages, each holding a full copy of the group's files. Scaling down waits
    /// until the remaining storages are ACTIVE and caught up. FastDFS allows at most 32.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = MAX_GROUP_REPLICAS))]
    pub replicas: i32,
    /// The persistent volume of each storage.
    pub volume: VolumeSpec,
    /// CPU and memory requests and limits of each storage container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selection, tolerations, affinity and spreading of the storage Pods.
    #[serde(default)]
    pub scheduling: Scheduling,
    /// What happens to the group's volumes when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How FastDFS clients outside the Kubernetes cluster reach the storages. The trackers
    /// then give each client the address on its side: Pod addresses to clients inside, the
    /// outside address to the others.
    #[serde(default, skip_serializing_if = "Expose::is_none")]
    pub expose: Expose,
    /// Thumbnail sizes the storages make of JPEG, PNG and WebP images on request over HTTP
    /// (`GET /<file id>?w=&h=&fit=`, or the slave name `<stem><name>.<ext>`), stored as slave
    /// files of the image. None by default: no thumbnails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))")
        .message("thumbnail names must be unique"))]
    pub thumbnails: Vec<ThumbnailPreset>,
}

/// One thumbnail size.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThumbnailPreset {
    /// The slave prefix thumbnails of this size are stored under, e.g. `_150x150`.
    #[schemars(length(min = 1, max = 16), pattern(r"^[A-Za-z0-9_-]+$"))]
    // `<name>-m` holds a file's metadata.
    #[x_kube(validation = Rule::new("self != '-m'").message("-m is the metadata suffix"))]
    pub name: String,
    /// Width of the box, in pixels.
    #[schemars(range(min = 1, max = 4096))]
    pub width: u32,
    /// Height of the box, in pixels.
    #[schemars(range(min = 1, max = 4096))]
    pub height: u32,
    /// `Contain` (default): the whole image, scaled down to fit inside the box. `Cover`: the
    /// box filled, the overflow cut off centred.
    #[serde(default)]
    pub fit: ThumbnailFit,
}

/// How an image is fitted to a thumbnail's box.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ThumbnailFit {
    #[default]
    Contain,
    Cover,
}

/// How clients outside the cluster reach a group's storages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.type != 'NodePort' || (has(self.nodeAddress) && has(self.nodePortBase))"
).message("type NodePort needs nodeAddress and nodePortBase"))]
pub struct Expose {
    /// `None`: Pod addresses only. `LoadBalancer`: a load-balanced Service per storage.
    /// `NodePort`: a NodePort Service per storage, storage `n` listening on and published at
    /// port `nodePortBase + n`. `HostNetwork`: storages on their node's network, one per node.
    #[serde(default, rename = "type")]
    pub type_: ExposeType,
    /// `NodePort`: the host name or address at which outside clients reach the nodes (any
    /// node forwards a NodePort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub node_address: Option<String>,
    /// `NodePort`: the port of the group's first storage, inside and outside; storage `n`
    /// uses `nodePortBase + n`. The ports must be free in the cluster's NodePort range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 65503))]
    pub node_port_base: Option<i32>,
    /// `LoadBalancer`: annotations of each storage's Service (an internal load balancer, an
    /// address pool, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,
}

impl Expose {
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// How a group's storages are published outside the cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ExposeType {
    /// Pod addresses only: clients inside the cluster.
    #[default]
    None,
    /// A `LoadBalancer` Service per storage; its address is the storage's outside address.
    LoadBalancer,
    /// A `NodePort` Service per storage, at `nodeAddress:nodePortBase + n`.
    NodePort,
    /// Storages use their node's network and address (one storage per node and port).
    HostNetwork,
}

fn default_replicas() -> i32 {
    1
}

/// The persistent volume of each storage of a group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested size of each storage's volume, for example `100Gi`. It can grow later where
    /// the storage class allows expansion; it never shrinks.
    // Kubernetes cannot shrink a volume, and a smaller claim would be refused at every apply.
    #[x_kube(validation = Rule::new(
        "quantity(string(self)).compareTo(quantity(string(oldSelf))) >= 0"
    ).message("volume.size cannot shrink: Kubernetes volumes only grow"))]
    pub size: Quantity,
    /// Storage class of the volumes; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Number of FastDFS store paths (`M00`, `M01`, ...) on each volume. Immutable: all
    /// storages of a group must agree on it, and file IDs name their store path.
    #[serde(default = "default_store_paths")]
    #[schemars(range(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storePaths is immutable"))]
    pub store_paths: i32,
    /// Number of first- and second-level data directories in each store path (FastDFS
    /// `subdir_count_per_path`): files go to `data/HH/LL/`, with `HH` and `LL` below this count.
    /// 256, FastDFS's default, spreads millions of files; small groups can use fewer.
    /// Immutable: every storage of a group must agree on it.
    #[serde(default = "default_subdir_count")]
    #[schemars(range(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("subdirCountPerPath is immutable"))]
    pub subdir_count_per_path: i32,
}

fn default_store_paths() -> i32 {
    1
}

fn default_subdir_count() -> i32 {
    256
}

/// What happens to a group's volumes when its `StorageGroup` is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the PersistentVolumeClaims, and with them the files.
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaims together with the group.
    Delete,
}

/// Observed state of a `StorageGroup`, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageGroupStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` (kstatus), `Progressing`, `Degraded` and
    /// group-specific conditions, each with its own `observedGeneration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the `Reconciling` condition last changed its reason or message: the operator's
    /// clock for `Stalled` (no progress for the stall timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Time>,
    /// The FastDFS group name in effect (`spec.groupName` or `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Number of storage Pods that currently exist (read by the `scale` subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Storages that are ACTIVE in FastDFS and caught up with their peers.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Each storage of the group, as the trackers report it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub members: Vec<MemberStatus>,
    /// Total space of the group in MiB, as the trackers count it: that of its writable storage
    /// with the least free space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_mb: Option<i64>,
    /// Free space of the group in MiB, as the trackers count it: that of its writable storage
    /// with the least free space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_mb: Option<i64>,
    /// Outside addresses of the storages (`spec.expose`), by Pod; a load balancer's address
    /// appears once the cloud assigns it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["pod".into()]))]
    pub outside_addresses: Vec<OutsideAddress>,
}

/// One storage's address for clients outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutsideAddress {
    /// Name of the storage's Pod.
    pub pod: String,
    /// `host:port` outside clients are given; unset while a load balancer has none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// One storage of a group, as the trackers report it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// FastDFS server ID of the storage.
    pub id: String,
    /// Name of the Pod running the storage; unset for a storage outside Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Address the storage last registered with the trackers (`ip:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// FastDFS state name: `INIT`, `WAIT_SYNC`, `SYNCING`, `ONLINE`, `ACTIVE`, `OFFLINE`,
    /// `DELETED`, ...
    pub status: String,
    /// How far, in seconds, the storage's copy lags behind the most advanced peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_lag_seconds: Option<i64>,
    /// Bytes of the other members' binlogs that have not reached the storage yet, as they
    /// last reported them; unset when none reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_lag_bytes: Option<i64>,
    /// A member the operator does not run (one of a FastDFS cluster the group moves from).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Whether every file the storage took is on the group's other members, so that it may
    /// be stopped and retired (`fdfs migrate retire`), with the reason when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retirable: Option<Retirable>,
}

/// Whether a member's files are all on the other members.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retirable {
    /// True when every file the storage took is on the others.
    pub ready: bool,
    /// What is still missing, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StorageGroup {
    /// The FastDFS group name in effect: `spec.groupName`, or else `metadata.name`.
    pub fn group_name(&self) -> &str {
        self.spec
            .group_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}
