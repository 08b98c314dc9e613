//! One connection, watched: whether a request is in flight, when it last received a byte, when its response
//! stopped flowing, and which limit it has gone past. hyper bounds none of the phases on its own for both
//! protocols: its HTTP/1 header timeout starts only once the auto builder has seen which protocol a client
//! speaks (a client that sends nothing is never timed), and it has no bound for a body or an idle HTTP/2
//! connection.
//!
//! The phases of a connection and their limits ([`Limits`]):
//! - **quiet** (accepted, or its last response ended, and nothing received since): closed after
//!   `idle_timeout`. This is the time to the first byte, and the idle keep-alive of both protocols.
//! - **reading a head** (bytes received while quiet, no request dispatched yet): closed `header_read_timeout`
//!   after the first of those bytes, however slowly the rest drips in.
//! - **in a request** (a request dispatched and its response not yet sent in full): the body's chunks are
//!   timed by the service (`body_read_timeout` between chunks); the connection is closed if a response write
//!   waits `idle_timeout` on a client that does not read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Limits;

/// A time not yet reached: no head being read, no write waiting.
const NEVER: u64 = u64::MAX;

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overdue {
    /// Quiet for `idle_timeout`: nothing sent since it connected or since its last response.
    Idle,
    /// A request head not complete `header_read_timeout` after its first byte.
    SlowHead,
    /// A response write waited `idle_timeout` for a client that does not read.
    StalledResponse,
}

/// What a connection has done, shared by its I/O ([`Watched`]), its requests ([`InFlight`]), its watch
/// ([`Connection::overdue`]) and the table the accept loop sheds from. Times are milliseconds since `epoch`.
#[derive(Debug)]
pub(super) struct Connection {
    epoch: Instant,
    /// When it last became quiet: accepted, or its last response ended.
    quiet_since: AtomicU64,
    /// The first byte received since it became quiet ([`NEVER`] if none): a request head is being read.
    head_since: AtomicU64,
    /// The last byte received, or when it became quiet if later: how idle it is, to shed the idlest.
    last_heard: AtomicU64,
    /// When a response write first found the client not reading ([`NEVER`] while writes flow).
    write_blocked_since: AtomicU64,
    /// Requests dispatched whose response has not been sent in full.
    in_flight: AtomicUsize,
    /// Cancelled to close this connection to make room for a new one.
    shed: CancellationToken,
}

impl Connection {
    /// A connection accepted now; `epoch` is the server's (shared, so that times compare across connections).
    pub(super) fn accepted(epoch: Instant) -> Arc<Self> {
        let connection = Self {
            epoch,
            quiet_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NEVER),
            last_heard: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(NEVER),
            in_flight: AtomicUsize::new(0),
            shed: CancellationToken::new(),
        };
        let now = connection.now();
        connection.quiet_since.store(now, Ordering::Release);
        connection.last_heard.store(now, Ordering::Release);
        Arc::new(connection)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// Whether it has no request in flight (quiet, or reading a head): one the server may close to make room.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When it last received a byte or finished a response.
    pub(super) fn last_heard(&self) -> u64 {
        self.last_heard.load(Ordering::Acquire)
    }

    /// Closes it to make room for a new connection.
    pub(super) fn shed(&self) {
        self.shed.cancel();
    }

    /// Completes once it has been shed.
    pub(super) async fn shed_requested(&self) {
        self.shed.cancelled().await;
    }

