//! The state of group replication in one owner: the other members as the trackers list
//! them, how far each push task has got in our binlog, how far we got from each member
//! pushing here, and which of their pushes we cannot apply. The push tasks (`sync`), the
//! report sessions (`report`) and the replica commands change it only through these
//! methods.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::{ProblemLabels, StorageMetrics};
use super::sync::{Peer, PushPoint};
use crate::proto::{Status, StorageStatus};

#[derive(Debug)]
pub struct Replication {
    /// The other members of our group, from the trackers' heartbeat replies.
    peers: watch::Sender<Vec<Peer>>,
    /// Per member pushing here, the newest change timestamp received from it.
    received: Mutex<BTreeMap<String, u32>>,
    /// Per peer, how far in our binlog its push task has got.
    pushed: Mutex<BTreeMap<String, PushPoint>>,
    /// Per member whose pushes we cannot apply: the status they fail with, since when.
    problems: Mutex<BTreeMap<String, (Status, u64)>>,
    /// Per member whose problem cleared: the status it had, and when it cleared. Locked
    /// after `problems`.
    cleared: Mutex<BTreeMap<String, (Status, u64)>>,
    /// Cancelled once the pushes to the peers ended (when stopping, after the last one):
    /// the last report to the trackers waits for it.
    pushes_ended: CancellationToken,
}

/// A failure of a source's pushes this soon after its problem cleared, with the same
/// cause, is not warned about again.
const RECUR_SECONDS: u64 = 5;

impl Default for Replication {
    fn default() -> Self {
        Replication {
            peers: watch::Sender::new(Vec::new()),
            received: Mutex::default(),
            pushed: Mutex::default(),
            problems: Mutex::default(),
            cleared: Mutex::default(),
            pushes_ended: CancellationToken::new(),
        }
    }
}

