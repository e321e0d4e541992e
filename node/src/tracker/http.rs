//! The tracker's HTTP side (axum): `/api/v1/cluster` (JSON status), `/healthz`,
//! `/readyz` and `/metrics` (Prometheus text; the registry lives in this
//! state, names are prefixed `fdfs_`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Tracker;
use crate::proto::monitor::SyncDelay;
use crate::proto::{Command, Status};
use crate::unix_now;

type Labels = Vec<(String, String)>;

/// Request counters the tracker bumps as it serves.
#[derive(Debug, Default)]
pub struct TrackerMetrics {
    /// Requests by command and reply status, labelled as the storage's are (`StorageJoin`,
    /// `OK`).
    pub requests: Family<Labels, Counter>,
}

impl TrackerMetrics {
    pub fn count(&self, cmd: Command, status: Status) {
        self.requests
            .get_or_create(&vec![
                ("command".to_owned(), format!("{cmd:?}")),
                ("status".to_owned(), status.errno_name().to_owned()),
            ])
            .inc();
    }
}

/// Gauges refreshed from the registry at each scrape, and the registry itself.
#[derive(Debug)]
struct Gauges {
    registry: MetricsRegistry,
    is_leader: Gauge,
    peers: Gauge,
    groups: Gauge,
    storages: Family<Labels, Gauge>,
    group_free_mb: Family<Labels, Gauge>,
    group_total_mb: Family<Labels, Gauge>,
    sync_lag_bytes: Family<Labels, Gauge>,
    sync_blocked: Family<Labels, Gauge>,
    /// One scrape at a time: a refresh clears the families and fills them again, so two at
    /// once would count storages twice, or one would encode them half filled.
    scrape: std::sync::Mutex<()>,
}

impl Gauges {
    fn new(tracker: &Tracker) -> Self {
        let mut registry = MetricsRegistry::with_prefix("fdfs_tracker");
        let g = Gauges {
            registry: MetricsRegistry::default(),
            is_leader: Gauge::default(),
            peers: Gauge::default(),
            groups: Gauge::default(),
            storages: Family::default(),
            group_free_mb: Family::default(),
            group_total_mb: Family::default(),
            sync_lag_bytes: Family::default(),
            sync_blocked: Family::default(),
            scrape: std::sync::Mutex::new(()),
        };
        // Metrics are handles onto shared values: registering clones keeps them live.
        registry.register(
            "is_leader",
            "1 when this tracker is the leader",
            g.is_leader.clone(),
        );
        registry.register("peers", "Other trackers this one knows", g.peers.clone());
        registry.register("groups", "Groups known", g.groups.clone());
        registry.register(
            "storages",
            "Storages by group and status",
            g.storages.clone(),
        );
        registry.register(
            "group_free_mb",
            "Free MB of each group (its emptiest writable storage)",
            g.group_free_mb.clone(),
        );
        registry.register(
            "group_total_mb",
            "Total MB of each group",
            g.group_total_mb.clone(),
        );
        registry.register(
            "storage_sync_lag_bytes",
            "Bytes of the other members' binlogs not yet at each storage, as they reported them",
            g.sync_lag_bytes.clone(),
        );
        registry.register(
            "storage_sync_blocked",
            "1 while a storage reports it cannot apply what a peer pushes, by peer and error",
            g.sync_blocked.clone(),
        );
        registry.register(
            "requests",
            "Requests served, by command and reply status",
            tracker.metrics.requests.clone(),
        );
        Gauges { registry, ..g }
    }

