//! The storage role: stores files in FastDFS's layout, serves every client
//! command on them, and reports to every tracker.

pub mod binlog;
mod cmd;
pub mod disk;
pub(crate) use cmd::upload::{slave_name, store_slave};
pub mod identity;
pub mod locks;
pub mod meta;
pub mod metrics;
pub mod recovery;
pub mod replication;
pub mod stat_file;
pub mod statistics;
pub mod store;
pub mod sync;
mod tracker_link;
pub mod tracker_view;
mod transfer;
pub mod trunk;
pub mod trunk_space;
mod trunk_upkeep;
pub mod trunking;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::StorageConfig;
use crate::fileid::{RemoteName, Source};
use crate::proto::monitor::{StorageStats, counter};
use crate::proto::{Command, Header, Status, StorageStatus};
use crate::server::acl::AccessList;
use crate::server::{self, ConnError, Connection, Service};
use metrics::{CommandLabels, LatencyLabels, StorageMetrics};
use store::io_status;

/// Shared state of one storage node.
#[derive(Debug)]
pub struct StorageNode {
    pub config: StorageConfig,
    /// Store paths, binlog, per-file locks: every blocking file step goes through it.
    pub disk: disk::Disk,
    /// The address and ids this storage is known by.
    pub identity: identity::Identity,
    /// The port clients reach this storage on.
    pub port: u16,
    /// The figures BEATs and `storage_stat.dat` carry.
    pub statistics: statistics::Statistics,
    pub metrics: StorageMetrics,
    pub(crate) acl: AccessList,
    /// The port the HTTP side listens on (0: none). The group's members serve HTTP on the
    /// same port, as fastdfs-nginx-module assumes, so it also reaches a peer's files.
    pub(crate) http_port: std::sync::atomic::AtomicU16,
    /// The group's other members and the pushes between us.
    pub replication: replication::Replication,
    /// What the trackers last said about this storage.
    pub trackers: tracker_view::TrackerView,
    /// The report sessions that stand, which carry sync's and recovery's short calls.
    tracker_sessions: tracker_link::Sessions,
    pub started_at: u64,
    /// Trunk storage: the group's trunk server, and our free space when we are it.
    pub trunk: trunking::Trunking,
}

/// What one connection remembers between requests.
#[derive(Debug, Default)]
struct Session {
    /// The peer storage that sent REPORT_SERVER_ID on this connection.
    sync_source: Option<String>,
}

/// What a handler produced.
enum Reply {
    /// A body to send with status 0.
    Body(Vec<u8>),
    /// The handler already wrote its reply (downloads).
    Sent,
    /// The handler wrote a reply of unannounced length; closing ends it (26).
    SentThenClose,
}

/// Why a command failed: a refusal the handler decided on, a file operation that failed
/// (its status is FastDFS's for the error, and the error itself is logged once with the
/// command and the peer), or the connection itself.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("refused with {0}")]
    Status(Status),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Failure {
    /// The status the peer gets; a connection that failed gets none (EIO in the counters).
    fn status(&self) -> Status {
        match self {
            Failure::Status(s) => *s,
            Failure::Io { source, .. } => io_status(source),
            Failure::Conn(_) => Status::Io,
        }
    }
}

/// A temporary file for a body not read yet could not be made. A missing directory (or a
/// name taken) is EIO here, not ENOENT (EEXIST): a sync command answered ENOENT or EEXIST
/// keeps its connection on the understanding that its body was read, and this one was not.
fn staging_failure(source: std::io::Error) -> Failure {
    use std::io::ErrorKind::{AlreadyExists, NotFound};
    let source = if matches!(source.kind(), NotFound | AlreadyExists) {
        std::io::Error::other(source)
    } else {
        source
    };
    Failure::Io {
        what: "creating a temporary file",
        source,
    }
}

/// Turns an I/O error into a failure that keeps it, saying what was being done.
fn io_failure(what: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
    move |source| Failure::Io { what, source }
}

impl From<store::CommitError> for Failure {
    fn from(e: store::CommitError) -> Self {
        match e {
            store::CommitError::Io(source) => Failure::Io {
                what: "putting the file in place",
                source,
            },
            other => Failure::Status(other.status()),
        }
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure::Status(s)
    }
}

type Handled = Result<Reply, Failure>;

