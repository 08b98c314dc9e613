//! Fan out to several sources at once under one deadline, and keep what arrived in time.
//!
//! Three "sources" answer after 20 ms, 60 ms and 5 s. With a 200 ms deadline, `settle` returns after 200 ms with
//! two answers and a "deadline exceeded" for the third: partial results, never a hang. Each source also gets a
//! per-call timeout inside the deadline.
//!
//! Run: `cargo run -p tributary --example fan_out`

use std::time::Duration;

use tributary::group::{Deadline, Outcome, SettleConfig, settle};

/// A stand-in for an HTTP call that takes `latency`.
async fn ask(source: &'static str, latency: Duration) -> Result<String, String> {
    tokio::time::sleep(latency).await;
    Ok(format!("{source} answered after {latency:?}"))
}

#[tokio::main]
async fn main() {
    let deadline = Deadline::after(Duration::from_millis(200));
    let sources = [
        ("weather", Duration::from_millis(20)),
        ("news", Duration::from_millis(60)),
        ("knowledge base", Duration::from_secs(5)),
    ];
    let config = SettleConfig::new()
        .deadline(deadline)
        .per_task_timeout(Duration::from_secs(1));
    let outcomes = settle(
        config,
        sources.map(|(source, latency)| ask(source, latency)),
    )
    .await;

    let mut answered = 0;
    for ((source, _), outcome) in sources.iter().zip(&outcomes) {
        match outcome {
            Outcome::Ok(answer) => {
                answered += 1;
                println!("{answer}");
            }
            Outcome::TimedOut(elapsed) => println!("{source}: {elapsed}"),
            other => println!("{source}: {other:?}"),
        }
    }
    assert_eq!(answered, 2, "the two fast sources made it in time");
    assert!(matches!(outcomes[2], Outcome::TimedOut(_)));
}
