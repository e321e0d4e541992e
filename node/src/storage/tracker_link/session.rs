//! The report sessions: one task per tracker address (a name that resolves to several
//! addresses is several trackers), each joining and then sending heartbeats and disk usage
//! until the storage stops.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, Conn};
use crate::config::ReservedSpace;
use crate::proto::cluster::{ChangelogLine, GroupAndHost, IpChangedReport};
use crate::proto::query::GroupRequest;
use crate::proto::report::{
    BeatRequest, DiskUsage, HeartbeatReply, JoinRequest, JoinResponse, Parameters,
    SyncBacklogListing, SyncBacklogReport, SyncProblem, SyncProblemReport, SyncReport, SyncSource,
};
use crate::proto::{Command, Status, StorageStatus, VERSION_TEXT};
use crate::storage::StorageNode;
use crate::storage::trunk_space::TrunkParams;
use crate::storage::trunking::{TrunkFigures, TrunkServer, server_from_brief};

/// Starts and supervises one reporter per resolved tracker address.
pub async fn run(node: Arc<StorageNode>, bind_ip: Option<Ipv4Addr>, stop: CancellationToken) {
    let mut running: BTreeMap<SocketAddr, (CancellationToken, JoinHandle<()>)> = BTreeMap::new();
    loop {
        let wanted = super::resolve_all(&node).await;
        running.retain(|addr, (token, _)| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!(tracker = %addr, "tracker address gone; stopping its reporter");
                token.cancel();
            }
            keep
        });
        for addr in &wanted {
            if !running.contains_key(addr) {
                let token = stop.child_token();
                let all: Vec<String> = wanted.iter().map(SocketAddr::to_string).collect();
                let task = tokio::spawn(report_loop(
                    node.clone(),
                    *addr,
                    all,
                    bind_ip,
                    token.clone(),
                ));
                running.insert(*addr, (token, task));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(node.config.timers.tracker_resolve()) => {}
        }
    }
    for (_, (token, task)) in running {
        token.cancel();
        let _ = task.await;
    }
}

