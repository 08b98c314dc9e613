//! [`NativeRun`]: one ask or comparison running on the engine's runtime, awaited from asyncio.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tributary::group::SupervisorHandle;
use tributary::trace::Timeline;
use tributary_agent::{Agent, Question, RunMode};
use tributary_serve::{outcome, run_streamed};

use crate::{Finished, TributaryError, await_finished, runtime};

/// What a run does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RunKind {
    /// One question; its report.
    Ask(RunMode),
    /// One question, its events kept for `NativeRun::next_event` as `serve` streams them; its report.
    Stream(RunMode),
    /// The sequential baseline, then the concurrent agent; both reports and the speed-up.
    Compare,
}

/// A [`RunKind`] ready to run: a stream with the sender of its events.
enum Work {
    Ask(RunMode),
    Stream(RunMode, mpsc::UnboundedSender<Event>),
    Compare,
}

/// One event of a streamed run: its name and its data as JSON.
type Event = (&'static str, String);

/// One ask or comparison started on the engine's runtime (`tributary.Agent` awaits it). Dropping it, or
/// `cancel`, cancels the run; the run's steps are joined before `wait` returns.
#[pyclass(module = "tributary._tributary", frozen)]
#[derive(Debug)]
pub struct NativeRun {
    cancel: CancellationToken,
    finished: watch::Receiver<Finished>,
    /// The events of a streamed run; the sender is dropped when the run has ended.
    events: Option<Arc<Mutex<mpsc::UnboundedReceiver<Event>>>>,
}

impl NativeRun {
    /// Starts `kind` of run on `question` as a child of `runs` (the agent's supervisor).
    pub(crate) fn start(
        runs: &SupervisorHandle,
        agent: Agent,
        question: Question,
        kind: RunKind,
    ) -> PyResult<Self> {
        let cancel = CancellationToken::new();
        let (finish, finished) = watch::channel(None);
        // A stream's events go from the run to `next_event` through a channel of its own.
        let (work, receiver) = match kind {
            RunKind::Ask(mode) => (Work::Ask(mode), None),
            RunKind::Stream(mode) => {
                let (sender, receiver) = mpsc::unbounded_channel();
                (
                    Work::Stream(mode, sender),
                    Some(Arc::new(Mutex::new(receiver))),
                )
            }
            RunKind::Compare => (Work::Compare, None),
        };
        let token = cancel.clone();
        let work = async move {
            let result = match work {
                Work::Stream(mode, events) => {
                    Ok(stream(&agent, &question, mode, token, &events).await)
                }
                Work::Ask(mode) => {
                    let timeline = Timeline::starting_at(std::time::Instant::now());
                    let run = agent.ask_watched(&question, mode, timeline, token).await;
                    json(&run.report)
                }
                Work::Compare => match agent.compare_runs(&question, token).await {
                    Ok(compared) => json(&compared.comparison),
                    Err(error) => Err(format!("failed to build a fresh HTTP client: {error}")),
                },
            };
            finish.send_replace(Some(result));
            Ok::<(), Infallible>(())
        };
        let _enter = runtime().enter();
        let child = runs
            .spawn("python run", work)
            .map_err(|_| TributaryError::new_err("the agent is closing"))?;
        // The child goes on without its handle: its result comes through `finish`, and the agent's supervisor
        // cancels and joins it when the agent closes.
        drop(child);
        Ok(Self {
            cancel,
            finished,
            events: receiver,
        })
    }
}

#[pymethods]
impl NativeRun {
    /// Cancels the run: its sources not yet answered are reported `cancelled`, its steps are joined.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the run has ended.
    fn done(&self) -> bool {
        self.finished.borrow().is_some()
    }

    /// An awaitable of the run's JSON, once every one of its steps has ended. Awaiting it again is allowed;
    /// cancelling the awaitable does not cancel the run (`cancel` does).
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        await_finished(py, self.finished.clone(), "the run", |why| {
            TributaryError::new_err(why)
        })
    }

    /// An awaitable of the next event of a streamed run, `(name, data as JSON)`, or `None` after the last.
    fn next_event<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = self
            .events
            .clone()
            .ok_or_else(|| TributaryError::new_err("this run was not started as a stream"))?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            Ok(events
                .lock()
                .await
                .recv()
                .await
                .map(|(name, data)| (name.to_owned(), data)))
        })
    }
}

impl Drop for NativeRun {
    /// Nobody can read the run any more: it stops.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs the question as `serve` streams it, sending each event, then `answer` and `done`; returns the report.
async fn stream(
    agent: &Agent,
    question: &Question,
    mode: RunMode,
    cancel: CancellationToken,
    events: &mpsc::UnboundedSender<Event>,
) -> String {
    static RUNS: AtomicU64 = AtomicU64::new(1);
    let id = format!("py-{}", RUNS.fetch_add(1, Ordering::Relaxed));
    let mut send = |name: &'static str, data: serde_json::Value| {
        // A stream nobody reads any more: its run is cancelled when the NativeRun is dropped.
        let _ = events.send((name, data.to_string()));
    };
    let timeline = Timeline::live(std::time::Instant::now());
    let report = run_streamed(
        agent,
        question,
        mode,
        &id,
        timeline,
        cancel.clone(),
        &mut send,
    )
    .await;
    let answer = serde_json::to_string(&report).unwrap_or_else(|_| "null".to_owned());
    let _ = events.send(("answer", answer.clone()));
    send(
        "done",
        serde_json::json!({ "run_id": id, "outcome": outcome(&report, cancel.is_cancelled()) }),
    );
    answer
}

/// A report as JSON.
fn json(value: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|error| format!("failed to write the report: {error}"))
}