/// Runs blocking file work on the disk threads, off the async workers; for a handler a
/// lost step is EIO.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    crate::disk::run(f)
        .await
        .map_err(|_| Failure::Status(Status::Io))
}

/// [`blocking`] for a small file written whole (an upload or replica up to the buffer
/// size): on the threads kept for such writes, or with the other steps when writes are
/// fsync'd, so that fsyncs overlap on more threads.
async fn small_write<T: Send + 'static>(
    node: &StorageNode,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    let step = if node.disk.store().sync_policy().on_commit() {
        crate::disk::run(f).await
    } else {
        crate::disk::run_small_write(f).await
    };
    step.map_err(|_| Failure::Status(Status::Io))
}

/// Counter slot (total) and byte slot (success; the total bytes slot precedes it) of each
/// command, for BEAT statistics.
fn counter_slots(cmd: Command) -> Option<(usize, Option<usize>)> {
    Some(match cmd {
        Command::UploadFile | Command::UploadAppenderFile | Command::UploadSlaveFile => {
            (counter::TOTAL_UPLOAD, Some(counter::SUCCESS_UPLOAD_BYTES))
        }
        Command::AppendFile => (counter::TOTAL_APPEND, Some(counter::SUCCESS_APPEND_BYTES)),
        Command::ModifyFile => (counter::TOTAL_MODIFY, Some(counter::SUCCESS_MODIFY_BYTES)),
        Command::TruncateFile => (counter::TOTAL_TRUNCATE, None),
        Command::SetMetadata => (counter::TOTAL_SET_META, None),
        Command::GetMetadata => (counter::TOTAL_GET_META, None),
        Command::DeleteFile => (counter::TOTAL_DELETE, None),
        Command::DownloadFile => (
            counter::TOTAL_DOWNLOAD,
            Some(counter::SUCCESS_DOWNLOAD_BYTES),
        ),
        _ => return None,
    })
}

