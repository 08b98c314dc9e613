//! The public sources at their real URLs, over the internet: run only with `TRIBUTARY_LIVE=1` (docs/DEVELOPING.md,
//! Testing), otherwise each test says in one line what it skipped and passes. What the APIs answer
//! changes, so these check the shape of the outcome, not the words: the fixture tests (`public_sources.rs`)
//! check the words.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::time::Duration;

use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{ClientOptions, SourceClient};
use tributary_agent::infer::InferenceCost;
use tributary_agent::{Agent, AgentSettings, Question, SourceStatus, SourcesConfig};

/// Whether the live tests run; prints what is skipped when they do not.
fn live(what: &str) -> bool {
    let live = std::env::var("TRIBUTARY_LIVE").is_ok_and(|value| value == "1");
    if !live {
        // Straight to the process's stderr: the test harness captures `println!` and `eprintln!` of a passing
        // test, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: {what} (set TRIBUTARY_LIVE=1 to ask the real APIs)"
        );
    }
    live
}

#[tokio::test]
async fn the_real_public_apis_answer_through_the_agent() {
    if !live("asking Open-Meteo, HN Algolia and Wikipedia over the internet") {
        return;
    }
    let settings = AgentSettings {
        inference_cost: InferenceCost::free(),
        deadline: Duration::from_secs(30),
        per_source_timeout: Duration::from_secs(20),
        ..AgentSettings::default()
    };
    let pool = CpuPool::new(PoolConfig::with_workers(NonZeroUsize::MIN)).expect("a pool");
    let client = SourceClient::new(ClientOptions::default()).expect("a client");
    let agent = Agent::new(
        client,
        Executor::from_pool(pool),
        SourcesConfig::public().sources,
        settings,
    );
    let question = Question::new("Will it rain in Lyon, and what is the global interpreter lock?")
        .expect("a valid question");
    let run = agent.ask(&question).await;
    for source in &run.report.sources {
        assert!(
            matches!(source.status, SourceStatus::Ok | SourceStatus::NoResult),
            "{}: {:?} {:?}",
            source.name,
            source.status,
            source.error
        );
    }
    let weather = &run.report.sources[0];
    assert_eq!(
        (weather.name.as_str(), weather.status),
        ("weather", SourceStatus::Ok)
    );
    let answer = run.report.answer.as_deref().expect("an answer");
    assert!(answer.contains("Current weather in Lyon"), "{answer}");

    let nowhere = Question::new("Is it sunny in Qwxzyvbnm?").expect("a valid question");
    let run = agent.ask(&nowhere).await;
    assert_eq!(
        run.report.sources[0].status,
        SourceStatus::NoResult,
        "{:#?}",
        run.report
    );
}
