//! The trunk server's upkeep, while this member is it: trunk files made ahead of need and
//! binlog compactions on FastDFS's schedules, and the trunk binlog pushed to the other
//! members of the group (TRUNK_SYNC_BINLOG, 30; TRUNCATE_BINLOG_FILE, 33 before it starts
//! again), so that a FastDFS member chosen as trunk server after us starts from it, as it
//! would after a FastDFS trunk server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::StorageNode;
use super::trunk_space::{Schedule, TrunkParams};
use super::trunking::TrunkError;
use crate::client::{ClientError, Conn};
use crate::proto::{Command, Status, StorageStatus};

/// How often the schedules and the members' copies are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Most bytes of binlog in one push (FastDFS's buffer size).
const PUSH_CHUNK: usize = 64 * 1024;
/// Wait before pushing again to a member that failed.
const PUSH_RETRY: Duration = Duration::from_secs(5);

/// Runs until `stop`; does nothing while we are not the trunk server.
pub async fn run(node: Arc<StorageNode>, stop: CancellationToken) {
    let (mut create_ahead, mut compact) = (Timer::default(), Timer::default());
    let mut pushes: HashMap<SocketAddr, Push> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let Some(params) = node.trunk.params().filter(|_| node.trunk.serving()) else {
            (create_ahead, compact) = (Timer::default(), Timer::default());
            pushes.clear();
            continue;
        };
        let now = crate::unix_now();
        if create_ahead.due(params.create_ahead, now) {
            make_trunk_files_ahead(&node, params).await;
        }
        if compact.due(params.compact, now) {
            compact_binlog(&node).await;
        }
        push_binlog(&node, &mut pushes).await;
    }
}

/// When a scheduled task runs next.
#[derive(Debug, Default)]
struct Timer {
    schedule: Option<Schedule>,
    next: u64,
}

impl Timer {
    /// Whether the task of `schedule` is due at `now`. A schedule that is new (or changed)
    /// first runs at its next time after now.
    fn due(&mut self, schedule: Option<Schedule>, now: u64) -> bool {
        let Some(s) = schedule else {
            self.schedule = None;
            return false;
        };
        if self.schedule != Some(s) {
            self.schedule = Some(s);
            self.next = s.next_after(now);
            return false;
        }
        if now < self.next {
            return false;
        }
        self.next = s.next_after(now);
        true
    }
}

/// What the create-ahead step should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ahead {
    /// Free trunk space is within one trunk file of the threshold.
    Enough,
    /// More trunk files would take the store paths below their reserve.
    BelowReserve { wanted_mb: u64, free_mb: u64 },
    /// Make trunk files up to the threshold.
    Make,
}

/// The create-ahead decision from the threshold, the free trunk space (bytes), the trunk file
/// size (bytes), the store paths' (total, free) MB and their reserve.
fn ahead(
    threshold: u64,
    free_trunk: u64,
    file_size: u64,
    paths: &[(u64, u64)],
    reserved: crate::config::ReservedSpace,
) -> Ahead {
    const MB: u64 = 1024 * 1024;
    let wanted_mb = threshold.saturating_sub(free_trunk) / MB;
    if wanted_mb < file_size / MB {
        return Ahead::Enough;
    }
    let (total_mb, free_mb) = paths
        .iter()
        .fold((0, 0), |(t, f), (total, free)| (t + total, f + free));
    if reserved.has_room(free_mb.saturating_sub(wanted_mb), total_mb) {
        Ahead::Make
    } else {
        Ahead::BelowReserve { wanted_mb, free_mb }
    }
}

