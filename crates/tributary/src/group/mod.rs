//! Structured concurrency: fail-fast groups, supervisors, settle (collect-all) and deadlines.
//!
//! Every task this module spawns belongs to a group, a supervisor or a settle call that joins it before
//! returning; dropping any of them aborts its tasks. Nothing here detaches a task.
//!
//! - [`scope`] and [`OwnedGroup`]: asyncio `TaskGroup` semantics: the first child error or panic cancels the
//!   rest, every error is collected into one [`GroupError`], and a panic resumes on the caller after the
//!   children are joined. [`scope`] for a group that lives as long as a call; [`OwnedGroup`] for one a
//!   long-lived value owns.
//! - [`Supervisor`]: Kotlin's `supervisorScope`, Erlang's `one_for_one` without the restart: a long-lived group
//!   whose children fail alone. A child's error or panic is reported (its handle, a log event, counters) and
//!   cancels nothing else; [`Supervisor::shutdown`] cancels and joins everything. For independent units of work
//!   that a service runs for as long as it lives: a server's requests.
//! - [`settle`]: `gather(return_exceptions=True)` semantics: run everything, never fail as a whole, one
//!   [`Outcome`] per task (also available as a stream of results in completion order, [`Settling`]).
//! - The other completion policies, like Java's `StructuredTaskScope` joiners: [`first_success`] (the first
//!   value wins, the rest are cancelled and joined: the building block of hedged requests), [`quorum`] (the
//!   first `n` values) and [`settle_until`] (any predicate over the outcomes so far).
//! - [`Deadline`] and [`with_timeout`]: an absolute overall deadline carried down to children, and per-call
//!   timeouts nested in it.
//! - [`blocking`]: one blocking call awaited where it is made, a group of its own around it (`asyncio.to_thread`
//!   for code outside a group): never detached, unlike a bare `spawn_blocking`.
//!
//! # Fail-fast groups
//!
//! [`scope`] runs a body that spawns named children through a [`Group`] handle. The rules:
//!
//! - **No descendant outlives the scope.** When `scope(..).await` returns, every child has finished, failed, or
//!   been cancelled and joined, and so has every task of every group nested inside a child or the body,
//!   whatever cancelled it (a sibling's failure, the body's error, the deadline, the caller's token). To stop a
//!   scope from outside and still wait for everything, pass a token ([`GroupConfig::cancelled_by`]) or a
//!   deadline ([`GroupConfig::deadline`]).
//! - **A dropped scope never lets a child run again.** If the scope future itself is dropped (an outer
//!   `tokio::time::timeout`, a `select!` that took another branch), it cannot wait: it aborts every child. Inside
//!   another group, that group takes the aborted tasks over and joins them; at the top of a tree they end on
//!   their own, at their next `.await`, without running another line. See [`scope`].
//! - **The first failure cancels everything.** The first child error or panic (or a body error, or the group's
//!   deadline) cancels all siblings and the body, and from then on [`Group::spawn`] is refused.
//! - **Every error is kept, and nothing of the failure's instant is lost.** Children that fail at the same
//!   instant are all reported in [`GroupError::failed`], a value returned at that instant reaches its handle,
//!   and a panic raised then resumes (see below). Children the group cancelled are listed apart in
//!   [`GroupError::cancelled`], with the instant, and are not errors.
//! - **A cancelled child runs no further than the step it was due; an unstarted one never starts.** A child
//!   checks its group's token before every poll, its first one included. The one exception is asyncio's: when a
//!   failure (a child's or the body's error or panic) shuts the group, or a group above it, down, a started
//!   child that had already been woken by what it awaits (a timer that ended at that instant, a message sent
//!   before the failure) runs that one poll, and what it returns counts. asyncio cancels the siblings of a
//!   failed task from a callback that runs after the steps already scheduled in that turn of its event loop.
//!   Under tokio's paused time "already woken" is exactly "due at the same instant" (the timer driver wakes
//!   every timer due at an instant before it polls their tasks); on a running multi-thread runtime it is what
//!   was woken before the failure happened. A child woken by the failure itself (its cancellation, the handle of
//!   the sibling that failed) or later is not due and is cancelled without another poll, so a child awaiting the
//!   handle of a sibling that failed is cancelled with the rest, not reported as a second failure. A deadline,
//!   the token of [`GroupConfig::cancelled_by`], [`OwnedGroup::shutdown`], [`ChildHandle::cancel`] and a
//!   [`Supervisor`]'s shutdown are not failures: they stop every child they reach before its next poll, and a
//!   failure above that follows at the same instant does not give the step back. The body is not a child: it
//!   is cancelled without its step.
//! - **Panics are not swallowed, and errors are not lost beside them.** A child (or body) panic is caught, the
//!   siblings are cancelled and joined, then the panic resumes on the caller with
//!   [`std::panic::resume_unwind`]: its own payload if nothing else failed, a [`GroupPanic`] carrying the
//!   payload and the [`GroupError`] if children also failed with errors.
//! - **Concurrency can be bounded.** With [`GroupConfig::max_concurrency`], [`Group::spawn`] waits for a free
//!   slot (a semaphore permit moved into the child) and [`Group::try_spawn`] refuses at once.
//!
//! ```
//! use tributary::group::{GroupConfig, scope};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let total = scope(GroupConfig::new(), |group| async move {
//!     let weather = group.spawn("weather", async { Ok(21) }).await?;
//!     let news = group.spawn("news", async { Ok(2) }).await?;
//!     Ok::<_, BoxError>(weather.await? + news.await?)
//! })
//! .await;
//! assert_eq!(total.unwrap(), 23);
//! # }
//! ```
//!
//! A child narrows the group's deadline ([`Group::deadline`]) with its own timeout through
//! [`with_timeout`]; the group itself shuts down when its deadline passes.
//!
//! Cancellation is cooperative at `.await` points: a child stuck in blocking code cannot be interrupted, which is
//! one reason CPU work belongs in the pool, not in a child future.
//!
//! ## Nesting
//!
//! A group created inside a child (or a body) belongs to it: its token is a child of that code's token, so the
//! outer group's shutdown reaches every group below at once. A cancelled child whose own groups are still
//! winding down keeps being polled until they have joined their children and returned, so their errors reach
//! the outer [`GroupError`] (as asyncio's nested task groups report theirs). The child's own code resumes only
//! to take an inner group's result, and is stopped at its next `.await` once no inner group is running; its
//! error then counts only if an inner group failed (it carries that failure), else it is a cancellation.
//!
//! # Supervisors
//!
//! A [`Supervisor`] is owned by one value (a server) and spawned into from anywhere through a cloneable
//! [`SupervisorHandle`] (an HTTP handler). Each [`SupervisedChild`] handle yields the child's value, or a
//! [`ChildError`] saying whether it failed, panicked or was cancelled. The rules:
//!
//! - **A failure ends one child.** A child's error or panic is reported (its handle yields
//!   [`ChildError::Failed`] or [`ChildError::Panicked`], a `warn` or `error` event names it, the counters count
//!   it), and nothing else is cancelled. A panic is caught and never resumed.
//! - **One child can be cancelled alone** through its handle ([`SupervisedChild::cancel`]); the groups created
//!   in it are cancelled with it. Dropping a handle does not cancel its child: the child still belongs to the
//!   supervisor and is joined by it.
//! - **Shutting down joins everything.** [`Supervisor::shutdown`] (or the token of
//!   [`SupervisorConfig::cancelled_by`]) cancels every child at its next `.await`, and waits until they have all
//!   ended, with every group nested inside them. [`Supervisor::join`] waits the same way without cancelling,
//!   for children that end on their own (a server's runs, each bounded by its deadline). From the moment either
//!   starts, spawning is refused with [`SpawnError::ShuttingDown`]. A shutdown is not a failure: it stops a child
//!   due at its instant without that step, and every child below it too, unless a failure had already shut
//!   that child's group down at that instant. A supervised child never runs such a step, even when the failure
//!   of a group above cancels the supervisor; a fail-fast group inside a child keeps its own rule (see # Fail-fast
//!   groups).
//! - **Memory stays flat.** A child removes itself as it ends: a supervisor holds only the children still
//!   running, however many it ran (measured in `docs/BENCHMARKS.md`).
//!
//! Pick it over an [`OwnedGroup`] when the children are independent (a failure of one says nothing about the
//! others), and over tokio-util's `TaskTracker` because a tracker is not structured: it cannot cancel its
//! tasks, a group dropped inside one of them (a timeout around a scope) leaves its aborted tasks unjoined, a
//! panic is an `Err` in a handle nobody may read, and a dropped tracker detaches its tasks.
//!
//! ```
//! use std::convert::Infallible;
//! use tributary::group::{ChildError, Supervisor, SupervisorConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let supervisor = Supervisor::new(SupervisorConfig::new());
//! let runs = supervisor.handle(); // cheap to clone: what a server's handlers keep
//! let broken = runs.spawn("broken", async { Err::<u32, _>("the source is down") }).expect("open");
//! let fine = runs.spawn("fine", async { Ok::<_, Infallible>(21 * 2) }).expect("open");
//! assert!(matches!(broken.await, Err(ChildError::Failed { .. })));
//! assert_eq!(fine.await.expect("a sibling's failure does not touch it"), 42);
//! let stats = supervisor.shutdown().await;
//! assert_eq!((stats.succeeded, stats.failed), (1, 1));
//! # }
//! ```
//!
//! # Settle
//!
//! Each task runs as its own tokio task (so a panic is caught and reported, and tasks interleave), bounded by
//! `min(per_task_timeout, overall deadline)` through [`with_timeout`]. A task that the bound cuts short is
//! reported as [`Outcome::TimedOut`], whose [`Elapsed`] says which bound fired, so with an overall deadline the
//! caller gets the results that made it in time and a "deadline exceeded" for the rest.
//!
//! [`settle`] returns one outcome per task in spawn order. [`Settling`] gives the same outcomes one by one as the
//! tasks finish, for a caller that acts on results as they arrive.
//!
//! ```
//! use std::time::Duration;
//! use tributary::group::{Deadline, Outcome, SettleConfig, settle};
//!
//! async fn ask(source: &'static str) -> Result<u32, String> {
//!     if source == "news" { Err(format!("{source} is down")) } else { Ok(21) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = SettleConfig::new().deadline(Deadline::after(Duration::from_secs(2)));
//! let outcomes = settle(config, ["weather", "news"].map(ask)).await;
//! assert!(matches!(outcomes[0], Outcome::Ok(21)));
//! assert!(matches!(outcomes[1], Outcome::Failed(_)));
//! # }
//! ```
//!
//! # Deadlines
//!
//! An overall deadline is an absolute instant ([`Deadline`]), created once at the top of a request and passed
//! down unchanged. A child call narrows it with its own timeout: its effective deadline is
//! `min(now + per_call_timeout, parent_deadline)`. When the effective deadline fires, the error says which of the
//! two bounds won ([`ElapsedKind`]), so a caller can tell "this one call was slow" from "we are out of time".

mod blocking;
mod core;
mod deadline;
mod fail_fast;
mod settle;
mod supervisor;

pub use blocking::{BlockingPanicked, blocking};
pub use deadline::{Deadline, Elapsed, ElapsedKind, with_timeout};
pub use fail_fast::{
    CancelledChild, ChildFailure, ChildHandle, ChildLost, Group, GroupConfig, GroupError,
    GroupPanic, OwnedGroup, ShutdownCause, SpawnError, scope,
};
pub use settle::{Outcome, SettleConfig, Settling, first_success, quorum, settle, settle_until};
pub use supervisor::{
    ChildError, SupervisedChild, Supervisor, SupervisorConfig, SupervisorHandle, SupervisorStats,
};

pub use crate::panics::panic_message;

#[cfg(test)]
mod cpython_taskgroups;
#[cfg(test)]
mod cpython_timeouts;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod same_instant;
#[cfg(test)]
mod test_probes;
#[cfg(test)]
mod tests;
