//! Serving connections: a router on hyper, with the limits `axum::serve` does not offer. The simulated services
//! use it, and so does `tributary serve`.
//!
//! `axum::serve` accepts every connection and lets a client take as long as it likes to send its headers. Held
//! open by the thousand (slowloris, or clients that never close), connections cost memory that the allocator
//! then keeps: 2,000 held connections left the simulator at about 100 MB. Here at most [`MAX_CONNECTIONS`] are
//! served at once (the others wait in the kernel's backlog until one closes), and a client that has not sent a
//! request's headers within [`HEADER_READ_TIMEOUT`] is disconnected, which also ends idle keep-alive
//! connections.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tributary::group::{Supervisor, SupervisorConfig, SupervisorHandle};

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a client may take to send a request's headers (and how long an idle keep-alive connection lasts).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes a request's head (request line and headers) may take; over it, 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long to pause accepting after an error such as too many open files.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The limits a server holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many connections are served at once; the others wait in the kernel's backlog.
    pub max_connections: usize,
    /// A client that has not sent a request's headers within this is disconnected.
    pub header_read_timeout: Duration,
    /// A request whose head is larger gets 431 (at least 8 KiB, hyper's smallest buffer).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `stop` is cancelled, then stops accepting and lets the open
/// connections finish (the caller bounds that wait). Dropping the future aborts every connection: none
/// outlives it.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Every connection, and every HTTP/2 stream hyper runs beside one, is a child of this supervisor: one
    // connection's failure touches no other, dropping `serve` aborts them all, and the end joins them.
    let connections = Supervisor::new(SupervisorConfig::new());
    let mut builder = Builder::new(Supervised(connections.handle()));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let spawner = connections.handle();
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "simulated services: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(app.clone()),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        let served = spawner.spawn("connection", async move {
            let _slot = permit;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "simulated services: a connection ended with an error");
            }
            Ok::<(), Infallible>(())
        });
        if served.is_err() {
            break; // the supervisor was shut down under us: nothing more to serve
        }
    }
    drop(listener);
    // Open connections finish their current response (hanging ones end on the shutdown token) and close.
    graceful.shutdown().await;
    connections.join().await;
}

/// hyper's executor (the tasks it starts beside a connection, such as HTTP/2 streams) on the connections'
/// supervisor, instead of a bare `tokio::spawn`.
#[derive(Debug, Clone)]
struct Supervised(SupervisorHandle);

impl<Task> hyper::rt::Executor<Task> for Supervised
where
    Task: Future + Send + 'static,
    Task::Output: Send + 'static,
{
    fn execute(&self, task: Task) {
        // Refused only while the supervisor shuts down, when the connection that asked is being stopped too.
        let _refused = self.0.spawn("http task", async move {
            task.await;
            Ok::<(), Infallible>(())
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve_connections(listener, app, limits, stop.clone()));
        (address, stop)
    }

    /// Reads until the server closes the connection; `None` if it is still open after `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut received = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut received))
            .await
            .ok()
            .map(|_| received)
    }

    /// A client that never finishes its headers (slowloris) once held its connection, and its memory, forever.
    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let limits = Limits {
            max_connections: 8,
            header_read_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (address, stop) = start(limits).await;
        let mut slow = TcpStream::connect(address).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("send part of the headers");
        let started = Instant::now();
        assert!(
            closed_within(&mut slow, Duration::from_secs(5))
                .await
                .is_some(),
            "still open"
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
        stop.cancel();
    }

    /// A request head over the limit is refused with 431, not buffered without bound.
    #[tokio::test]
    async fn a_request_head_over_the_limit_gets_431() {
        let (address, stop) = start(Limits::default()).await;
        let mut client = TcpStream::connect(address).await.expect("connect");
        let huge = "a".repeat(MAX_HEADER_BYTES * 2);
        let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n");
        // The server may answer and close before it has read everything: a failed write is fine.
        let _ = client.write_all(request.as_bytes()).await;
        let received = closed_within(&mut client, Duration::from_secs(5))
            .await
            .expect("answered and closed");
        let head = String::from_utf8_lossy(&received);
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");
        stop.cancel();
    }

    /// Past the cap, a connection waits for a slot instead of costing memory at once, and is served when one
    /// frees up.
    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_slot() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let (address, stop) = start(limits).await;
        let mut holder = TcpStream::connect(address).await.expect("connect");
        holder
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let mut first = [0_u8; 17];
        holder.read_exact(&mut first).await.expect("served");
        assert_eq!(&first, b"HTTP/1.1 200 OK\r\n");

        let mut waiting = TcpStream::connect(address)
            .await
            .expect("connect (backlog)");
        waiting
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        assert!(
            closed_within(&mut waiting, Duration::from_millis(300))
                .await
                .is_none(),
            "served while the only slot is taken"
        );
        drop(holder);
        let answer = closed_within(&mut waiting, Duration::from_secs(5))
            .await
            .expect("served once the slot frees");
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"), "{answer:?}");
        stop.cancel();
    }
}
