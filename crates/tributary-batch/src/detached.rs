//! A reader that may block for as long as its writer likes (stdin from a pipe or a terminal), read on a thread
//! of its own so that the pipeline's reader can stop without waiting for the next line.
//!
//! A blocking `read` cannot be interrupted, so the read itself happens on a detached thread that hands chunks
//! over a bounded channel; the pipeline's reader waits on the channel, a little at a time, and gives up (as at
//! the end of input) once one of the tokens it was told to watch is cancelled. The detached thread is the one
//! thread tributary does not join: it ends at the end of input, at its next read once nobody takes its chunks,
//! or with the process.

use std::io::{self, BufRead, Read};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often a waiting reader looks at its tokens.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Chunks in flight between the thread and the reader: enough to keep the thread reading ahead a little.
const CHUNKS_AHEAD: usize = 4;

/// What a read on the thread gives at most at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// The reading end: a `BufRead` over the chunks the thread reads.
#[derive(Debug)]
pub(crate) struct DetachedReader {
    chunks: flume::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    position: usize,
    /// Set once by whoever reads: the tokens that mean "stop waiting".
    watch: Arc<OnceLock<Vec<CancellationToken>>>,
    /// The end of input, or a token cancelled: every read from now on is the end.
    ended: bool,
}

/// Tells a [`DetachedReader`] which tokens to watch, once it has been moved into the pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Watch(Arc<OnceLock<Vec<CancellationToken>>>);

impl DetachedReader {
    /// Starts reading `source` on a thread of its own.
    pub(crate) fn spawn(mut source: impl Read + Send + 'static) -> (Self, Watch) {
        let (sender, chunks) = flume::bounded(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("tributary-input".to_owned())
            .spawn(move || {
                loop {
                    let mut chunk = vec![0; CHUNK_BYTES];
                    let read = match source.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(read) => read,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => {
                            let _ = sender.send(Err(error));
                            return;
                        }
                    };
                    chunk.truncate(read);
                    if sender.send(Ok(chunk)).is_err() {
                        return; // the pipeline stopped reading
                    }
                }
            })
            .map_err(|error| tracing::warn!("could not start the input thread: {error}"))
            .ok();
        let watch = Arc::new(OnceLock::new());
        let reader = Self {
            chunks,
            chunk: Vec::new(),
            position: 0,
            watch: Arc::clone(&watch),
            ended: false,
        };
        (reader, Watch(watch))
    }

    fn given_up(&self) -> bool {
        self.watch
            .get()
            .is_some_and(|tokens| tokens.iter().any(CancellationToken::is_cancelled))
    }
}

impl Watch {
    /// From now on, a wait for input ends (as at the end of input) once one of `tokens` is cancelled.
    pub(crate) fn set(&self, tokens: Vec<CancellationToken>) {
        let _ = self.0.set(tokens);
    }
}

impl BufRead for DetachedReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.position == self.chunk.len() && !self.ended {
            if self.given_up() {
                self.ended = true;
                break;
            }
            match self.chunks.recv_timeout(WATCH_EVERY) {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.position = 0;
                }
                Ok(Err(error)) => {
                    self.ended = true;
                    return Err(error);
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => self.ended = true,
            }
        }
        if self.ended && self.position == self.chunk.len() {
            return Ok(&[]);
        }
        Ok(&self.chunk[self.position..])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.chunk.len());
    }
}

impl Read for DetachedReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(buffer.len());
        buffer[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A source that gives `text` and then blocks until the test ends (its writer is kept).
    fn stalled_source(
        text: &str,
    ) -> (impl Read + Send + 'static, std::sync::mpsc::Sender<Vec<u8>>) {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        sender.send(text.as_bytes().to_vec()).expect("send");
        struct Source(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);
        impl Read for Source {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                if self.1.is_empty() {
                    match self.0.recv() {
                        Ok(bytes) => self.1 = bytes,
                        Err(_) => return Ok(0),
                    }
                }
                let count = self.1.len().min(buffer.len());
                buffer[..count].copy_from_slice(&self.1[..count]);
                self.1.drain(..count);
                Ok(count)
            }
        }
        (Source(receiver, Vec::new()), sender)
    }

    #[test]
    fn lines_come_through_and_a_cancelled_token_ends_a_wait_that_would_never_end() {
        let (source, _writer) = stalled_source("first\nsecond\n");
        let (mut reader, watch) = DetachedReader::spawn(source);
        let stop = CancellationToken::new();
        watch.set(vec![CancellationToken::new(), stop.clone()]);
        let mut line = String::new();
        reader.read_line(&mut line).expect("a line");
        assert_eq!(line, "first\n");
        line.clear();
        reader.read_line(&mut line).expect("a line");
        assert_eq!(line, "second\n");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stop.cancel();
        });
        let waited = Instant::now();
        line.clear();
        assert_eq!(reader.read_line(&mut line).expect("the end"), 0);
        assert!(waited.elapsed() < Duration::from_secs(30), "the wait ended");
    }

    #[test]
    fn the_end_of_input_is_the_end() {
        let (mut reader, _watch) = DetachedReader::spawn(io::Cursor::new(b"only\n".to_vec()));
        let mut text = String::new();
        reader.read_to_string(&mut text).expect("read");
        assert_eq!(text, "only\n");
    }
}
