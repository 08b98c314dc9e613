//! What the crate's tests share: the simulated services as the agent's sources, and spans kept in memory.

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;
use tributary_agent::places::PlaceFinder;
use tributary_agent::sources::{Source, SourcesConfig};
use tributary_sim::{SimConfig, SimServer, city_named_in};
use url::Url;

/// Starts the simulated services with `config` on a free loopback port, and returns them with the sources that
/// point at them and the simulator's gazetteer as the place finder.
pub(crate) async fn simulator_agent_settings(
    config: SimConfig,
) -> (SimServer, Vec<Source>, Arc<dyn PlaceFinder>) {
    let server = SimServer::start("127.0.0.1:0".parse().expect("valid address"), config)
        .await
        .expect("start the simulated services");
    let base = Url::parse(&server.base_url()).expect("the simulator's url parses");
    let places: Arc<dyn PlaceFinder> = Arc::new(city_named_in);
    (server, SourcesConfig::all_kinds_at(&base).sources, places)
}

/// Spans recorded on this thread (as its default subscriber) go to OpenTelemetry's in-memory exporter until the
/// value is dropped. Run the test on a current-thread runtime so that every task's spans are made here.
pub(crate) struct SpansInMemory {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

impl SpansInMemory {
    pub(crate) fn start() -> Self {
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
    pub(crate) fn finished(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush the spans");
        self.exporter
            .get_finished_spans()
            .expect("the finished spans")
    }
}

/// A span attribute as text (empty when absent).
pub(crate) fn text(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|KeyValue { key: name, .. }| name.as_str() == key)
        .map(|KeyValue { value, .. }| Value::to_string(value))
        .unwrap_or_default()
}
