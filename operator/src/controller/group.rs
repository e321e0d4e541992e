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
use kube::runtime::events::EventType;

use crate::build::{self, GroupObjects};
use crate::crd::{FdfsCluster, StorageGroup, StorageGroupStatus};
use crate::fastdfs::{self, DeleteOutcome};
use crate::naming;
use crate::rollout::{self, Rollout, RolloutState};
use crate::scale::{self, Member, PodAddresses, ScalePlan, ScaleStep, TrackerMembers};
use crate::validate::{self, ValidStorageGroup};
use crate::{Error, Result};

use super::conditions::{self as cond, Want, Work};
use super::replace::{self, Replacement};
use super::volume::{self, VOLUME_RESIZING, Volumes};
use super::{
    Context, EventSpec, NOT_OBSERVED, SetProgress, TrackerAnswers, apply, deletion, fetch,
    is_paused, status,
};

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
    let current_replicas = current
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas);
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
    let Some(current) = current else {
        return RolloutState::default();
    };
    let status = current.status.clone().unwrap_or_default();
    let template_hash = |sts: &StatefulSet| {
        sts.annotations()
            .get(naming::TEMPLATE_HASH_ANNOTATION)
            .cloned()
    };
    RolloutState {
        replicas: objects
            .statefulset
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(0),
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
struct PodsSeen {
    ordinals: Vec<u32>,
    addresses: PodAddresses,
    /// Each Pod's StatefulSet revision (`controller-revision-hash`), by ordinal.
    revisions: BTreeMap<u32, String>,
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
struct RemovalResult {
    tracker: String,
    id: String,
    ordinal: u32,
    outcome: Result<DeleteOutcome, String>,
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
struct Applied {
    statefulset: StatefulSet,
    /// The Services publishing the storages outside the cluster, as stored (with the load
    /// balancers' addresses once assigned).
    outside: Vec<Service>,
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

/// Everything the status and the Events are made from.
struct Report<'a> {
    sg: &'a StorageGroup,
    valid: &'a ValidStorageGroup,
    plan: &'a ScalePlan,
    answers: &'a TrackerAnswers,
    views: &'a [TrackerMembers],
    pods: &'a PodsSeen,
    applied: &'a Applied,
    removals: &'a [RemovalResult],
    /// Where the volumes stand against `spec.volume`.
    volumes: &'a Volumes,
    /// What a member replacement request came to.
    replacement: &'a Replacement,
    /// Where a rollout of a new Pod template stands.
    rollout: &'a Rollout,
}

impl Report<'_> {
    /// The members as the first tracker that answered lists them.
    fn members(&self) -> Vec<Member> {
        self.views
            .iter()
            .find_map(|v| v.members.as_ref().ok().cloned())
            .unwrap_or_default()
    }

    /// Ordinals below `spec.replicas` that every tracker that answered sees ACTIVE and
    /// caught up.
    fn ready_replicas(&self) -> i32 {
        let answered: Vec<&Vec<Member>> = self
            .views
            .iter()
            .filter_map(|v| v.members.as_ref().ok())
            .collect();
        if answered.is_empty() {
            return 0;
        }
        (0..self.sg.spec.replicas.max(0) as u32)
            .filter(|o| {
                answered.iter().all(|members| {
                    members
                        .iter()
                        .any(|m| m.ordinal == Some(*o) && m.is_active_and_caught_up())
                })
            })
            .count() as i32
    }

    fn rollout_pending(&self) -> Option<String> {
        let p = SetProgress::of(&self.applied.statefulset, 0);
        if !p.observed {
            return Some(NOT_OBSERVED.into());
        }
        let done = format!("{} of {} storages updated", p.updated, p.replicas);
        if let Rollout::Stepping { waiting, .. } = self.rollout {
            return Some(format!("rolling update: {done}; waiting for {waiting}"));
        }
        p.revisions_differ
            .then(|| format!("rolling update: {done}"))
    }

    fn conditions(&self) -> Vec<Want> {
        let desired = self.sg.spec.replicas;
        let ready = self.ready_replicas();
        let members = self.members();
        let tracker_problem = self.answers.problem();
        let removal_failures: Vec<String> = self
            .removals
            .iter()
            .filter_map(|r| match &r.outcome {
                Ok(DeleteOutcome::Refused(status)) => Some(format!(
                    "tracker {} refused to delete storage {}: {status}",
                    r.tracker, r.id
                )),
                Err(e) => Some(format!(
                    "cannot delete storage {} from tracker {}: {e}",
                    r.id, r.tracker
                )),
                Ok(_) => None,
            })
            .collect();
        let rollout = self.rollout_pending();

        let ready_cond = if tracker_problem.is_some() && self.answers.first_view().is_none() {
            Want::no(
                cond::READY,
                "TrackersUnreachable",
                tracker_problem.clone().unwrap_or_default(),
            )
        } else if let Volumes::Refused { reason, message } = self.volumes {
            Want::no(cond::READY, reason, message.clone())
        } else if let Volumes::Resizing(message) = self.volumes {
            Want::no(cond::READY, VOLUME_RESIZING, message.clone())
        } else if let Replacement::Invalid(message) = self.replacement {
            Want::no(cond::READY, "InvalidReplaceMember", message.clone())
        } else if let Replacement::Started { ordinal } | Replacement::Waiting { ordinal, .. } =
            self.replacement
        {
            Want::no(
                cond::READY,
                "ReplacingMember",
                format!("the member of Pod ordinal {ordinal} is being replaced"),
            )
        } else if ready >= desired && self.plan.step == ScaleStep::Steady && rollout.is_none() {
            Want::yes(
                cond::READY,
                "Ready",
                format!("{ready} of {desired} storages ACTIVE and caught up"),
            )
        } else {
            Want::no(
                cond::READY,
                "WaitingForMembers",
                format!("{ready} of {desired} storages ACTIVE and caught up"),
            )
        };

        let progressing = match &self.plan.step {
            ScaleStep::Up { from, to } => Want::yes(
                cond::PROGRESSING,
                "ScalingUp",
                format!("scaling from {from} to {to} storages"),
            ),
            ScaleStep::Down { ordinal } => Want::yes(
                cond::PROGRESSING,
                "ScalingDown",
                format!(
                    "removing the storage of Pod {}",
                    naming::pod(&self.sg.name_any(), *ordinal)
                ),
            ),
            ScaleStep::Removing => {
                Want::yes(cond::PROGRESSING, "RemovingMember", self.removal_message())
            }
            ScaleStep::Blocked { .. } => Want::no(
                cond::PROGRESSING,
                "ScaleDownBlocked",
                "the scale-down waits; see ScaleDownBlocked",
            ),
            ScaleStep::Steady => match &rollout {
                Some(why) => Want::yes(cond::PROGRESSING, "RollingUpdate", why.clone()),
                None if ready < desired => Want::yes(
                    cond::PROGRESSING,
                    "WaitingForMembers",
                    format!("{ready} of {desired} storages ACTIVE and caught up"),
                ),
                None => Want::no(cond::PROGRESSING, "Complete", "nothing to do"),
            },
        };

        let offline: Vec<String> = members
            .iter()
            .filter(|m| {
                m.ordinal.is_some_and(|o| self.pods.ordinals.contains(&o))
                    && matches!(
                        m.status,
                        Some(fdfs_node::proto::StorageStatus::Offline) | None
                    )
            })
            .map(|m| format!("{} is {}", m.id, m.status_name()))
            .collect();
        let degraded = if let Some(problem) = &tracker_problem {
            Want::yes(cond::DEGRADED, "TrackerUnreachable", problem.clone())
        } else if !removal_failures.is_empty() {
            Want::yes(
                cond::DEGRADED,
                "MemberRemovalFailed",
                removal_failures.join("; "),
            )
        } else if !offline.is_empty() {
            Want::yes(cond::DEGRADED, "MemberOffline", offline.join("; "))
        } else {
            Want::no(cond::DEGRADED, "AsExpected", "no problem seen")
        };

        let syncing: Vec<String> = members
            .iter()
            .filter(|m| m.ordinal.is_some() && m.is_syncing())
            .map(|m| match m.sync_lag {
                Some(lag) => format!("{} is {} ({lag}s behind)", m.id, m.status_name()),
                None => format!("{} is {} (not synced yet)", m.id, m.status_name()),
            })
            .collect();
        let syncing = if syncing.is_empty() {
            Want::no(cond::SYNCING, "InSync", "every storage is caught up")
        } else {
            Want::yes(cond::SYNCING, "MembersSyncing", syncing.join("; "))
        };

        let blocked = match &self.plan.step {
            ScaleStep::Blocked { reason } => Want::yes(
                cond::SCALE_DOWN_BLOCKED,
                "RemainingMembersNotReady",
                reason.clone(),
            ),
            _ => Want::no(
                cond::SCALE_DOWN_BLOCKED,
                "NotBlocked",
                "no scale-down waits",
            ),
        };

        let resizing = match self.volumes {
            Volumes::Resizing(message) => {
                Want::yes(VOLUME_RESIZING, "ClaimsGrowing", message.clone())
            }
            _ => Want::no(
                VOLUME_RESIZING,
                "AsAsked",
                "the volumes have the size asked for",
            ),
        };

        vec![
            ready_cond,
            progressing,
            degraded,
            syncing,
            blocked,
            resizing,
        ]
    }

    /// What is left to do, for `Reconciling` and `Stalled`.
    fn work(&self) -> Work {
        match self.replacement {
            Replacement::Invalid(message) => {
                return Work::Stuck {
                    reason: "InvalidReplaceMember".into(),
                    message: message.clone(),
                };
            }
            Replacement::Waiting { ordinal, why } => {
                return Work::converging(
                    "ReplacementWaits",
                    format!("replacing the member of Pod ordinal {ordinal} waits: {why}"),
                );
            }
            Replacement::Started { ordinal } => {
                return Work::converging(
                    "ReplacingMember",
                    format!(
                        "the member of Pod ordinal {ordinal} starts again on an empty volume \
                         and copies the group from its peers"
                    ),
                );
            }
            Replacement::None => {}
        }
        match self.volumes {
            Volumes::Refused { reason, message } => {
                return Work::Stuck {
                    reason: (*reason).into(),
                    message: message.clone(),
                };
            }
            Volumes::Resizing(message) => {
                return Work::converging(VOLUME_RESIZING, message.clone());
            }
            Volumes::Settled => {}
        }
        if self.answers.first_view().is_none()
            && let Some(problem) = self.answers.problem()
        {
            return Work::converging("TrackersUnreachable", problem);
        }
        let desired = self.sg.spec.replicas;
        let ready = self.ready_replicas();
        let caught_up = format!("{ready} of {desired} storages ACTIVE and caught up");
        match &self.plan.step {
            ScaleStep::Up { from, to } => Work::converging(
                "ScalingUp",
                format!("scaling from {from} to {to} storages; {caught_up}"),
            ),
            ScaleStep::Down { ordinal } => Work::converging(
                "ScalingDown",
                format!(
                    "removing the storage of Pod {}",
                    naming::pod(&self.sg.name_any(), *ordinal)
                ),
            ),
            ScaleStep::Removing => Work::converging("RemovingMember", self.removal_message()),
            // The message leaves out the lag figures, which change while nothing moves.
            ScaleStep::Blocked { .. } => Work::converging(
                cond::SCALE_DOWN_BLOCKED,
                format!(
                    "the scale-down to {desired} storages waits for the remaining storages to                      be ACTIVE and caught up; {caught_up}"
                ),
            ),
            ScaleStep::Steady => {
                let copying = self
                    .members()
                    .iter()
                    .filter(|m| m.ordinal.is_some() && m.is_syncing())
                    .count();
                if let Some(why) = self.rollout_pending() {
                    Work::converging("RollingUpdate", why)
                } else if ready >= desired {
                    Work::Done
                } else if copying > 0 {
                    Work::Converging {
                        reason: "MembersSyncing".into(),
                        message: format!(
                            "{copying} storage(s) copying files from their peers; {caught_up}"
                        ),
                        may_stall: false,
                    }
                } else {
                    Work::converging("WaitingForMembers", caught_up)
                }
            }
        }
    }

    fn removal_message(&self) -> String {
        if self.plan.removals.is_empty() {
            return "waiting for the Pods of removed storages to stop".into();
        }
        let ids: Vec<String> = self
            .plan
            .removals
            .iter()
            .map(|r| format!("{} (ordinal {})", r.id, r.ordinal))
            .collect();
        format!("deleting {} from the trackers", ids.join(", "))
    }

    fn events(
        &self,
        before: Option<&StatefulSet>,
        built: &StatefulSet,
        previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        wanted: &[Want],
    ) -> Vec<EventSpec> {
        let mut events = Vec::new();
        let name = self.sg.name_any();
        match before {
            None => events.push((
                EventType::Normal,
                "Created".into(),
                "Create",
                format!(
                    "created StatefulSet {name} for group {} with {} storages",
                    self.valid.group_name, self.plan.replicas
                ),
            )),
            Some(before) => {
                let old_hash = config_hash(before);
                if old_hash.is_some() && old_hash != config_hash(built) {
                    events.push((
                        EventType::Normal,
                        "RollingRestart".into(),
                        "Restart",
                        "storage.conf changed: restarting the storages one at a time, each \
                         waiting for the previous one to be ACTIVE and caught up"
                            .into(),
                    ));
                }
            }
        }
        match &self.plan.step {
            ScaleStep::Up { from, to } if before.is_some() => events.push((
                EventType::Normal,
                "ScalingUp".into(),
                "Scale",
                format!(
                    "scaling group {} from {from} to {to} storages",
                    self.valid.group_name
                ),
            )),
            ScaleStep::Down { ordinal } => events.push((
                EventType::Normal,
                "ScalingDown".into(),
                "Scale",
                format!(
                    "removing storage {} (Pod {}): the remaining storages are ACTIVE and caught \
                     up in every tracker",
                    naming::storage_id(&self.valid.group_name, *ordinal),
                    naming::pod(&name, *ordinal)
                ),
            )),
            _ => {}
        }
        // One event per removed storage and outcome: the event recorder folds events of the
        // same reason into one series, so per-tracker events would hide all but the first.
        let mut deleted: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
        let mut failed: BTreeMap<(&str, u32), Vec<String>> = BTreeMap::new();
        for r in self.removals {
            let key = (r.id.as_str(), r.ordinal);
            match &r.outcome {
                Ok(DeleteOutcome::Deleted) => deleted.entry(key).or_default().push(&r.tracker),
                Ok(DeleteOutcome::Refused(status)) => failed
                    .entry(key)
                    .or_default()
                    .push(format!("tracker {} refused: {status}", r.tracker)),
                Err(e) => failed
                    .entry(key)
                    .or_default()
                    .push(format!("tracker {}: {e}", r.tracker)),
                Ok(_) => {}
            }
        }
        for ((id, ordinal), trackers) in deleted {
            events.push((
                EventType::Normal,
                "MemberRemoved".into(),
                "DeleteStorage",
                format!(
                    "deleted storage {id} (Pod ordinal {ordinal}) from tracker(s) {}",
                    trackers.join(", ")
                ),
            ));
        }
        for ((id, ordinal), reasons) in failed {
            events.push((
                EventType::Warning,
                "MemberRemovalFailed".into(),
                "DeleteStorage",
                format!(
                    "cannot delete storage {id} (Pod ordinal {ordinal}): {}",
                    reasons.join("; ")
                ),
            ));
        }
        if let Replacement::Started { ordinal } = self.replacement {
            events.push((
                EventType::Normal,
                "ReplacingMember".into(),
                "Replace",
                format!(
                    "deleted the claim and Pod of ordinal {ordinal}: the storage starts again \
                     empty and copies every file of group {} from its peers",
                    self.valid.group_name
                ),
            ));
        }
        for want in wanted {
            // A growth starting is news; a message that only counts claims is not.
            if want.type_ == VOLUME_RESIZING
                && want.status
                && cond::find(previous, VOLUME_RESIZING).is_none_or(|c| c.status != "True")
            {
                events.push((
                    EventType::Normal,
                    VOLUME_RESIZING.to_owned(),
                    "Resize",
                    want.message.clone(),
                ));
            }
            let report = match want.type_ {
                cond::SCALE_DOWN_BLOCKED | cond::DEGRADED | cond::STALLED => want.status,
                _ => false,
            };
            if report && cond::changed(previous, want) {
                let reason = if want.type_ == cond::SCALE_DOWN_BLOCKED {
                    cond::SCALE_DOWN_BLOCKED.to_owned()
                } else {
                    want.reason.clone()
                };
                events.push((
                    EventType::Warning,
                    reason,
                    "Reconcile",
                    want.message.clone(),
                ));
            }
        }
        events
    }

    fn status(
        &self,
        conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
        last_progress_time: Time,
    ) -> StorageGroupStatus {
        let group = self
            .answers
            .first_view()
            .and_then(|v| v.groups.iter().find(|g| g.group == self.valid.group_name));
        StorageGroupStatus {
            observed_generation: self.sg.metadata.generation,
            conditions,
            last_progress_time: Some(last_progress_time),
            group_name: Some(self.valid.group_name.clone()),
            replicas: self.pods.ordinals.len() as i32,
            ready_replicas: self.ready_replicas(),
            members: scale::member_statuses(&self.sg.name_any(), &self.members()),
            capacity_mb: group.and_then(|g| i64::try_from(g.total_mb).ok()),
            free_mb: group.and_then(|g| i64::try_from(g.free_mb).ok()),
            outside_addresses: build::outside_addresses(
                &self.sg.name_any(),
                &self.sg.spec.expose,
                &self.applied.outside,
            ),
        }
    }
}

fn config_hash(sts: &StatefulSet) -> Option<String> {
    super::config_hash(&sts.spec.as_ref()?.template)
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
