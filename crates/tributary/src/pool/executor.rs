//! [`Executor`]: one handle over the four ways the lab runs CPU jobs, so the agent and the batch pipeline do not
//! care which one they were given.
//!
//! | kind            | where a job runs                                   | what it demonstrates                          |
//! |-----------------|----------------------------------------------------|-----------------------------------------------|
//! | `inline`        | on the calling async thread                        | blocking the event loop                       |
//! | `global-lock`   | N threads taking turns on one process-wide lock    | CPython's GIL (a model, not CPython)          |
//! | `threads`       | the real [`CpuPool`]                               | true parallelism in one process               |
//! | `processes`     | a pool of worker processes of the same binary      | parallelism with crash isolation              |
//!
//! Every kind runs a [`CpuJob`] ([`Executor::run_job`]): plain, serialisable data with a `run` method that the
//! embedding program defines (the agent's inference, a benchmark kernel, ...). A job gives the same output on
//! every kind. Arbitrary closures ([`Executor::run_cpu`]) run on every kind except `processes`: a closure
//! cannot cross a process boundary, only a serialisable job can.
//!
//! Cancellation is the same everywhere: drop the future. What that does depends on the kind (see
//! [`Executor::run_cpu`] and [`ProcessPool`]).

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::error::PoolError;
use super::global_lock::{GlobalLockPool, SWITCH_INTERVAL};
use super::inline::InlineExecutor;
use super::job::JobTiming;
use super::process::{ProcessPool, ProcessPoolConfig, WorkerCommand};
use super::stats::PoolStats;
use super::threads::{CpuPool, PoolConfig};

/// Which executor runs the CPU jobs. Parsed from and displayed as kebab-case (`global-lock`), as on the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// On the calling async thread: blocks the runtime while the job runs.
    Inline,
    /// N threads that must hold one process-wide lock while computing: a model of CPython's GIL.
    GlobalLock,
    /// The real thread pool, [`CpuPool`].
    Threads,
    /// A pool of worker processes of the same binary, jobs and results serialised over pipes.
    Processes,
}

/// How to build an [`Executor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Which executor.
    pub kind: ExecutorKind,
    /// Worker threads or processes. Ignored by `inline`, which has exactly one "worker": the caller.
    pub workers: NonZeroUsize,
    /// How many jobs may wait for a worker before submitting waits. Ignored by `inline`.
    pub queue_capacity: NonZeroUsize,
    /// The program a `processes` executor starts as its workers. Required for `processes`, ignored otherwise.
    pub worker_command: Option<WorkerCommand>,
}

/// Runs CPU jobs on one of the four [`ExecutorKind`]s.
///
/// Cheap to clone; all clones share the same workers, which stop when the last clone is dropped or when
/// [`Executor::shutdown`] is called.
#[derive(Debug, Clone)]
pub struct Executor {
    backend: Arc<Backend>,
}

