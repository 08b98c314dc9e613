//! The inference half of a step: the simulated LLM on a source's response, on the executor within the
//! deadline, and how its outcome settles the source's report.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tributary::group::{Deadline, Elapsed, with_timeout};
use tributary::pool::{ExecutorError, JobTiming};
use tributary::trace::{Activity, OpenSpan, Outcome as SpanOutcome};

use super::StepContext;
use super::answer::millis;
use super::chat;
use super::fetch::Fetch;
use super::messages::{error_chain, inference_cut_short};
use super::timeline::{close, record_inference, record_kept_inference, source_lane, worker_lane};
use crate::extract::document_for;
use crate::infer::aggregate::contributes;
use crate::infer::{InferError, Inference, InferenceJob};
use crate::report::{SourceFailure, SourceReport, SourceStatus};

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
    // Only a response served from the cache can have been inferred before.
    let kept = report
        .cached
        .then(|| {
            context.inferences.get(
                source.name(),
                context.question.as_str(),
                &context.models,
                &body,
            )
        })
        .flatten();
    if let Some(inference) = kept {
        if let Some(timeline) = &context.timeline {
            record_kept_inference(timeline, &source);
        }
        report.infer_ms = Some(0.0);
        report.worker = None;
        return StepRecord {
            inference: settle(&mut report, inference),
            report,
            responded: true,
        };
    }
    // Extraction happens here, on the caller's side: the job must be plain data for a `processes` executor.
    let document = document_for(&source, &body);
    // Kept for the chat endpoint, which is asked after the job; copied only when there is one.
    let for_chat = context.chat.as_ref().map(|_| document.clone());
    let job = InferenceJob::new(context.question.as_str(), document, context.inference_units)
        // Only a generation winds up; the simulated model's job carries no time it would not read. A chat endpoint
        // is asked from here, after the job.
        .with_models(
            context.models.on_cpu(),
            context
                .models
                .generator
                .as_ref()
                .and_then(|_| wind_up_at(deadline)),
        );
    // Watchers see the inference begin on its worker's lane when a worker starts it (waiting for one, it is on no
    // lane), named for its source; a chat model's words reach them under it as it writes them. A job started
    // after the deadline dropped it leaves its span here, closed as cancelled when the last handle goes.
    let started: Arc<Mutex<Option<OpenSpan>>> = Arc::default();
    let on_start = {
        let (started, timeline, name) = (
            Arc::clone(&started),
            context.timeline.clone(),
            source.name().to_owned(),
        );
        move |worker: usize| {
            if let Some(timeline) = &timeline {
                let open = timeline.begin_for(
                    worker_lane(worker),
                    format!("infer {name}"),
                    Activity::Infer,
                    name.clone(),
                );
                *started.lock().unwrap_or_else(PoisonError::into_inner) = Some(open);
            }
        }
    };
    let on_progress = {
        let started = Arc::clone(&started);
        move |text: &str| {
            if let Some(open) = &*started.lock().unwrap_or_else(PoisonError::into_inner) {
                open.progress().report(text);
            }
        }
    };
    let run = context.executor.run_job_watched(job, on_start, on_progress);
    let mut outcome = with_timeout(None, deadline, run).await;
    let open = started
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    // The worker's part ends here: its span closes now, whatever a chat endpoint does next.
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
    // A chat endpoint writes the summary from the sentences picked, as I/O on this task: its words are drawn on
    // the source's lane, where this task waits for them.
    let mut written = true;
    if let (Some(chat), Some(document)) = (&context.chat, &for_chat)
        && let Ok(Ok((Ok(inference), _))) = &mut outcome
        && contributes(report.topic, inference)
    {
        let lane = source_lane(source.name());
        let writing = context.timeline.as_ref().map(|timeline| {
            timeline.begin_for(
                lane.clone(),
                format!("write {}", source.name()),
                Activity::Infer,
                source.name(),
            )
        });
        let wind_up = wind_up_at_instant(deadline).map_or(Deadline::none(), Deadline::at);
        written = chat::write_summary(
            context,
            chat,
            &lane,
            context.question.as_str(),
            document,
            inference,
            (wind_up, deadline),
            writing.as_ref().map(OpenSpan::progress),
        )
        .await;
        close(
            writing,
            if written {
                SpanOutcome::Ok
            } else {
                SpanOutcome::Failed
            },
        );
    }
    // Kept only where the response can be served again: from a source whose answers are cached.
    // A summary cut short, or one the endpoint failed to write, is this run's, not the response's: the next
    // question may have the time, or the endpoint, to finish it.
    if let Ok(Ok((Ok(inference), _))) = &outcome
        && source.spec.cache_lifetime().is_some()
        && !inference.cut_short
        && written
    {
        context.inferences.insert(
            source.name(),
            context.question.as_str(),
            &context.models,
            &body,
            inference,
        );
    }
    let inference = apply_inference(&mut report, outcome);
    StepRecord {
        report,
        inference,
        responded: true,
    }
}

