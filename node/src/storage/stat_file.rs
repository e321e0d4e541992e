//! FastDFS's `data/storage_stat.dat`: the operation counters, the last update times and the
//! round-robin directory position, as `key=value` lines, so that a restart (or a data
//! directory taken over from a C storage) keeps what `fdfs_monitor` shows and goes on
//! filling the same directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StorageNode;
use super::store::Rotation;
use crate::proto::monitor::{COUNTER_COUNT, COUNTER_NAMES};

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFile {
    pub counters: [u64; COUNTER_COUNT],
    pub last_source_update: u64,
    pub last_sync_update: u64,
    pub rotation: Rotation,
}

pub fn path(base_path: &Path) -> PathBuf {
    base_path.join("data").join("storage_stat.dat")
}

impl Default for StatFile {
    fn default() -> Self {
        StatFile {
            counters: [0; COUNTER_COUNT],
            last_source_update: 0,
            last_sync_update: 0,
            rotation: Rotation::default(),
        }
    }
}

impl StatFile {
    /// Reads the lines it knows; a missing key stays 0, as in FastDFS.
    pub fn parse(text: &str) -> StatFile {
        let mut s = StatFile::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            let Ok(v) = value.trim().parse::<u64>() else {
                continue;
            };
            let key = key.trim();
            if let Some(i) = COUNTER_NAMES.iter().position(|n| *n == key) {
                s.counters[i] = v;
                continue;
            }
            let small = u32::try_from(v).unwrap_or(0);
            match key {
                "last_source_update" => s.last_source_update = v,
                "last_sync_update" => s.last_sync_update = v,
                "dist_path_index_high" => s.rotation.high = small,
                "dist_path_index_low" => s.rotation.low = small,
                "dist_write_file_count" => s.rotation.count = small,
                _ => {}
            }
        }
        s
    }

    pub fn to_text(&self) -> String {
        let mut out: String = COUNTER_NAMES
            .iter()
            .zip(self.counters)
            .map(|(name, v)| format!("{name}={v}\n"))
            .collect();
        out.push_str(&format!(
            "last_source_update={}\nlast_sync_update={}\ndist_path_index_high={}\ndist_path_index_low={}\ndist_write_file_count={}\n",
            self.last_source_update,
            self.last_sync_update,
            self.rotation.high,
            self.rotation.low,
            self.rotation.count
        ));
        out
    }
}

impl StorageNode {
    /// The figures `storage_stat.dat` keeps, as they stand.
    pub fn stat_file(&self) -> StatFile {
        let stats = self.statistics.snapshot();
        StatFile {
            counters: stats.counters,
            last_source_update: stats.last_source_update,
            last_sync_update: stats.last_sync_update,
            rotation: self.disk.store().rotation(),
        }
    }

    /// Takes up the figures of an earlier run.
    pub(super) fn resume_from(&self, saved: &StatFile) {
        self.statistics.resume(
            &saved.counters,
            saved.last_source_update,
            saved.last_sync_update,
        );
        self.disk.store().set_rotation(saved.rotation);
    }

    /// Writes `storage_stat.dat` (blocking).
    pub fn save_stat_file(&self) -> std::io::Result<()> {
        crate::fsutil::write_atomically(
            &path(&self.config.base_path),
            self.stat_file().to_text().as_bytes(),
        )
    }
}

/// Writes `storage_stat.dat` off the async workers; a failure is logged (the next save may
/// succeed, and nothing else depends on the file).
pub async fn save_logged(node: &Arc<StorageNode>) {
    let n = node.clone();
    let saved = crate::disk::run(move || n.save_stat_file())
        .await
        .map_err(std::io::Error::from)
        .and_then(|r| r);
    if let Err(e) = saved {
        tracing::warn!(error = %e, "cannot write storage_stat.dat");
    }
}

/// Reads `storage_stat.dat` when there is one (blocking).
pub fn load(base_path: &Path) -> Option<StatFile> {
    std::fs::read_to_string(path(base_path))
        .ok()
        .map(|t| StatFile::parse(&t))
}

/// Saves the file every `sync_stat_file_interval` seconds until `stop`; the last save is
/// the storage's, once it has stopped serving.
pub async fn run(node: Arc<StorageNode>, stop: CancellationToken) {
    let every = Duration::from_secs(node.config.sync_stat_file_interval.max(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        save_logged(&node).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::monitor::counter;

    #[test]
    fn reads_and_writes_fastdfs_keys() {
        // The lines a FastDFS storage writes, in its order, with a key this one ignores.
        let text = "total_upload_count=12\nsuccess_upload_count=11\nlast_source_update=1800000000\n\
                    last_sync_update=1800000005\ntotal_sync_in_bytes=4096\n\
                    dist_path_index_high=1\ndist_path_index_low=255\ndist_write_file_count=42\n\
                    some_future_key=7\nbroken line\n";
        let s = StatFile::parse(text);
        assert_eq!(s.counters[counter::TOTAL_UPLOAD], 12);
        assert_eq!(s.counters[counter::SUCCESS_UPLOAD], 11);
        assert_eq!(s.counters[counter::TOTAL_SYNC_IN_BYTES], 4096);
        assert_eq!(s.counters[counter::TOTAL_DOWNLOAD], 0, "missing keys are 0");
        assert_eq!(
            (s.last_source_update, s.last_sync_update),
            (1_800_000_000, 1_800_000_005)
        );
        assert_eq!(
            s.rotation,
            Rotation {
                high: 1,
                low: 255,
                count: 42
            }
        );
        let again = StatFile::parse(&s.to_text());
        assert_eq!(again, s);
        let written = s.to_text();
        assert!(written.starts_with("total_upload_count=12\nsuccess_upload_count=11\n"));
        assert!(
            written.contains("\ndist_write_file_count=42\n"),
            "{written}"
        );
        assert_eq!(written.lines().count(), COUNTER_COUNT + 5);
    }
}
