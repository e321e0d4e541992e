//! The tracker role: keeps group membership from storage reports, answers
//! clients' placement, routing and monitor queries, elects a leader among its
//! peers, and saves its state so a restart answers at once.

mod bootstrap;
mod cmd;
pub mod election;
pub mod http;
pub mod persist;
pub mod registry;
pub mod storage_ids;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Compat, TrackerConfig, TrunkConfig};
use crate::proto::cluster::{TrackerStat, TrackerStatus};
use crate::proto::report::Parameters;
use crate::proto::{Command, Header, Status, VERSION_TEXT};
use crate::server::acl::AccessList;
use crate::server::{self, ConnError, Connection, Service};
use crate::unix_now;
use election::Relationship;
use persist::SavedState;
use registry::Registry;
use storage_ids::{StorageIds, StorageIdsError};

/// Seconds between `.tracker_status` updates (FastDFS: 300).
const STATUS_FILE_INTERVAL: u64 = 60;

/// Shared tracker state behind every connection.
#[derive(Debug)]
pub struct Tracker {
    registry: Mutex<Registry>,
    relationship: Mutex<Relationship>,
    config: TrackerConfig,
    /// Unix time this tracker started.
    pub started_at: u64,
    /// Seconds it was down before this start (from `.tracker_status`).
    restart_interval: u64,
    /// Request counters exported on `/metrics`.
    pub metrics: http::TrackerMetrics,
    /// `allow_hosts`: who may connect, on every port.
    acl: AccessList,
    /// Whether the question of taking another tracker's state is settled (`bootstrap`).
    bootstrapped: tokio::sync::Mutex<bool>,
}

/// What one connection remembers between requests.
#[derive(Debug, Default)]
struct Session {
    /// (group, storage id, session number) once STORAGE_JOIN succeeded.
    joined: Option<(String, String, u64)>,
    leader_epoch_sent: Option<u64>,
    members_sent: Option<u64>,
    /// The trunk server change last sent; 0, as a group starts, sends nothing until the
    /// first choice (a V6 tracker without trunk storage never sets the flag).
    trunk_sent: u64,
    /// A follower tracker joined this leader on this connection (58).
    joined_leader: bool,
    /// The follower's serving address.
    joined_as: Option<SocketAddr>,
    /// The system files a FastDFS tracker fetches on this connection, as they stood at
    /// GET_SYS_FILES_START (61).
    sys_files: Option<[Vec<u8>; registry::sys_files::SYS_FILE_COUNT]>,
}

/// What to do with the connection after a request.
enum Next {
    Continue,
    Close,
}

