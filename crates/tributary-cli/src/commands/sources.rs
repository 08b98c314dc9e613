//! `tributary sources`: the simulated services, standalone, until Ctrl-C.

use std::time::Duration;

use tributary::sim::{Fault, Latency, Service, SimConfig, SimServer};

use crate::cli::SourcesArgs;
use crate::error::CliError;
use crate::faults::{FaultKind, parse_faults};
use crate::stdout;

pub async fn run(args: SourcesArgs) -> Result<(), CliError> {
    let mut config = SimConfig {
        seed: args.seed,
        ..SimConfig::default()
    };
    for flag in parse_faults(&args.faults)? {
        let service: Service = flag.target.parse().map_err(|_| {
            CliError::usage(format!("unknown service `{}` in --fault", flag.target))
                .with_hint("the services are weather, news and kb")
        })?;
        let behavior = config.behavior_mut(service);
        match flag.fault {
            FaultKind::Latency(latency) => behavior.latency = Latency::Fixed(latency),
            FaultKind::Named(name) => {
                let fault: Fault = name
                    .parse()
                    .map_err(|_| CliError::usage(format!("unknown fault kind `{name}`")))?;
                behavior.fault = Some(fault);
                behavior.fault_probability = 1.0;
            }
        }
    }
    let server = SimServer::start(args.listen, config)
        .await
        .map_err(|error| {
            CliError::internal(CliError::chain(
                "failed to start the simulated services",
                &error,
            ))
            .with_hint("pick another address with --listen, e.g. --listen 127.0.0.1:0")
        })?;
    // The URLs are the command's data: stdout. Everything else goes to stderr.
    stdout::print(&format!(
        "weather  {}?city=Paris\nnews     {}?q=climate\nkb       {}?q=what+is+the+GIL\n",
        server.url(Service::Weather),
        server.url(Service::News),
        server.url(Service::KnowledgeBase)
    ))?;
    eprintln!(
        "serving on {}; per-request faults: add &fault=KIND or &latency_ms=N; Ctrl-C stops",
        server.base_url()
    );
    tokio::signal::ctrl_c().await.map_err(|error| {
        CliError::internal(CliError::chain("failed to wait for Ctrl-C", &error))
    })?;
    eprintln!("stopping");
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .map_err(|_| CliError::internal("the simulated services did not stop within 5s"))?;
    Ok(())
}
