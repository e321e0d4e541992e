//! Rolling a group's storages onto a new Pod template, one at a time, gated on FastDFS state.
//!
//! Pure: the controller hands in the StatefulSet's revisions, each Pod's revision and what the
//! trackers list. The StatefulSet's `rollingUpdate.partition` lets Kubernetes replace only the
//! Pods at or above it; it starts at the highest ordinal and moves down one ordinal once the
//! replaced storage is back: every tracker lists it ACTIVE and caught up, with no change older
//! than a tolerance ([`DEFAULT_BACKLOG_TOLERANCE_SECONDS`] unless configured) waiting to or
//! from its peers. Nothing rolls while the cluster's trackers are still rolling themselves.

use std::collections::BTreeMap;

use crate::scale::{TrackerMembers, listed_by_every_tracker};

/// Oldest change, in seconds, that may wait between a restarted storage and its peers for it
/// to count as back, unless configured; the storage's own `/readyz` uses the same bound.
pub const DEFAULT_BACKLOG_TOLERANCE_SECONDS: u64 = 10;

/// What the controller knows of a rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutState {
    /// Replicas of the StatefulSet as applied.
    pub replicas: i32,
    /// The Pod template applied now differs from the one the StatefulSet has (its revision
    /// does not exist yet).
    pub template_changed: bool,
    /// `status.updateRevision` and `status.currentRevision` of the StatefulSet.
    pub update_revision: Option<String>,
    pub current_revision: Option<String>,
    /// Each existing Pod's `controller-revision-hash`, by ordinal.
    pub pod_revisions: BTreeMap<u32, String>,
    /// Why the trackers are not ready for storages to restart (their own rollout), if so.
    pub trackers_rolling: Option<String>,
    /// The StatefulSet controller has not seen the StatefulSet's latest spec: its revisions
    /// may still be the old ones.
    pub status_stale: bool,
    /// The partition the StatefulSet has now.
    pub current_partition: Option<i32>,
    /// No StatefulSet, but its Pods run (it was deleted, orphaning them, to grow its
    /// volumes): the one made again must not replace them before it has taken them over.
    pub adopting: bool,
}

/// The partition to apply, and what the rollout waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Nothing to roll: no partition.
    Idle,
    /// Pods from `partition` up are on the new template or may be replaced now; `waiting`
    /// says what the next step waits for.
    Stepping { partition: i32, waiting: String },
}

impl Rollout {
    /// The `rollingUpdate.partition` to apply, if any.
    pub fn partition(&self) -> Option<i32> {
        match self {
            Self::Idle => None,
            Self::Stepping { partition, .. } => Some(*partition),
        }
    }
}

/// Decides the partition; `tolerance` is the oldest change, in seconds, that may still wait
/// between a restarted storage and its peers.
pub fn step(state: &RolloutState, trackers: &[TrackerMembers], tolerance: u64) -> Rollout {
    if state.replicas <= 0 {
        return Rollout::Idle;
    }
    if state.adopting {
        return Rollout::Stepping {
            partition: state.replicas,
            waiting: "the StatefulSet made again to take over its running Pods".into(),
        };
    }
    // Revisions not yet brought up to date say nothing: a partition in place stays.
    if state.status_stale
        && !state.template_changed
        && let Some(partition) = state.current_partition
    {
        return Rollout::Stepping {
            partition,
            waiting: "the StatefulSet controller to take the new template".into(),
        };
    }
    // Pods on another revision than the update's roll too: a StatefulSet made again over
    // running Pods starts with its current revision already the update's.
    let pods_behind = state.update_revision.as_ref().is_some_and(|update| {
        state
            .pod_revisions
            .iter()
            .any(|(o, r)| i64::from(*o) < i64::from(state.replicas) && r != update)
    });
    let rolling = state.template_changed
        || (state.update_revision.is_some() && state.update_revision != state.current_revision)
        || (!state.status_stale && pods_behind);
    if !rolling {
        return Rollout::Idle;
    }
    if let Some(why) = &state.trackers_rolling {
        return Rollout::Stepping {
            partition: state.replicas,
            waiting: format!("the trackers first: {why}"),
        };
    }
    for ordinal in (0..state.replicas as u32).rev() {
        let updated = !state.template_changed
            && state.update_revision.is_some()
            && state.pod_revisions.get(&ordinal) == state.update_revision.as_ref();
        if !updated {
            return Rollout::Stepping {
                partition: ordinal as i32,
                waiting: format!(
                    "the storage of Pod ordinal {ordinal} to restart on the new template"
                ),
            };
        }
        if let Some(why) = not_back(trackers, ordinal, tolerance) {
            return Rollout::Stepping {
                partition: ordinal as i32,
                waiting: why,
            };
        }
    }
    Rollout::Idle
}

