//! The pushing side of group replication: one task per peer of the group replays
//! this storage's binlog to it with the storage → storage sync commands.
//!
//! Progress is kept in FastDFS's mark files (`data/sync/<ip>_<port>.mark`), so a
//! restart resumes where it stopped. A new member gets a full copy from the
//! member the tracker designates (SYNC_SRC_REQ), which then reports it OFFLINE so
//! its next heartbeat makes it ACTIVE.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StorageNode;
use super::binlog::{Binlog, Op, Position, Record};
use super::metrics::PeerLabels;
use super::store::StoredAt;
use super::tracker_link::Trackers;
use crate::client::{ClientError, Conn};
use crate::fileid::RemoteName;
use crate::proto::report::{Backlog, StorageBrief, SyncSource};
use crate::proto::sync::{ServerIdReport, SyncDelete, SyncFileHead, SyncPair, SyncRangeHead};
use crate::proto::{Command, Header, Status, StorageStatus};

/// Records read per batch.
const BATCH_BYTES: usize = 64 * 1024;
/// Mark written after this many records (FastDFS `write_mark_file_freq`).
const MARK_EVERY: u64 = 500;

/// A member of our group as the trackers last listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub addr: SocketAddr,
    pub status: StorageStatus,
}

/// FastDFS's per-peer mark file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mark {
    position: Position,
    need_sync_old: bool,
    sync_old_done: bool,
    until: u64,
    scan_rows: u64,
    sync_rows: u64,
}

impl Mark {
    fn scope(&self) -> Scope {
        Scope {
            need_sync_old: self.need_sync_old,
            sync_old_done: self.sync_old_done,
            until: self.until,
        }
    }

    fn path(node: &StorageNode, peer: &Peer) -> PathBuf {
        Self::path_in(node.disk.binlog().dir(), peer)
    }

    /// As FastDFS names it: `<id>.mark` where storages have ids (so it outlives a change
    /// of the peer's address, as a Pod's on every restart), `<ip>_<port>.mark` where the
    /// address is the identity.
    fn path_in(dir: &std::path::Path, peer: &Peer) -> PathBuf {
        let by_id = peer.id != peer.addr.ip().to_string()
            && !peer.id.is_empty()
            && peer
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if by_id {
            dir.join(format!("{}.mark", peer.id))
        } else {
            Self::address_path_in(dir, peer)
        }
    }

    fn address_path_in(dir: &std::path::Path, peer: &Peer) -> PathBuf {
        dir.join(format!("{}_{}.mark", peer.addr.ip(), peer.addr.port()))
    }

    /// The mark at `path`, or else the one an earlier version kept under the peer's
    /// address (moved to `path` then).
    fn load_or_adopt(path: &std::path::Path, legacy: &std::path::Path) -> Option<Mark> {
        if let Some(m) = Self::load(path) {
            return Some(m);
        }
        if path == legacy {
            return None;
        }
        let m = Self::load(legacy)?;
        match m.save(path) {
            Ok(()) => {
                let _ = std::fs::remove_file(legacy);
                tracing::info!(from = %legacy.display(), to = %path.display(), "sync mark renamed");
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "sync mark not renamed"),
        }
        Some(m)
    }

    fn load(path: &std::path::Path) -> Option<Mark> {
        let text = std::fs::read_to_string(path).ok()?;
        let kv: BTreeMap<&str, u64> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| Some((k.trim(), v.trim().parse().ok()?)))
            .collect();
        Some(Mark {
            position: Position {
                index: *kv.get("binlog_index")? as u32,
                offset: *kv.get("binlog_offset")?,
            },
            need_sync_old: kv.get("need_sync_old").copied() == Some(1),
            sync_old_done: kv.get("sync_old_done").copied() == Some(1),
            until: kv.get("until_timestamp").copied().unwrap_or(0),
            scan_rows: kv.get("scan_row_count").copied().unwrap_or(0),
            sync_rows: kv.get("sync_row_count").copied().unwrap_or(0),
        })
    }

    /// `save` on a disk thread: the write is fsync'd.
    async fn save_off_thread(&self, path: &std::path::Path) -> io::Result<()> {
        let (mark, path) = (self.clone(), path.to_owned());
        crate::disk::run(move || mark.save(&path))
            .await
            .map_err(io::Error::other)?
    }

    fn save(&self, path: &std::path::Path) -> io::Result<()> {
        let text = format!(
            "binlog_index={}\nbinlog_offset={}\nneed_sync_old={}\nsync_old_done={}\nuntil_timestamp={}\nscan_row_count={}\nsync_row_count={}\n",
            self.position.index,
            self.position.offset,
            u8::from(self.need_sync_old),
            u8::from(self.sync_old_done),
            self.until,
            self.scan_rows,
            self.sync_rows
        );
        crate::fsutil::write_atomically(path, text.as_bytes())
    }
}

/// Keeps one push task per peer, following the membership in heartbeat replies.
pub async fn run(node: Arc<StorageNode>, stop: CancellationToken) {
    let mut members = node.replication.subscribe();
    let mut tasks: BTreeMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    loop {
        let peers: Vec<Peer> = members.borrow_and_update().clone();
        let gone: Vec<String> = tasks
            .keys()
            .filter(|id| !peers.iter().any(|p| &p.id == *id && takes_pushes(p)))
            .cloned()
            .collect();
        for id in gone {
            if let Some((token, task)) = tasks.remove(&id) {
                token.cancel();
                // A peer that left has no backlog any more, once its task is over.
                let node = node.clone();
                tokio::spawn(async move {
                    let _ = task.await;
                    forget_peer(&node, &id);
                });
            }
        }
        for p in peers.iter().filter(|p| takes_pushes(p)) {
            if !tasks.contains_key(&p.id) {
                let token = stop.child_token();
                let task = tokio::spawn(push_loop(node.clone(), p.id.clone(), token.clone()));
                tasks.insert(p.id.clone(), (token, task));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = members.changed() => if changed.is_err() { break },
        }
    }
    for (_, (token, task)) in tasks {
        token.cancel();
        let _ = task.await;
    }
}

/// A peer that left the group has no backlog any more.
fn forget_peer(node: &StorageNode, id: &str) {
    node.replication.forget_push(id);
    let labels = PeerLabels {
        peer: id.to_owned(),
    };
    node.metrics.sync_lag_bytes.remove(&labels);
    node.metrics.sync_lag_seconds.remove(&labels);
}

/// How far the push to a peer has got, and which records it sends from there.
#[derive(Debug, Clone, Copy)]
pub struct PushPoint {
    position: Position,
    scope: Scope,
}

/// Which binlog records a push session sends (protocol notes §6.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Scope {
    need_sync_old: bool,
    sync_old_done: bool,
    until: u64,
}

impl Scope {
    fn wants(&self, r: &Record) -> bool {
        let copying_old =
            self.need_sync_old && !self.sync_old_done && u64::from(r.timestamp) <= self.until;
        if !self.need_sync_old && self.until > 0 && u64::from(r.timestamp) < self.until {
            // Another member copies everything older than `until`.
            return false;
        }
        match (r.origin, r.op) {
            (true, _) => true,
            (false, Op::Create | Op::Delete | Op::Update | Op::Link | Op::Rename) => copying_old,
            (false, _) => false,
        }
    }
}

