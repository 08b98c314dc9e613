//! The batch pipeline: read → fetch → infer → store, four stages joined by bounded channels.
//!
//! ```text
//!  reader thread ──questions──▶ fetch stage ──fetched──▶ infer stage ──rows──▶ store thread
//!  (blocking I/O)   (bounded)   io permits    (bounded)  infer permits (bounded) (SQLite, batched
//!       │                       (async I/O)              (CPU pool)             transactions)
//!       └─────────────── unusable lines, as failed rows ──────────────────────▶
//! ```
//!
//! - Every stage, and every question's task within a stage, is a child of one fail-fast group
//!   ([`tributary::group::scope`]): the first stage that fails (the store cannot write, the input cannot be
//!   read) shuts the group down, the other stages stop, everything is joined, and the run returns that first
//!   error. Rows already committed stay committed.
//! - The reader and the store block (files, SQLite), so each runs on a thread of its own
//!   ([`Group::spawn_blocking`]) and watches the group's token; the fetch and infer stages are async and spawn
//!   one child per question, each holding a semaphore permit (`io_concurrency`, `infer_concurrency`) until the
//!   next stage has taken its result.
//! - Every channel is bounded and every permit is held until the hand-over, so a slow stage stops the stages
//!   before it: at most [`BatchSettings::max_in_flight`] questions are between reader and store, whatever the
//!   input's length. That is what keeps memory flat.
//! - A [`Shutdown`] (Ctrl-C) first only stops the reader: what was read is finished and stored, so a rerun has
//!   less to do. Abandoning (the grace period is over) also drops the questions being fetched or inferred: they
//!   are not stored, so a rerun answers them. Either way the store commits every row it was handed.

use std::future::Future;
use std::io::{self, BufRead, BufReader};
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary::group::{Group, GroupConfig, GroupError, SpawnError, panic_message, scope};
use tributary::source::ClientOptions;

use crate::detached::{DetachedReader, Watch};
use crate::input::{InputFormat, InputReader, RecordId, count_records};
use crate::stats::{Abandoned, BatchStats, StatsSnapshot};
use crate::steps::{FetchedQuestion, PendingQuestion, fetch_question, infer_question};
use crate::store::{AnswerRow, Store, StoreError, StoredCounts, Written};
use tributary_agent::Agent;

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

/// The pipeline's own limits (the agent's are in [`AgentSettings`](tributary_agent::AgentSettings)).
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
    /// For a reader that may block indefinitely (stdin): what tells it to stop waiting for input.
    watch: Option<Watch>,
}

