//! The printer: where every byte the binary writes goes, and whether it is coloured.
//!
//! - **Data** (answers, `--json`, the simulator's URLs) goes to stdout through [`Printer::data`]. A reader that
//!   went away (`tributary ask ... | head -1`) is not an error of ours: the write fails with `BrokenPipe` (Rust
//!   ignores SIGPIPE), and the command stops quietly with exit code 0, like other Unix tools.
//! - **Notes** (progress, hints, "wrote FILE") go to stderr through [`Printer::note`], which never fails the
//!   command: a closed stderr loses the note, nothing else.
//! - **Colour** is decided once, here, per stream: `--color always` or `never` wins; `auto` colours a terminal
//!   unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).

use std::io::{IsTerminal, Write};

use serde::Serialize;
use tributary::trace::GanttStyle;

use crate::cli::ColorChoice;
use crate::error::{CliError, ErrorKind};

/// Writes data to stdout and notes to stderr, coloured or not as decided at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    stdout_colour: bool,
    stderr_colour: bool,
}

impl Printer {
    /// Decides colour for both streams from `--color`, `NO_COLOR` and whether each stream is a terminal.
    pub fn new(choice: ColorChoice) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let decide = |is_terminal: bool| match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && !no_color,
        };
        Self {
            stdout_colour: decide(std::io::stdout().is_terminal()),
            stderr_colour: decide(std::io::stderr().is_terminal()),
        }
    }

    /// Whether what goes to stderr (logs, progress) may be coloured.
    pub fn stderr_colour(&self) -> bool {
        self.stderr_colour
    }

    /// The Gantt chart style for stdout, or for stderr when `to_stdout` is false.
    pub fn gantt_style(&self, to_stdout: bool) -> GanttStyle {
        let colour = if to_stdout {
            self.stdout_colour
        } else {
            self.stderr_colour
        };
        if colour {
            GanttStyle::Colour
        } else {
            GanttStyle::Plain
        }
    }

    /// Writes `text` to stdout and flushes it.
    pub fn data(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(CliError::stdout_closed())
            }
            Err(error) => Err(CliError::caused(
                ErrorKind::Output,
                "failed to write to stdout",
                &error,
            )),
        }
    }

    /// Writes `line` and a newline to stdout.
    pub fn data_line(&self, line: &str) -> Result<(), CliError> {
        self.data(&format!("{line}\n"))
    }

    /// Writes `value` to stdout as one line of JSON.
    pub fn json_line(&self, value: &impl Serialize) -> Result<(), CliError> {
        let line = serde_json::to_string(value)
            .map_err(|error| CliError::internal("failed to encode JSON", &error))?;
        self.data_line(&line)
    }

    /// Writes `text` to stderr as it is; a stderr that cannot be written loses it.
    pub fn note_raw(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
    }

    /// Writes `line` and a newline to stderr.
    pub fn note(&self, line: &str) {
        self.note_raw(&format!("{line}\n"));
    }

    /// Writes a failure to stderr: the message and its hint (nothing when stdout closed).
    pub fn error(&self, error: &CliError) {
        if !error.is_quiet() {
            self.note(&error.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_and_always_ignore_the_environment() {
        assert!(!Printer::new(ColorChoice::Never).stderr_colour());
        assert!(Printer::new(ColorChoice::Always).stderr_colour());
        assert_eq!(
            Printer::new(ColorChoice::Always).gantt_style(true),
            GanttStyle::Colour
        );
    }
}
