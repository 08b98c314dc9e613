//! [`InlineExecutor`]: runs a job right here, on the calling thread. **It blocks the async runtime.**
//!
//! This is the lab's negative example, the Rust twin of calling a CPU-heavy function directly inside an
//! `async def`: while the job computes, the runtime thread that polls the caller's task polls nothing else.
//! Timers fire late, sockets are not read, other tasks on that thread starve, and the loop-lag monitor
//! ([`crate::lag`]) shows the stall. Jobs run strictly one after another even if many tasks submit at once.
//!
//! Never use it for real work. It exists so the comparison can show what the other executors avoid.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::error::PoolError;
use super::job::JobTiming;
use super::stats::{PoolCounters, PoolStats};

/// Runs jobs synchronously on the caller's thread (see the module docs: it blocks the runtime).
#[derive(Debug, Clone, Default)]
pub struct InlineExecutor {
    counters: Arc<PoolCounters>,
    /// One job at a time. A multi-threaded runtime polls tasks on several threads, and each would otherwise run
    /// its job at once on its own: not the one blocked event loop this executor stands for, and a run whose jobs
    /// overlapped on "one worker" measured an ideal schedule longer than the run itself. A job waiting for its
    /// turn blocks its runtime thread too, as a second blocking call on asyncio's one loop would.
    turn: Arc<Mutex<()>>,
}

impl InlineExecutor {
    /// An executor with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `job` now, on this thread, and returns its value with its timing (worker index 0).
    ///
    /// `should_stop` is always false: the caller is blocked inside this call, so it cannot give up. A panic in
    /// the job is caught and returned as [`PoolError::Panicked`], as the thread pool does.
    pub fn run<F, R>(&self, job: F) -> Result<(R, JobTiming), PoolError>
    where
        F: FnOnce(&dyn Fn() -> bool) -> R,
    {
        let queued_at = Instant::now();
        // A job that panicked was caught below, so a poisoned lock guards nothing broken.
        let _turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let started_at = Instant::now();
        PoolCounters::increment(&self.counters.running);
        let outcome = catch_unwind(AssertUnwindSafe(|| job(&|| false)));
        let timing = JobTiming {
            worker_index: 0,
            queued_at,
            started_at,
            finished_at: Instant::now(),
        };
        PoolCounters::decrement(&self.counters.running);
        match outcome {
            Ok(value) => {
                PoolCounters::increment(&self.counters.completed);
                Ok((value, timing))
            }
            Err(payload) => {
                PoolCounters::increment(&self.counters.panicked);
                Err(PoolError::Panicked(crate::panics::panic_message(
                    payload.as_ref(),
                )))
            }
        }
    }

    /// A snapshot of the counters; one "worker", no queue.
    pub fn stats(&self) -> PoolStats {
        self.counters.snapshot(1, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_the_calling_thread_and_counts() {
        let inline = InlineExecutor::new();
        let caller = std::thread::current().id();
        let (ran_on, timing) = inline
            .run(|_| std::thread::current().id())
            .expect("job runs");
        assert_eq!(ran_on, caller);
        assert_eq!(timing.worker_index, 0);
        assert_eq!(inline.stats().completed, 1);
    }

    #[test]
    fn a_panic_is_reported_not_propagated() {
        let inline = InlineExecutor::new();
        let outcome = inline.run(|_| -> u8 { panic!("boom") });
        assert!(matches!(outcome, Err(PoolError::Panicked(message)) if message == "boom"));
        assert_eq!(inline.stats().panicked, 1);
        assert_eq!(inline.stats().running, 0);
    }

    /// Callers on several threads (a multi-threaded runtime's) take turns: the jobs never overlap, and each one's
    /// run time excludes its wait.
    #[test]
    fn jobs_from_several_threads_run_one_at_a_time() {
        let inline = InlineExecutor::new();
        let timings: Vec<JobTiming> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let inline = inline.clone();
                    scope.spawn(move || {
                        inline
                            .run(|_| std::thread::sleep(std::time::Duration::from_millis(30)))
                            .expect("job runs")
                            .1
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("joins"))
                .collect()
        });
        let mut spans: Vec<(Instant, Instant)> = timings
            .iter()
            .map(|timing| (timing.started_at, timing.finished_at))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "two jobs overlapped: {pair:?}");
        }
        assert!(
            timings
                .iter()
                .any(|timing| timing.queued_at < timing.started_at)
        );
    }
}
