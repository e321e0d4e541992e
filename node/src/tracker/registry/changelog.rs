//! The storage changelog, FastDFS's `<base_path>/data/storage_changelog.dat`: one line per
//! storage deleted (93) or whose IP address changed (78), which storages read from where
//! they left off (STORAGE_CHANGELOG_REQ, 77) to drop or rename their sync marks.
//!
//! ```text
//! <unix time> <group> <storage id> <status> <new id>\n
//! ```
//!
//! (status 4 DELETED with an empty new id, or 3 IP_CHANGED with the new address.)
//! And REPORT_IP_CHANGED (78) itself: with IP identities, a storage that comes back at a new
//! address takes over its old record.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Registry;
use crate::proto::{Status, StorageStatus};

/// Most bytes of changelog one reply carries; the storage asks again after its next beat.
pub const MAX_CHUNK: usize = 64 * 1024;

/// The changelog's lines, kept in memory (one short line per delete or move) and, once
/// the tracker opened its file, on disk.
#[derive(Debug, Default)]
pub struct Changelog {
    path: Option<PathBuf>,
    text: Vec<u8>,
    /// Whether a write to the file failed: it may end inside a line, or lack lines the
    /// memory holds.
    cut: bool,
}

impl Changelog {
    /// Reads the changelog under `base_path`, or starts an empty one there.
    pub fn open(base_path: &Path) -> std::io::Result<Self> {
        let path = base_path.join("data").join("storage_changelog.dat");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        if !text.is_empty() && !text.ends_with(b"\n") {
            // A write cut short: its line is dropped (in place: the disk may be full), and
            // the next stands on its own.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)?;
            let dropped = crate::fsutil::drop_cut_line(&file)?;
            text.truncate(text.len() - dropped as usize);
            tracing::warn!(path = %path.display(), dropped, "storage changelog ended inside a line; cut back to its last whole line");
        }
        Ok(Changelog {
            path: Some(path),
            text,
            cut: false,
        })
    }

    /// Its length in bytes: where a storage that joins now starts reading.
    pub(super) fn len(&self) -> u64 {
        self.text.len() as u64
    }

    fn append(&mut self, now: u64, group: &str, id: &str, status: StorageStatus, new_id: &str) {
        let line = format!("{now} {group} {id} {} {new_id}\n", status as u8);
        self.text.extend_from_slice(line.as_bytes());
        if let Some(path) = &self.path {
            let written = if self.cut {
                // The file may hold part of a line: it is written whole from memory, which
                // the offsets storages hold point into.
                crate::fsutil::write_atomically(path, &self.text)
            } else {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| {
                        f.write_all(line.as_bytes())?;
                        f.sync_data()
                    })
            };
            self.cut = written.is_err();
            if let Err(e) = written {
                tracing::error!(path = %path.display(), error = %e, "storage changelog not written");
            }
        }
    }

    /// Takes another tracker's changelog as this one's, when this one is still empty, so
    /// the read offsets that came with it point at the same lines.
    fn adopt(&mut self, text: &[u8]) -> std::io::Result<()> {
        if !self.text.is_empty() || text.is_empty() {
            return Ok(());
        }
        if let Some(path) = &self.path {
            crate::fsutil::write_atomically(path, text)?;
        }
        self.text = text.to_vec();
        Ok(())
    }

    /// Up to [`MAX_CHUNK`] bytes from `offset`, whole lines only where there is more, and
    /// the offset after them: a line cut in two would be read as two bad lines.
    fn chunk_from(&self, offset: u64) -> (&[u8], u64) {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        let mut end = (start + MAX_CHUNK).min(self.text.len());
        if end < self.text.len()
            && let Some(last) = self.text[start..end].iter().rposition(|&b| b == b'\n')
        {
            end = start + last + 1;
        }
        (&self.text[start..end], end as u64)
    }
}

impl Registry {
    /// Opens the changelog file under the tracker's base path.
    pub fn open_changelog(&mut self, base_path: &Path) -> std::io::Result<()> {
        self.changelog = Changelog::open(base_path)?;
        Ok(())
    }

    /// Takes a changelog fetched from another tracker (see `Changelog::adopt`).
    pub fn adopt_changelog(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.changelog.adopt(text)
    }

    /// The changelog as it stands (FastDFS's fourth system file).
    pub(super) fn changelog_bytes(&self) -> &[u8] {
        &self.changelog.text
    }

    /// Records that a storage was deleted.
    pub(super) fn log_deleted(&mut self, group: &str, id: &str) {
        self.changelog
            .append(crate::unix_now(), group, id, StorageStatus::Deleted, "");
    }

