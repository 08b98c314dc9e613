//! Fail-fast task groups: [`scope`], [`OwnedGroup`] and their shared state (documented in `group`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::core::{
    AbortOnDrop, CodeContext, InnerGroup, Shared, drain, run_blocking_child, run_child, sleep_until,
};
use super::deadline::Deadline;

/// Runs `body` with a fresh [`Group`] and returns once the body and every child it spawned have ended.
///
/// Returns the body's value when the body and all children succeeded. Otherwise returns a [`GroupError`] that
/// says what shut the group down and lists every failed and every cancelled child. If a child or the body
/// panicked, the panic resumes here instead, after all children are joined: with its own payload, or, when
/// children or the body also failed with errors, with a [`GroupPanic`] that carries the payload and the errors.
///
/// When `scope` returns, every child has ended, and so has every task of every group nested inside a child or
/// the body, whatever cancelled it: a sibling's failure, the body's error, the deadline, the token of
/// [`GroupConfig::cancelled_by`].
///
/// # Dropping the scope future
///
/// A scope future dropped before it returns (an outer `tokio::time::timeout`, a `select!` that took another
/// branch) cannot wait for its children: it cancels and aborts them at once. If the scope runs inside another
/// group (in a child or a body), that group takes them over and its own scope does not return before they have
/// ended. A scope dropped at the top of a tree (no group around it) leaves its aborted children to end on their
/// own, at their next `.await`. To stop a scope and wait for everything, cancel it instead: pass a token with
/// [`GroupConfig::cancelled_by`] or a deadline with [`GroupConfig::deadline`].
pub async fn scope<T, E, Body, BodyFuture>(
    config: GroupConfig,
    body: Body,
) -> Result<T, GroupError<E>>
where
    Body: FnOnce(Group<E>) -> BodyFuture,
    BodyFuture: Future<Output = Result<T, E>>,
    E: Send + 'static,
{
    let shared = Shared::new(&config, "fail_fast");
    // Counts this scope in the child (or body) it runs in, so that a cancelled child waits for it to report.
    let _inner = InnerGroup::enter();
    // Aborts every child if this future is dropped before the children are joined (see `AbortOnDrop`).
    let _abort_on_drop = AbortOnDrop(Arc::clone(&shared));
    let group = Group {
        shared: Arc::clone(&shared),
    };

    // Phase 1: the body runs until it ends or the group shuts down, whichever comes first. The body is dropped
    // at the end of this block, before the join, so that whatever it still held is joined too.
    let body_outcome = {
        let code = CodeContext::of_group(shared.token.clone());
        let body = shared.run_as_body(&code, AssertUnwindSafe(body(group)).catch_unwind());
        tokio::pin!(body);
        let ended = tokio::select! {
            biased;
            () = shared.cancelled(&shared.token) => None,
            () = sleep_until(config.deadline) => {
                shared.shut_down(ShutdownCause::DeadlineExceeded);
                None
            }
            outcome = &mut body => Some(outcome),
        };
        // A cancelled body with groups of its own still running lets them wind down and report their error.
        match ended {
            Some(outcome) => Some(outcome),
            None => match drain(body.as_mut(), &code).await {
                Some(Ok(Err(error))) if code.failed() => Some(Ok(Err(error))),
                Some(Err(payload)) => Some(Err(payload)),
                _ => None,
            },
        }
    };
    let value = match body_outcome {
        Some(Ok(Ok(value))) => Some(value),
        Some(Ok(Err(error))) => {
            shared.record_body_error(error);
            None
        }
        Some(Err(payload)) => {
            shared.record_panic(payload);
            None
        }
        None => None,
    };

    // Phase 2: join every child, still bounded by the deadline and the outside token. Children may spawn more
    // children meanwhile.
    let join = shared.join_all();
    tokio::pin!(join);
    tokio::select! {
        biased;
        () = &mut join => {}
        () = sleep_until(config.deadline) => {
            shared.shut_down(ShutdownCause::DeadlineExceeded);
            join.await;
        }
        () = shared.cancelled(&shared.token) => join.await,
    }

    shared.finish(value, false)
}

