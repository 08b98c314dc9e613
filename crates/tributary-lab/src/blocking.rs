//! `blocking`: a CPU-bound job run directly on the event loop, then through the pool, while other tasks tick.
//!
//! The experiment runs its own single-threaded event loop (a current-thread tokio runtime on a dedicated thread),
//! like asyncio's: one thread runs every task, so a task that computes without awaiting holds all the others.
//! Three ticker tasks want to wake every [`TICK_PERIOD`]; the [`LagMonitor`] measures how late its own timer
//! ticks come. The job is real work (the inference kernel, calibrated to a CPU time), first called directly from
//! a task, which is the bug this experiment shows, then submitted to a [`CpuPool`] and awaited.
//!
//! The lag monitor's warning on stderr during the inline phase is expected: it is the monitor doing its job.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tributary::group::{GroupConfig, scope};
use tributary::lag::{LagConfig, LagMonitor, LagReport};
use tributary::pool::{CpuPool, JobContext, PoolConfig};
use tributary::trace::{Activity, EventKind, InstantEvent, Outcome as SpanOutcome, Span, Timeline};
use tributary_agent::infer::{Document, InferenceCost, calibration, infer};

use super::experiment::{
    Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis, on_own_event_loop,
};
use super::verdict::Verdict;

/// Run directly, the job must hold the loop for at least this fraction of its duration.
pub const BLOCKED_FRACTION: f64 = 0.8;

/// How often each ticker wants to run.
pub const TICK_PERIOD: Duration = Duration::from_millis(20);
/// Tickers running beside the job.
const TICKERS: usize = 3;
/// Quiet time before and after each job, so the chart shows normal ticking around it.
const QUIET: Duration = Duration::from_millis(100);

/// The figures of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// The CPU time the job was calibrated to.
    pub job_cpu_ms: f64,
    /// A tick this late is a stall (asyncio's `slow_callback_duration`).
    pub stall_threshold_ms: f64,
    /// The job run directly on the event loop.
    pub inline: PhaseFigures,
    /// The same job through the pool.
    pub pool: PhaseFigures,
}

/// What the event loop went through while one job ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseFigures {
    /// Wall time of the job.
    pub job_ms: f64,
    /// The latest the lag monitor's tick came.
    pub max_lag_ms: f64,
    /// Ticks at least the threshold late.
    pub stalls: usize,
    /// The tickers' ticks in this phase.
    pub ticks: usize,
    /// Ticks that came at least the threshold late.
    pub delayed_ticks: usize,
    /// The latest any ticker's tick came.
    pub worst_tick_delay_ms: f64,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "blocking",
    title: "Blocking the event loop",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment on its own single-threaded event loop.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let job_cpu = config.duration(1000, 300);
    let timeline = Timeline::new();
    let recording = timeline.clone();
    let measured = on_own_event_loop(move || {
        // Calibrating is CPU work too: do it before the event loop runs, so it is not measured.
        let _ = calibration();
        on_one_thread(job_cpu, recording)
    })
    .await?;
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "On a single-threaded event loop, {TICKERS} tasks tick every {} ms while a job of about {} ms of CPU \
             (the inference kernel) runs, first called directly from a task, then submitted to the CPU pool \
             and awaited. A lag monitor measures how late the loop's timers fire.",
            TICK_PERIOD.as_millis(),
            job_cpu.as_millis()
        ),
        format!(
            "Run directly, the job freezes the loop for its whole duration (lag and tick delays at least {:.0}% \
             of the job); through the pool, the loop keeps ticking (no stall, no tick {} ms late).",
            BLOCKED_FRACTION * 100.0,
            LagConfig::default().threshold.as_millis()
        ),
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: inline, the loop's lag and the tickers' worst delay are at least [`BLOCKED_FRACTION`] of the job;
/// through the pool, no stall and no tick as late as the stall threshold.
pub fn judge(measured: &Measured) -> Verdict {
    let inline = &measured.inline;
    let pool = &measured.pool;
    let frozen = inline.job_ms * BLOCKED_FRACTION;
    let threshold = measured.stall_threshold_ms;
    Verdict::all([
        Verdict::check(
            inline.max_lag_ms >= frozen && inline.worst_tick_delay_ms >= frozen,
            format!(
                "directly: the {:.0} ms job froze the loop for {:.0} ms and delayed a tick by {:.0} ms \
                 (at least {frozen:.0} ms expected; {} of {} ticks late)",
                inline.job_ms,
                inline.max_lag_ms,
                inline.worst_tick_delay_ms,
                inline.delayed_ticks,
                inline.ticks
            ),
        ),
        Verdict::check(
            pool.stalls == 0 && pool.worst_tick_delay_ms < threshold && pool.max_lag_ms < threshold,
            format!(
                "through the pool: worst lag {:.1} ms, worst tick delay {:.1} ms, {} stall(s) (under \
                 {threshold:.0} ms and none expected)",
                pool.max_lag_ms, pool.worst_tick_delay_ms, pool.stalls
            ),
        ),
    ])
}

