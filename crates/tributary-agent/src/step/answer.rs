//! The answer rule, the same for every driver, and the report it goes into.

use std::time::Duration;

use super::infer::StepRecord;
use crate::infer::{Inference, aggregate};
use crate::question::Question;
use crate::report::{
    AgentReport, AnswerFailure, AnswerStatus, RunMode, SourceReport, SourceStatus, Synthesis,
};
use crate::schedule::{MeasuredJob, efficiency, ideal_makespan};
use crate::sources::Topic;

/// How a question ended by the answer rule: its status, the answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `ok`, `degraded` or `failed`.
    pub status: AnswerStatus,
    /// The unified answer, unless `failed`.
    pub answer: Option<String>,
    /// Why there is no answer (`failed` only).
    pub error: Option<String>,
    /// Why there is no answer, as a kind (`failed` only).
    pub failure: Option<AnswerFailure>,
}

/// What a run measured, besides its steps: for [`report`].
#[derive(Debug, Clone, Copy)]
pub struct RunFacts {
    /// How the steps were scheduled.
    pub mode: RunMode,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU workers of the executor.
    pub workers: usize,
    /// The overall deadline.
    pub deadline: Duration,
    /// Each source's share of it.
    pub per_source_timeout: Duration,
}

/// The answer rule, the same for every driver:
///
/// - a **required** source that did not answer: `failed`, `required_source_failed`, "required source `kb` did
///   not answer: ..." (or `required_source_no_result`, "... had nothing for the question: ..." when it answered
///   `no_result`);
/// - no inference at all: `failed`, `no_source_answered`, "no source answered (weather: ...; news: ...)";
///   `no_inference_finished`, "2 of 3 source(s) answered, but no inference finished (...)" when the deadline
///   cut every inference; `no_source_applies`, "no source applies to the question (...)" when every source
///   was skipped; or `nothing_found`, "no source had anything for the question (...)" when every source was
///   skipped or answered `no_result`;
/// - otherwise the aggregated answer: `ok` when every source that was asked answered, `degraded` when some
///   did not. A `no_result` source counts as answered, like a skipped one is not missed: it was reached and
///   said, correctly, that it knows nothing of the question, which is no failure of the source.
pub fn answer(question: &Question, records: &[StepRecord]) -> Verdict {
    let failed = |failure: AnswerFailure, why: String| Verdict {
        status: AnswerStatus::Failed,
        answer: None,
        error: Some(why),
        failure: Some(failure),
    };
    if let Some(missing) = records
        .iter()
        .find(|record| record.report.required && record.report.status != SourceStatus::Ok)
    {
        let (failure, what) = if missing.report.status == SourceStatus::NoResult {
            (
                AnswerFailure::RequiredSourceNoResult,
                "had nothing for the question",
            )
        } else {
            (AnswerFailure::RequiredSourceFailed, "did not answer")
        };
        return failed(
            failure,
            format!(
                "required source `{}` {what}: {}",
                missing.report.name,
                missing.report.error.as_deref().unwrap_or("no answer")
            ),
        );
    }
    let parts: Vec<(&str, Topic, &Inference)> = records
        .iter()
        .filter_map(|record| {
            record
                .inference
                .as_ref()
                .map(|inference| (record.report.name.as_str(), record.report.topic, inference))
        })
        .collect();
    if parts.is_empty() {
        let reasons = reasons(records.iter().map(|record| &record.report));
        let all_skipped = records
            .iter()
            .all(|record| record.report.status == SourceStatus::Skipped);
        let nothing_to_say = records.iter().all(|record| {
            matches!(
                record.report.status,
                SourceStatus::Skipped | SourceStatus::NoResult
            )
        });
        let responded = records.iter().filter(|record| record.responded).count();
        return if all_skipped {
            failed(
                AnswerFailure::NoSourceApplies,
                format!("{} ({reasons})", AnswerFailure::NoSourceApplies.describe()),
            )
        } else if nothing_to_say {
            failed(
                AnswerFailure::NothingFound,
                format!("{} ({reasons})", AnswerFailure::NothingFound.describe()),
            )
        } else if responded > 0 {
            // The sources were there; the time ran out in inference: a different fix (more time, more workers).
            failed(
                AnswerFailure::NoInferenceFinished,
                format!(
                    "{responded} of {} source(s) answered, but no inference finished ({reasons})",
                    records.len()
                ),
            )
        } else {
            failed(
                AnswerFailure::NoSourceAnswered,
                format!("{} ({reasons})", AnswerFailure::NoSourceAnswered.describe()),
            )
        };
    }
    let status = if records.iter().any(|record| is_missing(&record.report)) {
        AnswerStatus::Degraded
    } else {
        AnswerStatus::Ok
    };
    Verdict {
        status,
        answer: Some(aggregate(question.as_str(), &parts).text),
        error: None,
        failure: None,
    }
}