/// Why a tracker could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("invalid tracker config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("storage ids: {0}")]
    StorageIds(#[from] StorageIdsError),
    #[error("tracker state: {0}")]
    State(#[from] persist::PersistError),
    #[error("storage changelog: {0}")]
    Changelog(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl From<TrackerError> for std::io::Error {
    fn from(e: TrackerError) -> Self {
        let kind = match &e {
            TrackerError::Bind { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

fn round_300(secs: u64) -> u64 {
    secs / 300 * 300
}

impl Tracker {
    /// A tracker without saved state or storage ids (for tests and tools).
    pub fn new(config: TrackerConfig) -> Self {
        Self::with_registry(Registry::new(config.clone()), config, 0)
    }

    fn with_registry(registry: Registry, config: TrackerConfig, restart_interval: u64) -> Self {
        Tracker {
            registry: Mutex::new(registry),
            relationship: Mutex::new(Relationship::default()),
            started_at: unix_now(),
            restart_interval,
            metrics: http::TrackerMetrics::default(),
            // `validate` refused a bad list before any tracker is made; none allows all.
            acl: AccessList::parse(&config.allow_hosts).unwrap_or_default(),
            bootstrapped: tokio::sync::Mutex::new(false),
            config,
        }
    }

    /// Re-reads `storage_ids.conf` and takes it when it changed: Kubernetes rewrites a
    /// mounted ConfigMap in place when a group grows, and every lookup (a new storage's
    /// id, its join, 69, 109) must see the new file without a tracker restart. A file that
    /// does not parse is not taken. Blocking; run once a second.
    fn reload_storage_ids(&self) {
        if !self.config.use_storage_id {
            return;
        }
        let ids = match StorageIds::load(&self.config.storage_ids_filename) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "storage ids not reloaded");
                return;
            }
        };
        // Names are resolved here, off the registry lock: a load balancer's address may
        // appear or change while the file stays the same.
        let pairs = ids.resolve_pairs();
        let mut reg = self.registry();
        if reg.set_address_pairs(pairs) {
            tracing::info!("storage address pairs (inner, outer) changed");
        }
        if *reg.storage_ids() != ids {
            tracing::info!(
                entries = ids.entries.len(),
                "storage_ids.conf changed; reloaded"
            );
            reg.set_storage_ids(ids);
        }
    }

    /// Loads storage ids and saved state as configured.
    pub fn load(config: TrackerConfig) -> Result<Self, TrackerError> {
        config.validate()?;
        let ids = if config.use_storage_id {
            StorageIds::load(&config.storage_ids_filename)?
        } else {
            StorageIds::default()
        };
        let pairs = ids.resolve_pairs();
        let mut reg = Registry::with_storage_ids(config.clone(), ids);
        reg.set_address_pairs(pairs);
        let now = unix_now();
        reg.open_changelog(&config.base_path)
            .map_err(TrackerError::Changelog)?;
        if let Some(saved) = persist::load(&persist::state_path(&config.base_path))? {
            saved.restore_into(&mut reg, now);
            reg.fit_changelog_offsets();
            tracing::info!(groups = reg.groups().len(), "tracker state loaded");
        }
        let last_seen = std::fs::read_to_string(status_file(&config))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("last_check_time="))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
        let restart_interval = last_seen.map(|t| now.saturating_sub(t)).unwrap_or(0);
        Ok(Self::with_registry(reg, config, restart_interval))
    }

    /// The registry, recovering from a poisoned lock (state stays consistent per call).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leader election state.
    pub fn relationship(&self) -> MutexGuard<'_, Relationship> {
        self.relationship.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    pub fn is_leader(&self) -> bool {
        self.relationship().is_leader()
    }

    /// The leader's address, when one is known.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.relationship().leader
    }

    /// This tracker's answer to TRACKER_GET_STATUS (64).
    pub fn status(&self, now: u64) -> TrackerStatus {
        TrackerStatus {
            is_leader: self.is_leader(),
            running_time: round_300(now.saturating_sub(self.started_at)),
            restart_interval: round_300(self.restart_interval),
        }
    }

    /// Every tracker this one knows, itself first (96 records).
    pub fn tracker_stats(&self, now: u64) -> Vec<TrackerStat> {
        let rel = self.relationship();
        let live = 3 * self.config.leader_ping_interval_ms.div_ceil(1000).max(1);
        let mut out = Vec::new();
        if let Some(me) = rel.me {
            out.push(TrackerStat {
                host: me.to_string(),
                is_leader: rel.leader == Some(me),
                is_active: true,
                connections: [0; 3],
                version: VERSION_TEXT.into(),
                up_time: self.started_at,
                last_heartbeat: 0,
            });
        }
        for (addr, p) in &rel.peers {
            out.push(TrackerStat {
                host: addr.to_string(),
                is_leader: rel.leader == Some(*addr),
                is_active: now.saturating_sub(p.last_heartbeat) <= live,
                connections: p.connections,
                version: p.version.clone(),
                up_time: p.up_time,
                last_heartbeat: p.last_heartbeat,
            });
        }
        out
    }

    /// The trunk settings as storages are told them (FastDFS's adjustments applied).
    fn trunk_config(&self) -> TrunkConfig {
        self.config.trunk.normalized().unwrap_or(self.config.trunk)
    }

    fn parameters(&self, compat: &Compat) -> Parameters {
        let c = &self.config;
        let t = self.trunk_config();
        let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let b = |v: bool| if v { "1" } else { "0" };
        // The key order of a V6.16.1 tracker's reply.
        Parameters {
            entries: vec![
                kv("use_storage_id", b(c.use_storage_id)),
                kv(
                    "id_type_in_filename",
                    if c.use_storage_id {
                        c.id_type_in_filename.as_str()
                    } else {
                        "ip"
                    },
                ),
                kv("trust_storage_server_id", b(c.trust_storage_server_id)),
                kv(
                    "response_ip_addr_size",
                    &compat.ip_width.full_len().to_string(),
                ),
                kv("storage_ip_changed_auto_adjust", "1"),
                kv(
                    "storage_sync_file_max_delay",
                    &c.storage_sync_file_max_delay.to_string(),
                ),
                kv("store_path", &c.store_path.to_string()),
                kv(
                    "reserved_storage_space",
                    &c.reserved_storage_space.to_fastdfs_text(),
                ),
                kv("use_trunk_file", b(t.use_trunk_file)),
                kv("slot_min_size", &t.slot_min_size.to_string()),
                kv("slot_max_size", &t.slot_max_size.to_string()),
                kv(
                    "trunk_alloc_alignment_size",
                    &t.trunk_alloc_alignment_size.to_string(),
                ),
                kv("trunk_file_size", &t.trunk_file_size.to_string()),
                kv("trunk_create_file_advance", b(t.trunk_create_file_advance)),
                kv(
                    "trunk_create_file_time_base",
                    &t.trunk_create_file_time_base.to_string(),
                ),
                kv(
                    "trunk_create_file_interval",
                    &t.trunk_create_file_interval.to_string(),
                ),
                kv(
                    "trunk_create_file_space_threshold",
                    &t.trunk_create_file_space_threshold.to_string(),
                ),
                kv(
                    "trunk_init_check_occupying",
                    b(t.trunk_init_check_occupying),
                ),
                kv("trunk_init_reload_from_binlog", "0"),
                kv("trunk_free_space_merge", "1"),
                kv("delete_unused_trunk_files", "0"),
                kv(
                    "trunk_compress_binlog_min_interval",
                    &t.trunk_compress_binlog_min_interval.to_string(),
                ),
                kv(
                    "trunk_compress_binlog_interval",
                    &t.trunk_compress_binlog_interval.to_string(),
                ),
                kv(
                    "trunk_compress_binlog_time_base",
                    &t.trunk_compress_binlog_time_base.to_string(),
                ),
                kv("trunk_binlog_max_backups", "7"),
                kv("store_slave_file_use_link", "0"),
            ],
        }
    }

    /// Learns this tracker's own address and its peers from a storage JOIN.
    fn learn_from_join(&self, conn: &Connection, trackers: &[SocketAddr]) {
        let mut rel = self.relationship();
        if rel.me.is_none() {
            rel.me = Some(conn.local);
        }
        for &a in trackers {
            if a != conn.local {
                rel.learn_peer(a);
            }
        }
    }

    async fn handle(
        &self,
        conn: &mut Connection,
        header: Header,
        session: &mut Session,
        compat: &Compat,
    ) -> Result<Next, ConnError> {
        let body = conn.read_body(header.body_len).await?;
        let cmd = header.cmd;
        let result: Result<Vec<u8>, Status> = match (cmd, cmd::family(cmd)) {
            (Command::Quit, _) => return Ok(Next::Close),
            (Command::ActiveTest, _) => empty(&body).map(|_| Vec::new()),
            (_, Some(family)) => {
                let mut ctx = cmd::Context {
                    tracker: self,
                    conn,
                    session,
                    compat,
                    now: unix_now(),
                };
                cmd::apply(family, cmd, &body, &mut ctx).await
            }
            // A command this tracker does not serve.
            (_, None) => Err(Status::InvalidArgument),
        };
        let status = result.as_ref().err().copied().unwrap_or(Status::Ok);
        self.metrics.count(cmd, status);
        // Each refusal is told once, with the command and the peer: a storage's report as a
        // warning (its session is in trouble), anything else for whoever looks closer.
        match (&result, &session.joined) {
            (Err(status), Some((group, id, _))) => {
                tracing::warn!(peer = %conn.peer, %group, storage = %id, ?cmd, %status,
                    "storage report refused");
            }
            (Err(status), None) => {
                tracing::debug!(peer = %conn.peer, ?cmd, %status, "request refused");
            }
            (Ok(_), _) => {}
        }
        match result {
            Ok(reply) => conn.reply(Status::Ok, &reply).await?,
            Err(status) => conn.reply_error(status).await?,
        }
        Ok(Next::Continue)
    }

    /// The storage's report connection is over (or replaced by a new JOIN).
    fn end_session(&self, session: &mut Session) {
        if let Some((group, id, s)) = session.joined.take() {
            self.registry().disconnect(&group, &id, s);
        }
    }

    /// Saves the registry when it differs from what was last written.
    fn save_if_changed(&self, last: &mut Option<SavedState>) {
        let state = SavedState::of(&self.registry());
        if last.as_ref() == Some(&state) {
            return;
        }
        let path = persist::state_path(&self.config.base_path);
        match persist::write_atomically(&path, &state.to_bytes()) {
            Ok(()) => *last = Some(state),
            Err(e) => tracing::error!(error = %e, "cannot save tracker state"),
        }
    }

    fn write_status_file(&self, now: u64) {
        let text = format!("up_time={}\nlast_check_time={now}\n", self.started_at);
        if let Err(e) = persist::write_atomically(&status_file(&self.config), text.as_bytes()) {
            tracing::warn!(error = %e, "cannot write .tracker_status");
        }
    }
}

/// Longest wait for the lookup of one tracker name a JOIN carries.
const LOOKUP_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// The trackers a JOIN names (`host:port`), names resolved off the async workers and each
/// within [`LOOKUP_BOUND`]: names whose lookups hang cost that JOIN, not the tracker.
async fn resolve_trackers(trackers: &[String]) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for t in trackers {
        match t.parse::<SocketAddr>() {
            Ok(a) => found.push(a),
            Err(_) => {
                let lookup = tokio::net::lookup_host(t.as_str());
                if let Ok(Ok(addrs)) = tokio::time::timeout(LOOKUP_BOUND, lookup).await {
                    found.extend(addrs);
                }
            }
        }
    }
    found
}

fn status_file(config: &TrackerConfig) -> std::path::PathBuf {
    config.base_path.join("data").join(".tracker_status")
}

fn empty(body: &[u8]) -> Result<(), Status> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(Status::InvalidArgument)
    }
}

