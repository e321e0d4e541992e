//! Types shared by both resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration, TopologySpreadConstraint};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When the kubelet pulls the container image (the Pod field of the same name).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when the image is not on the node yet.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The value as Kubernetes spells it in a Pod spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Where the Pods of a component may run, copied into their Pod spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// Node labels a node must carry for the Pods to be scheduled on it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the Pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and Pod affinity and anti-affinity rules. Unset: the Pods of the component (the
    /// trackers of a cluster, the members of a group) prefer distinct nodes; `{}`: no rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the Pods are spread across zones, nodes or other topology domains. Unset: evenly
    /// over zones where the nodes have zone labels (never blocking scheduling); `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
}
