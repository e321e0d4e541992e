//! A `StorageGroup`'s conditions, Events and status, derived from what one reconcile saw and
//! did: functions of a [`Report`] alone, with no call to the API server or the trackers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::build;
use crate::crd::{StorageGroup, StorageGroupStatus};
use crate::fastdfs::DeleteOutcome;
use crate::naming;
use crate::rollout::Rollout;
use crate::scale::{self, Member, ScalePlan, ScaleStep, TrackerMembers};
use crate::validate::ValidStorageGroup;

use super::conditions::{self as cond, Want, Work};
use super::group::{Applied, PodsSeen, RemovalResult};
use super::replace::Replacement;
use super::volume::{VOLUME_RESIZING, Volumes};
use super::{EventSpec, NOT_OBSERVED, SetProgress, TrackerAnswers};

/// Everything the status and the Events are made from.
pub(super) struct Report<'a> {
    pub(super) sg: &'a StorageGroup,
    pub(super) valid: &'a ValidStorageGroup,
    pub(super) plan: &'a ScalePlan,
    pub(super) answers: &'a TrackerAnswers,
    pub(super) views: &'a [TrackerMembers],
    pub(super) pods: &'a PodsSeen,
    pub(super) applied: &'a Applied,
    pub(super) removals: &'a [RemovalResult],
    /// Where the volumes stand against `spec.volume`.
    pub(super) volumes: &'a Volumes,
    /// What a member replacement request came to.
    pub(super) replacement: &'a Replacement,
    /// Where a rollout of a new Pod template stands.
    pub(super) rollout: &'a Rollout,
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

    pub(super) fn conditions(&self) -> Vec<Want> {
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
    pub(super) fn work(&self) -> Work {
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

    pub(super) fn events(
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

    pub(super) fn status(
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
