//! `parallelism`: the same CPU jobs through four executors, the cost of a process hop, a crashing worker, and
//! the pool running out of workers.
//!
//! The jobs are [`BurnJob`]s: pure work of the inference kernel, calibrated to a CPU time on this machine. Each
//! executor gets all of them at once from one async task:
//!
//! - `inline` runs each job on the async thread inside its first poll, so they run one after another: the
//!   one-core baseline every speed-up is measured against;
//! - `global-lock` runs them on N threads that must hold one process-wide lock to compute, handed over every
//!   5 ms: **a model of CPython's GIL**, not CPython;
//! - `threads` is the real pool; `processes` a pool of worker processes of this same binary, each job and result
//!   serialised as JSON over pipes.
//!
//! Then: the per-job overhead of a process hop against a thread hop (many empty jobs, one at a time); a worker
//! process that crashes mid-job (it is replaced, and only its job fails); and more submitters than the pool has
//! workers and queue slots, sampled every few milliseconds: jobs queue, submitters wait for a slot
//! (backpressure), and `try_submit` is refused.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tributary::pool::{
    CpuPool, Executor, ExecutorConfig, ExecutorError, ExecutorKind, JobContext, JobTiming,
    PoolConfig, PoolError,
};
use tributary::trace::{Activity, Outcome as SpanOutcome, Span, Timeline};
use tributary_agent::infer::{BurnJob, InferenceCost, InferenceJob, burn};

use crate::jobs::{CrashJob, reader, real_inference};

use super::experiment::{Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis};
use super::verdict::Verdict;

/// The global-lock model may be at most this much faster than inline.
pub const GLOBAL_LOCK_MAX_SPEEDUP: f64 = 1.2;
/// The thread pool must be at least this many times faster than inline, per core.
pub const POOL_MIN_SPEEDUP_PER_CORE: f64 = 0.9;

/// What a process hop costs, in words: the verdict's explanation.
pub const OVERHEAD_EXPLANATION: &str = "a thread hop is a channel send, a worker wake-up and a oneshot reply \
    inside one process; a process hop also encodes the job as JSON, writes it to a pipe, wakes another process \
    that reads and decodes it, and sends the result back the same way: two system calls, two copies and two \
    JSON round trips per job, which is why processes pay off only for jobs much longer than the hop";

/// How often the saturation demo samples the pool's queue.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// At most this many queue samples are kept in the figures (evenly spaced).
const MAX_SAMPLES: usize = 40;

/// The figures of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// Cores the speed-up claims are judged against (at most the number of jobs).
    pub cores: usize,
    /// Jobs given to each executor.
    pub jobs: usize,
    /// CPU time of each job, on one core.
    pub job_cpu_ms: f64,
    /// One entry per executor, `inline` first.
    pub executors: Vec<ExecutorFigures>,
    /// Times the global lock changed hands, over all its runs.
    pub global_lock_handoffs: u64,
    /// A thread hop against a process hop.
    pub overhead: OverheadFigures,
    /// A worker process crashing mid-job; `None` when worker processes are not available.
    pub crash: Option<CrashFigures>,
    /// The pool running out of workers.
    pub saturation: SaturationFigures,
}

/// One executor's run of all the jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorFigures {
    /// `inline`, `global-lock`, `threads` or `processes`.
    pub executor: ExecutorKind,
    /// What it is.
    pub description: String,
    /// All jobs, from submitting the first to the last result: the fastest of two runs (three in quick mode).
    pub total_ms: f64,
    /// `inline total / this total`.
    pub speedup: f64,
    /// Mean wall time of one job, from its start on a worker to its end.
    pub mean_job_ms: f64,
    /// Jobs that failed.
    pub failed: usize,
}

/// Empty jobs, one at a time: what the hop itself costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverheadFigures {
    /// Empty jobs sent to each executor.
    pub round_trips: usize,
    /// Mean round trip of an empty job through the thread pool.
    pub threads_us: f64,
    /// Mean round trip of an empty job through a worker process; `None` without worker processes.
    pub processes_us: Option<f64>,
    /// Why they differ.
    pub explanation: String,
}

