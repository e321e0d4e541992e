//! Rendering the CRDs as the YAML files checked in under `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{FdfsCluster, StorageGroup};
use crate::Error;

/// First line of every generated file, so nobody edits one by hand.
const HEADER: &str = concat!(
    "# Generated from operator/src/crd by `cargo run -p fdfs-operator --bin crdgen`.",
    " Do not edit.\n"
);

/// One CRD rendered as a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdManifest {
    /// File name: the CRD's name plus `.yaml`, e.g. `storagegroups.fdfs.dev.yaml`.
    pub file_name: String,
    /// The file's content.
    pub yaml: String,
}

/// Every CRD this operator serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![FdfsCluster::crd(), StorageGroup::crd()]
}

/// Every CRD as the YAML file `crdgen` writes.
pub fn manifests() -> Result<Vec<CrdManifest>, Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let body = serde_norway::to_string(&crd).map_err(|source| Error::RenderCrd {
                name: name.clone(),
                source,
            })?;
            Ok(CrdManifest {
                file_name: format!("{name}.yaml"),
                yaml: format!("{HEADER}{body}"),
            })
        })
        .collect()
}
