//! Live counters of a pool and their point-in-time snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a pool's counters, from [`CpuPool::stats`](super::CpuPool::stats).
///
/// Each field is read atomically, but not all at the same instant: while jobs are moving, the sum of the gauges
/// and totals may be off by the jobs that moved between two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PoolStats {
    /// Number of worker threads.
    pub workers: usize,
    /// How many jobs the queue holds before `submit` waits and `try_submit` fails.
    pub queue_capacity: usize,
    /// Jobs waiting in the queue (gauge). Includes jobs whose `submit` is still waiting for a slot.
    pub queued: u64,
    /// Jobs running on a worker right now (gauge).
    pub running: u64,
    /// Jobs that returned a value (total).
    pub completed: u64,
    /// Jobs that panicked (total).
    pub panicked: u64,
    /// Jobs whose caller stopped waiting before they started; they never ran (total).
    pub skipped: u64,
    /// Jobs whose caller stopped waiting while they ran; their cancellation token fired (total).
    pub cancelled: u64,
    /// Submissions refused because the queue was full or the pool shut down (total).
    pub rejected: u64,
}

/// The counters behind [`PoolStats`], shared by the pool, its workers and every job handle.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) queued: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

impl PoolCounters {
    pub(crate) fn snapshot(&self, workers: usize, queue_capacity: usize) -> PoolStats {
        PoolStats {
            workers,
            queue_capacity,
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            panicked: self.panicked.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn increment(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn decrement(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}