/// Brings the sync marks saved before a crash that cut the binlog back (pages not yet
/// written, a line cut off) to where it ended when opened: the lines appended since start
/// there, and a mark past them would wait there, then read from inside a line. Run when
/// the storage starts, before anything is appended.
pub fn fit_marks_to_binlog(node: &StorageNode) -> io::Result<()> {
    let binlog = node.disk.binlog();
    let opened_at = binlog.opened_at();
    for entry in std::fs::read_dir(binlog.dir())? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "mark") {
            continue;
        }
        let Some(mark) = Mark::load(&path) else {
            continue;
        };
        if let Some(fitted) = within_binlog(mark, opened_at) {
            tracing::warn!(mark = %path.display(), binlog = ?opened_at, "sync mark past the binlog's end (cut back by a crash); going on from where it ends");
            fitted.save(&path)?;
        }
    }
    Ok(())
}

/// `mark` brought back to `opened_at` when it lies past it; `None` when it does not.
fn within_binlog(mut mark: Mark, opened_at: Position) -> Option<Mark> {
    (mark.position > opened_at).then(|| {
        mark.position = opened_at;
        mark
    })
}

/// Records how far the push to `peer_id` has got, for `backlog`.
fn note_position(node: &StorageNode, peer_id: &str, mark: &Mark) {
    let point = PushPoint {
        position: mark.position,
        scope: mark.scope(),
    };
    node.replication.set_push_point(peer_id, point);
}

/// Binlog bytes past a push position up to which `backlog` reads the records to count only
/// those the peer will get; beyond it the whole tail is reported.
const BACKLOG_EXACT_BYTES: u64 = 1 << 20;

/// What each peer has yet to receive of our binlog, from its push task's position, whether
/// the peer is being served, waiting or unreachable. Records the peer will never get (the
/// ones it sent us itself, for one) do not count while the tail is short, so a stopping
/// member's last report reaches zero. Reads the binlog: not for the async workers.
pub fn backlog(node: &StorageNode) -> Vec<Backlog> {
    let points = node.replication.push_points();
    let now = crate::unix_now();
    points
        .into_iter()
        .map(|(peer_id, point)| {
            let (bytes, oldest) = pending(node.disk.binlog(), point);
            Backlog {
                peer_id,
                bytes,
                seconds: oldest.map_or(0, |ts| now.saturating_sub(ts)),
            }
        })
        .collect()
}

/// Bytes of binlog still to push from `point`, and the timestamp of the first such record.
fn pending(binlog: &Binlog, point: PushPoint) -> (u64, Option<u64>) {
    let tail = binlog.lag_bytes(point.position);
    if tail == 0 {
        return (0, None);
    }
    let mut bytes = 0u64;
    let mut oldest = None;
    let mut from = point.position;
    let mut read = 0u64;
    while read < BACKLOG_EXACT_BYTES {
        let Ok((records, next)) = binlog.read_from(from, BATCH_BYTES) else {
            break;
        };
        if records.is_empty() && next == from {
            return (bytes, oldest);
        }
        if records.is_empty() {
            // What the read skipped (the remains of a write cut short) counts as read too.
            read += next.offset.saturating_sub(from.offset);
        }
        for r in &records {
            let len = r.to_line().len() as u64;
            read += len;
            if point.scope.wants(r) {
                bytes += len;
                oldest.get_or_insert(u64::from(r.timestamp));
            }
        }
        from = next;
    }
    // A long tail: all of it counts, aged from its first record.
    let first = binlog
        .read_from(point.position, 4096)
        .ok()
        .and_then(|(records, _)| records.first().map(|r| u64::from(r.timestamp)));
    (tail, oldest.or(first))
}

pub(super) fn refresh_backlog_metrics(node: &StorageNode) {
    for b in backlog(node) {
        let labels = PeerLabels { peer: b.peer_id };
        node.metrics
            .sync_lag_bytes
            .get_or_create(&labels)
            .set(b.bytes as i64);
        node.metrics
            .sync_lag_seconds
            .get_or_create(&labels)
            .set(b.seconds as i64);
    }
}

fn current(node: &StorageNode, id: &str) -> Option<Peer> {
    node.replication.peer(id)
}

async fn push_loop(node: Arc<StorageNode>, peer_id: String, stop: CancellationToken) {
    let mut last_error = String::new();
    let timers = node.config.timers.clone();
    let (retry_after, retry_at_most) = timers.sync_retry();
    // Pause after a failed attempt before reconnecting, doubling while the peer stays away.
    let mut backoff = crate::retry::Backoff::new(retry_after, retry_at_most);
    while !stop.is_cancelled() {
        // On stop the session pushes on to the binlog's end and saves its mark; one that
        // cannot (a peer not answering, too much left) is dropped after a grace, and goes on
        // from its last saved mark later.
        let flush_bound = async {
            stop.cancelled().await;
            tokio::time::sleep(timers.flush_grace()).await;
        };
        let result = tokio::select! {
            _ = flush_bound => break,
            r = push_session(&node, &peer_id, &stop) => r,
        };
        match result {
            // A peer that is down: said once, not at every retry.
            Err(e) if e.to_string() == last_error => {
                tracing::debug!(peer = %peer_id, error = %e, "sync to peer interrupted; retrying");
            }
            Err(e) => {
                tracing::warn!(peer = %peer_id, error = %e, "sync to peer interrupted; retrying");
                last_error = e.to_string();
            }
            Ok(()) => {
                last_error.clear();
                backoff.reset();
            }
        }
        if !backoff.wait(&stop).await {
            break;
        }
    }
}

/// A failed sync step; the session reconnects and resumes from the mark.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("peer answered {0}")]
    Status(Status),
    #[error("local i/o: {0}")]
    Io(#[from] io::Error),
    #[error("peer left the group")]
    Gone,
}

/// Asks the trackers who copies the old files to `peer`; `None` when no tracker answered.
async fn ask_source(node: &StorageNode, peer: &Peer) -> Option<SyncSource> {
    Trackers::of(node)
        .sync_source(&node.config.group_name, &peer.id)
        .await
}

/// Whether this storage (`me`) copies the old files to a peer whose mark is missing: it
/// must be the source the trackers named, and, as FastDFS has it, the peer must still be
/// waiting for its copy. A peer past that whose mark is gone (it moved and the mark went
/// with it, or our binlog directory was rebuilt) is pushed what the binlog holds instead.
fn copies_old_files(src: &SyncSource, me: &str, peer: StorageStatus) -> bool {
    !src.src_id.is_empty() && src.src_id == me && peer <= StorageStatus::Syncing
}

/// Tells every tracker a new status of `peer` (REPORT_STATUS, 76).
async fn report_peer_status(node: &StorageNode, peer: &Peer, status: StorageStatus) {
    let brief = StorageBrief {
        status: status as u8,
        port: u32::from(peer.addr.port()),
        id: peer.id.clone(),
        ip: peer.addr.ip().to_string(),
    };
    let took = Trackers::of(node)
        .report_status(&node.config.group_name, brief)
        .await;
    tracing::info!(peer = %peer.id, status = status.name(), trackers = took, "reported peer status");
}

