//! The binary's one error type, and how every way a command ends maps to an exit code.
//!
//! A command returns `Result<Outcome, CliError>`. [`exit_code`] is the only place that turns either into a
//! number: a [`CliError`] by its [`ErrorKind`], an [`Outcome`] by what the command found. The codes are
//! documented in `tributary --help` ([`crate::cli::EXIT_CODES`]), in each command's `--help` (only the codes
//! that command can return; a test checks the lists) and in docs/CLI.md.

use std::fmt;
use std::path::Path;

use tributary::pool::ExecutorError;
use tributary::source::ClientBuildError;
use tributary_agent::sources::ConfigError;
use tributary_agent::{QuestionError, error_chain};
use tributary_batch::distributed::DistributedError;
use tributary_batch::{BatchError, StoreError};
use tributary_lab::LabError;
use tributary_sim::SimError;

use crate::signals::Signal;

/// How a command that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer was produced (possibly degraded), or the command did its job.
    Done,
    /// `ask`: no answer, because no source answered or a required one did not.
    NoAnswer,
    /// `lab`: an experiment ran and its claim did not hold.
    ClaimFailed,
    /// `batch`: stopped early by a signal; what it stored is committed and a rerun resumes.
    Interrupted(Signal),
}

/// What kind of failure ended a command: decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A flag's value is invalid (exit 2).
    InvalidArgument,
    /// The sources file cannot be read or is invalid (exit 2).
    InvalidConfig,
    /// A question or an input file is unusable (exit 2).
    InvalidInput,
    /// The batch database cannot be opened, read or written (exit 2; what was committed stays).
    Database,
    /// A file we were asked to write (a trace, an export, `--out`) cannot be written (exit 2).
    Output,
    /// The environment failed us: a port in use, no runtime, a worker process that cannot start (exit 1).
    Environment,
    /// A bug in tributary (exit 1).
    Internal,
    /// The reader of stdout went away: stop quietly (exit 0, nothing printed).
    StdoutClosed,
}

/// A failure that ends the command: what happened, in words, and what the user can do about it.
#[derive(Debug)]
pub struct CliError {
    /// What kind of failure: decides the exit code.
    pub kind: ErrorKind,
    /// What went wrong; a sentence that starts with what failed ("failed to ...", "question 2: ...").
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
}

/// The process exit code of a finished command: the only place that picks one.
pub fn exit_code(result: &Result<Outcome, CliError>) -> u8 {
    match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::NoAnswer) => 3,
        Ok(Outcome::ClaimFailed) => 4,
        Ok(Outcome::Interrupted(signal)) => signal.exit_code(),
        Err(error) => match error.kind {
            ErrorKind::StdoutClosed => 0,
            ErrorKind::Environment | ErrorKind::Internal => 1,
            ErrorKind::InvalidArgument
            | ErrorKind::InvalidConfig
            | ErrorKind::InvalidInput
            | ErrorKind::Database
            | ErrorKind::Output => 2,
        },
    }
}

