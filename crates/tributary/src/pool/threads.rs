//! [`CpuPool`]: a fixed set of worker threads behind a bounded queue.
//!
//! Submission is async and never blocks the runtime: `flume`'s `send_async` waits for a slot, and the result
//! comes back through a `tokio::sync::oneshot`. Workers block on the queue with `flume`'s blocking `recv`, which
//! is fine because they are our own threads, never the runtime's.
//!
//! Shutdown is the queue closing: when the pool drops its only sender, each worker finishes the jobs still queued
//! and then sees the channel disconnected and returns.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::error::PoolError;
use super::job::{Job, JobContext, JobHandle, JobTiming};
use super::stats::{PoolCounters, PoolStats};

/// How big a pool to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of worker threads. Defaults to [`std::thread::available_parallelism`].
    pub workers: NonZeroUsize,
    /// How many jobs may wait in the queue before `submit` waits and `try_submit` fails. Defaults to four per
    /// worker: enough to keep workers busy between submissions, small enough that queue time stays visible.
    pub queue_capacity: NonZeroUsize,
    /// How long an idle worker keeps polling the queue before parking. Spinning saves the few microseconds a
    /// parked thread takes to wake, at the price of up to this much CPU per worker after its last job.
    pub idle_spin: Duration,
}

/// A pool of CPU worker threads that async code submits closures to.
///
/// Cheap to clone; all clones share the same workers. The threads stop and are joined when the last clone is
/// dropped or when [`CpuPool::shutdown`] is called.
#[derive(Debug, Clone)]
pub struct CpuPool {
    inner: Arc<PoolInner>,
}

/// Default queue capacity per worker (see [`PoolConfig::queue_capacity`]).
const QUEUE_SLOTS_PER_WORKER: NonZeroUsize = NonZeroUsize::new(4).expect("4 is not zero");

/// Default [`PoolConfig::idle_spin`]: longer than the gap between back-to-back submissions from one task
/// (a few microseconds), short enough that an idle pool goes quiet at once.
const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

impl Default for PoolConfig {
    fn default() -> Self {
        let workers = thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Self::with_workers(workers)
    }
}

impl PoolConfig {
    /// `workers` threads with the default queue capacity and idle spin.
    pub fn with_workers(workers: NonZeroUsize) -> Self {
        Self {
            workers,
            queue_capacity: workers.saturating_mul(QUEUE_SLOTS_PER_WORKER),
            idle_spin: DEFAULT_IDLE_SPIN,
        }
    }
}

impl CpuPool {
    /// Starts the worker threads.
    pub fn new(config: PoolConfig) -> Result<Self, PoolError> {
        let (sender, receiver) = flume::bounded::<Job>(config.queue_capacity.get());
        let (exit_signal, workers_exited) = flume::bounded::<()>(1);
        let counters = Arc::new(PoolCounters::default());
        let mut workers = Vec::with_capacity(config.workers.get());
        for worker_index in 0..config.workers.get() {
            let worker = Worker {
                index: worker_index,
                queue: receiver.clone(),
                counters: Arc::clone(&counters),
                idle_spin: config.idle_spin,
                _exit_signal: exit_signal.clone(),
            };
            let spawned = thread::Builder::new()
                .name(format!("tributary-cpu-{worker_index}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(error) => {
                    // Dropping the sender stops the workers already started; join them before failing.
                    drop(sender);
                    join_workers(workers);
                    return Err(PoolError::Spawn(error));
                }
            }
        }
        Ok(Self {
            inner: Arc::new(PoolInner {
                sender: Mutex::new(Some(sender)),
                workers: Mutex::new(workers),
                workers_exited,
                counters,
                config,
            }),
        })
    }

    /// Runs `job` on a worker and returns its value, waiting for a queue slot first if the queue is full.
    ///
    /// Dropping the returned future before the job starts removes the job; dropping it while the job runs fires
    /// the job's cancellation token (see [`JobContext::is_cancelled`]).
    pub async fn submit<F, R>(&self, job: F) -> Result<R, PoolError>
    where
        F: FnOnce(&JobContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(job).await?.await
    }

    /// Like [`CpuPool::submit`], and also returns which worker ran the job and when.
    pub async fn submit_timed<F, R>(&self, job: F) -> Result<(R, JobTiming), PoolError>
    where
        F: FnOnce(&JobContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(job).await?.timed().await
    }

