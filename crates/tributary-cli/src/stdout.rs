//! Writing data to stdout without panicking when the reader goes away (`tributary ask ... | head -1`).
//!
//! `println!` panics on a closed pipe (Rust ignores SIGPIPE, so the write fails with `BrokenPipe`). A reader that
//! stopped reading is not an error of ours: the command stops quietly with exit code 0, like other Unix tools.

use std::io::Write;

use crate::error::CliError;

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(CliError::stdout_closed())
        }
        Err(error) => Err(CliError::internal(CliError::chain(
            "failed to write to stdout",
            &error,
        ))),
    }
}

/// Writes `line` and a newline to stdout.
pub fn println(line: &str) -> Result<(), CliError> {
    print(&format!("{line}\n"))
}
