//! What a run reports: the answer, per-source status and timings, and how close the run came to the ideal.
//!
//! [`AgentReport`] is the one answer shape of every driver: what `tributary ask --json` prints, and what
//! `tributary batch` stores in its database and exports (documented once, in docs/ASK.md). Fields are only ever
//! added, never renamed or removed; durations are milliseconds as floating-point numbers.
//!
//! Meaning travels in types: a source's [`SourceFailure`] and an answer's [`AnswerFailure`] say *why* as kinds
//! every driver can act on (a hint, a metric label, a badge on the page), beside the `error` text, which is for
//! people and may be reworded at any time. No driver reads the text to decide anything.

use serde::{Deserialize, Serialize};

use crate::sources::{Source, SourceKind, Topic};

/// How a question ended, by the answer rule ([`crate::step::answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// An answer, and every source that was asked answered.
    Ok,
    /// An answer, but some source that was asked did not answer.
    Degraded,
    /// No answer: no source answered, a required one did not, or (batch) the line was unusable.
    Failed,
}

/// How the sources of a run were scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Every source at once, each response inferred on as it arrives.
    Concurrent,
    /// One source after another, fetch then inference: the chapter's baseline.
    Sequential,
}

/// How one source fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    /// It answered and its answer went through inference.
    Ok,
    /// Its own timeout or the overall deadline cut it short (the fetch or the inference).
    TimedOut,
    /// It answered with an error, an oversized or malformed body, or could not be reached.
    Failed,
    /// Its circuit breaker is open: it kept failing, so it was not asked this time (answered at once).
    CircuitOpen,
    /// The plan did not ask it: the question gave it nothing to look up.
    Skipped,
    /// It answered, but had nothing for this question (no place by that name, zero hits, an ambiguous or
    /// missing page); `error` says why. Like `skipped`, not a failure of the source: it does not by itself
    /// degrade the answer.
    NoResult,
}

/// Why a source gave no answer, as a kind; its report's `error` says the same in words. Serialised in
/// snake_case (`timed_out`, `http_status`, ...). `null` in a report when the source answered (`ok`).
///
/// Derived from the engine's typed errors where the failure happened (the fetch's
/// [`FetchErrorKind`](tributary::source::FetchErrorKind), the bound that [`Elapsed`](tributary::group::Elapsed),
/// the inference's outcome), never from a message. New kinds may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceFailure {
    /// The plan did not ask it: the question gave it nothing to look up (status `skipped`).
    Skipped,
    /// It answered, but had nothing for the question (status `no_result`).
    NoResult,
    /// No connection could be made: the host name did not resolve, nothing listened, or the host was unreachable.
    Connect,
    /// The connection failed after it was made: reset or closed mid-request, a response that is not HTTP, a
    /// redirect loop.
    Transport,
    /// The source's own bound ran out: its per-attempt timeout, or its per-source timeout over all attempts.
    TimedOut,
    /// The overall deadline ran out while it was being fetched (or before its turn came).
    Deadline,
    /// It answered with a non-success HTTP status; the report's `http_status` says which.
    HttpStatus,
    /// Its response body was larger than the source's limit.
    BodyTooLarge,
    /// Its response body was not valid JSON.
    Malformed,
    /// Its rate limit had no free slot before the deadline, so the request was not sent.
    RateLimited,
    /// Its circuit breaker is open: it kept failing, so it was not asked this time (status `circuit_open`).
    CircuitOpen,
    /// Its protocol asked for more requests than a kind may make: a bug of this program.
    Protocol,
    /// (`mcp`) Its tool answered that the call failed, or refused it (an unknown tool, arguments of the wrong
    /// shape).
    ToolError,
    /// Its work was stopped before it ended: the run was cancelled (a server's client went away), or its
    /// inference job was.
    Cancelled,
    /// It answered, but its inference failed in the executor (a crashed worker process, a shut-down pool).
    InferenceFailed,
    /// It answered, but the deadline cut its inference short.
    InferenceTimedOut,
    /// The step failed inside this program (it panicked): a bug.
    Internal,
    /// A kind this version does not know: written by a newer one, or a new kind of fetch failure of the engine's.
    #[serde(other)]
    Other,
}

