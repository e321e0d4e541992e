//! The tracker role: keeps group membership from storage reports and answers
//! clients' placement, routing and monitor queries.

pub mod registry;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::TrackerConfig;
use crate::proto::monitor::{GroupStat, ListStorageRequest, StorageStat};
use crate::proto::query::{FetchAll, FileRequest, GroupRequest};
use crate::proto::report::{
    BeatRequest, DiskUsage, GetMyIpRequest, HeartbeatReply, JoinRequest, Parameters, StorageBrief,
    SyncReport, SyncSource,
};
use crate::proto::{Command, Header, Status};
use crate::server::{self, ConnError, Connection, Service};
use crate::unix_now;
use registry::Registry;

/// Shared tracker state behind every connection.
#[derive(Debug)]
pub struct Tracker {
    registry: Mutex<Registry>,
    config: TrackerConfig,
}

/// What one connection remembers between requests.
#[derive(Debug, Default)]
struct Session {
    /// (group, storage id) once STORAGE_JOIN succeeded.
    joined: Option<(String, String)>,
    leader_sent: bool,
    members_sent: Option<u64>,
}

/// What to do with the connection after a request.
enum Next {
    Continue,
    Close,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Tracker {
            registry: Mutex::new(Registry::new(config.clone())),
            config,
        }
    }

    /// The registry, recovering from a poisoned lock (state stays consistent per call).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn parameters(&self) -> Parameters {
        let c = &self.config;
        let kv = |k: &str, v: String| (k.to_owned(), v);
        Parameters {
            entries: vec![
                kv("use_storage_id", "0".into()),
                kv("id_type_in_filename", "ip".into()),
                kv("trust_storage_server_id", "1".into()),
                kv(
                    "response_ip_addr_size",
                    c.compat.ip_width.full_len().to_string(),
                ),
                kv("storage_ip_changed_auto_adjust", "1".into()),
                kv(
                    "storage_sync_file_max_delay",
                    c.storage_sync_file_max_delay.to_string(),
                ),
                kv("store_path", c.store_path.to_string()),
                kv(
                    "reserved_storage_space",
                    c.reserved_storage_space.to_fastdfs_text(),
                ),
                kv("use_trunk_file", "0".into()),
                kv("store_slave_file_use_link", "0".into()),
            ],
        }
    }

    /// Builds the heartbeat reply: leader once per connection, members on change.
    fn heartbeat_reply(&self, conn: &Connection, session: &mut Session) -> Vec<u8> {
        let mut reply = HeartbeatReply::default();
        if !session.leader_sent {
            let ip = conn.local.ip().to_string();
            reply.leader = Some(StorageBrief {
                status: 0,
                port: u32::from(conn.local.port()),
                id: ip.clone(),
                ip,
            });
            session.leader_sent = true;
        }
        if let Some((group, _)) = &session.joined {
            let reg = self.registry();
            if let Some(g) = reg
                .groups
                .get(group)
                .filter(|g| session.members_sent != Some(g.changes))
            {
                reply.members = Some(g.briefs());
                session.members_sent = Some(g.changes);
            }
        }
        reply.encode()
    }

    async fn handle(
        &self,
        conn: &mut Connection,
        header: Header,
        session: &mut Session,
    ) -> Result<Next, ConnError> {
        let body = conn.read_body(header.body_len).await?;
        let cmd = header.cmd;
        let width = self.config.compat.ip_width;
        let now = unix_now();
        let result: Result<Vec<u8>, Status> = match cmd {
            Command::Quit => return Ok(Next::Close),
            Command::ActiveTest => empty(&body).map(|_| Vec::new()),
            Command::QueryStoreWithoutGroupOne => empty(&body)
                .and_then(|_| self.registry().query_store(None))
                .map(|t| t.encode(width)),
            Command::QueryStoreWithGroupOne => GroupRequest::decode(&body)
                .map_err(|e| e.status())
                .and_then(|r| self.registry().query_store(Some(&r.group)))
                .map(|t| t.encode(width)),
            Command::QueryStoreWithoutGroupAll => empty(&body)
                .and_then(|_| self.registry().query_store_all(None))
                .map(|t| t.encode(width)),
            Command::QueryStoreWithGroupAll => GroupRequest::decode(&body)
                .map_err(|e| e.status())
                .and_then(|r| self.registry().query_store_all(Some(&r.group)))
                .map(|t| t.encode(width)),
            Command::QueryFetchOne | Command::QueryUpdate | Command::QueryFetchAll => {
                match FileRequest::decode(&body) {
                    Err(e) => Err(e.status()),
                    Ok(r) => {
                        let mut reg = self.registry();
                        match cmd {
                            Command::QueryFetchOne => reg
                                .query_fetch(&r.group, &r.remote_filename, now)
                                .map(|t| t.encode(width)),
                            Command::QueryUpdate => reg
                                .query_update(&r.group, &r.remote_filename)
                                .map(|t| t.encode(width)),
                            _ => reg.query_fetch_all(&r.group, &r.remote_filename, now).map(
                                |servers| {
                                    FetchAll {
                                        group: r.group.clone(),
                                        servers,
                                    }
                                    .encode(width, self.config.compat.fetch_all_format)
                                },
                            ),
                        }
                    }
                }
            }
            Command::ServerListAllGroups => {
                empty(&body).map(|_| GroupStat::encode_all(&self.registry().group_stats()))
            }
            Command::ServerListOneGroup => GroupRequest::decode(&body)
                .map_err(|e| e.status())
                .and_then(|r| {
                    let reg = self.registry();
                    let g = reg.groups.get(&r.group).ok_or(Status::NotFound)?;
                    Ok(GroupStat::encode_all(&[reg.group_stat(g)]))
                }),
            Command::ServerListStorage => ListStorageRequest::decode(&body)
                .map_err(|e| e.status())
                .and_then(|r| {
                    self.registry()
                        .storage_stats(&r.group, r.storage_id.as_deref())
                })
                .map(|s| StorageStat::encode_all(&s, width)),
            Command::ServerGetLeader => empty(&body).map(|_| conn.local.to_string().into_bytes()),
            Command::StorageParameterReq => empty(&body).map(|_| self.parameters().encode()),
            Command::StorageGetMyIp => GetMyIpRequest::decode(&body)
                .map_err(|e| e.status())
                .map(|_| conn.peer.ip().to_string().into_bytes()),
            Command::StorageJoin => match JoinRequest::decode(&body) {
                Err(e) => Err(e.status()),
                Ok(req) => {
                    let peer_ip = conn.peer.ip().to_string();
                    let joined = self.registry().join(&peer_ip, &req, now);
                    joined.map(|(id, reply)| {
                        tracing::info!(group = %req.group, storage = %id, status = reply.status, "storage joined");
                        session.joined = Some((req.group.clone(), id));
                        session.members_sent = None;
                        reply.encode()
                    })
                }
            },
            Command::StorageBeat
            | Command::StorageReportDiskUsage
            | Command::StorageSyncReport
            | Command::StorageSyncDestReq
            | Command::StorageSyncNotify
            | Command::StorageSyncDestQuery => match session.joined.clone() {
                None => Err(Status::AccessDenied),
                Some((group, id)) => {
                    self.storage_report(conn, session, cmd, &body, &group, &id, now)
                }
            },
            other => {
                tracing::debug!(peer = %conn.peer, cmd = ?other, "unsupported command");
                Err(Status::InvalidArgument)
            }
        };
        match result {
            Ok(reply) => conn.reply(Status::Ok, &reply).await?,
            Err(status) => conn.reply_error(status).await?,
        }
        Ok(Next::Continue)
    }

    #[allow(clippy::too_many_arguments)]
    fn storage_report(
        &self,
        conn: &Connection,
        session: &mut Session,
        cmd: Command,
        body: &[u8],
        group: &str,
        id: &str,
        now: u64,
    ) -> Result<Vec<u8>, Status> {
        match cmd {
            Command::StorageBeat => {
                let beat = BeatRequest::decode(body).map_err(|e| e.status())?;
                self.registry().beat(group, id, beat.stats, now)?;
                Ok(self.heartbeat_reply(conn, session))
            }
            Command::StorageReportDiskUsage => {
                let usage = DiskUsage::decode(body).map_err(|e| e.status())?;
                self.registry().disk_usage(group, id, usage.paths, now)?;
                Ok(self.heartbeat_reply(conn, session))
            }
            Command::StorageSyncReport => {
                let report = SyncReport::decode(body).map_err(|e| e.status())?;
                self.registry()
                    .sync_report(group, id, &report.entries, now)?;
                Ok(self.heartbeat_reply(conn, session))
            }
            Command::StorageSyncDestReq => {
                empty(body)?;
                Ok(self
                    .registry()
                    .sync_dest_req(group, id, now)?
                    .map(|s| s.encode())
                    .unwrap_or_default())
            }
            Command::StorageSyncNotify => {
                let src = SyncSource::decode(body).map_err(|e| e.status())?;
                self.registry().sync_notify(group, id, &src)?;
                Ok(Vec::new())
            }
            _ => {
                empty(body)?;
                let reg = self.registry();
                let m = reg
                    .groups
                    .get(group)
                    .and_then(|g| g.members.get(id))
                    .ok_or(Status::NotFound)?;
                Ok(if m.src_id.is_empty() {
                    Vec::new()
                } else {
                    SyncSource {
                        src_id: m.src_id.clone(),
                        until: m.sync_until,
                    }
                    .encode()
                })
            }
        }
    }
}

