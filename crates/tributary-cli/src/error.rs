//! The binary's one error type: it knows its exit code and prints a message (and a hint) to stderr.

use std::fmt;

/// Exit codes, documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// An answer was produced (possibly degraded), or the command did its job.
    Success = 0,
    /// Something went wrong inside tributary (a bug or an environment failure such as a port in use).
    Internal = 1,
    /// The command line, a config file or an input was invalid.
    Usage = 2,
    /// No answer: no source answered, or a required source failed.
    NoAnswer = 3,
    /// `lab`: an experiment ran and its claim did not hold.
    ClaimFailed = 4,
}

/// A failure that ends the command, with what the user can do about it.
#[derive(Debug)]
pub struct CliError {
    pub exit_code: ExitCode,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit_code: ExitCode::Usage,
            message: message.into(),
            hint: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            exit_code: ExitCode::Internal,
            message: message.into(),
            hint: None,
        }
    }

    /// The reader of stdout went away: stop quietly, successfully.
    pub fn stdout_closed() -> Self {
        Self {
            exit_code: ExitCode::Success,
            message: String::new(),
            hint: None,
        }
    }

    /// Whether there is anything to tell the user.
    pub fn is_quiet(&self) -> bool {
        self.message.is_empty()
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Builds the message from an error and its whole `source()` chain.
    pub fn chain(context: &str, error: &(dyn std::error::Error + 'static)) -> String {
        let mut message = format!("{context}: {error}");
        let mut cause = error.source();
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        message
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}
