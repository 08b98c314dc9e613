//! Settings: the arguments validated and resolved, before anything starts.
//!
//! [`CommandSettings::resolve`] turns the parsed arguments into what the commands run on: every duration and count
//! checked, every question validated, the sources file read and checked, every `--fault` matched against the
//! sources, the experiments looked up. A mistake is reported here, before the simulated services, the runtime
//! or a worker process start, and a command is a function of its settings alone.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tributary::pool::{ExecutorKind, PoolConfig};
use tributary::source::NameResolution;
use tributary_agent::infer::{InferenceCost, Models};
use tributary_agent::sources::SourcesConfig;
use tributary_agent::{ExtraQuery, Question};
use tributary_batch::distributed::StreamSettings;
use tributary_batch::{BatchInput, InputFormat};
use tributary_lab::Experiment;
use tributary_sim::serve::Limits;
use tributary_sim::{Fault, Latency, Service, SimConfig, default_scenario};
use url::Url;

use crate::cli::{
    AskArgs, BatchArgs, Command, EngineArgs, LabArgs, ServeArgs, SourcesArg, SourcesArgs,
    WorkerArgs,
};
use crate::error::{CliError, ErrorKind, question_error};
use tributary_sim::faults::{FaultFlagError, FaultKind, parse_faults};

/// One command's settings.
#[derive(Debug)]
pub enum CommandSettings {
    /// `tributary ask`.
    Ask(AskSettings),
    /// `tributary batch`.
    Batch(BatchSettings),
    /// `tributary serve`.
    Serve(ServeSettings),
    /// `tributary sources`.
    Sources(SourcesSettings),
    /// `tributary sources --check FILE`: the file's sources, read and checked.
    CheckSources {
        /// The file, for messages.
        path: PathBuf,
        /// Its sources.
        config: SourcesConfig,
        /// The report as one JSON object.
        json: bool,
    },
    /// `tributary mcp`.
    Mcp(EngineSettings),
    /// `tributary lab`.
    Lab(LabSettings),
    /// `tributary worker`: a worker of a distributed batch.
    Worker(WorkerSettings),
    /// `tributary model`.
    Model(crate::commands::model::ModelSettings),
    /// `tributary completions`: the shell.
    Completions(clap_complete::Shell),
    /// `tributary man`.
    Man,
    /// `tributary config`: the command whose settings to show.
    Config(String),
    /// The hidden `__worker`: a worker process of `--executor processes`.
    PoolWorker,
}

/// How the engine runs questions (`ask`, `batch`).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Which sources: the simulated services started in-process, or a sources file's.
    pub sources: SourcesChoice,
    /// Each source's share of the deadline.
    pub per_source_timeout: Duration,
    /// `--attempt-timeout`: each HTTP attempt's time at every source, instead of each source's own.
    pub attempt_timeout: Option<Duration>,
    /// The whole question's time.
    pub deadline: Duration,
    /// CPU per inference of the simulated model.
    pub inference_cost: InferenceCost,
    /// The models that read the responses.
    pub models: Models,
    /// `--fault` flags, as query parameters per source.
    pub extra_query: ExtraQuery,
    /// CPU workers.
    pub workers: NonZeroUsize,
    /// Where inference runs.
    pub executor: ExecutorKind,
    /// Where host names are looked up.
    pub name_resolution: NameResolution,
    /// `--synthesize` (ask and serve): the chat model writes one answer across the sources after the fan-out.
    pub synthesize: bool,
}

/// Where the engine's sources come from.
#[derive(Debug, Clone)]
pub enum SourcesChoice {
    /// The simulated services, started in-process on a free loopback port with this scenario.
    Embedded(SimConfig),
    /// The sources of a `--config` file.
    Configured(SourcesConfig),
}

/// How `ask` runs each question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskMode {
    /// The concurrent agent.
    Concurrent,
    /// The sequential baseline alone (`--sequential`).
    Sequential,
    /// Both, and the speed-up (`--compare`).
    Compare,
}

