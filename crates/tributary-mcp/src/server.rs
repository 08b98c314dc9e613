//! The agent as an MCP server: the tools `ask` and `compare`, and the sources as a resource, over any transport
//! rmcp speaks (stdio for `tributary mcp`, streamable HTTP under `serve`).
//!
//! A run reports its progress as MCP progress notifications when the client asked for them (a progress token):
//! each source fetched, inferred or failed, from the run's live timeline. A client's cancellation notification
//! cancels the run's token, and the run returns only once its steps are joined (`Agent::ask_watched`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary::trace::{Activity, Outcome, Timeline, Update};
use tributary_agent::limits::MAX_DURATION;
use tributary_agent::step::source_lane;
use tributary_agent::{Agent, AgentReport, AgentSettings, Question, RunMode};
use tributary_sim::faults::replace_faults;

use crate::gate::{Gate, Pass};

/// The URI of the sources resource.
pub const SOURCES_URI: &str = "tributary://sources";

/// The arguments of `ask` and `compare`: the same names and meanings as `POST /v1/ask`'s body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AskArguments {
    /// The question: not blank, at most 4 KiB, no control characters but tab and line breaks.
    pub question: String,
    /// The time allowed to the whole question, in milliseconds; at most the server's deadline, which is also the
    /// default.
    #[serde(default)]
    #[schemars(range(min = 1, max = 86_400_000))]
    pub deadline_ms: Option<u64>,
    /// The time allowed to each source, all its attempts included, in milliseconds; default the server's.
    #[serde(default)]
    #[schemars(range(min = 1, max = 86_400_000))]
    pub per_source_timeout_ms: Option<u64>,
    /// Source name to a simulated fault (`"hang"`, `"error"`, `"latency:2s"`, ...): the simulated services fail
    /// on purpose for this question.
    #[serde(default)]
    pub faults: BTreeMap<String, String>,
}

/// The agent as an MCP server. Cheap to clone: the HTTP transport makes one per session.
#[derive(Clone)]
pub struct McpServer {
    agent: Agent,
    gate: Arc<dyn Gate>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("McpServer")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

#[tool_router]
impl McpServer {
    /// Serves `agent`, admitting each run through `gate`.
    pub fn new(agent: Agent, gate: Arc<dyn Gate>) -> Self {
        Self { agent, gate }
    }

    /// Asks every source at once, infers on each answer in parallel, and answers within the deadline even when
    /// sources are slow, failing or down.
    #[tool(
        description = "Ask a question: every source at once (weather, news, a knowledge base, ...), CPU inference on each answer in parallel, one answer within the deadline even when sources are slow, failing or down. Returns the answer, its status (ok, degraded, failed) and a report per source. Sends a progress notification as each source is fetched, inferred or fails.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn ask(
        &self,
        Parameters(arguments): Parameters<AskArguments>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let (question, settings) = self.checked(&arguments)?;
        let pass = self.admit()?;
        let agent = self.agent.with_settings(settings);
        let timeline = Timeline::live(Instant::now());
        let run = with_progress(
            agent.ask_watched(
                &question,
                RunMode::Concurrent,
                timeline.clone(),
                context.ct.clone(),
            ),
            &context,
            &timeline,
            &agent,
        )
        .await;
        pass.finish(&run.report, &run.timeline);
        if context.ct.is_cancelled() {
            return Err(ErrorData::internal_error("the run was cancelled", None));
        }
        Ok(answer_result(&run.report))
    }

    /// The chapter's comparison: the same question sequentially (fetch, infer, fetch, ...) and then concurrently,
    /// each with a fresh cache, and the speed-up.
    #[tool(
        description = "Compare the sequential baseline (fetch, infer, fetch, infer, ... one at a time) with the concurrent agent on one question, each with a fresh cache: both reports and the speed-up.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn compare(
        &self,
        Parameters(arguments): Parameters<AskArguments>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let (question, settings) = self.checked(&arguments)?;
        let pass = self.admit()?;
        let compared = self
            .agent
            .with_settings(settings)
            .compare_runs(&question, context.ct.clone())
            .await
            .map_err(|error| {
                ErrorData::internal_error(format!("could not start the comparison: {error}"), None)
            })?;
        pass.finish(&compared.comparison.concurrent, &compared.concurrent);
        if context.ct.is_cancelled() {
            return Err(ErrorData::internal_error("the run was cancelled", None));
        }
        let comparison = &compared.comparison;
        let text = format!(
            "sequential {} vs concurrent {}: {:.2}x faster (ideal {:.2}x)\n\n{}",
            tributary::trace::format_duration(millis(comparison.sequential.elapsed_ms)),
            tributary::trace::format_duration(millis(comparison.concurrent.elapsed_ms)),
            comparison.speedup,
            comparison.ideal_speedup,
            render(&comparison.concurrent)
        );
        let structured = serde_json::to_value(comparison).map_err(|error| {
            ErrorData::internal_error(format!("could not write the comparison: {error}"), None)
        })?;
        Ok(result(text, structured, false))
    }
}

