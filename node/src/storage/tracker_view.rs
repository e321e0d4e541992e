//! What the trackers this storage reports to last said about it: its status at each, which
//! of them took its move to a new address, and how far behind the other members are in
//! pushing here. Written by the report sessions, read by readiness, routing and sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use crate::proto::StorageStatus;

#[derive(Debug, Default)]
pub struct TrackerView {
    status: Mutex<BTreeMap<SocketAddr, StorageStatus>>,
    moved: Mutex<BTreeSet<SocketAddr>>,
    behind: Mutex<BTreeMap<SocketAddr, u64>>,
}

/// A lock whose holder panicked still guards consistent data: every change is one call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TrackerView {
    /// The trackers with a session that has reported our status.
    pub fn trackers(&self) -> Vec<SocketAddr> {
        lock(&self.status).keys().copied().collect()
    }

    /// Whether `ip` is the address of one of those trackers.
    pub fn is_tracker(&self, ip: IpAddr) -> bool {
        lock(&self.status).keys().any(|t| t.ip() == ip)
    }

    /// Our status at each tracker.
    pub fn statuses(&self) -> BTreeMap<SocketAddr, StorageStatus> {
        lock(&self.status).clone()
    }

    /// How `tracker` last said it holds this storage.
    pub fn status_at(&self, tracker: SocketAddr) -> Option<StorageStatus> {
        lock(&self.status).get(&tracker).copied()
    }

    /// Whether every tracker sees this storage ACTIVE (and there is one).
    pub fn active_everywhere(&self) -> bool {
        let status = lock(&self.status);
        !status.is_empty() && status.values().all(|s| *s == StorageStatus::Active)
    }

    pub(super) fn set_status(&self, tracker: SocketAddr, status: StorageStatus) {
        lock(&self.status).insert(tracker, status);
    }

    /// The session with `tracker` ended: what it said no longer holds.
    pub(super) fn forget(&self, tracker: SocketAddr) {
        lock(&self.status).remove(&tracker);
    }

    /// `tracker` took our new address; whether every one of `all`, the trackers this
    /// storage reports to, has now. (Not only those with a session yet: a tracker whose
    /// session starts later must still be told, or it takes us for a new, empty member.)
    pub(super) fn took_move(&self, tracker: SocketAddr, all: &[String]) -> bool {
        let mut moved = lock(&self.moved);
        moved.insert(tracker);
        all.iter()
            .all(|t| t.parse::<SocketAddr>().is_ok_and(|t| moved.contains(&t)))
    }

    /// The age in seconds of the oldest change the other members last said they have yet
    /// to push here, as `tracker` lists it (LIST_SYNC_BACKLOG, 241); `None` where unknown.
    pub fn behind_at(&self, tracker: SocketAddr) -> Option<u64> {
        lock(&self.behind).get(&tracker).copied()
    }

    pub(super) fn set_behind(&self, tracker: SocketAddr, age: Option<u64>) {
        let mut behind = lock(&self.behind);
        match age {
            Some(age) => behind.insert(tracker, age),
            None => behind.remove(&tracker),
        };
    }

    /// Every tracker's figure of [`Self::behind_at`].
    pub fn behind(&self) -> BTreeMap<SocketAddr, u64> {
        lock(&self.behind).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A move is taken everywhere once every tracker the storage reports to took it,
    /// including one whose session has not started yet or has ended.
    #[test]
    fn a_move_counts_as_taken_once_every_tracker_took_it() {
        let view = TrackerView::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:22122".parse().expect("address"),
            "127.0.0.2:22122".parse().expect("address"),
        );
        let all = [a.to_string(), b.to_string()];
        view.set_status(a, StorageStatus::Active);
        assert_eq!(
            (view.status_at(a), view.status_at(b)),
            (Some(StorageStatus::Active), None)
        );
        // b's session has not reported yet: it still has to be told.
        assert!(!view.took_move(a, &all));
        view.set_status(b, StorageStatus::Online);
        assert!(!view.active_everywhere());
        view.forget(b);
        assert!(view.active_everywhere());
        assert!(!view.took_move(a, &all));
        view.set_status(b, StorageStatus::Active);
        assert!(view.took_move(b, &all));
        assert!(view.took_move(a, &all[..1]));
        assert!(view.is_tracker("127.0.0.2".parse().expect("ip")));
        view.set_behind(a, Some(40));
        assert_eq!(view.behind_at(a), Some(40));
        view.set_behind(a, None);
        assert_eq!(view.behind_at(a), None);
    }
}
