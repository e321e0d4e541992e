//! UPLOAD_FILE (11), UPLOAD_APPENDER_FILE (23) and UPLOAD_SLAVE_FILE (21).

use std::sync::Arc;

use crate::fileid::{self, FORMATTED_EXT_LEN, RemoteName};
use crate::proto::storage::{
    SLAVE_HEAD_LEN, SlaveHead, UPLOAD_HEAD_LEN, UploadHead, UploadResponse,
};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::binlog::{Op, Record};
use crate::storage::store::{CommitError, NewName, write_small};
use crate::storage::transfer::receive_into;
use crate::storage::{Failure, Handled, Reply, StorageNode, blocking, io_failure, small_write};

use super::{CommandFamily, Context, read_head};

/// Longest master name a slave upload may carry.
const MAX_MASTER_LEN: u64 = 127;

/// Derives a slave file name from its master's (protocol notes §4.5).
pub fn slave_name(master: &RemoteName, prefix: &str, ext: &str) -> Result<RemoteName, Status> {
    // A name ending in `-m` is a file's metadata (the master's own, for a prefix like
    // `.jpg-m`), which no slave may overwrite.
    if prefix.is_empty() || (prefix.ends_with("-m") && ext.is_empty()) {
        return Err(Status::InvalidArgument);
    }
    let base = &master.name;
    // Drop a dot (and what follows) found within the last 7 characters.
    let tail_start = base.len().saturating_sub(FORMATTED_EXT_LEN);
    let stem = match base[tail_start..].find('.') {
        Some(i) => &base[..tail_start + i],
        None => base.as_str(),
    };
    let mut name = format!("{stem}{prefix}");
    if !ext.is_empty() {
        name.push('.');
        name.push_str(ext);
    }
    let slave = RemoteName::parse(&format!(
        "M{:02X}/{:02X}/{:02X}/{name}",
        master.store_path, master.hh, master.ll
    ))
    .map_err(|_| Status::InvalidArgument)?;
    if slave == *master {
        Err(Status::InvalidArgument)
    } else {
        Ok(slave)
    }
}

/// The binlog line of a new file, stamped with the time its name carries.
fn created(name: &RemoteName) -> Record {
    let ts = name
        .core()
        .map(|c| c.timestamp)
        .unwrap_or_else(|_| crate::unix_now() as u32);
    Record::new(ts, Op::Create, name.to_string())
}

