//! [`Supervisor`]: a long-lived group that isolates failures, Kotlin's `supervisorScope` or Erlang's
//! `one_for_one` without the restart. Children are spawned at any time, from any task, each with a handle that
//! yields its value or why there is none; a child that fails or panics is reported and ends alone, and its
//! siblings and the supervisor carry on. [`Supervisor::shutdown`] cancels and joins everything. Its rules are
//! documented in `group` (# Supervisors), for users; this file says when to pick it and how it is built.
//!
//! # When to pick it
//!
//! - **Over [`OwnedGroup`](super::OwnedGroup)** (fail-fast) when the children are independent units of work
//!   whose failures must not touch each other: a server's requests, the runs of a batch queue, connections. An
//!   `OwnedGroup` is for children that make up one piece of work, where a failure means the whole is broken:
//!   its first error or panic cancels every sibling, and a panic resumes on its owner at shutdown. A supervisor
//!   never cancels a child for another's failure and never resumes a panic anywhere: each failure ends up in the
//!   failed child's [`SupervisedChild`] handle, in a `tracing` event naming the child, and in the
//!   [`SupervisorStats`] counters.
//! - **Over tokio-util's `TaskTracker`**, which it replaces in the HTTP server: a tracker also joins its tasks on
//!   shutdown, but it is not structured. Its tasks are not the code of a group, so a group dropped inside one
//!   (a timeout around a scope) has nobody to hand its aborted tasks to, and the tracker's `wait` returns while
//!   they may still be running; a tracker cannot cancel what it tracks (a token has to be threaded through by
//!   hand), a panic is only an `Err` in a `JoinHandle` that may have been dropped, and dropping the tracker
//!   detaches its tasks. A
//!   supervisor is the same engine as every other group: its children's code runs inside it (task-local
//!   `ENCLOSING`), so groups nested in a child are cancelled and joined with it, dropped ones hand their tasks
//!   up to it, a child's handle cancels that child alone, a panic is caught and reported, and a supervisor that
//!   is dropped aborts its children (inside another group, that group joins them).
//! - Over a bare `tokio::spawn`: nothing would join the task, cancel it or report its panic.
//!
//! # How it is built
//!
//! On the engine of every group (`core.rs`'s `Shared`, policy `supervisor`): the same spawn, token, join,
//! adoption of dropped groups' tasks and spans. Two things differ. Its children run in [`run_supervised`]
//! instead of `core::run_child`: a child's error or panic goes to its handle, the counters and the log, and is
//! never recorded in the group, so nothing cancels the siblings. And the group's panic sink is set, so a panic
//! caught outside a child's own code (a destructor as a child is aborted, an adopted task) is counted and logged
//! instead of cancelling the group and resuming on its owner. Its error type is `Infallible`: nothing is ever
//! recorded in `State::failed`, and each child has its own error type.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::FutureExt as _;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::core::{AbortOnDrop, CodeContext, Shared, drain};
use super::fail_fast::{GroupConfig, ShutdownCause, SpawnError};
use crate::panics::panic_message;

/// A long-lived group whose children fail alone: the rules, and when to pick it over an
/// [`OwnedGroup`](super::OwnedGroup) or tokio-util's `TaskTracker`, are in the [`group`](super) docs
/// (# Supervisors). Owned by one value; spawn through [`Supervisor::handle`] from anywhere.
///
/// Dropping it without [`shutdown`](Supervisor::shutdown) or [`join`](Supervisor::join) aborts every child, as
/// dropping an [`OwnedGroup`](super::OwnedGroup) does: inside another group that group joins them, at the top of
/// a tree they end at their next `.await` without running another line.
pub struct Supervisor {
    supervised: SupervisorHandle,
    _abort_on_drop: AbortOnDrop<Infallible>,
}

/// A cheap, cloneable handle to spawn children into a [`Supervisor`], from any task (an HTTP handler, another
/// child). It does not keep the children alive: once the supervisor has shut down, or was dropped, spawning is
/// refused.
#[derive(Clone)]
pub struct SupervisorHandle {
    shared: Arc<Shared<Infallible>>,
    counters: Arc<Counters>,
}

