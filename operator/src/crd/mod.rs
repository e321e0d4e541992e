//! Custom resource types of the `fdfs.dev` API group, and the CRD manifests generated from them.
//!
//! - [`FdfsCluster`]: the trackers and the cluster-wide FastDFS settings.
//! - [`StorageGroup`]: one FastDFS group (a set of storages that replicate each other).
//!
//! The Rust types are the source of truth: `crds/*.yaml` is rendered from them by the
//! `crdgen` binary (see [`manifests`]) and never edited by hand.

mod cluster;
mod common;
mod manifest;
mod reserved_space;
mod storage_group;

pub use cluster::{
    ClientServiceSpec, ClusterSettings, CompatSettings, ConfigMapKeyRef, DownloadServer,
    FdfsCluster, FdfsClusterSpec, FdfsClusterStatus, FetchAllFormat, GroupSummary, IdType,
    MAX_TRACKERS, SecretKeyRef, ServiceType, StoreLookup, StorePath, StoreServer, TrackerSpec,
    TrunkBinlogCompaction, TrunkCreateAhead, TrunkSettings,
};
pub use common::{ImagePullPolicy, Scheduling};
pub use manifest::{CrdManifest, crds, manifests};
pub use reserved_space::{RESERVED_STORAGE_SPACE_PATTERN, ReservedSpace};
pub use storage_group::{
    DeletionPolicy, Expose, ExposeType, GROUP_NAME_MAX_LEN, GROUP_NAME_PATTERN, MAX_GROUP_REPLICAS,
    MemberStatus, OutsideAddress, Retirable, StorageGroup, StorageGroupSpec, StorageGroupStatus,
    ThumbnailFit, ThumbnailPreset, VolumeSpec,
};

/// API group of every resource in this crate.
pub const API_GROUP: &str = "fdfs.dev";

/// The one served and stored API version.
pub const API_VERSION: &str = "v1alpha1";
