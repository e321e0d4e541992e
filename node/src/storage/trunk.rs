//! Files stored inside trunk files, in FastDFS's on-disk format.
//!
//! A group with `use_trunk_file = true` keeps small files as slots of large trunk files,
//! `<store path>/data/HH/LL/<trunk id, 6 digits>`. The file's name says where
//! ([`TrunkSlot`]): the trunk id, the slot's offset and its allocated size. Each slot
//! starts with a 24-byte header that repeats what the name records, so a reader can tell
//! the slot still holds that file:
//!
//! ```text
//! | type u8 | alloc_size u32 | file_size u32 | crc32 u32 | mtime u32 | formatted ext [7] |
//! ```
//!
//! (integers big-endian; type `F` a file, `L` a link whose content is the name of the file
//! it points to, 0 a free slot). The file's bytes follow the header. A deleted file's slot
//! is zeroed, header included; a delete replayed from a peer zeroes the header only.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::disk::OpenedFile;
use crate::fileid::{RemoteName, TrunkSlot};

/// Bytes of a slot's header.
pub const HEADER_LEN: u64 = 24;
/// Slot types.
const REGULAR: u8 = b'F';
const LINK: u8 = b'L';

/// The header a slot must carry to hold `name` (of type `kind`).
fn expected_header(name: &RemoteName, slot: TrunkSlot, kind: u8) -> Option<[u8; 24]> {
    let core = name.core().ok()?;
    let mut h = [0u8; 24];
    h[0] = kind;
    h[1..5].copy_from_slice(&slot.size.to_be_bytes());
    h[5..9].copy_from_slice(&(core.file_size() as u32).to_be_bytes());
    h[9..13].copy_from_slice(&core.crc32.to_be_bytes());
    h[13..17].copy_from_slice(&core.timestamp.to_be_bytes());
    h[17..24].copy_from_slice(name.formatted_ext().as_bytes());
    Some(h)
}

/// The trunk file that holds `slot` under `root` (a store path) in `name`'s directory.
pub fn trunk_path(root: &Path, name: &RemoteName, slot: TrunkSlot) -> PathBuf {
    root.join(format!(
        "data/{:02X}/{:02X}/{:06}",
        name.hh, name.ll, slot.id
    ))
}

/// Opens the file `name` stored in `slot` of its trunk file under `root` (a disk step).
/// `NotFound` when the slot does not hold it: free, reused, or a header that differs from
/// what the name records. A link slot is followed once, to a stored file of the same store
/// path: never to another link, a trunk file's own name or a metadata file.
pub fn open(root: &Path, name: &RemoteName, slot: TrunkSlot) -> io::Result<OpenedFile> {
    open_slot(root, name, slot, Link::Follow)
}

/// Whether a link slot is followed: once, from the name asked for, never from its target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Follow,
    Refuse,
}

fn open_slot(
    root: &Path,
    name: &RemoteName,
    slot: TrunkSlot,
    link: Link,
) -> io::Result<OpenedFile> {
    let file = File::open(trunk_path(root, name, slot))?;
    let header = read_header(&file, slot)?;
    checked(root, name, slot, file, header, link)
}

/// The 24 bytes at the slot's start; `NotFound` past the end of the trunk file.
fn read_header(file: &File, slot: TrunkSlot) -> io::Result<[u8; 24]> {
    let mut header = [0u8; 24];
    file.read_exact_at(&mut header, u64::from(slot.offset))
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::ErrorKind::NotFound.into(),
            _ => e,
        })?;
    Ok(header)
}

