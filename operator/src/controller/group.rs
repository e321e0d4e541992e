//! Reconciling a `StorageGroup`: its StatefulSet, Services, ConfigMap and PodDisruptionBudget,
//! scale steps gated on FastDFS state, removal of scaled-away storages from the trackers, and
//! a status read from the trackers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::build::{self, GroupObjects};
use crate::crd::{FdfsCluster, StorageGroup, StorageGroupStatus};
use crate::fastdfs::{self, DeleteOutcome};
use crate::naming;
use crate::rollout::{self, RolloutState};
use crate::scale::{self, PodAddresses, ScalePlan, ScaleStep, TrackerMembers};
use crate::validate;
use crate::{Error, Result};

use super::conditions as cond;
use super::group_status::Report;
use super::replace::{self, Replacement};
use super::volume;
use super::{Context, TrackerAnswers, apply, deletion, fetch, is_paused, status};

/// The reconcile pipeline of one `StorageGroup`.
pub async fn reconcile(sg: &StorageGroup, ctx: &Context) -> Result<Action> {
    // Owner references let the garbage collector remove the group's objects, and the
    // StatefulSet's claim retention policy keeps or deletes the volumes; the finalizer
    // makes a deletion wait for its confirmation and takes the members out of the trackers.
    if sg.metadata.deletion_timestamp.is_some() {
        return deletion::reconcile(sg, ctx).await;
    }
    if is_paused(sg) {
        return pause(sg, ctx).await;
    }

    let namespace = sg.namespace().unwrap_or_default();
    let name = sg.name_any();
    let client = &ctx.client;

    // Fetch and validate.
    let cluster = fetch::cluster(client, &namespace, &sg.spec.cluster_ref).await?;
    let siblings = ctx.storage_groups(&namespace).await?;
    let valid = match validate::validate_storage_group(
        sg,
        cluster.as_ref(),
        &siblings,
        ctx.config.default_image.as_deref(),
    ) {
        Ok(valid) => valid,
        Err(err) => return invalid(sg, ctx, err).await,
    };
    let cluster = cluster.ok_or_else(|| Error::ClusterNotFound {
        cluster: sg.spec.cluster_ref.clone(),
        namespace: namespace.clone(),
    })?;
    deletion::ensure_finalizer(client, sg).await?;
    let current = fetch::statefulset(client, &namespace, &naming::group(&name)).await?;
    let labels = naming::group_labels(&cluster.name_any(), &name, &valid.group_name);
    let pods = fetch::pods(client, &namespace, &naming::selector(&labels)).await?;

    // Ask the trackers, decide the scale step, remove scaled-away storages.
    let pods = PodsSeen::new(&name, &pods);
    let answers = ctx
        .ask_trackers(&cluster, Some(&[valid.group_name.as_str()]))
        .await;
    let views = tracker_members(&answers, &valid.group_name, &pods.addresses);
    // A StatefulSet deleted to grow its volumes leaves its Pods running until it is made
    // again: they count as its replicas, so a scale-down still goes through its checks.
    let current_replicas = match &current {
        Some(sts) => sts.spec.as_ref().and_then(|s| s.replicas),
        None => pods
            .ordinals
            .last()
            .and_then(|o| i32::try_from(*o).ok())
            .map(|o| o + 1),
    };
    let plan = scale::plan(
        sg.spec.replicas,
        current_replicas,
        &pods.ordinals,
        &views,
        scale::Gates {
            fence: cluster.spec.settings.use_storage_id,
            lag_tolerance_seconds: ctx.config.scale_down_lag_tolerance,
        },
    );
    let removals = remove_members(&plan, &valid.group_name).await;
    // A member replacement only while the group is not also scaling.
    let replacement = if plan.step == ScaleStep::Steady {
        replace::step(client, sg, &views).await?
    } else {
        Replacement::None
    };

    // Build, move a volume growth on, apply.
    let previous_status = sg.status.clone().unwrap_or_default();
    let previous = previous_status.conditions;
    let mut objects = build::group_objects(&cluster, sg, &valid, plan.replicas, &ctx.config.build);
    if let Some(key) = &cluster.spec.settings.http_token_secret_ref
        && let Some(secret) = fetch::secret_value(client, &namespace, key).await?
    {
        build::mark_token_secret(
            &mut objects.statefulset,
            sg.uid().as_deref().unwrap_or_default(),
            &secret,
        );
    }
    let rollout = rollout::step(
        &rollout_state(&cluster, current.as_ref(), &objects, &pods),
        &views,
        ctx.config.rollout_backlog_tolerance,
    );
    build::set_partition(&mut objects.statefulset, rollout.partition());
    let volume = volume::step(client, sg, current.as_ref(), &mut objects, &previous).await?;
    let replaced = if volume.statefulset_replaced {
        current.clone()
    } else {
        None
    };
    let applied = apply_objects(ctx, sg, &objects, replaced, &labels).await?;

    // Events and status.
    let report = Report {
        sg,
        valid: &valid,
        plan: &plan,
        answers: &answers,
        views: &views,
        pods: &pods,
        applied: &applied,
        removals: &removals,
        volumes: &volume.volumes,
        replacement: &replacement,
        rollout: &rollout,
    };
    let now = Time(Timestamp::now());
    let mut wanted = report.conditions();
    let (gitops, last_progress) = cond::convergence(
        &report.work(),
        &previous,
        previous_status.last_progress_time.as_ref(),
        &now,
        ctx.config.stall_after,
    );
    wanted.extend(gitops);
    for (type_, reason, action, note) in
        report.events(current.as_ref(), &objects.statefulset, &previous, &wanted)
    {
        ctx.event(sg, type_, &reason, action, note).await;
    }
    let new_status = report.status(
        cond::merge(&previous, &wanted, sg.metadata.generation, &now),
        last_progress,
    );
    status::write(client, sg, &new_status).await?;
    ctx.metrics.group_replicas(
        &namespace,
        &name,
        sg.spec.replicas,
        new_status.ready_replicas,
    );

    Ok(Action::requeue(if cond::settled(&wanted) {
        ctx.config.resync
    } else {
        ctx.config.progress_interval
    }))
}

