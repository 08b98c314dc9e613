//! `timeouts`: a hanging call cut at its timeout; nested timeouts, where the sooner bound wins whichever layer it
//! belongs to; and retries with exponential backoff (full jitter) against a flaky service.
//!
//! The hanging call is a real request the simulated service never answers (`fault=hang`). A nested timeout is
//! written the tributary way: the outer layer is a [`Deadline`] carried down, the inner call narrows it with its
//! own timeout through [`with_timeout`], and the error says which of the two fired ([`Elapsed`]). The flaky
//! service fails a share of its requests with an HTTP 500, and the client's attempt log shows every attempt and
//! the backoff before the next.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use tributary::group::{Deadline, Elapsed, with_timeout};
use tributary::source::{AttemptOutcome, AttemptRecord, BackoffPolicy, ClientOptions};
use tributary::trace::{Activity, EventKind, InstantEvent, Outcome as SpanOutcome, Span, Timeline};
use tributary_sim::{Fault, Latency, Service, ServiceBehavior, SimConfig};

use super::experiment::{Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis};
use super::services::{LabServices, request};
use super::verdict::{Verdict, timer_tolerance};

/// The share of the flaky service's requests that fail.
const FLAKY_FAILURE_PROBABILITY: f64 = 0.6;
/// Retries the flaky fetch may use: with a 60 % failure rate, all seven attempts fail 2.8 % of the time.
const FLAKY_RETRIES: u32 = 6;
/// The simulator's seed: with it, the flaky service's first two answers are failures (its draws are
/// reproducible for one sequential client), so the timeline always shows retries.
const FLAKY_SEED: u64 = 7;

/// The figures of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// A hanging call with a timeout.
    pub hanging: TimeoutFigure,
    /// An inner timeout longer than the outer one: the outer fires first.
    pub outer_sooner: TimeoutFigure,
    /// An inner timeout shorter than the outer one: the inner fires first.
    pub inner_sooner: TimeoutFigure,
    /// Retries against the flaky service.
    pub retry: RetryFigures,
}

/// One timed-out call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeoutFigure {
    /// The outer bound, if any.
    pub outer_ms: Option<f64>,
    /// The call's own timeout.
    pub inner_ms: f64,
    /// When the call ended, since it started.
    pub ended_at_ms: f64,
    /// Which bound cut it: `inner`, `outer`, or `none` if the call returned.
    pub winner: Winner,
    /// The error, as text.
    pub error: String,
}

/// Which bound cut a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    /// The call's own timeout.
    Inner,
    /// The deadline it inherited.
    Outer,
    /// Neither: the call returned.
    None,
}

/// What the retrying fetch did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryFigures {
    /// The share of requests the service fails.
    pub failure_probability: f64,
    /// The first backoff delay's upper bound; each later one doubles, up to `cap_ms`.
    pub base_ms: f64,
    /// No drawn delay exceeds this.
    pub cap_ms: f64,
    /// Whether the fetch got an answer in the end.
    pub succeeded: bool,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptFigure>,
    /// From the first attempt to the answer (or the last failure).
    pub total_ms: f64,
}

