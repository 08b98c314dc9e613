//! The loop-lag monitor: notices when something blocks the async runtime.
//!
//! A light watchdog task asks the runtime to wake it every [`LagConfig::interval`] and measures how late each
//! wake-up comes. A runtime whose threads are free wakes it within about a millisecond; a runtime thread stuck in
//! blocking work (a `std::thread::sleep`, file I/O, heavy CPU) cannot run the watchdog until that work returns,
//! so the tick arrives late by roughly the blocked time. Every tick at least [`LagConfig::threshold`] late is
//! logged with `tracing::warn!` and recorded as a [`Stall`]. This is the counterpart of asyncio debug mode's
//! "Executing <Handle ...> took 0.250 seconds" warning.
//!
//! On a multi-threaded runtime the monitor only sees a stall when the blocked thread is the one that would run
//! its tick (or all threads are blocked), so it samples rather than proves; on a current-thread runtime it sees
//! every stall longer than the threshold.
//!
//! ```no_run
//! # async fn example() {
//! use tributary::lag::{LagConfig, LagMonitor};
//!
//! let monitor = LagMonitor::spawn(LagConfig::default());
//! // ... run the workload ...
//! let report = monitor.stop().await;
//! println!("{} ticks, worst lag {:?}, {} stalls", report.ticks, report.max_lag, report.stalls.len());
//! # }
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the monitor ticks and how late a tick must be to count as a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagConfig {
    /// Time between ticks. Shorter notices shorter stalls, at the cost of more wake-ups.
    pub interval: Duration,
    /// A tick at least this late is a stall: logged and recorded.
    pub threshold: Duration,
}

/// What the monitor has seen so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LagReport {
    /// Ticks measured.
    pub ticks: u64,
    /// The latest any tick arrived.
    pub max_lag: Duration,
    /// Every tick that arrived at least [`LagConfig::threshold`] late, oldest first. Each one stands for at least
    /// `threshold` of blocked runtime, so there are at most (run time / threshold) of them.
    pub stalls: Vec<Stall>,
}

/// One occasion on which the runtime was blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// When the late tick was due: the runtime was blocked from at most this instant on.
    pub at: std::time::Instant,
    /// How late the tick came: roughly how long the runtime was blocked.
    pub lag: Duration,
}

/// A running lag monitor. Stop it with [`LagMonitor::stop`] to get the final report; dropping it also stops the
/// watchdog task.
#[derive(Debug)]
pub struct LagMonitor {
    report: Arc<Mutex<LagReport>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Default for LagConfig {
    /// A tick every 10 ms; a stall is a tick 100 ms late, asyncio's default `slow_callback_duration`.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(10),
            threshold: Duration::from_millis(100),
        }
    }
}

impl LagMonitor {
    /// Starts the watchdog task on the current tokio runtime.
    ///
    /// The first tick is scheduled from this call, so a stall that starts before the task first runs still counts.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub fn spawn(config: LagConfig) -> Self {
        let report = Arc::new(Mutex::new(LagReport::default()));
        let stop = CancellationToken::new();
        let first_due = Instant::now() + config.interval;
        let task = tokio::spawn(watch(config, first_due, Arc::clone(&report), stop.clone()));
        Self {
            report,
            stop,
            task: Some(task),
        }
    }

    /// What the monitor has seen so far.
    pub fn snapshot(&self) -> LagReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the watchdog task, waits for it to end, and returns the final report.
    ///
    /// A tick that is overdue when `stop` is called is measured first, so a stall just before `stop` is reported.
    pub async fn stop(mut self) -> LagReport {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // The task neither panics nor is aborted; a join error would only mean the runtime is shutting down.
            let _ = task.await;
        }
        self.snapshot()
    }
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The watchdog loop: sleep until the next tick is due, measure how late it came, repeat until stopped.
async fn watch(
    config: LagConfig,
    first_due: Instant,
    report: Arc<Mutex<LagReport>>,
    stop: CancellationToken,
) {
    let mut due = first_due;
    loop {
        let stopped = tokio::select! {
            biased;
            () = tokio::time::sleep_until(due) => false,
            () = stop.cancelled() => true,
        };
        let now = Instant::now();
        if stopped && now < due {
            return;
        }
        let lag = now.saturating_duration_since(due);
        report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(due, lag, config.threshold);
        if stopped {
            return;
        }
        due = now + config.interval;
    }
}

impl LagReport {
    fn record(&mut self, due: Instant, lag: Duration, threshold: Duration) {
        self.ticks += 1;
        self.max_lag = self.max_lag.max(lag);
        if lag >= threshold {
            tracing::warn!(
                ?lag,
                ?threshold,
                "async runtime was blocked: a timer tick ran late; move blocking or CPU-heavy work to the cpu pool"
            );
            self.stalls.push(Stall {
                at: due.into_std(),
                lag,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{CpuPool, JobContext, PoolConfig};

    /// Generous on purpose: a busy 2-core machine may delay a free runtime by tens of milliseconds, never by this.
    const THRESHOLD: Duration = Duration::from_millis(250);
    const BLOCKED_FOR: Duration = Duration::from_millis(600);
    const CONFIG: LagConfig = LagConfig {
        interval: Duration::from_millis(10),
        threshold: THRESHOLD,
    };

    /// What the demo warns against: blocking inside an async fn holds up the whole runtime thread.
    async fn block_the_runtime() {
        std::thread::sleep(BLOCKED_FOR);
    }

    #[tokio::test]
    async fn blocking_a_current_thread_runtime_is_reported_as_a_stall() {
        let monitor = LagMonitor::spawn(CONFIG);
        block_the_runtime().await;
        let report = monitor.stop().await;
        assert!(report.max_lag >= THRESHOLD, "{report:?}");
        assert!(
            report.stalls.iter().any(|stall| stall.lag >= THRESHOLD),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn the_same_work_on_the_cpu_pool_causes_no_stall() {
        let pool = CpuPool::new(PoolConfig::default()).expect("start pool");
        let monitor = LagMonitor::spawn(CONFIG);
        pool.submit(|_: &JobContext| std::thread::sleep(BLOCKED_FOR))
            .await
            .expect("job runs");
        let report = monitor.stop().await;
        assert!(
            report.ticks >= 2,
            "the monitor kept ticking while the pool worked: {report:?}"
        );
        assert!(report.stalls.is_empty(), "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_runtime_ticks_on_time() {
        let monitor = LagMonitor::spawn(CONFIG);
        tokio::time::sleep(Duration::from_millis(105)).await;
        let midway = monitor.snapshot();
        let report = monitor.stop().await;
        assert_eq!(midway.ticks, 10);
        assert_eq!(
            report,
            LagReport {
                ticks: 10,
                max_lag: Duration::ZERO,
                stalls: Vec::new()
            }
        );
    }

    #[tokio::test]
    async fn dropping_the_monitor_ends_its_task() {
        let monitor = LagMonitor::spawn(CONFIG);
        let report = Arc::clone(&monitor.report);
        drop(monitor);
        tokio::time::timeout(Duration::from_secs(10), async {
            while Arc::strong_count(&report) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the watchdog task ends once its monitor is dropped");
    }
}
