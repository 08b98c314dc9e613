//! The batch pipeline: read → fetch → infer → store, four stages joined by bounded channels.
//!
//! ```text
//!  reader thread ──questions──▶ fetch stage ──fetched──▶ infer stage ──rows──▶ store thread
//!  (blocking I/O)   (bounded)   io permits    (bounded)  infer permits (bounded) (SQLite, batched
//!       │                       (async I/O)              (CPU pool)             transactions)
//!       └─────────────── unusable lines, as failed rows ──────────────────────▶
//! ```
//!
//! - The reader and the store block (files, SQLite), so each has a thread of its own; the fetch and infer
//!   stages are async and spawn one task per question, each holding a semaphore permit (`io_concurrency`,
//!   `infer_concurrency`) until the next stage has taken its result.
//! - Every channel is bounded and every permit is held until the hand-over, so a slow stage stops the stages
//!   before it: at most [`BatchSettings::max_in_flight`] questions are between reader and store, whatever the
//!   input's length. That is what keeps memory flat.
//! - A stage that fails (the store cannot write, the input cannot be read) fires the abort token: the others stop
//!   taking work and the run returns that first error. Rows already committed stay committed.
//! - `shutdown` (Ctrl-C) only stops the reader: what was read is finished and stored, so a rerun has less to do.

