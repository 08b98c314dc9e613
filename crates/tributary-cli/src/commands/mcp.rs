//! `tributary mcp`: the agent as an MCP server on stdin and stdout (`tributary_mcp::serve_stdio`), until the
//! client closes stdin or Ctrl-C or SIGTERM stops it. stdout is the protocol's alone (the binary hands it to the
//! server: no library writes to stdout); every note goes to stderr.

use tokio_util::sync::CancellationToken;
use tributary::source::ClientOptions;

use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::ready_agent::ReadyAgent;
use crate::settings::EngineSettings;
use crate::signals::Signals;

pub async fn run(settings: EngineSettings, printer: Printer) -> Result<Outcome, CliError> {
    let mut signals = Signals::install()?;
    let ready = ReadyAgent::start(&settings, ClientOptions::default()).await?;
    let stop = CancellationToken::new();
    let served = tokio::select! {
        served = tributary_mcp::serve_stdio(
            ready.agent.clone(),
            tokio::io::stdin(),
            tokio::io::stdout(),
            stop.clone(),
        ) => served,
        signal = signals.recv() => {
            printer.note(&format!("{signal}: stopping"));
            stop.cancel();
            Ok(())
        }
    };
    ready.shutdown().await;
    served.map_err(|error| {
        CliError::caused(
            ErrorKind::Environment,
            "failed to serve MCP on stdin and stdout",
            &error,
        )
    })?;
    Ok(Outcome::Done)
}