/// How a caller stops a run early (Ctrl-C): two steps, each joined and committed like a normal end.
///
/// Clones share their state. Both steps are idempotent, and abandoning implies stopping the reader.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stops the reader: no more lines are read; what was read is answered and stored.
    pub(crate) reading: CancellationToken,
    /// Drops the questions being fetched or inferred: their rows are not stored, and a rerun answers them.
    pub(crate) in_flight: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops reading the input; the questions already read are answered and stored.
    pub fn stop_reading(&self) {
        self.reading.cancel();
    }

    /// Stops reading and drops every question not yet answered, wherever it is (fetching, waiting for the CPU,
    /// inferring): its requests are cancelled, its row is not stored. Rows already answered are still committed.
    pub fn abandon_in_flight(&self) {
        self.reading.cancel();
        self.in_flight.cancel();
    }

    /// Whether the questions in flight were abandoned.
    pub fn is_abandoning(&self) -> bool {
        self.in_flight.is_cancelled()
    }
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
    /// A bug: a stage panicked, or could not be started.
    #[error("run the {stage} stage: {message}")]
    Internal {
        /// The stage: `read`, `fetch`, `infer`, `store`, or `batch` for the pipeline as a whole.
        stage: &'static str,
        /// What went wrong.
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
    ClientOptions::default().with_cache_capacity(BATCH_CACHE_ENTRIES)
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

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

impl BatchInput {
    /// Opens `path`; its records are counted first (a fast streaming pass) so that progress has a total.
    ///
    /// Refuses a directory and a SQLite database (an answers database given as the input, say) with an
    /// [`io::ErrorKind::InvalidInput`] error that says which.
    pub fn open(path: &Path, format: InputFormat) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a directory, not a file of questions",
            ));
        }
        let mut reader = BufReader::new(file);
        if reader.fill_buf()?.starts_with(SQLITE_HEADER) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a SQLite database, not a file of questions",
            ));
        }
        Ok(Self {
            reader: Box::new(reader),
            format,
            counted_file: Some(path.to_owned()),
            watch: None,
        })
    }

    /// Standard input, read once, so the total stays unknown. It is read on a thread of its own, so that a
    /// shutdown does not wait for a writer that sends nothing (see [`BatchInput::from_blocking_reader`]).
    pub fn stdin(format: InputFormat) -> Self {
        Self::from_blocking_reader(io::stdin(), format)
    }

    /// A reader that never blocks for long (a file, bytes in memory).
    pub fn from_reader(reader: impl BufRead + Send + 'static, format: InputFormat) -> Self {
        Self {
            reader: Box::new(reader),
            format,
            counted_file: None,
            watch: None,
        }
    }

    /// A reader that may block for as long as its writer likes (a pipe, a terminal): it is read on a detached
    /// thread, so that a shutdown (or a failing stage) stops the pipeline's reader without waiting for the next
    /// line. A line that was being read when the stop came is left for the rerun.
    pub fn from_blocking_reader(
        reader: impl io::Read + Send + 'static,
        format: InputFormat,
    ) -> Self {
        let (reader, watch) = DetachedReader::spawn(reader);
        Self {
            reader: Box::new(reader),
            format,
            counted_file: None,
            watch: Some(watch),
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
/// `stats` is updated as the run goes (for progress). [`Shutdown::stop_reading`] stops reading: what was read is
/// finished and stored. [`Shutdown::abandon_in_flight`] also drops what is not yet answered. Either way the
/// summary is returned as usual, with [`StatsSnapshot::abandoned`] counting the dropped questions.
pub async fn run_batch(
    agent: &Agent,
    settings: &BatchSettings,
    input: BatchInput,
    store: Store,
    stats: Arc<BatchStats>,
    shutdown: Shutdown,
) -> Result<BatchSummary, BatchError> {
    let started = Instant::now();
    let done = store.reader()?;
    // On the heap: the stages' future is large, and a debug build copies it through every frame that polls or
    // spawns it; inline, it overflowed a 2 MiB thread's stack (a test thread's, a runtime worker's).
    let store = Box::pin(run_stages(
        agent,
        settings,
        input,
        store,
        move |id, line| done.contains(id, line),
        stats.clone(),
        shutdown,
    ))
    .await?;
    let in_store = tributary::group::blocking("count the answers", move || store.counts())
        .await
        .map_err(|error| BatchError::Internal {
            stage: "store",
            message: error.to_string(),
        })??;
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
    is_stored: impl FnMut(&RecordId, u64) -> Result<bool, StoreError> + Send + 'static,
    stats: Arc<BatchStats>,
    shutdown: Shutdown,
) -> Result<Sink, BatchError> {
    let (question_capacity, fetched_capacity, row_capacity) = settings.channel_capacities();
    let (question_tx, question_rx) = flume::bounded::<PendingQuestion>(question_capacity);
    let (fetched_tx, fetched_rx) = flume::bounded::<FetchedQuestion>(fetched_capacity);
    let (row_tx, row_rx) = flume::bounded::<AnswerRow>(row_capacity);
    let (rows_per_batch, interval) = (
        settings.store_batch_rows.get(),
        settings.store_batch_interval,
    );
    let io_concurrency = settings.io_concurrency.get();
    let infer_concurrency = settings.infer_concurrency.get();

    let stages = scope(GroupConfig::new(), |group: Group<BatchError>| async move {
        let reader = {
            let (stats, agent, row_tx) = (stats.clone(), agent.clone(), row_tx.clone());
            move |stop: CancellationToken| {
                let lines = ReadStage {
                    stats: &stats,
                    agent: &agent,
                    questions: &question_tx,
                    rows: &row_tx,
                    shutdown: &shutdown.reading,
                    stop: &stop,
                };
                lines.run(input, is_stored)
            }
        };
        group
            .spawn_blocking("read", reader)
            .await
            .map_err(not_started)?;

        // One permit per question fetching: at most `io_concurrency` questions' requests are in flight.
        let fetch = {
            let (agent, stats) = (agent.clone(), stats.clone());
            concurrent_stage(
                group.clone(),
                "fetch",
                Arc::new(Semaphore::new(io_concurrency)),
                question_rx,
                fetched_tx,
                Abandon {
                    token: shutdown.in_flight.clone(),
                    stats: stats.clone(),
                    unstarted: Abandoned::QueuedForFetch,
                    running: Abandoned::Fetching,
                },
                move |pending| {
                    let (agent, stats) = (agent.clone(), stats.clone());
                    stats.fetch_started();
                    // Made before the future: one abandoned before its first poll is counted finished too.
                    let finished = Finished(move || stats.fetch_finished());
                    async move {
                        let _finished = finished;
                        fetch_question(&agent, pending).await
                    }
                },
            )
        };
        group.spawn("fetch", fetch).await.map_err(not_started)?;

        // One permit per question on the CPU stage; the executor's workers and queue bound the jobs themselves.
        let infer = {
            let (agent, stats) = (agent.clone(), stats.clone());
            concurrent_stage(
                group.clone(),
                "infer",
                Arc::new(Semaphore::new(infer_concurrency)),
                fetched_rx,
                row_tx,
                Abandon {
                    token: shutdown.in_flight.clone(),
                    stats: stats.clone(),
                    unstarted: Abandoned::QueuedForInfer,
                    running: Abandoned::Inferring,
                },
                move |fetched| {
                    let (agent, stats) = (agent.clone(), stats.clone());
                    stats.infer_started();
                    // Made before the future: one abandoned before its first poll is counted finished too.
                    let finished = Finished(move || stats.infer_finished());
                    async move {
                        let _finished = finished;
                        infer_question(&agent, fetched).await
                    }
                },
            )
        };
        group.spawn("infer", infer).await.map_err(not_started)?;

        let stats = stats.clone();
        group
            .spawn_blocking("store", move |_stop| {
                // The store stops when every row sender is gone, which is also what a shutdown brings about:
                // it commits what it has and returns, rather than dropping rows it was handed.
                store_stage(sink, &row_rx, rows_per_batch, interval, &stats)
            })
            .await
            .map_err(not_started)
    });
    // A panic is a bug; it resumes here only after every stage and task is joined. Report it as an error.
    let joined = AssertUnwindSafe(Box::pin(stages)).catch_unwind().await;
    let store = match joined {
        Ok(Ok(store)) => store,
        Ok(Err(error)) => return Err(first_error(error)),
        Err(payload) => {
            return Err(BatchError::Internal {
                stage: "batch",
                message: format!("it panicked: {}", panic_message(payload.as_ref())),
            });
        }
    };
    // The group has ended, so the store's value is there.
    store.await.map_err(|lost| BatchError::Internal {
        stage: "store",
        message: lost.to_string(),
    })
}

/// The reader's end of the pipeline: what it reads into and what tells it to stop. (The distributed
/// coordinator reads through it too.)
pub(crate) struct ReadStage<'a> {
    pub(crate) stats: &'a BatchStats,
    pub(crate) agent: &'a Agent,
    pub(crate) questions: &'a flume::Sender<PendingQuestion>,
    pub(crate) rows: &'a flume::Sender<AnswerRow>,
    /// Ctrl-C: stop reading, let what was read finish.
    pub(crate) shutdown: &'a CancellationToken,
    /// The group is shutting down: a stage failed.
    pub(crate) stop: &'a CancellationToken,
}

impl ReadStage<'_> {
    /// Reads records, skips the stored ones, sends the unusable ones straight to the store as failed rows.
    pub(crate) fn run(
        self,
        input: BatchInput,
        mut is_stored: impl FnMut(&RecordId, u64) -> Result<bool, StoreError>,
    ) -> Result<(), BatchError> {
        if let Some(path) = &input.counted_file {
            // The total is only for progress: an input that cannot be counted is still read.
            match std::fs::File::open(path).and_then(|file| count_records(BufReader::new(file))) {
                Ok(total) => self.stats.set_total(total),
                Err(error) => tracing::debug!("could not count the input records: {error}"),
            }
        }
        if let Some(watch) = &input.watch {
            watch.set(vec![self.shutdown.clone(), self.stop.clone()]);
        }
        let mut reader = InputReader::new(input.reader, input.format);
        while !self.shutdown.is_cancelled() && !self.stop.is_cancelled() {
            let Some(record) = reader.next_record().map_err(BatchError::Input)? else {
                break;
            };
            if self.shutdown.is_cancelled() || self.stop.is_cancelled() {
                // Told to stop while this record was being read: it may be cut short, so it is left unread.
                break;
            }
            self.stats.add_read();
            if is_stored(&record.id, record.line)? {
                self.stats.add_skipped();
                continue;
            }
            let sent = match record.question {
                Ok(question) => self
                    .questions
                    .send(PendingQuestion {
                        id: record.id,
                        line: record.line,
                        question,
                    })
                    .is_ok(),
                Err(why) => {
                    tracing::warn!("input {why}; recorded as failed");
                    self.stats.add_invalid();
                    let row = AnswerRow::unusable(record.id, record.line, why, self.agent);
                    self.rows.send(row).is_ok()
                }
            };
            if !sent {
                break; // a later stage stopped; its error is the one reported
            }
        }
        Ok(())
    }
}

