//! Structured concurrency: fail-fast groups, settle (collect-all) and deadlines.
//!
//! Every task this module spawns belongs to a group or a settle call that joins it before returning; dropping
//! either one aborts its tasks. Nothing here detaches a task.
//!
//! - [`fail_fast`]: asyncio `TaskGroup` semantics: the first child error or panic cancels the rest, every error is
//!   collected into one [`GroupError`], and a panic resumes on the caller after the children are joined.
//! - [`settle`]: `gather(return_exceptions=True)` semantics: run everything, never fail as a whole, one
//!   [`Outcome`] per task (also available as a stream of results in completion order).
//! - [`deadline`]: an absolute overall deadline carried down to children, and per-call timeouts nested in it.

pub mod deadline;
pub mod fail_fast;
pub mod settle;

pub use deadline::{Deadline, Elapsed, ElapsedKind, with_timeout};
pub use fail_fast::{
    CancelledChild, ChildFailure, ChildHandle, ChildLost, Group, GroupConfig, GroupError,
    ShutdownCause, SpawnError, scope,
};
pub use settle::{Outcome, SettleConfig, Settling, settle};