/// What the rollout step needs: the StatefulSet's revisions, whether the template applied
/// now is new, each Pod's revision, and whether the cluster's trackers are still rolling.
fn rollout_state(
    cluster: &FdfsCluster,
    current: Option<&StatefulSet>,
    objects: &GroupObjects,
    pods: &PodsSeen,
) -> RolloutState {
    let replicas = objects
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let Some(current) = current else {
        return RolloutState {
            replicas,
            adopting: !pods.ordinals.is_empty(),
            pod_revisions: pods.revisions.clone(),
            ..RolloutState::default()
        };
    };
    let status = current.status.clone().unwrap_or_default();
    let template_hash = |sts: &StatefulSet| {
        sts.annotations()
            .get(naming::TEMPLATE_HASH_ANNOTATION)
            .cloned()
    };
    RolloutState {
        replicas,
        template_changed: template_hash(current) != template_hash(&objects.statefulset),
        update_revision: status.update_revision,
        current_revision: status.current_revision,
        pod_revisions: pods.revisions.clone(),
        trackers_rolling: trackers_rolling(cluster),
        status_stale: status.observed_generation < current.metadata.generation,
        current_partition: current
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition),
        adopting: false,
    }
}

/// Why the cluster's trackers are not settled, from the cluster's own status: a spec the
/// cluster reconcile has not seen yet, or a tracker rollout it reports.
fn trackers_rolling(cluster: &FdfsCluster) -> Option<String> {
    let status = cluster.status.as_ref()?;
    if status.observed_generation < cluster.metadata.generation {
        return Some("the FdfsCluster's latest spec is not applied yet".into());
    }
    cond::find(&status.conditions, cond::PROGRESSING)
        .filter(|c| c.status == "True" && c.reason == "RollingUpdate")
        .map(|c| c.message.clone())
}

/// The group's Pods: which ordinals exist, and at which addresses.
#[derive(Debug, Default)]
pub(super) struct PodsSeen {
    pub(super) ordinals: Vec<u32>,
    pub(super) addresses: PodAddresses,
    /// Each Pod's StatefulSet revision (`controller-revision-hash`), by ordinal.
    pub(super) revisions: BTreeMap<u32, String>,
}

impl PodsSeen {
    fn new(storage_group: &str, pods: &[Pod]) -> Self {
        let mut seen = Self::default();
        for pod in pods {
            let Some(ordinal) = naming::pod_ordinal(storage_group, &pod.name_any()) else {
                continue;
            };
            seen.ordinals.push(ordinal);
            if let Some(revision) = pod.labels().get(naming::POD_REVISION_LABEL) {
                seen.revisions.insert(ordinal, revision.clone());
            }
            if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                seen.addresses.insert(ip, ordinal);
            }
        }
        seen.ordinals.sort_unstable();
        seen
    }
}