async fn report_loop(
    node: Arc<StorageNode>,
    tracker: SocketAddr,
    all_trackers: Vec<String>,
    bind_ip: Option<Ipv4Addr>,
    stop: CancellationToken,
) {
    // The session waits for the last pushes first (up to `last_push_wait`), then sends its
    // last backlog report and beat: cut short before, a retirement would judge this
    // storage by an older report and an older last change.
    let (first, leave_within) = (
        node.config.timers.tracker_retry(),
        node.config.timers.last_push_wait() + node.config.timers.tracker_leave(),
    );
    let mut backoff = crate::retry::Backoff::new(first, first * 5);
    loop {
        let started = std::time::Instant::now();
        let session = report_session(&node, tracker, &all_trackers, bind_ip, &stop);
        tokio::pin!(session);
        let session = tokio::select! {
            r = &mut session => r,
            // The session takes its leave itself (a last beat with the final counters):
            // it gets a moment for that, no more.
            _ = stop.cancelled() => match tokio::time::timeout(leave_within, &mut session).await {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        if let Err(e) = session {
            tracing::warn!(%tracker, error = %e, "tracker session failed; retrying");
        }
        node.trackers.forget(tracker);
        // A session that ran a while worked: the next failure starts the waits over.
        if started.elapsed() > first * 5 {
            backoff.reset();
        }
        if !backoff.wait(&stop).await {
            break;
        }
    }
}

/// Local record of the initial full copy, in FastDFS's `.data_init_flag` format.
fn init_flag_path(node: &StorageNode) -> PathBuf {
    init_flag_path_in(&node.config.base_path)
}

pub(in crate::storage) fn init_flag_path_in(base_path: &std::path::Path) -> PathBuf {
    base_path.join("data").join(".data_init_flag")
}

fn sync_old_done(node: &StorageNode) -> bool {
    crate::storage::recovery::sync_old_done(&node.config.base_path)
}

/// The full-sync source recorded in `.data_init_flag`, when there is one.
fn recorded_source(node: &StorageNode) -> Option<SyncSource> {
    let text = std::fs::read_to_string(init_flag_path(node)).ok()?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let src_id = value("sync_src_server").filter(|s| !s.is_empty())?;
    let until = value("sync_until_timestamp")?.parse().ok()?;
    Some(SyncSource { src_id, until })
}

fn record_sync_old_done(node: &StorageNode, src: &str, until: u64) -> std::io::Result<()> {
    update_init_flag(
        &node.config.base_path,
        &[
            ("storage_join_time", node.started_at.to_string()),
            ("sync_old_done", "1".into()),
            ("sync_src_server", src.into()),
            ("sync_until_timestamp", until.to_string()),
        ],
    )
}

/// A value of `.data_init_flag`.
fn init_flag_value(base_path: &std::path::Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(init_flag_path_in(base_path)).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// Rewrites `.data_init_flag` with `updates` set and its other lines kept. One report task
/// per tracker may get here at once: the read and the write are one step.
fn update_init_flag(
    base_path: &std::path::Path,
    updates: &[(&str, String)],
) -> std::io::Result<()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let path = init_flag_path_in(base_path);
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut lines: Vec<(String, String)> = old
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    for (key, value) in updates {
        match lines.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value.clone(),
            None => lines.push(((*key).to_owned(), value.clone())),
        }
    }
    let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    crate::fsutil::write_atomically(&path, text.as_bytes())
}

/// With IP identities, a storage whose address changed since the trackers last saw it
/// asks each tracker to move its record to the new address (REPORT_IP_CHANGED, 78) before
/// it joins, as FastDFS does; otherwise it would join as a new, empty member. The address
/// is kept as FastDFS keeps it (`last_ip_addr` in `.data_init_flag`) and moves on once every
/// tracker took the move. A tracker that still holds the old address alive (EBUSY) is
/// asked again at the next attempt.
async fn report_own_move(
    node: &StorageNode,
    conn: &mut Conn,
    tracker: SocketAddr,
    all_trackers: &[String],
    own_ip: &str,
) -> Result<(), ClientError> {
    if own_ip.is_empty() {
        return Ok(());
    }
    let base = node.config.base_path.clone();
    // The flag file is read and written on the disk threads.
    let keep = async |ip: &str| {
        let (dir, ip) = (base.clone(), ip.to_owned());
        crate::disk::run(move || update_init_flag(&dir, &[("last_ip_addr", ip)]))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| ClientError::LocalFile {
                path: init_flag_path_in(&base).display().to_string(),
                source,
            })
    };
    let dir = base.clone();
    let recorded = crate::disk::run(move || init_flag_value(&dir, "last_ip_addr"))
        .await
        .ok()
        .flatten();
    let old = match recorded.filter(|ip| !ip.is_empty()) {
        None => return keep(own_ip).await,
        Some(old) if old == own_ip => return Ok(()),
        Some(old) => old,
    };
    let body = IpChangedReport {
        group: node.config.group_name.clone(),
        old_ip: old.clone(),
        new_ip: own_ip.to_owned(),
    }
    .encode();
    let (status, _) = conn
        .call(Command::StorageReportIpChanged, &body, 64)
        .await?;
    match status {
        // Moved now, moved before, or never known there under the old address.
        Status::Ok | Status::AlreadyDone | Status::NotFound => {
            tracing::info!(%tracker, from = %old, to = %own_ip, %status, "tracker took our new address");
            if node.trackers.took_move(tracker, all_trackers) {
                keep(own_ip).await?;
            }
            Ok(())
        }
        Status::Busy => Err(ClientError::Status {
            op: "report our new address",
            target: tracker.to_string(),
            status,
        }),
        _ => {
            tracing::warn!(%tracker, from = %old, to = %own_ip, %status, "tracker refused our new address");
            Ok(())
        }
    }
}

/// Reads what the tracker's storage changelog (77) holds for us and follows it: sync marks
/// of deleted peers go, those of peers that moved are renamed, and so is our record of
/// the full-sync source.
async fn follow_changelog(node: &StorageNode, conn: &mut Conn) -> Result<(), ClientError> {
    let (status, body) = conn
        .call(Command::StorageChangelogReq, &[], 1024 * 1024)
        .await?;
    if status != Status::Ok || body.is_empty() {
        return Ok(());
    }
    let lines: Vec<ChangelogLine> = ChangelogLine::parse_all(&body)
        .into_iter()
        .filter(|l| l.group == node.config.group_name)
        .collect();
    let moved: Vec<String> = lines
        .iter()
        .filter(|l| l.status == StorageStatus::IpChanged as u8 && !l.new_id.is_empty())
        .map(|l| l.id.clone())
        .collect();
    let dir = node.disk.binlog().dir().to_owned();
    let base = node.config.base_path.clone();
    let group = node.config.group_name.clone();
    let followed = crate::disk::run(move || apply_changelog(&base, &dir, &group, &lines))
        .await
        .map_err(|_| std::io::Error::other("the disk threads are gone"))
        .and_then(|r| r);
    match followed {
        Err(e) => tracing::warn!(error = %e, "storage changelog not followed"),
        // A peer that moved is pushed to under its new name once the members list names
        // it; a session under the old name, started before that list came, would find no
        // mark and copy everything anew to an address nobody serves.
        Ok(()) => {
            node.replication.drop_peers(&moved);
        }
    }
    Ok(())
}

