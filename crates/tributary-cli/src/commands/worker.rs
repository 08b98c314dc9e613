//! `tributary worker`: answers a distributed batch's questions from NATS JetStream until SIGTERM or Ctrl-C.
//!
//! The work is the agent's `distributed::work`; this command connects, starts the engine as `batch` does, shows
//! a progress line now and then on stderr, and turns the first signal into "stop pulling, finish what is held".
//! A second signal quits at once: what it held is delivered again to another worker after `--ack-wait`.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_batch::batch_client_options;
use tributary_batch::distributed::{self, WorkerStats, WorkerSummary};

use crate::error::{CliError, ErrorKind, Outcome, distributed_error};
use crate::printer::Printer;
use crate::ready_agent::ReadyAgent;
use crate::settings::WorkerSettings;
use crate::signals::Signals;

/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub async fn run(settings: WorkerSettings, printer: Printer) -> Result<Outcome, CliError> {
    let WorkerSettings {
        nats,
        name,
        io_concurrency,
        engine,
        quiet,
        stall_on,
    } = settings;
    // Listening first: connecting may wait (up to its timeout) and one signal must end that wait too.
    let mut signals = Signals::install()?;
    let client = match signals
        .unless_signalled(distributed::connect(&nats.url, &name))
        .await
    {
        Ok(connected) => connected.map_err(|error| distributed_error(error, None))?,
        Err(signal) => {
            // Nothing held, nothing to finish: stopped as asked (exit 0, as any worker stopped by a signal).
            printer.note(&format!(
                "{signal}: stopped while connecting to NATS at {}",
                nats.url
            ));
            return Ok(Outcome::Done);
        }
    };
    // To ask, once stopped, whether the broker was still there.
    let connection = client.clone();
    let ready = ReadyAgent::start(&engine, batch_client_options()).await?;
    let workers =
        NonZeroUsize::new(ready.agent.executor().stats().jobs.workers).unwrap_or(NonZeroUsize::MIN);
    let worker = distributed::WorkerSettings {
        name: name.clone(),
        io_concurrency,
        // As a local batch: twice the CPU workers keeps every one busy.
        infer_concurrency: workers
            .saturating_mul(NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN)),
        streams: nats.streams,
        stall_on,
    };
    let stats = Arc::new(WorkerStats::new());
    let stop = CancellationToken::new();
    if !quiet {
        printer.note(&format!(
            "worker {name}: pulling questions from {}",
            nats.url
        ));
    }
    let result = {
        let mut run = Box::pin(distributed::work(
            &ready.agent,
            client,
            &worker,
            stats.clone(),
            stop.clone(),
        ));
        let mut ticks = tokio::time::interval(PROGRESS_EVERY);
        ticks.tick().await;
        loop {
            tokio::select! {
                result = &mut run => break result,
                _ = ticks.tick(), if !quiet => printer.note(&progress(&name, &stats.snapshot())),
                signal = signals.recv() => {
                    if stop.is_cancelled() {
                        printer.note(&format!(
                            "{signal} again: quitting now; the questions held are delivered again after --ack-wait"
                        ));
                        std::process::exit(i32::from(signal.exit_code()));
                    }
                    stop.cancel();
                    printer.note(&format!(
                        "{signal}: no more pulling; finishing the questions held (again quits at once)"
                    ));
                }
            }
        }
    };
    let broker_reachable = distributed::is_connected(&connection);
    ready.shutdown().await;
    let summary = result.map_err(|error| distributed_error(error, None))?;
    if !quiet {
        printer.note(&format!("stopped: {}", progress(&name, &summary)));
    }
    ended(&name, &nats.url, &summary, broker_reachable, printer)
}

/// How a worker that stopped as asked ends. Asked to stop and stopped cleanly, having lost nothing, is this
/// command's success (exit 0), even when some answers could not be published: JetStream delivers their
/// questions again. But a worker that could not publish because the broker is gone did not do its job, and a
/// supervisor or a script must see it: exit 1, as when it cannot connect.
fn ended(
    name: &str,
    url: &str,
    summary: &WorkerSummary,
    broker_reachable: bool,
    printer: Printer,
) -> Result<Outcome, CliError> {
    if summary.handed_back == 0 {
        return Ok(Outcome::Done);
    }
    let handed_back = format!(
        "worker {name} handed back {} questions it could not publish; they will be redelivered to another worker",
        summary.handed_back
    );
    if broker_reachable {
        printer.note(&handed_back);
        return Ok(Outcome::Done);
    }
    Err(CliError::new(
        ErrorKind::Environment,
        format!(
            "the NATS server at {url} was unreachable when the worker stopped: {handed_back} after --ack-wait"
        ),
    ))
}

fn progress(name: &str, stats: &WorkerSummary) -> String {
    format!(
        "worker {name}: {} answered ({} failed), {} handed back, {} pulled",
        stats.answered, stats.failed, stats.handed_back, stats.pulled
    )
}
