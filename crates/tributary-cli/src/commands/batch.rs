//! `tributary batch`: answer every question of a file (or stdin) into a SQLite database, resumably.
//!
//! The work is the library's `pipeline::run_batch`; this command turns flags into settings, shows progress on
//! stderr (a bar on a terminal, a plain line every few seconds otherwise), and prints the summary: a sentence on
//! stderr, or JSON on stdout with `--json`.

use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tributary::agent::Agent;
use tributary::pipeline::{
    BatchError, BatchInput, BatchSettings, BatchStats, BatchSummary, CancellationToken,
    DEFAULT_IO_CONCURRENCY, InputFormat, StatsSnapshot, Store, StoreError, StoreReader,
    StoredCounts, batch_client_options, run_batch,
};
use tributary::source::SourceClient;

use crate::cli::EngineArgs;
use crate::engine::Engine;
use crate::error::{CliError, ExitCode};

/// How often the progress bar is redrawn on a terminal.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// How often a progress line is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

const BATCH_HELP: &str = "\
Input:
  A text file has one question per line; its id is the line number. A .jsonl (.ndjson,
  .json) file has one object per line, {\"id\": \"q1\" or 17, \"question\": \"...\"}.
  Blank lines are skipped; a line that cannot be used (malformed JSON, no question, too
  long) is reported with its line number and stored as failed.

Resuming:
  Every answer is stored under its id, once. Run the same command again after an
  interruption (Ctrl-C, kill -9, a full disk) and it skips the ids already stored and
  answers the rest. Failed rows count as stored; delete them (DELETE FROM answers WHERE
  status = 'failed') to retry them. A duplicated id is answered once: the first line
  stored wins; a later line is skipped as already stored, or, when both were in flight
  together, counted as a duplicate.

Exit codes:
  0  every line of the input is accounted for (answered, failed, or already stored)
  1  internal error (a bug, or the environment failed, e.g. a port in use)
  2  usage, input or database error (bad flag, unreadable input, a database that cannot
     be opened or written, full disk); what was committed stays in the database";

/// Answer every question of a file into a SQLite database: fetch and infer in overlapping stages, resumably.
#[derive(Debug, Args)]
#[command(after_help = BATCH_HELP)]
pub struct BatchArgs {
    /// Questions, one per line, or JSON Lines with `id` and `question`; `-` reads stdin.
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// The SQLite database of answers: created if missing, resumed if it exists.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,

    /// Input format: `text` or `jsonl` (default: jsonl for .jsonl/.ndjson/.json files, text otherwise).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub format: Option<InputFormat>,

    /// Questions fetching at once (each asks all its sources in parallel).
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

/// The `--json` summary.
#[derive(Debug, Serialize)]
struct JsonSummary<'a> {
    /// Lines read (non-blank).
    read: u64,
    /// Rows this run stored, by status.
    ok: u64,
    degraded: u64,
    failed: u64,
    /// Lines whose id was already stored (by an earlier run, or earlier in this input).
    already_stored: u64,
    /// Lines whose id another line of this run stored first.
    duplicates: u64,
    /// Lines that could not be used (stored as failed, included in `failed`).
    invalid: u64,
    elapsed_ms: f64,
    /// Rows this run stored per second.
    throughput_per_s: f64,
    db: &'a Path,
    /// Rows in the database after the run, by status.
    in_db: StoredCounts,
    /// Rows written to `--export`, when given.
    exported: Option<u64>,
}

pub async fn run(args: BatchArgs) -> Result<ExitCode, CliError> {
    let input = open_input(&args)?;
    let store = open_store(args.db.clone()).await?;

    let engine = Engine::start(&args.engine).await?;
    // The same sources, pool and settings as `ask`, with a client whose cache is sized for a batch.
    let client = SourceClient::new(batch_client_options()).map_err(|error| {
        CliError::internal(CliError::chain("failed to build the HTTP client", &error))
    })?;
    let agent = Agent::new(
        client,
        engine.agent.executor().clone(),
        engine.agent.sources().to_vec(),
        engine.agent.settings().clone(),
    );
    let settings = BatchSettings {
        io_concurrency: args.io_concurrency,
        ..BatchSettings::for_workers(workers(&agent))
    };

    let stats = Arc::new(BatchStats::new());
    let mut progress = Progress::new(args.quiet);
    let run = run_batch(
        &agent,
        &settings,
        input,
        store,
        stats.clone(),
        CancellationToken::new(),
    );
    tokio::pin!(run);
    let mut ticks = tokio::time::interval(progress.interval());
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = ticks.tick() => progress.update(&stats.snapshot()),
        }
    };
    progress.finish();
    engine.shutdown().await;
    let summary = result.map_err(|error| batch_error(error, &args.db))?;

    let exported = match &args.export {
        Some(path) => Some(export(args.db.clone(), path.clone()).await?),
        None => None,
    };
    report(&args, &summary, exported)?;
    Ok(ExitCode::Success)
}

