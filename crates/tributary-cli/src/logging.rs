//! Logs go to stderr through `tracing`; `-v` raises the level, `RUST_LOG` overrides it.
//!
//! The engine and the agent record what they do as `tracing` spans (a question, its sources, each fetch and
//! attempt, cache lookups, pool jobs, groups and their children). With `--otlp-endpoint` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) and the `otlp` feature, those spans are also exported over OTLP/HTTP to a
//! collector, whatever `-v` says; with the `tokio-console` feature, tokio-console can attach.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::error::CliError;

/// What logging set up that must be ended before the process exits: the OTLP exporter's last batch.
#[derive(Debug, Default)]
pub struct Logging {
    #[cfg(feature = "otlp")]
    otlp: Option<otlp::Exporter>,
}

/// Where spans go, besides stderr.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// An OTLP/HTTP collector's base URL (`/v1/traces` is added).
    pub otlp_endpoint: Option<url::Url>,
}

/// Installs the subscriber. `verbosity` counts `-v` flags; `colour` is the printer's decision for stderr;
/// `expected` are the targets whose warnings the command causes on purpose (the lab crashes a worker process and
/// blocks a runtime to measure it), shown only from `-v` on or when `RUST_LOG` asks.
pub fn init(
    verbosity: u8,
    colour: bool,
    export: &Export,
    expected: &[&str],
) -> Result<Logging, CliError> {
    let default_level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut directives = default_level.to_owned();
    if verbosity == 0 {
        // The MCP SDK warns of every error it answers a client (a bad argument, a cancelled call), which the
        // client is told anyway; and of every line an MCP source's server writes that is not its protocol,
        // which that source's report says.
        directives.push_str(",rmcp=error");
        for target in expected {
            directives.push_str(&format!(",{target}=error"));
        }
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .with_filter(filter);
    #[cfg_attr(
        not(any(feature = "otlp", feature = "tokio-console")),
        expect(unused_mut, reason = "only the optional exporters add layers")
    )]
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![stderr.boxed()];
    #[cfg(feature = "otlp")]
    let otlp = match &export.otlp_endpoint {
        Some(endpoint) => {
            let exporter = otlp::Exporter::start(endpoint)?;
            layers.push(exporter.layer().boxed());
            Some(exporter)
        }
        None => None,
    };
    #[cfg(not(feature = "otlp"))]
    if let Some(endpoint) = &export.otlp_endpoint {
        return Err(CliError::argument(format!(
            "--otlp-endpoint {endpoint}: this tributary was built without the `otlp` feature"
        )));
    }
    #[cfg(feature = "tokio-console")]
    layers.push(console_subscriber::spawn().boxed());
    let registry = tracing_subscriber::registry().with(layers);
    // A second init (tests calling twice) is harmless: keep the first subscriber.
    let _ = registry.try_init();
    Ok(Logging {
        #[cfg(feature = "otlp")]
        otlp,
    })
}

/// `command` (a worker process of `--executor processes`) set up to export its spans where this process does,
/// and to continue each job's trace; unchanged when nothing is exported.
pub fn trace_workers(command: tributary::pool::WorkerCommand) -> tributary::pool::WorkerCommand {
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = otlp::ENDPOINT.get() {
        return command
            .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())
            .with_trace_context(tributary::pool::TraceContext {
                inject: otlp::traceparent,
            });
    }
    command
}

/// The span a worker process runs a job in: `worker.job`, continuing the parent's trace when it sent one.
pub fn worker_span(job: &str, trace: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("worker.job", job, pid = std::process::id());
    #[cfg(feature = "otlp")]
    if let Some(traceparent) = trace {
        otlp::continue_trace(&span, traceparent);
    }
    #[cfg(not(feature = "otlp"))]
    let _ = trace;
    span
}

impl Logging {
    /// Sends what is still buffered; returns a warning to show when the collector could not take it.
    pub fn finish(self) -> Option<String> {
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.otlp {
            return otlp.finish();
        }
        None
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::{Layer, Registry};

    use crate::error::{CliError, ErrorKind};

    /// The collector's base URL, once exporting: what the worker processes are told.
    pub static ENDPOINT: OnceLock<url::Url> = OnceLock::new();

    /// The current span's context as a W3C `traceparent`: what a worker process continues from.
    pub fn traceparent() -> Option<String> {
        let context = tracing::Span::current().context();
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove("traceparent")
    }

    /// Makes `span` a child of the span `traceparent` names (in another process).
    pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        // Fails only when the span is disabled or the layer is missing: then there is nothing to link.
        let _ = span.set_parent(parent);
    }

    /// The OTLP/HTTP exporter: spans are batched on the SDK's own thread and sent as protobuf.
    #[derive(Debug)]
    pub struct Exporter {
        provider: SdkTracerProvider,
        endpoint: String,
    }

    impl Exporter {
        /// Starts exporting to `base` + `/v1/traces`. Must run outside the async runtime: the HTTP client is
        /// a blocking one, on the exporter's thread.
        pub fn start(base: &url::Url) -> Result<Self, CliError> {
            if !matches!(base.scheme(), "http" | "https") {
                return Err(CliError::argument(format!(
                    "--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) must be an http or https URL, got {base}"
                ))
                .with_hint("an OpenTelemetry collector's OTLP/HTTP port, e.g. http://localhost:4318"));
            }
            let endpoint = format!("{}/v1/traces", base.as_str().trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(&endpoint)
                .build()
                .map_err(|error| {
                    CliError::caused(
                        ErrorKind::Environment,
                        format_args!("failed to set up the OTLP exporter for {endpoint}"),
                        &error,
                    )
                })?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("tributary").build())
                .build();
            let _ = ENDPOINT.set(base.clone());
            Ok(Self { provider, endpoint })
        }

        /// The layer that turns the spans (info and above, whatever `-v` says) into OpenTelemetry spans.
        pub fn layer(&self) -> impl Layer<Registry> + Send + Sync + 'static {
            let tracer = self.provider.tracer("tributary");
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO)
        }

        /// Flushes and stops the exporter.
        pub fn finish(self) -> Option<String> {
            let flushed = self.provider.force_flush();
            let stopped = self.provider.shutdown();
            flushed.and(stopped).err().map(|error| {
                // The SDK's message is a Rust debug dump of the HTTP client's error: it goes to the logs (-v),
                // and the user reads a sentence.
                tracing::info!(%error, "the OTLP exporter failed");
                let why = match error {
                    OTelSdkError::Timeout(after) => format!(
                        "the collector did not take them within {}",
                        tributary::trace::format_duration(after)
                    ),
                    OTelSdkError::AlreadyShutdown | OTelSdkError::InternalFailure(_) => {
                        "the collector could not be reached or refused them (-v shows the exporter's message)"
                            .to_owned()
                    }
                };
                format!(
                    "warning: failed to export the spans to {}: {why}\nhint: is an OpenTelemetry collector \
                     listening there (OTLP over HTTP, usually port 4318)? The command's own result is not affected",
                    self.endpoint
                )
            })
        }
    }
}
