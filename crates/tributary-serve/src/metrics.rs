//! `tributary serve`'s metrics, in the Prometheus (OpenMetrics) text format at `GET /metrics`.
//!
//! Counted as asks end, from the same `AgentReport` the client gets: asks by outcome and failed asks by their
//! failure kind, and per source its fetch latency, status, failure kind, retries and cache hits. Every label is
//! a kind's name from the report, never words from a message. Read at each scrape: asks in flight, and the CPU pool's queue
//! depth, busy workers and size, the async runtime's loop lag (`tributary::lag`: how late a 10 ms timer
//! fires; late means something blocked a runtime thread), and each source's circuit breaker (its state, and how
//! often it opened and changed state), from the HTTP client every ask shares.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tributary::lag::LagReport;
use tributary::pool::ExecutorStats;
use tributary::source::{CircuitReport, CircuitState};
use tributary_agent::AgentReport;

type Labels = Vec<(String, String)>;

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    asks: Family<Labels, Counter>,
    ask_failures: Family<Labels, Counter>,
    in_flight: Gauge,
    fetch_seconds: Family<Labels, Histogram>,
    source_statuses: Family<Labels, Counter>,
    source_failures: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    cache_hits: Family<Labels, Counter>,
    hedges: Family<Labels, Counter>,
    circuit_state: Family<Labels, Gauge>,
    circuit_opened: Family<Labels, Counter>,
    circuit_transitions: Family<Labels, Counter>,
    pool_queued: Gauge,
    pool_busy: Gauge,
    pool_workers: Gauge,
    lag_max: Gauge<f64, std::sync::atomic::AtomicU64>,
    lag_stalls: Gauge,
    admission_limit: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary");
        let asks = Family::<Labels, Counter>::default();
        registry.register(
            "asks",
            "Asks ended, by outcome: ok, degraded, failed (no answer), cancelled (the client left), rejected (over the in-flight bound), invalid (a bad request)",
            asks.clone(),
        );
        let ask_failures = Family::<Labels, Counter>::default();
        registry.register(
            "ask_failures",
            "Asks that ended without an answer, by the report's failure kind (no_source_answered, \
             no_inference_finished, required_source_failed, ...)",
            ask_failures.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("asks_in_flight", "Asks running now", in_flight.clone());
        // 5 ms to about 41 s.
        let fetch_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "source_fetch_seconds",
            "Time from a source's first request to its response or failure, all attempts included",
            fetch_seconds.clone(),
        );
        let source_statuses = Family::<Labels, Counter>::default();
        registry.register(
            "source_statuses",
            "Sources' ends per ask, by source and status (ok, failed, timed_out, skipped)",
            source_statuses.clone(),
        );
        let source_failures = Family::<Labels, Counter>::default();
        registry.register(
            "source_failures",
            "Sources' failures per ask, by source and the report's failure kind (connect, timed_out, deadline, \
             http_status, malformed, circuit_open, inference_timed_out, skipped, no_result, ...)",
            source_failures.clone(),
        );
        let retries = Family::<Labels, Counter>::default();
        registry.register(
            "source_retries",
            "Requests to a source beyond its first, per ask",
            retries.clone(),
        );
        let cache_hits = Family::<Labels, Counter>::default();
        registry.register(
            "source_cache_hits",
            "Answers served from the response cache",
            cache_hits.clone(),
        );
        let hedges = Family::<Labels, Counter>::default();
        registry.register(
            "source_hedges",
            "Hedged requests: a second identical request sent because a source's first was slow",
            hedges.clone(),
        );
        let circuit_state = Family::<Labels, Gauge>::default();
        registry.register(
            "source_circuit_state",
            "Each source's circuit breaker: 1 for its state now (closed, open, half_open), 0 for the others",
            circuit_state.clone(),
        );
        let circuit_opened = Family::<Labels, Counter>::default();
        registry.register(
            "source_circuit_opened",
            "Times a source's circuit opened (it kept failing, so it is not asked until a cool-down has passed)",
            circuit_opened.clone(),
        );
        let circuit_transitions = Family::<Labels, Counter>::default();
        registry.register(
            "source_circuit_transitions",
            "State changes of a source's circuit breaker, of every kind",
            circuit_transitions.clone(),
        );
        let pool_queued = Gauge::default();
        registry.register(
            "pool_queued_jobs",
            "Inference jobs waiting for a CPU worker",
            pool_queued.clone(),
        );
        let pool_busy = Gauge::default();
        registry.register(
            "pool_busy_workers",
            "CPU workers running a job",
            pool_busy.clone(),
        );
        let pool_workers = Gauge::default();
        registry.register("pool_workers", "CPU workers", pool_workers.clone());
        let lag_max = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "loop_lag_max_seconds",
            "The latest the async runtime's 10 ms timer fired since the server started",
            lag_max.clone(),
        );
        let lag_stalls = Gauge::default();
        registry.register(
            "loop_stalls",
            "Times the async runtime's timer fired 100 ms or more late since the server started",
            lag_stalls.clone(),
        );
        let admission_limit = Gauge::default();
        registry.register(
            "admission_limit",
            "Runs admitted at once now: adapts to how admitted runs fare, up to --max-in-flight",
            admission_limit.clone(),
        );
        Self {
            registry,
            asks,
            ask_failures,
            in_flight,
            fetch_seconds,
            source_statuses,
            source_failures,
            retries,
            cache_hits,
            hedges,
            circuit_state,
            circuit_opened,
            circuit_transitions,
            pool_queued,
            pool_busy,
            pool_workers,
            lag_max,
            lag_stalls,
            admission_limit,
        }
    }

    /// A run whose client went away before it ended.
    pub fn cancelled(&self) {
        self.asks.get_or_create(&outcome_label("cancelled")).inc();
    }

    /// An ask that ended without running: `rejected` or `invalid`.
    pub fn refused(&self, outcome: &str) {
        self.asks.get_or_create(&outcome_label(outcome)).inc();
    }

    /// An ask that ran, with what it reported.
    pub fn answered(&self, report: &AgentReport) {
        self.asks
            .get_or_create(&outcome_label(report.status.as_str()))
            .inc();
        if let Some(failure) = report.failure {
            self.ask_failures
                .get_or_create(&vec![("failure".to_owned(), failure.as_str().to_owned())])
                .inc();
        }
        for source in &report.sources {
            let name = vec![("source".to_owned(), source.name.clone())];
            if let Some(fetch_ms) = source.fetch_ms {
                self.fetch_seconds
                    .get_or_create(&name)
                    .observe(fetch_ms / 1000.0);
            }
            let mut status = name.clone();
            status.push(("status".to_owned(), source.status.as_str().to_owned()));
            self.source_statuses.get_or_create(&status).inc();
            if let Some(failure) = source.failure {
                let mut failed = name.clone();
                failed.push(("failure".to_owned(), failure.as_str().to_owned()));
                self.source_failures.get_or_create(&failed).inc();
            }
            if source.attempts > 1 {
                self.retries
                    .get_or_create(&name)
                    .inc_by(u64::from(source.attempts - 1));
            }
            if source.cached {
                self.cache_hits.get_or_create(&name).inc();
            }
            if source.hedges > 0 {
                self.hedges
                    .get_or_create(&name)
                    .inc_by(u64::from(source.hedges));
            }
        }
    }

    /// The admission limit now.
    pub fn set_admission_limit(&self, limit: usize) {
        self.admission_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Asks running now.
    pub fn set_in_flight(&self, count: usize) {
        self.in_flight.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the pool's gauges read from `pool`, the loop lag from `lag` and the circuit
    /// breakers from `circuits` now.
    pub fn render(
        &self,
        pool: &ExecutorStats,
        lag: &LagReport,
        circuits: &[CircuitReport],
    ) -> String {
        for circuit in circuits {
            for state in [
                CircuitState::Closed,
                CircuitState::Open,
                CircuitState::HalfOpen,
            ] {
                let labels = vec![
                    ("source".to_owned(), circuit.source.clone()),
                    ("state".to_owned(), state.as_str().to_owned()),
                ];
                self.circuit_state
                    .get_or_create(&labels)
                    .set(i64::from(circuit.state == state));
            }
            let name = vec![("source".to_owned(), circuit.source.clone())];
            // The client counts; the counters catch up with it.
            let catch_up = |counter: &Counter, total: u64| {
                counter.inc_by(total.saturating_sub(counter.get()));
            };
            catch_up(&self.circuit_opened.get_or_create(&name), circuit.opened);
            catch_up(
                &self.circuit_transitions.get_or_create(&name),
                circuit.transitions,
            );
        }
        self.lag_max.set(lag.max_lag.as_secs_f64());
        self.lag_stalls
            .set(i64::try_from(lag.stalls.len()).unwrap_or(i64::MAX));
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.pool_queued.set(gauge(pool.jobs.queued));
        self.pool_busy.set(gauge(pool.jobs.running));
        self.pool_workers.set(gauge(pool.jobs.workers as u64));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _written = encode(&mut text, &self.registry);
        text
    }
}

fn outcome_label(outcome: &str) -> Labels {
    vec![("outcome".to_owned(), outcome.to_owned())]
}
