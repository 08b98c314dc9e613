//! The two streams and their consumers: names, settings, and idempotent creation by whichever side comes first.
//!
//! Both streams keep their messages on disk (file storage), so a broker restarted mid-run still has every
//! question not yet acknowledged and every answer not yet stored. Both use work-queue retention: a message is
//! removed once its consumer acknowledges it, so the streams hold what is in flight, never the whole batch.
//!
//! # Many batches on one server
//! Every batch has a key (its database's, see [`Store::batch_key`](crate::Store::batch_key)), and
//! everything of a batch carries it: its questions' and answers' subjects (`tributary.questions.KEY`,
//! `tributary.answers.KEY`), their message ids (`KEY:ID`: the duplicate window is the stream's, and two input
//! files both have a line 1) and its coordinator's consumer (`tributary-coordinator-KEY`, filtered on its
//! answers' subject). So batches run side by side, or one right after another, without taking each other's
//! questions or answers; workers serve them all from one consumer, in the order they were published, and send
//! each answer to the subject its question names.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{
    Config, ConsumerErrorKind, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, Context, ErrorCode};

use crate::distributed::DistributedError;

/// The stream of questions waiting for a worker.
pub const QUESTIONS_STREAM: &str = "TRIBUTARY_QUESTIONS";
/// The questions stream's subjects: one per batch, `tributary.questions.KEY`.
pub const QUESTIONS_SUBJECTS: &str = "tributary.questions.*";
/// The one durable consumer every worker pulls from: a question goes to one worker at a time.
pub const WORKERS_CONSUMER: &str = "tributary-workers";

/// The stream of answers waiting to be stored.
pub const ANSWERS_STREAM: &str = "TRIBUTARY_ANSWERS";
/// The answers stream's subjects: one per batch, `tributary.answers.KEY`.
pub const ANSWERS_SUBJECTS: &str = "tributary.answers.*";
/// The start of a coordinator's durable consumer's name, `tributary-coordinator-KEY`: a rerun on the same
/// database continues where a killed coordinator stopped.
pub const COORDINATOR_CONSUMER_PREFIX: &str = "tributary-coordinator-";

/// Default [`StreamSettings::ack_wait`].
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Default deliveries of a question at most
/// ([`QuestionMessage::max_deliver`](crate::distributed::wire::QuestionMessage::max_deliver)).
pub const DEFAULT_MAX_DELIVER: u32 = 5;
/// Default [`StreamSettings::max_ack_pending`].
/// As many as the largest coordinator window: the windows and each worker's own bounds are what hold work back;
/// this only keeps a runaway from taking the whole stream.
pub const DEFAULT_MAX_ACK_PENDING: u32 = 65_536;
/// Default [`StreamSettings::duplicate_window`]: NATS's own default.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A batch's key, checked: it goes into subjects and a consumer's name, which allow no `.`, `*`, `>`, spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchKey(String);

