//! File-system steps shared by the roles.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, RenameFlags, renameat_with};
use rustix::io::Errno;

/// When written bytes are forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Left to the kernel's writeback: FastDFS's default (`fsync_after_written_bytes = 0`).
    Never,
    /// fsync after every N bytes written, the whole file before it is put in place, and
    /// its directory after (`fsync_after_written_bytes = N`).
    EveryBytes(u64),
    /// fsync the file before it is put in place and the directory after (state files).
    Always,
}

impl SyncPolicy {
    /// FastDFS's `fsync_after_written_bytes`: 0 leaves data to the kernel.
    pub fn from_written_bytes(n: u64) -> Self {
        if n == 0 {
            SyncPolicy::Never
        } else {
            SyncPolicy::EveryBytes(n)
        }
    }

    /// Whether a file is synced before its rename, and its directory after.
    pub fn on_commit(self) -> bool {
        self != SyncPolicy::Never
    }

    /// Whether `unsynced` bytes written since the last fsync call for one now.
    pub fn due(self, unsynced: u64) -> bool {
        matches!(self, SyncPolicy::EveryBytes(n) if unsynced >= n)
    }
}

/// How a finished file takes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Over whatever holds the name (replicas, state files).
    Replace,
    /// Only where no file holds the name: AlreadyExists otherwise, and the staged file
    /// stays, so the caller can try another name.
    NoReplace,
}

/// A file written away from its name and put in place only once whole, so a crash or an
/// error never leaves a partial file under a real name. The one write path of uploads,
/// replicas, recovered files, metadata and state files: staged file → fsync by policy →
/// name given (replacing or not) → directory fsync by policy. A staged file not put in
/// place leaves nothing behind.
///
/// Where the file system allows, the staged file is an `O_TMPFILE` inode in the target's
/// own directory: it has no name until it is linked, so a crash leaves nothing to clean
/// and concurrent writers in different directories never share a directory lock or an
/// inode group (one shared temp directory made every upload queue on it). Elsewhere it
/// is a named temp file, removed on every path that does not put it in place.
#[derive(Debug)]
pub struct StagedFile {
    staging: Staging,
    policy: SyncPolicy,
    placed: bool,
}

#[derive(Debug)]
enum Staging {
    /// An `O_TMPFILE` inode made in `dir`; the writer's descriptor is kept here once
    /// sealed, to link it by (no second descriptor per file).
    Unnamed { fd: Option<OwnedFd>, dir: PathBuf },
    /// A named temp file.
    Named(PathBuf),
}

/// Whether `/proc/self/fd` exists, which linking an unnamed file without privileges needs.
fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// Whether nameless files can be made in `dir` and linked under a name there, tried once
/// with a probe file (file systems, kernels and sandboxes differ).
pub fn unnamed_files_work(dir: &Path) -> bool {
    let probe = dir.join(format!(".unnamed-probe-{}", std::process::id()));
    let fallback = dir.join(format!(".unnamed-probe-{}.tmp", std::process::id()));
    let Ok((mut staged, file)) = StagedFile::create_in(dir, || fallback, SyncPolicy::Never) else {
        return false;
    };
    let unnamed = matches!(staged.staging, Staging::Unnamed { .. });
    let linked = staged
        .seal(file, None)
        .and_then(|()| staged.place(&probe, Placement::NoReplace))
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    unnamed && linked
}

