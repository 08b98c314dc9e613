//! Benchmark: the overhead of a fail-fast group and of settle, against a bare tokio `JoinSet`.
//!
//! - **Overhead**: spawns and joins 100,000 trivial children on a multi-thread runtime with 2 workers, several
//!   rounds each, and prints the best round's total and its cost per child. The bare `JoinSet` line is the floor:
//!   the difference is what naming, cancellation, error collection, the value channel and the structure
//!   (self-removal, the task-local of the enclosing group) cost per child. Target: within 2x of the floor.
//! - **Memory**: a long-lived group runs 1,000,000 short children one after another; its resident memory is
//!   sampled as it goes. A group that kept finished children until its end would grow by the million. Twice:
//!   an `OwnedGroup`, then a `Supervisor` whose every other child fails (a failure is reported, then forgotten).
//!
//! Run with `cargo bench -p tributary --bench group` (`-- --quick` for a short run, `-- --memory` for the memory
//! part alone: it measures no time, so it means something on a busy machine too).

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tributary::group::{
    GroupConfig, Outcome, OwnedGroup, SettleConfig, Supervisor, SupervisorConfig, scope, settle,
};

const CHILDREN: usize = 100_000;
const ROUNDS: usize = 5;
const SEQUENTIAL_CHILDREN: usize = 1_000_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the benchmark runtime");
    let flag = |name: &str| std::env::args().any(|argument| argument == name);
    let sequential = if flag("--quick") {
        SEQUENTIAL_CHILDREN / 10
    } else {
        SEQUENTIAL_CHILDREN
    };
    if !flag("--memory") {
        overhead(&runtime);
        println!();
    }
    println!("memory: one long-lived group running {sequential} short children one after another");
    runtime.block_on(children_one_after_another(sequential));
    println!();
    println!(
        "memory: one supervisor running {sequential} short children one after another, every other one failing"
    );
    runtime.block_on(supervised_one_after_another(sequential));
}

/// Spawns and joins trivial children in a `JoinSet`, a fail-fast group and settle, interleaved, best of
/// `ROUNDS`.
fn overhead(runtime: &Runtime) {
    println!(
        "group bench: {CHILDREN} trivial children, 2 worker threads, best of {ROUNDS} rounds, interleaved"
    );
    // Rounds go round the three, so a busy spell of the machine hits them all alike.
    let mut best = [Duration::MAX; 3];
    for _ in 0..ROUNDS {
        best[0] = best[0].min(time(runtime, bare_join_set()));
        best[1] = best[1].min(time(runtime, fail_fast_group()));
        best[2] = best[2].min(time(runtime, settle_all()));
    }
    report("bare tokio JoinSet (reference)", best[0]);
    report("fail-fast group (scope + spawn)", best[1]);
    report("settle (collect-all)", best[2]);
    let ratio = |index: usize| best[index].as_secs_f64() / best[0].as_secs_f64();
    println!(
        "per child against the JoinSet: fail-fast group {:.2}x, settle {:.2}x (target <= 2x)",
        ratio(1),
        ratio(2)
    );
}

/// Spawns `count` children into one owned group, each awaited before the next, sampling resident memory.
async fn children_one_after_another(count: usize) {
    let background = OwnedGroup::<String>::new();
    let group = background.group();
    let samples = 5;
    println!("{:>10}  {:>10}  {:>8}", "children", "RSS MB", "running");
    println!("{:>10}  {:>10.1}  {:>8}", 0, rss_mb(), background.running());
    for index in 0..count {
        let child = group
            .spawn("short", async move { Ok::<_, String>(index) })
            .await
            .expect("the group is open");
        child.await.expect("a short child returns its value");
        if (index + 1) % (count / samples) == 0 {
            // Let the child that just sent its value finish removing itself.
            tokio::task::yield_now().await;
            println!(
                "{:>10}  {:>10.1}  {:>8}",
                index + 1,
                rss_mb(),
                background.running()
            );
        }
    }
    background.shutdown().await.expect("nothing failed");
}

/// Spawns `count` children into one supervisor, each awaited before the next, every other one failing, sampling
/// resident memory.
async fn supervised_one_after_another(count: usize) {
    let supervisor = Supervisor::new(SupervisorConfig::new());
    let runs = supervisor.handle();
    let samples = 5;
    println!("{:>10}  {:>10}  {:>8}", "children", "RSS MB", "running");
    println!("{:>10}  {:>10.1}  {:>8}", 0, rss_mb(), supervisor.running());
    for index in 0..count {
        let child = runs
            .spawn("short", async move {
                if index % 2 == 0 {
                    Ok(index)
                } else {
                    Err("an odd child fails")
                }
            })
            .expect("the supervisor is open");
        let _value_or_failure = child.await;
        if (index + 1) % (count / samples) == 0 {
            // Let the child that just sent its outcome finish removing itself.
            tokio::task::yield_now().await;
            println!(
                "{:>10}  {:>10.1}  {:>8}",
                index + 1,
                rss_mb(),
                supervisor.running()
            );
        }
    }
    let stats = supervisor.shutdown().await;
    println!(
        "succeeded {}, failed {}, panicked {}, cancelled {}",
        stats.succeeded, stats.failed, stats.panicked, stats.cancelled
    );
}

/// Resident memory of this process, from `/proc/self/status` (Linux); 0 where it cannot be read.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kilobytes| kilobytes / 1024.0)
}

/// The floor: spawn and join with nothing else.
async fn bare_join_set() {
    let mut children = JoinSet::new();
    for index in 0..CHILDREN {
        children.spawn(async move { index });
    }
    let mut sum = 0_usize;
    while let Some(joined) = children.join_next().await {
        sum += joined.expect("a trivial child does not fail");
    }
    assert_eq!(sum, CHILDREN * (CHILDREN - 1) / 2);
}

/// The same children in one fail-fast group; handles are dropped, so the scope does the joining.
async fn fail_fast_group() {
    let result = scope(GroupConfig::new(), |group| async move {
        for index in 0..CHILDREN {
            group
                .spawn("child", async move { Ok::<_, String>(index) })
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    })
    .await;
    result.expect("no trivial child fails");
}

async fn settle_all() {
    let outcomes = settle(
        SettleConfig::new(),
        (0..CHILDREN).map(|index| async move { Ok::<_, String>(index) }),
    )
    .await;
    assert_eq!(outcomes.len(), CHILDREN);
    assert!(outcomes.iter().all(Outcome::is_ok));
}

fn time(runtime: &Runtime, run: impl Future<Output = ()>) -> Duration {
    let start = Instant::now();
    runtime.block_on(run);
    start.elapsed()
}

fn report(label: &str, total: Duration) {
    let per_child_nanos = total.as_nanos() / CHILDREN as u128;
    println!("{label:<34} total {total:>10.2?}   per child {per_child_nanos:>6} ns");
}
