//! What the parent starts as a worker: [`WorkerCommand`], and the [`TraceContext`] it may carry to it.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// The program to start as a worker, and its arguments. It must end up calling
/// [`serve_worker`](super::serve_worker) with the jobs the parent will send.
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
/// [`serve_worker_traced`](super::serve_worker_traced) hands the text to its `enter` function, which makes the
/// job's span from it.
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
    /// `__worker` argument whose handler calls [`serve_worker`](super::serve_worker).
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
