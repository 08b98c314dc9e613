//! The `tracing` spans of a run, exported through OpenTelemetry's in-memory exporter: the tree an OTLP user
//! sees, with the right parents, across the tokio tasks of the fan-out and into the pool's worker threads.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use opentelemetry::trace::SpanId;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use tributary::pool::{CpuPool, PoolConfig};
use tributary::source::ClientOptions;
use tributary_sim::{Fault, SimConfig};

use super::*;
use crate::test_support::{SpansInMemory, simulator_agent_settings};

/// Asks `question` with every span exported to memory; the finished spans.
async fn exported_spans(config: SimConfig, question: &str) -> Vec<SpanData> {
    // Started first, so that only the run's spans are exported.
    let (services, sources, places) = simulator_agent_settings(config).await;
    let spans = SpansInMemory::start();
    let settings = AgentSettings {
        inference_cost: InferenceCost::free(),
        places,
        deadline: Duration::from_secs(30),
        per_source_timeout: Duration::from_secs(30),
        ..AgentSettings::default()
    };
    let pool =
        CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
    let client = SourceClient::new(ClientOptions::default()).expect("client");
    let agent = Agent::new(client, Executor::from_pool(pool), sources, settings);
    agent
        .ask(&Question::new(question).expect("a valid question"))
        .await;
    drop(agent);
    drop(services);
    spans.finished()
}

pub(crate) fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: name, .. }| name.as_str() == key)
        .map(|KeyValue { value, .. }| value)
}

pub(crate) fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(Value::to_string)
        .unwrap_or_default()
}

/// The spans by id, and the chain of names from a span up to the root.
struct Tree {
    by_id: HashMap<SpanId, SpanData>,
}

impl Tree {
    fn new(spans: Vec<SpanData>) -> Self {
        Self {
            by_id: spans
                .into_iter()
                .map(|span| (span.span_context.span_id(), span))
                .collect(),
        }
    }

    fn named(&self, name: &str) -> Vec<&SpanData> {
        self.by_id
            .values()
            .filter(|span| span.name == name)
            .collect()
    }

    fn parent(&self, span: &SpanData) -> Option<&SpanData> {
        self.by_id.get(&span.parent_span_id)
    }

    /// The nearest ancestor named `name`.
    fn ancestor(&self, span: &SpanData, name: &str) -> Option<&SpanData> {
        let mut current = self.parent(span);
        while let Some(span) = current {
            if span.name == name {
                return Some(span);
            }
            current = self.parent(span);
        }
        None
    }

    fn path(&self, span: &SpanData) -> Vec<String> {
        let mut names = vec![span.name.to_string()];
        let mut current = self.parent(span);
        while let Some(span) = current {
            names.push(span.name.to_string());
            current = self.parent(span);
        }
        names.reverse();
        names
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_ask_is_one_tree_question_sources_fetches_attempts_and_pool_jobs() {
    let spans = exported_spans(
        SimConfig::instant(),
        "What is the weather in Paris, and the news about structured concurrency?",
    )
    .await;
    let tree = Tree::new(spans);
    let questions = tree.named("question");
    assert_eq!(questions.len(), 1, "one question span");
    let question = questions[0];
    assert_eq!(
        question.parent_span_id,
        SpanId::INVALID,
        "the question is the root"
    );
    // Every span of the ask belongs to the question's trace: no other span starts a trace. The simulated
    // services run in this process too, and their server's work (a knowledge-base search as a blocking call)
    // makes spans in the server's own trace, under its long-lived groups, which are still open (so not
    // exported) when the test reads the spans.
    let trace_id = question.span_context.trace_id();
    for span in tree.by_id.values() {
        if span.span_context.trace_id() == trace_id {
            continue;
        }
        let mut top = span;
        while let Some(parent) = tree.parent(top) {
            top = parent;
        }
        assert_ne!(
            top.parent_span_id,
            SpanId::INVALID,
            "{} starts a trace of its own, apart from the question's ({})",
            top.name,
            tree.path(span).join(" > ")
        );
    }

    let sources = tree.named("source");
    let names: Vec<String> = sources.iter().map(|span| text(span, "source")).collect();
    assert!(names.contains(&"weather".to_owned()), "{names:?}");
    for source in &sources {
        // The fan-out: question → the settle group → its child task → the source.
        assert_eq!(
            tree.path(source),
            ["question", "group", "group.child", "source"],
            "{}",
            text(source, "source")
        );
        assert_eq!(text(source, "status"), "ok");
    }

    for fetch in tree.named("source.fetch") {
        let source = tree
            .ancestor(fetch, "source")
            .expect("a fetch inside its source");
        assert_eq!(text(fetch, "source"), text(source, "source"));
    }
    let attempts = tree.named("source.attempt");
    assert!(!attempts.is_empty());
    for attempt in attempts {
        assert!(tree.ancestor(attempt, "source.fetch").is_some());
        assert_eq!(text(attempt, "status"), "200");
    }

    // Inference ran on the pool's worker threads, inside the job's span, a child of the source that fetched.
    let jobs = tree.named("pool.job");
    assert_eq!(jobs.len(), sources.len(), "one inference per source");
    for job in jobs {
        assert_eq!(tree.parent(job).map(|parent| &*parent.name), Some("source"));
        assert_eq!(text(job, "job"), "infer");
        assert_eq!(text(job, "executor"), "threads");
        assert!(attribute(job, "worker").is_some(), "the worker is named");
        assert!(attribute(job, "queue_wait_ms").is_some());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_attempt_has_its_status_and_the_retry_that_followed() {
    let mut config = SimConfig::instant();
    config.weather = config.weather.with_fault(Fault::Error, 1.0);
    let spans = exported_spans(config, "What is the weather in Paris?").await;
    let tree = Tree::new(spans);
    let weather = tree
        .named("source")
        .into_iter()
        .find(|span| text(span, "source") == "weather")
        .expect("the weather's span");
    assert_eq!(text(weather, "status"), "failed");
    assert_eq!(text(weather, "failure"), "http_status");
    let mut attempts: Vec<&SpanData> = tree
        .named("source.attempt")
        .into_iter()
        .filter(|attempt| {
            tree.ancestor(attempt, "source").map(|s| text(s, "source"))
                == Some("weather".to_owned())
        })
        .collect();
    attempts.sort_by_key(|attempt| text(attempt, "attempt").parse::<u32>().unwrap_or(0));
    assert_eq!(attempts.len(), 3, "the first attempt and two retries");
    for attempt in &attempts {
        assert_eq!(text(attempt, "status"), "500");
    }
    for attempt in &attempts[..2] {
        assert_eq!(text(attempt, "retry"), "retried");
        assert!(attribute(attempt, "retry_delay_ms").is_some());
    }
    assert_eq!(text(attempts[2], "retry"), "retries_exhausted");
    let fetch = tree
        .ancestor(attempts[0], "source.fetch")
        .expect("the fetch");
    assert_eq!(text(fetch, "attempts"), "3");
    assert!(!text(fetch, "error").is_empty());
}
