//! The engine flags (`EngineArgs`) turned into a ready agent: sources, HTTP client, CPU pool, faults.
//! Shared by every command that runs the engine.

use std::num::NonZeroUsize;

use tributary::agent::embedded::{EmbeddedSources, default_scenario};
use tributary::agent::{Agent, AgentSettings, ExtraQuery};
use tributary::infer::InferenceCost;
use tributary::pool::{Executor, ExecutorConfig, ExecutorKind, PoolConfig, WorkerCommand};
use tributary::source::{ClientOptions, SourceClient, SourceSpec, SourcesConfig};

use crate::cli::EngineArgs;
use crate::error::CliError;
use crate::faults::{FaultKind, parse_faults};

/// Everything a command needs to run questions.
#[derive(Debug)]
pub struct Engine {
    pub agent: Agent,
    /// The simulated services, when the engine runs on the embedded default (no `--config`).
    embedded: Option<EmbeddedSources>,
}

impl Engine {
    /// Starts the embedded simulated services unless `--config` names other sources, then builds the engine.
    pub async fn start(args: &EngineArgs) -> Result<Self, CliError> {
        let embedded =
            match &args.config {
                Some(_) => None,
                None => Some(EmbeddedSources::start(default_scenario()).await.map_err(
                    |error| {
                        CliError::internal(CliError::chain(
                            "failed to start the simulated services",
                            &error,
                        ))
                    },
                )?),
            };
        let mut engine = Self::build(args, embedded.as_ref().map(EmbeddedSources::sources)).await?;
        engine.embedded = embedded;
        Ok(engine)
    }

    /// Stops the embedded services, if any.
    pub async fn shutdown(self) {
        if let Some(embedded) = self.embedded {
            embedded.shutdown().await;
        }
    }

    /// Builds the engine on `embedded` sources, or on the `--config` file when one is given.
    pub async fn build(
        args: &EngineArgs,
        embedded: Option<&[SourceSpec]>,
    ) -> Result<Self, CliError> {
        if args.per_source_timeout.is_zero() || args.deadline.is_zero() {
            return Err(CliError::usage(
                "--per-source-timeout and --deadline must be longer than zero",
            ));
        }
        let sources = match (&args.config, embedded) {
            (Some(path), _) => load_config(path).await?.sources,
            (None, Some(embedded)) => embedded.to_vec(),
            (None, None) => {
                return Err(CliError::internal(
                    "no sources: neither --config nor the embedded services",
                ));
            }
        };
        let extra_query = fault_queries(&args.faults, &sources)?;
        let workers = match args.workers {
            Some(0) => return Err(CliError::usage("--workers must be at least 1")),
            Some(workers) => NonZeroUsize::new(workers),
            None => None,
        };
        let workers = workers.unwrap_or_else(|| PoolConfig::default().workers);
        let executor = start_executor(args.executor, workers)?;
        let inference_cost = InferenceCost::cpu(args.inference_cost);
        // Calibrating burns ~40 ms of CPU once per process: do it off the runtime threads (tokio's blocking
        // pool: the processes executor has no in-process workers), before any run is timed.
        tokio::task::spawn_blocking(move || inference_cost.work_units())
            .await
            .map_err(|error| {
                CliError::internal(CliError::chain("failed to calibrate inference", &error))
            })?;
        let client = SourceClient::new(ClientOptions::default()).map_err(|error| {
            CliError::internal(CliError::chain("failed to build the HTTP client", &error))
        })?;
        let settings = AgentSettings {
            per_source_timeout: args.per_source_timeout,
            deadline: args.deadline,
            inference_cost,
            extra_query,
        };
        Ok(Self {
            agent: Agent::new(client, executor, sources, settings),
            embedded: None,
        })
    }
}

/// Starts the executor; `processes` runs this very binary's hidden `__worker` command as its workers.
fn start_executor(kind: ExecutorKind, workers: NonZeroUsize) -> Result<Executor, CliError> {
    let mut config = ExecutorConfig::new(kind, workers);
    if kind == ExecutorKind::Processes {
        let command = WorkerCommand::current_exe(["__worker"]).map_err(|error| {
            CliError::internal(CliError::chain(
                "failed to find this executable for the worker processes",
                &error,
            ))
        })?;
        config = config.with_worker_command(command);
    }
    Executor::new(config).map_err(|error| {
        CliError::internal(CliError::chain(
            &format!("failed to start the {kind} executor"),
            &error,
        ))
    })
}

async fn load_config(path: &std::path::Path) -> Result<SourcesConfig, CliError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|error| {
        CliError::usage(CliError::chain(
            &format!("failed to read the sources config {}", path.display()),
            &error,
        ))
        .with_hint("--config takes a TOML file of [[source]] tables; see the README")
    })?;
    SourcesConfig::from_str_named(&text, &path.display().to_string()).map_err(|error| {
        // The error reads after "failed to" and already names the file, line, column and field.
        CliError::usage(format!("failed to {error}")).with_hint(
            "the README's \"Sources file\" section lists the fields of a [[source]] table",
        )
    })
}

/// `--fault SOURCE=KIND` as query parameters the simulated services understand (`fault=`, `latency_ms=`).
fn fault_queries(flags: &[String], sources: &[SourceSpec]) -> Result<ExtraQuery, CliError> {
    let mut queries: ExtraQuery = Vec::new();
    for flag in parse_faults(flags)? {
        if !sources.iter().any(|source| source.name == flag.target) {
            let names: Vec<&str> = sources.iter().map(|source| source.name.as_str()).collect();
            return Err(CliError::usage(format!(
                "--fault names an unknown source `{}`",
                flag.target
            ))
            .with_hint(format!("the sources are: {}", names.join(", "))));
        }
        let pair = match flag.fault {
            FaultKind::Named(name) => ("fault".to_owned(), name),
            FaultKind::Latency(latency) => {
                ("latency_ms".to_owned(), latency.as_millis().to_string())
            }
        };
        match queries.iter_mut().find(|(name, _)| *name == flag.target) {
            Some((_, pairs)) => pairs.push(pair),
            None => queries.push((flag.target, vec![pair])),
        }
    }
    Ok(queries)
}
