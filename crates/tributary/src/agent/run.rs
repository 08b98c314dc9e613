//! Running a plan: the concurrent agent and its sequential baseline, side by side.
//!
//! Both run the same [`run_step`] for every source (fetch, then inference on the executor, recording the
//! timeline);
//! they differ only in how steps are scheduled:
//!
//! - [`run_concurrent`]: every step at once under [`settle`], so one source failing or hanging never cancels the
//!   others, and each response goes to the executor the moment it arrives;
//! - [`run_sequential`]: one step after another (fetch, infer, fetch, infer, ...): the chapter's baseline.
//!
//! Every step bounds itself: its fetch by `min(per-source timeout, deadline)`, its inference by the deadline. The
//! settle deadline (the overall deadline plus [`BACKSTOP_GRACE`]) is only a backstop, so an answer always comes
//! back within the deadline plus a few milliseconds, whatever the sources do.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::agent::extract::document_for;
use crate::agent::plan::{Action, Step};
use crate::agent::question::Question;
use crate::agent::report::{SourceReport, SourceStatus};
use crate::group::{Deadline, Elapsed, ElapsedKind, Outcome, SettleConfig, settle, with_timeout};
use crate::infer::{InferError, Inference, InferenceCost};
use crate::pool::{Executor, ExecutorError, InferenceJob, JobTiming};
use crate::source::{
    AttemptOutcome, FetchError, FetchErrorKind, Fetched, RetryDecision, SourceClient,
    SourceRequest, SourceSpec,
};
use crate::trace::{Activity, EventKind, InstantEvent, Outcome as SpanOutcome, Span, Timeline};

/// How long after the deadline the settle backstop gives up on a step that failed to bound itself.
pub const BACKSTOP_GRACE: Duration = Duration::from_millis(50);

/// Query parameters added to a request, as `(key, value)` pairs.
pub type QueryPairs = Vec<(String, String)>;

/// Extra query parameters per source name, e.g. `("news", [("fault", "hang")])` for fault injection.
pub type ExtraQuery = Vec<(String, QueryPairs)>;

/// What one step produced: its report line, and its inference when it got that far.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub report: SourceReport,
    pub inference: Option<Inference>,
}

impl StepRecord {
    /// The record of a source that gave no inference, with its status and why.
    fn unanswered(
        mut report: SourceReport,
        status: SourceStatus,
        error: impl Into<String>,
    ) -> Self {
        report.status = status;
        report.error = Some(error.into());
        Self {
            report,
            inference: None,
        }
    }
}

/// Everything a step needs, shared by all steps of a run.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub client: SourceClient,
    pub executor: Executor,
    pub question: Question,
    pub per_source_timeout: Duration,
    pub inference_cost: InferenceCost,
    pub deadline: Deadline,
    pub started: Instant,
    pub timeline: Timeline,
    /// Extra query parameters for a source by name (fault injection: `fault=hang`, `latency_ms=2000`).
    pub extra_query: Arc<ExtraQuery>,
}

/// Runs every step at once; one report per step, in plan order.
pub async fn run_concurrent(context: &StepContext, steps: Vec<Step>) -> Vec<StepRecord> {
    let specs: Vec<SourceSpec> = steps.iter().map(|step| step.source.clone()).collect();
    let tasks = steps.into_iter().map(|step| {
        let context = context.clone();
        async move { Ok::<_, Infallible>(run_step(&context, step).await) }
    });
    let backstop = match context.deadline.instant() {
        Some(at) => Deadline::at(at + BACKSTOP_GRACE),
        None => Deadline::none(),
    };
    let outcomes = settle(SettleConfig::new().deadline(backstop), tasks).await;
    outcomes
        .into_iter()
        .zip(specs)
        .map(|(outcome, spec)| match outcome {
            Outcome::Ok(record) => record,
            Outcome::Failed(never) => match never {},
            Outcome::TimedOut(_) => unfinished(
                context,
                &spec,
                SourceStatus::TimedOut,
                "overall deadline exceeded",
            ),
            Outcome::Cancelled => unfinished(context, &spec, SourceStatus::Failed, "cancelled"),
            Outcome::Panicked(message) => unfinished(
                context,
                &spec,
                SourceStatus::Failed,
                &format!("internal error: the step panicked: {message}"),
            ),
        })
        .collect()
}