/// Why the storage of `ordinal` is not back in its group, if it is not.
fn not_back(trackers: &[TrackerMembers], ordinal: u32, tolerance: u64) -> Option<String> {
    let listed = match listed_by_every_tracker(trackers, ordinal) {
        Ok(listed) => listed,
        Err(why) => return Some(why),
    };
    for (tracker, m) in listed {
        if !m.is_active_and_caught_up() {
            return Some(format!(
                "tracker {tracker} sees the restarted storage {} (Pod ordinal {ordinal}) {}, \
                 not yet ACTIVE and caught up",
                m.id,
                m.status_name()
            ));
        }
        if let Some(age) = m.backlog_seconds.filter(|s| *s > tolerance) {
            return Some(format!(
                "the restarted storage {} (Pod ordinal {ordinal}) and its peers still have \
                 changes {age}s old to exchange",
                m.id
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming;
    use crate::scale::Member;
    use fdfs_node::proto::StorageStatus;

    fn member(ordinal: u32, status: StorageStatus) -> Member {
        Member {
            id: naming::storage_id("group1", ordinal).to_string(),
            ordinal: Some(ordinal),
            address: format!("10.0.0.{ordinal}:23000"),
            status: Some(status),
            sync_lag: Some(0),
            sync_lag_bytes: Some(0),
            unsent_bytes: Some(0),
            backlog_seconds: Some(0),
            writable: true,
            not_held_elsewhere: None,
        }
    }

    fn views(members: Vec<Member>) -> Vec<TrackerMembers> {
        ["t1", "t2"]
            .into_iter()
            .map(|t| TrackerMembers {
                tracker: t.into(),
                members: Ok(members.clone()),
            })
            .collect()
    }

    fn state(pods: &[(u32, &str)]) -> RolloutState {
        RolloutState {
            replicas: 3,
            template_changed: false,
            update_revision: Some("new".into()),
            current_revision: Some("old".into()),
            pod_revisions: pods.iter().map(|(o, r)| (*o, (*r).to_owned())).collect(),
            trackers_rolling: None,
            status_stale: false,
            current_partition: None,
            adopting: false,
        }
    }

    fn active() -> Vec<Member> {
        (0..3).map(|o| member(o, StorageStatus::Active)).collect()
    }

    #[test]
    fn nothing_rolls_without_a_new_template() {
        let mut s = state(&[(0, "old"), (1, "old"), (2, "old")]);
        s.update_revision = s.current_revision.clone();
        assert_eq!(step(&s, &views(active()), 10), Rollout::Idle);
    }

    #[test]
    fn a_new_template_replaces_the_highest_ordinal_first() {
        let mut s = state(&[(0, "old"), (1, "old"), (2, "old")]);
        s.template_changed = true;
        assert_eq!(step(&s, &views(active()), 10).partition(), Some(2));
        s.template_changed = false;
        assert_eq!(step(&s, &views(active()), 10).partition(), Some(2));
    }

    #[test]
    fn the_next_ordinal_waits_for_the_restarted_storage_to_be_back() {
        let s = state(&[(0, "old"), (1, "old"), (2, "new")]);
        // Still copying what it missed.
        let mut members = active();
        members[2].status = Some(StorageStatus::Syncing);
        let Rollout::Stepping { partition, waiting } = step(&s, &views(members), 10) else {
            panic!("stepping")
        };
        assert_eq!(partition, 2);
        assert!(waiting.contains("SYNCING"), "{waiting}");
        // ACTIVE, but changes 30 s old still wait between it and a peer.
        let mut members = active();
        members[2].backlog_seconds = Some(30);
        let Rollout::Stepping { partition, waiting } = step(&s, &views(members), 10) else {
            panic!("stepping")
        };
        assert_eq!(partition, 2);
        assert!(waiting.contains("30s old"), "{waiting}");
        let mut members = active();
        members[2].backlog_seconds = Some(30);
        assert_eq!(
            step(&s, &views(members), 60).partition(),
            Some(1),
            "within a configured tolerance of 60 s"
        );
        // Back: the next one may go.
        assert_eq!(step(&s, &views(active()), 10).partition(), Some(1));
        let done = state(&[(0, "new"), (1, "new"), (2, "new")]);
        assert_eq!(step(&done, &views(active()), 10), Rollout::Idle);
    }

    #[test]
    fn a_statefulset_made_again_over_running_pods_replaces_none_before_it_holds_them() {
        // Deleted to grow the volumes: until it exists again, no Pod may be replaced.
        let mut s = state(&[(0, "old"), (1, "old"), (2, "old")]);
        s.adopting = true;
        s.update_revision = None;
        s.current_revision = None;
        assert_eq!(step(&s, &views(active()), 10).partition(), Some(3));
        // Made again with another template: its current revision is already the update's,
        // but the Pods run the old one. They roll one at a time, the highest first.
        let mut s = state(&[(0, "old"), (1, "old"), (2, "old")]);
        s.current_revision = s.update_revision.clone();
        assert_eq!(step(&s, &views(active()), 10).partition(), Some(2));
        let mut s = state(&[(0, "new"), (1, "new"), (2, "new")]);
        s.current_revision = s.update_revision.clone();
        assert_eq!(step(&s, &views(active()), 10), Rollout::Idle);
    }

    #[test]
    fn a_partition_stays_until_the_statefulset_controller_has_caught_up() {
        // The template was applied; the controller has not yet written the new revision.
        let mut s = state(&[(0, "old"), (1, "old"), (2, "old")]);
        s.update_revision = s.current_revision.clone();
        s.status_stale = true;
        s.current_partition = Some(2);
        assert_eq!(step(&s, &views(active()), 10).partition(), Some(2));
        // Up to date and nothing to roll: the partition goes.
        s.status_stale = false;
        assert_eq!(step(&s, &views(active()), 10), Rollout::Idle);
    }

    #[test]
    fn storages_wait_for_the_trackers_rollout_and_for_every_tracker() {
        let mut s = state(&[(0, "old"), (1, "old"), (2, "old")]);
        s.trackers_rolling = Some("rolling update: 1 of 3 trackers updated".into());
        let Rollout::Stepping { partition, waiting } = step(&s, &views(active()), 10) else {
            panic!("stepping")
        };
        assert_eq!(partition, 3, "no storage is replaced");
        assert!(waiting.contains("trackers"), "{waiting}");
        // One tracker does not answer: the restarted storage is not known to be back.
        let s = state(&[(0, "old"), (1, "old"), (2, "new")]);
        let mut v = views(active());
        v[1].members = Err("connection refused".into());
        assert_eq!(step(&s, &v, 10).partition(), Some(2));
    }
}
