//! The `tributary` command-line tool: arguments → settings → one command per module.

mod cli;
mod commands;
mod engine;
mod error;
mod faults;
mod logging;
mod render;
mod stdout;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, ExitCode};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            if !error.is_quiet() {
                eprintln!("{error}");
            }
            error.exit_code
        }
    };
    std::process::ExitCode::from(code as u8)
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Ask(args) => block_on(commands::ask::run(args)),
        Command::Batch(args) => block_on(commands::batch::run(args)),
        Command::Lab(args) => block_on(commands::lab::run(args)),
        Command::Sources(args) => block_on(async {
            commands::sources::run(args)
                .await
                .map(|()| ExitCode::Success)
        }),
        // A worker of `--executor processes`: synchronous, no runtime, jobs on stdin, results on stdout.
        Command::Worker => {
            tributary::pool::serve_worker(std::io::stdin().lock(), std::io::stdout().lock())
                .map(|()| ExitCode::Success)
                .map_err(|error| CliError::internal(CliError::chain("worker failed", &error)))
        }
    }
}

/// Runs an async command on a multi-threaded tokio runtime (asyncio.run's counterpart).
fn block_on(
    command: impl Future<Output = Result<ExitCode, CliError>>,
) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            CliError::internal(CliError::chain("failed to start the async runtime", &error))
        })?;
    runtime.block_on(command)
}