/// A fail-fast group owned by a value instead of by a [`scope`] call: for a service that keeps tasks running
/// in the background for as long as it lives (a server and its connections, say).
///
/// The rules are a scope's, with [`OwnedGroup::shutdown`] as the end of the scope: it cancels every child,
/// waits for all of them, and reports what failed (a panic resumes there). Until then, the first child error
/// or panic cancels the others, as in a scope. Dropping the group without shutting it down aborts every child,
/// as a dropped scope future does.
///
/// ```
/// use tributary::group::OwnedGroup;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let background = OwnedGroup::<std::io::Error>::new();
/// let group = background.group();
/// let ticks = group.spawn("ticker", async {
///     std::future::pending::<()>().await; // runs until cancelled
///     Ok::<(), std::io::Error>(())
/// }).await.expect("the group is open");
/// drop(ticks); // the child still belongs to the group
/// background.shutdown().await.expect("nothing failed"); // cancels the ticker and waits for it
/// # }
/// ```
pub struct OwnedGroup<E: Send + 'static> {
    shared: Arc<Shared<E>>,
    _abort_on_drop: AbortOnDrop<E>,
}

/// How a group is bounded. Built with [`GroupConfig::new`] and the builder methods.
#[derive(Debug, Clone, Default)]
pub struct GroupConfig {
    pub(crate) max_concurrency: Option<NonZeroUsize>,
    pub(crate) deadline: Deadline,
    pub(crate) cancelled_by: Option<CancellationToken>,
}

/// A cheap, cloneable handle to spawn children into the group of the enclosing [`scope`].
///
/// Children may hold a clone to spawn more children; spawning is refused once the group shuts down or ends.
pub struct Group<E> {
    shared: Arc<Shared<E>>,
}

/// The body's handle on one child: await it to get the child's value.
///
/// Dropping the handle does not detach the child: it still belongs to the group and is joined by the scope.
#[derive(Debug)]
pub struct ChildHandle<T> {
    name: Arc<str>,
    value: oneshot::Receiver<T>,
    code: Arc<CodeContext>,
}

/// Awaiting a [`ChildHandle`] found no value: the child failed, panicked or was cancelled.
///
/// The reason is reported by the scope ([`GroupError`]); the body usually just propagates this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("get a value from child `{name}`: it failed, panicked or was cancelled")]
pub struct ChildLost {
    /// The child's name.
    pub name: Arc<str>,
}

/// Why a child could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The group is shutting down (a failure, its deadline, a cancellation) or has already ended.
    #[error("spawn child `{name}`: the group is shutting down or has ended")]
    ShuttingDown {
        /// The child's name.
        name: Arc<str>,
    },
    /// [`Group::try_spawn`] found every slot of the concurrency limit taken.
    #[error("spawn child `{name}`: all {limit} slots of the group are taken")]
    AtCapacity {
        /// The child's name.
        name: Arc<str>,
        /// The group's concurrency limit.
        limit: usize,
    },
}

/// A fail-fast group shut down: what caused it, and what happened to every child that did not succeed.
///
/// The counterpart of Python's `ExceptionGroup` raised by `TaskGroup`.
#[derive(Debug)]
#[non_exhaustive]
pub struct GroupError<E> {
    /// The first event that shut the group down.
    pub cause: ShutdownCause,
    /// When the group shut down and cancelled the remaining children.
    pub shut_down_at: Instant,
    /// The body's own error, if it returned one.
    pub body_error: Option<E>,
    /// Every child that returned an error, in the order they failed.
    pub failed: Vec<ChildFailure<E>>,
    /// Every child the group cancelled, in the order they stopped. These are consequences, not errors.
    pub cancelled: Vec<CancelledChild>,
}

/// The panic payload a group resumes when a child (or the body) panicked *and* others failed with errors, so that
/// neither is lost: the original payload and the [`GroupError`] with the errors.
///
/// A panic with no error beside it resumes with its own payload, untouched. Catch it with
/// [`std::panic::catch_unwind`] and downcast the payload to `GroupPanic<E>` to read both.
#[derive(Debug)]
#[non_exhaustive]
pub struct GroupPanic<E> {
    /// The first panic's own payload.
    pub panic: Box<dyn Any + Send>,
    /// What else went wrong: the errors of the children and the body.
    pub error: GroupError<E>,
}

/// What shut a group down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownCause {
    /// This child was the first to return an error.
    ChildFailed {
        /// The child's name.
        name: Arc<str>,
    },
    /// The body returned an error.
    BodyFailed,
    /// The group's deadline passed before the body and the children ended.
    DeadlineExceeded,
    /// The token given to [`GroupConfig::cancelled_by`] was cancelled.
    Cancelled,
}

/// A child that returned an error.
#[derive(Debug)]
#[non_exhaustive]
pub struct ChildFailure<E> {
    /// The child's name.
    pub name: Arc<str>,
    /// The error it returned.
    pub error: E,
    /// When it returned the error.
    pub failed_at: Instant,
}

/// A child that the group cancelled because it shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CancelledChild {
    /// The child's name.
    pub name: Arc<str>,
    /// When the child stopped.
    pub cancelled_at: Instant,
}

