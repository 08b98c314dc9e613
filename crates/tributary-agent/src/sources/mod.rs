//! The sources the agent asks: their kinds and the sources file.
//!
//! - `kind`: [`SourceKind`], the protocol a source speaks (simulated or a public API), and its [`Topic`].
//! - `config`: [`Source`] (the engine's [`SourceSpec`](tributary::source::SourceSpec) plus a kind and whether
//!   the answer requires it) and [`SourcesConfig`], loaded from a TOML file with errors that point at the line.
//! - `mcp`: an `mcp` source's [`McpTool`], and [`McpServers`], how the driver reaches MCP servers.

mod config;
mod kind;
mod mcp;

pub use config::{ConfigError, MAX_RETRIES, MAX_TIMEOUT, Source, SourcesConfig, line_and_column};
pub use kind::{SourceKind, Topic};
pub use mcp::result_text;
pub use mcp::{McpServer, McpServers, McpTool, NoMcp, ToolTraits};
