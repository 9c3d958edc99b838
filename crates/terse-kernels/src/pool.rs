//! A persistent worker pool for splitting kernels across cores.
//!
//! A decode step issues a couple of hundred small matmuls, so dispatch cost
//! matters more than generality: threads are created once, spin briefly
//! waiting for the next job (then park on a condvar), claim task indices
//! from one shared atomic, and the calling thread works alongside them. A
//! job costs no allocation and no thread spawn.
//!
//! Protocol (all on `Shared`):
//! - `state` packs the job epoch (high 32 bits) and the next task index (low
//!   32 bits). Publishing a job stores `(epoch + 1) << 32`; claiming a task
//!   is one `fetch_add`. When every task has completed, the caller marks the
//!   job closed by setting [`CLOSED`] in the index.
//! - A worker registers in `active` before reading the job and re-checks
//!   that the job is still open; the caller waits for `active == 0` after
//!   closing, so the borrowed closure is never used after `run` returns.
//! - Panics inside tasks are caught, every task is still counted as done,
//!   and the first panic is re-raised on the calling thread.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Index bit marking a finished job; above any real task index.
const CLOSED: u64 = 1 << 31;
const INDEX_MASK: u64 = 0xFFFF_FFFF;
/// How long an idle worker spins before parking: long enough to bridge the
/// gap between consecutive matmuls of one decode step.
const DEFAULT_SPIN: Duration = Duration::from_micros(200);

type Task = dyn Fn(usize) + Sync;

#[derive(Clone, Copy)]
struct Job {
    /// The caller's closure with its lifetime erased; valid while the job is
    /// open or any worker is registered in `active`.
    f: Option<&'static Task>,
    n_tasks: usize,
}

struct Shared {
    state: AtomicU64,
    job: UnsafeCell<Job>,
    completed: AtomicUsize,
    active: AtomicUsize,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    /// Set while a `run` is in flight; a nested or concurrent `run` executes
    /// inline instead of corrupting the shared job.
    busy: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    lock: Mutex<()>,
    wake: Condvar,
    spin: Duration,
}

// SAFETY: `job` is written only by the thread that owns `busy`, while no
// worker can read it (no open job and `active == 0`), see the module docs.
unsafe impl Sync for Shared {}
// SAFETY: the erased closure reference inside `job` is `Sync`, so sharing it
// with worker threads is sound.
unsafe impl Send for Shared {}

fn epoch_of(state: u64) -> u64 {
    state >> 32
}

fn is_open(state: u64) -> bool {
    state & CLOSED == 0
}