/// Why a question has no answer, as a kind; the report's `error` says the same in words. Serialised in
/// snake_case. `null` in a report that has an answer (`ok` or `degraded`). New kinds may be added: match with a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnswerFailure {
    /// A source the configuration marks `required` did not answer (failed, timed out, circuit open, or not
    /// asked); its own report's `failure` says why.
    RequiredSourceFailed,
    /// A required source answered, but had nothing for the question.
    RequiredSourceNoResult,
    /// The plan asked no source: none applies to the question.
    NoSourceApplies,
    /// Every source was skipped or answered it had nothing for the question.
    NothingFound,
    /// Sources answered, but the deadline (or the executor) ended every inference: more time, more workers or
    /// cheaper inference is the fix, not the network.
    NoInferenceFinished,
    /// No source that was asked answered.
    NoSourceAnswered,
    /// (batch) The input line could not be asked: not valid UTF-8, too long, malformed JSON, no question, or no
    /// readable id.
    UnusableLine,
    /// (distributed batch) A question or answer message could not be read.
    UnreadableMessage,
    /// (distributed batch) The question was delivered as often as the batch allows, each delivery ending
    /// without an answer (a worker crashed, was killed, or held it too long), so it was not run again.
    DeliveryLimit,
    /// A kind this version does not know: written by a newer one.
    #[serde(other)]
    Other,
}

impl AnswerStatus {
    /// The name in reports and in the batch database.
    pub fn as_str(&self) -> &'static str {
        match self {
            AnswerStatus::Ok => "ok",
            AnswerStatus::Degraded => "degraded",
            AnswerStatus::Failed => "failed",
        }
    }
}

impl RunMode {
    /// The name in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunMode::Concurrent => "concurrent",
            RunMode::Sequential => "sequential",
        }
    }
}

impl SourceStatus {
    /// The name in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::TimedOut => "timed_out",
            SourceStatus::Failed => "failed",
            SourceStatus::CircuitOpen => "circuit_open",
            SourceStatus::Skipped => "skipped",
            SourceStatus::NoResult => "no_result",
        }
    }
}

impl SourceFailure {
    /// The name in reports (and in metric labels).
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceFailure::Skipped => "skipped",
            SourceFailure::NoResult => "no_result",
            SourceFailure::Connect => "connect",
            SourceFailure::Transport => "transport",
            SourceFailure::TimedOut => "timed_out",
            SourceFailure::Deadline => "deadline",
            SourceFailure::HttpStatus => "http_status",
            SourceFailure::BodyTooLarge => "body_too_large",
            SourceFailure::Malformed => "malformed",
            SourceFailure::RateLimited => "rate_limited",
            SourceFailure::CircuitOpen => "circuit_open",
            SourceFailure::Protocol => "protocol",
            SourceFailure::ToolError => "tool_error",
            SourceFailure::Cancelled => "cancelled",
            SourceFailure::InferenceFailed => "inference_failed",
            SourceFailure::InferenceTimedOut => "inference_timed_out",
            SourceFailure::Internal => "internal",
            SourceFailure::Other => "other",
        }
    }
}

impl AnswerFailure {
    /// The name in reports (and in metric labels).
    pub fn as_str(&self) -> &'static str {
        match self {
            AnswerFailure::RequiredSourceFailed => "required_source_failed",
            AnswerFailure::RequiredSourceNoResult => "required_source_no_result",
            AnswerFailure::NoSourceApplies => "no_source_applies",
            AnswerFailure::NothingFound => "nothing_found",
            AnswerFailure::NoInferenceFinished => "no_inference_finished",
            AnswerFailure::NoSourceAnswered => "no_source_answered",
            AnswerFailure::UnusableLine => "unusable_line",
            AnswerFailure::UnreadableMessage => "unreadable_message",
            AnswerFailure::DeliveryLimit => "delivery_limit",
            AnswerFailure::Other => "other",
        }
    }

    /// The kind in a few words, for people: how an answer's `error` begins (before each source's reason) and the
    /// headline a driver prints when there is no answer.
    pub fn describe(&self) -> &'static str {
        match self {
            AnswerFailure::RequiredSourceFailed => "a required source did not answer",
            AnswerFailure::RequiredSourceNoResult => {
                "a required source had nothing for the question"
            }
            AnswerFailure::NoSourceApplies => "no source applies to the question",
            AnswerFailure::NothingFound => "no source had anything for the question",
            AnswerFailure::NoInferenceFinished => {
                "the sources answered, but no inference finished in time"
            }
            AnswerFailure::NoSourceAnswered => "no source answered",
            AnswerFailure::UnusableLine => "the input line could not be asked",
            AnswerFailure::UnreadableMessage => "a question or answer message could not be read",
            AnswerFailure::DeliveryLimit => {
                "the question was delivered as often as the batch allows"
            }
            AnswerFailure::Other => "a failure this version does not know",
        }
    }
}

