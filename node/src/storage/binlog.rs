//! The binlog: one text line per change, in FastDFS's format, so a C FastDFS
//! peer can read ours and we can read its.
//!
//! ```text
//! <unix_ts> <op> <remote_filename>[ <extra>]\n
//! ```
//!
//! Upper-case ops are this storage's own changes, lower-case ones were received
//! from a peer. Files are `<base>/data/sync/binlog.NNN`, a new one every 1 GiB,
//! with `binlog_index.dat` naming the one being written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use tokio::sync::watch;

/// Size at which a new binlog file is started.
pub const ROTATE_AT: u64 = 1 << 30;
/// Longer than any line written: FastDFS's are at most 256 bytes, ours about 300 (a
/// rename or link naming two files).
pub const MAX_LINE: usize = 512;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Delete,
    Update,
    Append,
    Modify,
    Truncate,
    Link,
    Rename,
}

impl Op {
    fn letter(self) -> char {
        match self {
            Op::Create => 'C',
            Op::Delete => 'D',
            Op::Update => 'U',
            Op::Append => 'A',
            Op::Modify => 'M',
            Op::Truncate => 'T',
            Op::Link => 'L',
            Op::Rename => 'R',
        }
    }

    fn from_letter(c: char) -> Option<(Op, bool)> {
        let op = match c.to_ascii_uppercase() {
            'C' => Op::Create,
            'D' => Op::Delete,
            'U' => Op::Update,
            'A' => Op::Append,
            'M' => Op::Modify,
            'T' => Op::Truncate,
            'L' => Op::Link,
            'R' => Op::Rename,
            _ => return None,
        };
        Some((op, c.is_ascii_uppercase()))
    }
}

/// One binlog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: u32,
    pub op: Op,
    /// True for this storage's own changes, false for changes received from a peer.
    pub origin: bool,
    /// `Mxx/HH/LL/name` (no group).
    pub name: String,
    /// Offsets and lengths for A/M/T, the target for L, the old name for R.
    pub extra: Option<String>,
}

impl Record {
    pub fn new(timestamp: u32, op: Op, name: impl Into<String>) -> Self {
        Record {
            timestamp,
            op,
            origin: true,
            name: name.into(),
            extra: None,
        }
    }

    pub fn with_extra(mut self, extra: impl Into<String>) -> Self {
        self.extra = Some(extra.into());
        self
    }

    /// The same change as received from a peer (lower-case op).
    pub fn replica(mut self) -> Self {
        self.origin = false;
        self
    }

    pub fn to_line(&self) -> String {
        let letter = if self.origin {
            self.op.letter()
        } else {
            self.op.letter().to_ascii_lowercase()
        };
        match &self.extra {
            Some(x) => format!("{} {letter} {} {x}\n", self.timestamp, self.name),
            None => format!("{} {letter} {}\n", self.timestamp, self.name),
        }
    }

    /// Parses one line (without its newline); `None` for a line FastDFS would skip.
    pub fn parse(line: &str) -> Option<Record> {
        let mut parts = line.splitn(4, ' ');
        let timestamp = parts.next()?.parse().ok()?;
        let mut letters = parts.next()?.chars();
        let (op, origin) = Op::from_letter(letters.next()?)?;
        if letters.next().is_some() {
            return None;
        }
        let name = parts.next()?.to_owned();
        if name.is_empty() {
            return None;
        }
        let extra = parts.next().map(str::to_owned);
        Some(Record {
            timestamp,
            op,
            origin,
            name,
            extra,
        })
    }
}

/// A position in the binlog: file index and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub index: u32,
    pub offset: u64,
}

#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    /// Opened for reading too: readers of the file being written share it.
    file: Arc<File>,
    index: u32,
    /// Bytes of whole lines in the file: where the next batch goes.
    size: u64,
    /// Whether a failed write may have left part of its batch past `size` (cutting it off
    /// failed too): the next write cuts it off first.
    dirty_tail: bool,
}

/// Opens binlog file `index` for appending, and for readers' `pread`s.
fn open_for_append(dir: &Path, index: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(file_path(dir, index))
}