impl GroupConfig {
    /// No concurrency limit, no deadline, no outside cancellation.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `limit` children run at once: [`Group::spawn`] waits for a free slot.
    pub fn max_concurrency(mut self, limit: NonZeroUsize) -> Self {
        self.max_concurrency = Some(limit);
        self
    }

    /// The group shuts down with [`ShutdownCause::DeadlineExceeded`] when `deadline` passes.
    pub fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
    }

    /// The group shuts down with [`ShutdownCause::Cancelled`] when `token` is cancelled.
    ///
    /// Use it to tie a group to a shutdown signal, or an inner group to an outer one's lifetime explicitly.
    pub fn cancelled_by(mut self, token: CancellationToken) -> Self {
        self.cancelled_by = Some(token);
        self
    }
}

impl<E> Group<E>
where
    E: Send + 'static,
{
    /// Spawns a named child, first waiting for a free slot if the group has a concurrency limit.
    ///
    /// Refused with [`SpawnError::ShuttingDown`] once the group is shutting down or has ended, including while
    /// waiting for a slot.
    pub async fn spawn<T, Child>(
        &self,
        name: impl Into<Arc<str>>,
        child: Child,
    ) -> Result<ChildHandle<T>, SpawnError>
    where
        Child: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        let name = name.into();
        let permit = self.wait_for_slot(&name).await?;
        self.start(name, |shared, name, sender, code| {
            run_child(shared, name, permit, sender, code, child)
        })
    }

    /// Spawns a named child now, or refuses: with [`SpawnError::ShuttingDown`] once the group is shutting down
    /// (whether or not a slot is free), with [`SpawnError::AtCapacity`] if every slot is taken.
    pub fn try_spawn<T, Child>(
        &self,
        name: impl Into<Arc<str>>,
        child: Child,
    ) -> Result<ChildHandle<T>, SpawnError>
    where
        Child: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        let name = name.into();
        if self.is_shutting_down() {
            return Err(SpawnError::ShuttingDown { name });
        }
        let permit = match &self.shared.slots {
            None => None,
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => {
                    return Err(SpawnError::AtCapacity {
                        name,
                        limit: self.shared.limit,
                    });
                }
                Err(TryAcquireError::Closed) => return Err(SpawnError::ShuttingDown { name }),
            },
        };
        self.start(name, |shared, name, sender, code| {
            run_child(shared, name, permit, sender, code, child)
        })
    }

    /// The group's deadline, for children to carry down: a child narrows it with its own timeout through
    /// [`with_timeout`](super::deadline::with_timeout) so its effective bound is `min(own timeout, group deadline)`.
    pub fn deadline(&self) -> Deadline {
        self.shared.deadline
    }

    /// Whether the group refuses new children (it is shutting down or has ended).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.lock().refuses_spawn() || self.shared.is_cancelled()
    }

    /// Children that have not ended yet (a child removes itself as it ends).
    pub fn running(&self) -> usize {
        self.shared.running()
    }

    /// Spawns a named child that runs `work` on tokio's blocking threads (file I/O, a database, anything that
    /// blocks a thread), first waiting for a free slot if the group has a concurrency limit.
    ///
    /// A thread cannot be interrupted, so `work` gets the child's cancellation token: it must check it between
    /// units of work and return soon once it is cancelled (the value or error it then returns is reported as
    /// usual). The group waits for the thread however the group ends, so a blocking child never outlives its
    /// scope either; only a *dropped* scope future cannot wait, and then the token is all that stops the thread.
    pub async fn spawn_blocking<T, Work>(
        &self,
        name: impl Into<Arc<str>>,
        work: Work,
    ) -> Result<ChildHandle<T>, SpawnError>
    where
        Work: FnOnce(CancellationToken) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
    {
        let name = name.into();
        let permit = self.wait_for_slot(&name).await?;
        self.start(name, |shared, name, sender, code| {
            run_blocking_child(shared, name, permit, sender, code, work)
        })
    }

    /// A slot of the concurrency limit (`None` when there is no limit), waiting for one; refused once the
    /// group shuts down.
    async fn wait_for_slot(
        &self,
        name: &Arc<str>,
    ) -> Result<Option<OwnedSemaphorePermit>, SpawnError> {
        let Some(slots) = &self.shared.slots else {
            return Ok(None);
        };
        let acquired = tokio::select! {
            biased;
            () = self.shared.cancelled(&self.shared.token) => None,
            permit = Arc::clone(slots).acquire_owned() => permit.ok(),
        };
        acquired.map(Some).ok_or_else(|| SpawnError::ShuttingDown {
            name: Arc::clone(name),
        })
    }

    /// Registers a child task built by `task` from the group, the child's name, its value's sender and its code
    /// context (its own token); refused if the group is shutting down.
    fn start<T, Task, Running>(
        &self,
        name: Arc<str>,
        task: Task,
    ) -> Result<ChildHandle<T>, SpawnError>
    where
        Task: FnOnce(Arc<Shared<E>>, Arc<str>, oneshot::Sender<T>, Arc<CodeContext>) -> Running,
        Running: Future<Output = ()> + Send + 'static,
        T: Send + 'static,
    {
        let (sender, value) = oneshot::channel();
        let code = CodeContext::child();
        let task = task(
            Arc::clone(&self.shared),
            Arc::clone(&name),
            sender,
            Arc::clone(&code),
        );
        let span = tracing::info_span!(parent: &self.shared.span, "group.child", name = %name);
        if !self.shared.start(&code, span, task) {
            return Err(SpawnError::ShuttingDown { name });
        }
        Ok(ChildHandle { name, value, code })
    }
}

