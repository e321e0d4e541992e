//! The storage's disk: its store paths (files, trunk slots, metadata, the durable-write
//! primitive), its binlog, the per-file locks that order changes to one file, and the
//! store-path rules the trackers set. Its blocking steps run on the disk threads
//! ([`crate::disk::run`]), never on the async workers.

use std::sync::Mutex;

use crate::config::StorageConfig;

use super::binlog::Binlog;
use super::locks::{FileGuard, FileLocks};
use super::store::{PathPolicy, Store};

#[derive(Debug)]
pub struct Disk {
    store: Store,
    binlog: Binlog,
    /// One change at a time per stored file.
    file_locks: FileLocks,
    /// Store-path rules; the tracker's parameters replace the configured ones.
    path_policy: Mutex<PathPolicy>,
}

impl Disk {
    /// Opens (and makes, the first time) the store paths and the binlog of `config`.
    pub fn open(config: &StorageConfig) -> std::io::Result<Self> {
        Ok(Disk {
            store: Store::open(config)?,
            binlog: Binlog::open(&config.base_path)?,
            file_locks: FileLocks::default(),
            path_policy: Mutex::new(PathPolicy {
                mode: config.store_path_mode,
                reserved: config.reserved_storage_space,
            }),
        })
    }

    /// The store paths and the files in them.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The record of every change, for the group's other members.
    pub fn binlog(&self) -> &Binlog {
        &self.binlog
    }

    /// Waits for exclusive use of the stored file `name` while a change is applied.
    pub async fn lock(&self, name: &str) -> FileGuard<'_> {
        self.file_locks.lock(name).await
    }

    pub fn path_policy(&self) -> PathPolicy {
        *self.path_policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adopts the tracker's store-path rules (PARAMETER_REQ reply).
    pub fn set_path_policy(&self, policy: PathPolicy) {
        *self.path_policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReservedSpace;

    #[test]
    fn the_disk_opens_its_paths_and_binlog_and_keeps_the_trackers_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StorageConfig {
            base_path: dir.path().to_path_buf(),
            subdir_count_per_path: 1,
            store_path_mode: 2,
            ..Default::default()
        };
        let disk = Disk::open(&config).expect("opens");
        assert_eq!(disk.binlog().dir(), dir.path().join("data/sync"));
        assert_eq!(disk.path_policy().mode, 2);
        disk.set_path_policy(PathPolicy {
            mode: 0,
            reserved: ReservedSpace::Mb(7),
        });
        assert_eq!(disk.path_policy().reserved, ReservedSpace::Mb(7));
    }
}