impl McpServer {
    /// The question and the agent's settings for `arguments`, or an invalid-params error that says what is wrong.
    fn checked(&self, arguments: &AskArguments) -> Result<(Question, AgentSettings), ErrorData> {
        let invalid = |message: String| ErrorData::invalid_params(message, None);
        let question = Question::new(&arguments.question)
            .map_err(|cause| invalid(format!("question: {cause}")))?;
        let server = self.agent.settings();
        let duration = |field: &str, millis: u64| {
            let duration = Duration::from_millis(millis);
            if millis == 0 || duration > MAX_DURATION {
                Err(invalid(format!(
                    "{field}: must be between 1 and {} milliseconds",
                    MAX_DURATION.as_millis()
                )))
            } else {
                Ok(duration)
            }
        };
        let deadline = match arguments.deadline_ms {
            None => server.deadline,
            Some(millis) => duration("deadline_ms", millis)?.min(server.deadline),
        };
        let per_source_timeout = match arguments.per_source_timeout_ms {
            None => server.per_source_timeout,
            Some(millis) => duration("per_source_timeout_ms", millis)?,
        };
        let names: Vec<&str> = self
            .agent
            .sources()
            .iter()
            .map(|source| source.name())
            .collect();
        let extra_query =
            replace_faults(&server.extra_query, &names, &arguments.faults).map_err(invalid)?;
        Ok((
            question,
            AgentSettings {
                deadline,
                per_source_timeout,
                extra_query,
                ..server.clone()
            },
        ))
    }

    /// A place for one run, or an error saying why there is none now (the server is full or stopping).
    fn admit(&self) -> Result<Box<dyn Pass>, ErrorData> {
        self.gate.admit().map_err(|refusal| {
            ErrorData::new(
                rmcp::model::ErrorCode(SERVER_BUSY),
                refusal,
                Some(json!({"retry": true})),
            )
        })
    }

    /// The sources as the resource gives them.
    fn sources_json(&self) -> Value {
        Value::Array(
            self.agent
                .sources()
                .iter()
                .map(|source| {
                    json!({
                        "name": source.name(),
                        "kind": source.kind,
                        "topic": source.topic(),
                        "address": source.spec.base_url.as_str(),
                        "required": source.required,
                        "tool": source.mcp.as_ref().map(|tool| tool.tool.as_str()),
                    })
                })
                .collect(),
        )
    }
}

/// The JSON-RPC error code of a run refused because the server cannot take it now (an implementation-defined
/// server error, in JSON-RPC's reserved range).
pub const SERVER_BUSY: i32 = -32_003;

#[tool_handler]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        );
        info.server_info = rmcp::model::Implementation::new("tributary", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "tributary asks many slow sources at once and answers within a deadline. Call `ask` with a \
             question; read `tributary://sources` for the sources it asks."
                .to_owned(),
        );
        info
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let sources = Resource::new(SOURCES_URI, "sources")
            .with_description(
                "The sources the agent asks: name, kind, topic, address, whether required",
            )
            .with_mime_type("application/json");
        Ok(ListResourcesResult::with_all_items(vec![sources]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != SOURCES_URI {
            return Err(ErrorData::resource_not_found(
                format!(
                    "no resource {:?}; the one resource is {SOURCES_URI}",
                    request.uri
                ),
                None,
            ));
        }
        let text = serde_json::to_string_pretty(&self.sources_json()).unwrap_or_default();
        Ok(
            ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
                uri: SOURCES_URI.to_owned(),
                mime_type: Some("application/json".to_owned()),
                text,
                meta: None,
            }])
            .into(),
        )
    }
}

/// Runs `run` while a progress notification goes out for each source fetched, inferred or failed on
/// `timeline`, when the client gave a progress token; in the same task (nothing is spawned), and once more after
/// the run for what it recorded last.
async fn with_progress<F: std::future::Future>(
    run: F,
    context: &RequestContext<RoleServer>,
    timeline: &Timeline,
    agent: &Agent,
) -> F::Output {
    let Some(token) = context.meta.get_progress_token() else {
        return run.await;
    };
    let mut progress = Progress {
        // A lane is looked up by the name the agent gives it, never taken apart.
        sources_by_lane: agent
            .sources()
            .iter()
            .map(|source| (source_lane(source.name()), source.name().to_owned()))
            .collect(),
        peer: context.peer.clone(),
        token,
        timeline: timeline.clone(),
        // A fetch and an inference per source.
        total: f64::from(u32::try_from(agent.sources().len() * 2).unwrap_or(u32::MAX)),
        cursor: 0,
        begun: HashMap::new(),
        done: 0.0,
        gone: false,
    };
    tokio::pin!(run);
    let output = tokio::select! {
        output = &mut run => output,
        () = progress.follow() => run.await,
    };
    progress.send_new().await;
    output
}

