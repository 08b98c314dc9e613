//! One question's step, shared by every driver: fetch one source, infer on its response, and the answer rule.
//!
//! `ask` runs [`fetch_source`] then [`infer_source`] for each source as one task ([`crate::run`]); `batch` runs
//! every source's fetch in its fetch stage and every inference in its infer stage, with a bounded channel in
//! between (`tributary-batch`). Both then apply the same [`answer`] rule and build the same [`AgentReport`]
//! with [`report`]. What differs between drivers is only scheduling, never what a step does or how a question
//! ends.
//!
//! Every step bounds itself: a fetch by `min(per-source timeout, deadline)`, an inference by the deadline it is
//! given. Each records what it did on the question's [`Timeline`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary::group::{Deadline, Elapsed, ElapsedKind, with_timeout};
use tributary::pool::{Executor, ExecutorError, JobTiming};
use tributary::source::{
    AttemptOutcome, AttemptRecord, FetchError, FetchErrorKind, RetryDecision, SourceClient,
    SourceRequest,
};
use tributary::trace::{
    Activity, EventKind, InstantEvent, OpenSpan, Outcome as SpanOutcome, Span, Timeline,
};

use crate::extract::document_for;
use crate::infer::{InferError, Inference, InferenceJob, aggregate_by_topic};
use crate::plan::{Action, Step};
use crate::protocols::{self, Reading};
use crate::question::Question;
use crate::report::{AgentReport, AnswerStatus, RunMode, SourceReport, SourceStatus};
use crate::schedule::{MeasuredJob, efficiency, ideal_makespan};
use crate::sources::Source;

/// Query parameters added to a request, as `(key, value)` pairs.
pub type QueryPairs = Vec<(String, String)>;

/// Extra query parameters per source name, e.g. `("news", [("fault", "hang")])` for fault injection.
pub type ExtraQuery = Vec<(String, QueryPairs)>;

/// Everything the steps of one question share.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The HTTP client (and its cache).
    pub client: SourceClient,
    /// Where inference runs.
    pub executor: Executor,
    /// The question.
    pub question: Question,
    /// Each source's share of the deadline, all its attempts included.
    pub per_source_timeout: Duration,
    /// Work units each inference spends (a CPU-time budget already converted).
    pub inference_units: u64,
    /// When the question's run started: arrivals are measured from here.
    pub started: Instant,
    /// Where the steps record what they did; `None` records nothing (a batch draws no charts).
    pub timeline: Option<Timeline>,
    /// Extra query parameters for a source by name (fault injection: `fault=hang`, `latency_ms=2000`).
    pub extra_query: Arc<ExtraQuery>,
    /// Cancelling it stops the question's steps, which are joined before the run returns (a server's client
    /// went away); a step it stops is reported failed, "cancelled".
    pub cancel: CancellationToken,
}

/// One source after its fetch: its report so far, and the response when there is one.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The source.
    pub source: Source,
    /// Its report: `skipped`, `failed` or `timed_out` with why, or (with a body) waiting for inference.
    pub report: SourceReport,
    /// The response body, when the fetch succeeded.
    pub body: Option<Arc<Value>>,
}

/// What one step produced: its report line, and its inference when it got that far.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The source's report.
    pub report: SourceReport,
    /// Its inference, when it got that far.
    pub inference: Option<Inference>,
    /// Whether the source gave a response (whatever became of its inference).
    pub responded: bool,
}

/// How a question ended by the answer rule: its status, the answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `ok`, `degraded` or `failed`.
    pub status: AnswerStatus,
    /// The unified answer, unless `failed`.
    pub answer: Option<String>,
    /// Why there is no answer (`failed` only).
    pub error: Option<String>,
}

/// What a run measured, besides its steps: for [`report`].
#[derive(Debug, Clone, Copy)]
pub struct RunFacts {
    /// How the steps were scheduled.
    pub mode: RunMode,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU workers of the executor.
    pub workers: usize,
    /// The overall deadline.
    pub deadline: Duration,
    /// Each source's share of it.
    pub per_source_timeout: Duration,
}

impl Fetch {
    /// A source that gave no response, with its report saying why.
    fn unanswered(source: Source, report: SourceReport) -> Self {
        Self {
            source,
            report,
            body: None,
        }
    }
}

