//! Batch over many machines through NATS JetStream: one coordinator, any number of workers.
//!
//! ```text
//!  coordinator                         NATS JetStream                           workers (any machine)
//!  read input ─ skip stored ─publish─▶ TRIBUTARY_QUESTIONS (work queue) ─pull─▶ fetch → infer (the batch's
//!   (window of unanswered ids)          tributary.questions.BATCH                steps, --io-concurrency, CPU)
//!                                       consumer tributary-workers                              │
//!  store (SQLite, batched) ◀──pull──── TRIBUTARY_ANSWERS (work queue)  ◀─publish, PubAck, then ack question─┘
//!   ack answer after commit             tributary.answers.BATCH
//!                                       consumer tributary-coordinator-BATCH
//! ```
//!
//! - [`wire`]: the question and answer messages (versioned JSON).
//! - [`streams`]: the streams and consumers, their names and settings.
//! - [`worker`]: [`work`], what `tributary worker` runs.
//! - [`coordinator`]: [`coordinate`], what `tributary batch --nats` runs.
//!
//! Exactly-once effect: every layer is at-least-once and the store is idempotent (see ARCHITECTURE.md, "a
//! distributed batch stores every question exactly once").

pub mod coordinator;
pub mod streams;
pub mod wire;
pub mod worker;

pub use coordinator::{CoordinatorSettings, WorkerThroughput, coordinate};
pub use streams::StreamSettings;
pub use worker::{WorkerSettings, WorkerStats, WorkerSummary, work};

use crate::{BatchError, StoreError};

/// A connection to a NATS server, as [`connect`] makes it: what [`coordinate`] and [`work`] take.
pub type Connection = async_nats::Client;

/// Why a distributed run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedError {
    #[error("connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::Error,
    },
    /// A NATS operation failed: `action` reads well after "failed to ".
    #[error("{action}")]
    Nats {
        action: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error(
        "use the batch key {key:?} from the database's `batch` table: a key is 1 to 64 letters, digits, - or _"
    )]
    BatchKey { key: String },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

impl DistributedError {
    pub(crate) fn nats(action: &'static str, source: impl Into<async_nats::Error>) -> Self {
        Self::Nats {
            action,
            source: source.into(),
        }
    }
}

/// The error that shut a group of the driver down: its first child's, else (the group stopped without a
/// failure of its own, which is a bug) why, as the failure to `action`.
pub(crate) fn first_error(
    action: &'static str,
) -> impl FnOnce(tributary::group::GroupError<DistributedError>) -> DistributedError {
    move |error| {
        let cause = error.cause.to_string();
        error
            .into_first_error()
            .unwrap_or_else(|| DistributedError::nats(action, cause))
    }
}

/// Connects to the NATS server at `url` as `name` (shown by the server's monitoring). The client reconnects on
/// its own for as long as the process runs: a broker restarted mid-run is waited for, not an error.
pub async fn connect(url: &str, name: &str) -> Result<Connection, DistributedError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connect(url)
        .await
        .map_err(|error| DistributedError::Connect {
            url: url.to_owned(),
            source: error.into(),
        })
}
