//! Moving file bodies between a connection and the disk in bounded chunks, so no
//! file is ever held whole in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{Failure, blocking, io_failure};
use crate::fsutil::SyncPolicy;
use crate::proto::Status;
use crate::server::Connection;

/// Streams `len` body bytes from `conn` into `file` starting at `offset`, with an fsync
/// whenever `policy` says enough bytes were written since the last.
///
/// Returns the file and the CRC-32 of the bytes. When a write fails the rest of
/// the body is still read (so the connection stays in step) and the write's
/// status is returned; a connection error ends it at once.
pub(super) async fn receive_into(
    conn: &mut Connection,
    file: File,
    offset: u64,
    len: u64,
    chunk: usize,
    policy: SyncPolicy,
) -> Result<(File, u32), Failure> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; chunk.min(usize::try_from(len).unwrap_or(chunk)).max(1)];
    let mut file = Some(file);
    let mut pos = offset;
    let mut left = len;
    let mut failed: Option<std::io::Error> = None;
    let mut unsynced = 0u64;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        conn.read_exact(&mut buf[..n]).await?;
        left -= n as u64;
        if failed.is_some() {
            continue;
        }
        hasher.update(&buf[..n]);
        let (f, b) = (file.take(), std::mem::take(&mut buf));
        unsynced += n as u64;
        let sync_now = policy.due(unsynced);
        if sync_now {
            unsynced = 0;
        }
        let (f, b, r) = blocking(move || {
            let r = f.as_ref().map_or(Ok(()), |f| {
                f.write_all_at(&b[..n], pos)?;
                if sync_now { f.sync_data() } else { Ok(()) }
            });
            (f, b, r)
        })
        .await?;
        file = f;
        buf = b;
        pos += n as u64;
        if let Err(e) = r {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(io_failure("writing the received body")(e));
    }
    let file = file.ok_or(Failure::Status(Status::Io))?;
    Ok((file, hasher.finalize()))
}

/// CRC-32 of a whole file, read in chunks (blocking).
pub(super) fn file_crc32(file: &File, chunk: usize) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; chunk];
    let mut pos = 0u64;
    loop {
        let n = file.read_at(&mut buf, pos)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
}