/// One tick: when it was due and how late it came.
#[derive(Debug, Clone, Copy)]
struct Tick {
    due: Instant,
    late: Duration,
}

/// Everything that runs on the single event-loop thread.
async fn on_one_thread(job_cpu: Duration, timeline: Timeline) -> Result<Measured, LabError> {
    let lag_config = LagConfig::default();
    let pool = CpuPool::new(PoolConfig::with_workers(std::num::NonZeroUsize::MIN))
        .map_err(LabError::Pool)?;
    let ticks: Arc<Mutex<Vec<Tick>>> = Arc::default();
    let stop = CancellationToken::new();
    // The tickers are children of a group: the scope returns only once every one of them has stopped.
    let phases = scope(GroupConfig::new(), |group| {
        let (ticks, stop, timeline, pool) =
            (Arc::clone(&ticks), stop.clone(), timeline.clone(), &pool);
        async move {
            for index in 0..TICKERS {
                let ticker = tick(index, Arc::clone(&ticks), stop.clone(), timeline.clone());
                group
                    .spawn(format!("ticker {index}"), async move {
                        ticker.await;
                        Ok(())
                    })
                    .await
                    .map_err(|error| LabError::Setup(error.to_string()))?;
            }
            let phases = measure_both(job_cpu, pool, &timeline).await?;
            stop.cancel();
            Ok(phases)
        }
    })
    .await
    .map_err(|error| {
        let cause = error.cause.to_string();
        error
            .into_first_error()
            .unwrap_or_else(|| LabError::Setup(format!("the tickers stopped: {cause}")))
    })?;
    let Phases {
        inline_report,
        inline_started,
        inline_ended,
        inline_job,
        pool_report,
        pool_ended,
        pool_job,
    } = phases;
    pool.shutdown().await;
    for report in [&inline_report, &pool_report] {
        for stall in &report.stalls {
            let at = timeline.offset(stall.at);
            timeline.record(
                Span::new("lag monitor", "stall", Activity::Other, at, at + stall.lag)
                    .with_outcome(SpanOutcome::Failed),
            );
        }
    }
    let ticks = ticks.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let threshold = lag_config.threshold;
    Ok(Measured {
        job_cpu_ms: millis(job_cpu),
        stall_threshold_ms: millis(threshold),
        inline: phase(
            &inline_report,
            &ticks,
            inline_started,
            inline_ended,
            threshold,
            inline_job,
        ),
        pool: phase(
            &pool_report,
            &ticks,
            inline_ended,
            pool_ended,
            threshold,
            pool_job,
        ),
    })
}

fn phase(
    report: &LagReport,
    ticks: &[Tick],
    from: Instant,
    to: Instant,
    threshold: Duration,
    job: Duration,
) -> PhaseFigures {
    let in_phase: Vec<&Tick> = ticks
        .iter()
        .filter(|tick| tick.due >= from && tick.due < to)
        .collect();
    PhaseFigures {
        job_ms: millis(job),
        max_lag_ms: millis(report.max_lag),
        stalls: report.stalls.len(),
        ticks: in_phase.len(),
        delayed_ticks: in_phase
            .iter()
            .filter(|tick| tick.late >= threshold)
            .count(),
        worst_tick_delay_ms: millis(
            in_phase
                .iter()
                .map(|tick| tick.late)
                .max()
                .unwrap_or_default(),
        ),
    }
}

/// What the two phases measured.
struct Phases {
    inline_report: LagReport,
    inline_started: Instant,
    inline_ended: Instant,
    inline_job: Duration,
    pool_report: LagReport,
    pool_ended: Instant,
    pool_job: Duration,
}

