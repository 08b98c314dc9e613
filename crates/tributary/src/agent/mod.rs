//! The agent: plan → fetch → infer → aggregate, for one question at a time.
//!
//! - [`question`]: a validated question.
//! - [`plan`]: which sources apply, with what parameters; the others are skipped with a reason.
//! - [`run`]: the concurrent run and the sequential baseline, sharing one step function.
//! - [`extract`]: from a JSON response to the text inference reads.
//! - [`schedule`]: the ideal schedule, the yardstick for efficiency.
//! - [`report`]: the report of a run (the `--json` schema).
//! - [`embedded`]: the default scenario: the simulated services in-process, and their source specs.
//! - `engine` (re-exported here): [`Agent`], which ties them together.

pub mod embedded;
mod engine;
pub mod extract;
pub mod plan;
pub mod question;
pub mod report;
pub mod run;
pub mod schedule;

pub use engine::{Agent, AgentSettings, Run};
pub use question::{MAX_QUESTION_BYTES, Question, QuestionError};
pub use report::{AgentReport, Comparison, SourceReport, SourceStatus};
pub use run::{ExtraQuery, QueryPairs};
