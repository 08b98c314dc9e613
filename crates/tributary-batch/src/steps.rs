//! What each stage does to one question: the agent's own steps ([`fetch_source`], [`infer_source`]) split at
//! the I/O / CPU boundary, so the pipeline can put a bounded channel between the two halves and limit each on its
//! own. The answer rule and the report are the agent's too ([`report`]): a stored answer is exactly what
//! `ask --json` prints for the same run.
//!
//! Time: `--deadline` bounds the question's own work. Its clock starts when the question's first fetch starts;
//! the inference gets what the fetch left of it. Time spent waiting in a queue between stages is backpressure
//! doing its job, not the question being slow, so it is not counted: a long batch on a saturated CPU does not
//! time every question out.

use std::time::Duration;

use futures::{StreamExt as _, stream};
use tokio::time::Instant;
use tracing::Instrument as _;
use tributary::group::Deadline;

use crate::input::RecordId;
use crate::store::AnswerRow;
use tributary_agent::Question;
use tributary_agent::limits::MAX_SOURCES_IN_FLIGHT;
use tributary_agent::plan::{Action, plan};
use tributary_agent::report::{AgentReport, AnswerFailure, AnswerStatus, RunMode};
use tributary_agent::step::{
    Fetch, RunFacts, StepContext, fetch_source, infer_source, millis, missing_sources, report,
};
use tributary_agent::{Agent, Recording};

/// A question waiting to be fetched.
#[derive(Debug, Clone)]
pub struct PendingQuestion {
    /// Its id in the input.
    pub id: RecordId,
    /// Its line in the input.
    pub line: u64,
    /// The question.
    pub question: Question,
}

/// A question whose sources have all answered, failed or been skipped: the fetch → infer hand-over.
#[derive(Debug)]
pub struct FetchedQuestion {
    pending: PendingQuestion,
    context: StepContext,
    fetches: Vec<Fetch>,
    /// Wall time of the fetch stage for this question (its sources in parallel).
    fetch_elapsed: Duration,
    /// Whether any source was actually asked.
    fetched_any: bool,
    /// The question's `tracing` span, from its first fetch to its row: both stages run in it.
    span: tracing::Span,
}

/// Fetches every source the plan asks for `pending`, all at once, each within `min(per-source timeout,
/// deadline)`.
pub async fn fetch_question(agent: &Agent, pending: PendingQuestion) -> FetchedQuestion {
    // A trace of its own: a batch of a million questions is a million small traces, not one huge one.
    let span = tracing::info_span!(
        parent: None,
        "question",
        id = %pending.id,
        line = pending.line,
        question = pending.question.as_str(),
        status = tracing::field::Empty,
    );
    fetch_in_span(agent, pending, span.clone())
        .instrument(span)
        .await
}

/// [`fetch_question`] inside the question's span.
async fn fetch_in_span(
    agent: &Agent,
    pending: PendingQuestion,
    span: tracing::Span,
) -> FetchedQuestion {
    let started = Instant::now();
    let deadline = Deadline::after_from(started, agent.settings().deadline);
    let context = agent
        .step_context(&pending.question, started, Recording::Nothing)
        .await;
    let steps = plan(
        &pending.question,
        agent.sources(),
        agent.settings().places.as_ref(),
    );
    let fetched_any = steps
        .iter()
        .any(|step| matches!(step.action, Action::Fetch(_)));
    // At most `MAX_SOURCES_IN_FLIGHT` at once, in plan order: memory follows the bound, not the sources file.
    let fetches = stream::iter(
        steps
            .into_iter()
            .map(|step| Box::pin(fetch_source(&context, step, deadline))),
    )
    .buffered(MAX_SOURCES_IN_FLIGHT)
    .collect()
    .await;
    FetchedQuestion {
        pending,
        context,
        fetches,
        fetch_elapsed: started.elapsed(),
        fetched_any,
        span,
    }
}

/// Runs inference on every response on the executor, all at once, within what the deadline has left; then
/// applies the answer rule and builds the row to store.
pub async fn infer_question(agent: &Agent, fetched: FetchedQuestion) -> AnswerRow {
    let span = fetched.span.clone();
    let row = infer_in_span(agent, fetched).instrument(span.clone()).await;
    span.record("status", row.status.as_str());
    row
}

/// [`infer_question`] inside the question's span.
async fn infer_in_span(agent: &Agent, fetched: FetchedQuestion) -> AnswerRow {
    let FetchedQuestion {
        pending,
        context,
        fetches,
        fetch_elapsed,
        fetched_any,
        span: _,
    } = fetched;
    let started = Instant::now();
    let deadline = Deadline::after_from(
        started,
        agent.settings().deadline.saturating_sub(fetch_elapsed),
    );
    let records = stream::iter(
        fetches
            .into_iter()
            .map(|fetch| Box::pin(infer_source(&context, fetch, deadline))),
    )
    .buffered(MAX_SOURCES_IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    let elapsed = fetch_elapsed + started.elapsed();
    let infer_ms: Vec<f64> = records
        .iter()
        .filter_map(|record| record.report.infer_ms)
        .collect();
    let report = report(
        &pending.question,
        records,
        RunFacts {
            mode: RunMode::Concurrent,
            elapsed,
            workers: agent.workers(),
            deadline: agent.settings().deadline,
            per_source_timeout: agent.settings().per_source_timeout,
        },
    );
    AnswerRow::new(
        pending.id,
        pending.line,
        report,
        fetched_any.then(|| millis(fetch_elapsed)),
        (!infer_ms.is_empty()).then(|| infer_ms.iter().sum()),
    )
}

impl AnswerRow {
    /// The row for `report`. Its `error` column is why the question failed, or for a degraded answer which
    /// sources did not answer and why.
    pub fn new(
        id: RecordId,
        line: u64,
        report: AgentReport,
        fetch_ms: Option<f64>,
        infer_ms: Option<f64>,
    ) -> Self {
        let error = match report.status {
            AnswerStatus::Degraded => Some(missing_sources(&report)),
            AnswerStatus::Ok | AnswerStatus::Failed => report.error.clone(),
        };
        Self {
            id,
            line,
            question: report.question.clone(),
            status: report.status,
            elapsed_ms: report.elapsed_ms,
            answer: report,
            error,
            fetch_ms,
            infer_ms,
        }
    }

    /// The row of a line that could not be asked: `failed`, `unusable_line`, with why.
    pub fn unusable(id: RecordId, line: u64, why: String, agent: &Agent) -> Self {
        Self::not_asked(id, line, AnswerFailure::UnusableLine, why, agent)
    }

    /// The row of a question that was not asked: `failed`, with why as `failure` (a kind) and `why` (words).
    pub fn not_asked(
        id: RecordId,
        line: u64,
        failure: AnswerFailure,
        why: String,
        agent: &Agent,
    ) -> Self {
        let report = AgentReport {
            question: None,
            status: AnswerStatus::Failed,
            answer: None,
            error: Some(why),
            failure: Some(failure),
            degraded: false,
            mode: RunMode::Concurrent,
            elapsed_ms: 0.0,
            ideal_ms: 0.0,
            efficiency: 0.0,
            workers: agent.workers(),
            deadline_ms: millis(agent.settings().deadline),
            per_source_timeout_ms: millis(agent.settings().per_source_timeout),
            sources: Vec::new(),
            synthesis: None,
        };
        Self::new(id, line, report, None, None)
    }
}
