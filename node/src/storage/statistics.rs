//! The figures a storage reports in every BEAT and keeps in `storage_stat.dat`: FastDFS's
//! operation counters and the times it last changed a file of its own and last applied a
//! peer's change. Updated without locks from any task or disk thread.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::monitor::{COUNTER_COUNT, StorageStats};
use crate::storage::binlog::Record;

#[derive(Debug)]
pub struct Statistics {
    counters: [AtomicU64; COUNTER_COUNT],
    /// Unix seconds (FastDFS's `last_source_update` / `last_sync_update`).
    last_source_update: AtomicU64,
    last_sync_update: AtomicU64,
}

impl Default for Statistics {
    fn default() -> Self {
        Statistics {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            last_source_update: AtomicU64::new(0),
            last_sync_update: AtomicU64::new(0),
        }
    }
}

impl Statistics {
    /// Adds `n` to a total counter, and to the success counter that follows it when `ok`.
    pub fn add_pair(&self, total: usize, n: u64, ok: bool) {
        self.counters[total].fetch_add(n, Ordering::Relaxed);
        if ok {
            self.counters[total + 1].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Notes binlog records just written. The source side uses the records' own times:
    /// peers report progress in those, so an idle, caught-up peer shows a delay of zero.
    pub fn changed(&self, records: &[Record], now: u64) {
        for r in records {
            if r.origin {
                self.last_source_update
                    .fetch_max(u64::from(r.timestamp), Ordering::Relaxed);
            } else {
                self.last_sync_update.store(now, Ordering::Relaxed);
            }
        }
    }

    /// The figures as they stand.
    pub fn snapshot(&self) -> StorageStats {
        let mut s = StorageStats::default();
        for (dst, src) in s.counters.iter_mut().zip(self.counters.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        s.last_source_update = self.last_source_update.load(Ordering::Relaxed);
        s.last_sync_update = self.last_sync_update.load(Ordering::Relaxed);
        s
    }

    /// Takes up the figures of an earlier run.
    pub fn resume(&self, counters: &[u64; COUNTER_COUNT], last_source: u64, last_sync: u64) {
        for (counter, v) in self.counters.iter().zip(counters) {
            counter.store(*v, Ordering::Relaxed);
        }
        self.last_source_update
            .store(last_source, Ordering::Relaxed);
        self.last_sync_update.store(last_sync, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::binlog::Op;

    /// A pair counts its total always and its success only when it succeeded; our own
    /// records move the source time to theirs (never back), a peer's the sync time to now.
    #[test]
    fn pairs_and_update_times_count_as_fastdfs_reports_them() {
        let stats = Statistics::default();
        stats.add_pair(0, 1, true);
        stats.add_pair(0, 1, false);
        stats.changed(&[Record::new(500, Op::Create, "M00/00/00/a")], 900);
        stats.changed(&[Record::new(400, Op::Create, "M00/00/00/b")], 900);
        stats.changed(
            &[Record::new(300, Op::Create, "M00/00/00/c").replica()],
            901,
        );
        let s = stats.snapshot();
        assert_eq!((s.counters[0], s.counters[1]), (2, 1));
        assert_eq!((s.last_source_update, s.last_sync_update), (500, 901));
        stats.resume(&[7; COUNTER_COUNT], 10, 11);
        let s = stats.snapshot();
        assert_eq!(
            (s.counters[5], s.last_source_update, s.last_sync_update),
            (7, 10, 11)
        );
    }
}
