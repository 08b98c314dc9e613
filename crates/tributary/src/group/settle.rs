//! Settle and the other completion policies: [`settle`] and [`Settling`] (await all),
//! [`first_success`], [`settle_until`] and [`quorum`], all on the group engine (documented in `group`).
//!
//! Every task is a child of one group ([`Shared`]), so these get the engine's guarantees: no task outlives the
//! call, a cancelled task never runs again, a task cancelled before it started never starts, and a group nested
//! in a task is joined however the task ends. A task's outcome is caught inside the task (its error, its
//! timeout, its panic), so one task never stops the others: only a policy that is satisfied
//! ([`first_success`], [`settle_until`]) or the token of [`SettleConfig::cancelled_by`] cancels the rest.

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::core::{AbortOnDrop, CodeContext, InnerGroup, Shared};
use super::deadline::{Deadline, Elapsed, with_timeout};
use super::fail_fast::GroupConfig;

/// Runs every task concurrently and returns one outcome per task, in the order the tasks were given: the
/// await-all policy, asyncio's `gather(return_exceptions=True)`.
///
/// Never fails as a whole. Returns once every task has ended. Must be called from within a tokio runtime.
pub async fn settle<T, E, Task>(
    config: SettleConfig,
    tasks: impl IntoIterator<Item = Task>,
) -> Vec<Outcome<T, E>>
where
    Task: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    settle_until(config, tasks, |_| false).await
}

/// Runs every task concurrently until `done` says the outcomes so far are enough, then cancels the rest: the
/// predicate policy. `done` sees one slot per task, in input order, filled as tasks end; it is asked after each.
///
/// Returns one outcome per task in input order once every task has ended: those cancelled because `done` was
/// satisfied are [`Outcome::Cancelled`], those the deadline cut are [`Outcome::TimedOut`] (partial results).
///
/// ```
/// use std::time::Duration;
/// use tributary::group::{Outcome, SettleConfig, settle_until};
///
/// async fn replica(latency_ms: u64) -> Result<u64, String> {
///     tokio::time::sleep(Duration::from_millis(latency_ms)).await;
///     Ok(latency_ms)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Enough once two replicas answered: the slowest one is cancelled.
/// let outcomes = settle_until(SettleConfig::new(), [replica(10), replica(5000), replica(20)], |outcomes| {
///     outcomes.iter().flatten().filter(|outcome| outcome.is_ok()).count() >= 2
/// })
/// .await;
/// assert_eq!(outcomes, [Outcome::Ok(10), Outcome::Cancelled, Outcome::Ok(20)]);
/// # }
/// ```
pub async fn settle_until<T, E, Task, Done>(
    config: SettleConfig,
    tasks: impl IntoIterator<Item = Task>,
    mut done: Done,
) -> Vec<Outcome<T, E>>
where
    Task: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    Done: FnMut(&[Option<Outcome<T, E>>]) -> bool,
{
    // Counts this settle in the child (or body) it runs in: a cancelled child waits for it to wind down.
    let _inner = InnerGroup::enter();
    let mut settling = Settling::spawn(config, tasks);
    let mut outcomes: Vec<Option<Outcome<T, E>>> = std::iter::repeat_with(|| None)
        .take(settling.len())
        .collect();
    let mut satisfied = false;
    while let Some((index, outcome)) = settling.next().await {
        outcomes[index] = Some(outcome);
        if !satisfied && done(&outcomes) {
            satisfied = true;
            settling.cancel_remaining();
        }
    }
    outcomes
        .into_iter()
        // `Settling` yields every index exactly once; a gap would mean a task vanished, which is a cancellation.
        .map(|outcome| outcome.unwrap_or(Outcome::Cancelled))
        .collect()
}

