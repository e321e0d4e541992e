//! Trunk storage on this member: which member is the group's trunk server, how an upload
//! gets a slot (from our own free space when we are the trunk server, else from it with
//! TRUNK_ALLOC_SPACE and ALLOC_CONFIRM), how a deleted file's slot goes back (FREE_SPACE),
//! and the trunk server's side of those three commands (27, 28, 29).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::trunk_space::{FreeSpace, TrunkFiles, TrunkParams};
use super::{Failure, StorageNode, blocking};
use crate::client::{ClientError, Conn};
use crate::fileid::RemoteName;
use crate::proto::report::StorageBrief;
use crate::proto::trunk::{TrunkAllocRequest, TrunkBlock, TrunkBlockRequest};
use crate::proto::{Command, Status};

/// Trunk file ids reserved with the leader at a time.
const RESERVE_AHEAD: u32 = 4;
/// More are reserved once fewer than this many are left.
const RESERVE_LOW: u32 = 2;

/// Which member hands out the group's trunk space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkServer {
    Me,
    Peer(SocketAddr),
}

/// This member's trunk state.
#[derive(Debug, Default)]
pub struct Trunking {
    /// The trackers' trunk rules; `None` while trunk storage is off.
    params: Mutex<Option<TrunkParams>>,
    server: Mutex<Option<TrunkServer>>,
    /// Our free space, opened on first use while we are the trunk server.
    space: Mutex<Option<FreeSpace>>,
    /// The highest trunk file id the trackers know of.
    floor: AtomicU32,
    /// Whether the leader told us that id since we became the trunk server: until then
    /// we give out no space, so no trunk file id is made twice.
    floor_known: AtomicBool,
    /// Trunk file ids up to this one are ours to make: the leader has acknowledged them
    /// (REPORT_TRUNK_FID) before we make any of them, so a trunk server that takes over
    /// after we die, even before our next report, numbers its files past every file we made.
    reserved: AtomicU32,
    /// Wakes the report loops to reserve more ids before they run out.
    report_wanted: tokio::sync::Notify,
    /// When an upload last warned that it got no slot (unix seconds).
    last_warned: AtomicU64,
    /// Idle connections to the trunk server.
    idle: Mutex<Vec<Conn>>,
}

/// A trunk server's space at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkFigures {
    /// The newest trunk file id.
    pub file_id: u32,
    pub free_bytes: u64,
    pub free_blocks: usize,
}