/// One attempt of the retrying fetch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptFigure {
    /// 1 for the first attempt.
    pub number: u32,
    /// Since the fetch started.
    pub started_ms: f64,
    /// How long it took.
    pub ms: f64,
    /// `ok`, or the error.
    pub outcome: String,
    /// The backoff slept after it, if another attempt followed.
    pub delay_after_ms: Option<f64>,
    /// The upper bound that delay was drawn under: `min(cap, base × 2^retry)`.
    pub delay_bound_ms: Option<f64>,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "timeouts",
    title: "Timeouts, nested timeouts and retries",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let short = config.duration(1000, 200);
    let long = config.duration(2000, 400);
    let backoff = BackoffPolicy {
        base: config.duration(100, 40),
        cap: config.duration(2000, 500),
    };
    let mut scenario = SimConfig::instant();
    scenario.seed = FLAKY_SEED;
    *scenario.behavior_mut(Service::News) =
        ServiceBehavior::healthy(Latency::Fixed(config.duration(60, 20)))
            .with_fault(Fault::Error, FLAKY_FAILURE_PROBABILITY);
    let options = ClientOptions::default().with_backoff(backoff);
    let services = LabServices::start_with_client(scenario, options).await?;
    let timeline = Timeline::new();
    timeline.set_lane_order(&["hanging call", "outer sooner", "inner sooner", "flaky news"]);

    let hanging = hang_within(&services, &timeline, "hanging call", None, short).await;
    let outer_sooner = hang_within(&services, &timeline, "outer sooner", Some(short), long).await;
    let inner_sooner = hang_within(&services, &timeline, "inner sooner", Some(long), short).await;
    let retry = retry_flaky(&services, &timeline, backoff).await;
    services.shutdown().await;

    let measured = Measured {
        hanging,
        outer_sooner,
        inner_sooner,
        retry,
    };
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "A call to a service that never answers, with a {short} ms timeout; the same call with a {long} ms \
             timeout inside a {short} ms deadline, then a {short} ms timeout inside a {long} ms deadline; then a \
             fetch from a service that fails {:.0}% of its requests, retried up to {FLAKY_RETRIES} times with \
             full-jitter exponential backoff (base {} ms).",
            FLAKY_FAILURE_PROBABILITY * 100.0,
            backoff.base.as_millis(),
            short = short.as_millis(),
            long = long.as_millis(),
        ),
        "A hanging call ends at its timeout; with nested bounds the sooner one fires, whichever layer it \
         belongs to, and the error says which; retries back off exponentially (each delay within its doubling \
         bound) and the flaky fetch succeeds.",
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: each cut call ended at the bound that should win, on time; the flaky fetch succeeded after at
/// least one retry, every delay within its doubling bound.
pub fn judge(measured: &Measured) -> Verdict {
    let cut = |label: &str, figure: &TimeoutFigure, expected: Winner| {
        let bound = match expected {
            Winner::Outer => figure.outer_ms.unwrap_or(figure.inner_ms),
            Winner::Inner | Winner::None => figure.inner_ms,
        };
        let on_time = figure.ended_at_ms >= bound - 1.0
            && figure.ended_at_ms <= bound + timer_tolerance(bound);
        Verdict::check(
            figure.winner == expected && on_time,
            format!(
                "{label}: cut by the {:?} bound at {:.0} ms (expected the {expected:?} bound at {bound:.0} ms, \
                 +{:.0} ms at most)",
                figure.winner,
                figure.ended_at_ms,
                timer_tolerance(bound)
            )
            .to_lowercase(),
        )
    };
    let retry = &measured.retry;
    let delays_within_bounds = retry.attempts.iter().all(|attempt| {
        match (attempt.delay_after_ms, attempt.delay_bound_ms) {
            (Some(delay), Some(bound)) => delay <= bound + 0.001,
            _ => true,
        }
    });
    let delays: Vec<String> = retry
        .attempts
        .iter()
        .filter_map(|attempt| {
            Some(format!(
                "{:.0}/{:.0}",
                attempt.delay_after_ms?, attempt.delay_bound_ms?
            ))
        })
        .collect();
    let retried = Verdict::check(
        retry.succeeded && retry.attempts.len() >= 2 && delays_within_bounds,
        format!(
            "flaky fetch {} after {} attempt(s), delays/bounds {} ms",
            if retry.succeeded {
                "succeeded"
            } else {
                "failed"
            },
            retry.attempts.len(),
            if delays.is_empty() {
                "none".to_owned()
            } else {
                delays.join(", ")
            },
        ),
    );
    Verdict::all([
        cut("hanging call", &measured.hanging, Winner::Inner),
        cut(
            "inner 2x inside outer 1x",
            &measured.outer_sooner,
            Winner::Outer,
        ),
        cut(
            "inner 1x inside outer 2x",
            &measured.inner_sooner,
            Winner::Inner,
        ),
        retried,
    ])
}

