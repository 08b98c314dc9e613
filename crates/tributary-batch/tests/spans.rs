//! A batch question's spans, in a test binary of its own: the spans go to a subscriber set as this thread's
//! default, and whether a call site is wanted is cached for the whole process, so another test running beside
//! this one (without a subscriber) could cache "never" for the spans it needs. Alone in its process, it cannot.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;
use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{ClientOptions, SourceClient};
use tributary_agent::infer::InferenceCost;
use tributary_agent::{Agent, AgentSettings, SourcesConfig};
use tributary_batch::{
    BatchInput, BatchSettings, BatchStats, InputFormat, Shutdown, Store, run_batch,
};
use tributary_sim::{SimConfig, SimServer, cities, city_named_in};
use url::Url;

#[tokio::test(flavor = "current_thread")]
async fn each_batch_question_is_a_trace_of_its_own_with_its_fetches_and_jobs() {
    let services = SimServer::start(
        "127.0.0.1:0".parse().expect("valid address"),
        SimConfig::instant(),
    )
    .await
    .expect("start the simulated services");
    let base = Url::parse(&services.base_url()).expect("the simulator's url parses");
    let settings = AgentSettings {
        inference_cost: InferenceCost::free(),
        places: Arc::new(city_named_in),
        ..AgentSettings::default()
    };
    let pool =
        CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
    let client = SourceClient::new(ClientOptions::default()).expect("client");
    let agent = Agent::new(
        client,
        Executor::from_pool(pool),
        SourcesConfig::all_kinds_at(&base).sources,
        settings,
    );
    let directory = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&directory.path().join("answers.db")).expect("open the store");
    let questions: String = cities()
        .iter()
        .take(3)
        .enumerate()
        .map(|(index, city)| format!("Weather in {} and news about topic{index}?\n", city.name))
        .collect();
    let input = BatchInput::from_reader(
        std::io::Cursor::new(questions.into_bytes()),
        InputFormat::Text,
    );
    let batch = BatchSettings {
        io_concurrency: NonZeroUsize::new(4).expect("4"),
        infer_concurrency: NonZeroUsize::new(2).expect("2"),
        store_batch_rows: NonZeroUsize::new(8).expect("8"),
        store_batch_interval: Duration::from_millis(20),
    };

    let spans = SpansInMemory::start();
    let summary = run_batch(
        &agent,
        &batch,
        input,
        store,
        Arc::new(BatchStats::new()),
        Shutdown::new(),
    )
    .await
    .expect("run");
    assert_eq!(summary.stats.ok, 3);
    let finished = spans.finished();
    let questions: Vec<_> = finished
        .iter()
        .filter(|span| span.name == "question")
        .collect();
    assert_eq!(questions.len(), 3, "one span per question");
    for question in questions {
        assert_eq!(
            question.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "a root"
        );
        assert_eq!(text(question, "status"), "ok");
        let id = question.span_context.span_id();
        let children: Vec<&str> = finished
            .iter()
            .filter(|span| span.parent_span_id == id)
            .map(|span| &*span.name)
            .collect();
        assert!(children.contains(&"source.fetch"), "{children:?}");
        assert!(children.contains(&"pool.job"), "{children:?}");
    }
}

/// Spans recorded on this thread (as its default subscriber) go to OpenTelemetry's in-memory exporter until the
/// value is dropped. Run the test on a current-thread runtime so that every task's spans are made here.
struct SpansInMemory {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

impl SpansInMemory {
    fn start() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tributary-test")));
        let default = tracing::subscriber::set_default(subscriber);
        // Whether a span is wanted is cached per call site for the whole process: ask every call site again.
        tracing::callsite::rebuild_interest_cache();
        Self {
            exporter,
            provider,
            _default: default,
        }
    }

    /// The spans that have ended so far.
    fn finished(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush the spans");
        self.exporter
            .get_finished_spans()
            .expect("the finished spans")
    }
}

/// A span attribute as text (empty when absent).
fn text(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|KeyValue { key: name, .. }| name.as_str() == key)
        .map(|KeyValue { value, .. }| Value::to_string(value))
        .unwrap_or_default()
}
