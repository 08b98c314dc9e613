//! Ctrl-C and SIGTERM: which one came, and the exit code a shell expects after it.
//!
//! A command that stops gracefully installs [`Signals`] before it starts work, so a signal that arrives during
//! start-up is kept until the command looks. Once installed, the signal no longer kills the process: the
//! command decides what a first and a second signal do. Worker processes of `--executor processes` run in
//! their own process group, so the terminal's Ctrl-C reaches only this process, which stops them itself.

use std::fmt;

use crate::error::{CliError, ErrorKind};

/// A signal that asks the command to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: `kill`, systemd, docker stop, Kubernetes.
    Terminate,
}

/// The signals a command listens for from [`Signals::install`] on.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signal {
    /// 128 + the signal's number, as a shell reports a process the signal ended: 130 and 143.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }

    /// The signal's own name, for machine-readable output: `SIGINT`, `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "Ctrl-C",
            Self::Terminate => "SIGTERM",
        })
    }
}

impl Signals {
    /// Starts listening: from now on Ctrl-C and SIGTERM are kept for [`Signals::recv`] instead of ending the
    /// process. Must be called inside the runtime.
    pub fn install() -> Result<Self, CliError> {
        let failed = |error: std::io::Error| {
            CliError::caused(
                ErrorKind::Environment,
                "failed to listen for Ctrl-C and SIGTERM",
                &error,
            )
        };
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
                terminate: signal(SignalKind::terminate()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = failed;
            Ok(Self {})
        }
    }

    /// `work`, unless a signal comes first: then that signal, and `work` is dropped unfinished. For the waits
    /// of a start-up (connecting to a broker) that nothing else would interrupt.
    pub async fn unless_signalled<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Signal> {
        tokio::select! {
            biased;
            signal = self.recv() => Err(signal),
            done = work => Ok(done),
        }
    }

    /// The next signal. Several of one kind that arrive before a call count as one.
    pub async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.interrupt.recv() => Signal::Interrupt,
                Some(()) = self.terminate.recv() => Signal::Terminate,
                // The runtime's signal driver is gone: no signal can come any more.
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => Signal::Interrupt,
                // No way to listen: never report a signal.
                Err(_) => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_codes_are_the_shells() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
    }
}
