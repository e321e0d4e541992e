//! Leader election among equal trackers (protocol notes §5.5).
//!
//! Trackers learn each other from the tracker lists in storage JOINs and from
//! followers' JOIN_LEADER. Without a leader, each asks every peer for its status
//! (64), ranks them by (is_leader, running time, −restart interval, ip, port) and,
//! if it ranks first itself, tells everyone (66) and commits (67). Followers keep
//! a connection to the leader, join it once (58) and ping it every interval (65);
//! three failed pings in a row forget the leader and start a new election. A
//! leader that finds a better-ranked leader among its peers steps down, so two
//! trackers that each started alone settle on one.
//!
//! Only the leader pushes membership changes in heartbeat replies; every tracker
//! still builds its own picture from the storages' reports and answers clients.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Tracker;
use crate::client::{ClientError, Conn};
use crate::proto::cluster::{GroupTrunkServer, JoinLeader, PingLeader, TrackerStatus};
use crate::proto::{Command, Status, VERSION_TEXT};
use crate::unix_now;

/// Consecutive failed pings after which a follower forgets its leader.
const MAX_PING_FAILURES: u32 = 3;

/// What a tracker knows about another tracker.
#[derive(Debug, Clone, Default)]
pub struct PeerTracker {
    /// Last time this tracker heard from it (a ping, or a ping answered).
    pub last_heartbeat: u64,
    pub up_time: u64,
    pub version: String,
    pub connections: [u32; 3],
}

/// The tracker cluster as this tracker sees it.
#[derive(Debug, Default)]
pub struct Relationship {
    /// This tracker's address as storages and peers reach it.
    pub me: Option<SocketAddr>,
    pub peers: BTreeMap<SocketAddr, PeerTracker>,
    pub leader: Option<SocketAddr>,
    /// Announced by NOTIFY_NEXT_LEADER (66), awaiting COMMIT (67).
    pub next_leader: Option<SocketAddr>,
    /// Bumped whenever `leader` changes; heartbeat replies push the new leader once.
    pub leader_epoch: u64,
}

impl Relationship {
    pub fn is_leader(&self) -> bool {
        self.me.is_some() && self.leader == self.me
    }

    /// Records another tracker; returns true when it was new.
    pub fn learn_peer(&mut self, addr: SocketAddr) -> bool {
        if Some(addr) == self.me || addr.ip().is_unspecified() || self.peers.contains_key(&addr) {
            return false;
        }
        tracing::info!(peer = %addr, "learned of another tracker");
        self.peers.insert(addr, PeerTracker::default());
        true
    }

    pub fn set_leader(&mut self, leader: Option<SocketAddr>) {
        if self.leader != leader {
            match leader {
                Some(l) if Some(l) == self.me => {
                    tracing::info!(leader = %l, "this tracker is now the leader")
                }
                Some(l) => tracing::info!(leader = %l, "following leader"),
                None => tracing::warn!("no leader tracker; electing"),
            }
            self.leader = leader;
            self.leader_epoch += 1;
        }
    }
}

/// Ranking key: the greatest key leads.
pub fn rank(addr: SocketAddr, st: &TrackerStatus) -> (bool, u64, Reverse<u64>, IpAddr, u16) {
    (
        st.is_leader,
        st.running_time,
        Reverse(st.restart_interval),
        addr.ip(),
        addr.port(),
    )
}

/// The tracker that should lead among those that answered.
pub fn choose_leader(candidates: &[(SocketAddr, TrackerStatus)]) -> Option<SocketAddr> {
    candidates
        .iter()
        .max_by_key(|(a, s)| rank(*a, s))
        .map(|(a, _)| *a)
}

