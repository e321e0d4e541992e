//! The disk threads: the blocking file-system steps of request handling (open, read,
//! write, rename, fsync) run on a fixed set of threads fed by one queue, as FastDFS's disk
//! reader and writer threads are, so the async workers never wait on the disk.
//!
//! tokio's own blocking pool guards its queue and idle-thread list with one lock and a
//! condition variable. With every upload, download, replica and push making trips, the
//! async workers and the pool's threads spent more time queueing on that lock than
//! working (the largest wait in profiles under load on two cores).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Disk threads: enough for reads of files not in the page cache to overlap.
const THREADS: usize = 8;

/// Why a disk step gave no result.
#[derive(Debug, thiserror::Error)]
#[error("the disk step panicked, or no disk thread could be started")]
pub struct DiskStepLost;

/// Steps waiting for a disk thread. A thread that finds it empty sleeps on the condition
/// variable at once (no spinning: on two cores, threads spinning for work took the CPU the
/// requests needed), and each new step wakes one.
struct Queue {
    steps: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

/// Disk threads that started; with none, steps fall back to tokio's blocking pool.
static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Queue {
    fn push(&self, job: Job) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(job);
        self.ready.notify_one();
    }

    fn next(&self) -> Job {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = steps.pop_front() {
                return job;
            }
            steps = self.ready.wait(steps).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<&'static Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let queue: &'static Queue = Box::leak(Box::new(Queue {
            steps: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        for i in 0..THREADS {
            let spawned = std::thread::Builder::new()
                .name(format!("fdfs-disk-{i}"))
                .spawn(move || {
                    loop {
                        // A panicking step drops its reply: its caller gets DiskStepLost.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(queue.next()));
                    }
                });
            match spawned {
                Ok(_) => {
                    STARTED.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a disk thread"),
            }
        }
        queue
    })
}

/// Runs blocking `step` on a disk thread and waits for its result.
pub async fn run<T: Send + 'static>(
    step: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DiskStepLost> {
    let queue = queue();
    if STARTED.load(Ordering::Relaxed) == 0 {
        return tokio::task::spawn_blocking(step)
            .await
            .map_err(|_| DiskStepLost);
    }
    let (reply, result) = tokio::sync::oneshot::channel();
    queue.push(Box::new(move || {
        let _ = reply.send(step());
    }));
    result.await.map_err(|_| DiskStepLost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_run_off_the_caller_and_a_panic_is_an_error() {
        let caller = std::thread::current().id();
        let ran_on = run(|| std::thread::current().id()).await.expect("step");
        assert_ne!(ran_on, caller);
        let name = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("step");
        assert!(name.is_some_and(|n| n.starts_with("fdfs-disk-")));
        let lost = run(|| -> u8 { panic!("a failing step") }).await;
        assert!(lost.is_err());
        // The threads keep serving after a panic.
        for i in 0..64usize {
            assert_eq!(run(move || i * 2).await.expect("step"), i * 2);
        }
    }
}
