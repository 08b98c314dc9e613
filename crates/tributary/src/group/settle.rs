//! Settle: [`settle`] and [`Settling`] (documented in `group`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::Stream;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::deadline::{Deadline, Elapsed, with_timeout};

/// Runs every task concurrently and returns one outcome per task, in the order the tasks were given.
///
/// Never fails as a whole. Must be called from within a tokio runtime.
pub async fn settle<T, E, Task>(
    config: SettleConfig,
    tasks: impl IntoIterator<Item = Task>,
) -> Vec<Outcome<T, E>>
where
    Task: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let mut settling = Settling::spawn(config, tasks);
    let mut outcomes: Vec<Option<Outcome<T, E>>> = std::iter::repeat_with(|| None)
        .take(settling.len())
        .collect();
    while let Some((index, outcome)) = settling.next().await {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        // `Settling` yields every index exactly once; a gap would mean a task vanished, which is a cancellation.
        .map(|outcome| outcome.unwrap_or(Outcome::Cancelled))
        .collect()
}

/// How settle bounds its tasks. Built with [`SettleConfig::new`] and the builder methods.
#[derive(Debug, Clone, Default)]
pub struct SettleConfig {
    deadline: Deadline,
    per_task_timeout: Option<Duration>,
    cancelled_by: Option<CancellationToken>,
}

/// How one task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T, E> {
    /// The task returned a value.
    Ok(T),
    /// The task returned an error.
    Failed(E),
    /// The task's own timeout or the overall deadline fired first ([`Elapsed`] says which).
    TimedOut(Elapsed),
    /// The token given to [`SettleConfig::cancelled_by`] fired before the task ended.
    Cancelled,
    /// The task panicked; this is the panic message.
    Panicked(String),
}

/// Tasks being settled; yields `(index, outcome)` as each task ends, in completion order.
///
/// Dropping it aborts the tasks that have not ended.
#[derive(Debug)]
pub struct Settling<T, E> {
    tasks: JoinSet<Outcome<T, E>>,
    /// Maps a task back to its position in the input, for tasks that end in a panic or an abort.
    indices: HashMap<Id, usize>,
    total: usize,
    cancelled_by: Option<CancellationToken>,
    aborted: bool,
}

impl SettleConfig {
    /// No deadline, no per-task timeout, no outside cancellation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tasks still running when `deadline` passes end as `TimedOut(Elapsed::DeadlineExceeded)`.
    pub fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
    }

    /// Each task ends as `TimedOut(Elapsed::PerCallTimeout(..))` after `timeout`, unless the deadline is sooner.
    pub fn per_task_timeout(mut self, timeout: Duration) -> Self {
        self.per_task_timeout = Some(timeout);
        self
    }

    /// Tasks still running when `token` is cancelled end as [`Outcome::Cancelled`].
    pub fn cancelled_by(mut self, token: CancellationToken) -> Self {
        self.cancelled_by = Some(token);
        self
    }
}

impl<T, E> Outcome<T, E> {
    /// Whether the task returned a value.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    /// The value, if the task returned one.
    pub fn ok(self) -> Option<T> {
        match self {
            Outcome::Ok(value) => Some(value),
            _ => None,
        }
    }
}

impl<T, E> Settling<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// Starts every task now. Must be called from within a tokio runtime.
    pub fn spawn<Task>(config: SettleConfig, tasks: impl IntoIterator<Item = Task>) -> Self
    where
        Task: Future<Output = Result<T, E>> + Send + 'static,
    {
        let mut join_set = JoinSet::new();
        let mut indices = HashMap::new();
        for (index, task) in tasks.into_iter().enumerate() {
            let bounded = with_timeout(config.per_task_timeout, config.deadline, task);
            let handle = join_set.spawn(async move {
                match bounded.await {
                    Ok(Ok(value)) => Outcome::Ok(value),
                    Ok(Err(error)) => Outcome::Failed(error),
                    Err(elapsed) => Outcome::TimedOut(elapsed),
                }
            });
            indices.insert(handle.id(), index);
        }
        Self {
            total: indices.len(),
            tasks: join_set,
            indices,
            cancelled_by: config.cancelled_by,
            aborted: false,
        }
    }

    /// The next task to end, with its position in the input; `None` once every task has been reported.
    pub async fn next(&mut self) -> Option<(usize, Outcome<T, E>)> {
        loop {
            let cancelled = async {
                match &self.cancelled_by {
                    Some(token) if !self.aborted => token.cancelled().await,
                    _ => std::future::pending().await,
                }
            };
            let joined = tokio::select! {
                biased;
                joined = self.tasks.join_next_with_id() => joined,
                () = cancelled => {
                    // Aborted tasks come back below as cancelled join errors.
                    self.tasks.abort_all();
                    self.aborted = true;
                    continue;
                }
            };
            return match joined? {
                Ok((id, outcome)) => self.indices.remove(&id).map(|index| (index, outcome)),
                Err(error) => self
                    .indices
                    .remove(&error.id())
                    .map(|index| (index, outcome_of_join_error(error))),
            };
        }
    }

    /// The outcomes as a stream, in completion order.
    pub fn into_stream(self) -> impl Stream<Item = (usize, Outcome<T, E>)> {
        futures::stream::unfold(self, |mut settling| async move {
            let item = settling.next().await?;
            Some((item, settling))
        })
    }
}

