//! `tributary worker`: answers questions from the questions stream until told to stop.
//!
//! One question's life on a worker:
//!
//! 1. pulled, only when a local permit is free: a worker holds at most [`WorkerSettings::held`] questions, the
//!    consumer's `max_ack_pending` bounds what all workers hold together;
//! 2. fetched and inferred by the batch's own steps, each under its own bound as in a local batch:
//!    [`fetch_question`] under an I/O permit (`--io-concurrency` questions fetch at once), then
//!    [`infer_question`] under a CPU permit. A question waiting for the CPU or being published holds no I/O
//!    permit, so the fetches never wait on inference; `AckKind::Progress` is sent every third of `ack_wait`
//!    meanwhile, so a long inference is not taken for a dead worker;
//! 3. its answer published (message id = question id) and the PubAck awaited: the answer is on disk;
//! 4. only then the question double-acked. A worker killed anywhere before this leaves the question unacked,
//!    and the stream delivers it again after `ack_wait`.
//!
//! A question on its `max_deliver`th delivery (its batch's limit, carried in the message) is not run: every
//! earlier delivery ended without an answer (a worker crashed, was killed or stalled on it), so it is answered
//! `failed`, saying so, and the batch goes on. Nor is any later delivery, should the worker holding the last one
//! die before answering it.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind, Context, Message};
use futures::StreamExt as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tributary::group::{Group, GroupConfig, scope};

use crate::distributed::streams::{BatchKey, StreamSettings, workers_consumer};
use crate::distributed::wire::{AnswerMessage, QuestionMessage, WireError};
use crate::distributed::{DistributedError, first_error, is_connected};
use crate::input::RecordId;
use crate::steps::{PendingQuestion, fetch_question, infer_question};
use crate::store::AnswerRow;
use tributary_agent::Question;
use tributary_agent::{Agent, AnswerFailure};

/// How long one pull waits for questions before asking again (and before noticing a stop).
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// How long a publish waits for its PubAck before the question is handed back (nak) for another try.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a worker told to stop checks whether the broker is still there (see
/// [`Answering::stopping_without_broker`]).
const BROKER_CHECK_EVERY: Duration = Duration::from_millis(100);

/// A worker's limits and name.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Reported with each answer: the coordinator's per-worker throughput. Unique per process by default.
    pub name: String,
    /// Questions fetching at once: the worker's I/O bound, as `--io-concurrency` is a local batch's.
    pub io_concurrency: NonZeroUsize,
    /// Questions on the CPU stage at once.
    pub infer_concurrency: NonZeroUsize,
    pub streams: StreamSettings,
    /// For tests of `max_deliver` only (`tributary worker`'s hidden `--stall-on`): a question whose text
    /// contains this is held without an answer or progress until the worker stops, as a stuck worker would, so
    /// every delivery of it to this worker, the last included, runs out its `ack_wait`. `None` in every real
    /// run.
    pub stall_on: Option<String>,
}

impl WorkerSettings {
    /// Questions this worker holds at once: those fetching, and twice the CPU stage's share, so that while
    /// some are inferred and some published, the next ones are already pulled and an I/O permit freed by a
    /// finished fetch never waits for the broker.
    pub fn held(&self) -> NonZeroUsize {
        self.io_concurrency
            .saturating_add(self.infer_concurrency.get().saturating_mul(2))
    }
}

/// Live counters, for progress.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pulled: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    handed_back: AtomicU64,
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Questions delivered to this worker.
    pub pulled: u64,
    /// Answers published and their questions acknowledged.
    pub answered: u64,
    /// Of those, answered `failed` (including those given up after `max_deliver`).
    pub failed: u64,
    /// Questions handed back to the stream for another delivery: their answer could not be published, or the
    /// worker was told to stop with the broker unreachable before they were answered.
    pub handed_back: u64,
}

impl WorkerStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> WorkerSummary {
        WorkerSummary {
            pulled: self.pulled.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            handed_back: self.handed_back.load(Ordering::Relaxed),
        }
    }
}