    /// Queues `job`, waiting for a slot if the queue is full, and returns a handle to await its result.
    ///
    /// Use it to queue several jobs before awaiting any of them.
    pub async fn enqueue<F, R>(&self, job: F) -> Result<JobHandle<R>, PoolError>
    where
        F: FnOnce(&JobContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (job, handle) = Job::new(job, &self.inner.counters);
        let Some(sender) = self.inner.sender() else {
            handle.reject();
            return Err(PoolError::ShutDown);
        };
        // If this future is dropped while waiting for a slot, `handle` drops with it and counts the job skipped.
        match sender.send_async(job).await {
            Ok(()) => Ok(handle),
            Err(_disconnected) => {
                handle.reject();
                Err(PoolError::ShutDown)
            }
        }
    }

    /// Queues `job` if there is a free slot, or fails at once with [`PoolError::Overloaded`].
    pub fn try_submit<F, R>(&self, job: F) -> Result<JobHandle<R>, PoolError>
    where
        F: FnOnce(&JobContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (job, handle) = Job::new(job, &self.inner.counters);
        let Some(sender) = self.inner.sender() else {
            handle.reject();
            return Err(PoolError::ShutDown);
        };
        match sender.try_send(job) {
            Ok(()) => Ok(handle),
            Err(flume::TrySendError::Full(_job)) => {
                handle.reject();
                Err(PoolError::Overloaded {
                    queue_capacity: self.inner.config.queue_capacity.get(),
                })
            }
            Err(flume::TrySendError::Disconnected(_job)) => {
                handle.reject();
                Err(PoolError::ShutDown)
            }
        }
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.counters.snapshot(
            self.inner.config.workers.get(),
            self.inner.config.queue_capacity.get(),
        )
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Stops accepting jobs, lets the workers finish every job already queued, and waits for them to exit.
    ///
    /// Affects every clone of the pool. Waiting is async, so it is safe to call from the runtime; it must not be
    /// awaited from inside a job, which would wait for its own worker to exit.
    pub async fn shutdown(&self) {
        self.inner.close();
        // Every worker holds a sender of this channel and drops it as it returns, so `recv_async` ends
        // (disconnected) once all workers have exited. Nothing is ever sent on it.
        let _ = self.inner.workers_exited.recv_async().await;
        // The threads have returned from their work; joining only reaps them, it does not wait on work.
        join_workers(self.inner.take_workers());
    }

    /// True once [`CpuPool::shutdown`] has been called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.sender().is_none()
    }
}

/// What all clones of a [`CpuPool`] share.
#[derive(Debug)]
struct PoolInner {
    /// `None` once shut down. Dropping the last sender is what tells the workers to stop.
    sender: Mutex<Option<flume::Sender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Disconnects once every worker has exited (see [`CpuPool::shutdown`]).
    workers_exited: flume::Receiver<()>,
    counters: Arc<PoolCounters>,
    config: PoolConfig,
}

impl PoolInner {
    fn sender(&self) -> Option<flume::Sender<Job>> {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn close(&self) {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn take_workers(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        self.close();
        let workers = self.take_workers();
        if workers.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            // On a runtime thread, joining could block it for as long as the queued jobs take: hand the join to
            // the runtime's blocking pool instead.
            Ok(runtime) => {
                runtime.spawn_blocking(move || join_workers(workers));
            }
            Err(_) => join_workers(workers),
        }
    }
}

/// Joins worker threads, skipping the calling thread: a job may drop the last pool handle on its own worker.
fn join_workers(workers: Vec<JoinHandle<()>>) {
    let current = thread::current().id();
    for worker in workers {
        if worker.thread().id() != current {
            // Workers catch job panics, so a worker thread itself does not panic; nothing to report.
            let _ = worker.join();
        }
    }
}

/// One worker thread's loop.
struct Worker {
    index: usize,
    queue: flume::Receiver<Job>,
    counters: Arc<PoolCounters>,
    idle_spin: Duration,
    /// Dropped when the worker returns; see [`PoolInner::workers_exited`].
    _exit_signal: flume::Sender<()>,
}

impl Worker {
    fn run(self) {
        while let Some(job) = self.next_job() {
            job.run(self.index, &self.counters);
        }
    }

    /// The next job, or `None` once the pool is shut down and the queue drained.
    fn next_job(&self) -> Option<Job> {
        if !self.idle_spin.is_zero() {
            let spin_until = Instant::now() + self.idle_spin;
            loop {
                match self.queue.try_recv() {
                    Ok(job) => return Some(job),
                    Err(flume::TryRecvError::Disconnected) => return None,
                    Err(flume::TryRecvError::Empty) => {}
                }
                if Instant::now() >= spin_until {
                    break;
                }
                // Yield rather than busy-wait: on a machine with few cores the thread that will submit the next
                // job, or that waits for this job's result, may need this core.
                thread::yield_now();
            }
        }
        self.queue.recv().ok()
    }
}
