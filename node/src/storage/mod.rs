//! The storage role: stores files in FastDFS's layout, serves upload, download
//! and delete, and reports to every tracker.

mod report;
pub mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::StorageConfig;
use crate::fileid::{self, RemoteName, Source};
use crate::proto::monitor::{StorageStats, counter};
use crate::proto::query::FileRequest;
use crate::proto::storage::{DownloadRequest, UPLOAD_HEAD_LEN, UploadHead, UploadResponse};
use crate::proto::{Command, Header, Status, StorageStatus};
use crate::server::{self, ConnError, Connection, Service};
use store::{CommitError, Store};

/// Shared state of one storage node.
#[derive(Debug)]
pub struct StorageNode {
    pub config: StorageConfig,
    pub store: Store,
    /// The address uploads are named after (the storage's own IPv4).
    source_ip: Mutex<Option<Ipv4Addr>>,
    /// The numeric storage id uploads are named after, when the trackers say so.
    server_id: Mutex<Option<u32>>,
    /// The port clients reach this storage on.
    pub port: u16,
    counters: Counters,
    /// Status each tracker last reported for this storage.
    pub tracker_view: Mutex<std::collections::BTreeMap<SocketAddr, StorageStatus>>,
    pub started_at: u64,
}

/// Operation counters reported to trackers in every BEAT.
#[derive(Debug)]
struct Counters([AtomicU64; crate::proto::monitor::COUNTER_COUNT]);

impl Counters {
    fn new() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
    fn add(&self, index: usize, n: u64) {
        self.0[index].fetch_add(n, Ordering::Relaxed);
    }
    /// Counts one operation: total always, success when `ok`.
    fn op(&self, total: usize, ok: bool) {
        self.add(total, 1);
        if ok {
            self.add(total + 1, 1);
        }
    }
}

/// Outcome of one request on a storage connection.
enum Next {
    Continue,
    /// Reply sent (or impossible); close as FastDFS does after EINVAL.
    Close,
}

/// A status reply, or a connection-level failure.
enum Failure {
    Status(Status),
    Conn(ConnError),
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Self {
        Failure::Conn(e)
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure::Status(s)
    }
}

fn io_status(e: &std::io::Error) -> Status {
    match e.kind() {
        std::io::ErrorKind::NotFound => Status::NotFound,
        std::io::ErrorKind::StorageFull => Status::NoSpace,
        std::io::ErrorKind::IsADirectory => Status::IsDirectory,
        std::io::ErrorKind::PermissionDenied => Status::PermissionDenied,
        _ => Status::Io,
    }
}

/// An opened download: file, offset, length, and the bytes when small enough to read at once.
type Opened = (std::fs::File, u64, u64, Option<Vec<u8>>);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Failure::Status(Status::Io))
}