/// The executor's workers: what the CPU stage's concurrency is sized on.
fn workers(agent: &Agent) -> NonZeroUsize {
    NonZeroUsize::new(agent.executor().stats().jobs.workers).unwrap_or(NonZeroUsize::MIN)
}

fn parse_format(text: &str) -> Result<InputFormat, String> {
    text.parse()
        .map_err(|error: tributary::pipeline::input::UnknownFormat| error.to_string())
}

fn open_input(args: &BatchArgs) -> Result<BatchInput, CliError> {
    if args.input.as_os_str() == "-" {
        return Ok(BatchInput::stdin(args.format.unwrap_or(InputFormat::Text)));
    }
    let format = args
        .format
        .unwrap_or_else(|| InputFormat::from_file_name(&args.input.to_string_lossy()));
    // Opening a file is a quick system call, done once before the runtime has any other work.
    BatchInput::open(&args.input, format).map_err(|error| {
        CliError::usage(CliError::chain(
            &format!("failed to open the input {}", args.input.display()),
            &error,
        ))
        .with_hint("give a file of questions, one per line (or JSON Lines), or `-` for stdin")
    })
}

async fn open_store(path: PathBuf) -> Result<Store, CliError> {
    let opened = tokio::task::spawn_blocking({
        let path = path.clone();
        move || Store::open(&path)
    })
    .await
    .map_err(|error| CliError::internal(CliError::chain("failed to open the database", &error)))?;
    opened.map_err(|error| store_error(&error, &path))
}

async fn export(db: PathBuf, path: PathBuf) -> Result<u64, CliError> {
    let exported = tokio::task::spawn_blocking({
        let path = path.clone();
        move || -> Result<u64, StoreError> {
            let store = StoreReader::open(&db)?;
            let file = std::fs::File::create(&path).map_err(StoreError::Export)?;
            store.export_jsonl(std::io::BufWriter::new(file))
        }
    })
    .await
    .map_err(|error| CliError::internal(CliError::chain("failed to export", &error)))?;
    exported.map_err(|error| {
        CliError::usage(CliError::chain(
            &format!("failed to export to {}", path.display()),
            &error,
        ))
        .with_hint(
            "the answers are in the database; fix the path and rerun (nothing is answered twice)",
        )
    })
}

fn batch_error(error: BatchError, db: &Path) -> CliError {
    match error {
        BatchError::Store(error) => store_error(&error, db),
        BatchError::Input(error) => {
            CliError::usage(CliError::chain("failed to read the input", &error))
                .with_hint("the answers so far are stored; rerun the same command to go on")
        }
        other => CliError::internal(CliError::chain("failed to run the batch", &other)),
    }
}

fn store_error(error: &StoreError, db: &Path) -> CliError {
    let message = CliError::chain("failed to", error);
    let message = message.replacen("failed to: ", "failed to ", 1);
    let hint = if error.is_disk_full() {
        "free some disk space and rerun the same command: the committed answers are kept and the rest is resumed"
            .to_owned()
    } else {
        match error {
            StoreError::Open { .. } => format!(
                "--db needs a writable file in an existing directory; {} must be a tributary database or missing",
                db.display()
            ),
            StoreError::ForeignSchema { .. } => "give --db a new file name".to_owned(),
            _ => "the committed answers are kept; rerun the same command to resume".to_owned(),
        }
    };
    CliError::usage(message).with_hint(hint)
}