/// What reports one run's progress, and how far it got.
struct Progress {
    sources_by_lane: HashMap<String, String>,
    peer: Peer<RoleServer>,
    token: ProgressToken,
    timeline: Timeline,
    total: f64,
    /// The next update to read.
    cursor: usize,
    /// Work begun and not closed yet: its source and activity.
    begun: HashMap<u64, (String, Activity)>,
    /// Notifications sent.
    done: f64,
    /// The client is gone: nothing more is sent.
    gone: bool,
}

impl Progress {
    /// Sends the progress as it comes, until the client is gone.
    async fn follow(&mut self) {
        while !self.gone {
            self.timeline.wait_for_update(self.cursor).await;
            self.send_new().await;
        }
    }

    /// Sends what the updates since the last call say.
    async fn send_new(&mut self) {
        let updates = self.timeline.updates_since(self.cursor);
        self.cursor += updates.len();
        for update in updates {
            if self.gone {
                return;
            }
            let message = match update {
                Update::Began {
                    id,
                    lane,
                    activity,
                    subject,
                    ..
                } => {
                    let source = subject
                        .or_else(|| self.sources_by_lane.get(&lane).cloned())
                        .unwrap_or(lane);
                    self.begun.insert(id, (source, activity));
                    continue;
                }
                Update::Closed { id, outcome, .. } => match self.begun.remove(&id) {
                    Some((source, activity)) => said(&source, activity, outcome),
                    None => continue,
                },
                _ => continue,
            };
            self.done += 1.0;
            let notification = ProgressNotificationParam::new(self.token.clone(), self.done)
                .with_total(self.total.max(self.done))
                .with_message(message);
            self.gone = self.peer.notify_progress(notification).await.is_err();
        }
    }
}

/// "weather fetched", "news: fetch failed", "kb inferred".
fn said(source: &str, activity: Activity, outcome: Outcome) -> String {
    let work = match activity {
        Activity::Fetch => "fetch",
        Activity::Infer => "inference",
        Activity::Other => "work",
    };
    match (activity, outcome) {
        (Activity::Fetch, Outcome::Ok) => format!("{source} fetched"),
        (Activity::Infer, Outcome::Ok) => format!("{source} inferred"),
        (_, Outcome::Ok) => format!("{source}: {work} done"),
        (_, Outcome::Failed) => format!("{source}: {work} failed"),
        (_, Outcome::TimedOut) => format!("{source}: {work} timed out"),
        (_, Outcome::Cancelled) => format!("{source}: {work} cancelled"),
    }
}

/// `ask`'s result: the answer in words, and the report as structured content (as `ask --json` prints it). A run
/// with no answer is a tool error (`isError`), with the same report.
fn answer_result(report: &AgentReport) -> CallToolResult {
    let structured = serde_json::to_value(report).unwrap_or(Value::Null);
    result(render(report), structured, report.answer.is_none())
}

fn result(text: String, structured: Value, is_error: bool) -> CallToolResult {
    let mut result = if is_error {
        CallToolResult::structured_error(structured)
    } else {
        CallToolResult::structured(structured)
    };
    // The words first, for a model or a person; then the JSON, as the protocol asks of structured content.
    result.content.insert(0, ContentBlock::text(text));
    result
}

/// A report in words: the answer (or why there is none), then a line per source.
pub fn render(report: &AgentReport) -> String {
    let mut text = match (&report.answer, &report.error) {
        (Some(answer), _) => answer.clone(),
        (None, Some(error)) => format!("No answer: {error}"),
        (None, None) => "No answer.".to_owned(),
    };
    let _ = write!(
        text,
        "\n\n{} in {} ({} workers, deadline {}):",
        report.status.as_str(),
        tributary::trace::format_duration(millis(report.elapsed_ms)),
        report.workers,
        tributary::trace::format_duration(millis(report.deadline_ms)),
    );
    for source in &report.sources {
        let _ = write!(text, "\n- {}: {}", source.name, source.status.as_str());
        if let Some(error) = &source.error {
            let _ = write!(text, " ({error})");
        }
    }
    text
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}
