//! Group membership as the trackers see it, and the scale decisions made from it.
//!
//! Pure functions: the controller hands in what each tracker answered and which Pods exist.
//!
//! Scaling down removes one storage at a time, the one with the highest ordinal, and only when
//! every tracker has taken it out of uploads (`rw=read`), it has pushed its whole binlog to its
//! peers, and every tracker sees each remaining storage ACTIVE and caught up with its peers (so
//! the remaining storages hold every file, including those first uploaded to the one leaving).
//! Once its Pod is gone, the storage is deleted from every tracker (FastDFS command 93, which a
//! tracker refuses while the storage is still ONLINE or ACTIVE), and only then does the next
//! step start. Scaling to zero stops the group without deleting its storages from the
//! trackers: their volumes stay, and the group comes back with the same server ids.

use std::collections::BTreeMap;

use fdfs_node::client::migrate;
use fdfs_node::proto::StorageStatus;
use fdfs_node::proto::monitor::{StorageStat, SyncDelay};
use fdfs_node::proto::report::BacklogRow;

use crate::crd::{MemberStatus, Retirable};
use crate::naming;

/// W_OK in a storage's `rw_mode`.
const RW_WRITE: u8 = 2;

/// What a scale-down step waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gates {
    /// Whether a leaving storage is taken out of uploads first (`rw=read` in
    /// `storage_ids.conf`, which needs storage ids).
    pub fence: bool,
    /// How far, in seconds, a remaining storage may lag behind its peers and still count as
    /// caught up. Zero by default: a storage leaving the group must have nothing that another
    /// storage still lacks.
    pub lag_tolerance_seconds: u64,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            fence: true,
            lag_tolerance_seconds: 0,
        }
    }
}

/// One storage as one tracker lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// FastDFS server id (or IP address, without storage ids).
    pub id: String,
    /// StatefulSet ordinal, when the storage is one of the group's Pods.
    pub ordinal: Option<u32>,
    /// Address the storage registered (`ip:port`).
    pub address: String,
    /// FastDFS status.
    pub status: Option<StorageStatus>,
    /// Seconds behind the most advanced peer; `None` when it has never synced from peers
    /// that have files.
    pub sync_lag: Option<u64>,
    /// Bytes of the other members' binlogs not yet here, as they reported them; `None` when
    /// none reports it (FastDFS storages and trackers do not).
    pub sync_lag_bytes: Option<u64>,
    /// Bytes of this member's own binlog that some peer has not received yet, as it last
    /// reported them; `None` without a report.
    pub unsent_bytes: Option<u64>,
    /// Age in seconds of the oldest change waiting between this member and any peer, in
    /// either direction, as the members last reported; `None` without a report.
    pub backlog_seconds: Option<u64>,
    /// Whether the tracker sends it uploads (`rw=` of `storage_ids.conf`).
    pub writable: bool,
    /// What keeps the files it took from being all on the other members, if anything
    /// (`fdfs migrate`'s rule).
    pub not_held_elsewhere: Option<String>,
}

impl Member {
    /// Name of the FastDFS status, as `fdfs_monitor` prints it.
    pub fn status_name(&self) -> &'static str {
        self.status.map_or("UNKNOWN", StorageStatus::name)
    }

    /// ACTIVE, and not behind its peers.
    pub fn is_active_and_caught_up(&self) -> bool {
        self.is_active_and_within(0)
    }

    /// ACTIVE, and no further behind its peers than `tolerance` seconds.
    pub fn is_active_and_within(&self, tolerance: u64) -> bool {
        self.status == Some(StorageStatus::Active) && self.sync_lag.is_some_and(|l| l <= tolerance)
    }

    /// Copying files from a peer, or behind it.
    pub fn is_syncing(&self) -> bool {
        matches!(
            self.status,
            Some(StorageStatus::WaitSync | StorageStatus::Syncing)
        ) || self.sync_lag.is_none_or(|l| l != 0)
    }

    /// Removed from the tracker (a tombstone).
    pub fn is_deleted(&self) -> bool {
        self.status == Some(StorageStatus::Deleted)
    }
}

/// Where each of a group's Pods is, to recognise storages registered by address.
pub type PodAddresses = BTreeMap<String, u32>;