impl StorageNode {
    pub fn new(
        config: StorageConfig,
        port: u16,
        bind_ip: Option<Ipv4Addr>,
    ) -> std::io::Result<Self> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        config.validate().map_err(|e| invalid(e.to_string()))?;
        let acl = AccessList::parse(&config.allow_hosts).map_err(invalid)?;
        let node = StorageNode {
            disk: disk::Disk::open(&config)?,
            identity: identity::Identity::bound_to(bind_ip),
            port,
            statistics: statistics::Statistics::default(),
            metrics: StorageMetrics::new(),
            acl,
            http_port: std::sync::atomic::AtomicU16::new(0),
            replication: replication::Replication::default(),
            trackers: tracker_view::TrackerView::default(),
            tracker_sessions: tracker_link::Sessions::default(),
            started_at: crate::unix_now(),
            trunk: trunking::Trunking::default(),
            config,
        };
        if let Some(saved) = stat_file::load(&node.config.base_path) {
            node.resume_from(&saved);
        }
        node.refresh_disk_metrics();
        Ok(node)
    }

    /// The source new file names carry (see [`identity::Identity::source`]).
    pub fn source(&self) -> Source {
        self.identity.source()
    }

    /// This storage's id as trackers and peers know it.
    pub fn own_id(&self) -> String {
        self.identity.own_id()
    }

    /// Trackers this storage currently reports to.
    pub fn tracker_addrs(&self) -> Vec<SocketAddr> {
        self.trackers.trackers()
    }

    /// The age in seconds of the oldest change the other members last said they have yet
    /// to push here, as `tracker` lists it (LIST_SYNC_BACKLOG, 241); `None` where unknown.
    pub fn behind_at(&self, tracker: SocketAddr) -> Option<u64> {
        self.trackers.behind_at(tracker)
    }

    /// Connects to a tracker or peer from this storage's own address.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<crate::client::Conn, crate::client::ClientError> {
        let bind = self.identity.source_ip().map(IpAddr::V4);
        crate::client::Conn::connect(
            addr,
            Duration::from_secs(self.config.connect_timeout.max(1)),
            self.config.network_timeout(),
            bind,
        )
        .await
    }

    /// Whether every tracker this storage reports to sees it ACTIVE.
    pub fn is_active_everywhere(&self) -> bool {
        self.trackers.active_everywhere()
    }

    /// Readiness: every tracker sees this storage ACTIVE, and no peer has reported a change
    /// for it older than [`CAUGHT_UP_SECONDS`]. Returns the verdict and the lines saying why.
    pub fn readiness(&self) -> (bool, String) {
        readiness(&self.trackers.statuses(), &self.trackers.behind())
    }

    pub fn stats(&self) -> StorageStats {
        self.statistics.snapshot()
    }

    /// Every metric, with the gauges that are read at scrape time (disk space, replication
    /// backlog) brought up to date first.
    pub fn render_metrics(&self) -> String {
        self.disk.store().refresh_usage();
        self.refresh_disk_metrics();
        sync::refresh_backlog_metrics(self);
        self.metrics.render()
    }

    /// Updates the disk gauges from the store's figures (at each disk report and scrape).
    pub fn refresh_disk_metrics(&self) {
        for (i, u) in self.disk.store().cached_usage().iter().enumerate() {
            let labels = metrics::PathLabels {
                store_path: format!("M{i:02X}"),
            };
            self.metrics
                .disk_free
                .get_or_create(&labels)
                .set((u.free_mb * 1024 * 1024) as i64);
            self.metrics
                .disk_total
                .get_or_create(&labels)
                .set((u.total_mb * 1024 * 1024) as i64);
        }
    }

    fn check_group(&self, group: &str) -> Result<(), Status> {
        if group == self.config.group_name {
            Ok(())
        } else {
            Err(Status::InvalidArgument)
        }
    }

    /// Parses a remote filename and maps it inside a store path (EINVAL otherwise).
    fn locate(&self, remote: &str) -> Result<(RemoteName, PathBuf), Status> {
        let name = RemoteName::parse_file(remote).map_err(|_| Status::InvalidArgument)?;
        let path = self.disk.store().file_path(&name)?;
        Ok((name, path))
    }

    /// [`Self::locate`] for a file `peer` reads: a metadata file (`<name>-m`) is one only
    /// for the group's members, which copy it while recovering a store path; clients read
    /// its pairs with GET_METADATA and get ENOENT here.
    fn locate_file(&self, remote: &str, peer: IpAddr) -> Result<(RemoteName, PathBuf), Status> {
        if remote.ends_with("-m") && !self.is_group_member(peer) {
            return Err(Status::NotFound);
        }
        self.locate(remote)
    }

    /// Bodies of non-streamed commands must fit in the buffer, as in FastDFS.
    async fn small_body(&self, conn: &mut Connection, header: &Header) -> Result<Vec<u8>, Failure> {
        if header.body_len >= self.config.buff_size {
            return Err(Failure::Status(Status::InvalidArgument));
        }
        Ok(conn.read_body(header.body_len).await?)
    }

    async fn dispatch(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: &Header,
        session: &mut Session,
    ) -> Handled {
        if from_group_members_only(header.cmd) && !self.is_group_member(conn.peer.ip()) {
            tracing::warn!(
                peer = %conn.peer,
                cmd = ?header.cmd,
                "replication command from an address that is no member of this group; refused"
            );
            return Err(Status::AccessDenied.into());
        }
        match (header.cmd, cmd::family(header.cmd)) {
            (Command::ActiveTest, _) => {
                if header.body_len == 0 {
                    Ok(Reply::Body(Vec::new()))
                } else {
                    Err(Status::InvalidArgument.into())
                }
            }
            (_, Some(family)) => cmd::apply(family, self, conn, header, session).await,
            (other, None) => {
                tracing::debug!(peer = %conn.peer, cmd = ?other, "unsupported command");
                Err(Status::InvalidArgument.into())
            }
        }
    }

    /// Handles one request; the reply has been written when this returns `Ok`.
    async fn handle(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: Header,
        session: &mut Session,
    ) -> Result<bool, ConnError> {
        let started = Instant::now();
        let in_flight = crate::disk::RequestInFlight::start();
        let result = self.dispatch(conn, &header, session).await;
        drop(in_flight);
        let status = match &result {
            Ok(_) => Status::Ok,
            Err(f) => f.status(),
        };
        if let Err(Failure::Io { what, source }) = &result {
            // A file that is not there is an answer (ENOENT), not a fault.
            if source.kind() == std::io::ErrorKind::NotFound {
                tracing::debug!(peer = %conn.peer, cmd = ?header.cmd, %status, error = %source, "{what}");
            } else {
                tracing::warn!(peer = %conn.peer, cmd = ?header.cmd, %status, error = %source, "{what} failed");
            }
        }
        if let Some((total, _)) = counter_slots(header.cmd) {
            self.statistics.add_pair(total, 1, status == Status::Ok);
        }
        if from_group_members_only(header.cmd) {
            self.replication.note_outcome(
                session.sync_source.as_deref(),
                conn.peer.ip(),
                status,
                &self.metrics,
            );
        }
        let command = format!("{:?}", header.cmd);
        self.metrics
            .requests
            .get_or_create(&CommandLabels {
                command: command.clone(),
                status: status.errno_name().to_owned(),
            })
            .inc();
        self.metrics
            .latency
            .get_or_create(&LatencyLabels { command })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Reply::Body(body)) => {
                conn.reply(Status::Ok, &body).await?;
                Ok(true)
            }
            Ok(Reply::Sent) => Ok(true),
            Ok(Reply::SentThenClose) => Ok(false),
            Err(Failure::Status(_) | Failure::Io { .. }) => {
                conn.reply_error(status).await?;
                // The C storage closes after EINVAL; a failed streamed command may leave
                // body bytes unread, so its connection cannot be reused either.
                let streamed = matches!(
                    header.cmd,
                    Command::UploadFile
                        | Command::UploadAppenderFile
                        | Command::UploadSlaveFile
                        | Command::AppendFile
                        | Command::ModifyFile
                        | Command::SyncCreateFile
                        | Command::SyncUpdateFile
                        | Command::SyncAppendFile
                        | Command::SyncModifyFile
                );
                // Sync replies EEXIST/ENOENT are outcomes, not failures: the body was consumed.
                let outcome = matches!(status, Status::AlreadyExists | Status::NotFound)
                    && matches!(
                        header.cmd,
                        Command::SyncCreateFile
                            | Command::SyncUpdateFile
                            | Command::SyncAppendFile
                            | Command::SyncModifyFile
                    );
                let streamed = streamed && !outcome;
                // A refused command's body is never read: the connection cannot go on.
                let refused = status == Status::AccessDenied;
                Ok(!(status == Status::InvalidArgument || refused || streamed))
            }
            Err(Failure::Conn(e)) => Err(e),
        }
    }

    /// Counts file bytes replicated to a peer (`out`) or from one, for BEAT statistics:
    /// the total always, the success counter when the other side stored them.
    pub(super) fn count_sync(&self, out: bool, bytes: u64, stored: bool) {
        let total = if out {
            counter::TOTAL_SYNC_OUT_BYTES
        } else {
            counter::TOTAL_SYNC_IN_BYTES
        };
        self.statistics.add_pair(total, bytes, stored);
    }

    /// Writes change records to the binlog (blocking: call it in the disk step that
    /// made the change); a failure is logged, the change stands.
    fn log_now(&self, records: &[binlog::Record]) {
        if let Err(e) = self.disk.binlog().append(records) {
            tracing::error!(error = %e, "cannot write the binlog; peers will miss this change");
        }
        self.statistics.changed(records, crate::unix_now());
    }

    /// Writes the binlog line of a file just placed under `name` (blocking, in the disk
    /// step that placed it). When the binlog cannot take it the file is taken away again
    /// and the error returned: acknowledged, it would stay on this member alone, its peers
    /// never told of it.
    fn log_new_file(
        &self,
        name: &crate::fileid::RemoteName,
        record: binlog::Record,
    ) -> std::io::Result<()> {
        if let Err(e) = self.disk.binlog().append(std::slice::from_ref(&record)) {
            tracing::error!(error = %e, file = %name, "cannot write the binlog; the upload fails");
            if let Err(undo) = self.disk.store().delete_file(name) {
                tracing::error!(error = %undo, file = %name, "cannot remove the unlogged file");
            }
            return Err(e);
        }
        self.statistics.changed(&[record], crate::unix_now());
        Ok(())
    }

    /// Writes change records to the binlog from an async handler, on a disk thread.
    async fn log(self: &Arc<Self>, records: &[binlog::Record]) {
        let (node, records) = (self.clone(), records.to_vec());
        let _ = crate::disk::run(move || node.log_now(&records)).await;
    }

    /// Records bytes moved for a successful command (its total and success byte counters).
    fn count_bytes(&self, cmd: Command, n: u64) {
        if let Some((_, Some(slot))) = counter_slots(cmd) {
            self.statistics.add_pair(slot - 1, n, true);
        }
        let direction = if cmd == Command::DownloadFile {
            "out"
        } else {
            "in"
        };
        self.metrics
            .bytes
            .get_or_create(&metrics::DirectionLabels {
                direction,
                via: "protocol",
            })
            .inc_by(n);
    }
}