/// Fetches `step`'s source within `min(per-source timeout, deadline)`, or reports why it was not asked.
///
/// A source that answers is left `skipped` in its report with its body attached: [`infer_source`] settles it.
/// A kind that needs two requests (Open-Meteo, Wikipedia: [`crate::protocols`]) makes both here, one after the
/// other, inside the same per-source deadline, each through [`SourceClient::fetch`] and drawn on the source's
/// lane; a source that answers it has nothing for the question is reported `no_result`.
pub async fn fetch_source(context: &StepContext, step: Step, deadline: Deadline) -> Fetch {
    let source = step.source;
    let mut report = SourceReport::new_for(&source);
    let request = match step.action {
        Action::Skip { reason } => {
            report.error = Some(reason);
            return Fetch::unanswered(source, report);
        }
        Action::Fetch(request) => {
            with_extra_query(request, context.extra_query.as_slice(), source.name())
        }
    };
    let lane = source_lane(source.name());

    let fetch_started = Instant::now();
    let (source_deadline, binding_bound) = deadline.narrow(Some(context.per_source_timeout));
    let mut progress = Progress::default();
    let chained = with_timeout(
        Some(context.per_source_timeout),
        deadline,
        fetch_chain(
            context,
            &source,
            &lane,
            request,
            source_deadline,
            &mut progress,
        ),
    )
    .await;
    let fetch_ended = Instant::now();
    match &chained {
        Ok(Chain::Answered(_)) => {
            tracing::debug!(source = source.name(), attempts = progress.attempts, cached = progress.all_cached, elapsed = ?(fetch_ended - fetch_started), "fetched")
        }
        Ok(Chain::NoResult(why)) => {
            tracing::debug!(source = source.name(), why = %why, "no result")
        }
        Ok(Chain::Broken(why)) => {
            tracing::warn!(source = source.name(), why = %why, "protocol error")
        }
        Ok(Chain::Failed(error)) => {
            tracing::info!(source = source.name(), attempts = error.attempts(), error = %error_chain(error), "fetch failed")
        }
        Err(elapsed) => tracing::info!(source = source.name(), %elapsed, "fetch cut short"),
    }
    report.fetch_ms = Some(millis(fetch_ended - fetch_started));
    report.arrived_at_ms = Some(millis(fetch_ended - context.started));
    report.attempts = progress.attempts;
    report.hedges = progress.hedges;

    match chained {
        Err(elapsed) => {
            // The request in flight was dropped with the chain: draw it as cut short.
            if let Some(in_flight) = progress.in_flight.take() {
                record_fetch_span(
                    context.timeline.as_ref(),
                    &lane,
                    &in_flight.request,
                    in_flight.started,
                    fetch_ended,
                    SpanOutcome::TimedOut,
                    &[],
                );
                close(in_flight.open, SpanOutcome::TimedOut);
            }
            let message = elapsed_message(elapsed);
            if let Some(timeline) = &context.timeline {
                timeline.record_event(InstantEvent::new(
                    &lane,
                    message.clone(),
                    EventKind::Timeout,
                    timeline.offset(fetch_ended.into_std()),
                ));
            }
            report.status = SourceStatus::TimedOut;
            report.error = Some(message);
            Fetch::unanswered(source, report)
        }
        Ok(Chain::Broken(why)) => {
            report.status = SourceStatus::Failed;
            report.error = Some(why);
            Fetch::unanswered(source, report)
        }
        Ok(Chain::Failed(error)) => {
            let (status, message) = fetch_failure(&error, binding_bound);
            report.status = status;
            report.error = Some(message);
            Fetch::unanswered(source, report)
        }
        Ok(Chain::NoResult(why)) => {
            report.cached = progress.all_cached;
            report.status = SourceStatus::NoResult;
            report.error = Some(why);
            Fetch::unanswered(source, report)
        }
        Ok(Chain::Answered(body)) => {
            report.cached = progress.all_cached;
            Fetch {
                source,
                report,
                body: Some(body),
            }
        }
    }
}

/// How a source's requests ended.
#[derive(Debug)]
enum Chain {
    /// The body inference reads.
    Answered(Arc<Value>),
    /// The source has nothing for the question, and why.
    NoResult(String),
    /// A request failed (its attempts are already drawn).
    Failed(FetchError),
    /// The protocol misbehaved (asked for a third request): a bug, reported as a failure.
    Broken(String),
}

