//! Status conditions: what the operator wants each one to say, merged with what the status
//! said before so `lastTransitionTime` moves only when a condition's status changes.

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

/// The condition of a type in a list.
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
}