impl Writer {
    /// Writes one batch of lines, starting a new file first when this one is full.
    fn write(&mut self, text: &[u8]) -> io::Result<Position> {
        if self.dirty_tail {
            self.file.set_len(self.size)?;
            self.dirty_tail = false;
        }
        if self.size >= ROTATE_AT {
            // The index file names the new file before it is written to; a rotation that
            // fails (a full disk) is tried again with the next batch. The new file may hold
            // lines already, from a rotation whose index file did not get written.
            let index = self.index + 1;
            let file = open_for_append(&self.dir, index)?;
            crate::fsutil::drop_cut_line(&file)?;
            let size = file.metadata()?.len();
            write_index(&self.dir, index)?;
            self.file = Arc::new(file);
            self.index = index;
            self.size = size;
        }
        if let Err(e) = (&*self.file).write_all(text) {
            // Every caller of the batch learns it failed, so none of it stays: part of a
            // line left there would run into the next batch's first line. Readers never
            // saw it (they read up to the end published).
            self.dirty_tail = self.file.set_len(self.size).is_err();
            return Err(e);
        }
        self.size += text.len() as u64;
        Ok(Position {
            index: self.index,
            offset: self.size,
        })
    }
}

/// Lines queued for the binlog and how far writing has got, in batches numbered from 1.
#[derive(Debug, Default)]
struct Queue {
    /// Lines of the batches after `written`, in order.
    pending: Vec<u8>,
    /// Number of the last batch queued.
    queued: u64,
    /// Every batch up to this number has been written (or failed).
    written: u64,
    /// Whether a caller is writing now; the others wait for it.
    writing: bool,
    /// Callers waiting for the writing one. A condition variable's notify is a system
    /// call even with nobody waiting, and most appends find nobody.
    waiting: usize,
    /// Recent failed runs of batches `(after, upto]`, so each caller learns its own outcome.
    failures: std::collections::VecDeque<(u64, u64, io::ErrorKind)>,
}

/// Failed runs remembered for callers that have not looked yet.
const FAILURES_KEPT: usize = 64;

/// The binlog of one storage: appends records and wakes readers.
///
/// Appends are group-committed: a caller queues its lines; whoever finds no write in
/// progress takes every queued line and writes them with one call, outside the queue's
/// lock, while later callers queue behind it. A burst of changes costs one write, and the
/// lock is never held across I/O. Callers are on a disk thread, usually in the same step
/// as the file change the lines describe.
#[derive(Debug)]
pub struct Binlog {
    dir: PathBuf,
    queue: Mutex<Queue>,
    done: Condvar,
    /// Only the caller that is writing touches the file.
    writer: Mutex<Writer>,
    /// The end of the binlog after the last append, for readers to wait on.
    end: watch::Sender<Position>,
    /// Where the binlog ended when opened: lines appended since start there.
    opened_at: Position,
    /// The file being written and its index, for reads: a pusher keeping up reads after
    /// every append, and opening the file for each read cost a path walk and a close.
    current: RwLock<(u32, Arc<File>)>,
}

fn file_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("binlog.{index:03}"))
}

fn write_index(dir: &Path, index: u32) -> io::Result<()> {
    crate::fsutil::write_atomically(
        &dir.join("binlog_index.dat"),
        format!("current_write={index}\ncurrent_compress=0\n").as_bytes(),
    )
}

