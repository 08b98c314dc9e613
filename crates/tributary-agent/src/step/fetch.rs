//! The fetch half of a step: one source within `min(per-source timeout, deadline)`, its requests one after the
//! other when its kind needs two, and how a fetch that gave no response is reported.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;
use tributary::group::{Deadline, Elapsed, ElapsedKind, with_timeout};
use tributary::source::{
    AttemptOutcome, AttemptRecord, CallFailure, FetchError, FetchErrorKind, Fetched, SourceRequest,
    SourceSpec,
};
use tributary::trace::{Activity, EventKind, InstantEvent, OpenSpan, Outcome as SpanOutcome};

use super::answer::millis;
use super::messages::{elapsed_message, error_chain};
use super::timeline::{close, record_fetch_span, request_name, source_lane};
use super::{QueryPairs, StepContext};
use crate::plan::TOOL_ARGUMENTS;
use crate::plan::{Action, Step};
use crate::protocols::{self, Reading};
use crate::report::{SourceFailure, SourceReport, SourceStatus};
use crate::sources::{McpTool, Source};

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
/// A source that answers is left `skipped` in its report with its body attached:
/// [`infer_source`](super::infer_source) settles it. A kind that needs two requests (Open-Meteo, Wikipedia:
/// [`crate::protocols`]) makes both here, one after the other, inside the same per-source deadline, each through
/// [`SourceClient::fetch`](tributary::source::SourceClient::fetch) and drawn on the source's lane; a source that
/// answers it has nothing for the question is reported `no_result`.
pub async fn fetch_source(context: &StepContext, step: Step, deadline: Deadline) -> Fetch {
    let source = step.source;
    let mut report = SourceReport::new_for(&source);
    let request = match step.action {
        Action::Skip { reason } => {
            report.settle(SourceStatus::Skipped, SourceFailure::Skipped, reason);
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
                    in_flight.name,
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
            report.settle(SourceStatus::TimedOut, elapsed_failure(elapsed), message);
            Fetch::unanswered(source, report)
        }
        Ok(Chain::Broken(why)) => {
            report.settle(SourceStatus::Failed, SourceFailure::Protocol, why);
            Fetch::unanswered(source, report)
        }
        Ok(Chain::Failed(error)) => {
            let failed = fetch_failure(&error, binding_bound);
            report.settle(failed.status, failed.failure, failed.message);
            report.http_status = failed.http_status;
            Fetch::unanswered(source, report)
        }
        Ok(Chain::NoResult(why)) => {
            report.cached = progress.all_cached;
            report.settle(SourceStatus::NoResult, SourceFailure::NoResult, why);
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
    /// What the request is called on the lane.
    name: String,
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
        let name = request_name(source, &request);
        progress.in_flight = Some(InFlight {
            name: name.clone(),
            started,
            open: context
                .timeline
                .as_ref()
                .map(|timeline| timeline.begin(lane, name.clone(), Activity::Fetch)),
        });
        // Boxed: the engine's fetch future is large (retries, hedges, the cache), and a chain of two held
        // inline overflowed a test thread's stack once the step's future was nested in a run's.
        let fetched = match &source.mcp {
            Some(tool) => Box::pin(call_tool(context, &spec, tool, &request, deadline)).await,
            None => Box::pin(context.client.fetch(&spec, &request, deadline)).await,
        };
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
                    name,
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
            name,
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

/// One call of an `mcp` source's tool through the engine's client (the breaker, the rate limit, the attempt
/// timeout, the attempt log), sent again (retried, hedged) or kept in the cache only when the tool says it is
/// read-only or idempotent.
async fn call_tool(
    context: &StepContext,
    spec: &SourceSpec,
    tool: &McpTool,
    request: &SourceRequest,
    deadline: Deadline,
) -> Result<Fetched, FetchError> {
    let traits = context
        .mcp
        .traits(&spec.name, tool)
        .await
        .map_err(|kind| FetchError::new(&spec.name, kind, Vec::new()))?;
    let mut spec = spec.clone();
    if !traits.repeatable() {
        spec.retries = 0;
        spec.hedge = None;
        spec.cache_ttl = None;
    }
    let arguments =
        match protocols::query_value(request, TOOL_ARGUMENTS).map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Object(arguments))) => arguments,
            _ => serde_json::Map::new(),
        };
    let max_bytes = spec.max_body_bytes;
    let call = || {
        context
            .mcp
            .call(&spec.name, tool, arguments.clone(), max_bytes)
    };
    context.client.call(&spec, request, deadline, &call).await
}

