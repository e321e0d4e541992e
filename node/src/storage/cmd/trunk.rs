//! Trunk space and the trunk binlog (27–33), served by the group's trunk server from the
//! space `storage::trunking` keeps.

use std::sync::Arc;

use crate::proto::trunk::{TrunkAllocRequest, TrunkBlockRequest};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::trunking::{MAX_BINLOG_PUSH, TrunkServer};
use crate::storage::{Failure, Handled, Reply, StorageNode, blocking, io_failure};

use super::{CommandFamily, Context};

/// A trunk request, its body read and decoded.
#[derive(Debug)]
pub(super) enum Trunk {
    /// 27: a slot for a member of the group.
    Alloc(TrunkAllocRequest),
    /// 28 (`written`: the header's status says the slot was written) and 29.
    SpaceBack {
        req: TrunkBlockRequest,
        written: bool,
    },
    /// 30 (the binlog bytes pushed), 31, 32 and 33 (no body).
    Binlog { cmd: Command, body: Vec<u8> },
}

impl CommandFamily for Trunk {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure> {
        let conn = &mut *ctx.conn;
        match header.cmd {
            Command::TrunkAllocSpace => {
                let body = read_exact_body(conn, header, 21).await?;
                let req = TrunkAllocRequest::decode(&body).map_err(|e| e.status())?;
                Ok(Trunk::Alloc(req))
            }
            Command::TrunkAllocConfirm | Command::TrunkFreeSpace => {
                let body = read_exact_body(conn, header, 31).await?;
                let req = TrunkBlockRequest::decode(&body).map_err(|e| e.status())?;
                let written = header.cmd == Command::TrunkAllocConfirm
                    && matches!(header.status(), Status::Ok | Status::AlreadyExists);
                Ok(Trunk::SpaceBack { req, written })
            }
            Command::TrunkSyncBinlog
            | Command::TrunkGetBinlogSize
            | Command::TrunkDeleteBinlogMarks
            | Command::TrunkTruncateBinlogFile => {
                let len_ok = if header.cmd == Command::TrunkSyncBinlog {
                    (1..=MAX_BINLOG_PUSH).contains(&header.body_len)
                } else {
                    header.body_len == 0
                };
                if !len_ok {
                    return Err(Status::InvalidArgument.into());
                }
                let mut body = vec![0u8; header.body_len as usize];
                conn.read_exact(&mut body).await?;
                Ok(Trunk::Binlog {
                    cmd: header.cmd,
                    body,
                })
            }
            _ => Err(Status::InvalidArgument.into()),
        }
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Handled {
        let node = ctx.node;
        match self {
            Trunk::Alloc(req) => Self::alloc_space(node, req).await,
            Trunk::SpaceBack { req, written } => Self::space_back(node, req, written).await,
            Trunk::Binlog { cmd, body } => Self::binlog_command(node, cmd, body).await,
        }
    }
}

impl Trunk {
    /// 27: a slot from our free space, for a member of the group.
    async fn alloc_space(node: &Arc<StorageNode>, req: TrunkAllocRequest) -> Handled {
        if req.group != node.config.group_name
            || usize::from(req.store_path) >= node.disk.store().path_count()
        {
            return Err(Status::InvalidArgument.into());
        }
        let block = node
            .on_free_space(move |s, store| s.alloc(store, req.store_path, req.size))
            .await?
            .map_err(trunk_status)?;
        Ok(Reply::Body(block.encode()))
    }

    /// 28 (header status: how the write went) and 29: a slot comes back unless written.
    async fn space_back(node: &Arc<StorageNode>, req: TrunkBlockRequest, written: bool) -> Handled {
        if req.group != node.config.group_name || !node.holds_place_of(&req.block) {
            return Err(Status::InvalidArgument.into());
        }
        let block = req.block;
        node.on_free_space(move |s, _| if written { Ok(()) } else { s.give_back(block) })
            .await?
            .map_err(trunk_status)?;
        Ok(Reply::Body(Vec::new()))
    }

    /// Where we keep the trunk binlog a FastDFS trunk server pushes to its group (30), apart
    /// from our own: it is not replayed when we become the trunk server (its last lines
    /// may never have arrived), so no slot it records is given twice.
    fn pushed_trunk_binlog(node: &StorageNode) -> std::path::PathBuf {
        node.config.base_path.join("data/trunk/binlog.pushed")
    }

    /// 30, 31, 32, 33: the trunk binlog exchanges of a FastDFS trunk server with the other
    /// members, and of a FastDFS tracker choosing a trunk server. EINVAL with trunk storage
    /// off, and for 30, 32 and 33 while we are the trunk server, as FastDFS answers.
    async fn binlog_command(node: &Arc<StorageNode>, cmd: Command, body: Vec<u8>) -> Handled {
        let server = node.trunk.server() == Some(TrunkServer::Me);
        if node.trunk.params().is_none() || (server && cmd != Command::TrunkGetBinlogSize) {
            return Err(Status::InvalidArgument.into());
        }
        let n = node.clone();
        let reply = blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::Write;
            let pushed = Self::pushed_trunk_binlog(&n);
            match cmd {
                Command::TrunkGetBinlogSize => {
                    let own = n.config.base_path.join("data/trunk/binlog");
                    let size = std::fs::metadata(own).map(|m| m.len()).unwrap_or(0);
                    Ok(size.to_be_bytes().to_vec())
                }
                Command::TrunkSyncBinlog => {
                    if let Some(dir) = pushed.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&pushed)?
                        .write_all(&body)?;
                    Ok(Vec::new())
                }
                Command::TrunkTruncateBinlogFile => match std::fs::remove_file(&pushed) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(Vec::new()),
                },
                // DELETE_BINLOG_MARKS: we keep no marks of a pushed binlog.
                _ => Ok(Vec::new()),
            }
        })
        .await?
        .map_err(io_failure("serving the trunk binlog"))?;
        Ok(Reply::Body(reply))
    }
}

/// The status a member gets when the trunk server cannot do what it asked.
fn trunk_status(e: std::io::Error) -> Failure {
    match e.kind() {
        // Not the trunk server: FastDFS answers EINVAL.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput => {
            Status::InvalidArgument.into()
        }
        std::io::ErrorKind::AlreadyExists => Status::AlreadyExists.into(),
        _ => io_failure("trunk space")(e),
    }
}

/// Reads a trunk request body of exactly `len` bytes. Any address `allow_hosts` admits may
/// ask, as with FastDFS: its storages send these from an address of the host, not
/// necessarily the one they are known by (and a client that may delete files gains nothing
/// by freeing their space instead).
async fn read_exact_body(
    conn: &mut Connection,
    header: &Header,
    len: usize,
) -> Result<Vec<u8>, Failure> {
    if header.body_len != len as u64 {
        return Err(Status::InvalidArgument.into());
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    Ok(body)
}
