//! Async FastDFS client: asks a tracker where to go, then talks to the storage.
//!
//! Works against any FastDFS-protocol cluster (ours or the C servers). Used by
//! the `fdfs` CLI, the tests, the e2e harness and the operator.

pub mod conn;
pub mod migrate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use conn::{BodyCopyError, Conn};

use crate::fileid::{FileId, FileIdError};
use crate::proto::monitor::{GroupStat, ListStorageRequest, StorageStat};
use crate::proto::query::{FetchTarget, FileRequest, GroupRequest, StorageAddr, StoreTarget};
use crate::proto::report::{BacklogRow, SyncBacklogListing};
use crate::proto::storage::{
    ANY_STORE_PATH, DownloadRequest, FileInfo, MetaOp, SetMetadataRequest, SlaveHead,
    TruncateRequest, UploadHead, UploadResponse, WriteHead,
};
use crate::proto::{Command, ProtoError, Status};

/// Largest non-file reply the client accepts (monitor lists included).
const MAX_REPLY: u64 = 16 * 1024 * 1024;
/// Bytes per read/write step when streaming files.
const CHUNK: usize = 256 * 1024;

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: timed out {what}")]
    Timeout { addr: String, what: &'static str },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{op} {target}: server answered {status}")]
    Status {
        op: &'static str,
        target: String,
        status: Status,
    },
    #[error("{addr}: malformed reply: {source}")]
    Proto { addr: String, source: ProtoError },
    #[error("{addr}: reply carries command {cmd}, not 100")]
    NotAResponse { addr: String, cmd: u8 },
    #[error(transparent)]
    FileId(#[from] FileIdError),
    #[error("no tracker reachable at {0}")]
    NoTracker(String),
    #[error("local file {path}: {source}")]
    LocalFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: got {got} bytes, expected {expected}")]
    LengthMismatch {
        file: String,
        expected: u64,
        got: u64,
    },
    #[error("worker task failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl ClientError {
    /// The FastDFS status, when the server answered with one.
    pub fn status(&self) -> Option<Status> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How requests are written to the socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteProfile {
    /// TCP_NODELAY on, each request in one write (this client's own way).
    #[default]
    Single,
    /// As FastDFS's C and Java clients: Nagle on, an upload's header in one write and its
    /// file body in the next.
    Split,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Trackers as `host:port`.
    pub trackers: Vec<String>,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub write_profile: WriteProfile,
}

impl ClientConfig {
    pub fn new(trackers: Vec<String>) -> Self {
        ClientConfig {
            trackers,
            connect_timeout: Duration::from_secs(5),
            network_timeout: Duration::from_secs(30),
            write_profile: WriteProfile::Single,
        }
    }
}

/// A pooled, async FastDFS client.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    trackers: Vec<SocketAddr>,
    next_tracker: AtomicUsize,
    pool: Mutex<HashMap<SocketAddr, Vec<Conn>>>,
}

fn check(
    op: &'static str,
    target: &dyn std::fmt::Display,
    status: Status,
) -> Result<(), ClientError> {
    if status == Status::Ok {
        Ok(())
    } else {
        Err(ClientError::Status {
            op,
            target: target.to_string(),
            status,
        })
    }
}

fn storage_addr(addr: &StorageAddr) -> Result<SocketAddr, ClientError> {
    let port = u16::try_from(addr.port).map_err(|_| ClientError::Proto {
        addr: addr.ip.clone(),
        source: ProtoError::BadField {
            what: "storage address",
            reason: format!("port {}", addr.port),
        },
    })?;
    let ip = addr.ip.parse().map_err(|_| ClientError::Proto {
        addr: addr.ip.clone(),
        source: ProtoError::BadField {
            what: "storage address",
            reason: format!("ip {:?}", addr.ip),
        },
    })?;
    Ok(SocketAddr::new(ip, port))
}

impl Client {
    /// Resolves the tracker addresses (a name may stand for several trackers).
    pub async fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let mut trackers = Vec::new();
        for t in &config.trackers {
            trackers.extend(conn::resolve(t).await?);
        }
        if trackers.is_empty() {
            return Err(ClientError::NoTracker("(none configured)".into()));
        }
        Ok(Client {
            config,
            trackers,
            next_tracker: AtomicUsize::new(0),
            pool: Mutex::new(HashMap::new()),
        })
    }

    pub fn trackers(&self) -> &[SocketAddr] {
        &self.trackers
    }

    async fn checkout(&self, addr: SocketAddr) -> Result<Conn, ClientError> {
        let pooled = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            let idle = pool.get_mut(&addr);
            // Connections the server closed meanwhile are dropped, not tried.
            idle.and_then(|conns| std::iter::from_fn(|| conns.pop()).find(|c| !c.is_stale()))
        };
        match pooled {
            Some(c) => Ok(c),
            None => {
                let conn = Conn::connect(
                    addr,
                    self.config.connect_timeout,
                    self.config.network_timeout,
                    None,
                )
                .await?;
                if self.config.write_profile == WriteProfile::Split {
                    conn.set_nodelay(false);
                }
                Ok(conn)
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(conn.addr)
            .or_default()
            .push(conn);
    }

    /// Runs `f` on a pooled connection to `addr`, returning it to the pool unless it broke.
    async fn with_conn<T>(
        &self,
        addr: SocketAddr,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut conn = self.checkout(addr).await?;
        let r = f(&mut conn).await;
        // After any error the server may have closed or be mid-body: never reuse.
        if r.is_ok() {
            self.checkin(conn);
        }
        r
    }

    /// Sends one small request to a tracker, failing over to the next on network errors.
    pub async fn tracker_call(
        &self,
        cmd: Command,
        body: &[u8],
    ) -> Result<(Status, Vec<u8>), ClientError> {
        let start = self.next_tracker.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.trackers.len() {
            let addr = self.trackers[(start + i) % self.trackers.len()];
            let mut result = self
                .with_conn(addr, async |c| c.call(cmd, body, MAX_REPLY).await)
                .await;
            if matches!(result, Err(ClientError::Io { .. })) {
                // Pooled connections to a tracker that restarted are all stale: drop
                // them and try once on a fresh one.
                self.pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&addr);
                result = self
                    .with_conn(addr, async |c| c.call(cmd, body, MAX_REPLY).await)
                    .await;
            }
            match result {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::debug!(tracker = %addr, error = %e, "tracker failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::NoTracker("(none)".into())))
    }

    /// 101/104: where to upload.
    pub async fn query_store(&self, group: Option<&str>) -> Result<StoreTarget, ClientError> {
        let (cmd, body) = match group {
            Some(g) => (
                Command::QueryStoreWithGroupOne,
                GroupRequest { group: g.into() }.encode(),
            ),
            None => (Command::QueryStoreWithoutGroupOne, Vec::new()),
        };
        let (status, reply) = self.tracker_call(cmd, &body).await?;
        check("query store for group", &group.unwrap_or("(any)"), status)?;
        StoreTarget::decode(&reply).map_err(|source| ClientError::Proto {
            addr: "tracker".into(),
            source,
        })
    }

    async fn query_file(&self, cmd: Command, id: &FileId) -> Result<FetchTarget, ClientError> {
        let body = FileRequest {
            group: id.group.clone(),
            remote_filename: id.remote.to_string(),
        }
        .encode();
        let (status, reply) = self.tracker_call(cmd, &body).await?;
        check(
            if cmd == Command::QueryUpdate {
                "query update"
            } else {
                "query fetch"
            },
            id,
            status,
        )?;
        FetchTarget::decode(&reply).map_err(|source| ClientError::Proto {
            addr: "tracker".into(),
            source,
        })
    }

    /// 102: which storage to download from.
    pub async fn query_fetch(&self, id: &FileId) -> Result<FetchTarget, ClientError> {
        self.query_file(Command::QueryFetchOne, id).await
    }

    /// 103: which storage to update or delete on.
    pub async fn query_update(&self, id: &FileId) -> Result<FetchTarget, ClientError> {
        self.query_file(Command::QueryUpdate, id).await
    }

    /// Uploads `size` bytes read from `reader`, streaming.
    pub async fn upload_reader<R: AsyncRead + Unpin>(
        &self,
        reader: R,
        size: u64,
        ext: &str,
        group: Option<&str>,
    ) -> Result<FileId, ClientError> {
        self.upload_kind(Command::UploadFile, reader, size, ext, group)
            .await
    }

    /// Uploads an appender file (one that can later be appended to, modified, truncated).
    pub async fn upload_appender_reader<R: AsyncRead + Unpin>(
        &self,
        reader: R,
        size: u64,
        ext: &str,
        group: Option<&str>,
    ) -> Result<FileId, ClientError> {
        self.upload_kind(Command::UploadAppenderFile, reader, size, ext, group)
            .await
    }

    async fn upload_kind<R: AsyncRead + Unpin>(
        &self,
        cmd: Command,
        mut reader: R,
        size: u64,
        ext: &str,
        group: Option<&str>,
    ) -> Result<FileId, ClientError> {
        let target = self.query_store(group).await?;
        let addr = storage_addr(&target.addr)?;
        let head = UploadHead {
            store_path_index: target.store_path_index,
            file_size: size,
            ext: ext.to_owned(),
        };
        let reply = self
            .send_streamed(addr, cmd, &head.encode(), &mut reader, size, &"upload")
            .await?;
        upload_reply(addr, &reply)
    }

    /// Sends an UPLOAD_FILE to a given storage (`store_path_index` 0xFF lets it choose).
    pub async fn upload_to<R: AsyncRead + Unpin>(
        &self,
        addr: SocketAddr,
        head: UploadHead,
        reader: &mut R,
    ) -> Result<FileId, ClientError> {
        let size = head.file_size;
        let reply = self
            .send_streamed(
                addr,
                Command::UploadFile,
                &head.encode(),
                reader,
                size,
                &"upload",
            )
            .await?;
        upload_reply(addr, &reply)
    }

    /// Sends `prefix` then `size` bytes from `reader` as one request; returns the reply body.
    async fn send_streamed<R: AsyncRead + Unpin>(
        &self,
        addr: SocketAddr,
        cmd: Command,
        prefix: &[u8],
        reader: &mut R,
        size: u64,
        target: &(dyn std::fmt::Display + Sync),
    ) -> Result<Vec<u8>, ClientError> {
        self.with_conn(addr, async |c| {
            let total = prefix.len() as u64 + size;
            let mut left = size;
            let n = CHUNK.min(left as usize);
            let mut first = Vec::with_capacity(10 + prefix.len() + n);
            first.extend_from_slice(&crate::proto::Header::request(cmd, total).encode());
            first.extend_from_slice(prefix);
            let mut buf = vec![0u8; n.max(1)];
            read_full(reader, &mut buf[..n]).await?;
            left -= n as u64;
            if self.config.write_profile == WriteProfile::Split {
                c.write_all(&first).await?;
                c.write_all(&buf[..n]).await?;
            } else {
                // The first chunk rides with the header: small files go out in one write.
                first.extend_from_slice(&buf[..n]);
                c.write_all(&first).await?;
            }
            while left > 0 {
                let n = CHUNK.min(left as usize);
                read_full(reader, &mut buf[..n]).await?;
                c.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            let h = c.read_reply_header(MAX_REPLY).await?;
            let mut reply = vec![0u8; h.body_len as usize];
            c.read_exact(&mut reply).await?;
            check(op_name(cmd), target, h.status())?;
            Ok(reply)
        })
        .await
    }

    /// A small request to the storage that holds `id` (routed by 102 or 103).
    async fn storage_call(
        &self,
        id: &FileId,
        update: bool,
        cmd: Command,
        status: u8,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let target = if update {
            self.query_update(id).await?
        } else {
            self.query_fetch(id).await?
        };
        let addr = storage_addr(&target.addr)?;
        self.with_conn(addr, async |c| {
            c.send(cmd, status, body).await?;
            let h = c.read_reply_header(MAX_REPLY).await?;
            let mut reply = vec![0u8; h.body_len as usize];
            c.read_exact(&mut reply).await?;
            check(op_name(cmd), id, h.status())?;
            Ok(reply)
        })
        .await
    }

    /// Appends bytes to an appender file.
    pub async fn append_bytes(&self, id: &FileId, data: &[u8]) -> Result<(), ClientError> {
        self.write_appender(id, Command::AppendFile, None, data)
            .await
    }

    /// Overwrites bytes of an appender file at `offset`.
    pub async fn modify_bytes(
        &self,
        id: &FileId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ClientError> {
        self.write_appender(id, Command::ModifyFile, Some(offset), data)
            .await
    }

    /// APPEND_FILE (no offset) or MODIFY_FILE (with one) on the file's source storage.
    async fn write_appender(
        &self,
        id: &FileId,
        cmd: Command,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let target = self.query_update(id).await?;
        let addr = storage_addr(&target.addr)?;
        let name = id.remote.to_string();
        let head = WriteHead {
            name_len: name.len() as u64,
            offset,
            size: data.len() as u64,
        };
        let mut prefix = head.encode();
        prefix.extend_from_slice(name.as_bytes());
        self.send_streamed(addr, cmd, &prefix, &mut &data[..], data.len() as u64, id)
            .await?;
        Ok(())
    }

    /// Cuts an appender file to `new_size` bytes.
    pub async fn truncate(&self, id: &FileId, new_size: u64) -> Result<(), ClientError> {
        let body = TruncateRequest {
            new_size,
            remote_filename: id.remote.to_string(),
        }
        .encode();
        self.storage_call(id, true, Command::TruncateFile, 0, &body)
            .await
            .map(|_| ())
    }

    /// Turns an appender file into a normal file; returns its new ID.
    pub async fn regenerate_appender_name(&self, id: &FileId) -> Result<FileId, ClientError> {
        let reply = self
            .storage_call(
                id,
                true,
                Command::RegenerateAppenderFilename,
                0,
                id.remote.to_string().as_bytes(),
            )
            .await?;
        upload_reply(self.trackers[0], &reply)
    }

    /// Uploads a slave file (e.g. a thumbnail) named after `master` plus `prefix`.
    pub async fn upload_slave_bytes(
        &self,
        master: &FileId,
        prefix: &str,
        ext: &str,
        data: &[u8],
    ) -> Result<FileId, ClientError> {
        let target = self.query_update(master).await?;
        let addr = storage_addr(&target.addr)?;
        let name = master.remote.to_string();
        let head = SlaveHead {
            master_len: name.len() as u64,
            file_size: data.len() as u64,
            prefix: prefix.to_owned(),
            ext: ext.to_owned(),
        };
        let mut first = head.encode();
        first.extend_from_slice(name.as_bytes());
        let reply = self
            .send_streamed(
                addr,
                Command::UploadSlaveFile,
                &first,
                &mut &data[..],
                data.len() as u64,
                master,
            )
            .await?;
        upload_reply(addr, &reply)
    }

    /// Sets metadata: `merge` keeps existing keys, otherwise everything is replaced.
    pub async fn set_metadata(
        &self,
        id: &FileId,
        meta: &[u8],
        merge: bool,
    ) -> Result<(), ClientError> {
        let body = SetMetadataRequest {
            op: if merge {
                MetaOp::Merge
            } else {
                MetaOp::Overwrite
            },
            group: id.group.clone(),
            remote_filename: id.remote.to_string(),
            meta: meta.to_vec(),
        }
        .encode();
        self.storage_call(id, true, Command::SetMetadata, 0, &body)
            .await
            .map(|_| ())
    }

    /// The raw metadata blob of a file (ENOENT when it has none).
    pub async fn get_metadata(&self, id: &FileId) -> Result<Vec<u8>, ClientError> {
        let body = FileRequest {
            group: id.group.clone(),
            remote_filename: id.remote.to_string(),
        }
        .encode();
        self.storage_call(id, false, Command::GetMetadata, 0, &body)
            .await
    }

    /// Size, creation time, CRC-32 and source of a file, from its storage.
    pub async fn file_info(&self, id: &FileId) -> Result<FileInfo, ClientError> {
        let body = FileRequest {
            group: id.group.clone(),
            remote_filename: id.remote.to_string(),
        }
        .encode();
        let reply = self
            .storage_call(id, false, Command::QueryFileInfo, 0, &body)
            .await?;
        FileInfo::decode(&reply).map_err(|source| ClientError::Proto {
            addr: "storage".into(),
            source,
        })
    }

    /// Uploads an in-memory buffer.
    pub async fn upload_bytes(
        &self,
        data: &[u8],
        ext: &str,
        group: Option<&str>,
    ) -> Result<FileId, ClientError> {
        self.upload_reader(data, data.len() as u64, ext, group)
            .await
    }

    /// Uploads a local file, streaming it; `ext` defaults to the file's extension.
    pub async fn upload_file(
        &self,
        path: &Path,
        ext: Option<&str>,
        group: Option<&str>,
    ) -> Result<FileId, ClientError> {
        let local = |source| ClientError::LocalFile {
            path: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(local)?;
        let size = file.metadata().await.map_err(local)?.len();
        let ext = ext
            .map(str::to_owned)
            .or_else(|| path.extension().map(|e| e.to_string_lossy().into_owned()))
            .unwrap_or_default();
        self.upload_reader(tokio::io::BufReader::new(file), size, &ext, group)
            .await
    }

    /// Downloads `length` bytes (0 = to the end) from `offset` into `out`; returns the count.
    pub async fn download_to<W: AsyncWrite + Unpin>(
        &self,
        id: &FileId,
        offset: u64,
        length: u64,
        out: &mut W,
    ) -> Result<u64, ClientError> {
        let target = self.query_fetch(id).await?;
        let addr = storage_addr(&target.addr)?;
        self.download_from(addr, id, offset, length, out).await
    }

    /// DOWNLOAD_FILE against a given storage.
    pub async fn download_from<W: AsyncWrite + Unpin>(
        &self,
        addr: SocketAddr,
        id: &FileId,
        offset: u64,
        length: u64,
        out: &mut W,
    ) -> Result<u64, ClientError> {
        let body = DownloadRequest {
            offset,
            length,
            group: id.group.clone(),
            remote_filename: id.remote.to_string(),
        }
        .encode();
        self.with_conn(addr, async |c| {
            c.send(Command::DownloadFile, 0, &body).await?;
            let h = c.read_reply_header(u64::MAX >> 1).await?;
            check("download", id, h.status())?;
            if length != 0 && h.body_len > length {
                return Err(ClientError::Proto {
                    addr: addr.to_string(),
                    source: ProtoError::BadLength {
                        what: "download reply",
                        len: h.body_len as usize,
                    },
                });
            }
            c.copy_body_to(h.body_len, out).await.map_err(|e| match e {
                BodyCopyError::Read(e) => e,
                BodyCopyError::Write(source) => ClientError::LocalFile {
                    path: "output".into(),
                    source,
                },
            })?;
            Ok(h.body_len)
        })
        .await
    }

    /// Downloads into memory.
    pub async fn download_bytes(
        &self,
        id: &FileId,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        self.download_to(id, offset, length, &mut out).await?;
        Ok(out)
    }

    /// Downloads to a local file.
    pub async fn download_file(
        &self,
        id: &FileId,
        path: &Path,
        offset: u64,
        length: u64,
    ) -> Result<u64, ClientError> {
        let local = |source| ClientError::LocalFile {
            path: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::create(path).await.map_err(local)?;
        let mut w = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let n = self.download_to(id, offset, length, &mut w).await?;
        w.flush().await.map_err(local)?;
        Ok(n)
    }

    /// Deletes a file (103 then 12).
    pub async fn delete(&self, id: &FileId) -> Result<(), ClientError> {
        let target = self.query_update(id).await?;
        let addr = storage_addr(&target.addr)?;
        let body = FileRequest {
            group: id.group.clone(),
            remote_filename: id.remote.to_string(),
        }
        .encode();
        let (status, _) = self
            .with_conn(addr, async |c| {
                c.call(Command::DeleteFile, &body, MAX_REPLY).await
            })
            .await?;
        check("delete", id, status)
    }

    /// 91: every group's statistics.
    pub async fn list_groups(&self) -> Result<Vec<GroupStat>, ClientError> {
        let (status, reply) = self.tracker_call(Command::ServerListAllGroups, &[]).await?;
        check("list groups", &"tracker", status)?;
        GroupStat::decode_all(&reply).map_err(|source| ClientError::Proto {
            addr: "tracker".into(),
            source,
        })
    }

    /// 92: a group's storages.
    pub async fn list_storages(&self, group: &str) -> Result<Vec<StorageStat>, ClientError> {
        let body = ListStorageRequest {
            group: group.into(),
            storage_id: None,
        }
        .encode();
        let (status, reply) = self.tracker_call(Command::ServerListStorage, &body).await?;
        check("list storages of", &group, status)?;
        StorageStat::decode_all(&reply).map_err(|source| ClientError::Proto {
            addr: "tracker".into(),
            source,
        })
    }

    /// What the members of `group` last reported each peer has yet to receive from them
    /// (LIST_SYNC_BACKLOG, 241, not in FastDFS); `None` from a FastDFS tracker.
    pub async fn sync_backlog(&self, group: &str) -> Result<Option<Vec<BacklogRow>>, ClientError> {
        let body = GroupRequest {
            group: group.into(),
        }
        .encode();
        let (status, reply) = self
            .tracker_call(Command::ServerListSyncBacklog, &body)
            .await?;
        if status == Status::InvalidArgument {
            return Ok(None);
        }
        check("list sync backlog of", &group, status)?;
        SyncBacklogListing::decode(&reply)
            .map(|l| Some(l.rows))
            .map_err(|source| ClientError::Proto {
                addr: "tracker".into(),
                source,
            })
    }
}

/// The name used in errors for each storage command.
fn op_name(cmd: Command) -> &'static str {
    match cmd {
        Command::UploadFile => "upload",
        Command::UploadAppenderFile => "upload appender",
        Command::UploadSlaveFile => "upload slave of",
        Command::AppendFile => "append to",
        Command::ModifyFile => "modify",
        Command::TruncateFile => "truncate",
        Command::RegenerateAppenderFilename => "regenerate name of",
        Command::SetMetadata => "set metadata of",
        Command::GetMetadata => "get metadata of",
        Command::QueryFileInfo => "query info of",
        _ => "request",
    }
}

fn upload_reply(addr: SocketAddr, reply: &[u8]) -> Result<FileId, ClientError> {
    let r = UploadResponse::decode(reply).map_err(|source| ClientError::Proto {
        addr: addr.to_string(),
        source,
    })?;
    Ok(FileId::parse(&format!(
        "{}/{}",
        r.group, r.remote_filename
    ))?)
}

impl Client {
    /// Sends one request to every tracker (admin commands must reach them all);
    /// returns each tracker's status, or the error that kept it from answering.
    pub async fn call_every_tracker(
        &self,
        cmd: Command,
        body: &[u8],
    ) -> Vec<(SocketAddr, Result<Status, ClientError>)> {
        let mut out = Vec::with_capacity(self.trackers.len());
        for addr in &self.trackers {
            let r = self
                .with_conn(*addr, async |c| c.call(cmd, body, MAX_REPLY).await)
                .await
                .map(|(status, _)| status);
            out.push((*addr, r));
        }
        out
    }

    /// 93 to every tracker: remove a stopped storage.
    pub async fn delete_storage(
        &self,
        group: &str,
        id: &str,
    ) -> Vec<(SocketAddr, Result<Status, ClientError>)> {
        let body = crate::proto::cluster::GroupAndId {
            group: group.into(),
            id: id.into(),
        }
        .encode();
        self.call_every_tracker(Command::ServerDeleteStorage, &body)
            .await
    }

    /// This project's 243 to every tracker: no uploads to member `id` of `group` while
    /// `fenced` (FastDFS trackers answer EINVAL: they have no fence).
    pub async fn fence_storage(
        &self,
        group: &str,
        id: &str,
        fenced: bool,
    ) -> Vec<(SocketAddr, Result<Status, ClientError>)> {
        let body = crate::proto::cluster::FenceRequest {
            fenced,
            member: crate::proto::cluster::GroupAndId {
                group: group.into(),
                id: id.into(),
            },
        }
        .encode();
        self.call_every_tracker(Command::ServerFenceStorage, &body)
            .await
    }

    /// 108 to every tracker: remove a group without storages.
    pub async fn delete_group(
        &self,
        group: &str,
    ) -> Vec<(SocketAddr, Result<Status, ClientError>)> {
        let body = GroupRequest {
            group: group.into(),
        }
        .encode();
        self.call_every_tracker(Command::ServerDeleteGroup, &body)
            .await
    }

    /// 95: the leader tracker's `ip:port`.
    pub async fn leader(&self) -> Result<String, ClientError> {
        let (status, reply) = self.tracker_call(Command::ServerGetLeader, &[]).await?;
        check("get leader", &"tracker", status)?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }
}

async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), ClientError> {
    r.read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|source| ClientError::LocalFile {
            path: "input".into(),
            source,
        })
}

/// Store-path index that lets the storage choose.
pub const STORAGE_CHOOSES_PATH: u8 = ANY_STORE_PATH;
