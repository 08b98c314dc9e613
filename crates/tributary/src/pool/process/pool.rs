//! The parent side: [`ProcessPool`], its worker slots, and the bookkeeping that keeps its counters right however
//! a job ends.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::WorkerCommand;
use super::child::{Exchange, WorkerProcess};
use super::frame::{RequestFrame, encode_frame};
use crate::pool::job::JobTiming;
use crate::pool::stats::{PoolCounters, PoolStats};
use crate::pool::{CpuJob, ExecutorError};

/// How big a process pool to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPoolConfig {
    /// Worker processes.
    pub workers: NonZeroUsize,
    /// How many jobs may wait for a free worker before [`ProcessPool::run`] waits for a queue slot.
    pub queue_capacity: NonZeroUsize,
    /// What to start as a worker.
    pub command: WorkerCommand,
}

/// A pool of worker processes (see the module docs).
///
/// Cheap to clone; clones share the workers. Dropping the last clone kills the idle workers; call
/// [`ProcessPool::shutdown`] to let them exit cleanly.
#[derive(Debug, Clone)]
pub struct ProcessPool {
    inner: Arc<PoolInner>,
}

/// A snapshot of a process pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessPoolStats {
    /// Job counters with the thread pool's meaning; a crashed job counts in `crashed`, not in `completed`.
    pub jobs: PoolStats,
    /// Jobs whose worker crashed, answered nonsense, or could not be started (total).
    pub crashed: u64,
    /// Worker processes started to replace one that crashed, was killed, or was found dead (total).
    pub workers_replaced: u64,
}

