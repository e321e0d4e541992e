//! Status conditions: what the operator wants each one to say, merged with what the status
//! said before so `lastTransitionTime` moves only when a condition's status changes.
//!
//! Besides the conditions of its own, each resource carries the two that kstatus (Flux,
//! `kustomize`, `kubectl` tooling) reads: `Reconciling` and `Stalled`, both "abnormal-true",
//! so a resource with both `False` and its generation observed is current.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The group is serving with every storage ACTIVE and caught up (or the cluster with every
/// tracker answering).
pub const READY: &str = "Ready";
/// The operator is changing something: creating, scaling, rolling, removing a member.
pub const PROGRESSING: &str = "Progressing";
/// Something that should work does not: a tracker cannot be asked, a member is offline, a
/// removal was refused.
pub const DEGRADED: &str = "Degraded";
/// A storage of the group is copying files from a peer, or is behind its peers.
pub const SYNCING: &str = "Syncing";
/// A scale-down waits for the remaining storages to be ACTIVE and caught up.
pub const SCALE_DOWN_BLOCKED: &str = "ScaleDownBlocked";
/// The `fdfs.dev/reconcile: paused` annotation stops the operator from changing anything.
pub const PAUSED: &str = "Paused";
/// kstatus: the operator is still converging on the spec by itself.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: the operator cannot converge without someone acting (a spec it refuses, a
/// change it cannot make, or work that made no progress for the stall timeout).
pub const STALLED: &str = "Stalled";
/// `Stalled` reason of converging work that made no progress for the stall timeout.
pub const NO_PROGRESS: &str = "ProgressDeadlineExceeded";

/// One condition as the operator wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

