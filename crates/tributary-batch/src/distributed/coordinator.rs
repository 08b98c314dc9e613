//! `tributary batch --nats`: the coordinator. It reads the input as a local batch does, publishes what is not
//! stored, and stores the answers the workers publish, through the same [`Store`].
//!
//! ```text
//!  reader thread ──questions──▶ publish stage ──▶ TRIBUTARY_QUESTIONS      (workers)
//!  (blocking I/O)  (bounded)    (window permit    (Nats-Msg-Id = BATCH:ID)
//!       │                        per unanswered id)
//!       └── unusable lines, as failed rows ──▶ answer stage ◀── TRIBUTARY_ANSWERS
//!                                              (SQLite transactions; ack each answer after its commit;
//!                                               the id's window permit freed)
//! ```
//!
//! Memory is bounded by the window, as a local batch's is by its permits: at most `window` ids are published
//! and unanswered, and the map of them is all the coordinator keeps per question. The run ends when the input
//! is read and no published id is unanswered.
//!
//! Every step is safe to repeat, which is what makes a killed coordinator resumable: a rerun skips what is
//! stored, republishes the rest under the same message ids (the stream drops those it still remembers), and
//! receives every answer not yet acknowledged, which the store's upsert keeps at most once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context, Message};
use futures::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary::group::{Group, GroupConfig, scope};

use crate::distributed::streams::{
    BatchKey, StreamSettings, coordinator_consumer, delete_coordinator_consumer, ensure_streams,
};
use crate::distributed::wire::{AnswerMessage, QuestionMessage};
use crate::distributed::{DistributedError, first_error};
use crate::input::RecordId;
use crate::stages::ReadStage;
use crate::steps::PendingQuestion;
use crate::store::{AnswerRow, Store, Written};
use crate::{BatchInput, BatchStats, BatchSummary, Shutdown};
use tributary_agent::{Agent, AnswerFailure};

/// How long a question's publish is retried (the broker may be restarting) before the run fails.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(60);

/// Questions published and waiting for their PubAck at once. One at a time, a question cost a round trip to
/// the broker: over a network with 1 ms of latency, a ceiling of 1,000 questions a second for the whole
/// batch, however many workers it had.
const PUBLISHES_IN_FLIGHT: NonZeroUsize = NonZeroUsize::new(128).expect("128 is not zero");

/// How long a publish waits for its PubAck before trying again.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a finished run waits to delete its batch's consumer (which holds nothing any more), and a commit to
/// acknowledge its answers (an answer not acknowledged is only delivered again).
const CLEAN_UP_WITHIN: Duration = Duration::from_secs(5);

/// Default [`CoordinatorSettings::window`].
pub const DEFAULT_WINDOW: NonZeroUsize = NonZeroUsize::new(1024).expect("1024 is not zero");

/// The coordinator's limits.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// Published ids without a stored answer, at most: the coordinator's memory and the streams' depth.
    pub window: NonZeroUsize,
    pub streams: StreamSettings,
    /// Deliveries of one question at most; travels with each question (see [`QuestionMessage::max_deliver`]).
    pub max_deliver: u32,
    /// Rows per transaction, at most.
    pub store_batch_rows: NonZeroUsize,
    /// How long the first row of a transaction waits for others.
    pub store_batch_interval: Duration,
}

/// Answers stored per worker, for the progress display's per-worker throughput.
#[derive(Debug, Default)]
pub struct WorkerThroughput {
    answers: Mutex<BTreeMap<String, u64>>,
}

impl WorkerThroughput {
    pub fn new() -> Self {
        Self::default()
    }

    /// Each worker's name and the answers of this run it gave, by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers
            .iter()
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    }

    fn add(&self, worker: &str) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        *answers.entry(worker.to_owned()).or_default() += 1;
    }
}

/// A published id waiting for its answer.
struct Unanswered {
    line: u64,
    /// Its place in the window, given back when its answer is committed.
    _permit: OwnedSemaphorePermit,
    /// Later lines of the input with the same id: counted as duplicates once it is stored.
    repeated: u64,
}

