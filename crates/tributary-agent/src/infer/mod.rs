//! The deterministic, CPU-bound simulated LLM.
//!
//! [`infer`] reads one document (the text of one source's answer) with a question in mind and returns an
//! [`Inference`]: an extractive summary, key terms, sentiment, and a short text generated token by token from a
//! bigram model of the document. Its CPU cost is real work (an attention-like kernel scoring the vocabulary for
//! each generated token) sized by an [`InferenceCost`], so running several inferences on a pool is genuinely
//! faster than running them one after another. [`aggregate()`] then composes one [`Answer`] from all sources, each
//! line placed by its source's [`Topic`](crate::sources::Topic).
//!
//! ```
//! use tributary_agent::Topic;
//! use tributary_agent::infer::{Document, InferenceCost, aggregate, infer};
//!
//! let weather = Document::new("weather", "Sunny and warm today. Light wind from the west.");
//! let result = infer("Will it be sunny?", &weather, InferenceCost::units(10_000), &|| false)?;
//! assert_eq!(result.summary[0], "Sunny and warm today.");
//! let answer = aggregate("Will it be sunny?", &[("weather", Topic::Weather, &result)]);
//! assert!(answer.text.starts_with("Weather: Sunny and warm today."));
//! # Ok::<(), tributary_agent::infer::InferError>(())
//! ```
//!
//! - [`model`]: the inference itself and its output types.
//! - [`jobs`]: inference, a synthesis across sources and the bare kernel as jobs for the engine's executors
//!   ([`InferenceJob`], [`SynthesisJob`], [`BurnJob`]).
//! - [`Models`]: the real models that may read instead (feature `models`: `real`, on `tributary-models`).
//! - [`work`]: the CPU kernel, the machine calibration and the cost budget.
//! - [`aggregate`](mod@aggregate): one answer from many inferences.
//! - `prompt`: what a chat model is asked, local or remote (internal).
//! - `text`: words, sentences and lexicons (internal).

pub mod aggregate;
pub mod jobs;
pub mod model;
mod models;
pub(crate) mod prompt;
#[cfg(feature = "models")]
mod real;
mod text;
pub mod work;

pub use aggregate::{Answer, aggregate};
pub use jobs::{
    BurnJob, BurnReport, InferenceJob, SynthesisJob, Synthesized, burn, burn_for,
    work_units_off_runtime, worker_jobs,
};
pub use model::{
    Document, InferError, Inference, KeyTerm, Sentiment, SentimentLabel, TokenCounts, WorkReport,
    infer,
};
pub use models::{ChatEndpoint, Models, ModelsError};
pub use work::{Calibration, InferenceCost, ParseCostError, calibration};
