//! CPU executors: the only place that runs blocking or CPU-heavy work.
//!
//! Async code hands a closure to a [`CpuPool`] and awaits its result; the closure runs on one of a fixed set of
//! dedicated worker threads, so the async runtime's threads never block. This is the Rust counterpart of Python's
//! `loop.run_in_executor(InterpreterPoolExecutor(), ...)`.
//!
//! ```no_run
//! # async fn example() -> Result<(), tributary::pool::PoolError> {
//! use tributary::pool::{CpuPool, JobContext, PoolConfig};
//!
//! let pool = CpuPool::new(PoolConfig::default())?;
//! let (sum, timing) = pool
//!     .submit_timed(|ctx: &JobContext| {
//!         let mut sum = 0_u64;
//!         for i in 0..10_000_000_u64 {
//!             if i % 1_000_000 == 0 && ctx.is_cancelled() {
//!                 break; // the caller stopped waiting: give the thread back early
//!             }
//!             sum = sum.wrapping_add(i * i);
//!         }
//!         sum
//!     })
//!     .await?;
//! println!("worker {} took {:?}", timing.worker_index, timing.run_time());
//! pool.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Other executors, for comparison and for isolation
//!
//! [`Executor`] runs the same [`CpuJob`] on one of four [`ExecutorKind`]s: `inline` (on the async thread: the
//! negative example), `global-lock` (threads sharing one lock: a model of CPython's GIL), `threads` (this pool)
//! and `processes` (worker processes of the same binary, which isolate a job that crashes). A job is plain
//! serialisable data with a `run` method; the program defines its own jobs and registers them for its worker
//! processes in [`WorkerJobs`].
//!
//! # Why dedicated threads and not rayon
//!
//! The pool is a fixed set of `std::thread`s pulling from one bounded `flume` channel, each job answering through
//! a `tokio::sync::oneshot`. Rayon was the alternative; it loses on the three things this pool exists for:
//!
//! - **Backpressure.** Rayon's queue is unbounded: `rayon::spawn` never waits and never refuses, so a burst of
//!   requests turns into unbounded memory and unbounded latency. A bounded channel gives both an async
//!   `submit` that waits for a slot and a `try_submit` that fails at once with [`PoolError::Overloaded`].
//! - **Skip if dropped.** A job whose caller gave up (deadline hit, task group cancelled) must not burn a core.
//!   Each job carries a small state machine (queued → running → finished, or queued → abandoned); the worker only
//!   runs a job it wins the race to start, and a running job sees its [`JobContext::is_cancelled`] turn true.
//!   Rayon offers no hook between "queued" and "started".
//! - **Observability.** A job knows which worker ran it and when it was queued, started and finished
//!   ([`JobTiming`]), which the agent's timeline draws as one lane per worker. Rayon's work stealing hides which
//!   thread ran what and has no notion of queue time.
//!
//! Rayon shines at data parallelism (splitting one big computation with `par_iter`); a job here may still use it
//! internally. What we give up: work stealing (irrelevant for independent, similar-sized jobs) and one
//! allocation per job for the type-erased closure.
//!
//! # Wake-up latency: spin, then park
//!
//! A parked thread takes several microseconds to wake, which would dominate the round trip for small jobs. After
//! finishing a job a worker keeps polling the queue for [`PoolConfig::idle_spin`] (50 µs by default) before
//! parking, so a steady stream of jobs finds it awake. Three details matter:
//!
//! - Every idle worker spins, not just one: `flume` hands a new job straight to a receiver parked in `recv`, so
//!   while any worker is parked, a lone spinner would be bypassed and the parked one woken anyway.
//! - The spin yields the core (`thread::yield_now`) between polls instead of busy-waiting. On a 2-core machine a
//!   pure busy-wait starved the runtime thread that submits the next job and receives the result: the median
//!   barely moved but p90 rose from about 8 µs to 40-60 µs. Yielding keeps p90 close to the median.
//! - The cost is bounded: an idle pool uses at most `idle_spin` of CPU per worker after its last job, then
//!   sleeps until the next one. Set `idle_spin` to zero on machines where even that matters (round trip then
//!   costs a thread wake-up, a few microseconds more).
//!
//! # Layout
//! - `threads`: [`CpuPool`] and its [`PoolConfig`]: worker threads, submission, shutdown.
//! - `job`: what travels through the queue: [`JobContext`], [`JobHandle`], [`JobTiming`] and the job state machine.
//! - `stats`: the live counters and their [`PoolStats`] snapshot.
//! - `error`: [`PoolError`].
//! - `executor`: [`Executor`], one handle over the four [`ExecutorKind`]s, the [`CpuJob`] trait they all run,
//!   and [`ExecutorError`].
//! - `inline`: [`InlineExecutor`], which runs a job on the calling async thread (the negative example).
//! - `global_lock`: [`GlobalLockPool`], threads that take turns on one lock: a model of CPython's GIL.
//! - `process`: [`ProcessPool`], worker processes of the same binary fed JSON lines over pipes, and
//!   [`serve_worker`] with its [`WorkerJobs`], the worker side.

mod error;
mod executor;
mod global_lock;
mod inline;
mod job;
mod process;
mod stats;
mod threads;

#[cfg(test)]
mod test_jobs;
#[cfg(test)]
mod tests;

pub use error::PoolError;
pub use executor::{
    CpuJob, Executor, ExecutorConfig, ExecutorError, ExecutorKind, ExecutorStats,
    ParseExecutorKindError,
};
pub use global_lock::{GlobalLockPool, SWITCH_INTERVAL};
pub use inline::InlineExecutor;
pub use job::{JobContext, JobHandle, JobTiming};
/// The frame protocol's parent side for the fuzz targets (feature `fuzzing`); not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use process::fuzzing;
pub use process::{
    ProcessPool, ProcessPoolConfig, ProcessPoolStats, TraceContext, WorkerCommand, WorkerJobs,
    serve_worker, serve_worker_traced,
};
pub use stats::PoolStats;
pub use threads::{CpuPool, PoolConfig};
