//! What the crate's tests share: the simulated services as the agent's sources.

use std::sync::Arc;

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
