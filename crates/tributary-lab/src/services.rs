//! The set-up experiments share: the simulated services on loopback, one HTTP client, and source specs that send
//! one attempt per call unless an experiment asks for retries.
//!
//! Latency and faults are chosen per request (`latency_ms=`, `fault=`), so one server serves every experiment's
//! scenario and a call's duration is exactly what the experiment asked for, plus loopback overhead.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

use url::Url;

use tributary::group::Deadline;
use tributary::pool::{CpuPool, PoolConfig};
use tributary::source::{
    ClientOptions, FetchError, Fetched, SourceClient, SourceRequest, SourceSpec,
};
use tributary_agent::infer::InferenceCost;
use tributary_sim::{Service, SimConfig, SimServer};

use tributary_agent::{Source, SourceKind};

use super::experiment::LabError;

/// Bound on one attempt when an experiment sets none: longer than any experiment's call.
const GENEROUS_TIMEOUT: Duration = Duration::from_secs(60);

/// The simulated services and a client for them.
#[derive(Debug)]
pub(crate) struct LabServices {
    server: SimServer,
    client: SourceClient,
    base: Url,
}

impl LabServices {
    /// Services with no configured latency or fault: every request says what it wants.
    pub(crate) async fn start() -> Result<Self, LabError> {
        Self::start_with(SimConfig::instant()).await
    }

    /// Services with `config` as their start-up behaviour (e.g. a flaky service).
    pub(crate) async fn start_with(config: SimConfig) -> Result<Self, LabError> {
        Self::start_with_client(config, ClientOptions::default()).await
    }

    /// Services with `config`, and a client with `options` (e.g. a shorter backoff).
    pub(crate) async fn start_with_client(
        config: SimConfig,
        options: ClientOptions,
    ) -> Result<Self, LabError> {
        let server = SimServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .await
            .map_err(LabError::Services)?;
        let base = Url::parse(&server.base_url())
            .map_err(|error| LabError::Setup(format!("parse the simulator's url: {error}")))?;
        let client = SourceClient::new(options).map_err(LabError::Client)?;
        Ok(Self {
            server,
            client,
            base,
        })
    }

    /// A spec for `service`: one attempt, a generous timeout, no cache and no circuit breaker (every call reaches
    /// the server: the experiments measure what a failing or hanging service costs, which a breaker would hide).
    pub(crate) fn spec(&self, service: Service) -> SourceSpec {
        self.source(service).spec
    }

    /// The agent's view of `service` (its kind decides how a response is read), with [`Self::spec`]'s policy.
    pub(crate) fn source(&self, service: Service) -> Source {
        let kind = match service {
            Service::Weather => SourceKind::Weather,
            Service::News => SourceKind::News,
            Service::KnowledgeBase => SourceKind::KnowledgeBase,
        };
        let mut source = Source::new(service.name(), kind, self.base.clone());
        source.spec.timeout = GENEROUS_TIMEOUT;
        source.spec.retries = 0;
        source.spec.cache_ttl = None;
        source.spec.breaker = None;
        source
    }

    /// Sends `request` to `spec`'s source, bypassing any cache.
    pub(crate) async fn fetch(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        deadline: Deadline,
    ) -> Result<Fetched, FetchError> {
        self.client.fetch_uncached(spec, request, deadline).await
    }

    /// A clone of the client, for tasks that outlive a borrow of `self`.
    pub(crate) fn client(&self) -> SourceClient {
        self.client.clone()
    }

    /// Warms the connection pool with one request per service, so the first timed call does not pay for TCP
    /// connection set-up (about a millisecond on loopback, but visible against short quick-mode calls).
    pub(crate) async fn warm_up(&self) {
        for service in Service::ALL {
            let spec = self.spec(service);
            let _ = self
                .fetch(&spec, &request(service, 0, None, None), Deadline::none())
                .await;
        }
    }

    /// Stops the services.
    pub(crate) async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// A request to `service` asking for `latency` and `fault`; `item` varies the query so responses differ.
/// What news search `item` asks for.
pub(crate) fn news_topic(item: usize) -> &'static str {
    const TOPICS: [&str; 6] = [
        "solar power",
        "elections",
        "football",
        "central bank",
        "vaccines",
        "rail strike",
    ];
    TOPICS[item % TOPICS.len()]
}

pub(crate) fn request(
    service: Service,
    item: usize,
    latency: Option<Duration>,
    fault: Option<&str>,
) -> SourceRequest {
    const CITIES: [&str; 6] = ["Lima", "Paris", "Lagos", "Osaka", "Oslo", "Quito"];
    const QUESTIONS: [&str; 6] = [
        "what is the event loop",
        "why does the GIL matter",
        "what is a task group",
        "how do timeouts nest",
        "what is backpressure",
        "what is a process pool",
    ];
    let mut request = match service {
        Service::Weather => {
            SourceRequest::new(service.path()).with_query("city", CITIES[item % CITIES.len()])
        }
        Service::News => SourceRequest::new(service.path()).with_query("q", news_topic(item)),
        Service::KnowledgeBase => {
            SourceRequest::new(service.path()).with_query("q", QUESTIONS[item % QUESTIONS.len()])
        }
    };
    if let Some(latency) = latency {
        request = request.with_query("latency_ms", latency.as_millis().to_string());
    }
    if let Some(fault) = fault {
        request = request.with_query("fault", fault);
    }
    request
}

/// A pool of `workers` threads on which `cost` is already calibrated, so that nothing timed afterwards pays for
/// the calibration (about 40 ms of CPU, once per process).
pub(crate) async fn calibrated_pool(
    workers: NonZeroUsize,
    cost: InferenceCost,
) -> Result<CpuPool, LabError> {
    let pool = CpuPool::new(PoolConfig::with_workers(workers)).map_err(LabError::Pool)?;
    pool.submit(move |_| cost.work_units())
        .await
        .map_err(LabError::Pool)?;
    Ok(pool)
}
