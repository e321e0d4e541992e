//! Small files kept in memory for the HTTP side: the product photos, thumbnails and
//! avatars an image site serves on every page view, answered with no file-system call.
//!
//! A file under its ID never changes; it can only go away. An entry is therefore good
//! until the store notes a removal (then it is checked against the disk before its next
//! use) or, to bound what an out-of-band change could leave stale, for at most
//! `RECHECK` between checks. Appender files, which change in place, are never kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::{IMMUTABLE, Validators};
use crate::storage::StorageNode;
use crate::storage::metrics::CacheLabels;

/// Longest an entry is used without a look at the disk.
const RECHECK: Duration = Duration::from_secs(1);

/// A kept file: its bytes and what identifies this version of it on disk.
#[derive(Debug)]
pub struct Entry {
    pub data: Bytes,
    pub validators: Validators,
    /// The header lines of a 200 for the whole file.
    pub head: Bytes,
    pub mtime: SystemTime,
    pub ino: u64,
    /// The store's removal count when the entry was last checked.
    removals: AtomicU64,
    /// Milliseconds since the cache's start at the last check.
    checked: AtomicU64,
}

#[derive(Debug, Clone)]
struct BySize;

impl Weighter<String, Arc<Entry>> for BySize {
    fn weight(&self, key: &String, val: &Arc<Entry>) -> u64 {
        (key.len() + val.data.len() + 128) as u64
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Usable as is.
    Fresh(Arc<Entry>),
    /// Kept, but to be compared with the disk before use.
    Recheck(Arc<Entry>),
    Missing,
}

/// A larger file kept open: a range of it is sent from the page cache with no open, stat
/// or close. Dropped at the store's next removal (so a deleted file's space is not held)
/// and after `RECHECK`.
#[derive(Debug)]
pub struct OpenEntry {
    pub file: Arc<std::fs::File>,
    /// Where the stored file starts in `file` (past a trunk slot's header).
    pub base: u64,
    pub size: u64,
    pub validators: Validators,
    /// Milliseconds since the cache's start when the file was opened.
    opened: u64,
}

/// Files kept open at most: a small share of the descriptors kept for files.
const OPEN_FILES: usize = 128;

/// The cache; `None` inside when configured off.
#[derive(Debug)]
pub struct FileCache {
    files: Option<Cache<String, Arc<Entry>, BySize>>,
    open: Option<Cache<String, Arc<OpenEntry>>>,
    /// The store's removal count the open files were checked against.
    open_removals: AtomicU64,
    max_file: u64,
    started: Instant,
}

impl FileCache {
    pub fn new(budget: u64, max_file: u64) -> Self {
        let files = (budget > 0 && max_file > 0).then(|| {
            let estimated = (budget / max_file.clamp(4096, 64 * 1024)).max(16) as usize;
            Cache::with_weighter(estimated, budget, BySize)
        });
        let open = files.is_some().then(|| Cache::new(OPEN_FILES));
        FileCache {
            files,
            open,
            open_removals: AtomicU64::new(0),
            max_file,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether a file of `size` bytes is kept at all.
    pub fn takes(&self, size: u64) -> bool {
        self.files.is_some() && size <= self.max_file
    }

    pub fn lookup(&self, node: &StorageNode, key: &str) -> Lookup {
        let Some(files) = &self.files else {
            return Lookup::Missing;
        };
        let found = files.get(key);
        count(node, if found.is_some() { "hit" } else { "miss" });
        let Some(entry) = found else {
            return Lookup::Missing;
        };
        let stale = entry.removals.load(Ordering::Acquire) != node.disk.store().removals()
            || self
                .now_ms()
                .saturating_sub(entry.checked.load(Ordering::Relaxed))
                > RECHECK.as_millis() as u64;
        if stale {
            Lookup::Recheck(entry)
        } else {
            Lookup::Fresh(entry)
        }
    }

    /// Marks `entry` as matching the disk as of now.
    pub fn confirm(&self, entry: &Entry, removals: u64) {
        entry.removals.store(removals, Ordering::Release);
        entry.checked.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Keeps `data` as the file `key`, read after the store had noted `removals`.
    #[allow(clippy::too_many_arguments)]
    pub fn keep(
        &self,
        key: &str,
        data: Bytes,
        validators: Validators,
        content_type: &str,
        mtime: SystemTime,
        ino: u64,
        removals: u64,
    ) {
        if let Some(files) = &self.files {
            let head = format!(
                "etag: {}\r\nlast-modified: {}\r\naccept-ranges: bytes\r\n\
                 cache-control: {IMMUTABLE}\r\ncontent-type: {content_type}\r\n\
                 content-length: {}\r\n",
                validators.etag.to_str().unwrap_or(""),
                validators.last_modified.to_str().unwrap_or(""),
                data.len(),
            );
            files.insert(
                key.to_owned(),
                Arc::new(Entry {
                    data,
                    validators,
                    head: Bytes::from(head),
                    mtime,
                    ino,
                    removals: AtomicU64::new(removals),
                    checked: AtomicU64::new(self.now_ms()),
                }),
            );
        }
    }

    /// The open file kept for `key`, unless a removal or `RECHECK` has passed since.
    pub fn lookup_open(&self, node: &StorageNode, key: &str) -> Option<Arc<OpenEntry>> {
        let open = self.open.as_ref()?;
        let removals = node.disk.store().removals();
        if self.open_removals.swap(removals, Ordering::AcqRel) != removals {
            open.clear();
            return None;
        }
        let entry = open.get(key)?;
        if self.now_ms().saturating_sub(entry.opened) > RECHECK.as_millis() as u64 {
            open.remove(key);
            return None;
        }
        Some(entry)
    }

    /// Keeps `file` open as `key`, opened after the store had noted `removals`.
    pub fn keep_open(
        &self,
        key: &str,
        file: Arc<std::fs::File>,
        base: u64,
        size: u64,
        validators: Validators,
        removals: u64,
    ) -> Option<()> {
        let open = self.open.as_ref()?;
        if self.open_removals.load(Ordering::Acquire) != removals {
            return None;
        }
        open.insert(
            key.to_owned(),
            Arc::new(OpenEntry {
                file,
                base,
                size,
                validators,
                opened: self.now_ms(),
            }),
        );
        Some(())
    }

    pub fn forget(&self, key: &str) {
        if let Some(files) = &self.files {
            files.remove(key);
        }
    }
}

fn count(node: &StorageNode, result: &'static str) {
    node.metrics
        .http_cache
        .get_or_create(&CacheLabels { result })
        .inc();
}