impl StagedFile {
    /// Creates the named temp file `path`, which must not exist yet.
    pub fn create(path: PathBuf, policy: SyncPolicy) -> io::Result<(Self, File)> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((
            StagedFile {
                staging: Staging::Named(path),
                policy,
                placed: false,
            },
            file,
        ))
    }

    /// Creates a nameless file in `dir`, or the named temp file `fallback` where the file
    /// system has no `O_TMPFILE`.
    pub fn create_in(
        dir: &Path,
        fallback: impl FnOnce() -> PathBuf,
        policy: SyncPolicy,
    ) -> io::Result<(Self, File)> {
        Self::create_where(Some(dir), fallback, policy)
    }

    /// `create_in(dir, …)` when `dir` is given, else the named temp file `fallback`
    /// (made only when needed: naming it costs a format and a `getpid` per file).
    pub fn create_where(
        dir: Option<&Path>,
        fallback: impl FnOnce() -> PathBuf,
        policy: SyncPolicy,
    ) -> io::Result<(Self, File)> {
        if let (Some(dir), true) = (dir, proc_fd_available()) {
            let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
            match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o666)) {
                Ok(fd) => {
                    return Ok((
                        StagedFile {
                            staging: Staging::Unnamed {
                                fd: None,
                                dir: dir.to_path_buf(),
                            },
                            policy,
                            placed: false,
                        },
                        File::from(fd),
                    ));
                }
                // Not supported here (old kernel, some file systems): a named temp file.
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Self::create(fallback(), policy)
    }

    /// The temp file's path, or for a nameless one the directory it was made in.
    pub fn path(&self) -> &Path {
        match &self.staging {
            Staging::Unnamed { dir, .. } => dir,
            Staging::Named(path) => path,
        }
    }

    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// Finishes the written `file`: its mtime when given, fsync by policy; closed, or for
    /// a nameless file kept to link it by.
    pub fn seal(&mut self, file: File, mtime: Option<SystemTime>) -> io::Result<()> {
        if let Some(t) = mtime {
            file.set_modified(t)?;
        }
        if self.policy.on_commit() {
            file.sync_all()?;
        }
        if let Staging::Unnamed { fd, .. } = &mut self.staging {
            *fd = Some(file.into());
        }
        Ok(())
    }

    /// Gives the sealed file its name, then syncs the directory by policy. With
    /// `NoReplace` an existing name gives AlreadyExists and the staged file stays, so the
    /// caller can try another name.
    pub fn place(&mut self, target: &Path, how: Placement) -> io::Result<()> {
        match (&self.staging, how) {
            (Staging::Named(path), Placement::Replace) => std::fs::rename(path, target)?,
            (Staging::Named(path), Placement::NoReplace) => rename_noreplace(path, target)?,
            (Staging::Unnamed { fd: None, .. }, _) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a staged file is placed before it is sealed",
                ));
            }
            (Staging::Unnamed { fd: Some(fd), .. }, Placement::NoReplace) => {
                link_unnamed(fd, target)?
            }
            (Staging::Unnamed { fd: Some(fd), .. }, Placement::Replace) => {
                // A name not taken yet (most replicas) is linked directly; a taken one is
                // linked under a temp name beside it, then renamed over it, so the target
                // never goes missing in between.
                match link_unnamed(fd, target) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let beside = beside(target);
                        link_unnamed(fd, &beside)?;
                        if let Err(e) = std::fs::rename(&beside, target) {
                            let _ = std::fs::remove_file(&beside);
                            return Err(e);
                        }
                    }
                    linked => linked?,
                }
            }
        }
        self.placed = true;
        if self.policy.on_commit() {
            sync_dir(target)?;
        }
        Ok(())
    }

    /// Seals `file` and gives it its name in one step.
    pub fn commit(
        mut self,
        file: File,
        target: &Path,
        how: Placement,
        mtime: Option<SystemTime>,
    ) -> io::Result<()> {
        self.seal(file, mtime)?;
        self.place(target, how)
    }
}

/// Cuts a log of lines (opened to append and read) back to its last line break. A write
/// cut short (a full disk, a crash) can leave it ending inside a line: a line appended
/// next would run into it, and the cut line itself can read back as another record (a
/// number cut short). Returns the bytes dropped.
pub fn drop_cut_line(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let keep = whole_lines_len(file, len)?;
    if keep < len {
        file.set_len(keep)?;
    }
    Ok(len - keep)
}

/// The length of the longest part of `file` (`len` bytes) that ends with a line break.
fn whole_lines_len(file: &File, len: u64) -> io::Result<u64> {
    const STEP: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(STEP);
        buf.resize((end - start) as usize, 0);
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, start)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Renames without ever replacing an existing file: AlreadyExists when `to` is taken.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        // File systems that take no rename flags (NFS among them) answer EINVAL.
        Err(Errno::INVAL | Errno::NOSYS) => move_by_link(from, to),
        renamed => Ok(renamed?),
    }
}

/// [`rename_noreplace`] by a hard link, which fails the same way on a taken name, then the
/// removal of the old name.
fn move_by_link(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::hard_link(from, to)?;
    if let Err(e) = std::fs::remove_file(from) {
        // The file is in place under `to`; only its temp name is left over.
        tracing::warn!(error = %e, path = %from.display(), "cannot remove a temp name");
    }
    Ok(())
}

