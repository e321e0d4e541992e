//! The trunk server's free space: which runs of its group's trunk files are free, and the
//! trunk binlog that records every change to them, in FastDFS's format.
//!
//! `<base_path>/data/trunk/binlog`, one line per change:
//!
//! ```text
//! <unix time> <A|D> <store path> <sub_high> <sub_low> <trunk id> <offset> <size>
//! ```
//!
//! `A` adds a free block, `D` takes one. Replaying the lines in order rebuilds the index,
//! which is what a trunk server does at start.
//!
//! A slot is taken (`D`) before it is handed out and only returned (`A`) when the file in
//! it is deleted or its write failed: a trunk server that dies between handing out a slot
//! and hearing that the file was written forgets nothing it gave away, so no slot is ever
//! given twice (the cost: a slot whose write never finished stays taken).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::proto::trunk::TrunkBlock;

/// Trunk rules the trackers give (PARAMETER_REQ), sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkParams {
    pub slot_min_size: u32,
    pub slot_max_size: u32,
    pub alignment: u32,
    pub file_size: u32,
    /// `trunk_init_check_occupying`: free blocks whose slot header on disk holds a file
    /// are left out when the free space is loaded.
    pub check_occupying: bool,
    /// `trunk_create_file_advance`: when to make trunk files ahead of need...
    pub create_ahead: Option<Schedule>,
    /// ...until this much trunk space is free (`trunk_create_file_space_threshold`).
    pub create_ahead_threshold: u64,
    /// `trunk_compress_binlog_interval` and `_time_base`: scheduled compactions.
    pub compact: Option<Schedule>,
    /// `trunk_compress_binlog_min_interval`: seconds between compactions forced by the
    /// binlog's length.
    pub compact_min_interval: u32,
}

/// A task run at a time of day and every `interval` seconds from it (FastDFS's
/// `*_time_base` and `*_interval` pairs), in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Seconds from midnight of the first run of a day.
    pub base: u32,
    /// Seconds between runs (above 0).
    pub interval: u32,
}

impl Schedule {
    /// The first run strictly after `now` (unix seconds).
    pub fn next_after(&self, now: u64) -> u64 {
        let interval = u64::from(self.interval.max(1));
        let anchor = now - now % 86_400 + u64::from(self.base);
        if anchor > now {
            anchor - (anchor - now - 1) / interval * interval
        } else {
            anchor + ((now - anchor) / interval + 1) * interval
        }
    }
}

impl TrunkParams {
    /// From the tracker's parameters; `None` when trunk storage is off.
    pub fn from_parameters(p: &crate::proto::report::Parameters) -> Option<Self> {
        let num = |k: &str| p.get(k).and_then(|v| v.parse::<u32>().ok());
        if !matches!(p.get("use_trunk_file"), Some("1" | "true")) {
            return None;
        }
        let on = |k: &str| matches!(p.get(k), Some("1" | "true"));
        let schedule = |base: &str, interval: &str| {
            let interval = num(interval).filter(|&i| i > 0)?;
            let base = p
                .get(base)
                .and_then(|v| crate::config::TimeOfDay::parse(v).ok())?;
            Some(Schedule {
                base: base.seconds(),
                interval,
            })
        };
        let params = TrunkParams {
            slot_min_size: num("slot_min_size")?,
            slot_max_size: num("slot_max_size")?,
            alignment: num("trunk_alloc_alignment_size").unwrap_or(0),
            file_size: num("trunk_file_size")?,
            check_occupying: on("trunk_init_check_occupying"),
            create_ahead: schedule("trunk_create_file_time_base", "trunk_create_file_interval")
                .filter(|_| on("trunk_create_file_advance")),
            create_ahead_threshold: p
                .get("trunk_create_file_space_threshold")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            compact: schedule(
                "trunk_compress_binlog_time_base",
                "trunk_compress_binlog_interval",
            ),
            compact_min_interval: num("trunk_compress_binlog_min_interval").unwrap_or(0),
        };
        let sane = params.slot_min_size > super::trunk::HEADER_LEN as u32
            && params.slot_max_size > params.slot_min_size
            && params.slot_max_size <= params.file_size;
        sane.then_some(params)
    }

    /// Whether a file of `size` bytes goes into a trunk slot.
    pub fn fits(&self, size: u64) -> bool {
        size + super::trunk::HEADER_LEN <= u64::from(self.slot_max_size)
    }

    /// The slot size given for `need` bytes (header included), as FastDFS rounds it.
    pub fn slot_size(&self, need: u32) -> u32 {
        if need <= self.slot_min_size {
            self.slot_min_size
        } else if self.alignment == 0 {
            need
        } else {
            need.div_ceil(self.alignment).saturating_mul(self.alignment)
        }
    }
}

/// Key of the best-fit order: store path, size, then place.
type SizeKey = (u8, u32, u32, u32);
/// Key of a block's place: store path, trunk id, offset.
type PlaceKey = (u8, u32, u32);

