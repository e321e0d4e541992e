//! Disk recovery: a store path that lost its data while the storage was stopped
//! is rebuilt from an ACTIVE peer of the group before the storage rejoins, as a
//! FastDFS storage does (`storage_disk_recovery.c`).
//!
//! 1. At start, a path whose `data/HH/LL` tree is missing while the base path
//!    says the initial sync was done (`sync_old_done=1` in `.data_init_flag`)
//!    gets `data/.recovery.flag`; the flag, not the empty tree, says a
//!    recovery is under way from then on.
//! 2. The storage asks the trackers for its own status (71, the highest wins),
//!    picks an ACTIVE readable peer from the group's list (92) and reports
//!    itself RECOVERY (76), so that no read is routed to it.
//! 3. It fetches the peer's binlog lines for the path with
//!    FETCH_ONE_PATH_BINLOG (26) into `data/.binlog.recovery.0`.
//! 4. It downloads every listed file with DOWNLOAD_FILE (14), metadata files
//!    (`<name>-m`, listed as files of their own) included, each into a temp
//!    file renamed into place, with the record's timestamp as mtime; links are
//!    made again. `data/.recovery.mark.0` (`binlog_offset=N`) records the
//!    progress, so a stopped recovery resumes where it was.
//! 5. It reports the status it had before (76; trackers holding it RECOVERY
//!    ignore it), removes the three files and joins: RECOVERY → ONLINE →
//!    ACTIVE.
//!
//! Like FastDFS, the recovered files are not written to this storage's binlog:
//! it lives in the base path, which kept every record of the path.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::StorageNode;
use super::binlog::{Op, Record};
use super::tracker_link::{self, Trackers};
use crate::client::{BodyCopyError, ClientError, Conn};
use crate::config::StorageConfig;
use crate::proto::monitor::StorageStat;
use crate::proto::report::StorageBrief;
use crate::proto::storage::DownloadRequest;
use crate::proto::sync::FetchBinlog;
use crate::proto::{Command, ProtoError, Status, StorageStatus};

/// FastDFS's names, in `<store_path>/data/`.
pub const FLAG_FILE: &str = ".recovery.flag";
pub const BINLOG_FILE: &str = ".binlog.recovery.0";
pub const MARK_FILE: &str = ".recovery.mark.0";
/// Longest slice line read; a record line is a few hundred bytes at most.
const MAX_LINE: u64 = 4096;
/// Records between two saves of the mark.
const MARK_EVERY: u64 = 100;
/// Bytes per read when streaming a file or the binlog slice.
const CHUNK: usize = 256 * 1024;
/// R_OK in a storage's rw_mode.
const READABLE: u8 = 4;

/// Why one recovery attempt stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{path}: {source}")]
    Local { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{addr}: {source}")]
    Proto { addr: String, source: ProtoError },
    #[error("no tracker answered")]
    NoTracker,
    #[error("no ACTIVE readable peer in the group yet")]
    NoSource,
    #[error("tracker {tracker} holds this storage as {status:?}, not RECOVERY yet")]
    NotYetRecovery {
        tracker: SocketAddr,
        status: Option<StorageStatus>,
    },
    #[error("{addr} answered {status} to {what}")]
    Status {
        addr: SocketAddr,
        what: &'static str,
        status: Status,
    },
}

fn local(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Local {
        path: path.to_owned(),
        source,
    }
}

/// `data/.recovery.flag`: what a recovery of one path has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The storage's status on the trackers before the recovery (99 = not known yet).
    pub saved_status: i32,
    pub fetch_binlog_done: bool,
    pub recovery_threads: i32,
}

impl Default for Flag {
    fn default() -> Self {
        Flag {
            saved_status: StorageStatus::None as i32,
            fetch_binlog_done: false,
            recovery_threads: -1,
        }
    }
}

impl Flag {
    pub fn render(&self) -> String {
        format!(
            "saved_storage_status={}\nfetch_binlog_done={}\nrecovery_threads={}\n",
            self.saved_status,
            u8::from(self.fetch_binlog_done),
            self.recovery_threads
        )
    }

    pub fn parse(text: &str) -> Flag {
        let mut flag = Flag::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "saved_storage_status" => flag.saved_status = v.parse().unwrap_or(-1),
                "fetch_binlog_done" => flag.fetch_binlog_done = v == "1" || v == "true",
                "recovery_threads" => flag.recovery_threads = v.parse().unwrap_or(-1),
                _ => {}
            }
        }
        flag
    }
}