/// `tributary ask`.
#[derive(Debug)]
pub struct AskSettings {
    /// The questions, validated.
    pub questions: Vec<Question>,
    /// The engine.
    pub engine: EngineSettings,
    /// How each question runs.
    pub mode: AskMode,
    /// JSON on stdout instead of the human report.
    pub json: bool,
    /// Draw the Gantt chart.
    pub timeline: bool,
    /// Where to write the Chrome trace.
    pub trace: Option<PathBuf>,
}

/// `tributary batch`.
#[derive(Debug)]
pub struct BatchSettings {
    /// The questions, opened.
    pub input: BatchInput,
    /// The answers database.
    pub db: PathBuf,
    /// Questions fetching at once.
    pub io_concurrency: NonZeroUsize,
    /// The engine.
    pub engine: EngineSettings,
    /// Where to export the answers after the run.
    pub export: Option<PathBuf>,
    /// The summary as JSON on stdout.
    pub json: bool,
    /// No progress on stderr.
    pub quiet: bool,
    /// How long the questions in flight get to finish after the first Ctrl-C or SIGTERM.
    pub grace: Duration,
    /// `--nats`: distribute the batch through this broker.
    pub nats: Option<NatsSettings>,
    /// `--max-deliver`: deliveries of one of a distributed batch's questions at most.
    pub max_deliver: u32,
    /// `--window`: a distributed batch's published and unanswered questions, at most.
    pub window: NonZeroUsize,
}

/// A broker and how its streams are made.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    pub streams: StreamSettings,
}

/// `tributary worker`.
#[derive(Debug)]
pub struct WorkerSettings {
    pub nats: NatsSettings,
    /// The name reported with each answer.
    pub name: String,
    /// Questions fetching at once.
    pub io_concurrency: NonZeroUsize,
    pub engine: EngineSettings,
    pub quiet: bool,
    /// The hidden `--stall-on` (tests only).
    pub stall_on: Option<String>,
}

/// `tributary serve`.
#[derive(Debug)]
pub struct ServeSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Asks answered at once; over that, 503.
    pub max_in_flight: NonZeroUsize,
    /// The connection cap and each phase's time limit.
    pub limits: Limits,
    /// The engine; its deadline is each ask's longest.
    pub engine: EngineSettings,
}

/// `tributary sources`.
#[derive(Debug)]
pub struct SourcesSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The services' behaviour, faults applied.
    pub config: SimConfig,
    /// Where the services listen as one JSON line on stdout, instead of a line per service.
    pub json: bool,
}

/// `tributary lab`.
#[derive(Debug)]
pub struct LabSettings {
    /// The experiments, in the order given.
    pub experiments: Vec<&'static Experiment>,
    /// Quick mode.
    pub quick: bool,
    /// The models `parallelism` and `hybrid` measure.
    pub models: Models,
    /// JSON on stdout.
    pub json: bool,
    /// Where to write charts and traces.
    pub out: Option<PathBuf>,
}