/// A worker process crashing in the middle of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrashFigures {
    /// Whether the crashing job was reported failed with a worker crash.
    pub job_failed: bool,
    /// The error it was reported with.
    pub error: String,
    /// Whether the jobs sent after the crash (two per worker, at once) all succeeded.
    pub next_job_ok: bool,
    /// Worker processes started to replace crashed ones.
    pub workers_replaced: u64,
}

/// The pool running out of workers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaturationFigures {
    /// Worker threads.
    pub workers: usize,
    /// Queue slots.
    pub queue_capacity: usize,
    /// Tasks submitting one job each, all at once.
    pub submitters: usize,
    /// The deepest the queue got (jobs waiting, including submitters waiting for a slot).
    pub max_queued: u64,
    /// The most jobs running at once.
    pub max_running: u64,
    /// Submitters that had to wait for a queue slot (at least a millisecond).
    pub submitters_blocked: usize,
    /// The longest a submitter waited for a queue slot.
    pub max_submit_wait_ms: f64,
    /// The longest a job waited from submission to a worker.
    pub max_queue_wait_ms: f64,
    /// Whether `try_submit` was refused while the queue was full.
    pub try_submit_refused: bool,
    /// When each sample was taken, in ms since the submitters started (about every 5 ms, thinned to 40).
    pub sampled_at_ms: Vec<u64>,
    /// Queue depth at each sample: jobs waiting, including submitters waiting for a slot.
    pub queued_over_time: Vec<u64>,
    /// Jobs running at each sample.
    pub running_over_time: Vec<u64>,
}

