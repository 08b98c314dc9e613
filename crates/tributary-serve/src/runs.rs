//! Runs a server watches: each ask started by `GET /v1/ask/stream` (or `POST /v1/ask`) is a [`LiveRun`], kept
//! in [`Runs`] while it runs and for [`KEPT_FOR`] after, so a client can reconnect and resume its event stream
//! or download its trace.
//!
//! A run's events are one ordered list, written by the task that drives the run: what its live timeline tells
//! ([`Update`]s as `span_started`, `span`, `mark`, `span_closed`), the sources' status changes, then the
//! answer and `done`. An event's id is `<run id>/<position>`, so `Last-Event-ID` says exactly where to resume.
//!
//! **When the client goes away.** A stream's run belongs to its listeners: when the last one disconnects
//! (noticed when a write fails: the next event or keep-alive, every [`KEEP_ALIVE`] at most), the
//! run waits [`RECONNECT_GRACE`] for one to come back (a browser reconnects by itself, told to after
//! [`RETRY_AFTER_DISCONNECT`]), then is cancelled: its steps stop (requests dropped, inference abandoned) and
//! are joined before the run ends. The run's admission permit is held until then, so `asks_in_flight` and
//! `/readyz` count it until its last task has ended. A `POST /v1/ask` whose client disconnects is cancelled
//! and joined the same way, at once.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary::group::{SpawnError, SupervisedChild, SupervisorHandle};
use tributary::trace::{Activity, Outcome as SpanOutcome, Span, Timeline, Update};
use tributary_agent::step::{SYNTHESIS_LANE, source_lane};
use tributary_agent::{Agent, AgentReport, Question, RunMode};

use crate::admission::{Admitted, Fared, cpu_budget, fared};
use crate::api::SpanView;
use crate::metrics::Metrics;

/// How long a run is kept after it ends, for a reconnect or its trace.
pub const KEPT_FOR: Duration = Duration::from_secs(10 * 60);

/// At most this many ended runs are kept; the oldest go first.
pub const MAX_KEPT: usize = 256;

/// How long a stream's run goes on with nobody listening before it is cancelled.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(2);

/// How often an idle stream sends a keep-alive comment. A client that left is noticed only when a write to it
/// fails, the second after it left: so within two of these, plus [`RECONNECT_GRACE`].
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// What a stream tells the browser to wait before reconnecting (the SSE `retry` field).
pub const RETRY_AFTER_DISCONNECT: Duration = Duration::from_millis(500);

/// One event of a run's stream.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// The SSE event name: `run`, `span_started`, `span`, `mark`, `span_closed`, `source`, `answer`, `done`.
    pub name: &'static str,
    pub data: Value,
}

/// A run the server drives and its clients watch.
#[derive(Debug)]
pub struct LiveRun {
    pub id: String,
    /// The live timeline its steps record on.
    pub timeline: Timeline,
    /// Cancelled to stop the run (its client left, or the server gives up on it).
    pub cancel: CancellationToken,
    events: Mutex<Vec<RunEvent>>,
    /// The number of events, for listeners to wait on.
    count: watch::Sender<usize>,
    /// Streams reading the events now.
    listeners: AtomicUsize,
    /// Who the run belongs to: its streams' listeners (cancelled when they all left) or a request that waits
    /// for its answer (cancelled when that request's client leaves, whoever else watches).
    owner: Owner,
    /// When the run ended; `None` while it runs.
    ended: Mutex<Option<Instant>>,
}

/// Every run the server keeps, by id.
#[derive(Debug, Default)]
pub struct Runs {
    by_id: Mutex<HashMap<String, Arc<LiveRun>>>,
    /// Ended runs, oldest first: forgotten after [`KEPT_FOR`], or sooner beyond [`MAX_KEPT`].
    ended: Mutex<VecDeque<(Instant, String)>>,
    next: AtomicU64,
}

/// Who a run belongs to: what cancels it when its client leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `GET /v1/ask/stream`: the streams reading it; the last one leaving cancels it.
    Listeners,
    /// `POST /v1/ask`: the request waiting for the answer; a stream of its events is only a spectator.
    Request,
}

/// Where a listener is in a run's events: the next position to send.
pub type Cursor = usize;

impl Runs {
    /// A new run with a fresh id, kept until it is forgotten.
    pub fn start(&self, owner: Owner) -> Arc<LiveRun> {
        self.forget_old();
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("r{number}-{:08x}", run_salt());
        let run = Arc::new(LiveRun {
            id: id.clone(),
            timeline: Timeline::live(Instant::now()),
            cancel: CancellationToken::new(),
            events: Mutex::default(),
            count: watch::Sender::new(0),
            listeners: AtomicUsize::new(0),
            owner,
            ended: Mutex::new(None),
        });
        lock(&self.by_id).insert(id, Arc::clone(&run));
        run
    }

