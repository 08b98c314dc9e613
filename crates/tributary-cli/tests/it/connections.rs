//! Idle and slow clients against `serve` and `sources` (issue: hardening, round two). A thousand sockets that
//! sent nothing, or headers and part of a body, once locked both servers out: every phase of a connection is now
//! bounded, and past the connection cap a newcomer takes the idlest connection's place (or gets 503 when every
//! connection is busy) instead of waiting in the backlog.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::SourcesProcess;
use crate::serve::Server;

/// Idle connections the tests open: twice the servers' cap of 1,024.
const IDLE: usize = 2_000;

/// Requests that send their headers and one byte of a 1,000-byte body, then nothing.
const SLOW_BODIES: usize = 200;

/// Beyond a limit, the time a test gives the server to close a connection: the check itself walks thousands of
/// sockets on a machine the server shares.
const CLOSE_SLACK: Duration = Duration::from_secs(4);

/// A client that holds its socket, and what the server sent it.
struct Held {
    stream: TcpStream,
    received: Vec<u8>,
    closed: bool,
}

/// Opens `count` connections to `address` and writes `first` on each (nothing if empty).
fn hold(address: &str, count: usize, first: &[u8]) -> Vec<Held> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(address).expect("connect");
            if !first.is_empty() {
                stream.write_all(first).expect("send");
            }
            stream.set_nonblocking(true).expect("non-blocking");
            Held {
                stream,
                received: Vec::new(),
                closed: false,
            }
        })
        .collect()
}

/// Watches every held connection until the server has closed all of them or `within` has passed: how long
/// that took, or how many are still open.
fn wait_for_closes(held: &mut [&mut Held], within: Duration) -> Result<Duration, usize> {
    let started = Instant::now();
    loop {
        let mut open = 0;
        for client in held.iter_mut().filter(|client| !client.closed) {
            let mut chunk = [0_u8; 512];
            match client.stream.read(&mut chunk) {
                Ok(0) => client.closed = true,
                Ok(read) => client.received.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => open += 1,
                Err(_) => client.closed = true, // reset
            }
        }
        if open == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(open);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on a fresh connection: the status and how long the answer took.
fn timed_get(address: &str, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

#[test]
fn serve_answers_within_a_second_under_idle_and_slow_clients_and_closes_them_in_time() {
    // Thousands of sockets and a bound in wall-clock time: not beside the tests that load the machine.
    let _heavy = crate::harness::heavy();
    let limit = Duration::from_secs(2);
    let server = Server::start(&[
        "--idle-timeout",
        "2s",
        "--header-timeout",
        "2s",
        "--body-timeout",
        "2s",
    ]);
    let mut idle = hold(&server.address, IDLE, b"");
    let slow_head = format!(
        "POST /v1/ask HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        server.address
    );
    let mut slow = hold(&server.address, SLOW_BODIES, slow_head.as_bytes());

    let (status, took) = timed_get(&server.address, "/healthz");
    println!(
        "connections: /healthz answered {status} in {took:?} beside {IDLE} idle and {SLOW_BODIES} slow clients"
    );
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    let started = Instant::now();
    let (status, _, report) = server.ask(r#"{"question": "What's the weather in Paris?"}"#);
    let took = started.elapsed();
    println!("connections: an ask answered {status} in {took:?}");
    assert_eq!(status, 200, "{report}");
    assert!(took < Duration::from_secs(1), "the ask took {took:?}");

    // Each phase's limit counts from the server's accept, which follows the client's connect: by the limit after
    // the last connection was opened, all are closed.
    let mut all: Vec<&mut Held> = idle.iter_mut().chain(slow.iter_mut()).collect();
    let closed = wait_for_closes(&mut all, limit + CLOSE_SLACK);
    println!(
        "connections: all {} closed {closed:?} after the last was opened (limits 2 s)",
        IDLE + SLOW_BODIES
    );
    let closed = closed.unwrap_or_else(|open| {
        panic!("{open} connections still open {CLOSE_SLACK:?} past the limit")
    });
    assert!(
        closed >= Duration::from_millis(1_500),
        "closed before their limit: {closed:?}"
    );
    // A slow body is answered 408 with the server's JSON error, not dropped without a word.
    for client in &slow {
        let answer = String::from_utf8_lossy(&client.received);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}

#[test]
fn sources_answers_under_idle_clients_and_a_cap_full_of_hanging_requests() {
    let _heavy = crate::harness::heavy();
    let sources = SourcesProcess::start(&["--fault", "weather=hang"]);
    // Twice the cap of idle clients: the newest still gets an answer at once.
    let mut idle = hold(sources.address(), IDLE, b"");
    let (status, took) = timed_get(sources.address(), "/health");
    println!(
        "connections: sources answered /health {status} in {took:?} beside {IDLE} idle clients"
    );
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/health took {took:?}");
    let mut all: Vec<&mut Held> = idle.iter_mut().collect();
    let closed = wait_for_closes(&mut all, Duration::from_secs(10) + CLOSE_SLACK);
    println!(
        "connections: all {IDLE} idle connections to sources closed {closed:?} after the last was opened (limit 10 s)"
    );
    let closed =
        closed.unwrap_or_else(|open| panic!("{open} idle connections to sources still open"));
    assert!(
        closed >= Duration::from_secs(8),
        "closed before their limit: {closed:?}"
    );

    // More hanging requests than the cap: every slot is busy, and a newcomer is told so at once.
    let request = format!(
        "GET /weather?city=Lima HTTP/1.1\r\nHost: {}\r\n\r\n",
        sources.address()
    );
    let hanging = hold(sources.address(), 1_100, request.as_bytes());
    std::thread::sleep(Duration::from_millis(500));
    let (status, took) = timed_get(sources.address(), "/news?q=rust");
    println!("connections: beside 1,100 hanging requests a newcomer got {status} in {took:?}");
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(1), "the refusal took {took:?}");
    drop(hanging);
    let started = Instant::now();
    let status = loop {
        let (status, _) = timed_get(sources.address(), "/news?q=rust");
        if status == 200 || started.elapsed() > Duration::from_secs(10) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "news once the hanging clients left");
}