/// What the publish and answer stages know about ids, under one lock: a check and the insert it decides must be
/// one step, or an answer could slip between them.
struct Ids {
    /// Published ids waiting for their answer: the window.
    unanswered: HashMap<String, Unanswered>,
    /// Ids this run stored an answer to without waiting for one: answers a killed earlier run left in the
    /// answers stream (or a late second answer). The reader may have read such an id before its answer was
    /// committed; published again, the question would be dropped by the stream's duplicate window, and its
    /// answer, already taken, would never come: the run would wait forever. So the publish stage skips these.
    /// At most what earlier runs left unstored (their windows), not the whole batch.
    answered_unasked: HashSet<String>,
    /// The ids whose answer this run stored last, oldest first, at most [`Ids::recent_capacity`]: a later line
    /// repeating one of them may have been read before that answer was committed (so the reader did not skip
    /// it) and reach the publish stage after its id left the window; published again, it would be dropped as a
    /// duplicate and wait forever. The reader is at most a window's worth of lines ahead of the publish stage,
    /// which holds at most a window of ids, so twice the window (and one) covers every such line.
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
    recent_capacity: usize,
}

impl Ids {
    fn new(window: usize) -> Self {
        Self {
            unanswered: HashMap::new(),
            answered_unasked: HashSet::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            recent_capacity: window.saturating_mul(2).saturating_add(1),
        }
    }

    /// Whether this run has stored (or is storing) an answer to `id` without it being in the window.
    fn stored_by_this_run(&self, id: &str) -> bool {
        self.answered_unasked.contains(id) || self.recent_set.contains(id)
    }

    fn remember_stored(&mut self, id: String) {
        if self.recent_set.insert(id.clone()) {
            self.recent.push_back(id);
        }
        while self.recent.len() > self.recent_capacity {
            if let Some(oldest) = self.recent.pop_front() {
                self.recent_set.remove(&oldest);
            }
        }
    }
}

type Window = Arc<Mutex<Ids>>;

