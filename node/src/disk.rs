//! The disk threads: the blocking file-system steps of request handling (open, read,
//! write, rename, fsync) run on fixed sets of threads fed by queues, as FastDFS's disk
//! reader and writer threads are, so the async workers never wait on the disk.
//!
//! Two sets: one for every step, large enough for reads of files not in the page cache to
//! overlap; and one for small files written whole (uploads and replicas up to the buffer
//! size), with a thread per CPU. Those steps are page-cache work bound by the CPU: spread
//! over eight threads, each step woke a sleeping thread of its own, and with 32 uploading
//! connections a tenth of the process's CPU went to that. With a thread per CPU, steps
//! that arrive while a thread is busy run back to back on it, and a slow read never holds
//! up a small write (nor the reverse). The small write of a request handled alone runs on
//! its own async worker instead: a lone request needs no thread woken for it and none
//! woken back.
//!
//! tokio's own blocking pool guards its queue and idle-thread list with one lock and a
//! condition variable. With every upload, download, replica and push making trips, the
//! async workers and the pool's threads spent more time queueing on that lock than
//! working (the largest wait in profiles under load on two cores).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Threads for any step: enough for reads of files not in the page cache to overlap.
const THREADS: usize = 8;

/// Which threads run a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// Any step.
    Any,
    /// Small files written whole, without fsync.
    SmallWrites,
}

impl Pool {
    fn threads(self) -> usize {
        match self {
            Pool::Any => THREADS,
            Pool::SmallWrites => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, THREADS),
        }
    }

    fn thread_name(self, i: usize) -> String {
        match self {
            Pool::Any => format!("fdfs-disk-{i}"),
            Pool::SmallWrites => format!("fdfs-write-{i}"),
        }
    }
}

/// Why a disk step gave no result.
#[derive(Debug, thiserror::Error)]
#[error("the disk step panicked, or no disk thread could be started")]
pub struct DiskStepLost;

impl From<DiskStepLost> for std::io::Error {
    fn from(lost: DiskStepLost) -> Self {
        std::io::Error::other(lost)
    }
}

/// Steps waiting for a disk thread, and the threads waiting for a step. A thread that finds
/// no step parks at once (no spinning: on two cores, threads spinning for work took the CPU
/// the requests needed), and each new step wakes the thread that parked last: its stack and
/// caches are still warm, and idle threads stay idle instead of taking turns.
struct Queue {
    state: Mutex<State>,
    /// Threads that started; with none, steps fall back to tokio's blocking pool.
    started: AtomicUsize,
    /// Steps queued or running, on the queue's threads or in place.
    busy: AtomicUsize,
}

#[derive(Default)]
struct State {
    steps: VecDeque<Job>,
    /// Parked threads, the most recently parked last.
    idle: Vec<std::thread::Thread>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let woken = {
            let mut state = self.lock();
            state.steps.push_back(job);
            state.idle.pop()
        };
        if let Some(thread) = woken {
            thread.unpark();
        }
    }

    fn next(&self) -> Job {
        let me = std::thread::current();
        loop {
            {
                let mut state = self.lock();
                if let Some(job) = state.steps.pop_front() {
                    return job;
                }
                // A spurious wake-up finds itself still listed.
                if !state.idle.iter().any(|t| t.id() == me.id()) {
                    state.idle.push(me.clone());
                }
            }
            std::thread::park();
        }
    }
}

fn queue(pool: Pool) -> &'static Queue {
    static ANY: OnceLock<&'static Queue> = OnceLock::new();
    static SMALL_WRITES: OnceLock<&'static Queue> = OnceLock::new();
    let cell = match pool {
        Pool::Any => &ANY,
        Pool::SmallWrites => &SMALL_WRITES,
    };
    cell.get_or_init(|| start(pool))
}

fn start(pool: Pool) -> &'static Queue {
    let queue: &'static Queue = Box::leak(Box::new(Queue {
        state: Mutex::new(State::default()),
        started: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
    }));
    for i in 0..pool.threads() {
        let spawned = std::thread::Builder::new()
            .name(pool.thread_name(i))
            .spawn(move || {
                loop {
                    // A panicking step drops its reply: its caller gets DiskStepLost.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(queue.next()));
                    queue.busy.fetch_sub(1, Ordering::Relaxed);
                }
            });
        match spawned {
            Ok(_) => {
                queue.started.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "cannot start a disk thread"),
        }
    }
    queue
}