/// What a stage does with its work once a shutdown abandons what is in flight.
#[derive(Clone)]
struct Abandon {
    token: CancellationToken,
    stats: Arc<BatchStats>,
    /// Where an item received after the abandon was: the queue before the stage.
    unstarted: Abandoned,
    /// Where an item whose work was dropped was: the stage itself.
    running: Abandoned,
}

/// Calls its closure when dropped: a stage's "finished" counter, bumped whether its work ended or was abandoned.
struct Finished<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finished<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Takes items from `input` one permit at a time, runs `work` on each in a child of `group`, and sends the
/// results on. The permit is held until the result is sent: when the next stage is slow, this one stops taking
/// work. Returns when `input` is exhausted; the children finish their hand-overs in the group.
///
/// Once `abandon` is cancelled, work in progress is dropped (its requests or jobs cancelled) and items still
/// arriving are dropped unstarted; either way nothing is sent on and the item counts as abandoned.
async fn concurrent_stage<In, Out, Work, Running>(
    group: Group<BatchError>,
    stage: &'static str,
    permits: Arc<Semaphore>,
    input: flume::Receiver<In>,
    output: flume::Sender<Out>,
    abandon: Abandon,
    work: Work,
) -> Result<(), BatchError>
where
    In: Send + 'static,
    Out: Send + 'static,
    Work: Fn(In) -> Running,
    Running: Future<Output = Out> + Send + 'static,
{
    loop {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the stage never closes its semaphore");
        let Ok(item) = input.recv_async().await else {
            return Ok(()); // the previous stage is done
        };
        if abandon.token.is_cancelled() {
            abandon.stats.add_abandoned(abandon.unstarted);
            continue;
        }
        let running = work(item);
        let (output, abandon) = (output.clone(), abandon.clone());
        let child = async move {
            // Biased: once abandoned, a result that is ready at the same moment is dropped too, so that what
            // "abandoned" means does not depend on timing.
            let result = tokio::select! {
                biased;
                () = abandon.token.cancelled() => None,
                result = running => Some(result),
            };
            match result {
                // A closed channel means a later stage stopped; it reports why.
                Some(result) => {
                    let _ = output.send_async(result).await;
                }
                None => abandon.stats.add_abandoned(abandon.running),
            }
            drop(permit);
            Ok(())
        };
        if group.spawn(stage, child).await.is_err() {
            return Ok(()); // the group is shutting down; whatever shut it down is the error reported
        }
    }
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

/// The error that shut the group down: the first stage's failure, or (a bug) why a stage could not start.
fn first_error(error: GroupError<BatchError>) -> BatchError {
    let cause = error.cause.to_string();
    error
        .into_first_error()
        .unwrap_or_else(|| BatchError::Internal {
            stage: "batch",
            message: format!("the pipeline stopped: {cause}"),
        })
}

fn not_started(error: SpawnError) -> BatchError {
    BatchError::Internal {
        stage: "batch",
        message: error.to_string(),
    }
}
