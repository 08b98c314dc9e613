//! # tributary-batch
//!
//! The batch drivers of the [`tributary_agent`] step: millions of questions, read → fetch → infer → store, with
//! every stage bounded, into a resumable SQLite database; and (feature `nats`) the same batch spread over
//! machines through NATS JetStream ([`distributed`]). The questions are answered by the agent's own steps
//! ([`tributary_agent::step`]): this crate decides only how they are scheduled and where the answers go.
//!
//! - [`input`]: the streaming reader of text or JSON Lines input, one line in memory at a time; `detached`: stdin
//!   read on a thread of its own, so that stopping never waits for a writer that sends nothing.
//! - [`steps`]: what the fetch and infer stages do to one question: the agent's own steps, split at the I/O / CPU
//!   boundary.
//! - [`stages`]: the pipeline itself: one fail-fast group of stages, bounded channels, permits, the reader and
//!   store threads, [`run_batch`].
//! - [`store`]: the SQLite answers database (WAL, batched transactions, resumable) and its JSONL export.
//! - [`stats`]: live counters for progress displays.
//! - `distributed` (feature `nats`): the coordinator and the worker of a batch over NATS JetStream.
//!
//! # Invariants
//! - Memory is bounded by [`BatchSettings::max_in_flight`] questions, never by the input's length: every channel
//!   is bounded, every permit is held until the next stage takes the question, and resuming looks ids up in the
//!   database one at a time instead of loading them.
//! - One row per id: the id is the primary key, so neither a rerun nor a duplicated id can store an answer twice;
//!   a repeated id keeps its earliest line's answer (an upsert that only an earlier line wins), whatever the
//!   order of arrival. A line whose id cannot be read is stored once by line, in its own table.
//! - A row is committed or absent: killing the process at any moment loses at most the uncommitted rows, which a
//!   rerun with the same input redoes.
//! - Only the reader and store threads block; the async stages never touch a file or the database.
//!
//! ```no_run
//! # async fn example(agent: tributary_agent::Agent) -> Result<(), Box<dyn std::error::Error>> {
//! use std::num::NonZeroUsize;
//! use std::sync::Arc;
//! use tributary_batch::{BatchInput, BatchSettings, BatchStats, InputFormat, Store, run_batch};
//!
//! let store = Store::open("answers.db".as_ref())?;
//! let input = BatchInput::open("questions.txt".as_ref(), InputFormat::Text)?;
//! let settings = BatchSettings::for_workers(NonZeroUsize::new(4).expect("4"));
//! let stats = Arc::new(BatchStats::new());
//! let summary = run_batch(&agent, &settings, input, store, stats, Default::default()).await?;
//! println!("{} stored, {:.0}/s", summary.stats.stored(), summary.throughput());
//! # Ok(())
//! # }
//! ```

mod detached;
pub mod input;
pub mod stages;
pub mod stats;
pub mod steps;
pub mod store;

pub use input::{InputFormat, InputReader, InputRecord, MAX_LINE_BYTES, RecordId};
pub use stages::{
    AnswerSink, BATCH_CACHE_ENTRIES, BatchError, BatchInput, BatchSettings, BatchSummary,
    DEFAULT_IO_CONCURRENCY, DEFAULT_STORE_BATCH_INTERVAL, DEFAULT_STORE_BATCH_ROWS, Shutdown,
    batch_client_options, run_batch,
};
pub use stats::{BatchStats, StatsSnapshot};
pub use store::{AnswerRow, SCHEMA_VERSION, Store, StoreError, StoreReader, StoredCounts, Written};

#[cfg(feature = "nats")]
pub mod distributed;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
