//! [`ProcessPool`]: a pool of worker processes of the same binary, jobs and results sent as JSON lines over
//! each child's stdin and stdout. The Rust twin of Python's `ProcessPoolExecutor`, and a real feature: a job
//! that crashes its process (a native bug, an abort, the OOM killer) takes down one worker, not the program.
//!
//! # Protocol
//!
//! One request line in, one response line out, strictly in turn (a worker runs one job at a time). Every frame
//! is a line holding [`FRAME_TAG`] followed by one JSON object; anything else on the line before the tag, and
//! every line without it, is ignored and logged at `debug`. That makes the protocol robust to stray output from
//! the worker binary (a library that prints, the test harness's own lines when a test binary is the worker).
//!
//! ```text
//! parent -> worker   tributary-frame/2 {"id":7,"job":"burn","input":{"units":100000}}
//! worker -> parent   tributary-frame/2 {"id":7,"output":{"units":100000,"checksum":"9f.."}}
//! worker -> parent   tributary-frame/2 {"id":8,"rejected":"unknown job `teleport`; this worker runs: burn, infer"}
//! ```
//!
//! A request names a [`CpuJob`] by its [`NAME`](CpuJob::NAME) and carries the job as JSON; the worker looks the
//! name up in the [`WorkerJobs`] it serves, runs the job and answers with its output as JSON, or with
//! `rejected` when it does not know the job or cannot parse it. The protocol knows nothing of what the jobs do:
//! the program that embeds tributary registers them, on both sides.
//!
//! # Failures and cancellation
//!
//! - A worker that exits or closes its stdout before answering has crashed: the job fails with
//!   [`ExecutorError::WorkerCrashed`] (its exit status in the detail) and the slot gets a fresh process.
//! - A reply that does not parse, or answers another job, fails the job with [`ExecutorError::Protocol`]; the
//!   worker is out of step with the parent, so it is killed and replaced too.
//! - Dropping a job's future while the worker runs it **kills that worker** (SIGKILL, via tokio's
//!   `kill_on_drop`; tokio reaps it in the background) and the slot gets a fresh process for its next job. A
//!   worker cannot be told to stop mid-job without a second channel, and the job must not keep burning a core
//!   for a caller that left. Dropping it while it waits for a worker just leaves the queue.
//! - Replacements start lazily, when the slot's next job takes it, so a crash costs no work until the slot is
//!   needed; a worker found dead while idle is replaced the same way, and its next job does not fail. Starting
//!   one is a fork and exec on the runtime thread that runs the job's future: short, but not free.
//!
//! # The worker side
//!
//! The binary's hidden worker command calls [`serve_worker`] with the jobs it knows and its locked stdin and
//! stdout, and exits when it returns. Tests use the test binary itself as the worker (see the `tests` module).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::executor::{CpuJob, ExecutorError};
use super::job::JobTiming;
use super::stats::{PoolCounters, PoolStats};

/// Marks a protocol frame; everything before it on a line, and every line without it, is ignored.
pub(crate) const FRAME_TAG: &str = "tributary-frame/2 ";

/// The program to start as a worker, and its arguments. It must end up calling [`serve_worker`] with the jobs
/// the parent will send.
///
/// The CLI passes [`std::env::current_exe`] with its hidden `__worker` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables, on top of the parent's environment.
    pub env: Vec<(OsString, OsString)>,
    /// How a job's span context crosses into the worker, if it should.
    pub trace_context: Option<TraceContext>,
}

/// Carries a job's trace context into the worker process, so that the span the worker runs the job in is a
/// child of the job's span in the parent.
///
/// The program provides both ends, because the engine knows `tracing` but not the tracing system behind it
/// (OpenTelemetry, in the CLI): `inject` runs in the parent inside the job's `pool.job` span and returns that
/// span's context as text (a W3C `traceparent`, say), which travels with the job; in the worker,
/// [`serve_worker_traced`] hands the text to its `enter` function, which makes the job's span from it.
#[derive(Clone, Copy)]
pub struct TraceContext {
    /// The current span's context as text, or `None` when there is nothing to carry.
    pub inject: fn() -> Option<String>,
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext").finish_non_exhaustive()
    }
}

/// Two propagations are the same when they call the same function.
impl PartialEq for TraceContext {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.inject, other.inject)
    }
}