/// The pool's gauges at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueueSample {
    /// Since the submitters started.
    at_ms: u64,
    /// Jobs waiting.
    queued: u64,
    /// Jobs running.
    running: u64,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "parallelism",
    title: "CPU parallelism: inline, a GIL model, threads, processes",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let workers = config.cores;
    let jobs = config.pick(4, 2) * workers.get();
    let job_cpu = config.duration(250, 60);
    let units = tributary::group::blocking("calibrate inference", move || {
        InferenceCost::cpu(job_cpu).work_units()
    })
        .await
        .map_err(|error| LabError::EventLoop(std::io::Error::other(error.to_string())))?;
    let timeline = Timeline::new();

    let mut built = Vec::new();
    for kind in ExecutorKind::ALL {
        if let Some(executor) = build(kind, workers, config)? {
            built.push(executor);
        }
    }
    // Each executor keeps its fastest run: on a busy machine a run can be slowed down by other programs but never
    // sped up, so the fastest is the best estimate of what the executor itself does (as the calibration does).
    // The runs go round the executors, so a busy spell of the machine hits them all alike.
    let work = if config.models.is_simulated() {
        Work::Burn(units)
    } else {
        Work::Infer(Box::new(real_inference(&config.models)))
    };
    let mut best: Vec<Option<JobRun>> = built.iter().map(|_| None).collect();
    for _ in 0..config.pick(2, 3) {
        for (executor, best) in built.iter().zip(&mut best) {
            let run = run_jobs(executor, jobs, &work).await;
            if best.as_ref().is_none_or(|best| run.total < best.total) {
                *best = Some(run);
            }
        }
    }
    let mut executors = Vec::new();
    let mut inline_total = Duration::ZERO;
    for (executor, best) in built.iter().zip(best) {
        let kind = executor.kind();
        let JobRun {
            total,
            timings,
            failed,
        } = best.unwrap_or_default();
        for (index, timing, outcome) in &timings {
            draw_job(&timeline, kind, timing, format!("job {index}"), *outcome);
        }
        if kind == ExecutorKind::Inline {
            inline_total = total;
        }
        let ran: Vec<&JobTiming> = timings
            .iter()
            .filter(|(_, _, outcome)| *outcome == SpanOutcome::Ok)
            .map(|(_, timing, _)| timing)
            .collect();
        let mean_job = ran
            .iter()
            .map(|timing| {
                timing
                    .finished_at
                    .saturating_duration_since(timing.started_at)
            })
            .sum::<Duration>()
            .checked_div(u32::try_from(ran.len()).unwrap_or(u32::MAX))
            .unwrap_or_default();
        executors.push(ExecutorFigures {
            executor: kind,
            description: kind.describe().to_owned(),
            total_ms: millis(total),
            speedup: inline_total.as_secs_f64() / total.as_secs_f64().max(1e-9),
            mean_job_ms: millis(mean_job),
            failed,
        });
    }
    let of_kind = |kind: ExecutorKind| built.iter().find(|executor| executor.kind() == kind);
    let global_lock_handoffs =
        of_kind(ExecutorKind::GlobalLock).map_or(0, |executor| executor.stats().lock_handoffs);

    let round_trips = config.pick(200, 50);
    let threads_us = match of_kind(ExecutorKind::Threads) {
        Some(threads) => round_trip(threads, round_trips).await,
        None => None,
    };
    let (processes_us, crash) = match of_kind(ExecutorKind::Processes) {
        Some(processes) => (
            round_trip(processes, round_trips).await,
            Some(crash_a_worker(processes, workers.get(), units / 8, &timeline).await),
        ),
        None => (None, None),
    };
    for executor in &built {
        executor.shutdown().await;
    }
    let saturation = saturate(workers, job_cpu, &timeline).await?;
    // A real inference takes what it takes: inline's mean job, one at a time on one core.
    let per_job = match &work {
        Work::Burn(_) => millis(job_cpu),
        Work::Infer(_) => executors.first().map_or(f64::NAN, |inline| inline.mean_job_ms),
    };
    let what = match &work {
        Work::Burn(_) => format!("CPU jobs of about {} ms each (the inference kernel)", job_cpu.as_millis()),
        Work::Infer(_) => format!(
            "inferences by {} (about {per_job:.0} ms each, one at a time)",
            reader(&config.models, job_cpu)
        ),
    };

    let measured = Measured {
        cores: workers.get().min(jobs),
        jobs,
        job_cpu_ms: per_job,
        executors,
        global_lock_handoffs,
        overhead: OverheadFigures {
            round_trips,
            threads_us: threads_us.unwrap_or(f64::NAN),
            processes_us,
            explanation: OVERHEAD_EXPLANATION.to_owned(),
        },
        crash,
        saturation,
    };
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "{jobs} {what} go to four executors with {workers} workers: inline on the async thread, global-lock \
             (threads taking turns on one lock: a model of CPython's GIL, not CPython), threads (the pool) and \
             processes (worker processes of this binary, jobs as JSON over pipes). Then empty jobs measure the \
             hop itself, a worker process is crashed on purpose, and more submitters than workers and queue \
             slots saturate the pool."
        ),
        format!(
            "Against inline: the global-lock model gives no speed-up (at most {GLOBAL_LOCK_MAX_SPEEDUP:.1}x); the \
             pool gives one per core (at least {POOL_MIN_SPEEDUP_PER_CORE:.1} x {} cores); a process hop costs more \
             than a thread hop; a crashed worker fails only its job and is replaced; a saturated pool queues jobs \
             and makes submitters wait.",
            workers.get().min(jobs)
        ),
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: global-lock speed-up at most [`GLOBAL_LOCK_MAX_SPEEDUP`]; threads at least
/// [`POOL_MIN_SPEEDUP_PER_CORE`] × cores; a process hop measured and dearer than a thread hop; a crashed worker
/// fails only its job and is replaced; a saturated pool never runs more jobs than workers, queues the rest, makes
/// submitters wait and refuses `try_submit`.
pub fn judge(measured: &Measured) -> Verdict {
    let speedup = |kind: ExecutorKind| {
        measured
            .executors
            .iter()
            .find(|figures| figures.executor == kind)
            .map(|figures| (figures.speedup, figures.failed))
    };
    let failed: usize = measured
        .executors
        .iter()
        .map(|figures| figures.failed)
        .sum();
    let jobs_ran = Verdict::check(
        failed == 0,
        format!("{failed} job(s) failed across the executors"),
    );
    let global_lock = match speedup(ExecutorKind::GlobalLock) {
        Some((speedup, _)) => Verdict::check(
            speedup <= GLOBAL_LOCK_MAX_SPEEDUP,
            format!(
                "global-lock (GIL model) {speedup:.2}x (at most {GLOBAL_LOCK_MAX_SPEEDUP:.1}x)"
            ),
        ),
        None => Verdict::fail("global-lock was not measured"),
    };
    let wanted = POOL_MIN_SPEEDUP_PER_CORE * measured.cores as f64;
    let threads = match speedup(ExecutorKind::Threads) {
        Some((speedup, _)) => Verdict::check(
            speedup >= wanted,
            format!(
                "threads {speedup:.2}x (at least {wanted:.2}x on {} cores)",
                measured.cores
            ),
        ),
        None => Verdict::fail("threads were not measured"),
    };
    let overhead = &measured.overhead;
    let hop = match overhead.processes_us {
        Some(processes_us) => Verdict::check(
            processes_us > overhead.threads_us,
            format!(
                "per-job overhead: processes {processes_us:.0} µs against threads {:.0} µs ({:.0}x)",
                overhead.threads_us,
                processes_us / overhead.threads_us.max(f64::MIN_POSITIVE)
            ),
        ),
        None => {
            Verdict::fail("the process hop was not measured: no worker processes in this build")
        }
    };
    let crash = match &measured.crash {
        Some(crash) => Verdict::check(
            crash.job_failed && crash.next_job_ok && crash.workers_replaced >= 1,
            format!(
                "crashed worker: its job {}, the next job {}, {} worker(s) replaced",
                if crash.job_failed {
                    "failed"
                } else {
                    "did not fail"
                },
                if crash.next_job_ok { "ran" } else { "failed" },
                crash.workers_replaced
            ),
        ),
        None => {
            Verdict::fail("the worker crash was not measured: no worker processes in this build")
        }
    };
    let saturation = &measured.saturation;
    let saturated = Verdict::check(
        saturation.max_running <= saturation.workers as u64
            && saturation.max_queued >= 1
            && saturation.submitters_blocked >= 1
            && saturation.try_submit_refused,
        format!(
            "saturated pool: at most {} running on {} workers, up to {} queued, {} of {} submitters waited \
             (up to {:.0} ms), try_submit {}",
            saturation.max_running,
            saturation.workers,
            saturation.max_queued,
            saturation.submitters_blocked,
            saturation.submitters,
            saturation.max_submit_wait_ms,
            if saturation.try_submit_refused {
                "refused"
            } else {
                "accepted"
            }
        ),
    );
    if failed == 0 {
        Verdict::all([global_lock, threads, hop, crash, saturated])
    } else {
        Verdict::all([jobs_ran, global_lock, threads, hop, crash, saturated])
    }
}

