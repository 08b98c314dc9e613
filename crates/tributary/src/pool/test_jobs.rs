//! Jobs for the pool's own tests: a deterministic CPU kernel, a time-bounded spin, a job that reports progress,
//! and a crash.
//!
//! The engine knows no real workload; these stand in for one. [`jobs`] is what the test binary serves when it
//! runs as a worker process (see `process::tests`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{CpuJob, WorkerJobs};

/// Rounds of a hash chain between two `should_stop` checks: well under a millisecond.
const ROUNDS_PER_CHECK: u64 = 1_000;

/// `rounds` rounds of a hash chain: the same checksum on every executor; `None` when stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpinJob {
    pub(crate) rounds: u64,
}

/// Spins (real CPU work, not sleep) for about `millis` milliseconds, or until stopped; returns whether it
/// finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpinFor {
    pub(crate) millis: u64,
}

/// Reports `1`, `2`, ... `count` as its progress, and returns how many it reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CountAloud {
    pub(crate) count: u64,
}

/// Aborts the worker process, as a native crash would. Only ever sent to a worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CrashJob;

impl CpuJob for SpinJob {
    const NAME: &'static str = "spin";
    type Output = Option<u64>;

    fn run(self, should_stop: &dyn Fn() -> bool) -> Option<u64> {
        let mut state = 0x5eed_u64;
        let mut done = 0;
        while done < self.rounds {
            if should_stop() {
                return None;
            }
            let slice = (self.rounds - done).min(ROUNDS_PER_CHECK);
            state = hash_chain(state, slice);
            done += slice;
        }
        Some(state)
    }
}

impl CpuJob for SpinFor {
    const NAME: &'static str = "spin-for";
    type Output = bool;

    fn run(self, should_stop: &dyn Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_millis(self.millis);
        let mut state = 1;
        while Instant::now() < until {
            if should_stop() {
                return false;
            }
            state = hash_chain(state, ROUNDS_PER_CHECK);
        }
        std::hint::black_box(state);
        true
    }
}

impl CpuJob for CountAloud {
    const NAME: &'static str = "count-aloud";
    type Output = u64;

    fn run(self, should_stop: &dyn Fn() -> bool) -> u64 {
        self.run_with_progress(should_stop, &|_| {})
    }

    fn run_with_progress(self, _should_stop: &dyn Fn() -> bool, progress: &dyn Fn(&str)) -> u64 {
        for number in 1..=self.count {
            progress(&number.to_string());
        }
        self.count
    }
}

impl CpuJob for CrashJob {
    const NAME: &'static str = "crash";
    type Output = ();

    fn run(self, _should_stop: &dyn Fn() -> bool) {
        // The hardest exit there is: no unwinding, no destructors.
        std::process::abort()
    }
}

/// `rounds` rounds of SipHash, each hashing the previous output.
pub(crate) fn hash_chain(mut state: u64, rounds: u64) -> u64 {
    for round in 0..rounds {
        let mut hasher = DefaultHasher::new();
        (state, round).hash(&mut hasher);
        state = hasher.finish();
    }
    state
}

/// Every test job, for the test binary acting as a worker.
pub(crate) fn jobs() -> WorkerJobs {
    WorkerJobs::new()
        .with::<SpinJob>()
        .with::<SpinFor>()
        .with::<CountAloud>()
        .with::<CrashJob>()
}