impl StorageNode {
    pub fn new(
        config: StorageConfig,
        port: u16,
        bind_ip: Option<Ipv4Addr>,
    ) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let store = Store::open(&config)?;
        Ok(StorageNode {
            config,
            store,
            source_ip: Mutex::new(bind_ip),
            server_id: Mutex::new(None),
            port,
            counters: Counters::new(),
            tracker_view: Mutex::new(Default::default()),
            started_at: crate::unix_now(),
        })
    }

    /// The source new file names carry: the storage id with `id_type_in_filename=id`,
    /// otherwise the storage's IPv4 address.
    fn source_ip(&self) -> Source {
        if let Some(id) = *self.server_id.lock().unwrap_or_else(|e| e.into_inner()) {
            return Source::ServerId(id);
        }
        Source::Ip(
            self.source_ip
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(Ipv4Addr::LOCALHOST),
        )
    }

    /// Names new files after `id` (Some) or after the IP address (None).
    pub fn set_server_id(&self, id: Option<u32>) {
        *self.server_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    /// Learns the storage's own address from a tracker connection, when not bound to one.
    pub fn learn_source_ip(&self, ip: IpAddr) {
        let mut cur = self.source_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let (None, IpAddr::V4(v4)) = (*cur, ip) {
            *cur = Some(v4);
        }
    }

    /// Whether every tracker this storage reports to sees it ACTIVE.
    pub fn is_active_everywhere(&self) -> bool {
        let view = self.tracker_view.lock().unwrap_or_else(|e| e.into_inner());
        !view.is_empty() && view.values().all(|s| *s == StorageStatus::Active)
    }

    pub fn stats(&self) -> StorageStats {
        let mut s = StorageStats::default();
        for (dst, src) in s.counters.iter_mut().zip(self.counters.0.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        s
    }

    fn check_group(&self, group: &str) -> Result<(), Status> {
        if group == self.config.group_name {
            Ok(())
        } else {
            Err(Status::InvalidArgument)
        }
    }

    /// Bodies of non-streamed commands must fit in the buffer, as in FastDFS.
    async fn small_body(&self, conn: &mut Connection, header: &Header) -> Result<Vec<u8>, Failure> {
        if header.body_len >= self.config.buff_size {
            return Err(Failure::Status(Status::InvalidArgument));
        }
        Ok(conn.read_body(header.body_len).await?)
    }

    async fn upload(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: &Header,
    ) -> Result<Vec<u8>, Failure> {
        if header.body_len < UPLOAD_HEAD_LEN as u64 {
            return Err(Status::InvalidArgument.into());
        }
        let mut head_bytes = [0u8; UPLOAD_HEAD_LEN];
        conn.read_exact(&mut head_bytes).await?;
        let head = UploadHead::decode(&head_bytes).map_err(|e| e.status())?;
        if Some(header.body_len) != head.file_size.checked_add(UPLOAD_HEAD_LEN as u64)
            || !fileid::valid_ext(&head.ext)
        {
            return Err(Status::InvalidArgument.into());
        }
        let store_path = self.store.choose_path(head.store_path_index)?;
        // Refuse what cannot fit before reading a byte of it.
        if self
            .store
            .free_bytes(store_path)
            .is_some_and(|free| head.file_size > free)
        {
            return Err(Status::NoSpace.into());
        }
        let chunk = self.config.buff_size as usize;
        let source = self.source_ip();
        let size = head.file_size;
        let node = self.clone();
        let name = if size as usize <= chunk {
            let mut data = vec![0u8; size as usize];
            conn.read_exact(&mut data).await?;
            let ext = head.ext.clone();
            blocking(move || store::write_small(&node.store, store_path, source, &ext, &data))
                .await?
        } else {
            let s2 = node.clone();
            let (temp, file) = blocking(move || s2.store.create_temp(store_path))
                .await?
                .map_err(|e| Failure::Status(io_status(&e)))?;
            let mut hasher = crc32fast::Hasher::new();
            let mut remaining = size;
            let mut buf = vec![0u8; chunk];
            let mut file = Some(file);
            let mut write_error = None;
            while remaining > 0 {
                let want = chunk.min(remaining as usize);
                conn.read_exact(&mut buf[..want]).await?;
                remaining -= want as u64;
                if write_error.is_some() {
                    // Keep draining the body so the reply still lines up with the request.
                    continue;
                }
                hasher.update(&buf[..want]);
                let (mut f, b) = (file.take(), std::mem::take(&mut buf));
                let (f, b, r) = blocking(move || {
                    use std::io::Write;
                    let r = f
                        .as_mut()
                        .map(|f| f.write_all(&b[..want]))
                        .unwrap_or(Ok(()));
                    (f, b, r)
                })
                .await?;
                file = f;
                buf = b;
                if let Err(e) = r {
                    write_error = Some(io_status(&e));
                }
            }
            drop(file);
            if let Some(status) = write_error {
                return Err(status.into());
            }
            let crc = hasher.finalize();
            let ext = head.ext.clone();
            blocking(move || node.store.commit(temp, source, &ext, size, crc)).await?
        };
        let name = name.map_err(|e| match e {
            CommitError::NoUniqueName => Status::AlreadyExists,
            CommitError::Io(e) => io_status(&e),
        })?;
        self.counters.add(counter::SUCCESS_UPLOAD_BYTES, size);
        tracing::debug!(file = %name, size, "stored");
        Ok(UploadResponse {
            group: self.config.group_name.clone(),
            remote_filename: name.to_string(),
        }
        .encode())
    }

    async fn download(&self, conn: &mut Connection, header: &Header) -> Result<u64, Failure> {
        let body = self.small_body(conn, header).await?;
        let req = DownloadRequest::decode(&body).map_err(|e| e.status())?;
        self.check_group(&req.group)?;
        let name = RemoteName::parse(&req.remote_filename).map_err(|_| Status::InvalidArgument)?;
        let path = self.store.file_path(&name)?;
        let chunk = self.config.buff_size;
        let (offset, want) = (req.offset, req.length);
        // Open, size, and (for small ranges) read in one blocking step.
        let opened = blocking(move || -> Result<Opened, Status> {
            let file = std::fs::File::open(&path).map_err(|e| io_status(&e))?;
            let meta = file.metadata().map_err(|e| io_status(&e))?;
            if !meta.is_file() {
                return Err(Status::NotFound);
            }
            let size = meta.len();
            // V6.15.4 refuses offset ≥ size; a 0-byte file still downloads (as up to V6.15.3).
            if offset > size || (offset == size && size > 0) {
                return Err(Status::InvalidArgument);
            }
            let remain = size - offset;
            let len = if want == 0 { remain } else { want.min(remain) };
            let data = if len <= chunk {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, offset)
                    .map_err(|e| io_status(&e))?;
                Some(buf)
            } else {
                None
            };
            Ok((file, offset, len, data))
        })
        .await??;
        let (file, offset, len, data) = opened;
        if let Some(data) = data {
            conn.reply(Status::Ok, &data).await?;
            return Ok(len);
        }
        conn.write_all(&Header::response(Status::Ok, len).encode())
            .await?;
        let file = Arc::new(file);
        let mut pos = offset;
        let end = offset + len;
        let mut buf = vec![0u8; chunk as usize];
        while pos < end {
            let n = chunk.min(end - pos) as usize;
            let f = file.clone();
            let (b, r) = blocking(move || {
                let r = f.read_exact_at(&mut buf[..n], pos);
                (buf, r)
            })
            .await
            .map_err(|_| ConnError::Closed)?;
            buf = b;
            // A read failing mid-stream cannot be reported any more: close, as FastDFS does.
            r.map_err(ConnError::Io)?;
            conn.write_all(&buf[..n]).await?;
            pos += n as u64;
        }
        Ok(len)
    }

    async fn delete(&self, conn: &mut Connection, header: &Header) -> Result<Vec<u8>, Failure> {
        let body = self.small_body(conn, header).await?;
        let req = FileRequest::decode_any_len(&body).map_err(|e| e.status())?;
        self.check_group(&req.group)?;
        let name = RemoteName::parse(&req.remote_filename).map_err(|_| Status::InvalidArgument)?;
        let path = self.store.file_path(&name)?;
        blocking(move || store::delete(&path))
            .await?
            .map_err(|e| io_status(&e))?;
        tracing::debug!(file = %name, "deleted");
        Ok(Vec::new())
    }

    /// Handles one request; the reply has been written when this returns `Ok`.
    async fn handle(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: Header,
    ) -> Result<Next, ConnError> {
        let (result, total) = match header.cmd {
            Command::Quit => return Ok(Next::Close),
            Command::ActiveTest => {
                let r = if header.body_len == 0 {
                    Ok(Vec::new())
                } else {
                    Err(Status::InvalidArgument.into())
                };
                (r, None)
            }
            Command::UploadFile => (
                self.upload(conn, &header).await,
                Some(counter::TOTAL_UPLOAD),
            ),
            Command::DeleteFile => (
                self.delete(conn, &header).await,
                Some(counter::TOTAL_DELETE),
            ),
            Command::DownloadFile => {
                let r = self.download(conn, &header).await;
                if let Ok(n) = &r {
                    self.counters.add(counter::SUCCESS_DOWNLOAD_BYTES, *n);
                }
                self.counters.op(counter::TOTAL_DOWNLOAD, r.is_ok());
                match r {
                    Ok(_) => return Ok(Next::Continue),
                    Err(e) => (Err(e), None),
                }
            }
            other => {
                tracing::debug!(peer = %conn.peer, cmd = ?other, "unsupported command");
                (Err(Status::InvalidArgument.into()), None)
            }
        };
        if let Some(total) = total {
            self.counters.op(total, result.is_ok());
        }
        match result {
            Ok(body) => {
                conn.reply(Status::Ok, &body).await?;
                Ok(Next::Continue)
            }
            Err(Failure::Status(status)) => {
                conn.reply_error(status).await?;
                // The C storage closes after EINVAL; a failed upload may leave body bytes unread.
                let close = status == Status::InvalidArgument || header.cmd == Command::UploadFile;
                Ok(if close { Next::Close } else { Next::Continue })
            }
            Err(Failure::Conn(e)) => Err(e),
        }
    }
}