/// Why an executor could not run a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The thread pool (or the global-lock pool built on it, or the inline executor) refused or lost the job.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The worker process running the job exited before answering. It has been replaced.
    #[error("run job in worker process {worker}: it crashed ({detail})")]
    WorkerCrashed {
        /// Index of the worker slot, in `0..workers` (the same index as [`JobTiming::worker_index`]).
        worker: usize,
        /// How it ended, e.g. its exit status.
        detail: String,
    },
    /// The worker process answered something that is not a valid reply to the job. It has been replaced.
    #[error("run job in worker process {worker}: malformed reply: {detail}")]
    Protocol {
        /// Index of the worker slot.
        worker: usize,
        /// What was wrong.
        detail: String,
    },
    /// The job could not be encoded as JSON to be sent to a worker process.
    #[error("send job `{job}` to a worker process: it does not encode as json: {detail}")]
    Encode {
        /// The job's name.
        job: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A worker process could not be started.
    #[error("start worker process `{}`", program.display())]
    SpawnWorker {
        /// The program that failed to start.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `processes` executor needs a [`WorkerCommand`] and none was given.
    #[error("build the processes executor: no worker command was given")]
    MissingWorkerCommand,
    /// Worker processes are driven by tokio's async pipes, which need a runtime.
    #[error("start worker processes: not inside a tokio runtime")]
    NoRuntime,
    /// The job is a closure and the executor runs jobs in other processes; send a serialisable job instead.
    #[error("run a closure on the {kind} executor: closures cannot cross a process boundary")]
    Unsupported {
        /// The executor that cannot run it.
        kind: ExecutorKind,
    },
    /// The executor was shut down before the job could run.
    #[error("use executor: it is shut down")]
    ShutDown,
}

/// A unit of CPU work that every [`ExecutorKind`] can run, worker processes included.
///
/// A job is plain data (it is sent to a worker process as JSON) plus the synchronous function that computes its
/// [`Output`](CpuJob::Output). The program that embeds tributary defines its jobs; a worker process knows them
/// through the [`WorkerJobs`](super::WorkerJobs) it serves.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tributary::pool::CpuJob;
///
/// /// Counts the primes below `limit`.
/// #[derive(Serialize, Deserialize)]
/// struct CountPrimes {
///     limit: u64,
/// }
///
/// impl CpuJob for CountPrimes {
///     const NAME: &'static str = "count-primes";
///     type Output = Option<u64>;
///
///     fn run(self, should_stop: &dyn Fn() -> bool) -> Option<u64> {
///         let mut count = 0;
///         for candidate in 2..self.limit {
///             if candidate % 10_000 == 0 && should_stop() {
///                 return None; // the caller gave up: stop early
///             }
///             if (2..candidate).take_while(|d| d * d <= candidate).all(|d| candidate % d != 0) {
///                 count += 1;
///             }
///         }
///         Some(count)
///     }
/// }
///
/// assert_eq!(CountPrimes { limit: 20 }.run(&|| false), Some(8));
/// ```
pub trait CpuJob: Serialize + DeserializeOwned + Send + 'static {
    /// The job's name on the wire: unique among the jobs one worker serves, stable across versions.
    const NAME: &'static str;

    /// What the job computes. Errors the job can report belong in here (e.g. a `Result`).
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Computes the output. Synchronous CPU work: no sleeping, no I/O.
    ///
    /// Call `should_stop` every millisecond or so of work: it turns true once the caller stopped waiting (return
    /// early with whatever says so), and on `global-lock` it is where the lock changes hands. In a worker
    /// process it is always false: the parent kills the process instead.
    fn run(self, should_stop: &dyn Fn() -> bool) -> Self::Output;

    /// [`run`](Self::run), telling the caller how it goes: each call of `progress` hands a piece of text (the
    /// next words of a generation, say) to the callback given to [`Executor::run_job_with_progress`], once and
    /// in order, from a worker process too. Keep the pieces small and call it when there is something new. The
    /// default reports nothing; a job with something to report overrides this and has `run` call it with a
    /// `progress` that drops the text.
    fn run_with_progress(
        self,
        should_stop: &dyn Fn() -> bool,
        progress: &dyn Fn(&str),
    ) -> Self::Output {
        let _ = progress;
        self.run(should_stop)
    }
}

/// A snapshot of an executor's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExecutorStats {
    /// Which executor.
    pub kind: ExecutorKind,
    /// The job counters, with the same meaning as for the thread pool.
    pub jobs: PoolStats,
    /// Jobs whose worker process crashed, answered nonsense or could not be started (total; `processes` only).
    pub crashed: u64,
    /// Worker processes started to replace one that crashed or was killed (total; `processes` only).
    pub workers_replaced: u64,
    /// Times the global lock changed hands at a checkpoint (total; `global-lock` only).
    pub lock_handoffs: u64,
}

impl ExecutorKind {
    /// Every kind, in the order the lab compares them.
    pub const ALL: [ExecutorKind; 4] = [
        Self::Inline,
        Self::GlobalLock,
        Self::Threads,
        Self::Processes,
    ];