/// Runs every task concurrently and returns the first value, cancelling the others: the first-success policy,
/// the building block of hedged requests.
///
/// Returns `Ok((index, value))` as soon as one task succeeds, once the others have been cancelled and have
/// ended. If none succeeds (each failed, timed out, panicked, or the deadline passed first), returns every
/// task's outcome, in input order.
///
/// ```
/// use std::time::Duration;
/// use tributary::group::{SettleConfig, first_success};
///
/// async fn mirror(latency_ms: u64, up: bool) -> Result<&'static str, String> {
///     tokio::time::sleep(Duration::from_millis(latency_ms)).await;
///     if up { Ok("answer") } else { Err("down".to_owned()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let first = first_success(SettleConfig::new(), [mirror(5, false), mirror(20, true), mirror(900, true)]).await;
/// assert_eq!(first.ok(), Some((1, "answer")));
/// # }
/// ```
pub async fn first_success<T, E, Task>(
    config: SettleConfig,
    tasks: impl IntoIterator<Item = Task>,
) -> Result<(usize, T), Vec<Outcome<T, E>>>
where
    Task: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let mut outcomes = settle_until(config, tasks, |outcomes| {
        outcomes.iter().flatten().any(Outcome::is_ok)
    })
    .await;
    match outcomes.iter().position(Outcome::is_ok) {
        Some(index) => match outcomes.swap_remove(index) {
            Outcome::Ok(value) => Ok((index, value)),
            _ => unreachable!("the outcome at `index` is a success"),
        },
        None => Err(outcomes),
    }
}

/// Runs every task concurrently until `needed` of them succeeded, then cancels the rest: the quorum policy.
///
/// Returns the successes, with their input positions, once the quorum is reached and the rest have ended; or,
/// when it cannot be reached (too many failures, the deadline), every task's outcome, in input order.
pub async fn quorum<T, E, Task>(
    config: SettleConfig,
    tasks: impl IntoIterator<Item = Task>,
    needed: usize,
) -> Result<Vec<(usize, T)>, Vec<Outcome<T, E>>>
where
    Task: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let outcomes = settle_until(config, tasks, |outcomes| {
        outcomes
            .iter()
            .flatten()
            .filter(|outcome| outcome.is_ok())
            .count()
            >= needed
    })
    .await;
    if outcomes.iter().filter(|outcome| outcome.is_ok()).count() < needed {
        return Err(outcomes);
    }
    Ok(outcomes
        .into_iter()
        .enumerate()
        .filter_map(|(index, outcome)| outcome.ok().map(|value| (index, value)))
        .collect())
}

/// How settle bounds its tasks. Built with [`SettleConfig::new`] and the builder methods.
#[derive(Debug, Clone, Default)]
pub struct SettleConfig {
    deadline: Deadline,
    per_task_timeout: Option<Duration>,
    cancelled_by: Option<CancellationToken>,
    max_concurrency: Option<NonZeroUsize>,
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
    /// The token given to [`SettleConfig::cancelled_by`] fired before the task ended, or a policy was satisfied
    /// without it.
    Cancelled,
    /// The task panicked; this is the panic message.
    Panicked(String),
}

/// Tasks being settled; yields `(index, outcome)` as each task ends, in completion order.
///
/// Dropping it cancels and aborts the tasks that have not ended (if it is dropped inside a group's child or
/// body, that group waits for them).
pub struct Settling<T, E> {
    group: Arc<Shared<Infallible>>,
    _abort_on_drop: AbortOnDrop<Infallible>,
    outcomes: mpsc::UnboundedReceiver<(usize, Outcome<T, E>)>,
    /// Takes the next task from the input and starts it (or passes over it); `None` once the input is done.
    feeder: Option<Feeder>,
    /// At most this many tasks run at once.
    limit: usize,
    deadline: Deadline,
    /// Tasks started and not yet reported.
    running: usize,
    /// Tasks in all.
    total: usize,
}

/// What to do with the next task of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Start,
    /// Drop it unstarted: the settle was cancelled or its deadline passed before its turn.
    PassOver,
}

/// Takes the next task from the input: its index, or `None` when there is none left.
type Feeder = Box<dyn FnMut(Feed) -> Option<usize> + Send>;

/// Sends a task's outcome; a task dropped before it sent one (cancelled, aborted, refused) reports
/// [`Outcome::Cancelled`], so every started task reports exactly once.
struct Reporter<T, E> {
    index: usize,
    sender: Option<mpsc::UnboundedSender<(usize, Outcome<T, E>)>>,
}

impl<T, E> Reporter<T, E> {
    fn send(mut self, outcome: Outcome<T, E>) {
        if let Some(sender) = self.sender.take() {
            let _receiver_gone = sender.send((self.index, outcome));
        }
    }
}