/// How long before its deadline a generation stops to return what it wrote: one step of the model (a chunk of
/// the prompt takes about 80 ms of a 135M model here, a token 20 ms), with room for a busy machine, and the way
/// back from the worker.
const WIND_UP: Duration = Duration::from_millis(250);

/// When a generation bounded by `deadline` winds up, on the runtime's clock; `None` without a deadline.
fn wind_up_at_instant(deadline: Deadline) -> Option<tokio::time::Instant> {
    deadline
        .instant()
        .map(|at| at.checked_sub(WIND_UP).unwrap_or(at))
}

/// [`wind_up_at_instant`] as wall-clock time (a worker process reads it too); now when it has passed.
pub(super) fn wind_up_at(deadline: Deadline) -> Option<SystemTime> {
    let left = wind_up_at_instant(deadline)?.saturating_duration_since(tokio::time::Instant::now());
    SystemTime::now().checked_add(left)
}

/// A source's inference as the executor and the deadline left it: cut short by the deadline, failed in the
/// executor (a crashed worker, a shut-down pool), or run (to the end, or cancelled) on a worker.
pub(super) type InferenceOutcome =
    Result<Result<(Result<Inference, InferError>, JobTiming), ExecutorError>, Elapsed>;

/// Records an inference's outcome in `report` (status, failure, error, worker, CPU time, summary) and returns the
/// inference when there is one.
fn apply_inference(report: &mut SourceReport, outcome: InferenceOutcome) -> Option<Inference> {
    match outcome {
        Err(elapsed) => {
            report.settle(
                SourceStatus::TimedOut,
                SourceFailure::InferenceTimedOut,
                inference_cut_short(elapsed),
            );
            None
        }
        Ok(Err(executor_error)) => {
            report.settle(
                SourceStatus::Failed,
                SourceFailure::InferenceFailed,
                format!("inference failed: {}", error_chain(&executor_error)),
            );
            None
        }
        Ok(Ok((result, timing))) => {
            report.worker = Some(timing.worker_index);
            report.infer_ms = Some(millis(timing.run_time()));
            match result {
                Ok(inference) => settle(report, inference),
                Err(InferError::Cancelled { .. }) => {
                    report.settle(
                        SourceStatus::TimedOut,
                        SourceFailure::Cancelled,
                        "inference cancelled".to_owned(),
                    );
                    None
                }
                Err(error @ InferError::Model { .. }) => {
                    report.settle(
                        SourceStatus::Failed,
                        SourceFailure::InferenceFailed,
                        format!("inference failed: {error}"),
                    );
                    None
                }
            }
        }
    }
}

/// Settles `report` with a finished `inference`: `ok` with its summary, or `no_result` when nothing in the response
/// bears on the question (said so, not passed off as `ok` with an empty line).
fn settle(report: &mut SourceReport, inference: Inference) -> Option<Inference> {
    if !contributes(report.topic, &inference) {
        report.settle(
            SourceStatus::NoResult,
            SourceFailure::NoResult,
            "nothing in its response bears on the question".to_owned(),
        );
        return None;
    }
    report.summary = Some(inference.summary.join(" "));
    report.generated_by.clone_from(&inference.generated_by);
    report.status = SourceStatus::Ok;
    report.failure = None;
    report.error = None;
    Some(inference)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sources::{Source, SourceKind};

    fn fetched() -> SourceReport {
        let source = Source::new(
            "kb",
            SourceKind::KnowledgeBase,
            url::Url::parse("http://127.0.0.1:1").expect("url"),
        );
        SourceReport::new_for(&source)
    }

    fn timing() -> JobTiming {
        let now = Instant::now();
        JobTiming {
            worker_index: 1,
            queued_at: now,
            started_at: now,
            finished_at: now + Duration::from_millis(5),
        }
    }

    /// Each way an inference can end without one has its kind: the deadline, the executor, a cancelled job.
    #[test]
    fn each_inference_outcome_has_its_kind() {
        let kind = |outcome: InferenceOutcome| {
            let mut report = fetched();
            let inference = apply_inference(&mut report, outcome);
            assert!(inference.is_none());
            assert!(report.error.is_some(), "{report:#?}");
            (report.status, report.failure)
        };
        assert_eq!(
            kind(Err(Elapsed::DeadlineExceeded)),
            (
                SourceStatus::TimedOut,
                Some(SourceFailure::InferenceTimedOut)
            )
        );
        assert_eq!(
            kind(Ok(Err(ExecutorError::WorkerCrashed {
                worker: 0,
                detail: "signal 9".to_owned(),
            }))),
            (SourceStatus::Failed, Some(SourceFailure::InferenceFailed))
        );
        assert_eq!(
            kind(Ok(Ok((
                Err(InferError::Cancelled {
                    units_done: 1,
                    units_budget: 2,
                }),
                timing(),
            )))),
            (SourceStatus::TimedOut, Some(SourceFailure::Cancelled))
        );
    }
}
