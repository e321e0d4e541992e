//! The receiving side of group replication: applies the storage → storage sync
//! commands a peer sends (9, 16–19, 25, 35, 37, 40), idempotently.
//!
//! Every applied change is written to our binlog in lower case with the source's
//! timestamp, and the file's mtime is set to it, as FastDFS does.

use std::io::Write;
use std::sync::Arc;

use crate::fsutil::rename_noreplace;
use crate::proto::sync::{
    SYNC_FILE_HEAD_LEN, SYNC_RANGE_HEAD_LEN, ServerIdReport, SyncDelete, SyncFileHead, SyncPair,
    SyncRangeHead,
};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::binlog::{Op, Record};
use crate::storage::store::unix_time;
use crate::storage::transfer::receive_into;
use crate::storage::{
    Failure, Handled, Reply, Session, StorageNode, blocking, io_failure, small_write,
    staging_failure,
};

use super::appender::Appender;
use super::{CommandFamily, Context, read_head};

/// Header status meaning "no content follows" in SYNC_CREATE/UPDATE.
const NO_CONTENT: u8 = 17;
/// Longest file name a sync command may carry.
const MAX_NAME: u64 = 256;

impl Replica {
    /// Remembers how far we got from a source, for SYNC_REPORT.
    fn synced_from(node: &StorageNode, session: &Session, ts: u32) {
        if let Some(src) = &session.sync_source {
            node.replication.received_from(src, ts);
        }
    }

    /// 16 / 18: a whole file from a peer.
    async fn sync_file(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        file: SyncedFile,
        session: &Session,
    ) -> Handled {
        let SyncedFile {
            head,
            name,
            update,
            no_content,
        } = file;
        let content = if no_content { 0 } else { head.file_size };
        let (name, path) = node.locate(&name)?;
        let ts = head.timestamp;
        let op = if update { Op::Update } else { Op::Create };
        if let Some(slot) = name.trunk_slot() {
            // Kept in the same slot of the same trunk file as on the sender. The size must
            // be the one the name carries before the body is taken into memory.
            let named_size = name.core().map(|c| c.file_size()).ok();
            if !no_content
                && (named_size != Some(head.file_size)
                    || head.file_size + crate::storage::trunk::HEADER_LEN > u64::from(slot.size))
            {
                return Err(Status::InvalidArgument.into());
            }
            let mut data = vec![0u8; content as usize];
            conn.read_exact(&mut data).await?;
            let n = node.clone();
            let record = Record::new(ts, op, name.to_string()).replica();
            // Without content, the sender saw the file here already.
            let stored = small_write(node, move || -> std::io::Result<Option<bool>> {
                let existing = n
                    .disk
                    .store()
                    .open_file_blocking(&name)
                    .ok()
                    .map(|o| o.size);
                if no_content {
                    return Ok(existing.map(|_| false));
                }
                if !update && existing == Some(data.len() as u64) {
                    // Here already, perhaps placed before a crash kept its binlog line
                    // from being written: the line is written now (a second one is
                    // harmless), or a later full copy from this member would miss it.
                    n.log_now(&[record]);
                    return Ok(Some(false));
                }
                n.disk
                    .store()
                    .write_trunk_file(&name, &data)
                    .unwrap_or_else(|| Err(std::io::ErrorKind::InvalidInput.into()))?;
                n.log_now(&[record]);
                Ok(Some(true))
            })
            .await?
            .map_err(io_failure("writing a replicated trunk slot"))?;
            Self::synced_from(node, session, ts);
            return match stored {
                Some(true) => {
                    node.count_sync(false, head.file_size, true);
                    Ok(Reply::Body(Vec::new()))
                }
                Some(false) => {
                    node.count_sync(false, head.file_size, false);
                    Err(Status::AlreadyExists.into())
                }
                None => Err(Status::NotFound.into()),
            };
        }
        if !no_content && head.file_size <= node.config.buff_size {
            // Small files, most of a sync stream: read first, then one trip to the blocking
            // pool checks, writes and renames.
            let mut data = vec![0u8; head.file_size as usize];
            conn.read_exact(&mut data).await?;
            let n = node.clone();
            let store_path = usize::from(name.store_path);
            let record = Record::new(ts, op, name.to_string()).replica();
            let stored = small_write(node, move || -> std::io::Result<bool> {
                let (temp, mut file) = n.disk.store().create_temp(store_path, path.parent())?;
                file.write_all(&data)?;
                let stored = if update {
                    temp.replace_stamped(file, &path, ts).map(|()| true)?
                } else {
                    temp.create_stamped(file, &path, ts, data.len() as u64)?
                };
                // Written even when the same file was here (a repeated push): see above.
                n.log_now(&[record]);
                Ok(stored)
            })
            .await?
            .map_err(io_failure("writing a replicated file"))?;
            Self::synced_from(node, session, ts);
            node.count_sync(false, head.file_size, stored);
            if !stored {
                return Err(Status::AlreadyExists.into());
            }
            return Ok(Reply::Body(Vec::new()));
        }
        let p = path.clone();
        let existing = blocking(move || std::fs::metadata(&p).ok().map(|m| m.len())).await?;
        if no_content {
            // The sender saw an identical file here already.
            return Err(if existing.is_some() {
                Status::AlreadyExists
            } else {
                Status::NotFound
            }
            .into());
        }
        if !update && existing == Some(head.file_size) {
            conn.discard(head.file_size).await?;
            node.count_sync(false, head.file_size, false);
            // Its binlog line may be missing (see the small files' case).
            node.log(&[Record::new(ts, op, name.to_string()).replica()])
                .await;
            Self::synced_from(node, session, head.timestamp);
            return Err(Status::AlreadyExists.into());
        }
        let n = node.clone();
        let store_path = usize::from(name.store_path);
        let dir = path.parent().map(std::path::Path::to_path_buf);
        let (temp, file) = blocking(move || n.disk.store().create_temp(store_path, dir.as_deref()))
            .await?
            .map_err(staging_failure)?;
        let (file, _) = receive_into(
            conn,
            file,
            0,
            head.file_size,
            node.config.buff_size as usize,
            node.disk.store().sync_policy(),
        )
        .await?;
        let (n, record) = (
            node.clone(),
            Record::new(ts, op, name.to_string()).replica(),
        );
        blocking(move || {
            temp.replace_stamped(file, &path, ts)?;
            n.log_now(&[record]);
            Ok::<_, std::io::Error>(())
        })
        .await?
        .map_err(io_failure("writing a replicated file"))?;
        node.count_sync(false, head.file_size, true);
        Self::synced_from(node, session, ts);
        Ok(Reply::Body(Vec::new()))
    }

