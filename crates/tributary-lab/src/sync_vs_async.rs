//! `sync-vs-async`: three calls to the simulated services, one after another, then all at once.
//!
//! Each call asks its service for the same latency (1 s, 200 ms in quick mode) through `latency_ms=`, so the
//! sequential run costs about the sum and the concurrent run ([`settle()`], the counterpart of `asyncio.gather`)
//! about the longest call. The longest call is measured in the sequential run, where each call ran alone.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use tributary::group::{Deadline, Outcome, SettleConfig, settle};
use tributary::trace::{Activity, Outcome as SpanOutcome, Span, Timeline};
use tributary_sim::Service;

use super::experiment::{Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis};
use super::services::{LabServices, request};
use super::verdict::Verdict;

/// The concurrent total may exceed the longest call by at most this fraction.
pub const CONCURRENT_TOLERANCE: f64 = 0.10;

/// The figures of one run of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// The latency each call asked its service for.
    pub call_latency_ms: f64,
    /// Each call of the sequential run, alone on the wire.
    pub sequential_calls: Vec<CallFigure>,
    /// The sequential run, start to finish.
    pub sequential_total_ms: f64,
    /// The sum of the sequential calls: what the sequential run should cost.
    pub sum_of_calls_ms: f64,
    /// The longest sequential call: what the concurrent run should cost.
    pub longest_call_ms: f64,
    /// Each call of the concurrent run.
    pub concurrent_calls: Vec<CallFigure>,
    /// The concurrent run, start to finish.
    pub concurrent_total_ms: f64,
    /// `sequential_total / concurrent_total`.
    pub speedup: f64,
}

/// One call and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallFigure {
    /// The service called.
    pub service: String,
    /// From sending the request to the parsed answer.
    pub ms: f64,
    /// Whether the call succeeded.
    pub ok: bool,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "sync-vs-async",
    title: "Sequential calls against concurrent calls",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let latency = config.duration(1000, 200);
    let services = LabServices::start().await?;
    services.warm_up().await;
    let timeline = Timeline::new();

    let sequential_started = Instant::now();
    let sequential_calls = run_sequential(&services, latency, &timeline).await;
    let sequential_total = sequential_started.elapsed();

    let concurrent_started = Instant::now();
    let concurrent_calls = run_concurrent(&services, latency, &timeline).await;
    let concurrent_total = concurrent_started.elapsed();
    services.shutdown().await;

    let sum_of_calls_ms = sequential_calls.iter().map(|call| call.ms).sum();
    let longest_call_ms = sequential_calls
        .iter()
        .map(|call| call.ms)
        .fold(0.0, f64::max);
    let measured = Measured {
        call_latency_ms: millis(latency),
        sequential_calls,
        sequential_total_ms: millis(sequential_total),
        sum_of_calls_ms,
        longest_call_ms,
        concurrent_calls,
        concurrent_total_ms: millis(concurrent_total),
        speedup: sequential_total.as_secs_f64() / concurrent_total.as_secs_f64().max(1e-9),
    };
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "Asks weather, news and the knowledge base, each answering after {} ms: first one call after \
             another, then all three at once with settle (asyncio.gather).",
            latency.as_millis()
        ),
        format!(
            "Sequential costs about the sum of the calls; concurrent costs about the longest call: the \
             concurrent total is within {:.0}% of the longest call.",
            CONCURRENT_TOLERANCE * 100.0
        ),
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: the concurrent total is within [`CONCURRENT_TOLERANCE`] of the longest call, and every call
/// succeeded (a failed call would make the run trivially short).
pub fn judge(measured: &Measured) -> Verdict {
    let failed = measured
        .sequential_calls
        .iter()
        .chain(&measured.concurrent_calls)
        .filter(|call| !call.ok)
        .count();
    if failed > 0 {
        return Verdict::fail(format!(
            "{failed} call(s) failed, so the timings mean nothing"
        ));
    }
    let limit = measured.longest_call_ms * (1.0 + CONCURRENT_TOLERANCE);
    let over = measured.concurrent_total_ms / measured.longest_call_ms.max(f64::MIN_POSITIVE) - 1.0;
    Verdict::check(
        measured.concurrent_total_ms <= limit,
        format!(
            "concurrent total {:.0} ms is {:+.1}% of the longest call ({:.0} ms; limit +{:.0}%), against {:.0} ms \
             sequentially ({:.2}x)",
            measured.concurrent_total_ms,
            over * 100.0,
            measured.longest_call_ms,
            CONCURRENT_TOLERANCE * 100.0,
            measured.sequential_total_ms,
            measured.speedup,
        ),
    )
}

