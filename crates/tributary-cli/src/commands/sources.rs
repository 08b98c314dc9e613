//! `tributary sources`: the simulated services, standalone, until Ctrl-C or SIGTERM (then drained). Their URLs go
//! to stdout: a line per service, or with `--json` one JSON object on one line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tributary_agent::sources::SourcesConfig;
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

/// `sources --check FILE`: each source of the file, and for each `mcp` source, the tools its server offers
/// (started or connected to, then closed). Fails (exit 1) when a server cannot be reached or lacks a source's
/// tool, after checking every one.
pub async fn check(
    path: &std::path::Path,
    config: &SourcesConfig,
    json: bool,
    printer: Printer,
) -> Result<Outcome, CliError> {
    /// How long a server has to start and list its tools.
    const LIST_TIMEOUT: Duration = Duration::from_secs(30);
    let mut problems = Vec::new();
    let mut report = Vec::new();
    let mut listings: std::collections::HashMap<
        tributary_agent::sources::McpServer,
        Result<Vec<tributary_mcp::ToolListing>, String>,
    > = std::collections::HashMap::new();
    let mut text = String::new();
    for source in &config.sources {
        let mut entry = serde_json::json!({
            "name": source.name(),
            "kind": source.kind,
            "topic": source.topic(),
            "address": source.spec.base_url.as_str(),
        });
        let Some(tool) = &source.mcp else {
            text.push_str(&format!(
                "{}  {}  {}\n",
                source.name(),
                source.kind,
                source.spec.base_url
            ));
            report.push(entry);
            continue;
        };
        text.push_str(&format!(
            "{}  mcp  {}  (calls `{}`)\n",
            source.name(),
            tool.server,
            tool.tool
        ));
        // Sources that share a server share its listing: started once, printed once.
        let first = !listings.contains_key(&tool.server);
        if first {
            let listed = tributary_mcp::list_tools(&tool.server, LIST_TIMEOUT).await;
            listings.insert(tool.server.clone(), listed);
        }
        match &listings[&tool.server] {
            Ok(tools) => {
                if first {
                    for listed in tools {
                        text.push_str(&describe(listed, &tool.tool));
                    }
                } else {
                    text.push_str("  (the tools listed above)\n");
                }
                if !tools.iter().any(|listed| listed.name == tool.tool) {
                    problems.push(format!(
                        "source `{}`: the server has no tool `{}`",
                        source.name(),
                        tool.tool
                    ));
                }
                entry["tools"] = serde_json::to_value(tools).unwrap_or_default();
            }
            Err(error) => {
                text.push_str(&format!("  unreachable: {error}\n"));
                problems.push(format!("source `{}`: {error}", source.name()));
                entry["error"] = serde_json::Value::from(error.as_str());
            }
        }
        report.push(entry);
    }
    if json {
        printer.json_line(
            &serde_json::json!({"file": path, "sources": report, "problems": problems}),
        )?;
    } else {
        printer.data(&text)?;
    }
    match problems.split_first() {
        None => Ok(Outcome::Done),
        Some((first, rest)) => Err(CliError::new(
            ErrorKind::Environment,
            if rest.is_empty() {
                format!("{}: {first}", path.display())
            } else {
                format!(
                    "{}: {first} (and {} more problem(s))",
                    path.display(),
                    rest.len()
                )
            },
        )),
    }
}

/// A tool as `sources --check` lists it: `*` when it is the one `called`, what is repeated, what it says it does,
/// its arguments' schema.
fn describe(listed: &tributary_mcp::ToolListing, called: &str) -> String {
    let hints = match (listed.read_only, listed.idempotent) {
        (true, _) => "read-only: retried, hedged, cached",
        (false, true) => "idempotent: retried, hedged, cached",
        (false, false) => "not read-only: called once",
    };
    format!(
        "  {} {}  ({hints})\n    {}\n    arguments: {}\n",
        if listed.name == called { "*" } else { "-" },
        listed.name,
        listed
            .description
            .as_deref()
            .unwrap_or("(no description)")
            .trim(),
        listed.input_schema
    )
}