impl Eq for TraceContext {}

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

/// The jobs a worker process runs, by name: what [`serve_worker`] looks a request up in.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use tributary::pool::{CpuJob, WorkerJobs};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl CpuJob for Square {
/// #     const NAME: &'static str = "square";
/// #     type Output = u64;
/// #     fn run(self, _: &dyn Fn() -> bool) -> u64 { self.0 * self.0 }
/// # }
/// let jobs = WorkerJobs::new().with::<Square>();
/// assert_eq!(jobs.names().collect::<Vec<_>>(), ["square"]);
/// ```
#[derive(Clone, Default)]
pub struct WorkerJobs {
    runners: BTreeMap<&'static str, JobRunner>,
}

/// Parses a job's JSON, runs it, and encodes its output; `Err` says why the job could not run.
type JobRunner = fn(Value) -> Result<Value, String>;

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

impl WorkerCommand {
    /// `program` with `args` and no extra environment.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            trace_context: None,
        }
    }

    /// This very executable with `args`: how a binary makes itself its own worker, e.g. with a hidden
    /// `__worker` argument whose handler calls [`serve_worker`].
    pub fn current_exe(args: impl IntoIterator<Item = impl Into<String>>) -> io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?, args))
    }

    /// The same command with one more environment variable.
    pub fn with_env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The same command, sending each job's trace context along (see [`TraceContext`]).
    pub fn with_trace_context(mut self, trace_context: TraceContext) -> Self {
        self.trace_context = Some(trace_context);
        self
    }
}

impl WorkerJobs {
    /// No jobs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same set with the job `J`, under [`J::NAME`](CpuJob::NAME).
    ///
    /// # Panics
    ///
    /// If another job has the same name: two jobs on one wire name is a programming error, caught when the
    /// worker is set up rather than as wrong answers later.
    pub fn with<J: CpuJob>(mut self) -> Self {
        let previous = self.runners.insert(J::NAME, run_encoded::<J>);
        assert!(
            previous.is_none(),
            "two worker jobs are named `{}`",
            J::NAME
        );
        self
    }

