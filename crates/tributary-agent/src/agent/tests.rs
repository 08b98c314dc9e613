//! A watched run against the simulated services: its live timeline, and cancelling it.

use std::num::NonZeroUsize;
use std::time::Duration;

use tributary::pool::{CpuPool, PoolConfig};
use tributary::source::ClientOptions;
use tributary::trace::{Activity, Outcome as SpanOutcome, Update};
use tributary_sim::{SimConfig, SimServer};

use super::*;
use crate::report::{AnswerStatus, SourceFailure, SourceStatus};
use crate::test_support::simulator_agent_settings;

const QUESTION: &str = "What is the weather in Paris, and the news about structured concurrency?";

async fn agent(extra_query: ExtraQuery) -> (Agent, SimServer) {
    let (services, sources, places) = simulator_agent_settings(SimConfig::instant()).await;
    let settings = AgentSettings {
        inference_cost: InferenceCost::free(),
        places,
        extra_query,
        deadline: Duration::from_secs(30),
        per_source_timeout: Duration::from_secs(30),
        ..AgentSettings::default()
    };
    let pool =
        CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
    let client = SourceClient::new(ClientOptions::default()).expect("client");
    (
        Agent::new(client, Executor::from_pool(pool), sources, settings),
        services,
    )
}

fn question() -> Question {
    Question::new(QUESTION).expect("a valid question")
}

#[tokio::test]
async fn a_watched_run_tells_its_watchers_what_began_and_ended() {
    let (agent, _services) = agent(Vec::new()).await;
    let timeline = Timeline::live(std::time::Instant::now());
    let run = agent
        .ask_watched(
            &question(),
            RunMode::Concurrent,
            timeline.clone(),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(run.report.status, AnswerStatus::Ok, "{:#?}", run.report);
    let updates = timeline.updates_since(0);
    let began: Vec<(u64, &str, Activity)> = updates
        .iter()
        .filter_map(|update| match update {
            Update::Began {
                id, name, activity, ..
            } => Some((*id, name.as_str(), *activity)),
            _ => None,
        })
        .collect();
    // A fetch and an inference for each of the three sources.
    assert_eq!(began.len(), 6, "{updates:#?}");
    assert_eq!(
        began
            .iter()
            .filter(|(_, _, activity)| *activity == Activity::Infer)
            .count(),
        3
    );
    // An inference in progress is on the lane of the worker that runs it, and names its source.
    let inferences: Vec<(&str, Option<&str>)> = updates
        .iter()
        .filter_map(|update| match update {
            Update::Began {
                lane,
                activity: Activity::Infer,
                subject,
                ..
            } => Some((lane.as_str(), subject.as_deref())),
            _ => None,
        })
        .collect();
    for (lane, subject) in &inferences {
        assert!(lane.starts_with("worker "), "{inferences:?}");
        assert!(
            subject.is_some_and(|source| ["weather", "news", "kb"].contains(&source)),
            "{inferences:?}"
        );
    }
    // Everything that began ended, well.
    for (id, name, _) in &began {
        assert!(
            updates.iter().any(|update| matches!(
                update,
                Update::Closed { id: closed, outcome: SpanOutcome::Ok, .. } if closed == id
            )),
            "{name} never closed: {updates:#?}"
        );
    }
    // The spans are there too, as on any timeline.
    assert_eq!(
        updates
            .iter()
            .filter(|update| matches!(update, Update::Span(_)))
            .count(),
        timeline.spans().len()
    );
}

#[tokio::test]
async fn cancelling_a_watched_run_stops_and_joins_its_steps() {
    let hang = vec![(
        "news".to_owned(),
        vec![("fault".to_owned(), "hang".to_owned())],
    )];
    let (agent, _services) = agent(hang).await;
    let timeline = Timeline::live(std::time::Instant::now());
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let agent = agent.clone();
        let timeline = timeline.clone();
        let cancel = cancel.clone();
        async move {
            agent
                .ask_watched(&question(), RunMode::Concurrent, timeline, cancel)
                .await
        }
    });
    // Wait until the others have answered and news hangs.
    let mut cursor = 0;
    loop {
        timeline.wait_for_update(cursor).await;
        cursor = timeline.updates_since(0).len();
        let closed = timeline
            .updates_since(0)
            .iter()
            .filter(|update| matches!(update, Update::Closed { .. }))
            .count();
        // weather: fetch + infer, kb: fetch + infer.
        if closed >= 4 {
            break;
        }
    }
    cancel.cancel();
    let run = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("a cancelled run returns long before its 30 s deadline")
        .expect("the run does not panic");
    let news = run
        .report
        .sources
        .iter()
        .find(|source| source.name == "news")
        .expect("news is reported");
    assert_eq!(news.status, SourceStatus::Failed);
    assert_eq!(news.error.as_deref(), Some("cancelled"));
    assert_eq!(news.failure, Some(SourceFailure::Cancelled));
    // The hanging fetch ended as cancelled on the timeline before the run returned: the step was joined.
    let updates = timeline.updates_since(0);
    let news_fetch = updates
        .iter()
        .find_map(|update| match update {
            Update::Began { id, lane, .. } if lane == "source news" => Some(*id),
            _ => None,
        })
        .expect("the news fetch began");
    assert!(
        updates.iter().any(|update| matches!(
            update,
            Update::Closed { id, outcome: SpanOutcome::Cancelled, .. } if *id == news_fetch
        )),
        "{updates:#?}"
    );
}

