//! MCP servers as the agent's sources ([`McpConnections`], the agent's [`McpServers`]), and what a server offers
//! ([`list_tools`]).
//!
//! One connection per server (sources naming the same command or URL share it), made on first use and shared
//! by every question. A server started as a command is a child process of ours: killed when its connection is
//! dropped (with the connections, with the process: the runtime's end, a panic's unwinding), its stderr read
//! line by line into the log (`tributary_mcp::stderr`, shown with `-v`), never the terminal. When the
//! connection breaks (the process exited, the address stopped answering), the next call starts it again: at once
//! the first time, then, while it keeps failing (it cannot be started, or breaks within a minute of starting),
//! after a backoff that doubles with each failure in a row (100 ms to 10 s); a call during the backoff fails at
//! once, saying when the next start is.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::model::{CallToolRequestParams, ErrorCode, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;
use tributary::group::{Supervisor, SupervisorConfig, SupervisorHandle};
use tributary::source::{CallFailure, FetchErrorKind};
use tributary_agent::sources::{McpServer, McpServers, McpTool, Source, ToolTraits};

/// The first wait before a broken server is started (or connected to) again; it doubles with each failure in a
/// row, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait before a broken server is started again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long [`McpConnections::warm_up`] gives a server to start and list its tools (a question's own call is
/// bounded by its source's timeouts).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection that breaks sooner than this after it was made counts as one more failure in a row.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The longest line of a server's stderr kept in the log; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 4096;

/// MCP servers as the agent's sources: one connection per server, shared by every question. Cheap to clone.
#[derive(Clone)]
pub struct McpConnections {
    servers: Arc<Mutex<HashMap<McpServer, Arc<Connection>>>>,
    /// Where the tasks beside the connections run (each child's stderr reader, [`warm_up`](Self::warm_up)'s
    /// connections), and the supervisor itself, which [`close`](Self::close) shuts down.
    tasks: SupervisorHandle,
    supervisor: Arc<Mutex<Option<Supervisor>>>,
}

impl fmt::Debug for McpConnections {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("McpConnections")
            .field("servers", &self.lock().len())
            .finish()
    }
}

impl Default for McpConnections {
    fn default() -> Self {
        Self::new()
    }
}

impl McpConnections {
    /// No connection yet: each is made when a question first needs it.
    pub fn new() -> Self {
        install_tls_provider();
        let supervisor = Supervisor::new(SupervisorConfig::new());
        Self {
            servers: Arc::default(),
            tasks: supervisor.handle(),
            supervisor: Arc::new(Mutex::new(Some(supervisor))),
        }
    }

