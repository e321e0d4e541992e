//! On-disk layout, identical to FastDFS: `<store_path>/data/HH/LL/<name>`.
//!
//! Uploads are written to `<store_path>/data/.tmp/` and renamed into place with
//! RENAME_NOREPLACE only once complete, so a crash never leaves a partial file
//! under a real name and a name clash can never overwrite a file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::config::StorageConfig;
use crate::fileid::{self, NameCore, RemoteName, Source};
use crate::proto::Status;
use crate::proto::report::PathUsage;

/// Name of the temp directory inside each store path's `data/`.
const TMP_DIR: &str = ".tmp";
/// Attempts at a unique name before giving up with EEXIST, as FastDFS does.
const NAME_ATTEMPTS: usize = 10;

/// Round-robin state of `file_distribute_path_mode = 0`.
#[derive(Debug, Default)]
struct Rotation {
    high: u32,
    low: u32,
    count: u32,
}

/// The store paths of one storage and the rules for naming and placing files.
#[derive(Debug)]
pub struct Store {
    paths: Vec<PathBuf>,
    subdir_count: u32,
    hashed_dirs: bool,
    rotate_count: u32,
    rotation: Mutex<Rotation>,
    next_path: AtomicU64,
    temp_seq: AtomicU64,
}

/// A temp file that is removed unless it was committed.
#[derive(Debug)]
pub struct TempFile {
    pub path: PathBuf,
    pub store_path: usize,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn hex_dir(n: u32) -> String {
    format!("{n:02X}")
}

impl Store {
    /// Opens the store paths, creating `data/HH/LL` and clearing stale temp files.
    pub fn open(cfg: &StorageConfig) -> io::Result<Self> {
        let paths = cfg.effective_store_paths();
        let subdir_count = cfg.subdir_count_per_path;
        for root in &paths {
            let data = root.join("data");
            let last = data
                .join(hex_dir(subdir_count - 1))
                .join(hex_dir(subdir_count - 1));
            if !last.is_dir() {
                tracing::info!(path = %root.display(), subdir_count, "creating data directories");
                for hh in 0..subdir_count {
                    for ll in 0..subdir_count {
                        std::fs::create_dir_all(data.join(hex_dir(hh)).join(hex_dir(ll)))?;
                    }
                }
            }
            let tmp = data.join(TMP_DIR);
            if tmp.is_dir() {
                std::fs::remove_dir_all(&tmp)?;
            }
            std::fs::create_dir_all(&tmp)?;
        }
        Ok(Store {
            paths,
            subdir_count,
            hashed_dirs: cfg.file_distribute_path_mode == 1,
            rotate_count: cfg.file_distribute_rotate_count.max(1),
            rotation: Mutex::new(Rotation::default()),
            next_path: AtomicU64::new(0),
            temp_seq: AtomicU64::new(0),
        })
    }

    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    pub fn subdir_count(&self) -> u32 {
        self.subdir_count
    }

    /// The store path for an upload: the requested one, or round robin for 0xFF.
    pub fn choose_path(&self, requested: u8) -> Result<usize, Status> {
        if requested == crate::proto::storage::ANY_STORE_PATH {
            let n = self.next_path.fetch_add(1, Ordering::Relaxed);
            return Ok((n % self.paths.len() as u64) as usize);
        }
        let i = usize::from(requested);
        if i < self.paths.len() {
            Ok(i)
        } else {
            Err(Status::InvalidArgument)
        }
    }

    /// Absolute path of a stored file, refusing store paths this node lacks.
    pub fn file_path(&self, name: &RemoteName) -> Result<PathBuf, Status> {
        let root = self
            .paths
            .get(usize::from(name.store_path))
            .ok_or(Status::InvalidArgument)?;
        if u32::from(name.hh) >= self.subdir_count || u32::from(name.ll) >= self.subdir_count {
            return Err(Status::InvalidArgument);
        }
        Ok(root.join(name.relative_path()))
    }

    /// Creates a new temp file in `store_path`'s temp directory.
    pub fn create_temp(&self, store_path: usize) -> io::Result<(TempFile, std::fs::File)> {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.paths[store_path]
            .join("data")
            .join(TMP_DIR)
            .join(format!("{seq}-{}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((
            TempFile {
                path,
                store_path,
                committed: false,
            },
            file,
        ))
    }

    fn subdirs(&self, core_chars: &str) -> (u32, u32) {
        if self.hashed_dirs {
            return fileid::hashed_subdirs(core_chars, self.subdir_count);
        }
        let mut r = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        let dirs = (r.high % self.subdir_count, r.low % self.subdir_count);
        r.count += 1;
        if r.count >= self.rotate_count {
            r.count = 0;
            r.low += 1;
            if r.low >= self.subdir_count {
                r.low = 0;
                r.high = (r.high + 1) % self.subdir_count;
            }
        }
        dirs
    }

