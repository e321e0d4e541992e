//! Growing a group's volumes. Kubernetes refuses changes to a StatefulSet's
//! `volumeClaimTemplates`, so a larger `spec.volume.size` is carried out on the claims: each
//! `data-<group>-<n>` claim is patched to the new size (the API server refuses it when the
//! claim's StorageClass does not allow expansion: the group says so and stays as it is),
//! then the StatefulSet is deleted with orphan propagation (its Pods keep running) and
//! created again with the new template. Until every claim reports the new capacity, the
//! group says `VolumeResizing`. No cluster-wide read (of StorageClasses) is needed.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, ResourceExt};

use crate::build::{self, ClaimChange, GroupObjects};
use crate::crd::StorageGroup;
use crate::naming;
use crate::{Error, Result};

use super::conditions as cond;

/// `Reconciling` reason, and the condition type, while the volumes grow.
pub const VOLUME_RESIZING: &str = "VolumeResizing";
/// `Stalled` reason: a smaller size or another class.
pub const VOLUME_CHANGE_REFUSED: &str = "VolumeChangeRefused";
/// `Stalled` reason: the API server refused to grow a claim (its StorageClass does not allow
/// expansion).
pub const VOLUME_EXPANSION_NOT_ALLOWED: &str = "VolumeExpansionNotAllowed";

/// Where the group's volumes stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Volumes {
    /// As the spec asks.
    Settled,
    /// Growing; the message says how far.
    Resizing(String),
    /// A change the operator does not make: someone has to change the spec.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// What the volume step did, for the apply step.
#[derive(Debug)]
pub struct VolumeStep {
    pub volumes: Volumes,
    /// The StatefulSet is being replaced: it is not applied this time.
    pub statefulset_replaced: bool,
}

/// Compares the volumes asked for with `current` and moves a growth one step on. Keeps the
/// existing claim template in `objects` unless the StatefulSet is to be created anew.
pub async fn step(
    client: &kube::Client,
    sg: &StorageGroup,
    current: Option<&StatefulSet>,
    objects: &mut GroupObjects,
    previous: &[Condition],
) -> Result<VolumeStep> {
    let namespace = sg.namespace().unwrap_or_default();
    let settled = |volumes| VolumeStep {
        volumes,
        statefulset_replaced: false,
    };
    let change = match current {
        Some(sts) => build::claim_change(sts, &mut objects.statefulset),
        None => ClaimChange::None,
    };
    match change {
        ClaimChange::Refused(message) => Ok(settled(Volumes::Refused {
            reason: VOLUME_CHANGE_REFUSED,
            message,
        })),
        ClaimChange::Grow { from, to } => {
            let claims = claims(client, &namespace, objects).await?;
            let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
            for claim in &claims {
                let asked = claim.spec.as_ref().and_then(build::claim_size);
                if asked.is_some_and(|a| build::at_least(&a, &to)) {
                    continue;
                }
                let name = claim.name_any();
                let body =
                    serde_json::json!({"spec": {"resources": {"requests": {"storage": to}}}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    Ok(_) => {}
                    // The API server's resize admission refuses claims whose StorageClass
                    // does not allow expansion (or that were not provisioned dynamically).
                    Err(kube::Error::Api(status)) if matches!(status.code, 403 | 422) => {
                        return Ok(settled(Volumes::Refused {
                            reason: VOLUME_EXPANSION_NOT_ALLOWED,
                            message: format!(
                                "PersistentVolumeClaim {name} cannot grow to {to}: {}; the \
                                 volumes stay at {from}",
                                status.message
                            ),
                        }));
                    }
                    Err(source) => {
                        return Err(Error::Kube {
                            action: format!(
                                "grow PersistentVolumeClaim {namespace}/{name} to {to}"
                            ),
                            source,
                        });
                    }
                }
            }
            // The claims have their new size; the template follows with a new StatefulSet.
            let name = objects.statefulset.name_any();
            let orphan = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..DeleteParams::default()
            };
            Api::<StatefulSet>::namespaced(client.clone(), &namespace)
                .delete(&name, &orphan)
                .await
                .map_err(|source| Error::Kube {
                    action: format!("replace StatefulSet {namespace}/{name} (orphaning its Pods)"),
                    source,
                })?;
            Ok(VolumeStep {
                volumes: Volumes::Resizing(format!(
                    "growing the volumes from {from} to {to}: claims patched, the StatefulSet \
                     is created again around its running Pods"
                )),
                statefulset_replaced: true,
            })
        }
        ClaimChange::None => {
            let resizing = cond::find(previous, cond::RECONCILING)
                .is_some_and(|c| c.reason == VOLUME_RESIZING);
            if !resizing {
                return Ok(settled(Volumes::Settled));
            }
            // A growth under way: done once every claim reports the size.
            let to = sg.spec.volume.size.0.clone();
            let claims = claims(client, &namespace, objects).await?;
            let grown = claims
                .iter()
                .filter(|c| {
                    c.status
                        .as_ref()
                        .and_then(|s| s.capacity.as_ref())
                        .and_then(|c| c.get("storage"))
                        .is_some_and(|q| build::at_least(&q.0, &to))
                })
                .count();
            Ok(settled(if grown == claims.len() {
                Volumes::Settled
            } else {
                Volumes::Resizing(format!("{grown} of {} volumes report {to}", claims.len()))
            }))
        }
    }
}

/// The group's data claims (they carry the Pod labels of the claim template).
async fn claims(
    client: &kube::Client,
    namespace: &str,
    objects: &GroupObjects,
) -> Result<Vec<PersistentVolumeClaim>> {
    let labels = objects
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&naming::selector(&labels)))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::Kube {
            action: format!("list PersistentVolumeClaims in {namespace}"),
            source,
        })
}