/// The storages of a group as one tracker lists them, with ordinals resolved from derived
/// server ids or, failing that, from the Pods' addresses.
/// `backlog` is what the members reported each other has yet to receive (empty from a FastDFS
/// tracker).
pub fn members(
    group_name: &str,
    stats: &[StorageStat],
    backlog: &[BacklogRow],
    pods: &PodAddresses,
) -> Vec<Member> {
    stats
        .iter()
        .map(|s| {
            let ordinal =
                naming::ordinal_of_id(group_name, &s.id).or_else(|| pods.get(&s.ip).copied());
            Member {
                id: s.id.clone(),
                ordinal,
                address: format!("{}:{}", s.ip, s.storage_port),
                status: StorageStatus::from_byte(s.status),
                sync_lag: sync_lag(s, stats),
                sync_lag_bytes: backlog
                    .iter()
                    .filter(|r| r.backlog.peer_id == s.id)
                    .map(|r| r.backlog.bytes)
                    .reduce(u64::saturating_add),
                unsent_bytes: backlog
                    .iter()
                    .filter(|r| r.source_id == s.id)
                    .map(|r| r.backlog.bytes)
                    .reduce(u64::saturating_add),
                backlog_seconds: backlog
                    .iter()
                    .filter(|r| r.source_id == s.id || r.backlog.peer_id == s.id)
                    .map(|r| r.backlog.seconds)
                    .max(),
                writable: s.rw_mode & RW_WRITE != 0,
                not_held_elsewhere: migrate::not_held_elsewhere(s, stats, Some(backlog), None),
            }
        })
        .collect()
}

/// How far `member` is behind the newest update of any peer, as `fdfs_monitor` computes it
/// (None: never synced although peers changed files).
fn sync_lag(member: &StorageStat, all: &[StorageStat]) -> Option<u64> {
    SyncDelay::of_member(member, all).seconds()
}

/// The group's members as the status reports them.
pub fn member_statuses(storage_group: &str, members: &[Member]) -> Vec<MemberStatus> {
    let mut out: Vec<MemberStatus> = members
        .iter()
        .map(|m| MemberStatus {
            id: m.id.clone(),
            pod: m.ordinal.map(|o| naming::pod(storage_group, o)),
            address: Some(m.address.clone()),
            status: m.status_name().to_owned(),
            sync_lag_seconds: m.sync_lag.and_then(|l| i64::try_from(l).ok()),
            sync_lag_bytes: m.sync_lag_bytes.and_then(|b| i64::try_from(b).ok()),
            external: m.ordinal.is_none(),
            retirable: Some(Retirable {
                ready: m.not_held_elsewhere.is_none(),
                reason: m.not_held_elsewhere.clone(),
            }),
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod).then_with(|| a.id.cmp(&b.id)));
    out
}

/// What one tracker answered about the group, or why it could not be asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerMembers {
    /// Address of the tracker.
    pub tracker: String,
    /// The group's storages, or the error.
    pub members: Result<Vec<Member>, String>,
}

/// A storage to delete from the trackers: its Pod has been scaled away.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Removal {
    /// StatefulSet ordinal it had.
    pub ordinal: u32,
    /// Its server id.
    pub id: String,
    /// Trackers that still list it as a member.
    pub trackers: Vec<String>,
}

/// Where the group is on its way to `spec.replicas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleStep {
    /// The StatefulSet has the desired count.
    Steady,
    /// Growing the StatefulSet.
    Up {
        /// Replicas before.
        from: i32,
        /// Replicas after.
        to: i32,
    },
    /// Removing the storage with the highest ordinal now.
    Down {
        /// Ordinal of the storage leaving.
        ordinal: u32,
    },
    /// A scale-down waits: the reason says for what.
    Blocked {
        /// Why, for the condition and the Event.
        reason: String,
    },
    /// A storage scaled away is still a member in some tracker; the next step waits for its
    /// deletion.
    Removing,
}

/// The scale decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePlan {
    /// Replicas to apply to the StatefulSet.
    pub replicas: i32,
    /// What this step does.
    pub step: ScaleStep,
    /// Storages to delete from the trackers now.
    pub removals: Vec<Removal>,
}

