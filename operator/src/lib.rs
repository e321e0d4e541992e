//! Kubernetes operator for FastDFS-compatible clusters.
//!
//! Two namespaced resources of the `fdfs.dev` group describe a cluster: an [`crd::FdfsCluster`]
//! (trackers and cluster-wide settings) and one [`crd::StorageGroup`] per FastDFS group.
//! Reconciling them is a pipeline (fetch → validate → build → apply → status); this crate holds
//! the resource types and the pure validation step.

pub mod crd;
pub mod error;
pub mod validate;

pub use error::{Error, Result};