    /// 17: a peer deleted a file.
    async fn sync_delete(node: &Arc<StorageNode>, req: SyncDelete, session: &Session) -> Handled {
        let (name, _) = node.locate(&req.name)?;
        let (n, doomed) = (node.clone(), name.clone());
        let removed = blocking(move || {
            let removed = n.disk.store().remove_replica(&doomed);
            n.disk.store().note_removed();
            removed
        })
        .await?;
        // A delete that failed here is not progress: the sender tries it again.
        if !matches!(&removed, Err(e) if e.kind() != std::io::ErrorKind::NotFound) {
            Self::synced_from(node, session, req.timestamp);
        }
        removed.map_err(io_failure("deleting a replicated file"))?;
        node.log(&[Record::new(req.timestamp, Op::Delete, name.to_string()).replica()])
            .await;
        Ok(Reply::Body(Vec::new()))
    }

    /// 25 / 35: bytes appended to or written into an appender file on a peer.
    async fn sync_range(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        head: SyncRangeHead,
        name: String,
        modify: bool,
        session: &Session,
    ) -> Handled {
        let (start, len) = (head.a, head.b);
        let (name, path) = node.locate(&name)?;
        // The whole range first: a push cut off mid-body changes nothing here either.
        let body = Appender::receive_body(node, conn, len, &name, &path).await?;
        let remote = name.to_string();
        let _one_writer = node.disk.lock(&remote).await;
        let (n, ts) = (node.clone(), head.timestamp);
        let applied = blocking(move || -> Result<(), Failure> {
            let f = std::fs::File::options().write(true).open(&path);
            let local = f
                .as_ref()
                .ok()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.len());
            let applies = match local {
                Some(size) if modify => size >= start,
                Some(size) => size == start,
                None => false,
            };
            if !applies {
                // ENOENT asks the sender for the whole file; EEXIST means we have it.
                let covered = local.is_some_and(|size| size >= start.saturating_add(len));
                return Err(if covered {
                    Status::AlreadyExists
                } else {
                    Status::NotFound
                }
                .into());
            }
            let f = f.map_err(io_failure("opening a replicated file"))?;
            if let Err(e) = body.write_to(&f, start, n.disk.store().sync_policy()) {
                if !modify {
                    // Undo a partial append so the file keeps its old content.
                    let _ = f.set_len(start);
                }
                return Err(io_failure("writing a replicated range")(e));
            }
            f.set_modified(unix_time(ts))
                .map_err(io_failure("stamping a replicated file"))?;
            let op = if modify { Op::Modify } else { Op::Append };
            n.log_now(&[Record::new(ts, op, remote)
                .with_extra(format!("{start} {len}"))
                .replica()]);
            Ok(())
        })
        .await?;
        node.count_sync(false, len, applied.is_ok());
        applied?;
        Self::synced_from(node, session, ts);
        Ok(Reply::Body(Vec::new()))
    }

    /// 37: a peer truncated an appender file.
    async fn sync_truncate(
        node: &Arc<StorageNode>,
        head: SyncRangeHead,
        name: String,
        session: &Session,
    ) -> Handled {
        let (name, path) = node.locate(&name)?;
        let (old, new, ts) = (head.a, head.b, head.timestamp);
        let _one_writer = node.disk.lock(&name.to_string()).await;
        let applied = blocking(move || -> std::io::Result<bool> {
            let Ok(f) = std::fs::File::options().write(true).open(&path) else {
                return Ok(false);
            };
            if f.metadata()?.len() != old {
                return Ok(false);
            }
            f.set_len(new)?;
            f.set_modified(unix_time(ts))?;
            Ok(true)
        })
        .await?
        .map_err(io_failure("truncating a replicated file"))?;
        Self::synced_from(node, session, ts);
        if !applied {
            return Err(Status::AlreadyExists.into());
        }
        node.log(&[Record::new(ts, Op::Truncate, name.to_string())
            .with_extra(format!("{old} {new}"))
            .replica()])
            .await;
        Ok(Reply::Body(Vec::new()))
    }

    /// 40: a peer renamed an appender file to its regenerated name.
    async fn sync_rename(
        node: &Arc<StorageNode>,
        req: SyncPair,
        body: Vec<u8>,
        session: &Session,
    ) -> Handled {
        let (new, new_path) = node.locate(&req.first)?;
        let (old, old_path) = node.locate(&req.second)?;
        let renamed = blocking(move || {
            // FastDFS checks the new name first: a rename that already happened here
            // answers EEXIST (done for the sender), not ENOENT (which makes a C
            // sender push the whole file again as SYNC_CREATE_FILE).
            if new_path.exists() {
                return Err(Status::AlreadyExists.into());
            }
            if !old_path.exists() {
                return Err(Status::NotFound.into());
            }
            rename_noreplace(&old_path, &new_path).map_err(io_failure("renaming a replicated file"))
        })
        .await?;
        if !matches!(renamed, Err(Failure::Io { .. })) {
            Self::synced_from(node, session, req.timestamp);
        }
        renamed?;
        node.log(&[Record::new(req.timestamp, Op::Rename, new.to_string())
            .with_extra(old.to_string())
            .replica()])
            .await;
        // FastDFS echoes the request body in an OK reply.
        Ok(Reply::Body(body))
    }

    /// 19: a peer created a slave link.
    async fn sync_link(node: &Arc<StorageNode>, req: SyncPair, session: &Session) -> Handled {
        let (link, link_path) = node.locate(&req.first)?;
        let (target, target_path) = node.locate(&req.second)?;
        let made = blocking(move || {
            if !target_path.exists() {
                return Err(Status::NotFound.into());
            }
            std::os::unix::fs::symlink(&target_path, &link_path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Status::AlreadyExists.into()
                } else {
                    io_failure("making a replicated link")(e)
                }
            })
        })
        .await?;
        if !matches!(made, Err(Failure::Io { .. })) {
            Self::synced_from(node, session, req.timestamp);
        }
        made?;
        node.log(&[Record::new(req.timestamp, Op::Link, link.to_string())
            .with_extra(target.to_string())
            .replica()])
            .await;
        Ok(Reply::Body(Vec::new()))
    }
}

