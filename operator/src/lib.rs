//! Kubernetes operator for FastDFS-compatible clusters.
//!
//! Two namespaced resources of the `fdfs.dev` group describe a cluster: an [`crd::FdfsCluster`]
//! (trackers and cluster-wide settings) and one [`crd::StorageGroup`] per FastDFS group.
//! Reconciling them is a pipeline, one module per step:
//!
//! 1. [`controller::fetch`]: read the resource and everything it refers to;
//! 2. [`validate`]: check it (pure);
//! 3. [`build`]: the objects it should have (pure);
//! 4. [`controller::apply`]: server-side apply with one field manager, orphans deleted;
//! 5. [`controller::status`]: conditions and members, as the trackers report them over the
//!    FastDFS protocol ([`fastdfs`]).

pub mod build;
pub mod controller;
pub mod crd;
pub mod error;
pub mod fastdfs;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod naming;
pub mod rollout;
pub mod scale;
pub mod validate;

pub use error::{Error, Result};