/// Runs the election loop until `stop`.
pub async fn run(tracker: Arc<Tracker>, stop: CancellationToken) {
    let interval = Duration::from_millis(tracker.config.leader_ping_interval_ms.max(1));
    let mut follower: Option<(SocketAddr, Conn)> = None;
    let mut failures = 0u32;
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let (me, leader, peers) = {
            let rel = tracker.relationship();
            (
                rel.me,
                rel.leader,
                rel.peers.keys().copied().collect::<Vec<_>>(),
            )
        };
        let Some(me) = me else { continue };
        match leader {
            None => {
                follower = None;
                failures = 0;
                elect(&tracker, me, &peers, interval).await;
            }
            Some(l) if l == me => {
                follower = None;
                check_rival_leaders(&tracker, me, &peers, interval).await;
            }
            Some(l) => {
                if follower.as_ref().is_none_or(|(a, _)| *a != l) {
                    follower = None;
                }
                match ping_leader(&tracker, l, me, &mut follower, interval).await {
                    Ok(()) => failures = 0,
                    Err(PingError::NotLeader) => {
                        tracing::warn!(leader = %l, "leader says it no longer leads");
                        follower = None;
                        forget_leader(&tracker, l);
                    }
                    Err(PingError::Failed(e)) => {
                        follower = None;
                        failures += 1;
                        tracing::warn!(leader = %l, failures, error = %e, "leader ping failed");
                        if failures >= MAX_PING_FAILURES {
                            failures = 0;
                            forget_leader(&tracker, l);
                            // Spread re-elections out, as FastDFS does.
                            let pause = interval.mul_f64(rand::random::<f64>() * 2.0);
                            tokio::select! {
                                _ = stop.cancelled() => break,
                                _ = tokio::time::sleep(pause) => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

fn forget_leader(tracker: &Tracker, old: SocketAddr) {
    let mut rel = tracker.relationship();
    if rel.leader == Some(old) {
        rel.set_leader(None);
    }
}

/// Connects to a peer from this tracker's own address, so the peer sees the
/// address the cluster knows us by (JOIN_LEADER carries only our port).
pub(super) async fn connect(
    addr: SocketAddr,
    me: SocketAddr,
    interval: Duration,
) -> Result<Conn, ClientError> {
    let t = interval.max(Duration::from_millis(500)) * 2;
    let bind = (!me.ip().is_unspecified() && me.is_ipv4() == addr.is_ipv4()).then_some(me.ip());
    Conn::connect(addr, t, t, bind).await
}

async fn call(
    conn: &mut Conn,
    cmd: Command,
    body: &[u8],
) -> Result<(Status, Vec<u8>), ClientError> {
    conn.call(cmd, body, 64 * 1024).await
}

pub(super) async fn peer_status(
    addr: SocketAddr,
    me: SocketAddr,
    interval: Duration,
) -> Option<TrackerStatus> {
    let mut c = connect(addr, me, interval).await.ok()?;
    let (status, body) = call(&mut c, Command::TrackerGetStatus, &[]).await.ok()?;
    c.quit().await;
    (status == Status::Ok)
        .then(|| TrackerStatus::decode(&body).ok())
        .flatten()
}

async fn statuses(
    tracker: &Tracker,
    me: SocketAddr,
    peers: &[SocketAddr],
    interval: Duration,
) -> Vec<(SocketAddr, TrackerStatus)> {
    let mut out = vec![(me, tracker.status(unix_now()))];
    for p in peers {
        if let Some(s) = peer_status(*p, me, interval).await {
            out.push((*p, s));
        }
    }
    out
}

async fn elect(tracker: &Tracker, me: SocketAddr, peers: &[SocketAddr], interval: Duration) {
    let candidates = statuses(tracker, me, peers, interval).await;
    let Some(best) = choose_leader(&candidates) else {
        return;
    };
    if best != me {
        // Adopt a peer that already leads; otherwise wait for the best one to announce itself.
        if candidates.iter().any(|(a, s)| *a == best && s.is_leader) {
            tracker.relationship().set_leader(Some(best));
        }
        return;
    }
    let body = me.to_string().into_bytes();
    let reachable: Vec<SocketAddr> = candidates
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| *a != me)
        .collect();
    for cmd in [
        Command::TrackerNotifyNextLeader,
        Command::TrackerCommitNextLeader,
    ] {
        for p in &reachable {
            let r = async {
                let mut c = connect(*p, me, interval).await?;
                let r = call(&mut c, cmd, &body).await;
                c.quit().await;
                r
            }
            .await;
            match r {
                Ok((Status::Ok, _)) => {}
                Ok((status, _)) => {
                    tracing::warn!(peer = %p, ?cmd, %status, "peer refused the leader announcement")
                }
                Err(e) => tracing::warn!(peer = %p, ?cmd, error = %e, "peer unreachable"),
            }
        }
    }
    tracker.relationship().set_leader(Some(me));
}

/// A leader that finds a better-ranked leader steps down and follows it.
async fn check_rival_leaders(
    tracker: &Tracker,
    me: SocketAddr,
    peers: &[SocketAddr],
    interval: Duration,
) {
    let candidates = statuses(tracker, me, peers, interval).await;
    let leaders: Vec<(SocketAddr, TrackerStatus)> = candidates
        .into_iter()
        .filter(|(_, s)| s.is_leader)
        .collect();
    if let Some(best) = choose_leader(&leaders).filter(|b| *b != me) {
        tracing::warn!(rival = %best, "another tracker leads and ranks higher; stepping down");
        let mut rel = tracker.relationship();
        if rel.is_leader() {
            rel.set_leader(Some(best));
        }
    }
}

enum PingError {
    NotLeader,
    Failed(ClientError),
}

async fn ping_leader(
    tracker: &Tracker,
    leader: SocketAddr,
    me: SocketAddr,
    follower: &mut Option<(SocketAddr, Conn)>,
    interval: Duration,
) -> Result<(), PingError> {
    if follower.is_none() {
        let mut c = connect(leader, me, interval)
            .await
            .map_err(PingError::Failed)?;
        let join = JoinLeader {
            up_time: tracker.started_at,
            version: VERSION_TEXT.into(),
            port: u64::from(me.port()),
        };
        let (status, _) = call(&mut c, Command::TrackerJoinLeader, &join.encode())
            .await
            .map_err(PingError::Failed)?;
        match status {
            Status::Ok | Status::AlreadyExists => {}
            Status::NotSupported => return Err(PingError::NotLeader),
            s => {
                return Err(PingError::Failed(ClientError::Status {
                    op: "join leader",
                    target: leader.to_string(),
                    status: s,
                }));
            }
        }
        *follower = Some((leader, c));
    }
    let Some((_, conn)) = follower.as_mut() else {
        return Ok(());
    };
    let (status, reply) = call(
        conn,
        Command::TrackerPingLeader,
        &PingLeader::default().encode(),
    )
    .await
    .map_err(PingError::Failed)?;
    match status {
        Status::Ok => {
            {
                let mut rel = tracker.relationship();
                if let Some(p) = rel.peers.get_mut(&leader) {
                    p.last_heartbeat = unix_now();
                }
            }
            match GroupTrunkServer::decode_all(&reply) {
                Ok(list) => {
                    let mut reg = tracker.registry();
                    for e in list {
                        reg.follow_trunk_server(&e.group, &e.server_id);
                    }
                }
                Err(e) => {
                    tracing::warn!(%leader, error = %e, "unreadable trunk servers from the leader")
                }
            }
            Ok(())
        }
        Status::NotSupported => Err(PingError::NotLeader),
        s => Err(PingError::Failed(ClientError::Status {
            op: "ping leader",
            target: leader.to_string(),
            status: s,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(is_leader: bool, running_time: u64, restart_interval: u64) -> TrackerStatus {
        TrackerStatus {
            is_leader,
            running_time,
            restart_interval,
        }
    }

    #[test]
    fn ranking_follows_fastdfs() {
        let a: SocketAddr = "127.0.0.1:22122".parse().expect("addr");
        let b: SocketAddr = "127.0.0.2:22122".parse().expect("addr");
        let c: SocketAddr = "127.0.0.3:22122".parse().expect("addr");
        // All equal: the greatest address.
        assert_eq!(
            choose_leader(&[
                (a, st(false, 0, 0)),
                (b, st(false, 0, 0)),
                (c, st(false, 0, 0))
            ]),
            Some(c)
        );
        // A sitting leader wins, then the longest running, then the shortest restart gap.
        assert_eq!(
            choose_leader(&[(a, st(true, 0, 0)), (c, st(false, 900, 0))]),
            Some(a)
        );
        assert_eq!(
            choose_leader(&[(a, st(false, 600, 0)), (c, st(false, 300, 0))]),
            Some(a)
        );
        assert_eq!(
            choose_leader(&[(a, st(false, 0, 0)), (c, st(false, 0, 300))]),
            Some(a)
        );
        assert_eq!(choose_leader(&[]), None);
    }

    #[test]
    fn peers_exclude_me_and_leader_changes_bump_the_epoch() {
        let me: SocketAddr = "127.0.0.1:22122".parse().expect("addr");
        let other: SocketAddr = "127.0.0.2:22122".parse().expect("addr");
        let mut rel = Relationship {
            me: Some(me),
            ..Default::default()
        };
        assert!(!rel.learn_peer(me));
        assert!(rel.learn_peer(other));
        assert!(!rel.learn_peer(other));
        assert!(!rel.is_leader());
        rel.set_leader(Some(me));
        assert!(rel.is_leader());
        let e = rel.leader_epoch;
        rel.set_leader(Some(me));
        assert_eq!(rel.leader_epoch, e);
        rel.set_leader(Some(other));
        assert_eq!(rel.leader_epoch, e + 1);
        assert!(!rel.is_leader());
    }
}
