//! `tributary sources`: the simulated services, standalone, until Ctrl-C or SIGTERM (then drained).

use std::time::Duration;

use tributary_sim::{Service, SimServer};

use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::settings::SourcesSettings;
use crate::signals::Signals;

pub async fn run(settings: SourcesSettings, printer: Printer) -> Result<Outcome, CliError> {
    // Listening first: a signal during start-up stops the services once they are up, not the process at once.
    let mut signals = Signals::install()?;
    let server = SimServer::start(settings.listen, settings.config).await?;
    // The URLs are the command's data: stdout. Everything else goes to stderr.
    printer.data(&format!(
        "weather  {}?city=Paris\nnews     {}?q=climate\nkb       {}?q=what+is+the+GIL\n",
        server.url(Service::Weather),
        server.url(Service::News),
        server.url(Service::KnowledgeBase)
    ))?;
    printer.note(&format!(
        "serving on {}; per-request faults: add &fault=KIND or &latency_ms=N; Ctrl-C or SIGTERM stops",
        server.base_url()
    ));
    let signal = signals.recv().await;
    printer.note(&format!(
        "{signal}: stopping; the requests in flight finish first (up to 5s)"
    ));
    // The server gives its connections 5s, then cancels them; this bounds that in turn.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .map_err(|_| {
            CliError::new(
                ErrorKind::Environment,
                "the simulated services did not stop within 10s",
            )
        })?;
    Ok(Outcome::Done)
}