/// One source's part in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceReport {
    /// The source's name.
    pub name: String,
    /// The protocol, as the sources file names it: `weather`, `news` or `kb` (the simulated services),
    /// `open-meteo`, `hn-algolia` or `wikipedia`.
    pub kind: SourceKind,
    /// What the source knows about, whatever its protocol: `weather`, `news` or `knowledge`.
    pub topic: Topic,
    /// How it fared.
    pub status: SourceStatus,
    /// Why it did not answer (or why it was skipped), for people; `null` when `ok`.
    pub error: Option<String>,
    /// Why it did not answer, as a kind to act on; `null` exactly when `error` is. Absent from reports written
    /// before it existed (read as `null`).
    #[serde(default)]
    pub failure: Option<SourceFailure>,
    /// The HTTP status the source answered with when `failure` is `http_status`; `null` otherwise.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// HTTP requests sent, hedges included (0 when skipped, served from the cache without waiting, or refused by
    /// an open circuit).
    pub attempts: u32,
    /// How many of those requests were hedges (a second request sent because the first was slow).
    pub hedges: u32,
    /// Whether the response came from the cache instead of an upstream call.
    pub cached: bool,
    /// Time from the start of the fetch until the response (or the failure); `null` when skipped.
    pub fetch_ms: Option<f64>,
    /// CPU time of the inference on its worker; `null` when there was none.
    pub infer_ms: Option<f64>,
    /// When the response arrived, since the start of the run.
    pub arrived_at_ms: Option<f64>,
    /// Which pool worker ran the inference: its index, from 0. What people read (the table, the timeline, the
    /// page, the lab's charts) numbers workers from 1, as `worker + 1`; this field keeps its meaning, so that a
    /// batch database's rows agree whichever version stored them.
    pub worker: Option<usize>,
    /// Whether the configuration marks the source as required.
    pub required: bool,
    /// The summary the inference produced from this source: sentences of its response, or a text a chat model
    /// wrote from them (then `generated_by` names it).
    pub summary: Option<String>,
    /// The chat model that wrote `summary`, when one did (`--model` with a GGUF file): generated text, to be
    /// read as such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<String>,
}

/// The whole run for one question: the answer every driver gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentReport {
    /// The question, trimmed; `null` only for a batch line that held no readable question.
    pub question: Option<String>,
    /// `ok`, `degraded` or `failed`, by the answer rule.
    pub status: AnswerStatus,
    /// The unified answer; `null` when there is none (exit code 3).
    pub answer: Option<String>,
    /// Why there is no answer, for people; `null` when there is one.
    pub error: Option<String>,
    /// Why there is no answer, as a kind to act on; `null` exactly when `error` is. Absent from reports written
    /// before it existed (read as `null`).
    #[serde(default)]
    pub failure: Option<AnswerFailure>,
    /// True when a source that was asked did not answer.
    pub degraded: bool,
    /// How the sources were scheduled.
    pub mode: RunMode,
    /// Wall time of the run (in a batch: the question's own work, time queued between stages excluded).
    pub elapsed_ms: f64,
    /// The best possible time for the measured fetch times and inference costs on `workers` cores.
    pub ideal_ms: f64,
    /// `ideal_ms / elapsed_ms` (1.0 = nothing lost to orchestration).
    pub efficiency: f64,
    /// CPU workers of the executor.
    pub workers: usize,
    /// The overall deadline.
    pub deadline_ms: f64,
    /// Each source's share of it.
    pub per_source_timeout_ms: f64,
    /// One line per configured source, in configuration order.
    pub sources: Vec<SourceReport>,
    /// The chat model's one answer across the sources' summaries, when asked for (`ask --synthesize`) and two or
    /// more sources had something to say; it also opens `answer`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<Synthesis>,
}

