//! What travels through the pool's queue, and the caller's side of it.
//!
//! A job's life is a small state machine shared by the worker and the caller's [`JobHandle`]:
//!
//! ```text
//! Queued --worker starts it--> Running --closure returns or panics--> Finished
//!    \--handle dropped first--> Abandoned (never runs)
//! ```
//!
//! Exactly one side wins the `Queued` exit (a compare-and-swap), so a job either runs or is skipped, never both,
//! and the `queued` gauge is decremented exactly once. Dropping the handle while `Running` fires the job's
//! cancellation token instead.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::error::PoolError;
use super::stats::PoolCounters;

/// What a running job can ask about itself. Passed by reference to every job closure.
#[derive(Debug, Clone)]
pub struct JobContext {
    worker_index: usize,
    started_at: Instant,
    cancellation: CancellationToken,
}

/// Which worker ran a job and when it moved through the pool.
///
/// The instants are [`std::time::Instant`]s so they line up with the agent's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTiming {
    /// Index of the worker thread that ran the job, in `0..workers`.
    pub worker_index: usize,
    /// When the job was submitted (before any wait for a free queue slot).
    pub queued_at: Instant,
    /// When a worker started running it.
    pub started_at: Instant,
    /// When it returned or panicked.
    pub finished_at: Instant,
}

/// A job in the pool's queue: the caller awaits it for the result; dropping it gives the job up.
///
/// Await it directly for the value, or call [`JobHandle::timed`] for the value and its [`JobTiming`].
/// Dropping it before the job starts removes the job (it never runs, counted as `skipped`); dropping it while the
/// job runs fires the job's cancellation token (counted as `cancelled`).
#[must_use = "dropping a job handle cancels the job"]
pub struct JobHandle<R> {
    state: Arc<JobState>,
    reply: oneshot::Receiver<JobReply<R>>,
    counters: Arc<PoolCounters>,
}

impl JobContext {
    /// Index of the worker thread running this job, in `0..workers`: one timeline lane per worker.
    pub fn worker_index(&self) -> usize {
        self.worker_index
    }

    /// When the worker started this job.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// True once the caller stopped waiting for the result. Long jobs should check it now and then and return
    /// early; whatever they return is discarded.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// The job's cancellation token, to hand to code that takes one.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancellation
    }
}

impl JobTiming {
    /// Time spent waiting for a queue slot and then for a free worker.
    pub fn queue_wait(&self) -> Duration {
        self.started_at.saturating_duration_since(self.queued_at)
    }

    /// Time spent running on the worker.
    pub fn run_time(&self) -> Duration {
        self.finished_at.saturating_duration_since(self.started_at)
    }
}

impl<R> JobHandle<R> {
    /// Waits for the job and returns its value together with when and where it ran.
    pub async fn timed(mut self) -> Result<(R, JobTiming), PoolError> {
        // The handle stays alive (and its Drop armed) until the reply is in, so dropping this future cancels.
        (&mut self.reply).await.unwrap_or(Err(PoolError::ShutDown))
    }
}

impl<R> Future for JobHandle<R> {
    type Output = Result<R, PoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.reply).poll(cx).map(|reply| match reply {
            Ok(result) => result.map(|(value, _timing)| value),
            // The worker dropped the reply without sending: the job was discarded unrun.
            Err(_) => Err(PoolError::ShutDown),
        })
    }
}

impl<R> Drop for JobHandle<R> {
    fn drop(&mut self) {
        match self.state.abandon() {
            Abandoned::BeforeStart => {
                PoolCounters::decrement(&self.counters.queued);
                PoolCounters::increment(&self.counters.skipped);
            }
            Abandoned::WhileRunning => PoolCounters::increment(&self.counters.cancelled),
            Abandoned::AfterFinish => {}
        }
    }
}

impl<R> fmt::Debug for JobHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What a job sends back to its handle.
type JobReply<R> = Result<(R, JobTiming), PoolError>;

/// The type-erased closure that runs a job on a worker and replies to its handle.
type RunJob = Box<dyn FnOnce(&JobContext, &PoolCounters) + Send>;

/// A queued job as the worker sees it.
pub(crate) struct Job {
    state: Arc<JobState>,
    run: RunJob,
}