/// Runs the batch over NATS: every record of `input` not already in `store` is published for the workers, and
/// every answer they publish is stored. [`Shutdown::stop_reading`] stops reading (what was published is still
/// waited for); [`Shutdown::abandon_in_flight`] commits what has arrived and returns: the questions still out
/// stay in the stream, and a rerun collects their answers.
#[expect(
    clippy::too_many_arguments,
    reason = "the run's inputs, each distinct; a struct would only rename them"
)]
pub async fn coordinate(
    agent: &Agent,
    client: async_nats::Client,
    settings: &CoordinatorSettings,
    input: BatchInput,
    store: Store,
    stats: Arc<BatchStats>,
    workers: Arc<WorkerThroughput>,
    shutdown: Shutdown,
) -> Result<BatchSummary, DistributedError> {
    let started = Instant::now();
    let jetstream = jetstream::new(client);
    let (store, key) = tributary::group::blocking("read the batch key", move || {
        let mut store = store;
        let key = store.batch_key();
        (store, key)
    })
    .await
    .map_err(|error| DistributedError::nats("read the batch key", error.to_string()))?;
    let batch = BatchKey::new(&key?)?;
    tracing::info!("batch {batch}: publishing to {}", batch.questions_subject());
    let setting_up = async {
        ensure_streams(&jetstream, &settings.streams).await?;
        coordinator_consumer(&jetstream, &settings.streams, &batch).await
    };
    // Abandoned before anything was published (a broker slow to answer, or gone): nothing is in flight.
    let consumer = tokio::select! {
        biased;
        () = shutdown.in_flight.cancelled() => {
            return summarise(store, &stats, started).await;
        }
        consumer = setting_up => consumer?,
    };
    let stored_ids = store.reader()?;
    let window_size = settings.window.get();
    let (question_tx, question_rx) = flume::bounded::<PendingQuestion>(window_size);
    let (row_tx, row_rx) = flume::bounded::<AnswerRow>(window_size);
    let window: Window = Arc::new(Mutex::new(Ids::new(window_size)));
    let (published_tx, published_rx) = watch::channel(false);
    let settings = settings.clone();
    let run_stats = stats.clone();
    let summary_stats = stats.clone();
    let abandon = shutdown.in_flight.clone();

    let (publish_jetstream, publish_batch) = (jetstream.clone(), batch.clone());
    let body = |group: Group<DistributedError>| async move {
        let reader = {
            let (stats, agent, row_tx, reading) = (
                stats.clone(),
                agent.clone(),
                row_tx.clone(),
                shutdown.reading.clone(),
            );
            move |stop: CancellationToken| {
                let lines = ReadStage {
                    stats: &stats,
                    agent: &agent,
                    questions: &question_tx,
                    rows: &row_tx,
                    shutdown: &reading,
                    stop: &stop,
                };
                lines
                    .run(input, move |id, line| stored_ids.contains(id, line))
                    .map_err(DistributedError::from)
            }
        };
        group
            .spawn_blocking("read", reader)
            .await
            .map_err(|error| DistributedError::nats("start the reader", error.to_string()))?;
        let publish = Publish {
            publisher: Publisher {
                jetstream: publish_jetstream,
                batch: publish_batch,
                abandon: abandon.clone(),
            },
            max_deliver: settings.max_deliver,
            window: window.clone(),
            permits: Arc::new(Semaphore::new(window_size)),
            agent: agent.clone(),
            stats: stats.clone(),
        };
        group
            .spawn("publish", async move {
                publish.run(question_rx, row_tx, published_tx).await
            })
            .await
            .map_err(|error| DistributedError::nats("start publishing", error.to_string()))?;
        let answers = AnswerStage {
            agent: agent.clone(),
            window,
            rows: row_rx,
            published: published_rx,
            stats: run_stats,
            workers,
            abandon: shutdown.in_flight.clone(),
            rows_per_batch: settings.store_batch_rows.get(),
            interval: settings.store_batch_interval,
        };
        group
            .spawn("store", answers.run(consumer, store))
            .await
            .map_err(|error| DistributedError::nats("start storing", error.to_string()))
    };
    let stored = scope(GroupConfig::new(), body)
        .await
        .map_err(first_error("run the coordinator"))?;
    let (store, finished) = stored
        .await
        .map_err(|error| DistributedError::nats("store the answers", error.to_string()))?;
    if finished {
        // Every answer of the batch is stored and acknowledged: its consumer holds nothing a rerun could need.
        // Tidying only: bounded, so a broker gone at the very end does not keep the finished run waiting.
        let deleted = tokio::time::timeout(
            CLEAN_UP_WITHIN,
            delete_coordinator_consumer(&jetstream, &batch),
        )
        .await;
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!("{}", tributary_agent::error_chain(&error)),
            Err(_elapsed) => tracing::warn!(
                "could not delete the batch's consumer within {CLEAN_UP_WITHIN:?}; it holds nothing"
            ),
        }
    }
    summarise(store, &summary_stats, started).await
}

/// The run's summary: its counters and what the store holds now.
async fn summarise(
    store: Store,
    stats: &BatchStats,
    started: Instant,
) -> Result<BatchSummary, DistributedError> {
    let in_store = tributary::group::blocking("count the answers", move || store.counts())
        .await
        .map_err(|error| DistributedError::nats("count the answers", error.to_string()))??;
    Ok(BatchSummary {
        stats: stats.snapshot(),
        elapsed: started.elapsed(),
        in_store,
    })
}

/// The publish stage: one message per id not yet published, each in the window until its answer is stored.
struct Publish {
    publisher: Publisher,
    max_deliver: u32,
    window: Window,
    permits: Arc<Semaphore>,
    agent: Agent,
    stats: Arc<BatchStats>,
}

impl Publish {
    async fn run(
        self,
        questions: flume::Receiver<PendingQuestion>,
        rows: flume::Sender<AnswerRow>,
        published: watch::Sender<bool>,
    ) -> Result<(), DistributedError> {
        // Up to PUBLISHES_IN_FLIGHT publishes at once, each a child: the first to fail for good fails the stage.
        let config = GroupConfig::new().max_concurrency(PUBLISHES_IN_FLIGHT);
        scope(config, |group: Group<DistributedError>| async move {
            self.publish_all(&group, questions, rows).await
        })
        .await
        .map_err(first_error("publish the questions"))?;
        published.send_replace(true);
        Ok(())
    }

