//! Structured concurrency: fail-fast groups, settle (collect-all) and deadlines.
//!
//! - [`deadline`]: an absolute overall deadline carried down to children, and per-call timeouts nested in it.

pub mod deadline;

pub use deadline::{Deadline, Elapsed, ElapsedKind, with_timeout};
