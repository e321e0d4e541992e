//! Reading and managing stored files: DOWNLOAD_FILE (14), DELETE_FILE (12),
//! QUERY_FILE_INFO (22), SET_METADATA (13) and GET_METADATA (15).

use std::net::IpAddr;
use std::sync::Arc;

use crate::fileid::Source;
use crate::proto::query::FileRequest;
use crate::proto::storage::{DownloadRequest, FileInfo, MetaOp, SetMetadataRequest};
use crate::proto::{Command, Header, Status};
use crate::server::Connection;
use crate::storage::binlog::{Op, Record};
use crate::storage::meta;
use crate::storage::store;
use crate::storage::transfer::file_crc32;
use crate::storage::{Failure, Handled, Reply, StorageNode, blocking, io_failure};

use super::{CommandFamily, Context};

/// QUERY_FILE_INFO flag: do not compute the CRC-32 of appender and slave files.
const INFO_NO_CRC: u8 = 1;

/// Downloads up to this size are read and sent in one write; larger ones go by sendfile.
const READ_WHOLE: u64 = 32 * 1024;

impl Files {
    /// 14: streams `length` bytes (0 = to the end) from `offset`.
    async fn download(
        node: &Arc<StorageNode>,
        conn: &mut Connection,
        req: DownloadRequest,
    ) -> Handled {
        let (name, _) = node.locate_file(&req.remote_filename, conn.peer.ip())?;
        let (offset, want) = (req.offset, req.length);
        // Opened and (when small) read here while the kernel has it cached; what needs
        // the disk goes to a disk thread.
        let opened = node
            .disk
            .store()
            .open_file(&name)
            .await
            .map_err(io_failure("opening the file"))?;
        let (file, size, base) = (opened.file, opened.size, opened.base);
        // V6.15.4 refuses offset ≥ size; a 0-byte file still downloads (as up to V6.15.3).
        if offset > size || (offset == size && size > 0) {
            return Err(Status::InvalidArgument.into());
        }
        let remain = size - offset;
        let len = if want == 0 { remain } else { want.min(remain) };
        // Where the range is in the file opened: past the slot's header for a trunk file.
        let offset = base + offset;
        if len <= READ_WHOLE {
            let data = crate::disk::read_cached(file, offset, len)
                .await
                .map_err(io_failure("reading the file"))?;
            conn.reply(Status::Ok, &data).await?;
            node.count_bytes(Command::DownloadFile, len);
            return Ok(Reply::Sent);
        }
        // sendfile reads on the async worker: unless the range's ends are in the page
        // cache, a disk thread starts the read-ahead first.
        let file = if crate::disk::is_cached(&file, offset)
            && crate::disk::is_cached(&file, offset + len - 1)
        {
            file
        } else {
            blocking(move || {
                let _ = rustix::fs::fadvise(
                    &file,
                    offset,
                    std::num::NonZeroU64::new(len),
                    rustix::fs::Advice::WillNeed,
                );
                file
            })
            .await?
        };
        conn.write_more(&Header::response(Status::Ok, len).encode())
            .await?;
        // A send failing mid-stream cannot be reported any more: close, as FastDFS does.
        conn.send_file(&file, offset, len).await?;
        node.count_bytes(Command::DownloadFile, len);
        Ok(Reply::Sent)
    }

    /// 12: removes a file and its metadata.
    async fn delete(node: &Arc<StorageNode>, req: FileRequest) -> Handled {
        let (name, _) = node.locate(&req.remote_filename)?;
        // Two deletes of one file (a client's retry) must not both find it: a trunk slot
        // would be handed back twice, and two later files given the same space.
        let _one_writer = node.disk.lock(&name.to_string()).await;
        let n = node.clone();
        let doomed = name.clone();
        let had_meta = blocking(move || {
            let deleted = n.disk.store().delete_file(&doomed);
            n.disk.store().note_removed();
            deleted
        })
        .await?
        .map_err(io_failure("deleting the file"))?;
        tracing::debug!(file = %name, "deleted");
        let now = crate::unix_now() as u32;
        let mut records = vec![Record::new(now, Op::Delete, name.to_string())];
        if had_meta {
            records.push(Record::new(now, Op::Delete, format!("{name}-m")));
        }
        node.log(&records).await;
        // A trunk slot goes back to the group's trunk server for reuse, once the delete is
        // logged for the peers (a crash in between costs the slot, not their copies).
        if let Some(block) =
            crate::storage::trunking::block_of(&name).filter(|_| node.trunk.params().is_some())
        {
            node.trunk_release(block).await;
        }
        Ok(Reply::Body(Vec::new()))
    }