/// The report of a finished run: the [`answer`] rule applied to its records, with its timings.
pub fn report(question: &Question, records: Vec<StepRecord>, facts: RunFacts) -> AgentReport {
    let verdict = answer(question, &records);
    let ideal = match facts.mode {
        RunMode::Concurrent => ideal_concurrent(&records, facts.workers),
        RunMode::Sequential => ideal_sequential(&records),
    };
    let degraded = records.iter().any(|record| is_missing(&record.report));
    AgentReport {
        question: Some(question.to_string()),
        status: verdict.status,
        answer: verdict.answer,
        error: verdict.error,
        failure: verdict.failure,
        degraded,
        mode: facts.mode,
        elapsed_ms: millis(facts.elapsed),
        ideal_ms: millis(ideal),
        efficiency: efficiency(ideal, facts.elapsed),
        workers: facts.workers,
        deadline_ms: millis(facts.deadline),
        per_source_timeout_ms: millis(facts.per_source_timeout),
        sources: records.into_iter().map(|record| record.report).collect(),
        synthesis: None,
    }
}

/// Adds a run's `synthesis` to its report: it opens the answer, marked as generated, and its CPU time, which
/// follows the fan-out, is added to the ideal schedule.
pub fn add_synthesis(report: &mut AgentReport, synthesis: Synthesis) {
    if let Some(answer) = &report.answer {
        report.answer = Some(format!(
            "In short: {} (generated by {})\n\n{answer}",
            synthesis.text, synthesis.generated_by
        ));
    }
    report.ideal_ms += synthesis.infer_ms;
    report.efficiency = efficiency(
        Duration::from_secs_f64(report.ideal_ms / 1000.0),
        Duration::from_secs_f64(report.elapsed_ms / 1000.0),
    );
    report.synthesis = Some(synthesis);
}

/// The sources that were asked and gave no answer, as `name: why; name: why` (empty when there are none).
pub fn missing_sources(report: &AgentReport) -> String {
    reasons(report.sources.iter().filter(|source| is_missing(source)))
}

/// Whether a source was asked and gave no answer (one that answered it had nothing is not missing).
fn is_missing(report: &SourceReport) -> bool {
    !matches!(
        report.status,
        SourceStatus::Ok | SourceStatus::Skipped | SourceStatus::NoResult
    )
}