/// Whether the slot at `offset` of the trunk file at `path` holds a file, as FastDFS's
/// `trunk_init_check_occupying` tells: its header, sizes and type aside, is not all zeros.
pub fn slot_occupied(path: &Path, offset: u32) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut header = [0u8; 24];
    match file.read_exact_at(&mut header, u64::from(offset)) {
        Ok(()) => Ok(header[9..].iter().any(|&b| b != 0)),
        // Past the end of the file: nothing there.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`open`] on the caller's (async) thread, when the trunk file's path and the slot's
/// header are in the kernel's caches; `None` when that would wait for the disk, or the
/// slot is a link (then [`open`] runs as a disk step).
pub fn open_if_cached(
    root: &Path,
    name: &RemoteName,
    slot: TrunkSlot,
) -> Option<io::Result<OpenedFile>> {
    let file = match crate::disk::open_cached(&trunk_path(root, name, slot)) {
        Ok(f) => f,
        Err(rustix::io::Errno::AGAIN) => return None,
        Err(e) => return Some(Err(e.into())),
    };
    let mut header = [0u8; 24];
    let mut slice = [io::IoSliceMut::new(&mut header)];
    let read = rustix::io::preadv2(
        &file,
        &mut slice,
        u64::from(slot.offset),
        rustix::io::ReadWriteFlags::NOWAIT,
    );
    if !matches!(read, Ok(24)) || header[0] == LINK {
        return None;
    }
    Some(checked(root, name, slot, file, header, Link::Refuse))
}

/// Longest name a link slot may hold (a remote filename is at most 128 bytes).
const MAX_LINK_LEN: u64 = 128;

/// The opened slot, once its header says it holds `name`.
fn checked(
    root: &Path,
    name: &RemoteName,
    slot: TrunkSlot,
    file: File,
    header: [u8; 24],
    link: Link,
) -> io::Result<OpenedFile> {
    let kind = header[0];
    let allowed = kind == REGULAR || (kind == LINK && link == Link::Follow);
    if !allowed || Some(header) != expected_header(name, slot, kind) {
        return Err(io::ErrorKind::NotFound.into());
    }
    let core = name.core().map_err(io::Error::other)?;
    let size = core.file_size();
    if HEADER_LEN + size > u64::from(slot.size) {
        return Err(io::ErrorKind::NotFound.into());
    }
    let base = u64::from(slot.offset) + HEADER_LEN;
    if kind == LINK {
        // A link holds a file's name: a stored file's (never a trunk file's own or a
        // metadata file), of the same store path, itself no link.
        if size > MAX_LINK_LEN {
            return Err(io::ErrorKind::NotFound.into());
        }
        let mut target = vec![0u8; size as usize];
        file.read_exact_at(&mut target, base)?;
        let target = std::str::from_utf8(&target)
            .ok()
            .and_then(|t| RemoteName::parse_file(t).ok())
            .filter(|t| t.store_path == name.store_path && !t.name.ends_with("-m"))
            .ok_or(io::ErrorKind::NotFound)?;
        return match target.trunk_slot() {
            Some(s) if target.len() == name.len() && s != slot => {
                open_slot(root, &target, s, Link::Refuse)
            }
            Some(_) => Err(io::ErrorKind::NotFound.into()),
            None => crate::disk::open_regular_blocking(&root.join(target.relative_path())),
        };
    }
    let meta = file.metadata()?;
    if meta.len() < base + size {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok(OpenedFile {
        size,
        mtime: UNIX_EPOCH + Duration::from_secs(u64::from(core.timestamp)),
        ino: std::os::unix::fs::MetadataExt::ino(&meta),
        base,
        file,
    })
}

/// Writes `data` as the file `name` into its slot: the trunk file is made when missing.
/// With `durable`, the bytes go to disk before the header, so a reader never finds a
/// header over bytes not yet written, even after a power cut; without, header and bytes
/// go in one write, left to the kernel like every other file (FastDFS's default).
pub fn write(
    root: &Path,
    name: &RemoteName,
    slot: TrunkSlot,
    data: &[u8],
    durable: bool,
) -> io::Result<()> {
    let core = name.core().map_err(io::Error::other)?;
    if data.len() as u64 != core.file_size()
        || HEADER_LEN + data.len() as u64 > u64::from(slot.size)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the file does not fit the slot its name gives",
        ));
    }
    let header = expected_header(name, slot, REGULAR).ok_or(io::ErrorKind::InvalidInput)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(trunk_path(root, name, slot))?;
    let at = u64::from(slot.offset);
    if !durable {
        return write_both_at(&file, &header, data, at);
    }
    file.write_all_at(data, at + HEADER_LEN)?;
    file.sync_data()?;
    file.write_all_at(&header, at)?;
    file.sync_data()
}