fn valid_prefix(prefix: &str) -> bool {
    prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Upload {
    /// 11 and 23: a new file named by this storage.
    async fn upload(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        head: UploadHead,
        appender: bool,
    ) -> Handled {
        let size = head.file_size;
        let store_path =
            node.disk
                .store()
                .choose_path(head.store_path_index, size, &node.disk.path_policy())?;
        let chunk = node.config.buff_size as usize;
        let mut spec = NewName {
            source: node.source(),
            ext: head.ext,
            suffix: None,
            size,
            crc32: 0,
            appender,
        };
        let trunk_fits = !appender && node.trunk.params().is_some_and(|p| p.fits(size));
        // The file and its binlog line are written in one disk step.
        let name = if trunk_fits || size <= chunk as u64 {
            let mut data = vec![0u8; size as usize];
            conn.read_exact(&mut data).await?;
            spec.crc32 = crc32fast::hash(&data);
            Ok(Self::store_small(node, store_path, spec, data).await?)
        } else {
            let n = node.clone();
            let (temp, file) = blocking(move || n.disk.store().create_new(store_path))
                .await?
                .map_err(io_failure("creating the upload's file"))?;
            let (file, crc) =
                receive_into(conn, file, 0, size, chunk, node.disk.store().sync_policy()).await?;
            spec.crc32 = crc;
            let n = node.clone();
            blocking(move || {
                let name = n.disk.store().commit(temp, file, &spec)?;
                n.log_new_file(&name, created(&name))?;
                Ok::<_, CommitError>(name)
            })
            .await?
        };
        let name = name?;
        node.count_bytes(Command::UploadFile, size);
        tracing::debug!(file = %name, size, appender, "stored");
        Ok(Reply::Body(
            UploadResponse {
                group: node.config.group_name.clone(),
                remote_filename: name.to_string(),
            }
            .encode(),
        ))
    }

    /// Stores a small new file in a trunk slot, or as a file of its own when no slot can
    /// be had (no trunk server yet, or it cannot be reached): the upload never fails for
    /// want of trunk space.
    async fn store_small(
        node: &Arc<StorageNode>,
        store_path: usize,
        spec: NewName,
        data: Vec<u8>,
    ) -> Result<RemoteName, Failure> {
        let started = crate::unix_now() as u32;
        let slot = if spec.appender {
            Ok(None)
        } else {
            node.trunk_slot_for(store_path, spec.size).await
        };
        match slot {
            Ok(Some(block)) => {
                let name = node.disk.store().trunk_name(&spec, block, started);
                let (n, stored) = (node.clone(), name.clone());
                let written = small_write(node, move || {
                    let r = n.disk.store().write_trunk_file(&stored, &data);
                    let r = r.unwrap_or_else(|| Err(std::io::ErrorKind::InvalidInput.into()));
                    if r.is_ok() {
                        n.disk.store().note_written(store_path, spec.size);
                        // Unlogged, the slot is freed again and handed back.
                        return n.log_new_file(&stored, created(&stored));
                    }
                    r
                })
                .await?;
                node.trunk_confirm(block, written.is_ok()).await;
                written.map_err(io_failure("writing the upload"))?;
                return Ok(name);
            }
            Ok(None) => {}
            Err(e) => {
                node.metrics.trunk_fallbacks.inc();
                // Once every 10 s at most: while the trunk server is away every small
                // upload lands here (the metric counts them all).
                if node.trunk.time_to_warn(crate::unix_now()) {
                    tracing::warn!(error = %e, "no trunk slot; small files are stored on their own");
                }
            }
        }
        let n = node.clone();
        small_write(node, move || {
            let name = write_small(n.disk.store(), store_path, &spec, &data)?;
            n.log_new_file(&name, created(&name))?;
            Ok::<_, CommitError>(name)
        })
        .await?
        .map_err(Failure::from)
    }

    /// 21: a file named after its master plus a prefix, e.g. a thumbnail.
    async fn upload_slave(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        head: SlaveHead,
        master: &str,
    ) -> Handled {
        let (master, _) = node.locate(master)?;
        let slave = slave_name(&master, &head.prefix, &head.ext)?;
        let slave_path = node.disk.store().file_path(&slave)?;
        let (n, m, sp) = (node.clone(), master.clone(), slave_path.clone());
        // The master may be a file of its own or a slot in a trunk file.
        let (master_exists, slave_exists) =
            blocking(move || (n.disk.store().open_file_blocking(&m).is_ok(), sp.exists())).await?;
        if !master_exists {
            return Err(Status::NotFound.into());
        }
        if slave_exists {
            return Err(Status::AlreadyExists.into());
        }
        let store_path = usize::from(master.store_path);
        let n = node.clone();
        let dir = slave_path.parent().map(std::path::Path::to_path_buf);
        let (temp, file) = blocking(move || n.disk.store().create_temp(store_path, dir.as_deref()))
            .await?
            .map_err(io_failure("creating the slave file"))?;
        let (file, _) = receive_into(
            conn,
            file,
            0,
            head.file_size,
            node.config.buff_size as usize,
            node.disk.store().sync_policy(),
        )
        .await?;
        let n = node.clone();
        let target = slave.clone();
        blocking(move || {
            n.disk.store().commit_as(temp, file, &target)?;
            let record = Record::new(crate::unix_now() as u32, Op::Create, target.to_string());
            n.log_new_file(&target, record)?;
            Ok::<_, CommitError>(())
        })
        .await??;
        node.count_bytes(Command::UploadSlaveFile, head.file_size);
        tracing::debug!(file = %slave, master = %master, "stored slave");
        Ok(Reply::Body(
            UploadResponse {
                group: node.config.group_name.clone(),
                remote_filename: slave.to_string(),
            }
            .encode(),
        ))
    }
}

/// Stores `data` as `slave`, a slave file of `master`, which this storage holds: one
/// disk step writes it and its binlog line, so it replicates like an uploaded slave.
/// Thumbnails made over HTTP come this way.
pub(crate) async fn store_slave(
    node: &Arc<StorageNode>,
    master: &RemoteName,
    slave: RemoteName,
    data: Vec<u8>,
) -> Result<(), CommitError> {
    let store_path = usize::from(master.store_path);
    node.disk
        .store()
        .file_path(master)
        .map_err(CommitError::no_store_path)?;
    let size = data.len() as u64;
    let (n, master) = (node.clone(), master.clone());
    let stored = crate::disk::run(move || {
        use std::io::Write;
        let store = n.disk.store();
        store.open_file_blocking(&master)?;
        let slave_path = store
            .file_path(&slave)
            .map_err(CommitError::no_store_path)?;
        let (temp, mut file) = store.create_temp(store_path, slave_path.parent())?;
        file.write_all(&data)?;
        store.commit_as(temp, file, &slave)?;
        let record = Record::new(crate::unix_now() as u32, Op::Create, slave.to_string());
        n.log_new_file(&slave, record)?;
        Ok(())
    })
    .await
    .map_err(|lost| CommitError::Io(lost.into()))?;
    if stored.is_ok() {
        node.count_bytes(Command::UploadSlaveFile, size);
    }
    stored
}

/// An upload, its head read and decoded; the file's content is still on the socket.
#[derive(Debug)]
pub(super) enum Upload {
    /// 11, and 23 for an appender file.
    New { head: UploadHead, appender: bool },
    /// 21: a slave file of `master`.
    Slave { head: SlaveHead, master: String },
}

impl CommandFamily for Upload {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure> {
        let conn = &mut *ctx.conn;
        match header.cmd {
            Command::UploadFile | Command::UploadAppenderFile => {
                let head_bytes = read_head::<UPLOAD_HEAD_LEN>(conn, header).await?;
                let head = UploadHead::decode(&head_bytes).map_err(|e| e.status())?;
                if Some(header.body_len) != head.file_size.checked_add(UPLOAD_HEAD_LEN as u64)
                    || !fileid::valid_ext(&head.ext)
                {
                    return Err(Status::InvalidArgument.into());
                }
                Ok(Upload::New {
                    head,
                    appender: header.cmd == Command::UploadAppenderFile,
                })
            }
            Command::UploadSlaveFile => {
                let head_bytes = read_head::<SLAVE_HEAD_LEN>(conn, header).await?;
                let head = SlaveHead::decode(&head_bytes).map_err(|e| e.status())?;
                let expected = (SLAVE_HEAD_LEN as u64)
                    .checked_add(head.master_len)
                    .and_then(|n| n.checked_add(head.file_size));
                if !(11..=MAX_MASTER_LEN).contains(&head.master_len)
                    || expected != Some(header.body_len)
                    || !valid_prefix(&head.prefix)
                    || !fileid::valid_ext(&head.ext)
                {
                    return Err(Status::InvalidArgument.into());
                }
                let mut master = vec![0u8; head.master_len as usize];
                conn.read_exact(&mut master).await?;
                let master = String::from_utf8(master).map_err(|_| Status::InvalidArgument)?;
                Ok(Upload::Slave { head, master })
            }
            _ => Err(Status::InvalidArgument.into()),
        }
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Handled {
        match self {
            Upload::New { head, appender } => {
                Self::upload(ctx.node, ctx.conn, head, appender).await
            }
            Upload::Slave { head, master } => {
                Self::upload_slave(ctx.node, ctx.conn, head, &master).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::*;

    #[test]
    fn slave_names_follow_fastdfs() {
        // Recorded: master …RY113.txt + prefix _big + ext txt → …RY113_big.txt.
        let master =
            RemoteName::parse("M00/07/F0/fwAAA2sHltyABt6AAAAAZBVz5RY113.txt").expect("master");
        let slave = slave_name(&master, "_big", "txt").expect("slave");
        assert_eq!(
            slave.to_string(),
            "M00/07/F0/fwAAA2sHltyABt6AAAAAZBVz5RY113_big.txt"
        );
        let bare = slave_name(&master, "_150x150", "").expect("no ext");
        assert_eq!(bare.name, "fwAAA2sHltyABt6AAAAAZBVz5RY113_150x150");
        let no_dot =
            RemoteName::parse("M00/00/00/fwAAA2sHltyABt6AAAAAZBVz5RY1234567").expect("master");
        assert_eq!(
            slave_name(&no_dot, "_s", "jpg").expect("slave").name,
            "fwAAA2sHltyABt6AAAAAZBVz5RY1234567_s.jpg"
        );
        assert_eq!(slave_name(&master, "", "jpg"), Err(Status::InvalidArgument));
        assert_eq!(slave_name(&master, "-m", ""), Err(Status::InvalidArgument));
        // …RY113 + `.txt-m` would be the master's metadata file, …RY113.txt-m.
        assert_eq!(
            slave_name(&master, ".txt-m", ""),
            Err(Status::InvalidArgument)
        );
        assert!(slave_name(&master, ".txt-m", "jpg").is_ok());
    }
}
