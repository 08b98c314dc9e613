//! `tributary man`: the manual, in roff, on stdout: tributary(1), then one page per command (tributary-ask(1),
//! tributary-batch(1), ...), each rendered from the same `clap::Command` that parses the arguments.
//!
//! Why pages one after another rather than one page with a section per command: clap_mangen renders a whole
//! page per command (synopsis, description, options under the help's headings), and the top page's list of
//! commands already refers to them as tributary-ask(1) and so on; `man -l` reads the pages one after another.
//! The hidden `__worker` command and clap's `help` command have no page.
//!
//! clap_mangen's sections are used as they are, except its EXTRA section (the `--help` text after the options),
//! which refills lines that `--help` lays out by hand. Here that text becomes the sections a manual has: each
//! `Heading:` paragraph of it its own section, laid out as in `--help` (no-fill), and `Exit codes:` the EXIT
//! STATUS section, one tagged paragraph per code; ENVIRONMENT (every variable the command reads) and FILES (the
//! config file) are added.

use clap::Command;
use clap_mangen::Man;
use roff::{Roff, bold, roman};

use crate::cli::visible_command;
use crate::config_file;
use crate::error::{CliError, Outcome};
use crate::printer::Printer;

/// The variables every command reads, besides those of its own options.
const SHARED_VARIABLES: [(&str, &str); 5] = [
    (
        "NO_COLOR",
        "Set and not empty: no colour, unless --color always.",
    ),
    (
        "CLICOLOR_FORCE",
        "Set and not empty or 0: colour even into a pipe, unless NO_COLOR or --color never.",
    ),
    ("CLICOLOR", "0: no colour on a terminal either."),
    (
        "COLUMNS",
        "The width of charts and wrapped text, instead of the terminal's (at least 40).",
    ),
    (
        "RUST_LOG",
        "The logs on stderr, as tracing-subscriber's EnvFilter reads it; beats -v.",
    ),
];

pub fn run(printer: Printer) -> Result<Outcome, CliError> {
    let mut cli = visible_command().disable_help_subcommand(true);
    // Gives each command its page's name: tributary-ask.
    cli.build();
    let source = format!("tributary {}", env!("CARGO_PKG_VERSION"));
    printer.data_with(|out| {
        page(&cli, &source, out)?;
        for command in cli.get_subcommands() {
            page(command, &source, out)?;
        }
        Ok(())
    })?;
    Ok(Outcome::Done)
}

/// One command's page.
fn page(command: &Command, source: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = Man::new(command.clone()).source(source.to_owned());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::new();
    let after = command
        .get_after_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    for (heading, lines) in paragraphs(&after) {
        if heading.starts_with("Exit codes") {
            exit_status(&mut roff, &lines);
        } else {
            roff.control("SH", [heading.to_uppercase().as_str()]);
            roff.control("nf", []);
            for line in lines {
                roff.text([roman(line)]);
            }
            roff.control("fi", []);
        }
    }
    environment(&mut roff, command);
    files(&mut roff, command);
    roff.to_writer(out)?;
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// The `--help` text after the options as `(heading, lines)`: a line that starts a paragraph with no indent
/// and ends with a colon (`Exit codes:`) is a heading; text before any heading goes under NOTES. Blank lines at
/// either end of a section are dropped.
fn paragraphs(text: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut after_blank = true;
    for line in text.lines() {
        let is_heading = after_blank && !line.starts_with(' ') && line.trim_end().ends_with(':');
        if is_heading {
            let heading = line.trim_end().trim_end_matches(':');
            // "Exit codes (each command's --help lists its own)": the words in brackets are for --help.
            let heading = heading.split(" (").next().unwrap_or(heading);
            sections.push((heading.to_owned(), Vec::new()));
        } else {
            if sections.is_empty() {
                sections.push(("Notes".to_owned(), Vec::new()));
            }
            if let Some((_, lines)) = sections.last_mut() {
                lines.push(line.to_owned());
            }
        }
        after_blank = line.trim().is_empty();
    }
    for (_, lines) in &mut sections {
        while lines.last().is_some_and(|line| line.trim().is_empty()) {
            lines.pop();
        }
        while lines.first().is_some_and(|line| line.trim().is_empty()) {
            lines.remove(0);
        }
    }
    sections
}

/// EXIT STATUS: one tagged paragraph per code (`  3  no answer ...`, its indented continuation lines joined),
/// so that man fills each as prose.
fn exit_status(roff: &mut Roff, lines: &[String]) {
    roff.control("SH", ["EXIT STATUS"]);
    let mut codes: Vec<(String, String)> = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        let code = trimmed
            .split_once("  ")
            .filter(|(code, _)| code.chars().all(|c| c.is_ascii_digit()) && !code.is_empty());
        match (code, codes.last_mut()) {
            (Some((code, text)), _) => codes.push((code.to_owned(), text.trim().to_owned())),
            (None, Some((_, text))) if !trimmed.is_empty() => {
                text.push(' ');
                text.push_str(trimmed);
            }
            (None, _) => {}
        }
    }
    for (code, text) in codes {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(text)]);
    }
}