impl CommandSettings {
    /// Validates and resolves every argument. Reads the sources file and opens the batch input; starts nothing.
    pub fn resolve(command: Command) -> Result<Self, CliError> {
        Ok(match command {
            Command::Ask(args) => Self::Ask(AskSettings::resolve(args)?),
            Command::Batch(args) => Self::Batch(BatchSettings::resolve(args)?),
            Command::Serve(args) => Self::Serve(ServeSettings::resolve(args)?),
            Command::Sources(SourcesArgs {
                check: Some(path),
                json,
                ..
            }) => Self::CheckSources {
                config: load_sources(&path)?,
                path,
                json,
            },
            Command::Sources(args) => Self::Sources(SourcesSettings::resolve(args)?),
            Command::Mcp(args) => {
                let mut engine = EngineSettings::resolve(args.engine)?;
                engine.synthesize(args.synthesize)?;
                Self::Mcp(engine)
            }
            Command::Lab(args) => Self::Lab(LabSettings::resolve(args)?),
            Command::Worker(args) => Self::Worker(WorkerSettings::resolve(args)?),
            Command::Model(args) => Self::Model(crate::commands::model::ModelSettings {
                dir: args
                    .models_dir
                    .or_else(crate::commands::model::default_dir)
                    .ok_or_else(|| {
                        CliError::argument(
                            "no models directory: set --models-dir, TRIBUTARY_MODELS_DIR or HOME",
                        )
                    })?,
                action: args.action,
            }),
            Command::Completions(args) => Self::Completions(args.shell),
            Command::Man => Self::Man,
            Command::Config(args) => Self::Config(args.command),
            Command::PoolWorker => Self::PoolWorker,
        })
    }
}

impl EngineSettings {
    fn resolve(args: EngineArgs) -> Result<Self, CliError> {
        // Durations and counts were checked against their bounds while parsing (`cli.rs`).
        let workers = args
            .workers
            .unwrap_or_else(|| PoolConfig::default().workers);
        // `--config` and an explicit `--sources` conflict (clap refuses both); a file wins over the default.
        let sources = match (&args.config, args.sources) {
            (Some(path), _) => SourcesChoice::Configured(load_sources(path)?),
            (None, SourcesArg::Simulated) => SourcesChoice::Embedded(default_scenario()),
            (None, SourcesArg::Public) => {
                if !args.faults.is_empty() {
                    return Err(CliError::argument(
                        "--fault injects faults into the simulated services, and --sources public asks the real APIs",
                    )
                    .with_hint("drop --fault, or try the fault with --sources simulated"));
                }
                SourcesChoice::Configured(SourcesConfig::public())
            }
        };
        let extra_query = fault_queries(&args.faults, &sources.names())?;
        Ok(Self {
            sources,
            per_source_timeout: args.per_source_timeout,
            attempt_timeout: args.attempt_timeout,
            deadline: args.deadline,
            inference_cost: InferenceCost::cpu(args.inference_cost),
            models: Models::from_specs(&args.models)
                .map_err(|error| CliError::argument(format!("invalid --model: {error}")))?,
            extra_query,
            workers,
            executor: args.executor.into(),
            name_resolution: if args.name_servers.is_empty() {
                NameResolution::System
            } else {
                NameResolution::NameServers(args.name_servers)
            },
            synthesize: false,
        })
    }

    /// Turns on `--synthesize`, which needs a local chat model.
    fn synthesize(&mut self, synthesize: bool) -> Result<(), CliError> {
        if synthesize && self.models.generator.is_none() {
            return Err(CliError::argument(
                "--synthesize needs a local chat model: a .gguf file or name in --model",
            )
            .with_hint(
                "e.g. --model all-MiniLM-L6-v2,SmolLM2-135M-Instruct.Q4_1.gguf --synthesize",
            ));
        }
        self.synthesize = synthesize;
        Ok(())
    }
}

impl SourcesChoice {
    /// The names of the sources, in order.
    pub fn names(&self) -> Vec<String> {
        let config = match self {
            Self::Embedded(_) => &embedded_sources(&placeholder_url()),
            Self::Configured(config) => config,
        };
        config
            .sources
            .iter()
            .map(|source| source.name().to_owned())
            .collect()
    }
}

/// The sources of the simulated services listening at `base_url`.
pub fn embedded_sources(base_url: &Url) -> SourcesConfig {
    SourcesConfig::all_kinds_at(base_url)
}

/// A URL for naming the embedded sources before the services listen anywhere.
fn placeholder_url() -> Url {
    Url::parse("http://127.0.0.1/").expect("a valid URL")
}

