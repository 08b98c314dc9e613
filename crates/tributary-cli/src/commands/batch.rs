//! `tributary batch`: answer every question of a file (or stdin) into a SQLite database, resumably.
//!
//! The work is the agent's `pipeline::run_batch`; this command shows progress on stderr (a bar on a terminal, a plain line every few seconds otherwise), and prints the summary: a sentence on
//! stderr, or JSON on stdout with `--json`.

use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tributary_agent::Agent;
use tributary_batch::distributed::{
    self, CoordinatorSettings, StreamSettings, WorkerThroughput, coordinate,
};
use tributary_batch::{
    BatchStats, BatchSummary, Shutdown, StatsSnapshot, Store, StoreError, StoreReader,
    StoredCounts, batch_client_options, run_batch,
};

use crate::error::{CliError, ErrorKind, Outcome, batch_error, distributed_error, store_error};
use crate::printer::Printer;
use crate::ready_agent::ReadyAgent;
use crate::settings::BatchSettings;
use crate::signals::{Signal, Signals};

/// How often the progress bar is redrawn on a terminal.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// How often a progress line is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Who answers the questions: this process, or the `tributary worker`s of a NATS server.
enum Answerers {
    /// This process's pipeline (`batch` without `--nats`).
    Local,
    /// The workers of a distributed batch, through the server `--nats` names.
    Workers {
        connection: distributed::Connection,
        streams: StreamSettings,
    },
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
    /// Rows written to `--export`, when given (not when interrupted).
    exported: Option<u64>,
    /// `SIGINT` or `SIGTERM` when a signal stopped the run early, else null.
    interrupted: Option<&'static str>,
    /// Questions dropped in flight when the grace period ended (not stored; a rerun answers them).
    abandoned: u64,
    /// Input lines not accounted for (never read, or abandoned): what a rerun answers. Null for stdin.
    left: Option<u64>,
    /// `--nats`: this run's answers by the worker that gave them, by name; null for a local batch.
    workers: Option<std::collections::BTreeMap<String, u64>>,
}

/// How long an interrupted run may take to end once its grace period is over and what was in flight is dropped:
/// it only commits what arrived. Past this, something waits that should not (a broker gone, a disk stuck), and
/// the process quits as on a second signal, keeping everything committed.
const ABANDONED_RUN_ENDS_WITHIN: Duration = Duration::from_secs(5);

pub async fn run(settings: BatchSettings, printer: Printer) -> Result<Outcome, CliError> {
    let db = settings.db.clone();
    // Whether this run makes the database: a run that fails (or is stopped while connecting), having put
    // nothing in it that a rerun needs, removes it again, so that a failed start (a broker that cannot be
    // reached) leaves no empty database behind.
    let existed = tokio::fs::try_exists(&db).await.unwrap_or(true);
    let result = run_batch_command(settings, printer, existed).await;
    if !existed && result.is_err() {
        remove_if_unused(db).await;
    }
    result
}