    /// Starts connecting to the server of every `mcp` source of `sources` in the background (each within
    /// 30 s), so that the first question finds them started or starting, not one after the other.
    pub fn warm_up(&self, sources: &[Source]) {
        for source in sources {
            let Some(tool) = &source.mcp else {
                continue;
            };
            let connection = self.connection(source.name(), &tool.server);
            let tasks = self.tasks.clone();
            // Refused only once closing began: then there is nothing to warm up.
            let _ = self.tasks.spawn("mcp warm-up", async move {
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, connection.live(&tasks)).await;
                Ok::<(), Infallible>(())
            });
        }
    }

    /// Closes every connection: a child process is killed, and waited for.
    pub async fn close(&self) {
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(supervisor) = supervisor {
            // The warm-ups stop; the stderr readers end with their processes, below.
            supervisor.shutdown().await;
        }
        let connections: Vec<Arc<Connection>> = self.lock().drain().map(|(_, it)| it).collect();
        for connection in connections {
            let state = std::mem::replace(&mut *connection.state.lock().await, State::idle());
            if let State::Up(live) = state {
                live.close().await;
            }
        }
    }

    /// The process ids of the servers started as commands that are running now (for tests: none may outlive us).
    pub async fn child_pids(&self) -> Vec<u32> {
        let connections: Vec<Arc<Connection>> = self.lock().values().cloned().collect();
        let mut pids = Vec::new();
        for connection in connections {
            if let State::Up(live) = &*connection.state.lock().await {
                pids.extend(live.pid);
            }
        }
        pids
    }

    fn connection(&self, source: &str, server: &McpServer) -> Arc<Connection> {
        Arc::clone(self.lock().entry(server.clone()).or_insert_with(|| {
            Arc::new(Connection {
                first_source: source.to_owned(),
                server: server.clone(),
                state: tokio::sync::Mutex::new(State::idle()),
            })
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<McpServer, Arc<Connection>>> {
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl McpServers for McpConnections {
    fn traits<'a>(
        &'a self,
        source: &'a str,
        tool: &'a McpTool,
    ) -> BoxFuture<'a, Result<ToolTraits, FetchErrorKind>> {
        Box::pin(async move {
            let live = self
                .connection(source, &tool.server)
                .live(&self.tasks)
                .await?;
            match live.tools.get(&tool.tool) {
                Some(found) => Ok(traits_of(found)),
                None => Err(FetchErrorKind::Call {
                    detail: format!(
                        "call the tool `{}`: the server {} has no such tool; it has {}",
                        tool.tool,
                        tool.server,
                        names(&live.tools)
                    ),
                    failure: CallFailure::Refused,
                }),
            }
        })
    }

    fn call<'a>(
        &'a self,
        source: &'a str,
        tool: &'a McpTool,
        arguments: Map<String, Value>,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Value, FetchErrorKind>> {
        Box::pin(async move {
            let connection = self.connection(source, &tool.server);
            let live = connection.live(&self.tasks).await?;
            let called = live
                .peer
                .call_tool(CallToolRequestParams::new(tool.tool.clone()).with_arguments(arguments))
                .await;
            let result = match called {
                Ok(result) => result,
                Err(error) => {
                    let failure = call_failure(&error);
                    if matches!(failure, CallFailure::Transport) {
                        connection.broke(live.generation).await;
                    }
                    return Err(FetchErrorKind::Call {
                        detail: format!("call the tool `{}`: {}", tool.tool, said(&error)),
                        failure,
                    });
                }
            };
            let json = serde_json::to_value(&result).map_err(|error| FetchErrorKind::Call {
                detail: format!("read the result of the tool `{}`: {error}", tool.tool),
                failure: CallFailure::Malformed,
            })?;
            let size = u64::try_from(json.to_string().len()).unwrap_or(u64::MAX);
            if size > max_bytes {
                return Err(FetchErrorKind::BodyTooLarge {
                    limit_bytes: max_bytes,
                });
            }
            if result.is_error == Some(true) {
                let text = tributary_agent::sources::result_text(&json).unwrap_or_default();
                return Err(FetchErrorKind::Call {
                    detail: format!(
                        "call the tool `{}`: it answered an error: {}",
                        tool.tool,
                        shorten(&text)
                    ),
                    failure: CallFailure::Failed,
                });
            }
            Ok(json)
        })
    }
}

/// A server's connection: up, or down since some failures in a row.
struct Connection {
    /// The source that first asked for it, named in its log lines.
    first_source: String,
    server: McpServer,
    state: tokio::sync::Mutex<State>,
}

enum State {
    Up(Live),
    Down {
        /// Failures in a row.
        failures: u32,
        /// Not tried again before this.
        retry_at: Option<Instant>,
        /// Numbers the next connection.
        generation: u64,
    },
}

impl State {
    fn idle() -> Self {
        State::Down {
            failures: 0,
            retry_at: None,
            generation: 0,
        }
    }
}

/// A connection that is up: the client, what it needs of the server, and which connection it is.
struct Live {
    service: Arc<RunningService<RoleClient, ()>>,
    peer: rmcp::Peer<RoleClient>,
    tools: Arc<HashMap<String, Tool>>,
    generation: u64,
    pid: Option<u32>,
    /// When it was made, and the failures in a row before it: one that breaks soon continues the count.
    made: Instant,
    failures_before: u32,
}

impl Clone for Live {
    fn clone(&self) -> Self {
        Self {
            service: Arc::clone(&self.service),
            peer: self.peer.clone(),
            tools: Arc::clone(&self.tools),
            generation: self.generation,
            pid: self.pid,
            made: self.made,
            failures_before: self.failures_before,
        }
    }
}

impl Live {
    /// Failures in a row once this connection broke: one more when it broke soon after it was made.
    fn failures_after_break(&self) -> u32 {
        if self.made.elapsed() < STABLE_AFTER {
            self.failures_before.saturating_add(1)
        } else {
            1
        }
    }

    async fn close(self) {
        if let Ok(service) = Arc::try_unwrap(self.service) {
            let _ = service.cancel().await;
        }
    }
}

impl Connection {
    /// The connection, made now if it is down and its backoff has passed.
    async fn live(&self, tasks: &SupervisorHandle) -> Result<Live, FetchErrorKind> {
        let mut state = self.state.lock().await;
        let (failures, generation) = match &*state {
            State::Up(live) if !live.service.is_closed() => return Ok(live.clone()),
            State::Up(live) => (live.failures_after_break(), live.generation + 1),
            State::Down {
                failures,
                retry_at,
                generation,
            } => {
                if let Some(at) = retry_at.filter(|at| *at > Instant::now()) {
                    return Err(FetchErrorKind::Call {
                        detail: format!(
                            "reach the MCP server {}: it failed {failures} time(s) in a row; trying again in {}",
                            self.server,
                            tributary::trace::format_duration(at - Instant::now())
                        ),
                        failure: CallFailure::Connect,
                    });
                }
                (*failures, *generation)
            }
        };
        match connect(&self.first_source, &self.server, generation, tasks).await {
            Ok(mut live) => {
                live.failures_before = failures;
                *state = State::Up(live.clone());
                Ok(live)
            }
            Err(error) => {
                let failures = failures.saturating_add(1);
                *state = State::Down {
                    failures,
                    retry_at: Some(Instant::now() + backoff(failures)),
                    generation: generation + 1,
                };
                Err(error)
            }
        }
    }

    /// The connection numbered `generation` broke: the next call starts a new one, at once unless it keeps
    /// breaking.
    async fn broke(&self, generation: u64) {
        let mut state = self.state.lock().await;
        let failures = match &*state {
            State::Up(live) if live.generation == generation => live.failures_after_break(),
            _ => return,
        };
        tracing::info!(source = %self.first_source, server = %self.server, failures, "the MCP server's connection broke; it will be started again");
        let State::Up(live) = std::mem::replace(
            &mut *state,
            State::Down {
                failures,
                retry_at: (failures > 1).then(|| Instant::now() + backoff(failures - 1)),
                generation: generation + 1,
            },
        ) else {
            return;
        };
        drop(state);
        live.close().await;
    }
}

/// The wait before trying a broken server again after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF)
}

/// Starts (or connects to) `server` and lists its tools.
async fn connect(
    source: &str,
    server: &McpServer,
    generation: u64,
    tasks: &SupervisorHandle,
) -> Result<Live, FetchErrorKind> {
    let connect_failed = |detail: String| FetchErrorKind::Call {
        detail: format!("reach the MCP server {server}: {detail}"),
        failure: CallFailure::Connect,
    };
    let (service, pid) = match server {
        McpServer::Command { argv, env, cwd } => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| connect_failed("no program".to_owned()))?;
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .envs(env.iter().cloned())
                .kill_on_drop(true);
            if let Some(cwd) = cwd {
                command.current_dir(cwd);
            }
            let (transport, stderr) = TokioChildProcess::builder(command)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| connect_failed(format!("could not start it: {error}")))?;
            let pid = transport.id();
            if let Some(stderr) = stderr {
                let source = source.to_owned();
                // Refused only once closing began: the process is then about to be killed.
                let _ = tasks.spawn("mcp server stderr", async move {
                    log_stderr(source, stderr).await;
                    Ok::<(), Infallible>(())
                });
            }
            let service =
                ().serve(transport)
                    .await
                    .map_err(|error| FetchErrorKind::Call {
                        detail: format!(
                            "reach the MCP server {server}: it did not start as one: {error}"
                        ),
                        failure: CallFailure::Transport,
                    })?;
            (service, pid)
        }
        McpServer::Url(url) => {
            let transport = StreamableHttpClientTransport::from_uri(url.as_str());
            let service =
                ().serve(transport)
                    .await
                    .map_err(|error| connect_failed(format!("{error}")))?;
            (service, None)
        }
    };
    let tools = service
        .peer()
        .list_all_tools()
        .await
        .map_err(|error| FetchErrorKind::Call {
            detail: format!(
                "list the tools of the MCP server {server}: {}",
                said(&error)
            ),
            failure: call_failure(&error),
        })?;
    tracing::info!(source, %server, tools = tools.len(), pid, "connected to the MCP server");
    Ok(Live {
        peer: service.peer().clone(),
        service: Arc::new(service),
        tools: Arc::new(
            tools
                .into_iter()
                .map(|tool| (tool.name.to_string(), tool))
                .collect(),
        ),
        generation,
        pid,
        made: Instant::now(),
        failures_before: 0,
    })
}