fn tracker_members(
    answers: &TrackerAnswers,
    group_name: &str,
    pods: &PodAddresses,
) -> Vec<TrackerMembers> {
    answers
        .views
        .iter()
        .map(|(addr, view)| TrackerMembers {
            tracker: addr.to_string(),
            members: view.as_ref().map_err(Clone::clone).map(|v| {
                let stats = v.storages.get(group_name).cloned().unwrap_or_default();
                let backlog = v.backlog.get(group_name).map_or(&[][..], Vec::as_slice);
                scale::members(group_name, &stats, backlog, pods)
            }),
        })
        .collect()
}

/// How one DELETE_STORAGE went.
#[derive(Debug)]
pub(super) struct RemovalResult {
    pub(super) tracker: String,
    pub(super) id: String,
    pub(super) ordinal: u32,
    pub(super) outcome: Result<DeleteOutcome, String>,
}

/// Sends DELETE_STORAGE for each scaled-away storage to each tracker that still lists it.
async fn remove_members(plan: &ScalePlan, group_name: &str) -> Vec<RemovalResult> {
    let mut results = Vec::new();
    for removal in &plan.removals {
        for tracker in &removal.trackers {
            let outcome = match tracker.parse::<SocketAddr>() {
                Ok(addr) => fastdfs::delete_storage(addr, group_name, &removal.id)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            tracing::info!(group = group_name, storage = %removal.id, %tracker, ?outcome, "delete storage");
            results.push(RemovalResult {
                tracker: tracker.clone(),
                id: removal.id.clone(),
                ordinal: removal.ordinal,
                outcome,
            });
        }
    }
    results
}

/// What the apply step sent back.
#[derive(Debug)]
pub(super) struct Applied {
    pub(super) statefulset: StatefulSet,
    /// The Services publishing the storages outside the cluster, as stored (with the load
    /// balancers' addresses once assigned).
    pub(super) outside: Vec<Service>,
}

/// Applies the group's objects; the StatefulSet only when it is not being replaced
/// (`replaced`: the one going away, whose status still describes the Pods).
async fn apply_objects(
    ctx: &Context,
    sg: &StorageGroup,
    objects: &GroupObjects,
    replaced: Option<StatefulSet>,
    labels: &BTreeMap<String, String>,
) -> Result<Applied> {
    let client = &ctx.client;
    apply::apply(client, &objects.config).await?;
    apply::apply(client, &objects.headless).await?;
    let statefulset = match replaced {
        Some(going) => going,
        None => apply::apply(client, &objects.statefulset).await?,
    };
    let mut outside = Vec::with_capacity(objects.outside.len());
    for service in &objects.outside {
        outside.push(apply::apply(client, service).await?);
    }
    // Services of storages scaled away, or of a group no longer published: looked for
    // only where some were published, so an unexposed group costs no list.
    let was_exposed = sg
        .status
        .as_ref()
        .is_some_and(|s| !s.outside_addresses.is_empty());
    if !objects.outside.is_empty() || was_exposed {
        let mut keep: Vec<String> = outside.iter().map(|s| s.name_any()).collect();
        keep.push(objects.headless.name_any());
        for name in apply::delete_orphans::<Service>(
            client,
            &sg.namespace().unwrap_or_default(),
            &naming::selector(labels),
            sg.uid().as_deref().unwrap_or_default(),
            &keep,
        )
        .await?
        {
            tracing::info!(service = %name, "deleted a storage's outside Service no longer needed");
        }
    }
    apply::apply_budget(
        client,
        objects.pdb.as_ref(),
        &sg.namespace().unwrap_or_default(),
        &naming::selector(labels),
        &sg.name_any(),
        sg.uid().as_deref().unwrap_or_default(),
    )
    .await?;
    Ok(Applied {
        statefulset,
        outside,
    })
}

async fn invalid(sg: &StorageGroup, ctx: &Context, err: Error) -> Result<Action> {
    let current = sg.status.clone().unwrap_or_default();
    status::invalid(ctx, sg, &current.conditions.clone(), err, |conditions| {
        StorageGroupStatus {
            observed_generation: sg.metadata.generation,
            conditions,
            ..current
        }
    })
    .await
}

async fn pause(sg: &StorageGroup, ctx: &Context) -> Result<Action> {
    let current = sg.status.clone().unwrap_or_default();
    status::pause(ctx, sg, &current.conditions.clone(), |conditions| {
        StorageGroupStatus {
            conditions,
            ..current
        }
    })
    .await
}

/// Used by the cluster reconcile: whether `sg` belongs to `cluster`.
pub fn belongs_to(sg: &StorageGroup, cluster: &FdfsCluster) -> bool {
    sg.spec.cluster_ref == cluster.name_any() && sg.namespace() == cluster.namespace()
}