/// Runs the steps one after another, each waiting for the previous one's inference: the sequential baseline.
pub async fn run_sequential(context: &StepContext, steps: Vec<Step>) -> Vec<StepRecord> {
    let mut records = Vec::with_capacity(steps.len());
    for step in steps {
        records.push(run_step(context, step).await);
    }
    records
}

/// One source: fetch within `min(per-source timeout, deadline)`, then infer on the executor within the deadline.
pub async fn run_step(context: &StepContext, step: Step) -> StepRecord {
    let spec = step.source;
    let mut report = SourceReport::new_for(&spec);
    let request = match step.action {
        Action::Skip { reason } => {
            return StepRecord::unanswered(report, SourceStatus::Skipped, reason);
        }
        Action::Fetch(request) => {
            with_extra_query(request, context.extra_query.as_slice(), &spec.name)
        }
    };
    let lane = source_lane(&spec.name);

    let fetch_started = Instant::now();
    let (source_deadline, binding_bound) =
        context.deadline.narrow(Some(context.per_source_timeout));
    let fetched = with_timeout(
        Some(context.per_source_timeout),
        context.deadline,
        context.client.fetch(&spec, &request, source_deadline),
    )
    .await;
    let fetch_ended = Instant::now();
    match &fetched {
        Ok(Ok(fetched)) => {
            tracing::debug!(source = %spec.name, attempts = fetched.attempts, cached = fetched.cached, elapsed = ?(fetch_ended - fetch_started), "fetched")
        }
        Ok(Err(error)) => {
            tracing::info!(source = %spec.name, attempts = error.attempts(), error = %error_chain(error), "fetch failed")
        }
        Err(elapsed) => tracing::info!(source = %spec.name, %elapsed, "fetch cut short"),
    }
    report.fetch_ms = Some(millis(fetch_ended - fetch_started));
    report.arrived_at_ms = Some(millis(fetch_ended - context.started));

    let fetched: Fetched = match fetched {
        Err(elapsed) => {
            record_fetch_span(
                context,
                &lane,
                &request,
                fetch_started,
                fetch_ended,
                SpanOutcome::TimedOut,
                &[],
            );
            let message = elapsed_message(elapsed);
            context.timeline.record_event(InstantEvent::new(
                &lane,
                message.clone(),
                EventKind::Timeout,
                context.timeline.offset(fetch_ended.into_std()),
            ));
            return StepRecord::unanswered(report, SourceStatus::TimedOut, message);
        }
        Ok(Err(error)) => {
            report.attempts = error.attempts();
            let (status, message) = fetch_failure(&error, binding_bound);
            let outcome = if status == SourceStatus::TimedOut {
                SpanOutcome::TimedOut
            } else {
                SpanOutcome::Failed
            };
            record_fetch_span(
                context,
                &lane,
                &request,
                fetch_started,
                fetch_ended,
                outcome,
                error.attempt_log(),
            );
            return StepRecord::unanswered(report, status, message);
        }
        Ok(Ok(fetched)) => fetched,
    };
    report.attempts = fetched.attempts;
    report.cached = fetched.cached;
    record_fetch_span(
        context,
        &lane,
        &request,
        fetch_started,
        fetch_ended,
        SpanOutcome::Ok,
        &fetched.attempt_log,
    );

    let document = document_for(&spec, &fetched.body);
    let question = context.question.as_str().to_owned();
    let cost = context.inference_cost;
    let job = context.executor.run_inference(InferenceJob {
        question,
        document,
        cost,
    });
    let outcome = with_timeout(None, context.deadline, job).await;
    match &outcome {
        Err(elapsed) => context.timeline.record_event(InstantEvent::new(
            &lane,
            inference_cut_short(*elapsed),
            EventKind::Timeout,
            context.timeline.elapsed(),
        )),
        Ok(Err(_)) => {}
        Ok(Ok((result, timing))) => context.timeline.record(
            Span::new(
                worker_lane(timing.worker_index),
                format!("infer {}", spec.name),
                Activity::Infer,
                context.timeline.offset(timing.started_at),
                context.timeline.offset(timing.finished_at),
            )
            .with_outcome(if result.is_ok() {
                SpanOutcome::Ok
            } else {
                SpanOutcome::Cancelled
            })
            .with_arg("source", spec.name.clone())
            .with_arg("queue_wait_ms", millis(timing.queue_wait())),
        ),
    }
    let inference = apply_inference(&mut report, outcome);
    StepRecord { report, inference }
}