    /// The kebab-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::GlobalLock => "global-lock",
            Self::Threads => "threads",
            Self::Processes => "processes",
        }
    }

    /// A one-line description for `--help` and the lab's report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Inline => "on the async thread itself: blocks the event loop while a job runs",
            Self::GlobalLock => {
                "N threads that must hold one process-wide lock to compute, handed over every 5 ms \
                 (a model of CPython's GIL, not CPython)"
            }
            Self::Threads => "a pool of OS threads computing in parallel",
            Self::Processes => {
                "a pool of worker processes, jobs sent over pipes; a crashing worker is replaced"
            }
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text given to [`ExecutorKind::from_str`] names no executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse executor kind: `{given}` is not one of inline, global-lock, threads, processes")]
pub struct ParseExecutorKindError {
    given: String,
}

impl FromStr for ExecutorKind {
    type Err = ParseExecutorKindError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| ParseExecutorKindError {
                given: text.to_owned(),
            })
    }
}

/// Default queue slots per worker, as for the thread pool.
const QUEUE_SLOTS_PER_WORKER: NonZeroUsize = NonZeroUsize::new(4).expect("4 is not zero");

impl ExecutorConfig {
    /// `workers` workers of `kind`, four queue slots per worker, no worker command.
    pub fn new(kind: ExecutorKind, workers: NonZeroUsize) -> Self {
        Self {
            kind,
            workers,
            queue_capacity: workers.saturating_mul(QUEUE_SLOTS_PER_WORKER),
            worker_command: None,
        }
    }

    /// The same configuration with the program `processes` starts as its workers.
    pub fn with_worker_command(mut self, command: WorkerCommand) -> Self {
        self.worker_command = Some(command);
        self
    }
}

impl Executor {
    /// Starts the workers of `config.kind`.
    ///
    /// For `processes` this spawns the worker processes, so it must be called inside a tokio runtime and needs
    /// [`ExecutorConfig::worker_command`].
    pub fn new(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        let pool_config = PoolConfig {
            queue_capacity: config.queue_capacity,
            ..PoolConfig::with_workers(config.workers)
        };
        let backend = match config.kind {
            ExecutorKind::Inline => Backend::Inline(InlineExecutor::new()),
            ExecutorKind::GlobalLock => {
                Backend::GlobalLock(GlobalLockPool::new(pool_config, SWITCH_INTERVAL)?)
            }
            ExecutorKind::Threads => Backend::Threads(CpuPool::new(pool_config)?),
            ExecutorKind::Processes => {
                let command = config
                    .worker_command
                    .ok_or(ExecutorError::MissingWorkerCommand)?;
                Backend::Processes(ProcessPool::new(ProcessPoolConfig {
                    workers: config.workers,
                    queue_capacity: config.queue_capacity,
                    command,
                })?)
            }
        };
        Ok(Self {
            backend: Arc::new(backend),
        })
    }

    /// A `threads` executor over an existing pool, sharing its workers.
    pub fn from_pool(pool: CpuPool) -> Self {
        Self {
            backend: Arc::new(Backend::Threads(pool)),
        }
    }

    /// Which executor this is.
    pub fn kind(&self) -> ExecutorKind {
        match &*self.backend {
            Backend::Inline(_) => ExecutorKind::Inline,
            Backend::GlobalLock(_) => ExecutorKind::GlobalLock,
            Backend::Threads(_) => ExecutorKind::Threads,
            Backend::Processes(_) => ExecutorKind::Processes,
        }
    }

    /// Runs `job` and returns its output with when and where it ran. Works on every kind.
    ///
    /// Cancellation is as for [`run_cpu`](Self::run_cpu), except on `processes`, where dropping the future while
    /// a worker runs the job kills that worker (see [`ProcessPool`]).
    pub async fn run_job<J: CpuJob>(
        &self,
        job: J,
    ) -> Result<(J::Output, JobTiming), ExecutorError> {
        self.run_job_with_progress(job, |_| {}).await
    }