/// Follows changelog lines on disk: the sync marks in `binlog_dir`, and the full-sync source
/// in `.data_init_flag` (renamed when it moved, cleared when it was deleted), line by line.
fn apply_changelog(
    base: &std::path::Path,
    binlog_dir: &std::path::Path,
    group: &str,
    lines: &[ChangelogLine],
) -> std::io::Result<()> {
    crate::storage::sync::follow_changelog(binlog_dir, group, lines)?;
    let mut source = init_flag_value(base, "sync_src_server").unwrap_or_default();
    for l in lines {
        if source.is_empty() || l.id != source {
            continue;
        }
        source = if l.status == StorageStatus::IpChanged as u8 {
            l.new_id.clone()
        } else {
            String::new()
        };
        update_init_flag(base, &[("sync_src_server", source.clone())])?;
    }
    Ok(())
}

fn set_view(node: &StorageNode, tracker: SocketAddr, status: u8) {
    if let Some(s) = StorageStatus::from_byte(status) {
        node.trackers.set_status(tracker, s);
    }
}

/// The status `tracker` should take for us, when it still holds us new or waiting for a full
/// copy that another tracker already saw finish (OFFLINE or later there).
fn status_to_adopt(node: &StorageNode, tracker: SocketAddr) -> Option<StorageStatus> {
    let view = node.trackers.statuses();
    let here = *view.get(&tracker)?;
    if !matches!(
        here,
        StorageStatus::Init | StorageStatus::WaitSync | StorageStatus::Syncing
    ) {
        return None;
    }
    view.iter()
        .filter(|(t, s)| **t != tracker && s.is_available())
        .map(|(_, s)| *s)
        .max()
}

async fn call_ok(conn: &mut Conn, cmd: Command, body: &[u8]) -> Result<Vec<u8>, ClientError> {
    let (status, reply) = conn.call(cmd, body, 1 << 20).await?;
    if status != Status::Ok {
        return Err(ClientError::Status {
            op: "tracker report",
            target: format!("{cmd:?}"),
            status,
        });
    }
    Ok(reply)
}

/// Asks the tracker how storages are identified (75) and, with storage ids, which
/// id is ours (`server_id`, else GET_SERVER_ID 70), as a C storage does at start.
/// Files are then named after that id when the tracker says `id_type_in_filename=id`.
pub(in crate::storage) async fn learn_identity(
    node: &StorageNode,
    conn: &mut Conn,
    tracker: SocketAddr,
    own_ip: &str,
) -> Result<String, ClientError> {
    let proto = |source| ClientError::Proto {
        addr: tracker.to_string(),
        source,
    };
    let reply = call_ok(conn, Command::StorageParameterReq, &[]).await?;
    let params = Parameters::decode(&reply).map_err(proto)?;
    if params.get("use_storage_id") != Some("1") {
        node.identity.set_server_id(None);
        node.identity.set_storage_id(None);
        return Ok(String::new());
    }
    let id = if node.config.server_id.is_empty() {
        let ip = own_ip.to_owned();
        let req = GroupAndHost {
            group: node.config.group_name.clone(),
            ip,
            port: node.port,
        };
        let reply = call_ok(conn, Command::StorageGetServerId, &req.encode()).await?;
        crate::proto::fields::fixed_text(&reply)
    } else {
        node.config.server_id.clone()
    };
    let by_id = params.get("id_type_in_filename") == Some("id");
    node.identity
        .set_server_id(by_id.then(|| id.parse::<u32>().ok()).flatten());
    node.identity.set_storage_id(Some(id.clone()));
    tracing::info!(%tracker, storage_id = %id, names_by_id = by_id, "storage id learned");
    Ok(id)
}