/// How a fetch that gave no response is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FetchFailure {
    status: SourceStatus,
    failure: SourceFailure,
    message: String,
    /// The status the source answered with, when that is the failure.
    http_status: Option<u16>,
}

/// How a fetch that gave no response is reported: its status, its kind and why. `binding_bound` is the bound the
/// source's deadline came from, so an expired deadline reads (and is kinded) as the per-source timeout or as the
/// overall deadline, with what the last failed attempt saw.
fn fetch_failure(error: &FetchError, binding_bound: ElapsedKind) -> FetchFailure {
    let failed = |status, failure, message| FetchFailure {
        status,
        failure,
        message,
        http_status: None,
    };
    match error.kind() {
        FetchErrorKind::DeadlineExceeded => {
            let elapsed = Elapsed::from(binding_bound);
            failed(
                SourceStatus::TimedOut,
                elapsed_failure(elapsed),
                with_last_attempt(elapsed_message(elapsed), error.attempt_log()),
            )
        }
        // The engine's messages read after "failed to " (a bare "read a response body within the limit" reads
        // like success).
        FetchErrorKind::AttemptTimeout { .. } => failed(
            SourceStatus::TimedOut,
            SourceFailure::TimedOut,
            format!("failed to {}", error_chain(error)),
        ),
        // Said as what happened, not as a failure to do something: the source was not asked.
        kind @ FetchErrorKind::CircuitOpen { .. } => {
            let open = format!(
                "not asked: its circuit is open after repeated failures (next probe {})",
                kind.next_probe().unwrap_or_default()
            );
            let message = match last_failure(error.attempt_log()) {
                // The circuit opened during this fetch's retries.
                Some(last) => format!(
                    "{open}; it opened after {} attempt(s) of this fetch, the last failed to {last}",
                    error.attempt_log().len()
                ),
                None => open,
            };
            failed(
                SourceStatus::CircuitOpen,
                SourceFailure::CircuitOpen,
                message,
            )
        }
        FetchErrorKind::HttpStatus { status } => FetchFailure {
            http_status: Some(status.as_u16()),
            ..failed(
                SourceStatus::Failed,
                SourceFailure::HttpStatus,
                format!("failed to {}", error_chain(error)),
            )
        },
        kind => failed(
            SourceStatus::Failed,
            failure_of(kind),
            format!("failed to {}", error_chain(error)),
        ),
    }
}

/// The kind of a fetch failure that is not a bound, the breaker or a status ([`fetch_failure`] kinds those, with
/// what they need to know).
fn failure_of(kind: &FetchErrorKind) -> SourceFailure {
    match kind {
        FetchErrorKind::BodyTooLarge { .. } => SourceFailure::BodyTooLarge,
        FetchErrorKind::MalformedJson { .. } => SourceFailure::Malformed,
        FetchErrorKind::RateLimited { .. } => SourceFailure::RateLimited,
        // reqwest says whether the connection could be made at all (a name that does not resolve, a refused or
        // unreachable host): the user's fix is the address or the network, not more time.
        FetchErrorKind::Transport(error) if error.is_connect() => SourceFailure::Connect,
        FetchErrorKind::Transport(_) => SourceFailure::Transport,
        FetchErrorKind::Call { failure, .. } => match failure {
            CallFailure::Connect => SourceFailure::Connect,
            CallFailure::Transport => SourceFailure::Transport,
            CallFailure::Malformed => SourceFailure::Malformed,
            CallFailure::Failed | CallFailure::Refused => SourceFailure::ToolError,
            _ => SourceFailure::Other,
        },
        // A kind the engine added after this version.
        _ => SourceFailure::Other,
    }
}

/// The kind of a call cut short by a bound: the source's own (its per-source timeout), or the overall deadline.
pub(super) fn elapsed_failure(elapsed: Elapsed) -> SourceFailure {
    match elapsed {
        Elapsed::PerCallTimeout(_) => SourceFailure::TimedOut,
        Elapsed::DeadlineExceeded => SourceFailure::Deadline,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