impl Service for StorageNode {
    async fn serve(self: Arc<Self>, mut conn: Connection, stop: CancellationToken) {
        // Streamed commands check their own lengths; others are capped by `small_body`.
        let max_body = u64::MAX >> 1;
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
            match self.handle(&mut conn, header).await {
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

/// A storage serving on a socket and reporting to its trackers.
#[derive(Debug)]
pub struct RunningStorage {
    pub addr: SocketAddr,
    pub node: Arc<StorageNode>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningStorage {
    /// Stops reporting and accepting, lets requests in flight finish for up to `drain`.
    pub async fn stop(self, drain: Duration) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(drain + Duration::from_secs(1), t).await;
        }
    }
}

/// Binds, opens the store paths and starts serving and reporting.
pub async fn start(config: StorageConfig) -> std::io::Result<RunningStorage> {
    let (listener, addr) = server::bind(&config.bind).await?;
    let bind_ip = match addr.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    };
    let cfg = config.clone();
    let node = tokio::task::spawn_blocking(move || StorageNode::new(cfg, addr.port(), bind_ip))
        .await
        .map_err(std::io::Error::other)??;
    let node = Arc::new(node);
    let stop = CancellationToken::new();
    tracing::info!(%addr, group = %config.group_name, "storage listening");
    let serve = tokio::spawn(server::run_listener(
        listener,
        node.clone(),
        config.max_connections,
        server::Timeouts {
            network: config.network_timeout(),
            idle: Duration::from_secs(config.idle_timeout.max(1)),
        },
        stop.clone(),
        Duration::from_secs(10),
    ));
    let reporter = tokio::spawn(report::run(node.clone(), bind_ip, stop.clone()));
    Ok(RunningStorage {
        addr,
        node,
        stop,
        tasks: vec![serve, reporter],
    })
}
