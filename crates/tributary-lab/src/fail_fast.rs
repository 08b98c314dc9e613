//! `fail-fast-vs-settle`: ten fetches, one failing, run by a fail-fast group ([`scope()`], asyncio's `TaskGroup`)
//! and by [`settle()`] (`gather(return_exceptions=True)`), in three cases:
//!
//! - **one failing fetch**: one fetch answers early with an HTTP 500, the other nine take several times longer. The group cancels the nine and reports the error; settle returns nine results
//!   and one error, and takes as long as the slowest fetch.
//! - **a timeout inside**: the failing child is a hanging call cut by its own timeout; the timeout is the error.
//! - **a nested group**: the failing child is itself a fail-fast group of three fetches, one failing. The inner
//!   group cancels its two siblings and fails; in the outer group that failure cancels the other nine, while an
//!   outer settle keeps their nine results (mixing settle outside with fail-fast inside).
//!
//! Every fetch is a real request to the simulated services, whose latency each request chooses.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use tributary::group::{
    CancelledChild, Deadline, Elapsed, GroupConfig, GroupError, Outcome, SettleConfig, SpawnError,
    scope, settle, with_timeout,
};
use tributary::source::{FetchError, SourceClient, SourceSpec};
use tributary::trace::{Activity, EventKind, InstantEvent, Outcome as SpanOutcome, Timeline};
use tributary_agent::error_chain;
use tributary_sim::Service;

use super::experiment::{Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis};
use super::services::{LabServices, request};
use super::verdict::Verdict;

/// How many fetches each run starts.
pub const CHILDREN: usize = 10;
/// Which of them fails.
const FAILING_CHILD: usize = 3;
/// How many fetches the nested group starts.
pub const INNER_CHILDREN: usize = 3;

/// The figures of the three cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// One entry per case, in order: one failing fetch, a timeout inside, a nested group.
    pub cases: Vec<CaseFigures>,
}

/// One case, run both ways.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseFigures {
    /// Which case.
    pub case: Case,
    /// The fail-fast group.
    pub fail_fast: FailFastFigures,
    /// Settle.
    pub settle: SettleFigures,
}

/// The three cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// One fetch answers with an HTTP 500.
    OneFailingFetch,
    /// One fetch hangs and its own timeout cuts it.
    TimeoutInside,
    /// One child is a fail-fast group of three fetches, one failing.
    NestedGroup,
}

/// What the fail-fast group did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailFastFigures {
    /// From the first spawn to the scope's return.
    pub total_ms: f64,
    /// What shut the group down.
    pub cause: String,
    /// When it shut down, since the start.
    pub shut_down_at_ms: f64,
    /// The children that failed, with their errors.
    pub failed: Vec<ChildFigure>,
    /// The children the group cancelled, in the order they stopped.
    pub cancelled: Vec<ChildFigure>,
    /// Children that succeeded before the group shut down.
    pub succeeded: usize,
    /// Whether the failure was a timeout.
    pub failed_by_timeout: bool,
    /// In the nested case, the inner group's cancelled children.
    pub inner_cancelled: Vec<ChildFigure>,
}

/// What settle returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettleFigures {
    /// From the start to the last outcome.
    pub total_ms: f64,
    /// Results.
    pub ok: usize,
    /// Errors, as `name: error`.
    pub errors: Vec<String>,
    /// Outcomes that were neither a result nor an error (timed out by settle itself, cancelled, panicked).
    pub other: usize,
    /// Whether the one error was a timeout.
    pub error_is_timeout: bool,
    /// In the nested case, the inner group's cancelled children.
    pub inner_cancelled: Vec<ChildFigure>,
}

