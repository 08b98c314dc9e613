//! [`NativeAgent`]: the agent started as the CLI starts it, and the runs, comparisons and batches it starts.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use pyo3::prelude::*;
use tributary::group::{Supervisor, SupervisorConfig, SupervisorHandle};
use tributary::pool::{Executor, ExecutorConfig, ExecutorKind};
use tributary::source::{ClientOptions, SourceClient};
use tributary_agent::infer::{InferenceCost, Models, work_units_off_runtime};
use tributary_agent::sources::SourcesConfig;
use tributary_agent::{Agent, AgentSettings, Question, RunMode};
use tributary_mcp::McpConnections;
use tributary_sim::faults::replace_faults;
use tributary_sim::{SimServer, city_named_in, default_scenario};
use url::Url;

use crate::run::{NativeRun, RunKind};
use crate::{ConfigError, NativeBatch, QuestionError, TributaryError, runtime, seconds_or};

/// A started agent (`tributary.Agent` wraps it). Closed by `close`, or when Python drops it.
#[pyclass(module = "tributary._tributary", frozen)]
#[derive(Debug)]
pub struct NativeAgent {
    /// `None` once closed.
    started: Mutex<Option<Started>>,
}

/// What a started agent owns.
#[derive(Debug)]
struct Started {
    agent: Agent,
    /// Every run, comparison and batch: cancelled and joined when the agent closes.
    runs: Supervisor,
    /// The simulated services, when the agent asks them (no sources given).
    embedded: Option<SimServer>,
    /// The connections to the `mcp` sources' servers (their child processes).
    mcp: McpConnections,
}

impl Started {
    /// Cancels and joins every run, then stops the servers, the executor's workers and the simulated services.
    async fn shutdown(self) {
        self.runs.shutdown().await;
        self.mcp.close().await;
        self.agent.executor().shutdown().await;
        if let Some(server) = self.embedded {
            server.shutdown().await;
        }
    }
}

/// How to start an agent, as Python gave it.
struct Options {
    sources_file: Option<PathBuf>,
    sources_json: Option<String>,
    models: Vec<String>,
    workers: NonZeroUsize,
    executor: ExecutorKind,
    settings: AgentSettings,
    faults: BTreeMap<String, String>,
}