fn size_key(b: &TrunkBlock) -> SizeKey {
    (b.store_path, b.size, b.id, b.offset)
}

fn place_key(b: &TrunkBlock) -> PlaceKey {
    (b.store_path, b.id, b.offset)
}

/// Where new trunk files go: a trunk file's directory for an id (the store's rotation).
pub trait TrunkFiles {
    /// The directory (`HH`, `LL`) of the trunk file with this id.
    fn dirs_for(&self, store_path: u8, id: u32) -> (u8, u8);
    /// The store path's root.
    fn root(&self, store_path: u8) -> Option<&Path>;
    /// How many store paths there are.
    fn path_count(&self) -> u8;
    /// Whether stored files are synced to disk (an fsync policy): then the binlog is synced
    /// before a slot is handed out, or after a power cut the slot could be handed out again
    /// over a file its uploader had made durable.
    fn durable(&self) -> bool {
        false
    }
}

/// The free blocks of one trunk server, and its binlog.
#[derive(Debug)]
pub struct FreeSpace {
    params: TrunkParams,
    by_size: BTreeSet<SizeKey>,
    /// Free blocks by place: neighbours are found for merging and overlap checks.
    blocks: BTreeMap<PlaceKey, TrunkBlock>,
    free_bytes: u64,
    /// The highest trunk file id made or seen; the next file gets a higher one.
    last_file_id: u32,
    /// The highest trunk file id that may be made now (reserved with the trackers).
    id_limit: u32,
    binlog: File,
    binlog_path: PathBuf,
    /// Whether a write to the binlog failed, so it may end inside a line.
    binlog_cut: bool,
    /// Lines in the binlog now; it is rewritten as the free blocks alone (compacted) once
    /// it holds at least `compact_after` lines and four times as many as those need.
    lines: u64,
    compact_after: u64,
    /// When the binlog was last compacted.
    compacted_at: Option<std::time::Instant>,
    /// Changes with every compaction: a reader of the binlog at an offset starts again when
    /// it moves. Unique in the process, also when the space is opened again (the trunk
    /// server's role back, new settings), so no reader takes a rewritten file for the one
    /// it read.
    generation: u64,
    /// Binlog syncs made before handing out a slot.
    syncs: u64,
}

/// The next binlog generation of any trunk space in the process.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Binlog lines past which it may be compacted.
const COMPACT_AFTER_LINES: u64 = 100_000;

