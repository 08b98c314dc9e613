//! The `tributary` command-line tool: arguments → settings → one command per module.

mod cli;
mod commands;
mod engine;
mod error;
mod faults;
mod logging;
mod render;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, ExitCode};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{error}");
            error.exit_code
        }
    };
    std::process::ExitCode::from(code as u8)
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    if let Command::Worker = cli.command {
        // A worker process of a `processes` executor: no runtime, just jobs in and results out until stdin ends.
        return tributary::pool::serve_worker(std::io::stdin().lock(), std::io::stdout().lock())
            .map(|()| ExitCode::Success)
            .map_err(|error| {
                CliError::internal(CliError::chain(
                    "failed to serve as a worker process",
                    &error,
                ))
            });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            CliError::internal(CliError::chain("failed to start the async runtime", &error))
        })?;
    runtime.block_on(async {
        match cli.command {
            Command::Ask(args) => commands::ask::run(args).await,
            Command::Sources(args) => commands::sources::run(args)
                .await
                .map(|()| ExitCode::Success),
            Command::Lab(args) => commands::lab::run(args).await,
            Command::Worker => unreachable!("handled before the runtime starts"),
        }
    })
}
