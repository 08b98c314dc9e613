//! `tributary serve`: the agent as an HTTP service (`tributary_serve`): binds the address, starts the engine,
//! prints the URL, and serves until Ctrl-C or SIGTERM.

use tributary::source::ClientOptions;
use tributary_serve::ServeConfig;

use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::ready_agent::ReadyAgent;
use crate::settings::ServeSettings;
use crate::signals::Signals;

pub async fn run(settings: ServeSettings, printer: Printer) -> Result<Outcome, CliError> {
    // Listening first: a signal during start-up stops the server once it is up, not the process at once.
    let mut signals = Signals::install()?;
    let ready = ReadyAgent::start(&settings.engine, ClientOptions::default()).await?;
    let served = async {
        let listener = tributary_sim::serve::bind(settings.listen).map_err(|error| {
            CliError::caused(
                ErrorKind::Environment,
                format_args!("failed to listen on {}", settings.listen),
                &error,
            )
            .with_hint("pick another address with --listen, or port 0 for any free port")
        })?;
        let address = listener.local_addr().map_err(|error| {
            CliError::caused(
                ErrorKind::Environment,
                "failed to read the bound address",
                &error,
            )
        })?;
        // The URL is the command's data (a script reads it); the rest goes to stderr.
        printer.data_line(&format!("http://{address}"))?;
        printer.note(&format!(
            "serving the agent on http://{address}: open it in a browser, or POST /v1/ask, GET /v1/ask/stream \
             (GET /openapi.json lists all); at most {} runs at once; Ctrl-C or SIGTERM stops",
            settings.max_in_flight
        ));
        let config = ServeConfig {
            max_in_flight: settings.max_in_flight,
            limits: settings.limits,
        };
        let shutdown = async {
            let signal = signals.recv().await;
            printer.note(&format!("{signal}: stopping; the asks in flight finish first"));
        };
        tributary_serve::run(listener, ready.agent.clone(), config, shutdown).await;
        Ok(Outcome::Done)
    }
    .await;
    ready.shutdown().await;
    served
}
