//! Deleting a `StorageGroup` without losing files by accident. A finalizer holds the
//! resource while its members are registered in the trackers: deleting a group whose
//! members the trackers list is refused (a `Stalled` condition and a Warning Event) until
//! the annotation `fdfs.dev/confirm-delete: <groupName>` confirms it. Then the storages are
//! stopped (the StatefulSet scaled to zero), removed from every tracker, and the finalizer
//! goes; the volumes stay or go as `deletionPolicy` says, and an Event says which.

use std::net::SocketAddr;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use crate::crd::{DeletionPolicy, StorageGroup, StorageGroupStatus};
use crate::fastdfs::{self, DeleteOutcome};
use crate::naming;
use crate::{Error, Result};

use super::conditions::{self as cond, Want};
use super::{Context, fetch, status};

/// Holds a `StorageGroup` until its members are out of the trackers.
pub const FINALIZER: &str = "fdfs.dev/storage-group";
/// Confirms deleting a group whose members hold files; its value is the group name.
pub const CONFIRM_DELETE_ANNOTATION: &str = "fdfs.dev/confirm-delete";
/// `Ready`/`Stalled` reason while a deletion waits for its confirmation.
pub const DELETION_NOT_CONFIRMED: &str = "DeletionNotConfirmed";

fn has_finalizer(sg: &StorageGroup) -> bool {
    sg.finalizers().iter().any(|f| f == FINALIZER)
}

async fn set_finalizers(client: &kube::Client, sg: &StorageGroup, list: Vec<String>) -> Result<()> {
    let namespace = sg.namespace().unwrap_or_default();
    let name = sg.name_any();
    let body = serde_json::json!({"metadata": {"finalizers": list}});
    Api::<StorageGroup>::namespaced(client.clone(), &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|source| Error::Kube {
            action: format!("set the finalizers of StorageGroup {namespace}/{name}"),
            source,
        })
}

/// Adds the finalizer to a group that has none yet.
pub async fn ensure_finalizer(client: &kube::Client, sg: &StorageGroup) -> Result<()> {
    if has_finalizer(sg) {
        return Ok(());
    }
    let mut list = sg.finalizers().to_vec();
    list.push(FINALIZER.into());
    set_finalizers(client, sg, list).await
}