async fn push_session(
    node: &Arc<StorageNode>,
    peer_id: &str,
    stop: &CancellationToken,
) -> Result<(), SyncError> {
    let mut peer = current(node, peer_id).ok_or(SyncError::Gone)?;
    let mark_path = Mark::path(node, &peer);
    let loading = mark_path.clone();
    let legacy = Mark::address_path_in(node.disk.binlog().dir(), &peer);
    let saved = crate::disk::run(move || Mark::load_or_adopt(&loading, &legacy))
        .await
        .unwrap_or(None);
    let mut mark = match saved {
        // A peer that is starting over never reuses an old mark.
        Some(m) if peer.status > StorageStatus::WaitSync => m,
        _ => {
            let src = loop {
                let src = ask_source(node, &peer)
                    .await
                    .ok_or(SyncError::Status(Status::NotFound))?;
                // A peer that still waits for its copy must have a source: until the
                // trackers name it, deciding "not me" could leave the peer without one.
                if !src.src_id.is_empty() || peer.status > StorageStatus::Syncing {
                    break src;
                }
                let mut members = node.replication.subscribe();
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = members.changed() => {}
                    _ = tokio::time::sleep(node.config.timers.peer_status_poll()) => {}
                }
                peer = current(node, peer_id).ok_or(SyncError::Gone)?;
            };
            let mark = Mark {
                need_sync_old: copies_old_files(&src, &node.own_id(), peer.status),
                until: src.until,
                ..Default::default()
            };
            if mark.need_sync_old {
                report_peer_status(node, &peer, StorageStatus::Syncing).await;
            }
            mark.save_off_thread(&mark_path).await?;
            mark
        }
    };
    note_position(node, peer_id, &mark);
    let started_at = mark.position;
    let result = push_from(node, peer_id, stop, &mut mark, &mark_path).await;
    if result.is_err() && mark.position != started_at {
        // What reached the peer stays counted: the next session goes on from here, not
        // from an older saved mark (which would report a backlog already pushed).
        let _ = mark.save_off_thread(&mark_path).await;
    }
    result
}

/// The pushing part of a session, from `mark` on; `mark` follows what the peer took.
async fn push_from(
    node: &Arc<StorageNode>,
    peer_id: &str,
    stop: &CancellationToken,
    mark: &mut Mark,
    mark_path: &std::path::Path,
) -> Result<(), SyncError> {
    let mut peer: Peer;
    // Only the full-copy source pushes before the peer is ACTIVE.
    let source_copying = mark.need_sync_old && !mark.sync_old_done;
    loop {
        peer = current(node, peer_id).ok_or(SyncError::Gone)?;
        let ready = match peer.status {
            StorageStatus::Active => true,
            StorageStatus::WaitSync | StorageStatus::Syncing => source_copying,
            _ => false,
        };
        if ready {
            break;
        }
        let mut members = node.replication.subscribe();
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = members.changed() => {}
            _ = tokio::time::sleep(node.config.timers.peer_status_poll()) => {
                // The member list comes with this storage's own beats (every 30 s by
                // default): a peer that came back since (both restarted, it a moment
                // later) is asked of the trackers instead of waiting for the next beat.
                if peer.status != StorageStatus::Deleted && trackers_hold_active(node, &peer).await {
                    node.replication.set_peer_status(&peer.id, StorageStatus::Active);
                }
            }
        }
    }
    let mut conns = Vec::with_capacity(LANES);
    for _ in 0..LANES {
        conns.push(Some(open_lane(node, peer.addr).await?));
    }
    let mut end = node.disk.binlog().subscribe();
    let mut unsaved = 0u64;
    let labels = PeerLabels {
        peer: peer.id.clone(),
    };
    loop {
        // What is appended from here on wakes a caught-up push; what was appended before is
        // in the read below (a change seen during the last push would wake it for nothing).
        end.borrow_and_update();
        let (from, scope) = (mark.position, mark.scope());
        let (records, next, mut loaded) = match read_batch_cached(node, from, scope) {
            Some(batch) => batch?,
            None => {
                let n = node.clone();
                crate::disk::run(move || read_batch(&n, from, scope))
                    .await
                    .map_err(io::Error::other)??
            }
        };
        if records.is_empty() && next != mark.position {
            // Nothing to send before `next` (the end of a finished file, the remains of a
            // write cut short): go on from there.
            mark.position = next;
            note_position(node, peer_id, mark);
            unsaved += 1;
            continue;
        }
        if records.is_empty() {
            if mark.need_sync_old && !mark.sync_old_done {
                mark.sync_old_done = true;
                mark.save_off_thread(mark_path).await?;
                report_peer_status(node, &peer, StorageStatus::Offline).await;
            }
            // Caught up: the mark is saved when stopping or after a quiet while, not at
            // every pause of a slow stream (each save is fsync'd); a lost mark only repeats
            // pushes, which peers take idempotently.
            tokio::select! {
                _ = stop.cancelled() => {
                    if unsaved > 0 {
                        mark.save_off_thread(mark_path).await?;
                    }
                    for c in conns.into_iter().flatten() {
                        c.quit().await;
                    }
                    return Ok(());
                }
                _ = end.changed() => {
                    // Let more changes come, to push them together (a stop cuts it short).
                    let wait = Duration::from_millis(node.config.sync_wait_msec);
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
                _ = tokio::time::sleep(node.config.timers.quiet_mark_save()) => {
                    if unsaved > 0 {
                        mark.save_off_thread(mark_path).await?;
                        unsaved = 0;
                    }
                    // Keep the connections alive and find out early if the peer went away.
                    for c in conns.iter_mut().flatten() {
                        expect_ok(c.call(Command::ActiveTest, &[], 16).await?)?;
                    }
                }
            }
            if current(node, peer_id).is_none() {
                return Err(SyncError::Gone);
            }
            continue;
        }
        mark.scan_rows += records.len() as u64;
        let chosen: Vec<(Record, Option<Loaded>)> = records
            .iter()
            .filter(|r| wanted(r, mark))
            .map(|r| {
                let content = matches!(r.op, Op::Create | Op::Update)
                    .then(|| loaded.remove(&r.name))
                    .flatten();
                (r.clone(), content)
            })
            .collect();
        let pushed = push_batch(node, &mut conns, chosen).await?;
        mark.sync_rows += pushed;
        node.metrics
            .synced_records
            .get_or_create(&labels)
            .inc_by(pushed);
        mark.position = next;
        note_position(node, peer_id, mark);
        unsaved += records.len() as u64;
        if stop.is_cancelled() {
            // Stopping: push on to the binlog's end (the caught-up branch above ends the
            // session), within the flush grace, saving the mark after every batch.
            mark.save_off_thread(mark_path).await?;
            unsaved = 0;
            continue;
        }
        if unsaved >= MARK_EVERY {
            mark.save_off_thread(mark_path).await?;
            unsaved = 0;
        }
    }
}