/// `<base_path>/data/.data_init_flag` says the initial full copy was done.
pub fn sync_old_done(base_path: &Path) -> bool {
    std::fs::read_to_string(tracker_link::init_flag_path_in(base_path))
        .map(|t| t.lines().any(|l| l.trim() == "sync_old_done=1"))
        .unwrap_or(false)
}

/// Store paths to recover, marking the newly found ones (called before the
/// store opens and re-creates missing trees).
///
/// A path needs recovery when its flag file exists (a recovery under way), or
/// when its `data/00/00` or last `data/HH/LL` directory is missing although the
/// storage is known (FastDFS: `sync_old_done && pathCreated`). A storage whose
/// base path lost its state starts over as a new member instead.
pub fn pending_paths(cfg: &StorageConfig) -> io::Result<Vec<usize>> {
    let known = sync_old_done(&cfg.base_path);
    let last = cfg.subdir_count_per_path.saturating_sub(1);
    let mut out = Vec::new();
    for (i, root) in cfg.effective_store_paths().iter().enumerate() {
        let data = root.join("data");
        if data.join(FLAG_FILE).is_file() {
            out.push(i);
            continue;
        }
        let tree = data.join("00").join("00").is_dir()
            && data
                .join(format!("{last:02X}"))
                .join(format!("{last:02X}"))
                .is_dir();
        if known && !tree {
            tracing::warn!(path = %root.display(), store_path = i, "store path lost its data; it will be recovered from a peer");
            std::fs::create_dir_all(&data)?;
            crate::fsutil::write_atomically(
                &data.join(FLAG_FILE),
                Flag::default().render().as_bytes(),
            )?;
            out.push(i);
        }
    }
    Ok(out)
}

/// Who this storage is on the trackers.
#[derive(Debug, Clone)]
struct Me {
    /// Storage id, or the IP when storage ids are not used.
    id: String,
    ip: String,
    trackers: Vec<SocketAddr>,
}

/// Recovers `paths` one after the other, retrying each until it is done or the
/// storage stops. Returns whether every path was recovered.
pub async fn run(node: Arc<StorageNode>, paths: Vec<usize>, stop: CancellationToken) -> bool {
    for index in paths {
        let first = node.config.timers.recovery_retry();
        let mut backoff = crate::retry::Backoff::new(first, first * 8);
        loop {
            let attempt = tokio::select! {
                _ = stop.cancelled() => return false,
                r = recover_path(&node, index) => r,
            };
            match attempt {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(store_path = index, error = %e, "disk recovery not finished; retrying")
                }
            }
            if !backoff.wait(&stop).await {
                return false;
            }
        }
    }
    true
}

async fn recover_path(node: &Arc<StorageNode>, index: usize) -> Result<(), RecoveryError> {
    let data = node.disk.store().roots()[index].join("data");
    let flag_path = data.join(FLAG_FILE);
    let mut flag = match tokio::fs::read_to_string(&flag_path).await {
        Ok(t) => Flag::parse(&t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(local(&flag_path)(e)),
    };
    let me = identify(node).await?;
    if !flag.fetch_binlog_done && flag.saved_status == StorageStatus::None as i32 {
        match own_status(node, &me).await? {
            None => {
                tracing::info!(
                    store_path = index,
                    "trackers do not know this storage; nothing to recover"
                );
                return finish(&data).await;
            }
            Some(StorageStatus::Init | StorageStatus::IpChanged | StorageStatus::Deleted) => {
                tracing::info!(
                    store_path = index,
                    "storage starts over; nothing to recover"
                );
                return finish(&data).await;
            }
            Some(s) => {
                flag.saved_status = s as i32;
                save_flag(&flag_path, &flag).await?;
            }
        }
    }
    let Some(source) = find_source(node, &me).await? else {
        tracing::info!(
            store_path = index,
            "no other member holds this path; nothing to recover"
        );
        return finish(&data).await;
    };
    report_status(node, &me, StorageStatus::Recovery).await?;
    confirm_recovery(node, &me).await?;
    // A slice said fetched but not there (removed by a finish cut short) is fetched again.
    let slice_there = tokio::fs::try_exists(data.join(BINLOG_FILE))
        .await
        .unwrap_or(false);
    if !flag.fetch_binlog_done || !slice_there {
        fetch_binlog(node, source, index, &data).await?;
        write_mark(&data, 0).await?;
        flag.fetch_binlog_done = true;
        flag.recovery_threads = 1;
        save_flag(&flag_path, &flag).await?;
    }
    restore(node, source, index, &data).await?;
    if let Some(saved) = u8::try_from(flag.saved_status)
        .ok()
        .and_then(StorageStatus::from_byte)
        .filter(|s| *s != StorageStatus::None)
    {
        // FastDFS sends it; a tracker holding RECOVERY keeps it until the JOIN.
        let _ = report_status(node, &me, saved).await;
    }
    tracing::info!(store_path = index, %source, "disk recovery done");
    finish(&data).await
}

/// Removes the flag, slice and mark files: the path is whole again. The flag first: it is
/// what says a recovery is under way, and one left without its slice (the removals cut
/// short) would hold the storage in RECOVERY for good.
async fn finish(data: &Path) -> Result<(), RecoveryError> {
    for f in [
        FLAG_FILE,
        BINLOG_FILE,
        &format!("{BINLOG_FILE}.tmp"),
        MARK_FILE,
    ] {
        let p = data.join(f);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(local(&p)(e)),
        }
    }
    Ok(())
}