fn read_index(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("binlog_index.dat"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("current_write=")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

impl Binlog {
    /// Opens (or starts) the binlog under `<base_path>/data/sync` and starts its writer.
    pub fn open(base_path: &Path) -> io::Result<Self> {
        let dir = base_path.join("data").join("sync");
        std::fs::create_dir_all(&dir)?;
        let index = read_index(&dir);
        let file = Arc::new(open_for_append(&dir, index)?);
        let dropped = crate::fsutil::drop_cut_line(&file)?;
        if dropped > 0 {
            tracing::warn!(dir = %dir.display(), index, dropped, "binlog ended inside a line (a write cut short); cut back to its last whole line");
        }
        let size = file.metadata()?.len();
        write_index(&dir, index)?;
        let opened_at = Position {
            index,
            offset: size,
        };
        let (end, _) = watch::channel(opened_at);
        Ok(Binlog {
            current: RwLock::new((index, file.clone())),
            writer: Mutex::new(Writer {
                dir: dir.clone(),
                file,
                index,
                size,
                dirty_tail: false,
            }),
            dir,
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
            end,
            opened_at,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends records (blocking: from a disk thread); returns once they are written (in the page
    /// cache) and readers are woken.
    pub fn append(&self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let text: String = records.iter().map(Record::to_line).collect();
        let mut q = self.lock_queue();
        q.pending.extend_from_slice(text.as_bytes());
        q.queued += 1;
        let mine = q.queued;
        loop {
            if q.written >= mine {
                return match q.failures.iter().find(|(a, b, _)| *a < mine && mine <= *b) {
                    Some((_, _, kind)) => Err(io::Error::new(*kind, "binlog write failed")),
                    None => Ok(()),
                };
            }
            if q.writing {
                q.waiting += 1;
                q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
                q.waiting -= 1;
                continue;
            }
            // Lead: write everything queued so far in one call.
            q.writing = true;
            let text = std::mem::take(&mut q.pending);
            let (after, upto) = (q.written, q.queued);
            drop(q);
            let written = {
                let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
                let index = writer.index;
                let written = writer.write(&text);
                if writer.index != index {
                    // A new file was started: readers share it from now on.
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                        (writer.index, writer.file.clone());
                }
                written
            };
            q = self.lock_queue();
            match written {
                Ok(pos) => {
                    self.end.send_replace(pos);
                }
                Err(e) => {
                    q.failures.push_back((after, upto, e.kind()));
                    if q.failures.len() > FAILURES_KEPT {
                        q.failures.pop_front();
                    }
                }
            }
            q.written = upto;
            q.writing = false;
            // Reuse the buffer's memory for the next batch when nothing new came meanwhile.
            if q.pending.is_empty() {
                let mut text = text;
                text.clear();
                q.pending = text;
            }
            if q.waiting > 0 {
                self.done.notify_all();
            }
        }
    }

    /// The shared descriptor of binlog file `index`, if it is the file being written.
    fn current_file(&self, index: u32) -> Option<Arc<File>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0 == index).then(|| current.1.clone())
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the binlog ended when it was opened.
    pub fn opened_at(&self) -> Position {
        self.opened_at
    }

    /// Where the binlog ends now.
    pub fn end(&self) -> Position {
        *self.end.borrow()
    }

    /// Bytes between `from` and the end of the binlog.
    pub fn lag_bytes(&self, from: Position) -> u64 {
        let end = self.end();
        if from.index == end.index {
            return end.offset.saturating_sub(from.offset);
        }
        let mut total = end.offset;
        for index in from.index..end.index {
            let len = std::fs::metadata(file_path(&self.dir, index))
                .map(|m| m.len())
                .unwrap_or(0);
            total += if index == from.index {
                len.saturating_sub(from.offset)
            } else {
                len
            };
        }
        total
    }

    /// Subscribes to end-of-binlog changes.
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.end.subscribe()
    }

    /// Reads whole lines from `from` up to `max_bytes`; returns them and the next position.
    /// It may read the disk: on a disk thread.
    pub fn read_from(
        &self,
        from: Position,
        max_bytes: usize,
    ) -> io::Result<(Vec<Record>, Position)> {
        self.read_lines(from, max_bytes, false)
            .expect("a read that may wait on the disk always has an answer")
    }

    /// [`Self::read_from`] on any thread: `None` when the lines are not in the kernel's
    /// caches (or lie in an earlier binlog file), for a disk step to read them. Lines
    /// appended a moment ago are, so a pusher keeping up costs no trip to a disk thread.
    pub fn read_cached(
        &self,
        from: Position,
        max_bytes: usize,
    ) -> Option<io::Result<(Vec<Record>, Position)>> {
        self.read_lines(from, max_bytes, true)
    }

    fn read_lines(
        &self,
        from: Position,
        max_bytes: usize,
        cache_only: bool,
    ) -> Option<io::Result<(Vec<Record>, Position)>> {
        let end = self.end();
        let mut pos = from;
        if pos.index < end.index {
            // A finished file's length is asked by path.
            if cache_only {
                return None;
            }
            let len = std::fs::metadata(file_path(&self.dir, pos.index))
                .map(|m| m.len())
                .unwrap_or(0);
            if pos.offset >= len {
                pos = Position {
                    index: pos.index + 1,
                    offset: 0,
                };
            }
        }
        let mut want = max_bytes.max(MAX_LINE * 2);
        if pos.index == end.index {
            // Only what appends have finished: nothing at the end, no half-written line.
            let left = end.offset.saturating_sub(pos.offset);
            if left == 0 {
                return Some(Ok((Vec::new(), pos)));
            }
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let file = match self.current_file(pos.index) {
            Some(file) => file,
            None => {
                let path = file_path(&self.dir, pos.index);
                let opened = if cache_only {
                    match crate::disk::open_cached(&path) {
                        Err(rustix::io::Errno::AGAIN) => return None,
                        opened => opened.map_err(io::Error::from),
                    }
                } else {
                    File::open(&path)
                };
                match opened {
                    Ok(f) => Arc::new(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Some(Ok((Vec::new(), pos)));
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        let mut buf = vec![0u8; want];
        let read = if cache_only {
            match crate::disk::read_from_cache(&file, &mut buf, pos.offset) {
                Ok(0) => return None,
                read => read,
            }
        } else {
            std::os::unix::fs::FileExt::read_at(&*file, &mut buf, pos.offset)
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let chunk = &buf[..n];
        let Some(last_nl) = chunk.iter().rposition(|&b| b == b'\n') else {
            if cache_only && n < want {
                // Part of it is not in the caches: a disk step reads all of it.
                return None;
            }
            // No line ends here. In a finished file, or over more bytes than any line has,
            // it is the remains of a write cut short: skipped, so readers never stop there.
            let cut = pos.index < end.index || n >= MAX_LINE * 2;
            let skip = if cut { n as u64 } else { 0 };
            return Some(Ok((
                Vec::new(),
                Position {
                    index: pos.index,
                    offset: pos.offset + skip,
                },
            )));
        };
        let text = String::from_utf8_lossy(&chunk[..=last_nl]);
        let records = text.lines().filter_map(Record::parse).collect();
        Some(Ok((
            records,
            Position {
                index: pos.index,
                offset: pos.offset + last_nl as u64 + 1,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_fastdfs() {
        let r = Record::new(
            1_795_659_481,
            Op::Create,
            "M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt",
        );
        assert_eq!(
            r.to_line(),
            "1795659481 C M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt\n"
        );
        let a = Record::new(5, Op::Append, "M00/00/00/x")
            .with_extra("100 32")
            .replica();
        assert_eq!(a.to_line(), "5 a M00/00/00/x 100 32\n");
        assert_eq!(Record::parse("5 a M00/00/00/x 100 32"), Some(a));
        let rn = Record::parse("7 R M00/00/00/new M00/00/00/old").expect("rename");
        assert_eq!(
            (rn.op, rn.origin, rn.extra.as_deref()),
            (Op::Rename, true, Some("M00/00/00/old"))
        );
        assert_eq!(Record::parse("garbage"), None);
        assert_eq!(Record::parse("1 X M00/00/00/x"), None);
    }

    #[test]
    fn append_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Binlog::open(dir.path()).expect("open");
        let start = log.end();
        log.append(&[
            Record::new(1, Op::Create, "M00/00/00/a"),
            Record::new(2, Op::Delete, "M00/00/00/b"),
        ])
        .expect("append");
        let (records, next) = log.read_from(start, 4096).expect("read");
        assert_eq!(records.len(), 2);
        assert_eq!(next, log.end());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("data/sync/binlog.000")).expect("file"),
            "1 C M00/00/00/a\n2 D M00/00/00/b\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("data/sync/binlog_index.dat")).expect("index"),
            "current_write=0\ncurrent_compress=0\n"
        );
        let reopened = Binlog::open(dir.path()).expect("reopen");
        assert_eq!(reopened.end(), next);
    }

    /// Every record from `from` to the end, as a pusher reads them; panics if the reads
    /// stop moving before the end.
    fn read_to_end(log: &Binlog, mut from: Position) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..1000 {
            if from == log.end() {
                return lines;
            }
            let (records, next) = log.read_from(from, 4096).expect("read");
            assert!(
                !records.is_empty() || next != from,
                "stuck at {from:?}, end {:?}",
                log.end()
            );
            lines.extend(records.iter().map(Record::to_line));
            from = next;
        }
        panic!("no end after 1000 reads");
    }

    #[test]
    fn a_line_cut_short_is_dropped_and_a_failed_batch_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = dir.path().join("data/sync");
        std::fs::create_dir_all(&sync).expect("mkdir");
        // A crash in the middle of a line: "4000" cut to "40" must not be read as a
        // truncate to 40 bytes.
        std::fs::write(
            sync.join("binlog.000"),
            "1 C M00/00/00/a\n2 T M00/00/00/b 5000 40",
        )
        .expect("seed");
        let log = Binlog::open(dir.path()).expect("open");
        assert_eq!(log.end().offset, 16);
        log.append(&[Record::new(3, Op::Create, "M00/00/00/c")])
            .expect("append");
        assert_eq!(
            log.opened_at().offset,
            16,
            "where marks past the end go back to"
        );
        assert_eq!(
            read_to_end(&log, Position::default()),
            ["1 C M00/00/00/a\n", "3 C M00/00/00/c\n"]
        );

        // A write that failed part way and could not be cut off at once (its callers
        // were told it failed): the next write cuts it off first.
        fdfs_test_support::full_disk::append_part(&sync.join("binlog.000"), b"4 C M00/0");
        log.writer.lock().expect("writer").dirty_tail = true;
        log.append(&[Record::new(5, Op::Create, "M00/00/00/e")])
            .expect("append");
        assert_eq!(
            std::fs::read_to_string(sync.join("binlog.000")).expect("file"),
            "1 C M00/00/00/a\n3 C M00/00/00/c\n5 C M00/00/00/e\n"
        );
        assert_eq!(log.end().offset, 48);
    }

    #[test]
    fn a_batch_the_disk_takes_only_part_of_is_cut_off_before_the_next() {
        fdfs_test_support::alone!();
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data/sync/binlog.000");
        let log = Binlog::open(dir.path()).expect("open");
        log.append(&[Record::new(1, Op::Create, "M00/00/00/a")])
            .expect("append");
        // The disk takes 5 bytes of the next batch, then no more.
        fdfs_test_support::full_disk::limit_file_size(Some(16 + 5));
        let refused = log
            .append(&[
                Record::new(2, Op::Create, "M00/00/00/b"),
                Record::new(3, Op::Truncate, "M00/00/00/c").with_extra("4000"),
            ])
            .expect_err("refused");
        assert_eq!(refused.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            std::fs::read_to_string(&file).expect("file"),
            "1 C M00/00/00/a\n"
        );
        assert_eq!(log.end().offset, 16);
        fdfs_test_support::full_disk::limit_file_size(None);
        log.append(&[Record::new(4, Op::Create, "M00/00/00/d")])
            .expect("append");
        assert_eq!(
            read_to_end(&log, Position::default()),
            ["1 C M00/00/00/a\n", "4 C M00/00/00/d\n"]
        );
        let reopened = Binlog::open(dir.path()).expect("reopen");
        assert_eq!(reopened.end().offset, 32);
    }

    #[test]
    fn the_remains_of_a_write_cut_short_never_stop_a_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = dir.path().join("data/sync");
        std::fs::create_dir_all(&sync).expect("mkdir");
        // A finished file that ends inside a line, then the file being written with a run
        // of zeros longer than any line (as a crash can leave in a file).
        std::fs::write(sync.join("binlog.000"), "1 C M00/00/00/a\n2 C M00/00/00/cu").expect("seed");
        let mut current = b"3 C M00/00/00/c\n".to_vec();
        current.extend(std::iter::repeat_n(0u8, 20_000));
        current.extend_from_slice(b"\n4 C M00/00/00/d\n");
        std::fs::write(sync.join("binlog.001"), current).expect("seed");
        std::fs::write(
            sync.join("binlog_index.dat"),
            "current_write=1\ncurrent_compress=0\n",
        )
        .expect("index");
        let log = Binlog::open(dir.path()).expect("open");
        log.append(&[Record::new(5, Op::Create, "M00/00/00/e")])
            .expect("append");
        assert_eq!(
            read_to_end(&log, Position::default()),
            [
                "1 C M00/00/00/a\n",
                "3 C M00/00/00/c\n",
                "4 C M00/00/00/d\n",
                "5 C M00/00/00/e\n"
            ]
        );
    }

    /// `data/sync` under `dir`, made, with a full first binlog file (sparse, ending with a
    /// line break): the next append starts binlog.001.
    fn sync_dir_with_a_full_first_file(dir: &Path) -> PathBuf {
        let sync = dir.join("data/sync");
        std::fs::create_dir_all(&sync).expect("mkdir");
        let full = std::fs::File::create(sync.join("binlog.000")).expect("create");
        full.set_len(ROTATE_AT).expect("set_len");
        std::os::unix::fs::FileExt::write_all_at(&full, b"\n", ROTATE_AT - 1).expect("end");
        sync
    }

    #[test]
    fn a_rotation_takes_the_next_file_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = sync_dir_with_a_full_first_file(dir.path());
        // Lines in the next file from a rotation whose index file was not written (a full
        // disk), the last one cut short.
        std::fs::write(sync.join("binlog.001"), "1 C M00/00/00/a\n2 C M00/0").expect("seed");
        let log = Binlog::open(dir.path()).expect("open");
        assert_eq!(log.end().index, 0);
        log.append(&[Record::new(3, Op::Create, "M00/00/00/c")])
            .expect("append");
        assert_eq!(
            log.end(),
            Position {
                index: 1,
                offset: 32
            }
        );
        assert_eq!(
            read_to_end(
                &log,
                Position {
                    index: 1,
                    offset: 0
                }
            ),
            ["1 C M00/00/00/a\n", "3 C M00/00/00/c\n"]
        );
        assert_eq!(
            std::fs::read_to_string(sync.join("binlog_index.dat")).expect("index"),
            "current_write=1\ncurrent_compress=0\n"
        );
    }

    /// Reads of the file being written go through the writer's own descriptor, also after
    /// the binlog moves on to a new file: no open (nor path walk) per read. Shown by moving
    /// the files' names away, which a read that opens by path would not find.
    #[test]
    fn reads_of_the_file_being_written_share_its_descriptor_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = sync_dir_with_a_full_first_file(dir.path());
        let log = Binlog::open(dir.path()).expect("open");
        let before = log.end();
        assert_eq!((before.index, before.offset), (0, ROTATE_AT));
        log.append(&[Record::new(1, Op::Create, "M00/00/00/a")])
            .expect("append");
        let start = Position {
            index: 1,
            offset: 0,
        };
        assert_eq!(log.end().index, 1);
        std::fs::rename(sync.join("binlog.001"), dir.path().join("moved")).expect("rename");
        for cache_only in [true, false] {
            let (records, next) = log
                .read_lines(start, 4096, cache_only)
                .expect("an answer")
                .expect("read");
            let names: Vec<_> = records.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, ["M00/00/00/a"], "cache_only = {cache_only}");
            assert_eq!(next, log.end());
        }
    }

    /// Lines just appended are read from the kernel's caches on any thread, with the same
    /// result as a disk read; nothing past the end published is read, so a line being
    /// written is never taken for a whole one.
    #[test]
    fn fresh_lines_read_from_the_cache_and_only_up_to_the_published_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Binlog::open(dir.path()).expect("open");
        let start = log.end();
        let (none, at) = log.read_from(start, 4096).expect("read at the end");
        assert_eq!((none.len(), at), (0, start));
        log.append(&[
            Record::new(1, Op::Create, "M00/00/00/a"),
            Record::new(2, Op::Update, "M00/00/00/b"),
        ])
        .expect("append");
        let from_disk = log.read_from(start, 4096).expect("read");
        let cached = log
            .read_cached(start, 4096)
            .expect("just appended: in the page cache")
            .expect("read");
        assert_eq!(cached, from_disk);
        assert_eq!((cached.0.len(), cached.1), (2, log.end()));
        // Bytes beyond the published end (an append under way) are left for later.
        let end = log.end();
        fdfs_test_support::full_disk::append_part(
            &dir.path().join("data/sync/binlog.000"),
            b"3 C M00/00/00/c\n4 C M00/00/",
        );
        assert_eq!(log.read_from(end, 4096).expect("read"), (Vec::new(), end));
        assert_eq!(
            log.read_cached(end, 4096)
                .expect("nothing to read")
                .expect("read"),
            (Vec::new(), end)
        );
    }

    #[test]
    fn concurrent_appends_all_land_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Binlog::open(dir.path()).expect("open");
        std::thread::scope(|s| {
            for t in 0..32 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..25 {
                        // Two records in one call stay next to each other.
                        log.append(&[
                            Record::new(i, Op::Create, format!("M00/00/00/t{t}-{i}")),
                            Record::new(i, Op::Delete, format!("M00/00/00/t{t}-{i}")),
                        ])
                        .expect("append");
                    }
                });
            }
        });
        let text = std::fs::read_to_string(dir.path().join("data/sync/binlog.000")).expect("file");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 32 * 25 * 2);
        for pair in lines.chunks(2) {
            let (c, d) = (
                Record::parse(pair[0]).expect("C"),
                Record::parse(pair[1]).expect("D"),
            );
            assert_eq!((c.op, d.op, &c.name), (Op::Create, Op::Delete, &d.name));
        }
        let mut names: Vec<&str> = lines
            .iter()
            .step_by(2)
            .map(|l| l.rsplit(' ').next().unwrap_or(""))
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 32 * 25);
        assert_eq!(log.end().offset, text.len() as u64);
    }
}
