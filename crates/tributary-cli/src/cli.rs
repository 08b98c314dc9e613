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

/// Every exit code and the commands that return it, for `tributary --help` (and the README). Each command's
/// own `--help` lists only the codes that command can return (`*_HELP` and `*_EXIT_CODES` below).
pub const EXIT_CODES: &str = "\
Exit codes (each command's --help lists its own):
  0  the command did its job: an answer (possibly degraded), every input line accounted for,
     every claim held
  1  internal error (a bug, or the environment failed, e.g. a port in use)
  2  usage, configuration or input error
  3  ask: no answer: no source answered, or a required source failed
  4  lab: an experiment ran and its claim did not hold (FAIL)";

/// The help headings that group a command's options, after its own ("Options").
const ENGINE: &str = "Engine";
const SOURCES: &str = "Sources";
const OUTPUT: &str = "Output";
const GLOBAL: &str = "Global";

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
    /// Serve the agent over HTTP: POST /v1/ask, GET /healthz, /readyz, /metrics, until Ctrl-C or SIGTERM.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Run the simulated weather, news and knowledge-base services standalone on loopback.
    #[command(after_help = SOURCES_EXIT_CODES)]
    Sources(SourcesArgs),
    /// Run the chapter's claims as experiments on this machine: figures, the claim, PASS or FAIL.
    #[command(after_help = LAB_HELP)]
    Lab(LabArgs),
    /// Internal: serve CPU jobs on stdin/stdout for `--executor processes`.
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Flags shared by every command that runs the engine (`ask`, `batch`, `serve`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Time allowed to each source (all its attempts), inside the overall deadline (at most 1 day).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration,
        help_heading = ENGINE
    )]
    pub per_source_timeout: Duration,

    /// Time allowed to the whole question, counted from when the command started; the answer comes back by
    /// then whatever the sources do (at most 1 day).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "15s",
        value_parser = parse_duration,
        help_heading = ENGINE
    )]
    pub deadline: Duration,

    /// CPU time the simulated LLM spends on each response (calibrated on this machine; at most 60s).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "300ms",
        value_parser = parse_duration,
        help_heading = ENGINE
    )]
    pub inference_cost: Duration,

    /// Inject a fault into a source: SOURCE=KIND, KIND one of error, unavailable, hang, slow-body, malformed,
    /// huge, latency:DURATION (at most 10m). Repeatable: at most one fault and one latency per source.
    #[arg(long = "fault", value_name = "SOURCE=KIND", help_heading = SOURCES)]
    pub faults: Vec<String>,

    /// Sources described in a TOML file, instead of the embedded simulated services.
    #[arg(long, value_name = "FILE", help_heading = SOURCES)]
    pub config: Option<PathBuf>,

    /// CPU workers for inference (default: the number of cores; at most 256).
    #[arg(long, value_name = "N", help_heading = ENGINE)]
    pub workers: Option<usize>,

    /// Where inference runs.
    #[arg(long, value_name = "KIND", default_value = "threads", help_heading = ENGINE)]
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
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// Show a Gantt chart of the run: a lane per source and per worker.
    #[arg(long, help_heading = OUTPUT)]
    pub timeline: bool,

    /// Write a Chrome Trace Event JSON file of the run (opens in Perfetto).
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
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
  3  no answer (to one question or more): no source answered, or a required source failed";

/// `tributary sources`' exit codes.
const SOURCES_EXIT_CODES: &str = "\
Exit codes:
  0  stopped by Ctrl-C
  1  internal error (a bug, or the environment failed: the address is in use, the services did
     not stop in time)
  2  usage error (a bad --listen, --fault or --seed)";

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

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Questions fetching at once (each asks its sources in parallel, up to 64 at a time; at most 4096).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_IO_CONCURRENCY, help_heading = ENGINE)]
    pub io_concurrency: NonZeroUsize,

    /// After the run, write every stored answer to FILE as JSON Lines, in input order.
    #[arg(long, value_name = "FILE.jsonl", help_heading = OUTPUT)]
    pub export: Option<PathBuf>,

    /// Print the summary as JSON on stdout.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// No progress on stderr.
    #[arg(long, short, help_heading = OUTPUT)]
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
    #[arg(long = "fault", value_name = "SERVICE=KIND", help_heading = SOURCES)]
    pub faults: Vec<String>,

    /// Seed of the generated news corpus and weather.
    #[arg(long, default_value_t = 42, help_heading = SOURCES)]
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
        ("ask", &[0, 1, 2, 3]),
        ("batch", &[0, 1, 2]),
        ("serve", &[0, 1, 2]),
        ("sources", &[0, 1, 2]),
        ("lab", &[0, 1, 2, 4]),
    ];

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
            [0, 1, 2, 3, 4],
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
                            "--deadline",
                            "--inference-cost",
                            "--workers",
                            "--executor",
                        ],
                    ),
                    ("Sources", &["--fault", "--config"]),
                    ("Output", &["--json", "--timeline", "--trace"]),
                    ("Global", &["--verbose...", "--color"]),
                ],
            ),
            (
                "batch",
                &[
                    ("Arguments", &[]),
                    ("Options", &["--db", "--format", "--help"]),
                    (
                        "Engine",
                        &[
                            "--per-source-timeout",
                            "--deadline",
                            "--inference-cost",
                            "--workers",
                            "--executor",
                            "--io-concurrency",
                        ],
                    ),
                    ("Sources", &["--fault", "--config"]),
                    ("Output", &["--export", "--json", "--quiet"]),
                    ("Global", &["--verbose...", "--color"]),
                ],
            ),
            (
                "serve",
                &[
                    ("Options", &["--listen", "--max-in-flight", "--help"]),
                    (
                        "Engine",
                        &[
                            "--per-source-timeout",
                            "--deadline",
                            "--inference-cost",
                            "--workers",
                            "--executor",
                        ],
                    ),
                    ("Sources", &["--fault", "--config"]),
                    ("Global", &["--verbose...", "--color"]),
                ],
            ),
            (
                "sources",
                &[
                    ("Options", &["--listen", "--help"]),
                    ("Sources", &["--fault", "--seed"]),
                    ("Global", &["--verbose...", "--color"]),
                ],
            ),
            (
                "lab",
                &[
                    ("Arguments", &[]),
                    ("Options", &["--quick", "--help"]),
                    ("Output", &["--json", "--out"]),
                    ("Global", &["--verbose...", "--color"]),
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

    #[test]
    fn every_executor_kind_has_a_flag_value() {
        for kind in ExecutorKind::ALL {
            let value = ExecutorArg::from_str(kind.name(), false).expect("a flag value per kind");
            assert_eq!(ExecutorKind::from(value), kind);
        }
    }
}
