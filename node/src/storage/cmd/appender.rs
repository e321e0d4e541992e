//! Appender files: APPEND_FILE (24), MODIFY_FILE (34), TRUNCATE_FILE (36) and
//! REGENERATE_APPENDER_FILENAME (38).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fileid::{BASE64_LEN, RemoteName};
use crate::fsutil::SyncPolicy;
use crate::fsutil::rename_noreplace;
use crate::proto::storage::{TruncateRequest, UploadResponse, WriteHead};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::binlog::{Op, Record};
use crate::storage::store::NewName;
use crate::storage::transfer::{file_crc32, receive_into};
use crate::storage::{Failure, Handled, Reply, StorageNode, blocking, io_failure, staging_failure};

use super::{CommandFamily, Context};

/// Appender names are normal-length names: 44 bytes, at most 127.
const NAME_LEN: std::ops::RangeInclusive<u64> = 44..=127;
/// Attempts at a fresh name when regenerating.
const NAME_ATTEMPTS: usize = 10;

impl Appender {
    /// Resolves an appender file: the name must carry the appender flag.
    fn locate_appender(node: &StorageNode, remote: &str) -> Result<(RemoteName, PathBuf), Status> {
        let (name, path) = node.locate(remote)?;
        let core = name.core().map_err(|_| Status::InvalidArgument)?;
        if !core.is_appender() || name.is_slave().unwrap_or(true) {
            return Err(Status::InvalidArgument);
        }
        Ok((name, path))
    }

    async fn read_write_head(
        conn: &mut Connection,
        header: &Header,
        modify: bool,
    ) -> Result<(WriteHead, String), Failure> {
        let head_len = WriteHead::len(modify);
        if header.body_len < head_len as u64 {
            return Err(Status::InvalidArgument.into());
        }
        let mut head_bytes = vec![0u8; head_len];
        conn.read_exact(&mut head_bytes).await?;
        let head = WriteHead::decode(&head_bytes, modify).map_err(|e| e.status())?;
        let expected = (head_len as u64)
            .checked_add(head.name_len)
            .and_then(|n| n.checked_add(head.size));
        if !NAME_LEN.contains(&head.name_len) || expected != Some(header.body_len) {
            return Err(Status::InvalidArgument.into());
        }
        let mut name = vec![0u8; head.name_len as usize];
        conn.read_exact(&mut name).await?;
        let name = String::from_utf8(name).map_err(|_| Status::InvalidArgument)?;
        Ok((head, name))
    }

    /// Receives a write's whole body before anything is changed: in memory when it fits
    /// the buffer, otherwise staged beside the target. A connection lost mid-body thus
    /// changes nothing, and no lock waits on a slow client.
    pub(super) async fn receive_body(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        size: u64,
        name: &RemoteName,
        path: &Path,
    ) -> Result<Received, Failure> {
        if size <= node.config.buff_size {
            let mut data = vec![0u8; size as usize];
            conn.read_exact(&mut data).await?;
            return Ok(Received::Memory(data));
        }
        let (n, store_path) = (node.clone(), usize::from(name.store_path));
        let dir = path.parent().map(Path::to_path_buf);
        let (temp, file) = blocking(move || n.disk.store().create_temp(store_path, dir.as_deref()))
            .await?
            .map_err(staging_failure)?;
        let chunk = node.config.buff_size as usize;
        let (file, _) = receive_into(conn, file, 0, size, chunk, SyncPolicy::Never).await?;
        // Never named: the open file is all that is needed, and all that remains.
        drop(temp);
        Ok(Received::Staged(file, size))
    }

    /// 24: adds bytes at the end of an appender file.
    async fn append(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        head: WriteHead,
        name: String,
    ) -> Handled {
        let (appender, path) = Self::locate_appender(node, &name)?;
        if head.size == 0 {
            return Ok(Reply::Body(Vec::new()));
        }
        let body = Self::receive_body(node, conn, head.size, &appender, &path).await?;
        let remote = appender.to_string();
        let _one_writer = node.disk.lock(&remote).await;
        let (n, size) = (node.clone(), head.size);
        blocking(move || -> std::io::Result<()> {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            // The end is read under the lock: concurrent appends each get their own.
            let old_len = f.metadata()?.len();
            if let Err(e) = body.write_to(&f, old_len, n.disk.store().sync_policy()) {
                // Undo a partial append so the file keeps its old content.
                let _ = f.set_len(old_len);
                return Err(e);
            }
            n.log_now(&[Record::new(crate::unix_now() as u32, Op::Append, remote)
                .with_extra(format!("{old_len} {size}"))]);
            Ok(())
        })
        .await?
        .map_err(io_failure("appending to the file"))?;
        node.count_bytes(Command::AppendFile, head.size);
        Ok(Reply::Body(Vec::new()))
    }