/// Reads a child's stderr into the log, line by line, each cut at [`MAX_STDERR_LINE`] bytes.
async fn log_stderr(source: String, mut stderr: tokio::process::ChildStderr) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0_u8; 4096];
    let log = |line: &[u8]| {
        let cut = &line[..line.len().min(MAX_STDERR_LINE)];
        tracing::info!(target: "tributary_mcp::stderr", source = %source, "{}", String::from_utf8_lossy(cut).trim_end());
    };
    loop {
        let read = match stderr.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                log(&pending);
                pending.clear();
            } else if pending.len() < MAX_STDERR_LINE {
                pending.push(byte);
            }
        }
    }
    if !pending.is_empty() {
        log(&pending);
    }
}

/// How a failed call is kinded: the server's JSON-RPC error (an unknown tool or bad arguments is the request's
/// fault), or the connection's.
fn call_failure(error: &ServiceError) -> CallFailure {
    match error {
        ServiceError::McpError(data)
            if data.code == ErrorCode::INVALID_PARAMS
                || data.code == ErrorCode::METHOD_NOT_FOUND =>
        {
            CallFailure::Refused
        }
        ServiceError::McpError(_) => CallFailure::Failed,
        ServiceError::UnexpectedResponse => CallFailure::Malformed,
        _ => CallFailure::Transport,
    }
}