    async fn publish_all(
        &self,
        group: &Group<DistributedError>,
        questions: flume::Receiver<PendingQuestion>,
        rows: flume::Sender<AnswerRow>,
    ) -> Result<(), DistributedError> {
        let abandon = &self.publisher.abandon;
        loop {
            // Abandoned: publish nothing more; what is not stored is published again by a rerun.
            let question = tokio::select! {
                biased;
                () = abandon.cancelled() => break,
                question = questions.recv_async() => question,
            };
            let Ok(question) = question else { break };
            let Some(id) = question.id.given().map(str::to_owned) else {
                // Never published: a line without a readable id is stored by line, here.
                let why = "the line has no readable id".to_owned();
                let row = AnswerRow::unusable(question.id, question.line, why, &self.agent);
                let sent = tokio::select! {
                    biased;
                    () = abandon.cancelled() => break,
                    sent = rows.send_async(row) => sent,
                };
                if sent.is_err() {
                    break;
                }
                continue;
            };
            {
                let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(unanswered) = window.unanswered.get_mut(&id) {
                    // Asked once per id; the earliest line's answer is the one kept, as in a local batch.
                    unanswered.repeated += 1;
                    continue;
                }
            }
            let permit = tokio::select! {
                biased;
                () = abandon.cancelled() => break,
                permit = Arc::clone(&self.permits).acquire_owned() => permit,
            };
            let Ok(permit) = permit else {
                break;
            };
            {
                let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
                if window.answered_unasked.contains(&id) {
                    // An earlier run's answer to it is stored (or about to be): as if the reader had skipped it.
                    self.stats.add_skipped();
                    continue;
                }
                if window.stored_by_this_run(&id) {
                    // A repeat of an id this run asked and stored: one question per id, as for a repeat
                    // found in the window.
                    self.stats.add_duplicates(1);
                    continue;
                }
                // In the window before it is published: its answer may come back before the PubAck does.
                window.unanswered.insert(
                    id.clone(),
                    Unanswered {
                        line: question.line,
                        _permit: permit,
                        repeated: 0,
                    },
                );
            }
            let message = QuestionMessage::new(
                self.publisher.batch.as_str(),
                &id,
                question.line,
                question.question.as_str(),
                self.max_deliver,
            );
            let publish = self.publisher.clone().publish(id, message.encode()?);
            let spawned = tokio::select! {
                biased;
                () = abandon.cancelled() => break,
                spawned = group.spawn("publish", publish) => spawned,
            };
            if spawned.is_err() {
                // The group is shutting down: a publish failed for good, and the scope returns its error.
                break;
            }
        }
        Ok(())
    }
}

/// Publishes questions: cloned into each publish.
#[derive(Clone)]
struct Publisher {
    jetstream: Context,
    batch: BatchKey,
    /// The run was abandoned ([`Shutdown::abandon_in_flight`]): a publish still retrying gives up, quietly.
    abandon: CancellationToken,
}

impl Publisher {
    /// Publishes one question and waits until the stream has it, retrying while the broker is away; a retry
    /// carries the same message id, so the stream keeps one copy. An abandoned run stops waiting at once: the
    /// question may or may not be in the stream, and either way a rerun finds it unstored and publishes it again
    /// under the same message id. (With the broker gone, the retries alone kept an interrupted coordinator alive
    /// for a minute after its grace period.)
    async fn publish(self, id: String, payload: Vec<u8>) -> Result<(), DistributedError> {
        let abandon = self.abandon.clone();
        tokio::select! {
            biased;
            () = abandon.cancelled() => Ok(()),
            published = self.publish_until_stored(id, payload) => published,
        }
    }

