//! The embedded default: the simulated services started in-process on an ephemeral loopback port, and the
//! source specs that point at them. This is what `tributary ask` uses when no `--config` is given.
//!
//! The default scenario's latencies are chosen for the chapter's capstone claim: on a 2-core machine with the
//! default inference cost (about 300 ms of CPU per response), the ideal concurrent run is about 2.7× faster than
//! the sequential baseline. That needs latencies several times the inference cost: sequentially the agent pays
//! every latency and every inference (1.2 + 1.5 + 1.2 s + 3 × 0.3 s = 4.8 s); concurrently it pays the slowest
//! latency plus the inferences that cannot overlap it (1.5 + 0.3 s = 1.8 s), because the two inferences of the
//! responses that arrive at 1.2 s run on the two cores while the news is still on its way.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use url::Url;

use crate::sim::{Latency, Service, ServiceBehavior, SimConfig, SimError, SimServer};
use crate::source::{EmbeddedSourceUrls, SourceSpec, SourcesConfig};

/// Jitter of the default scenario's latencies: small, so that a run is repeatable, but never zero.
const DEFAULT_SIGMA: f64 = 0.05;

/// The default scenario: weather 1.2 s, news 1.5 s, knowledge base 1.2 s (medians, log-normal jitter), no faults.
pub fn default_scenario() -> SimConfig {
    let latency = |millis| Latency::LogNormal {
        median: Duration::from_millis(millis),
        sigma: DEFAULT_SIGMA,
    };
    SimConfig {
        weather: ServiceBehavior::healthy(latency(1200)),
        news: ServiceBehavior::healthy(latency(1500)),
        kb: ServiceBehavior::healthy(latency(1200)),
        ..SimConfig::default()
    }
}

/// The simulated services running in this process, and the sources that use them.
#[derive(Debug)]
pub struct EmbeddedSources {
    server: SimServer,
    config: SourcesConfig,
}

impl EmbeddedSources {
    /// Starts the services on `127.0.0.1:0` with `scenario`.
    pub async fn start(scenario: SimConfig) -> Result<Self, SimError> {
        let server = SimServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), scenario).await?;
        let base =
            Url::parse(&server.base_url()).expect("the simulator's base URL is a valid http URL");
        let config = SourcesConfig::embedded(EmbeddedSourceUrls {
            weather: base.clone(),
            news: base.clone(),
            knowledge_base: base,
        });
        Ok(Self { server, config })
    }

    /// The source specs, in the order the agent asks them.
    pub fn sources(&self) -> &[SourceSpec] {
        &self.config.sources
    }

    /// The running simulator (its URLs and request counters).
    pub fn server(&self) -> &SimServer {
        &self.server
    }

    /// Requests the simulator received for `service` so far.
    pub fn requests(&self, service: Service) -> u64 {
        self.server.requests(service)
    }

    /// Stops the services; requests still hanging end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