/// One listening port of a tracker, with the compat profile its replies use.
#[derive(Debug)]
pub struct TrackerPort {
    tracker: Arc<Tracker>,
    compat: Compat,
}

impl Service for TrackerPort {
    /// Storages of the cluster keep their heartbeats when clients flood the port.
    fn is_peer(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_string();
        self.tracker
            .registry()
            .groups()
            .values()
            .any(|g| g.members.values().any(|m| m.ip == ip))
    }

    async fn serve(self: Arc<Self>, mut conn: Connection, stop: CancellationToken) {
        let tracker = &self.tracker;
        if !tracker.acl.allows(conn.peer.ip()) {
            tracing::warn!(peer = %conn.peer, "refused by allow_hosts");
            return;
        }
        let mut session = Session::default();
        loop {
            let header = tokio::select! {
                _ = stop.cancelled() => break,
                h = conn.read_header(tracker.config.max_body_len) => h,
            };
            let header = match header {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(ConnError::Proto(e)) => {
                    // A lying length: answer EINVAL and drop the connection, reading nothing.
                    tracing::warn!(peer = %conn.peer, error = %e, "bad packet");
                    let _ = conn.reply_error(e.status()).await;
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
                    break;
                }
            };
            match tracker
                .handle(&mut conn, header, &mut session, &self.compat)
                .await
            {
                Ok(Next::Continue) => {}
                Ok(Next::Close) => break,
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
                    break;
                }
            }
        }
        // A tracker stopping ends every report connection: the storages did not leave,
        // and its saved state keeps them as they were (a restarted tracker answers at
        // once; the ones that stay silent go OFFLINE after check_active_interval).
        if !stop.is_cancelled() {
            tracker.end_session(&mut session);
        }
    }
}