    /// 22: size, mtime, CRC-32 and source address of a file.
    async fn query_file_info(
        node: &Arc<StorageNode>,
        peer: IpAddr,
        req: FileRequest,
        flags: u8,
    ) -> Handled {
        if req.remote_filename.len() >= 132 {
            return Err(Status::InvalidArgument.into());
        }
        let (name, _) = node.locate_file(&req.remote_filename, peer)?;
        let core = name.core().map_err(|_| Status::InvalidArgument)?;
        let from_name = !core.is_appender() && !name.is_slave().unwrap_or(true);
        let chunk = node.config.buff_size as usize;
        let n = node.clone();
        let (size, mtime, crc32) = blocking(move || -> Result<(u64, u64, u32), Failure> {
            let opened = n
                .disk
                .store()
                .open_file_blocking(&name)
                .map_err(io_failure("opening the file"))?;
            let mtime = opened
                .mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let crc = if from_name {
                core.crc32
            } else if flags & INFO_NO_CRC != 0 {
                0
            } else {
                file_crc32(&opened.file, chunk).map_err(io_failure("reading the file"))?
            };
            Ok((opened.size, mtime, crc))
        })
        .await??;
        let source_ip = match core.source {
            Source::Ip(ip) => ip.to_string(),
            Source::ServerId(_) => String::new(),
        };
        let info = FileInfo {
            file_size: size,
            create_timestamp: mtime,
            crc32,
            source_ip,
        };
        Ok(Reply::Body(
            info.encode(node.config.compat.ip_width.full_len()),
        ))
    }

    /// 13: writes, replaces or merges a file's metadata.
    async fn set_metadata(node: &Arc<StorageNode>, req: SetMetadataRequest) -> Handled {
        let (name, path) = node.locate(&req.remote_filename)?;
        let n = node.clone();
        let meta_name = format!("{name}-m");
        // A merge reads, changes and writes the metadata file: one at a time per file.
        let _one_writer = node.disk.lock(&name.to_string()).await;
        let op = blocking(move || -> Result<Option<Op>, Failure> {
            // The file may be its own or a trunk slot; its metadata file is its own.
            if n.disk.store().open_file_blocking(&name).is_err() {
                return Err(Status::NotFound.into());
            }
            let meta_file = store::meta_path(&path);
            let existed = meta_file.exists();
            let records = match req.op {
                MetaOp::Overwrite => meta::parse(&req.meta),
                MetaOp::Merge => {
                    let mut old = match std::fs::read(&meta_file) {
                        Ok(b) => meta::parse(&b),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => meta::Records::new(),
                        Err(e) => return Err(io_failure("reading the metadata")(e)),
                    };
                    old.extend(meta::parse(&req.meta));
                    old
                }
            };
            if records.is_empty() && req.op == MetaOp::Overwrite {
                return match std::fs::remove_file(&meta_file) {
                    Ok(()) => Ok(Some(Op::Delete)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_failure("removing the metadata")(e)),
                };
            }
            n.disk
                .store()
                .replace_file(
                    usize::from(name.store_path),
                    &meta_file,
                    &meta::encode(&records),
                )
                .map_err(io_failure("writing the metadata"))?;
            Ok(Some(if existed { Op::Update } else { Op::Create }))
        })
        .await??;
        if let Some(op) = op {
            node.log(&[Record::new(crate::unix_now() as u32, op, meta_name)])
                .await;
        }
        Ok(Reply::Body(Vec::new()))
    }

    /// 15: a file's metadata blob; ENOENT when it has none.
    async fn get_metadata(node: &Arc<StorageNode>, req: FileRequest) -> Handled {
        let (name, path) = node.locate(&req.remote_filename)?;
        let n = node.clone();
        let blob = blocking(move || -> Result<Vec<u8>, Failure> {
            if n.disk.store().open_file_blocking(&name).is_err() {
                return Err(Status::NotFound.into());
            }
            std::fs::read(store::meta_path(&path)).map_err(io_failure("reading the metadata"))
        })
        .await??;
        Ok(Reply::Body(blob))
    }
}

/// A command on an existing file, its request read and decoded.
#[derive(Debug)]
pub(super) enum Files {
    /// 14: `length` bytes (0 = to the end) from `offset`.
    Download(DownloadRequest),
    /// 12.
    Delete(FileRequest),
    /// 22; the header's status byte carries the flags.
    Info { req: FileRequest, flags: u8 },
    /// 13.
    SetMetadata(SetMetadataRequest),
    /// 15.
    GetMetadata(FileRequest),
}

impl CommandFamily for Files {
    async fn parse(ctx: &mut Context<'_>, header: &Header) -> Result<Self, Failure> {
        let node = ctx.node;
        let body = node.small_body(ctx.conn, header).await?;
        let file = || -> Result<FileRequest, Failure> {
            let req = FileRequest::decode_any_len(&body).map_err(|e| e.status())?;
            node.check_group(&req.group)?;
            Ok(req)
        };
        Ok(match header.cmd {
            Command::DownloadFile => {
                let req = DownloadRequest::decode(&body).map_err(|e| e.status())?;
                node.check_group(&req.group)?;
                Files::Download(req)
            }
            Command::DeleteFile => Files::Delete(file()?),
            Command::QueryFileInfo => Files::Info {
                req: file()?,
                flags: header.status,
            },
            Command::SetMetadata => {
                let req = SetMetadataRequest::decode(&body).map_err(|e| e.status())?;
                node.check_group(&req.group)?;
                Files::SetMetadata(req)
            }
            Command::GetMetadata => Files::GetMetadata(file()?),
            _ => return Err(Status::InvalidArgument.into()),
        })
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Handled {
        let node = ctx.node;
        match self {
            Files::Download(req) => Self::download(node, ctx.conn, req).await,
            Files::Delete(req) => Self::delete(node, req).await,
            Files::Info { req, flags } => {
                Self::query_file_info(node, ctx.conn.peer.ip(), req, flags).await
            }
            Files::SetMetadata(req) => Self::set_metadata(node, req).await,
            Files::GetMetadata(req) => Self::get_metadata(node, req).await,
        }
    }
}
