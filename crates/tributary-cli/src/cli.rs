//! Command-line arguments: one struct per command, shared engine flags flattened into the commands that run the
//! engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tributary::pool::ExecutorKind;

const EXIT_CODES: &str = "\
Exit codes:
  0  an answer was produced (possibly degraded), or the command did its job
  1  internal error (a bug, or the environment failed, e.g. a port in use)
  2  usage, configuration or input error
  3  no answer: no source answered, or a required source failed
  4  lab: an experiment ran and its claim did not hold (FAIL)";

/// Ask many slow sources at once, run CPU-heavy inference on every core, answer within a deadline.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask a question: fetch every source at once, infer on each answer as it arrives, print one answer.
    #[command(after_help = EXIT_CODES)]
    Ask(AskArgs),
    /// Answer every question of a file into a SQLite database: fetch and infer in overlapping stages, resumably.
    Batch(crate::commands::batch::BatchArgs),
    /// Run the simulated weather, news and knowledge-base services standalone on loopback.
    #[command(after_help = EXIT_CODES)]
    Sources(SourcesArgs),
    /// Run the chapter's claims as experiments on this machine: figures, the claim, PASS or FAIL.
    #[command(after_help = EXIT_CODES)]
    Lab(crate::commands::lab::LabArgs),
    /// Internal: serve inference jobs on stdin/stdout for `--executor processes`.
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Flags shared by every command that runs the engine (`ask`, `batch`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Time allowed to each source (all its attempts), inside the overall deadline.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub per_source_timeout: Duration,

    /// Time allowed to the whole question; the answer comes back by then whatever the sources do.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub deadline: Duration,

    /// CPU time the simulated LLM spends on each response (calibrated on this machine).
    #[arg(long, value_name = "DURATION", default_value = "300ms", value_parser = parse_duration)]
    pub inference_cost: Duration,

    /// Inject a fault into a source: SOURCE=KIND, KIND one of error, unavailable, hang, slow-body, malformed,
    /// huge, latency:DURATION. Repeatable.
    #[arg(long = "fault", value_name = "SOURCE=KIND")]
    pub faults: Vec<String>,

    /// Sources described in a TOML file, instead of the embedded simulated services.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// CPU workers for inference (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Where inference runs: threads (the real pool), processes (worker processes of this binary: a crash is
    /// isolated and reported), global-lock (a model of CPython's GIL), inline (on the async thread: blocks it).
    #[arg(long, value_name = "KIND", default_value = "threads", value_parser = parse_executor)]
    pub executor: ExecutorKind,
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

fn parse_executor(text: &str) -> Result<ExecutorKind, String> {
    text.parse::<ExecutorKind>()
        .map_err(|error| format!("{error}; one of: threads, processes, global-lock, inline"))
}

/// Parses "300ms", "5s", "1m 30s".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("`{text}` is not a duration ({error}); try 500ms, 5s or 1m"))
}