async fn run_batch_command(
    settings: BatchSettings,
    printer: Printer,
    db_existed: bool,
) -> Result<Outcome, CliError> {
    let BatchSettings {
        input,
        db,
        io_concurrency,
        engine,
        export,
        json,
        quiet,
        grace,
        nats,
        max_deliver,
        window,
    } = settings;
    // Listening first: a Ctrl-C during start-up is kept, and stops the run before it reads anything.
    let mut signals = Signals::install()?;
    // Before any work: an unusable database (read-only, foreign) fails at once.
    let store = open_store(db.clone()).await?;
    let answerers = match &nats {
        Some(nats) => {
            let connecting = distributed::connect(&nats.url, "tributary-coordinator");
            match signals.unless_signalled(connecting).await {
                Ok(connected) => Answerers::Workers {
                    connection: connected.map_err(|error| distributed_error(error, Some(&db)))?,
                    streams: nats.streams,
                },
                Err(signal) => {
                    printer.note(&format!(
                        "{signal}: stopped while connecting to NATS at {}; nothing was read or stored",
                        nats.url
                    ));
                    drop(store);
                    if !db_existed {
                        remove_if_unused(db).await;
                    }
                    return Ok(Outcome::Interrupted(signal));
                }
            }
        }
        None => Answerers::Local,
    };
    // The same sources, executor and settings as `ask`, with a client whose cache is sized for a batch.
    let ready = ReadyAgent::start(&engine, batch_client_options()).await?;
    let batch = tributary_batch::BatchSettings {
        io_concurrency,
        ..tributary_batch::BatchSettings::for_workers(workers(&ready.agent))
    };

    let stats = Arc::new(BatchStats::new());
    let throughput = Arc::new(WorkerThroughput::new());
    let mut progress = Progress::new(quiet, printer);
    if matches!(answerers, Answerers::Workers { .. }) {
        progress.show_workers(throughput.clone());
    }
    let shutdown = Shutdown::new();
    let mut interrupted = None;
    let result = {
        // Boxed: the pipeline's state machine is large; on the heap it costs the stack nothing.
        let mut run: Pin<Box<dyn Future<Output = Result<BatchSummary, CliError>> + Send>> =
            match answerers {
                Answerers::Workers {
                    connection,
                    streams,
                } => {
                    let coordinator = CoordinatorSettings {
                        window,
                        streams,
                        max_deliver,
                        store_batch_rows: batch.store_batch_rows,
                        store_batch_interval: batch.store_batch_interval,
                    };
                    let (agent, stats, throughput, shutdown, db) = (
                        ready.agent.clone(),
                        stats.clone(),
                        throughput.clone(),
                        shutdown.clone(),
                        db.clone(),
                    );
                    Box::pin(async move {
                        coordinate(
                            &agent,
                            connection,
                            &coordinator,
                            input,
                            store,
                            stats,
                            throughput,
                            shutdown,
                        )
                        .await
                        .map_err(|error| distributed_error(error, Some(&db)))
                    })
                }
                Answerers::Local => {
                    let (agent, batch, stats, shutdown, db) = (
                        ready.agent.clone(),
                        batch.clone(),
                        stats.clone(),
                        shutdown.clone(),
                        db.clone(),
                    );
                    Box::pin(async move {
                        run_batch(&agent, &batch, input, store, stats, shutdown)
                            .await
                            .map_err(|error| batch_error(error, &db))
                    })
                }
            };
        let mut ticks = tokio::time::interval(progress.interval());
        let grace_over = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace_over);
        let abandoned_too_long = tokio::time::sleep(Duration::MAX);
        tokio::pin!(abandoned_too_long);
        loop {
            tokio::select! {
                result = &mut run => break result,
                _ = ticks.tick() => progress.update(&stats.snapshot()),
                signal = signals.recv() => {
                    if interrupted.is_some() {
                        progress.finish();
                        printer.note(&format!(
                            "{signal} again: quitting now; every answer committed so far is kept; run the same \
                             command to resume"
                        ));
                        // Nothing to clean up that a rerun needs: SQLite keeps every committed transaction,
                        // and the worker processes exit when their stdin closes with this process.
                        std::process::exit(i32::from(signal.exit_code()));
                    }
                    interrupted = Some(signal);
                    shutdown.stop_reading();
                    grace_over.as_mut().reset(tokio::time::Instant::now() + grace);
                    progress.note(printer, &format!(
                        "{signal}: stopping; reading stopped, the {} questions in flight get {} to be stored \
                         (Ctrl-C again quits at once)",
                        stats.snapshot().in_flight(),
                        humantime::format_duration(grace),
                    ));
                }
                () = &mut grace_over, if !shutdown.is_abandoning() => {
                    shutdown.abandon_in_flight();
                    abandoned_too_long
                        .as_mut()
                        .reset(tokio::time::Instant::now() + ABANDONED_RUN_ENDS_WITHIN);
                    progress.note(printer, &format!(
                        "the grace period is over: dropping the {} questions still in flight (a rerun answers \
                         them)",
                        stats.snapshot().in_flight(),
                    ));
                }
                () = &mut abandoned_too_long, if shutdown.is_abandoning() => {
                    progress.finish();
                    printer.note(&format!(
                        "the run did not end within {} of dropping what was in flight: quitting now; every \
                         answer committed so far is kept; run the same command to resume",
                        humantime::format_duration(ABANDONED_RUN_ENDS_WITHIN),
                    ));
                    let signal = interrupted.unwrap_or(Signal::Terminate);
                    std::process::exit(i32::from(signal.exit_code()));
                }
            }
        }
    };
    progress.finish();
    ready.shutdown().await;
    let summary = result?;

    let output = Output {
        workers: nats.is_some().then_some(&*throughput),
        db: &db,
        export: export.as_deref(),
        json,
    };
    if let Some(signal) = interrupted {
        report(output, printer, &summary, None, Some(signal))?;
        return Ok(Outcome::Interrupted(signal));
    }
    let exported = match &export {
        Some(path) => Some(export_answers(db.clone(), path.clone()).await?),
        None => None,
    };
    report(output, printer, &summary, exported, None)?;
    Ok(Outcome::Done)
}

