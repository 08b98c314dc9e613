//! What a run reports: the answer, per-source status and timings, and how close the run came to the ideal.
//!
//! [`AgentReport`] is the one answer shape of every driver: what `tributary ask --json` prints, and what
//! `tributary batch` stores in its database and exports (documented once, in the README). Fields are only ever
//! added, never renamed or removed; durations are milliseconds as floating-point numbers.

use serde::{Deserialize, Serialize};

use crate::sources::Source;

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

/// One source's part in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceReport {
    /// The source's name.
    pub name: String,
    /// The protocol, as the sources file names it: `weather`, `news` or `kb` (the simulated services),
    /// `open-meteo`, `hn-algolia` or `wikipedia`.
    pub kind: String,
    /// What the source knows about, whatever its protocol: `weather`, `news` or `knowledge`.
    pub topic: String,
    /// How it fared.
    pub status: SourceStatus,
    /// Why it did not answer (or why it was skipped); `null` when `ok`.
    pub error: Option<String>,
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
    /// Which pool worker ran the inference.
    pub worker: Option<usize>,
    /// Whether the configuration marks the source as required.
    pub required: bool,
    /// The extractive summary the inference produced from this source.
    pub summary: Option<String>,
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
    /// Why there is no answer; `null` when there is one.
    pub error: Option<String>,
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
}

impl SourceReport {
    /// A report for `source` before anything happened to it.
    pub fn new_for(source: &Source) -> Self {
        Self {
            name: source.name().to_owned(),
            kind: source.kind.as_str().to_owned(),
            topic: source.kind.topic().as_str().to_owned(),
            status: SourceStatus::Skipped,
            error: None,
            attempts: 0,
            hedges: 0,
            cached: false,
            fetch_ms: None,
            infer_ms: None,
            arrived_at_ms: None,
            worker: None,
            required: source.required,
            summary: None,
        }
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
