//! The engine settings turned into a running agent: the simulated services (unless `--config` or `--sources
//! public` names other sources), the HTTP client, the executor. Shared by every command that runs the engine.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tributary::pool::{Executor, ExecutorConfig, ExecutorKind, WorkerCommand};
use tributary::source::{ClientOptions, SourceClient};
use tributary_agent::infer::{Models, work_units_off_runtime};
use tributary_agent::places::PlaceFinder;
use tributary_agent::{Agent, AgentSettings};
use tributary_mcp::McpConnections;
use tributary_sim::{SimServer, city_named_in};
use url::Url;

use crate::error::{CliError, ErrorKind};
use crate::settings::{EngineSettings, SourcesChoice, embedded_sources};

/// The hidden command a worker process of the `processes` executor runs (see `main.rs`).
pub const WORKER_COMMAND: &str = "__worker";

/// A ready agent, and the simulated services it asks when it runs on the embedded default.
#[derive(Debug)]
pub struct ReadyAgent {
    /// The agent.
    pub agent: Agent,
    /// The simulated services, when the engine runs on the embedded default (no `--config`).
    embedded: Option<SimServer>,
    /// The connections to the `mcp` sources' servers (their child processes).
    mcp: McpConnections,
}

impl ReadyAgent {
    /// Starts the simulated services unless the settings name other sources, then the executor, with
    /// `options` for the HTTP client.
    pub async fn start(
        settings: &EngineSettings,
        options: ClientOptions,
    ) -> Result<Self, CliError> {
        let (mut sources, embedded) = match &settings.sources {
            SourcesChoice::Configured(config) => (config.sources.clone(), None),
            SourcesChoice::Embedded(scenario) => {
                let server =
                    SimServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), scenario.clone())
                        .await?;
                let base = Url::parse(&server.base_url()).map_err(|error| {
                    CliError::internal("failed to parse the simulated services' URL", &error)
                })?;
                (embedded_sources(&base).sources, Some(server))
            }
        };
        if let Some(timeout) = settings.attempt_timeout {
            for source in &mut sources {
                source.spec.timeout = timeout;
            }
        }
        let executor = start_executor(settings.executor, settings)?;
        // Calibrating burns ~40 ms of CPU once per process: do it now, off the runtime threads, before any run
        // is timed.
        work_units_off_runtime(settings.inference_cost).await;
        load_models(&settings.models).await?;
        let client =
            SourceClient::new(options.with_name_resolution(settings.name_resolution.clone()))?;
        // Sources of the `weather` kind are asked for the cities of the simulator's gazetteer, with --config
        // too: the kind speaks the simulator's protocol, `/weather?city=NAME`. Sources that geocode
        // (`open-meteo`, as with --sources public) do not use it: the planner takes a place name from the
        // question's words (`tributary_agent::places::place_candidate`) and the API resolves it.
        let places: Arc<dyn PlaceFinder> = Arc::new(city_named_in);
        let mcp = McpConnections::new();
        mcp.warm_up(&sources);
        let agent_settings = AgentSettings {
            per_source_timeout: settings.per_source_timeout,
            deadline: settings.deadline,
            inference_cost: settings.inference_cost,
            models: settings.models.clone(),
            extra_query: settings.extra_query.clone(),
            places,
            synthesize: settings.synthesize,
            mcp: Arc::new(mcp.clone()),
        };
        Ok(Self {
            agent: Agent::new(client, executor, sources, agent_settings),
            embedded,
            mcp,
        })
    }

    /// Stops the `mcp` sources' servers, the executor's workers and the embedded services, if any.
    pub async fn shutdown(self) {
        self.mcp.close().await;
        self.agent.executor().shutdown().await;
        if let Some(server) = self.embedded {
            server.shutdown().await;
        }
    }
}

/// Whether the settings' sources include an `mcp` server started as a command (a child process of ours).
pub fn starts_processes(settings: &EngineSettings) -> bool {
    match &settings.sources {
        SourcesChoice::Configured(config) => config.sources.iter().any(|source| {
            matches!(
                source.mcp.as_ref().map(|tool| &tool.server),
                Some(tributary_agent::sources::McpServer::Command { .. })
            )
        }),
        SourcesChoice::Embedded(_) => false,
    }
}

/// Loads the real models, if any, off the runtime threads: a model that cannot be loaded stops the command before
/// any question, and no question pays for the loading.
pub async fn load_models(models: &Models) -> Result<(), CliError> {
    if models.is_simulated() {
        return Ok(());
    }
    let to_load = models.clone();
    match tributary::group::blocking("load the models", move || to_load.load()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(CliError::new(
            ErrorKind::InvalidArgument,
            format!("invalid --model: {error}"),
        )),
        Err(panicked) => Err(CliError::internal("loading the models panicked", &panicked)),
    }
}

/// Starts the executor; `processes` runs this very binary's hidden `__worker` command as its workers.
fn start_executor(kind: ExecutorKind, settings: &EngineSettings) -> Result<Executor, CliError> {
    let mut config = ExecutorConfig::new(kind, settings.workers);
    if kind == ExecutorKind::Processes {
        config = config.with_worker_command(worker_command()?);
    }
    Executor::new(config).map_err(|error| {
        CliError::caused(
            ErrorKind::Environment,
            format_args!("failed to start the {kind} executor"),
            &error,
        )
    })
}

/// This executable with its hidden worker command; when spans are exported, the workers export theirs to the
/// same collector, each job's span a child of the parent's `pool.job`.
pub fn worker_command() -> Result<WorkerCommand, CliError> {
    let command = WorkerCommand::current_exe([WORKER_COMMAND]).map_err(|error| {
        CliError::caused(
            ErrorKind::Environment,
            "failed to find this executable for the worker processes",
            &error,
        )
    })?;
    Ok(crate::logging::trace_workers(command))
}