/// A call that hangs, bounded by `timeout` inside the `outer` deadline (if any).
async fn hang_within(
    services: &LabServices,
    timeline: &Timeline,
    lane: &str,
    outer: Option<Duration>,
    timeout: Duration,
) -> TimeoutFigure {
    let spec = services.spec(Service::KnowledgeBase);
    let hanging = request(Service::KnowledgeBase, 0, None, Some("hang"));
    let started = Instant::now();
    let outer_deadline = outer.map_or(Deadline::none(), Deadline::after);
    let mut span = timeline.start_span(lane, "GET /kb/search (hangs)", Activity::Fetch);
    span.set_arg("timeout_ms", millis(timeout));
    // The outer layer bounds the inner one; the inner call narrows the deadline it was given.
    let result = with_timeout(None, outer_deadline, async {
        with_timeout(
            Some(timeout),
            outer_deadline,
            services.fetch(&spec, &hanging, Deadline::none()),
        )
        .await
    })
    .await;
    let ended_at = started.elapsed();
    let (winner, error) = match result {
        Err(elapsed) | Ok(Err(elapsed)) => (winner_of(elapsed), elapsed.to_string()),
        Ok(Ok(Ok(_))) => (Winner::None, "the call returned".to_owned()),
        Ok(Ok(Err(error))) => (Winner::None, tributary_agent::error_chain(&error)),
    };
    span.finish(if winner == Winner::None {
        SpanOutcome::Failed
    } else {
        SpanOutcome::TimedOut
    });
    timeline.event(
        lane,
        format!("{error} ({winner:?} bound)"),
        EventKind::Timeout,
    );
    TimeoutFigure {
        outer_ms: outer.map(millis),
        inner_ms: millis(timeout),
        ended_at_ms: millis(ended_at),
        winner,
        error,
    }
}

fn winner_of(elapsed: Elapsed) -> Winner {
    match elapsed {
        Elapsed::PerCallTimeout(_) => Winner::Inner,
        Elapsed::DeadlineExceeded => Winner::Outer,
    }
}

/// One fetch from the flaky service, with retries; every attempt and backoff drawn on the timeline.
async fn retry_flaky(
    services: &LabServices,
    timeline: &Timeline,
    backoff: BackoffPolicy,
) -> RetryFigures {
    let mut spec = services.spec(Service::News);
    spec.retries = FLAKY_RETRIES;
    spec.timeout = Duration::from_secs(5);
    let started = Instant::now();
    let result = services
        .fetch(
            &spec,
            &request(Service::News, 0, None, None),
            Deadline::none(),
        )
        .await;
    let total = started.elapsed();
    let (succeeded, log) = match &result {
        Ok(fetched) => (true, fetched.attempt_log.clone()),
        Err(error) => (false, error.attempt_log().to_vec()),
    };
    let attempts = log
        .iter()
        .enumerate()
        .map(|(retry, record)| {
            draw_attempt(timeline, record);
            AttemptFigure {
                number: record.number,
                started_ms: millis(record.started.saturating_duration_since(started)),
                ms: millis(record.ended.saturating_duration_since(record.started)),
                outcome: match &record.outcome {
                    AttemptOutcome::Succeeded => "ok".to_owned(),
                    AttemptOutcome::Failed { error, .. } => error.to_string(),
                    other => format!("{other:?}"),
                },
                delay_after_ms: record.delay_before_next().map(millis),
                delay_bound_ms: record
                    .delay_before_next()
                    .map(|_| millis(delay_bound(backoff, retry))),
            }
        })
        .collect();
    RetryFigures {
        failure_probability: FLAKY_FAILURE_PROBABILITY,
        base_ms: millis(backoff.base),
        cap_ms: millis(backoff.cap),
        succeeded,
        attempts,
        total_ms: millis(total),
    }
}

