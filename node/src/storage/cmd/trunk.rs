//! Trunk space and the trunk binlog (27–33): the requests are read here, the handlers live
//! with the trunk state in `storage::trunking`.

use crate::proto::trunk::{TrunkAllocRequest, TrunkBlockRequest};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::trunking::MAX_BINLOG_PUSH;
use crate::storage::{Failure, Handled};

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
            Trunk::Alloc(req) => node.trunk_alloc_space(req).await,
            Trunk::SpaceBack { req, written } => node.trunk_space_back(req, written).await,
            Trunk::Binlog { cmd, body } => node.trunk_binlog_command(cmd, body).await,
        }
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
