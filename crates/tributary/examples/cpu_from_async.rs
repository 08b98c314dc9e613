//! Await CPU-heavy work from async code without blocking the runtime: `run_in_executor`'s counterpart.
//!
//! A job is plain data with a synchronous `run` (a [`CpuJob`]); an [`Executor`] runs it on worker threads (or in
//! worker processes, or, for comparison, under a GIL-like lock or inline) and the async caller awaits the result
//! with when and where it ran. Several jobs submitted at once run in parallel, one per worker.
//!
//! Run: `cargo run -p tributary --example cpu_from_async`

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};
use tributary::pool::{CpuJob, Executor, ExecutorConfig, ExecutorKind};

/// Counts the primes below `limit`: CPU work that checks in with its caller now and then.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CountPrimes {
    limit: u64,
}

impl CpuJob for CountPrimes {
    const NAME: &'static str = "count-primes";
    type Output = Option<u64>;

    fn run(self, should_stop: &dyn Fn() -> bool) -> Option<u64> {
        let mut count = 0;
        for candidate in 2..self.limit {
            if candidate % 1_000 == 0 && should_stop() {
                return None; // the caller stopped waiting: give the core back
            }
            if (2..candidate)
                .take_while(|divisor| divisor * divisor <= candidate)
                .all(|divisor| candidate % divisor != 0)
            {
                count += 1;
            }
        }
        Some(count)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = NonZeroUsize::new(2).expect("2 is not zero");
    let executor = Executor::new(ExecutorConfig::new(ExecutorKind::Threads, workers))?;

    // Two jobs at once: each runs on its own worker thread while this task just awaits.
    let (small, large) = tokio::join!(
        executor.run_job(CountPrimes { limit: 10_000 }),
        executor.run_job(CountPrimes { limit: 50_000 }),
    );
    let (small, small_timing) = small?;
    let (large, large_timing) = large?;
    println!(
        "{small:?} primes below 10,000 (worker {}, {:?}); {large:?} below 50,000 (worker {}, {:?})",
        small_timing.worker_index,
        small_timing.run_time(),
        large_timing.worker_index,
        large_timing.run_time(),
    );
    assert_eq!((small, large), (Some(1_229), Some(5_133)));

    executor.shutdown().await;
    Ok(())
}