/// Whether every tracker that answers holds `peer` ACTIVE (at least one answering).
async fn trackers_hold_active(node: &StorageNode, peer: &Peer) -> bool {
    let held = Trackers::of(node)
        .storage_status(
            &node.config.group_name,
            &peer.addr.ip().to_string(),
            peer.addr.port(),
        )
        .await;
    !held.is_empty()
        && held
            .iter()
            .all(|(_, status)| *status == Some(StorageStatus::Active))
}

/// Connections per peer; records of one file always share a lane, so they keep their order.
const LANES: usize = 16;

async fn open_lane(node: &StorageNode, addr: SocketAddr) -> Result<Conn, SyncError> {
    let mut conn = node.connect(addr).await?;
    let me = ServerIdReport {
        storage_id: node.own_id(),
    };
    expect_ok(
        conn.call(Command::ReportServerId, &me.encode(), 1024)
            .await?,
    )?;
    Ok(conn)
}

/// The lane of a record: by file name, a metadata file going with its file.
fn lane_of(r: &Record) -> usize {
    let base = r.name.strip_suffix("-m").unwrap_or(&r.name);
    (crc32fast::hash(base.as_bytes()) as usize) % LANES
}

/// Pushes records over the lanes in parallel; renames and links, which touch two
/// names, run alone between the parallel stretches. Returns how many were pushed.
async fn push_batch(
    node: &Arc<StorageNode>,
    conns: &mut [Option<Conn>],
    records: Vec<(Record, Option<Loaded>)>,
) -> Result<u64, SyncError> {
    let total = records.len() as u64;
    let mut stretch: Vec<Vec<(Record, Option<Loaded>)>> = vec![Vec::new(); LANES];
    for (r, content) in records {
        if matches!(r.op, Op::Rename | Op::Link) {
            run_lanes(
                node,
                conns,
                std::mem::replace(&mut stretch, vec![Vec::new(); LANES]),
            )
            .await?;
            let conn = conns[0].as_mut().ok_or(SyncError::Gone)?;
            push_record(node, conn, &r, content).await?;
        } else {
            stretch[lane_of(&r)].push((r, content));
        }
    }
    run_lanes(node, conns, stretch).await?;
    Ok(total)
}

async fn run_lanes(
    node: &Arc<StorageNode>,
    conns: &mut [Option<Conn>],
    lanes: Vec<Vec<(Record, Option<Loaded>)>>,
) -> Result<(), SyncError> {
    let mut set = tokio::task::JoinSet::new();
    for (k, lane) in lanes.into_iter().enumerate() {
        if lane.is_empty() {
            continue;
        }
        let mut conn = conns[k].take().ok_or(SyncError::Gone)?;
        let node = node.clone();
        set.spawn(async move {
            for (r, content) in lane {
                push_record(&node, &mut conn, &r, content).await?;
            }
            Ok::<_, SyncError>((k, conn))
        });
    }
    let mut first_error = None;
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Ok((k, conn))) => conns[k] = Some(conn),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some(SyncError::Gone)),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Which records go to the peer.
fn wanted(r: &Record, mark: &Mark) -> bool {
    mark.scope().wants(r)
}

fn expect_ok((status, _): (Status, Vec<u8>)) -> Result<(), SyncError> {
    if status == Status::Ok {
        Ok(())
    } else {
        Err(SyncError::Status(status))
    }
}

/// Bytes of a local file a sync request carries: read in the same disk step as the
/// open when small (most of a sync stream), streamed chunk by chunk otherwise.
enum Payload {
    Bytes(Vec<u8>),
    File {
        file: Arc<std::fs::File>,
        start: u64,
        len: u64,
    },
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }
}

/// Bytes read from a file per disk step.
const CHUNK: u64 = 256 * 1024;

/// Opens a stored file and takes `len` bytes from `start` (to the end when `None`), off the
/// async workers. `None` when the file is gone; the file's size besides, and no bytes when
/// the range lies beyond it.
async fn load_payload(
    node: &StorageNode,
    name: &str,
    start: u64,
    len: Option<u64>,
) -> Result<Option<(u64, Payload)>, SyncError> {
    let Some(at) = stored_at(node, name) else {
        return Ok(None);
    };
    let loaded = crate::disk::run(move || -> io::Result<_> {
        let opened = match at.open() {
            Ok(opened) => opened,
            Err(e) if gone(&e) => return Ok(None),
            // Out of descriptors, EIO, EACCES: the file may well be there. Skipping its
            // record would move the mark past it for good; the session retries instead.
            Err(e) => return Err(e),
        };
        let (file, size) = (opened.file, opened.size);
        // Where the range is in the file opened: past the slot's header for a trunk file.
        let base = opened.base;
        let len = len.unwrap_or(size.saturating_sub(start));
        if start.saturating_add(len) > size {
            return Ok(Some((size, Payload::Bytes(Vec::new()))));
        }
        if len <= CHUNK {
            let mut b = vec![0u8; len as usize];
            file.read_exact_at(&mut b, base + start)?;
            return Ok(Some((size, Payload::Bytes(b))));
        }
        let file = Arc::new(file);
        let start = base + start;
        Ok(Some((size, Payload::File { file, start, len })))
    })
    .await
    .map_err(io::Error::other)??;
    Ok(loaded)
}

/// Where a stored file named in a binlog record is kept here; `None` for a name that is
/// not one of ours.
fn stored_at(node: &StorageNode, name: &str) -> Option<StoredAt> {
    node.disk.store().stored_at(&RemoteName::parse(name).ok()?)
}

/// A small file's bytes, read with the binlog batch that names it.
type Loaded = Vec<u8>;

/// Files up to this size are read with the binlog batch that names them.
const LOAD_AT_MOST: u64 = 64 * 1024;
/// Bytes of small files read with one binlog batch, at most.
const LOAD_PER_BATCH: u64 = 4 << 20;

/// A binlog batch, where the next one starts, and the small files it names.
type Batch = (Vec<Record>, Position, HashMap<String, Loaded>);

/// How far behind the binlog's end a pusher may be and still read its batch on its own
/// thread: a few dozen lines and their files, a moment's work. Further behind (catching
/// up), a batch is up to 64 KiB of lines and 4 MiB of files: a disk thread reads it, so no
/// async worker spends that long on one step.
const KEEPING_UP_BYTES: u64 = 8 * 1024;

/// The next batch from `from` on the caller's thread, when the pusher keeps up and the
/// kernel's caches hold all of it (lines just appended and the files they name usually
/// are); `None` otherwise, for a disk step ([`read_batch`]). A pusher keeping up then
/// makes no trip to a disk thread.
fn read_batch_cached(
    node: &StorageNode,
    from: Position,
    scope: Scope,
) -> Option<io::Result<Batch>> {
    let binlog = node.disk.binlog();
    let end = binlog.end();
    if from.index != end.index || end.offset.saturating_sub(from.offset) > KEEPING_UP_BYTES {
        return None;
    }
    let (records, next) = match binlog.read_cached(from, BATCH_BYTES)? {
        Ok(read) => read,
        Err(e) => return Some(Err(e)),
    };
    let loaded = load_small_files(node, &records, scope, true)?;
    Some(Ok((records, next, loaded)))
}