impl Want {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_text(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The conditions to write: `wanted` in order, each keeping its previous
/// `lastTransitionTime` when its status did not change.
pub fn merge(
    previous: &[Condition],
    wanted: &[Want],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = status_text(w.status);
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.into(),
                status: status.into(),
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// What the operator still has to do for a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Nothing: everything the spec asks for is in place.
    Done,
    /// The operator converges by itself. When `may_stall`, the same reason and message for
    /// longer than the stall timeout means it is stuck; copies of files are exempt, as they
    /// take as long as the data needs.
    Converging {
        /// CamelCase reason.
        reason: String,
        /// What it waits for; a changed message counts as progress.
        message: String,
        /// Whether the stall timeout applies.
        may_stall: bool,
    },
    /// Nothing changes until someone acts.
    Stuck {
        /// CamelCase reason.
        reason: String,
        /// What to do about it.
        message: String,
    },
}

impl Work {
    /// Converging work that stalls when nothing changes for the stall timeout.
    pub fn converging(reason: &str, message: impl Into<String>) -> Self {
        Self::Converging {
            reason: reason.into(),
            message: message.into(),
            may_stall: true,
        }
    }
}

/// `Reconciling` and `Stalled` for `work`, and the time of the last progress to write back
/// as `status.lastProgressTime`. Progress is a change of `Reconciling`'s reason or message.
pub fn convergence(
    work: &Work,
    previous: &[Condition],
    last_progress: Option<&Time>,
    now: &Time,
    stall_after: Duration,
) -> ([Want; 2], Time) {
    let not_stalled = || Want::no(STALLED, "NotStalled", "nothing stops the operator");
    match work {
        Work::Done => (
            [
                Want::no(
                    RECONCILING,
                    "Reconciled",
                    "everything the spec asks for is in place",
                ),
                not_stalled(),
            ],
            now.clone(),
        ),
        Work::Stuck { reason, message } => (
            [
                Want::no(RECONCILING, reason, message.clone()),
                Want::yes(STALLED, reason, message.clone()),
            ],
            last_progress.cloned().unwrap_or_else(|| now.clone()),
        ),
        Work::Converging {
            reason,
            message,
            may_stall,
        } => {
            let progressed = find(previous, RECONCILING)
                .is_none_or(|c| c.reason != *reason || c.message != *message);
            let since = match last_progress {
                Some(t) if !progressed => t.clone(),
                _ => now.clone(),
            };
            let waited = now.0.duration_since(since.0);
            let stalled =
                *may_stall && waited.is_positive() && waited.unsigned_abs() >= stall_after;
            if stalled {
                let minutes = waited.as_secs() / 60;
                (
                    [
                        Want::no(RECONCILING, reason, message.clone()),
                        Want::yes(
                            STALLED,
                            NO_PROGRESS,
                            format!("no progress for {minutes} min ({reason}): {message}"),
                        ),
                    ],
                    since,
                )
            } else {
                (
                    [
                        Want::yes(RECONCILING, reason, message.clone()),
                        not_stalled(),
                    ],
                    since,
                )
            }
        }
    }
}

/// The condition of a type in a list.
/// Whether the wanted conditions say the resource is settled: Ready, and nothing else true.
/// A settled resource is checked again at the resync interval, another one sooner.
pub fn settled(wanted: &[Want]) -> bool {
    wanted.iter().all(|w| w.status == (w.type_ == READY))
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `want` differs from what `previous` says for its type (status, reason or message):
/// Events are published on such changes only, not on every periodic reconcile.
pub fn changed(previous: &[Condition], want: &Want) -> bool {
    find(previous, want.type_).is_none_or(|c| {
        c.status != status_text(want.status) || c.reason != want.reason || c.message != want.message
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid time"))
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let first = merge(
            &[],
            &[Want::no(READY, "WaitingForMembers", "0 of 2")],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));
        assert_eq!(first[0].status, "False");
        assert_eq!(first[0].observed_generation, Some(1));

        let same = merge(
            &first,
            &[Want::no(READY, "WaitingForMembers", "1 of 2")],
            Some(2),
            &at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].message, "1 of 2");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            &[Want::yes(READY, "Ready", "2 of 2")],
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "True");
    }

    #[test]
    fn changes_are_detected_by_status_reason_and_message() {
        let prev = merge(
            &[],
            &[Want::yes(SCALE_DOWN_BLOCKED, "R", "m")],
            None,
            &at(1),
        );
        assert!(!changed(&prev, &Want::yes(SCALE_DOWN_BLOCKED, "R", "m")));
        assert!(changed(&prev, &Want::yes(SCALE_DOWN_BLOCKED, "R", "other")));
        assert!(changed(&prev, &Want::no(SCALE_DOWN_BLOCKED, "R", "m")));
        assert!(changed(&prev, &Want::yes(PAUSED, "R", "m")));
    }

    fn status_of<'a>(wants: &'a [Want], type_: &str) -> &'a Want {
        wants.iter().find(|w| w.type_ == type_).expect("wanted")
    }

    #[test]
    fn converging_work_stalls_only_after_the_timeout_without_progress() {
        let stall = Duration::from_secs(900);
        let work = Work::converging("RollingUpdate", "1 of 3 updated");
        let (first, since) = convergence(&work, &[], None, &at(1_000), stall);
        assert!(status_of(&first, RECONCILING).status);
        assert!(!status_of(&first, STALLED).status);
        assert_eq!(since, at(1_000));
        let written = merge(&[], &first, Some(1), &at(1_000));

        // Same reason and message: the clock keeps running from the first sight.
        let (later, since) = convergence(&work, &written, Some(&since), &at(1_899), stall);
        assert!(status_of(&later, RECONCILING).status);
        assert_eq!(since, at(1_000));
        let (stuck, since) = convergence(&work, &written, Some(&since), &at(1_900), stall);
        assert!(!status_of(&stuck, RECONCILING).status);
        let stalled = status_of(&stuck, STALLED);
        assert!(stalled.status);
        assert_eq!(stalled.reason, NO_PROGRESS);
        assert_eq!(
            stalled.message,
            "no progress for 15 min (RollingUpdate): 1 of 3 updated"
        );
        assert_eq!(since, at(1_000));

        // A new message is progress: the clock starts again.
        let written = merge(&written, &stuck, Some(1), &at(1_900));
        let moved = Work::converging("RollingUpdate", "2 of 3 updated");
        let (resumed, since) = convergence(&moved, &written, Some(&since), &at(2_000), stall);
        assert!(status_of(&resumed, RECONCILING).status);
        assert!(!status_of(&resumed, STALLED).status);
        assert_eq!(since, at(2_000));

        // Copies never stall; finished work clears both.
        let copying = Work::Converging {
            reason: "MembersSyncing".into(),
            message: "1 storage(s) copying".into(),
            may_stall: false,
        };
        let written = merge(&[], &first, Some(1), &at(0));
        let (copy, _) = convergence(&copying, &written, Some(&at(0)), &at(99_999), stall);
        assert!(status_of(&copy, RECONCILING).status);
        assert!(!status_of(&copy, STALLED).status);
        let (done, since) = convergence(&Work::Done, &written, Some(&at(0)), &at(5), stall);
        assert!(!status_of(&done, RECONCILING).status && !status_of(&done, STALLED).status);
        assert_eq!(since, at(5));
    }

    #[test]
    fn stuck_work_is_stalled_at_once_and_not_reconciling() {
        let work = Work::Stuck {
            reason: "VolumeChangeRefused".into(),
            message: "set it back".into(),
        };
        let (wants, since) =
            convergence(&work, &[], Some(&at(7)), &at(8), Duration::from_secs(900));
        assert!(!status_of(&wants, RECONCILING).status);
        let stalled = status_of(&wants, STALLED);
        assert!(stalled.status);
        assert_eq!(stalled.reason, "VolumeChangeRefused");
        assert_eq!(since, at(7));
    }
}
