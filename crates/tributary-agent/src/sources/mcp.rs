//! An `mcp` source: a tool of a Model Context Protocol server, asked like any other source.
//!
//! The agent knows what to call and with what ([`McpTool`]); how to reach the server is the driver's
//! ([`McpServers`], implemented by `tributary-mcp`), so the domain builds no MCP client. Each call goes through the
//! engine's [`SourceClient::call`](tributary::source::SourceClient::call): the per-source timeout, the breaker,
//! the rate limit, hedging and retries (only for a tool that says it is read-only or idempotent), and the attempt
//! log the timeline draws.

use std::fmt;
use std::path::PathBuf;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tributary::source::{CallFailure, FetchErrorKind};
use url::Url;

use super::kind::Topic;

/// Where an `mcp` source's server is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum McpServer {
    /// A program started once and spoken to over its standard input and output (MCP's stdio transport).
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Variables added to the program's environment.
        env: Vec<(String, String)>,
        /// Its working directory (`None`: this program's).
        cwd: Option<PathBuf>,
    },
    /// A server at an address (MCP's streamable HTTP transport).
    Url(Url),
}

impl fmt::Display for McpServer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpServer::Command { argv, .. } => write!(formatter, "`{}`", argv.join(" ")),
            McpServer::Url(url) => write!(formatter, "{url}"),
        }
    }
}

/// What an `mcp` source calls: its server, the tool, how the question fills the tool's arguments, and the topic
/// of what it answers (which places its line in an answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTool {
    /// The server.
    pub server: McpServer,
    /// The tool's name.
    pub tool: String,
    /// The arguments, where every string's `{question}` is replaced by the question and `{keywords}` by its
    /// content words.
    pub arguments: Map<String, Value>,
    /// What its answers are about.
    pub topic: Topic,
}

impl McpTool {
    /// The arguments for `question`, whose content words are `keywords`.
    pub fn arguments_for(&self, question: &str, keywords: &str) -> Map<String, Value> {
        fn fill(value: &Value, question: &str, keywords: &str) -> Value {
            match value {
                Value::String(text) => Value::String(
                    text.replace("{question}", question)
                        .replace("{keywords}", keywords),
                ),
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|item| fill(item, question, keywords))
                        .collect(),
                ),
                Value::Object(fields) => Value::Object(
                    fields
                        .iter()
                        .map(|(key, value)| (key.clone(), fill(value, question, keywords)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        self.arguments
            .iter()
            .map(|(key, value)| (key.clone(), fill(value, question, keywords)))
            .collect()
    }

    /// The arguments an `mcp` source gets when its file gives none: `{ question = "{question}" }`.
    pub fn default_arguments() -> Map<String, Value> {
        Map::from_iter([("question".to_owned(), Value::from("{question}"))])
    }
}

/// What a tool says of itself (its MCP annotations), which decides whether a call may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolTraits {
    /// `readOnlyHint`: it changes nothing.
    pub read_only: bool,
    /// `idempotentHint`: calling it again with the same arguments does nothing more.
    pub idempotent: bool,
}

impl ToolTraits {
    /// Whether a failed or slow call may be sent again (retried, hedged) or answered from the cache.
    pub fn repeatable(&self) -> bool {
        self.read_only || self.idempotent
    }
}

/// How the agent reaches MCP servers: the driver's (`tributary-mcp`), given in
/// [`AgentSettings::mcp`](crate::AgentSettings::mcp). Errors are the engine's kinds, most of them
/// [`FetchErrorKind::Call`] with why.
pub trait McpServers: Send + Sync + fmt::Debug {
    /// What `source`'s tool says of itself, connecting to its server first when need be.
    fn traits<'a>(
        &'a self,
        source: &'a str,
        tool: &'a McpTool,
    ) -> BoxFuture<'a, Result<ToolTraits, FetchErrorKind>>;

    /// One call of `source`'s tool with `arguments`: its result as JSON (MCP's `CallToolResult`), refused when
    /// larger than `max_bytes`.
    fn call<'a>(
        &'a self,
        source: &'a str,
        tool: &'a McpTool,
        arguments: Map<String, Value>,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Value, FetchErrorKind>>;
}

/// No MCP client: every `mcp` source fails, saying so. The default of [`AgentSettings`](crate::AgentSettings).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMcp;

impl NoMcp {
    fn refused() -> FetchErrorKind {
        FetchErrorKind::Call {
            detail: "reach an MCP server: this program was given no MCP client".to_owned(),
            failure: CallFailure::Connect,
        }
    }
}

impl McpServers for NoMcp {
    fn traits<'a>(
        &'a self,
        _source: &'a str,
        _tool: &'a McpTool,
    ) -> BoxFuture<'a, Result<ToolTraits, FetchErrorKind>> {
        Box::pin(async { Err(Self::refused()) })
    }

    fn call<'a>(
        &'a self,
        _source: &'a str,
        _tool: &'a McpTool,
        _arguments: Map<String, Value>,
        _max_bytes: u64,
    ) -> BoxFuture<'a, Result<Value, FetchErrorKind>> {
        Box::pin(async { Err(Self::refused()) })
    }
}