/// A whole file pushed by a peer (16, 18), its head read; the content (none when the
/// sender saw the file here already) is still on the socket.
#[derive(Debug)]
pub(super) struct SyncedFile {
    head: SyncFileHead,
    name: String,
    update: bool,
    no_content: bool,
}

/// A change pushed by another member of the group, its head read and decoded.
#[derive(Debug)]
pub(super) enum Replica {
    /// 9: the peer names itself for the rest of this connection.
    ServerId(ServerIdReport),
    /// 16 and 18.
    File(SyncedFile),
    /// 17.
    Delete(SyncDelete),
    /// 25 and 35: `head.b` bytes at `head.a` follow.
    Range {
        head: SyncRangeHead,
        name: String,
        modify: bool,
    },
    /// 37: from `head.a` bytes to `head.b`.
    Truncate { head: SyncRangeHead, name: String },
    /// 40: the body is echoed in the reply, as FastDFS does.
    Rename { req: SyncPair, body: Vec<u8> },
    /// 19.
    Link(SyncPair),
}

/// A streamed sync command's body is its head, a name of 1 to [`MAX_NAME`] bytes and
/// `content` bytes, exactly.
fn check_lengths(
    header: &Header,
    head_len: usize,
    name_len: u64,
    content: u64,
) -> Result<(), Failure> {
    let expected = (head_len as u64)
        .checked_add(name_len)
        .and_then(|n| n.checked_add(content));
    if name_len == 0 || name_len > MAX_NAME || expected != Some(header.body_len) {
        return Err(Status::InvalidArgument.into());
    }
    Ok(())
}