/// A storage whose peers still hold changes for it at most this old (seconds) counts as
/// caught up: under a steady load replication always trails by a moment.
pub const CAUGHT_UP_SECONDS: u64 = 10;

/// [`StorageNode::readiness`] on given views: per tracker, its status of this storage and
/// the age of the oldest change the peers reported they still have to push here.
fn readiness(
    view: &BTreeMap<SocketAddr, StorageStatus>,
    behind: &BTreeMap<SocketAddr, u64>,
) -> (bool, String) {
    if view.is_empty() {
        return (false, "no tracker reached yet\n".to_owned());
    }
    let mut ready = true;
    let mut text = String::new();
    for (tracker, status) in view {
        text.push_str(&format!("tracker {tracker}: {}", status.name()));
        ready &= *status == StorageStatus::Active;
        if let Some(age) = behind.get(tracker).filter(|a| **a > 0) {
            text.push_str(&format!("; peers hold changes for it {age}s old"));
            ready &= *age <= CAUGHT_UP_SECONDS;
        }
        text.push('\n');
    }
    (ready, text)
}

/// Commands that change files and only the group's other members send. FETCH_ONE_PATH_BINLOG
/// and REPORT_SERVER_ID change nothing and stay open to any allowed client, as in FastDFS.
fn from_group_members_only(cmd: Command) -> bool {
    matches!(
        cmd,
        Command::SyncCreateFile
            | Command::SyncUpdateFile
            | Command::SyncDeleteFile
            | Command::SyncAppendFile
            | Command::SyncModifyFile
            | Command::SyncTruncateFile
            | Command::SyncRenameFile
            | Command::SyncCreateLink
    )
}