    /// 34: overwrites bytes of an appender file at an offset (may extend it).
    async fn modify(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        head: WriteHead,
        name: String,
    ) -> Handled {
        let offset = head.offset.unwrap_or(0);
        let (appender, path) = Self::locate_appender(node, &name)?;
        let p = path.clone();
        let len = blocking(move || std::fs::metadata(&p).map(|m| m.len()))
            .await?
            .map_err(io_failure("reading the appender file's size"))?;
        if offset > len {
            return Err(Status::InvalidArgument.into());
        }
        let body = Self::receive_body(node, conn, head.size, &appender, &path).await?;
        let remote = appender.to_string();
        let _one_writer = node.disk.lock(&remote).await;
        let (n, size) = (node.clone(), head.size);
        blocking(move || -> Result<(), Failure> {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_failure("opening the appender file"))?;
            // Checked again: a truncate may have come first.
            let len = f
                .metadata()
                .map_err(io_failure("reading the appender file's size"))?
                .len();
            if offset > len {
                return Err(Status::InvalidArgument.into());
            }
            if let Err(e) = body.write_to(&f, offset, n.disk.store().sync_policy()) {
                // Cut back what the write added past the old end. The bytes it overwrote
                // before that cannot be put back: they are logged as modified, so the
                // group's other copies get what this one now holds.
                let _ = f.set_len(len);
                let changed = size.min(len - offset);
                if changed > 0 {
                    n.log_now(&[Record::new(crate::unix_now() as u32, Op::Modify, remote)
                        .with_extra(format!("{offset} {changed}"))]);
                }
                return Err(io_failure("modifying the appender file")(e));
            }
            n.log_now(&[Record::new(crate::unix_now() as u32, Op::Modify, remote)
                .with_extra(format!("{offset} {size}"))]);
            Ok(())
        })
        .await??;
        node.count_bytes(Command::ModifyFile, head.size);
        Ok(Reply::Body(Vec::new()))
    }

    /// 36: cuts (or, as FastDFS does, extends) an appender file to a new size.
    async fn truncate(node: &Arc<StorageNode>, req: TruncateRequest) -> Handled {
        let (appender, path) = Self::locate_appender(node, &req.remote_filename)?;
        let new_size = req.new_size;
        let _one_writer = node.disk.lock(&appender.to_string()).await;
        let old_size = blocking(move || -> std::io::Result<u64> {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            let old = f.metadata()?.len();
            if old != new_size {
                f.set_len(new_size)?;
            }
            Ok(old)
        })
        .await?
        .map_err(io_failure("truncating the appender file"))?;
        if old_size != new_size {
            let extra = format!("{old_size} {new_size}");
            node.log(&[
                Record::new(crate::unix_now() as u32, Op::Truncate, appender.to_string())
                    .with_extra(extra),
            ])
            .await;
        }
        Ok(Reply::Body(Vec::new()))
    }

    /// 38: renames an appender file to a normal name (CRC, size and time of now).
    async fn regenerate(node: &Arc<StorageNode>, remote: String) -> Handled {
        let (name, path) = Self::locate_appender(node, &remote)?;
        let _one_writer = node.disk.lock(&name.to_string()).await;
        let suffix = name.name.get(BASE64_LEN..).unwrap_or_default().to_owned();
        let n = node.clone();
        let source = node.source();
        let chunk = node.config.buff_size as usize;
        let renamed = blocking(move || -> Result<RemoteName, Failure> {
            let reading = io_failure("reading the appender file");
            let file =
                std::fs::File::open(&path).map_err(io_failure("opening the appender file"))?;
            let size = file
                .metadata()
                .map_err(io_failure("reading the appender file's size"))?
                .len();
            let crc32 = file_crc32(&file, chunk).map_err(reading)?;
            let spec = NewName {
                source,
                ext: String::new(),
                suffix: Some(suffix),
                size,
                crc32,
                appender: false,
            };
            let now = crate::unix_now() as u32;
            for _ in 0..NAME_ATTEMPTS {
                let new = n.disk.store().generate_name(
                    usize::from(name.store_path),
                    &spec,
                    now,
                    Some((name.hh, name.ll)),
                );
                let target = n.disk.store().file_path(&new)?;
                match rename_noreplace(&path, &target) {
                    Ok(()) => return Ok(new),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io_failure("renaming the appender file")(e)),
                }
            }
            Err(Status::AlreadyExists.into())
        })
        .await??;
        tracing::debug!(old = %remote, new = %renamed, "regenerated appender name");
        let ts = renamed
            .core()
            .map(|c| c.timestamp)
            .unwrap_or_else(|_| crate::unix_now() as u32);
        node.log(&[Record::new(ts, Op::Rename, renamed.to_string()).with_extra(remote.clone())])
            .await;
        Ok(Reply::Body(
            UploadResponse {
                group: node.config.group_name.clone(),
                remote_filename: renamed.to_string(),
            }
            .encode(),
        ))
    }
}

