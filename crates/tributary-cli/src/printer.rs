//! The printer: where every byte the binary writes goes, and whether it is coloured.
//!
//! - **Data** (answers, `--json`, the simulator's URLs) goes to stdout through [`Printer::data`]. A reader that
//!   went away (`tributary ask ... | head -1`) is not an error of ours: the write fails with `BrokenPipe` (Rust
//!   ignores SIGPIPE), and the command stops quietly with exit code 0, like other Unix tools.
//! - **Notes** (progress, hints, "wrote FILE") go to stderr through [`Printer::note`], which never fails the
//!   command: a closed stderr loses the note, nothing else.
//! - **Colour** is decided once, here, per stream, by [`colour`]: `--color always` or `never` wins; in `auto`,
//!   `NO_COLOR` set to anything but the empty string means no colour (<https://no-color.org>), then
//!   `CLICOLOR_FORCE` set to anything but empty or `0` means colour even into a pipe, then `CLICOLOR=0` means no
//!   colour (<https://bixense.com/clicolors/>), and otherwise a terminal is coloured and anything else is not.
//!   `NO_COLOR` beats `CLICOLOR_FORCE`: it is the user's own "no" (often for accessibility), while
//!   `CLICOLOR_FORCE` is usually set by a tool around us (a CI runner, a pager) to keep colour through a pipe;
//!   when both are set, no colour is the safe reading (anstream, which colours clap's help, also puts `NO_COLOR`
//!   first).
//! - **Width** of charts and wrapped prose is decided once per stream too ([`crate::render::width`]): `COLUMNS`,
//!   else the terminal's width, else 100.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};

use serde::Serialize;
use terminal_size::{Height, Width, terminal_size_of};
use tributary::trace::GanttStyle;

use crate::cli::ColorChoice;
use crate::error::{CliError, ErrorKind};
use crate::render;

/// Writes data to stdout and notes to stderr, coloured or not and as wide as decided at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    stdout_colour: bool,
    stderr_colour: bool,
    stdout_width: usize,
    stderr_width: usize,
    stderr_live: bool,
}

/// The environment variables that bear on colour, as read at start-up.
#[derive(Debug, Clone, Copy)]
pub struct ColourEnv<'a> {
    /// `NO_COLOR`.
    pub no_color: Option<&'a OsStr>,
    /// `CLICOLOR_FORCE`.
    pub clicolor_force: Option<&'a OsStr>,
    /// `CLICOLOR`.
    pub clicolor: Option<&'a OsStr>,
}

/// Whether to colour a stream: `--color`, then the environment (`NO_COLOR`, `CLICOLOR_FORCE`, `CLICOLOR`), then
/// whether the stream is a terminal. The precedence and its reasons are in the module's doc.
pub fn colour(choice: ColorChoice, env: ColourEnv<'_>, is_terminal: bool) -> bool {
    // NO_COLOR counts when set and not empty; CLICOLOR_FORCE when also not 0; CLICOLOR when it is exactly 0.
    let set = |value: Option<&OsStr>| value.is_some_and(|value| !value.is_empty());
    let set_not_zero = |value: Option<&OsStr>| set(value) && value != Some(OsStr::new("0"));
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set(env.no_color) => false,
        ColorChoice::Auto if set_not_zero(env.clicolor_force) => true,
        ColorChoice::Auto if env.clicolor == Some(OsStr::new("0")) => false,
        ColorChoice::Auto => is_terminal,
    }
}

impl Printer {
    /// Decides colour for both streams from `--color`, `NO_COLOR`, `CLICOLOR_FORCE`, `CLICOLOR` and whether each
    /// stream is a terminal, and the width of each from `COLUMNS` and the terminal's size.
    pub fn new(choice: ColorChoice) -> Self {
        let (no_color, clicolor_force, clicolor) = (
            std::env::var_os("NO_COLOR"),
            std::env::var_os("CLICOLOR_FORCE"),
            std::env::var_os("CLICOLOR"),
        );
        let env = ColourEnv {
            no_color: no_color.as_deref(),
            clicolor_force: clicolor_force.as_deref(),
            clicolor: clicolor.as_deref(),
        };
        let columns = std::env::var("COLUMNS").ok();
        let width = |size: Option<(Width, Height)>| {
            render::width(columns.as_deref(), size.map(|(Width(columns), _)| columns))
        };
        Self {
            stdout_colour: colour(choice, env, std::io::stdout().is_terminal()),
            stderr_colour: colour(choice, env, std::io::stderr().is_terminal()),
            stdout_width: width(terminal_size_of(std::io::stdout())),
            stderr_width: width(terminal_size_of(std::io::stderr())),
            stderr_live: std::io::stderr().is_terminal()
                && std::env::var_os("TERM").is_none_or(|term| term != "dumb"),
        }
    }