    /// STORAGE_CHANGELOG_REQ (77): what `id` of `group` has not read of the changelog yet.
    pub fn changelog_chunk(&mut self, group: &str, id: &str) -> Result<Vec<u8>, Status> {
        let m = self
            .groups
            .get_mut(group)
            .and_then(|g| g.members.get_mut(id))
            .ok_or(Status::NotFound)?;
        let (chunk, next) = self.changelog.chunk_from(m.changelog_offset);
        m.changelog_offset = next;
        Ok(chunk.to_vec())
    }

    /// REPORT_IP_CHANGED (78), with IP identities only: the storage that was `old_ip` now
    /// joins from `new_ip` (the connection's address). Its record moves to the new address
    /// with everything it holds (sync source, progress, the trunk server role), peers
    /// naming it as their sync source follow, and the old address is left as IP_CHANGED;
    /// the move goes into the changelog. Refused, as FastDFS refuses it, while the old
    /// record is still serving, or when the new address is taken.
    pub fn ip_changed(
        &mut self,
        group: &str,
        old_ip: &str,
        new_ip: &str,
        peer_ip: &str,
        now: u64,
    ) -> Result<(), Status> {
        if self.policy.use_storage_id {
            return Err(Status::NotSupported);
        }
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        if new_ip != peer_ip {
            return Err(Status::InvalidArgument);
        }
        let old = g.members.get(old_ip).ok_or(Status::NotFound)?;
        match old.status {
            StorageStatus::Deleted => return Err(Status::NotFound),
            StorageStatus::Online | StorageStatus::Active | StorageStatus::Recovery => {
                return Err(Status::Busy);
            }
            StorageStatus::IpChanged => return Err(Status::AlreadyDone),
            _ => {}
        }
        if g.members
            .get(new_ip)
            .is_some_and(|m| m.status != StorageStatus::Deleted)
        {
            return Err(Status::AlreadyExists);
        }
        let mut moved = old.clone();
        moved.id = new_ip.to_owned();
        moved.ip = new_ip.to_owned();
        moved.session = 0;
        let mut left = old.clone();
        left.status = StorageStatus::IpChanged;
        left.session = 0;
        left.src_id.clear();
        g.members.insert(old_ip.to_owned(), left);
        g.members.insert(new_ip.to_owned(), moved);
        for m in g.members.values_mut() {
            if m.src_id == old_ip {
                m.src_id = new_ip.to_owned();
            }
        }
        if g.trunk.server.as_deref() == Some(old_ip) {
            g.trunk.server = Some(new_ip.to_owned());
            g.trunk.changes += 1;
        }
        g.changes += 1;
        tracing::info!(
            group,
            old = old_ip,
            new = new_ip,
            "storage IP address changed"
        );
        self.changelog
            .append(now, group, old_ip, StorageStatus::IpChanged, new_ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrackerConfig;
    use crate::proto::report::JoinRequest;

    #[test]
    fn a_chunk_of_a_long_changelog_ends_at_a_line_break() {
        let mut log = Changelog::default();
        let mut n = 0;
        while log.text.len() < MAX_CHUNK + 1000 {
            log.append(
                1_700_000_000,
                "group1",
                &format!("10.0.{}.{}", n / 256, n % 256),
                StorageStatus::Deleted,
                "",
            );
            n += 1;
        }
        let (mut offset, mut lines) = (0u64, 0);
        loop {
            let (chunk, next) = log.chunk_from(offset);
            if chunk.is_empty() {
                break;
            }
            assert!(
                chunk.ends_with(b"\n"),
                "chunk from {offset} ends inside a line"
            );
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
            offset = next;
        }
        assert_eq!(lines, n);
    }

    fn join(reg: &mut Registry, ip: &str) {
        let req = JoinRequest {
            group: "group1".into(),
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 256,
            init_flag: true,
            ..Default::default()
        };
        reg.join(ip, &req, 100).expect("join");
    }

    /// Sets the status of the storage at 10.0.0.1.
    fn set_status(reg: &mut Registry, status: StorageStatus) {
        if let Some(m) = reg
            .groups
            .get_mut("group1")
            .and_then(|g| g.members.get_mut("10.0.0.1"))
        {
            m.status = status;
        }
    }

    fn status(reg: &Registry, id: &str) -> Option<StorageStatus> {
        reg.groups["group1"].members.get(id).map(|m| m.status)
    }

    #[test]
    fn a_storage_that_moved_takes_over_its_record_and_the_move_is_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("dirs");
        let mut reg = Registry::new(TrackerConfig::default());
        reg.open_changelog(dir.path()).expect("changelog");
        join(&mut reg, "10.0.0.1");
        join(&mut reg, "10.0.0.2");
        reg.groups
            .get_mut("group1")
            .expect("group")
            .members
            .get_mut("10.0.0.2")
            .expect("b")
            .src_id = "10.0.0.1".into();
        reg.groups.get_mut("group1").expect("group").trunk.server = Some("10.0.0.1".into());

        // Refused as FastDFS refuses it.
        assert_eq!(
            reg.ip_changed("group1", "10.0.0.1", "10.0.0.9", "10.0.0.8", 200),
            Err(Status::InvalidArgument),
            "the new address must be the caller's"
        );
        assert_eq!(
            reg.ip_changed("group9", "10.0.0.1", "10.0.0.9", "10.0.0.9", 200),
            Err(Status::NotFound)
        );
        assert_eq!(
            reg.ip_changed("group1", "10.0.0.7", "10.0.0.9", "10.0.0.9", 200),
            Err(Status::NotFound)
        );
        assert_eq!(
            reg.ip_changed("group1", "10.0.0.1", "10.0.0.2", "10.0.0.2", 200),
            Err(Status::AlreadyExists)
        );
        set_status(&mut reg, StorageStatus::Active);
        assert_eq!(
            reg.ip_changed("group1", "10.0.0.1", "10.0.0.9", "10.0.0.9", 200),
            Err(Status::Busy),
            "still serving at the old address"
        );
        set_status(&mut reg, StorageStatus::Offline);
        assert_eq!(reg.changelog.len(), 0, "nothing logged for a refusal");

        assert_eq!(
            reg.ip_changed("group1", "10.0.0.1", "10.0.0.9", "10.0.0.9", 200),
            Ok(())
        );
        assert_eq!(status(&reg, "10.0.0.1"), Some(StorageStatus::IpChanged));
        assert_eq!(status(&reg, "10.0.0.9"), Some(StorageStatus::Offline));
        let g = &reg.groups["group1"];
        assert_eq!(g.members["10.0.0.9"].ip, "10.0.0.9");
        assert_eq!(g.members["10.0.0.2"].src_id, "10.0.0.9");
        assert_eq!(g.trunk.server.as_deref(), Some("10.0.0.9"));
        assert_eq!(
            reg.ip_changed("group1", "10.0.0.1", "10.0.0.8", "10.0.0.8", 201),
            Err(Status::AlreadyDone)
        );

        // The other member reads the move once; a storage that joins later reads nothing
        // from before it joined.
        assert_eq!(
            reg.changelog_chunk("group1", "10.0.0.2").expect("chunk"),
            b"200 group1 10.0.0.1 3 10.0.0.9\n"
        );
        assert!(
            reg.changelog_chunk("group1", "10.0.0.2")
                .expect("chunk")
                .is_empty()
        );
        join(&mut reg, "10.0.0.3");
        assert!(
            reg.changelog_chunk("group1", "10.0.0.3")
                .expect("chunk")
                .is_empty()
        );
        assert_eq!(
            reg.changelog_chunk("group1", "10.0.0.4"),
            Err(Status::NotFound)
        );

        // Deletes are logged too, and the file is FastDFS's, read again at start.
        reg.check_alive(100_000);
        reg.delete_storage("group1", "10.0.0.3").expect("delete");
        let chunk = reg.changelog_chunk("group1", "10.0.0.2").expect("chunk");
        let text = String::from_utf8(chunk).expect("text");
        assert!(text.ends_with(" group1 10.0.0.3 4 \n"), "{text}");
        let on_disk = std::fs::read(dir.path().join("data/storage_changelog.dat")).expect("file");
        assert_eq!(on_disk.len() as u64, reg.changelog.len());
        let reopened = Changelog::open(dir.path()).expect("reopen");
        assert_eq!(reopened.len(), reg.changelog.len());
    }

    #[test]
    fn with_storage_ids_an_ip_change_is_not_supported() {
        let mut reg = Registry::new(TrackerConfig {
            use_storage_id: true,
            ..Default::default()
        });
        assert_eq!(
            reg.ip_changed("group1", "10.0.0.1", "10.0.0.9", "10.0.0.9", 1),
            Err(Status::NotSupported)
        );
    }

    #[test]
    fn a_line_cut_short_is_dropped_and_a_failed_write_is_made_good_from_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data/storage_changelog.dat");
        std::fs::create_dir_all(dir.path().join("data")).expect("dirs");
        // A crash in the middle of a line: an address cut short must not be read as one.
        std::fs::write(&file, "100 group1 10.0.0.1 4 \n101 group1 10.0.0.2 3 10.0").expect("seed");
        let mut log = Changelog::open(dir.path()).expect("open");
        assert_eq!(log.text, b"100 group1 10.0.0.1 4 \n");
        log.append(102, "group1", "10.0.0.3", StorageStatus::Deleted, "");
        let expected = "100 group1 10.0.0.1 4 \n102 group1 10.0.0.3 4 \n";
        assert_eq!(std::fs::read_to_string(&file).expect("file"), expected);
        assert_eq!(log.text, expected.as_bytes(), "memory and file agree");

        // A write that failed part way: memory holds the line (storages may have read
        // it), the file part of it; the next append writes the file whole.
        log.text.extend_from_slice(b"103 group1 10.0.0.4 4 \n");
        fdfs_test_support::full_disk::append_part(&file, b"103 gro");
        log.cut = true;
        log.append(104, "group1", "10.0.0.5", StorageStatus::Deleted, "");
        let text = std::fs::read_to_string(&file).expect("file");
        assert_eq!(
            text.as_bytes(),
            log.text.as_slice(),
            "memory and file agree"
        );
        assert!(text.ends_with("\n103 group1 10.0.0.4 4 \n104 group1 10.0.0.5 4 \n"));
        assert!(!log.cut);
    }

