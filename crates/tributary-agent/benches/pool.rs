//! Benchmark: the CPU pool's round-trip latency and its parallel efficiency.
//!
//! Run with `cargo bench -p tributary-agent --bench pool` (add `-- --quick` for a short run). Figures are medians
//! over many samples after a warm-up, so a little noise from other processes moves them less than a mean would.
//!
//! - **Round trip**: async code submits a trivial job and awaits its result, one call at a time. Measured with
//!   and without the workers' idle spin, on a current-thread and a multi-thread tokio runtime.
//!   For comparison, Python 3.11's `run_in_executor` round trip on the reference machine: ThreadPoolExecutor
//!   72 µs, ProcessPoolExecutor 310 µs.
//! - **Parallel efficiency**: N equal CPU jobs of about 50 ms (N = cores, on N workers), for two kernels (see
//!   [`Kernel`]), run one after another
//!   on the calling thread (the sequential baseline), then all at once on the pool (the concurrent path), and
//!   for reference on one plain thread each: the best the machine can do, whatever the pool.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tributary::pool::{CpuPool, JobContext, PoolConfig};
use tributary_agent::infer::{BurnJob, burn};

/// How much to measure: the full run, or a short one that only checks the benchmark works.
struct Settings {
    warm_up_calls: usize,
    measured_calls: usize,
    parallel_repetitions: usize,
    job_duration: Duration,
}

impl Settings {
    fn from_args() -> Self {
        let quick = std::env::args().any(|argument| argument == "--quick");
        if quick {
            Self {
                warm_up_calls: 500,
                measured_calls: 5_000,
                parallel_repetitions: 3,
                job_duration: Duration::from_millis(50),
            }
        } else {
            Self {
                warm_up_calls: 5_000,
                measured_calls: 50_000,
                parallel_repetitions: 7,
                job_duration: Duration::from_millis(50),
            }
        }
    }
}

