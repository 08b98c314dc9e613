//! Running a plan: the concurrent agent and its sequential baseline, side by side.
//!
//! Both run the same step for every source ([`fetch_source`] then [`infer_source`]); they differ only in how
//! steps are scheduled:
//!
//! - [`run_concurrent`]: every step at once under [`settle`] (at most [`MAX_SOURCES_IN_FLIGHT`] at a time), so
//!   one source failing or hanging never cancels the others, and each response goes to the executor the moment
//!   it arrives;
//! - [`run_sequential`]: one step after another (fetch, infer, fetch, infer, ...): the chapter's baseline.
//!
//! Every step bounds itself (see [`crate::step`]). The settle deadline (the overall deadline plus
//! [`BACKSTOP_GRACE`]) is only a backstop, so an answer always comes back within the deadline plus a few
//! milliseconds, whatever the sources do.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::time::Duration;
use tracing::Instrument as _;

use tokio::time::Instant;
use tributary::group::{Deadline, Outcome, SettleConfig, settle};

use crate::limits::MAX_SOURCES_IN_FLIGHT;
use crate::plan::Step;
use crate::report::{SourceFailure, SourceReport, SourceStatus};
use crate::sources::Source;
use crate::step::{StepContext, StepRecord, fetch_source, infer_source, millis};

/// How long after the deadline the settle backstop gives up on a step that failed to bound itself.
pub const BACKSTOP_GRACE: Duration = Duration::from_millis(50);

/// [`MAX_SOURCES_IN_FLIGHT`] as the settle's bound.
const IN_FLIGHT: NonZeroUsize =
    NonZeroUsize::new(MAX_SOURCES_IN_FLIGHT).expect("the bound is not zero");

/// Runs the steps at once (at most [`MAX_SOURCES_IN_FLIGHT`] at a time, the others in plan order as slots free
/// up), each within `deadline`; one record per step, in plan order. A step whose turn comes after the deadline
/// is not run: it is reported as timed out.
pub async fn run_concurrent(
    context: &StepContext,
    steps: Vec<Step>,
    deadline: Deadline,
) -> Vec<StepRecord> {
    let sources: Vec<Source> = steps.iter().map(|step| step.source.clone()).collect();
    let tasks = steps.into_iter().map(|step| {
        let context = context.clone();
        // Boxed when it starts: a step waiting for a slot holds only its context and plan.
        async move { Ok::<_, Infallible>(Box::pin(run_step(&context, step, deadline)).await) }
    });
    let config = SettleConfig::new()
        .deadline(deadline.extended(BACKSTOP_GRACE))
        .max_concurrency(IN_FLIGHT)
        .cancelled_by(context.cancel.clone());
    let outcomes = settle(config, tasks).await;
    outcomes
        .into_iter()
        .zip(sources)
        .map(|(outcome, source)| match outcome {
            Outcome::Ok(record) => record,
            Outcome::Failed(never) => match never {},
            Outcome::TimedOut(_) => unfinished(
                context,
                &source,
                SourceStatus::TimedOut,
                SourceFailure::Deadline,
                "overall deadline exceeded",
            ),
            Outcome::Cancelled => cancelled(context, &source),
            Outcome::Panicked(message) => unfinished(
                context,
                &source,
                SourceStatus::Failed,
                SourceFailure::Internal,
                &format!("internal error: the step panicked: {message}"),
            ),
        })
        .collect()
}

/// Runs the steps one after another, each waiting for the previous one's inference: the sequential baseline.
pub async fn run_sequential(
    context: &StepContext,
    steps: Vec<Step>,
    deadline: Deadline,
) -> Vec<StepRecord> {
    let mut records = Vec::with_capacity(steps.len());
    for step in steps {
        let source = step.source.clone();
        // A step spawns nothing (its inference job is abandoned with its future): dropping it stops it. Biased:
        // once cancelled, the steps left are never started.
        tokio::select! {
            biased;
            () = context.cancel.cancelled() => {
                records.push(cancelled(context, &source));
            }
            record = run_step(context, step, deadline) => records.push(record),
        }
    }
    records
}

/// One source: fetch within `min(per-source timeout, deadline)`, then infer on the executor within the deadline.
///
/// Both run in the source's `tracing` span, so its fetch (with the attempts) and its inference job (on whichever
/// worker ran it) are its children.
async fn run_step(context: &StepContext, step: Step, deadline: Deadline) -> StepRecord {
    let span = tracing::info_span!(
        "source",
        source = step.source.name(),
        status = tracing::field::Empty,
        failure = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let record = async {
        let fetch = fetch_source(context, step, deadline).await;
        infer_source(context, fetch, deadline).await
    }
    .instrument(span.clone())
    .await;
    span.record("status", record.report.status.as_str());
    if let Some(failure) = record.report.failure {
        span.record("failure", failure.as_str());
    }
    if let Some(error) = &record.report.error {
        span.record("error", error.as_str());
    }
    record
}

/// The record of a step the run's token stopped.
fn cancelled(context: &StepContext, source: &Source) -> StepRecord {
    unfinished(
        context,
        source,
        SourceStatus::Failed,
        SourceFailure::Cancelled,
        "cancelled",
    )
}

/// The record of a step the backstop had to give up on.
fn unfinished(
    context: &StepContext,
    source: &Source,
    status: SourceStatus,
    failure: SourceFailure,
    message: &str,
) -> StepRecord {
    let mut report = SourceReport::new_for(source);
    report.arrived_at_ms = Some(millis(Instant::now() - context.started));
    report.settle(status, failure, message.to_owned());
    StepRecord {
        report,
        inference: None,
        responded: false,
    }
}