/// The executor of `kind`, or `None` for `processes` when this build has no worker command.
fn build(
    kind: ExecutorKind,
    workers: NonZeroUsize,
    config: &LabConfig,
) -> Result<Option<Executor>, LabError> {
    let mut executor_config = ExecutorConfig::new(kind, workers);
    if kind == ExecutorKind::Processes {
        let Some(command) = config.worker_command.clone() else {
            return Ok(None);
        };
        executor_config = executor_config.with_worker_command(command);
    }
    Executor::new(executor_config).map(Some).map_err(|error| {
        LabError::Setup(format!(
            "start the {kind} executor: {}",
            tributary_agent::error_chain(&error)
        ))
    })
}

/// One run of all the jobs on one executor.
#[derive(Debug, Default)]
struct JobRun {
    /// From the first submission to the last result.
    total: Duration,
    /// Each job that ran: its index, timing and how it ended.
    timings: Vec<(usize, JobTiming, SpanOutcome)>,
    /// Jobs that failed.
    failed: usize,
}

/// What each job of a run does.
enum Work {
    /// The calibrated inference kernel, this many units.
    Burn(u64),
    /// A real inference (`lab --model`).
    Infer(Box<InferenceJob>),
}

/// All `jobs` at once from this one task.
async fn run_jobs(executor: &Executor, jobs: usize, work: &Work) -> JobRun {
    let started = Instant::now();
    // One task polls every job: `inline` jobs then run one after another on this thread, as on asyncio's loop.
    let results = futures::future::join_all((0..jobs).map(|_| async {
        match work {
            Work::Burn(units) => executor
                .run_job(BurnJob { units: *units })
                .await
                .map(|(outcome, timing)| (outcome.is_ok(), timing)),
            Work::Infer(job) => executor
                .run_job(InferenceJob::clone(job))
                .await
                .map(|(outcome, timing)| (outcome.is_ok(), timing)),
        }
    }))
    .await;
    let total = started.elapsed();
    let mut run = JobRun {
        total,
        ..JobRun::default()
    };
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok((true, timing)) => run.timings.push((index, timing, SpanOutcome::Ok)),
            Ok((false, timing)) => {
                run.timings.push((index, timing, SpanOutcome::Cancelled));
                run.failed += 1;
            }
            Err(_) => run.failed += 1,
        }
    }
    run
}