fn empty(body: &[u8]) -> Result<(), Status> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(Status::InvalidArgument)
    }
}

impl Service for Tracker {
    async fn serve(self: Arc<Self>, mut conn: Connection, stop: CancellationToken) {
        let mut session = Session::default();
        loop {
            let header = tokio::select! {
                _ = stop.cancelled() => break,
                h = conn.read_header(self.config.max_body_len) => h,
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
            match self.handle(&mut conn, header, &mut session).await {
                Ok(Next::Continue) => {}
                Ok(Next::Close) => break,
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
                    break;
                }
            }
        }
    }
}

/// A tracker serving on a socket; dropping the handle does not stop it, `stop` does.
#[derive(Debug)]
pub struct RunningTracker {
    pub addr: SocketAddr,
    pub tracker: Arc<Tracker>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningTracker {
    /// Stops accepting, lets connections finish for up to `drain`, and waits.
    pub async fn stop(self, drain: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(drain + Duration::from_secs(1), self.task).await;
    }
}

/// Binds and starts a tracker; `config.bind` may use port 0.
pub async fn start(config: TrackerConfig) -> std::io::Result<RunningTracker> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let (listener, addr) = server::bind(&config.bind).await?;
    let tracker = Arc::new(Tracker::new(config.clone()));
    let stop = CancellationToken::new();
    let checker = tracker.clone();
    let check_stop = stop.clone();
    let period = Duration::from_secs((config.check_active_interval / 4).clamp(1, 30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = check_stop.cancelled() => break,
                _ = tick.tick() => checker.registry().check_alive(unix_now()),
            }
        }
    });
    tracing::info!(%addr, "tracker listening");
    let task = tokio::spawn(server::run_listener(
        listener,
        tracker.clone(),
        config.max_connections,
        server::Timeouts {
            network: Duration::from_secs(config.network_timeout.max(1)),
            idle: Duration::from_secs(config.idle_timeout.max(1)),
        },
        stop.clone(),
        Duration::from_secs(5),
    ));
    Ok(RunningTracker {
        addr,
        tracker,
        stop,
        task,
    })
}
