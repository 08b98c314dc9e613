//! Live counters of a batch run, for whoever shows progress (the CLI's bar or its periodic line).
//!
//! The stages bump relaxed atomics; a reader takes a [`StatsSnapshot`] whenever it likes. Counters only grow,
//! so the gauges derived from them (in flight, queued) are approximate while the run moves, exact at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::store::Written;

/// Counters shared by the stages of one run. Cheap to read at any time from any thread.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Non-blank lines in the input, valid once `total_known` is set by the counting pass (never for stdin).
    total_lines: AtomicU64,
    total_known: AtomicBool,
    /// Records read (each non-blank line).
    read: AtomicU64,
    /// Records skipped because their id was already stored.
    skipped: AtomicU64,
    /// Records the reader found unusable (sent straight to the store as failed).
    invalid: AtomicU64,
    fetch_started: AtomicU64,
    fetch_finished: AtomicU64,
    infer_started: AtomicU64,
    infer_finished: AtomicU64,
    stored_ok: AtomicU64,
    stored_degraded: AtomicU64,
    stored_failed: AtomicU64,
    /// Rows not inserted because the same id was stored first (duplicate ids in flight together).
    duplicates: AtomicU64,
    /// Input lines whose id was already stored when read, or that were stored by now: the progress numerator.
    lines_done: AtomicU64,
    /// Questions dropped unanswered by a shutdown's abandon step (not stored; a rerun answers them), by where
    /// they were: [`Abandoned`] as an index.
    abandoned: [AtomicU64; 4],
}

/// Where a question was when a shutdown abandoned it: which gauge it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abandoned {
    QueuedForFetch = 0,
    Fetching = 1,
    QueuedForInfer = 2,
    Inferring = 3,
}

/// A point-in-time copy of [`BatchStats`], with the derived gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Non-blank lines in the input, when known.
    pub total: Option<u64>,
    pub read: u64,
    pub skipped: u64,
    pub invalid: u64,
    /// Questions read but not yet fetching: the read → fetch queue.
    pub queued_for_fetch: u64,
    /// Questions whose sources are being fetched now.
    pub fetching: u64,
    /// Questions fetched, waiting for the CPU stage: the fetch → infer queue.
    pub queued_for_infer: u64,
    /// Questions whose inferences are on the pool now.
    pub inferring: u64,
    /// Answers finished, waiting for the store thread: the infer → store queue.
    pub queued_for_store: u64,
    pub ok: u64,
    pub degraded: u64,
    pub failed: u64,
    pub duplicates: u64,
    /// Questions dropped unanswered when a shutdown abandoned them: not stored; a rerun answers them.
    pub abandoned: u64,
    /// Lines accounted for: stored now, already stored, or a duplicate.
    pub done: u64,
}

impl BatchStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let read = get(&self.read);
        let skipped = get(&self.skipped);
        let invalid = get(&self.invalid);
        let fetch_started = get(&self.fetch_started);
        let fetch_finished = get(&self.fetch_finished);
        let infer_started = get(&self.infer_started);
        let infer_finished = get(&self.infer_finished);
        let (ok, degraded, failed) = (
            get(&self.stored_ok),
            get(&self.stored_degraded),
            get(&self.stored_failed),
        );
        let duplicates = get(&self.duplicates);
        let abandoned_at = |place: Abandoned| get(&self.abandoned[place as usize]);
        let abandoned = self.abandoned.iter().map(get).sum();
        let stored = ok + degraded + failed + duplicates;
        StatsSnapshot {
            total: self
                .total_known
                .load(Ordering::Acquire)
                .then(|| get(&self.total_lines)),
            read,
            skipped,
            invalid,
            // An abandoned question leaves the gauge it was in and never enters the next (a stage's "finished"
            // counts it when its work is dropped).
            queued_for_fetch: read.saturating_sub(
                skipped + invalid + fetch_started + abandoned_at(Abandoned::QueuedForFetch),
            ),
            fetching: fetch_started.saturating_sub(fetch_finished),
            queued_for_infer: fetch_finished.saturating_sub(
                infer_started
                    + abandoned_at(Abandoned::Fetching)
                    + abandoned_at(Abandoned::QueuedForInfer),
            ),
            inferring: infer_started.saturating_sub(infer_finished),
            queued_for_store: (infer_finished + invalid)
                .saturating_sub(stored + abandoned_at(Abandoned::Inferring)),
            ok,
            degraded,
            failed,
            duplicates,
            abandoned,
            done: get(&self.lines_done),
        }
    }

    pub(crate) fn set_total(&self, lines: u64) {
        self.total_lines.store(lines, Ordering::Relaxed);
        // Release: whoever sees the flag sees the total stored before it.
        self.total_known.store(true, Ordering::Release);
    }

    pub(crate) fn add_read(&self) {
        self.read.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.lines_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fetch_started(&self) {
        self.fetch_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fetch_finished(&self) {
        self.fetch_finished.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn infer_started(&self) {
        self.infer_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn infer_finished(&self) {
        self.infer_finished.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_abandoned(&self, place: Abandoned) {
        self.abandoned[place as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Lines whose id another line of this run carried to the store first (the distributed coordinator asks
    /// once per id).
    #[cfg(feature = "nats")]
    pub(crate) fn add_duplicates(&self, lines: u64) {
        self.duplicates.fetch_add(lines, Ordering::Relaxed);
        self.lines_done.fetch_add(lines, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, written: &Written) {
        let inserted = &written.inserted;
        self.stored_ok.fetch_add(inserted.ok, Ordering::Relaxed);
        self.stored_degraded
            .fetch_add(inserted.degraded, Ordering::Relaxed);
        self.stored_failed
            .fetch_add(inserted.failed, Ordering::Relaxed);
        self.duplicates
            .fetch_add(written.already_stored, Ordering::Relaxed);
        self.lines_done
            .fetch_add(inserted.total() + written.already_stored, Ordering::Relaxed);
    }
}

impl StatsSnapshot {
    /// Rows this run added to the store.
    pub fn stored(&self) -> u64 {
        self.ok + self.degraded + self.failed
    }

    /// Questions between the reader and the store: what the bounded channels and permits hold.
    pub fn in_flight(&self) -> u64 {
        self.read.saturating_sub(self.done)
    }
}