/// A lock whose holder panicked still guards consistent data: every change is one call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Replication {
    /// The other members, as last listed.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers.borrow().clone()
    }

    /// The member known as `id`.
    pub fn peer(&self, id: &str) -> Option<Peer> {
        self.peers.borrow().iter().find(|p| p.id == id).cloned()
    }

    /// The address of the first member, deleted ones aside, that `matches`; the list is
    /// read in place.
    pub fn member_addr(&self, matches: impl Fn(&Peer) -> bool) -> Option<std::net::SocketAddr> {
        self.peers
            .borrow()
            .iter()
            .find(|p| p.status != StorageStatus::Deleted && matches(p))
            .map(|p| p.addr)
    }

    /// Changes of the member list from now on.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Peer>> {
        self.peers.subscribe()
    }

    /// Takes a new member list; watchers wake only when it differs.
    pub(super) fn set_peers(&self, peers: Vec<Peer>) {
        self.peers.send_if_modified(|cur| {
            if *cur == peers {
                false
            } else {
                *cur = peers;
                true
            }
        });
    }

    /// Takes one member's status, as the trackers hold it now, until the next list.
    pub(super) fn set_peer_status(&self, id: &str, status: StorageStatus) {
        self.peers.send_if_modified(|peers| {
            match peers.iter_mut().find(|p| p.id == id && p.status != status) {
                Some(p) => {
                    p.status = status;
                    true
                }
                None => false,
            }
        });
    }

    /// Drops the members known as `ids` (they moved; the next list names them anew).
    pub(super) fn drop_peers(&self, ids: &[String]) {
        self.peers.send_if_modified(|peers| {
            let before = peers.len();
            peers.retain(|p| !ids.contains(&p.id));
            peers.len() != before
        });
    }

    /// Whether `ip` is the address of another member of this group, deleted ones aside.
    pub fn is_member(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.peers
            .borrow()
            .iter()
            .any(|p| p.addr.ip() == ip && p.status != StorageStatus::Deleted)
    }

    /// Whether `ip` is the address of any member listed, deleted ones included.
    pub fn is_listed(&self, ip: IpAddr) -> bool {
        self.peers.borrow().iter().any(|p| p.addr.ip() == ip)
    }

    /// A change from `source` with timestamp `ts` was applied here.
    pub(super) fn received_from(&self, source: &str, ts: u32) {
        let mut received = lock(&self.received);
        let newest = received.entry(source.to_owned()).or_insert(0);
        *newest = (*newest).max(ts);
    }

    /// Per member pushing here, the newest change timestamp received from it.
    pub fn received(&self) -> Vec<(String, u32)> {
        lock(&self.received)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub(super) fn set_push_point(&self, peer: &str, point: PushPoint) {
        lock(&self.pushed).insert(peer.to_owned(), point);
    }

    pub(super) fn forget_push(&self, peer: &str) {
        lock(&self.pushed).remove(peer);
    }

    /// Where each push task has got.
    pub fn push_points(&self) -> Vec<(String, PushPoint)> {
        lock(&self.pushed)
            .iter()
            .map(|(id, p)| (id.clone(), *p))
            .collect()
    }

    /// The members whose pushes we cannot apply: (id, the status they fail with, since).
    pub fn problems(&self) -> Vec<(String, Status, u64)> {
        lock(&self.problems)
            .iter()
            .map(|(id, (status, since))| (id.clone(), *status, *since))
            .collect()
    }

    /// Tracks whether what `source` pushes can be applied: a write failing on our side
    /// (disk full, permissions, I/O) is logged once per source and cause, shown in
    /// `metrics` and reported to the trackers, and cleared by the next push that applies.
    /// `reported` is the id the peer gave with REPORT_SERVER_ID; its address stands in
    /// without one. Returns whether the outcome was warned about.
    pub(super) fn note_outcome(
        &self,
        reported: Option<&str>,
        peer: IpAddr,
        status: Status,
        metrics: &StorageMetrics,
    ) -> bool {
        let failed = matches!(
            status,
            Status::NoSpace | Status::Io | Status::PermissionDenied | Status::OutOfMemory
        );
        let applied = matches!(
            status,
            Status::Ok | Status::AlreadyExists | Status::NotFound
        );
        let mut problems = lock(&self.problems);
        // The common case, a push applied with nothing to clear, allocates nothing.
        let clears = applied && !problems.is_empty();
        if !failed && !clears {
            return false;
        }
        let peer_text;
        let source = match reported {
            Some(id) => id,
            None => {
                peer_text = peer.to_string();
                &peer_text
            }
        };
        let labels = |status: Status| ProblemLabels {
            source: source.to_owned(),
            error: status.errno_name().to_owned(),
        };
        let blocked = |status: Status, on: bool| {
            metrics
                .sync_apply_blocked
                .get_or_create(&labels(status))
                .set(i64::from(on));
        };
        if failed {
            metrics
                .sync_apply_failures
                .get_or_create(&labels(status))
                .inc();
            let known = problems.get(source).map(|(s, _)| *s);
            if known != Some(status) {
                if let Some(old) = known {
                    blocked(old, false);
                }
                let now = crate::unix_now();
                // Pushes run on several connections at once: one that began before the
                // cause went away can fail after another has applied. The same cause
                // again within moments is that push, not news worth a second warning.
                let recurs = lock(&self.cleared).get(source).is_some_and(|(was, at)| {
                    *was == status && now.saturating_sub(*at) <= RECUR_SECONDS
                });
                if recurs {
                    tracing::debug!(source, error = status.errno_name(), "a push failed again");
                } else {
                    tracing::warn!(
                        source,
                        error = status.errno_name(),
                        "cannot apply what this peer pushes; it keeps retrying, and this \
                         storage catches up once the cause is gone"
                    );
                }
                problems.insert(source.to_owned(), (status, now));
                blocked(status, true);
                return !recurs;
            }
        } else if let Some((old, since)) = problems.remove(source) {
            lock(&self.cleared).insert(source.to_owned(), (old, crate::unix_now()));
            blocked(old, false);
            tracing::info!(
                source,
                error = old.errno_name(),
                blocked_seconds = crate::unix_now().saturating_sub(since),
                "applies what this peer pushes again"
            );
        }
        false
    }

    pub(super) fn end_pushes(&self) {
        self.pushes_ended.cancel();
    }

    /// Done once the pushes to the peers ended.
    pub async fn pushes_ended(&self) {
        self.pushes_ended.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, addr: &str, status: StorageStatus) -> Peer {
        Peer {
            id: id.into(),
            addr: addr.parse().expect("address"),
            status,
        }
    }

    /// A failing push is a problem of its source until one applies; a source named by its
    /// address stands for one that gave no id.
    #[test]
    fn a_push_that_cannot_be_applied_is_a_problem_until_one_applies() {
        let r = Replication::default();
        let metrics = StorageMetrics::default();
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(!r.note_outcome(None, ip, Status::Ok, &metrics));
        assert!(r.problems().is_empty());
        assert!(r.note_outcome(None, ip, Status::NoSpace, &metrics));
        assert!(
            !r.note_outcome(None, ip, Status::NoSpace, &metrics),
            "warned once"
        );
        assert!(r.note_outcome(Some("s2"), ip, Status::Io, &metrics));
        let mut seen: Vec<(String, Status)> =
            r.problems().into_iter().map(|(id, s, _)| (id, s)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            [
                ("10.0.0.2".to_owned(), Status::NoSpace),
                ("s2".to_owned(), Status::Io)
            ]
        );
        r.note_outcome(Some("s2"), ip, Status::AlreadyExists, &metrics);
        assert_eq!(r.problems().len(), 1);
        // A push in flight when the cause went away fails after another applied: a
        // problem again (shown and reported), its warning already given.
        assert!(
            !r.note_outcome(Some("s2"), ip, Status::Io, &metrics),
            "not warned again"
        );
        assert_eq!(r.problems().len(), 2);
        // Another cause is news.
        assert!(r.note_outcome(Some("s2"), ip, Status::NoSpace, &metrics));
    }

    /// Members are matched by address, IPv4-mapped IPv6 included, deleted ones aside; a
    /// moved member is dropped from the list.
    #[test]
    fn members_are_found_by_address_and_dropped_when_they_move() {
        let r = Replication::default();
        r.set_peers(vec![
            peer("a", "10.0.0.2:23000", StorageStatus::Active),
            peer("b", "10.0.0.3:23000", StorageStatus::Deleted),
        ]);
        assert!(r.is_member("::ffff:10.0.0.2".parse().expect("ip")));
        assert!(!r.is_member("10.0.0.3".parse().expect("ip")));
        assert!(r.is_listed("10.0.0.3".parse().expect("ip")));
        let members = r.subscribe();
        r.drop_peers(&["a".to_owned()]);
        assert!(members.has_changed().expect("sender alive"));
        assert_eq!(r.peer("a"), None);
        assert_eq!(r.peers().len(), 1);
    }
}
