//! The two streams and their consumers: names, settings, and idempotent creation by whichever side comes first.
//!
//! Both streams keep their messages on disk (file storage), so a broker restarted mid-run still has every
//! question not yet acknowledged and every answer not yet stored. Both use work-queue retention: a message is
//! removed once its one consumer acknowledges it, so the streams hold what is in flight, never the whole batch.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};

use crate::distributed::DistributedError;

/// The stream of questions waiting for a worker.
pub const QUESTIONS_STREAM: &str = "TRIBUTARY_QUESTIONS";
/// The subject questions are published on.
pub const QUESTIONS_SUBJECT: &str = "tributary.questions";
/// The one durable consumer every worker pulls from: a question goes to one worker at a time.
pub const WORKERS_CONSUMER: &str = "tributary-workers";

/// The stream of answers waiting to be stored.
pub const ANSWERS_STREAM: &str = "TRIBUTARY_ANSWERS";
/// The subject answers are published on.
pub const ANSWERS_SUBJECT: &str = "tributary.answers";
/// The coordinator's durable consumer: a rerun continues where a killed coordinator stopped.
pub const COORDINATOR_CONSUMER: &str = "tributary-coordinator";

/// Default [`StreamSettings::ack_wait`].
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Default [`StreamSettings::max_deliver`].
pub const DEFAULT_MAX_DELIVER: u32 = 5;
/// Default [`StreamSettings::max_ack_pending`].
pub const DEFAULT_MAX_ACK_PENDING: u32 = 4096;
/// Default [`StreamSettings::duplicate_window`]: NATS's own default.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How the streams and consumers are made. They are made once, by whichever of the coordinator and the workers
/// comes first; a later side with other settings uses the existing ones (NATS does not change a consumer on
/// "get or create"), so give every side the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long a delivered question may go without an ack or progress before it is delivered again. Workers
    /// send progress every third of it while a question is in flight, so only a dead or stuck worker lets it
    /// expire.
    pub ack_wait: Duration,
    /// Deliveries of one question at most; on its last one a worker answers it `failed` instead of running it.
    pub max_deliver: u32,
    /// Questions delivered and not yet acknowledged, over all workers: the cluster's in-flight bound.
    pub max_ack_pending: u32,
    /// How long the questions stream remembers a message id: a question republished within it is dropped.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: DEFAULT_MAX_DELIVER,
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
            QUESTIONS_SUBJECT,
            settings.duplicate_window,
        ))
        .await
        .map_err(|error| DistributedError::nats("create the questions stream", error))?;
    let answers = jetstream
        .get_or_create_stream(work_queue(
            ANSWERS_STREAM,
            ANSWERS_SUBJECT,
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

/// The coordinator's consumer of answers. Its answers are acknowledged after their transaction commits, which
/// takes a fraction of a second; a generous `ack_wait` keeps a slow disk from causing redeliveries.
pub async fn coordinator_consumer(
    jetstream: &Context,
    settings: &StreamSettings,
) -> Result<PullConsumer, DistributedError> {
    let (_, answers) = ensure_streams(jetstream, settings).await?;
    let config = pull::Config {
        // An answer is only ever stored, never "failed": redeliver it as often as it takes.
        max_deliver: -1,
        ..durable(COORDINATOR_CONSUMER, DEFAULT_ACK_WAIT, settings)
    };
    answers
        .get_or_create_consumer(COORDINATOR_CONSUMER, config)
        .await
        .map_err(|error| DistributedError::nats("create the coordinator's consumer", error))
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
        max_deliver: i64::from(settings.max_deliver),
        max_ack_pending: i64::from(settings.max_ack_pending),
        ..pull::Config::default()
    }
}
