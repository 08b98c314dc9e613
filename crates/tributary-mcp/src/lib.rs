//! tributary over the Model Context Protocol, on the official SDK (`rmcp`).
//!
//! - `server`: [`McpServer`], the agent as an MCP server: the tools `ask` and `compare`, the sources as the
//!   resource `tributary://sources`, progress notifications from the run's live timeline, cancellation.
//!   [`serve_stdio`] runs it over standard input and output (`tributary mcp`); [`http_service`] is the
//!   streamable HTTP transport a server mounts (`serve`'s `/mcp`).
//! - `stdio`: MCP's stdio transport framed here: bounded lines, and an answer to every line that is not a
//!   message.
//! - `gate`: [`Gate`], how a driver admits runs (`serve`'s adaptive admission, or [`Open`]).
//! - `client`: [`McpConnections`], MCP servers as the agent's sources: one connection per `mcp` source, a
//!   child process started once and restarted after a crash with backoff, or a streamable HTTP endpoint; and
//!   [`list_tools`], what a server offers.

mod client;
mod gate;
mod server;
mod stdio;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    //! For fuzz/ only: the stdio framing's line decoder.

    use crate::stdio::{Decoded, decode_line};

    /// Decodes `line`; an answer must serialise as a JSON-RPC error with a code and a message.
    pub fn stdio_line(line: &[u8]) {
        if let Decoded::Answer(error) = decode_line(line) {
            let json = serde_json::to_value(&error).expect("an answer serialises");
            let code = json["error"]["code"].as_i64();
            assert!(matches!(code, Some(-32_700 | -32_600)), "{json}");
            assert!(
                json["error"]["message"]
                    .as_str()
                    .is_some_and(|message| !message.is_empty())
            );
        }
    }
}

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tributary_agent::Agent;

pub use client::{McpConnections, ToolListing, list_tools};
pub use gate::{Gate, Open, Pass};
pub use server::{AskArguments, McpServer, SERVER_BUSY, SOURCES_URI, render};

/// The streamable HTTP transport's tower service for `agent`, admitting runs through `gate`, to be mounted at
/// `/mcp`; `stop` ends its sessions. `hosts` are the `Host` header values it answers (DNS rebinding protection):
/// loopback names, plus the address a server is bound to.
pub fn http_service(
    agent: Agent,
    gate: Arc<dyn Gate>,
    stop: CancellationToken,
    hosts: Vec<String>,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    config.cancellation_token = stop;
    StreamableHttpService::new(
        move || Ok(McpServer::new(agent.clone(), Arc::clone(&gate))),
        Arc::default(),
        config,
    )
}

/// Serves `agent` over MCP's stdio transport on `input` and `output` (the process's standard input and output,
/// which the binary owns and hands over) until the input ends or `stop` is cancelled; every run is joined before
/// it returns. One message per line, each at most 16 MiB; a line that is not a message is answered with
/// JSON-RPC's parse error or invalid request (`stdio`).
pub async fn serve_stdio(
    agent: Agent,
    input: impl tokio::io::AsyncRead + Unpin,
    output: impl tokio::io::AsyncWrite + Unpin,
    stop: CancellationToken,
) -> Result<(), std::io::Error> {
    let server = McpServer::new(agent, Arc::new(Open));
    stdio::serve_lines(server, input, output, stop).await
}
