//! Serving connections: a router on hyper, with the limits `axum::serve` does not offer. The simulated services
//! use it, and so does `tributary serve`.
//!
//! `axum::serve` accepts every connection and lets a client take as long as it likes: to send its first byte,
//! its headers, its body, or its next request. A thousand sockets that send nothing then take a server down.
//! Here every phase of a connection is bounded ([`Limits`], enforced by `watch.rs`), and at most
//! [`MAX_CONNECTIONS`] are served at once. A connection past the cap closes the idlest open one (no request in
//! flight, nothing heard for the longest) to take its place; when every open connection has a request in flight,
//! the newcomer gets `503` with `Retry-After` and is closed. Either way the server keeps answering new clients.

mod watch;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutBody;
use tributary::group::{Supervisor, SupervisorConfig, SupervisorHandle};

use watch::{Connection, Finishing, Watched};

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a connection may stay quiet: before its first byte, and between requests (keep-alive).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request head (request line and headers) may take from its first byte.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may go without a chunk.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes a request's head (request line and headers) may take; over it, 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long to pause accepting after an error such as too many open files.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a newcomer waits for the slot of the connection it shed.
const SHED_WAIT: Duration = Duration::from_secs(1);

/// Newcomers refused with 503 at once, beyond the cap; past this many, one is closed without an answer.
const MAX_REFUSING: usize = 64;

/// How long a refused newcomer has to send the request its 503 answers.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The limits a server holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many connections are served at once; past it, the idlest is closed for a newcomer, or
    /// the newcomer gets 503 when none is idle.
    pub max_connections: usize,
    /// A connection that has sent nothing for this long, since it connected or since its last response
    /// ended, is closed (time to the first byte, and keep-alive); so is one whose response waits this long
    /// on a client that does not read it.
    pub idle_timeout: Duration,
    /// A request head not complete this long after its first byte is refused and its connection closed.
    pub header_read_timeout: Duration,
    /// A request body that goes this long without a chunk fails (the handler sees an error) and its
    /// connection is closed.
    pub body_read_timeout: Duration,
    /// A request whose head is larger gets 431 (at least 8 KiB, hyper's smallest buffer).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
        }
    }
}

/// Connections the kernel completes and queues for the accept loop: tokio's default (1,024; std's is 128) drops a
/// burst's handshakes, and a dropped handshake costs its client a second before it tries again. The kernel caps
/// it at `net.core.somaxconn` (4,096 by default since Linux 5.4).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` for [`serve_connections`], with room in the kernel's queue for a burst of connections.
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted server can bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
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
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let open = Arc::new(Open::default());
    let graceful = GracefulShutdown::new();
    // Every connection, and every HTTP/2 stream hyper runs beside one, is a child of this supervisor: one
    // connection's failure touches no other, dropping `serve` aborts them all, and the end joins them.
    let connections = Supervisor::new(SupervisorConfig::new());
    let mut builder = Builder::new(Supervised(connections.handle()));
    // The phases are timed by `watch.rs`, for both protocols alike. hyper's own header timeout (30 s by default)
    // is turned off: it would also cut a longer `header_read_timeout`, and an idle keep-alive connection at 30 s.
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let spawner = connections.handle();
    let epoch = Instant::now();
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "serve: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) if open.shed_idlest() => {
                tokio::time::timeout(SHED_WAIT, Arc::clone(&slots).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let served = match slot {
            Some(slot) => {
                let connection = Connection::accepted(epoch);
                let io = TokioIo::new(Watched::new(stream, Arc::clone(&connection)));
                let service = service_fn({
                    let app = TowerToHyperService::new(app.clone());
                    let connection = Arc::clone(&connection);
                    move |request: Request<Incoming>| {
                        let in_flight = connection.request_started();
                        let request =
                            request.map(|body| TimeoutBody::new(limits.body_read_timeout, body));
                        let answered = hyper::service::Service::call(&app, request);
                        async move {
                            let response = answered.await?;
                            Ok::<_, Infallible>(response.map(|body| {
                                Body::new(Finishing {
                                    body,
                                    _in_flight: in_flight,
                                })
                            }))
                        }
                    }
                });
                let served = graceful.watch(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                );
                let open = Arc::clone(&open);
                spawner.spawn("connection", async move {
                    let _slot = slot;
                    let _listed = open.list(Arc::clone(&connection));
                    tokio::select! {
                        ended = served => if let Err(error) = ended {
                            tracing::debug!(%error, "serve: a connection ended with an error");
                        },
                        overdue = connection.overdue(&limits) => {
                            tracing::debug!(?overdue, "serve: closed a connection past its limit");
                        }
                        () = connection.shed_requested() => {
                            tracing::debug!("serve: closed the idlest connection for a newcomer");
                        }
                    }
                    Ok::<(), Infallible>(())
                })
            }
            None => match Arc::clone(&refusing).try_acquire_owned() {
                Ok(refusal) => {
                    spawner.spawn("refused connection", refuse(&builder, stream, refusal))
                }
                Err(_) => continue, // dropping the stream closes it
            },
        };
        if served.is_err() {
            break; // the supervisor was shut down under us: nothing more to serve
        }
    }
    drop(listener);
    // Open connections finish their current response (hanging ones end on the shutdown token) and close.
    graceful.shutdown().await;
    connections.join().await;
}

/// Whether `error` (a body extractor's rejection, say) is a request body that stopped arriving: no chunk within
/// [`Limits::body_read_timeout`]. A handler answers it with 408.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |error| error.source())
        .any(|error| error.is::<tower_http::timeout::TimeoutError>())
}

/// Answers a newcomer the server has no room for: 503 with `Retry-After`, then closes.
fn refuse(
    builder: &Builder<Supervised>,
    stream: TcpStream,
    refusal: OwnedSemaphorePermit,
) -> impl Future<Output = Result<(), Infallible>> + Send + 'static {
    let refused = builder
        .serve_connection(
            TokioIo::new(stream),
            service_fn(|_request: Request<Incoming>| async {
                let mut response = Response::new(Body::from(
                    r#"{"error":"the server is at its connection limit and every connection is busy: retry shortly"}"#,
                ));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            }),
        )
        .into_owned();
    async move {
        let _refusal = refusal;
        let _answered_or_late = tokio::time::timeout(REFUSAL_TIMEOUT, refused).await;
        Ok(())
    }
}

/// The connections open now, to find the idlest when a newcomer needs its slot.
#[derive(Debug, Default)]
struct Open {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Open {
    /// Lists `connection` until the returned guard is dropped.
    fn list(self: &Arc<Self>, connection: Arc<Connection>) -> Listed {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, connection);
        Listed {
            open: Arc::clone(self),
            key,
        }
    }

    /// Closes the open connection with no request in flight that was heard from longest ago; false if every
    /// one has a request in flight.
    fn shed_idlest(&self) -> bool {
        let mut connections = self.lock();
        let idlest = connections
            .iter()
            .filter(|(_, connection)| connection.is_idle())
            .min_by_key(|(_, connection)| connection.last_heard())
            .map(|(key, _)| *key);
        match idlest.and_then(|key| connections.remove(&key)) {
            Some(connection) => {
                connection.shed();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        // The map stays whole whatever panicked while it was held: a plain insert or remove.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's place in [`Open`], removed when it ends.
#[derive(Debug)]
struct Listed {
    open: Arc<Open>,
    key: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.open.lock().remove(&self.key);
    }
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
mod tests;
