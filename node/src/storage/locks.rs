//! Per-file locks: changes to one stored file (appends, modifies, truncates, renames,
//! metadata merges) take effect one at a time. Without them two appends read the same
//! end of file and one overwrites the other, and two metadata merges each keep only
//! their own key. Held only while a change is applied, never while a body is received.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A lock per stored file name, made on first use and dropped with its last user.
#[derive(Debug, Default)]
pub struct FileLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Exclusive use of one file name until dropped.
#[derive(Debug)]
pub struct FileGuard<'a> {
    locks: &'a FileLocks,
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl FileLocks {
    /// Waits for exclusive use of the file `name` (a remote name, `Mxx/HH/LL/…`).
    pub async fn lock(&self, name: &str) -> FileGuard<'_> {
        let lock = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        FileGuard {
            locks: self,
            name: name.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// Whether no file name has a lock now (held or waited for).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

impl Drop for FileGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        self.guard.take();
        // Nobody else holds or waits for it: forget the name.
        if held
            .get(&self.name)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            held.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_holder_per_name_and_names_are_forgotten() {
        let locks = Arc::new(FileLocks::default());
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (locks, inside) = (locks.clone(), inside.clone());
            tasks.spawn(async move {
                for _ in 0..50 {
                    let _g = locks.lock("M00/00/00/a").await;
                    let _other = locks.lock("M00/00/00/b").await;
                    assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        assert!(locks.is_empty());
    }
}