/// `name: why; name: why` for these sources.
fn reasons<'a>(reports: impl Iterator<Item = &'a SourceReport>) -> String {
    reports
        .map(|report| {
            format!(
                "{}: {}",
                report.name,
                report.error.as_deref().unwrap_or("no answer")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The best schedule of the measured arrivals and inference times on `workers` cores.
fn ideal_concurrent(records: &[StepRecord], workers: usize) -> Duration {
    let jobs: Vec<MeasuredJob> = records
        .iter()
        .filter_map(|record| {
            let arrival = record.report.arrived_at_ms?;
            Some(MeasuredJob {
                arrival: Duration::from_secs_f64(arrival / 1000.0),
                cpu: Duration::from_secs_f64(record.report.infer_ms.unwrap_or(0.0) / 1000.0),
            })
        })
        .collect();
    ideal_makespan(&jobs, workers)
}

/// The sequential baseline ideally costs every fetch plus every inference.
fn ideal_sequential(records: &[StepRecord]) -> Duration {
    let total_ms: f64 = records
        .iter()
        .map(|record| record.report.fetch_ms.unwrap_or(0.0) + record.report.infer_ms.unwrap_or(0.0))
        .sum();
    Duration::from_secs_f64(total_ms / 1000.0)
}

/// Milliseconds as a float, rounded to microseconds (the schema's unit).
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SourceFailure;
    use crate::sources::Source;

    fn record(name: &str, status: SourceStatus, error: &str, required: bool) -> StepRecord {
        let source = Source::new(
            name,
            crate::sources::SourceKind::News,
            url::Url::parse("http://127.0.0.1:1").expect("url"),
        );
        let mut report = SourceReport::new_for(&source);
        let failure = match status {
            SourceStatus::Skipped => SourceFailure::Skipped,
            SourceStatus::NoResult => SourceFailure::NoResult,
            SourceStatus::TimedOut => SourceFailure::TimedOut,
            SourceStatus::CircuitOpen => SourceFailure::CircuitOpen,
            SourceStatus::Failed | SourceStatus::Ok => SourceFailure::HttpStatus,
        };
        report.settle(status, failure, error.to_owned());
        report.required = required;
        StepRecord {
            report,
            inference: None,
            responded: false,
        }
    }

    /// A source that answered but whose inference the deadline cut short.
    fn responded(name: &str) -> StepRecord {
        let mut record = record(
            name,
            SourceStatus::TimedOut,
            "inference cut short: overall deadline exceeded",
            false,
        );
        record.report.failure = Some(SourceFailure::InferenceTimedOut);
        record.responded = true;
        record
    }

    /// Each way to have no answer has its kind, and an answer has none.
    #[test]
    fn every_failed_verdict_says_its_kind() {
        let question = Question::new("Weather in Atlantis?").expect("valid");
        let kind = |records: &[StepRecord]| answer(&question, records).failure;
        let skipped = || record("news", SourceStatus::Skipped, "no keywords", false);
        let no_result = || record("kb", SourceStatus::NoResult, "zero hits", false);
        let failed = || record("weather", SourceStatus::Failed, "http 500", false);
        assert_eq!(kind(&[skipped()]), Some(AnswerFailure::NoSourceApplies));
        assert_eq!(
            kind(&[skipped(), no_result()]),
            Some(AnswerFailure::NothingFound)
        );
        assert_eq!(
            kind(&[failed(), skipped()]),
            Some(AnswerFailure::NoSourceAnswered)
        );
        assert_eq!(
            kind(&[failed(), responded("news")]),
            Some(AnswerFailure::NoInferenceFinished)
        );
        assert_eq!(
            kind(&[record("kb", SourceStatus::TimedOut, "slow", true)]),
            Some(AnswerFailure::RequiredSourceFailed)
        );
        assert_eq!(
            kind(&[record("kb", SourceStatus::NoResult, "zero hits", true)]),
            Some(AnswerFailure::RequiredSourceNoResult)
        );
    }

    #[test]
    fn sources_that_had_nothing_fail_the_answer_with_their_reasons() {
        let question = Question::new("Weather in Atlantis?").expect("valid");
        let records = [
            record(
                "weather",
                SourceStatus::NoResult,
                "Open-Meteo knows no place named \"Atlantis\"",
                false,
            ),
            record("news", SourceStatus::Skipped, "no keywords", false),
        ];
        let verdict = answer(&question, &records);
        assert_eq!(verdict.status, AnswerStatus::Failed);
        assert_eq!(verdict.failure, Some(AnswerFailure::NothingFound));
        assert_eq!(
            verdict.error.as_deref(),
            Some(
                "no source had anything for the question (weather: Open-Meteo knows no place named \"Atlantis\"; news: no keywords)"
            )
        );
    }

    #[test]
    fn a_source_with_no_result_is_not_missing_but_a_required_one_fails_the_answer() {
        assert!(!is_missing(
            &record("kb", SourceStatus::NoResult, "zero hits", false).report
        ));
        assert!(is_missing(
            &record("kb", SourceStatus::Failed, "http 500", false).report
        ));
        let question = Question::new("What is Lyon?").expect("valid");
        let verdict = answer(
            &question,
            &[record(
                "wikipedia",
                SourceStatus::NoResult,
                "\"Lyon\" is ambiguous on Wikipedia (disambiguation page)",
                true,
            )],
        );
        assert_eq!(
            verdict.error.as_deref(),
            Some(
                "required source `wikipedia` had nothing for the question: \"Lyon\" is ambiguous on Wikipedia (disambiguation page)"
            )
        );
    }

    #[test]
    fn a_no_result_status_reads_snake_case() {
        assert_eq!(SourceStatus::NoResult.as_str(), "no_result");
        assert_eq!(
            serde_json::to_value(SourceStatus::NoResult).expect("serializes"),
            "no_result"
        );
    }
}