    /// Names a finished temp file and renames it into place (blocking).
    pub fn commit(
        &self,
        mut temp: TempFile,
        source: impl Into<Source>,
        ext: &str,
        size: u64,
        crc32: u32,
    ) -> Result<RemoteName, CommitError> {
        let timestamp = std::fs::metadata(&temp.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as u32)
            .unwrap_or_else(|| crate::unix_now() as u32);
        let source = source.into();
        for _ in 0..NAME_ATTEMPTS {
            let core = NameCore {
                source,
                timestamp,
                size_field: fileid::normal_size_field(size, rand::random::<u32>()),
                crc32,
            };
            let chars = core.encode();
            let (hh, ll) = self.subdirs(&chars);
            let suffix = fileid::format_ext(ext, || rand::random::<u8>() % 10);
            let name = RemoteName::new(
                temp.store_path as u8,
                hh as u8,
                ll as u8,
                format!("{chars}{suffix}"),
            );
            let target = self.paths[temp.store_path].join(name.relative_path());
            match renameat_with(CWD, &temp.path, CWD, &target, RenameFlags::NOREPLACE) {
                Ok(()) => {
                    temp.committed = true;
                    return Ok(name);
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(CommitError::Io(e.into())),
            }
        }
        Err(CommitError::NoUniqueName)
    }

    /// Bytes available to us on a store path, when the filesystem says.
    pub fn free_bytes(&self, store_path: usize) -> Option<u64> {
        let s = rustix::fs::statvfs(self.paths.get(store_path)?).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize.max(1)))
    }

    /// Total and free MB of each store path (statvfs `f_bavail`).
    pub fn disk_usage(&self) -> Vec<PathUsage> {
        self.paths
            .iter()
            .map(|p| match rustix::fs::statvfs(p) {
                Ok(s) => {
                    let unit = s.f_frsize.max(1);
                    PathUsage {
                        total_mb: s.f_blocks.saturating_mul(unit) / (1024 * 1024),
                        free_mb: s.f_bavail.saturating_mul(unit) / (1024 * 1024),
                    }
                }
                Err(_) => PathUsage::default(),
            })
            .collect()
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// Why a finished upload could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("no unique file name after {NAME_ATTEMPTS} attempts")]
    NoUniqueName,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Writes `data` to a temp file and commits it (blocking; used for small uploads).
pub fn write_small(
    store: &Store,
    store_path: usize,
    source: impl Into<Source>,
    ext: &str,
    data: &[u8],
) -> Result<RemoteName, CommitError> {
    let (temp, mut file) = store.create_temp(store_path)?;
    file.write_all(data)?;
    drop(file);
    store.commit(temp, source, ext, data.len() as u64, crc32fast::hash(data))
}

/// Removes a file and its metadata companion (`<name>-m`). ENOENT when absent.
pub fn delete(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    let mut meta = path.as_os_str().to_owned();
    meta.push("-m");
    match std::fs::remove_file(PathBuf::from(meta)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, subdirs: u32) -> Store {
        let cfg = StorageConfig {
            base_path: dir.into(),
            subdir_count_per_path: subdirs,
            ..Default::default()
        };
        Store::open(&cfg).expect("open")
    }

    #[test]
    fn creates_layout_and_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 4);
        assert!(dir.path().join("data/03/03").is_dir());
        assert!(!dir.path().join("data/04").exists());
        let name = write_small(
            &s,
            0,
            std::net::Ipv4Addr::new(127, 0, 0, 2),
            "txt",
            b"hello",
        )
        .expect("commit");
        let path = s.file_path(&name).expect("path");
        assert_eq!(std::fs::read(&path).expect("read"), b"hello");
        let core = name.core().expect("core");
        assert_eq!(core.file_size(), 5);
        assert_eq!(core.crc32, crc32fast::hash(b"hello"));
        assert!(name.name.ends_with(".txt"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("data/.tmp"))
                .expect("tmp")
                .count(),
            0
        );
        delete(&path).expect("delete");
        assert!(!path.exists());
    }

    #[test]
    fn dropped_temp_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 1);
        let (temp, _file) = s.create_temp(0).expect("temp");
        let p = temp.path.clone();
        assert!(p.exists());
        drop(temp);
        assert!(!p.exists());
    }

    #[test]
    fn round_robin_dirs_rotate_every_100() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 2);
        let dirs: Vec<(u32, u32)> = (0..201).map(|_| s.subdirs("x")).collect();
        assert_eq!(dirs[0], (0, 0));
        assert_eq!(dirs[99], (0, 0));
        assert_eq!(dirs[100], (0, 1));
        assert_eq!(dirs[200], (1, 0));
    }

    #[test]
    fn refuses_foreign_store_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 2);
        let name = RemoteName::parse("M01/00/00/abcdefgh").expect("parse");
        assert_eq!(s.file_path(&name), Err(Status::InvalidArgument));
        let name = RemoteName::parse("M00/05/00/abcdefgh").expect("parse");
        assert_eq!(s.file_path(&name), Err(Status::InvalidArgument));
        assert_eq!(s.choose_path(3), Err(Status::InvalidArgument));
    }
}