    /// Whether stderr is a terminal that can redraw lines in place (not `TERM=dumb`): where progress is shown
    /// as it happens.
    pub fn stderr_live(&self) -> bool {
        self.stderr_live
    }

    /// How wide a chart or wrapped prose may be on stdout, or on stderr when `to_stdout` is false.
    pub fn width(&self, to_stdout: bool) -> usize {
        if to_stdout {
            self.stdout_width
        } else {
            self.stderr_width
        }
    }

    /// Whether what goes to stdout (the report, tables) may be coloured.
    pub fn stdout_colour(&self) -> bool {
        self.stdout_colour
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
        self.data_with(|out| out.write_all(text.as_bytes()))
    }

    /// Lets `write` write to stdout, then flushes it; a failed write is reported as [`Printer::data`] reports it.
    pub fn data_with(
        &self,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        match write(&mut out).and_then(|()| out.flush()) {
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

    /// Writes `line` and a newline to stderr, its `error:`, `warning:` or `hint:` label coloured when stderr is.
    pub fn note(&self, line: &str) {
        self.note_raw(&render::paint_labels(
            &format!("{line}\n"),
            self.stderr_colour,
        ));
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

    /// The environment as the decision sees it: `(NO_COLOR, CLICOLOR_FORCE, CLICOLOR)`.
    fn env<'a>(
        no_color: Option<&'a str>,
        clicolor_force: Option<&'a str>,
        clicolor: Option<&'a str>,
    ) -> ColourEnv<'a> {
        ColourEnv {
            no_color: no_color.map(OsStr::new),
            clicolor_force: clicolor_force.map(OsStr::new),
            clicolor: clicolor.map(OsStr::new),
        }
    }

    #[test]
    fn never_and_always_ignore_the_environment() {
        assert!(!Printer::new(ColorChoice::Never).stderr_colour());
        assert!(Printer::new(ColorChoice::Always).stderr_colour());
        assert_eq!(
            Printer::new(ColorChoice::Always).gantt_style(true),
            GanttStyle::Colour
        );
        for (no_color, force, clicolor) in [
            (Some("1"), None, None),
            (None, Some("1"), None),
            (None, None, Some("0")),
            (Some("1"), Some("1"), Some("1")),
        ] {
            let env = env(no_color, force, clicolor);
            for is_terminal in [false, true] {
                assert!(colour(ColorChoice::Always, env, is_terminal), "{env:?}");
                assert!(!colour(ColorChoice::Never, env, is_terminal), "{env:?}");
            }
        }
    }

    #[test]
    fn auto_colours_a_terminal_only() {
        assert!(colour(ColorChoice::Auto, env(None, None, None), true));
        assert!(!colour(ColorChoice::Auto, env(None, None, None), false));
        // CLICOLOR other than 0 changes nothing: a terminal is coloured anyway, a pipe is not.
        assert!(colour(ColorChoice::Auto, env(None, None, Some("1")), true));
        assert!(!colour(
            ColorChoice::Auto,
            env(None, None, Some("1")),
            false
        ));
    }

    #[test]
    fn no_color_set_to_anything_but_empty_turns_colour_off() {
        for value in ["1", "0", "false", "yes"] {
            assert!(
                !colour(ColorChoice::Auto, env(Some(value), None, None), true),
                "{value}"
            );
        }
        // Empty means unset (no-color.org).
        assert!(colour(ColorChoice::Auto, env(Some(""), None, None), true));
    }

    #[test]
    fn clicolor_force_colours_a_pipe_unless_empty_or_zero() {
        for value in ["1", "yes", "true"] {
            assert!(
                colour(ColorChoice::Auto, env(None, Some(value), None), false),
                "{value}"
            );
            // It beats CLICOLOR=0 (bixense.com/clicolors).
            assert!(
                colour(ColorChoice::Auto, env(None, Some(value), Some("0")), false),
                "{value}"
            );
        }
        for value in ["", "0"] {
            assert!(
                !colour(ColorChoice::Auto, env(None, Some(value), None), false),
                "{value:?}"
            );
        }
    }

    #[test]
    fn clicolor_zero_turns_colour_off_on_a_terminal() {
        assert!(!colour(ColorChoice::Auto, env(None, None, Some("0")), true));
    }

    #[test]
    fn no_color_beats_clicolor_force() {
        assert!(!colour(
            ColorChoice::Auto,
            env(Some("1"), Some("1"), None),
            true
        ));
        assert!(!colour(
            ColorChoice::Auto,
            env(Some("1"), Some("1"), None),
            false
        ));
    }
}