/// A write's body, received in full.
pub(super) enum Received {
    Memory(Vec<u8>),
    /// In a staged file that is never named (dropped, it leaves nothing), and its length.
    Staged(std::fs::File, u64),
}

impl Received {
    /// Writes the body into `target` at `at` (blocking), synced by `policy`.
    pub(super) fn write_to(
        &self,
        target: &std::fs::File,
        at: u64,
        policy: SyncPolicy,
    ) -> std::io::Result<()> {
        match self {
            Received::Memory(data) => target.write_all_at(data, at)?,
            Received::Staged(src, len) => {
                let len = *len;
                let (mut from, mut to) = (0u64, at);
                while from < len {
                    let step = usize::try_from(len - from)
                        .unwrap_or(usize::MAX)
                        .min(1 << 30);
                    let n = rustix::fs::copy_file_range(
                        src,
                        Some(&mut from),
                        target,
                        Some(&mut to),
                        step,
                    )?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
        if policy.on_commit() {
            target.sync_data()?;
        }
        Ok(())
    }
}

/// A command on an appender file, its head read and decoded; the bytes to write are still
/// on the socket.
#[derive(Debug)]
pub(super) enum Appender {
    /// 24: `head.size` bytes to add at the end of `name`.
    Append { head: WriteHead, name: String },
    /// 34: `head.size` bytes to write at `head.offset`.
    Modify { head: WriteHead, name: String },
    /// 36.
    Truncate(TruncateRequest),
    /// 38: the appender file to give a normal name.
    Regenerate(String),
}

impl CommandFamily for Appender {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure> {
        let (node, conn) = (ctx.node, &mut *ctx.conn);
        match header.cmd {
            Command::AppendFile => {
                let (head, name) = Self::read_write_head(conn, header, false).await?;
                Ok(Appender::Append { head, name })
            }
            Command::ModifyFile => {
                let (head, name) = Self::read_write_head(conn, header, true).await?;
                Ok(Appender::Modify { head, name })
            }
            Command::TruncateFile => {
                let body = node.small_body(conn, header).await?;
                let req = TruncateRequest::decode(&body).map_err(|e| e.status())?;
                if !NAME_LEN.contains(&(req.remote_filename.len() as u64)) {
                    return Err(Status::InvalidArgument.into());
                }
                Ok(Appender::Truncate(req))
            }
            Command::RegenerateAppenderFilename => {
                let body = node.small_body(conn, header).await?;
                if !NAME_LEN.contains(&(body.len() as u64)) {
                    return Err(Status::InvalidArgument.into());
                }
                let remote = String::from_utf8(body).map_err(|_| Status::InvalidArgument)?;
                Ok(Appender::Regenerate(remote))
            }
            _ => Err(Status::InvalidArgument.into()),
        }
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Handled {
        let node = ctx.node;
        match self {
            Appender::Append { head, name } => Self::append(node, ctx.conn, head, name).await,
            Appender::Modify { head, name } => Self::modify(node, ctx.conn, head, name).await,
            Appender::Truncate(req) => Self::truncate(node, req).await,
            Appender::Regenerate(remote) => Self::regenerate(node, remote).await,
        }
    }
}