/// Applies a heartbeat reply: our own status as the tracker lists it.
/// Takes in a heartbeat-style reply. One that brings a new member list is preceded by the
/// changelog: a peer that moved to another address then has its sync mark renamed before
/// its new address gets a push task, which goes on from that mark instead of from the
/// binlog's start.
async fn take_reply(
    node: &StorageNode,
    conn: &mut Conn,
    tracker: SocketAddr,
    own_ip: &str,
    reply: &[u8],
) -> Result<(), ClientError> {
    match HeartbeatReply::decode(reply) {
        Ok(r) => {
            if r.members.is_some() {
                follow_changelog(node, conn).await?;
            }
            apply_heartbeat(node, tracker, own_ip, r);
        }
        Err(e) => tracing::warn!(%tracker, error = %e, "unreadable heartbeat reply"),
    }
    Ok(())
}

fn apply_heartbeat(node: &StorageNode, tracker: SocketAddr, own_ip: &str, r: HeartbeatReply) {
    if let Some(brief) = &r.trunk {
        node.trunk
            .set_server(server_from_brief(brief, own_ip, node.port));
    }
    let Some(members) = r.members else { return };
    if let Some(me) = members
        .iter()
        .find(|m| m.ip == own_ip && m.port == u32::from(node.port))
    {
        set_view(node, tracker, me.status);
    }
    let peers = crate::storage::sync::peers_from_members(&members, own_ip, node.port);
    node.replication.set_peers(peers);
}

/// What this session last told its tracker about our trunk space.
#[derive(Debug, Default)]
struct TrunkReported {
    free_mb: Option<u64>,
}

/// While we are the group's trunk server: learns the highest trunk file id the leader
/// knows (72) until one tells us (followers refuse), reserves the next trunk file ids with
/// it (73) before they run out, and reports our free trunk space (74) when it changes.
async fn report_trunk(
    node: &StorageNode,
    conn: &mut Conn,
    tracker: SocketAddr,
    state: &mut TrunkReported,
) -> Result<(), ClientError> {
    let figures = node
        .trunk
        .own_figures()
        .filter(|_| node.trunk.server() == Some(TrunkServer::Me));
    let m = &node.metrics;
    m.trunk_free_bytes
        .set(figures.map_or(0, |f| f.free_bytes as i64));
    m.trunk_free_blocks
        .set(figures.map_or(0, |f| f.free_blocks as i64));
    m.trunk_file_id
        .set(figures.map_or(0, |f| i64::from(f.file_id)));
    if node.trunk.server() != Some(TrunkServer::Me) {
        *state = TrunkReported::default();
        return Ok(());
    }
    if !node.trunk.floor_known() {
        match conn.call(Command::StorageFetchTrunkFid, &[], 64).await? {
            (Status::Ok, body) => match <[u8; 4]>::try_from(body.as_slice()) {
                Ok(b) => node.trunk.raise_floor(u32::from_be_bytes(b)),
                Err(_) => tracing::warn!(%tracker, "malformed trunk file id reply"),
            },
            (status, _) => tracing::debug!(%tracker, %status, "trunk file id not known here"),
        }
    }
    // New trunk file ids are reserved with the leader before any is made.
    if let Some(wanted) = node
        .trunk
        .reservation_wanted()
        .filter(|_| node.trunk.floor_known())
    {
        match conn
            .call(Command::StorageReportTrunkFid, &wanted.to_be_bytes(), 64)
            .await?
        {
            (Status::Ok, _) => node.trunk.reserve(wanted),
            (status, _) => tracing::debug!(%tracker, %status, "trunk file ids not reserved here"),
        }
    }
    let Some(TrunkFigures { free_bytes, .. }) = figures else {
        return Ok(());
    };
    let free_mb = free_bytes / (1024 * 1024);
    if state.free_mb != Some(free_mb) {
        state.free_mb = Some(free_mb);
        let (status, _) = conn
            .call(Command::StorageReportTrunkFree, &free_mb.to_be_bytes(), 64)
            .await?;
        if status != Status::Ok {
            tracing::debug!(%tracker, %status, "free trunk space not taken");
        }
    }
    Ok(())
}

/// Tells the tracker how much of our binlog each peer has yet to receive (240). Returns
/// whether the tracker takes these reports.
async fn report_backlog(
    node: &Arc<StorageNode>,
    conn: &mut Conn,
    tracker: SocketAddr,
) -> Result<bool, ClientError> {
    let reading = node.clone();
    let entries = crate::disk::run(move || crate::storage::sync::backlog(&reading))
        .await
        .unwrap_or_default();
    let body = SyncBacklogReport { entries }.encode();
    send_own_report(conn, tracker, Command::StorageReportSyncBacklog, &body).await
}