    /// [`run_job`](Self::run_job), with `on_progress` called on each piece of text the job reports (see
    /// [`CpuJob::run_with_progress`]) while it runs. It is called on the thread that runs the job (in-process
    /// executors) or on the runtime (`processes`), so it must be quick and must not block: push to a channel or
    /// a timeline.
    pub async fn run_job_with_progress<J: CpuJob>(
        &self,
        job: J,
        on_progress: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<(J::Output, JobTiming), ExecutorError> {
        self.run_job_watched(job, |_| {}, on_progress).await
    }

    /// [`Executor::run_job_with_progress`], also calling `on_start` with the worker's index when one starts the
    /// job (after any wait in the queue, for the lock or for a turn): where a watcher draws the work in progress.
    /// It is called once, from the worker's thread or the caller's task, before any progress; a job that never
    /// starts never calls it.
    pub async fn run_job_watched<J: CpuJob>(
        &self,
        job: J,
        on_start: impl Fn(usize) + Send + Sync + 'static,
        on_progress: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<(J::Output, JobTiming), ExecutorError> {
        let span = job_span(J::NAME, self.kind());
        let result = async {
            if let Backend::Processes(pool) = &*self.backend {
                return pool.run_watched(job, &on_start, &on_progress).await;
            }
            self.run_unrecorded_on(move |worker, should_stop| {
                on_start(worker);
                job.run_with_progress(should_stop, &on_progress)
            })
            .await
        }
        .instrument(span.clone())
        .await;
        record_job(&span, &result);
        result
    }

    /// Runs a CPU closure and returns its value with when and where it ran.
    ///
    /// The closure gets `should_stop`, the same checkpoint as [`CpuJob::run`]: call it every millisecond or so of
    /// work. It returns true once the caller stopped waiting, and on `global-lock` it is also where the lock
    /// changes hands, so a closure that never calls it keeps the lock (and every other job waits) until it
    /// returns, exactly like a C extension that never releases the GIL.
    ///
    /// Dropping the future cancels: a job that has not started never runs; a running job sees `should_stop`
    /// turn true (`threads`, `global-lock`). On `inline` the job runs to completion inside the first poll, so
    /// there is nothing to cancel. On `processes` this returns [`ExecutorError::Unsupported`]: use
    /// [`Executor::run_job`], whose jobs can be serialised.
    pub async fn run_cpu<F, R>(&self, job: F) -> Result<(R, JobTiming), ExecutorError>
    where
        F: FnOnce(&dyn Fn() -> bool) -> R + Send + 'static,
        R: Send + 'static,
    {
        let span = job_span("closure", self.kind());
        let result = self.run_unrecorded(job).instrument(span.clone()).await;
        record_job(&span, &result);
        result
    }

    /// [`run_cpu`](Self::run_cpu) inside the caller's span.
    async fn run_unrecorded<F, R>(&self, job: F) -> Result<(R, JobTiming), ExecutorError>
    where
        F: FnOnce(&dyn Fn() -> bool) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run_unrecorded_on(move |_, should_stop| job(should_stop))
            .await
    }

    /// [`Executor::run_unrecorded`], the job told the index of the worker that runs it.
    async fn run_unrecorded_on<F, R>(&self, job: F) -> Result<(R, JobTiming), ExecutorError>
    where
        F: FnOnce(usize, &dyn Fn() -> bool) -> R + Send + 'static,
        R: Send + 'static,
    {
        match &*self.backend {
            // The inline executor's one "worker" is the caller: index 0, once its turn has come.
            Backend::Inline(inline) => Ok(inline.run(move |should_stop| job(0, should_stop))?),
            Backend::GlobalLock(pool) => Ok(pool.submit_timed_on(job).await?),
            Backend::Threads(pool) => Ok(pool
                .submit_timed(move |context| {
                    job(context.worker_index(), &|| context.is_cancelled())
                })
                .await?),
            Backend::Processes(_) => Err(ExecutorError::Unsupported {
                kind: ExecutorKind::Processes,
            }),
        }
    }

    /// A snapshot of the executor's counters.
    pub fn stats(&self) -> ExecutorStats {
        let kind = self.kind();
        let empty = ExecutorStats {
            kind,
            jobs: PoolStats::default(),
            crashed: 0,
            workers_replaced: 0,
            lock_handoffs: 0,
        };
        match &*self.backend {
            Backend::Inline(inline) => ExecutorStats {
                jobs: inline.stats(),
                ..empty
            },
            Backend::GlobalLock(pool) => ExecutorStats {
                jobs: pool.stats(),
                lock_handoffs: pool.lock_handoffs(),
                ..empty
            },
            Backend::Threads(pool) => ExecutorStats {
                jobs: pool.stats(),
                ..empty
            },
            Backend::Processes(pool) => {
                let stats = pool.stats();
                ExecutorStats {
                    jobs: stats.jobs,
                    crashed: stats.crashed,
                    workers_replaced: stats.workers_replaced,
                    ..empty
                }
            }
        }
    }

    /// The worker processes, when this is a `processes` executor: their pids, and jobs meant for a worker
    /// process only (a job that crashes its process on purpose, say).
    pub fn process_pool(&self) -> Option<&ProcessPool> {
        match &*self.backend {
            Backend::Processes(pool) => Some(pool),
            _ => None,
        }
    }

    /// Stops accepting jobs and waits for the workers to finish the queued ones and exit.
    pub async fn shutdown(&self) {
        match &*self.backend {
            Backend::Inline(_) => {}
            Backend::GlobalLock(pool) => pool.shutdown().await,
            Backend::Threads(pool) => pool.shutdown().await,
            Backend::Processes(pool) => pool.shutdown().await,
        }
    }
}

/// The executor behind an [`Executor`].
#[derive(Debug)]
enum Backend {
    Inline(InlineExecutor),
    GlobalLock(GlobalLockPool),
    Threads(CpuPool),
    Processes(ProcessPool),
}

/// The span of one job, from queued to finished: a child of the caller's span. The pools enter it on the
/// worker thread that runs the job, so what the job logs is inside it; the fields are filled in at the end.
fn job_span(job: &'static str, executor: ExecutorKind) -> tracing::Span {
    tracing::info_span!(
        "pool.job",
        job,
        executor = executor.name(),
        worker = tracing::field::Empty,
        pid = tracing::field::Empty,
        queue_wait_ms = tracing::field::Empty,
        run_ms = tracing::field::Empty,
        error = tracing::field::Empty,
    )
}

/// Fills in a finished job's span: which worker ran it, how long it queued and ran, or why it failed.
fn record_job<R>(span: &tracing::Span, result: &Result<(R, JobTiming), ExecutorError>) {
    let millis = |duration: std::time::Duration| duration.as_secs_f64() * 1000.0;
    match result {
        Ok((_, timing)) => {
            span.record("worker", timing.worker_index);
            span.record(
                "queue_wait_ms",
                millis(
                    timing
                        .started_at
                        .saturating_duration_since(timing.queued_at),
                ),
            );
            span.record(
                "run_ms",
                millis(
                    timing
                        .finished_at
                        .saturating_duration_since(timing.started_at),
                ),
            );
        }
        Err(error) => {
            span.record("error", tracing::field::display(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pool::process::test_worker_command;
    use crate::pool::test_jobs::{CountAloud, SpinFor, SpinJob};

    const PATIENCE: Duration = Duration::from_secs(30);

    fn two() -> NonZeroUsize {
        NonZeroUsize::new(2).expect("2 is not zero")
    }

    fn executor(kind: ExecutorKind) -> Executor {
        let config = ExecutorConfig::new(kind, two()).with_worker_command(test_worker_command());
        Executor::new(config).expect("start test executor")
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ExecutorKind::ALL {
            assert_eq!(kind.to_string().parse::<ExecutorKind>(), Ok(kind));
            assert!(!kind.describe().is_empty());
        }
        assert_eq!("global-lock".parse(), Ok(ExecutorKind::GlobalLock));
        assert!("gil".parse::<ExecutorKind>().is_err());
        assert!(ExecutorKind::GlobalLock.describe().contains("model"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_kind_gives_the_same_output_as_running_the_job_directly() {
        let job = SpinJob { rounds: 20_000 };
        let expected = job.run(&|| false);
        assert_ne!(expected, SpinJob { rounds: 20_001 }.run(&|| false));
        for kind in ExecutorKind::ALL {
            let executor = executor(kind);
            let (output, timing) = tokio::time::timeout(PATIENCE, executor.run_job(job))
                .await
                .expect("job finished in time")
                .unwrap_or_else(|error| panic!("{kind}: {error}"));
            assert_eq!(output, expected, "{kind}");
            assert!(
                timing.queued_at <= timing.started_at && timing.started_at <= timing.finished_at
            );
            assert_eq!(executor.stats().jobs.completed, 1, "{kind}");
            executor.shutdown().await;
        }
    }

    /// A job's progress reaches the caller's callback, all of it and in order, from a worker process too; and
    /// a plain `run_job` drops it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_kind_hands_a_jobs_progress_to_the_caller_in_order() {
        let expected: Vec<String> = (1..=50).map(|number| number.to_string()).collect();
        for kind in ExecutorKind::ALL {
            let executor = executor(kind);
            let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
            let job = executor.run_job_with_progress(CountAloud { count: 50 }, {
                let heard = Arc::clone(&heard);
                move |text| heard.lock().expect("not poisoned").push(text.to_owned())
            });
            let (count, _) = tokio::time::timeout(PATIENCE, job)
                .await
                .expect("job finished in time")
                .unwrap_or_else(|error| panic!("{kind}: {error}"));
            assert_eq!(count, 50, "{kind}");
            assert_eq!(*heard.lock().expect("not poisoned"), expected, "{kind}");
            let (count, _) =
                tokio::time::timeout(PATIENCE, executor.run_job(CountAloud { count: 3 }))
                    .await
                    .expect("job finished in time")
                    .unwrap_or_else(|error| panic!("{kind}: {error}"));
            assert_eq!(count, 3, "{kind}");
            executor.shutdown().await;
        }
    }

    /// Every kind says which worker started a job, once and before its first progress: the worker its timing
    /// names.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_kind_says_which_worker_started_a_job_before_its_progress() {
        for kind in ExecutorKind::ALL {
            let executor = executor(kind);
            let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
            let job = executor.run_job_watched(
                CountAloud { count: 2 },
                {
                    let heard = Arc::clone(&heard);
                    move |worker| {
                        heard
                            .lock()
                            .expect("not poisoned")
                            .push(format!("worker {worker}"))
                    }
                },
                {
                    let heard = Arc::clone(&heard);
                    move |text| heard.lock().expect("not poisoned").push(text.to_owned())
                },
            );
            let (_, timing) = tokio::time::timeout(PATIENCE, job)
                .await
                .expect("job finished in time")
                .unwrap_or_else(|error| panic!("{kind}: {error}"));
            assert_eq!(
                *heard.lock().expect("not poisoned"),
                [
                    format!("worker {}", timing.worker_index),
                    "1".to_owned(),
                    "2".to_owned()
                ],
                "{kind}"
            );
            executor.shutdown().await;
        }
    }

    #[tokio::test]
    async fn closures_are_refused_by_processes_and_run_elsewhere() {
        let processes = executor(ExecutorKind::Processes);
        let refused = processes.run_cpu(|_| 1).await;
        assert!(
            matches!(
                refused,
                Err(ExecutorError::Unsupported {
                    kind: ExecutorKind::Processes
                })
            ),
            "{refused:?}"
        );
        processes.shutdown().await;
        for kind in [
            ExecutorKind::Inline,
            ExecutorKind::GlobalLock,
            ExecutorKind::Threads,
        ] {
            let executor = executor(kind);
            let (value, _timing) = executor.run_cpu(|_| 6 * 7).await.expect("closure runs");
            assert_eq!(value, 42, "{kind}");
            executor.shutdown().await;
        }
    }

    #[test]
    fn processes_need_a_worker_command() {
        let config = ExecutorConfig::new(ExecutorKind::Processes, two());
        assert!(matches!(
            Executor::new(config),
            Err(ExecutorError::MissingWorkerCommand)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_run_jobs_at_the_same_time() {
        let executor = executor(ExecutorKind::Threads);
        // Long enough that both jobs are surely running before either finishes, on any machine.
        let job = SpinFor { millis: 50 };
        let (first, second) = tokio::join!(executor.run_job(job), executor.run_job(job));
        let (_, first) = first.expect("first job");
        let (_, second) = second.expect("second job");
        assert_ne!(first.worker_index, second.worker_index);
        // Overlap: each started before the other finished.
        assert!(first.started_at < second.finished_at && second.started_at < first.finished_at);
        executor.shutdown().await;
    }
}