/// The reconcile of a `StorageGroup` being deleted.
pub async fn reconcile(sg: &StorageGroup, ctx: &Context) -> Result<Action> {
    if !has_finalizer(sg) {
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let namespace = sg.namespace().unwrap_or_default();
    let group = sg.group_name().to_owned();
    let cluster = fetch::cluster(client, &namespace, &sg.spec.cluster_ref).await?;

    // The members the trackers list for the group (none when the cluster is gone).
    let mut listed: Vec<(SocketAddr, String)> = Vec::new();
    if let Some(cluster) = &cluster {
        let answers = ctx.ask_trackers(cluster, Some(&[group.as_str()])).await;
        if answers.first_view().is_none() {
            // Nobody can say whether the group holds files: wait, delete nothing.
            tracing::warn!(group, problem = ?answers.problem(), "deletion waits for a tracker to answer");
            return Ok(Action::requeue(ctx.config.progress_interval));
        }
        for (tracker, view) in &answers.views {
            let Ok(view) = view else { continue };
            for s in view.storages.get(&group).into_iter().flatten() {
                if s.status != fdfs_node::proto::StorageStatus::Deleted as u8 {
                    listed.push((*tracker, s.id.clone()));
                }
            }
        }
    }

    let confirmed = sg
        .annotations()
        .get(CONFIRM_DELETE_ANNOTATION)
        .is_some_and(|v| *v == group);
    if !listed.is_empty() && !confirmed {
        return refuse(sg, ctx, &group, &listed).await;
    }

    // Confirmed: stop the storages first (the trackers only delete stopped ones).
    let sts_name = naming::group(&sg.name_any());
    if let Some(sts) = fetch::statefulset(client, &namespace, &sts_name).await?
        && sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0
    {
        let body = serde_json::json!({"spec": {"replicas": 0}});
        Api::<StatefulSet>::namespaced(client.clone(), &namespace)
            .patch(&sts_name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|source| Error::Kube {
                action: format!("stop the storages of StatefulSet {namespace}/{sts_name}"),
                source,
            })?;
        ctx.event(
            sg,
            EventType::Normal,
            "StoppingStorages",
            "Delete",
            format!("deletion confirmed: stopping the storages of group {group}"),
        )
        .await;
        return Ok(Action::requeue(ctx.config.progress_interval));
    }
    let labels = naming::group_labels(&sg.spec.cluster_ref, &sg.name_any(), &group);
    if !fetch::pods(client, &namespace, &naming::selector(&labels))
        .await?
        .is_empty()
    {
        return Ok(Action::requeue(ctx.config.progress_interval));
    }

    let mut waiting = false;
    let mut removed = Vec::new();
    for (tracker, id) in &listed {
        match fastdfs::delete_storage(*tracker, &group, id).await {
            Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => removed.push(id.clone()),
            Ok(DeleteOutcome::StillRunning) => waiting = true,
            Ok(DeleteOutcome::Refused(status)) => {
                tracing::warn!(%tracker, storage = %id, %status, "tracker refused to delete a storage");
                waiting = true;
            }
            Err(e) => {
                tracing::warn!(%tracker, storage = %id, error = %e, "cannot delete a storage");
                waiting = true;
            }
        }
    }
    if waiting {
        return Ok(Action::requeue(ctx.config.progress_interval));
    }
    removed.sort();
    removed.dedup();
    if !removed.is_empty() {
        ctx.event(
            sg,
            EventType::Normal,
            "MemberRemoved",
            "Delete",
            format!(
                "deleted storage(s) {} of group {group} from the trackers",
                removed.join(", ")
            ),
        )
        .await;
    }
    let volumes = match sg.spec.deletion_policy {
        DeletionPolicy::Retain => {
            format!("deletionPolicy Retain: the claims data-{sts_name}-* and their files are kept")
        }
        DeletionPolicy::Delete => {
            format!("deletionPolicy Delete: the claims data-{sts_name}-* go with the group")
        }
    };
    ctx.event(sg, EventType::Normal, "Deleted", "Delete", volumes)
        .await;
    ctx.metrics.group_removed(&namespace, &sg.name_any());
    let rest: Vec<String> = sg
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(client, sg, rest).await?;
    Ok(Action::await_change())
}

/// A deletion without its confirmation: nothing changes, and the status and an Event say
/// how to confirm it.
async fn refuse(
    sg: &StorageGroup,
    ctx: &Context,
    group: &str,
    listed: &[(SocketAddr, String)],
) -> Result<Action> {
    let mut ids: Vec<&str> = listed.iter().map(|(_, id)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let message = format!(
        "the trackers list storage(s) {} of group {group}, which may hold its only copies of \
         files; to delete the group and them, annotate the StorageGroup \
         {CONFIRM_DELETE_ANNOTATION}={group}",
        ids.join(", ")
    );
    let previous = sg
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let stalled = Want::yes(cond::STALLED, DELETION_NOT_CONFIRMED, message.clone());
    if cond::changed(&previous, &stalled) {
        ctx.event(
            sg,
            EventType::Warning,
            DELETION_NOT_CONFIRMED,
            "Delete",
            message.clone(),
        )
        .await;
    }
    let wanted = [
        Want::no(cond::READY, DELETION_NOT_CONFIRMED, message.clone()),
        Want::no(cond::RECONCILING, DELETION_NOT_CONFIRMED, message.clone()),
        stalled,
    ];
    let now = Time(Timestamp::now());
    let mut conditions = cond::merge(&previous, &wanted, sg.metadata.generation, &now);
    conditions.extend(
        previous
            .iter()
            .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
            .cloned(),
    );
    let current = sg.status.clone().unwrap_or_default();
    status::write(
        &ctx.client,
        sg,
        &StorageGroupStatus {
            conditions,
            ..current
        },
    )
    .await?;
    Ok(Action::requeue(ctx.config.invalid_interval))
}