    /// A request was dispatched: its guard ends it when the response has been sent in full (or dropped).
    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NEVER, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    fn received(&self) {
        let now = self.now();
        self.last_heard.store(now, Ordering::Release);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // The first byte of a head starts its clock; the later ones do not move it.
            let _already_reading =
                self.head_since
                    .compare_exchange(NEVER, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn write_waits(&self) {
        let _already_waiting = self.write_blocked_since.compare_exchange(
            NEVER,
            self.now(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn wrote(&self) {
        if self.write_blocked_since.load(Ordering::Acquire) != NEVER {
            self.write_blocked_since.store(NEVER, Ordering::Release);
        }
    }

    /// Completes when the connection has gone past the limit of the phase it is in, saying which.
    pub(super) async fn overdue(&self, limits: &Limits) -> Overdue {
        loop {
            match self.check(limits, self.now()) {
                Err(overdue) => return overdue,
                Ok(next_check) => {
                    let at = self.epoch + Duration::from_millis(next_check);
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }

    /// Which limit it is past at `now`, or when to look again. A phase that begins later ends later than the
    /// time returned, so the watch is never late.
    fn check(&self, limits: &Limits, now: u64) -> Result<u64, Overdue> {
        let due = |since: u64, limit: Duration| {
            since.saturating_add(u64::try_from(limit.as_millis()).unwrap_or(NEVER))
        };
        let (due, overdue) = if self.in_flight.load(Ordering::Acquire) == 0 {
            let head_since = self.head_since.load(Ordering::Acquire);
            if head_since == NEVER {
                let quiet_since = self.quiet_since.load(Ordering::Acquire);
                (due(quiet_since, limits.idle_timeout), Overdue::Idle)
            } else {
                (
                    due(head_since, limits.header_read_timeout),
                    Overdue::SlowHead,
                )
            }
        } else {
            let blocked_since = self.write_blocked_since.load(Ordering::Acquire);
            if blocked_since == NEVER {
                return Ok(due(now, limits.idle_timeout));
            }
            (
                due(blocked_since, limits.idle_timeout),
                Overdue::StalledResponse,
            )
        };
        if now >= due { Err(overdue) } else { Ok(due) }
    }
}

/// A request in flight on its connection, from dispatch until its response has been sent in full or dropped.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let connection = &self.0;
        if connection.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = connection.now();
            connection
                .write_blocked_since
                .store(NEVER, Ordering::Release);
            connection.quiet_since.store(now, Ordering::Release);
            connection.last_heard.fetch_max(now, Ordering::AcqRel);
        }
    }
}

/// A response body that holds its request [`InFlight`] until hyper has taken its last frame (or dropped it).
#[derive(Debug)]
pub(super) struct Finishing {
    pub(super) body: Body,
    pub(super) _in_flight: InFlight,
}

impl HttpBody for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, noting every byte received and every write that waits on the client.
#[derive(Debug)]
pub(super) struct Watched<Io> {
    io: Io,
    connection: Arc<Connection>,
}

impl<Io> Watched<Io> {
    pub(super) fn new(io: Io, connection: Arc<Connection>) -> Self {
        Self { io, connection }
    }

    fn wrote<T>(&self, written: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &written {
            Poll::Pending => self.connection.write_waits(),
            Poll::Ready(_) => self.connection.wrote(),
        }
        written
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.received();
        }
        read
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        this.wrote(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, data);
        this.wrote(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            idle_timeout: Duration::from_millis(100),
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_is_timed_from_its_own_start() {
        let limits = limits();
        let connection = Connection::accepted(Instant::now());
        // Quiet since it was accepted: the idle limit.
        assert_eq!(connection.check(&limits, 0), Ok(100));
        assert_eq!(connection.check(&limits, 100), Err(Overdue::Idle));
        // A first byte at 50 starts a head: the header limit from then, however late the rest.
        tokio::time::advance(Duration::from_millis(50)).await;
        connection.received();
        tokio::time::advance(Duration::from_millis(100)).await;
        connection.received();
        assert_eq!(connection.check(&limits, 150), Ok(350));
        assert_eq!(connection.check(&limits, 350), Err(Overdue::SlowHead));
        // A request in flight is not idle, whatever the time, until a write waits on the client.
        let request = connection.request_started();
        assert!(!connection.is_idle());
        assert_eq!(connection.check(&limits, 1_000), Ok(1_100));
        connection.write_waits();
        assert_eq!(
            connection.check(&limits, 250),
            Err(Overdue::StalledResponse)
        );
        connection.wrote();
        assert!(connection.check(&limits, 10_000).is_ok());
        // Its end makes the connection quiet again: the idle limit from then.
        tokio::time::advance(Duration::from_millis(50)).await;
        drop(request);
        assert!(connection.is_idle());
        assert_eq!(connection.last_heard(), 200);
        assert_eq!(connection.check(&limits, 200), Ok(300));
    }
}
