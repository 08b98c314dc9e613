//! `tributary sources`: the simulated services, standalone, until Ctrl-C or SIGTERM (then drained). Their URLs go
//! to stdout: a line per service, or with `--json` one JSON object on one line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tributary_sim::{Service, SimServer};

use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::settings::SourcesSettings;
use crate::signals::Signals;

/// `--json`: where the services listen, for a program that starts them (one line, so it can read the first line
/// and go on).
#[derive(Debug, Serialize)]
struct Listening {
    /// The address bound, with the real port when `--listen` asked for port 0.
    listen: SocketAddr,
    /// `http://ADDRESS`, without a trailing slash: a sources file's `base_url`.
    base_url: String,
    /// Each service's URL by its name (`weather`, `news`, `kb`), without a query.
    endpoints: BTreeMap<&'static str, String>,
}

pub async fn run(settings: SourcesSettings, printer: Printer) -> Result<Outcome, CliError> {
    // Listening first: a signal during start-up stops the services once they are up, not the process at once.
    let mut signals = Signals::install()?;
    let server = SimServer::start(settings.listen, settings.config).await?;
    // The URLs are the command's data: stdout. Everything else goes to stderr.
    if settings.json {
        printer.json_line(&Listening {
            listen: server.local_addr(),
            base_url: server.base_url(),
            endpoints: Service::ALL
                .iter()
                .map(|service| (service.name(), server.url(*service)))
                .collect(),
        })?;
    } else {
        printer.data(&format!(
            "weather  {}?city=Paris\nnews     {}?q=climate\nkb       {}?q=what+is+the+GIL\n",
            server.url(Service::Weather),
            server.url(Service::News),
            server.url(Service::KnowledgeBase)
        ))?;
    }
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
