//! The `tributary` command-line tool: arguments → settings → one command per module → the printer.
//!
//! - `cli`: the arguments (clap), parsed and nothing else; `config_file`: the defaults a config file gives them.
//! - `settings`: every argument validated and resolved before anything starts.
//! - `commands`: one module per command, each a function of its settings and the printer.
//! - `printer`: stdout for data, stderr for notes, the colour decision.
//! - `error`: the one error type and the one mapping to exit codes.
//! - `ready_agent`: the engine settings turned into a running agent (the simulated services, the executor);
//!   `render`: the human-readable report; `logging`: tracing to stderr; `signals`: Ctrl-C and SIGTERM.

mod cli;
mod commands;
mod config_file;
mod error;
mod logging;
mod printer;
mod ready_agent;
mod render;
mod settings;
mod signals;
mod writing;

use crate::error::{CliError, Outcome, exit_code};
use crate::printer::Printer;
use crate::settings::CommandSettings;

fn main() -> std::process::ExitCode {
    #[cfg(all(unix, feature = "models"))]
    one_thread_per_inference();
    // Deadlines count from here: start-up (the runtime, the services, the pool) is inside them.
    let started = std::time::Instant::now();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(error) => {
            let error = CliError::from(error);
            let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
            Printer::new(cli::colour_given(&args)).error(&error);
            return std::process::ExitCode::from(exit_code(&Err(error)));
        }
    };
    let printer = Printer::new(cli.color);
    // A worker process of `--executor processes` gets the endpoint from its parent's environment.
    let export = logging::Export {
        otlp_endpoint: cli.otlp_endpoint.clone(),
    };
    let expected = match cli.command {
        cli::Command::Lab(_) => commands::lab::EXPECTED_WARNINGS,
        _ => &[],
    };
    let result = logging::init(cli.verbose, printer.stderr_colour(), &export, expected).and_then(
        |logging| {
            let result = CommandSettings::resolve(cli.command)
                .and_then(|settings| run(settings, printer, started));
            if let Some(warning) = logging.finish() {
                printer.note(&warning);
            }
            result
        },
    );
    if let Err(error) = &result {
        printer.error(error);
    }
    std::process::ExitCode::from(exit_code(&result))
}

/// Runs this program again, in this process, with `CANDLE_NUM_THREADS=1` unless the variable is set.
///
/// candle's kernels share one process-wide pool of spinning threads, sized once from that variable or the cores.
/// tributary runs one inference per CPU worker, so the workers already own the cores: two inferences each
/// spreading over both cores of a 2-core machine ran 1.3 to 1.6 times slower than each on one
/// (docs/BENCHMARKS.md). The variable is read when candle first runs, and setting it from inside the process
/// would take `unsafe` (another thread may be reading the environment); `exec` keeps the process id, so a
/// supervisor or a test sees nothing of it. A user who sets the variable keeps their value.
#[cfg(all(unix, feature = "models"))]
fn one_thread_per_inference() {
    use std::os::unix::process::CommandExt as _;
    const VARIABLE: &str = "CANDLE_NUM_THREADS";
    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let mut arguments = std::env::args_os();
    let mut command = std::process::Command::new(executable);
    if let Some(name) = arguments.next() {
        command.arg0(name);
    }
    // `exec` returns only when it failed: then run as we are, with candle's default.
    let _failed = command.args(arguments).env(VARIABLE, "1").exec();
}

fn run(
    command: CommandSettings,
    printer: Printer,
    started: std::time::Instant,
) -> Result<Outcome, CliError> {
    // Many systems start a process with a soft limit of 1,024 open files, which a server at its connection cap
    // (1,024 by default) or a wide fan-out would reach; the hard limit is what the administrator allows.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(%error, "could not raise the limit on open files");
    }
    match command {
        CommandSettings::Ask(settings) => block_on(commands::ask::run(settings, printer, started)),
        CommandSettings::Batch(settings) => block_on(commands::batch::run(settings, printer)),
        CommandSettings::Lab(settings) => block_on(commands::lab::run(settings, printer)),
        CommandSettings::Serve(settings) => block_on(commands::serve::run(settings, printer)),
        CommandSettings::Sources(settings) => block_on(commands::sources::run(settings, printer)),
        CommandSettings::CheckSources { path, config, json } => {
            block_on(commands::sources::check(&path, &config, json, printer))
        }
        CommandSettings::Mcp(settings) => block_on(commands::mcp::run(settings, printer)),
        CommandSettings::Worker(settings) => block_on(commands::worker::run(settings, printer)),
        CommandSettings::Model(settings) => block_on(commands::model::run(settings, printer)),
        CommandSettings::Completions(shell) => commands::completions::run(shell, printer),
        CommandSettings::Man => commands::man::run(printer),
        CommandSettings::Config(command) => commands::config::run(&command, printer),
        // A worker of `--executor processes`: synchronous, no runtime, jobs on stdin, results on stdout. It serves
        // the agent's jobs, and the lab's `CrashJob`, which `tributary lab parallelism` sends to these workers to
        // show that a crashed worker fails only its job.
        CommandSettings::PoolWorker => tributary::pool::serve_worker_traced(
            &tributary_agent::infer::worker_jobs().with::<tributary_lab::CrashJob>(),
            std::io::stdin().lock(),
            std::io::stdout().lock(),
            logging::worker_span,
        )
        .map(|()| Outcome::Done)
        .map_err(|error| CliError::internal("the worker failed", &error)),
    }
}

/// Runs an async command on a multi-threaded tokio runtime (asyncio.run's counterpart).
fn block_on(command: impl Future<Output = Result<Outcome, CliError>>) -> Result<Outcome, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            CliError::caused(
                error::ErrorKind::Environment,
                "failed to start the async runtime",
                &error,
            )
        })?;
    let result = runtime.block_on(command);
    // The command has joined everything it started; what is left (a lookup or a read nobody waits for any more)
    // must not hold up the exit.
    runtime.shutdown_background();
    result
}