impl BatchKey {
    /// `key` if it is 1 to 64 ASCII letters, digits, `-` or `_`.
    pub fn new(key: &str) -> Result<Self, DistributedError> {
        let usable = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if usable {
            Ok(Self(key.to_owned()))
        } else {
            Err(DistributedError::BatchKey {
                key: key.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where this batch's questions are published.
    pub fn questions_subject(&self) -> String {
        format!("tributary.questions.{}", self.0)
    }

    /// Where answers to this batch's questions are published.
    pub fn answers_subject(&self) -> String {
        format!("tributary.answers.{}", self.0)
    }

    /// The coordinator's durable consumer of this batch's answers.
    pub fn coordinator_consumer(&self) -> String {
        format!("{COORDINATOR_CONSUMER_PREFIX}{}", self.0)
    }

    /// The message id of this batch's question (and answer) `id`: `KEY:ID`.
    pub fn message_id(&self, id: &str) -> String {
        format!("{}:{id}", self.0)
    }

    /// The batch and the input id a message id names, if it is one of ours.
    pub fn split_message_id(message_id: &str) -> Option<(Self, &str)> {
        let (key, id) = message_id.split_once(':')?;
        Some((Self::new(key).ok()?, id))
    }
}

impl std::fmt::Display for BatchKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// How the streams and consumers are made. They are made once, by whichever of the coordinator and the workers
/// comes first; a later side with other settings uses the existing ones (NATS does not change a consumer on
/// "get or create"), so give every side the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long a delivered question may go without an ack or progress before it is delivered again. Workers
    /// send progress every third of it while a question is in flight, so only a dead or stuck worker lets it
    /// expire.
    pub ack_wait: Duration,
    /// Questions delivered and not yet acknowledged, over all workers: the cluster's in-flight bound.
    pub max_ack_pending: u32,
    /// How long the questions stream remembers a message id: a question republished within it is dropped.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            ack_wait: DEFAULT_ACK_WAIT,
            max_ack_pending: DEFAULT_MAX_ACK_PENDING,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }
}

/// Makes (or finds) both streams.
pub async fn ensure_streams(
    jetstream: &Context,
    settings: &StreamSettings,
) -> Result<(jetstream::stream::Stream, jetstream::stream::Stream), DistributedError> {
    let questions = jetstream
        .get_or_create_stream(work_queue(
            QUESTIONS_STREAM,
            QUESTIONS_SUBJECTS,
            settings.duplicate_window,
        ))
        .await
        .map_err(|error| DistributedError::nats("create the questions stream", error))?;
    let answers = jetstream
        .get_or_create_stream(work_queue(
            ANSWERS_STREAM,
            ANSWERS_SUBJECTS,
            settings.duplicate_window,
        ))
        .await
        .map_err(|error| DistributedError::nats("create the answers stream", error))?;
    Ok((questions, answers))
}

/// The workers' shared consumer of questions.
pub async fn workers_consumer(
    jetstream: &Context,
    settings: &StreamSettings,
) -> Result<PullConsumer, DistributedError> {
    let (questions, _) = ensure_streams(jetstream, settings).await?;
    questions
        .get_or_create_consumer(
            WORKERS_CONSUMER,
            durable(WORKERS_CONSUMER, settings.ack_wait, settings),
        )
        .await
        .map_err(|error| DistributedError::nats("create the workers' consumer", error))
}

/// A coordinator's consumer of its batch's answers. Its answers are acknowledged after their transaction
/// commits, which takes a fraction of a second; a generous `ack_wait` keeps a slow disk from causing
/// redeliveries.
pub async fn coordinator_consumer(
    jetstream: &Context,
    settings: &StreamSettings,
    batch: &BatchKey,
) -> Result<PullConsumer, DistributedError> {
    let (_, answers) = ensure_streams(jetstream, settings).await?;
    let name = batch.coordinator_consumer();
    let config = pull::Config {
        // An answer is only ever stored, never "failed": it is redelivered as often as it takes (`durable`).
        filter_subject: batch.answers_subject(),
        ..durable(&name, DEFAULT_ACK_WAIT, settings)
    };
    answers
        .get_or_create_consumer(&name, config)
        .await
        .map_err(|error| DistributedError::nats("create the coordinator's consumer", error))
}

/// Deletes a finished batch's consumer, which holds nothing any more: a server running batch after batch does
/// not keep one consumer per batch forever. A consumer already gone is not an error.
pub async fn delete_coordinator_consumer(
    jetstream: &Context,
    batch: &BatchKey,
) -> Result<(), DistributedError> {
    let answers = jetstream
        .get_stream(ANSWERS_STREAM)
        .await
        .map_err(|error| DistributedError::nats("find the answers stream", error))?;
    match answers.delete_consumer(&batch.coordinator_consumer()).await {
        Ok(_) => Ok(()),
        Err(error) => match error.kind() {
            ConsumerErrorKind::JetStream(cause)
                if cause.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
            {
                Ok(())
            }
            _ => Err(DistributedError::nats("delete the batch's consumer", error)),
        },
    }
}

fn work_queue(name: &str, subject: &str, duplicate_window: Duration) -> Config {
    Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        // Publishing fails rather than dropping what is stored: the coordinator's window keeps it far below.
        discard: DiscardPolicy::New,
        duplicate_window,
        ..Config::default()
    }
}

fn durable(name: &str, ack_wait: Duration, settings: &StreamSettings) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait,
        // Unlimited at the server: the limit is each batch's, kept by the workers (see
        // `QuestionMessage::max_deliver`).
        max_deliver: -1,
        max_ack_pending: i64::from(settings.max_ack_pending),
        ..pull::Config::default()
    }
}