/// Writes `head` then `tail` at `at` in one system call where it can (`pwritev`), without
/// copying them together.
fn write_both_at(file: &File, head: &[u8], tail: &[u8], at: u64) -> io::Result<()> {
    let total = head.len() + tail.len();
    let mut done = 0usize;
    while done < total {
        let parts: [&[u8]; 2] = if done < head.len() {
            [&head[done..], tail]
        } else {
            [&[], &tail[done - head.len()..]]
        };
        let slices = [io::IoSlice::new(parts[0]), io::IoSlice::new(parts[1])];
        match rustix::io::pwritev(file, &slices, at + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How much of a freed slot is zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zeroed {
    /// All of it, as FastDFS does: the slot's space is handed back only after.
    Whole,
    /// Its header only, which is all that says a file is there. A delete replayed from a
    /// peer does this: by then the peer may have handed the space back and cut new slots
    /// out of it, whose files can arrive here before the delete does.
    Header,
}

/// Frees the slot holding `name`. `NotFound` when the slot does not hold that file (nothing
/// is written then).
pub fn free(root: &Path, name: &RemoteName, slot: TrunkSlot, zeroed: Zeroed) -> io::Result<()> {
    /// Zeros written a piece at a time, whatever the slot's size.
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(trunk_path(root, name, slot))?;
    let header = read_header(&file, slot)?;
    drop(checked(
        root,
        name,
        slot,
        file.try_clone()?,
        header,
        Link::Follow,
    )?);
    let extent = match zeroed {
        Zeroed::Whole => u64::from(slot.size),
        Zeroed::Header => HEADER_LEN.min(u64::from(slot.size)),
    };
    let (start, end) = (u64::from(slot.offset), u64::from(slot.offset) + extent);
    let mut at = start;
    while at < end {
        let n = (end - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileid::{NameCore, Source, TRUNK_FLAG};

    /// A trunk file's name, as FastDFS gives it.
    pub fn trunk_name(data: &[u8], ts: u32, slot: TrunkSlot, ext: &str) -> RemoteName {
        let core = NameCore {
            source: Source::Ip([127, 0, 0, 1].into()),
            timestamp: ts,
            size_field: (0x8000_1234u64 << 32) | TRUNK_FLAG | data.len() as u64,
            crc32: crc32fast::hash(data),
        };
        RemoteName::new(0, 0, 0, format!("{}{}{ext}", core.encode(), slot.encode()))
    }

    /// Writes a link slot (`L`) at `slot` holding `target`, and returns its name.
    fn link(root: &Path, slot: TrunkSlot, target: &str) -> RemoteName {
        let name = trunk_name(target.as_bytes(), 1_700_000_100, slot, "000.jpg");
        let mut bytes = expected_header(&name, slot, LINK).expect("header").to_vec();
        bytes.extend_from_slice(target.as_bytes());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(trunk_path(root, &name, slot))
            .expect("trunk file");
        file.write_all_at(&bytes, u64::from(slot.offset))
            .expect("link");
        name
    }

    #[test]
    fn a_link_slot_leads_once_to_a_stored_file_and_nowhere_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/00/00")).expect("dirs");
        let slot = |i: u32| TrunkSlot {
            id: 1,
            offset: i * 256,
            size: 256,
        };
        let file = trunk_name(b"the file", 1_700_000_000, slot(0), "000.jpg");
        write(root, &file, slot(0), b"the file", false).expect("write");
        let to_file = link(root, slot(1), &file.to_string());
        let opened = open(root, &to_file, slot(1)).expect("a link to a file");
        let mut buf = [0u8; 8];
        opened
            .file
            .read_exact_at(&mut buf, opened.base)
            .expect("read");
        assert_eq!(&buf, b"the file");
        // A link to a link (so no chain or loop of links is followed), the trunk file's
        // own name, the file's metadata.
        let to_link = link(root, slot(2), &to_file.to_string());
        let to_trunk = link(root, slot(3), "M00/00/00/000001");
        std::fs::write(root.join(format!("data/00/00/{}-m", file.name)), b"k\x02v")
            .expect("metadata");
        let to_meta = link(root, slot(4), &format!("{file}-m"));
        for (name, at) in [
            (&to_link, slot(2)),
            (&to_trunk, slot(3)),
            (&to_meta, slot(4)),
        ] {
            assert_eq!(
                open(root, name, at).err().map(|e| e.kind()),
                Some(io::ErrorKind::NotFound),
                "{name}"
            );
        }
    }

    #[test]
    fn a_replayed_delete_spares_files_cut_from_the_freed_space_since() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/00/00")).expect("dirs");
        let old = TrunkSlot {
            id: 1,
            offset: 0,
            size: 4096,
        };
        let x = trunk_name(b"the old file", 1_700_000_000, old, "000.jpg");
        write(root, &x, old, b"the old file", false).expect("write x");
        // The peer deleted x, handed its space back and cut a new slot from its middle;
        // the new file arrives here before the delete.
        let new = TrunkSlot {
            id: 1,
            offset: 1024,
            size: 512,
        };
        let y = trunk_name(b"a newer file", 1_700_000_100, new, "000.png");
        write(root, &y, new, b"a newer file", false).expect("write y");
        let store = crate::storage::store::Store::open(&crate::config::StorageConfig {
            base_path: root.to_path_buf(),
            subdir_count_per_path: 1,
            ..Default::default()
        })
        .expect("store");
        store.remove_replica(&x).expect("replayed delete");
        assert_eq!(
            open(root, &x, old).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        let opened = open(root, &y, new).expect("y survives");
        let mut buf = [0u8; 12];
        opened
            .file
            .read_exact_at(&mut buf, opened.base)
            .expect("read y");
        assert_eq!(&buf, b"a newer file");
        // Deleted by a client, on the member that holds it, the slot is zeroed whole.
        write(root, &x, old, b"the old file", false).expect("x again");
        write(root, &y, new, b"a newer file", false).expect("y again");
        store.delete_file(&x).expect("delete");
        assert!(open(root, &y, new).is_err());
    }

    #[test]
    fn slots_are_read_written_and_freed_in_fastdfs_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/00/00")).expect("dirs");
        let one = TrunkSlot {
            id: 1,
            offset: 0,
            size: 512,
        };
        let two = TrunkSlot {
            id: 1,
            offset: 512,
            size: 256,
        };
        let a = trunk_name(b"first file", 1_700_000_000, one, "000.jpg");
        let b = trunk_name(b"second", 1_700_000_001, two, "0000.js");
        assert_eq!(a.len(), crate::fileid::TRUNK_REMOTE_LEN);
        assert_eq!(a.trunk_slot(), Some(one));
        write(root, &a, one, b"first file", true).expect("write a");
        write(root, &b, two, b"second", false).expect("write b");

        // The bytes on disk are FastDFS's: header, then content, at the slot's offset.
        let raw = std::fs::read(root.join("data/00/00/000001")).expect("trunk file");
        assert_eq!(raw.len(), 512 + 24 + 6);
        assert_eq!(raw[0], b'F');
        assert_eq!(&raw[1..5], &512u32.to_be_bytes());
        assert_eq!(&raw[5..9], &10u32.to_be_bytes());
        assert_eq!(&raw[9..13], &crc32fast::hash(b"first file").to_be_bytes());
        assert_eq!(&raw[13..17], &1_700_000_000u32.to_be_bytes());
        assert_eq!(&raw[17..24], b"000.jpg");
        assert_eq!(&raw[24..34], b"first file");
        assert_eq!(&raw[512 + 24..], b"second");

        let opened = open(root, &a, one).expect("open a");
        assert_eq!((opened.base, opened.size), (24, 10));
        let mut buf = [0u8; 10];
        opened
            .file
            .read_exact_at(&mut buf, opened.base)
            .expect("read");
        assert_eq!(&buf, b"first file");

        // A name whose slot holds another file's header is not found.
        let wrong = trunk_name(b"first filf", 1_700_000_000, one, "000.jpg");
        assert_eq!(
            open(root, &wrong, one).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        assert_eq!(
            free(root, &wrong, one, Zeroed::Whole)
                .err()
                .map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );

        // Freed: zeroed whole, gone; the neighbour is untouched.
        free(root, &a, one, Zeroed::Whole).expect("free a");
        let raw = std::fs::read(root.join("data/00/00/000001")).expect("trunk file");
        assert!(raw[..512].iter().all(|&b| b == 0));
        assert_eq!(
            open(root, &a, one).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        assert_eq!(open(root, &b, two).expect("b").size, 6);

        // A file that does not fit its slot is refused before anything is written.
        let big = trunk_name(&[7u8; 300], 1, two, "000.bin");
        assert!(write(root, &big, two, &[7u8; 300], false).is_err());
        assert_eq!(open(root, &b, two).expect("b still").size, 6);
    }
}
