//! `tributary man`: the manual, in roff, on stdout: tributary(1), then one page per command (tributary-ask(1),
//! tributary-batch(1), ...), each rendered by clap_mangen from the same `clap::Command` that parses the arguments.
//!
//! Why pages one after another rather than one page with a section per command: clap_mangen renders a whole
//! page per command (synopsis, description, options under the help's headings, the environment variables, the
//! exit codes), and the top page's list of commands already refers to them as tributary-ask(1) and so on. One
//! page per command needs no roff written here, and `man -l` reads the pages one after another. The hidden
//! `__worker` command and clap's `help` command have no page.

use clap_mangen::Man;

use crate::cli::visible_command;
use crate::error::{CliError, Outcome};
use crate::printer::Printer;

pub fn run(printer: Printer) -> Result<Outcome, CliError> {
    let mut cli = visible_command().disable_help_subcommand(true);
    // Gives each command its page's name: tributary-ask.
    cli.build();
    let source = format!("tributary {}", env!("CARGO_PKG_VERSION"));
    printer.data_with(|out| {
        Man::new(cli.clone()).source(&source).render(out)?;
        for command in cli.get_subcommands() {
            Man::new(command.clone()).source(&source).render(out)?;
        }
        Ok(())
    })?;
    Ok(Outcome::Done)
}