impl ProcessPool {
    /// Starts `config.workers` worker processes. Must be called inside a tokio runtime.
    pub fn new(config: ProcessPoolConfig) -> Result<Self, ExecutorError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ExecutorError::NoRuntime);
        }
        let workers = config.workers.get();
        let (free, idle) = flume::bounded(workers);
        let mut pids = Vec::with_capacity(workers);
        for index in 0..workers {
            // On error the slots already queued drop with `idle`, which kills their processes.
            let process = WorkerProcess::spawn(&config.command)?;
            pids.push(process.pid);
            free.try_send(Slot {
                index,
                process: Some(process),
            })
            .expect("the free-worker channel has room for every worker");
        }
        Ok(Self {
            inner: Arc::new(PoolInner {
                queue_slots: Semaphore::new(config.queue_capacity.get()),
                config,
                free,
                idle,
                counters: PoolCounters::default(),
                crashed: AtomicU64::new(0),
                replaced: AtomicU64::new(0),
                next_request_id: AtomicU64::new(1),
                closed: CancellationToken::new(),
                pids: Mutex::new(pids),
            }),
        })
    }

    /// Sends `job` to a free worker, waiting for one (and first for a queue slot) if all are busy, and returns
    /// its output with which worker slot ran it and when. The worker must serve `J` (see
    /// [`WorkerJobs`](super::WorkerJobs)).
    ///
    /// Dropping the future while a worker runs the job kills and replaces that worker (see the module docs).
    pub async fn run<J: CpuJob>(&self, job: J) -> Result<(J::Output, JobTiming), ExecutorError> {
        self.run_with_progress(job, &|_| {}).await
    }

    /// [`run`](Self::run), with `on_progress` called on the runtime for each piece of text the job reports
    /// (see [`CpuJob::run_with_progress`]).
    pub async fn run_with_progress<J: CpuJob>(
        &self,
        job: J,
        on_progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(J::Output, JobTiming), ExecutorError> {
        self.run_watched(job, &|_| {}, on_progress).await
    }

    /// [`ProcessPool::run_with_progress`], calling `on_start` with the worker's index when the job is sent to it.
    pub async fn run_watched<J: CpuJob>(
        &self,
        job: J,
        on_start: &(dyn Fn(usize) + Sync),
        on_progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(J::Output, JobTiming), ExecutorError> {
        let queued_at = Instant::now();
        let inner = &*self.inner;
        if inner.closed.is_cancelled() {
            PoolCounters::increment(&inner.counters.rejected);
            return Err(ExecutorError::ShutDown);
        }
        let id = inner.next_request_id.fetch_add(1, Ordering::Relaxed);
        let input = serde_json::to_value(&job).map_err(|error| ExecutorError::Encode {
            job: J::NAME,
            detail: error.to_string(),
        })?;
        let frame = encode_frame(&RequestFrame {
            id,
            job: J::NAME.into(),
            input,
            // Called here, inside the job's span (see `Executor::run_job`).
            trace: inner
                .config
                .command
                .trace_context
                .and_then(|trace_context| (trace_context.inject)()),
        });

        let mut accounting = Accounting::queued(&inner.counters);
        let Some(slot) = inner.next_free_slot().await else {
            accounting.settle(&inner.counters.rejected);
            return Err(ExecutorError::ShutDown);
        };
        let mut busy = BusyWorker::new(slot, inner);
        accounting.start();
        let worker = busy.index();
        let process = match busy.ready_process() {
            Ok(process) => process,
            Err(error) => {
                accounting.settle(&inner.crashed);
                return Err(error);
            }
        };
        // The caller's span (an executor's `pool.job`) names the process; the worker itself records nothing.
        tracing::Span::current().record("pid", process.pid);
        let started_at = Instant::now();
        on_start(worker);
        let exchanged = process.exchange(&frame, id, on_progress).await;
        let timing = |finished_at| JobTiming {
            worker_index: worker,
            queued_at,
            started_at,
            finished_at,
        };
        let exchanged = exchanged.and_then(|output| {
            serde_json::from_value::<J::Output>(output).map_err(|error| {
                Exchange::Malformed(format!("decode the output of `{}`: {error}", J::NAME))
            })
        });
        match exchanged {
            Ok(output) => {
                let finished_at = Instant::now();
                busy.keep();
                accounting.settle(&inner.counters.completed);
                Ok((output, timing(finished_at)))
            }
            Err(Exchange::Closed(how)) => {
                let detail = format!("{how}; {}", process.exit_status().await);
                accounting.settle(&inner.crashed);
                tracing::warn!(worker, %detail, "worker process crashed; it will be replaced");
                Err(ExecutorError::WorkerCrashed { worker, detail })
            }
            Err(Exchange::Malformed(detail)) => {
                accounting.settle(&inner.crashed);
                tracing::warn!(worker, %detail, "worker process sent a malformed reply; it will be replaced");
                Err(ExecutorError::Protocol { worker, detail })
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProcessPoolStats {
        let inner = &*self.inner;
        ProcessPoolStats {
            jobs: inner.counters.snapshot(
                inner.config.workers.get(),
                inner.config.queue_capacity.get(),
            ),
            crashed: inner.crashed.load(Ordering::Relaxed),
            workers_replaced: inner.replaced.load(Ordering::Relaxed),
        }
    }

    /// The process id of each worker slot's current process; `None` while a slot waits for its replacement.
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.inner.pids().clone()
    }

    /// Stops accepting jobs, waits for running jobs to finish, then closes each worker's stdin so it exits,
    /// killing any that does not exit within a few seconds. Jobs still waiting for a worker fail with
    /// [`ExecutorError::ShutDown`]. A second call returns at once.
    pub async fn shutdown(&self) {
        let inner = &*self.inner;
        if inner.closed.is_cancelled() {
            return;
        }
        inner.closed.cancel();
        for _ in 0..inner.config.workers.get() {
            // Busy slots come back here when their job ends. The pool holds a sender, so this cannot disconnect.
            let Ok(mut slot) = inner.idle.recv_async().await else {
                break;
            };
            if let Some(process) = slot.process.take() {
                process.close().await;
            }
            inner.pids()[slot.index] = None;
        }
    }
}

/// What all clones of a [`ProcessPool`] share.
#[derive(Debug)]
struct PoolInner {
    config: ProcessPoolConfig,
    /// Idle worker slots go back in here...
    free: flume::Sender<Slot>,
    /// ...and jobs take them out here. Capacity `workers`, so returning a slot never waits.
    idle: flume::Receiver<Slot>,
    /// A job holds one while it waits for a worker: at most `queue_capacity` jobs wait.
    queue_slots: Semaphore,
    counters: PoolCounters,
    crashed: AtomicU64,
    replaced: AtomicU64,
    next_request_id: AtomicU64,
    closed: CancellationToken,
    /// The pid of each slot's process, for the lab and the tests.
    pids: Mutex<Vec<Option<u32>>>,
}

/// One worker position; its process is `None` after a crash or kill, until the slot's next job starts one.
#[derive(Debug)]
struct Slot {
    index: usize,
    process: Option<WorkerProcess>,
}

/// A slot taken by a job. Dropping it returns the slot; unless [`BusyWorker::keep`] was called, its process is
/// dropped first, which kills it (the job crashed, replied nonsense, or was abandoned mid-run).
struct BusyWorker<'pool> {
    slot: Option<Slot>,
    keep: bool,
    pool: &'pool PoolInner,
}

/// Keeps the job gauges right however the job ends, including when its future is dropped.
struct Accounting<'pool> {
    counters: &'pool PoolCounters,
    phase: Phase,
}

enum Phase {
    Queued,
    Running,
    Settled,
}

impl PoolInner {
    /// Waits for a queue slot, then for an idle worker; `None` once the pool is shut down.
    async fn next_free_slot(&self) -> Option<Slot> {
        let closed = self.closed.cancelled();
        tokio::select! {
            biased;
            () = closed => None,
            slot = async {
                // Never closed, so `acquire` cannot fail; the permit is released once a worker is found.
                let _queue_slot = self.queue_slots.acquire().await.ok()?;
                self.idle.recv_async().await.ok()
            } => slot,
        }
    }

    fn pids(&self) -> std::sync::MutexGuard<'_, Vec<Option<u32>>> {
        // Only ever held for a single read or write, so a poisoned lock still holds consistent data.
        self.pids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<'pool> BusyWorker<'pool> {
    fn new(slot: Slot, pool: &'pool PoolInner) -> Self {
        Self {
            slot: Some(slot),
            keep: false,
            pool,
        }
    }

    fn slot(&mut self) -> &mut Slot {
        self.slot
            .as_mut()
            .expect("a busy worker holds its slot until dropped")
    }

    fn index(&mut self) -> usize {
        self.slot().index
    }

    /// The slot's process, started now if the slot has none or its process died while idle.
    fn ready_process(&mut self) -> Result<&mut WorkerProcess, ExecutorError> {
        let pool = self.pool;
        let slot = self.slot();
        let alive = slot.process.as_mut().is_some_and(WorkerProcess::is_running);
        if !alive {
            let process = WorkerProcess::spawn(&pool.config.command)?;
            pool.pids()[slot.index] = process.pid;
            PoolCounters::increment(&pool.replaced);
            slot.process = Some(process);
        }
        Ok(slot.process.as_mut().expect("set just above"))
    }

    /// The job got a proper reply: the worker is in step and goes back to the pool as it is.
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for BusyWorker<'_> {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        if !self.keep && slot.process.take().is_some() {
            // Dropping the process killed it (`kill_on_drop`).
            self.pool.pids()[slot.index] = None;
        }
        // Capacity is `workers`, so this never fails while the pool exists.
        let _ = self.pool.free.try_send(slot);
    }
}

impl<'pool> Accounting<'pool> {
    fn queued(counters: &'pool PoolCounters) -> Self {
        PoolCounters::increment(&counters.queued);
        Self {
            counters,
            phase: Phase::Queued,
        }
    }

    fn start(&mut self) {
        PoolCounters::decrement(&self.counters.queued);
        PoolCounters::increment(&self.counters.running);
        self.phase = Phase::Running;
    }

    /// Ends the job, counting it in `total`.
    fn settle(&mut self, total: &AtomicU64) {
        match self.phase {
            Phase::Queued => PoolCounters::decrement(&self.counters.queued),
            Phase::Running => PoolCounters::decrement(&self.counters.running),
            Phase::Settled => return,
        }
        PoolCounters::increment(total);
        self.phase = Phase::Settled;
    }
}

impl Drop for Accounting<'_> {
    fn drop(&mut self) {
        match self.phase {
            Phase::Queued => self.settle(&self.counters.skipped),
            Phase::Running => self.settle(&self.counters.cancelled),
            Phase::Settled => {}
        }
    }
}