/// How a supervisor is stopped from outside. Built with [`SupervisorConfig::new`] and the builder methods.
#[derive(Debug, Clone, Default)]
pub struct SupervisorConfig {
    cancelled_by: Option<CancellationToken>,
}

/// One child of a supervisor: await it for the child's value, or [`ChildError`] saying why there is none.
///
/// Dropping the handle does not cancel or detach the child: it still belongs to the supervisor, which joins it.
#[derive(Debug)]
#[must_use = "dropping the handle leaves the child running; keep it to get its value or to cancel it"]
pub struct SupervisedChild<T, E> {
    name: Arc<str>,
    outcome: oneshot::Receiver<Result<T, ChildError<E>>>,
    code: Arc<CodeContext>,
}

/// Why a supervised child gave no value. The supervisor also logs failures and panics and counts all three.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChildError<E> {
    /// The child returned an error. Its siblings carried on.
    #[error("run child `{name}`: {error}")]
    Failed {
        /// The child's name.
        name: Arc<str>,
        /// The error it returned.
        error: E,
    },
    /// The child panicked; the panic was caught there. Its siblings carried on.
    #[error("run child `{name}`: it panicked: {message}")]
    Panicked {
        /// The child's name.
        name: Arc<str>,
        /// The panic's message ([`panic_message`]).
        message: String,
    },
    /// The child was cancelled: through its handle, by the supervisor's shutdown or token, because the code
    /// that created the supervisor was cancelled, or because the supervisor was dropped.
    #[error("run child `{name}`: it was cancelled")]
    Cancelled {
        /// The child's name.
        name: Arc<str>,
    },
}

/// What a supervisor's children did, counted since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SupervisorStats {
    /// Children spawned (refused spawns are not counted).
    pub spawned: u64,
    /// Children that returned a value.
    pub succeeded: u64,
    /// Children that returned an error.
    pub failed: u64,
    /// Children that panicked, plus panics caught outside a child's own code: a destructor that panicked as a
    /// child was aborted, a task of a dropped group that the supervisor adopted.
    pub panicked: u64,
    /// Children cancelled before they ended.
    pub cancelled: u64,
}

/// The live counters behind [`SupervisorStats`].
#[derive(Debug, Default)]
struct Counters {
    spawned: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
}

impl SupervisorConfig {
    /// Stopped only by [`Supervisor::shutdown`] (or by the cancellation of the code that creates it).
    pub fn new() -> Self {
        Self::default()
    }

    /// The supervisor shuts down when `token` is cancelled: every child is cancelled, spawning is refused, and
    /// [`Supervisor::shutdown`] or [`Supervisor::join`] then only waits for the children to end.
    ///
    /// As with [`GroupConfig::cancelled_by`](super::GroupConfig::cancelled_by), the token is noticed by the
    /// children themselves: each direct child stops at once, and the supervisor's own token, which the groups
    /// nested in its children hang under, is cancelled by the first child that is polled. A grandchild woken in
    /// that same instant may so run one more step. [`Supervisor::shutdown`] reaches every level at once.
    pub fn cancelled_by(mut self, token: CancellationToken) -> Self {
        self.cancelled_by = Some(token);
        self
    }
}

impl Supervisor {
    /// An empty supervisor: a child of the group whose code is running, if any (its children are then
    /// cancelled with that code), else the top of a tree.
    pub fn new(config: SupervisorConfig) -> Self {
        let mut group_config = GroupConfig::new();
        group_config.cancelled_by = config.cancelled_by;
        let shared = Shared::new(&group_config, "supervisor");
        let counters = Arc::new(Counters::default());
        shared.isolate_panics(Box::new({
            let counters = Arc::clone(&counters);
            move |payload| {
                count(&counters.panicked);
                tracing::error!(
                    panic = %panic_message(&*payload),
                    "a supervisor's task panicked outside a child's own code; nothing else is affected"
                );
            }
        }));
        Self {
            _abort_on_drop: AbortOnDrop(Arc::clone(&shared)),
            supervised: SupervisorHandle { shared, counters },
        }
    }

    /// A handle to spawn children, to keep where they are spawned from (a server's state).
    pub fn handle(&self) -> SupervisorHandle {
        self.supervised.clone()
    }

