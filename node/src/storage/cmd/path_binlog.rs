//! FETCH_ONE_PATH_BINLOG (26), the source side of disk recovery: the lines of
//! this storage's binlog that created a file still present in one store path.
//!
//! As FastDFS: only create, link and rename records (`C c L l R r`) of that path
//! are sent; a rename is sent as a create of its new name; a file that no longer
//! exists is left out; a record whose file turned out to be a symlink is sent as
//! a link with its target read from the disk (and the other way round). The
//! reply announces 2^58 bytes, streams the lines, ends with an 8-byte count of
//! the text bytes and the connection is closed.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::proto::sync::{FetchBinlog, STREAMED_BODY_LEN};
use crate::proto::{Header, Status};
use crate::server::{ConnError, Connection};
use crate::storage::binlog::{Op, Position, Record};
use crate::storage::{Failure, Handled, Reply, StorageNode};

use super::{CommandFamily, Context};

/// FETCH_ONE_PATH_BINLOG, its body read and decoded.
#[derive(Debug)]
pub(super) struct PathBinlog(FetchBinlog);

impl CommandFamily for PathBinlog {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure> {
        let body = ctx.node.small_body(ctx.conn, header).await?;
        let req = FetchBinlog::decode(&body).map_err(|e| e.status())?;
        ctx.node.check_group(&req.group)?;
        Ok(PathBinlog(req))
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Handled {
        Self::fetch_path_binlog(ctx.node, ctx.conn, self.0).await
    }
}

/// Binlog bytes read per step.
const STEP_BYTES: usize = 64 * 1024;

impl PathBinlog {
    async fn fetch_path_binlog(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        req: FetchBinlog,
    ) -> Handled {
        // FastDFS reads the index as a signed char: 0x80–0xFF are negative, so EINVAL too.
        let index = usize::from(req.store_path_index);
        if index >= node.disk.store().path_count() {
            return Err(Status::InvalidArgument.into());
        }
        tracing::info!(peer = %conn.peer, store_path = index, "sending a store path's binlog");
        conn.write_all(&Header::response(Status::Ok, STREAMED_BODY_LEN).encode())
            .await?;
        let mut pos = Position::default();
        let mut sent = 0u64;
        loop {
            let n = node.clone();
            // Nothing can be reported once the stream began: any failure closes, as FastDFS does.
            let (text, next) = crate::disk::run(move || Self::path_binlog_step(&n, pos, index))
                .await
                .map_err(std::io::Error::from)
                .and_then(|r| r)
                .map_err(|e| Failure::Conn(ConnError::Io(e)))?;
            if !text.is_empty() {
                conn.write_all(text.as_bytes()).await?;
                sent += text.len() as u64;
            }
            if next == pos {
                break;
            }
            pos = next;
        }
        conn.write_all(&sent.to_be_bytes()).await?;
        tracing::info!(peer = %conn.peer, store_path = index, bytes = sent, "store path's binlog sent");
        Ok(Reply::SentThenClose)
    }

    /// The slice lines of the binlog records from `from` on (blocking).
    fn path_binlog_step(
        node: &StorageNode,
        from: Position,
        index: usize,
    ) -> io::Result<(String, Position)> {
        let (records, next) = node.disk.binlog().read_from(from, STEP_BYTES)?;
        let mut text = String::new();
        for r in &records {
            if let Some(line) = Self::recovery_line(node, r, index)? {
                text.push_str(&line);
            }
        }
        Ok((text, next))
    }

    /// The line a recovering peer gets for `r`, if any.
    fn recovery_line(node: &StorageNode, r: &Record, index: usize) -> io::Result<Option<String>> {
        if !matches!(r.op, Op::Create | Op::Link | Op::Rename) {
            return Ok(None);
        }
        let Ok((name, path)) = node.locate(&r.name) else {
            return Ok(None);
        };
        if usize::from(name.store_path) != index {
            return Ok(None);
        }
        let mut line = Record {
            timestamp: r.timestamp,
            op: Op::Create,
            origin: r.origin,
            name: r.name.clone(),
            extra: None,
        };
        if name.trunk_slot().is_some() {
            // A file in a trunk slot (links included) is sent as a create, when still there.
            return Ok(node
                .disk
                .store()
                .open_file_blocking(&name)
                .is_ok()
                .then(|| line.to_line()));
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            let Some(target) = Self::link_target(node, &path, index)? else {
                return Ok(None);
            };
            line.op = Op::Link;
            line.extra = Some(target);
        }
        Ok(Some(line.to_line()))
    }

    /// `Mxx/HH/LL/name` of the file a stored symlink points at, when it is one of ours.
    fn link_target(node: &StorageNode, link: &Path, index: usize) -> io::Result<Option<String>> {
        let target = match std::fs::read_link(link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = node.disk.store().roots()[index].join("data");
        let Ok(rest) = target.strip_prefix(&data) else {
            tracing::warn!(link = %link.display(), target = %target.display(), "symlink not made by a storage; left out");
            return Ok(None);
        };
        if !target.exists() {
            tracing::warn!(link = %link.display(), target = %target.display(), "symlink target missing; left out");
            return Ok(None);
        }
        Ok(Some(format!("M{index:02X}/{}", rest.display())))
    }
}
