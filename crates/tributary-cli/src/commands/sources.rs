//! `tributary sources`: the simulated services, standalone, until Ctrl-C.

use std::time::Duration;

use tributary_sim::{Service, SimServer};

use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::settings::SourcesSettings;

pub async fn run(settings: SourcesSettings, printer: Printer) -> Result<Outcome, CliError> {
    let server = SimServer::start(settings.listen, settings.config).await?;
    // The URLs are the command's data: stdout. Everything else goes to stderr.
    printer.data(&format!(
        "weather  {}?city=Paris\nnews     {}?q=climate\nkb       {}?q=what+is+the+GIL\n",
        server.url(Service::Weather),
        server.url(Service::News),
        server.url(Service::KnowledgeBase)
    ))?;
    printer.note(&format!(
        "serving on {}; per-request faults: add &fault=KIND or &latency_ms=N; Ctrl-C stops",
        server.base_url()
    ));
    tokio::signal::ctrl_c().await.map_err(|error| {
        CliError::caused(ErrorKind::Environment, "failed to wait for Ctrl-C", &error)
    })?;
    printer.note("stopping");
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .map_err(|_| {
            CliError::new(
                ErrorKind::Environment,
                "the simulated services did not stop within 5s",
            )
        })?;
    Ok(Outcome::Done)
}