async fn write_file(path: &Path, text: String) -> Result<(), RecoveryError> {
    let p = path.to_owned();
    crate::disk::run(move || crate::fsutil::write_atomically(&p, text.as_bytes()))
        .await
        .map_err(|e| local(path)(io::Error::other(e)))?
        .map_err(local(path))
}

async fn save_flag(path: &Path, flag: &Flag) -> Result<(), RecoveryError> {
    write_file(path, flag.render()).await
}

async fn write_mark(data: &Path, offset: u64) -> Result<(), RecoveryError> {
    write_file(&data.join(MARK_FILE), format!("binlog_offset={offset}\n")).await
}

async fn read_mark(data: &Path) -> Result<u64, RecoveryError> {
    let p = data.join(MARK_FILE);
    match tokio::fs::read_to_string(&p).await {
        Ok(t) => Ok(t
            .lines()
            .find_map(|l| l.trim().strip_prefix("binlog_offset=")?.parse().ok())
            .unwrap_or(0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(local(&p)(e)),
    }
}

/// Learns this storage's address and id from the first tracker that answers.
async fn identify(node: &StorageNode) -> Result<Me, RecoveryError> {
    let me = tracker_link::identify(node)
        .await
        .ok_or(RecoveryError::NoTracker)?;
    Ok(Me {
        id: me.id,
        ip: me.ip,
        trackers: me.trackers,
    })
}

/// The status each answering tracker holds for this storage (71); None where unknown.
async fn statuses(
    node: &StorageNode,
    me: &Me,
) -> Result<Vec<(SocketAddr, Option<StorageStatus>)>, RecoveryError> {
    let out = Trackers::at(node, &me.trackers)
        .storage_status(&node.config.group_name, &me.ip, node.port)
        .await;
    if out.is_empty() {
        Err(RecoveryError::NoTracker)
    } else {
        Ok(out)
    }
}

/// The highest status the trackers hold for this storage; None when none knows it.
async fn own_status(node: &StorageNode, me: &Me) -> Result<Option<StorageStatus>, RecoveryError> {
    Ok(statuses(node, me)
        .await?
        .into_iter()
        .filter_map(|(_, s)| s)
        .max_by_key(|s| *s as u8))
}

/// A tracker that still holds this storage ACTIVE ignores a RECOVERY report and
/// would route reads here: go on only once every answering tracker says RECOVERY.
async fn confirm_recovery(node: &StorageNode, me: &Me) -> Result<(), RecoveryError> {
    for (tracker, status) in statuses(node, me).await? {
        if status != Some(StorageStatus::Recovery) {
            return Err(RecoveryError::NotYetRecovery { tracker, status });
        }
    }
    Ok(())
}

/// An ACTIVE readable member other than this one (92), taken in turn from the
/// trackers; None when this storage is the group's only member.
async fn find_source(node: &StorageNode, me: &Me) -> Result<Option<SocketAddr>, RecoveryError> {
    let lists = Trackers::at(node, &me.trackers)
        .list_storages(&node.config.group_name)
        .await;
    for (tracker, list) in lists {
        let list = list.map_err(|source| RecoveryError::Proto {
            addr: tracker.to_string(),
            source,
        })?;
        let others: Vec<&StorageStat> = list.iter().filter(|s| s.id != me.id).collect();
        if others.is_empty() {
            return Ok(None);
        }
        let active = others
            .iter()
            .find(|s| s.status == StorageStatus::Active as u8 && s.rw_mode & READABLE != 0);
        if let Some(s) = active {
            let port = u16::try_from(s.storage_port).unwrap_or(node.port);
            if let Ok(ip) = s.ip.parse::<std::net::IpAddr>() {
                return Ok(Some(SocketAddr::new(ip, port)));
            }
        }
    }
    Err(RecoveryError::NoSource)
}

/// REPORT_STATUS (76) about this storage to every tracker; Ok when one took it.
async fn report_status(
    node: &StorageNode,
    me: &Me,
    status: StorageStatus,
) -> Result<(), RecoveryError> {
    let brief = StorageBrief {
        status: status as u8,
        port: u32::from(node.port),
        id: me.id.clone(),
        ip: me.ip.clone(),
    };
    let took = Trackers::at(node, &me.trackers)
        .report_status(&node.config.group_name, brief)
        .await;
    tracing::info!(
        status = status.name(),
        trackers = took,
        "reported own status"
    );
    if took > 0 {
        Ok(())
    } else {
        Err(RecoveryError::NoTracker)
    }
}

/// FETCH_ONE_PATH_BINLOG (26) from `source` into `data/.binlog.recovery.0`.
async fn fetch_binlog(
    node: &StorageNode,
    source: SocketAddr,
    index: usize,
    data: &Path,
) -> Result<(), RecoveryError> {
    let final_path = data.join(BINLOG_FILE);
    let tmp = data.join(format!("{BINLOG_FILE}.tmp"));
    // Somewhere to put it first: the peer is not asked to stream for nothing.
    let mut file = tokio::fs::File::create(&tmp).await.map_err(local(&tmp))?;
    let mut conn = node.connect(source).await?;
    let body = FetchBinlog {
        group: node.config.group_name.clone(),
        store_path_index: index as u8,
    }
    .encode();
    conn.send(Command::FetchOnePathBinlog, 0, &body).await?;
    let h = conn.read_reply_header(u64::MAX >> 1).await?;
    if h.status() != Status::Ok {
        return Err(RecoveryError::Status {
            addr: source,
            what: "FETCH_ONE_PATH_BINLOG",
            status: h.status(),
        });
    }
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = conn.read_some(&mut buf).await?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).await.map_err(local(&tmp))?;
        total += n as u64;
    }
    // The last 8 bytes count the text before them: a cut-off stream is refused.
    let text_len = total.checked_sub(8).ok_or_else(|| RecoveryError::Proto {
        addr: source.to_string(),
        source: ProtoError::Truncated {
            what: "binlog reply",
            need: 8,
            have: total as usize,
        },
    })?;
    let mut trailer = [0u8; 8];
    file.flush().await.map_err(local(&tmp))?;
    drop(file);
    {
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(&tmp).await.map_err(local(&tmp))?;
        f.seek(io::SeekFrom::Start(text_len))
            .await
            .map_err(local(&tmp))?;
        f.read_exact(&mut trailer).await.map_err(local(&tmp))?;
    }
    if u64::from_be_bytes(trailer) != text_len {
        return Err(RecoveryError::Proto {
            addr: source.to_string(),
            source: ProtoError::BadField {
                what: "binlog reply",
                reason: format!(
                    "trailer counts {} bytes, {text_len} were sent",
                    u64::from_be_bytes(trailer)
                ),
            },
        });
    }
    let f = tokio::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .await
        .map_err(local(&tmp))?;
    f.set_len(text_len).await.map_err(local(&tmp))?;
    f.sync_all().await.map_err(local(&tmp))?;
    drop(f);
    tokio::fs::rename(&tmp, &final_path)
        .await
        .map_err(local(&final_path))?;
    tracing::info!(%source, store_path = index, bytes = text_len, "fetched the path's binlog");
    Ok(())
}