impl Shared {
    /// Claims and runs tasks of `job` until none are left.
    fn work(&self, job: Job) {
        let Some(f) = job.f else { return };
        loop {
            let idx = (self.state.fetch_add(1, Ordering::AcqRel) & INDEX_MASK) as usize;
            if idx >= job.n_tasks {
                return;
            }
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(idx))) {
                let mut slot = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert(payload);
            }
            self.completed.fetch_add(1, Ordering::Release);
        }
    }

    /// Blocks until the epoch differs from `seen` or shutdown; spins for
    /// `spin` first. Returns the state observed, or `None` on shutdown.
    fn wait_for_job(&self, seen: u64) -> Option<u64> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.shutdown.load(Ordering::Acquire) {
                return None;
            }
            let s = self.state.load(Ordering::Acquire);
            if epoch_of(s) != seen {
                return Some(s);
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > self.spin {
                break;
            }
        }
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.shutdown.load(Ordering::SeqCst) {
                break None;
            }
            let s = self.state.load(Ordering::SeqCst);
            if epoch_of(s) != seen {
                break Some(s);
            }
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn worker_loop(&self) {
        // Epoch 0 is the pool's initial (closed) state. Reading the current
        // state instead would skip a job published before this thread started.
        let mut seen = 0;
        while let Some(s) = self.wait_for_job(seen) {
            seen = epoch_of(s);
            if !is_open(s) {
                continue;
            }
            self.active.fetch_add(1, Ordering::SeqCst);
            let now = self.state.load(Ordering::SeqCst);
            if is_open(now) {
                seen = epoch_of(now);
                // SAFETY: the job is open and we are registered in `active`,
                // so the caller cannot return (and invalidate `f`) or write
                // a new job until we deregister.
                let job = unsafe { *self.job.get() };
                self.work(job);
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Clears `busy` when a run ends, even by panic.
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Persistent worker pool: threads are created once and kept hot between
/// operations; the calling thread participates in every run.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads in total (the caller plus
    /// `n_threads - 1` workers; 0 is treated as 1). If the OS refuses to
    /// spawn a worker the pool keeps the ones it got ([`Self::n_threads`]
    /// reports the real count).
    pub fn new(n_threads: usize) -> Self {
        Self::with_spin(n_threads, DEFAULT_SPIN)
    }

    /// Like [`Self::new`], with idle workers spinning for `spin` before
    /// parking (zero parks at once: lowest CPU use, highest dispatch latency).
    pub fn with_spin(n_threads: usize, spin: Duration) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: UnsafeCell::new(Job {
                f: None,
                n_tasks: 0,
            }),
            completed: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            panic: Mutex::new(None),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            spin,
        });
        let mut workers = Vec::with_capacity(n_threads.saturating_sub(1));
        for i in 1..n_threads.max(1) {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("terse-kernels-{i}"))
                .spawn(move || shared.worker_loop());
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(_) => break,
            }
        }
        ThreadPool { shared, workers }
    }

    /// Threads that execute tasks, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(task)` for every task in `0..n_tasks` across the pool and
    /// returns when all are done. A panic in `f` does not deadlock: the other
    /// tasks still run and the first panic is resumed on the calling thread.
    /// A `run` from inside a task (or from a second thread while one is in
    /// flight) executes its tasks inline on the calling thread.
    ///
    /// # Panics
    /// Re-raises a panic from `f`; panics if `n_tasks` ≥ 2^31.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        let shared = &*self.shared;
        if self.workers.is_empty()
            || n_tasks == 1
            || shared
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            (0..n_tasks).for_each(f);
            return;
        }
        let _busy = BusyGuard(&shared.busy);
        assert!(
            (n_tasks as u64) < CLOSED,
            "ThreadPool::run: too many tasks ({n_tasks})"
        );

        // SAFETY: only the lifetime is erased. The reference is dropped from
        // `job` below, after every worker has stopped using it.
        let f_static: &'static Task =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Task>(f) };
        // SAFETY: no job is open and `active == 0` (the previous run waited
        // for both), so no worker reads `job` now.
        unsafe {
            *shared.job.get() = Job {
                f: Some(f_static),
                n_tasks,
            }
        };
        shared.completed.store(0, Ordering::Relaxed);
        let epoch = (epoch_of(shared.state.load(Ordering::Relaxed)) + 1) & INDEX_MASK;
        shared.state.store(epoch << 32, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
            shared.wake.notify_all();
        }

        shared.work(Job {
            f: Some(f_static),
            n_tasks,
        });
        wait_until(|| shared.completed.load(Ordering::Acquire) == n_tasks);
        shared.state.store((epoch << 32) | CLOSED, Ordering::SeqCst);
        wait_until(|| shared.active.load(Ordering::SeqCst) == 0);
        // SAFETY: closed and no worker registered: nobody reads `job`.
        unsafe { (*shared.job.get()).f = None };

        let payload = shared
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(payload) = payload {
            resume_unwind(payload);
        }
    }
}

/// Spins on `done` (tasks of one job are short), yielding after a while so a
/// descheduled worker can finish on an oversubscribed machine.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < 4096 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self
                .shared
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_all();
        }
        for handle in self.workers.drain(..) {
            // A worker only exits by returning; a join error would mean it
            // panicked outside a task, which `work` rules out.
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_exactly_once() {
        for threads in [1, 2, 3, 4] {
            let pool = ThreadPool::new(threads);
            for n_tasks in [1, 2, 7, 64, 1000] {
                let counts: Vec<AtomicU32> = (0..n_tasks).map(|_| AtomicU32::new(0)).collect();
                pool.run(n_tasks, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "{threads} threads, {n_tasks} tasks"
                );
            }
        }
    }

    #[test]
    fn zero_tasks_return_immediately() {
        let pool = ThreadPool::new(2);
        pool.run(0, &|_| panic!("no task should run"));
    }

    #[test]
    fn survives_ten_thousand_tiny_runs() {
        let pool = ThreadPool::new(3);
        let total = AtomicUsize::new(0);
        for _ in 0..10_000 {
            pool.run(3, &|i| {
                total.fetch_add(i + 1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 10_000 * 6);
    }

    #[test]
    fn parked_workers_wake_for_new_jobs() {
        let pool = ThreadPool::with_spin(3, Duration::ZERO);
        let total = AtomicUsize::new(0);
        for _ in 0..200 {
            std::thread::sleep(Duration::from_micros(50));
            pool.run(8, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 200 * 8);
    }

    #[test]
    fn task_panic_propagates_and_pool_stays_usable() {
        let pool = ThreadPool::new(2);
        let ran = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(16, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                if i == 5 {
                    panic!("task five failed");
                }
            })
        }));
        let payload = result.expect_err("the panic must reach the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task five failed"));
        assert_eq!(ran.load(Ordering::Relaxed), 16, "other tasks still run");

        let after = AtomicUsize::new(0);
        pool.run(10, &|_| {
            after.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(after.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn nested_run_executes_inline() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn work_spreads_over_threads() {
        let pool = ThreadPool::new(2);
        let seen: Mutex<std::collections::HashSet<std::thread::ThreadId>> = Mutex::default();
        pool.run(64, &|_| {
            std::thread::sleep(Duration::from_millis(1));
            seen.lock().unwrap().insert(std::thread::current().id());
        });
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(pool.n_threads(), 2);
    }
}