/// Runs blocking `step` on a disk thread and waits for its result.
pub async fn run<T: Send + 'static>(
    step: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DiskStepLost> {
    run_on(Pool::Any, step).await
}

/// [`run`] for a small file written whole without fsync (a step bound by the CPU): on the
/// threads kept for those; or, for a request handled alone (see [`RequestInFlight`]) while
/// no other small write is queued or running, on the calling async worker itself. One
/// connection uploading file after file then wakes no disk thread, and no worker is woken
/// back.
///
/// With other workers, the step runs right there (one upload at a time, that took an
/// eighth off its CPU against handing the worker's tasks on first): they go on with new
/// events and take this worker's queued tasks as they run out of their own, though not the
/// one task it woke last (tokio keeps that one for itself), which waits for the step; a
/// step the disk holds up (a directory not in the cache, writeback throttling) holds up
/// that task and this worker as long, with no other request under way. With one worker
/// only, [`tokio::task::block_in_place`] first hands its tasks to another thread, since
/// nothing else would run them.
pub async fn run_small_write<T: Send + 'static>(
    step: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DiskStepLost> {
    let queue = queue(Pool::SmallWrites);
    let workers = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .map(|h| h.metrics().num_workers());
    if let Some(workers) = workers
        && REQUESTS.load(Ordering::Relaxed) <= 1
        && queue.started.load(Ordering::Relaxed) > 0
        && queue
            .busy
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if workers > 1 {
                step()
            } else {
                tokio::task::block_in_place(step)
            }
        }));
        queue.busy.fetch_sub(1, Ordering::Release);
        return out.map_err(|_| DiskStepLost);
    }
    run_on(Pool::SmallWrites, step).await
}

/// Requests being handled in this process (see [`RequestInFlight`]).
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Counts a request as being handled while it lives. A small write runs in place only for
/// a request handled alone: with others under way, handing a busy worker's tasks on for
/// each write cost more CPU than the wake-ups it saved (measured with 8 uploading
/// connections, and with two requests allowed: 5–10 % more CPU per upload).
#[derive(Debug)]
pub struct RequestInFlight(());

impl RequestInFlight {
    pub fn start() -> Self {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        REQUESTS.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_on<T: Send + 'static>(
    pool: Pool,
    step: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DiskStepLost> {
    let queue = queue(pool);
    if queue.started.load(Ordering::Relaxed) == 0 {
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

/// A stored file opened for reading, with its size and modification time.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: std::fs::File,
    /// Where the stored file's bytes start in `file`: 0, or past a trunk slot's header.
    pub base: u64,
    pub size: u64,
    pub mtime: std::time::SystemTime,
    pub ino: u64,
}

/// Opens `path` for reading if it is a regular file (`NotFound` otherwise); may read the
/// disk, so only on a disk thread.
pub fn open_regular_blocking(path: &std::path::Path) -> std::io::Result<OpenedFile> {
    describe(std::fs::File::open(path)?)
}

fn describe(file: std::fs::File) -> std::io::Result<OpenedFile> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    Ok(OpenedFile {
        base: 0,
        size: meta.len(),
        mtime: meta.modified()?,
        ino: std::os::unix::fs::MetadataExt::ino(&meta),
        file,
    })
}

/// Opens `path` for reading if it is a regular file (`NotFound` otherwise), on any
/// thread: `None` when resolving the path would read the disk (then a disk step opens it
/// with [`open_regular_blocking`]). Serving a hot file costs no trip to another thread.
pub fn open_regular_cached(path: &std::path::Path) -> Option<std::io::Result<OpenedFile>> {
    match open_cached(path) {
        Ok(file) => Some(describe(file)),
        Err(rustix::io::Errno::AGAIN) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// `open(path, O_RDONLY)` that fails with EAGAIN instead of reading the disk to resolve
/// the path (`RESOLVE_CACHED`, Linux 5.12+; where the kernel lacks it, EAGAIN too).
pub fn open_cached(path: &std::path::Path) -> Result<std::fs::File, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    match rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::CACHED,
    ) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL) => Err(rustix::io::Errno::AGAIN),
        Err(e) => Err(e),
    }
}