fn draw_job(
    timeline: &Timeline,
    kind: ExecutorKind,
    timing: &JobTiming,
    name: String,
    outcome: SpanOutcome,
) {
    let lane = match kind {
        ExecutorKind::Inline => "inline (async thread)".to_owned(),
        other => format!("{other} worker {}", timing.worker_index + 1),
    };
    timeline.record(
        Span::new(
            lane,
            name,
            Activity::Infer,
            timeline.offset(timing.started_at),
            timeline.offset(timing.finished_at),
        )
        .with_outcome(outcome),
    );
}

/// The mean round trip of an empty job, one at a time, in microseconds.
async fn round_trip(executor: &Executor, round_trips: usize) -> Option<f64> {
    // One empty job first, so neither side pays for a first-use cost (a cold worker) in the figure.
    let empty = BurnJob { units: 0 };
    executor.run_job(empty).await.ok()?.0.ok()?;
    let started = Instant::now();
    for _ in 0..round_trips {
        executor.run_job(empty).await.ok()?.0.ok()?;
    }
    Some(started.elapsed().as_secs_f64() * 1e6 / round_trips as f64)
}

/// Crashes one worker process mid-job, then runs another job on the same pool.
async fn crash_a_worker(
    executor: &Executor,
    workers: usize,
    after_units: u64,
    timeline: &Timeline,
) -> CrashFigures {
    let Some(pool) = executor.process_pool() else {
        return CrashFigures {
            job_failed: false,
            error: "not a process executor".to_owned(),
            next_job_ok: false,
            workers_replaced: 0,
        };
    };
    let started = Instant::now();
    let crashed = pool.run(CrashJob).await;
    let ended = Instant::now();
    let (job_failed, error) = match &crashed {
        Err(error @ ExecutorError::WorkerCrashed { .. }) => (true, error.to_string()),
        Err(other) => (false, other.to_string()),
        Ok(_) => (false, "the crashing job returned a result".to_owned()),
    };
    let worker = match crashed {
        Err(ExecutorError::WorkerCrashed { worker, .. }) => worker,
        _ => 0,
    };
    timeline.record(
        Span::new(
            format!("processes worker {worker}"),
            "crash (abort)",
            Activity::Other,
            timeline.offset(started.into_std()),
            timeline.offset(ended.into_std()),
        )
        .with_outcome(SpanOutcome::Failed),
    );
    // Enough jobs at once that every slot takes one, the crashed slot included: it starts its replacement then.
    let after = futures::future::join_all(
        (0..2 * workers).map(|_| executor.run_job(BurnJob { units: after_units })),
    )
    .await;
    for (_, timing) in after.iter().flatten() {
        draw_job(
            timeline,
            ExecutorKind::Processes,
            timing,
            "after the crash".to_owned(),
            SpanOutcome::Ok,
        );
    }
    CrashFigures {
        job_failed,
        error,
        next_job_ok: after.iter().all(|result| matches!(result, Ok((Ok(_), _)))),
        workers_replaced: executor.stats().workers_replaced,
    }
}