/// The next batch from `from` (a disk step).
fn read_batch(node: &StorageNode, from: Position, scope: Scope) -> io::Result<Batch> {
    let (records, next) = node.disk.binlog().read_from(from, BATCH_BYTES)?;
    let loaded = load_small_files(node, &records, scope, false).unwrap_or_default();
    Ok((records, next, loaded))
}

/// Reads the small files that `records` create or replace, for the push, with the binlog
/// read so a small file costs no disk step of its own. A file that is gone, large, or past
/// the batch's budget is left out and loaded when pushed. With `cache_only`, `None` as soon
/// as a file is not in the kernel's caches.
fn load_small_files(
    node: &StorageNode,
    records: &[Record],
    scope: Scope,
    cache_only: bool,
) -> Option<HashMap<String, Loaded>> {
    let mut loaded = HashMap::new();
    let mut budget = LOAD_PER_BATCH;
    for r in records {
        if !matches!(r.op, Op::Create | Op::Update)
            || !scope.wants(r)
            || loaded.contains_key(&r.name)
        {
            continue;
        }
        let Some(at) = stored_at(node, &r.name) else {
            continue;
        };
        let opened = if cache_only {
            at.open_cached()?
        } else {
            at.open()
        };
        let Ok(opened) = opened else {
            continue;
        };
        if opened.size > LOAD_AT_MOST || opened.size > budget {
            continue;
        }
        let mut bytes = vec![0u8; opened.size as usize];
        let read = if cache_only {
            match crate::disk::read_from_cache(&opened.file, &mut bytes, opened.base) {
                Ok(n) if n < bytes.len() => return None,
                read => read.map(|_| ()),
            }
        } else {
            opened.file.read_exact_at(&mut bytes, opened.base)
        };
        if read.is_ok() {
            budget -= opened.size;
            loaded.insert(r.name.clone(), bytes);
        }
    }
    Some(loaded)
}

/// Whether an error opening a stored file says it is not there (rather than that it could
/// not be read now).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether a stored file exists here now, asked on a disk thread. An error other than its
/// absence is the session's to retry, not a reason to skip the record.
async fn exists_locally(node: &StorageNode, name: &str) -> Result<bool, SyncError> {
    let Some(at) = stored_at(node, name) else {
        return Ok(false);
    };
    let found = crate::disk::run(move || match at.exists() {
        Err(e) if gone(&e) => Ok(false),
        found => found,
    })
    .await
    .map_err(io::Error::other)??;
    Ok(found)
}

/// Sends a sync request (fixed part `prefix`, then `payload`) and returns the reply status.
async fn send(
    conn: &mut Conn,
    cmd: Command,
    status: u8,
    prefix: &[u8],
    payload: Option<Payload>,
) -> Result<Status, SyncError> {
    let content = payload.as_ref().map_or(0, Payload::len);
    let mut first = Header {
        body_len: prefix.len() as u64 + content,
        cmd,
        status,
    }
    .encode()
    .to_vec();
    first.extend_from_slice(prefix);
    match payload {
        None => conn.write_all(&first).await?,
        Some(Payload::Bytes(b)) => {
            first.extend_from_slice(&b);
            conn.write_all(&first).await?;
        }
        Some(Payload::File { file, start, len }) => {
            conn.write_all(&first).await?;
            let mut pos = start;
            while pos < start + len {
                let n = CHUNK.min(start + len - pos) as usize;
                let f = file.clone();
                let chunk = crate::disk::run(move || {
                    let mut b = vec![0u8; n];
                    f.read_exact_at(&mut b, pos).map(|_| b)
                })
                .await
                .map_err(io::Error::other)??;
                conn.write_all(&chunk).await?;
                pos += n as u64;
            }
        }
    }
    let h = conn.read_reply_header(1 << 20).await?;
    let mut body = vec![0u8; h.body_len as usize];
    conn.read_exact(&mut body).await?;
    Ok(h.status())
}

/// Pushes a whole local file with SYNC_CREATE or SYNC_UPDATE; a vanished file is skipped.
async fn push_file(
    node: &StorageNode,
    conn: &mut Conn,
    name: &str,
    ts: u32,
    update: bool,
    loaded: Option<Loaded>,
) -> Result<(), SyncError> {
    let read = match loaded {
        Some(bytes) => Some((bytes.len() as u64, Payload::Bytes(bytes))),
        None => load_payload(node, name, 0, None).await?,
    };
    let Some((size, payload)) = read else {
        return Ok(());
    };
    let head = SyncFileHead {
        name_len: name.len() as u64,
        file_size: size,
        timestamp: ts,
        group: node.config.group_name.clone(),
    };
    let mut prefix = head.encode();
    prefix.extend_from_slice(name.as_bytes());
    let cmd = if update {
        Command::SyncUpdateFile
    } else {
        Command::SyncCreateFile
    };
    let status = send(conn, cmd, 0, &prefix, Some(payload)).await?;
    node.count_sync(true, size, status == Status::Ok);
    match status {
        Status::Ok | Status::AlreadyExists => Ok(()),
        other => Err(SyncError::Status(other)),
    }
}

