//! What the group tests watch tasks with: [`Live`] counts what is alive, to see that every task has ended
//! (`tests.rs`, `supervisor/tests.rs`); [`DropFlag`] is set when the future holding it is dropped, to see that it was
//! cancelled (`same_instant.rs`, `cpython_timeouts.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Counts what is alive: one guard per running task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Live(Arc<AtomicUsize>);

pub(crate) struct LiveGuard(Arc<AtomicUsize>);

impl Live {
    pub(crate) fn enter(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(Arc::clone(&self.0))
    }

    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets its flag when dropped: the future holding it was cancelled (or finished).
pub(crate) struct DropFlag(pub(crate) Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