fn report(args: &BatchArgs, summary: &BatchSummary, exported: Option<u64>) -> Result<(), CliError> {
    let stats = &summary.stats;
    if args.json {
        let json = JsonSummary {
            read: stats.read,
            ok: stats.ok,
            degraded: stats.degraded,
            failed: stats.failed,
            already_stored: stats.skipped,
            duplicates: stats.duplicates,
            invalid: stats.invalid,
            elapsed_ms: summary.elapsed.as_secs_f64() * 1000.0,
            throughput_per_s: summary.throughput(),
            db: &args.db,
            in_db: summary.in_store,
            exported,
        };
        let line = serde_json::to_string(&json).map_err(|error| {
            CliError::internal(CliError::chain("failed to encode the summary", &error))
        })?;
        return print_stdout(&line);
    }
    eprintln!(
        "done in {}: {} answered (ok {}, degraded {}, failed {}), {} already stored, {} duplicates; {:.1} questions/s",
        humantime::format_duration(Duration::from_millis(summary.elapsed.as_millis() as u64)),
        stats.stored(),
        stats.ok,
        stats.degraded,
        stats.failed,
        stats.skipped,
        stats.duplicates,
        summary.throughput(),
    );
    let in_db = &summary.in_store;
    eprintln!(
        "{} holds {} answers (ok {}, degraded {}, failed {})",
        args.db.display(),
        in_db.total(),
        in_db.ok,
        in_db.degraded,
        in_db.failed
    );
    if let (Some(path), Some(rows)) = (&args.export, exported) {
        eprintln!("exported {rows} answers to {}", path.display());
    }
    Ok(())
}

/// Writes one line of data to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(line: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::internal(
            CliError::chain("failed to write to stdout", &error),
        )),
        _ => Ok(()),
    }
}

/// Progress on stderr: a bar on a terminal, a plain line now and then otherwise, nothing with `--quiet`.
enum Progress {
    Bar(ProgressBar),
    Lines {
        last: std::time::Instant,
        started: std::time::Instant,
    },
    Quiet,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        if quiet {
            return Self::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            let now = std::time::Instant::now();
            return Self::Lines {
                last: now,
                started: now,
            };
        }
        let colour = std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        let bar = if colour {
            "{bar:30.cyan/blue}"
        } else {
            "{bar:30}"
        };
        let template = format!(
            "{{elapsed_precise}} {bar} {{pos}}/{{len}} ({{percent}}%) ETA {{eta}} {{wide_msg}}"
        );
        let style = ProgressStyle::with_template(&template)
            .expect("the progress template is valid")
            .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        Self::Bar(bar)
    }

    fn interval(&self) -> Duration {
        match self {
            Self::Bar(_) => BAR_REFRESH,
            Self::Lines { .. } | Self::Quiet => PLAIN_PROGRESS_EVERY,
        }
    }

    fn update(&mut self, stats: &StatsSnapshot) {
        match self {
            Self::Bar(bar) => {
                if let Some(total) = stats.total {
                    bar.set_length(total);
                }
                bar.set_position(stats.done);
                bar.set_message(activity(stats, bar.elapsed()));
            }
            Self::Lines { last, started } => {
                if last.elapsed() < PLAIN_PROGRESS_EVERY {
                    return;
                }
                *last = std::time::Instant::now();
                let done = match stats.total {
                    Some(total) => format!("{}/{total}", stats.done),
                    None => stats.done.to_string(),
                };
                eprintln!("batch: {done} done, {}", activity(stats, started.elapsed()));
            }
            Self::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Rate, fetches in flight and queue depths: where the pipeline is waiting.
fn activity(stats: &StatsSnapshot, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        stats.stored() as f64 / seconds
    } else {
        0.0
    };
    format!(
        "{rate:.1}/s | fetching {} | queued: fetch {} infer {} (on CPU {}) store {} | ok {} degraded {} failed {}",
        stats.fetching,
        stats.queued_for_fetch,
        stats.queued_for_infer,
        stats.inferring,
        stats.queued_for_store,
        stats.ok,
        stats.degraded,
        stats.failed,
    )
}