/// The job called directly on the event loop, then through the pool, each between two quiet spells, with a lag
/// monitor watching.
async fn measure_both(
    job_cpu: Duration,
    pool: &CpuPool,
    timeline: &Timeline,
) -> Result<Phases, LabError> {
    let lag_config = LagConfig::default();
    let inline_started = Instant::now();
    let monitor = LagMonitor::spawn(lag_config);
    tokio::time::sleep(QUIET).await;
    let job_started = Instant::now();
    let _ = infer(QUESTION, &document(), InferenceCost::cpu(job_cpu), &|| {
        false
    });
    let job_ended = Instant::now();
    let inline_job = job_ended - job_started;
    record_job(
        timeline,
        "event loop",
        "infer, called directly",
        job_started,
        job_ended,
    );
    tokio::time::sleep(QUIET).await;
    let inline_report = monitor.stop().await;
    let inline_ended = Instant::now();

    let monitor = LagMonitor::spawn(lag_config);
    tokio::time::sleep(QUIET).await;
    let job_started = Instant::now();
    let (_, timing) = pool
        .submit_timed(move |job: &JobContext| {
            infer(QUESTION, &document(), InferenceCost::cpu(job_cpu), &|| {
                job.is_cancelled()
            })
        })
        .await
        .map_err(LabError::Pool)?;
    let job_ended = Instant::now();
    record_job(
        timeline,
        "worker 1",
        "infer, through the pool",
        Instant::from_std(timing.started_at),
        Instant::from_std(timing.finished_at),
    );
    tokio::time::sleep(QUIET).await;
    let pool_report = monitor.stop().await;
    let pool_ended = Instant::now();

    Ok(Phases {
        inline_report,
        inline_started,
        inline_ended,
        inline_job,
        pool_report,
        pool_ended,
        pool_job: job_ended - job_started,
    })
}

/// A ticker: wakes every [`TICK_PERIOD`] and records how late it woke; a late tick is drawn on its lane.
async fn tick(
    index: usize,
    ticks: Arc<Mutex<Vec<Tick>>>,
    stop: CancellationToken,
    timeline: Timeline,
) {
    let lane = format!("ticker {}", index + 1);
    timeline.event(&lane, "ticking", EventKind::Note);
    let mut due = Instant::now() + TICK_PERIOD;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        ticks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Tick { due, late });
        if late >= TICK_PERIOD {
            timeline.record(
                Span::new(
                    &lane,
                    format!("tick {} ms late", late.as_millis()),
                    Activity::Other,
                    timeline.offset(due.into_std()),
                    timeline.offset(now.into_std()),
                )
                .with_outcome(SpanOutcome::Failed),
            );
        }
        due = now + TICK_PERIOD;
    }
}

fn record_job(timeline: &Timeline, lane: &str, name: &str, started: Instant, ended: Instant) {
    timeline.record(Span::new(
        lane,
        name,
        Activity::Infer,
        timeline.offset(started.into_std()),
        timeline.offset(ended.into_std()),
    ));
    timeline.record_event(InstantEvent::new(
        lane,
        format!("{name}: {} ms", (ended - started).as_millis()),
        EventKind::Note,
        timeline.offset(ended.into_std()),
    ));
}

const QUESTION: &str = "Is the event loop blocked?";

fn document() -> Document {
    Document::new(
        "kb",
        "An event loop runs one callback at a time. A coroutine that computes for a long time without awaiting \
         keeps every other task waiting. Move CPU-bound work to an executor and await its result.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(
        job_ms: f64,
        max_lag_ms: f64,
        worst_tick_delay_ms: f64,
        stalls: usize,
    ) -> PhaseFigures {
        PhaseFigures {
            job_ms,
            max_lag_ms,
            stalls,
            ticks: 30,
            delayed_ticks: stalls * 3,
            worst_tick_delay_ms,
        }
    }

    fn textbook_blocking() -> Measured {
        Measured {
            job_cpu_ms: 1000.0,
            stall_threshold_ms: 100.0,
            inline: phase(1010.0, 1005.0, 1003.0, 1),
            pool: phase(1008.0, 1.2, 1.5, 0),
        }
    }

    #[test]
    fn blocking_passes_a_textbook_run() {
        let verdict = judge(&textbook_blocking());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn blocking_fails_when_the_pool_lags_or_the_inline_job_did_not_freeze_the_loop() {
        let mut measured = textbook_blocking();
        measured.pool = phase(1008.0, 150.0, 140.0, 1);
        let verdict = judge(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.starts_with("through the pool"),
            "{}",
            verdict.reason
        );

        let mut measured = textbook_blocking();
        measured.inline = phase(1010.0, 12.0, 10.0, 0);
        assert!(!judge(&measured).pass);
    }
}
