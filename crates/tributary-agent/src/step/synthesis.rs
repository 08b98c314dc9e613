//! After the fan-out, one answer across the sources' summaries, written by the chat model on the executor within
//! what is left of the deadline (`ask --synthesize`): sequential after the sources, drawn on the timeline, its
//! words streamed like an inference's.

use tributary::group::{Deadline, with_timeout};
use tributary::trace::{
    Activity, EventKind, InstantEvent, OpenSpan, Outcome as SpanOutcome, Span, Timeline,
};

use super::StepContext;
use super::answer::millis;
use super::infer::{StepRecord, wind_up_at};
use super::timeline::{close, worker_lane};
use crate::infer::{InferError, SynthesisJob};
use crate::report::{SourceStatus, Synthesis};

/// The lane a synthesis is queued on, beside the sources' lanes.
pub const SYNTHESIS_LANE: &str = "synthesis";

/// Writes one answer across the summaries of the sources in `records` that answered, when two or more did and
/// the models have a local chat model; `None` otherwise, or when the writing failed, was cancelled, or came too
/// late (each drawn on the timeline, the answer then stands without it).
pub async fn synthesize(
    context: &StepContext,
    records: &[StepRecord],
    deadline: Deadline,
) -> Option<Synthesis> {
    // Only a local chat model synthesises (an endpoint's name is a chat model too).
    let generated_by = context
        .models
        .generator
        .as_ref()
        .and_then(|_| context.models.chat_model())?;
    let summaries: Vec<(String, String)> = records
        .iter()
        .filter(|record| record.report.status == SourceStatus::Ok)
        .filter_map(|record| {
            let summary = record.report.summary.as_ref()?.trim();
            (!summary.is_empty()).then(|| (record.report.name.clone(), summary.to_owned()))
        })
        .collect();
    if summaries.len() < 2 {
        return None;
    }
    let job = SynthesisJob {
        question: context.question.as_str().to_owned(),
        summaries: summaries.clone(),
        models: context.models.on_cpu(),
        wind_up_at: wind_up_at(deadline),
    };
    let open = context
        .timeline
        .as_ref()
        .map(|timeline| timeline.begin(SYNTHESIS_LANE, "synthesize", Activity::Infer));
    let progress = open.as_ref().map(OpenSpan::progress);
    let run = context.executor.run_job_with_progress(job, move |text| {
        if let Some(progress) = &progress {
            progress.report(text);
        }
    });
    let outcome = tokio::select! {
        biased;
        () = context.cancel.cancelled() => None,
        outcome = with_timeout(None, deadline, run) => Some(outcome),
    };
    let note = |timeline: &Timeline, what: String| {
        timeline.record_event(InstantEvent::new(
            SYNTHESIS_LANE,
            what,
            EventKind::Timeout,
            timeline.elapsed(),
        ));
    };
    // A synthesis that did not finish leaves the answer as it is, and says why on the timeline.
    let give_up = |open: Option<OpenSpan>, why: String, span: SpanOutcome| {
        tracing::warn!(why, "no synthesis");
        if let Some(timeline) = &context.timeline {
            note(timeline, why);
        }
        close(open, span);
        None
    };
    let (written, timing) = match outcome {
        Some(Ok(Ok((Ok(written), timing)))) => (written, timing),
        None | Some(Ok(Ok((Err(InferError::Cancelled { .. }), _)))) => {
            return give_up(
                open,
                "synthesis cancelled".to_owned(),
                SpanOutcome::Cancelled,
            );
        }
        Some(Err(_)) => {
            return give_up(
                open,
                "synthesis cut short by the deadline".to_owned(),
                SpanOutcome::TimedOut,
            );
        }
        Some(Ok(Err(error))) => {
            return give_up(
                open,
                format!("synthesis failed: {error}"),
                SpanOutcome::Failed,
            );
        }
        Some(Ok(Ok((Err(error), _)))) => {
            return give_up(
                open,
                format!("synthesis failed: {error}"),
                SpanOutcome::Failed,
            );
        }
    };
    if let Some(timeline) = &context.timeline {
        timeline.record(
            Span::new(
                worker_lane(timing.worker_index),
                "synthesize",
                Activity::Infer,
                timeline.offset(timing.started_at),
                timeline.offset(timing.finished_at),
            )
            .with_arg("sources", summaries.len())
            .with_arg("queue_wait_ms", millis(timing.queue_wait())),
        );
        if written.text.is_empty() {
            note(timeline, "synthesis: no word in time".to_owned());
        }
    }
    close(open, SpanOutcome::Ok);
    if written.text.is_empty() {
        return None;
    }
    Some(Synthesis {
        text: written.text,
        generated_by,
        sources: summaries.into_iter().map(|(source, _)| source).collect(),
        infer_ms: millis(timing.run_time()),
        worker: Some(timing.worker_index),
        cut_short: written.cut_short,
    })
}