use std::future::Future;
use std::io::{self, BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::pipeline::input::{InputFormat, InputReader, RecordId, count_records};
use crate::pipeline::stats::{BatchStats, StatsSnapshot};
use crate::pipeline::steps::{
    FetchedQuestion, PendingQuestion, failed_row, fetch_question, infer_question,
};
use crate::pipeline::store::{AnswerRow, Store, StoreError, StoredCounts, Written};
use crate::source::ClientOptions;

/// The response cache of a batch's HTTP client, in entries. The client's default (10,000) suits `ask`, whose
/// questions repeat; a batch of distinct questions would fill it with parsed JSON bodies (over 100 MB at 10,000
/// entries, measured) and gain nothing. A thousand still serves what repeats across nearby questions: the
/// weather of a city, a popular news query.
pub const BATCH_CACHE_ENTRIES: u64 = 1_000;

/// Default [`BatchSettings::io_concurrency`].
pub const DEFAULT_IO_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(64).expect("64 is not zero");

/// Default [`BatchSettings::store_batch_rows`].
pub const DEFAULT_STORE_BATCH_ROWS: NonZeroUsize = NonZeroUsize::new(256).expect("256 is not zero");

/// Default [`BatchSettings::store_batch_interval`].
pub const DEFAULT_STORE_BATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The pipeline's own limits (the engine's are in [`AgentSettings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSettings {
    /// Questions fetching at once (each asks all its sources in parallel).
    pub io_concurrency: NonZeroUsize,
    /// Questions on the CPU stage at once. Twice the pool's workers keeps every worker busy while the next
    /// question's jobs wait in the pool's queue.
    pub infer_concurrency: NonZeroUsize,
    /// Rows per transaction, at most.
    pub store_batch_rows: NonZeroUsize,
    /// How long the first row of a transaction waits for others before it is committed anyway.
    pub store_batch_interval: Duration,
}

/// Where the questions come from.
pub struct BatchInput {
    reader: Box<dyn BufRead + Send>,
    format: InputFormat,
    /// A file to count the records of first, for a progress total (not stdin, which can be read only once).
    counted_file: Option<PathBuf>,
}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct BatchSummary {
    /// This run's counters.
    pub stats: StatsSnapshot,
    pub elapsed: Duration,
    /// Rows in the database after the run, this run's and earlier ones'.
    pub in_store: StoredCounts,
}

/// Why a run stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("read the input")]
    Input(#[source] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug: a stage panicked.
    #[error("run the {stage} stage: {message}")]
    Internal {
        stage: &'static str,
        message: String,
    },
}

/// The store stage's end of the pipeline: the database, or a stand-in in tests.
pub trait AnswerSink: Send + 'static {
    /// Writes `rows` in one transaction.
    fn write_batch(&mut self, rows: &[AnswerRow]) -> Result<Written, StoreError>;
}

impl AnswerSink for Store {
    fn write_batch(&mut self, rows: &[AnswerRow]) -> Result<Written, StoreError> {
        Store::write_batch(self, rows)
    }
}

/// The HTTP client options for a batch: the defaults with a [`BATCH_CACHE_ENTRIES`] cache.
pub fn batch_client_options() -> ClientOptions {
    ClientOptions {
        cache_capacity: BATCH_CACHE_ENTRIES,
        ..ClientOptions::default()
    }
}

impl BatchSettings {
    /// The defaults for a pool of `workers` threads.
    pub fn for_workers(workers: NonZeroUsize) -> Self {
        Self {
            io_concurrency: DEFAULT_IO_CONCURRENCY,
            infer_concurrency: workers.saturating_mul(NonZeroUsize::new(2).expect("2 is not zero")),
            store_batch_rows: DEFAULT_STORE_BATCH_ROWS,
            store_batch_interval: DEFAULT_STORE_BATCH_INTERVAL,
        }
    }

    /// The most questions ever between the reader and the database: every channel full, every permit taken,
    /// one transaction being written, and the one each thread holds while it waits to send.
    pub fn max_in_flight(&self) -> usize {
        let (questions, fetched, rows) = self.channel_capacities();
        questions
            + self.io_concurrency.get()
            + fetched
            + self.infer_concurrency.get()
            + rows
            + self.store_batch_rows.get()
            + 2
    }

    /// read → fetch, fetch → infer, infer → store.
    fn channel_capacities(&self) -> (usize, usize, usize) {
        (
            self.io_concurrency.get(),
            self.infer_concurrency.get(),
            self.store_batch_rows.get(),
        )
    }
}

impl BatchInput {
    /// Opens `path`; its records are counted first (a fast streaming pass) so that progress has a total.
    pub fn open(path: &Path, format: InputFormat) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        Ok(Self {
            reader: Box::new(BufReader::new(file)),
            format,
            counted_file: Some(path.to_owned()),
        })
    }

    /// Standard input, read once, so the total stays unknown.
    pub fn stdin(format: InputFormat) -> Self {
        Self::from_reader(BufReader::new(io::stdin()), format)
    }

    pub fn from_reader(reader: impl BufRead + Send + 'static, format: InputFormat) -> Self {
        Self {
            reader: Box::new(reader),
            format,
            counted_file: None,
        }
    }
}

impl std::fmt::Debug for BatchInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchInput")
            .field("format", &self.format)
            .field("counted_file", &self.counted_file)
            .finish_non_exhaustive()
    }
}

impl BatchSummary {
    /// Rows this run stored per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.stats.stored() as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Runs the batch on `agent` (its client, pool, sources and settings): every record of `input` not already in `store` is fetched, inferred and stored.
///
/// `stats` is updated as the run goes (for progress). Cancelling `shutdown` stops reading; what was read is
/// finished and stored, and the summary is returned as usual.
pub async fn run_batch(
    agent: &Agent,
    settings: &BatchSettings,
    input: BatchInput,
    store: Store,
    stats: Arc<BatchStats>,
    shutdown: CancellationToken,
) -> Result<BatchSummary, BatchError> {
    let started = Instant::now();
    let done = store.reader()?;
    let store = run_stages(
        agent,
        settings,
        input,
        store,
        move |id| done.contains(id),
        stats.clone(),
        shutdown,
    )
    .await?;
    let in_store = tokio::task::spawn_blocking(move || store.counts())
        .await
        .map_err(|error| internal("store", &error))??;
    Ok(BatchSummary {
        stats: stats.snapshot(),
        elapsed: started.elapsed(),
        in_store,
    })
}

/// The four stages, with any sink and any "already stored?" check (tests slow the sink down). Returns the sink.
pub(crate) async fn run_stages<Sink: AnswerSink>(
    agent: &Agent,
    settings: &BatchSettings,
    input: BatchInput,
    sink: Sink,
    is_stored: impl FnMut(&RecordId) -> Result<bool, StoreError> + Send + 'static,
    stats: Arc<BatchStats>,
    shutdown: CancellationToken,
) -> Result<Sink, BatchError> {
    let abort = CancellationToken::new();
    let (question_capacity, fetched_capacity, row_capacity) = settings.channel_capacities();
    let (question_tx, question_rx) = flume::bounded::<PendingQuestion>(question_capacity);
    let (fetched_tx, fetched_rx) = flume::bounded::<FetchedQuestion>(fetched_capacity);
    let (row_tx, row_rx) = flume::bounded::<AnswerRow>(row_capacity);

    let reader = {
        let (stats, abort, row_tx) = (stats.clone(), abort.clone(), row_tx.clone());
        tokio::task::spawn_blocking(move || {
            let result = read_stage(
                input,
                is_stored,
                &stats,
                &question_tx,
                &row_tx,
                &shutdown,
                &abort,
            );
            abort_on_error(result, &abort)
        })
    };

    // One permit per question fetching: at most `io_concurrency` questions' requests are in flight.
    let io_permits = Arc::new(Semaphore::new(settings.io_concurrency.get()));
    let fetch = {
        let (agent, stats) = (agent.clone(), stats.clone());
        concurrent_stage(
            "fetch",
            io_permits,
            question_rx,
            fetched_tx,
            abort.clone(),
            move |pending| {
                let (agent, stats) = (agent.clone(), stats.clone());
                stats.fetch_started();
                async move {
                    let fetched =
                        fetch_question(agent.client(), agent.sources(), agent.settings(), pending)
                            .await;
                    stats.fetch_finished();
                    fetched
                }
            },
        )
    };

    // One permit per question on the CPU stage; the pool's workers and queue bound the jobs themselves.
    let infer_permits = Arc::new(Semaphore::new(settings.infer_concurrency.get()));
    let infer = {
        let (agent, stats) = (agent.clone(), stats.clone());
        concurrent_stage(
            "infer",
            infer_permits,
            fetched_rx,
            row_tx,
            abort.clone(),
            move |fetched| {
                let (agent, stats) = (agent.clone(), stats.clone());
                stats.infer_started();
                async move {
                    let row = infer_question(agent.executor(), agent.settings(), fetched).await;
                    stats.infer_finished();
                    row
                }
            },
        )
    };

    let store = {
        let (stats, abort) = (stats.clone(), abort.clone());
        let (rows_per_batch, interval) = (
            settings.store_batch_rows.get(),
            settings.store_batch_interval,
        );
        tokio::task::spawn_blocking(move || {
            let result = store_stage(sink, &row_rx, rows_per_batch, interval, &stats);
            abort_on_error(result, &abort)
        })
    };

    let (reader, fetch, infer, store) = tokio::join!(reader, fetch, infer, store);
    let reader = reader.map_err(|error| internal("read", &error))?;
    let store = store.map_err(|error| internal("store", &error))?;
    // The first failure is the cause; the others are stages that stopped because of it.
    let sink = store?;
    reader?;
    fetch?;
    infer?;
    Ok(sink)
}

/// Reads records, skips the stored ones, sends the unusable ones straight to the store as failed rows.
fn read_stage(
    input: BatchInput,
    mut is_stored: impl FnMut(&RecordId) -> Result<bool, StoreError>,
    stats: &BatchStats,
    questions: &flume::Sender<PendingQuestion>,
    rows: &flume::Sender<AnswerRow>,
    shutdown: &CancellationToken,
    abort: &CancellationToken,
) -> Result<(), BatchError> {
    if let Some(path) = &input.counted_file {
        // The total is only for progress: an input that cannot be counted is still read.
        match std::fs::File::open(path).and_then(|file| count_records(BufReader::new(file))) {
            Ok(total) => stats.set_total(total),
            Err(error) => tracing::debug!("could not count the input records: {error}"),
        }
    }
    let mut reader = InputReader::new(input.reader, input.format);
    while !shutdown.is_cancelled() && !abort.is_cancelled() {
        let Some(record) = reader.next_record().map_err(BatchError::Input)? else {
            break;
        };
        stats.add_read();
        if is_stored(&record.id)? {
            stats.add_skipped();
            continue;
        }
        let sent = match record.question {
            Ok(question) => questions
                .send(PendingQuestion {
                    id: record.id,
                    line: record.line,
                    question,
                })
                .is_ok(),
            Err(why) => {
                tracing::warn!("input {why}; recorded as failed");
                stats.add_invalid();
                rows.send(failed_row(record.id, record.line, why)).is_ok()
            }
        };
        if !sent {
            break; // a later stage stopped; its error is the one reported
        }
    }
    Ok(())
}

/// Takes items from `input` one permit at a time, runs `work` on each in its own task, and sends the results
/// on. The permit is held until the result is sent: when the next stage is slow, this one stops taking work.
async fn concurrent_stage<In, Out, Work, Running>(
    stage: &'static str,
    permits: Arc<Semaphore>,
    input: flume::Receiver<In>,
    output: flume::Sender<Out>,
    abort: CancellationToken,
    work: Work,
) -> Result<(), BatchError>
where
    In: Send + 'static,
    Out: Send + 'static,
    Work: Fn(In) -> Running,
    Running: Future<Output = Out> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = abort.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the stage never closes its semaphore"),
        };
        let item = tokio::select! {
            biased;
            () = abort.cancelled() => break,
            item = input.recv_async() => match item {
                Ok(item) => item,
                Err(flume::RecvError::Disconnected) => break, // the previous stage is done
            },
        };
        let running = work(item);
        let output = output.clone();
        tasks.spawn(async move {
            let result = running.await;
            // A closed channel means a later stage stopped; it reports why.
            let _ = output.send_async(result).await;
            drop(permit);
        });
        while let Some(finished) = tasks.try_join_next() {
            finished.map_err(|error| abort_with(internal(stage, &error), &abort))?;
        }
    }
    // Aborting drops the tasks still running (with the JoinSet); otherwise they finish their hand-over.
    if abort.is_cancelled() {
        return Ok(());
    }
    while let Some(finished) = tasks.join_next().await {
        finished.map_err(|error| abort_with(internal(stage, &error), &abort))?;
    }
    Ok(())
}

/// Commits rows in transactions of up to `rows_per_batch` rows, or whatever arrived within `interval` of a
/// transaction's first row. Returns the sink when every sender is gone.
fn store_stage<Sink: AnswerSink>(
    mut sink: Sink,
    rows: &flume::Receiver<AnswerRow>,
    rows_per_batch: usize,
    interval: Duration,
    stats: &BatchStats,
) -> Result<Sink, BatchError> {
    let mut batch = Vec::with_capacity(rows_per_batch);
    while let Ok(first) = rows.recv() {
        batch.push(first);
        let commit_by = std::time::Instant::now() + interval;
        while batch.len() < rows_per_batch {
            match rows.recv_deadline(commit_by) {
                Ok(row) => batch.push(row),
                Err(_timed_out_or_done) => break,
            }
        }
        let written = sink.write_batch(&batch)?;
        stats.add_written(&written);
        batch.clear();
    }
    Ok(sink)
}

fn abort_on_error<T>(
    result: Result<T, BatchError>,
    abort: &CancellationToken,
) -> Result<T, BatchError> {
    result.map_err(|error| abort_with(error, abort))
}

fn abort_with(error: BatchError, abort: &CancellationToken) -> BatchError {
    abort.cancel();
    error
}

fn internal(stage: &'static str, error: &tokio::task::JoinError) -> BatchError {
    BatchError::Internal {
        stage,
        message: error.to_string(),
    }
}
