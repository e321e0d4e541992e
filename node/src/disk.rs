//! The disk threads: the blocking file-system steps of request handling (open, read,
//! write, rename, fsync) run on a fixed set of threads fed by one lock-free queue, as
//! FastDFS's disk reader and writer threads are, so the async workers never wait on
//! the disk.
//!
//! tokio's own blocking pool guards its queue and idle-thread list with one lock and a
//! condition variable. With every upload, download, replica and push making trips, the
//! async workers and the pool's threads spent more time queueing on that lock than
//! working (the largest wait in profiles under load on two cores).

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use crossbeam_channel::Sender;

type Job = Box<dyn FnOnce() + Send>;

/// Disk threads: enough for reads of files not in the page cache to overlap.
const THREADS: usize = 8;

/// Why a disk step gave no result.
#[derive(Debug, thiserror::Error)]
#[error("the disk step panicked, or no disk thread could be started")]
pub struct DiskStepLost;

fn queue() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, next) = crossbeam_channel::unbounded::<Job>();
        for i in 0..THREADS {
            let next = next.clone();
            let started = std::thread::Builder::new()
                .name(format!("fdfs-disk-{i}"))
                .spawn(move || {
                    for job in next {
                        // A panicking step drops its reply: its caller gets DiskStepLost.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a disk thread");
            }
        }
        jobs
    })
}

/// Runs blocking `step` on a disk thread and waits for its result.
pub async fn run<T: Send + 'static>(
    step: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DiskStepLost> {
    let (reply, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(step());
    });
    queue().send(job).map_err(|_| DiskStepLost)?;
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