/// Answers questions from `client`'s questions stream with `agent` until `stop` is cancelled; then pulls no
/// more, finishes and acknowledges every question it holds, and returns. With the broker unreachable once
/// stopped, it hands back what it holds instead (counted in [`WorkerSummary::handed_back`]): no answer could be
/// published, and the stream delivers them again after `ack_wait`.
pub async fn work(
    agent: &Agent,
    client: async_nats::Client,
    settings: &WorkerSettings,
    stats: Arc<WorkerStats>,
    stop: CancellationToken,
) -> Result<WorkerSummary, DistributedError> {
    let jetstream = jetstream::new(client);
    let setting_up = async {
        let mut consumer = workers_consumer(&jetstream, &settings.streams).await?;
        // The consumer is made once, by the first worker: its ack_wait is the one that counts.
        let ack_wait = match consumer.info().await {
            Ok(info) => info.config.ack_wait,
            Err(error) => {
                tracing::warn!("could not read the consumer's ack_wait ({error}); assuming ours");
                settings.streams.ack_wait
            }
        };
        Ok::<_, DistributedError>((consumer, ack_wait))
    };
    // Told to stop before it holds anything (a broker slow to answer, or gone): nothing to finish.
    let (consumer, ack_wait) = tokio::select! {
        biased;
        () = stop.cancelled() => return Ok(stats.snapshot()),
        set_up = setting_up => set_up?,
    };
    if ack_wait != settings.streams.ack_wait {
        tracing::warn!(
            "the workers' consumer exists with ack_wait {ack_wait:?}, not --ack-wait {:?}: using it, and sending \
             progress every third of it (delete the consumer tributary-workers to change it)",
            settings.streams.ack_wait
        );
    }
    let in_flight = Arc::new(Semaphore::new(settings.held().get()));
    let cpu = Arc::new(Semaphore::new(settings.infer_concurrency.get()));
    let fetching = Arc::new(Semaphore::new(settings.io_concurrency.get()));
    let answering = Answering {
        agent: agent.clone(),
        jetstream,
        worker: settings.name.clone(),
        progress_every: ack_wait / 3,
        cpu,
        fetching,
        stats: stats.clone(),
        stall_on: settings.stall_on.clone(),
        stop: stop.clone(),
    };
    let pulled = stats.clone();
    scope(
        GroupConfig::new(),
        |group: Group<DistributedError>| async move {
            while !stop.is_cancelled() {
                // Pull only as many as there are free permits: what this worker holds is bounded here.
                let first = tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    permit = Arc::clone(&in_flight).acquire_owned() => permit,
                };
                let Ok(first) = first else { break };
                let mut permits = vec![first];
                while let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() {
                    permits.push(permit);
                }
                let batch = tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    batch = consumer
                        .batch()
                        .max_messages(permits.len())
                        .expires(PULL_EXPIRES)
                        .messages() => batch,
                };
                let mut batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => {
                        // The broker may be restarting: the client reconnects; try again shortly.
                        tracing::warn!("could not pull questions: {error}");
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(PULL_EXPIRES) => continue,
                        }
                    }
                };
                loop {
                    // A stop drops the pull: a question delivered after it is left unacked and redelivered.
                    let next = tokio::select! {
                        biased;
                        () = stop.cancelled() => break,
                        next = batch.next() => next,
                    };
                    let message = match next {
                        None => break,
                        Some(Ok(message)) => message,
                        Some(Err(error)) => {
                            tracing::debug!("pull ended: {error}");
                            break;
                        }
                    };
                    let Some(permit) = permits.pop() else {
                        // Never more messages than asked for; if the server sends one, it waits for ack_wait.
                        tracing::warn!(
                            "received more questions than asked for; leaving one for redelivery"
                        );
                        continue;
                    };
                    pulled.pulled.fetch_add(1, Ordering::Relaxed);
                    let answering = answering.clone();
                    let child = async move {
                        answering.answer(message).await;
                        drop(permit);
                        Ok(())
                    };
                    if group.spawn("question", child).await.is_err() {
                        break;
                    }
                }
            }
            Ok(())
        },
    )
    .await
    .map_err(first_error("run the worker"))?;
    Ok(stats.snapshot())
}