    async fn publish_until_stored(
        self,
        id: String,
        payload: Vec<u8>,
    ) -> Result<(), DistributedError> {
        let give_up = Instant::now() + PUBLISH_RETRY_FOR;
        let (subject, message_id) = (self.batch.questions_subject(), self.batch.message_id(&id));
        let mut delay = Duration::from_millis(50);
        loop {
            let message = PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(message_id.as_str());
            let attempt = match self.jetstream.send_publish(subject.clone(), message).await {
                Ok(acknowledged) => {
                    match tokio::time::timeout(PUBLISH_ACK_TIMEOUT, acknowledged.into_future())
                        .await
                    {
                        Ok(Ok(_stored)) => return Ok(()),
                        Ok(Err(error)) => DistributedError::nats("publish a question", error),
                        Err(elapsed) => {
                            DistributedError::nats("publish a question in time", elapsed)
                        }
                    }
                }
                Err(error) => DistributedError::nats("publish a question", error),
            };
            if Instant::now() + delay > give_up {
                return Err(attempt);
            }
            tracing::warn!(
                "{}; trying again in {delay:?}",
                tributary_agent::error_chain(&attempt)
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// The answer stage: answers (and the reader's unusable lines) into the store in batched transactions.
struct AnswerStage {
    /// For the row of an answer that cannot be read.
    agent: Agent,
    window: Window,
    rows: flume::Receiver<AnswerRow>,
    published: watch::Receiver<bool>,
    stats: Arc<BatchStats>,
    workers: Arc<WorkerThroughput>,
    abandon: CancellationToken,
    rows_per_batch: usize,
    interval: Duration,
}

/// What waits for the next commit.
#[derive(Default)]
struct Pending {
    /// Rows this run asked for (a published id's first answer, an unusable line): counted in the progress.
    counted: Vec<AnswerRow>,
    /// Rows it did not (a second answer to an id, an answer left by an earlier run): stored all the same,
    /// since the upsert keeps one per id, but not counted twice.
    uncounted: Vec<AnswerRow>,
    /// The answers to acknowledge once the transaction commits.
    messages: Vec<Message>,
    /// The counted ids, with who answered.
    answered: HashSet<String>,
    by_worker: Vec<String>,
    commit_by: Option<Instant>,
}

impl Pending {
    fn len(&self) -> usize {
        self.counted.len() + self.uncounted.len()
    }
}

impl AnswerStage {
    /// Stores answers until every published id is answered (then `true`) or the run is abandoned (`false`).
    async fn run(
        mut self,
        consumer: PullConsumer,
        store: Store,
    ) -> Result<(Store, bool), DistributedError> {
        let mut store = store;
        let messages = tokio::select! {
            biased;
            () = self.abandon.cancelled() => return Ok((store, false)),
            messages = consumer.messages() => messages,
        };
        let mut messages =
            messages.map_err(|error| DistributedError::nats("consume answers", error))?;
        let mut pending = Pending::default();
        let mut published = *self.published.borrow();
        let mut rows_open = true;
        loop {
            let due = pending
                .commit_by
                .is_some_and(|commit_by| commit_by <= Instant::now());
            if pending.len() >= self.rows_per_batch || due {
                store = self.commit(store, &mut pending).await?;
            }
            if published && pending.len() == 0 && self.rows.is_empty() && self.window_is_empty() {
                break;
            }
            let commit_at = pending.commit_by;
            tokio::select! {
                biased;
                () = self.abandon.cancelled() => {
                    // Stop waiting: commit what arrived; the rest stays in the streams for a rerun.
                    let store = self.commit(store, &mut pending).await?;
                    return Ok((store, false));
                }
                changed = self.published.changed(), if !published => {
                    // The sender ends only with the publish stage, whose failure is the group's error.
                    published = changed.is_err() || *self.published.borrow();
                }
                row = self.rows.recv_async(), if rows_open => match row {
                    Ok(row) => self.add(&mut pending, row, None, None),
                    Err(_) => rows_open = false,
                },
                next = messages.next() => match next {
                    Some(Ok(message)) => self.receive(&mut pending, message).await,
                    Some(Err(error)) => tracing::warn!("receiving answers: {error}"),
                    None => {
                        let again = tokio::select! {
                            biased;
                            () = self.abandon.cancelled() => continue,
                            again = consumer.messages() => again,
                        };
                        messages =
                            again.map_err(|error| DistributedError::nats("consume answers", error))?;
                    }
                },
                () = sleep_until(commit_at), if commit_at.is_some() => {}
            }
        }
        Ok((store, true))
    }

    fn window_is_empty(&self) -> bool {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unanswered
            .is_empty()
    }

    async fn receive(&self, pending: &mut Pending, message: Message) {
        match AnswerMessage::decode(&message.payload) {
            Ok(answer) => {
                let worker = answer.worker.clone();
                self.add(pending, answer.into_row(), Some(message), Some(worker));
            }
            Err(error) => {
                // Stored as failed under its id when the id is one we wait for, so the run still ends.
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
                    .and_then(|value| BatchKey::split_message_id(value.as_str()))
                    .map(|(_batch, id)| id.to_owned());
                let line = id.as_ref().and_then(|id| {
                    let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
                    window.unanswered.get(id).map(|unanswered| unanswered.line)
                });
                let why = format!(
                    "the answer cannot be read: {}",
                    tributary_agent::error_chain(&error)
                );
                tracing::warn!("{why}");
                match (id, line) {
                    (Some(id), Some(line)) => {
                        let row = AnswerRow::not_asked(
                            RecordId::new(id),
                            line,
                            AnswerFailure::UnreadableMessage,
                            why,
                            &self.agent,
                        );
                        self.add(pending, row, Some(message), None);
                    }
                    _ => {
                        let _ = message.ack_with(async_nats::jetstream::AckKind::Term).await;
                    }
                }
            }
        }
    }

    fn add(
        &self,
        pending: &mut Pending,
        row: AnswerRow,
        message: Option<Message>,
        worker: Option<String>,
    ) {
        let counted = match (&message, row.id.given()) {
            // A row of the reader's own: always this run's.
            (None, _) | (_, None) => true,
            (Some(_), Some(id)) => {
                let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
                let waited_for = window.unanswered.contains_key(id);
                if !waited_for {
                    window.answered_unasked.insert(id.to_owned());
                }
                waited_for && !pending.answered.contains(id)
            }
        };
        if counted {
            if let (Some(id), Some(_)) = (row.id.given(), &message) {
                pending.answered.insert(id.to_owned());
            }
            if let Some(worker) = worker {
                pending.by_worker.push(worker);
            }
            pending.counted.push(row);
        } else {
            pending.uncounted.push(row);
        }
        pending.messages.extend(message);
        if pending.commit_by.is_none() {
            pending.commit_by = Some(Instant::now() + self.interval);
        }
    }

    /// Commits what is pending, then acknowledges its answers and frees their ids' places in the window.
    async fn commit(&self, store: Store, pending: &mut Pending) -> Result<Store, DistributedError> {
        let taken = std::mem::take(pending);
        if taken.len() == 0 {
            return Ok(store);
        }
        let Pending {
            counted,
            uncounted,
            messages,
            answered,
            by_worker,
            commit_by: _,
        } = taken;
        let (store, written) = tributary::group::blocking("store answers", move || {
            let mut store = store;
            let written = store.write_batch(&counted).and_then(|counted| {
                store
                    .write_batch(&uncounted)
                    .map(|_uncounted: Written| counted)
            });
            (store, written)
        })
        .await
        .map_err(|error| DistributedError::nats("store answers", error.to_string()))?;
        let written = written?;
        self.stats.add_written(&written);
        for worker in &by_worker {
            self.workers.add(worker);
        }
        // Committed: now the stream may forget them. A lost ack means a redelivery the upsert ignores, so the
        // acks are bounded: with the broker gone, the client's queue of commands can fill, and an ack would wait
        // on it for as long as the broker stays away.
        let acknowledging = async {
            for message in messages {
                if let Err(error) = message.ack().await {
                    tracing::debug!("could not acknowledge an answer: {error}");
                }
            }
        };
        if tokio::time::timeout(CLEAN_UP_WITHIN, acknowledging)
            .await
            .is_err()
        {
            tracing::warn!(
                "could not acknowledge the stored answers within {CLEAN_UP_WITHIN:?}: they are delivered again, \
                 and stored once"
            );
        }
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        for id in answered {
            if let Some(unanswered) = window.unanswered.remove(&id)
                && unanswered.repeated > 0
            {
                self.stats.add_duplicates(unanswered.repeated);
            }
            window.remember_stored(id);
        }
        Ok(store)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