fn main() {
    let settings = Settings::from_args();
    let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    println!("pool benchmark: {cores} cores");

    println!();
    println!(
        "round trip (submit a trivial job from async code, await the result; one call at a time)"
    );
    for runtime in [RuntimeFlavor::CurrentThread, RuntimeFlavor::MultiThread] {
        for idle_spin in [Duration::ZERO, PoolConfig::with_workers(cores).idle_spin] {
            let config = PoolConfig {
                idle_spin,
                ..PoolConfig::with_workers(cores)
            };
            let samples = round_trip_samples(&settings, runtime, config);
            let summary = Summary::of(samples);
            println!(
                "  round trip  runtime={:<14} idle_spin={:>5?}  median {:>8.2?}  p90 {:>8.2?}  p99 {:>8.2?}",
                runtime.label(),
                idle_spin,
                summary.median,
                summary.p90,
                summary.p99,
            );
        }
    }

    println!();
    for kernel in [Kernel::Inference, Kernel::SipHash] {
        let rounds = calibrate_rounds(kernel, settings.job_duration);
        println!();
        println!(
            "parallel efficiency, {} kernel ({cores} jobs of ~{:?} each, {cores} workers)",
            kernel.label(),
            settings.job_duration
        );
        let parallel = parallel_efficiency(&settings, cores, kernel, rounds);
        let jobs = cores.get() as u32;
        println!(
            "  sequential (one after another)  median {:>9.2?}  best {:>9.2?}  ({:.2?} per job)",
            parallel.sequential.median,
            parallel.sequential.best,
            parallel.sequential.median / jobs
        );
        for (label, times) in [
            ("concurrent (all on the pool)   ", &parallel.on_pool),
            (
                "reference (one std thread each)",
                &parallel.on_scoped_threads,
            ),
        ] {
            let speed_up = parallel.sequential.median.as_secs_f64() / times.median.as_secs_f64();
            let best_speed_up = parallel.sequential.best.as_secs_f64() / times.best.as_secs_f64();
            println!(
                "  {label} median {:>9.2?}  best {:>9.2?}  speed-up {speed_up:.2}x  \
             efficiency (speed-up / cores) {:.2}  (best runs: {:.2})",
                times.median,
                times.best,
                speed_up / f64::from(jobs),
                best_speed_up / f64::from(jobs),
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RuntimeFlavor {
    CurrentThread,
    MultiThread,
}

impl RuntimeFlavor {
    fn label(self) -> &'static str {
        match self {
            Self::CurrentThread => "current-thread",
            Self::MultiThread => "multi-thread",
        }
    }

    fn build(self) -> tokio::runtime::Runtime {
        let mut builder = match self {
            Self::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Self::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build().expect("build tokio runtime")
    }
}

/// Times each of `measured_calls` round trips, after `warm_up_calls` untimed ones.
fn round_trip_samples(
    settings: &Settings,
    runtime: RuntimeFlavor,
    config: PoolConfig,
) -> Vec<Duration> {
    let pool = CpuPool::new(config).expect("start pool");
    let runtime = runtime.build();
    let samples = runtime.block_on(async {
        for call in 0..settings.warm_up_calls {
            black_box(
                pool.submit(move |_: &JobContext| call)
                    .await
                    .expect("job runs"),
            );
        }
        let mut samples = Vec::with_capacity(settings.measured_calls);
        for call in 0..settings.measured_calls {
            let started = Instant::now();
            black_box(
                pool.submit(move |_: &JobContext| call)
                    .await
                    .expect("job runs"),
            );
            samples.push(started.elapsed());
        }
        samples
    });
    runtime.block_on(pool.shutdown());
    samples
}

struct Summary {
    best: Duration,
    median: Duration,
    p90: Duration,
    p99: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
        Self {
            best: samples[0],
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        }
    }
}

/// The CPU job of the parallel-efficiency runs.
///
/// Two kernels, because on a virtual machine the answer depends on the work: `inference` is the kernel tributary
/// actually runs (the simulated LLM's dot products, `tributary_agent::infer::burn`); `siphash` is a chain of SipHash
/// rounds, pure integer ALU work. When the two vCPUs are hyperthreads of one physical core on the host, two ALU-
/// bound threads share its execution ports and the plain-thread reference shows it as well as the pool does.
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Inference,
    SipHash,
}

impl Kernel {
    fn label(self) -> &'static str {
        match self {
            Kernel::Inference => "inference",
            Kernel::SipHash => "siphash",
        }
    }

    /// Runs `units` of work; the result depends on every unit, so none can be skipped.
    fn run(self, units: u64, seed: u64) -> u64 {
        match self {
            Kernel::SipHash => hash_chain(units, seed),
            Kernel::Inference => {
                let report =
                    burn(BurnJob { units }, &|| false).expect("an unstoppable burn finishes");
                let prefix = report.checksum.get(..16).unwrap_or(&report.checksum);
                u64::from_str_radix(prefix, 16).unwrap_or_default() ^ seed
            }
        }
    }
}

/// A chain of SipHash rounds, each depending on the last, so the compiler cannot skip any.
fn hash_chain(rounds: u64, seed: u64) -> u64 {
    let mut value = seed;
    for round in 0..rounds {
        let mut hasher = DefaultHasher::new();
        (value, round).hash(&mut hasher);
        value = hasher.finish();
    }
    value
}

/// How many units of `kernel` take about `target` on one core (median of a few trial runs).
fn calibrate_rounds(kernel: Kernel, target: Duration) -> u64 {
    const TRIAL_ROUNDS: u64 = 200_000;
    let mut trials: Vec<Duration> = (0..5)
        .map(|seed| {
            let started = Instant::now();
            black_box(kernel.run(TRIAL_ROUNDS, seed));
            started.elapsed()
        })
        .collect();
    trials.sort_unstable();
    let per_round = trials[trials.len() / 2].as_secs_f64() / TRIAL_ROUNDS as f64;
    (target.as_secs_f64() / per_round).round() as u64
}

/// Wall time of each path over several repetitions.
struct ParallelTimes {
    sequential: Summary,
    on_pool: Summary,
    on_scoped_threads: Summary,
}

/// Times the sequential baseline, the pool and the plain-threads reference, interleaved so that a change in
/// background load affects all three alike.
fn parallel_efficiency(
    settings: &Settings,
    cores: NonZeroUsize,
    kernel: Kernel,
    rounds: u64,
) -> ParallelTimes {
    let pool = CpuPool::new(PoolConfig::with_workers(cores)).expect("start pool");
    let runtime = RuntimeFlavor::MultiThread.build();
    let jobs = cores.get() as u64;
    // Warm-up: one pass of each, so thread start-up and page faults are not measured.
    let expected = run_sequential(kernel, jobs, rounds);
    assert_eq!(
        runtime.block_on(run_on_pool(&pool, kernel, jobs, rounds)),
        expected
    );
    assert_eq!(run_on_scoped_threads(kernel, jobs, rounds), expected);

    let mut sequential = Vec::with_capacity(settings.parallel_repetitions);
    let mut on_pool = Vec::with_capacity(settings.parallel_repetitions);
    let mut on_scoped_threads = Vec::with_capacity(settings.parallel_repetitions);
    for _ in 0..settings.parallel_repetitions {
        let started = Instant::now();
        black_box(run_sequential(kernel, jobs, rounds));
        sequential.push(started.elapsed());

        let started = Instant::now();
        black_box(runtime.block_on(run_on_pool(&pool, kernel, jobs, rounds)));
        on_pool.push(started.elapsed());

        let started = Instant::now();
        black_box(run_on_scoped_threads(kernel, jobs, rounds));
        on_scoped_threads.push(started.elapsed());
    }
    runtime.block_on(pool.shutdown());
    ParallelTimes {
        sequential: Summary::of(sequential),
        on_pool: Summary::of(on_pool),
        on_scoped_threads: Summary::of(on_scoped_threads),
    }
}

/// The sequential baseline: every job on the calling thread, one after another.
fn run_sequential(kernel: Kernel, jobs: u64, rounds: u64) -> Vec<u64> {
    (0..jobs).map(|seed| kernel.run(rounds, seed)).collect()
}

/// The ceiling: every job on its own freshly spawned thread, no pool. If this does not scale either, the
/// machine (busy or with shared cores) is the limit, not the pool.
fn run_on_scoped_threads(kernel: Kernel, jobs: u64, rounds: u64) -> Vec<u64> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..jobs)
            .map(|seed| scope.spawn(move || kernel.run(rounds, seed)))
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("hash job does not panic"))
            .collect()
    })
}

/// The concurrent path: every job submitted to the pool at once, results awaited together.
async fn run_on_pool(pool: &CpuPool, kernel: Kernel, jobs: u64, rounds: u64) -> Vec<u64> {
    let submitted =
        (0..jobs).map(|seed| pool.submit(move |_: &JobContext| kernel.run(rounds, seed)));
    join_all(submitted)
        .await
        .into_iter()
        .map(|result| result.expect("job runs"))
        .collect()
}
