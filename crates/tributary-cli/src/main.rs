//! The `tributary` command-line tool.

use clap::Parser;

/// Ask many slow sources at once, run CPU-heavy inference on every core, answer within a deadline.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