/// What became of one slice record.
enum Outcome {
    Restored,
    /// Gone from the source since (FastDFS counts these and goes on).
    Missing,
    Skipped,
}

/// Restores every record of the slice from the mark on.
async fn restore(
    node: &Arc<StorageNode>,
    source: SocketAddr,
    index: usize,
    data: &Path,
) -> Result<(), RecoveryError> {
    let slice = data.join(BINLOG_FILE);
    let mut offset = read_mark(data).await?;
    let mut file = tokio::fs::File::open(&slice).await.map_err(local(&slice))?;
    file.seek(io::SeekFrom::Start(offset))
        .await
        .map_err(local(&slice))?;
    let mut lines = tokio::io::BufReader::new(file);
    let mut conn: Option<Conn> = None;
    let (mut restored, mut missing, mut since_mark) = (0u64, 0u64, 0u64);
    let result = async {
        let mut line = Vec::new();
        loop {
            line.clear();
            // A corrupt slice without line ends is not read into memory whole: an overlong
            // line is passed over in pieces and skipped like any unusable line.
            let (mut n, mut overlong) = (0, false);
            loop {
                let got = AsyncReadExt::take(&mut lines, MAX_LINE)
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(local(&slice))?;
                n += got;
                if got < MAX_LINE as usize || line.last() == Some(&b'\n') {
                    break;
                }
                overlong = true;
                line.clear();
            }
            // End of the slice (a last line without newline is incomplete, as in FastDFS).
            if n == 0 || line.last() != Some(&b'\n') {
                return Ok(());
            }
            let record = std::str::from_utf8(&line[..line.len() - 1])
                .ok()
                .filter(|_| !overlong)
                .and_then(Record::parse);
            let outcome = match record {
                Some(r) if r.op == Op::Create => {
                    let r = fetch_file(node, &mut conn, source, index, &r).await;
                    if r.is_err() {
                        conn = None;
                    }
                    r?
                }
                Some(r) if r.op == Op::Link => relink(node, index, &r).await?,
                _ => {
                    tracing::warn!(line = %String::from_utf8_lossy(&line), "unusable recovery line skipped");
                    Outcome::Skipped
                }
            };
            match outcome {
                Outcome::Restored => restored += 1,
                Outcome::Missing => missing += 1,
                Outcome::Skipped => {}
            }
            offset += n as u64;
            since_mark += 1;
            if since_mark >= MARK_EVERY {
                write_mark(data, offset).await?;
                since_mark = 0;
            }
        }
    }
    .await;
    if let Some(c) = conn {
        c.quit().await;
    }
    if let Err(e) = write_mark(data, offset).await {
        // What stopped the restore, if anything, is the error worth returning.
        tracing::warn!(error = %e, "recovery mark not saved");
        result?;
        return Err(e);
    }
    tracing::info!(
        store_path = index,
        restored,
        missing,
        "recovery progress saved"
    );
    result
}

