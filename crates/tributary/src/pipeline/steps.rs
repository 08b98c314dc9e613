//! What each stage does to one question: fetch every planned source, then infer on each response and aggregate.
//!
//! These are the agent's pieces ([`plan`], [`document_for`], [`infer`], [`aggregate`]) split at the I/O / CPU
//! boundary, so that the pipeline can put a bounded channel between the two halves and limit each on its own.
//! The statuses and report lines are the agent's ([`SourceReport`], [`SourceStatus`]).
//!
//! Time: `--deadline` bounds the question's own work. Its clock starts when the question's first fetch starts;
//! the inference gets what the fetch left of it. Time spent waiting in a queue between stages is backpressure
//! doing its job, not the question being slow, so it is not counted: a long batch on a saturated CPU does not
//! time every question out.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::agent::AgentSettings;
use crate::agent::extract::document_for;
use crate::agent::plan::{Action, Step, plan};
use crate::agent::question::Question;
use crate::agent::report::{SourceReport, SourceStatus};
use crate::agent::run::{
    apply_inference, elapsed_message, fetch_failure, millis, with_extra_query,
};
use crate::group::{Deadline, with_timeout};
use crate::infer::{Inference, aggregate};
use crate::pipeline::input::RecordId;
use crate::pipeline::store::{AnswerRow, AnswerStatus};
use crate::pool::{Executor, InferenceJob};
use crate::source::{SourceClient, SourceSpec};

/// A question waiting to be fetched.
#[derive(Debug, Clone)]
pub struct PendingQuestion {
    pub id: RecordId,
    pub line: u64,
    pub question: Question,
}

/// A question whose sources have all answered, failed or been skipped: the fetch → infer hand-over.
#[derive(Debug)]
pub struct FetchedQuestion {
    pub pending: PendingQuestion,
    pub parts: Vec<FetchedPart>,
    /// Wall time of the fetch stage for this question (its sources in parallel).
    pub fetch_elapsed: Duration,
    /// Whether any source was actually asked.
    pub fetched_any: bool,
}

/// One source's response (or why there is none).
#[derive(Debug)]
pub struct FetchedPart {
    pub spec: SourceSpec,
    pub report: SourceReport,
    /// The response body, when the fetch succeeded.
    pub body: Option<Arc<Value>>,
}

/// Fetches every source the plan asks for `pending`, all at once, each within `min(per-source timeout,
/// deadline)`.
pub async fn fetch_question(
    client: &SourceClient,
    sources: &[SourceSpec],
    settings: &AgentSettings,
    pending: PendingQuestion,
) -> FetchedQuestion {
    let started = Instant::now();
    let deadline = Deadline::after(settings.deadline);
    let steps = plan(&pending.question, sources);
    let fetched_any = steps
        .iter()
        .any(|step| matches!(step.action, Action::Fetch(_)));
    let parts = join_all(
        steps
            .into_iter()
            .map(|step| fetch_source(client, settings, deadline, started, step)),
    )
    .await;
    FetchedQuestion {
        pending,
        parts,
        fetch_elapsed: started.elapsed(),
        fetched_any,
    }
}

/// Runs inference on every response on the executor, all at once, within what the deadline has left; then
/// aggregates the answer and builds the row to store.
pub async fn infer_question(
    executor: &Executor,
    settings: &AgentSettings,
    fetched: FetchedQuestion,
) -> AnswerRow {
    let started = Instant::now();
    let deadline = Deadline::after(settings.deadline.saturating_sub(fetched.fetch_elapsed));
    let question = fetched.pending.question.clone();
    let inferences = join_all(
        fetched
            .parts
            .into_iter()
            .map(|part| infer_source(executor, settings, deadline, &question, part)),
    )
    .await;
    let elapsed = fetched.fetch_elapsed + started.elapsed();
    answer_row(
        fetched.pending,
        inferences,
        fetched.fetched_any.then_some(fetched.fetch_elapsed),
        elapsed,
    )
}

/// The row of a line that could not be asked.
pub fn failed_row(id: RecordId, line: u64, why: String) -> AnswerRow {
    AnswerRow {
        id,
        line,
        question: None,
        status: AnswerStatus::Failed,
        answer: json!({"answer": null, "error": why, "sources": []}),
        error: Some(why),
        fetch_ms: None,
        infer_ms: None,
        elapsed_ms: 0.0,
    }
}

