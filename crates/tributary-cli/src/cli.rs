//! Command-line arguments: one struct per command, the engine flags flattened into the commands that run the
//! engine. Parsing only: no I/O, no validation beyond what a value's type says; [`crate::settings`] does the rest.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tributary::pool::ExecutorKind;
use tributary_agent::limits::{MAX_DURATION, check_duration};
use tributary_agent::pipeline::{DEFAULT_IO_CONCURRENCY, InputFormat};

/// The exit codes, for `--help` (and the README).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  an answer was produced (possibly degraded), or the command did its job
  1  internal error (a bug, or the environment failed, e.g. a port in use)
  2  usage, configuration or input error
  3  no answer: no source answered, or a required source failed
  4  lab: an experiment ran and its claim did not hold (FAIL)";

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
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// When to use colour. auto: on a terminal; in auto, NO_COLOR (set, not empty) turns colour off, else
    /// CLICOLOR_FORCE (set, not empty or 0) turns it on even into a pipe, else CLICOLOR=0 turns it off. always
    /// and never win over all of them.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,

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
    #[command(after_help = EXIT_CODES)]
    Ask(AskArgs),
    /// Answer every question of a file into a SQLite database: fetch and infer in overlapping stages, resumably.
    #[command(after_help = BATCH_HELP)]
    Batch(BatchArgs),
    /// Serve the agent over HTTP: POST /v1/ask, GET /healthz, /readyz, /metrics, until Ctrl-C or SIGTERM.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Run the simulated weather, news and knowledge-base services standalone on loopback.
    #[command(after_help = EXIT_CODES)]
    Sources(SourcesArgs),
    /// Run the chapter's claims as experiments on this machine: figures, the claim, PASS or FAIL.
    #[command(after_help = LAB_HELP)]
    Lab(LabArgs),
    /// Internal: serve CPU jobs on stdin/stdout for `--executor processes`.
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Flags shared by every command that runs the engine (`ask`, `batch`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Time allowed to each source (all its attempts), inside the overall deadline (at most 1 day).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub per_source_timeout: Duration,

    /// Time allowed to the whole question, counted from when the command started; the answer comes back by
    /// then whatever the sources do (at most 1 day).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub deadline: Duration,

    /// CPU time the simulated LLM spends on each response (calibrated on this machine; at most 60s).
    #[arg(long, value_name = "DURATION", default_value = "300ms", value_parser = parse_duration)]
    pub inference_cost: Duration,

    /// Inject a fault into a source: SOURCE=KIND, KIND one of error, unavailable, hang, slow-body, malformed,
    /// huge, latency:DURATION (at most 10m). Repeatable: at most one fault and one latency per source.
    #[arg(long = "fault", value_name = "SOURCE=KIND")]
    pub faults: Vec<String>,

    /// Sources described in a TOML file, instead of the embedded simulated services.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// CPU workers for inference (default: the number of cores; at most 256).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Where inference runs.
    #[arg(long, value_name = "KIND", default_value = "threads")]
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

    #[command(flatten)]
    pub engine: EngineArgs,
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
    #[arg(long)]
    pub json: bool,

    /// Show a Gantt chart of the run: a lane per source and per worker.
    #[arg(long)]
    pub timeline: bool,

    /// Write a Chrome Trace Event JSON file of the run (opens in Perfetto).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Run the chapter's baseline: fetch, infer, fetch, infer, ... one step at a time.
    #[arg(long, conflicts_with = "compare")]
    pub sequential: bool,

    /// Run the sequential baseline and the concurrent agent, and print the speed-up.
    #[arg(long)]
    pub compare: bool,
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
exits 0.";

const BATCH_HELP: &str = "\
Input:
  A text file has one question per line; its id is the line number. A .jsonl (.ndjson,
  .json) file has one object per line, {\"id\": \"q1\" or 17, \"question\": \"...\"}.
  Blank lines are skipped; a line that cannot be used (malformed JSON, no question, too
  long) is reported with its line number and stored as failed.

Output:
  Each answer is stored as the same JSON object `tributary ask --json` prints. --export
  writes one per line, in input order, with the row's id, line, fetch_ms, infer_ms and
  stored_at added.

Resuming:
  Every answer is stored under its id, once. Run the same command again after an
  interruption (Ctrl-C, kill -9, a full disk) and it skips the ids already stored and
  answers the rest. Failed rows count as stored; delete them (DELETE FROM answers WHERE
  status = 'failed') to retry them. A duplicated id is stored once, with the answer of
  its earliest line, whatever order the answers arrive in; the other lines count as
  duplicates. A JSON line whose id cannot be read is stored by its line number (exported
  with a null id) and never collides with a given id.

Exit codes:
  0  every line of the input is accounted for (answered, failed, or already stored)
  1  internal error (a bug, or the environment failed, e.g. a port in use)
  2  usage, input or database error (bad flag, unreadable input, a database that cannot
     be opened or written, full disk); what was committed stays in the database";

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

    /// Questions fetching at once (each asks its sources in parallel, up to 64 at a time; at most 4096).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_IO_CONCURRENCY)]
    pub io_concurrency: NonZeroUsize,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// After the run, write every stored answer to FILE as JSON Lines, in input order.
    #[arg(long, value_name = "FILE.jsonl")]
    pub export: Option<PathBuf>,

    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
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
    #[arg(long = "fault", value_name = "SERVICE=KIND")]
    pub faults: Vec<String>,

    /// Seed of the generated news corpus and weather.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

const LAB_HELP: &str = "\
Exit codes:
  0  every experiment ran and its claim held (PASS)
  1  internal error (a bug, or the environment failed)
  2  usage error (an unknown experiment, an --out directory that cannot be written)
  4  an experiment ran and its claim did not hold (FAIL)";

/// Arguments of `tributary lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Experiments to run, in the order given (default: all of them, in the chapter's order).
    #[arg(value_name = "EXPERIMENT", value_parser = experiment_names())]
    pub experiments: Vec<String>,

    /// Shorter durations and smaller jobs, the same claims: the whole lab in seconds.
    #[arg(long)]
    pub quick: bool,

    /// Print one JSON object per experiment on stdout, one per line: experiment, title, description, claim,
    /// measured, verdict {pass, reason}.
    #[arg(long)]
    pub json: bool,

    /// Write EXPERIMENT.svg (a chart of the run) and EXPERIMENT.trace.json (a Chrome trace) into DIR.
    #[arg(long, value_name = "DIR")]
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_executor_kind_has_a_flag_value() {
        for kind in ExecutorKind::ALL {
            let value = ExecutorArg::from_str(kind.name(), false).expect("a flag value per kind");
            assert_eq!(ExecutorKind::from(value), kind);
        }
    }
}