    /// Spawns a named child: [`SupervisorHandle::spawn`].
    pub fn spawn<T, E, Child>(
        &self,
        name: impl Into<Arc<str>>,
        child: Child,
    ) -> Result<SupervisedChild<T, E>, SpawnError>
    where
        Child: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.supervised.spawn(name, child)
    }

    /// Children that have not ended yet.
    pub fn running(&self) -> usize {
        self.supervised.running()
    }

    /// What the children did so far.
    pub fn stats(&self) -> SupervisorStats {
        self.supervised.stats()
    }

    /// Refuses new children, cancels every child, and waits until all of them, and every group nested inside
    /// them, have ended. Returns what the children did. Failures were reported as they happened; a shutdown is
    /// not itself one.
    pub async fn shutdown(self) -> SupervisorStats {
        self.supervised.shared.shut_down(ShutdownCause::Cancelled);
        self.finish().await
    }

    /// Refuses new children and waits until every running child has ended on its own, then returns what the
    /// children did: `TaskTracker`'s `close` and `wait`. A child that never ends keeps it waiting; cancel the
    /// token of [`SupervisorConfig::cancelled_by`] to turn the wait into a [`shutdown`](Self::shutdown).
    pub async fn join(self) -> SupervisorStats {
        self.supervised
            .shared
            .lock()
            .begin_shutdown(ShutdownCause::Cancelled);
        self.finish().await
    }

    async fn finish(self) -> SupervisorStats {
        self.supervised.shared.join_all().await;
        self.stats()
    }
}

impl SupervisorHandle {
    /// Spawns a named child now, or refuses with [`SpawnError::ShuttingDown`] once the supervisor is shutting
    /// down, has ended, or was dropped. The child's error must be printable: the supervisor logs it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn<T, E, Child>(
        &self,
        name: impl Into<Arc<str>>,
        child: Child,
    ) -> Result<SupervisedChild<T, E>, SpawnError>
    where
        Child: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let name = name.into();
        let (sender, outcome) = oneshot::channel();
        let code = CodeContext::child();
        let task = run_supervised(
            Arc::clone(&self.shared),
            Arc::clone(&self.counters),
            Arc::clone(&name),
            sender,
            Arc::clone(&code),
            child,
        );
        let span = tracing::info_span!(parent: &self.shared.span, "group.child", name = %name);
        if !self.shared.start(&code, span, task) {
            return Err(SpawnError::ShuttingDown { name });
        }
        count(&self.counters.spawned);
        Ok(SupervisedChild {
            name,
            outcome,
            code,
        })
    }

    /// Whether the supervisor refuses new children (it is shutting down, has ended, or was dropped).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.lock().refuses_spawn() || self.shared.is_cancelled()
    }

    /// Children that have not ended yet.
    pub fn running(&self) -> usize {
        self.shared.running()
    }

    /// What the children did so far.
    pub fn stats(&self) -> SupervisorStats {
        let counters = &*self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SupervisorStats {
            spawned: load(&counters.spawned),
            succeeded: load(&counters.succeeded),
            failed: load(&counters.failed),
            panicked: load(&counters.panicked),
            cancelled: load(&counters.cancelled),
        }
    }
}

impl<T, E> SupervisedChild<T, E> {
    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cancels this child alone, and the groups created in it; the supervisor and the other children carry on.
    /// The handle then yields [`ChildError::Cancelled`] (or the child's value, if it had already ended).
    pub fn cancel(&self) {
        self.code.cancel_alone();
    }
}

impl<T, E> Future for SupervisedChild<T, E> {
    type Output = Result<T, ChildError<E>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.outcome).poll(context).map(|received| {
            // No outcome sent: the child's task was aborted (the supervisor was dropped, or the runtime is
            // shutting down) before it could report.
            received.unwrap_or_else(|_aborted| {
                Err(ChildError::Cancelled {
                    name: Arc::clone(&self.name),
                })
            })
        })
    }
}

impl<E> ChildError<E> {
    /// The child's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Failed { name, .. } | Self::Panicked { name, .. } | Self::Cancelled { name } => {
                name
            }
        }
    }

    /// Whether the child was cancelled rather than failing.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Supervisor")
            .field("running", &self.running())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for SupervisorHandle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SupervisorHandle")
            .field("running", &self.running())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

