//! The worker side: [`WorkerJobs`], the jobs a worker process knows by name, and [`serve_worker`], the loop
//! that answers the parent's requests with them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use serde_json::Value;

use super::frame::{FrameId, RequestFrame, ResponseFrame, encode_frame, frame_payload};
use crate::pool::CpuJob;

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

/// Parses a job's JSON, runs it with the function that reports its progress, and encodes its output; `Err`
/// says why the job could not run.
type JobRunner = fn(Value, &dyn Fn(&str)) -> Result<Value, String>;

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

    /// Runs the job `name` on its JSON `input`, reporting its progress to `progress`.
    fn run(&self, name: &str, input: Value, progress: &dyn Fn(&str)) -> Result<Value, String> {
        match self.runners.get(name) {
            Some(run) => run(input, progress),
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

/// Serves a parent [`ProcessPool`](super::ProcessPool): reads request frames from `input`, runs each job `jobs`
/// knows, writes one response frame per request to `output`, and returns at end of input.
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
/// the parent sent with it (see [`TraceContext`](super::TraceContext); `None` when the parent sent none).
pub fn serve_worker_traced(
    jobs: &WorkerJobs,
    input: impl BufRead,
    output: impl Write,
    enter: impl Fn(&str, Option<&str>) -> tracing::Span,
) -> io::Result<()> {
    // A job's progress frames are written while it runs, between its request and its reply.
    let output = RefCell::new(output);
    for line in input.lines() {
        let line = line?;
        let Some(payload) = frame_payload(&line) else {
            continue;
        };
        let response = match serde_json::from_str::<RequestFrame>(payload) {
            Ok(frame) => {
                output.borrow_mut().flush()?;
                // A progress frame that cannot be written is lost; the reply after it reports the broken pipe.
                let id = frame.id;
                let progress = |text: &str| {
                    let mut output = output.borrow_mut();
                    let line = encode_frame(&ResponseFrame::progress(id, text));
                    let _ = output
                        .write_all(line.as_bytes())
                        .and_then(|()| output.flush());
                };
                let span = enter(&frame.job, frame.trace.as_deref());
                let answer = span.in_scope(|| jobs.run(&frame.job, frame.input, &progress));
                ResponseFrame::answer(frame.id, answer)
            }
            Err(error) => ResponseFrame::answer(
                serde_json::from_str::<FrameId>(payload).map_or(0, |frame| frame.id),
                Err(format!("parse request: {error}")),
            ),
        };
        let mut output = output.borrow_mut();
        output.write_all(encode_frame(&response).as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// Decodes a `J` from JSON, runs it to the end (nothing in a worker can stop it but a kill), encodes the output.
fn run_encoded<J: CpuJob>(input: Value, progress: &dyn Fn(&str)) -> Result<Value, String> {
    let job: J = serde_json::from_value(input)
        .map_err(|error| format!("parse job `{}`: {error}", J::NAME))?;
    let output = job.run_with_progress(&|| false, progress);
    serde_json::to_value(output)
        .map_err(|error| format!("encode the output of `{}`: {error}", J::NAME))
}