#[pymethods]
impl NativeAgent {
    /// Starts an agent: the simulated services unless sources are given (a TOML file's path, or the same
    /// sources as JSON objects), the models, the executor. Raises `ConfigError` with the CLI's message for a bad
    /// argument or sources file.
    #[new]
    #[pyo3(signature = (
        *, sources_file=None, sources_json=None, models=Vec::new(), workers=None, executor="threads",
        deadline=None, per_source_timeout=None, inference_cost=None, faults=BTreeMap::new(),
    ))]
    #[expect(
        clippy::too_many_arguments,
        reason = "Python's keyword arguments, one each"
    )]
    fn new(
        py: Python<'_>,
        sources_file: Option<PathBuf>,
        sources_json: Option<String>,
        models: Vec<String>,
        workers: Option<usize>,
        executor: &str,
        deadline: Option<f64>,
        per_source_timeout: Option<f64>,
        inference_cost: Option<&str>,
        faults: BTreeMap<String, String>,
    ) -> PyResult<Self> {
        let executor: ExecutorKind = executor
            .parse()
            .map_err(|error| ConfigError::new_err(format!("executor: {error}")))?;
        if executor == ExecutorKind::Processes {
            return Err(ConfigError::new_err(
                "executor: `processes` runs the tributary binary as its workers, which a Python process is not; \
                 use `threads` (the default): inference runs on Rust threads, which never hold the GIL",
            ));
        }
        let workers = match workers {
            None => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            Some(count) => NonZeroUsize::new(count)
                .ok_or_else(|| ConfigError::new_err("workers: must be at least 1"))?,
        };
        let defaults = AgentSettings::default();
        let settings = AgentSettings {
            deadline: seconds_or("deadline", deadline, defaults.deadline)?,
            per_source_timeout: seconds_or(
                "per_source_timeout",
                per_source_timeout,
                defaults.per_source_timeout,
            )?,
            inference_cost: inference_cost
                .map(|text| {
                    text.parse::<InferenceCost>()
                        .map_err(|error| ConfigError::new_err(format!("inference_cost: {error}")))
                })
                .transpose()?
                .unwrap_or(defaults.inference_cost),
            ..defaults
        };
        let options = Options {
            sources_file,
            sources_json,
            models,
            workers,
            executor,
            settings,
            faults,
        };
        let started = py.detach(|| runtime().block_on(start(options)))?;
        Ok(Self {
            started: Mutex::new(Some(started)),
        })
    }

    /// The sources' names, in the order they are asked and reported.
    fn source_names(&self) -> PyResult<Vec<String>> {
        Ok(self
            .agent()?
            .sources()
            .iter()
            .map(|source| source.name().to_owned())
            .collect())
    }

    /// The simulated services' base URL (`http://127.0.0.1:PORT`) when the agent asks them, else `None`.
    fn services_url(&self) -> Option<String> {
        lock(&self.started)
            .as_ref()
            .and_then(|started| started.embedded.as_ref())
            .map(SimServer::base_url)
    }

    /// CPU workers of the executor.
    fn workers(&self) -> PyResult<usize> {
        Ok(self.agent()?.workers())
    }

    /// The deadline and the per-source timeout, in seconds.
    fn limits(&self) -> PyResult<(f64, f64)> {
        let agent = self.agent()?;
        let settings = agent.settings();
        Ok((
            settings.deadline.as_secs_f64(),
            settings.per_source_timeout.as_secs_f64(),
        ))
    }

    /// Starts one question (`mode` `concurrent` or `sequential`), with its own deadline, per-source timeout and
    /// faults if given; `stream` keeps its events for `NativeRun::next_event`.
    #[pyo3(signature = (question, *, mode="concurrent", deadline=None, per_source_timeout=None, faults=BTreeMap::new(), stream=false))]
    fn ask(
        &self,
        question: &str,
        mode: &str,
        deadline: Option<f64>,
        per_source_timeout: Option<f64>,
        faults: BTreeMap<String, String>,
        stream: bool,
    ) -> PyResult<NativeRun> {
        let mode = match mode {
            "concurrent" => RunMode::Concurrent,
            "sequential" => RunMode::Sequential,
            other => {
                return Err(ConfigError::new_err(format!(
                    "mode: `{other}` is not one of concurrent, sequential"
                )));
            }
        };
        let kind = if stream {
            RunKind::Stream(mode)
        } else {
            RunKind::Ask(mode)
        };
        self.start_run(question, deadline, per_source_timeout, &faults, kind)
    }

    /// Starts the sequential baseline, then the concurrent agent, on one question (each with a fresh cache).
    #[pyo3(signature = (question, *, deadline=None, per_source_timeout=None, faults=BTreeMap::new()))]
    fn compare(
        &self,
        question: &str,
        deadline: Option<f64>,
        per_source_timeout: Option<f64>,
        faults: BTreeMap<String, String>,
    ) -> PyResult<NativeRun> {
        self.start_run(
            question,
            deadline,
            per_source_timeout,
            &faults,
            RunKind::Compare,
        )
    }

    /// Starts a batch: the questions of `input` (text, one per line, or JSON Lines with `id` and `question`)
    /// answered into the SQLite database `db`, resumable. Raises `BatchError` when either cannot be opened.
    #[pyo3(signature = (input, db, *, format=None))]
    fn batch(
        &self,
        py: Python<'_>,
        input: PathBuf,
        db: PathBuf,
        format: Option<&str>,
    ) -> PyResult<NativeBatch> {
        let agent = self.agent()?;
        let runs = self.runs()?;
        NativeBatch::start(py, agent, &runs, input, db, format)
    }

    /// Cancels and joins every run, then stops the agent's servers, workers and simulated services. Idempotent.
    fn close(&self, py: Python<'_>) {
        let started = lock(&self.started).take();
        if let Some(started) = started {
            py.detach(|| runtime().block_on(started.shutdown()));
        }
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.started).is_none()
    }
}

impl NativeAgent {
    /// The agent, or `TributaryError` once closed.
    fn agent(&self) -> PyResult<Agent> {
        lock(&self.started)
            .as_ref()
            .map(|started| started.agent.clone())
            .ok_or_else(closed)
    }

    /// Where the runs are spawned, or `TributaryError` once closed.
    fn runs(&self) -> PyResult<SupervisorHandle> {
        lock(&self.started)
            .as_ref()
            .map(|started| started.runs.handle())
            .ok_or_else(closed)
    }

    /// Checks a question and its settings, then starts it.
    fn start_run(
        &self,
        question: &str,
        deadline: Option<f64>,
        per_source_timeout: Option<f64>,
        faults: &BTreeMap<String, String>,
        kind: RunKind,
    ) -> PyResult<NativeRun> {
        let question = Question::new(question)
            .map_err(|cause| QuestionError::new_err(format!("question: {cause}")))?;
        let agent = self.agent()?;
        let settings = agent.settings();
        let names: Vec<&str> = agent.sources().iter().map(|source| source.name()).collect();
        let extra_query =
            replace_faults(&settings.extra_query, &names, faults).map_err(ConfigError::new_err)?;
        let settings = AgentSettings {
            deadline: seconds_or("deadline", deadline, settings.deadline)?,
            per_source_timeout: seconds_or(
                "per_source_timeout",
                per_source_timeout,
                settings.per_source_timeout,
            )?,
            extra_query,
            ..settings.clone()
        };
        NativeRun::start(&self.runs()?, agent.with_settings(settings), question, kind)
    }
}