/// `trunk_create_file_advance`: trunk files until the free trunk space reaches the
/// threshold, unless that would take the store paths below their reserve.
async fn make_trunk_files_ahead(node: &Arc<StorageNode>, params: TrunkParams) {
    let threshold = params.create_ahead_threshold;
    let paths: Vec<(u64, u64)> = node
        .disk
        .store()
        .cached_usage()
        .iter()
        .map(|u| (u.total_mb, u.free_mb))
        .collect();
    match ahead(
        threshold,
        node.trunk.own_figures().map_or(0, |f| f.free_bytes),
        u64::from(params.file_size),
        &paths,
        node.disk.path_policy().reserved,
    ) {
        Ahead::Enough => return,
        Ahead::BelowReserve { wanted_mb, free_mb } => {
            tracing::warn!(
                wanted_mb,
                free_mb,
                "trunk files not made ahead: the store paths would fall below their reserve"
            );
            return;
        }
        Ahead::Make => {}
    }
    match node
        .on_free_space(move |s, store| s.create_ahead(store, threshold))
        .await
    {
        Ok(Ok(0)) => {}
        Ok(Ok(made)) => tracing::info!(made, "trunk files made ahead of need"),
        Ok(Err(e)) => tracing::warn!(error = %e, "trunk files not made ahead"),
        Err(_) => tracing::warn!("trunk files not made ahead: the disk threads are gone"),
    }
}

/// A scheduled compaction (`trunk_compress_binlog_interval`), when there is anything to
/// compact.
async fn compact_binlog(node: &Arc<StorageNode>) {
    let outcome = node
        .on_free_space(|s, _| {
            if s.compactable() {
                s.compact()?;
            }
            Ok(())
        })
        .await;
    if let Ok(Err(e)) = outcome {
        tracing::warn!(error = %e, "trunk binlog not compacted");
    }
}

/// What one member has of our trunk binlog.
#[derive(Debug, Default)]
struct Push {
    conn: Option<Conn>,
    /// The binlog generation `offset` counts in; `None`: the member's copy is to be
    /// truncated first.
    generation: Option<u64>,
    offset: u64,
    retry_at: Option<Instant>,
}

/// Brings every running member's copy of our trunk binlog up to date.
async fn push_binlog(node: &Arc<StorageNode>, pushes: &mut HashMap<SocketAddr, Push>) {
    let Some(generation) = node.trunk.binlog_generation() else {
        return;
    };
    let members: Vec<SocketAddr> = node
        .replication
        .peers()
        .into_iter()
        .filter(|p| matches!(p.status, StorageStatus::Active | StorageStatus::Online))
        .map(|p| p.addr)
        .collect();
    pushes.retain(|addr, _| members.contains(addr));
    for addr in members {
        let push = pushes.entry(addr).or_default();
        if push.retry_at.is_some_and(|at| Instant::now() < at) {
            continue;
        }
        push.retry_at = None;
        if let Err(e) = push_to(node, addr, push, generation).await {
            tracing::debug!(member = %addr, error = %e, "trunk binlog not pushed; retrying later");
            push.conn = None;
            push.retry_at = Some(Instant::now() + PUSH_RETRY);
        }
    }
}

async fn push_to(
    node: &Arc<StorageNode>,
    addr: SocketAddr,
    push: &mut Push,
    generation: u64,
) -> Result<(), TrunkError> {
    let path = node.config.base_path.join("data/trunk/binlog");
    loop {
        if push.generation != Some(generation) {
            // A member new to us, or our binlog was rewritten: its copy starts again.
            call(node, push, addr, Command::TrunkTruncateBinlogFile, &[]).await?;
            push.generation = Some(generation);
            push.offset = 0;
        }
        let (path, offset) = (path.clone(), push.offset);
        let chunk = crate::disk::run(move || whole_lines_at(&path, offset))
            .await
            .map_err(|_| TrunkError::Disk(std::io::ErrorKind::Other.into()))??;
        // Read while a compaction rewrote the file: the next round starts again.
        if chunk.is_empty() || node.trunk.binlog_generation() != Some(generation) {
            return Ok(());
        }
        call(node, push, addr, Command::TrunkSyncBinlog, &chunk).await?;
        push.offset += chunk.len() as u64;
    }
}

/// Up to [`PUSH_CHUNK`] bytes of the file from `offset`, ending at a line's end.
fn whole_lines_at(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; PUSH_CHUNK];
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], offset + len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    let end = buf[..len]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    buf.truncate(end);
    Ok(buf)
}

