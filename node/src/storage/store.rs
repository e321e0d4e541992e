//! On-disk layout, identical to FastDFS: `<store_path>/data/HH/LL/<name>`.
//!
//! Uploads are written to `<store_path>/data/.tmp/` and renamed into place with
//! RENAME_NOREPLACE only once complete, so a crash never leaves a partial file
//! under a real name and a name clash can never overwrite a file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{ReservedSpace, StorageConfig};
use crate::disk::OpenedFile;
use crate::fileid::{self, NameCore, RemoteName, Source};
use crate::fsutil::{Placement, StagedFile, SyncPolicy};
use crate::proto::Status;
use crate::proto::report::PathUsage;
use crate::proto::trunk::TrunkBlock;

/// Name of the temp directory inside each store path's `data/`.
const TMP_DIR: &str = ".tmp";
/// Attempts at a unique name before giving up with EEXIST, as FastDFS does.
const NAME_ATTEMPTS: usize = 10;

/// Round-robin state of `file_distribute_path_mode = 0`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub high: u32,
    pub low: u32,
    pub count: u32,
}

/// The store paths of one storage and the rules for naming and placing files.
#[derive(Debug)]
pub struct Store {
    paths: Vec<PathBuf>,
    /// Each path's `data/.tmp`, joined once rather than for every upload and replica.
    tmp_dirs: Vec<PathBuf>,
    subdir_count: u32,
    hashed_dirs: bool,
    rotate_count: u32,
    rotation: Mutex<Rotation>,
    next_path: AtomicU64,
    readonly: Vec<usize>,
    temp_seq: AtomicU64,
    /// When written file data is forced to disk (`fsync_after_written_bytes`).
    sync_policy: SyncPolicy,
    /// Whether new files can be staged nameless in their own directory (probed at open).
    unnamed: bool,
    /// Each path's figures at the last statvfs, and bytes stored there since: uploads
    /// place files on these instead of asking the file system each time.
    usage: Mutex<Vec<PathUsage>>,
    written_since: Vec<AtomicU64>,
    /// Counts files removed: readers that keep copies (the HTTP cache) check theirs again
    /// when it moves.
    removals: AtomicU64,
}

/// Bytes stored on a path after which its figures are read again before the timer.
const REFRESH_AFTER_BYTES: u64 = 64 << 20;

/// An upload or replica being written in a store path's temp directory.
#[derive(Debug)]
pub struct TempFile {
    pub staged: StagedFile,
    pub store_path: usize,
    /// The `data/HH/LL` a new file was staged in, which its name will carry.
    dirs: Option<(u8, u8)>,
}

impl TempFile {
    /// Stamps the written `file` with a change's time (replicas keep the source's mtime, as
    /// FastDFS does) and puts it in place over `target`.
    pub fn replace_stamped(self, file: std::fs::File, target: &Path, ts: u32) -> io::Result<()> {
        self.staged
            .commit(file, target, Placement::Replace, Some(unix_time(ts)))
    }

    /// [`Self::replace_stamped`] for a created file of `size` bytes, unless `target` holds
    /// one of that size already (a repeated push): false then, and nothing is changed.
    /// The name is tried first, so a new replica, the usual case, costs no lookup of it.
    pub fn create_stamped(
        mut self,
        file: std::fs::File,
        target: &Path,
        ts: u32,
        size: u64,
    ) -> io::Result<bool> {
        self.staged.seal(file, Some(unix_time(ts)))?;
        match self.staged.place(target, Placement::NoReplace) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if std::fs::metadata(target).is_ok_and(|m| m.len() == size) {
                    return Ok(false);
                }
                self.staged.place(target, Placement::Replace)?;
                Ok(true)
            }
            placed => placed.map(|()| true),
        }
    }
}

/// A binlog timestamp as a file time.
pub fn unix_time(ts: u32) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(ts))
}

fn hex_dir(n: u32) -> String {
    format!("{n:02X}")
}

