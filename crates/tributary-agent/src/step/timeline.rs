//! How a step is drawn on the question's timeline: a fetch's attempts, retries, hedges and timeouts on the
//! source's lane, an inference on its worker's lane, and the end of what a step began on a live timeline.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tributary::source::{
    AttemptOutcome, AttemptRecord, FetchErrorKind, RetryDecision, SourceRequest,
};
use tributary::trace::{
    Activity, EventKind, InstantEvent, OpenSpan, Outcome as SpanOutcome, Span, Timeline,
};

use super::answer::millis;
use super::infer::InferenceOutcome;
use super::messages::inference_cut_short;
use crate::sources::Source;

/// Ends what a step began on a live timeline.
pub(super) fn close(open: Option<OpenSpan>, outcome: SpanOutcome) {
    if let Some(open) = open {
        open.close(outcome);
    }
}

/// Draws an inference on its worker's lane, or where it was cut short on its source's lane.
pub(super) fn record_inference(timeline: &Timeline, source: &Source, outcome: &InferenceOutcome) {
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

/// Draws an inference taken from the [`InferenceCache`](super::InferenceCache): an instant on the source's lane,
/// marked cached, since no worker ran it.
pub(super) fn record_kept_inference(timeline: &Timeline, source: &Source) {
    let now = timeline.elapsed();
    timeline.record(
        Span::new(
            source_lane(source.name()),
            format!("infer {} (cached)", source.name()),
            Activity::Infer,
            now,
            now,
        )
        .with_outcome(SpanOutcome::Ok)
        .with_arg("source", source.name().to_owned())
        .with_arg("cached", true),
    );
}

/// The timeline lane of a source.
pub fn source_lane(name: &str) -> String {
    format!("source {name}")
}

/// The timeline lane of an executor worker (numbered from 1 for people).
pub fn worker_lane(index: usize) -> String {
    format!("worker {}", index + 1)
}

/// Draws the fetch on the source's lane: one span per attempt (or one for the whole fetch when there is no
/// attempt log: a cache hit, or a fetch cut short), with retry and timeout markers.
pub(super) fn record_fetch_span(
    timeline: Option<&Timeline>,
    lane: &str,
    name: String,
    started: Instant,
    ended: Instant,
    outcome: SpanOutcome,
    attempts: &[AttemptRecord],
) {
    record_requests(timeline, lane, name, (started, ended), outcome, attempts);
}

/// What a request of `source` is called on its lane: `GET /news`, or an `mcp` source's `call search`.
pub(super) fn request_name(source: &Source, request: &SourceRequest) -> String {
    match &source.mcp {
        Some(tool) => format!("call {}", tool.tool),
        None => format!("GET {}", request.path),
    }
}

/// Draws requests named `name` on `lane`: one span per attempt (or one for the whole, from `started` to `ended`,
/// when there is no attempt log), with retry and timeout markers.
pub(super) fn record_requests(
    timeline: Option<&Timeline>,
    lane: &str,
    name: String,
    (started, ended): (Instant, Instant),
    outcome: SpanOutcome,
    attempts: &[AttemptRecord],
) {
    let Some(timeline) = timeline else {
        return;
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "GET /news".to_owned(),
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
}
