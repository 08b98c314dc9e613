//! One question's step, shared by every driver: fetch one source, infer on its response, and the answer rule.
//!
//! `ask` runs [`fetch_source`] then [`infer_source`] for each source as one task ([`crate::run`]); `batch` runs
//! every source's fetch in its fetch stage and every inference in its infer stage, with a bounded channel in
//! between (`tributary-batch`). Both then apply the same [`answer`] rule and build the same [`AgentReport`]
//! with [`report`]. What differs between drivers is only scheduling, never what a step does or how a question
//! ends.
//!
//! Every step bounds itself: a fetch by `min(per-source timeout, deadline)`, an inference by the deadline it is
//! given. Each records what it did on the question's [`Timeline`].
//!
//! - `fetch`: [`fetch_source`], and `fetch_chain`, which makes a two-request kind's requests one after the
//!   other inside the one per-source deadline.
//! - `infer`: [`infer_source`], inference on the executor, and how its outcome settles the source's report.
//! - `chat`: [`Chat`], a summary written by an OpenAI-compatible chat endpoint, as I/O after the inference.
//! - `inferences`: [`InferenceCache`], inferences kept beside the cached response they read.
//! - `answer`: the [`answer`] rule, [`report`] (the one answer shape) and [`missing_sources`].
//! - `synthesis`: [`synthesize`], one answer across the sources' summaries by the chat model, after the fan-out.
//! - `timeline`: how a step is drawn: each fetch attempt, retry, hedge and timeout on the source's lane, each
//!   inference on its worker's lane.
//! - `messages`: how failures read to people ([`error_chain`], [`elapsed_message`]).
//!
//! [`AgentReport`]: crate::report::AgentReport

mod answer;
mod chat;
mod fetch;
mod infer;
mod inferences;
mod messages;
mod synthesis;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary::pool::Executor;
use tributary::source::SourceClient;
use tributary::trace::Timeline;

use crate::infer::Models;
use crate::question::Question;
use crate::sources::McpServers;

pub use answer::{RunFacts, Verdict, add_synthesis, answer, millis, missing_sources, report};
pub use chat::{API_KEY_VARIABLE, Chat};
pub use fetch::{Fetch, fetch_source};
pub use infer::{StepRecord, infer_source};
pub use inferences::InferenceCache;
pub use messages::{elapsed_message, error_chain};
pub use synthesis::{SYNTHESIS_LANE, synthesize};
pub use timeline::{source_lane, worker_lane};

/// Query parameters added to a request, as `(key, value)` pairs.
pub type QueryPairs = Vec<(String, String)>;

/// Extra query parameters per source name, e.g. `("news", [("fault", "hang")])` for fault injection.
pub type ExtraQuery = Vec<(String, QueryPairs)>;

/// Everything the steps of one question share.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The HTTP client (and its cache).
    pub client: SourceClient,
    /// Where inference runs.
    pub executor: Executor,
    /// The question.
    pub question: Question,
    /// Each source's share of the deadline, all its attempts included.
    pub per_source_timeout: Duration,
    /// Work units each inference spends (a CPU-time budget already converted).
    pub inference_units: u64,
    /// The models that read the responses.
    pub models: Models,
    /// How the chat endpoint is asked, when the models name one.
    pub chat: Option<Chat>,
    /// When the question's run started: arrivals are measured from here.
    pub started: Instant,
    /// Where the steps record what they did; `None` records nothing (a batch draws no charts).
    pub timeline: Option<Timeline>,
    /// Extra query parameters for a source by name (fault injection: `fault=hang`, `latency_ms=2000`).
    pub extra_query: Arc<ExtraQuery>,
    /// Inferences already made of the same responses to the same question.
    pub inferences: InferenceCache,
    /// Cancelling it stops the question's steps, which are joined before the run returns (a server's client
    /// went away); a step it stops is reported failed, "cancelled".
    pub cancel: CancellationToken,
    /// How `mcp` sources reach their servers.
    pub mcp: Arc<dyn McpServers>,
}

#[cfg(test)]
mod tests;