/// More submitters than the pool has workers and queue slots, each submitting one job at once.
async fn saturate(
    workers: NonZeroUsize,
    job_cpu: Duration,
    timeline: &Timeline,
) -> Result<SaturationFigures, LabError> {
    let queue_capacity = workers;
    let pool = CpuPool::new(PoolConfig {
        queue_capacity,
        ..PoolConfig::with_workers(workers)
    })
    .map_err(LabError::Pool)?;
    let submitters = 3 * (workers.get() + queue_capacity.get());
    let lanes: Vec<String> = (0..submitters)
        .map(|index| format!("submitter {index}"))
        .collect();
    timeline.set_lane_order(&lanes);
    let units = InferenceCost::cpu(job_cpu / 2).work_units();
    let samples: Arc<Mutex<Vec<QueueSample>>> = Arc::default();
    let stop = CancellationToken::new();
    let started = Instant::now();
    // Polled by this task alongside the submissions, so it needs no task of its own and ends with them.
    let sampler = sample_queue(pool.clone(), Arc::clone(&samples), stop.clone(), started);

    let submissions = (0..submitters).map(|index| {
        let pool = pool.clone();
        let timeline = timeline.clone();
        async move {
            let submitted = Instant::now();
            let handle = pool
                .enqueue(move |job: &JobContext| {
                    burn(BurnJob { units }, &|| job.is_cancelled()).is_ok()
                })
                .await?;
            let slot_wait = submitted.elapsed();
            let (_, timing) = handle.timed().await?;
            let lane = format!("submitter {index}");
            timeline.record(Span::new(
                lane.clone(),
                "waiting",
                Activity::Other,
                timeline.offset(timing.queued_at),
                timeline.offset(timing.started_at),
            ));
            timeline.record(Span::new(
                lane,
                format!("on worker {}", timing.worker_index + 1),
                Activity::Infer,
                timeline.offset(timing.started_at),
                timeline.offset(timing.finished_at),
            ));
            Ok::<_, PoolError>((slot_wait, timing.queue_wait()))
        }
    });
    // While the submitters wait, the queue is full: a non-waiting submission is refused.
    let refusal = async {
        tokio::time::sleep(job_cpu / 4).await;
        matches!(
            pool.try_submit(|_: &JobContext| ()),
            Err(PoolError::Overloaded { .. })
        )
    };
    let measured = async {
        let measured = tokio::join!(futures::future::join_all(submissions), refusal);
        stop.cancel();
        measured
    };
    let ((results, try_submit_refused), ()) = tokio::join!(measured, sampler);
    pool.shutdown().await;

    let waits: Vec<(Duration, Duration)> = results.into_iter().filter_map(Result::ok).collect();
    let samples = samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(SaturationFigures {
        workers: workers.get(),
        queue_capacity: queue_capacity.get(),
        submitters,
        max_queued: samples
            .iter()
            .map(|sample| sample.queued)
            .max()
            .unwrap_or(0),
        max_running: samples
            .iter()
            .map(|sample| sample.running)
            .max()
            .unwrap_or(0),
        submitters_blocked: waits
            .iter()
            .filter(|(slot_wait, _)| *slot_wait >= Duration::from_millis(1))
            .count(),
        max_submit_wait_ms: millis(
            waits
                .iter()
                .map(|(slot_wait, _)| *slot_wait)
                .max()
                .unwrap_or_default(),
        ),
        max_queue_wait_ms: millis(
            waits
                .iter()
                .map(|(_, queue_wait)| *queue_wait)
                .max()
                .unwrap_or_default(),
        ),
        try_submit_refused,
        sampled_at_ms: thin(&samples).iter().map(|sample| sample.at_ms).collect(),
        queued_over_time: thin(&samples).iter().map(|sample| sample.queued).collect(),
        running_over_time: thin(&samples).iter().map(|sample| sample.running).collect(),
    })
}