/// The executor's workers: what the CPU stage's concurrency is sized on.
fn workers(agent: &Agent) -> NonZeroUsize {
    NonZeroUsize::new(agent.executor().stats().jobs.workers).unwrap_or(NonZeroUsize::MIN)
}

async fn open_store(path: PathBuf) -> Result<Store, CliError> {
    let opened = tributary::group::blocking("open the database", {
        let path = path.clone();
        move || Store::open(&path)
    })
    .await
    .map_err(|error| CliError::internal("failed to open the database", &error))?;
    opened.map_err(|error| store_error(&error, &path))
}

/// Removes the database at `db` (and SQLite's files beside it) if it holds nothing a rerun needs
/// ([`StoreReader::is_unused`]): for a run that made it and did not finish. A file that cannot be read is left
/// as it is.
async fn remove_if_unused(db: PathBuf) {
    let removed = tributary::group::blocking("remove the unused database", move || {
        let unused = StoreReader::open(&db)
            .and_then(|reader| reader.is_unused())
            .unwrap_or(false);
        if !unused {
            return;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!("could not remove {}: {error}", Path::new(&path).display())
                }
            }
        }
    })
    .await;
    if let Err(error) = removed {
        tracing::warn!("could not remove the unused database: {error}");
    }
}

async fn export_answers(db: PathBuf, path: PathBuf) -> Result<u64, CliError> {
    let exported = tributary::group::blocking("export the answers", {
        let path = path.clone();
        move || -> Result<u64, StoreError> {
            let store = StoreReader::open(&db)?;
            // Written beside the target and renamed over it only when complete: a failed export leaves the
            // file that was there (or none), never half an export.
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let mut file = tempfile::Builder::new()
                .prefix(".tributary-export-")
                .tempfile_in(directory)
                .map_err(StoreError::Export)?;
            let rows = {
                let mut out = std::io::BufWriter::new(file.as_file_mut());
                let rows = store.export_jsonl(&mut out)?;
                out.flush().map_err(StoreError::Export)?;
                rows
            };
            file.persist(&path)
                .map_err(|error| StoreError::Export(error.error))?;
            Ok(rows)
        }
    })
    .await
    .map_err(|error| CliError::internal("failed to export", &error))?;
    exported.map_err(|error| {
        CliError::caused(
            ErrorKind::Output,
            format_args!("failed to export to {}", path.display()),
            &error,
        )
        .with_hint(
            "the answers are in the database; fix the path and rerun (nothing is answered twice)",
        )
    })
}

/// Where the summary goes and what it names.
#[derive(Debug, Clone, Copy)]
struct Output<'a> {
    db: &'a Path,
    export: Option<&'a Path>,
    json: bool,
    /// A distributed run's answers by worker.
    workers: Option<&'a WorkerThroughput>,
}

fn report(
    output: Output<'_>,
    printer: Printer,
    summary: &BatchSummary,
    exported: Option<u64>,
    interrupted: Option<Signal>,
) -> Result<(), CliError> {
    let stats = &summary.stats;
    // Lines of the input not accounted for: never read, or dropped in flight. Unknown for stdin.
    let left = stats.total.map(|total| total.saturating_sub(stats.done));
    // For whoever pressed Ctrl-C, with or without --json: what happened and what to do, as the last line.
    let interrupted_note = || {
        if interrupted.is_none() {
            return;
        }
        let left = match left {
            Some(left) => format!("{left} left"),
            None => "the rest of the input left".to_owned(),
        };
        printer.note(&format!(
            "interrupted: {} stored, {left}; run the same command to resume",
            stats.stored()
        ));
    };
    if output.json {
        interrupted_note();
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
            db: output.db,
            in_db: summary.in_store,
            exported,
            interrupted: interrupted.map(Signal::name),
            abandoned: stats.abandoned,
            left,
            workers: output
                .workers
                .map(|workers| workers.snapshot().into_iter().collect()),
        };
        return printer.json_line(&json);
    }
    let ended = if interrupted.is_some() {
        "stopped after"
    } else {
        "done in"
    };
    printer.note(&format!(
        "{ended} {}: {} answered (ok {}, degraded {}, failed {}), {} already stored, {} duplicates; {:.1} questions/s",
        tributary::trace::format_duration(summary.elapsed),
        stats.stored(),
        stats.ok,
        stats.degraded,
        stats.failed,
        stats.skipped,
        stats.duplicates,
        summary.throughput(),
    ));
    if let Some(workers) = output.workers {
        let each = each_worker(workers, summary.elapsed);
        if !each.is_empty() {
            let noun = if each.len() == 1 { "worker" } else { "workers" };
            printer.note(&format!(
                "answered by {} {noun}: {}",
                each.len(),
                each.join(", ")
            ));
        }
    }
    let in_db = &summary.in_store;
    printer.note(&format!(
        "{} holds {} answers (ok {}, degraded {}, failed {})",
        output.db.display(),
        in_db.total(),
        in_db.ok,
        in_db.degraded,
        in_db.failed
    ));
    if let (Some(path), Some(rows)) = (output.export, exported) {
        printer.note(&format!("exported {rows} answers to {}", path.display()));
    }
    interrupted_note();
    Ok(())
}