/// Asks the tracker what the other members still have to push here (241), for readiness:
/// the age of the oldest such change, 0 when none waits. Returns the members that reported
/// there but are not in our member list: they joined after our last beat.
async fn note_behind(
    node: &Arc<StorageNode>,
    conn: &mut Conn,
    tracker: SocketAddr,
) -> Result<Vec<String>, ClientError> {
    let ask = GroupRequest {
        group: node.config.group_name.clone(),
    }
    .encode();
    let own = node.own_id();
    let mut strangers = Vec::new();
    let age = match conn
        .call(Command::ServerListSyncBacklog, &ask, 1 << 20)
        .await?
    {
        (Status::Ok, body) => SyncBacklogListing::decode(&body).ok().map(|listing| {
            let known = node.replication.peers();
            strangers = listing
                .rows
                .iter()
                .map(|r| r.source_id.clone())
                .filter(|id| *id != own && !known.iter().any(|p| p.id == *id))
                .collect();
            // A stopped member's last report stays listed (for its retirement); what it
            // could not push does not make us unready.
            let running: Vec<String> = node
                .replication
                .peers()
                .into_iter()
                .filter(|p| p.status == StorageStatus::Active)
                .map(|p| p.id.clone())
                .collect();
            listing
                .rows
                .iter()
                .filter(|r| running.contains(&r.source_id))
                .filter(|r| r.backlog.peer_id == own && r.backlog.bytes > 0)
                .map(|r| r.backlog.seconds)
                .max()
                .unwrap_or(0)
        }),
        _ => None,
    };
    node.trackers.set_behind(tracker, age);
    Ok(strangers)
}

/// Asks `tracker` for our own status (71) and keeps it as that tracker's view of us.
async fn ask_own_status(
    node: &StorageNode,
    conn: &mut Conn,
    tracker: SocketAddr,
    own_ip: &str,
) -> Option<StorageStatus> {
    let ip = own_ip.parse::<std::net::IpAddr>().ok()?;
    let ask = GroupAndHost {
        group: node.config.group_name.clone(),
        ip: ip.to_string(),
        port: node.port,
    };
    let (status, body) = conn
        .call(Command::StorageGetStatus, &ask.encode(), 1024)
        .await
        .ok()?;
    let held = super::calls::status_in_reply(status, &body)?;
    node.trackers.set_status(tracker, held);
    Some(held)
}

/// Whether a backlog tick should bring the next beat forward: a member reported to the
/// tracker that our member list lacks (it joined after our last beat, and may wait for us
/// as its sync source), or the tracker holds us settled but not yet ACTIVE (our full copy
/// ended, and our next report makes us ACTIVE). Each stranger counts once per session.
fn beat_sooner(
    strangers: Vec<String>,
    heard_of: &mut std::collections::HashSet<String>,
    own_status: Option<StorageStatus>,
) -> bool {
    // Every stranger is recorded, not only the first.
    let mut new_member = false;
    for id in strangers {
        new_member |= heard_of.insert(id);
    }
    let settled = matches!(
        own_status,
        Some(StorageStatus::Offline | StorageStatus::Online)
    );
    new_member || settled
}

/// Sends one of this project's own reports (240, 242). Returns whether the tracker takes
/// them: a FastDFS tracker answers EINVAL, and is not sent them again.
async fn send_own_report(
    conn: &mut Conn,
    tracker: SocketAddr,
    cmd: Command,
    body: &[u8],
) -> Result<bool, ClientError> {
    match conn.call(cmd, body, 1024).await? {
        (Status::Ok, _) => Ok(true),
        (Status::InvalidArgument, _) => {
            tracing::info!(%tracker, ?cmd, "tracker takes no such reports; the figures stay in /metrics");
            Ok(false)
        }
        (status, _) => {
            tracing::warn!(%tracker, ?cmd, %status, "report refused");
            Ok(true)
        }
    }
}

/// Tells the tracker whose pushes we cannot apply, and why (242). Returns whether the
/// tracker takes these reports.
async fn report_problems(
    node: &Arc<StorageNode>,
    conn: &mut Conn,
    tracker: SocketAddr,
) -> Result<bool, ClientError> {
    let entries = node
        .replication
        .problems()
        .into_iter()
        .map(|(source_id, status, since)| SyncProblem {
            source_id,
            status: u8::from(status),
            since,
        })
        .collect();
    let body = SyncProblemReport { entries }.encode();
    send_own_report(conn, tracker, Command::StorageReportSyncProblems, &body).await
}

/// BEAT (83) with this storage's counters; the tracker's reply.
async fn beat(node: &StorageNode, conn: &mut Conn) -> Result<Vec<u8>, ClientError> {
    let beat = BeatRequest {
        stats: Some(node.stats()),
    };
    call_ok(conn, Command::StorageBeat, &beat.encode()).await
}