/// A call's failure in words.
fn said(error: &ServiceError) -> String {
    match error {
        ServiceError::McpError(data) => format!(
            "the server answered error {}: {}",
            data.code.0,
            shorten(&data.message)
        ),
        ServiceError::TransportClosed => {
            "the connection closed (the server exited or hung up)".to_owned()
        }
        ServiceError::TransportSend(cause) => format!("the request could not be sent: {cause}"),
        ServiceError::UnexpectedResponse => {
            "the server answered something that is not a tool's result".to_owned()
        }
        other => other.to_string(),
    }
}

/// At most 300 characters of `text`, for a message.
fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A tool's annotations as the agent reads them.
fn traits_of(tool: &Tool) -> ToolTraits {
    let annotations = tool.annotations.as_ref();
    ToolTraits {
        read_only: annotations
            .and_then(|it| it.read_only_hint)
            .unwrap_or(false),
        idempotent: annotations
            .and_then(|it| it.idempotent_hint)
            .unwrap_or(false),
    }
}

fn names(tools: &HashMap<String, Tool>) -> String {
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort_unstable();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// One tool a server offers, as `tributary sources --check` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolListing {
    /// Its name, for a source's `tool`.
    pub name: String,
    /// What it says it does.
    pub description: Option<String>,
    /// Whether it says it changes nothing (its calls are then retried and hedged).
    pub read_only: bool,
    /// Whether it says a repeated call does nothing more.
    pub idempotent: bool,
    /// The JSON Schema of its arguments, for a source's `arguments`.
    pub input_schema: Value,
}

/// What `server` offers: its tools, by name. Starts it (or connects) and closes it again, within `timeout`.
pub async fn list_tools(server: &McpServer, timeout: Duration) -> Result<Vec<ToolListing>, String> {
    install_tls_provider();
    let supervisor = Supervisor::new(SupervisorConfig::new());
    let listed = tokio::time::timeout(timeout, async {
        let live = connect("sources --check", server, 0, &supervisor.handle()).await?;
        let mut tools: Vec<ToolListing> = live
            .tools
            .values()
            .map(|tool| {
                let traits = traits_of(tool);
                ToolListing {
                    name: tool.name.to_string(),
                    description: tool.description.as_ref().map(ToString::to_string),
                    read_only: traits.read_only,
                    idempotent: traits.idempotent,
                    input_schema: Value::Object((*tool.input_schema).clone()),
                }
            })
            .collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        live.close().await;
        Ok::<_, FetchErrorKind>(tools)
    })
    .await;
    supervisor.shutdown().await;
    match listed {
        Ok(Ok(tools)) => Ok(tools),
        Ok(Err(error)) => Err(format!("failed to {error}")),
        Err(_) => Err(format!(
            "the MCP server {server} did not list its tools within {}",
            tributary::trace::format_duration(timeout)
        )),
    }
}

/// rmcp's HTTP client is reqwest 0.13 with rustls and no crypto provider of its own: it uses the process's,
/// ring (which reqwest 0.12 already builds). Installed once; an earlier installation stands.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