/// ENVIRONMENT: the variables of the command's options (the flag beats its variable), the config file's, and
/// those every command reads.
fn environment(roff: &mut Roff, command: &Command) {
    roff.control("SH", ["ENVIRONMENT"]);
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        roff.control("TP", []);
        roff.text([bold(variable.to_string_lossy())]);
        roff.text([roman(format!(
            "Sets --{long}; the flag on the command line beats it, and it beats the config file."
        ))]);
    }
    if reads_the_config_file(command) {
        roff.control("TP", []);
        roff.text([bold(config_file::VARIABLE)]);
        roff.text([roman(
            "The config file of defaults (see FILES) to read instead of the usual one; empty: none.",
        )]);
    }
    for (variable, what) in SHARED_VARIABLES {
        roff.control("TP", []);
        roff.text([bold(variable)]);
        roff.text([roman(what)]);
    }
}

/// FILES: the config file, for the commands that read it.
fn files(roff: &mut Roff, command: &Command) {
    if !reads_the_config_file(command) {
        return;
    }
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([bold("~/.config/tributary/config.toml")]);
    roff.text([roman(
        "Defaults for any option, for every command ([COMMAND] tables for one), below a variable and a flag: \
         e.g. deadline = \"5s\". On Linux $XDG_CONFIG_HOME/tributary/config.toml when XDG_CONFIG_HOME is set; \
         on macOS ~/Library/Application Support/tributary/config.toml. tributary config COMMAND shows where \
         each default comes from.",
    )]);
}

/// Whether `command`'s page is of a command that reads the config file (not `man`, not `completions`).
fn reads_the_config_file(command: &Command) -> bool {
    !matches!(command.get_name(), "man" | "completions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_text_after_the_options_becomes_sections() {
        let text = "API:\n  POST /v1/ask   one question\n\nCtrl-C stops it.\n\nExit codes (each lists its own):\n  0  the command did its job, every\n     claim held\n  2  usage error\n";
        let sections = paragraphs(text);
        let headings: Vec<&str> = sections
            .iter()
            .map(|(heading, _)| heading.as_str())
            .collect();
        assert_eq!(headings, ["API", "Exit codes"]);
        assert_eq!(
            sections[0].1,
            ["  POST /v1/ask   one question", "", "Ctrl-C stops it."]
        );
        let mut roff = Roff::new();
        exit_status(&mut roff, &sections[1].1);
        let roff = roff.to_roff();
        assert!(roff.contains(".SH \"EXIT STATUS\""), "{roff}");
        assert!(
            roff.contains("\\fB0\\fR\nthe command did its job, every claim held\n"),
            "{roff}"
        );
        assert!(roff.contains("\\fB2\\fR\nusage error\n"), "{roff}");
    }
}