/// The bound the `retry`-th delay (from 0) is drawn under: `min(cap, base × 2^retry)`.
pub fn delay_bound(backoff: BackoffPolicy, retry: usize) -> Duration {
    let factor = 2_u32.saturating_pow(u32::try_from(retry).unwrap_or(u32::MAX));
    backoff.base.saturating_mul(factor).min(backoff.cap)
}

fn draw_attempt(timeline: &Timeline, record: &AttemptRecord) {
    let lane = "flaky news";
    let ok = matches!(record.outcome, AttemptOutcome::Succeeded);
    let start = timeline.offset(record.started.into_std());
    let end = timeline.offset(record.ended.into_std());
    timeline.record(
        Span::new(
            lane,
            format!("attempt {}", record.number),
            Activity::Fetch,
            start,
            end,
        )
        .with_outcome(if ok {
            SpanOutcome::Ok
        } else {
            SpanOutcome::Failed
        }),
    );
    if let Some(delay) = record.delay_before_next() {
        timeline.record(Span::new(
            lane,
            "backoff",
            Activity::Other,
            end,
            end + delay,
        ));
        timeline.record_event(
            InstantEvent::new(
                lane,
                format!("retry after {delay:?}"),
                EventKind::Retry,
                end + delay,
            )
            .with_arg("delay_ms", millis(delay)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_bounds_double_from_the_base_up_to_the_cap() {
        let backoff = BackoffPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let bounds: Vec<u128> = (0..5)
            .map(|retry| delay_bound(backoff, retry).as_millis())
            .collect();
        assert_eq!(bounds, [100, 200, 400, 500, 500]);
        assert_eq!(delay_bound(backoff, 200), backoff.cap);
    }

    fn cut(
        outer_ms: Option<f64>,
        inner_ms: f64,
        ended_at_ms: f64,
        winner: Winner,
    ) -> TimeoutFigure {
        TimeoutFigure {
            outer_ms,
            inner_ms,
            ended_at_ms,
            winner,
            error: String::new(),
        }
    }

    fn attempt(number: u32, delay: Option<(f64, f64)>) -> AttemptFigure {
        AttemptFigure {
            number,
            started_ms: 0.0,
            ms: 20.0,
            outcome: "ok".to_owned(),
            delay_after_ms: delay.map(|(delay, _)| delay),
            delay_bound_ms: delay.map(|(_, bound)| bound),
        }
    }

    fn textbook_timeouts() -> Measured {
        Measured {
            hanging: cut(None, 1000.0, 1002.0, Winner::Inner),
            outer_sooner: cut(Some(1000.0), 2000.0, 1001.0, Winner::Outer),
            inner_sooner: cut(Some(2000.0), 1000.0, 1003.0, Winner::Inner),
            retry: RetryFigures {
                failure_probability: 0.6,
                base_ms: 100.0,
                cap_ms: 2000.0,
                succeeded: true,
                attempts: vec![
                    attempt(1, Some((80.0, 100.0))),
                    attempt(2, Some((150.0, 200.0))),
                    attempt(3, None),
                ],
                total_ms: 300.0,
            },
        }
    }

    #[test]
    fn timeouts_pass_a_textbook_run() {
        let verdict = judge(&textbook_timeouts());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn timeouts_fail_when_the_wrong_bound_wins_or_fires_late() {
        let mut measured = textbook_timeouts();
        measured.outer_sooner.winner = Winner::Inner;
        assert!(!judge(&measured).pass);

        let mut measured = textbook_timeouts();
        measured.hanging.ended_at_ms = 1300.0;
        let verdict = judge(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.starts_with("hanging call"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn timeouts_fail_without_a_retry_or_with_a_delay_past_its_bound() {
        let mut measured = textbook_timeouts();
        measured.retry.attempts = vec![attempt(1, None)];
        assert!(!judge(&measured).pass);

        let mut measured = textbook_timeouts();
        measured.retry.attempts[1] = attempt(2, Some((250.0, 200.0)));
        assert!(!judge(&measured).pass);
    }
}
