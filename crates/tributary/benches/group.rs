//! Benchmark: the overhead of a fail-fast group and of settle, against a bare tokio `JoinSet`.
//!
//! Spawns and joins 100,000 trivial children on a multi-thread runtime with 2 workers, several rounds each, and
//! prints the best round's total and its cost per child. The bare `JoinSet` line is the floor: the difference is
//! what naming, cancellation, error collection and the value channel cost per child.
//!
//! Run with `cargo bench -p tributary --bench group`.

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tributary::group::{GroupConfig, Outcome, SettleConfig, scope, settle};

const CHILDREN: usize = 100_000;
const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the benchmark runtime");

    println!("group bench: {CHILDREN} trivial children, 2 worker threads, best of {ROUNDS} rounds");
    report(
        "bare tokio JoinSet (reference)",
        best_of(&runtime, bare_join_set),
    );
    report(
        "fail-fast group (scope + spawn)",
        best_of(&runtime, fail_fast_group),
    );
    report("settle (collect-all)", best_of(&runtime, settle_all));
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

fn best_of<Run, RunFuture>(runtime: &Runtime, run: Run) -> Duration
where
    Run: Fn() -> RunFuture,
    RunFuture: Future<Output = ()>,
{
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            runtime.block_on(run());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn report(label: &str, total: Duration) {
    let per_child_nanos = total.as_nanos() / CHILDREN as u128;
    println!("{label:<34} total {total:>10.2?}   per child {per_child_nanos:>6} ns");
}
