//! The build step of reconcile: the Kubernetes objects a valid resource should have.
//!
//! Pure functions of the resources, their validated form and the operator's options. Nothing
//! here calls the API; the apply step sends the objects with server-side apply.

pub mod conf;
mod group;
mod pod;
mod tracker;

pub use group::{
    ClaimChange, GroupObjects, at_least, claim_change, claim_size, group_objects,
    mark_token_secret, outside_addresses, set_claim_size, set_partition, storage_port,
};
pub use tracker::{TrackerObjects, tracker_objects};

/// Where the ConfigMaps are mounted in every node container.
pub const CONFIG_DIR: &str = "/etc/fdfs";
/// Where a node keeps its state: the storage's volume, or the tracker's scratch directory.
pub const DATA_DIR: &str = "/var/lib/fdfs";
/// File name of the tracker configuration in its ConfigMap.
pub const TRACKER_CONF_FILE: &str = "tracker.conf";
/// File name of the storage configuration in its ConfigMap.
pub const STORAGE_CONF_FILE: &str = "storage.conf";
/// File name of the server id list in the cluster's ConfigMap.
pub const STORAGE_IDS_FILE: &str = "storage_ids.conf";
/// FastDFS protocol port of the storages.
pub const STORAGE_PORT: i32 = 23000;
/// HTTP port of the storages: downloads, `/healthz`, `/readyz` and `/metrics`.
pub const STORAGE_HTTP_PORT: i32 = 8888;
/// Seconds between a storage's heartbeats to each tracker.
pub const HEART_BEAT_INTERVAL: u32 = 10;
/// Seconds between a storage's disk usage reports.
pub const STAT_REPORT_INTERVAL: u32 = 30;
/// Name of the FastDFS protocol port in Pods and Services.
pub const FASTDFS_PORT_NAME: &str = "fastdfs";
/// Name of the HTTP port in Pods and Services; the probes use it.
pub const HTTP_PORT_NAME: &str = "http";
/// Name of the storage volume claim template.
pub const DATA_VOLUME: &str = "data";
/// Environment variable carrying the anti-leech token secret, when the cluster has one.
pub const HTTP_SECRET_ENV: &str = "FDFS_HTTP_SECRET_KEY";

/// Settings of the operator that shape the objects it builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// DNS domain of the Kubernetes cluster (`cluster.local` by default), used in the names
    /// the nodes resolve.
    pub cluster_domain: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
        }
    }
}