    fn refresh(&self, tracker: &Tracker) {
        let (is_leader, peers) = {
            let rel = tracker.relationship();
            (rel.is_leader(), rel.peers.len())
        };
        self.is_leader.set(i64::from(is_leader));
        self.peers.set(peers as i64);
        self.storages.clear();
        self.group_free_mb.clear();
        self.group_total_mb.clear();
        self.sync_lag_bytes.clear();
        self.sync_blocked.clear();
        let reg = tracker.registry();
        self.groups.set(reg.groups().len() as i64);
        for g in reg.groups().values() {
            let label = vec![("group".to_owned(), g.name.clone())];
            let (total, free) = g.space();
            self.group_free_mb.get_or_create(&label).set(free as i64);
            self.group_total_mb.get_or_create(&label).set(total as i64);
            for m in g.members.values() {
                self.storages
                    .get_or_create(&vec![
                        ("group".to_owned(), g.name.clone()),
                        ("status".to_owned(), m.status.name().to_owned()),
                    ])
                    .inc();
                for p in &m.problems {
                    self.sync_blocked
                        .get_or_create(&vec![
                            ("group".to_owned(), g.name.clone()),
                            ("storage".to_owned(), m.id.clone()),
                            ("source".to_owned(), p.source_id.clone()),
                            (
                                "error".to_owned(),
                                Status::from(p.status).errno_name().to_owned(),
                            ),
                        ])
                        .set(1);
                }
                if let Some(bytes) = g.lag_bytes_towards(&m.id) {
                    self.sync_lag_bytes
                        .get_or_create(&vec![
                            ("group".to_owned(), g.name.clone()),
                            ("storage".to_owned(), m.id.clone()),
                        ])
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct HttpState {
    tracker: Arc<Tracker>,
    gauges: Arc<Gauges>,
}

/// `/api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub tracker: TrackerView,
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Serialize)]
pub struct TrackerView {
    pub addr: Option<String>,
    pub is_leader: bool,
    pub leader: Option<String>,
    pub started_at: u64,
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Serialize)]
pub struct PeerView {
    pub addr: String,
    pub is_leader: bool,
    pub is_active: bool,
    pub last_heartbeat: u64,
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub name: String,
    pub total_mb: u64,
    pub free_mb: u64,
    pub reserved_mb: u64,
    pub readable: usize,
    pub writable: usize,
    pub storages: Vec<StorageView>,
}

#[derive(Debug, Serialize)]
pub struct StorageView {
    pub id: String,
    pub addr: String,
    pub status: &'static str,
    pub rw_mode: u8,
    pub version: String,
    pub total_mb: u64,
    pub free_mb: u64,
    pub join_time: u64,
    pub last_heartbeat: u64,
    pub src_id: String,
    /// When it last changed a file of its own / applied a peer's change (unix seconds).
    pub last_source_update: u64,
    pub last_sync_update: u64,
    /// Everything the other members changed before this time has reached it.
    pub last_synced_timestamp: u64,
    /// Seconds its copy trails the newest change of the other members, as `fdfs_monitor`
    /// computes it: 0 when there is nothing to sync, null when it never synced.
    pub sync_lag_seconds: Option<u64>,
    /// Bytes of the other members' binlogs that have not reached it, as they last reported
    /// them; null when none reports (FastDFS storages do not).
    pub sync_lag_bytes: Option<u64>,
    /// The same, per member it receives from.
    pub sync_backlog: Vec<BacklogView>,
    /// Members whose pushes it cannot apply, as it last reported them.
    pub sync_problems: Vec<ProblemView>,
}

/// A member whose pushes a storage cannot apply.
#[derive(Debug, Serialize)]
pub struct ProblemView {
    pub source: String,
    /// errno name of the failing writes: `ENOSPC`, `EIO`, `EPERM`, ...
    pub error: &'static str,
    /// Since when (unix seconds).
    pub since: u64,
}

/// What one member last reported another has yet to receive from it.
#[derive(Debug, Serialize)]
pub struct BacklogView {
    pub source: String,
    /// Binlog bytes not yet replayed to the receiver.
    pub bytes: u64,
    /// Age of the oldest change not yet sent, in seconds.
    pub seconds: u64,
    /// When the source reported it (unix seconds).
    pub reported_at: u64,
}

impl Tracker {
    /// The cluster as this tracker sees it (the `/api/v1/cluster` document).
    pub fn cluster_view(&self) -> ClusterView {
        let now = unix_now();
        let stats = self.tracker_stats(now);
        let rel_me = self.relationship().me;
        let tracker = TrackerView {
            addr: rel_me.map(|a| a.to_string()),
            is_leader: self.is_leader(),
            leader: self.leader().map(|a| a.to_string()),
            started_at: self.started_at,
            peers: stats
                .into_iter()
                .filter(|s| Some(s.host.clone()) != rel_me.map(|a| a.to_string()))
                .map(|s| PeerView {
                    addr: s.host,
                    is_leader: s.is_leader,
                    is_active: s.is_active,
                    last_heartbeat: s.last_heartbeat,
                })
                .collect(),
        };
        let reg = self.registry();
        let policy = reg.policy().reserved_storage_space;
        let groups = reg
            .groups()
            .values()
            .map(|g| {
                let (total, free) = g.space();
                GroupView {
                    name: g.name.clone(),
                    total_mb: total,
                    free_mb: free,
                    reserved_mb: policy.reserved_mb(total),
                    readable: g.readable().len(),
                    writable: g.writable().len(),
                    storages: g
                        .members
                        .values()
                        .map(|m| {
                            let backlog: Vec<BacklogView> = g
                                .backlog_towards(&m.id)
                                .into_iter()
                                .map(|r| BacklogView {
                                    source: r.source_id,
                                    bytes: r.backlog.bytes,
                                    seconds: r.backlog.seconds,
                                    reported_at: r.reported_at,
                                })
                                .collect();
                            StorageView {
                                sync_lag_bytes: g.lag_bytes_towards(&m.id),
                                sync_backlog: backlog,
                                sync_problems: m
                                    .problems
                                    .iter()
                                    .map(|p| ProblemView {
                                        source: p.source_id.clone(),
                                        error: Status::from(p.status).errno_name(),
                                        since: p.since,
                                    })
                                    .collect(),
                                sync_lag_seconds: SyncDelay::of(
                                    g.members
                                        .values()
                                        .filter(|o| o.id != m.id)
                                        .map(|o| o.stats.last_source_update),
                                    m.last_synced_timestamp,
                                )
                                .seconds(),
                                last_source_update: m.stats.last_source_update,
                                last_sync_update: m.stats.last_sync_update,
                                id: m.id.clone(),
                                addr: format!("{}:{}", m.ip, m.port),
                                status: m.status.name(),
                                rw_mode: m.rw_mode,
                                version: m.version.clone(),
                                total_mb: m.total_mb(),
                                free_mb: m.free_mb(),
                                join_time: m.join_time,
                                last_heartbeat: m.last_heartbeat,
                                src_id: m.src_id.clone(),
                                last_synced_timestamp: m.last_synced_timestamp,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        ClusterView { tracker, groups }
    }

    /// Why this tracker is not ready to place uploads, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if self.leader().is_none() {
            return Some("no leader tracker known".into());
        }
        let reg = self.registry();
        if reg.groups().is_empty() {
            return Some("no group has joined".into());
        }
        if reg.groups().values().all(|g| g.writable().is_empty()) {
            return Some("no writable storage".into());
        }
        None
    }
}

async fn cluster(State(s): State<HttpState>) -> impl IntoResponse {
    axum::Json(s.tracker.cluster_view())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<HttpState>) -> Response {
    match s.tracker.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let mut body = String::new();
    let encoded = {
        let _one = s.gauges.scrape.lock().unwrap_or_else(|e| e.into_inner());
        s.gauges.refresh(&s.tracker);
        encode(&mut body, &s.gauges.registry)
    };
    match encoded {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The tracker's HTTP routes.
pub fn router(tracker: Arc<Tracker>) -> Router {
    let gauges = Arc::new(Gauges::new(&tracker));
    Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HttpState { tracker, gauges })
}

/// Binds `bind` and serves until `stop`.
pub async fn serve(
    bind: &str,
    tracker: Arc<Tracker>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let limits = crate::server::http::limits(
        tracker.config.max_connections,
        tracker.config.timeouts(),
        tracker.acl.clone(),
    );
    let drain = tracker.config.timers.http_drain();
    let app = router(tracker);
    tracing::info!(%addr, "tracker HTTP listening");
    let task = tokio::spawn(crate::server::http::serve(
        listener, app, limits, stop, drain,
    ));
    Ok((addr, task))
}