    /// The run with this id, if it is still kept.
    pub fn get(&self, id: &str) -> Option<Arc<LiveRun>> {
        self.forget_old();
        lock(&self.by_id).get(id).cloned()
    }

    /// Marks `run` ended: it is kept for [`KEPT_FOR`] from now.
    pub(crate) fn ended(&self, run: &LiveRun) {
        let now = Instant::now();
        *lock(&run.ended) = Some(now);
        lock(&self.ended).push_back((now, run.id.clone()));
        self.forget_old();
    }

    fn forget_old(&self) {
        let mut ended = lock(&self.ended);
        let now = Instant::now();
        let mut by_id = lock(&self.by_id);
        while let Some((at, id)) = ended.front() {
            if ended.len() <= MAX_KEPT && now.duration_since(*at) < KEPT_FOR {
                break;
            }
            by_id.remove(id);
            ended.pop_front();
        }
    }
}

/// A salt for run ids, so the ids of one server's runs are not those of the last one's (a browser reconnecting
/// to a restarted server must not resume someone else's run).
fn run_salt() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static SALT: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SALT.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a salt needs only some of the bits"
        )]
        let salt = hasher.finish() as u32;
        salt
    })
}

impl LiveRun {
    /// The events from `cursor` on.
    pub fn events_since(&self, cursor: Cursor) -> Vec<RunEvent> {
        lock(&self.events)
            .get(cursor..)
            .map(<[RunEvent]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits until there are events at `cursor` or after.
    pub async fn wait_for_event(&self, cursor: Cursor) {
        let mut receiver = self.count.subscribe();
        // `self` keeps the sender alive: this cannot fail.
        let _ = receiver.wait_for(|count| *count > cursor).await;
    }

    /// Whether `done` has been sent: nothing follows.
    pub fn is_ended(&self) -> bool {
        lock(&self.ended).is_some()
    }

    /// A stream starts reading the events.
    pub fn listen(self: &Arc<Self>) -> Listener {
        self.listeners.fetch_add(1, Ordering::SeqCst);
        Listener {
            run: Arc::clone(self),
        }
    }

    fn push(&self, name: &'static str, data: Value) {
        let mut events = lock(&self.events);
        events.push(RunEvent { name, data });
        self.count.send_replace(events.len());
    }
}

/// A stream reading a run's events; when the last one is dropped (the client went away) before the run ended,
/// a run that belongs to its listeners ([`Owner::Listeners`]) is cancelled after [`RECONNECT_GRACE`] unless a
/// listener came back.
#[derive(Debug)]
pub struct Listener {
    run: Arc<LiveRun>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.run.listeners.fetch_sub(1, Ordering::SeqCst) != 1
            || self.run.owner != Owner::Listeners
            || self.run.is_ended()
        {
            return;
        }
        let run = Arc::clone(&self.run);
        // Dropped inside the runtime (a response body); `try_current` keeps a drop elsewhere from panicking.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_GRACE) => {}
                    () = run.cancel.cancelled() => return,
                }
                if run.listeners.load(Ordering::SeqCst) == 0 && !run.is_ended() {
                    tracing::info!(run = %run.id, "the stream's client went away: cancelling the run");
                    run.cancel.cancel();
                }
            });
        } else {
            run.cancel.cancel();
        }
    }
}

/// What a run needs to be driven.
pub struct Drive {
    pub agent: Agent,
    pub question: Question,
    pub mode: RunMode,
    /// The run's admission, released when the run's last task has ended, with how it fared.
    pub permit: Admitted,
    pub metrics: Arc<Metrics>,
}