/// A child, when something happened to it, and the error if it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildFigure {
    /// The child's name.
    pub name: String,
    /// Since the start of the run.
    pub at_ms: f64,
    /// The error, for a failed child.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The fetch failed.
    #[error("{}", error_chain(.0))]
    Fetch(#[from] FetchError),
    /// The child's own timeout fired.
    #[error("{0}")]
    TimedOut(#[from] Elapsed),
    /// The nested group failed.
    #[error("nested group failed: {summary}")]
    NestedGroup {
        /// The inner group's error, as text.
        summary: String,
        /// The inner group's cancelled children.
        cancelled: Vec<ChildFigure>,
    },
    /// The group refused a spawn (it was already shutting down).
    #[error("{0}")]
    Spawn(#[from] SpawnError),
}

type Child = Pin<Box<dyn Future<Output = Result<(), ChildError>> + Send>>;

/// How long things take: the failing child fails long before any other fetch could finish.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// When the failing fetch fails (or its timeout fires).
    failure: Duration,
    /// Latency of the first healthy fetch; each next one takes `step` more.
    healthy: Duration,
    step: Duration,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "fail-fast-vs-settle",
    title: "Fail-fast groups against settle (TaskGroup vs gather)",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let timing = Timing {
        failure: config.duration(200, 40),
        healthy: config.duration(400, 240),
        step: config.duration(100, 20),
    };
    let services = LabServices::start().await?;
    services.warm_up().await;
    let timeline = Timeline::new();
    let mut lanes = vec!["group".to_owned()];
    lanes.extend((0..CHILDREN).map(|index| format!("fetch {index}")));
    lanes.extend((0..INNER_CHILDREN).map(|index| format!("inner {index}")));
    timeline.set_lane_order(&lanes);
    let mut cases = Vec::new();
    for case in [
        Case::OneFailingFetch,
        Case::TimeoutInside,
        Case::NestedGroup,
    ] {
        let fail_fast = run_fail_fast(case, &services, timing, &timeline).await;
        let settle = run_settle(case, &services, timing, &timeline).await;
        cases.push(CaseFigures {
            case,
            fail_fast,
            settle,
        });
    }
    services.shutdown().await;
    let measured = Measured { cases };
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "Ten fetches, nine healthy ({} to {} ms) and one failing at {} ms, run by a fail-fast group (TaskGroup) \
             and by settle (gather with return_exceptions), in three cases: an HTTP 500, a hanging call cut by \
             its own timeout, and a nested group of three whose third fetch fails.",
            timing.healthy.as_millis(),
            (timing.healthy + timing.step * (CHILDREN as u32 - 2)).as_millis(),
            timing.failure.as_millis(),
        ),
        "The fail-fast group cancels the nine others (the nested group also its own two) and reports the one \
         error; settle returns nine results and one error.",
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: in every case the group fails once and cancels every sibling (and, nested, the inner
/// group cancels its own), before settle, which returns all but one result and exactly one error.
pub fn judge(measured: &Measured) -> Verdict {
    Verdict::all(measured.cases.iter().map(|case| {
        let group = &case.fail_fast;
        let settle = &case.settle;
        let siblings = CHILDREN - 1;
        let mut problems = Vec::new();
        if group.failed.len() != 1 {
            problems.push(format!("the group reported {} failures, not 1", group.failed.len()));
        }
        if group.cancelled.len() != siblings || group.succeeded != 0 {
            problems.push(format!(
                "the group cancelled {} of the {siblings} siblings ({} had already finished)",
                group.cancelled.len(),
                group.succeeded
            ));
        }
        if settle.ok != siblings || settle.errors.len() != 1 || settle.other != 0 {
            problems.push(format!(
                "settle returned {} results, {} errors and {} other outcomes, not {siblings}, 1 and 0",
                settle.ok,
                settle.errors.len(),
                settle.other
            ));
        }
        if group.total_ms >= settle.total_ms {
            problems.push(format!(
                "the group took {:.0} ms, not less than settle's {:.0} ms",
                group.total_ms, settle.total_ms
            ));
        }
        match case.case {
            Case::OneFailingFetch => {}
            Case::TimeoutInside => {
                if !group.failed_by_timeout || !settle.error_is_timeout {
                    problems.push("the one error was not the child's timeout".to_owned());
                }
            }
            Case::NestedGroup => {
                let inner_siblings = INNER_CHILDREN - 1;
                if group.inner_cancelled.len() != inner_siblings
                    || settle.inner_cancelled.len() != inner_siblings
                {
                    problems.push(format!(
                        "the nested group cancelled {} (fail-fast outside) and {} (settle outside) of its \
                         {inner_siblings} siblings",
                        group.inner_cancelled.len(),
                        settle.inner_cancelled.len()
                    ));
                }
            }
        }
        let label = serde_json::to_value(case.case)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        if problems.is_empty() {
            Verdict::pass(format!(
                "{label}: group failed at {:.0} ms and cancelled {}{}, settle {} results + 1 error at {:.0} ms",
                group.shut_down_at_ms,
                group.cancelled.len(),
                if group.inner_cancelled.is_empty() {
                    String::new()
                } else {
                    format!(" (+{} inner)", group.inner_cancelled.len())
                },
                settle.ok,
                settle.total_ms
            ))
        } else {
            Verdict::fail(format!("{label}: {}", problems.join(", ")))
        }
    }))
}

/// The ten children of `case`, each with its name and timeline lane (started when first polled).
fn children(
    case: Case,
    services: &LabServices,
    timing: Timing,
    timeline: &Timeline,
) -> Vec<(String, Child)> {
    let mut healthy_latency = timing.healthy;
    (0..CHILDREN)
        .map(|index| {
            let name = format!("fetch {index}");
            let child: Child = if index == FAILING_CHILD {
                failing_child(case, services, timing, timeline, &name)
            } else {
                let latency = healthy_latency;
                healthy_latency += timing.step;
                Box::pin(fetch(
                    services.client(),
                    services.spec(Service::ALL[index % 3]),
                    request(Service::ALL[index % 3], index, Some(latency), None),
                    timeline.clone(),
                    name.clone(),
                ))
            };
            (name, child)
        })
        .collect()
}

fn failing_child(
    case: Case,
    services: &LabServices,
    timing: Timing,
    timeline: &Timeline,
    name: &str,
) -> Child {
    let client = services.client();
    let spec = services.spec(Service::News);
    let timeline = timeline.clone();
    let name = name.to_owned();
    match case {
        Case::OneFailingFetch => Box::pin(fetch(
            client,
            spec,
            request(Service::News, 0, Some(timing.failure), Some("error")),
            timeline,
            name,
        )),
        Case::TimeoutInside => Box::pin(async move {
            let hanging = fetch(
                client,
                spec,
                request(Service::News, 0, None, Some("hang")),
                timeline,
                name,
            );
            with_timeout(Some(timing.failure), Deadline::none(), hanging).await?
        }),
        Case::NestedGroup => Box::pin(async move {
            let started = Instant::now();
            let inner = scope(GroupConfig::new(), |group| async move {
                for index in 0..INNER_CHILDREN {
                    let failing = index == INNER_CHILDREN - 1;
                    let latency = if failing {
                        timing.failure
                    } else {
                        timing.healthy
                    };
                    group
                        .spawn(
                            format!("inner {index}"),
                            fetch(
                                client.clone(),
                                spec.clone(),
                                request(
                                    Service::News,
                                    index,
                                    Some(latency),
                                    failing.then_some("error"),
                                ),
                                timeline.clone(),
                                format!("inner {index}"),
                            ),
                        )
                        .await?;
                }
                Ok::<_, ChildError>(())
            })
            .await;
            inner.map_err(|error| ChildError::NestedGroup {
                summary: error.to_string(),
                cancelled: cancelled_figures(&error.cancelled, started),
            })
        }),
    }
}

/// One fetch, drawn on its own lane; a fetch dropped by its group is drawn as cancelled.
async fn fetch(
    client: SourceClient,
    spec: SourceSpec,
    request: tributary::source::SourceRequest,
    timeline: Timeline,
    lane: String,
) -> Result<(), ChildError> {
    let span = timeline.start_span(lane, format!("GET {}", request.path), Activity::Fetch);
    match client
        .fetch_uncached(&spec, &request, Deadline::none())
        .await
    {
        Ok(_) => {
            span.finish(SpanOutcome::Ok);
            Ok(())
        }
        Err(error) => {
            span.finish(SpanOutcome::Failed);
            Err(error.into())
        }
    }
}

async fn run_fail_fast(
    case: Case,
    services: &LabServices,
    timing: Timing,
    timeline: &Timeline,
) -> FailFastFigures {
    timeline.event(
        "group",
        format!("fail-fast: {}", case_label(case)),
        EventKind::Note,
    );
    let children = children(case, services, timing, timeline);
    let started = Instant::now();
    let result = scope(GroupConfig::new(), |group| async move {
        for (name, child) in children {
            group.spawn(name, child).await?;
        }
        Ok::<_, ChildError>(())
    })
    .await;
    let total = started.elapsed();
    match result {
        Ok(()) => FailFastFigures {
            total_ms: millis(total),
            cause: "nothing failed".to_owned(),
            shut_down_at_ms: millis(total),
            failed: Vec::new(),
            cancelled: Vec::new(),
            succeeded: CHILDREN,
            failed_by_timeout: false,
            inner_cancelled: Vec::new(),
        },
        Err(error) => {
            timeline.record_event(InstantEvent::new(
                "group",
                format!("shut down: {}", error.cause),
                EventKind::Failure,
                timeline.offset(error.shut_down_at.into_std()),
            ));
            figures_of_group_error(&error, started, total)
        }
    }
}

fn figures_of_group_error(
    error: &GroupError<ChildError>,
    started: Instant,
    total: Duration,
) -> FailFastFigures {
    let failed = error
        .failed
        .iter()
        .map(|failure| ChildFigure {
            name: failure.name.to_string(),
            at_ms: millis(failure.failed_at.saturating_duration_since(started)),
            error: Some(failure.error.to_string()),
        })
        .collect();
    let inner_cancelled = error
        .failed
        .iter()
        .flat_map(|failure| match &failure.error {
            ChildError::NestedGroup { cancelled, .. } => cancelled.clone(),
            _ => Vec::new(),
        })
        .collect();
    FailFastFigures {
        total_ms: millis(total),
        cause: error.cause.to_string(),
        shut_down_at_ms: millis(error.shut_down_at.saturating_duration_since(started)),
        failed,
        cancelled: cancelled_figures(&error.cancelled, started),
        succeeded: CHILDREN - error.failed.len() - error.cancelled.len(),
        failed_by_timeout: error
            .failed
            .iter()
            .any(|failure| matches!(failure.error, ChildError::TimedOut(_))),
        inner_cancelled,
    }
}

fn cancelled_figures(cancelled: &[CancelledChild], started: Instant) -> Vec<ChildFigure> {
    cancelled
        .iter()
        .map(|child| ChildFigure {
            name: child.name.to_string(),
            at_ms: millis(child.cancelled_at.saturating_duration_since(started)),
            error: None,
        })
        .collect()
}

async fn run_settle(
    case: Case,
    services: &LabServices,
    timing: Timing,
    timeline: &Timeline,
) -> SettleFigures {
    timeline.event(
        "group",
        format!("settle: {}", case_label(case)),
        EventKind::Note,
    );
    let (names, tasks): (Vec<String>, Vec<Child>) = children(case, services, timing, timeline)
        .into_iter()
        .unzip();
    let started = Instant::now();
    let outcomes = settle(SettleConfig::new(), tasks).await;
    let total = started.elapsed();
    let mut figures = SettleFigures {
        total_ms: millis(total),
        ok: 0,
        errors: Vec::new(),
        other: 0,
        error_is_timeout: false,
        inner_cancelled: Vec::new(),
    };
    for (name, outcome) in names.iter().zip(outcomes) {
        match outcome {
            Outcome::Ok(()) => figures.ok += 1,
            Outcome::Failed(error) => {
                figures.error_is_timeout |= matches!(error, ChildError::TimedOut(_));
                if let ChildError::NestedGroup { cancelled, .. } = &error {
                    figures.inner_cancelled.extend(cancelled.iter().cloned());
                }
                figures.errors.push(format!("{name}: {error}"));
            }
            _ => figures.other += 1,
        }
    }
    figures
}

fn case_label(case: Case) -> &'static str {
    match case {
        Case::OneFailingFetch => "one failing fetch",
        Case::TimeoutInside => "a timeout inside",
        Case::NestedGroup => "a nested group",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(name: &str, at_ms: f64) -> ChildFigure {
        ChildFigure {
            name: name.to_owned(),
            at_ms,
            error: None,
        }
    }

    /// A textbook run of `case`: one failure at 40 ms, nine cancelled, settle 9 + 1 at 420 ms.
    fn textbook_case(case: Case) -> CaseFigures {
        let inner_cancelled = if case == Case::NestedGroup {
            vec![child("inner 0", 40.0), child("inner 1", 40.0)]
        } else {
            Vec::new()
        };
        CaseFigures {
            case,
            fail_fast: FailFastFigures {
                total_ms: 41.0,
                cause: "child `fetch 3` failed".to_owned(),
                shut_down_at_ms: 40.0,
                failed: vec![child("fetch 3", 40.0)],
                cancelled: (0..9)
                    .map(|index| child(&format!("fetch {index}"), 40.5))
                    .collect(),
                succeeded: 0,
                failed_by_timeout: case == Case::TimeoutInside,
                inner_cancelled: inner_cancelled.clone(),
            },
            settle: SettleFigures {
                total_ms: 420.0,
                ok: 9,
                errors: vec!["fetch 3: boom".to_owned()],
                other: 0,
                error_is_timeout: case == Case::TimeoutInside,
                inner_cancelled,
            },
        }
    }

    fn textbook_fail_fast() -> Measured {
        Measured {
            cases: vec![
                textbook_case(Case::OneFailingFetch),
                textbook_case(Case::TimeoutInside),
                textbook_case(Case::NestedGroup),
            ],
        }
    }

    #[test]
    fn fail_fast_vs_settle_passes_a_textbook_run() {
        let verdict = judge(&textbook_fail_fast());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn fail_fast_vs_settle_fails_when_a_sibling_finished_or_settle_lost_a_result() {
        let mut measured = textbook_fail_fast();
        measured.cases[0].fail_fast.cancelled.pop();
        measured.cases[0].fail_fast.succeeded = 1;
        let verdict = judge(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("cancelled 8 of the 9"),
            "{}",
            verdict.reason
        );

        let mut measured = textbook_fail_fast();
        measured.cases[2].settle.ok = 8;
        measured.cases[2].settle.other = 1;
        assert!(!judge(&measured).pass);
    }

    #[test]
    fn fail_fast_vs_settle_fails_when_the_error_was_not_the_timeout_or_the_inner_group_kept_running()
     {
        let mut measured = textbook_fail_fast();
        measured.cases[1].fail_fast.failed_by_timeout = false;
        assert!(!judge(&measured).pass);

        let mut measured = textbook_fail_fast();
        measured.cases[2].fail_fast.inner_cancelled.clear();
        assert!(!judge(&measured).pass);
    }
}