impl Store {
    /// Opens the store paths, creating `data/HH/LL` and clearing stale temp files.
    pub fn open(cfg: &StorageConfig) -> io::Result<Self> {
        let paths = cfg.effective_store_paths();
        let subdir_count = cfg.subdir_count_per_path;
        let mut tmp_dirs = Vec::with_capacity(paths.len());
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
            tmp_dirs.push(tmp);
        }
        let usage = Mutex::new(read_usage(&paths));
        let written_since = paths.iter().map(|_| AtomicU64::new(0)).collect();
        let unnamed = tmp_dirs
            .iter()
            .all(|tmp| crate::fsutil::unnamed_files_work(tmp));
        if !unnamed {
            tracing::info!("no O_TMPFILE here: new files are staged as named temp files");
        }
        Ok(Store {
            unnamed,
            tmp_dirs,
            sync_policy: SyncPolicy::from_written_bytes(cfg.fsync_after_written_bytes),
            usage,
            written_since,
            removals: AtomicU64::new(0),
            paths,
            subdir_count,
            hashed_dirs: cfg.file_distribute_path_mode == 1,
            rotate_count: cfg.file_distribute_rotate_count.max(1),
            rotation: Mutex::new(Rotation::default()),
            next_path: AtomicU64::new(0),
            readonly: cfg.readonly_store_paths.clone(),
            temp_seq: AtomicU64::new(0),
        })
    }

    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    pub fn subdir_count(&self) -> u32 {
        self.subdir_count
    }

    /// The store path for a new file of `size` bytes.
    ///
    /// The client's choice stands unless that path is read-only or short of space;
    /// 0xFF (or a skipped path) leaves it to `policy`. ENOSPC when no path fits.
    pub fn choose_path(
        &self,
        requested: u8,
        size: u64,
        policy: &PathPolicy,
    ) -> Result<usize, Status> {
        if requested != crate::proto::storage::ANY_STORE_PATH
            && usize::from(requested) >= self.paths.len()
        {
            return Err(Status::InvalidArgument);
        }
        let usage = self.cached_usage();
        pick_path(&usage, &self.readonly, requested, size, policy, || {
            self.next_path.fetch_add(1, Ordering::Relaxed)
        })
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

    /// Where the file `name` is kept here: its own file, or a slot in a trunk file (see
    /// [`super::trunk`]). `None` for a name this node cannot hold.
    pub fn stored_at(&self, name: &RemoteName) -> Option<StoredAt> {
        let path = self.file_path(name).ok()?;
        Some(match name.trunk_slot() {
            None => StoredAt::Own(path),
            Some(slot) => StoredAt::Slot {
                root: self.paths[usize::from(name.store_path)].clone(),
                name: name.clone(),
                slot,
            },
        })
    }

    /// Opens a stored file for reading. `NotFound` for a name this node cannot hold.
    pub async fn open_file(&self, name: &RemoteName) -> io::Result<OpenedFile> {
        let at = self.stored_at(name).ok_or(io::ErrorKind::NotFound)?;
        if let Some(opened) = at.open_cached() {
            return opened;
        }
        crate::disk::run(move || at.open())
            .await
            .map_err(io::Error::other)?
    }

    /// [`Self::open_file`] on the caller's thread (a disk thread).
    pub fn open_file_blocking(&self, name: &RemoteName) -> io::Result<OpenedFile> {
        self.stored_at(name).ok_or(io::ErrorKind::NotFound)?.open()
    }

    /// Removes a stored file and its metadata companion: its own file, or its trunk slot
    /// (zeroed). ENOENT when absent; returns whether there was a metadata file.
    pub fn delete_file(&self, name: &RemoteName) -> io::Result<bool> {
        let path = self
            .file_path(name)
            .map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
        let Some(slot) = name.trunk_slot() else {
            return delete(&path);
        };
        super::trunk::free(
            &self.paths[usize::from(name.store_path)],
            name,
            slot,
            super::trunk::Zeroed::Whole,
        )?;
        match std::fs::remove_file(meta_path(&path)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes a stored file as a peer's delete says (not its metadata companion): its own
    /// file, or its trunk slot's header (files the peer has put in that space since may be
    /// here already). ENOENT when absent.
    pub fn remove_replica(&self, name: &RemoteName) -> io::Result<()> {
        match self.stored_at(name).ok_or(io::ErrorKind::NotFound)? {
            StoredAt::Own(path) => std::fs::remove_file(path),
            StoredAt::Slot { root, name, slot } => {
                super::trunk::free(&root, &name, slot, super::trunk::Zeroed::Header)
            }
        }
    }

    /// Stores `data` as the file `name` received from a peer, in its trunk slot; `None`
    /// when `name` is not a trunk file's (it is committed as a file of its own).
    pub fn write_trunk_file(&self, name: &RemoteName, data: &[u8]) -> Option<io::Result<()>> {
        let slot = name.trunk_slot()?;
        let root = self.paths.get(usize::from(name.store_path))?;
        let durable = !matches!(self.sync_policy(), SyncPolicy::Never);
        Some(super::trunk::write(root, name, slot, data, durable))
    }

    /// The name of a new file stored in the trunk slot `block` (stamped with the upload's
    /// start, as FastDFS does).
    pub fn trunk_name(&self, spec: &NewName, block: TrunkBlock, timestamp: u32) -> RemoteName {
        let core = NameCore {
            source: spec.source,
            timestamp,
            size_field: fileid::trunk_size_field(spec.size as u32, rand::random::<u32>()),
            crc32: spec.crc32,
        };
        let ext = fileid::format_ext(&spec.ext, || rand::random::<u8>() % 10);
        RemoteName::new(
            block.store_path,
            block.hh,
            block.ll,
            format!("{}{}{ext}", core.encode(), block.slot().encode()),
        )
    }

    /// Stages a new file for `store_path`, nameless in `dir` (the directory its name will
    /// be in, when known) or else in the store path's temp directory.
    pub fn create_temp(
        &self,
        store_path: usize,
        dir: Option<&Path>,
    ) -> io::Result<(TempFile, std::fs::File)> {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp_dir = &self.tmp_dirs[store_path];
        let dir = if self.unnamed {
            Some(dir.unwrap_or(tmp_dir))
        } else {
            None
        };
        let fallback = || tmp_dir.join(format!("{seq}-{}.tmp", crate::fsutil::process_id()));
        let (staged, file) = StagedFile::create_where(dir, fallback, self.sync_policy)?;
        let temp = TempFile {
            staged,
            store_path,
            dirs: None,
        };
        Ok((temp, file))
    }

    /// Stages a new file that this storage will name (uploads): in the `data/HH/LL` its
    /// name will carry when round-robin distribution decides that now; hashed distribution
    /// decides from the content at commit.
    pub fn create_new(&self, store_path: usize) -> io::Result<(TempFile, std::fs::File)> {
        if self.hashed_dirs {
            return self.create_temp(store_path, None);
        }
        let (hh, ll) = self.subdirs("");
        let dir = self.paths[store_path]
            .join("data")
            .join(hex_dir(hh))
            .join(hex_dir(ll));
        let (mut temp, file) = self.create_temp(store_path, Some(&dir))?;
        temp.dirs = Some((hh as u8, ll as u8));
        Ok((temp, file))
    }

    /// Notes that a stored file was removed (see [`Self::removals`]).
    pub fn note_removed(&self) {
        self.removals.fetch_add(1, Ordering::Release);
    }

    /// How many files have been removed so far: a copy made before this moved may be of a
    /// file that is gone.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// When written file data is forced to disk.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync_policy
    }

    /// Where round-robin naming stands (kept in `storage_stat.dat`).
    pub fn rotation(&self) -> Rotation {
        *self.rotation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up a saved position; values from the file are brought into range.
    pub fn set_rotation(&self, r: Rotation) {
        *self.rotation.lock().unwrap_or_else(|e| e.into_inner()) = Rotation {
            high: r.high % self.subdir_count,
            low: r.low % self.subdir_count,
            count: r.count % self.rotate_count,
        };
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

    /// Names a finished temp file and puts it in place under a name no file has (blocking).
    pub fn commit(
        &self,
        mut temp: TempFile,
        file: std::fs::File,
        spec: &NewName,
    ) -> Result<RemoteName, CommitError> {
        let timestamp = file
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(|| crate::unix_now() as u32, |d| d.as_secs() as u32);
        temp.staged.seal(file, None)?;
        for _ in 0..NAME_ATTEMPTS {
            let name = self.generate_name(temp.store_path, spec, timestamp, temp.dirs);
            let target = self.paths[temp.store_path].join(name.relative_path());
            match temp.staged.place(&target, Placement::NoReplace) {
                Ok(()) => {
                    self.note_written(temp.store_path, spec.size);
                    return Ok(name);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommitError::NoUniqueName)
    }

    /// Puts a finished temp file in place under a name chosen by the caller (slave files).
    pub fn commit_as(
        &self,
        temp: TempFile,
        file: std::fs::File,
        name: &RemoteName,
    ) -> Result<(), CommitError> {
        let target = self.file_path(name).map_err(CommitError::no_store_path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let store_path = temp.store_path;
        match temp
            .staged
            .commit(file, &target, Placement::NoReplace, None)
        {
            Ok(()) => {
                self.note_written(store_path, size);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(CommitError::Exists),
            Err(e) => Err(e.into()),
        }
    }

    /// A fresh name: `suffix` keeps a 7-char ext (regenerated appenders), else one is made.
    pub fn generate_name(
        &self,
        store_path: usize,
        spec: &NewName,
        timestamp: u32,
        dirs: Option<(u8, u8)>,
    ) -> RemoteName {
        let rand23 = rand::random::<u32>();
        let size_field = if spec.appender {
            fileid::appender_size_field(rand23)
        } else {
            fileid::normal_size_field(spec.size, rand23)
        };
        let core = NameCore {
            source: spec.source,
            timestamp,
            size_field,
            crc32: spec.crc32,
        };
        let chars = core.encode();
        let (hh, ll) = match dirs {
            Some((hh, ll)) => (u32::from(hh), u32::from(ll)),
            None => self.subdirs(&chars),
        };
        let suffix = match &spec.suffix {
            Some(s) => s.clone(),
            None => fileid::format_ext(&spec.ext, || rand::random::<u8>() % 10),
        };
        RemoteName::new(
            store_path as u8,
            hh as u8,
            ll as u8,
            format!("{chars}{suffix}"),
        )
    }

    /// Writes a whole file beside its final place and renames it over (metadata files).
    pub fn replace_file(&self, store_path: usize, target: &Path, data: &[u8]) -> io::Result<()> {
        let (temp, mut file) = self.create_temp(store_path, target.parent())?;
        file.write_all(data)?;
        temp.staged.commit(file, target, Placement::Replace, None)
    }

    /// Reads every path's figures from the file system again (blocking); the storage's
    /// timer calls this every second.
    pub fn refresh_usage(&self) -> Vec<PathUsage> {
        let fresh = read_usage(&self.paths);
        for w in &self.written_since {
            w.store(0, Ordering::Relaxed);
        }
        *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        fresh
    }

    /// Total and free MB of each store path as last read, less what was stored since.
    pub fn cached_usage(&self) -> Vec<PathUsage> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (u, w) in usage.iter_mut().zip(&self.written_since) {
            u.free_mb = u
                .free_mb
                .saturating_sub(w.load(Ordering::Relaxed) / (1024 * 1024));
        }
        usage
    }

    /// Counts bytes just stored on `store_path`; after many, reads the figures again
    /// (blocking: callers are on a disk thread).
    pub fn note_written(&self, store_path: usize, bytes: u64) {
        let Some(w) = self.written_since.get(store_path) else {
            return;
        };
        if w.fetch_add(bytes, Ordering::Relaxed) + bytes >= REFRESH_AFTER_BYTES {
            self.refresh_usage();
        }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// Total and free MB of each path (statvfs `f_bavail`), zero for a path that cannot be read.
fn read_usage(paths: &[PathBuf]) -> Vec<PathUsage> {
    paths
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

/// Why a finished upload could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("no unique file name after {NAME_ATTEMPTS} attempts")]
    NoUniqueName,
    #[error("the target name already exists")]
    Exists,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl CommitError {
    /// For a name whose store path this storage does not have: no such file here.
    pub fn no_store_path(_: Status) -> Self {
        CommitError::Io(io::ErrorKind::NotFound.into())
    }

    pub fn status(&self) -> Status {
        match self {
            CommitError::NoUniqueName | CommitError::Exists => Status::AlreadyExists,
            CommitError::Io(e) => io_status(e),
        }
    }
}

/// What goes into a generated name.
#[derive(Debug, Clone)]
pub struct NewName {
    pub source: Source,
    pub ext: String,
    /// A ready 7-char suffix to keep instead of formatting `ext`.
    pub suffix: Option<String>,
    pub size: u64,
    pub crc32: u32,
    pub appender: bool,
}

/// Maps an I/O error to the FastDFS status a peer gets.
pub fn io_status(e: &io::Error) -> Status {
    match e.kind() {
        io::ErrorKind::NotFound => Status::NotFound,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Status::NoSpace,
        io::ErrorKind::IsADirectory => Status::IsDirectory,
        io::ErrorKind::PermissionDenied => Status::PermissionDenied,
        io::ErrorKind::AlreadyExists => Status::AlreadyExists,
        _ => Status::Io,
    }
}

/// Store-path placement rules, from the config or the tracker's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathPolicy {
    /// 0 round robin, 2 most free space.
    pub mode: u8,
    pub reserved: ReservedSpace,
}

/// The store path choice on given disk figures: `requested` when it is a path that is not
/// read-only and keeps its share of the reserved space after `size` bytes, otherwise the
/// fitting path with the most free space (mode 2) or the next fitting one in turn (mode 0,
/// `turn` counting the turns). ENOSPC when none fits.
fn pick_path(
    usage: &[PathUsage],
    readonly: &[usize],
    requested: u8,
    size: u64,
    policy: &PathPolicy,
    turn: impl FnOnce() -> u64,
) -> Result<usize, Status> {
    let n = usage.len();
    if n == 0 {
        return Err(Status::NoSpace);
    }
    let fits = |i: usize| {
        !readonly.contains(&i)
            && usage.get(i).is_some_and(|u| {
                let after = u.free_mb.saturating_sub(size.div_ceil(1024 * 1024));
                match policy.reserved {
                    ReservedSpace::Mb(mb) => after > mb / n as u64,
                    ReservedSpace::Ratio(_) => policy.reserved.has_room(after, u.total_mb),
                }
            })
    };
    if requested != crate::proto::storage::ANY_STORE_PATH && fits(usize::from(requested)) {
        return Ok(usize::from(requested));
    }
    if policy.mode == 2 {
        return (0..n)
            .filter(|&i| fits(i))
            .max_by_key(|&i| usage[i].free_mb)
            .ok_or(Status::NoSpace);
    }
    let start = (turn() % n as u64) as usize;
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| fits(i))
        .ok_or(Status::NoSpace)
}

/// Writes `data` to a temp file and commits it (blocking; used for small uploads).
pub fn write_small(
    store: &Store,
    store_path: usize,
    spec: &NewName,
    data: &[u8],
) -> Result<RemoteName, CommitError> {
    let (temp, mut file) = store.create_new(store_path)?;
    file.write_all(data)?;
    store.commit(temp, file, spec)
}

/// Path of a file's metadata companion.
pub fn meta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-m");
    PathBuf::from(p)
}

/// Where a stored file's bytes are kept.
#[derive(Debug, Clone)]
pub enum StoredAt {
    /// A file of its own.
    Own(PathBuf),
    /// A slot of a trunk file under `root`, its store path.
    Slot {
        root: PathBuf,
        name: RemoteName,
        slot: fileid::TrunkSlot,
    },
}

impl StoredAt {
    /// Opens the file for reading (a disk step); `NotFound` when it is not there.
    pub fn open(&self) -> io::Result<OpenedFile> {
        match self {
            StoredAt::Own(path) => crate::disk::open_regular_blocking(path),
            StoredAt::Slot { root, name, slot } => super::trunk::open(root, name, *slot),
        }
    }

    /// Whether something is stored under the name (a disk step): a stat of its own file,
    /// the header check of a slot. Errors other than its absence are passed on.
    pub fn exists(&self) -> io::Result<bool> {
        match self {
            StoredAt::Own(path) => std::fs::metadata(path).map(|m| m.is_file()),
            StoredAt::Slot { .. } => self.open().map(|_| true),
        }
    }

    /// [`Self::open`] on any thread: `None` when it would have to read the disk.
    pub fn open_cached(&self) -> Option<io::Result<OpenedFile>> {
        match self {
            StoredAt::Own(path) => crate::disk::open_regular_cached(path),
            StoredAt::Slot { root, name, slot } => super::trunk::open_if_cached(root, name, *slot),
        }
    }
}

/// Removes a file and its metadata companion (`<name>-m`). ENOENT when absent.
/// Returns whether there was a metadata file.
pub fn delete(path: &Path) -> io::Result<bool> {
    std::fs::remove_file(path)?;
    match std::fs::remove_file(meta_path(path)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn store(dir: &Path, subdirs: u32) -> Store {
        let cfg = StorageConfig {
            base_path: dir.into(),
            subdir_count_per_path: subdirs,
            ..Default::default()
        };
        Store::open(&cfg).expect("open")
    }

    #[test]
    fn stored_bytes_count_against_the_cached_free_space_until_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 1);
        let before = s.cached_usage()[0].free_mb;
        s.note_written(0, 10 << 20);
        assert_eq!(s.cached_usage()[0].free_mb, before.saturating_sub(10));
        // Past the refresh threshold the figures are read again from the file system.
        s.note_written(0, REFRESH_AFTER_BYTES);
        assert_eq!(s.written_since[0].load(Ordering::Relaxed), 0);
        s.note_written(0, 3 << 20);
        let fresh = s.refresh_usage()[0].free_mb;
        assert_eq!(s.cached_usage()[0].free_mb, fresh);
        // An unknown store path changes nothing.
        s.note_written(9, 1 << 30);
    }

    /// A pushed file is placed under its name when new, left alone when a file of its
    /// size is there (a repeated push), and replaced when the one there differs; each
    /// keeps the change's time.
    #[test]
    fn a_created_replica_takes_a_free_name_keeps_an_equal_file_and_replaces_another() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 1);
        let target = dir.path().join("data/00/00/replica");
        let push = |bytes: &[u8], ts: u32| {
            let (temp, mut file) = s.create_temp(0, target.parent()).expect("temp");
            file.write_all(bytes).expect("write");
            temp.create_stamped(file, &target, ts, bytes.len() as u64)
                .expect("place")
        };
        let mtime = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        assert!(push(b"first", 1_000), "a free name");
        assert_eq!(std::fs::read(&target).expect("read"), b"first");
        assert_eq!(mtime(&target), unix_time(1_000));
        assert!(!push(b"again", 2_000), "same size: a repeated push");
        assert_eq!(std::fs::read(&target).expect("read"), b"first");
        assert_eq!(mtime(&target), unix_time(1_000));
        assert!(push(b"longer one", 3_000), "another size: replaced");
        assert_eq!(std::fs::read(&target).expect("read"), b"longer one");
        assert_eq!(mtime(&target), unix_time(3_000));
        // Nothing staged is left beside it.
        let names: Vec<_> = std::fs::read_dir(target.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("replica")]);
    }

    fn disks(free_mb: &[u64]) -> Vec<PathUsage> {
        free_mb
            .iter()
            .map(|&free_mb| PathUsage {
                total_mb: 1000,
                free_mb,
            })
            .collect()
    }

    #[test]
    fn most_free_space_picks_the_emptiest_path_that_fits() {
        let most_free = PathPolicy {
            mode: 2,
            reserved: ReservedSpace::Mb(300),
        };
        let any = crate::proto::storage::ANY_STORE_PATH;
        let pick = |usage: &[PathUsage], readonly: &[usize], requested, size| {
            pick_path(usage, readonly, requested, size, &most_free, || {
                panic!("no turns in mode 2")
            })
        };
        assert_eq!(pick(&disks(&[200, 700, 500]), &[], any, 0), Ok(1));
        assert_eq!(
            pick(&disks(&[200, 700, 500]), &[1], any, 0),
            Ok(2),
            "read-only"
        );
        // The client's path stands while it keeps its share (300 / 3) of the reserve.
        assert_eq!(pick(&disks(&[200, 700, 500]), &[], 0, 0), Ok(0));
        assert_eq!(pick(&disks(&[200, 700, 500]), &[], 0, 100 << 20), Ok(1));
        // 150 MB more leaves path 1 at 550 and path 2 at 350: both above 100.
        assert_eq!(pick(&disks(&[50, 700, 500]), &[1], any, 150 << 20), Ok(2));
        assert_eq!(
            pick(&disks(&[50, 90, 100]), &[], any, 0),
            Err(Status::NoSpace)
        );
        let ratio = PathPolicy {
            mode: 2,
            reserved: ReservedSpace::Ratio(0.5),
        };
        let picked = pick_path(&disks(&[400, 600]), &[], any, 0, &ratio, || 0);
        assert_eq!(picked, Ok(1));
        let picked = pick_path(&disks(&[400, 450]), &[], any, 0, &ratio, || 0);
        assert_eq!(picked, Err(Status::NoSpace), "under half free everywhere");
    }

    #[test]
    fn round_robin_takes_the_next_path_that_fits() {
        let turns = PathPolicy {
            mode: 0,
            reserved: ReservedSpace::Mb(0),
        };
        let any = crate::proto::storage::ANY_STORE_PATH;
        let usage = disks(&[500, 500, 500]);
        let picked: Vec<_> = (0..4)
            .map(|t| pick_path(&usage, &[], any, 0, &turns, || t))
            .collect();
        assert_eq!(picked, [Ok(0), Ok(1), Ok(2), Ok(0)]);
        assert_eq!(pick_path(&usage, &[1], any, 0, &turns, || 1), Ok(2));
        assert_eq!(
            pick_path(&disks(&[500, 0, 500]), &[], any, 0, &turns, || 1),
            Ok(2),
            "a full path is skipped"
        );
    }

    #[test]
    fn creates_layout_and_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 4);
        assert!(dir.path().join("data/03/03").is_dir());
        assert!(!dir.path().join("data/04").exists());
        let spec = NewName {
            source: Source::Ip(Ipv4Addr::new(127, 0, 0, 2)),
            ext: "txt".into(),
            suffix: None,
            size: 5,
            crc32: crc32fast::hash(b"hello"),
            appender: false,
        };
        let name = write_small(&s, 0, &spec, b"hello").expect("commit");
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
        let data = dir.path().join("data");
        let listing = |d: &Path| std::fs::read_dir(d).expect("list").count();
        let (temp, _file) = s.create_temp(0, Some(&data.join("00/00"))).expect("temp");
        drop(temp);
        assert_eq!(
            (listing(&data.join("00/00")), listing(&data.join(TMP_DIR))),
            (0, 0)
        );
        let (temp, _file) = s.create_temp(0, None).expect("temp");
        drop(temp);
        assert_eq!(listing(&data.join(TMP_DIR)), 0);
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
    fn a_saved_rotation_out_of_range_is_brought_into_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 2);
        s.set_rotation(Rotation {
            high: u32::MAX,
            low: u32::MAX,
            count: u32::MAX,
        });
        // 2^32 - 1 is odd: both directories 1; the count keeps its place in the 100.
        assert_eq!(
            s.rotation(),
            Rotation {
                high: 1,
                low: 1,
                count: 95
            }
        );
        let dirs: Vec<(u32, u32)> = (0..6).map(|_| s.subdirs("x")).collect();
        assert_eq!(dirs, [(1, 1), (1, 1), (1, 1), (1, 1), (1, 1), (0, 0)]);
    }

    #[test]
    fn refuses_foreign_store_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), 2);
        let name = RemoteName::parse("M01/00/00/abcdefgh").expect("parse");
        assert_eq!(s.file_path(&name), Err(Status::InvalidArgument));
        let name = RemoteName::parse("M00/05/00/abcdefgh").expect("parse");
        assert_eq!(s.file_path(&name), Err(Status::InvalidArgument));
        let policy = PathPolicy {
            mode: 0,
            reserved: ReservedSpace::Mb(0),
        };
        assert_eq!(s.choose_path(3, 1, &policy), Err(Status::InvalidArgument));
        assert_eq!(s.choose_path(0, 1, &policy), Ok(0));
        // A reserve no disk can keep free, however empty it is.
        let greedy = PathPolicy {
            mode: 0,
            reserved: ReservedSpace::Mb(1 << 40),
        };
        assert_eq!(s.choose_path(0xFF, 1, &greedy), Err(Status::NoSpace));
    }
}