impl Job {
    /// Packages `work` for a worker and returns the handle its caller awaits.
    ///
    /// Counts the job as `queued` straight away, so that a worker can never decrement the gauge before it was
    /// incremented; if the job then cannot be queued, call [`JobHandle::reject`].
    pub(crate) fn new<F, R>(work: F, counters: &Arc<PoolCounters>) -> (Job, JobHandle<R>)
    where
        F: FnOnce(&JobContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        let queued_at = Instant::now();
        let state = Arc::new(JobState::new());
        let (reply_sender, reply) = oneshot::channel();
        let job_state = Arc::clone(&state);
        // The submitter's span crosses into the worker thread: what the job does is recorded inside it (for an
        // executor's job, its `pool.job` span, a child of the code that asked for the work).
        let span = tracing::Span::current();
        let run: RunJob = Box::new(move |context: &JobContext, counters: &PoolCounters| {
            let entered = span.enter();
            let outcome = catch_unwind(AssertUnwindSafe(|| work(context)));
            let timing = JobTiming {
                worker_index: context.worker_index,
                queued_at,
                started_at: context.started_at,
                finished_at: Instant::now(),
            };
            // Count and mark the job finished before replying: a caller that has its result must see it in the
            // counters, and must not be able to "cancel" a job that already returned.
            PoolCounters::decrement(&counters.running);
            let reply = match outcome {
                Ok(value) => {
                    PoolCounters::increment(&counters.completed);
                    Ok((value, timing))
                }
                Err(payload) => {
                    PoolCounters::increment(&counters.panicked);
                    Err(PoolError::Panicked(crate::panics::panic_message(
                        payload.as_ref(),
                    )))
                }
            };
            job_state.finish();
            // The span ends with the job, before the caller can see the result and end the spans above it.
            drop(entered);
            drop(span);
            // The caller may have stopped waiting meanwhile; then nobody wants the result.
            let _ = reply_sender.send(reply);
        });
        PoolCounters::increment(&counters.queued);
        let handle = JobHandle {
            state: Arc::clone(&state),
            reply,
            counters: Arc::clone(counters),
        };
        (Job { state, run }, handle)
    }

    /// Runs the job on the calling worker thread, unless its caller already gave it up.
    pub(crate) fn run(self, worker_index: usize, counters: &PoolCounters) {
        if !self.state.try_start() {
            // Abandoned: the handle's Drop already moved it from `queued` to `skipped`.
            return;
        }
        PoolCounters::decrement(&counters.queued);
        PoolCounters::increment(&counters.running);
        let context = JobContext {
            worker_index,
            started_at: Instant::now(),
            cancellation: self.state.cancellation.clone(),
        };
        (self.run)(&context, counters);
    }
}

impl<R> JobHandle<R> {
    /// Undoes [`Job::new`]'s bookkeeping for a job that never made it into the queue.
    pub(crate) fn reject(self) {
        if self.state.reject() {
            PoolCounters::decrement(&self.counters.queued);
        }
        PoolCounters::increment(&self.counters.rejected);
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The state machine shared by a job and its handle (see the module docs).
#[derive(Debug)]
struct JobState {
    phase: AtomicU8,
    cancellation: CancellationToken,
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const FINISHED: u8 = 2;
const ABANDONED: u8 = 3;

/// What dropping a handle did to its job.
enum Abandoned {
    BeforeStart,
    WhileRunning,
    AfterFinish,
}

impl JobState {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(QUEUED),
            cancellation: CancellationToken::new(),
        }
    }

    /// The worker's side: true if it may run the job.
    fn try_start(&self) -> bool {
        self.phase
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn finish(&self) {
        self.phase.store(FINISHED, Ordering::Release);
    }

    /// The submitter's side when the job could not be queued: true if it was still counted as queued.
    fn reject(&self) -> bool {
        self.phase
            .compare_exchange(QUEUED, FINISHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The handle's side when it is dropped.
    fn abandon(&self) -> Abandoned {
        match self
            .phase
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Abandoned::BeforeStart,
            Err(RUNNING) => {
                self.cancellation.cancel();
                Abandoned::WhileRunning
            }
            Err(_) => Abandoned::AfterFinish,
        }
    }
}