/// What a source's requests have done so far: kept outside [`fetch_chain`]'s future, so that what it did is
/// known when the per-source timeout drops it.
#[derive(Debug)]
struct Progress {
    /// HTTP attempts of the requests that ended.
    attempts: u32,
    /// How many of those attempts were hedges.
    hedges: u32,
    /// Whether every request that ended came from the cache.
    all_cached: bool,
    /// The request on its way, if any.
    in_flight: Option<InFlight>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            attempts: 0,
            hedges: 0,
            all_cached: true,
            in_flight: None,
        }
    }
}

/// A request on its way: what to draw if it is cut short.
#[derive(Debug)]
struct InFlight {
    request: SourceRequest,
    started: Instant,
    open: Option<OpenSpan>,
}

/// Sends `first`, then, while the source's protocol asks for one, the next request built from the response
/// ([`protocols::read`]), at most [`protocols::MAX_REQUESTS`] in all, each within `deadline`.
async fn fetch_chain(
    context: &StepContext,
    source: &Source,
    lane: &str,
    first: SourceRequest,
    deadline: Deadline,
    progress: &mut Progress,
) -> Chain {
    let mut request = first;
    let mut endpoint = protocols::first_endpoint(source.kind);
    let mut kept: Option<Value> = None;
    for _ in 0..protocols::MAX_REQUESTS {
        let spec = protocols::spec_for(source, endpoint);
        // Watchers of a live timeline see the request begin; its attempts' spans are recorded when it ends.
        let started = Instant::now();
        progress.in_flight = Some(InFlight {
            request: request.clone(),
            started,
            open: context.timeline.as_ref().map(|timeline| {
                timeline.begin(lane, format!("GET {}", request.path), Activity::Fetch)
            }),
        });
        // Boxed: the engine's fetch future is large (retries, hedges, the cache), and a chain of two held
        // inline overflowed a test thread's stack once the step's future was nested in a run's.
        let fetched = Box::pin(context.client.fetch(&spec, &request, deadline)).await;
        let ended = Instant::now();
        let open = progress
            .in_flight
            .take()
            .and_then(|in_flight| in_flight.open);
        let fetched = match fetched {
            Err(error) => {
                progress.attempts += error.attempts();
                progress.hedges += error.hedges();
                progress.all_cached = false;
                if let (Some(timeline), FetchErrorKind::CircuitOpen { .. }) =
                    (&context.timeline, error.kind())
                {
                    timeline.record_event(InstantEvent::new(
                        lane,
                        "circuit open",
                        EventKind::Failure,
                        timeline.offset(ended.into_std()),
                    ));
                }
                let outcome = match error.kind() {
                    FetchErrorKind::DeadlineExceeded | FetchErrorKind::AttemptTimeout { .. } => {
                        SpanOutcome::TimedOut
                    }
                    _ => SpanOutcome::Failed,
                };
                record_fetch_span(
                    context.timeline.as_ref(),
                    lane,
                    &request,
                    started,
                    ended,
                    outcome,
                    error.attempt_log(),
                );
                close(open, outcome);
                return match protocols::read_failure(source.kind, kept.as_ref(), &error) {
                    Some(why) => Chain::NoResult(why),
                    None => Chain::Failed(error),
                };
            }
            Ok(fetched) => fetched,
        };
        progress.attempts += fetched.attempts;
        progress.hedges += fetched.hedges;
        progress.all_cached &= fetched.cached;
        record_fetch_span(
            context.timeline.as_ref(),
            lane,
            &request,
            started,
            ended,
            SpanOutcome::Ok,
            &fetched.attempt_log,
        );
        close(open, SpanOutcome::Ok);
        match protocols::read(source.kind, kept.as_ref(), &request, fetched.body) {
            Reading::Answer(body) => return Chain::Answered(body),
            Reading::NoResult(why) => return Chain::NoResult(why),
            Reading::Next(next) => {
                request = next.request;
                endpoint = next.endpoint;
                kept = Some(next.keep);
            }
        }
    }
    Chain::Broken(format!(
        "the `{}` protocol asked for more than {} requests",
        source.kind,
        protocols::MAX_REQUESTS
    ))
}