async fn call(
    node: &StorageNode,
    push: &mut Push,
    addr: SocketAddr,
    cmd: Command,
    body: &[u8],
) -> Result<(), TrunkError> {
    let conn = match push.conn.as_mut() {
        Some(c) => c,
        None => push.conn.insert(node.connect(addr).await?),
    };
    match conn.call(cmd, body, 64).await? {
        (Status::Ok, _) => Ok(()),
        (status, _) => Err(TrunkError::Server(ClientError::Status {
            op: "trunk binlog push",
            target: format!("{cmd:?} to {addr}"),
            status,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_runs_at_its_time_of_day_and_every_interval_from_it() {
        let day = 20_000 * 86_400u64;
        let s = Schedule {
            base: 2 * 3600,
            interval: 86_400,
        };
        assert_eq!(s.next_after(day), day + 2 * 3600);
        assert_eq!(s.next_after(day + 2 * 3600), day + 86_400 + 2 * 3600);
        let hourly = Schedule {
            base: 3 * 3600 + 30 * 60,
            interval: 3600,
        };
        // Before the base time, the runs of the interval before it count too.
        assert_eq!(hourly.next_after(day + 60), day + 1800);
        assert_eq!(hourly.next_after(day + 1800), day + 1800 + 3600);
        assert_eq!(hourly.next_after(day + 5 * 3600), day + 5 * 3600 + 1800);
        let every_second = Schedule {
            base: 0,
            interval: 1,
        };
        assert_eq!(every_second.next_after(day + 7), day + 8);
    }

    #[test]
    fn a_timer_waits_for_the_next_run_of_a_new_schedule() {
        let s = Schedule {
            base: 0,
            interval: 10,
        };
        let mut t = Timer::default();
        assert!(!t.due(Some(s), 100), "new: first run at 110");
        assert!(!t.due(Some(s), 109));
        assert!(t.due(Some(s), 110));
        assert!(!t.due(Some(s), 115));
        assert!(t.due(Some(s), 125), "a late tick still runs once");
        assert!(!t.due(Some(s), 129));
        assert!(!t.due(None, 200));
        assert!(!t.due(Some(s), 200), "set again: waits for 210");
    }

    #[test]
    fn trunk_files_are_made_ahead_only_above_the_reserve() {
        use crate::config::ReservedSpace;
        const MB: u64 = 1024 * 1024;
        // 64 MB trunk files, a 200 MB threshold, 10 MB of trunk space free: 190 MB wanted.
        let decide =
            |paths: &[(u64, u64)], reserved| ahead(200 * MB, 10 * MB, 64 * MB, paths, reserved);
        assert_eq!(decide(&[(1000, 500)], ReservedSpace::Mb(100)), Ahead::Make);
        assert_eq!(
            decide(&[(1000, 250)], ReservedSpace::Mb(100)),
            Ahead::BelowReserve {
                wanted_mb: 190,
                free_mb: 250
            },
            "250 − 190 MB would leave less than the 100 MB reserve"
        );
        // A ratio counts every store path together: 300 free of 1,000 − 190 = 11 %.
        assert_eq!(
            decide(&[(500, 150), (500, 150)], ReservedSpace::Ratio(0.10)),
            Ahead::Make
        );
        assert_eq!(
            decide(&[(500, 150), (500, 150)], ReservedSpace::Ratio(0.15)),
            Ahead::BelowReserve {
                wanted_mb: 190,
                free_mb: 300
            }
        );
        // Within one trunk file of the threshold: nothing to make.
        assert_eq!(
            ahead(
                200 * MB,
                150 * MB,
                64 * MB,
                &[(1000, 500)],
                ReservedSpace::Mb(0)
            ),
            Ahead::Enough
        );
    }

    #[test]
    fn pushes_end_at_a_line_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("binlog");
        std::fs::write(&p, b"1 A 0 0 0 1 0 100\n2 D 0 0 0 1 0 1").expect("write");
        assert_eq!(whole_lines_at(&p, 0).expect("read"), b"1 A 0 0 0 1 0 100\n");
        assert!(whole_lines_at(&p, 18).expect("read").is_empty());
    }
}