async fn fetch_source(
    client: &SourceClient,
    settings: &AgentSettings,
    deadline: Deadline,
    started: Instant,
    step: Step,
) -> FetchedPart {
    let spec = step.source;
    let mut report = SourceReport::new_for(&spec);
    let request = match step.action {
        Action::Skip { reason } => {
            report.error = Some(reason);
            return FetchedPart {
                spec,
                report,
                body: None,
            };
        }
        Action::Fetch(request) => with_extra_query(request, &settings.extra_query, &spec.name),
    };
    let fetch_started = Instant::now();
    let (source_deadline, binding_bound) = deadline.narrow(Some(settings.per_source_timeout));
    let fetched = with_timeout(
        Some(settings.per_source_timeout),
        deadline,
        client.fetch(&spec, &request, source_deadline),
    )
    .await;
    let fetch_ended = Instant::now();
    report.fetch_ms = Some(millis(fetch_ended - fetch_started));
    report.arrived_at_ms = Some(millis(fetch_ended - started));
    let body = match fetched {
        Err(elapsed) => {
            report.status = SourceStatus::TimedOut;
            report.error = Some(elapsed_message(elapsed));
            None
        }
        Ok(Err(error)) => {
            report.attempts = error.attempts();
            let (status, message) = fetch_failure(&error, binding_bound);
            report.status = status;
            report.error = Some(message);
            None
        }
        Ok(Ok(fetched)) => {
            report.attempts = fetched.attempts;
            report.cached = fetched.cached;
            // `Ok` is settled by the inference; until then the source is only "answered".
            Some(fetched.body)
        }
    };
    FetchedPart { spec, report, body }
}

/// One source's inference, or its report unchanged when it has no response.
async fn infer_source(
    executor: &Executor,
    settings: &AgentSettings,
    deadline: Deadline,
    question: &Question,
    part: FetchedPart,
) -> (SourceReport, Option<Inference>) {
    let FetchedPart {
        spec,
        mut report,
        body,
    } = part;
    let Some(body) = body else {
        return (report, None);
    };
    // Extraction happens here, as in the agent's step: the job must be plain data for a `processes` executor.
    let job = executor.run_inference(InferenceJob {
        question: question.as_str().to_owned(),
        document: document_for(&spec, &body),
        cost: settings.inference_cost,
    });
    let inference = apply_inference(&mut report, with_timeout(None, deadline, job).await);
    (report, inference)
}

/// The row for a question that went through both stages: `ok` when every asked source answered, `degraded`
/// when some did not, `failed` when none did or a required one did not.
fn answer_row(
    pending: PendingQuestion,
    results: Vec<(SourceReport, Option<Inference>)>,
    fetch_elapsed: Option<Duration>,
    elapsed: Duration,
) -> AnswerRow {
    let missing: Vec<String> = results
        .iter()
        .filter(|(report, _)| !matches!(report.status, SourceStatus::Ok | SourceStatus::Skipped))
        .map(|(report, _)| {
            format!(
                "{}: {}",
                report.name,
                report.error.as_deref().unwrap_or("no answer")
            )
        })
        .collect();
    let required_missing = results
        .iter()
        .find(|(report, _)| report.required && report.status != SourceStatus::Ok)
        .map(|(report, _)| {
            format!(
                "required source `{}` did not answer: {}",
                report.name,
                report.error.as_deref().unwrap_or("no answer")
            )
        });
    let parts: Vec<(&str, &Inference)> = results
        .iter()
        .filter_map(|(report, inference)| {
            inference
                .as_ref()
                .map(|inference| (report.name.as_str(), inference))
        })
        .collect();
    let (status, answer, error) = if let Some(why) = required_missing {
        (AnswerStatus::Failed, None, Some(why))
    } else if parts.is_empty() {
        let why = if missing.is_empty() {
            "no source applies to the question".to_owned()
        } else {
            format!("no source answered ({})", missing.join("; "))
        };
        (AnswerStatus::Failed, None, Some(why))
    } else if missing.is_empty() {
        (
            AnswerStatus::Ok,
            Some(aggregate(pending.question.as_str(), &parts).text),
            None,
        )
    } else {
        let answer = aggregate(pending.question.as_str(), &parts).text;
        (
            AnswerStatus::Degraded,
            Some(answer),
            Some(missing.join("; ")),
        )
    };
    let infer_ms: Vec<f64> = results
        .iter()
        .filter_map(|(report, _)| report.infer_ms)
        .collect();
    let reports: Vec<&SourceReport> = results.iter().map(|(report, _)| report).collect();
    AnswerRow {
        id: pending.id,
        line: pending.line,
        question: Some(pending.question.as_str().to_owned()),
        status,
        answer: json!({"answer": answer, "error": error, "sources": reports}),
        error,
        fetch_ms: fetch_elapsed.map(millis),
        infer_ms: (!infer_ms.is_empty()).then(|| infer_ms.iter().sum()),
        elapsed_ms: millis(elapsed),
    }
}