impl CliError {
    /// A failure of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// `context: error: its cause: ...`, of `kind`.
    pub fn caused(
        kind: ErrorKind,
        context: impl fmt::Display,
        error: &(dyn std::error::Error + 'static),
    ) -> Self {
        Self::new(kind, format!("{context}: {}", error_chain(error)))
    }

    /// An invalid flag value.
    pub fn argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// A bug.
    pub fn internal(context: impl fmt::Display, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::caused(ErrorKind::Internal, context, error)
    }

    /// The reader of stdout went away.
    pub fn stdout_closed() -> Self {
        Self::new(ErrorKind::StdoutClosed, "")
    }

    /// A file we were asked to write could not be written.
    pub fn output(path: &Path, error: &std::io::Error, hint: &str) -> Self {
        Self::caused(
            ErrorKind::Output,
            format_args!("failed to write {}", path.display()),
            error,
        )
        .with_hint(hint)
    }

    /// The same error with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether there is anything to tell the user.
    pub fn is_quiet(&self) -> bool {
        self.kind == ErrorKind::StdoutClosed
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

impl From<ConfigError> for CliError {
    fn from(error: ConfigError) -> Self {
        // The error reads after "failed to" and already names the file (and the line, column and field).
        Self::new(ErrorKind::InvalidConfig, format!("failed to {}", error_chain(&error))).with_hint(
            "--config (or TRIBUTARY_CONFIG) takes a TOML file of [[source]] tables; docs/SOURCES.md lists \
             their fields",
        )
    }
}

impl From<crate::config_file::ConfigFileError> for CliError {
    fn from(error: crate::config_file::ConfigFileError) -> Self {
        Self::new(ErrorKind::InvalidConfig, error.to_string()).with_hint(format!(
            "the config file holds defaults for the options, e.g. deadline = \"5s\" (docs/CONFIG.md); \
             {}= (empty) runs without it",
            crate::config_file::VARIABLE
        ))
    }
}

impl From<SimError> for CliError {
    fn from(error: SimError) -> Self {
        let hint = matches!(error, SimError::Bind { .. })
            .then_some("pick another address with --listen, e.g. --listen 127.0.0.1:0");
        let error = Self::caused(
            ErrorKind::Environment,
            "failed to start the simulated services",
            &error,
        );
        match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

impl From<ExecutorError> for CliError {
    fn from(error: ExecutorError) -> Self {
        Self::caused(
            ErrorKind::Environment,
            "failed to start the executor",
            &error,
        )
    }
}

impl From<ClientBuildError> for CliError {
    fn from(error: ClientBuildError) -> Self {
        Self::caused(
            ErrorKind::Environment,
            "failed to build the HTTP client",
            &error,
        )
    }
}

impl From<LabError> for CliError {
    fn from(error: LabError) -> Self {
        Self::caused(
            ErrorKind::Environment,
            "failed to run the experiment",
            &error,
        )
    }
}

/// A question refused by validation, numbered as given on the command line (from 1).
pub fn question_error(number: usize, error: &QuestionError) -> CliError {
    CliError::new(
        ErrorKind::InvalidInput,
        format!("question {number}: {error}"),
    )
    .with_hint("ask a question in words, e.g. tributary ask \"What is the GIL?\"")
}

/// The answers database at `db` failed.
pub fn store_error(error: &StoreError, db: &Path) -> CliError {
    let message = format!("failed to {}", error_chain(error));
    let hint = if error.is_disk_full() {
        "free some disk space and rerun the same command: the committed answers are kept and the rest is resumed"
            .to_owned()
    } else {
        match error {
            StoreError::Open { .. } => format!(
                "--db needs a writable file in an existing directory; {} must be a tributary database or missing",
                db.display()
            ),
            StoreError::ForeignSchema { .. } => "give --db a new file name".to_owned(),
            StoreError::NotWritable { .. } => format!(
                "make {} and its directory writable (chmod u+w), or give --db a file in a writable directory",
                db.display()
            ),
            _ => "the committed answers are kept; rerun the same command to resume".to_owned(),
        }
    };
    CliError::new(ErrorKind::Database, message).with_hint(hint)
}

/// The batch stopped before the end of its input.
pub fn batch_error(error: BatchError, db: &Path) -> CliError {
    match error {
        BatchError::Store(error) => store_error(&error, db),
        BatchError::Input(error) => {
            CliError::caused(ErrorKind::InvalidInput, "failed to read the input", &error)
                .with_hint("the answers so far are stored; rerun the same command to go on")
        }
        other => CliError::internal("failed to run the batch", &other),
    }
}

/// A distributed batch's or worker's failure, with the hint that fits.
pub fn distributed_error(error: DistributedError, db: Option<&Path>) -> CliError {
    match error {
        DistributedError::Batch(error) => match db {
            Some(db) => batch_error(error, db),
            None => CliError::internal("failed to run", &error),
        },
        DistributedError::Store(error) => match db {
            Some(db) => store_error(&error, db),
            None => CliError::internal("failed to store", &error),
        },
        DistributedError::BatchKey { .. } => {
            let hint = "the database's `batch` table was edited: restore its key, or start the batch on a new \
                        database";
            CliError::caused(ErrorKind::Database, "failed to name the batch", &error)
                .with_hint(hint)
        }
        DistributedError::ConnectTimeout { ref url, .. } => {
            let hint = format!(
                "is {url} a NATS server's client port (4222 by default)? e.g. nats://127.0.0.1:4222 \
                 (nats-server -js)"
            );
            CliError::caused(ErrorKind::Environment, "failed to reach NATS", &error).with_hint(hint)
        }
        DistributedError::Connect { ref url, .. } => {
            let hint = format!("is a JetStream server listening at {url}? (nats-server -js)");
            CliError::caused(ErrorKind::Environment, "failed to reach NATS", &error).with_hint(hint)
        }
        other => CliError::caused(ErrorKind::Environment, "failed to use NATS", &other).with_hint(
            "what was stored stays; once the NATS server is back, rerun the same command",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_documented_code() {
        let code = |kind| exit_code(&Err(CliError::new(kind, "x")));
        assert_eq!(code(ErrorKind::StdoutClosed), 0);
        assert_eq!(code(ErrorKind::Internal), 1);
        assert_eq!(code(ErrorKind::Environment), 1);
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::InvalidConfig,
            ErrorKind::InvalidInput,
            ErrorKind::Database,
            ErrorKind::Output,
        ] {
            assert_eq!(code(kind), 2, "{kind:?}");
        }
        assert_eq!(exit_code(&Ok(Outcome::Done)), 0);
        assert_eq!(exit_code(&Ok(Outcome::NoAnswer)), 3);
        assert_eq!(exit_code(&Ok(Outcome::ClaimFailed)), 4);
        assert_eq!(exit_code(&Ok(Outcome::Interrupted(Signal::Interrupt))), 130);
        assert_eq!(exit_code(&Ok(Outcome::Interrupted(Signal::Terminate))), 143);
    }

    /// A batch key edited into something subjects cannot carry is the database's problem (exit 2), not the
    /// broker's: it once read "failed to use NATS ... once the NATS server is back, rerun".
    #[test]
    fn a_bad_batch_key_is_a_database_error() {
        let key = tributary_batch::distributed::streams::BatchKey::new("a.b").expect_err("refused");
        let error = distributed_error(key, Some(Path::new("answers.db")));
        let text = error.to_string();
        assert!(text.contains("failed to name the batch"), "{text}");
        assert!(text.contains("\"a.b\""), "{text}");
        assert!(text.contains("`batch` table was edited"), "{text}");
        assert_eq!(exit_code(&Err(error)), 2);
    }

    /// A server that accepts and never greets is the environment's failure (exit 1), and says what was missing.
    #[test]
    fn a_connect_timeout_names_the_url_and_exits_1() {
        let error = distributed_error(
            DistributedError::ConnectTimeout {
                url: "nats://127.0.0.1:80".to_owned(),
                after: std::time::Duration::from_secs(5),
            },
            None,
        );
        let text = error.to_string();
        assert!(
            text.contains("no NATS greeting within 5s: is it a NATS server?"),
            "{text}"
        );
        assert!(text.contains("nats://127.0.0.1:80"), "{text}");
        assert_eq!(exit_code(&Err(error)), 1);
    }

    /// A database that is not writable is not something a rerun fixes: no resume hint.
    #[test]
    fn a_database_that_is_not_writable_says_so_without_a_resume_hint() {
        let db = Path::new("answers.db");
        let error = store_error(
            &StoreError::NotWritable {
                path: db.to_owned(),
                source: None,
            },
            db,
        );
        let text = error.to_string();
        assert!(
            text.contains("failed to write to the answers database answers.db: it is not writable"),
            "{text}"
        );
        assert!(!text.contains("resume"), "{text}");
        assert_eq!(exit_code(&Err(error)), 2);
    }

    #[test]
    fn a_message_is_followed_by_its_hint() {
        let error = CliError::argument("--workers must be at least 1").with_hint("try --workers 2");
        assert_eq!(
            error.to_string(),
            "error: --workers must be at least 1\nhint: try --workers 2"
        );
    }
}