impl<T, E> Drop for Reporter<T, E> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _receiver_gone = sender.send((self.index, Outcome::Cancelled));
        }
    }
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

    /// At most `limit` tasks run at once; the others start as slots free up, in input order, so what running
    /// tasks hold (connections, buffers, the state of their work) is bounded by `limit`, not by the number of
    /// tasks. A task's own timeout starts when it starts. A task whose turn comes after the deadline never starts and ends as
    /// `TimedOut(Elapsed::DeadlineExceeded)`; one whose turn comes after a cancellation ends as
    /// [`Outcome::Cancelled`].
    pub fn max_concurrency(mut self, limit: NonZeroUsize) -> Self {
        self.max_concurrency = Some(limit);
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
    /// Starts the tasks now (with [`SettleConfig::max_concurrency`], the first `limit` of them). Must be called
    /// from within a tokio runtime.
    ///
    /// The input is consumed at once (the tasks' futures are created up front; only their running waits for a
    /// slot), so with very many tasks each future should be small until it is first polled: box the work
    /// inside it.
    pub fn spawn<Task>(config: SettleConfig, tasks: impl IntoIterator<Item = Task>) -> Self
    where
        Task: Future<Output = Result<T, E>> + Send + 'static,
    {
        let group_config = match config.cancelled_by {
            Some(token) => GroupConfig::new().cancelled_by(token),
            None => GroupConfig::new(),
        };
        let group = Shared::<Infallible>::new(&group_config, "settle");
        let (sender, outcomes) = mpsc::unbounded_channel();
        // No task is cancelled alone, so the tasks share one context: the group's token, and their inner groups
        // (which a settle task does not wait for when cancelled: it reports a cancellation, and the dropped
        // inner groups hand their tasks to this group's join).
        let code = CodeContext::of_group(group.token.clone());
        let shared = Arc::clone(&group);
        let (per_task_timeout, deadline) = (config.per_task_timeout, config.deadline);
        let tasks: Vec<Task> = tasks.into_iter().collect();
        let total = tasks.len();
        let mut tasks = tasks.into_iter().enumerate();
        let feeder = move |feed: Feed| {
            let (index, task) = tasks.next()?;
            if feed == Feed::PassOver {
                return Some(index);
            }
            let bounded = with_timeout(per_task_timeout, deadline, task);
            let reporter = Reporter {
                index,
                sender: Some(sender.clone()),
            };
            let task_group = Arc::clone(&shared);
            // Refused only if the group was cancelled meanwhile: the dropped task then reports a cancellation.
            let span = tracing::info_span!(parent: &shared.span, "group.child", index);
            let _started = shared.start(&code, span, async move {
                // Checked before every poll and before the first: a cancelled task never runs again.
                if task_group.check_cancelled(&task_group.token) {
                    return;
                }
                let outcome = tokio::select! {
                    biased;
                    () = task_group.cancelled(&task_group.token) => return,
                    outcome = AssertUnwindSafe(bounded).catch_unwind() => match outcome {
                        Ok(Ok(Ok(value))) => Outcome::Ok(value),
                        Ok(Ok(Err(error))) => Outcome::Failed(error),
                        Ok(Err(elapsed)) => Outcome::TimedOut(elapsed),
                        Err(payload) => Outcome::Panicked(super::panic_message(payload.as_ref())),
                    },
                };
                reporter.send(outcome);
            });
            Some(index)
        };
        let mut settling = Self {
            _abort_on_drop: AbortOnDrop(Arc::clone(&group)),
            group,
            outcomes,
            feeder: Some(Box::new(feeder)),
            limit: config.max_concurrency.map_or(usize::MAX, NonZeroUsize::get),
            deadline,
            running: 0,
            total,
        };
        while settling.running < settling.limit && settling.start_next() {}
        settling
    }

    /// Starts the next task of the input; `false` when there is none left.
    fn start_next(&mut self) -> bool {
        let started = self.feeder.as_mut().and_then(|feeder| feeder(Feed::Start));
        if started.is_none() {
            self.feeder = None;
            return false;
        }
        self.running += 1;
        true
    }

    /// The next task to end, with its position in the input; `None` once every task has been reported and has
    /// ended. A task cancelled (by the outside token, or [`cancel_remaining`](Self::cancel_remaining)) is
    /// reported as [`Outcome::Cancelled`].
    pub async fn next(&mut self) -> Option<(usize, Outcome<T, E>)> {
        while self.running < self.limit && self.feeder.is_some() {
            // A task whose turn comes too late never starts.
            let passed_over = if self.group.is_cancelled() {
                Some(Outcome::Cancelled)
            } else if self.deadline.is_expired() {
                Some(Outcome::TimedOut(Elapsed::DeadlineExceeded))
            } else {
                None
            };
            let Some(outcome) = passed_over else {
                self.start_next();
                continue;
            };
            match self
                .feeder
                .as_mut()
                .and_then(|feeder| feeder(Feed::PassOver))
            {
                Some(index) => return Some((index, outcome)),
                None => self.feeder = None,
            }
        }
        if self.running > 0 {
            // Every started task reports exactly once (see `Reporter`), so this waits for a running one.
            if let Some((index, outcome)) = self.outcomes.recv().await {
                self.running -= 1;
                return Some((index, outcome));
            }
            self.running = 0;
        }
        self.group.join_all().await;
        None
    }

    /// Cancels the tasks that have not ended; they are reported as [`Outcome::Cancelled`].
    pub fn cancel_remaining(&self) {
        self.group.stop();
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
    /// How many tasks were given.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no task was given.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl<T, E> std::fmt::Debug for Settling<T, E> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Settling")
            .field("tasks", &self.total)
            .field("running", &self.running)
            .field("limit", &self.limit)
            .finish()
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

    /// Records a task's end (or drop) in a shared list: how a test sees that a cancelled task was joined.
    struct Logged(
        std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
        &'static str,
    );

    impl Drop for Logged {
        fn drop(&mut self) {
            self.0.lock().expect("log").push(self.1);
        }
    }

    fn finished(
        log: &std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
        name: &'static str,
    ) -> Logged {
        Logged(std::sync::Arc::clone(log), name)
    }

    /// The first success wins; the others are cancelled and have ended by the time it is returned.
    #[tokio::test(start_paused = true)]
    async fn first_success_returns_the_first_value_and_joins_the_rest() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Instant::now();
        let task = |name: &'static str, millis: u64, up: bool| {
            let guard = finished(&log, name);
            async move {
                let _guard = guard;
                sleep(Duration::from_millis(millis)).await;
                if up {
                    Ok(name)
                } else {
                    Err(format!("{name} is down"))
                }
            }
        };
        let tasks = vec![
            task("failing fast", 5, false),
            task("winner", 20, true),
            task("slow", 10_000, true),
        ];
        let first = first_success(SettleConfig::new(), tasks).await;
        assert_eq!(first, Ok((1, "winner")));
        assert_eq!(started.elapsed(), Duration::from_millis(20));
        let mut ended = log.lock().expect("log").clone();
        ended.sort_unstable();
        assert_eq!(
            ended,
            ["failing fast", "slow", "winner"],
            "every task ended"
        );
    }

    /// With no success, every outcome comes back; at the deadline, the unfinished ones as timed out.
    #[tokio::test(start_paused = true)]
    async fn first_success_without_a_success_returns_every_outcome() {
        let config = SettleConfig::new().deadline(Deadline::after(Duration::from_millis(50)));
        let tasks: Vec<futures::future::BoxFuture<'static, Result<u32, String>>> = vec![
            Box::pin(async { Err("down".to_owned()) }),
            Box::pin(sleep_then(1_000, 2)),
        ];
        let outcomes = first_success(config, tasks).await.unwrap_err();
        assert_eq!(
            outcomes,
            [
                Outcome::Failed("down".to_owned()),
                Outcome::TimedOut(Elapsed::DeadlineExceeded)
            ]
        );
    }

    /// A quorum of two out of three: the third is cancelled once two answered.
    #[tokio::test(start_paused = true)]
    async fn quorum_returns_once_enough_succeeded() {
        let tasks = [sleep_then(10, 1), sleep_then(10_000, 2), sleep_then(30, 3)];
        let started = Instant::now();
        let reached = quorum(SettleConfig::new(), tasks, 2).await;
        assert_eq!(reached, Ok(vec![(0, 1), (2, 3)]));
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        let unreachable = quorum(
            SettleConfig::new().deadline(Deadline::after(Duration::from_millis(20))),
            [sleep_then(10, 1), sleep_then(10_000, 2)],
            2,
        )
        .await;
        assert_eq!(
            unreachable,
            Err(vec![
                Outcome::Ok(1),
                Outcome::TimedOut(Elapsed::DeadlineExceeded)
            ])
        );
    }

    /// A task cancelled before it started never runs.
    #[tokio::test]
    async fn a_task_cancelled_before_it_started_never_runs() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&ran);
        let token = CancellationToken::new();
        token.cancel();
        let outcomes = settle(
            SettleConfig::new().cancelled_by(token),
            [async move {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, String>(())
            }],
        )
        .await;
        assert_eq!(outcomes, [Outcome::Cancelled]);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// With `max_concurrency(2)`, never more than two tasks run; they start in input order as slots free up,
    /// and each task's own timeout starts when the task starts.
    #[tokio::test(start_paused = true)]
    async fn max_concurrency_bounds_the_running_tasks() {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..7_u32)
            .map(|index| {
                let (running, most, order) = (
                    std::sync::Arc::clone(&running),
                    std::sync::Arc::clone(&most),
                    std::sync::Arc::clone(&order),
                );
                async move {
                    order.lock().expect("order").push(index);
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    sleep(Duration::from_millis(100)).await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, String>(index)
                }
            })
            .collect();
        let started = Instant::now();
        let config = SettleConfig::new()
            .max_concurrency(NonZeroUsize::new(2).expect("two"))
            .per_task_timeout(Duration::from_millis(150));
        let outcomes = settle(config, tasks).await;
        assert_eq!(outcomes, (0..7).map(Outcome::Ok).collect::<Vec<_>>());
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(*order.lock().expect("order"), (0..7).collect::<Vec<_>>());
        assert_eq!(started.elapsed(), Duration::from_millis(400));
    }

    /// A task whose turn comes after the deadline never starts: it ends as deadline-exceeded; one whose turn
    /// comes after a cancellation ends as cancelled.
    #[tokio::test(start_paused = true)]
    async fn max_concurrency_passes_over_tasks_whose_turn_comes_too_late() {
        let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = |index: u32| {
            let ran = std::sync::Arc::clone(&ran);
            async move {
                ran.lock().expect("ran").push(index);
                sleep(Duration::from_millis(100)).await;
                Ok::<_, String>(index)
            }
        };
        let one = NonZeroUsize::new(1).expect("one");
        let config = SettleConfig::new()
            .max_concurrency(one)
            .deadline(Deadline::after(Duration::from_millis(150)));
        let outcomes = settle(config, (0..4).map(task)).await;
        assert_eq!(
            outcomes,
            [
                Outcome::Ok(0),
                Outcome::TimedOut(Elapsed::DeadlineExceeded),
                Outcome::TimedOut(Elapsed::DeadlineExceeded),
                Outcome::TimedOut(Elapsed::DeadlineExceeded),
            ]
        );
        assert_eq!(
            *ran.lock().expect("ran"),
            [0, 1],
            "tasks 2 and 3 never started"
        );

        ran.lock().expect("ran").clear();
        let token = CancellationToken::new();
        let canceller = token.clone();
        tokio::spawn(async move {
            sleep(Duration::from_millis(150)).await;
            canceller.cancel();
        });
        let config = SettleConfig::new().max_concurrency(one).cancelled_by(token);
        let outcomes = settle(config, (0..4).map(task)).await;
        assert_eq!(
            outcomes,
            [
                Outcome::Ok(0),
                Outcome::Cancelled,
                Outcome::Cancelled,
                Outcome::Cancelled
            ]
        );
        assert_eq!(*ran.lock().expect("ran"), [0, 1]);
    }

    /// Once a quorum is reached under a concurrency limit, the tasks not yet started are cancelled unstarted.
    #[tokio::test(start_paused = true)]
    async fn quorum_under_a_limit_never_starts_the_rest() {
        let config = SettleConfig::new().max_concurrency(NonZeroUsize::new(2).expect("two"));
        let tasks = [
            sleep_then(10, 1),
            sleep_then(20, 2),
            sleep_then(30, 3),
            sleep_then(10, 4),
        ];
        let reached = quorum(config, tasks, 2).await;
        assert_eq!(reached, Ok(vec![(0, 1), (1, 2)]));
    }
}