    #[test]
    fn a_line_the_disk_takes_only_part_of_is_written_whole_with_the_next() {
        fdfs_test_support::alone!();
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data/storage_changelog.dat");
        std::fs::create_dir_all(dir.path().join("data")).expect("dirs");
        let mut log = Changelog::open(dir.path()).expect("open");
        log.append(100, "group1", "10.0.0.1", StorageStatus::Deleted, "");
        let first = "100 group1 10.0.0.1 4 \n";
        // The disk takes 7 bytes of the next line, then no more; the tracker holds the
        // line (storages read it from memory), the file part of it.
        fdfs_test_support::full_disk::limit_file_size(Some(first.len() as u64 + 7));
        log.append(101, "group1", "10.0.0.2", StorageStatus::Deleted, "");
        assert_eq!(
            std::fs::read_to_string(&file).expect("file"),
            format!("{first}101 gro")
        );
        // Still full: the whole file cannot be written either, and stays as it was.
        log.append(102, "group1", "10.0.0.3", StorageStatus::Deleted, "");
        assert_eq!(
            std::fs::read_to_string(&file).expect("file"),
            format!("{first}101 gro")
        );
        fdfs_test_support::full_disk::limit_file_size(None);
        log.append(103, "group1", "10.0.0.4", StorageStatus::Deleted, "");
        let expected = format!(
            "{first}101 group1 10.0.0.2 4 \n102 group1 10.0.0.3 4 \n103 group1 10.0.0.4 4 \n"
        );
        assert_eq!(std::fs::read_to_string(&file).expect("file"), expected);
        assert_eq!(log.text, expected.as_bytes());
        let reopened = Changelog::open(dir.path()).expect("reopen");
        assert_eq!(reopened.text, expected.as_bytes());
        let names: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["storage_changelog.dat"], "no temporary file left");
    }

    #[test]
    fn restored_offsets_past_the_changelogs_end_go_back_to_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("dirs");
        std::fs::write(
            dir.path().join("data/storage_changelog.dat"),
            "100 group1 10.0.0.1 4 \n101 group1 10.0.0.2 3 10.0",
        )
        .expect("seed");
        let mut reg = Registry::new(TrackerConfig::default());
        reg.open_changelog(dir.path()).expect("changelog");
        join(&mut reg, "10.0.0.3");
        let mut g = reg.groups.remove("group1").expect("group");
        let m = g.members.get_mut("10.0.0.3").expect("member");
        // Saved after it read the line the crash cut off.
        m.changelog_offset = 50;
        reg.restore_group(g);
        assert_eq!(
            reg.groups["group1"].members["10.0.0.3"].changelog_offset, 50,
            "restored as saved (a fetched changelog may come after)"
        );
        reg.fit_changelog_offsets();
        assert_eq!(reg.changelog.len(), 23);
        assert_eq!(
            reg.groups["group1"].members["10.0.0.3"].changelog_offset,
            23
        );
        reg.log_deleted("group1", "10.0.0.4");
        let chunk = String::from_utf8(reg.changelog_chunk("group1", "10.0.0.3").expect("chunk"))
            .expect("text");
        assert_eq!(chunk.lines().count(), 1, "{chunk:?}");
        assert!(chunk.ends_with(" group1 10.0.0.4 4 \n"), "{chunk:?}");
    }
}
