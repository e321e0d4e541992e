//! Reconciling an `FdfsCluster`: the tracker StatefulSet, its Services, the tracker and
//! storage-id ConfigMaps, and a status read from the trackers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::Result;
use crate::build::{self, TrackerObjects, conf::GroupIds};
use crate::crd::{FdfsCluster, FdfsClusterStatus, GroupSummary, StorageGroup};
use crate::naming;
use crate::validate;

use super::conditions::{self as cond, Want, Work};
use super::group::belongs_to;
use super::{
    Context, EventSpec, NOT_OBSERVED, SetProgress, TrackerAnswers, apply, fetch, is_paused, status,
};

/// The reconcile pipeline of one `FdfsCluster`.
pub async fn reconcile(cluster: &FdfsCluster, ctx: &Context) -> Result<Action> {
    // Owner references let the garbage collector remove the tracker objects; no finalizer.
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let current_status = cluster.status.clone().unwrap_or_default();
    let previous = current_status.conditions.clone();
    if is_paused(cluster) {
        return status::pause(ctx, cluster, &previous, |conditions| FdfsClusterStatus {
            conditions,
            ..current_status
        })
        .await;
    }

    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let client = &ctx.client;
    let default_image = ctx.config.default_image.as_deref();

    // Fetch and validate.
    let groups = ctx.storage_groups(&namespace).await?;
    let valid = match validate::validate_cluster(cluster, default_image) {
        Ok(valid) => valid,
        Err(err) => return invalid(ctx, cluster, &previous, current_status, err).await,
    };
    let ids = group_ids(cluster, &groups, default_image);
    let mut valid = valid;
    if let Some(source) = &cluster.spec.trackers.external_storage_ids {
        let text = fetch::config_map_value(client, &namespace, source).await?;
        let ours: Vec<(&str, &str)> = ids
            .iter()
            .map(|g| (g.group_name.as_str(), g.storage_group.as_str()))
            .collect();
        match validate::external_storage_ids(cluster, text.as_ref().map(|t| t.as_deref()), &ours) {
            Ok(entries) => valid.external_ids = entries,
            // The storage ids rendered last stay as they are.
            Err(err) => return invalid(ctx, cluster, &previous, current_status, err).await,
        }
    }
    let current = fetch::statefulset(client, &namespace, &naming::tracker(&name)).await?;

    // Build and apply.
    let objects = build::tracker_objects(cluster, &valid, &ids, &ctx.config.build);
    let trackers = apply_objects(ctx, cluster, &objects).await?;

    // Status, from the StatefulSet and from the trackers themselves.
    let answers = ctx.ask_trackers(cluster, None).await;
    let now = Time(Timestamp::now());
    let mut wanted = conditions(cluster, &trackers, &answers);
    let (gitops, last_progress) = cond::convergence(
        &work(cluster, &trackers, &answers),
        &previous,
        current_status.last_progress_time.as_ref(),
        &now,
        ctx.config.stall_after,
    );
    wanted.extend(gitops);
    for (type_, reason, action, note) in
        events(current.as_ref(), &objects.statefulset, &previous, &wanted)
    {
        ctx.event(cluster, type_, &reason, action, note).await;
    }
    let storage_ids_for_external_trackers = lines_for_external_trackers(ctx, cluster, &ids).await?;
    let new_status = FdfsClusterStatus {
        observed_generation: cluster.metadata.generation,
        conditions: cond::merge(&previous, &wanted, cluster.metadata.generation, &now),
        last_progress_time: Some(last_progress),
        ready_trackers: ready_trackers(&trackers),
        leader: answers.first_view().and_then(|v| v.leader.clone()),
        groups: summaries(cluster, &groups, &answers),
        storage_ids_for_external_trackers,
    };
    status::write(client, cluster, &new_status).await?;

    Ok(Action::requeue(if cond::settled(&wanted) {
        ctx.config.resync
    } else {
        ctx.config.progress_interval
    }))
}

/// A spec that cannot be acted on: conditions and an Event that say why, nothing built.
async fn invalid(
    ctx: &Context,
    cluster: &FdfsCluster,
    previous: &[Condition],
    current: FdfsClusterStatus,
    err: crate::Error,
) -> Result<Action> {
    status::invalid(ctx, cluster, previous, err, |conditions| {
        FdfsClusterStatus {
            observed_generation: cluster.metadata.generation,
            conditions,
            ..current
        }
    })
    .await
}