/// Progress on stderr: a bar on a terminal, a plain line now and then otherwise, nothing with `--quiet`; for a
/// distributed batch, each worker's answers and rate too.
struct Progress {
    display: Display,
    workers: Option<Arc<WorkerThroughput>>,
}

enum Display {
    Bar(ProgressBar),
    Lines {
        last: std::time::Instant,
        started: std::time::Instant,
        printer: Printer,
    },
    Quiet,
}

impl Progress {
    fn new(quiet: bool, printer: Printer) -> Self {
        Self {
            display: Display::new(quiet, printer),
            workers: None,
        }
    }

    /// Adds each worker's answers and rate to the progress (a distributed batch).
    fn show_workers(&mut self, workers: Arc<WorkerThroughput>) {
        self.workers = Some(workers);
    }

    fn interval(&self) -> Duration {
        match self.display {
            Display::Bar(_) => BAR_REFRESH,
            Display::Lines { .. } | Display::Quiet => PLAIN_PROGRESS_EVERY,
        }
    }

    fn update(&mut self, stats: &StatsSnapshot) {
        let workers = self.workers.as_deref();
        match &mut self.display {
            Display::Bar(bar) => {
                if let Some(total) = stats.total {
                    bar.set_length(total);
                }
                bar.set_position(stats.done);
                bar.set_message(activity(stats, bar.elapsed(), workers));
            }
            Display::Lines {
                last,
                started,
                printer,
            } => {
                if last.elapsed() < PLAIN_PROGRESS_EVERY {
                    return;
                }
                *last = std::time::Instant::now();
                let done = match stats.total {
                    Some(total) => format!("{}/{total}", stats.done),
                    None => stats.done.to_string(),
                };
                printer.note(&format!(
                    "batch: {done} done, {}",
                    activity(stats, started.elapsed(), workers)
                ));
            }
            Display::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }

    /// A note on stderr that is not progress (shown even with `--quiet`), above the bar when there is one.
    fn note(&self, printer: Printer, line: &str) {
        match &self.display {
            Display::Bar(bar) => bar.suspend(|| printer.note(line)),
            Display::Lines { .. } | Display::Quiet => printer.note(line),
        }
    }
}

impl Display {
    fn new(quiet: bool, printer: Printer) -> Self {
        if quiet {
            return Self::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            let now = std::time::Instant::now();
            return Self::Lines {
                last: now,
                started: now,
                printer,
            };
        }
        let bar = if printer.stderr_colour() {
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
}

/// Rate, fetches in flight and queue depths: where the pipeline is waiting.
/// `count` over `elapsed`, or 0 before any time has passed.
fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Each worker's answers and rate over `elapsed`, by name: "left 102 (0.9/s)".
fn each_worker(workers: &WorkerThroughput, elapsed: Duration) -> Vec<String> {
    workers
        .snapshot()
        .into_iter()
        .map(|(name, answers)| format!("{name} {answers} ({:.1}/s)", per_second(answers, elapsed)))
        .collect()
}

fn activity(
    stats: &StatsSnapshot,
    elapsed: Duration,
    workers: Option<&WorkerThroughput>,
) -> String {
    let rate = per_second(stats.stored(), elapsed);
    if let Some(workers) = workers {
        // Distributed: the local stages are idle; who answered, and how fast, is what tells.
        let each = each_worker(workers, elapsed);
        return format!(
            "{rate:.1}/s | ok {} degraded {} failed {} | workers: {}",
            stats.ok,
            stats.degraded,
            stats.failed,
            if each.is_empty() {
                "none yet".to_owned()
            } else {
                each.join(", ")
            },
        );
    }
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