/// Runs inference on `fetch`'s response on the executor within `deadline`, and settles its report; a source
/// without a response keeps the report its fetch gave it.
pub async fn infer_source(context: &StepContext, fetch: Fetch, deadline: Deadline) -> StepRecord {
    let Fetch {
        source,
        mut report,
        body,
    } = fetch;
    let Some(body) = body else {
        return StepRecord {
            report,
            inference: None,
            responded: false,
        };
    };
    // Extraction happens here, on the caller's side: the job must be plain data for a `processes` executor.
    let job = InferenceJob::new(
        context.question.as_str(),
        document_for(&source, &body),
        context.inference_units,
    );
    // Watchers see the inference begin (queued for a worker) on the source's lane.
    let open = context.timeline.as_ref().map(|timeline| {
        timeline.begin(
            source_lane(source.name()),
            format!("infer {}", source.name()),
            Activity::Infer,
        )
    });
    let outcome = with_timeout(None, deadline, context.executor.run_job(job)).await;
    if let Some(timeline) = &context.timeline {
        record_inference(timeline, &source, &outcome);
    }
    close(
        open,
        match &outcome {
            Ok(Ok((Ok(_), _))) => SpanOutcome::Ok,
            Ok(Ok((Err(_), _))) => SpanOutcome::Cancelled,
            Ok(Err(_)) => SpanOutcome::Failed,
            Err(_) => SpanOutcome::TimedOut,
        },
    );
    let inference = apply_inference(&mut report, outcome);
    StepRecord {
        report,
        inference,
        responded: true,
    }
}

/// Ends what a step began on a live timeline.
fn close(open: Option<OpenSpan>, outcome: SpanOutcome) {
    if let Some(open) = open {
        open.close(outcome);
    }
}

/// Draws an inference on its worker's lane, or where it was cut short on its source's lane.
fn record_inference(timeline: &Timeline, source: &Source, outcome: &InferenceOutcome) {
    let lane = source_lane(source.name());
    match outcome {
        Err(elapsed) => timeline.record_event(InstantEvent::new(
            &lane,
            inference_cut_short(*elapsed),
            EventKind::Timeout,
            timeline.elapsed(),
        )),
        Ok(Err(_)) => {}
        Ok(Ok((result, timing))) => timeline.record(
            Span::new(
                worker_lane(timing.worker_index),
                format!("infer {}", source.name()),
                Activity::Infer,
                timeline.offset(timing.started_at),
                timeline.offset(timing.finished_at),
            )
            .with_outcome(if result.is_ok() {
                SpanOutcome::Ok
            } else {
                SpanOutcome::Cancelled
            })
            .with_arg("source", source.name().to_owned())
            .with_arg("queue_wait_ms", millis(timing.queue_wait())),
        ),
    }
}

/// The answer rule, the same for every driver:
///
/// - a **required** source that did not answer: `failed`, "required source `kb` did not answer: ..." (or
///   "... had nothing for the question: ..." when it answered `no_result`);
/// - no inference at all: `failed`, "no source answered (weather: ...; news: ...)", "2 of 3 source(s)
///   answered, but no inference finished (...)" when the deadline cut every inference, "no source applies
///   to the question (...)" when every source was skipped, or "no source had anything for the question
///   (...)" when every source was skipped or answered `no_result`;
/// - otherwise the aggregated answer: `ok` when every source that was asked answered, `degraded` when some
///   did not. A `no_result` source counts as answered, like a skipped one is not missed: it was reached and
///   said, correctly, that it knows nothing of the question, which is no failure of the source.
pub fn answer(question: &Question, records: &[StepRecord]) -> Verdict {
    let failed = |why: String| Verdict {
        status: AnswerStatus::Failed,
        answer: None,
        error: Some(why),
    };
    if let Some(missing) = records
        .iter()
        .find(|record| record.report.required && record.report.status != SourceStatus::Ok)
    {
        let what = if missing.report.status == SourceStatus::NoResult {
            "had nothing for the question"
        } else {
            "did not answer"
        };
        return failed(format!(
            "required source `{}` {what}: {}",
            missing.report.name,
            missing.report.error.as_deref().unwrap_or("no answer")
        ));
    }
    let parts: Vec<(&str, &str, &Inference)> = records
        .iter()
        .filter_map(|record| {
            record.inference.as_ref().map(|inference| {
                (
                    record.report.name.as_str(),
                    record.report.topic.as_str(),
                    inference,
                )
            })
        })
        .collect();
    if parts.is_empty() {
        let reasons = reasons(records.iter().map(|record| &record.report));
        let all_skipped = records
            .iter()
            .all(|record| record.report.status == SourceStatus::Skipped);
        let nothing_to_say = records.iter().all(|record| {
            matches!(
                record.report.status,
                SourceStatus::Skipped | SourceStatus::NoResult
            )
        });
        let responded = records.iter().filter(|record| record.responded).count();
        return failed(if all_skipped {
            format!("no source applies to the question ({reasons})")
        } else if nothing_to_say {
            format!("no source had anything for the question ({reasons})")
        } else if responded > 0 {
            // The sources were there; the time ran out in inference: a different fix (more time, more workers).
            format!(
                "{responded} of {} source(s) answered, but no inference finished ({reasons})",
                records.len()
            )
        } else {
            format!("no source answered ({reasons})")
        });
    }
    let status = if records.iter().any(|record| is_missing(&record.report)) {
        AnswerStatus::Degraded
    } else {
        AnswerStatus::Ok
    };
    Verdict {
        status,
        answer: Some(aggregate_by_topic(question.as_str(), &parts).text),
        error: None,
    }
}