    /// The names of the jobs, in alphabetical order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.runners.keys().copied()
    }

    /// Runs the job `name` on its JSON `input`.
    fn run(&self, name: &str, input: Value) -> Result<Value, String> {
        match self.runners.get(name) {
            Some(run) => run(input),
            None => Err(format!(
                "unknown job `{name}`; this worker runs: {}",
                self.names().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl std::fmt::Debug for WorkerJobs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_set().entries(self.names()).finish()
    }
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
    /// its output with which worker slot ran it and when. The worker must serve `J` (see [`WorkerJobs`]).
    ///
    /// Dropping the future while a worker runs the job kills and replaces that worker (see the module docs).
    pub async fn run<J: CpuJob>(&self, job: J) -> Result<(J::Output, JobTiming), ExecutorError> {
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
        let exchanged = process.exchange(&frame, id).await;
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

/// Serves a parent [`ProcessPool`]: reads request frames from `input`, runs each job `jobs` knows, writes one
/// response frame per request to `output`, and returns at end of input.
///
/// This is what the binary's hidden worker command runs, with its locked stdin and stdout:
/// `serve_worker(&jobs, io::stdin().lock(), io::stdout().lock())`. Lines without the frame tag are ignored; a
/// frame that does not parse, or names a job `jobs` does not know, is answered with a `rejected` frame. Returns
/// an error only when reading or writing fails. Output is flushed before each job runs, so a job that ends the
/// process (a crash, on purpose or not) loses no earlier answer.
pub fn serve_worker(jobs: &WorkerJobs, input: impl BufRead, output: impl Write) -> io::Result<()> {
    serve_worker_traced(jobs, input, output, |_, _| tracing::Span::none())
}

/// [`serve_worker`], running each job inside the span `enter` makes from the job's name and the trace context
/// the parent sent with it (see [`TraceContext`]; `None` when the parent sent none).
pub fn serve_worker_traced(
    jobs: &WorkerJobs,
    input: impl BufRead,
    mut output: impl Write,
    enter: impl Fn(&str, Option<&str>) -> tracing::Span,
) -> io::Result<()> {
    for line in input.lines() {
        let line = line?;
        let Some(payload) = frame_payload(&line) else {
            continue;
        };
        let response = match serde_json::from_str::<RequestFrame>(payload) {
            Ok(frame) => {
                output.flush()?;
                let span = enter(&frame.job, frame.trace.as_deref());
                let answer = span.in_scope(|| jobs.run(&frame.job, frame.input));
                ResponseFrame::answer(frame.id, answer)
            }
            Err(error) => ResponseFrame::answer(
                serde_json::from_str::<FrameId>(payload).map_or(0, |frame| frame.id),
                Err(format!("parse request: {error}")),
            ),
        };
        output.write_all(encode_frame(&response).as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// How long a worker gets to exit after its stdin closes, or after its stdout closed on a crash.
const EXIT_PATIENCE: Duration = Duration::from_secs(5);

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

/// A running worker process and its pipes.
#[derive(Debug)]
struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: Option<u32>,
}

/// A slot taken by a job. Dropping it returns the slot; unless [`BusyWorker::keep`] was called, its process is
/// dropped first, which kills it (the job crashed, replied nonsense, or was abandoned mid-run).
struct BusyWorker<'pool> {
    slot: Option<Slot>,
    keep: bool,
    pool: &'pool PoolInner,
}

/// Why an exchange with a worker failed.
enum Exchange {
    /// The worker's pipes closed: it exited or is exiting.
    Closed(String),
    /// It answered something that is not the reply to this request.
    Malformed(String),
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

#[derive(Debug, Serialize, Deserialize)]
struct RequestFrame {
    id: u64,
    /// The job's [`CpuJob::NAME`].
    job: String,
    /// The job itself.
    input: Value,
    /// The job's span context, from [`TraceContext::inject`]; absent when not traced (and from older parents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<String>,
}

/// Exactly one of `output` and `rejected`.
#[derive(Debug, Serialize, Deserialize)]
struct ResponseFrame {
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rejected: Option<String>,
}

/// Just the id of a frame whose body did not parse, to address the rejection.
#[derive(Debug, Deserialize)]
struct FrameId {
    id: u64,
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
        let alive = slot
            .process
            .as_mut()
            .is_some_and(|process| matches!(process.child.try_wait(), Ok(None)));
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

impl WorkerProcess {
    fn spawn(command: &WorkerCommand) -> Result<Self, ExecutorError> {
        let spawn_error = |source| ExecutorError::SpawnWorker {
            program: command.program.clone(),
            source,
        };
        let mut child = Command::new(&command.program);
        // A process group of its own: the terminal's Ctrl-C goes to the foreground group, and a worker that got
        // it would die mid-job while its parent is still finishing its work gracefully. The parent stops its
        // workers itself: by closing their stdin (the worker exits at end of input) or killing them on drop.
        #[cfg(unix)]
        child.process_group(0);
        let mut child = child
            .args(&command.args)
            .envs(command.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The worker's logs and panic messages reach the user's terminal, as the parent's do.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let missing_pipe = || spawn_error(io::Error::other("the child's pipes were not captured"));
        let stdin = child.stdin.take().ok_or_else(missing_pipe)?;
        let stdout = child.stdout.take().ok_or_else(missing_pipe)?;
        let pid = child.id();
        tracing::debug!(?pid, program = %command.program.display(), "started worker process");
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pid,
        })
    }

    /// Sends one request frame and reads lines until the matching response frame.
    async fn exchange(&mut self, frame: &str, id: u64) -> Result<Value, Exchange> {
        let sent = async {
            self.stdin.write_all(frame.as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(error) = sent.await {
            return Err(Exchange::Closed(format!("its stdin closed ({error})")));
        }
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line).await {
                Ok(0) => return Err(Exchange::Closed("its stdout closed".to_owned())),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    return Err(Exchange::Malformed(format!("read reply: {error}")));
                }
                Err(error) => {
                    return Err(Exchange::Closed(format!(
                        "reading its stdout failed ({error})"
                    )));
                }
            }
            let Some(payload) = frame_payload(&line) else {
                tracing::debug!(pid = ?self.pid, line = line.trim_end(), "ignored stray worker output");
                continue;
            };
            return decode_reply(payload, id).map_err(Exchange::Malformed);
        }
    }

    /// How the process ended, for a crash report; kills it if it does not exit within [`EXIT_PATIENCE`].
    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(EXIT_PATIENCE, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(error)) => format!("exit status unknown ({error})"),
            Err(_elapsed) => "it did not exit and was killed".to_owned(),
        }
    }

    /// Closes stdin so the worker exits at end of input; kills it if it does not exit in time.
    async fn close(self) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(EXIT_PATIENCE, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid = ?child.id(), "worker process did not exit after its input closed; killing it");
            let _ = child.kill().await;
        }
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

impl ResponseFrame {
    fn answer(id: u64, outcome: Result<Value, String>) -> Self {
        match outcome {
            Ok(output) => Self {
                id,
                output: Some(output),
                rejected: None,
            },
            Err(why) => Self {
                id,
                output: None,
                rejected: Some(why),
            },
        }
    }

    fn into_output(self) -> Result<Value, String> {
        match (self.output, self.rejected) {
            (_, Some(why)) => Err(format!("the worker rejected the request: {why}")),
            (Some(output), None) => Ok(output),
            (None, None) => Err("the reply has neither an output nor a rejection".to_owned()),
        }
    }
}

/// Decodes a `J` from JSON, runs it to the end (nothing in a worker can stop it but a kill), encodes the output.
fn run_encoded<J: CpuJob>(input: Value) -> Result<Value, String> {
    let job: J = serde_json::from_value(input)
        .map_err(|error| format!("parse job `{}`: {error}", J::NAME))?;
    let output = job.run(&|| false);
    serde_json::to_value(output)
        .map_err(|error| format!("encode the output of `{}`: {error}", J::NAME))
}

/// One frame: the tag, the JSON, a newline.
fn encode_frame(frame: &impl Serialize) -> String {
    let json = serde_json::to_string(frame).expect("protocol frames always serialise to JSON");
    format!("{FRAME_TAG}{json}\n")
}

/// The JSON after the frame tag, if the line holds a frame.
fn frame_payload(line: &str) -> Option<&str> {
    line.find(FRAME_TAG)
        .map(|start| line[start + FRAME_TAG.len()..].trim_end())
}

/// The job's output in the response frame `payload`, which must answer request `id`; `Err` says why the reply
/// cannot be used (the worker is then out of step).
fn decode_reply(payload: &str, id: u64) -> Result<Value, String> {
    let frame: ResponseFrame =
        serde_json::from_str(payload).map_err(|error| format!("parse reply: {error}"))?;
    if frame.id != id {
        return Err(format!(
            "got the reply to request {} while waiting for {id}",
            frame.id
        ));
    }
    frame.into_output()
}

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the parent's side of the frame protocol
/// without a process. [`serve_worker`] is the worker's side. Not part of the API: it may change at any time.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use serde_json::Value;

    /// Marks a protocol frame.
    pub const FRAME_TAG: &str = super::FRAME_TAG;

    /// What the parent makes of one line of a worker's stdout while it waits for the reply to request `id`:
    /// `None` for a line without a frame (ignored), else the job's output or why the reply is unusable.
    pub fn parent_reads_line(line: &str, id: u64) -> Option<Result<Value, String>> {
        super::frame_payload(line).map(|payload| super::decode_reply(payload, id))
    }

    /// The request line the parent writes for job `job` with `input`, as request `id`.
    pub fn request_line(id: u64, job: &str, input: Value) -> String {
        super::encode_frame(&super::RequestFrame {
            id,
            job: job.to_owned(),
            input,
            trace: None,
        })
    }
}

/// Environment variable that turns the test binary into a worker (see `tests::process_worker_entry`).
#[cfg(test)]
const TEST_WORKER_ENV: &str = "TRIBUTARY_TEST_WORKER";

/// The test binary itself as a well-behaved worker serving [`test_jobs`](super::test_jobs).
#[cfg(test)]
pub(crate) fn test_worker_command() -> WorkerCommand {
    test_worker_command_in_mode("serve")
}

#[cfg(test)]
fn test_worker_command_in_mode(mode: &str) -> WorkerCommand {
    let test_binary = std::env::current_exe().expect("the test binary knows its path");
    WorkerCommand::new(
        test_binary,
        [
            "--exact",
            "pool::process::tests::process_worker_entry",
            "--nocapture",
            "--test-threads=1",
        ],
    )
    .with_env(TEST_WORKER_ENV, mode)
}

#[cfg(test)]
mod tests;