impl FreeSpace {
    /// Opens the trunk binlog under `base_path` and rebuilds the index from it. New
    /// trunk files are numbered past `floor` (the highest id the trackers know of).
    pub fn open(
        base_path: &Path,
        params: TrunkParams,
        floor: u32,
        files: &dyn TrunkFiles,
    ) -> io::Result<Self> {
        let dir = base_path.join("data/trunk");
        std::fs::create_dir_all(&dir)?;
        let binlog_path = dir.join("binlog");
        let mut space = FreeSpace {
            params,
            by_size: BTreeSet::new(),
            blocks: BTreeMap::new(),
            free_bytes: 0,
            last_file_id: floor,
            id_limit: u32::MAX,
            binlog: OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&binlog_path)?,
            binlog_path,
            binlog_cut: false,
            lines: 0,
            compact_after: COMPACT_AFTER_LINES,
            compacted_at: None,
            syncs: 0,
            generation: next_generation(),
        };
        let dropped = crate::fsutil::drop_cut_line(&space.binlog)?;
        if dropped > 0 {
            tracing::warn!(path = %space.binlog_path.display(), dropped, "trunk binlog ended inside a line (a write cut short); cut back to its last whole line");
        }
        space.replay()?;
        if params.check_occupying {
            space.leave_out_occupied(files);
        }
        space.maybe_compact()?;
        Ok(space)
    }

    /// Drops the free blocks whose slot header on disk holds a file (FastDFS's
    /// `trunk_init_check_occupying`): a binlog that lost a line gives no such block out.
    /// Only the header at the block's start is read, as FastDFS does; a block whose trunk
    /// file cannot be read stays free.
    fn leave_out_occupied(&mut self, files: &dyn TrunkFiles) {
        let occupied: Vec<TrunkBlock> = self
            .blocks
            .values()
            .filter(|b| {
                let Some(root) = files.root(b.store_path) else {
                    return false;
                };
                let path = root.join(format!("data/{:02X}/{:02X}/{:06}", b.hh, b.ll, b.id));
                super::trunk::slot_occupied(&path, b.offset).unwrap_or_else(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "trunk file not checked");
                    false
                })
            })
            .copied()
            .collect();
        for b in occupied {
            tracing::warn!(block = ?b, "free trunk block holds a file; left out");
            self.remove(&b);
            // The binlog says so too: replayed without it, the block would be free again,
            // and a later line for part of it would meet it there.
            if let Err(e) = self.log('D', &b) {
                tracing::warn!(block = ?b, error = %e, "cannot log a block left out");
            }
        }
    }

    /// Changes at each compaction of the binlog.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The binlog's path.
    pub fn binlog_path(&self) -> &Path {
        &self.binlog_path
    }

    /// Whether the binlog holds more lines than the free blocks need.
    pub fn compactable(&self) -> bool {
        self.lines > self.blocks.len() as u64 + 1
    }

    /// Makes trunk files until at least `threshold` bytes of trunk space are free, as many
    /// whole files as the shortfall holds (FastDFS's `trunk_create_file_advance`), each on
    /// the store path with the least free trunk space. Stops early, without an error, when
    /// no more trunk file ids are reserved yet. Returns how many it made.
    pub fn create_ahead(&mut self, files: &dyn TrunkFiles, threshold: u64) -> io::Result<u64> {
        let wanted = threshold.saturating_sub(self.free_bytes) / u64::from(self.params.file_size);
        let mut made = 0;
        while made < wanted {
            let path = (0..files.path_count().max(1))
                .min_by_key(|&p| self.free_bytes_on(p))
                .unwrap_or(0);
            match self.new_trunk_file(files, path) {
                Ok(_) => made += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(made)
    }

    fn free_bytes_on(&self, store_path: u8) -> u64 {
        self.blocks
            .range((store_path, 0, 0)..=(store_path, u32::MAX, u32::MAX))
            .map(|(_, b)| u64::from(b.size))
            .sum()
    }

    fn replay(&mut self) -> io::Result<()> {
        let reader = BufReader::new(File::open(&self.binlog_path)?);
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            self.lines += 1;
            let Some((op, block)) = parse_line(&line) else {
                tracing::warn!(line = n + 1, text = %line, "unreadable trunk binlog line; skipped");
                continue;
            };
            self.last_file_id = self.last_file_id.max(block.id);
            match op {
                b'A' => {
                    self.insert(block);
                }
                _ => {
                    self.remove(&block);
                }
            }
        }
        Ok(())
    }

    pub fn params(&self) -> TrunkParams {
        self.params
    }

    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    pub fn free_block_count(&self) -> usize {
        self.blocks.len()
    }

    pub fn last_file_id(&self) -> u32 {
        self.last_file_id
    }

    /// New trunk files may take ids up to `limit` only.
    pub fn set_id_limit(&mut self, limit: u32) {
        self.id_limit = limit;
    }

    /// Takes up a higher floor for new trunk file ids (the trackers' FETCH_TRUNK_FID).
    pub fn raise_floor(&mut self, floor: u32) {
        self.last_file_id = self.last_file_id.max(floor);
    }

    /// The free blocks, in place order (for tests and reports).
    pub fn free_blocks(&self) -> Vec<TrunkBlock> {
        self.blocks.values().copied().collect()
    }

    /// Adds a free block; false, changing nothing, when a block starts at the same place
    /// already (replacing it would leave the old one's size in the size index).
    fn insert(&mut self, b: TrunkBlock) -> bool {
        match self.blocks.entry(place_key(&b)) {
            std::collections::btree_map::Entry::Occupied(_) => return false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(b);
            }
        }
        self.by_size.insert(size_key(&b));
        self.free_bytes += u64::from(b.size);
        true
    }

    fn remove(&mut self, b: &TrunkBlock) -> bool {
        match self.blocks.get(&place_key(b)) {
            Some(found) if found == b => {
                self.blocks.remove(&place_key(b));
                self.by_size.remove(&size_key(b));
                self.free_bytes -= u64::from(b.size);
                true
            }
            _ => false,
        }
    }

    fn sync_if(&mut self, durable: bool) -> io::Result<()> {
        if durable {
            self.binlog.sync_data()?;
            self.syncs += 1;
        }
        Ok(())
    }

    fn log(&mut self, op: char, b: &TrunkBlock) -> io::Result<()> {
        if self.binlog_cut {
            crate::fsutil::drop_cut_line(&self.binlog)?;
            self.binlog_cut = false;
        }
        if let Err(e) = self.binlog.write_all(line(op, b).as_bytes()) {
            // Part of the line may be there: it is cut off before the next is written.
            self.binlog_cut = true;
            return Err(e);
        }
        self.lines += 1;
        Ok(())
    }

    /// Compacts the binlog when it has grown well past what the free blocks need, and
    /// the last compaction is at least `compact_min_interval` seconds ago.
    fn maybe_compact(&mut self) -> io::Result<()> {
        let needed = self.blocks.len() as u64 + 1;
        let min_interval = std::time::Duration::from_secs(self.params.compact_min_interval.into());
        let waited = self
            .compacted_at
            .is_none_or(|at| at.elapsed() >= min_interval);
        if self.lines >= self.compact_after && self.lines >= 4 * needed && waited {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the binlog as one `A` line per free block, after a `D` line of an empty
    /// block of the newest trunk file (it changes nothing when replayed, by FastDFS too,
    /// but keeps that id known). Written beside it, synced and renamed over it, so a
    /// crash leaves the old binlog or the new one.
    pub fn compact(&mut self) -> io::Result<()> {
        let temp = self.binlog_path.with_extension("compacting");
        let mut text = line(
            'D',
            &TrunkBlock {
                store_path: 0,
                hh: 0,
                ll: 0,
                id: self.last_file_id,
                offset: 0,
                size: 0,
            },
        );
        for b in self.blocks.values() {
            text.push_str(&line('A', b));
        }
        let file = File::create(&temp)?;
        (&file).write_all(text.as_bytes())?;
        file.sync_all()?;
        // Opened for appending before the rename, the handle follows the file: once the
        // new binlog is in place nothing can fail before lines go to it (writing on to the
        // replaced one would lose them at the next start).
        let appending = OpenOptions::new().read(true).append(true).open(&temp)?;
        std::fs::rename(&temp, &self.binlog_path)?;
        self.binlog = appending;
        self.binlog_cut = false;
        self.lines = self.blocks.len() as u64 + 1;
        self.compacted_at = Some(std::time::Instant::now());
        self.generation = next_generation();
        if let Some(dir) = self.binlog_path.parent() {
            File::open(dir)?.sync_all()?;
        }
        tracing::info!(free_blocks = self.blocks.len(), "trunk binlog compacted");
        Ok(())
    }

    /// Gives out a slot for `need` bytes (the 24-byte header included) on `store_path`:
    /// the smallest free block that holds it, split, or a new trunk file. The slot is
    /// taken in the binlog before this returns.
    pub fn alloc(
        &mut self,
        files: &dyn TrunkFiles,
        store_path: u8,
        need: u32,
    ) -> io::Result<TrunkBlock> {
        if need == 0 || need > self.params.slot_max_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the size does not go into a trunk slot",
            ));
        }
        let size = self.params.slot_size(need);
        if size > self.params.file_size {
            // An alignment larger than a trunk file (a tracker's odd setting).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the aligned slot is larger than a trunk file",
            ));
        }
        let found = self
            .by_size
            .range((store_path, size, 0, 0)..=(store_path, u32::MAX, u32::MAX, u32::MAX))
            .next()
            .copied();
        let block = match found {
            Some((p, _, id, offset)) => self.blocks[&(p, id, offset)],
            None => self.new_trunk_file(files, store_path)?,
        };
        self.log('D', &block)?;
        self.remove(&block);
        let rest = block.size - size;
        if rest < self.params.slot_min_size {
            // Too small to give out on its own: the slot takes the whole block.
            self.sync_if(files.durable())?;
            return Ok(block);
        }
        let tail = TrunkBlock {
            offset: block.offset + size,
            size: rest,
            ..block
        };
        self.log('A', &tail)?;
        self.insert(tail);
        self.maybe_compact()?;
        self.sync_if(files.durable())?;
        Ok(TrunkBlock { size, ..block })
    }

    /// Returns a slot to the free blocks: its file was deleted, or never written. It is
    /// merged with free neighbours in its trunk file (FastDFS's `trunk_free_space_merge`),
    /// so space freed piece by piece can hold a larger file again.
    /// `AlreadyExists` when any of it is free already (nothing changes).
    pub fn give_back(&mut self, b: TrunkBlock) -> io::Result<()> {
        if u64::from(b.offset) + u64::from(b.size) > u64::from(self.params.file_size) {
            // No trunk file reaches there: a member's mistake, not space to hand out.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the block ends past the trunk file size",
            ));
        }
        if b.size < self.params.slot_min_size {
            return Ok(());
        }
        let (before, after) = self.neighbours(&b);
        let end = u64::from(b.offset) + u64::from(b.size);
        let overlaps = before
            .is_some_and(|f| u64::from(f.offset) + u64::from(f.size) > u64::from(b.offset))
            || after.is_some_and(|f| u64::from(f.offset) < end);
        if overlaps {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the block is free already",
            ));
        }
        let mut merged = b;
        let touches =
            |f: &TrunkBlock, at: u64| (f.hh, f.ll) == (b.hh, b.ll) && at == u64::from(b.offset);
        if let Some(f) = before.filter(|f| touches(f, u64::from(f.offset) + u64::from(f.size))) {
            self.log('D', &f)?;
            self.remove(&f);
            merged.offset = f.offset;
            merged.size += f.size;
        }
        if let Some(f) =
            after.filter(|f| (f.hh, f.ll) == (b.hh, b.ll) && u64::from(f.offset) == end)
        {
            self.log('D', &f)?;
            self.remove(&f);
            merged.size += f.size;
        }
        self.log('A', &merged)?;
        self.insert(merged);
        self.maybe_compact()
    }

    /// The free blocks of `b`'s trunk file just before and from its offset on.
    fn neighbours(&self, b: &TrunkBlock) -> (Option<TrunkBlock>, Option<TrunkBlock>) {
        let key = place_key(b);
        let file = (b.store_path, b.id);
        let before = self
            .blocks
            .range(..key)
            .next_back()
            .map(|(_, f)| *f)
            .filter(|f| (f.store_path, f.id) == file);
        let after = self
            .blocks
            .range(key..)
            .next()
            .map(|(_, f)| *f)
            .filter(|f| (f.store_path, f.id) == file);
        (before, after)
    }

    /// Makes the next trunk file (its whole length free) and logs it.
    fn new_trunk_file(&mut self, files: &dyn TrunkFiles, store_path: u8) -> io::Result<TrunkBlock> {
        let root = files
            .root(store_path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such store path"))?;
        loop {
            let id = self
                .last_file_id
                .checked_add(1)
                .ok_or_else(|| io::Error::other("trunk file ids are used up"))?;
            if id > self.id_limit {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "no trunk file id reserved with the trackers yet",
                ));
            }
            self.last_file_id = id;
            let (hh, ll) = files.dirs_for(store_path, id);
            let block = TrunkBlock {
                store_path,
                hh,
                ll,
                id,
                offset: 0,
                size: self.params.file_size,
            };
            let path = root.join(format!("data/{hh:02X}/{ll:02X}/{id:06}"));
            // A file with this id may exist (made by an earlier trunk server and copied
            // here): skip the id, as FastDFS does.
            let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            file.set_len(u64::from(self.params.file_size))?;
            self.log('A', &block)?;
            self.insert(block);
            return Ok(block);
        }
    }
}

