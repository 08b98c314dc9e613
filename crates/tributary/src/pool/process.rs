//! [`ProcessPool`]: a pool of worker processes of the same binary, jobs and results sent as JSON lines over
//! each child's stdin and stdout. The Rust twin of Python's `ProcessPoolExecutor`, and a real feature: a job
//! that crashes its process (a native bug, an abort, the OOM killer) takes down one worker, not the program.
//!
//! # Protocol
//!
//! One request line in, one response line out, strictly in turn (a worker runs one job at a time), with any
//! number of progress lines for the request before its response (see [`CpuJob::run_with_progress`]). Every frame
//! is a line holding [`FRAME_TAG`] followed by one JSON object; anything else on the line before the tag, and
//! every line without it, is ignored and logged at `debug`. That makes the protocol robust to stray output from
//! the worker binary (a library that prints, the test harness's own lines when a test binary is the worker).
//!
//! ```text
//! parent -> worker   tributary-frame/2 {"id":7,"job":"burn","input":{"units":100000}}
//! worker -> parent   tributary-frame/2 {"id":7,"output":{"units":100000,"checksum":"9f.."}}
//! worker -> parent   tributary-frame/2 {"id":8,"rejected":"unknown job `teleport`; this worker runs: burn, infer"}
//! parent -> worker   tributary-frame/2 {"id":9,"job":"infer","input":{"question":"Umbrella in Lisbon?",..}}
//! worker -> parent   tributary-frame/2 {"id":9,"progress":"Take"}
//! worker -> parent   tributary-frame/2 {"id":9,"progress":" an umbrella"}
//! worker -> parent   tributary-frame/2 {"id":9,"output":{"Ok":{"summary":["Take an umbrella."],..}}}
//! ```
//!
//! A request names a [`CpuJob`] by its [`NAME`] and carries the job as JSON; the worker looks the
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
//!
//! # Layout
//!
//! - `pool`: the parent side, [`ProcessPool`] with its config and stats, its worker slots and job accounting.
//! - `child`: one worker process seen from the parent: start it, exchange a request for its reply, close it.
//! - `command`: [`WorkerCommand`], what the parent starts, and the [`TraceContext`] it carries along.
//! - `frame`: the request and response frames, and how each side encodes and finds them in a line.
//! - `worker`: the worker side, [`WorkerJobs`] and the [`serve_worker`] loop.
//! - `fuzzing` (feature `fuzzing`): the parent's frame handling for the fuzz targets.
//!
//! [`CpuJob`]: crate::pool::CpuJob
//! [`CpuJob::run_with_progress`]: crate::pool::CpuJob::run_with_progress
//! [`ExecutorError::Protocol`]: crate::pool::ExecutorError::Protocol
//! [`ExecutorError::WorkerCrashed`]: crate::pool::ExecutorError::WorkerCrashed
//! [`FRAME_TAG`]: frame::FRAME_TAG
//! [`NAME`]: crate::pool::CpuJob::NAME

mod child;
mod command;
mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod pool;
mod worker;

#[cfg(test)]
mod tests;

pub use command::{TraceContext, WorkerCommand};
pub use pool::{ProcessPool, ProcessPoolConfig, ProcessPoolStats};
#[cfg(test)]
pub(crate) use tests::test_worker_command;
pub use worker::{WorkerJobs, serve_worker, serve_worker_traced};
