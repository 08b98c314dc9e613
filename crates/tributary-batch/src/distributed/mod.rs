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

use std::time::Duration;

use crate::{BatchError, StoreError};

/// How long [`connect`] waits for the server: the TCP connection, its `INFO` greeting and the answer to our
/// `CONNECT`. Something that accepts TCP and never speaks NATS (a silent socket, an HTTP server) used to hang
/// the command for ever; a NATS server on any reachable network answers in milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The server at `url` did not complete the NATS handshake within `after` (see [`CONNECT_TIMEOUT`]).
    #[error("connect to NATS at {url}: no NATS greeting within {after:?}: is it a NATS server?")]
    ConnectTimeout { url: String, after: Duration },
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

/// Connects to the NATS server at `url` as `name` (shown by the server's monitoring), within
/// [`CONNECT_TIMEOUT`]. Once connected, the client reconnects on its own for as long as the process runs: a
/// broker restarted mid-run is waited for, not an error.
pub async fn connect(url: &str, name: &str) -> Result<Connection, DistributedError> {
    connect_within(url, name, CONNECT_TIMEOUT).await
}

/// Whether `connection` is connected to its server now (not waiting to reconnect).
pub fn is_connected(connection: &Connection) -> bool {
    connection.connection_state() == async_nats::connection::State::Connected
}

/// [`connect`] with another bound. async-nats bounds only the TCP connection (`connection_timeout`); its wait
/// for the server's `INFO` and for the `PONG` after `CONNECT` has none, so the whole handshake is bounded here.
async fn connect_within(
    url: &str,
    name: &str,
    within: Duration,
) -> Result<Connection, DistributedError> {
    let connecting = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(within)
        .max_reconnects(None)
        .connect(url);
    match tokio::time::timeout(within, connecting).await {
        Ok(connected) => connected.map_err(|error| DistributedError::Connect {
            url: url.to_owned(),
            source: error.into(),
        }),
        Err(_elapsed) => Err(DistributedError::ConnectTimeout {
            url: url.to_owned(),
            after: within,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that accepts and never speaks NATS: the handshake used to wait for its `INFO` for ever.
    #[tokio::test]
    async fn a_server_that_never_greets_is_a_timeout_naming_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("nats://{}", listener.local_addr().expect("its address"));
        let silent = tokio::spawn(async move {
            // Accept, hold, never write.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let error = connect_within(&url, "test", Duration::from_millis(300))
            .await
            .expect_err("no greeting, no connection");
        silent.abort();
        assert!(
            matches!(error, DistributedError::ConnectTimeout { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "connect to NATS at {url}: no NATS greeting within 300ms: is it a NATS server?"
            )
        );
    }
}