impl Drop for NativeAgent {
    /// An agent Python forgot to close is closed in the background: its runs are cancelled, its servers stopped.
    fn drop(&mut self) {
        if let Some(started) = lock(&self.started).take() {
            let _enter = runtime().enter();
            let _ = closing().spawn("close a dropped agent", async move {
                started.shutdown().await;
                Ok::<(), Infallible>(())
            });
        }
    }
}

/// Where the agents Python dropped unclosed are closed: a supervisor that lives as long as the process.
fn closing() -> &'static Supervisor {
    static CLOSING: OnceLock<Supervisor> = OnceLock::new();
    CLOSING.get_or_init(|| Supervisor::new(SupervisorConfig::new()))
}

/// Starts the agent the options describe, as `ReadyAgent::start` does for the CLI.
async fn start(options: Options) -> PyResult<Started> {
    let Options {
        sources_file,
        sources_json,
        models,
        workers,
        executor,
        mut settings,
        faults,
    } = options;
    let (sources, embedded) = match (sources_file, sources_json) {
        (Some(path), _) => (
            SourcesConfig::from_path(&path)
                .map_err(|error| ConfigError::new_err(error.to_string()))?
                .sources,
            None,
        ),
        (None, Some(json)) => (sources_from_json(&json)?.sources, None),
        (None, None) => {
            let server = SimServer::start(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                default_scenario(),
            )
            .await
            .map_err(|error| {
                TributaryError::new_err(format!("failed to start the simulated services: {error}"))
            })?;
            let base = Url::parse(&server.base_url()).map_err(|error| {
                TributaryError::new_err(format!("the simulated services' URL: {error}"))
            })?;
            (SourcesConfig::all_kinds_at(&base).sources, Some(server))
        }
    };
    let names: Vec<&str> = sources.iter().map(|source| source.name()).collect();
    settings.extra_query =
        replace_faults(&Vec::new(), &names, &faults).map_err(ConfigError::new_err)?;
    settings.models = Models::from_specs(&models)
        .map_err(|error| ConfigError::new_err(format!("invalid model: {error}")))?;
    if !settings.models.is_simulated() {
        let to_load = settings.models.clone();
        tributary::group::blocking("load the models", move || to_load.load())
            .await
            .map_err(|panicked| TributaryError::new_err(format!("loading the models: {panicked}")))?
            .map_err(|error| ConfigError::new_err(format!("invalid model: {error}")))?;
    }
    let executor = Executor::new(ExecutorConfig::new(executor, workers)).map_err(|error| {
        TributaryError::new_err(format!("failed to start the {executor} executor: {error}"))
    })?;
    // Calibrating burns ~40 ms of CPU once per process: now, before any run is timed.
    work_units_off_runtime(settings.inference_cost).await;
    let client = SourceClient::new(ClientOptions::default()).map_err(|error| {
        TributaryError::new_err(format!("failed to build the HTTP client: {error}"))
    })?;
    let mcp = McpConnections::new();
    mcp.warm_up(&sources);
    settings.places = Arc::new(city_named_in);
    settings.mcp = Arc::new(mcp.clone());
    Ok(Started {
        agent: Agent::new(client, executor, sources, settings),
        runs: Supervisor::new(SupervisorConfig::new()),
        embedded,
        mcp,
    })
}

/// Sources given as Python objects (a list of the sources file's `[[source]]` tables, as JSON), read by the
/// sources file's own parser, so they are checked exactly as a file is.
fn sources_from_json(json: &str) -> PyResult<SourcesConfig> {
    let invalid = |why: String| ConfigError::new_err(format!("sources: {why}"));
    let tables: serde_json::Value =
        serde_json::from_str(json).map_err(|error| invalid(error.to_string()))?;
    let tables = toml::Value::try_from(tables).map_err(|error| invalid(error.to_string()))?;
    let mut document = toml::Table::new();
    document.insert("source".to_owned(), tables);
    let text = toml::to_string(&document).map_err(|error| invalid(error.to_string()))?;
    SourcesConfig::from_str_named(&text, "sources")
        .map_err(|error| ConfigError::new_err(error.to_string()))
}

/// The error of a call on a closed agent.
fn closed() -> PyErr {
    TributaryError::new_err("the agent is closed")
}

/// The started agent; a panic elsewhere cannot leave it half-changed (it is only ever taken whole).
fn lock(mutex: &Mutex<Option<Started>>) -> MutexGuard<'_, Option<Started>> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