/// Downloads one file (14) into a temp file and renames it into place.
async fn fetch_file(
    node: &Arc<StorageNode>,
    conn: &mut Option<Conn>,
    source: SocketAddr,
    index: usize,
    record: &Record,
) -> Result<Outcome, RecoveryError> {
    let (name, target) = match node.locate(&record.name) {
        Ok((name, path)) if usize::from(name.store_path) == index => (name, path),
        _ => {
            tracing::warn!(name = %record.name, "recovery line names a file outside this path");
            return Ok(Outcome::Skipped);
        }
    };
    let c = match conn {
        Some(c) => c,
        None => conn.insert(node.connect(source).await?),
    };
    let body = DownloadRequest {
        offset: 0,
        length: 0,
        group: node.config.group_name.clone(),
        remote_filename: record.name.clone(),
    }
    .encode();
    c.send(Command::DownloadFile, 0, &body).await?;
    let h = c.read_reply_header(u64::MAX >> 1).await?;
    match h.status() {
        Status::Ok => {}
        Status::NotFound => return Ok(Outcome::Missing),
        status => {
            return Err(RecoveryError::Status {
                addr: source,
                what: "DOWNLOAD_FILE",
                status,
            });
        }
    }
    if name.trunk_slot().is_some() {
        // Back into its slot of the trunk file, which the source keeps at the same place.
        let slot_size = name.trunk_slot().map_or(0, |s| u64::from(s.size));
        // The size the name carries, checked before the body is taken into memory.
        let named_size = name.core().map(|c| c.file_size()).ok();
        if named_size != Some(h.body_len) || h.body_len + super::trunk::HEADER_LEN > slot_size {
            return Err(RecoveryError::Status {
                addr: source,
                what: "DOWNLOAD_FILE (not the size its name and slot give)",
                status: Status::InvalidArgument,
            });
        }
        let mut data = vec![0u8; h.body_len as usize];
        c.read_exact(&mut data).await?;
        let root = node.disk.store().roots()[index].clone();
        // Synced whatever the fsync policy: the recovery mark moves past it next, and a
        // slot lost to a power cut would never be fetched again.
        let slot_root = root.clone();
        crate::disk::run(move || match name.trunk_slot() {
            Some(slot) => super::trunk::write(&slot_root, &name, slot, &data, true),
            None => Err(io::ErrorKind::InvalidInput.into()),
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(local(&root))?;
        return Ok(Outcome::Restored);
    }
    let creating = node.clone();
    let dir = target.parent().map(Path::to_path_buf);
    let (temp, file) =
        crate::disk::run(move || creating.disk.store().create_temp(index, dir.as_deref()))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(local(&node.disk.store().roots()[index]))?;
    let temp_path = temp.staged.path().to_path_buf();
    let mut file = tokio::fs::File::from_std(file);
    c.copy_body_to(h.body_len, &mut file)
        .await
        .map_err(|e| match e {
            BodyCopyError::Read(e) => e.into(),
            BodyCopyError::Write(e) => local(&temp_path)(e),
        })?;
    file.sync_all().await.map_err(local(&temp_path))?;
    let file = file.into_std().await;
    let ts = record.timestamp;
    crate::disk::run(move || temp.replace_stamped(file, &target, ts))
        .await
        .map_err(|e| local(&temp_path)(io::Error::other(e)))?
        .map_err(local(&temp_path))?;
    Ok(Outcome::Restored)
}

/// Makes a slave link again (`ts L link target`).
async fn relink(
    node: &StorageNode,
    index: usize,
    record: &Record,
) -> Result<Outcome, RecoveryError> {
    let link = node.locate(&record.name).ok();
    let target = record.extra.as_deref().and_then(|t| node.locate(t).ok());
    let Some(((_, link), (_, target))) = link
        .zip(target)
        .filter(|((name, _), _)| usize::from(name.store_path) == index)
    else {
        tracing::warn!(name = %record.name, "recovery link line without a usable target");
        return Ok(Outcome::Skipped);
    };
    match tokio::fs::symlink(&target, &link).await {
        Ok(()) => Ok(Outcome::Restored),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
            ) =>
        {
            Ok(Outcome::Skipped)
        }
        Err(e) => Err(local(&link)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_file_in_fastdfs_format() {
        let f = Flag {
            saved_status: 7,
            fetch_binlog_done: true,
            recovery_threads: 1,
        };
        assert_eq!(
            f.render(),
            "saved_storage_status=7\nfetch_binlog_done=1\nrecovery_threads=1\n"
        );
        assert_eq!(Flag::parse(&f.render()), f);
        assert_eq!(
            Flag::parse("saved_storage_status=99\nfetch_binlog_done=0\nrecovery_threads=-1\n"),
            Flag::default()
        );
    }

    #[test]
    fn lost_tree_of_a_known_storage_is_flagged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = dir.path().join("disk1");
        let cfg = StorageConfig {
            base_path: dir.path().join("base"),
            store_paths: vec![dir.path().join("base"), disk.clone()],
            subdir_count_per_path: 2,
            ..Default::default()
        };
        for root in cfg.effective_store_paths() {
            for d in ["00/00", "01/01"] {
                std::fs::create_dir_all(root.join("data").join(d)).expect("mkdir");
            }
        }
        // A new storage recovers nothing.
        std::fs::remove_dir_all(disk.join("data")).expect("wipe");
        assert_eq!(pending_paths(&cfg).expect("pending"), Vec::<usize>::new());
        // A known one flags the lost path, and the flag alone keeps it pending.
        std::fs::write(
            dir.path().join("base/data/.data_init_flag"),
            "storage_join_time=1\nsync_old_done=1\n",
        )
        .expect("flag");
        assert_eq!(pending_paths(&cfg).expect("pending"), vec![1]);
        assert_eq!(
            std::fs::read_to_string(disk.join("data").join(FLAG_FILE)).expect("flag"),
            Flag::default().render()
        );
        for d in ["00/00", "01/01"] {
            std::fs::create_dir_all(disk.join("data").join(d)).expect("mkdir");
        }
        assert_eq!(pending_paths(&cfg).expect("pending"), vec![1]);
        std::fs::remove_file(disk.join("data").join(FLAG_FILE)).expect("rm");
        assert_eq!(pending_paths(&cfg).expect("pending"), Vec::<usize>::new());
    }
}