/// Reads a sync command's file name (`len` bytes) from the socket.
async fn read_name(conn: &mut Connection, len: u64) -> Result<String, Failure> {
    let mut name = vec![0u8; len as usize];
    conn.read_exact(&mut name).await?;
    Ok(String::from_utf8(name).map_err(|_| Status::InvalidArgument)?)
}

impl CommandFamily for Replica {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure> {
        let (node, conn) = (ctx.node, &mut *ctx.conn);
        match header.cmd {
            Command::SyncCreateFile | Command::SyncUpdateFile => {
                let head = read_head::<SYNC_FILE_HEAD_LEN>(conn, header).await?;
                let head = SyncFileHead::decode(&head).map_err(|e| e.status())?;
                let no_content = header.status == NO_CONTENT;
                let content = if no_content { 0 } else { head.file_size };
                check_lengths(header, SYNC_FILE_HEAD_LEN, head.name_len, content)?;
                node.check_group(&head.group)?;
                let name = read_name(conn, head.name_len).await?;
                Ok(Replica::File(SyncedFile {
                    head,
                    name,
                    update: header.cmd == Command::SyncUpdateFile,
                    no_content,
                }))
            }
            Command::SyncAppendFile | Command::SyncModifyFile => {
                let head = read_head::<SYNC_RANGE_HEAD_LEN>(conn, header).await?;
                let head = SyncRangeHead::decode(&head).map_err(|e| e.status())?;
                check_lengths(header, SYNC_RANGE_HEAD_LEN, head.name_len, head.b)?;
                node.check_group(&head.group)?;
                let name = read_name(conn, head.name_len).await?;
                Ok(Replica::Range {
                    head,
                    name,
                    modify: header.cmd == Command::SyncModifyFile,
                })
            }
            _ => {
                let body = node.small_body(conn, header).await?;
                let decoded = |e: crate::proto::ProtoError| Failure::from(e.status());
                let parsed = match header.cmd {
                    Command::ReportServerId => {
                        return Ok(Replica::ServerId(
                            ServerIdReport::decode(&body).map_err(decoded)?,
                        ));
                    }
                    Command::SyncDeleteFile => {
                        let req = SyncDelete::decode(&body).map_err(decoded)?;
                        node.check_group(&req.group)?;
                        Replica::Delete(req)
                    }
                    Command::SyncTruncateFile => {
                        let head = SyncRangeHead::decode(&body).map_err(decoded)?;
                        let whole = (SYNC_RANGE_HEAD_LEN as u64).checked_add(head.name_len);
                        if whole != Some(body.len() as u64) {
                            return Err(Status::InvalidArgument.into());
                        }
                        node.check_group(&head.group)?;
                        let name = std::str::from_utf8(&body[SYNC_RANGE_HEAD_LEN..])
                            .map_err(|_| Status::InvalidArgument)?
                            .to_owned();
                        Replica::Truncate { head, name }
                    }
                    Command::SyncRenameFile => {
                        let req = SyncPair::decode(&body).map_err(decoded)?;
                        node.check_group(&req.group)?;
                        Replica::Rename { req, body }
                    }
                    Command::SyncCreateLink => {
                        let req = SyncPair::decode(&body).map_err(decoded)?;
                        node.check_group(&req.group)?;
                        Replica::Link(req)
                    }
                    _ => return Err(Status::InvalidArgument.into()),
                };
                Ok(parsed)
            }
        }
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Handled {
        let (node, session) = (ctx.node, &mut *ctx.session);
        match self {
            Replica::ServerId(report) => {
                session.sync_source = Some(report.storage_id);
                Ok(Reply::Body(Vec::new()))
            }
            Replica::File(file) => Self::sync_file(node, ctx.conn, file, session).await,
            Replica::Delete(req) => Self::sync_delete(node, req, session).await,
            Replica::Range { head, name, modify } => {
                Self::sync_range(node, ctx.conn, head, name, modify, session).await
            }
            Replica::Truncate { head, name } => {
                Self::sync_truncate(node, head, name, session).await
            }
            Replica::Rename { req, body } => Self::sync_rename(node, req, body, session).await,
            Replica::Link(req) => Self::sync_link(node, req, session).await,
        }
    }
}