/// One binlog line, FastDFS's format.
fn line(op: char, b: &TrunkBlock) -> String {
    format!(
        "{} {op} {} {} {} {} {} {}\n",
        crate::unix_now(),
        b.store_path,
        b.hh,
        b.ll,
        b.id,
        b.offset,
        b.size
    )
}

/// Parses one binlog line into its op and block.
fn parse_line(line: &str) -> Option<(u8, TrunkBlock)> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    let [_, op, path, hh, ll, id, offset, size] = f.as_slice() else {
        return None;
    };
    let op = match *op {
        "A" => b'A',
        "D" => b'D',
        _ => return None,
    };
    Some((
        op,
        TrunkBlock {
            store_path: path.parse().ok()?,
            hh: hh.parse().ok()?,
            ll: ll.parse().ok()?,
            id: id.parse().ok()?,
            offset: offset.parse().ok()?,
            size: size.parse().ok()?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    struct Dirs(PathBuf);

    /// [`Dirs`] of a store that syncs what it writes.
    struct Durable(Dirs);

    impl TrunkFiles for Durable {
        fn dirs_for(&self, p: u8, id: u32) -> (u8, u8) {
            self.0.dirs_for(p, id)
        }
        fn root(&self, store_path: u8) -> Option<&Path> {
            self.0.root(store_path)
        }
        fn path_count(&self) -> u8 {
            1
        }
        fn durable(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_slot_is_handed_out_after_its_binlog_line_is_synced_where_files_are() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        space.alloc(&files, 0, 300).expect("alloc");
        assert_eq!(space.syncs, 0, "no fsync policy, no sync");
        let durable = Durable(files);
        space.alloc(&durable, 0, 300).expect("alloc");
        space.alloc(&durable, 0, 1000).expect("alloc");
        assert_eq!(space.syncs, 2);
    }

    impl TrunkFiles for Dirs {
        fn dirs_for(&self, _: u8, id: u32) -> (u8, u8) {
            (0, (id % 2) as u8)
        }
        fn root(&self, store_path: u8) -> Option<&Path> {
            (store_path == 0).then_some(self.0.as_path())
        }
        fn path_count(&self) -> u8 {
            1
        }
    }

    fn params() -> TrunkParams {
        TrunkParams {
            slot_min_size: 256,
            slot_max_size: 64 * 1024,
            alignment: 256,
            file_size: 1024 * 1024,
            check_occupying: false,
            create_ahead: None,
            create_ahead_threshold: 0,
            compact: None,
            compact_min_interval: 0,
        }
    }

    fn setup() -> (tempfile::TempDir, Dirs) {
        let dir = tempfile::tempdir().expect("tempdir");
        for ll in ["00", "01"] {
            std::fs::create_dir_all(dir.path().join("store/data/00").join(ll)).expect("dirs");
        }
        let dirs = Dirs(dir.path().join("store"));
        (dir, dirs)
    }

    #[test]
    fn a_slot_taken_after_a_line_cut_short_stays_taken_across_a_restart() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        space.alloc(&files, 0, 24 + 100).expect("a");
        drop(space);
        // A crash in the middle of a binlog line.
        let binlog = base.join("data/trunk/binlog");
        fdfs_test_support::full_disk::append_part(&binlog, b"1700000000 D 0 0 1 1 ");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("reopen");
        let b = space.alloc(&files, 0, 24 + 4096).expect("b");
        // A write that failed part way: cut off before the next line is written.
        fdfs_test_support::full_disk::append_part(&binlog, b"1700000001 A 0 0 1 1 4");
        space.binlog_cut = true;
        let c = space.alloc(&files, 0, 24 + 1000).expect("c");
        let (free, blocks) = (space.free_bytes(), space.free_blocks());
        drop(space);
        let space = FreeSpace::open(&base, params(), 0, &files).expect("again");
        assert_eq!(
            space.free_bytes(),
            free,
            "b's and c's slots are not free again"
        );
        assert_eq!(space.free_blocks(), blocks);
        for taken in [b, c] {
            assert!(
                space
                    .free_blocks()
                    .iter()
                    .all(|f| f.id != taken.id || f.offset != taken.offset)
            );
        }
    }

    #[test]
    fn a_slot_line_the_disk_takes_only_part_of_is_cut_off_before_the_next() {
        fdfs_test_support::alone!();
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        space.alloc(&files, 0, 24 + 100).expect("a");
        let (free, blocks) = (space.free_bytes(), space.free_blocks());
        let binlog = base.join("data/trunk/binlog");
        let whole = std::fs::read_to_string(&binlog).expect("binlog");
        // The disk takes 9 bytes of the next line, then no more: the slot is not given
        // out, and stays free.
        fdfs_test_support::full_disk::limit_file_size(Some(whole.len() as u64 + 9));
        space.alloc(&files, 0, 24 + 4096).expect_err("refused");
        assert_eq!(
            std::fs::read(&binlog).expect("binlog").len(),
            whole.len() + 9
        );
        assert_eq!(
            (space.free_bytes(), space.free_blocks()),
            (free, blocks.clone())
        );
        fdfs_test_support::full_disk::limit_file_size(None);
        let b = space.alloc(&files, 0, 24 + 4096).expect("b");
        let text = std::fs::read_to_string(&binlog).expect("binlog");
        assert!(text.starts_with(&whole), "{text}");
        assert!(
            text[whole.len()..].lines().all(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                fields.len() == 8
                    && fields[1].len() == 1
                    && fields
                        .iter()
                        .enumerate()
                        .all(|(i, f)| i == 1 || f.parse::<u32>().is_ok())
            }),
            "only whole lines after the cut: {text}"
        );
        let (free, blocks) = (space.free_bytes(), space.free_blocks());
        drop(space);
        let space = FreeSpace::open(&base, params(), 0, &files).expect("again");
        assert_eq!((space.free_bytes(), space.free_blocks()), (free, blocks));
        assert!(
            space
                .free_blocks()
                .iter()
                .all(|f| f.id != b.id || f.offset != b.offset),
            "b's slot is not free again"
        );
    }

    #[test]
    fn slot_sizes_round_as_fastdfs_does() {
        let p = params();
        assert_eq!(p.slot_size(1), 256);
        assert_eq!(p.slot_size(256), 256);
        assert_eq!(p.slot_size(257), 512);
        assert_eq!(p.slot_size(24 + 4096), 4352);
        let unaligned = TrunkParams {
            alignment: 0,
            ..params()
        };
        assert_eq!(unaligned.slot_size(300), 300);
        assert!(p.fits(64 * 1024 - 24));
        assert!(!p.fits(64 * 1024 - 23));
    }

    #[test]
    fn an_alignment_past_the_trunk_file_size_is_refused_not_a_panic() {
        let (dir, files) = setup();
        let odd = TrunkParams {
            alignment: 8 * 1024 * 1024,
            ..params()
        };
        let mut space = FreeSpace::open(&dir.path().join("base"), odd, 0, &files).expect("open");
        assert_eq!(
            space.alloc(&files, 0, 1000).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
        assert!(space.free_blocks().is_empty(), "no trunk file made");
    }

    #[test]
    fn slots_are_cut_from_trunk_files_and_reused_once_freed() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");

        // The first slot makes trunk file 1, full length, and cuts the slot from its front.
        let a = space.alloc(&files, 0, 24 + 100).expect("a");
        assert_eq!((a.id, a.offset, a.size, a.hh, a.ll), (1, 0, 256, 0, 1));
        let trunk = files.0.join("data/00/01/000001");
        assert_eq!(std::fs::metadata(&trunk).expect("trunk").len(), 1024 * 1024);
        let b = space.alloc(&files, 0, 24 + 4096).expect("b");
        assert_eq!((b.id, b.offset, b.size), (1, 256, 4352));
        assert_eq!(space.free_bytes(), 1024 * 1024 - 256 - 4352);

        // A freed slot is the best fit for a file of its size, and is given again.
        space.give_back(a).expect("free a");
        assert_eq!(
            space.give_back(a).err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        let c = space.alloc(&files, 0, 24 + 10).expect("c");
        assert_eq!(c, a);

        // A path without a root is refused; a size above the largest slot too.
        assert!(space.alloc(&files, 1, 100).is_err());
        assert!(space.alloc(&files, 0, 64 * 1024 + 1).is_err());

        // The binlog is FastDFS's: eight fields, A and D.
        let text = std::fs::read_to_string(base.join("data/trunk/binlog")).expect("binlog");
        let first: Vec<&str> = text.lines().next().expect("line").split(' ').collect();
        assert_eq!(first[1..], ["A", "0", "0", "1", "1", "0", "1048576"]);
        assert!(text.lines().all(|l| l.split(' ').count() == 8));

        // Replayed at start: the same free blocks, and the next trunk file is number 2.
        let before = space.free_blocks();
        drop(space);
        let mut again = FreeSpace::open(&base, params(), 0, &files).expect("reopen");
        assert_eq!(again.free_blocks(), before);
        assert_eq!(again.last_file_id(), 1);
        // Slots given out are never given again after a restart: fill the file up.
        let mut given = vec![b, c];
        while let Ok(s) = again.alloc(&files, 0, 60 * 1024) {
            if s.id != 1 {
                assert_eq!(s.id, 2, "a second trunk file follows the first");
                break;
            }
            given.push(s);
        }
        for (i, x) in given.iter().enumerate() {
            for y in &given[i + 1..] {
                let apart = x.offset + x.size <= y.offset || y.offset + y.size <= x.offset;
                assert!(x.id != y.id || apart, "{x:?} overlaps {y:?}");
            }
        }
    }

    #[test]
    fn freed_neighbours_merge_into_one_block_that_holds_a_larger_file() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        let slots: Vec<TrunkBlock> = (0..4)
            .map(|_| space.alloc(&files, 0, 1000).expect("slot"))
            .collect();
        assert_eq!(
            slots.iter().map(|s| s.offset).collect::<Vec<_>>(),
            [0, 1024, 2048, 3072]
        );
        // The second and fourth back: apart. The third back: all three are one block
        // (the fourth also meets the free tail of the file).
        space.give_back(slots[1]).expect("second");
        space.give_back(slots[3]).expect("fourth");
        assert_eq!(space.free_blocks().len(), 2);
        space.give_back(slots[2]).expect("third");
        let free = space.free_blocks();
        assert_eq!(free.len(), 1, "{free:?}");
        assert_eq!((free[0].offset, free[0].size), (1024, 1024 * 1024 - 1024));
        // A block past the end of a trunk file is refused, and changes nothing.
        let past_end = TrunkBlock {
            offset: 1024 * 1024 - 256,
            size: 512,
            ..slots[0]
        };
        assert_eq!(
            space.give_back(past_end).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
        assert_eq!(space.free_blocks(), free);
        // A block overlapping free space is refused; the first slot is still given.
        let inside = TrunkBlock {
            offset: 2048,
            size: 512,
            ..slots[2]
        };
        assert_eq!(
            space.give_back(inside).err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        // A file of 3 freed slots' size fits where they were.
        let big = space.alloc(&files, 0, 3000).expect("big");
        assert_eq!((big.id, big.offset), (1, 1024));
        // Replayed, the merges come out the same.
        let before = space.free_blocks();
        drop(space);
        let again = FreeSpace::open(&base, params(), 0, &files).expect("reopen");
        assert_eq!(again.free_blocks(), before);
        assert_eq!(
            again.free_bytes(),
            before.iter().map(|b| u64::from(b.size)).sum::<u64>()
        );
    }

    #[test]
    fn compactions_forced_by_length_wait_the_minimum_interval() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let hourly = TrunkParams {
            compact_min_interval: 3600,
            ..params()
        };
        let mut space = FreeSpace::open(&base, hourly, 0, &files).expect("open");
        let opened = space.generation();
        space.compact_after = 50;
        for _ in 0..200 {
            let a = space.alloc(&files, 0, 300).expect("alloc");
            space.give_back(a).expect("free");
        }
        // One compaction, then none within the hour however long the binlog grows.
        let once = space.generation();
        assert_ne!(once, opened);
        for _ in 0..200 {
            let a = space.alloc(&files, 0, 300).expect("alloc");
            space.give_back(a).expect("free");
        }
        assert_eq!(space.generation(), once);
        assert!(space.compactable());
        space.compact().expect("a scheduled compaction still runs");
        let twice = space.generation();
        assert_ne!(twice, once);
        assert!(!space.compactable());
        // Opened again in the same process: a generation none of the earlier ones had, so
        // a reader never takes the file for one it read.
        drop(space);
        let again = FreeSpace::open(&base, hourly, 0, &files).expect("reopen");
        assert!(![opened, once, twice].contains(&again.generation()));
    }

    #[test]
    fn trunk_files_are_made_ahead_up_to_the_threshold_within_the_reserved_ids() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        space.set_id_limit(3);
        // 2.5 files short: two whole files are made.
        assert_eq!(
            space.create_ahead(&files, 5 * 512 * 1024).expect("ahead"),
            2
        );
        assert_eq!(space.free_bytes(), 2 * 1024 * 1024);
        assert!(files.0.join("data/00/01/000001").exists());
        assert!(files.0.join("data/00/00/000002").exists());
        assert_eq!(
            space.create_ahead(&files, 2 * 1024 * 1024).expect("ahead"),
            0
        );
        // Past the reserved ids it stops without an error.
        assert_eq!(
            space.create_ahead(&files, 10 * 1024 * 1024).expect("ahead"),
            1
        );
        assert_eq!(space.last_file_id(), 3);
        // Replayed, the files made ahead are free space.
        drop(space);
        let again = FreeSpace::open(&base, params(), 0, &files).expect("reopen");
        assert_eq!(again.free_bytes(), 3 * 1024 * 1024);
    }

    #[test]
    fn checking_occupation_leaves_out_free_blocks_that_hold_a_file() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        let a = space.alloc(&files, 0, 300).expect("a");
        let b = space.alloc(&files, 0, 300).expect("b");
        let c = space.alloc(&files, 0, 300).expect("c");
        space.give_back(a).expect("free a");
        space.give_back(c).expect("free c");
        drop(space);
        let trunk = files.0.join("data/00/01/000001");
        let write_header = |offset: u32, header: &[u8; 24]| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&trunk)
                .expect("trunk")
                .write_all_at(header, u64::from(offset))
                .expect("header");
        };
        // The binlog says `a` is free, but a file was written there after a line that took
        // it was lost.
        let mut file = [0u8; 24];
        file[0] = b'F';
        file[1..5].copy_from_slice(&a.size.to_be_bytes());
        file[9..13].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        write_header(a.offset, &file);
        // Type and sizes alone do not make a slot occupied (FastDFS masks them out).
        let mut bare = [0u8; 24];
        bare[..9].copy_from_slice(&file[..9]);
        write_header(c.offset, &bare);

        let unchecked = FreeSpace::open(&base, params(), 0, &files).expect("open");
        assert_eq!(unchecked.free_bytes(), u64::from(1024 * 1024 - b.size));
        drop(unchecked);
        let checking = TrunkParams {
            check_occupying: true,
            ..params()
        };
        let checked = FreeSpace::open(&base, checking, 0, &files).expect("open");
        assert_eq!(
            checked.free_bytes(),
            u64::from(1024 * 1024 - b.size - a.size)
        );
        assert!(checked.free_blocks().iter().all(|f| f.offset != a.offset));
        drop(checked);
        // The binlog says so too: opened again without the check, `a` stays taken, and a
        // block later given back at its place is taken once, its size counted once.
        let mut again = FreeSpace::open(&base, params(), 0, &files).expect("reopen");
        assert!(again.free_blocks().iter().all(|f| f.offset != a.offset));
        let part = TrunkBlock { size: 256, ..a };
        assert!(again.insert(part));
        assert!(!again.insert(a));
        assert_eq!(
            again.free_bytes(),
            u64::from(1024 * 1024 - b.size - a.size + 256)
        );
        assert_eq!(again.by_size.len(), again.blocks.len());
    }

    #[test]
    fn a_long_binlog_is_compacted_to_the_free_blocks_and_replays_the_same() {
        let (dir, files) = setup();
        let base = dir.path().join("base");
        let mut space = FreeSpace::open(&base, params(), 0, &files).expect("open");
        space.compact_after = 200;
        // Many uploads and deletes: each cycle writes lines, the free blocks stay few.
        let mut kept = Vec::new();
        for i in 0..400u32 {
            let a = space.alloc(&files, 0, 300 + i % 700).expect("alloc");
            if i % 3 == 0 {
                kept.push(a);
            } else {
                space.give_back(a).expect("free");
            }
        }
        let binlog = base.join("data/trunk/binlog");
        let lines = std::fs::read_to_string(&binlog)
            .expect("binlog")
            .lines()
            .count();
        assert!(lines < 200 + 4, "{lines} lines after compaction");
        assert!(!base.join("data/trunk/binlog.compacting").exists());
        // Replayed, the same free blocks and the newest id, and nothing kept is handed out.
        let before = space.free_blocks();
        let newest = space.last_file_id();
        drop(space);
        let mut again = FreeSpace::open(&base, params(), 0, &files).expect("reopen");
        assert_eq!(again.free_blocks(), before);
        assert_eq!(again.last_file_id(), newest);
        for _ in 0..50 {
            let s = again.alloc(&files, 0, 1000).expect("alloc");
            for k in &kept {
                let apart =
                    s.id != k.id || s.offset + s.size <= k.offset || k.offset + k.size <= s.offset;
                assert!(apart, "{s:?} overlaps kept {k:?}");
            }
        }
    }

    #[test]
    fn a_floor_and_a_limit_from_the_trackers_and_files_on_disk_keep_trunk_ids_unique() {
        let (dir, files) = setup();
        // Trunk file 6 exists here already (copied from an earlier trunk server).
        std::fs::write(files.0.join("data/00/00/000006"), b"").expect("old trunk");
        let mut space =
            FreeSpace::open(&dir.path().join("base"), params(), 5, &files).expect("open");
        // No id reserved past the floor: no new trunk file, nothing taken.
        space.set_id_limit(5);
        assert_eq!(
            space.alloc(&files, 0, 100).err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        assert_eq!(space.last_file_id(), 5);
        space.set_id_limit(7);
        let a = space.alloc(&files, 0, 100).expect("a");
        assert_eq!(a.id, 7);
        space.raise_floor(3);
        assert_eq!(space.last_file_id(), 7);
    }
}