/// The text inference reads from a tool's result: its structured content's prose fields (`title`, `text`,
/// `summary`, ...: what the simulated services' bodies are read for) or, without any, every string in it; without
/// structured content (its text contents are then usually the same content serialised), its text contents, in
/// order.
pub fn result_text(result: &Value) -> Option<String> {
    if let Some(structured) = result.get("structuredContent").filter(|it| !it.is_null()) {
        let prose = crate::extract::prose(structured);
        if !prose.trim().is_empty() {
            return Some(prose);
        }
        let mut strings = Vec::new();
        collect_strings(structured, &mut strings);
        if !strings.is_empty() {
            return Some(strings.join("\n"));
        }
    }
    let texts: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|item| item.get("text").and_then(Value::as_str))
        .filter(|text| !text.trim().is_empty())
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

fn collect_strings<'a>(value: &'a Value, strings: &mut Vec<&'a str>) {
    match value {
        Value::String(text) if !text.trim().is_empty() => strings.push(text),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, strings)),
        Value::Object(fields) => fields
            .values()
            .for_each(|item| collect_strings(item, strings)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_question_fills_every_string_of_the_arguments() {
        let tool = McpTool {
            server: McpServer::Url("http://127.0.0.1:1/mcp".parse().unwrap()),
            tool: "search".into(),
            arguments: json!({"q": "{keywords}", "filters": ["about {question}", 3], "limit": 2})
                .as_object()
                .unwrap()
                .clone(),
            topic: Topic::Knowledge,
        };
        let filled = tool.arguments_for("Why {is} rust fast?", "rust fast");
        assert_eq!(
            Value::Object(filled),
            json!({"q": "rust fast", "filters": ["about Why {is} rust fast?", 3], "limit": 2})
        );
    }

    #[test]
    fn a_result_reads_as_its_texts_or_its_structured_strings() {
        let texts = json!({"content": [{"type": "text", "text": "one"}, {"type": "image", "data": "x"},
            {"type": "text", "text": "two"}]});
        assert_eq!(result_text(&texts).as_deref(), Some("one\ntwo"));
        let structured = json!({"content": [{"type": "text", "text": "{\"a\": \"x\"}"}],
            "structuredContent": {"a": "x", "b": [1, "y"]}});
        assert_eq!(result_text(&structured).as_deref(), Some("x\ny"));
        let prose = json!({"content": [], "structuredContent": {"id": "7", "title": "GIL", "text": "One thread."}});
        assert_eq!(result_text(&prose).as_deref(), Some("GIL. One thread."));
        assert_eq!(result_text(&json!({"content": []})), None);
    }
}