impl StorageNode {
    /// The protocol address of the member of this group that `source` (from a file name)
    /// names; `None` for this storage itself or a storage the trackers do not list.
    pub fn member_named_by(&self, source: Source) -> Option<SocketAddr> {
        if source == self.source() {
            return None;
        }
        match source {
            Source::Ip(ip) => self
                .replication
                .member_addr(|p| p.addr.ip() == IpAddr::V4(ip)),
            Source::ServerId(id) => {
                let id = id.to_string();
                self.replication.member_addr(|p| p.id == id)
            }
        }
    }

    /// Whether `ip` is the address of another member of this group, as the trackers list
    /// them (deleted members excluded).
    fn is_group_member(&self, ip: IpAddr) -> bool {
        self.replication.is_member(ip)
    }
}

impl Service for StorageNode {
    /// Trackers and the group's other members keep their connections when clients flood.
    fn is_peer(&self, ip: IpAddr) -> bool {
        self.trackers.is_tracker(ip) || self.replication.is_listed(ip)
    }

    async fn serve(self: Arc<Self>, mut conn: Connection, stop: CancellationToken) {
        if !self.acl.allows(conn.peer.ip()) {
            tracing::warn!(peer = %conn.peer, "refused by allow_hosts");
            return;
        }
        // Streamed commands check their own lengths; others are capped by `small_body`.
        let max_body = u64::MAX >> 1;
        let mut session = Session::default();
        loop {
            let header = tokio::select! {
                _ = stop.cancelled() => break,
                h = conn.read_header(max_body) => h,
            };
            let header = match header {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(ConnError::Proto(e)) => {
                    tracing::warn!(peer = %conn.peer, error = %e, "bad packet");
                    let _ = conn.reply_error(e.status()).await;
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
                    break;
                }
            };
            if header.cmd == Command::Quit {
                break;
            }
            match self.handle(&mut conn, header, &mut session).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
                    break;
                }
            }
        }
    }
}

/// Reads the store paths' free space every `disk_refresh_ms` (a second), off the async
/// workers, so uploads choose a path from fresh figures without a statvfs of their own.
async fn watch_disks(node: Arc<StorageNode>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(node.config.timers.disk_refresh());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let n = node.clone();
        let _ = crate::disk::run(move || n.disk.store().refresh_usage()).await;
    }
}

