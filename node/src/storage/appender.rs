//! Appender files: APPEND_FILE (24), MODIFY_FILE (34), TRUNCATE_FILE (36) and
//! REGENERATE_APPENDER_FILENAME (38).

use std::path::PathBuf;
use std::sync::Arc;

use super::binlog::{Op, Record};
use super::store::{NewName, io_status, rename_noreplace};
use super::transfer::{file_crc32, receive_into};
use super::{Failure, Handled, Reply, StorageNode, blocking};
use crate::fileid::{BASE64_LEN, RemoteName};
use crate::proto::storage::{TruncateRequest, UploadResponse, WriteHead};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;

/// Appender names are normal-length names: 44 bytes, at most 127.
const NAME_LEN: std::ops::RangeInclusive<u64> = 44..=127;
/// Attempts at a fresh name when regenerating.
const NAME_ATTEMPTS: usize = 10;

impl StorageNode {
    /// Resolves an appender file: the name must carry the appender flag.
    fn locate_appender(&self, remote: &str) -> Result<(RemoteName, PathBuf), Status> {
        let (name, path) = self.locate(remote)?;
        let core = name.core().map_err(|_| Status::InvalidArgument)?;
        if !core.is_appender() || name.is_slave().unwrap_or(true) {
            return Err(Status::InvalidArgument);
        }
        Ok((name, path))
    }

    async fn read_write_head(
        &self,
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

    /// 24: adds bytes at the end of an appender file.
    pub(super) async fn append(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: &Header,
    ) -> Handled {
        let (head, name) = self.read_write_head(conn, header, false).await?;
        let (appender, path) = self.locate_appender(&name)?;
        let opened = blocking(move || -> std::io::Result<(std::fs::File, u64)> {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            let len = f.metadata()?.len();
            Ok((f, len))
        })
        .await?;
        let (file, old_len) = opened.map_err(|e| Failure::Status(io_status(&e)))?;
        if head.size == 0 {
            return Ok(Reply::Body(Vec::new()));
        }
        match receive_into(
            conn,
            file.try_clone()
                .map_err(|e| Failure::Status(io_status(&e)))?,
            old_len,
            head.size,
            self.config.buff_size as usize,
            self.store.sync_policy(),
        )
        .await
        {
            Ok(_) => {
                let extra = format!("{old_len} {}", head.size);
                self.log(&[Record::new(
                    crate::unix_now() as u32,
                    Op::Append,
                    appender.to_string(),
                )
                .with_extra(extra)])
                    .await;
                self.count_bytes(Command::AppendFile, head.size);
                Ok(Reply::Body(Vec::new()))
            }
            Err(e) => {
                // Undo a partial append so the file keeps its old content.
                let _ = blocking(move || file.set_len(old_len)).await;
                Err(e)
            }
        }
    }

    /// 34: overwrites bytes of an appender file at an offset (may extend it).
    pub(super) async fn modify(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: &Header,
    ) -> Handled {
        let (head, name) = self.read_write_head(conn, header, true).await?;
        let offset = head.offset.unwrap_or(0);
        let (appender, path) = self.locate_appender(&name)?;
        let opened = blocking(move || -> std::io::Result<(std::fs::File, u64)> {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            let len = f.metadata()?.len();
            Ok((f, len))
        })
        .await?;
        let (file, len) = opened.map_err(|e| Failure::Status(io_status(&e)))?;
        if offset > len {
            return Err(Status::InvalidArgument.into());
        }
        receive_into(
            conn,
            file,
            offset,
            head.size,
            self.config.buff_size as usize,
            self.store.sync_policy(),
        )
        .await?;
        let extra = format!("{offset} {}", head.size);
        self.log(&[
            Record::new(crate::unix_now() as u32, Op::Modify, appender.to_string())
                .with_extra(extra),
        ])
        .await;
        self.count_bytes(Command::ModifyFile, head.size);
        Ok(Reply::Body(Vec::new()))
    }

    /// 36: cuts (or, as FastDFS does, extends) an appender file to a new size.
    pub(super) async fn truncate(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: &Header,
    ) -> Handled {
        let body = self.small_body(conn, header).await?;
        let req = TruncateRequest::decode(&body).map_err(|e| e.status())?;
        if !NAME_LEN.contains(&(req.remote_filename.len() as u64)) {
            return Err(Status::InvalidArgument.into());
        }
        let (appender, path) = self.locate_appender(&req.remote_filename)?;
        let new_size = req.new_size;
        let old_size = blocking(move || -> std::io::Result<u64> {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            let old = f.metadata()?.len();
            if old != new_size {
                f.set_len(new_size)?;
            }
            Ok(old)
        })
        .await?
        .map_err(|e| Failure::Status(io_status(&e)))?;
        if old_size != new_size {
            let extra = format!("{old_size} {new_size}");
            self.log(&[
                Record::new(crate::unix_now() as u32, Op::Truncate, appender.to_string())
                    .with_extra(extra),
            ])
            .await;
        }
        Ok(Reply::Body(Vec::new()))
    }

    /// 38: renames an appender file to a normal name (CRC, size and time of now).
    pub(super) async fn regenerate(
        self: &Arc<Self>,
        conn: &mut Connection,
        header: &Header,
    ) -> Handled {
        let body = self.small_body(conn, header).await?;
        if !NAME_LEN.contains(&(body.len() as u64)) {
            return Err(Status::InvalidArgument.into());
        }
        let remote = String::from_utf8(body).map_err(|_| Status::InvalidArgument)?;
        let (name, path) = self.locate_appender(&remote)?;
        let suffix = name.name.get(BASE64_LEN..).unwrap_or_default().to_owned();
        let node = self.clone();
        let source = self.source();
        let chunk = self.config.buff_size as usize;
        let renamed = blocking(move || -> Result<RemoteName, Status> {
            let file = std::fs::File::open(&path).map_err(|e| io_status(&e))?;
            let size = file.metadata().map_err(|e| io_status(&e))?.len();
            let crc32 = file_crc32(&file, chunk).map_err(|e| io_status(&e))?;
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
                let new = node.store.generate_name(
                    usize::from(name.store_path),
                    &spec,
                    now,
                    Some((name.hh, name.ll)),
                );
                let target = node.store.file_path(&new)?;
                match rename_noreplace(&path, &target) {
                    Ok(()) => return Ok(new),
                    Err(super::store::CommitError::Exists) => continue,
                    Err(e) => return Err(e.status()),
                }
            }
            Err(Status::AlreadyExists)
        })
        .await??;
        tracing::debug!(old = %remote, new = %renamed, "regenerated appender name");
        let ts = renamed
            .core()
            .map(|c| c.timestamp)
            .unwrap_or_else(|_| crate::unix_now() as u32);
        self.log(&[Record::new(ts, Op::Rename, renamed.to_string()).with_extra(remote.clone())])
            .await;
        Ok(Reply::Body(
            UploadResponse {
                group: self.config.group_name.clone(),
                remote_filename: renamed.to_string(),
            }
            .encode(),
        ))
    }
}