/// Decides the StatefulSet's replica count.
///
/// `desired` is `spec.replicas`; `current` the StatefulSet's replica count, `None` before it
/// exists; `running` the ordinals whose Pods still exist; `trackers` what each tracker listed;
/// `gates` what a scale-down step waits for.
pub fn plan(
    desired: i32,
    current: Option<i32>,
    running: &[u32],
    trackers: &[TrackerMembers],
    gates: Gates,
) -> ScalePlan {
    let current = match current {
        Some(current) if desired < current => current,
        _ => {
            let step = match current {
                Some(from) if from < desired => ScaleStep::Up { from, to: desired },
                None if desired > 0 => ScaleStep::Up {
                    from: 0,
                    to: desired,
                },
                _ => ScaleStep::Steady,
            };
            let removals = removals(desired, running, trackers);
            let step = match step {
                ScaleStep::Steady if !removals.is_empty() => ScaleStep::Removing,
                step => step,
            };
            return ScalePlan {
                replicas: desired,
                removals,
                step,
            };
        }
    };

    let pending = removals(current, running, trackers);
    let scaled_away_running = running.iter().any(|o| *o >= current as u32);
    if !pending.is_empty() || scaled_away_running {
        return ScalePlan {
            replicas: current,
            step: ScaleStep::Removing,
            removals: pending,
        };
    }

    let next = current - 1;
    let blocked = |reason: String| ScalePlan {
        replicas: current,
        step: ScaleStep::Blocked { reason },
        removals: Vec::new(),
    };
    if next > 0 {
        if let Some(reason) = not_ready(
            trackers,
            (0..next as u32).collect::<Vec<_>>(),
            gates.lag_tolerance_seconds,
        ) {
            return blocked(reason);
        }
        if let Some(reason) = not_drained(trackers, next as u32, gates.fence) {
            return blocked(reason);
        }
    }
    ScalePlan {
        replicas: next,
        step: ScaleStep::Down {
            ordinal: next as u32,
        },
        removals: Vec::new(),
    }
}

/// Why the storages of `ordinals` cannot be relied on for the group's files, if they cannot:
/// each must be listed ACTIVE and caught up (within `lag_tolerance` seconds) by every tracker.
pub fn not_ready(
    trackers: &[TrackerMembers],
    ordinals: impl IntoIterator<Item = u32>,
    lag_tolerance: u64,
) -> Option<String> {
    for ordinal in ordinals {
        let listed = match listed_by_every_tracker(trackers, ordinal) {
            Ok(listed) => listed,
            Err(why) => return Some(why),
        };
        for (tracker, m) in listed {
            if !m.is_active_and_within(lag_tolerance) {
                let lag = m
                    .sync_lag
                    .map_or("never synced".to_owned(), |l| format!("{l}s behind"));
                return Some(format!(
                    "tracker {tracker} sees storage {} (Pod ordinal {ordinal}) {} and {lag}",
                    m.id,
                    m.status_name()
                ));
            }
        }
    }
    None
}

/// The storage of `ordinal` as each tracker lists it, with the tracker's address; why not,
/// when no tracker is known, one cannot be asked or one does not list it.
pub fn listed_by_every_tracker(
    trackers: &[TrackerMembers],
    ordinal: u32,
) -> Result<Vec<(&str, &Member)>, String> {
    if trackers.is_empty() {
        return Err("no tracker is known".into());
    }
    trackers
        .iter()
        .map(|view| {
            let members = view
                .members
                .as_ref()
                .map_err(|err| format!("tracker {} cannot be asked: {err}", view.tracker))?;
            members
                .iter()
                .find(|m| m.ordinal == Some(ordinal))
                .map(|m| (view.tracker.as_str(), m))
                .ok_or_else(|| {
                    format!(
                        "tracker {} does not list the storage of Pod ordinal {ordinal}",
                        view.tracker
                    )
                })
        })
        .collect()
}