/// Whether the byte of `file` at `at` is in the page cache (a one-byte `RWF_NOWAIT` read).
pub fn is_cached(file: &std::fs::File, at: u64) -> bool {
    let mut byte = [0u8; 1];
    let mut slice = [std::io::IoSliceMut::new(&mut byte)];
    matches!(
        rustix::io::preadv2(file, &mut slice, at, rustix::io::ReadWriteFlags::NOWAIT),
        Ok(1)
    )
}

/// Reads `file` from `at` into `buf` as far as the page cache holds it (`RWF_NOWAIT`):
/// the bytes read, fewer than `buf.len()` where the file ends or the rest is not cached
/// (or the kernel lacks `RWF_NOWAIT`).
pub fn read_from_cache(file: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut done = 0usize;
    while done < buf.len() {
        let mut slice = [std::io::IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(
            file,
            &mut slice,
            at + done as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    Ok(done)
}

/// `len` bytes of `file` from `start`: read on the caller's thread while they are in the
/// page cache, the rest as a disk step.
pub async fn read_cached(
    file: impl std::borrow::Borrow<std::fs::File> + Send + 'static,
    start: u64,
    len: u64,
) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    let done = read_from_cache(file.borrow(), &mut buf, start)?;
    if done == buf.len() {
        return Ok(buf);
    }
    // Not cached, or past the end (the disk step's read says which).
    run(move || {
        file.borrow()
            .read_exact_at(&mut buf[done..], start + done as u64)
            .map(|()| buf)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Holds the steps that wait on it until it is opened.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
    }

    impl Gate {
        fn wait(&self) {
            let mut open = self.open.lock().expect("gate");
            while !*open {
                open = self.opened.wait(open).expect("gate");
            }
        }

        fn open(&self) {
            *self.open.lock().expect("gate") = true;
            self.opened.notify_all();
        }
    }

    /// A lone small write on a task of its own, held by `gate`; returned once it runs. The
    /// task gives the threads it was called on and ran on.
    async fn a_lone_write_held_by(
        gate: &Arc<Gate>,
    ) -> tokio::task::JoinHandle<(std::thread::ThreadId, std::thread::ThreadId)> {
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let held_gate = gate.clone();
        let held = tokio::spawn(async move {
            let caller = std::thread::current().id();
            let ran_on = run_small_write(move || {
                let _ = started_tx.send(());
                held_gate.wait();
                std::thread::current().id()
            })
            .await
            .expect("step");
            (caller, ran_on)
        });
        started.recv().await.expect("the write started");
        held
    }

    /// One connection uploading file after file: its write runs on its own async worker
    /// while the other worker runs new tasks; a write arriving meanwhile is queued, and so
    /// is any while several requests are under way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_small_write_runs_in_place_and_holds_up_nothing() {
        // Apart from the other tests of the process, whose writes and requests count.
        fdfs_test_support::alone!();
        let wait = std::time::Duration::from_secs(10);
        let gate = Arc::new(Gate::default());
        let held = a_lone_write_held_by(&gate).await;
        let other = tokio::time::timeout(wait, tokio::spawn(async { 7 }))
            .await
            .expect("a task waited behind the write in place");
        assert_eq!(other.expect("task"), 7);
        let queued = tokio::time::timeout(
            wait,
            run_small_write(|| std::thread::current().name().map(str::to_owned)),
        )
        .await
        .expect("a second write waited behind the first")
        .expect("step");
        assert!(queued.is_some_and(|n| n.starts_with("fdfs-write-")));
        gate.open();
        let (caller, ran_on) = held.await.expect("task");
        assert_eq!(caller, ran_on, "the lone write left its worker");
        // With another request under way, even a lone write goes to the threads.
        let _requests = (RequestInFlight::start(), RequestInFlight::start());
        let queued = run_small_write(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("step");
        assert!(queued.is_some_and(|n| n.starts_with("fdfs-write-")));
    }

    /// With one worker, a lone write in place first hands the worker's tasks to another
    /// thread: run right there, it would hold up every task until it ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_lone_small_write_on_the_only_worker_holds_up_nothing() {
        // Apart from the other tests of the process, whose writes would queue this one's.
        fdfs_test_support::alone!();
        let wait = std::time::Duration::from_secs(10);
        let gate = Arc::new(Gate::default());
        let held = a_lone_write_held_by(&gate).await;
        // Waited for on a thread of its own: with the only worker held, no timer would fire.
        let handle = tokio::runtime::Handle::current();
        let other = std::thread::spawn(move || {
            let (ran_tx, ran) = std::sync::mpsc::channel();
            handle.spawn(async move {
                let _ = ran_tx.send(7);
            });
            ran.recv_timeout(wait).ok()
        })
        .join()
        .expect("thread");
        gate.open();
        assert_eq!(other, Some(7), "a task waited behind the write in place");
        let (caller, ran_on) = held.await.expect("task");
        assert_eq!(caller, ran_on, "the lone write left its thread");
    }

    /// A write in place that panics is an error for its caller, and leaves nothing behind:
    /// the next lone write runs in place again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_in_place_is_an_error_and_the_next_runs_in_place() {
        fdfs_test_support::alone!();
        let lost = tokio::spawn(run_small_write(|| -> u32 { panic!("step fails") }))
            .await
            .expect("task");
        assert!(lost.is_err());
        let (caller, ran_on) = tokio::spawn(async {
            let caller = std::thread::current().id();
            let ran_on = run_small_write(|| std::thread::current().id()).await;
            (caller, ran_on.expect("step"))
        })
        .await
        .expect("task");
        assert_eq!(caller, ran_on, "the write after a panic left its worker");
    }

    #[tokio::test]
    async fn cached_files_open_and_read_here_and_others_still_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        // Just written: every step of the path is in the kernel's caches.
        let opened = open_regular_cached(&path).expect("cached").expect("open");
        let missing = dir.path().join("none");
        assert_eq!(opened.size, 10);
        assert_eq!(
            read_cached(opened.file, 2, 5).await.expect("read"),
            b"23456"
        );
        let short = open_regular_blocking(&path).expect("open");
        assert_eq!(
            read_cached(short.file, 8, 5)
                .await
                .expect_err("past the end")
                .kind(),
            std::io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            open_regular_blocking(dir.path())
                .expect_err("a directory")
                .kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            open_regular_cached(&missing)
                .unwrap_or_else(|| open_regular_blocking(&missing))
                .expect_err("missing")
                .kind(),
            std::io::ErrorKind::NotFound
        );
    }

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

    /// Small writes run on threads of their own, a few: with more of them held up than
    /// there are threads for any step, those run no more than their own threads at once,
    /// any other step still runs at once, and the held writes all finish once let go. (On
    /// a runtime of one thread, where none runs in place.)
    #[tokio::test]
    async fn small_writes_have_their_own_threads_and_never_hold_up_other_steps() {
        let name = run_small_write(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("step");
        assert!(name.is_some_and(|n| n.starts_with("fdfs-write-")));
        // Held steps wait until the gate opens.
        let gate = Arc::new(Gate::default());
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let threads = Pool::SmallWrites.threads();
        let held: Vec<_> = (0..Pool::Any.threads())
            .map(|i| {
                let (gate, started_tx) = (gate.clone(), started_tx.clone());
                tokio::spawn(run_small_write(move || {
                    let _ = started_tx.send(());
                    gate.wait();
                    i
                }))
            })
            .collect();
        for _ in 0..threads {
            started.recv().await.expect("a held write started");
        }
        let other = tokio::time::timeout(std::time::Duration::from_secs(10), run(|| 42))
            .await
            .expect("a step waited behind the small writes");
        assert_eq!(other.expect("step"), 42);
        assert!(
            started.try_recv().is_err(),
            "more writes ran than their threads"
        );
        gate.open();
        for (i, step) in held.into_iter().enumerate() {
            assert_eq!(step.await.expect("task").expect("step"), i);
        }
    }

    /// Steps queued faster than threads free up all run, none lost between a thread's last
    /// look at the queue and its parking, and they overlap on several threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_steps_all_runs_on_several_threads() {
        for _ in 0..20 {
            let steps: Vec<_> = (0..32u64)
                .map(|i| {
                    tokio::spawn(run(move || {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        (i, std::thread::current().id())
                    }))
                })
                .collect();
            let mut threads = std::collections::HashSet::new();
            for (i, step) in steps.into_iter().enumerate() {
                let (n, thread) = step.await.expect("task").expect("step");
                assert_eq!(n, i as u64);
                threads.insert(thread);
            }
            assert!(threads.len() > 1, "32 sleeping steps ran on one thread");
        }
    }
}
