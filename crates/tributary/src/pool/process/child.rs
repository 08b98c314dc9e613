//! One worker process seen from the parent: [`WorkerProcess`] starts it, exchanges a request for its reply
//! over its pipes, and closes or reaps it.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::WorkerCommand;
use super::frame::{Reply, decode_reply, frame_payload};
use crate::pool::ExecutorError;

/// How long a worker gets to exit after its stdin closes, or after its stdout closed on a crash.
const EXIT_PATIENCE: Duration = Duration::from_secs(5);

/// A running worker process and its pipes.
#[derive(Debug)]
pub(super) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(super) pid: Option<u32>,
}

/// Why an exchange with a worker failed.
pub(super) enum Exchange {
    /// The worker's pipes closed: it exited or is exiting.
    Closed(String),
    /// It answered something that is not the reply to this request.
    Malformed(String),
}

impl WorkerProcess {
    pub(super) fn spawn(command: &WorkerCommand) -> Result<Self, ExecutorError> {
        let spawn_error = |source| ExecutorError::SpawnWorker {
            program: command.program.clone(),
            source,
        };
        let mut child = Command::new(&command.program);
        // A process group of its own: the terminal's Ctrl-C goes to the foreground group, and a worker that got
        // it would die mid-job while its parent is still finishing its work gracefully. The parent stops its
        // workers itself: by closing their stdin (the worker exits at end of input) or killing them on drop.
        #[cfg(unix)]
        child.process_group(0);
        let mut child = child
            .args(&command.args)
            .envs(command.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The worker's logs and panic messages reach the user's terminal, as the parent's do.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let missing_pipe = || spawn_error(io::Error::other("the child's pipes were not captured"));
        let stdin = child.stdin.take().ok_or_else(missing_pipe)?;
        let stdout = child.stdout.take().ok_or_else(missing_pipe)?;
        let pid = child.id();
        tracing::debug!(?pid, program = %command.program.display(), "started worker process");
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pid,
        })
    }

    /// Sends one request frame and reads lines until the matching response frame, handing each progress frame
    /// before it to `on_progress`.
    pub(super) async fn exchange(
        &mut self,
        frame: &str,
        id: u64,
        on_progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Value, Exchange> {
        let sent = async {
            self.stdin.write_all(frame.as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(error) = sent.await {
            return Err(Exchange::Closed(format!("its stdin closed ({error})")));
        }
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line).await {
                Ok(0) => return Err(Exchange::Closed("its stdout closed".to_owned())),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    return Err(Exchange::Malformed(format!("read reply: {error}")));
                }
                Err(error) => {
                    return Err(Exchange::Closed(format!(
                        "reading its stdout failed ({error})"
                    )));
                }
            }
            let Some(payload) = frame_payload(&line) else {
                tracing::debug!(pid = ?self.pid, line = line.trim_end(), "ignored stray worker output");
                continue;
            };
            match decode_reply(payload, id).map_err(Exchange::Malformed)? {
                Reply::Progress(text) => on_progress(&text),
                Reply::Output(output) => return Ok(output),
            }
        }
    }

    /// Whether the process is still running (not exited, and its state could be read).
    pub(super) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, for a crash report; kills it if it does not exit within [`EXIT_PATIENCE`].
    pub(super) async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(EXIT_PATIENCE, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(error)) => format!("exit status unknown ({error})"),
            Err(_elapsed) => "it did not exit and was killed".to_owned(),
        }
    }

    /// Closes stdin so the worker exits at end of input; kills it if it does not exit in time.
    pub(super) async fn close(self) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(EXIT_PATIENCE, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid = ?child.id(), "worker process did not exit after its input closed; killing it");
            let _ = child.kill().await;
        }
    }
}