#[tokio::test]
async fn a_cancelled_sequential_run_stops_at_the_step_it_is_on() {
    let hang = vec![(
        "weather".to_owned(),
        vec![("fault".to_owned(), "hang".to_owned())],
    )];
    let (agent, _services) = agent(hang).await;
    let cancel = CancellationToken::new();
    let stopper = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel.cancel();
        }
    });
    let run = tokio::time::timeout(
        Duration::from_secs(10),
        agent.ask_watched(
            &question(),
            RunMode::Sequential,
            Timeline::live(std::time::Instant::now()),
            cancel,
        ),
    )
    .await
    .expect("a cancelled run returns long before its deadline");
    stopper.await.expect("the stopper ends");
    assert!(
        run.report
            .sources
            .iter()
            .all(|source| source.error.as_deref() == Some("cancelled")
                && source.failure == Some(SourceFailure::Cancelled)),
        "{:#?}",
        run.report.sources
    );
}

/// A source that keeps failing opens its circuit: the questions after it are answered without asking it, each
/// report saying `circuit_open`, and the timeline marks it.
#[tokio::test]
async fn a_source_that_keeps_failing_is_not_asked_once_its_circuit_opens() {
    let fault = vec![(
        "news".to_owned(),
        vec![("fault".to_owned(), "error".to_owned())],
    )];
    let (agent, _services) = agent(fault).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let run = agent.ask(&question()).await;
        let news = run
            .report
            .sources
            .iter()
            .find(|source| source.name == "news")
            .expect("news is reported")
            .clone();
        statuses.push((news.status, news.attempts));
        assert_eq!(
            run.report.status,
            AnswerStatus::Degraded,
            "{:#?}",
            run.report
        );
        last = Some((run, news));
    }
    // 3 failed attempts (2 retries), then 2 more open the circuit (5 calls, all failed), then none at all.
    assert_eq!(
        statuses,
        vec![
            (SourceStatus::Failed, 3),
            (SourceStatus::CircuitOpen, 2),
            (SourceStatus::CircuitOpen, 0)
        ]
    );
    let (run, news) = last.expect("three runs");
    assert_eq!(news.failure, Some(SourceFailure::CircuitOpen));
    let error = news.error.expect("a reason");
    assert!(
        error.starts_with("not asked: its circuit is open after repeated failures (next probe "),
        "{error}"
    );
    assert!(
        run.timeline
            .events()
            .iter()
            .any(|event| event.lane == "source news" && event.name == "circuit open"),
        "{:#?}",
        run.timeline.events()
    );
    let circuits = agent.client().circuits();
    let news_circuit = circuits
        .iter()
        .find(|circuit| circuit.source == "news")
        .expect("news has a breaker");
    assert_eq!(news_circuit.state, tributary::source::CircuitState::Open);
}

/// A response served from the cache paid its full inference again on every question: the same response to the
/// same question is now inferred once, and the second run says so.
#[tokio::test]
async fn a_cached_response_is_not_inferred_again_for_the_same_question() {
    let (agent, _services) = agent(Vec::new()).await;
    let first = agent.ask(&question()).await;
    let second = agent.ask(&question()).await;
    assert_eq!(second.report.status, first.report.status);
    assert_eq!(second.report.answer, first.report.answer);
    let kept: Vec<&str> = second
        .report
        .sources
        .iter()
        .filter(|source| source.status == SourceStatus::Ok)
        .map(|source| {
            assert!(source.cached, "{source:?}");
            assert_eq!(source.infer_ms, Some(0.0), "{source:?}");
            assert_eq!(source.worker, None, "{source:?}");
            source.name.as_str()
        })
        .collect();
    assert!(!kept.is_empty(), "{:#?}", second.report);
    let spans = second.timeline.spans();
    for name in kept {
        assert!(
            spans
                .iter()
                .any(|span| span.name == format!("infer {name} (cached)")),
            "no cached inference of {name} on the timeline: {spans:?}"
        );
    }
    // Another agent (a fresh cache, as --compare uses) infers again.
    let fresh = agent.with_fresh_cache().expect("a client");
    let third = fresh.ask(&question()).await;
    assert!(
        third
            .report
            .sources
            .iter()
            .filter(|source| source.status == SourceStatus::Ok)
            .all(|source| source.worker.is_some())
    );
}