/// Why the storage of `ordinal`, which is leaving, cannot stop yet, if it cannot: every
/// tracker must have taken it out of uploads (it is listed `rw=read` in `storage_ids.conf`
/// while the group asks for fewer storages), and it must have pushed its whole binlog to
/// every peer. A tracker without backlog reports (FastDFS) leaves that second check to the
/// peers' sync times.
pub fn not_drained(trackers: &[TrackerMembers], ordinal: u32, fence: bool) -> Option<String> {
    for view in trackers {
        let Ok(members) = &view.members else {
            continue;
        };
        let Some(m) = members.iter().find(|m| m.ordinal == Some(ordinal)) else {
            continue;
        };
        if fence && m.writable {
            return Some(format!(
                "tracker {} still sends uploads to storage {} (Pod ordinal {ordinal}); it \
                 stops once the tracker reads it as rw=read",
                view.tracker, m.id
            ));
        }
        if let Some(bytes) = m.unsent_bytes.filter(|b| *b > 0) {
            return Some(format!(
                "storage {} (Pod ordinal {ordinal}) has {bytes} bytes of changes its peers \
                 have not received yet",
                m.id
            ));
        }
        // No report, or one older than its last change, or a peer not ACTIVE: `fdfs
        // migrate`'s rule says what it says of a member to retire.
        if let Some(why) = &m.not_held_elsewhere {
            return Some(format!(
                "tracker {}: storage {} (Pod ordinal {ordinal}): {why}",
                view.tracker, m.id
            ));
        }
    }
    None
}