/// A source's inference as the executor and the deadline left it: cut short by the deadline, failed in the
/// executor (a crashed worker, a shut-down pool), or run (to the end, or cancelled) on a worker.
pub type InferenceOutcome =
    Result<Result<(Result<Inference, InferError>, JobTiming), ExecutorError>, Elapsed>;

/// Records an inference's outcome in `report` (status, error, worker, CPU time, summary) and returns the
/// inference when there is one. Shared by the agent's step and the batch pipeline's infer stage.
pub fn apply_inference(report: &mut SourceReport, outcome: InferenceOutcome) -> Option<Inference> {
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
pub fn fetch_failure(error: &FetchError, binding_bound: ElapsedKind) -> (SourceStatus, String) {
    match error.kind() {
        FetchErrorKind::DeadlineExceeded => (
            SourceStatus::TimedOut,
            with_last_attempt(
                elapsed_message(Elapsed::from(binding_bound)),
                error.attempt_log(),
            ),
        ),
        FetchErrorKind::AttemptTimeout { .. } => (SourceStatus::TimedOut, error_chain(error)),
        _ => (SourceStatus::Failed, error_chain(error)),
    }
}

/// An error and its causes, `: `-separated, as one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
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

fn unfinished(
    context: &StepContext,
    spec: &SourceSpec,
    status: SourceStatus,
    message: &str,
) -> StepRecord {
    let mut report = SourceReport::new_for(spec);
    report.arrived_at_ms = Some(millis(Instant::now() - context.started));
    StepRecord::unanswered(report, status, message)
}

/// `request` plus the extra query parameters configured for `source` (fault injection: `fault=hang`).
pub fn with_extra_query(
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

/// `message`, plus what the last failed attempt saw when there was one: "timed out" alone hides a 500.
fn with_last_attempt(message: String, attempts: &[crate::source::AttemptRecord]) -> String {
    match attempts
        .iter()
        .rev()
        .find_map(|attempt| match &attempt.outcome {
            AttemptOutcome::Failed { error, .. }
                if !matches!(error, FetchErrorKind::DeadlineExceeded) =>
            {
                Some(error)
            }
            _ => None,
        }) {
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
    context: &StepContext,
    lane: &str,
    request: &SourceRequest,
    started: Instant,
    ended: Instant,
    outcome: SpanOutcome,
    attempts: &[crate::source::AttemptRecord],
) {
    let timeline = &context.timeline;
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
            AttemptOutcome::Failed { error, .. } => {
                let kind = match error {
                    FetchErrorKind::AttemptTimeout { .. } | FetchErrorKind::DeadlineExceeded => {
                        SpanOutcome::TimedOut
                    }
                    _ => SpanOutcome::Failed,
                };
                (kind, error.to_string().into())
            }
        };
        let attempt_end = timeline.offset(attempt.ended.into_std());
        timeline.record(
            Span::new(
                lane,
                name.clone(),
                Activity::Fetch,
                timeline.offset(attempt.started.into_std()),
                attempt_end,
            )
            .with_outcome(attempt_outcome)
            .with_arg("attempt", attempt.number)
            .with_arg("status", status)
            .with_arg("cached", false),
        );
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
                        format!("retry after {}", humantime::format_duration(*delay)),
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
    use crate::group::ElapsedKind;

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
