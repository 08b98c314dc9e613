//! [`GlobalLockPool`]: N threads that must hold one process-wide lock while computing. **A model of CPython's
//! GIL**, built to show what the GIL does to CPU-bound threads; it is not CPython and runs no Python.
//!
//! The threads and the queue are a [`CpuPool`]'s, so submitting, backpressure, skip-if-dropped and timings
//! behave exactly as on the real pool. The only difference is inside each job: it first takes the global lock,
//! and gives it up only at a checkpoint (the `should_stop` callback it is handed, which a well-behaved
//! [`CpuJob`](super::CpuJob) calls every millisecond or less of work) once it has held the lock for a whole switch
//! interval and another thread is waiting. That mirrors CPython 3's "new GIL": a waiting thread asks for the
//! lock after `sys.getswitchinterval()` (5 ms), and the holder drops it at its next eval-loop check.
//!
//! The hand-off is fair: a ticket lock (a `Mutex` and a `Condvar`) serves threads in arrival order, and the
//! releasing thread takes a new ticket at the back of the line. With a plain mutex the releasing thread, which
//! is already running, usually wins the lock straight back: the convoy effect that made CPython's old GIL
//! starve other threads.
//!
//! The result, as on CPython: N jobs on N threads take about N times as long as one, because only one of them
//! ever computes at a time, and each job's wall time stretches to cover the others' turns.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::error::PoolError;
use super::job::JobTiming;
use super::stats::PoolStats;
use super::threads::{CpuPool, PoolConfig};

/// How long a thread may keep the global lock while another waits: CPython's default
/// `sys.getswitchinterval()`.
pub const SWITCH_INTERVAL: Duration = Duration::from_millis(5);

/// A pool of threads that take turns on one global lock (see the module docs; a model of the GIL).
///
/// Cheap to clone; clones share the threads and the lock.
#[derive(Debug, Clone)]
pub struct GlobalLockPool {
    pool: CpuPool,
    lock: Arc<GlobalLock>,
}

impl GlobalLockPool {
    /// Starts `config.workers` threads sharing one lock handed over every `switch_interval`.
    pub fn new(config: PoolConfig, switch_interval: Duration) -> Result<Self, PoolError> {
        Ok(Self {
            pool: CpuPool::new(config)?,
            lock: Arc::new(GlobalLock::new(switch_interval)),
        })
    }

    /// Runs `job` on a worker thread while holding the global lock, and returns its value and timing.
    ///
    /// `job` gets `should_stop`: calling it is the checkpoint where the lock may change hands, and it returns
    /// true once the caller stopped waiting. [`JobTiming::started_at`] is when the thread picked the job up,
    /// before it waited for the lock, as a Python thread counts as started while it waits for the GIL.
    pub async fn submit_timed<F, R>(&self, job: F) -> Result<(R, JobTiming), PoolError>
    where
        F: FnOnce(&dyn Fn() -> bool) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.submit_timed_on(move |_, should_stop| job(should_stop))
            .await
    }

    /// [`GlobalLockPool::submit_timed`], the job told the index of the worker that holds the lock for it.
    pub async fn submit_timed_on<F, R>(&self, job: F) -> Result<(R, JobTiming), PoolError>
    where
        F: FnOnce(usize, &dyn Fn() -> bool) -> R + Send + 'static,
        R: Send + 'static,
    {
        let lock = Arc::clone(&self.lock);
        self.pool
            .submit_timed(move |context| {
                let holder = lock.acquire();
                let should_stop = || {
                    holder.checkpoint();
                    context.is_cancelled()
                };
                job(context.worker_index(), &should_stop)
                // `holder` drops here (or while unwinding from a panic) and passes the lock on.
            })
            .await
    }

    /// A snapshot of the job counters.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// How many times the lock changed hands at a checkpoint so far (not counting jobs that finished).
    pub fn lock_handoffs(&self) -> u64 {
        self.lock.handoffs.load(Ordering::Relaxed)
    }

    /// Stops accepting jobs, finishes the queued ones and joins the threads.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

/// The process-wide lock: a fair ticket lock.
#[derive(Debug)]
struct GlobalLock {
    tickets: Mutex<Tickets>,
    turn_changed: Condvar,
    switch_interval: Duration,
    handoffs: AtomicU64,
}

/// Threads are served in ticket order: the holder has ticket `now_serving`; the others wait for theirs.
#[derive(Debug)]
struct Tickets {
    next_ticket: u64,
    now_serving: u64,
}

/// Proof of holding the global lock; dropping it passes the lock to the next ticket.
struct Holder<'lock> {
    lock: &'lock GlobalLock,
    held_since: Cell<Instant>,
}

impl GlobalLock {
    fn new(switch_interval: Duration) -> Self {
        Self {
            tickets: Mutex::new(Tickets {
                next_ticket: 0,
                now_serving: 0,
            }),
            turn_changed: Condvar::new(),
            switch_interval,
            handoffs: AtomicU64::new(0),
        }
    }