/// The groups whose storages go into `storage_ids.conf`: the valid groups of the cluster, each
/// with as many ordinals as it wants or still has.
fn group_ids(
    cluster: &FdfsCluster,
    groups: &[StorageGroup],
    default_image: Option<&str>,
) -> Vec<GroupIds> {
    groups
        .iter()
        .filter(|sg| belongs_to(sg, cluster))
        .filter_map(|sg| {
            let valid =
                validate::validate_storage_group(sg, Some(cluster), groups, default_image).ok()?;
            // Every storage still running keeps its entry: the Pods counted, and above them
            // the highest ordinal a member is listed at (a lower Pod may be briefly gone).
            let existing = sg.status.as_ref().map_or(0, |s| {
                let highest = s
                    .members
                    .iter()
                    .filter_map(|m| naming::pod_ordinal(&sg.name_any(), m.pod.as_deref()?))
                    .filter_map(|o| i32::try_from(o).ok())
                    .map(|o| o.saturating_add(1))
                    .max()
                    .unwrap_or(0);
                s.replicas.max(highest)
            });
            Some(GroupIds {
                group_name: valid.group_name,
                storage_group: sg.name_any(),
                replicas: sg.spec.replicas.max(existing),
                writable: sg.spec.replicas,
                expose: sg.spec.expose.clone(),
                outside: sg
                    .status
                    .as_ref()
                    .map(|s| s.outside_addresses.clone())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// With storage ids and external trackers, the `storage_ids.conf` lines those trackers need
/// for this cluster's storages (from the Pods' addresses); none otherwise.
async fn lines_for_external_trackers(
    ctx: &Context,
    cluster: &FdfsCluster,
    groups: &[GroupIds],
) -> Result<Vec<String>> {
    let spec = &cluster.spec;
    if !spec.settings.use_storage_id || spec.trackers.external.is_empty() {
        return Ok(Vec::new());
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let selector = naming::selector(&naming::storage_labels(&cluster.name_any()));
    let pod_ips: BTreeMap<String, String> = fetch::pods(&ctx.client, &namespace, &selector)
        .await?
        .into_iter()
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            Some((pod.name_any(), ip))
        })
        .collect();
    let entries = build::conf::storage_id_entries(&namespace, groups, &ctx.config.build);
    Ok(build::conf::lines_for_external_trackers(&entries, &pod_ips))
}

async fn apply_objects(
    ctx: &Context,
    cluster: &FdfsCluster,
    objects: &TrackerObjects,
) -> Result<StatefulSet> {
    let client = &ctx.client;
    apply::apply(client, &objects.config).await?;
    apply::apply(client, &objects.storage_ids).await?;
    apply::apply(client, &objects.headless).await?;
    apply::apply(client, &objects.client).await?;
    let statefulset = apply::apply(client, &objects.statefulset).await?;
    apply::apply_budget(
        client,
        objects.pdb.as_ref(),
        &cluster.namespace().unwrap_or_default(),
        &naming::selector(&naming::tracker_labels(&cluster.name_any())),
        &cluster.name_any(),
        cluster.uid().as_deref().unwrap_or_default(),
    )
    .await?;
    // Trackers ran on a Deployment before they kept state: it goes once the StatefulSet
    // stands.
    let namespace = cluster.namespace().unwrap_or_default();
    for name in apply::delete_orphans::<Deployment>(
        client,
        &namespace,
        &naming::selector(&naming::tracker_labels(&cluster.name_any())),
        cluster.uid().as_deref().unwrap_or_default(),
        &[],
    )
    .await?
    {
        tracing::info!(deployment = %name, "deleted the trackers' former Deployment");
    }
    Ok(statefulset)
}

fn ready_trackers(trackers: &StatefulSet) -> i32 {
    trackers
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn rollout_pending(trackers: &StatefulSet) -> Option<String> {
    let p = SetProgress::of(trackers, 1);
    if !p.observed {
        return Some(NOT_OBSERVED.into());
    }
    if p.revisions_differ || p.updated < p.replicas {
        return Some(format!("{} of {} trackers updated", p.updated, p.replicas));
    }
    None
}

fn conditions(
    cluster: &FdfsCluster,
    trackers: &StatefulSet,
    answers: &TrackerAnswers,
) -> Vec<Want> {
    let desired = cluster.spec.trackers.replicas;
    let ready = ready_trackers(trackers);
    let answered = answers.views.iter().filter(|(_, v)| v.is_ok()).count();
    let problem = answers.problem();
    let rollout = rollout_pending(trackers);

    let ready_cond = if ready >= desired && problem.is_none() && rollout.is_none() {
        // The docs advise three or five trackers, one per zone where there are three zones.
        let advice = if desired > 1 && desired % 2 == 0 {
            "; an odd number of trackers is recommended"
        } else {
            ""
        };
        Want::yes(
            cond::READY,
            "Ready",
            format!("{ready} of {desired} trackers ready; {answered} answer over FastDFS{advice}"),
        )
    } else if answered == 0 && ready > 0 {
        Want::no(
            cond::READY,
            "TrackersUnreachable",
            problem.clone().unwrap_or_default(),
        )
    } else {
        Want::no(
            cond::READY,
            "WaitingForTrackers",
            format!("{ready} of {desired} trackers ready; {answered} answer over FastDFS"),
        )
    };
    let progressing = match rollout {
        Some(why) => Want::yes(cond::PROGRESSING, "RollingUpdate", why),
        None if ready < desired => Want::yes(
            cond::PROGRESSING,
            "WaitingForTrackers",
            format!("{ready} of {desired} trackers ready"),
        ),
        None => Want::no(cond::PROGRESSING, "Complete", "nothing to do"),
    };
    let degraded = match &problem {
        // A tracker that is not running yet is progress, not degradation.
        Some(problem) if ready > 0 => {
            Want::yes(cond::DEGRADED, "TrackerUnreachable", problem.clone())
        }
        _ => Want::no(cond::DEGRADED, "AsExpected", "no problem seen"),
    };
    vec![ready_cond, progressing, degraded]
}

/// What is left to do, for `Reconciling` and `Stalled`.
fn work(cluster: &FdfsCluster, trackers: &StatefulSet, answers: &TrackerAnswers) -> Work {
    let desired = cluster.spec.trackers.replicas;
    let ready = ready_trackers(trackers);
    if let Some(why) = rollout_pending(trackers) {
        Work::converging("RollingUpdate", why)
    } else if ready < desired {
        Work::converging(
            "WaitingForTrackers",
            format!("{ready} of {desired} trackers ready"),
        )
    } else if let Some(problem) = answers.problem() {
        Work::converging("TrackersUnreachable", problem)
    } else {
        Work::Done
    }
}

fn events(
    before: Option<&StatefulSet>,
    built: &StatefulSet,
    previous: &[Condition],
    wanted: &[Want],
) -> Vec<EventSpec> {
    let mut events = Vec::new();
    let hash = |d: &StatefulSet| super::config_hash(&d.spec.as_ref()?.template);
    match before {
        None => events.push((
            EventType::Normal,
            "Created".into(),
            "Create",
            format!(
                "created the tracker StatefulSet {} with {} trackers",
                built.name_any(),
                built.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
            ),
        )),
        Some(before) if hash(before).is_some() && hash(before) != hash(built) => events.push((
            EventType::Normal,
            "RollingRestart".into(),
            "Restart",
            "tracker.conf changed: replacing the trackers one at a time".into(),
        )),
        Some(_) => {}
    }
    for want in wanted {
        let report = matches!(want.type_, cond::DEGRADED | cond::STALLED) && want.status;
        if report && cond::changed(previous, want) {
            events.push((
                EventType::Warning,
                want.reason.clone(),
                "Reconcile",
                want.message.clone(),
            ));
        }
    }
    events
}

/// One entry per group the trackers know or a `StorageGroup` declares.
fn summaries(
    cluster: &FdfsCluster,
    groups: &[StorageGroup],
    answers: &TrackerAnswers,
) -> Vec<GroupSummary> {
    let declared: Vec<&StorageGroup> = groups.iter().filter(|sg| belongs_to(sg, cluster)).collect();
    let mut out: Vec<GroupSummary> = Vec::new();
    if let Some(view) = answers.first_view() {
        for g in &view.groups {
            let active = view.storages.get(&g.group).map_or(0, |list| {
                list.iter()
                    .filter(|s| s.status == fdfs_node::proto::StorageStatus::Active as u8)
                    .count()
            });
            out.push(GroupSummary {
                name: g.group.clone(),
                storage_group: declared
                    .iter()
                    .find(|sg| sg.group_name() == g.group)
                    .map(|sg| sg.name_any()),
                members: i32::try_from(g.storage_count).unwrap_or(i32::MAX),
                active_members: active as i32,
                free_mb: i64::try_from(g.free_mb).ok(),
                total_mb: i64::try_from(g.total_mb).ok(),
            });
        }
    }
    for sg in declared {
        if !out.iter().any(|g| g.name == sg.group_name()) {
            out.push(GroupSummary {
                name: sg.group_name().to_owned(),
                storage_group: Some(sg.name_any()),
                ..Default::default()
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MemberStatus;
    use serde::Deserialize;

    #[test]
    fn a_storage_still_running_keeps_its_id_while_a_lower_pod_is_gone() {
        let cluster: FdfsCluster =
            serde_norway::from_str(include_str!("../../tests/fixtures/cluster.yaml"))
                .expect("cluster");
        let mut sg =
            serde_norway::Deserializer::from_str(include_str!("../../tests/fixtures/groups.yaml"))
                .map(|doc| StorageGroup::deserialize(doc).expect("group"))
                .find(|g| g.name_any() == "group1")
                .expect("group1");
        // Scaling from 3 to 2 is held, and Pod 0 is gone for a moment: two Pods counted,
        // storage 2 still running.
        let member = |pod: &str| MemberStatus {
            id: pod.into(),
            pod: Some(pod.into()),
            status: "ACTIVE".into(),
            ..MemberStatus::default()
        };
        let status = sg.status.get_or_insert_default();
        status.replicas = 2;
        status.members = vec![member("group1-1"), member("group1-2")];
        let ids = group_ids(&cluster, std::slice::from_ref(&sg), None);
        assert_eq!(ids.len(), 1);
        assert_eq!((ids[0].replicas, ids[0].writable), (3, 2));
    }
}