/// A tracker serving on its sockets; dropping the handle does not stop it, `stop` does.
#[derive(Debug)]
pub struct RunningTracker {
    /// The main listening address.
    pub addr: SocketAddr,
    /// Every listening address with its compat profile, the main one first.
    pub listeners: Vec<(SocketAddr, Compat)>,
    /// The HTTP status listener, when configured.
    pub http_addr: Option<SocketAddr>,
    pub tracker: Arc<Tracker>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningTracker {
    /// Stops accepting, lets connections finish for up to `drain`, saves, and waits.
    pub async fn stop(self, drain: Duration) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + drain;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(?drain, "a tracker task outlived the drain bound; aborted");
                t.abort();
            }
        }
        let mut none = None;
        self.tracker.save_if_changed(&mut none);
    }
}

/// Binds and starts a tracker; `config.bind` may use port 0.
pub async fn start(config: TrackerConfig) -> std::io::Result<RunningTracker> {
    let tracker = Arc::new(Tracker::load(config.clone())?);
    let mut binds = vec![(config.bind.clone(), config.compat)];
    binds.extend(config.listeners.iter().map(|l| (l.bind.clone(), l.compat)));
    let mut bound = Vec::new();
    for (addr, compat) in binds {
        let (listener, local) = server::bind(&addr)
            .await
            .map_err(|source| TrackerError::Bind { addr, source })?;
        bound.push((listener, local, compat));
    }
    let addr = bound[0].1;
    if !addr.ip().is_unspecified() {
        tracker.relationship().me = Some(addr);
    }
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    // Liveness checks and state saving.
    let t = tracker.clone();
    let s = stop.clone();
    let period = Duration::from_secs((config.check_active_interval / 4).clamp(1, 30));
    let save_every = config.timers.state_save();
    tasks.push(tokio::spawn(async move {
        let mut check = tokio::time::interval(period);
        let mut save = tokio::time::interval(save_every);
        let mut last_saved = None;
        let mut status_written = 0;
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = check.tick() => t.registry().check_alive(unix_now()),
                _ = save.tick() => {
                    let t2 = t.clone();
                    let mut last = last_saved.take();
                    let now = unix_now();
                    let write_status = now >= status_written + STATUS_FILE_INTERVAL;
                    last_saved = tokio::task::spawn_blocking(move || {
                        t2.reload_storage_ids();
                        t2.save_if_changed(&mut last);
                        if write_status {
                            t2.write_status_file(now);
                        }
                        last
                    })
                    .await
                    .unwrap_or(None);
                    if write_status {
                        status_written = now;
                    }
                }
            }
        }
    }));
    tasks.push(tokio::spawn(election::run(tracker.clone(), stop.clone())));

    let mut listeners = Vec::new();
    for (listener, local, compat) in bound {
        tracing::info!(addr = %local, profile = %compat.profile_name(), "tracker listening");
        listeners.push((local, compat));
        let port = Arc::new(TrackerPort {
            tracker: tracker.clone(),
            compat,
        });
        tasks.push(tokio::spawn(server::run_listener(
            listener,
            port,
            config.max_connections,
            config.timeouts(),
            stop.clone(),
            config.timers.drain(),
        )));
    }
    let mut http_addr = None;
    if !config.http_bind.is_empty() {
        let (a, task) = match http::serve(&config.http_bind, tracker.clone(), stop.clone()).await {
            Ok(x) => x,
            Err(source) => {
                stop.cancel();
                return Err(TrackerError::Bind {
                    addr: config.http_bind.clone(),
                    source,
                }
                .into());
            }
        };
        http_addr = Some(a);
        tasks.push(task);
    }
    Ok(RunningTracker {
        addr,
        listeners,
        http_addr,
        tracker,
        stop,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tracker_names_in_a_join_are_resolved_and_bad_ones_left_out() {
        let named = [
            "127.0.0.9:22122".to_string(),
            "localhost:22123".to_string(),
            "no-such-host.invalid:22122".to_string(),
            "not an address".to_string(),
        ];
        let found = resolve_trackers(&named).await;
        assert_eq!(found[0], "127.0.0.9:22122".parse().expect("addr"));
        assert!(
            found[1..]
                .iter()
                .all(|a| a.port() == 22123 && a.ip().is_loopback())
        );
        assert!(found.len() >= 2, "{found:?}");
    }
}