impl AskSettings {
    fn resolve(args: AskArgs) -> Result<Self, CliError> {
        let questions = args
            .questions
            .iter()
            .enumerate()
            .map(|(index, text)| {
                Question::new(text).map_err(|error| question_error(index + 1, &error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mode = match (args.sequential, args.compare) {
            (_, true) => AskMode::Compare,
            (true, false) => AskMode::Sequential,
            (false, false) => AskMode::Concurrent,
        };
        let mut engine = EngineSettings::resolve(args.engine)?;
        engine.synthesize(args.synthesize)?;
        Ok(Self {
            questions,
            engine,
            mode,
            json: args.json,
            timeline: args.timeline,
            trace: args.trace,
        })
    }
}

impl BatchSettings {
    fn resolve(args: BatchArgs) -> Result<Self, CliError> {
        let engine = EngineSettings::resolve(args.engine)?;
        check_batch_paths(&args.input, &args.db, args.export.as_deref())?;
        let input = open_input(&args.input, args.format.map(InputFormat::from))?;
        Ok(Self {
            input,
            db: args.db,
            io_concurrency: args.io_concurrency,
            engine,
            export: args.export,
            json: args.json,
            quiet: args.quiet,
            grace: args.grace,
            nats: args.nats.nats.map(|url| NatsSettings {
                url,
                streams: StreamSettings::default(),
            }),
            max_deliver: args.nats.max_deliver,
            window: usize::try_from(args.nats.window)
                .ok()
                .and_then(NonZeroUsize::new)
                .unwrap_or(NonZeroUsize::MIN),
        })
    }
}

impl WorkerSettings {
    fn resolve(args: WorkerArgs) -> Result<Self, CliError> {
        let engine = EngineSettings::resolve(args.engine)?;
        let name = args.name.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
            format!("{host}-{}", std::process::id())
        });
        Ok(Self {
            nats: NatsSettings {
                url: args.nats,
                streams: StreamSettings {
                    ack_wait: args.ack_wait,
                    ..StreamSettings::default()
                },
            },
            name,
            io_concurrency: args.io_concurrency,
            engine,
            quiet: args.quiet,
            stall_on: args.stall_on,
        })
    }
}

impl ServeSettings {
    fn resolve(args: ServeArgs) -> Result<Self, CliError> {
        let cost = args.engine.inference_cost;
        let mut engine = EngineSettings::resolve(args.engine)?;
        engine.synthesize(args.synthesize)?;
        let max_in_flight = match args.max_in_flight {
            Some(0) => return Err(CliError::argument("--max-in-flight must be at least 1")),
            Some(count) if count > tributary_serve::MAX_IN_FLIGHT => {
                return Err(CliError::argument(format!(
                    "--max-in-flight must be at most {}, got {count}",
                    tributary_serve::MAX_IN_FLIGHT
                )));
            }
            Some(count) => count,
            None => tributary_serve::default_max_in_flight(
                engine.workers,
                engine.sources.names().len(),
                engine.deadline,
                engine.per_source_timeout,
                cost,
            ),
        };
        Ok(Self {
            listen: args.listen,
            max_in_flight: NonZeroUsize::new(max_in_flight).unwrap_or(NonZeroUsize::MIN),
            limits: Limits {
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
                idle_timeout: args.idle_timeout,
                header_read_timeout: args.header_timeout,
                body_read_timeout: args.body_timeout,
                ..Limits::default()
            },
            engine,
        })
    }
}

impl SourcesSettings {
    fn resolve(args: SourcesArgs) -> Result<Self, CliError> {
        let mut config = SimConfig {
            seed: args.seed,
            ..SimConfig::default()
        };
        for flag in parse_faults(&args.faults).map_err(fault_flag_error)? {
            let service: Service = flag.target.parse().map_err(|_| {
                CliError::argument(format!("unknown service `{}` in --fault", flag.target))
                    .with_hint("the services are weather, news and kb")
            })?;
            let behavior = config.behavior_mut(service);
            match flag.fault {
                FaultKind::Latency(latency) => behavior.latency = Latency::Fixed(latency),
                FaultKind::Named(name) => {
                    let fault: Fault = name
                        .parse()
                        .map_err(|_| CliError::argument(format!("unknown fault kind `{name}`")))?;
                    behavior.fault = Some(fault);
                    behavior.fault_probability = 1.0;
                }
            }
        }
        Ok(Self {
            listen: args.listen,
            config,
            json: args.json,
        })
    }
}

impl LabSettings {
    fn resolve(args: LabArgs) -> Result<Self, CliError> {
        let experiments = if args.experiments.is_empty() {
            tributary_lab::EXPERIMENTS.iter().collect()
        } else {
            args.experiments
                .iter()
                .map(|name| {
                    Experiment::named(name).map_err(|error| {
                        CliError::argument(format!("unknown experiment `{}`", error.given))
                            .with_hint(format!(
                                "the experiments are {} (none runs them all)",
                                Experiment::names().join(", ")
                            ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let models = Models::from_specs(&args.models)
            .map_err(|error| CliError::argument(format!("invalid --model: {error}")))?;
        if models.endpoint.is_some() {
            return Err(CliError::argument(
                "invalid --model: the lab measures CPU work, and an openai: endpoint is I/O; give model files",
            ));
        }
        Ok(Self {
            experiments,
            quick: args.quick,
            models,
            json: args.json,
            out: args.out,
        })
    }
}

/// Reads and validates a sources file. Blocking file I/O: settings are resolved before the runtime starts.
fn load_sources(path: &Path) -> Result<SourcesConfig, CliError> {
    Ok(SourcesConfig::from_path(path)?)
}

/// Refuses a batch whose files overlap: reading the database as questions, or exporting over the database (its
/// answers would be truncated before they are read) or over the input.
fn check_batch_paths(input: &Path, db: &Path, export: Option<&Path>) -> Result<(), CliError> {
    let reads_stdin = input.as_os_str() == "-";
    if !reads_stdin && is_same_file(input, db) {
        return Err(CliError::argument(format!(
            "the input {} is the answers database --db",
            input.display()
        ))
        .with_hint("give the file of questions first, and the database with --db"));
    }
    let Some(export) = export else {
        return Ok(());
    };
    if database_files(db).any(|file| is_same_file(export, &file)) {
        return Err(CliError::argument(format!(
            "--export {} would overwrite the answers database {}",
            export.display(),
            db.display()
        ))
        .with_hint("export to a new file, for example answers.jsonl"));
    }
    if !reads_stdin && is_same_file(export, input) {
        return Err(CliError::argument(format!(
            "--export {} would overwrite the input",
            export.display()
        ))
        .with_hint("export to a new file, for example answers.jsonl"));
    }
    Ok(())
}

/// The database file and the files SQLite keeps beside it.
fn database_files(db: &Path) -> impl Iterator<Item = PathBuf> {
    let with_suffix = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        db.to_owned(),
        with_suffix("-wal"),
        with_suffix("-shm"),
        with_suffix("-journal"),
    ]
    .into_iter()
}

/// Whether two paths name the same file: the same file on disk when both exist (through links and `..`),
/// otherwise the same absolute path once the directory is resolved.
fn is_same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(first), Ok(second)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return same_inode(&first, &second);
    }
    match (resolved(a), resolved(b)) {
        (Some(first), Some(second)) => first == second,
        _ => a == b,
    }
}

#[cfg(unix)]
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false // resolved paths decide, below
}

/// `path` made absolute with its directory resolved (the file itself may not exist yet).
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return Some(canonical);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(name))
}

/// `path` opened for reading (`-` is stdin), in `format` or the one its name suggests.
fn open_input(path: &Path, format: Option<InputFormat>) -> Result<BatchInput, CliError> {
    if path.as_os_str() == "-" {
        return Ok(BatchInput::stdin(format.unwrap_or(InputFormat::Text)));
    }
    let format = format.unwrap_or_else(|| InputFormat::from_file_name(&path.to_string_lossy()));
    BatchInput::open(path, format).map_err(|error| {
        CliError::caused(
            ErrorKind::InvalidInput,
            format_args!("failed to open the input {}", path.display()),
            &error,
        )
        .with_hint("give a file of questions, one per line (or JSON Lines), or `-` for stdin")
    })
}

/// `--fault SOURCE=KIND` as query parameters the simulated services understand (`fault=`, `latency_ms=`).
pub fn fault_queries(flags: &[String], sources: &[String]) -> Result<ExtraQuery, CliError> {
    tributary_sim::faults::fault_queries(flags, sources).map_err(fault_flag_error)
}

/// A bad `--fault` as the command line reports it.
fn fault_flag_error(error: FaultFlagError) -> CliError {
    let FaultFlagError { message, hint } = error;
    match hint {
        Some(hint) => CliError::argument(message).with_hint(hint),
        None => CliError::argument(message),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn resolve(args: &[&str]) -> Result<CommandSettings, CliError> {
        let cli = Cli::try_parse_from(std::iter::once("tributary").chain(args.iter().copied()))
            .expect("the arguments parse");
        CommandSettings::resolve(cli.command)
    }

    #[test]
    fn bad_values_are_refused_before_anything_starts() {
        for (args, message) in [
            (&["ask", "   "][..], "question 1: the question is empty"),
            (
                &["ask", "x", "--fault", "moon=hang"],
                "unknown source `moon`",
            ),
        ] {
            let error = resolve(args).expect_err("refused");
            assert!(
                error.message.contains(message),
                "{args:?}: {}",
                error.message
            );
        }
    }

    #[test]
    fn faults_become_query_parameters_of_their_source() {
        let Ok(CommandSettings::Ask(ask)) = resolve(&[
            "ask",
            "x",
            "--fault",
            "news=hang",
            "--fault",
            "news=latency:2s",
        ]) else {
            panic!("ask settings");
        };
        assert_eq!(
            ask.engine.extra_query,
            vec![(
                "news".to_owned(),
                vec![
                    ("fault".to_owned(), "hang".to_owned()),
                    ("latency_ms".to_owned(), "2000".to_owned())
                ]
            )]
        );
        assert!(matches!(ask.engine.sources, SourcesChoice::Embedded(_)));
    }

    #[test]
    fn public_sources_are_the_three_apis_and_refuse_faults_and_a_config_file() {
        let Ok(CommandSettings::Ask(ask)) = resolve(&["ask", "x", "--sources", "public"]) else {
            panic!("ask settings");
        };
        let SourcesChoice::Configured(config) = &ask.engine.sources else {
            panic!("the public sources");
        };
        assert_eq!(*config, SourcesConfig::public());
        let error = resolve(&["ask", "x", "--sources", "public", "--fault", "news=hang"])
            .expect_err("refused");
        assert!(
            error.message.contains("--fault injects faults"),
            "{}",
            error.message
        );
        let conflict = Cli::try_parse_from([
            "tributary",
            "ask",
            "x",
            "--sources",
            "public",
            "--config",
            "sources.toml",
        ])
        .expect_err("a conflict");
        assert_eq!(conflict.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn no_experiment_named_selects_every_one_in_order() {
        let Ok(CommandSettings::Lab(lab)) = resolve(&["lab"]) else {
            panic!("lab settings");
        };
        assert_eq!(lab.experiments.len(), tributary_lab::EXPERIMENTS.len());
        let Ok(CommandSettings::Lab(lab)) = resolve(&["lab", "timeouts", "blocking"]) else {
            panic!("lab settings");
        };
        let names: Vec<&str> = lab
            .experiments
            .iter()
            .map(|experiment| experiment.name)
            .collect();
        assert_eq!(names, ["timeouts", "blocking"]);
    }
}