/// The report of a finished run: the [`answer`] rule applied to its records, with its timings.
pub fn report(question: &Question, records: Vec<StepRecord>, facts: RunFacts) -> AgentReport {
    let verdict = answer(question, &records);
    let ideal = match facts.mode {
        RunMode::Concurrent => ideal_concurrent(&records, facts.workers),
        RunMode::Sequential => ideal_sequential(&records),
    };
    let degraded = records.iter().any(|record| is_missing(&record.report));
    AgentReport {
        question: Some(question.to_string()),
        status: verdict.status,
        answer: verdict.answer,
        error: verdict.error,
        degraded,
        mode: facts.mode,
        elapsed_ms: millis(facts.elapsed),
        ideal_ms: millis(ideal),
        efficiency: efficiency(ideal, facts.elapsed),
        workers: facts.workers,
        deadline_ms: millis(facts.deadline),
        per_source_timeout_ms: millis(facts.per_source_timeout),
        sources: records.into_iter().map(|record| record.report).collect(),
    }
}

/// The sources that were asked and gave no answer, as `name: why; name: why` (empty when there are none).
pub fn missing_sources(report: &AgentReport) -> String {
    reasons(report.sources.iter().filter(|source| is_missing(source)))
}

/// Whether a source was asked and gave no answer (one that answered it had nothing is not missing).
fn is_missing(report: &SourceReport) -> bool {
    !matches!(
        report.status,
        SourceStatus::Ok | SourceStatus::Skipped | SourceStatus::NoResult
    )
}