    /// Blocks the calling (worker) thread until it holds the lock.
    fn acquire(&self) -> Holder<'_> {
        let mut tickets = self.tickets();
        let ticket = tickets.take();
        self.wait_for_turn(tickets, ticket);
        Holder {
            lock: self,
            held_since: Cell::new(Instant::now()),
        }
    }

    fn tickets(&self) -> MutexGuard<'_, Tickets> {
        // The critical sections only do arithmetic and cannot panic, so a poisoned lock is still consistent.
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_for_turn(&self, mut tickets: MutexGuard<'_, Tickets>, ticket: u64) {
        while tickets.now_serving != ticket {
            tickets = self
                .turn_changed
                .wait(tickets)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Tickets {
    fn take(&mut self) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        ticket
    }

    fn someone_waiting(&self) -> bool {
        self.next_ticket > self.now_serving + 1
    }
}

impl Holder<'_> {
    /// Gives the lock to the next waiting thread if this one has held it for a whole switch interval, and
    /// waits for its turn to come back. Cheap when there is nothing to do: one clock read.
    fn checkpoint(&self) {
        if self.held_since.get().elapsed() < self.lock.switch_interval {
            return;
        }
        let mut tickets = self.lock.tickets();
        if !tickets.someone_waiting() {
            // Like CPython, nobody asked for the lock, so keep it and keep computing.
            return;
        }
        // Release and queue again at the back in one critical section, so no one can slip in between unfairly.
        tickets.now_serving += 1;
        let ticket = tickets.take();
        self.lock.handoffs.fetch_add(1, Ordering::Relaxed);
        self.lock.turn_changed.notify_all();
        self.lock.wait_for_turn(tickets, ticket);
        self.held_since.set(Instant::now());
    }
}

impl Drop for Holder<'_> {
    fn drop(&mut self) {
        self.lock.tickets().now_serving += 1;
        self.lock.turn_changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::pool::test_jobs::hash_chain;

    const JOBS: usize = 3;

    fn pool() -> GlobalLockPool {
        let workers = NonZeroUsize::new(JOBS).expect("positive");
        GlobalLockPool::new(PoolConfig::with_workers(workers), SWITCH_INTERVAL).expect("start pool")
    }

    /// What one instrumented job saw.
    #[derive(Debug, Default)]
    struct Observed {
        /// Most sections computing at the same instant, over all jobs.
        most_holders: AtomicUsize,
        /// Which job computed each section, in order.
        turns: Mutex<Vec<usize>>,
        /// Total time spent inside sections (between checkpoints), over all jobs, in nanoseconds.
        computing_nanos: AtomicU64,
    }

    /// A job of about `work` of computing, in sections between two checkpoints, recording each section.
    fn instrumented_job(
        job_index: usize,
        work: Duration,
        holders: Arc<AtomicUsize>,
        observed: Arc<Observed>,
    ) -> impl FnOnce(&dyn Fn() -> bool) + Send + 'static {
        move |should_stop| {
            let mut done = Duration::ZERO;
            while done < work {
                let now_holding = holders.fetch_add(1, Ordering::SeqCst) + 1;
                observed
                    .most_holders
                    .fetch_max(now_holding, Ordering::SeqCst);
                let started = Instant::now();
                std::hint::black_box(hash_chain(1, 5_000));
                let section = started.elapsed();
                let nanos = u64::try_from(section.as_nanos()).unwrap_or(u64::MAX);
                observed.computing_nanos.fetch_add(nanos, Ordering::SeqCst);
                observed.turns.lock().expect("turns lock").push(job_index);
                holders.fetch_sub(1, Ordering::SeqCst);
                done += section;
                if should_stop() {
                    return;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_one_job_computes_at_a_time_and_all_take_turns() {
        let pool = pool();
        let holders = Arc::new(AtomicUsize::new(0));
        let observed = Arc::new(Observed::default());
        // About 60 ms of work each: many switch intervals, so a fair lock must hand over many times.
        let work = Duration::from_millis(60);
        let started = Instant::now();
        let jobs = (0..JOBS).map(|job_index| {
            pool.submit_timed(instrumented_job(
                job_index,
                work,
                Arc::clone(&holders),
                Arc::clone(&observed),
            ))
        });
        for outcome in futures::future::join_all(jobs).await {
            outcome.expect("job ran");
        }
        let wall = started.elapsed();

        assert_eq!(observed.most_holders.load(Ordering::SeqCst), 1);
        // Fair hand-off: the turns interleave instead of running one job to the end, then the next.
        let turns = observed.turns.lock().expect("turns lock").clone();
        let switches = turns.windows(2).filter(|pair| pair[0] != pair[1]).count();
        assert!(switches > JOBS, "only {switches} switches: {turns:?}");
        assert!(pool.lock_handoffs() > 0);
        // Serialised: the wall time covers every job's computing time (not just the longest one's).
        let computing = Duration::from_nanos(observed.computing_nanos.load(Ordering::SeqCst));
        assert!(
            wall.as_secs_f64() >= 0.8 * computing.as_secs_f64(),
            "wall {wall:?} < 0.8 x computing {computing:?}"
        );
        pool.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lock_is_released_when_a_job_panics() {
        let pool = pool();
        let panicked = pool.submit_timed(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(panicked, Err(PoolError::Panicked(_))));
        // The next job can take the lock: the panicking holder passed it on while unwinding.
        let (value, _) = pool.submit_timed(|_| 7).await.expect("next job runs");
        assert_eq!(value, 7);
        pool.shutdown().await;
    }

    #[test]
    fn a_lone_holder_keeps_the_lock_without_handing_off() {
        let lock = GlobalLock::new(Duration::ZERO);
        let holder = lock.acquire();
        holder.checkpoint();
        holder.checkpoint();
        assert_eq!(lock.handoffs.load(Ordering::Relaxed), 0);
        drop(holder);
        let again = lock.acquire();
        drop(again);
        assert_eq!(lock.tickets().now_serving, 2);
    }
}