/// What answering one question needs; cloned into each question's task.
#[derive(Clone)]
struct Answering {
    agent: Agent,
    jetstream: Context,
    worker: String,
    progress_every: Duration,
    cpu: Arc<Semaphore>,
    fetching: Arc<Semaphore>,
    stats: Arc<WorkerStats>,
    stall_on: Option<String>,
    stop: CancellationToken,
}

impl Answering {
    /// Answers `message`, publishes the answer, and acknowledges the question once the answer is stored by the
    /// stream; hands it back (nak) if the answer could not be published. Never fails: whatever goes wrong
    /// leaves the question to be delivered again.
    async fn answer(&self, message: Message) {
        let Some((batch, id)) = message_id(message.headers.as_ref()) else {
            // Not a question of ours: no batch and id to answer under. Nobody waits for it.
            tracing::warn!("a question without a batch:id message id; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let delivered = message
            .info()
            .map(|info| info.delivered)
            .unwrap_or_default();
        let question = QuestionMessage::decode(&message.payload);
        if self.stalls_on(question.as_ref().ok()) {
            // The test's stuck worker: no answer, no progress, no ack; the stream delivers it again.
            tracing::warn!("question {id}: stalling on it (--stall-on)");
            self.stop.cancelled().await;
            return;
        }
        // Told to stop with the broker gone: an answer could not be published anyway, and finishing every
        // question held (a slow worker holds dozens) kept the worker alive for a minute after one SIGTERM.
        let row = tokio::select! {
            row = self.row(&message, question, &id, delivered) => row,
            () = self.stopping_without_broker() => {
                tracing::warn!(
                    "question {id}: stopping with the NATS server unreachable; handing it back unanswered"
                );
                self.hand_back(&message).await;
                return;
            }
        };
        if row.status == tributary_agent::report::AnswerStatus::Failed {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        let answer = AnswerMessage::from_row(row, id.clone(), &self.worker);
        let published = tokio::select! {
            published = self.publish(&batch, &id, &answer) => published,
            () = self.stopping_without_broker() => Err(DistributedError::nats(
                "publish an answer before stopping",
                "the NATS server is unreachable",
            )),
        };
        match published {
            Ok(()) => {
                // The answer is on disk: the question is done. A lost ack only means a redelivery, whose
                // answer the stream (same message id) and the store (same primary key) drop.
                if let Err(error) = message.double_ack().await {
                    tracing::warn!("could not acknowledge question {id}: {error}");
                }
                self.stats.answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(
                    "could not publish the answer to {id}: {}; handing it back",
                    tributary_agent::error_chain(&error)
                );
                self.hand_back(&message).await;
            }
        }
    }

    /// Gives `message` back to the stream for another delivery (nak): at once when the broker hears it, else
    /// after `ack_wait`.
    async fn hand_back(&self, message: &Message) {
        self.stats.handed_back.fetch_add(1, Ordering::Relaxed);
        let _ = message.ack_with(AckKind::Nak(Some(PULL_EXPIRES))).await;
    }

    /// Resolves once the worker is told to stop while the broker is unreachable. A publish then waits for a
    /// PubAck that cannot come before [`PUBLISH_ACK_TIMEOUT`], keeping a worker asked to stop alive for
    /// nothing: its question is handed back at once instead, and delivered again after `ack_wait`. While the
    /// worker runs on, a broker away is waited for (the client reconnects).
    async fn stopping_without_broker(&self) {
        self.stop.cancelled().await;
        let client = self.jetstream.client();
        while is_connected(&client) {
            tokio::time::sleep(BROKER_CHECK_EVERY).await;
        }
    }

    /// Whether `question` is the one `stall_on` names (never, outside tests).
    fn stalls_on(&self, question: Option<&QuestionMessage>) -> bool {
        match (self.stall_on.as_deref(), question) {
            (Some(text), Some(question)) => question.question.contains(text),
            _ => false,
        }
    }

    /// The answer's row: the agent's answer, or `failed` with why when the question cannot be asked.
    async fn row(
        &self,
        message: &Message,
        question: Result<QuestionMessage, WireError>,
        id: &str,
        delivered: i64,
    ) -> AnswerRow {
        let record_id = RecordId::new(id);
        let question = match question {
            Ok(question) => question,
            Err(error) => {
                let why = format!(
                    "the question message cannot be read: {}",
                    tributary_agent::error_chain(&error)
                );
                return AnswerRow::not_asked(
                    record_id,
                    0,
                    AnswerFailure::UnreadableMessage,
                    why,
                    &self.agent,
                );
            }
        };
        if delivered >= i64::from(question.max_deliver) {
            let why = format!(
                "not run: delivered {delivered} times (the batch allows {}), and each delivery before ended \
                 without an answer (a worker crashed, was killed, or held it past ack_wait)",
                question.max_deliver
            );
            tracing::warn!("question {id}: {why}");
            return AnswerRow::not_asked(
                record_id,
                question.line,
                AnswerFailure::DeliveryLimit,
                why,
                &self.agent,
            );
        }
        let pending = match Question::new(&question.question) {
            Ok(text) => PendingQuestion {
                id: record_id,
                line: question.line,
                question: text,
            },
            Err(error) => {
                let why = format!("line {}: {error}", question.line);
                return AnswerRow::unusable(record_id, question.line, why, &self.agent);
            }
        };
        let work = async {
            let fetched = {
                let _io = self.fetching.acquire().await;
                fetch_question(&self.agent, pending).await
            };
            // The CPU stage's bound, as in a local batch; the pool's queue bounds the jobs themselves.
            let _cpu = self.cpu.acquire().await;
            infer_question(&self.agent, fetched).await
        };
        tokio::pin!(work);
        let mut progress =
            tokio::time::interval(self.progress_every.max(Duration::from_millis(100)));
        progress.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                row = &mut work => return row,
                _ = progress.tick() => {
                    // Still working: ack_wait starts again. A lost progress ack risks only a redelivery.
                    if let Err(error) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!("could not report progress on {id}: {error}");
                    }
                }
            }
        }
    }