/// Links an `O_TMPFILE` inode under `target`; EEXIST when the name is taken.
fn link_unnamed(fd: &OwnedFd, target: &Path) -> io::Result<()> {
    // `linkat(fd, "", AT_EMPTY_PATH)` skips resolving a /proc path per file. Linux 6.10+
    // allows it to the opener of the file, older kernels only with CAP_DAC_READ_SEARCH:
    // after the first refusal, /proc/self/fd is used.
    static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);
    let refused = EMPTY_PATH_REFUSED.load(Ordering::Relaxed);
    if !refused {
        match rustix::fs::linkat(fd, "", CWD, target, AtFlags::EMPTY_PATH) {
            Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {}
            done => return Ok(done?),
        }
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(
        CWD,
        proc_path.as_str(),
        CWD,
        target,
        AtFlags::SYMLINK_FOLLOW,
    )?;
    if !refused {
        // The /proc way worked where the direct one did not: the kernel refuses it.
        EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// This process's id, for temp names unique across processes (read once: `process::id`
/// is a syscall each time).
pub fn process_id() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A temp name beside `target`, unique in this process and across processes.
fn beside(target: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut name = target.as_os_str().to_owned();
    name.push(format!(
        ".{}-{}.tmp",
        process_id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    PathBuf::from(name)
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        // A nameless file is freed with its last descriptor; a named one is removed.
        if let (Staging::Named(path), false) = (&self.staging, self.placed) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// fsyncs the directory holding `path`, so a rename into it survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Replaces `path` with `bytes` so that a crash leaves the old content or the new, never a
/// mix. Each call has its own temp name, so writers of the same file never meet. Blocking.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", SEQ.fetch_add(1, Ordering::Relaxed)));
    let tmp = PathBuf::from(tmp);
    // Left by a crash of an earlier run (its counter started at 0 too): nobody else
    // writes this name.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let (staged, mut file) = StagedFile::create(tmp, SyncPolicy::Always)?;
    file.write_all(bytes)?;
    staged.commit(file, path, Placement::Replace, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_by_link_places_the_file_once_and_never_over_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (temp, target) = (dir.path().join("t.tmp"), dir.path().join("file"));
        std::fs::write(&temp, b"new").expect("temp");
        move_by_link(&temp, &target).expect("moved");
        assert_eq!(std::fs::read(&target).expect("target"), b"new");
        assert!(!temp.exists());
        std::fs::write(&temp, b"other").expect("temp");
        assert_eq!(
            move_by_link(&temp, &target).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(std::fs::read(&target).expect("target"), b"new");
    }

    #[test]
    fn a_state_file_is_written_over_a_temp_file_a_crash_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        // Every temp name this process will try first, as an earlier run left them.
        for n in 0..64 {
            std::fs::write(dir.path().join(format!("state.json.tmp{n}")), b"torn").expect("w");
        }
        write_atomically(&path, b"whole").expect("written");
        assert_eq!(std::fs::read(&path).expect("state"), b"whole");
    }

    #[test]
    fn a_log_ending_inside_a_line_is_cut_back_to_its_last_line_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&p)
                .expect("open")
        };
        assert_eq!(drop_cut_line(&open()).expect("empty"), 0);
        std::fs::write(&p, "one\ntwo 40").expect("seed");
        assert_eq!(drop_cut_line(&open()).expect("cut"), 6);
        assert_eq!(drop_cut_line(&open()).expect("whole"), 0);
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "one\n");
        // No line break at all within more than one step of reading back.
        std::fs::write(&p, vec![0u8; 200_000]).expect("zeros");
        assert_eq!(drop_cut_line(&open()).expect("zeros"), 200_000);
        assert_eq!(std::fs::metadata(&p).expect("len").len(), 0);
        let mut tail = b"a\n".to_vec();
        tail.extend(vec![0u8; 150_000]);
        std::fs::write(&p, tail).expect("line then zeros");
        assert_eq!(drop_cut_line(&open()).expect("zeros"), 150_000);
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "a\n");
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub").join("state.dat");
        write_atomically(&p, b"one").expect("first");
        write_atomically(&p, b"two").expect("second");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["state.dat"]);
        // A directory in the way: the error is returned and no temp file stays.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).expect("dir");
        assert!(write_atomically(&blocked, b"data").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_staged_file_never_shows_under_its_name_unless_placed() {
        for policy in [
            SyncPolicy::Never,
            SyncPolicy::EveryBytes(1),
            SyncPolicy::Always,
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let target = dir.path().join("file");
            std::fs::write(&target, b"old").expect("old");

            // Dropped before placing (a connection lost mid-body): the temp goes.
            let (staged, mut f) =
                StagedFile::create(dir.path().join("a.tmp"), policy).expect("create");
            f.write_all(b"partial").expect("write");
            drop((staged, f));
            assert_eq!(names(dir.path()), ["file"]);

            // NoReplace over an existing name: AlreadyExists, the old file is intact,
            // and the temp goes once the caller gives up.
            let (mut staged, mut f) =
                StagedFile::create(dir.path().join("b.tmp"), policy).expect("create");
            f.write_all(b"new").expect("write");
            staged.seal(f, None).expect("seal");
            let err = staged
                .place(&target, Placement::NoReplace)
                .expect_err("exists");
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
            drop(staged);
            assert_eq!(names(dir.path()), ["file"]);
            assert_eq!(std::fs::read(&target).expect("read"), b"old");

            // A target whose directory is missing: the error comes back, no temp stays.
            let (staged, f) = StagedFile::create(dir.path().join("c.tmp"), policy).expect("create");
            let missing = dir.path().join("no-such-dir").join("file");
            assert!(
                staged
                    .commit(f, &missing, Placement::Replace, None)
                    .is_err()
            );
            assert_eq!(names(dir.path()), ["file"]);

            // A temp name that is taken is refused rather than written through.
            std::fs::write(dir.path().join("d.tmp"), b"someone else").expect("taken");
            assert!(StagedFile::create(dir.path().join("d.tmp"), policy).is_err());
            std::fs::remove_file(dir.path().join("d.tmp")).expect("rm");

            // Placed with Replace and an mtime: the new bytes and time, nothing else.
            let (staged, mut f) =
                StagedFile::create(dir.path().join("e.tmp"), policy).expect("create");
            f.write_all(b"whole").expect("write");
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
            staged
                .commit(f, &target, Placement::Replace, Some(t))
                .expect("commit");
            assert_eq!(names(dir.path()), ["file"]);
            assert_eq!(std::fs::read(&target).expect("read"), b"whole");
            let mtime = std::fs::metadata(&target)
                .expect("meta")
                .modified()
                .expect("mtime");
            assert_eq!(mtime, t);
        }
    }

    #[test]
    fn a_file_staged_in_its_directory_has_no_name_until_placed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fallback = || dir.path().join("fallback.tmp");
        let target = dir.path().join("file");
        std::fs::write(&target, b"old").expect("old");
        // The probe for nameless files leaves nothing behind, whatever it finds.
        let _ = unnamed_files_work(dir.path());
        assert_eq!(names(dir.path()), ["file"]);

        // Written and dropped: nothing was ever named, nothing stays.
        let (staged, mut f) =
            StagedFile::create_in(dir.path(), fallback, SyncPolicy::Always).expect("create");
        f.write_all(b"partial").expect("write");
        assert_eq!(names(dir.path()), ["file"]);
        drop((staged, f));
        assert_eq!(names(dir.path()), ["file"]);

        // NoReplace over a taken name: AlreadyExists, the old file intact; another name works.
        let (mut staged, mut f) =
            StagedFile::create_in(dir.path(), fallback, SyncPolicy::Never).expect("create");
        f.write_all(b"new").expect("write");
        // Not sealed yet: the writer still holds the file, so there is nothing to place.
        let early = staged
            .place(&dir.path().join("early"), Placement::NoReplace)
            .expect_err("not sealed");
        assert_eq!(early.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(names(dir.path()), ["file"]);
        staged.seal(f, None).expect("seal");
        let err = staged
            .place(&target, Placement::NoReplace)
            .expect_err("taken");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).expect("read"), b"old");
        staged
            .place(&dir.path().join("other"), Placement::NoReplace)
            .expect("free name");
        assert_eq!(names(dir.path()), ["file", "other"]);
        assert_eq!(
            std::fs::read(dir.path().join("other")).expect("read"),
            b"new"
        );

        // Replace: the new bytes under the old name and no temp name left beside it.
        let (staged, mut f) =
            StagedFile::create_in(dir.path(), fallback, SyncPolicy::Never).expect("create");
        f.write_all(b"replaced").expect("write");
        staged
            .commit(f, &target, Placement::Replace, None)
            .expect("replace");
        assert_eq!(std::fs::read(&target).expect("read"), b"replaced");
        assert_eq!(names(dir.path()), ["file", "other"]);

        // Replace onto a free name (a replica's usual case): placed, nothing beside it.
        let (staged, mut f) =
            StagedFile::create_in(dir.path(), fallback, SyncPolicy::Never).expect("create");
        f.write_all(b"fresh").expect("write");
        staged
            .commit(f, &dir.path().join("fresh"), Placement::Replace, None)
            .expect("replace onto a free name");
        assert_eq!(names(dir.path()), ["file", "fresh", "other"]);
        assert_eq!(
            std::fs::read(dir.path().join("fresh")).expect("read"),
            b"fresh"
        );
    }

    #[test]
    fn fastdfs_written_bytes_setting_maps_to_a_policy() {
        assert_eq!(SyncPolicy::from_written_bytes(0), SyncPolicy::Never);
        let every = SyncPolicy::from_written_bytes(1 << 20);
        assert!(every.on_commit() && every.due(1 << 20) && !every.due((1 << 20) - 1));
        assert!(!SyncPolicy::Never.on_commit() && !SyncPolicy::Never.due(u64::MAX));
        assert!(SyncPolicy::Always.on_commit() && !SyncPolicy::Always.due(u64::MAX));
    }
}
