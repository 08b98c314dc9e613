//! # tributary-agent
//!
//! The application built on the [`tributary`] engine: the chapter's capstone agent. A question comes in; the
//! agent plans which sources apply, asks them all at once over HTTP, runs the (simulated, CPU-bound) LLM on each
//! response the moment it arrives, and answers within the deadline, degraded if some source did not answer.
//!
//! This crate is the domain only: planning, sources, the steps, inference, the answer rule and the reports. It
//! knows no database, no broker and no HTTP server: the drivers (`tributary-batch`, with its SQLite store and
//! its NATS coordinator and worker, and `tributary-serve`) build on it. One step, many drivers: `ask`, `batch`,
//! `worker` and `serve` run the same fetch step, the same infer step and the same answer rule ([`step`]), and
//! give the same answer shape ([`AgentReport`]).
//!
//! # Layout
//! - [`question`]: a validated question.
//! - [`sources`]: the sources the agent asks: their kinds and the sources file.
//! - [`places`]: how the planner finds the place a question names ([`PlaceFinder`]).
//! - [`plan`]: which sources apply, with what request; the others are skipped with a reason.
//! - [`protocols`]: the public APIs' adapters (Open-Meteo, HN Algolia, Wikipedia): what a response means, and the
//!   second request a two-request kind makes.
//! - [`extract`]: from a JSON response to the text inference reads.
//! - [`step`]: fetch one source, infer on its response, the answer rule, the report.
//! - [`run`]: the concurrent run and the sequential baseline.
//! - [`schedule`]: the ideal schedule, the yardstick for efficiency.
//! - [`report`]: the answer shape ([`AgentReport`]) and why a source or an answer failed, as kinds
//!   ([`SourceFailure`], [`AnswerFailure`]).
//! - [`infer`]: the deterministic, CPU-bound simulated LLM and its jobs for the engine's executors.
//! - `agent` (re-exported here): [`Agent`], which ties them together for one question at a time.

mod agent;
pub mod extract;
pub mod infer;
pub mod limits;
pub mod places;
pub mod plan;
pub mod protocols;
pub mod question;
pub mod report;
pub mod run;
pub mod schedule;
pub mod sources;
pub mod step;

pub use agent::{Agent, AgentSettings, Compared, Recording, Run};
pub use places::PlaceFinder;
pub use question::{MAX_QUESTION_BYTES, Question, QuestionError};
pub use report::{
    AgentReport, AnswerFailure, AnswerStatus, Comparison, RunMode, SourceFailure, SourceReport,
    SourceStatus,
};
pub use sources::{Source, SourceKind, SourcesConfig, Topic};
pub use step::{ExtraQuery, QueryPairs, error_chain};

#[cfg(test)]
mod test_support;