/// Starts driving `run` as a child of the server's supervisor (joined when the server stops; its panic is
/// reported without touching the other runs): the agent's run, its events as they come, the answer and `done`.
/// Returns at once; the returned handle yields the report (and may be dropped: that does not cancel the run).
/// Refused once the server is stopping.
pub fn drive(
    runs: &Arc<Runs>,
    run: &Arc<LiveRun>,
    drive: Drive,
    supervisor: &SupervisorHandle,
) -> Result<SupervisedChild<AgentReport, Infallible>, SpawnError> {
    let runs = Arc::clone(runs);
    let run = Arc::clone(run);
    supervisor.spawn(format!("run {}", run.id), async move {
        let Drive {
            agent,
            question,
            mode,
            permit,
            metrics,
        } = drive;
        let settings = agent.settings();
        let report = run_streamed(
            &agent,
            &question,
            mode,
            &run.id,
            run.timeline.clone(),
            run.cancel.clone(),
            &mut |name, data| run.push(name, data),
        )
        .await;
        let cancelled = run.cancel.is_cancelled();
        if cancelled {
            metrics.cancelled();
        } else {
            metrics.answered(&report);
        }
        run.push(
            "answer",
            serde_json::to_value(&report).unwrap_or(Value::Null),
        );
        run.push(
            "done",
            json!({ "run_id": run.id, "outcome": outcome(&report, cancelled) }),
        );
        runs.ended(&run);
        // The run's tasks have all ended (the agent joins its steps): the ask leaves the in-flight count now,
        // and the limit learns whether the server kept up with it.
        permit.finish(if cancelled {
            Fared::Unknown
        } else {
            fared(
                &report,
                &inference_ends(&run.timeline),
                cpu_budget(settings.deadline, settings.per_source_timeout),
            )
        });
        Ok(report)
    })
}