async fn sample_queue(
    pool: CpuPool,
    samples: Arc<Mutex<Vec<QueueSample>>>,
    stop: CancellationToken,
    started: Instant,
) {
    loop {
        let stats = pool.stats();
        samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(QueueSample {
                at_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                queued: stats.queued,
                running: stats.running,
            });
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

/// At most [`MAX_SAMPLES`] samples, evenly spaced, keeping the first and the last.
fn thin(samples: &[QueueSample]) -> Vec<QueueSample> {
    if samples.len() <= MAX_SAMPLES {
        return samples.to_vec();
    }
    (0..MAX_SAMPLES)
        .map(|index| samples[index * (samples.len() - 1) / (MAX_SAMPLES - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64) -> QueueSample {
        QueueSample {
            at_ms,
            queued: at_ms,
            running: 1,
        }
    }

    #[test]
    fn thinning_keeps_the_first_and_last_samples_and_at_most_the_maximum() {
        let samples: Vec<QueueSample> = (0..1000).map(sample).collect();
        let thinned = thin(&samples);
        assert_eq!(thinned.len(), MAX_SAMPLES);
        assert_eq!(thinned.first().map(|sample| sample.at_ms), Some(0));
        assert_eq!(thinned.last().map(|sample| sample.at_ms), Some(999));
        let few: Vec<QueueSample> = (0..3).map(sample).collect();
        assert_eq!(thin(&few), few);
    }

    fn executor(executor: ExecutorKind, speedup: f64) -> ExecutorFigures {
        ExecutorFigures {
            executor,
            description: String::new(),
            total_ms: 2000.0 / speedup,
            speedup,
            mean_job_ms: 250.0,
            failed: 0,
        }
    }

    fn textbook_parallelism(cores: usize, threads_speedup: f64) -> Measured {
        Measured {
            cores,
            jobs: 4 * cores,
            job_cpu_ms: 250.0,
            executors: vec![
                executor(ExecutorKind::Inline, 1.0),
                executor(ExecutorKind::GlobalLock, 1.01),
                executor(ExecutorKind::Threads, threads_speedup),
                executor(ExecutorKind::Processes, threads_speedup * 0.97),
            ],
            global_lock_handoffs: 400,
            overhead: OverheadFigures {
                round_trips: 200,
                threads_us: 12.0,
                processes_us: Some(85.0),
                explanation: String::new(),
            },
            crash: Some(CrashFigures {
                job_failed: true,
                error: "crashed".to_owned(),
                next_job_ok: true,
                workers_replaced: 1,
            }),
            saturation: SaturationFigures {
                workers: cores,
                queue_capacity: cores,
                submitters: 12,
                max_queued: 10,
                max_running: cores as u64,
                submitters_blocked: 8,
                max_submit_wait_ms: 300.0,
                max_queue_wait_ms: 500.0,
                try_submit_refused: true,
                sampled_at_ms: vec![0, 5],
                queued_over_time: vec![10, 9],
                running_over_time: vec![2, 2],
            },
        }
    }

    #[test]
    fn parallelism_passes_a_textbook_run_and_the_threshold_scales_with_cores() {
        let verdict = judge(&textbook_parallelism(2, 1.9));
        assert!(verdict.pass, "{}", verdict.reason);
        // 1.9x is a pass on 2 cores (at least 1.8x) and a fail on 4 (at least 3.6x).
        let verdict = judge(&textbook_parallelism(4, 1.9));
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("at least 3.60x on 4 cores"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn parallelism_fails_when_the_gil_model_speeds_up_or_a_crash_is_not_contained() {
        let mut measured = textbook_parallelism(2, 1.9);
        measured.executors[1] = executor(ExecutorKind::GlobalLock, 1.5);
        assert!(!judge(&measured).pass);

        let mut measured = textbook_parallelism(2, 1.9);
        if let Some(crash) = &mut measured.crash {
            crash.next_job_ok = false;
        }
        assert!(!judge(&measured).pass);

        let mut measured = textbook_parallelism(2, 1.9);
        measured.crash = None;
        measured.overhead.processes_us = None;
        let verdict = judge(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("not measured"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn parallelism_fails_when_the_pool_never_pushed_back() {
        let mut measured = textbook_parallelism(2, 1.9);
        measured.saturation.submitters_blocked = 0;
        measured.saturation.try_submit_refused = false;
        assert!(!judge(&measured).pass);
    }
}
