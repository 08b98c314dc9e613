use std::time::Instant;

use axum::body::Bytes;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Limits short enough for a test, with `max_connections` slots.
fn quick(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        idle_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/busy", get(std::future::pending::<&'static str>))
        .route(
            "/echo",
            post(
                |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                    match body {
                        Ok(body) => (StatusCode::OK, body.len().to_string()),
                        Err(rejection) if is_body_timeout(&rejection) => {
                            (StatusCode::REQUEST_TIMEOUT, "slow body".to_owned())
                        }
                        Err(rejection) => (rejection.status(), rejection.body_text()),
                    }
                },
            ),
        );
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

/// Sends `request` on a new connection and reads the status line.
async fn status_line(address: std::net::SocketAddr, request: &[u8]) -> String {
    let mut client = TcpStream::connect(address).await.expect("connect");
    client.write_all(request).await.expect("send");
    let mut head = [0_u8; 12];
    client.read_exact(&mut head).await.expect("answered");
    String::from_utf8_lossy(&head).into_owned()
}

/// Asserts `stream` is closed by the server after at least `not_before` and within a few seconds.
async fn assert_closed_after(stream: &mut TcpStream, started: Instant, not_before: Duration) {
    assert!(
        closed_within(stream, Duration::from_secs(5))
            .await
            .is_some(),
        "still open after 5 s"
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= not_before, "closed after only {elapsed:?}");
}

/// A client that connects and sends nothing was never closed: a thousand of them locked the server out.
#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let (address, stop) = start(quick(8)).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(address).await.expect("connect");
    assert_closed_after(&mut silent, started, Duration::from_millis(250)).await;
    stop.cancel();
}

/// A client that never finishes its headers (slowloris) once held its connection, and its memory, forever;
/// dripping a byte now and then does not extend the head's time.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (address, stop) = start(quick(8)).await;
    let mut slow = TcpStream::connect(address).await.expect("connect");
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("send part of the headers");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.write_all(b"a").await.expect("drip");
    }
    assert_closed_after(&mut slow, started, Duration::from_millis(250)).await;
    stop.cancel();
}

/// Complete headers and then part of the body held a connection forever: the body is timed between chunks.
#[tokio::test]
async fn a_body_that_stops_arriving_fails_and_its_connection_closes() {
    let (address, stop) = start(quick(8)).await;
    let mut slow = TcpStream::connect(address).await.expect("connect");
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\na")
        .await
        .expect("send the head and one byte");
    let started = Instant::now();
    let answer = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    stop.cancel();
}

/// An idle keep-alive connection is closed after the idle limit; one in use is not.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (address, stop) = start(quick(8)).await;
    let mut client = TcpStream::connect(address).await.expect("connect");
    for _ in 0..3 {
        // Each request well within the idle limit of the previous one keeps it open.
        tokio::time::sleep(Duration::from_millis(150)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        // "ok" is the response's last two bytes.
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut chunk = [0_u8; 256];
            let read = client.read(&mut chunk).await.expect("answered");
            assert!(read > 0, "closed while in use: {answer:?}");
            answer.extend_from_slice(&chunk[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }
    let started = Instant::now();
    assert_closed_after(&mut client, started, Duration::from_millis(250)).await;
    stop.cancel();
}

/// HTTP/2 had no idle limit at all: a client that sends the preface and nothing else is closed.
#[tokio::test]
async fn an_http2_connection_without_a_request_is_closed() {
    let (address, stop) = start(quick(8)).await;
    let mut client = TcpStream::connect(address).await.expect("connect");
    let started = Instant::now();
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("send the preface and empty settings");
    assert_closed_after(&mut client, started, Duration::from_millis(250)).await;
    stop.cancel();
}

/// hyper's own header timeout (30 s) once cut a longer `--header-timeout` short, and an idle keep-alive
/// connection too: the limits given are the limits kept. (Paused time: the clock jumps while the client waits.)
#[tokio::test(start_paused = true)]
async fn limits_longer_than_hypers_default_are_kept() {
    let limits = Limits {
        max_connections: 8,
        idle_timeout: Duration::from_secs(60),
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let (address, stop) = start(limits).await;
    let mut slow = TcpStream::connect(address).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send part of the headers");
    assert!(
        closed_within(&mut slow, Duration::from_secs(45))
            .await
            .is_none(),
        "closed before its 60 s header limit"
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(30))
            .await
            .is_some(),
        "still open past its 60 s header limit"
    );
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

/// Past the cap, idle connections once kept every newcomer waiting in the backlog: now the idlest is closed and
/// the newcomer served at once.
#[tokio::test]
async fn past_the_cap_a_newcomer_takes_the_place_of_the_idlest() {
    let mut limits = quick(4);
    limits.idle_timeout = Duration::from_secs(60);
    limits.header_read_timeout = Duration::from_secs(60);
    let (address, stop) = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(address).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = status_line(
        address,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200");
    // The first one connected, quiet since, was the one closed.
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(2))
            .await
            .is_some(),
        "the idlest is still open"
    );
    for others in &mut idle[1..] {
        assert!(
            closed_within(others, Duration::from_millis(100))
                .await
                .is_none()
        );
    }
    stop.cancel();
}

/// When every slot has a request in flight, a newcomer gets 503 with Retry-After at once instead of waiting.
#[tokio::test]
async fn past_the_cap_with_every_connection_busy_a_newcomer_gets_503() {
    let (address, stop) = start(quick(2)).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut client = TcpStream::connect(address).await.expect("connect");
        client
            .write_all(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        busy.push(client);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut newcomer = TcpStream::connect(address).await.expect("connect");
    newcomer
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let answer = closed_within(&mut newcomer, Duration::from_secs(3))
        .await
        .expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // The busy ones are not timed out while their requests are in flight.
    for client in &mut busy {
        assert!(
            closed_within(client, Duration::from_millis(500))
                .await
                .is_none()
        );
    }
    stop.cancel();
}