/// Runs `question` on `agent` and hands each event of its stream to `emit` as it happens: `run`, then the
/// timeline's `span_started`, `span`, `mark`, `span_closed`, `text` and `source` events, then each source's final
/// `source` event. The caller sends `answer` and `done` ([`outcome`]) after what it does with the report. The
/// steps record on `timeline` (a [`Timeline::live`] one); cancelling `cancel` stops them, and the run returns only
/// when every step has ended.
pub async fn run_streamed(
    agent: &Agent,
    question: &Question,
    mode: RunMode,
    run_id: &str,
    timeline: Timeline,
    cancel: CancellationToken,
    emit: &mut (dyn FnMut(&'static str, Value) + Send),
) -> AgentReport {
    let settings = agent.settings();
    emit(
        "run",
        json!({
            "run_id": run_id,
            "question": question.as_str(),
            "mode": mode.as_str(),
            "deadline_ms": millis(settings.deadline),
            "per_source_timeout_ms": millis(settings.per_source_timeout),
            "lanes": agent.lanes(),
        }),
    );
    let mut translator = Translator::for_sources(agent);
    let ask = agent.ask_watched(question, mode, timeline.clone(), cancel);
    tokio::pin!(ask);
    let mut cursor = 0;
    let finished = loop {
        tokio::select! {
            finished = &mut ask => break finished,
            () = timeline.wait_for_update(cursor) => {
                cursor = translator.translate(&timeline, cursor, emit);
            }
        }
    };
    translator.translate(&timeline, cursor, emit);
    let report = finished.report;
    for source in &report.sources {
        emit(
            "source",
            json!({
                "source": source.name,
                "status": source.status.as_str(),
                "failure": source.failure,
                "http_status": source.http_status,
                "error": source.error,
            }),
        );
    }
    report
}

/// The `outcome` of a run's `done` event: `cancelled`, `answered` or `failed`.
pub fn outcome(report: &AgentReport, cancelled: bool) -> &'static str {
    if cancelled {
        "cancelled"
    } else if report.answered() {
        "answered"
    } else {
        "failed"
    }
}

/// Each finished inference's source and end (ms since the run started), from the spans on the workers' lanes.
pub(crate) fn inference_ends(timeline: &Timeline) -> Vec<(String, f64)> {
    timeline
        .spans()
        .iter()
        .filter(|span| span.activity == Activity::Infer)
        .filter_map(|span| {
            let source = span.args.get("source")?.as_str()?.to_owned();
            Some((source, millis(span.end)))
        })
        .collect()
}

/// Turns a live timeline's updates into stream events, and follows each source's status.
#[derive(Debug)]
struct Translator {
    /// Each source's lane, as the agent names it ([`source_lane`]), to the source's name: a lane is looked up,
    /// never taken apart.
    sources_by_lane: HashMap<String, String>,
    /// What each begun piece of work is: its source and activity.
    begun: HashMap<u64, (String, Activity)>,
}

impl Translator {
    /// A translator for the runs of `agent`, which knows its sources' lanes.
    fn for_sources(agent: &Agent) -> Self {
        Self {
            sources_by_lane: agent
                .sources()
                .iter()
                .map(|source| (source_lane(source.name()), source.name().to_owned()))
                .collect(),
            begun: HashMap::new(),
        }
    }

    /// Emits the events for the timeline's updates from `cursor` on; returns the next cursor.
    fn translate(
        &mut self,
        timeline: &Timeline,
        cursor: usize,
        emit: &mut (dyn FnMut(&'static str, Value) + Send),
    ) -> usize {
        let updates = timeline.updates_since(cursor);
        let next = cursor + updates.len();
        for update in updates {
            match update {
                Update::Began {
                    id,
                    lane,
                    name,
                    activity,
                    subject,
                    at,
                } => {
                    emit(
                        "span_started",
                        json!({
                            "id": id, "lane": lane, "name": name,
                            "activity": activity.as_str(), "at_ms": millis(at),
                        }),
                    );
                    // A source's fetch is on its lane; its inference on a worker's, naming the source.
                    if let Some(source) =
                        subject.or_else(|| self.sources_by_lane.get(&lane).cloned())
                    {
                        let status = match activity {
                            Activity::Infer => "inferring",
                            _ => "fetching",
                        };
                        emit("source", json!({ "source": source, "status": status }));
                        self.begun.insert(id, (source.clone(), activity));
                    } else if lane == SYNTHESIS_LANE {
                        // `--synthesize`: its words are `text` events of the source "synthesis".
                        self.begun.insert(id, (SYNTHESIS_LANE.to_owned(), activity));
                    }
                }
                Update::Closed { id, outcome, at } => {
                    emit(
                        "span_closed",
                        json!({ "id": id, "outcome": outcome.as_str(), "at_ms": millis(at) }),
                    );
                    // A fetch or an inference that ended tells its source's status at once (a page would
                    // otherwise say "inferring" after the bar had ended); the final report has the last word.
                    if let Some((source, activity @ (Activity::Fetch | Activity::Infer))) = self
                        .begun
                        .get(&id)
                        .filter(|(source, _)| source != SYNTHESIS_LANE)
                    {
                        let status = match (activity, outcome) {
                            (Activity::Infer, SpanOutcome::Ok) => "inferred",
                            (_, SpanOutcome::Ok) => "fetched",
                            (_, SpanOutcome::Failed) => "failed",
                            (_, SpanOutcome::TimedOut) => "timed_out",
                            (_, SpanOutcome::Cancelled) => "cancelled",
                        };
                        emit("source", json!({ "source": source, "status": status }));
                    }
                }
                // A source's inference reports the text it is writing (a chat model's next words).
                Update::Progress { id, text, at } => {
                    if let Some((source, Activity::Infer)) = self.begun.get(&id) {
                        emit(
                            "text",
                            json!({ "source": source, "id": id, "text": text, "at_ms": millis(at) }),
                        );
                    }
                }
                Update::Span(span) => emit("span", span_json(&span)),
                Update::Event(event) => emit(
                    "mark",
                    json!({
                        "lane": event.lane, "name": event.name, "kind": event.kind.as_str(),
                        "at_ms": millis(event.at), "args": event.args,
                    }),
                ),
            }
        }
        next
    }
}

/// A finished span as the stream and `/v1/compare` send it.
pub fn span_json(span: &Span) -> Value {
    serde_json::to_value(SpanView::from(span)).unwrap_or(Value::Null)
}

/// Milliseconds, rounded to microseconds.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// The kept runs are only ever appended to or removed from whole, so a panic elsewhere leaves them consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last listener leaving cancels a stream's run after the grace, but not a run a request waits for.
    #[tokio::test(start_paused = true)]
    async fn the_last_listener_leaving_cancels_only_a_run_it_owns() {
        let runs = Runs::default();
        let streamed = runs.start(Owner::Listeners);
        let asked = runs.start(Owner::Request);
        for run in [&streamed, &asked] {
            drop(run.listen());
        }
        tokio::time::sleep(RECONNECT_GRACE / 2).await;
        assert!(!streamed.cancel.is_cancelled(), "not within the grace");
        tokio::time::sleep(RECONNECT_GRACE).await;
        assert!(streamed.cancel.is_cancelled());
        assert!(
            !asked.cancel.is_cancelled(),
            "a spectator leaving cancels nothing"
        );
    }

    /// A listener that comes back within the grace keeps the run going.
    #[tokio::test(start_paused = true)]
    async fn a_listener_back_within_the_grace_keeps_the_run() {
        let runs = Runs::default();
        let run = runs.start(Owner::Listeners);
        drop(run.listen());
        let back = run.listen();
        tokio::time::sleep(RECONNECT_GRACE * 2).await;
        assert!(!run.cancel.is_cancelled());
        drop(back);
        tokio::time::sleep(RECONNECT_GRACE * 2).await;
        assert!(run.cancel.is_cancelled());
    }
}