/// The sequential baseline: each call awaited before the next is sent.
async fn run_sequential(
    services: &LabServices,
    latency: Duration,
    timeline: &Timeline,
) -> Vec<CallFigure> {
    let mut calls = Vec::new();
    for service in Service::ALL {
        let spec = services.spec(service);
        let started = Instant::now();
        let result = services
            .fetch(
                &spec,
                &request(service, 0, Some(latency), None),
                Deadline::none(),
            )
            .await;
        let ended = Instant::now();
        record_call(
            timeline,
            "sequential",
            service,
            started,
            ended,
            result.is_ok(),
        );
        calls.push(CallFigure {
            service: service.name().to_owned(),
            ms: millis(ended - started),
            ok: result.is_ok(),
        });
    }
    calls
}

/// All three calls at once; each is its own task, and settle waits for all of them.
async fn run_concurrent(
    services: &LabServices,
    latency: Duration,
    timeline: &Timeline,
) -> Vec<CallFigure> {
    let tasks = Service::ALL.map(|service| {
        let client = services.client();
        let spec = services.spec(service);
        let timeline = timeline.clone();
        async move {
            let started = Instant::now();
            let result = client
                .fetch_uncached(
                    &spec,
                    &request(service, 0, Some(latency), None),
                    Deadline::none(),
                )
                .await;
            let ended = Instant::now();
            let lane = format!("concurrent {}", service.name());
            record_call(&timeline, &lane, service, started, ended, result.is_ok());
            Ok::<_, std::convert::Infallible>(CallFigure {
                service: service.name().to_owned(),
                ms: millis(ended - started),
                ok: result.is_ok(),
            })
        }
    });
    settle(SettleConfig::new(), tasks)
        .await
        .into_iter()
        .zip(Service::ALL)
        .map(|(outcome, service)| match outcome {
            Outcome::Ok(call) => call,
            _ => CallFigure {
                service: service.name().to_owned(),
                ms: 0.0,
                ok: false,
            },
        })
        .collect()
}

fn record_call(
    timeline: &Timeline,
    lane: &str,
    service: Service,
    started: Instant,
    ended: Instant,
    ok: bool,
) {
    timeline.record(
        Span::new(
            lane,
            format!("GET {}", service.path()),
            Activity::Fetch,
            timeline.offset(started.into_std()),
            timeline.offset(ended.into_std()),
        )
        .with_outcome(if ok {
            SpanOutcome::Ok
        } else {
            SpanOutcome::Failed
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(ms: &[f64]) -> Vec<CallFigure> {
        ms.iter()
            .map(|&ms| CallFigure {
                service: "weather".to_owned(),
                ms,
                ok: true,
            })
            .collect()
    }

    fn sync_vs_async_measured(concurrent_total_ms: f64) -> Measured {
        Measured {
            call_latency_ms: 1000.0,
            sequential_calls: calls(&[1002.0, 1003.0, 1004.0]),
            sequential_total_ms: 3010.0,
            sum_of_calls_ms: 3009.0,
            longest_call_ms: 1004.0,
            concurrent_calls: calls(&[1005.0, 1006.0, 1007.0]),
            concurrent_total_ms,
            speedup: 3010.0 / concurrent_total_ms,
        }
    }

    #[test]
    fn sync_vs_async_passes_near_the_longest_call_and_fails_past_ten_percent() {
        assert!(judge(&sync_vs_async_measured(1008.0)).pass);
        let slow = judge(&sync_vs_async_measured(1200.0));
        assert!(!slow.pass);
        assert!(slow.reason.contains("+19.5%"), "{}", slow.reason);
    }

    #[test]
    fn sync_vs_async_fails_when_a_call_failed() {
        let mut measured = sync_vs_async_measured(1008.0);
        measured.concurrent_calls[1].ok = false;
        assert!(!judge(&measured).pass);
    }
}