/// One answer written across the sources' summaries by the chat model, after the fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Synthesis {
    /// What the model wrote; ends `… (cut short)` when the deadline or the token limit stopped it.
    pub text: String,
    /// The chat model that wrote it (its file name): generated text, to be read as such.
    pub generated_by: String,
    /// The sources whose summaries it was written from, in configuration order.
    pub sources: Vec<String>,
    /// CPU time of the writing (after the fan-out, so the ideal schedule counts it too).
    pub infer_ms: f64,
    /// Which pool worker wrote it: its index, from 0, as [`SourceReport::worker`].
    pub worker: Option<usize>,
    /// Whether the deadline or the token limit stopped it.
    pub cut_short: bool,
}

impl SourceReport {
    /// A report for `source` before anything happened to it.
    pub fn new_for(source: &Source) -> Self {
        Self {
            name: source.name().to_owned(),
            kind: source.kind,
            topic: source.topic(),
            status: SourceStatus::Skipped,
            error: None,
            failure: None,
            http_status: None,
            attempts: 0,
            hedges: 0,
            cached: false,
            fetch_ms: None,
            infer_ms: None,
            arrived_at_ms: None,
            worker: None,
            required: source.required,
            summary: None,
            generated_by: None,
        }
    }

    /// Ends the source's part without an answer: how it fared, why as a kind and in words, always together.
    pub(crate) fn settle(&mut self, status: SourceStatus, failure: SourceFailure, error: String) {
        self.status = status;
        self.failure = Some(failure);
        self.error = Some(error);
    }
}

impl AgentReport {
    /// Whether the run produced an answer that can be used (exit code 0).
    pub fn answered(&self) -> bool {
        self.answer.is_some()
    }
}

