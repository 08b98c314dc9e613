//! Structured concurrency: fail-fast groups, settle (collect-all) and deadlines.
//!
//! Every task this module spawns belongs to a group or a settle call that joins it before returning; dropping
//! either one aborts its tasks. Nothing here detaches a task.
//!
//! - [`scope`] and [`OwnedGroup`]: asyncio `TaskGroup` semantics: the first child error or panic cancels the
//!   rest, every error is collected into one [`GroupError`], and a panic resumes on the caller after the
//!   children are joined. [`scope`] for a group that lives as long as a call; [`OwnedGroup`] for one a
//!   long-lived value owns.
//! - [`settle`]: `gather(return_exceptions=True)` semantics: run everything, never fail as a whole, one
//!   [`Outcome`] per task (also available as a stream of results in completion order, [`Settling`]).
//! - The other completion policies, like Java's `StructuredTaskScope` joiners: [`first_success`] (the first
//!   value wins, the rest are cancelled and joined: the building block of hedged requests), [`quorum`] (the
//!   first `n` values) and [`settle_until`] (any predicate over the outcomes so far).
//! - [`Deadline`] and [`with_timeout`]: an absolute overall deadline carried down to children, and per-call
//!   timeouts nested in it.
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
//! - **Every error is kept.** Children that fail at the same time are all reported in [`GroupError::failed`];
//!   children the group cancelled are listed apart in [`GroupError::cancelled`], with the instant, and are not
//!   errors.
//! - **A cancelled child never runs again; an unstarted one never starts.** A child checks its group's token
//!   before every poll, its first one included. A child awaiting the handle of a sibling that failed is
//!   cancelled with the rest, not reported as a second failure.
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

mod core;
mod deadline;
mod fail_fast;
mod settle;

pub use deadline::{Deadline, Elapsed, ElapsedKind, with_timeout};
pub use fail_fast::{
    CancelledChild, ChildFailure, ChildHandle, ChildLost, Group, GroupConfig, GroupError,
    GroupPanic, OwnedGroup, ShutdownCause, SpawnError, scope,
};
pub use settle::{Outcome, SettleConfig, Settling, first_success, quorum, settle, settle_until};

pub use crate::panics::panic_message;

#[cfg(test)]
mod cpython_taskgroups;
#[cfg(test)]
mod cpython_timeouts;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