/// Why an upload gets no trunk slot (it is then stored as a file of its own).
#[derive(Debug, thiserror::Error)]
pub enum TrunkError {
    #[error("the group has no trunk server yet")]
    NoServer,
    #[error("trunk space: {0}")]
    Disk(#[from] std::io::Error),
    #[error("trunk server: {0}")]
    Server(#[from] ClientError),
    #[error("trunk server gave a slot that does not fit: {0:?}")]
    BadSlot(TrunkBlock),
}

impl Trunking {
    /// Resolves when we, the trunk server, run short of reserved trunk file ids and the
    /// report sessions should reserve more.
    pub async fn report_wanted(&self) {
        self.report_wanted.notified().await;
    }

    pub fn params(&self) -> Option<TrunkParams> {
        *self.params.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_params(&self, params: Option<TrunkParams>) {
        *self.params.lock().unwrap_or_else(|e| e.into_inner()) = params;
    }

    pub fn server(&self) -> Option<TrunkServer> {
        *self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up the trunk server a tracker announced. Returns whether we became it.
    pub fn set_server(&self, server: Option<TrunkServer>) -> bool {
        let mut cur = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if *cur == server {
            return false;
        }
        tracing::info!(old = ?*cur, new = ?server, "trunk server changed");
        *cur = server;
        self.floor_known.store(false, Ordering::Relaxed);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if server != Some(TrunkServer::Me) {
            // Our free space is reopened from the binlog if we are chosen again.
            *self.space.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        server == Some(TrunkServer::Me)
    }

    /// Takes up the highest trunk file id the leader knows of (FETCH_TRUNK_FID).
    pub fn raise_floor(&self, floor: u32) {
        self.floor.fetch_max(floor, Ordering::Relaxed);
        if let Some(space) = self
            .space
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            space.raise_floor(floor);
        }
        self.floor_known.store(true, Ordering::Relaxed);
    }

    /// Whether we are the trunk server and may give out space: the leader told us the
    /// highest trunk file id it knows and acknowledged ids past it for us.
    pub fn serving(&self) -> bool {
        self.server() == Some(TrunkServer::Me)
            && self.floor_known.load(Ordering::Relaxed)
            && self.reserved.load(Ordering::Relaxed) > self.floor.load(Ordering::Relaxed)
    }

    /// Whether the leader has told us its highest trunk file id since we became the trunk
    /// server.
    pub fn floor_known(&self) -> bool {
        self.floor_known.load(Ordering::Relaxed)
    }

    /// The trunk file id to reserve next with the leader, when the reserved ones run low:
    /// [`RESERVE_AHEAD`] past the newest one made (or the leader's floor).
    pub fn reservation_wanted(&self) -> Option<u32> {
        let made = self
            .own_figures()
            .map_or(0, |f| f.file_id)
            .max(self.floor.load(Ordering::Relaxed));
        let reserved = self.reserved.load(Ordering::Relaxed);
        if reserved >= made.saturating_add(RESERVE_LOW) {
            None
        } else {
            Some(made.saturating_add(RESERVE_AHEAD))
        }
    }

    /// Whether an upload without a slot should say so now: once every 10 seconds.
    pub fn time_to_warn(&self, now: u64) -> bool {
        let last = self.last_warned.load(Ordering::Relaxed);
        now >= last + 10
            && self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The leader acknowledged trunk file ids up to `id`.
    pub fn reserve(&self, id: u32) {
        self.reserved.fetch_max(id, Ordering::Relaxed);
    }

    /// Our trunk space while we are the trunk server (once it is opened).
    pub fn own_figures(&self) -> Option<TrunkFigures> {
        let space = self.space.lock().unwrap_or_else(|e| e.into_inner());
        space.as_ref().map(|s| TrunkFigures {
            file_id: s.last_file_id(),
            free_bytes: s.free_bytes(),
            free_blocks: s.free_block_count(),
        })
    }

    /// The compaction count of our trunk binlog, once our free space is open.
    pub fn binlog_generation(&self) -> Option<u64> {
        let space = self.space.lock().unwrap_or_else(|e| e.into_inner());
        space.as_ref().map(|s| s.generation())
    }

    /// Runs `f` on our free space (a disk step), opening it from the binlog first.
    /// `NotFound` when we are not the trunk server.
    fn with_space<T>(
        &self,
        base_path: &std::path::Path,
        files: &dyn TrunkFiles,
        f: impl FnOnce(&mut FreeSpace) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        if !self.serving() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        let params = self.params().ok_or(std::io::ErrorKind::NotFound)?;
        let mut space = self.space.lock().unwrap_or_else(|e| e.into_inner());
        if space.as_ref().is_none_or(|s| s.params() != params) {
            let floor = self.floor.load(Ordering::Relaxed);
            *space = Some(FreeSpace::open(base_path, params, floor, files)?);
        }
        let Some(s) = space.as_mut() else {
            return Err(std::io::ErrorKind::NotFound.into());
        };
        let reserved = self.reserved.load(Ordering::Relaxed);
        s.set_id_limit(reserved);
        let out = f(s);
        if reserved < s.last_file_id().saturating_add(RESERVE_LOW) {
            self.report_wanted.notify_waiters();
        }
        out
    }
}

/// The trunk server a heartbeat reply names: us, a peer, or none (an empty brief).
pub fn server_from_brief(brief: &StorageBrief, own_ip: &str, own_port: u16) -> Option<TrunkServer> {
    if brief.ip.is_empty() || brief.port == 0 {
        return None;
    }
    if brief.ip == own_ip && brief.port == u32::from(own_port) {
        return Some(TrunkServer::Me);
    }
    let ip = brief.ip.parse().ok()?;
    Some(TrunkServer::Peer(SocketAddr::new(ip, brief.port as u16)))
}

impl TrunkFiles for super::store::Store {
    /// Decided by the id alone, so every member that made or holds trunk file `id` has it
    /// in the same place, and a new trunk server skips an id it finds there.
    fn dirs_for(&self, _store_path: u8, id: u32) -> (u8, u8) {
        let (hh, ll) = crate::fileid::hashed_subdirs(&format!("{id:06}"), self.subdir_count());
        (hh as u8, ll as u8)
    }

    fn root(&self, store_path: u8) -> Option<&std::path::Path> {
        self.roots()
            .get(usize::from(store_path))
            .map(|p| p.as_path())
    }

    fn path_count(&self) -> u8 {
        u8::try_from(super::store::Store::path_count(self)).unwrap_or(u8::MAX)
    }

    fn durable(&self) -> bool {
        self.sync_policy().on_commit()
    }
}

/// The block a trunk-stored file's name points at.
pub fn block_of(name: &RemoteName) -> Option<TrunkBlock> {
    let slot = name.trunk_slot()?;
    Some(TrunkBlock {
        store_path: name.store_path,
        hh: name.hh,
        ll: name.ll,
        id: slot.id,
        offset: slot.offset,
        size: slot.size,
    })
}

impl StorageNode {
    /// A slot for a new file of `size` bytes on `store_path`, when trunk storage is on
    /// and the file is small enough; `Ok(None)` when it is to be stored plain.
    pub(super) async fn trunk_slot_for(
        self: &Arc<Self>,
        store_path: usize,
        size: u64,
    ) -> Result<Option<TrunkBlock>, TrunkError> {
        let Some(params) = self.trunk.params() else {
            return Ok(None);
        };
        if !params.fits(size) {
            return Ok(None);
        }
        let need = (size + super::trunk::HEADER_LEN) as u32;
        let path = store_path as u8;
        let block = match self.trunk.server().ok_or(TrunkError::NoServer)? {
            TrunkServer::Me => self
                .on_free_space(move |s, store| s.alloc(store, path, need))
                .await
                .map_err(|_| TrunkError::Disk(std::io::ErrorKind::Other.into()))??,
            TrunkServer::Peer(addr) => {
                let req = TrunkAllocRequest {
                    group: self.config.group_name.clone(),
                    size: need,
                    store_path: path,
                };
                let reply = self
                    .call_trunk_server(addr, Command::TrunkAllocSpace, 0, &req.encode())
                    .await?;
                TrunkBlock::decode(&reply).map_err(|source| {
                    TrunkError::Server(ClientError::Proto {
                        addr: addr.to_string(),
                        source,
                    })
                })?
            }
        };
        if block.store_path != path || block.size < need || !self.holds_place_of(&block) {
            return Err(TrunkError::BadSlot(block));
        }
        Ok(Some(block))
    }

    /// Tells the trunk server how the write into `block` went: a slot that was not
    /// written goes back to the free space.
    pub(super) async fn trunk_confirm(self: &Arc<Self>, block: TrunkBlock, written: bool) {
        if written && self.trunk.server() == Some(TrunkServer::Me) {
            // Our own slots were taken when given out.
            return;
        }
        let status = if written { 0 } else { u8::from(Status::Io) };
        self.trunk_tell(Command::TrunkAllocConfirm, status, block)
            .await;
    }

    /// Returns the slot of a deleted file to the trunk server.
    pub(super) async fn trunk_release(self: &Arc<Self>, block: TrunkBlock) {
        self.trunk_tell(Command::TrunkFreeSpace, 0, block).await;
    }

    /// ALLOC_CONFIRM with a failed write, or FREE_SPACE: the block goes back. A failure
    /// costs only the slot's space, so it is logged, not passed on.
    async fn trunk_tell(self: &Arc<Self>, cmd: Command, status: u8, block: TrunkBlock) {
        let outcome = match self.trunk.server() {
            None => Err(TrunkError::NoServer),
            Some(TrunkServer::Me) => {
                if cmd == Command::TrunkAllocConfirm && status == 0 {
                    return;
                }
                self.on_free_space(move |s, _| s.give_back(block))
                    .await
                    .map_err(|_| TrunkError::Disk(std::io::ErrorKind::Other.into()))
                    .and_then(|r| r.map_err(TrunkError::Disk))
            }
            Some(TrunkServer::Peer(addr)) => {
                let req = TrunkBlockRequest {
                    group: self.config.group_name.clone(),
                    block,
                };
                self.call_trunk_server(addr, cmd, status, &req.encode())
                    .await
                    .map(drop)
                    .map_err(TrunkError::Server)
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(?cmd, ?block, error = %e, "trunk slot not returned; its space stays taken");
        }
    }

    /// Runs `f` on our free space as a disk step; `NotFound` when we are not the trunk
    /// server.
    pub(super) async fn on_free_space<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut FreeSpace, &super::store::Store) -> std::io::Result<T> + Send + 'static,
    ) -> Result<std::io::Result<T>, Failure> {
        let node = self.clone();
        blocking(move || {
            node.trunk
                .with_space(&node.config.base_path, node.disk.store(), |s| {
                    f(s, node.disk.store())
                })
        })
        .await
    }

    /// Whether `block` names a store path and directory this storage has.
    pub(super) fn holds_place_of(&self, block: &TrunkBlock) -> bool {
        let subdirs = self.disk.store().subdir_count();
        usize::from(block.store_path) < self.disk.store().path_count()
            && u32::from(block.hh) < subdirs
            && u32::from(block.ll) < subdirs
    }

    /// One request to the trunk server on a pooled connection.
    async fn call_trunk_server(
        &self,
        addr: SocketAddr,
        cmd: Command,
        status: u8,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let pooled = {
            let mut idle = self.trunk.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|c| c.addr == addr && !c.is_stale());
            idle.pop()
        };
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect(addr).await?,
        };
        conn.send(cmd, status, body).await?;
        let header = conn.read_reply_header(1024).await?;
        let mut reply = vec![0u8; header.body_len as usize];
        conn.read_exact(&mut reply).await?;
        self.trunk
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        match header.status() {
            Status::Ok => Ok(reply),
            s => Err(ClientError::Status {
                op: "trunk server",
                target: format!("{cmd:?}"),
                status: s,
            }),
        }
    }
}

/// Most bytes of trunk binlog one TRUNK_SYNC_BINLOG carries (FastDFS sends up to 64 KiB).
pub(super) const MAX_BINLOG_PUSH: u64 = 1024 * 1024;