    /// Publishes `answer` to its batch's coordinator and waits until the answers stream has stored it.
    async fn publish(
        &self,
        batch: &BatchKey,
        id: &str,
        answer: &AnswerMessage,
    ) -> Result<(), DistributedError> {
        let payload = answer.encode()?;
        let acknowledged = self
            .jetstream
            .send_publish(
                batch.answers_subject(),
                PublishMessage::build()
                    .payload(payload.into())
                    .message_id(batch.message_id(id).as_str()),
            )
            .await
            .map_err(|error| DistributedError::nats("publish an answer", error))?;
        match tokio::time::timeout(PUBLISH_ACK_TIMEOUT, acknowledged.into_future()).await {
            Ok(Ok(_stored)) => Ok(()),
            Ok(Err(error)) => Err(DistributedError::nats("store an answer", error)),
            Err(elapsed) => Err(DistributedError::nats("store an answer in time", elapsed)),
        }
    }
}

/// The question's batch and id, from its `Nats-Msg-Id` header, `BATCH:ID` (readable even when the payload is
/// not, so that even an unreadable question is answered to the coordinator waiting for it).
fn message_id(headers: Option<&HeaderMap>) -> Option<(BatchKey, String)> {
    let value = headers?.get(async_nats::header::NATS_MESSAGE_ID)?;
    let (batch, id) = BatchKey::split_message_id(value.as_str())?;
    (!id.is_empty()).then(|| (batch, id.to_owned()))
}