/// `ask --compare`: the sequential baseline and the concurrent agent, one after the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    /// The question, trimmed.
    pub question: String,
    /// The baseline's report.
    pub sequential: AgentReport,
    /// The agent's report.
    pub concurrent: AgentReport,
    /// `sequential.elapsed_ms / concurrent.elapsed_ms`.
    pub speedup: f64,
    /// The speed-up the ideal schedules allow for the measured fetch and inference times.
    pub ideal_speedup: f64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SOURCE_FAILURES: [SourceFailure; 17] = [
        SourceFailure::Skipped,
        SourceFailure::NoResult,
        SourceFailure::Connect,
        SourceFailure::Transport,
        SourceFailure::TimedOut,
        SourceFailure::Deadline,
        SourceFailure::HttpStatus,
        SourceFailure::BodyTooLarge,
        SourceFailure::Malformed,
        SourceFailure::RateLimited,
        SourceFailure::CircuitOpen,
        SourceFailure::Protocol,
        SourceFailure::Cancelled,
        SourceFailure::InferenceFailed,
        SourceFailure::InferenceTimedOut,
        SourceFailure::Internal,
        SourceFailure::Other,
    ];

    const ANSWER_FAILURES: [AnswerFailure; 10] = [
        AnswerFailure::RequiredSourceFailed,
        AnswerFailure::RequiredSourceNoResult,
        AnswerFailure::NoSourceApplies,
        AnswerFailure::NothingFound,
        AnswerFailure::NoInferenceFinished,
        AnswerFailure::NoSourceAnswered,
        AnswerFailure::UnusableLine,
        AnswerFailure::UnreadableMessage,
        AnswerFailure::DeliveryLimit,
        AnswerFailure::Other,
    ];

    /// A report as `ask --json` printed it before the failure kinds existed (one source failed, one skipped).
    fn report_without_kinds() -> serde_json::Value {
        let source = |name: &str, kind: &str, topic: &str, status: &str, error: &str| {
            json!({
                "name": name, "kind": kind, "topic": topic, "status": status, "error": error,
                "attempts": 3, "hedges": 0, "cached": false, "fetch_ms": 12.5, "infer_ms": null,
                "arrived_at_ms": 12.5, "worker": null, "required": false, "summary": null,
            })
        };
        json!({
            "question": "Weather in Lyon?",
            "status": "failed",
            "answer": null,
            "error": "no source answered (weather: failed to ...; news: no keywords)",
            "degraded": true,
            "mode": "concurrent",
            "elapsed_ms": 40.0,
            "ideal_ms": 12.5,
            "efficiency": 0.3125,
            "workers": 2,
            "deadline_ms": 10000.0,
            "per_source_timeout_ms": 5000.0,
            "sources": [
                source("weather", "open-meteo", "weather", "failed", "failed to ..."),
                source("news", "hn-algolia", "news", "skipped", "no keywords"),
            ],
        })
    }

    #[test]
    fn failure_kinds_serialise_as_their_names() {
        for failure in SOURCE_FAILURES {
            let json = serde_json::to_value(failure).expect("serializes");
            assert_eq!(json, failure.as_str(), "{failure:?}");
            assert_eq!(
                serde_json::from_value::<SourceFailure>(json).expect("reads back"),
                failure
            );
        }
        for failure in ANSWER_FAILURES {
            let json = serde_json::to_value(failure).expect("serializes");
            assert_eq!(json, failure.as_str(), "{failure:?}");
            assert_eq!(
                serde_json::from_value::<AnswerFailure>(json).expect("reads back"),
                failure
            );
        }
    }

    /// A row stored (or a NATS answer sent) by a newer version may carry a kind this one does not know: it reads
    /// as `other` instead of failing the whole report.
    #[test]
    fn a_kind_from_a_newer_version_reads_as_other() {
        assert_eq!(
            serde_json::from_value::<SourceFailure>(json!("quantum_flux")).expect("reads"),
            SourceFailure::Other
        );
        assert_eq!(
            serde_json::from_value::<AnswerFailure>(json!("quantum_flux")).expect("reads"),
            AnswerFailure::Other
        );
    }

    /// Batch rows and NATS answers written before the kinds existed still read, with no kind; read and written
    /// again, every field they had comes back unchanged, with the new ones beside them.
    #[test]
    fn a_report_without_the_kinds_reads_and_keeps_every_field() {
        let old = report_without_kinds();
        let report: AgentReport = serde_json::from_value(old.clone()).expect("an old report reads");
        assert_eq!(report.failure, None);
        assert_eq!(report.sources[0].kind, SourceKind::OpenMeteo);
        assert_eq!(report.sources[0].topic, Topic::Weather);
        assert_eq!(report.sources[0].failure, None);
        assert_eq!(report.sources[1].http_status, None);
        let again = serde_json::to_value(&report).expect("serializes");
        let (old, again) = (
            old.as_object().expect("object"),
            again.as_object().expect("object"),
        );
        for (key, value) in old {
            if key != "sources" {
                assert_eq!(&again[key], value, "{key}");
            }
        }
        assert_eq!(again["failure"], serde_json::Value::Null);
        for (old_source, source) in old["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .zip(again["sources"].as_array().expect("sources"))
        {
            for (key, value) in old_source.as_object().expect("object") {
                assert_eq!(&source[key], value, "{key}");
            }
            assert_eq!(source["failure"], serde_json::Value::Null);
            assert_eq!(source["http_status"], serde_json::Value::Null);
        }
    }

    #[test]
    fn a_report_with_the_kinds_round_trips() {
        let mut old = report_without_kinds();
        old["failure"] = json!("no_source_answered");
        old["sources"][0]["failure"] = json!("http_status");
        old["sources"][0]["http_status"] = json!(503);
        old["sources"][1]["failure"] = json!("skipped");
        old["sources"][1]["http_status"] = json!(null);
        let report: AgentReport = serde_json::from_value(old.clone()).expect("reads");
        assert_eq!(report.failure, Some(AnswerFailure::NoSourceAnswered));
        assert_eq!(report.sources[0].failure, Some(SourceFailure::HttpStatus));
        assert_eq!(report.sources[0].http_status, Some(503));
        assert_eq!(report.sources[1].failure, Some(SourceFailure::Skipped));
        assert_eq!(serde_json::to_value(&report).expect("serializes"), old);
    }
}