/// Storages with an ordinal at or above `replicas` that some tracker still lists and whose
/// Pod is gone. None when `replicas` is zero: a stopped group keeps its members.
fn removals(replicas: i32, running: &[u32], trackers: &[TrackerMembers]) -> Vec<Removal> {
    if replicas <= 0 {
        return Vec::new();
    }
    let mut by_id: BTreeMap<(u32, String), Vec<String>> = BTreeMap::new();
    for view in trackers {
        let Ok(members) = &view.members else { continue };
        for m in members {
            let Some(ordinal) = m.ordinal else { continue };
            if ordinal >= replicas as u32 && !m.is_deleted() && !running.contains(&ordinal) {
                by_id
                    .entry((ordinal, m.id.clone()))
                    .or_default()
                    .push(view.tracker.clone());
            }
        }
    }
    by_id
        .into_iter()
        .map(|((ordinal, id), trackers)| Removal {
            ordinal,
            id,
            trackers,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdfs_node::proto::report::Backlog;

    fn member(ordinal: u32, status: StorageStatus, lag: Option<u64>) -> Member {
        Member {
            id: naming::storage_id("group1", ordinal).to_string(),
            ordinal: Some(ordinal),
            address: format!("10.0.0.{ordinal}:23000"),
            status: Some(status),
            sync_lag: lag,
            sync_lag_bytes: None,
            unsent_bytes: None,
            backlog_seconds: None,
            writable: true,
            not_held_elsewhere: None,
        }
    }

    fn view(tracker: &str, members: Vec<Member>) -> TrackerMembers {
        TrackerMembers {
            tracker: tracker.into(),
            members: Ok(members),
        }
    }

    fn active(ordinals: std::ops::Range<u32>) -> Vec<Member> {
        ordinals
            .map(|o| member(o, StorageStatus::Active, Some(0)))
            .collect()
    }

    #[test]
    fn scale_up_and_steady_apply_the_desired_count() {
        let t = [view("t1", active(0..2))];
        assert_eq!(
            plan(3, Some(2), &[0, 1], &t, Gates::default()),
            ScalePlan {
                replicas: 3,
                step: ScaleStep::Up { from: 2, to: 3 },
                removals: vec![]
            }
        );
        assert_eq!(
            plan(2, Some(2), &[0, 1], &t, Gates::default()).step,
            ScaleStep::Steady
        );
        assert_eq!(
            plan(2, None, &[], &[], Gates::default()).step,
            ScaleStep::Up { from: 0, to: 2 }
        );
    }

    #[test]
    fn the_status_lists_outside_members_and_whether_each_may_be_retired() {
        use fdfs_node::proto::monitor::StorageStat;
        let stat = |id: &str, ip: &str, source_update: u64, synced: u64| {
            let mut s = StorageStat {
                status: StorageStatus::Active as u8,
                rw_mode: 6,
                id: id.into(),
                ip: ip.into(),
                storage_port: 23000,
                ..StorageStat::default()
            };
            s.stats.last_source_update = source_update;
            s.stats.last_synced_timestamp = synced;
            s
        };
        let ours = naming::storage_id("group1", 0).to_string();
        // The old storage took a file at 200; ours has synced up to 150 only. Ours took
        // its last file at 100, which the old one has (synced up to 200).
        let stats = [
            stat(&ours, "10.0.0.10", 100, 150),
            stat("10.20.0.31", "10.20.0.31", 200, 200),
        ];
        let members = members("group1", &stats, &[], &PodAddresses::new());
        let statuses = member_statuses("photos", &members);
        let old = statuses.iter().find(|m| m.id == "10.20.0.31").expect("old");
        assert!(old.external && old.pod.is_none());
        let retirable = old.retirable.as_ref().expect("judged");
        assert!(!retirable.ready);
        assert!(
            retirable
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("synced up to 150"),
            "{retirable:?}"
        );
        let new = statuses.iter().find(|m| m.id == ours).expect("ours");
        assert!(!new.external && new.pod.as_deref() == Some("photos-0"));
        assert_eq!(new.retirable.as_ref().map(|r| r.ready), Some(true));
    }

    /// `members` with the storage of `ordinal` taken out of uploads (`rw=read`).
    fn fenced(mut members: Vec<Member>, ordinal: u32) -> Vec<Member> {
        for m in members.iter_mut().filter(|m| m.ordinal == Some(ordinal)) {
            m.writable = false;
        }
        members
    }

    #[test]
    fn scale_down_removes_one_storage_when_the_rest_are_active_everywhere() {
        let t = [
            view("t1", fenced(active(0..3), 2)),
            view("t2", fenced(active(0..3), 2)),
        ];
        let p = plan(1, Some(3), &[0, 1, 2], &t, Gates::default());
        assert_eq!(p.replicas, 2);
        assert_eq!(p.step, ScaleStep::Down { ordinal: 2 });
        assert!(p.removals.is_empty());
    }

    #[test]
    fn the_leaving_storage_stops_only_once_fenced_everywhere_and_drained() {
        // One tracker has not read the rw=read line yet.
        let t = [
            view("t1", fenced(active(0..2), 1)),
            view("t2", active(0..2)),
        ];
        let p = plan(1, Some(2), &[0, 1], &t, Gates::default());
        let ScaleStep::Blocked { reason } = p.step else {
            panic!("{p:?}")
        };
        assert!(
            reason.contains("t2") && reason.contains("rw=read"),
            "{reason}"
        );
        assert_eq!(p.replicas, 2);
        // Fenced everywhere, but with changes its peer has not received.
        let mut unsent = fenced(active(0..2), 1);
        unsent[1].unsent_bytes = Some(4096);
        let t = [view("t1", fenced(active(0..2), 1)), view("t2", unsent)];
        let ScaleStep::Blocked { reason } = plan(1, Some(2), &[0, 1], &t, Gates::default()).step
        else {
            panic!("unsent changes must hold the step")
        };
        assert!(reason.contains("4096 bytes"), "{reason}");
        // No report of what it has sent (a restarted tracker, say) is no proof either.
        let mut unreported = fenced(active(0..2), 1);
        unreported[1].unsent_bytes = None;
        unreported[1].not_held_elsewhere =
            Some("10.0.0.1 has not reported what 10.0.0.0 lacks of its changes yet".into());
        let t = [view("t1", unreported)];
        let ScaleStep::Blocked { reason } = plan(1, Some(2), &[0, 1], &t, Gates::default()).step
        else {
            panic!("a member not known to be held elsewhere must hold the step")
        };
        assert!(reason.contains("has not reported"), "{reason}");
        // Without storage ids there is no rw=read to wait for.
        let no_fence = Gates {
            fence: false,
            ..Gates::default()
        };
        assert_eq!(
            plan(1, Some(2), &[0, 1], &[view("t1", active(0..2))], no_fence).step,
            ScaleStep::Down { ordinal: 1 }
        );
        // Drained: it goes.
        let mut drained = fenced(active(0..2), 1);
        drained[1].unsent_bytes = Some(0);
        let t = [view("t1", drained.clone()), view("t2", drained)];
        assert_eq!(
            plan(1, Some(2), &[0, 1], &t, Gates::default()).step,
            ScaleStep::Down { ordinal: 1 }
        );
    }

    #[test]
    fn scale_down_holds_while_a_remaining_storage_is_not_active_in_some_tracker() {
        let mut lagging = active(0..3);
        lagging[1] = member(1, StorageStatus::Syncing, Some(40));
        let t = [view("t1", active(0..3)), view("t2", lagging)];
        let p = plan(2, Some(3), &[0, 1, 2], &t, Gates::default());
        assert_eq!(p.replicas, 3);
        let ScaleStep::Blocked { reason } = p.step else {
            panic!("{p:?}")
        };
        assert!(
            reason.contains("t2") && reason.contains("SYNCING"),
            "{reason}"
        );
        assert!(reason.contains("40s behind"), "{reason}");
    }

    #[test]
    fn scale_down_holds_while_a_remaining_storage_lags() {
        let mut behind = active(0..2);
        behind[0].sync_lag = Some(3);
        let p = plan(1, Some(2), &[0, 1], &[view("t1", behind)], Gates::default());
        assert!(matches!(p.step, ScaleStep::Blocked { .. }), "{p:?}");
        // A configured tolerance lets a storage 3 s behind count as caught up.
        let mut behind = fenced(active(0..2), 1);
        behind[0].sync_lag = Some(3);
        let tolerant = Gates {
            lag_tolerance_seconds: 5,
            ..Gates::default()
        };
        assert_eq!(
            plan(1, Some(2), &[0, 1], &[view("t1", behind)], tolerant).step,
            ScaleStep::Down { ordinal: 1 }
        );
        let mut never = active(0..2);
        never[0].sync_lag = None;
        let p = plan(1, Some(2), &[0, 1], &[view("t1", never)], Gates::default());
        let ScaleStep::Blocked { reason } = p.step else {
            panic!("{p:?}")
        };
        assert!(reason.contains("never synced"), "{reason}");
    }

    #[test]
    fn scale_down_holds_when_a_tracker_cannot_be_asked_or_misses_a_storage() {
        let t = [
            view("t1", active(0..2)),
            TrackerMembers {
                tracker: "t2".into(),
                members: Err("connection refused".into()),
            },
        ];
        let p = plan(1, Some(2), &[0, 1], &t, Gates::default());
        let ScaleStep::Blocked { reason } = p.step else {
            panic!("{p:?}")
        };
        assert!(reason.contains("connection refused"), "{reason}");

        let p = plan(
            1,
            Some(2),
            &[0, 1],
            &[view("t1", active(1..2))],
            Gates::default(),
        );
        let ScaleStep::Blocked { reason } = p.step else {
            panic!("{p:?}")
        };
        assert!(reason.contains("ordinal 0"), "{reason}");
        assert!(matches!(
            plan(1, Some(2), &[0, 1], &[], Gates::default()).step,
            ScaleStep::Blocked { .. }
        ));
    }

    #[test]
    fn scaled_away_storage_is_deleted_from_the_trackers_that_still_list_it() {
        let mut t1 = active(0..2);
        t1.push(member(2, StorageStatus::Offline, Some(0)));
        let mut t2 = active(0..2);
        t2.push(member(2, StorageStatus::Deleted, Some(0)));
        let p = plan(
            1,
            Some(2),
            &[0, 1],
            &[view("t1", t1), view("t2", t2)],
            Gates::default(),
        );
        assert_eq!(p.replicas, 2);
        assert_eq!(p.step, ScaleStep::Removing);
        assert_eq!(
            p.removals,
            vec![Removal {
                ordinal: 2,
                id: naming::storage_id("group1", 2).to_string(),
                trackers: vec!["t1".into()],
            }]
        );
    }

    #[test]
    fn removal_waits_for_the_pod_to_be_gone() {
        // The StatefulSet is at 2, but Pod 2 still terminates.
        let mut t1 = active(0..2);
        t1.push(member(2, StorageStatus::Active, Some(0)));
        let p = plan(
            2,
            Some(2),
            &[0, 1, 2],
            &[view("t1", t1.clone())],
            Gates::default(),
        );
        assert!(p.removals.is_empty());
        assert_eq!(p.step, ScaleStep::Steady);
        // A further step down waits for it too.
        let p = plan(1, Some(2), &[0, 1, 2], &[view("t1", t1)], Gates::default());
        assert_eq!((p.replicas, p.step), (2, ScaleStep::Removing));
    }

    #[test]
    fn scaling_back_up_keeps_the_returning_storage() {
        let mut t1 = active(0..2);
        t1.push(member(2, StorageStatus::Offline, Some(0)));
        let p = plan(3, Some(2), &[0, 1], &[view("t1", t1)], Gates::default());
        assert_eq!(p.replicas, 3);
        assert!(p.removals.is_empty());
    }

    #[test]
    fn scaling_to_zero_stops_the_group_without_deleting_members() {
        let t = [view("t1", vec![member(0, StorageStatus::Syncing, None)])];
        let p = plan(0, Some(1), &[0], &t, Gates::default());
        assert_eq!(p.replicas, 0);
        assert!(p.removals.is_empty());
        let p = plan(
            0,
            Some(0),
            &[],
            &[view("t1", vec![member(0, StorageStatus::Offline, Some(0))])],
            Gates::default(),
        );
        assert!(p.removals.is_empty());
    }

    fn stat(id: &str, ip: &str, source_update: u64, synced: u64) -> StorageStat {
        let mut s = StorageStat {
            id: id.into(),
            ip: ip.into(),
            status: StorageStatus::Active as u8,
            storage_port: 23000,
            ..Default::default()
        };
        s.stats.last_source_update = source_update;
        s.stats.last_synced_timestamp = synced;
        s
    }

    #[test]
    fn members_resolve_ordinals_from_ids_or_pod_addresses() {
        let derived = naming::storage_id("group1", 1).to_string();
        let stats = [
            stat(&derived, "10.1.0.7", 0, 0),
            stat("10.1.0.9", "10.1.0.9", 0, 0),
        ];
        let pods = PodAddresses::from([("10.1.0.9".into(), 0)]);
        let m = members("group1", &stats, &[], &pods);
        assert_eq!(m[0].ordinal, Some(1));
        assert_eq!(m[1].ordinal, Some(0));
        assert_eq!(m[1].address, "10.1.0.9:23000");
        let statuses = member_statuses("photos", &m);
        assert_eq!(statuses[0].pod.as_deref(), Some("photos-0"));
        assert_eq!(statuses[1].pod.as_deref(), Some("photos-1"));
        assert_eq!(statuses[0].status, "ACTIVE");
    }

    #[test]
    fn sync_lag_is_measured_against_the_newest_peer_update() {
        let stats = [
            stat("a", "10.0.0.1", 1_000, 900),
            stat("b", "10.0.0.2", 1_100, 1_000),
            stat("c", "10.0.0.3", 0, 0),
        ];
        let row = |source: &str, peer: &str, bytes| BacklogRow {
            source_id: source.into(),
            backlog: Backlog {
                peer_id: peer.into(),
                bytes,
                seconds: 1,
            },
            reported_at: 1_100,
        };
        let backlog = [row("b", "a", 4096), row("c", "a", 100), row("a", "b", 0)];
        let m = members("g", &stats, &backlog, &PodAddresses::new());
        assert_eq!(m[0].sync_lag, Some(200));
        assert_eq!(m[1].sync_lag, Some(0));
        assert_eq!(m[2].sync_lag, None, "c never synced while peers have files");
        let bytes: Vec<_> = m.iter().map(|m| m.sync_lag_bytes).collect();
        assert_eq!(bytes, [Some(4196), Some(0), None]);
        assert_eq!(member_statuses("g", &m)[0].sync_lag_bytes, Some(4196));
        let quiet = [stat("a", "10.0.0.1", 0, 0), stat("b", "10.0.0.2", 0, 0)];
        assert!(
            members("g", &quiet, &[], &PodAddresses::new())
                .iter()
                .all(Member::is_active_and_caught_up)
        );
    }
}