impl<T, E> Settling<T, E> {
    /// How many tasks were started.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no task was started.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

fn outcome_of_join_error<T, E>(error: JoinError) -> Outcome<T, E> {
    match error.try_into_panic() {
        Ok(payload) => Outcome::Panicked(crate::panics::panic_message(payload.as_ref())),
        Err(_cancelled) => Outcome::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use tokio::sync::oneshot;
    use tokio::time::{Instant, sleep};

    use super::*;

    async fn sleep_then(millis: u64, value: u32) -> Result<u32, String> {
        sleep(Duration::from_millis(millis)).await;
        Ok(value)
    }

    /// Like asyncio's `gather(return_exceptions=True)`: every outcome, in input order, whatever the finish order.
    #[tokio::test(start_paused = true)]
    async fn settle_returns_every_outcome_in_spawn_order() {
        let tasks: Vec<futures::future::BoxFuture<'static, Result<u32, String>>> = vec![
            Box::pin(sleep_then(300, 1)),
            Box::pin(async {
                sleep(Duration::from_millis(100)).await;
                Err("source down".to_owned())
            }),
            Box::pin(async {
                sleep(Duration::from_millis(200)).await;
                panic!("parser crashed")
            }),
            Box::pin(sleep_then(0, 4)),
        ];
        let outcomes = settle(SettleConfig::new(), tasks).await;
        assert_eq!(
            outcomes,
            [
                Outcome::Ok(1),
                Outcome::Failed("source down".to_owned()),
                Outcome::Panicked("parser crashed".to_owned()),
                Outcome::Ok(4),
            ]
        );
    }

    /// With an overall deadline, what finished in time is kept and the rest is marked deadline-exceeded.
    #[tokio::test(start_paused = true)]
    async fn overall_deadline_returns_partial_results() {
        let start = Instant::now();
        let config = SettleConfig::new().deadline(Deadline::after(Duration::from_secs(3)));
        let outcomes = settle(
            config,
            [
                sleep_then(1000, 1),
                sleep_then(2000, 2),
                sleep_then(10_000, 3),
            ],
        )
        .await;
        assert_eq!(
            outcomes,
            [
                Outcome::Ok(1),
                Outcome::Ok(2),
                Outcome::TimedOut(Elapsed::DeadlineExceeded)
            ]
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    /// The effective bound is min(per-task timeout, deadline), and the outcome says which one fired.
    #[tokio::test(start_paused = true)]
    async fn per_task_timeout_and_deadline_are_told_apart() {
        let timeout = Duration::from_secs(2);
        let config = SettleConfig::new()
            .per_task_timeout(timeout)
            .deadline(Deadline::after(Duration::from_secs(5)));
        let outcomes = settle(config, [sleep_then(1000, 1), sleep_then(3000, 2)]).await;
        assert_eq!(
            outcomes,
            [
                Outcome::Ok(1),
                Outcome::TimedOut(Elapsed::PerCallTimeout(timeout))
            ]
        );

        let config = SettleConfig::new()
            .per_task_timeout(Duration::from_secs(10))
            .deadline(Deadline::after(Duration::from_secs(1)));
        let outcomes = settle(config, [sleep_then(3000, 1)]).await;
        assert_eq!(outcomes, [Outcome::TimedOut(Elapsed::DeadlineExceeded)]);
    }

    /// A cancelled token ends the unfinished tasks as `Cancelled` and keeps the finished ones.
    #[tokio::test(start_paused = true)]
    async fn outside_cancellation_marks_unfinished_tasks_cancelled() {
        let token = CancellationToken::new();
        let (finished, first_done) = oneshot::channel();
        let canceller = token.clone();
        tokio::spawn(async move {
            if first_done.await.is_ok() {
                canceller.cancel();
            }
        });
        let tasks: Vec<futures::future::BoxFuture<'static, Result<u32, String>>> = vec![
            Box::pin(async move {
                let _sent = finished.send(());
                Ok(1)
            }),
            Box::pin(sleep_then(10_000, 2)),
        ];
        let outcomes = settle(SettleConfig::new().cancelled_by(token), tasks).await;
        assert_eq!(outcomes, [Outcome::Ok(1), Outcome::Cancelled]);
    }

    /// The streaming form yields each outcome as its task ends, with the task's input position.
    #[tokio::test(start_paused = true)]
    async fn settling_yields_outcomes_in_completion_order() {
        let settling = Settling::spawn(
            SettleConfig::new(),
            [sleep_then(300, 0), sleep_then(100, 1), sleep_then(200, 2)],
        );
        assert_eq!(settling.len(), 3);
        let arrived: Vec<_> = settling.into_stream().collect().await;
        assert_eq!(
            arrived,
            [
                (1, Outcome::Ok(1)),
                (2, Outcome::Ok(2)),
                (0, Outcome::Ok(0))
            ]
        );
    }

    /// Dropping a `Settling` aborts the tasks that have not ended: no task outlives it.
    #[tokio::test(start_paused = true)]
    async fn dropping_settling_aborts_unfinished_tasks() {
        let (sender, mut closed) = oneshot::channel::<()>();
        let settling: Settling<(), String> = Settling::spawn(
            SettleConfig::new(),
            [async move {
                let _held_until_dropped = sender;
                sleep(Duration::from_secs(3600)).await;
                Ok(())
            }],
        );
        drop(settling);
        // The receiver sees the sender dropped once the runtime has dropped the aborted task.
        assert!(matches!(
            (&mut closed).await,
            Err(oneshot::error::RecvError { .. })
        ));
    }
}