/// Pushes one record; `loaded` is the file's content when read with the batch.
async fn push_record(
    node: &StorageNode,
    conn: &mut Conn,
    r: &Record,
    loaded: Option<Loaded>,
) -> Result<(), SyncError> {
    let group = node.config.group_name.clone();
    let ts = r.timestamp;
    let numbers = || -> Option<(u64, u64)> {
        let (a, b) = r.extra.as_deref()?.split_once(' ')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match r.op {
        Op::Create => push_file(node, conn, &r.name, ts, false, loaded).await,
        Op::Update => push_file(node, conn, &r.name, ts, true, loaded).await,
        Op::Delete => {
            // A file that exists again was re-created after this delete.
            let again = exists_locally(node, &r.name).await?;
            if again {
                return Ok(());
            }
            let body = SyncDelete {
                timestamp: ts,
                group,
                name: r.name.clone(),
            }
            .encode();
            match send(conn, Command::SyncDeleteFile, 0, &body, None).await? {
                Status::Ok | Status::NotFound => Ok(()),
                other => Err(SyncError::Status(other)),
            }
        }
        Op::Append | Op::Modify => {
            let Some((start, len)) = numbers() else {
                return Ok(());
            };
            let Some((size, payload)) = load_payload(node, &r.name, start, Some(len)).await? else {
                return Ok(());
            };
            if size < start.saturating_add(len) {
                // Changed since (e.g. truncated): the whole file is the truth.
                return push_file(node, conn, &r.name, ts, true, None).await;
            }
            let head = SyncRangeHead {
                name_len: r.name.len() as u64,
                a: start,
                b: len,
                timestamp: ts,
                group,
            };
            let mut prefix = head.encode();
            prefix.extend_from_slice(r.name.as_bytes());
            let cmd = if r.op == Op::Append {
                Command::SyncAppendFile
            } else {
                Command::SyncModifyFile
            };
            let status = send(conn, cmd, 0, &prefix, Some(payload)).await?;
            node.count_sync(true, len, status == Status::Ok);
            match status {
                Status::Ok | Status::AlreadyExists => Ok(()),
                Status::NotFound => push_file(node, conn, &r.name, ts, true, None).await,
                other => Err(SyncError::Status(other)),
            }
        }
        Op::Truncate => {
            let Some((old, new)) = numbers() else {
                return Ok(());
            };
            // As FastDFS's sender: a file gone here since (renamed, deleted) is skipped.
            // A FastDFS receiver answers ENOENT when it lacks the file, which would
            // otherwise stop this peer's sync for good.
            let exists = exists_locally(node, &r.name).await?;
            if !exists {
                return Ok(());
            }
            let head = SyncRangeHead {
                name_len: r.name.len() as u64,
                a: old,
                b: new,
                timestamp: ts,
                group,
            };
            let mut body = head.encode();
            body.extend_from_slice(r.name.as_bytes());
            match send(conn, Command::SyncTruncateFile, 0, &body, None).await? {
                Status::Ok | Status::AlreadyExists => Ok(()),
                // The peer lacks the file we have: the whole file is the truth.
                Status::NotFound => push_file(node, conn, &r.name, ts, true, None).await,
                other => Err(SyncError::Status(other)),
            }
        }
        Op::Rename if !r.origin => push_file(node, conn, &r.name, ts, false, None).await,
        Op::Rename | Op::Link => {
            let Some(second) = r.extra.clone() else {
                return Ok(());
            };
            let cmd = if r.op == Op::Rename {
                Command::SyncRenameFile
            } else {
                Command::SyncCreateLink
            };
            let body = SyncPair {
                timestamp: ts,
                group,
                first: r.name.clone(),
                second,
            }
            .encode();
            match send(conn, cmd, 0, &body, None).await? {
                Status::Ok | Status::AlreadyExists => Ok(()),
                Status::NotFound if r.op == Op::Rename => {
                    push_file(node, conn, &r.name, ts, false, None).await
                }
                Status::NotFound => Ok(()),
                other => Err(SyncError::Status(other)),
            }
        }
    }
}

/// Whether a peer gets a push task: not once deleted, nor the record a peer left behind
/// at its old address.
fn takes_pushes(p: &Peer) -> bool {
    !matches!(p.status, StorageStatus::Deleted | StorageStatus::IpChanged)
}

/// Follows the trackers' storage changelog (77) in our sync marks, as FastDFS does: the
/// marks of a deleted peer go; those of a peer that moved to another address (IP
/// identities) are renamed to it, so its push goes on from where it was.
pub fn follow_changelog(
    dir: &std::path::Path,
    group: &str,
    lines: &[crate::proto::cluster::ChangelogLine],
) -> io::Result<()> {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in lines.iter().filter(|l| l.group == group) {
        // `<id>.mark`, or `<ip>_<port>.mark` for a peer known by its address.
        let of_peer = |name: &str, id: &str| -> Option<String> {
            let rest = name.strip_prefix(id)?.strip_suffix(".mark")?;
            match rest.strip_prefix('_') {
                Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => Some(port.to_owned()),
                None if rest.is_empty() => Some(String::new()),
                _ => None,
            }
        };
        for name in &names {
            let Some(port) = of_peer(name, &line.id) else {
                continue;
            };
            let path = dir.join(name);
            if line.status == StorageStatus::Deleted as u8 {
                tracing::info!(peer = %line.id, mark = %path.display(), "peer deleted; sync mark removed");
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            } else if line.status == StorageStatus::IpChanged as u8
                && !port.is_empty()
                && !line.new_id.is_empty()
                && !line.new_id.contains(['/', '\\'])
            {
                let to = dir.join(format!("{}_{port}.mark", line.new_id));
                if to.exists() {
                    continue;
                }
                tracing::info!(from = %line.id, to = %line.new_id, "peer moved; sync mark renamed");
                match std::fs::rename(&path, &to) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Peers of our group from a heartbeat reply's member list (everyone but us).
pub fn peers_from_members(members: &[StorageBrief], own_ip: &str, own_port: u16) -> Vec<Peer> {
    members
        .iter()
        .filter(|m| !(m.ip == own_ip && m.port == u32::from(own_port)))
        .filter_map(|m| {
            let ip: IpAddr = m.ip.parse().ok()?;
            let port = u16::try_from(m.port).ok()?;
            Some(Peer {
                id: m.id.clone(),
                addr: SocketAddr::new(ip, port),
                status: StorageStatus::from_byte(m.status)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_named_by_storage_id_and_adopted_from_the_address_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let peer = |id: &str, addr: &str| Peer {
            id: id.into(),
            addr: addr.parse().expect("addr"),
            status: StorageStatus::Active,
        };
        let by_ip = peer("127.0.0.3", "127.0.0.3:23000");
        assert_eq!(
            Mark::path_in(dir.path(), &by_ip),
            dir.path().join("127.0.0.3_23000.mark")
        );
        let by_id = peer("100002", "10.0.0.7:23000");
        assert_eq!(
            Mark::path_in(dir.path(), &by_id),
            dir.path().join("100002.mark")
        );
        // An id that is not a plain name falls back to the address.
        assert_eq!(
            Mark::path_in(dir.path(), &peer("../x", "10.0.0.7:23000")),
            dir.path().join("10.0.0.7_23000.mark")
        );
        // A mark kept under the address is taken over under the id, once.
        let m = Mark {
            position: Position {
                index: 2,
                offset: 77,
            },
            ..Default::default()
        };
        let legacy = Mark::address_path_in(dir.path(), &by_id);
        m.save(&legacy).expect("save");
        let named = Mark::path_in(dir.path(), &by_id);
        assert_eq!(Mark::load_or_adopt(&named, &legacy), Some(m.clone()));
        assert!(!legacy.exists());
        assert_eq!(Mark::load(&named), Some(m.clone()));
        // The peer moves to another address: the same mark.
        let moved = peer("100002", "10.0.0.9:23000");
        let again = Mark::path_in(dir.path(), &moved);
        assert_eq!(
            Mark::load_or_adopt(&again, &Mark::address_path_in(dir.path(), &moved)),
            Some(m)
        );
    }

    #[test]
    fn the_changelog_removes_and_renames_marks_of_our_group() {
        use crate::proto::cluster::ChangelogLine;
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "10.0.0.1_23000.mark",
            "10.0.0.11_23000.mark",
            "10.0.0.3_23000.mark",
            "100004.mark",
            "10.0.0.5_23000.mark",
        ] {
            std::fs::write(dir.path().join(name), name).expect("mark");
        }
        let line = |group: &str, id: &str, status: u8, new_id: &str| ChangelogLine {
            time: 1,
            group: group.into(),
            id: id.into(),
            status,
            new_id: new_id.into(),
        };
        let lines = [
            line("group1", "10.0.0.1", 3, "10.0.0.9"),
            line("group1", "10.0.0.3", 4, ""),
            line("group1", "100004", 4, ""),
            line("group2", "10.0.0.5", 4, ""),
            line("group1", "10.0.0.7", 3, "../x"),
        ];
        follow_changelog(dir.path(), "group1", &lines).expect("follow");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "10.0.0.11_23000.mark",
                "10.0.0.5_23000.mark",
                "10.0.0.9_23000.mark"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("10.0.0.9_23000.mark")).expect("moved"),
            "10.0.0.1_23000.mark"
        );
        // Read again (another tracker's copy of the same line): nothing more changes.
        follow_changelog(dir.path(), "group1", &lines).expect("again");
        assert!(dir.path().join("10.0.0.9_23000.mark").exists());
    }

    #[test]
    fn mark_files_round_trip_in_fastdfs_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("127.0.0.3_23000.mark");
        let m = Mark {
            position: Position {
                index: 0,
                offset: 1234,
            },
            need_sync_old: true,
            sync_old_done: false,
            until: 1_795_659_481,
            scan_rows: 10,
            sync_rows: 7,
        };
        m.save(&p).expect("save");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(
            text.starts_with(
                "binlog_index=0\nbinlog_offset=1234\nneed_sync_old=1\nsync_old_done=0\n"
            ),
            "{text}"
        );
        assert_eq!(Mark::load(&p), Some(m));
    }

    /// A peer that answers like FastDFS's storage_sync_truncate_file: ENOENT for a
    /// file it lacks. Records the commands it gets.
    async fn enoent_peer() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Command>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            loop {
                let mut h = [0u8; crate::proto::HEADER_LEN];
                if s.read_exact(&mut h).await.is_err() {
                    return;
                }
                let header = Header::decode(&h, u64::MAX).expect("header");
                let mut body = vec![0u8; header.body_len as usize];
                s.read_exact(&mut body).await.expect("body");
                let status = match header.cmd {
                    Command::SyncTruncateFile => Status::NotFound,
                    _ => Status::Ok,
                };
                let _ = tx.send(header.cmd);
                let reply = Header::response(status, 0).encode();
                s.write_all(&reply).await.expect("reply");
            }
        });
        (addr, rx)
    }

    /// A sync connection to `addr`.
    async fn connect(addr: SocketAddr) -> Conn {
        let limit = std::time::Duration::from_secs(5);
        Conn::connect(addr, limit, limit, None)
            .await
            .expect("connect")
    }

    /// A storage node on a fresh directory, one subdirectory per level.
    fn node_in_tempdir() -> (tempfile::TempDir, StorageNode) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::StorageConfig {
            base_path: dir.path().to_path_buf(),
            subdir_count_per_path: 1,
            ..Default::default()
        };
        let node = StorageNode::new(config, 23000, None).expect("node");
        (dir, node)
    }

    /// Puts `bytes` on the node's disk under the stored file's `name`.
    fn store_file(node: &StorageNode, name: &str, bytes: &[u8]) {
        let path = node
            .disk
            .store()
            .file_path(&RemoteName::parse(name).expect("name"))
            .expect("path");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
    }

    #[tokio::test]
    async fn truncate_records_never_stall_on_a_fastdfs_peer() {
        let (_dir, node) = node_in_tempdir();
        let (addr, mut got) = enoent_peer().await;
        let mut conn = connect(addr).await;
        let gone = Record::new(
            100,
            Op::Truncate,
            "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768698",
        )
        .with_extra("5000 4000");
        // Renamed or deleted here since: skipped, nothing sent (FastDFS does the same).
        push_record(&node, &mut conn, &gone, None)
            .await
            .expect("a truncate of a file gone here is done");
        // Present here, missing there: the peer gets the whole file.
        let name = "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768699";
        store_file(&node, name, &[1u8; 4000]);
        let present = Record::new(100, Op::Truncate, name).with_extra("5000 4000");
        push_record(&node, &mut conn, &present, None)
            .await
            .expect("ENOENT answered with the whole file");
        assert_eq!(got.recv().await, Some(Command::SyncTruncateFile));
        assert_eq!(got.recv().await, Some(Command::SyncUpdateFile));
        assert!(got.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_now_is_retried_not_skipped() {
        let (_dir, node) = node_in_tempdir();
        let (addr, mut got) = enoent_peer().await;
        let mut conn = connect(addr).await;
        // The name resolves to a link to itself: opening it fails with ELOOP, an error
        // that does not say the file is gone.
        let name = "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768698";
        let path = node
            .disk
            .store()
            .file_path(&RemoteName::parse(name).expect("name"))
            .expect("path");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::os::unix::fs::symlink(&path, &path).expect("symlink");
        for record in [
            Record::new(100, Op::Create, name),
            Record::new(100, Op::Append, name).with_extra("0 10"),
            Record::new(100, Op::Truncate, name).with_extra("10 0"),
            Record::new(100, Op::Delete, name),
        ] {
            let pushed = push_record(&node, &mut conn, &record, None).await;
            assert!(
                matches!(pushed, Err(SyncError::Io(_))),
                "{:?}: {pushed:?}",
                record.op
            );
        }
        // Nothing was sent for any of them; a file truly gone is still skipped.
        std::fs::remove_file(&path).expect("unlink");
        push_record(&node, &mut conn, &Record::new(100, Op::Create, name), None)
            .await
            .expect("a file gone here is skipped");
        assert!(got.try_recv().is_err());
    }

    #[test]
    fn the_backlog_counts_only_records_the_peer_will_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binlog = Binlog::open(dir.path()).expect("binlog");
        let own = Record::new(100, Op::Create, "M00/00/00/own");
        binlog.append(std::slice::from_ref(&own)).expect("append");
        let point = PushPoint {
            position: Position::default(),
            scope: Scope::default(),
        };
        assert_eq!(
            pending(&binlog, point),
            (own.to_line().len() as u64, Some(100))
        );
        // Caught up, then a file the peer itself sent us: nothing to push back.
        let caught_up = PushPoint {
            position: binlog.end(),
            ..point
        };
        binlog
            .append(&[Record::new(101, Op::Create, "M00/00/00/theirs").replica()])
            .expect("append");
        assert_eq!(pending(&binlog, caught_up), (0, None));
        // A full copy still in progress takes received files too.
        let copying = PushPoint {
            scope: Scope {
                need_sync_old: true,
                until: 200,
                ..Scope::default()
            },
            ..caught_up
        };
        assert_eq!(pending(&binlog, copying).1, Some(101));
        // A change of our own after it counts, and only it.
        let later = Record::new(102, Op::Delete, "M00/00/00/own");
        binlog.append(std::slice::from_ref(&later)).expect("append");
        assert_eq!(
            pending(&binlog, caught_up),
            (later.to_line().len() as u64, Some(102))
        );
    }

    /// Only the named source copies, and only to a peer still waiting for its copy: a peer
    /// that moved (OFFLINE, ONLINE or ACTIVE under its old name) is not copied anew.
    #[test]
    fn the_named_source_copies_old_files_only_to_a_peer_still_waiting() {
        let src = |id: &str| SyncSource {
            src_id: id.into(),
            until: 100,
        };
        for status in [
            StorageStatus::Init,
            StorageStatus::WaitSync,
            StorageStatus::Syncing,
        ] {
            assert!(
                copies_old_files(&src("10.0.0.1"), "10.0.0.1", status),
                "{status:?}"
            );
        }
        for status in [
            StorageStatus::Offline,
            StorageStatus::Online,
            StorageStatus::Active,
        ] {
            assert!(
                !copies_old_files(&src("10.0.0.1"), "10.0.0.1", status),
                "{status:?}"
            );
        }
        assert!(!copies_old_files(
            &src("10.0.0.2"),
            "10.0.0.1",
            StorageStatus::WaitSync
        ));
        assert!(!copies_old_files(
            &src(""),
            "10.0.0.1",
            StorageStatus::WaitSync
        ));
    }

    /// Small writes go to their own threads, unless writes are fsync'd: then to the
    /// threads for any step, where fsyncs overlap.
    #[tokio::test]
    async fn small_writes_leave_their_threads_when_writes_are_fsynced() {
        let thread = || std::thread::current().name().map(str::to_owned);
        let (_dir, node) = node_in_tempdir();
        let name = super::super::small_write(&node, thread)
            .await
            .expect("step");
        assert!(name.is_some_and(|n| n.starts_with("fdfs-write-")));
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::StorageConfig {
            base_path: dir.path().to_path_buf(),
            subdir_count_per_path: 1,
            fsync_after_written_bytes: 1 << 20,
            ..Default::default()
        };
        let durable = StorageNode::new(config, 23000, None).expect("node");
        let name = super::super::small_write(&durable, thread)
            .await
            .expect("step");
        assert!(name.is_some_and(|n| n.starts_with("fdfs-disk-")));
    }

    /// A pusher keeping up reads its batch on its own thread; one further behind than
    /// [`KEEPING_UP_BYTES`] leaves it to a disk thread, which reads the same lines.
    #[test]
    fn only_a_pusher_keeping_up_reads_its_batch_on_its_own_thread() {
        let (_dir, node) = node_in_tempdir();
        let binlog = node.disk.binlog();
        let scope = Mark::default().scope();
        let start = binlog.end();
        let name = |i: u32| format!("M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe4{i:08}");
        store_file(&node, &name(0), b"small");
        binlog
            .append(&[Record::new(100, Op::Create, name(0))])
            .expect("append");
        let (records, next, loaded) = read_batch_cached(&node, start, scope)
            .expect("keeping up: read here")
            .expect("read");
        assert_eq!((records.len(), next), (1, binlog.end()));
        assert_eq!(loaded[&name(0)], b"small");
        // Cached files and lines: without the bound this batch would be read here.
        let behind: Vec<Record> = (1..=200)
            .map(|i| {
                store_file(&node, &name(i), b"small");
                Record::new(100, Op::Create, name(i))
            })
            .collect();
        binlog.append(&behind).expect("append");
        assert!(binlog.lag_bytes(next) > KEEPING_UP_BYTES);
        assert!(
            read_batch_cached(&node, next, scope).is_none(),
            "behind: a disk step reads the batch"
        );
        let (records, _, _) = read_batch(&node, next, scope).expect("read");
        assert_eq!(records, behind);
    }

    #[test]
    fn small_files_are_read_with_their_batch_and_the_rest_when_pushed() {
        let (_dir, node) = node_in_tempdir();
        let write = |name: &str, len: usize| store_file(&node, name, &vec![7u8; len]);
        let small = "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768601";
        let large = "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768602";
        let received = "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768603";
        let gone = "M00/00/00/fwAASWsITg6EUbzUAAAAAF2Ghe45768604";
        write(small, 3000);
        write(large, LOAD_AT_MOST as usize + 1);
        write(received, 10);
        let records = [
            Record::new(100, Op::Create, small),
            Record::new(100, Op::Update, small),
            Record::new(100, Op::Create, large),
            Record::new(100, Op::Create, received).replica(),
            Record::new(100, Op::Create, gone),
            Record::new(100, Op::Delete, small),
        ];
        // From the disk, and from the kernel's caches (the files were just written).
        for cache_only in [false, true] {
            let loaded = load_small_files(&node, &records, Mark::default().scope(), cache_only)
                .expect("all of it at hand");
            assert_eq!(loaded.len(), 1, "{:?}", loaded.keys());
            assert_eq!(loaded[small], vec![7u8; 3000]);
        }
    }

    #[test]
    fn marks_past_the_binlogs_end_go_back_to_it_when_the_storage_starts() {
        let (dir, first) = node_in_tempdir();
        first
            .disk
            .binlog()
            .append(&[Record::new(1, Op::Create, "M00/00/00/a")])
            .expect("append");
        drop(first);
        // Started again on the same directory: the binlog ends where it did.
        let config = crate::config::StorageConfig {
            base_path: dir.path().to_path_buf(),
            subdir_count_per_path: 1,
            ..Default::default()
        };
        let node = StorageNode::new(config, 23000, None).expect("node");
        let end = node.disk.binlog().opened_at();
        assert_eq!((end.index, end.offset), (0, 16));
        let marks = node.disk.binlog().dir().to_owned();
        let at = |index, offset| Mark {
            position: Position { index, offset },
            sync_rows: 7,
            ..Default::default()
        };
        // Saved before a crash took the binlog's last lines; within it; in a file the
        // crash lost; the address-named form.
        at(0, 116).save(&marks.join("s1.mark")).expect("save");
        at(0, 10).save(&marks.join("s2.mark")).expect("save");
        at(1, 0)
            .save(&marks.join("10.0.0.3_23000.mark"))
            .expect("save");
        std::fs::write(marks.join("binlog.000.bak"), "not a mark").expect("other");
        fit_marks_to_binlog(&node).expect("fit");
        let load = |name: &str| Mark::load(&marks.join(name)).expect("mark");
        assert_eq!(load("s1.mark").position, end);
        assert_eq!(load("s1.mark").sync_rows, 7, "the rest of the mark stays");
        assert_eq!(load("s2.mark").position, at(0, 10).position);
        assert_eq!(load("10.0.0.3_23000.mark").position, end);
    }

    #[test]
    fn which_records_are_pushed() {
        let own = Record::new(100, Op::Create, "M00/00/00/a");
        let received = own.clone().replica();
        let appended = Record::new(100, Op::Append, "M00/00/00/a")
            .with_extra("0 1")
            .replica();
        let plain = Mark::default();
        assert!(wanted(&own, &plain));
        assert!(!wanted(&received, &plain), "replicas are not re-pushed");
        let copying = Mark {
            need_sync_old: true,
            until: 200,
            ..Default::default()
        };
        assert!(
            wanted(&received, &copying),
            "a full copy includes what we received"
        );
        assert!(!wanted(&appended, &copying), "a/m/t are never re-pushed");
        let other_source = Mark {
            need_sync_old: false,
            until: 150,
            ..Default::default()
        };
        assert!(
            !wanted(&own, &other_source),
            "older records are the source's job"
        );
        assert!(wanted(
            &Record::new(160, Op::Create, "M00/00/00/b"),
            &other_source
        ));
    }
}