async fn report_session(
    node: &Arc<StorageNode>,
    tracker: SocketAddr,
    all_trackers: &[String],
    bind_ip: Option<Ipv4Addr>,
    stop: &CancellationToken,
) -> Result<(), ClientError> {
    let cfg = &node.config;
    let timeout = cfg.network_timeout();
    let mut conn = Conn::connect(
        tracker,
        Duration::from_secs(cfg.connect_timeout.max(1)),
        timeout,
        bind_ip.map(std::net::IpAddr::V4),
    )
    .await?;
    let local_ip = conn.local_addr().map(|a| a.ip());
    if let Some(ip) = local_ip {
        node.identity.learn_source_ip(ip);
    }
    let own_ip = local_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let storage_id = learn_identity(node, &mut conn, tracker, &own_ip).await?;
    // A new storage's sessions start together: each would ask its own tracker for a sync
    // source, the trackers may choose differently, and the last answer would win here
    // while the peers follow the first. One asks; the others join with what it recorded.
    let first_join = if sync_old_done(node) {
        None
    } else {
        Some(node.tracker_sessions.first_join.lock().await)
    };
    let done = sync_old_done(node);
    // A member that was given a full-sync source says WAIT_SYNC until replication
    // has brought it up to date; it must not claim ACTIVE to a tracker that is new to it.
    let source = if done { recorded_source(node) } else { None };
    let join = JoinRequest {
        group: cfg.group_name.clone(),
        storage_port: u64::from(node.port),
        store_path_count: node.disk.store().path_count() as u64,
        subdir_count_per_path: u64::from(node.disk.store().subdir_count()),
        upload_priority: cfg.upload_priority,
        join_time: node.started_at,
        up_time: node.started_at,
        version: VERSION_TEXT.into(),
        init_flag: !done,
        status: if !done {
            StorageStatus::Init as i8
        } else if source.is_some() {
            StorageStatus::WaitSync as i8
        } else {
            StorageStatus::Active as i8
        },
        storage_id,
        current_tracker_ip: tracker.ip().to_string(),
        trackers: all_trackers.to_vec(),
    };
    // The tracker's placement rules apply to this storage's own path choice.
    let params = call_ok(&mut conn, Command::StorageParameterReq, &[]).await?;
    if let Ok(p) = Parameters::decode(&params) {
        let mut policy = node.disk.path_policy();
        if let Some(mode) = p.get("store_path").and_then(|v| v.parse().ok()) {
            policy.mode = mode;
        }
        if let Some(r) = p
            .get("reserved_storage_space")
            .and_then(|v| ReservedSpace::parse(v).ok())
        {
            policy.reserved = r;
        }
        node.disk.set_path_policy(policy);
        node.trunk.set_params(TrunkParams::from_parameters(&p));
        if !matches!(p.get("use_storage_id"), Some("1" | "true")) {
            report_own_move(node, &mut conn, tracker, all_trackers, &own_ip).await?;
        }
    }
    let reply = call_ok(&mut conn, Command::StorageJoin, &join.encode()).await?;
    let joined = JoinResponse::decode(&reply).map_err(|source| ClientError::Proto {
        addr: tracker.to_string(),
        source,
    })?;
    set_view(node, tracker, joined.status);
    tracing::info!(%tracker, status = joined.status, "joined tracker");
    let nothing_to_copy = done && source.is_none();
    if let Some(src) = source.filter(|_| joined.src_id.is_empty()) {
        // Tell this tracker the source the others gave us (SYNC_NOTIFY).
        if let Err(e) = call_ok(&mut conn, Command::StorageSyncNotify, &src.encode()).await {
            tracing::warn!(%tracker, error = %e, "sync source not accepted");
        }
    } else if nothing_to_copy && joined.status == StorageStatus::Init as u8 {
        // Another tracker already said there was nothing to copy (we were the group's first
        // member) while this one still holds us INIT: an empty SYNC_NOTIFY makes it ONLINE.
        let nothing = SyncSource::default();
        if let Err(e) = call_ok(&mut conn, Command::StorageSyncNotify, &nothing.encode()).await {
            tracing::warn!(%tracker, error = %e, "no-copy notice not accepted");
        }
    }
    if !done {
        let src = call_ok(&mut conn, Command::StorageSyncDestReq, &[]).await?;
        let (src_id, until) = if src.is_empty() {
            (String::new(), 0)
        } else {
            let s = SyncSource::decode(&src).map_err(|source| ClientError::Proto {
                addr: tracker.to_string(),
                source,
            })?;
            (s.src_id, s.until)
        };
        // Without group replication yet, a source can only be recorded, not used.
        record_sync_old_done(node, &src_id, until).map_err(|source| ClientError::LocalFile {
            path: init_flag_path(node).display().to_string(),
            source,
        })?;
    }
    drop(first_join);
    let mut beat_tick = tokio::time::interval(Duration::from_secs(cfg.heart_beat_interval.max(1)));
    let mut disk_tick = tokio::time::interval(Duration::from_secs(cfg.stat_report_interval.max(1)));
    let mut backlog_tick = tokio::time::interval(
        Duration::from_secs(cfg.heart_beat_interval.max(1)).min(cfg.timers.backlog_report()),
    );
    let mut last_sync_report: Vec<(String, u32)> = Vec::new();
    // Members that made a backlog tick bring a beat forward this session.
    let mut heard_of = std::collections::HashSet::new();
    let mut trunk_reported = TrunkReported::default();
    // FastDFS trackers do not know SYNC_BACKLOG_REPORT: after their EINVAL, stop sending it.
    let mut backlog_taken = true;
    let mut problems_taken = true;
    /// What woke the report loop.
    enum Event {
        Stop,
        Disk,
        Beat,
        Backlog,
        /// We are the trunk server and run short of reserved trunk file ids.
        Trunk,
        TrackerClosed,
        /// A short call of sync or recovery, made on this session's connection.
        Call(super::Call),
    }
    let mut inbox = node.tracker_sessions.open(tracker);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => Event::Stop,
            Some(call) = inbox.next() => Event::Call(call),
            _ = disk_tick.tick() => Event::Disk,
            _ = beat_tick.tick() => Event::Beat,
            _ = node.trunk.report_wanted() => Event::Trunk,
            _ = backlog_tick.tick(), if backlog_taken => Event::Backlog,
            // A tracker that goes away is noticed at once, not at the next beat.
            _ = conn.closed_by_peer() => Event::TrackerClosed,
        };
        match event {
            Event::Call(call) => match conn.call(call.cmd, &call.body, call.max_reply).await {
                Ok(answer) => {
                    let _ = call.answer.send(Some(answer));
                }
                Err(e) => {
                    let _ = call.answer.send(None);
                    return Err(e);
                }
            },
            Event::Stop => {
                // Pushes that still report (76) while this session waits for them use
                // connections of their own.
                inbox.close();
                // Once the last pushes are done (or given up), a last backlog report and a
                // last beat: the trackers keep this storage's final word on what its peers
                // lack, and its final counters (its last upload time above all), which a
                // retirement checks the others against.
                // (Within the drain bound: 7 s of the default 10.)
                let wait = node.config.timers.last_push_wait();
                let _ = tokio::time::timeout(wait, node.replication.pushes_ended()).await;
                if backlog_taken {
                    let _ = report_backlog(node, &mut conn, tracker).await;
                }
                if beat(node, &mut conn).await.is_ok() {
                    conn.quit().await;
                }
                return Ok(());
            }
            Event::Disk => {
                let usage = DiskUsage {
                    paths: node.disk.store().cached_usage(),
                };
                node.refresh_disk_metrics();
                let reply =
                    call_ok(&mut conn, Command::StorageReportDiskUsage, &usage.encode()).await?;
                take_reply(node, &mut conn, tracker, &own_ip, &reply).await?;
            }
            Event::Beat => {
                let reply = beat(node, &mut conn).await?;
                take_reply(node, &mut conn, tracker, &own_ip, &reply).await?;
                report_trunk(node, &mut conn, tracker, &mut trunk_reported).await?;
                // As FastDFS storages do after each beat (a follower tracker pushes no
                // member list, so a move it logged is read here).
                follow_changelog(node, &mut conn).await?;
                // Only the leader pushes member lists, so ask every tracker for our own
                // status (71): readiness needs each tracker's view.
                ask_own_status(node, &mut conn, tracker, &own_ip).await;
                if let Some(wanted) = status_to_adopt(node, tracker) {
                    // This tracker missed the full copy's end (it still held us INIT when the
                    // source reported it): ask it to take the others' view (CHANGE_STATUS).
                    tracing::info!(%tracker, status = wanted.name(), "asking tracker to adopt our status");
                    if let Err(e) =
                        call_ok(&mut conn, Command::StorageChangeStatus, &[wanted as u8]).await
                    {
                        // A refusal is the tracker's answer, not a broken session.
                        tracing::warn!(%tracker, error = %e, "status change not accepted");
                    }
                }
                // How far we are behind each source, for the tracker's download routing.
                let mut entries = vec![(node.own_id(), 0u32)];
                entries.extend(node.replication.received());
                if entries.len() > 1 && entries != last_sync_report {
                    let body = SyncReport {
                        entries: entries.clone(),
                    }
                    .encode();
                    let reply = call_ok(&mut conn, Command::StorageSyncReport, &body).await?;
                    take_reply(node, &mut conn, tracker, &own_ip, &reply).await?;
                    last_sync_report = entries;
                }
            }
            Event::Backlog => {
                backlog_taken = report_backlog(node, &mut conn, tracker).await?;
                if problems_taken {
                    problems_taken = report_problems(node, &mut conn, tracker).await?;
                }
                if backlog_taken {
                    let strangers = note_behind(node, &mut conn, tracker).await?;
                    // The tracker sends member lists only in beat replies (30 s apart by
                    // default): without this, a member joining a running group waits that
                    // long for its source to push, and as long again to turn ACTIVE.
                    let held = node.trackers.status_at(tracker);
                    let own = if held == Some(StorageStatus::Active) {
                        held
                    } else {
                        ask_own_status(node, &mut conn, tracker, &own_ip).await
                    };
                    if beat_sooner(strangers, &mut heard_of, own) {
                        beat_tick.reset_immediately();
                    }
                }
            }
            Event::Trunk => {
                report_trunk(node, &mut conn, tracker, &mut trunk_reported).await?;
            }
            Event::TrackerClosed => {
                return Err(ClientError::Io {
                    addr: tracker.to_string(),
                    source: std::io::ErrorKind::ConnectionAborted.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, status: StorageStatus, new_id: &str) -> ChangelogLine {
        ChangelogLine {
            time: 1,
            group: "group1".into(),
            id: id.into(),
            status: status as u8,
            new_id: new_id.into(),
        }
    }

    #[test]
    fn a_backlog_tick_brings_the_beat_forward_once_per_new_member_and_while_settled() {
        let mut heard = std::collections::HashSet::new();
        let active = Some(StorageStatus::Active);
        assert!(beat_sooner(vec!["10.0.0.9".into()], &mut heard, active));
        assert!(!beat_sooner(vec!["10.0.0.9".into()], &mut heard, active));
        assert!(beat_sooner(
            vec!["10.0.0.9".into(), "10.0.0.8".into()],
            &mut heard,
            active
        ));
        assert!(!beat_sooner(Vec::new(), &mut heard, active));
        assert!(!beat_sooner(Vec::new(), &mut heard, None));
        for waiting in [StorageStatus::WaitSync, StorageStatus::Syncing] {
            assert!(!beat_sooner(Vec::new(), &mut heard, Some(waiting)));
        }
        for settled in [StorageStatus::Offline, StorageStatus::Online] {
            assert!(beat_sooner(Vec::new(), &mut heard, Some(settled)));
        }
    }

    #[test]
    fn the_changelog_moves_and_clears_the_full_sync_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        let binlog = base.join("data").join("sync");
        std::fs::create_dir_all(&binlog).expect("dirs");
        update_init_flag(
            base,
            &[
                ("sync_old_done", "1".into()),
                ("sync_src_server", "127.0.0.4".into()),
            ],
        )
        .expect("flag");
        // The source moved twice, then another member was deleted: the record follows both
        // moves, and keeps the rest of the file.
        let moves = [
            line("127.0.0.4", StorageStatus::IpChanged, "127.0.0.6"),
            line("127.0.0.6", StorageStatus::IpChanged, "127.0.0.7"),
            line("127.0.0.9", StorageStatus::Deleted, ""),
        ];
        apply_changelog(base, &binlog, "group1", &moves).expect("followed");
        assert_eq!(
            init_flag_value(base, "sync_src_server").as_deref(),
            Some("127.0.0.7")
        );
        assert_eq!(init_flag_value(base, "sync_old_done").as_deref(), Some("1"));
        // Once deleted, it is no one's source any more.
        apply_changelog(
            base,
            &binlog,
            "group1",
            &[line("127.0.0.7", StorageStatus::Deleted, "")],
        )
        .expect("followed");
        assert_eq!(
            init_flag_value(base, "sync_src_server").as_deref(),
            Some("")
        );
    }
}