/// `name: why; name: why` for these sources.
fn reasons<'a>(reports: impl Iterator<Item = &'a SourceReport>) -> String {
    reports
        .map(|report| {
            format!(
                "{}: {}",
                report.name,
                report.error.as_deref().unwrap_or("no answer")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The best schedule of the measured arrivals and inference times on `workers` cores.
fn ideal_concurrent(records: &[StepRecord], workers: usize) -> Duration {
    let jobs: Vec<MeasuredJob> = records
        .iter()
        .filter_map(|record| {
            let arrival = record.report.arrived_at_ms?;
            Some(MeasuredJob {
                arrival: Duration::from_secs_f64(arrival / 1000.0),
                cpu: Duration::from_secs_f64(record.report.infer_ms.unwrap_or(0.0) / 1000.0),
            })
        })
        .collect();
    ideal_makespan(&jobs, workers)
}

/// The sequential baseline ideally costs every fetch plus every inference.
fn ideal_sequential(records: &[StepRecord]) -> Duration {
    let total_ms: f64 = records
        .iter()
        .map(|record| record.report.fetch_ms.unwrap_or(0.0) + record.report.infer_ms.unwrap_or(0.0))
        .sum();
    Duration::from_secs_f64(total_ms / 1000.0)
}

/// A source's inference as the executor and the deadline left it: cut short by the deadline, failed in the
/// executor (a crashed worker, a shut-down pool), or run (to the end, or cancelled) on a worker.
type InferenceOutcome =
    Result<Result<(Result<Inference, InferError>, JobTiming), ExecutorError>, Elapsed>;

/// Records an inference's outcome in `report` (status, error, worker, CPU time, summary) and returns the
/// inference when there is one.
fn apply_inference(report: &mut SourceReport, outcome: InferenceOutcome) -> Option<Inference> {
    let (status, error, inference) = match outcome {
        Err(elapsed) => (
            SourceStatus::TimedOut,
            Some(inference_cut_short(elapsed)),
            None,
        ),
        Ok(Err(executor_error)) => (
            SourceStatus::Failed,
            Some(format!(
                "inference failed: {}",
                error_chain(&executor_error)
            )),
            None,
        ),
        Ok(Ok((result, timing))) => {
            report.worker = Some(timing.worker_index);
            report.infer_ms = Some(millis(timing.run_time()));
            match result {
                Ok(inference) => {
                    report.summary = Some(inference.summary.join(" "));
                    (SourceStatus::Ok, None, Some(inference))
                }
                Err(InferError::Cancelled { .. }) => (
                    SourceStatus::TimedOut,
                    Some("inference cancelled".to_owned()),
                    None,
                ),
            }
        }
    };
    report.status = status;
    report.error = error;
    inference
}

/// How a fetch that gave no response is reported: its status and why. `binding_bound` is the bound the source's
/// deadline came from, so an expired deadline reads as the per-source timeout or as the overall deadline, with
/// what the last failed attempt saw.
fn fetch_failure(error: &FetchError, binding_bound: ElapsedKind) -> (SourceStatus, String) {
    match error.kind() {
        FetchErrorKind::DeadlineExceeded => (
            SourceStatus::TimedOut,
            with_last_attempt(
                elapsed_message(Elapsed::from(binding_bound)),
                error.attempt_log(),
            ),
        ),
        // The engine's messages read after "failed to " (a bare "read a response body within the limit" reads
        // like success).
        FetchErrorKind::AttemptTimeout { .. } => (
            SourceStatus::TimedOut,
            format!("failed to {}", error_chain(error)),
        ),
        // Said as what happened, not as a failure to do something: the source was not asked.
        FetchErrorKind::CircuitOpen { .. } => {
            let open = format!(
                "not asked: {}",
                error
                    .kind()
                    .to_string()
                    .trim_start_matches("ask the source: ")
            );
            let message = match last_failure(error.attempt_log()) {
                // The circuit opened during this fetch's retries.
                Some(last) => format!(
                    "{open}; it opened after {} attempt(s) of this fetch, the last failed to {last}",
                    error.attempt_log().len()
                ),
                None => open,
            };
            (SourceStatus::CircuitOpen, message)
        }
        _ => (
            SourceStatus::Failed,
            format!("failed to {}", error_chain(error)),
        ),
    }
}

/// An error and its causes, `: `-separated, as one line. A cause whose text its parent already ends with is
/// not repeated: some errors print their source themselves (async-nats's "IO error: Connection refused" has the
/// I/O error as its source too), and the line once read "...: Connection refused: Connection refused".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

fn inference_cut_short(elapsed: Elapsed) -> String {
    format!("inference cut short: {}", elapsed_message(elapsed))
}

/// The timeline lane of a source.
pub fn source_lane(name: &str) -> String {
    format!("source {name}")
}

/// The timeline lane of an executor worker (numbered from 1 for people).
pub fn worker_lane(index: usize) -> String {
    format!("worker {}", index + 1)
}

/// `request` plus the extra query parameters configured for `source` (fault injection: `fault=hang`).
fn with_extra_query(
    mut request: SourceRequest,
    extra: &[(String, QueryPairs)],
    source: &str,
) -> SourceRequest {
    for (name, pairs) in extra {
        if name == source {
            request.query.extend(pairs.iter().cloned());
        }
    }
    request
}

/// What the last failed attempt saw (other than the deadline), if any attempt failed.
fn last_failure(attempts: &[AttemptRecord]) -> Option<&FetchErrorKind> {
    attempts
        .iter()
        .rev()
        .find_map(|attempt| match &attempt.outcome {
            AttemptOutcome::Failed { error, .. }
                if !matches!(error, FetchErrorKind::DeadlineExceeded) =>
            {
                Some(error)
            }
            _ => None,
        })
}

/// `message`, plus what the last failed attempt saw when there was one: "timed out" alone hides a 500.
fn with_last_attempt(message: String, attempts: &[AttemptRecord]) -> String {
    match last_failure(attempts) {
        Some(last) => format!(
            "{message} after {} attempt(s); last attempt failed to {last}",
            attempts.len()
        ),
        None => message,
    }
}

/// Which bound cut a call short, in words: "per-source timeout of 5s exceeded" or "overall deadline exceeded".
pub fn elapsed_message(elapsed: Elapsed) -> String {
    match elapsed {
        Elapsed::PerCallTimeout(timeout) => {
            format!(
                "per-source timeout of {} exceeded",
                humantime::format_duration(timeout)
            )
        }
        Elapsed::DeadlineExceeded => "overall deadline exceeded".to_owned(),
    }
}

/// Draws the fetch on the source's lane: one span per attempt (or one for the whole fetch when there is no
/// attempt log: a cache hit, or a fetch cut short), with retry and timeout markers.
fn record_fetch_span(
    timeline: Option<&Timeline>,
    lane: &str,
    request: &SourceRequest,
    started: Instant,
    ended: Instant,
    outcome: SpanOutcome,
    attempts: &[AttemptRecord],
) {
    let Some(timeline) = timeline else {
        return;
    };
    let name = format!("GET {}", request.path);
    if attempts.is_empty() {
        timeline.record(
            Span::new(
                lane,
                name,
                Activity::Fetch,
                timeline.offset(started.into_std()),
                timeline.offset(ended.into_std()),
            )
            .with_outcome(outcome)
            .with_arg("attempts", 0)
            .with_arg("cached", outcome == SpanOutcome::Ok),
        );
        return;
    }
    for attempt in attempts {
        let (attempt_outcome, status): (SpanOutcome, Value) = match &attempt.outcome {
            AttemptOutcome::Succeeded => (SpanOutcome::Ok, "ok".into()),
            AttemptOutcome::Abandoned => (
                SpanOutcome::Cancelled,
                "abandoned: the other request of the attempt answered first".into(),
            ),
            AttemptOutcome::Failed { error, .. } => {
                let kind = match error {
                    FetchErrorKind::AttemptTimeout { .. } | FetchErrorKind::DeadlineExceeded => {
                        SpanOutcome::TimedOut
                    }
                    _ => SpanOutcome::Failed,
                };
                (kind, error.to_string().into())
            }
            _ => (SpanOutcome::Failed, "unknown".into()),
        };
        let attempt_end = timeline.offset(attempt.ended.into_std());
        let attempt_start = timeline.offset(attempt.started.into_std());
        timeline.record(
            Span::new(
                lane,
                if attempt.hedge {
                    format!("{name} (hedge)")
                } else {
                    name.clone()
                },
                Activity::Fetch,
                attempt_start,
                attempt_end,
            )
            .with_outcome(attempt_outcome)
            .with_arg("attempt", attempt.number)
            .with_arg("hedge", attempt.hedge)
            .with_arg("status", status)
            .with_arg("cached", false),
        );
        if attempt.hedge {
            timeline.record_event(
                InstantEvent::new(
                    lane,
                    format!("hedge of attempt {}", attempt.number),
                    EventKind::Note,
                    attempt_start,
                )
                .with_arg("attempt", attempt.number),
            );
        }
        if let AttemptOutcome::Failed { next, .. } = &attempt.outcome {
            if attempt_outcome == SpanOutcome::TimedOut {
                timeline.record_event(
                    InstantEvent::new(
                        lane,
                        format!("attempt {} timed out", attempt.number),
                        EventKind::Timeout,
                        attempt_end,
                    )
                    .with_arg("attempt", attempt.number),
                );
            }
            if let RetryDecision::Retried { delay } = next {
                timeline.record_event(
                    InstantEvent::new(
                        lane,
                        // Whole milliseconds: "retry after 67ms", not "67ms 239us 725ns".
                        format!(
                            "retry after {}",
                            humantime::format_duration(Duration::from_millis(
                                u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
                            ))
                        ),
                        EventKind::Retry,
                        attempt_end,
                    )
                    .with_arg("attempt", attempt.number)
                    .with_arg("delay_ms", millis(*delay)),
                );
            }
        }
    }
}

/// Milliseconds as a float, rounded to microseconds (the schema's unit).
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source itself, as async-nats's connect error does.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "IO error: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_its_parent_already_printed_is_not_repeated() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = refused.to_string();
        let chain = error_chain(&Repeats(refused));
        assert_eq!(chain, format!("IO error: {text}"));
        let chain = error_chain(&std::io::Error::other(Repeats(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))));
        assert_eq!(chain.matches("timed out").count(), 1, "{chain}");
    }

    #[test]
    fn extra_query_applies_only_to_its_source() {
        let request = SourceRequest::new("/news").with_query("q", "rust");
        let extra = vec![
            (
                "news".to_owned(),
                vec![("fault".to_owned(), "hang".to_owned())],
            ),
            (
                "weather".to_owned(),
                vec![("fault".to_owned(), "error".to_owned())],
            ),
        ];
        let request = with_extra_query(request, &extra, "news");
        assert_eq!(
            request.query,
            vec![
                ("q".to_owned(), "rust".to_owned()),
                ("fault".to_owned(), "hang".to_owned())
            ]
        );
    }

    fn record(name: &str, status: SourceStatus, error: &str, required: bool) -> StepRecord {
        let source = Source::new(
            name,
            crate::sources::SourceKind::News,
            url::Url::parse("http://127.0.0.1:1").expect("url"),
        );
        let mut report = SourceReport::new_for(&source);
        report.status = status;
        report.error = Some(error.to_owned());
        report.required = required;
        StepRecord {
            report,
            inference: None,
            responded: false,
        }
    }

    #[test]
    fn sources_that_had_nothing_fail_the_answer_with_their_reasons() {
        let question = Question::new("Weather in Atlantis?").expect("valid");
        let records = [
            record(
                "weather",
                SourceStatus::NoResult,
                "Open-Meteo knows no place named \"Atlantis\"",
                false,
            ),
            record("news", SourceStatus::Skipped, "no keywords", false),
        ];
        let verdict = answer(&question, &records);
        assert_eq!(verdict.status, AnswerStatus::Failed);
        assert_eq!(
            verdict.error.as_deref(),
            Some(
                "no source had anything for the question (weather: Open-Meteo knows no place named \"Atlantis\"; news: no keywords)"
            )
        );
    }

    #[test]
    fn a_source_with_no_result_is_not_missing_but_a_required_one_fails_the_answer() {
        assert!(!is_missing(
            &record("kb", SourceStatus::NoResult, "zero hits", false).report
        ));
        assert!(is_missing(
            &record("kb", SourceStatus::Failed, "http 500", false).report
        ));
        let question = Question::new("What is Lyon?").expect("valid");
        let verdict = answer(
            &question,
            &[record(
                "wikipedia",
                SourceStatus::NoResult,
                "\"Lyon\" is ambiguous on Wikipedia (disambiguation page)",
                true,
            )],
        );
        assert_eq!(
            verdict.error.as_deref(),
            Some(
                "required source `wikipedia` had nothing for the question: \"Lyon\" is ambiguous on Wikipedia (disambiguation page)"
            )
        );
    }

    #[test]
    fn a_no_result_status_reads_snake_case() {
        assert_eq!(SourceStatus::NoResult.as_str(), "no_result");
        assert_eq!(
            serde_json::to_value(SourceStatus::NoResult).expect("serializes"),
            "no_result"
        );
    }

    /// A hedged attempt is drawn as both of its requests: the hedge that won, the first one abandoned, and a
    /// marker where the hedge was sent.
    #[test]
    fn a_hedged_attempt_shows_both_requests_and_which_won() {
        let start = std::time::Instant::now();
        let timeline = Timeline::starting_at(start);
        let at = |ms: u64| Instant::from_std(start + Duration::from_millis(ms));
        let attempts = [
            AttemptRecord {
                number: 1,
                hedge: true,
                started: at(25),
                ended: at(45),
                outcome: AttemptOutcome::Succeeded,
            },
            AttemptRecord {
                number: 1,
                hedge: false,
                started: at(0),
                ended: at(45),
                outcome: AttemptOutcome::Abandoned,
            },
        ];
        record_fetch_span(
            Some(&timeline),
            "source news",
            &SourceRequest::new("/news"),
            at(0),
            at(45),
            SpanOutcome::Ok,
            &attempts,
        );
        let spans: Vec<(String, SpanOutcome, Value)> = timeline
            .spans()
            .into_iter()
            .map(|span| {
                let hedge = span.args.get("hedge").cloned().unwrap_or(Value::Null);
                (span.name, span.outcome, hedge)
            })
            .collect();
        assert_eq!(
            spans,
            vec![
                (
                    "GET /news (hedge)".to_owned(),
                    SpanOutcome::Ok,
                    Value::Bool(true)
                ),
                (
                    "GET /news".to_owned(),
                    SpanOutcome::Cancelled,
                    Value::Bool(false)
                ),
            ]
        );
        let events: Vec<String> = timeline
            .events()
            .into_iter()
            .map(|event| event.name)
            .collect();
        assert_eq!(events, vec!["hedge of attempt 1"]);
    }

    #[test]
    fn elapsed_messages_tell_the_bounds_apart() {
        assert_eq!(
            elapsed_message(Elapsed::PerCallTimeout(Duration::from_secs(5))),
            "per-source timeout of 5s exceeded"
        );
        assert_eq!(
            elapsed_message(Elapsed::from(ElapsedKind::Deadline)),
            "overall deadline exceeded"
        );
    }
}