impl<E> OwnedGroup<E>
where
    E: Send + 'static,
{
    /// An empty group with no concurrency limit and no deadline.
    pub fn new() -> Self {
        let shared = Shared::new(&GroupConfig::new(), "owned");
        Self {
            _abort_on_drop: AbortOnDrop(Arc::clone(&shared)),
            shared,
        }
    }

    /// Children that have not ended yet.
    pub fn running(&self) -> usize {
        self.shared.running()
    }

    /// A handle to spawn children into the group.
    pub fn group(&self) -> Group<E> {
        Group {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Cancels every child, waits until all of them (and the children they spawned) have ended, and reports
    /// what failed before. A shutdown asked for is not itself an error: `Ok` when nothing failed.
    pub async fn shutdown(self) -> Result<(), GroupError<E>> {
        self.shared.stop();
        self.shared.join_all().await;
        self.shared.finish(Some(()), true)
    }
}

impl<E> Default for OwnedGroup<E>
where
    E: Send + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Send + 'static> fmt::Debug for OwnedGroup<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OwnedGroup")
            .field("children", &self.shared.running())
            .finish()
    }
}

impl<T> ChildHandle<T> {
    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cancels this child only. The group carries on; the child is not reported as failed or cancelled.
    pub fn cancel(&self) {
        self.code.cancel_alone();
    }
}

impl<T> Future for ChildHandle<T> {
    type Output = Result<T, ChildLost>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.value)
            .poll(context)
            .map_err(|_closed| ChildLost {
                name: Arc::clone(&self.name),
            })
    }
}

impl<E> GroupError<E> {
    /// Whether the group's own deadline shut it down.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.cause == ShutdownCause::DeadlineExceeded
    }

    /// The error that shut the group down: the first child's to fail, else the body's; `None` when the group
    /// was shut down by its deadline or a cancellation alone. For callers that report one error and treat the
    /// rest as consequences.
    pub fn into_first_error(self) -> Option<E> {
        self.failed
            .into_iter()
            .next()
            .map(|failure| failure.error)
            .or(self.body_error)
    }

    /// The names of the children that failed, in the order they failed.
    pub fn failed_names(&self) -> impl Iterator<Item = &str> {
        self.failed.iter().map(|failure| &*failure.name)
    }

    /// The names of the children the group cancelled, in the order they stopped.
    pub fn cancelled_names(&self) -> impl Iterator<Item = &str> {
        self.cancelled.iter().map(|child| &*child.name)
    }
}

impl<E> Clone for Group<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        formatter
            .debug_struct("Group")
            .field("children", &self.shared.running())
            .field(
                "limit",
                &self.shared.slots.as_ref().map(|_| self.shared.limit),
            )
            .field("shutdown", &state.shutdown)
            .finish()
    }
}

impl fmt::Display for ShutdownCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownCause::ChildFailed { name } => write!(formatter, "child `{name}` failed"),
            ShutdownCause::BodyFailed => formatter.write_str("the group body failed"),
            ShutdownCause::DeadlineExceeded => formatter.write_str("the group deadline passed"),
            ShutdownCause::Cancelled => formatter.write_str("the group was cancelled"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "run task group: {} ({} failed, {} cancelled)",
            self.cause,
            self.failed.len(),
            self.cancelled.len()
        )?;
        if let Some(error) = &self.body_error {
            write!(formatter, "; body: {error}")?;
        }
        for failure in &self.failed {
            write!(formatter, "; `{}`: {}", failure.name, failure.error)?;
        }
        Ok(())
    }
}

impl<E> std::error::Error for GroupError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let first = self
            .body_error
            .as_ref()
            .or_else(|| self.failed.first().map(|failure| &failure.error))?;
        Some(first)
    }
}