/// Counts one more in `counter`. Relaxed: each counter is read on its own, for figures, never to synchronise.
fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One supervised child's task: runs the child until it ends, or until it or the supervisor is cancelled, then
/// reports how it ended to its handle, to the counters and to the log. Nothing here cancels anything else.
///
/// The tokens are checked first, before every poll of the child and before the first one, as in a fail-fast
/// group: once the supervisor shuts down (or the handle cancels the child) the child's code never runs again. A
/// cancelled child with groups of its own still winding down is polled until they have reported (`drain`).
/// Unlike `core::run_child`, a child already woken when it is cancelled gets no poll it was due: that step is
/// for the siblings of a failure, and a supervisor never fails. What cancels it (its shutdown, its token, a
/// group above, failed or not) stops every child at once. A fail-fast group inside a child keeps its rule.
async fn run_supervised<T, E, Child>(
    shared: Arc<Shared<Infallible>>,
    counters: Arc<Counters>,
    name: Arc<str>,
    sender: oneshot::Sender<Result<T, ChildError<E>>>,
    code: Arc<CodeContext>,
    child: Child,
) where
    Child: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    let mut outcome = Err(ChildError::Cancelled {
        name: Arc::clone(&name),
    });
    if !shared.check_cancelled(&shared.token) && !code.is_cancelled_alone() {
        // In an `Option`, so that it is dropped below, where a panic in its destructors is caught, and not as
        // this task ends, where it would be caught as a panic of the task.
        let mut child = pin!(Some(AssertUnwindSafe(child).catch_unwind()));
        let ended = {
            let mut running = child
                .as_mut()
                .as_pin_mut()
                .expect("the child is in place until dropped below");
            let ended = tokio::select! {
                biased;
                () = shared.cancelled(&shared.token) => None,
                () = code.cancelled_alone() => None,
                result = &mut running => Some(result),
            };
            // The error a drained child returns counts only when an inner group failed: it then carries that
            // failure; otherwise it is the inner groups' cancellation, passed on (as in a fail-fast group).
            match ended {
                Some(result) => Some((result, true)),
                None => drain(running, &code)
                    .await
                    .map(|result| (result, code.failed())),
            }
        };
        let dropped = catch_unwind(AssertUnwindSafe(|| child.set(None)));
        outcome = match ended {
            Some((Ok(Ok(value)), _)) => Ok(value),
            Some((Ok(Err(error)), true)) => Err(ChildError::Failed {
                name: Arc::clone(&name),
                error,
            }),
            Some((Err(payload), _)) => Err(ChildError::Panicked {
                name: Arc::clone(&name),
                message: panic_message(&*payload),
            }),
            Some((Ok(Err(_)), false)) | None => outcome,
        };
        if let Err(payload) = dropped {
            // The child's cleanup panicked as it was cancelled: that panic is the news. Beside a failure or a
            // panic already reported, it is a second panic, counted and logged on its own.
            let message = panic_message(&*payload);
            if matches!(outcome, Err(ChildError::Cancelled { .. })) {
                outcome = Err(ChildError::Panicked {
                    name: Arc::clone(&name),
                    message,
                });
            } else {
                count(&counters.panicked);
                tracing::error!(child = %name, panic = %message, "a supervised child's cleanup panicked");
            }
        }
    }
    match &outcome {
        Ok(_) => count(&counters.succeeded),
        Err(ChildError::Failed { error, .. }) => {
            count(&counters.failed);
            tracing::warn!(child = %name, %error, "supervised child failed; its siblings carry on");
        }
        Err(ChildError::Panicked { message, .. }) => {
            count(&counters.panicked);
            tracing::error!(child = %name, panic = %message, "supervised child panicked; its siblings carry on");
        }
        Err(ChildError::Cancelled { .. }) => {
            count(&counters.cancelled);
            tracing::debug!(child = %name, "supervised child cancelled");
        }
    }
    // The handle may have been dropped: the outcome is then simply not wanted (it was reported above).
    let _unwanted = sender.send(outcome);
}

#[cfg(test)]
mod tests;