/// A storage serving on a socket and reporting to its trackers.
#[derive(Debug)]
pub struct RunningStorage {
    pub addr: SocketAddr,
    /// Where the HTTP side listens, when enabled.
    pub http_addr: Option<SocketAddr>,
    pub node: Arc<StorageNode>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningStorage {
    /// Stops accepting and reporting, lets requests in flight finish and pushes save their
    /// marks; whatever still runs after `drain` is aborted.
    pub async fn stop(self, drain: Duration) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + drain;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(?drain, "a storage task outlived the drain bound; aborted");
                t.abort();
            }
        }
        // The counters are final once nothing is served any more.
        stat_file::save_logged(&self.node).await;
    }
}

/// Binds, opens the store paths and starts serving and reporting.
pub async fn start(config: StorageConfig) -> std::io::Result<RunningStorage> {
    let (listener, addr) = server::bind(&config.bind).await?;
    let bind_ip = match addr.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    };
    let http = if config.http.bind.is_empty() {
        None
    } else {
        Some(server::bind(&config.http.bind).await?)
    };
    let cfg = config.clone();
    // Lost store paths are found before the store re-creates their trees.
    let (node, lost) = tokio::task::spawn_blocking(move || {
        let lost = recovery::pending_paths(&cfg)?;
        let node = StorageNode::new(cfg, addr.port(), bind_ip)?;
        sync::fit_marks_to_binlog(&node)?;
        Ok::<_, std::io::Error>((node, lost))
    })
    .await
    .map_err(std::io::Error::other)??;
    let node = Arc::new(node);
    let stop = CancellationToken::new();
    tracing::info!(%addr, group = %config.group_name, "storage listening");
    let mut tasks = vec![tokio::spawn(server::run_listener(
        listener,
        node.clone(),
        config.max_connections,
        config.timeouts(),
        stop.clone(),
        config.timers.drain(),
    ))];
    let mut http_addr = None;
    if let Some((listener, a)) = http {
        node.http_port
            .store(a.port(), std::sync::atomic::Ordering::Relaxed);
        tracing::info!(addr = %a, "storage HTTP listening");
        http_addr = Some(a);
        tasks.push(tokio::spawn(crate::http::serve(
            listener,
            node.clone(),
            stop.clone(),
        )));
    }
    // A storage rebuilding a lost path neither joins nor pushes until it is whole
    // again: the trackers hold it RECOVERY meanwhile, so no read is routed to it.
    let (n, s) = (node.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        if !lost.is_empty() && !recovery::run(n.clone(), lost, s.clone()).await {
            return;
        }
        let pushing = n.clone();
        tokio::join!(tracker_link::run(n, bind_ip, s.clone()), async move {
            sync::run(pushing.clone(), s).await;
            pushing.replication.end_pushes();
        });
    }));
    tasks.push(tokio::spawn(stat_file::run(node.clone(), stop.clone())));
    tasks.push(tokio::spawn(watch_disks(node.clone(), stop.clone())));
    tasks.push(tokio::spawn(trunk_upkeep::run(node.clone(), stop.clone())));
    Ok(RunningStorage {
        addr,
        http_addr,
        node,
        stop,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_active_everywhere_and_peers_hold_nothing_old_for_it() {
        let a: SocketAddr = "127.0.0.1:22122".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:22123".parse().expect("addr");
        let view = |sa, sb| BTreeMap::from([(a, sa), (b, sb)]);
        let active = view(StorageStatus::Active, StorageStatus::Active);
        assert!(
            !readiness(&BTreeMap::new(), &BTreeMap::new()).0,
            "no tracker yet"
        );
        assert!(
            readiness(&active, &BTreeMap::new()).0,
            "nothing known to wait"
        );
        assert!(
            !readiness(
                &view(StorageStatus::Active, StorageStatus::Syncing),
                &BTreeMap::new()
            )
            .0
        );
        // Under load replication trails by a moment: still ready.
        assert!(readiness(&active, &BTreeMap::from([(a, 3)])).0);
        // A change waiting longer, as seen by either tracker: not ready, and said why.
        let (ready, text) = readiness(&active, &BTreeMap::from([(a, 0), (b, 42)]));
        assert!(!ready);
        assert!(
            text.contains(&format!(
                "tracker {b}: ACTIVE; peers hold changes for it 42s old"
            )),
            "{text}"
        );
    }
}
