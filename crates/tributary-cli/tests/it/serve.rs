//! `tributary serve`: the agent over HTTP, tested against the real server on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{FAST, tributary};

pub const QUESTION: &str = "What's the weather in Paris, and why does the GIL matter?";

/// A `tributary serve` child on a free port, killed on drop if still running.
pub struct Server {
    child: Child,
    pub address: String,
}

impl Server {
    /// On the embedded services at `FAST` latencies, with `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_bare(&[FAST, extra].concat())
    }

    /// With exactly these flags (besides the address).
    pub fn start_bare(flags: &[&str]) -> Self {
        let mut child = tributary()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tributary serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = lines.next().expect("the URL line").expect("utf-8");
        let address = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("a URL, got {url}"))
            .to_owned();
        Self { child, address }
    }

    /// One request on a fresh connection: the status, the headers (lowercased names) and the body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        request_at(&self.address, method, path, body)
    }

    pub fn ask(&self, body: &str) -> (u16, String, Value) {
        let (status, head, body) = self.request("POST", "/v1/ask", body);
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {body}"));
        (status, head, json)
    }

    pub fn terminate(&self) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
    }

    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// One request to the server at `address` on a fresh connection: the status, the headers (lowercased names) and
/// the body.
pub fn request_at(address: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    (status, head.to_lowercase(), body.to_owned())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|source| source["name"] == name))
        .unwrap_or_else(|| panic!("no source {name} in {report}"))
}

#[test]
fn healthy_asks_are_answered_and_probes_say_ready() {
    let server = Server::start(&[]);
    let (status, _, body) = server.request("GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = server.request("GET", "/readyz", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\""), "{body}");

    let (status, _, report) = server.ask(&format!("{{\"question\": \"{QUESTION}\"}}"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "ok", "{report}");
    assert!(
        report["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("GIL")
    );
    for name in ["weather", "news", "kb"] {
        assert_eq!(source(&report, name)["status"], "ok");
    }

    // What ran is counted: the ask by outcome, each source's status and latency, the pool's size.
    let _ = server.request("POST", "/v1/ask", "not json");
    let (status, head, metrics) = server.request("GET", "/metrics", "");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    for line in [
        "tributary_asks_total{outcome=\"ok\"} 1",
        "tributary_asks_total{outcome=\"invalid\"} 1",
        "tributary_source_statuses_total{source=\"news\",status=\"ok\"} 1",
        "tributary_source_fetch_seconds_count{source=\"weather\"} 1",
        "tributary_asks_in_flight 0",
        "tributary_pool_workers ",
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

/// The breaker's state is shared by every ask the server runs: a source that keeps failing is answered
/// `circuit_open` for the next client, and the metrics say so.
#[test]
fn a_failing_source_opens_its_circuit_for_every_client_and_the_metrics_show_it() {
    let server = Server::start(&[]);
    let ask = format!("{{\"question\": \"{QUESTION}\", \"faults\": {{\"news\": \"error\"}}}}");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _, report) = server.ask(&ask);
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["status"], "degraded", "{report}");
        statuses.push(source(&report, "news")["status"].clone());
    }
    assert_eq!(statuses, ["failed", "circuit_open", "circuit_open"]);
    let (_, _, metrics) = server.request("GET", "/metrics", "");
    for line in [
        "tributary_source_circuit_state{source=\"news\",state=\"open\"} 1",
        "tributary_source_circuit_state{source=\"news\",state=\"closed\"} 0",
        "tributary_source_circuit_state{source=\"kb\",state=\"closed\"} 1",
        "tributary_source_circuit_opened_total{source=\"news\"} 1",
        "tributary_source_statuses_total{source=\"news\",status=\"circuit_open\"} 2",
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

#[test]
fn a_hanging_source_gives_a_degraded_answer_within_the_requested_deadline() {
    let server = Server::start(&[]);
    let started = Instant::now();
    let (status, _, report) = server.ask(&format!(
        "{{\"question\": \"{QUESTION}\", \"deadline_ms\": 800, \"faults\": {{\"news\": \"hang\"}}}}"
    ));
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(source(&report, "news")["status"], "timed_out");
    assert_eq!(report["deadline_ms"], 800.0);
    // Generous: the deadline is a timer, and this only checks that it was the request's, not the server's 15 s.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// The caller's remaining time travels in `x-deadline-ms` and bounds the ask like `deadline_ms`.
#[test]
fn the_callers_deadline_header_bounds_the_ask() {
    let server = Server::start(&[]);
    let body = format!("{{\"question\": \"{QUESTION}\", \"faults\": {{\"news\": \"hang\"}}}}");
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    write!(
        stream,
        "POST /v1/ask HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-deadline-ms: 700\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, json) = response.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let report: Value = serde_json::from_str(json).expect("json");
    assert_eq!(report["deadline_ms"], 700.0, "{report}");
    assert_eq!(source(&report, "news")["status"], "timed_out");
}

#[test]
fn bad_requests_get_a_4xx_with_a_json_error() {
    let server = Server::start(&[]);
    let long_body = format!("{{\"question\": \"{}\"}}", "a".repeat(70 * 1024));
    let cases: [(&str, &str, &str, u16, &str); 9] = [
        ("POST", "/v1/ask", "not json", 400, "invalid request body"),
        ("POST", "/v1/ask", "{}", 400, "missing field `question`"),
        (
            "POST",
            "/v1/ask",
            "{\"question\": \"   \"}",
            400,
            "the question is empty",
        ),
        (
            "POST",
            "/v1/ask",
            "{\"question\": \"x\", \"colour\": 1}",
            400,
            "unknown field `colour`",
        ),
        (
            "POST",
            "/v1/ask",
            "{\"question\": \"x\", \"deadline_ms\": 0}",
            400,
            "deadline_ms",
        ),
        (
            "POST",
            "/v1/ask",
            "{\"question\": \"x\", \"faults\": {\"moon\": \"hang\"}}",
            400,
            "faults: no source is called \"moon\"",
        ),
        (
            "POST",
            "/v1/ask",
            &long_body,
            413,
            "over the limit of 64 KiB",
        ),
        ("GET", "/v1/ask", "", 405, "wrong method"),
        ("GET", "/nowhere", "", 404, "no such endpoint"),
    ];
    for (method, path, body, expected, message) in cases {
        let (status, _, text) = server.request(method, path, body);
        assert_eq!(
            status,
            expected,
            "{method} {path} {}: {text}",
            &body[..body.len().min(60)]
        );
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {text}"));
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{method} {path}: {error}");
    }
}

#[test]
fn over_the_in_flight_bound_an_ask_gets_503_at_once_and_sigterm_drains() {
    let mut server = Server::start(&["--max-in-flight", "1"]);
    let slow = format!(
        "{{\"question\": \"{QUESTION}\", \"deadline_ms\": 2000, \"faults\": {{\"news\": \"hang\"}}}}"
    );
    std::thread::scope(|scope| {
        let first = scope.spawn(|| server.ask(&slow));
        // Wait until the first ask holds the only slot.
        let started = Instant::now();
        loop {
            let (_, _, body) = server.request("GET", "/readyz", "");
            if body.contains("\"in_flight\":1") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the first ask never started: {body}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let rejected_at = Instant::now();
        let (status, head, report) = server.ask(&format!("{{\"question\": \"{QUESTION}\"}}"));
        let rejection = rejected_at.elapsed();
        assert_eq!(status, 503, "{report}");
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(
            report["error"]
                .as_str()
                .unwrap_or_default()
                .contains("overloaded")
        );
        assert!(
            rejection < Duration::from_secs(1),
            "a rejection waits for nothing: {rejection:?}"
        );

        // SIGTERM while the first ask runs: it still gets its answer, then the process exits 0.
        server.terminate();
        let (status, _, report) = first.join().expect("the first ask");
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["status"], "degraded");
    });
    assert_eq!(server.wait(Duration::from_secs(10)), Some(0));
}

/// The default bound admits only what the CPU workers can infer in the time an ask has left after its sources:
/// 2 workers x (2 s - 1 s) / (3 sources x 20 ms) = 33. (It once used the whole deadline, 66, and every ask
/// admitted under twice the capacity waited for the CPU until its deadline.)
#[test]
fn the_default_bound_counts_the_cpu_time_left_after_the_sources() {
    let server = Server::start_bare(&[
        "--deadline",
        "2s",
        "--per-source-timeout",
        "1s",
        "--workers",
        "2",
        "--inference-cost",
        "20ms",
    ]);
    let (status, _, body) = server.request("GET", "/readyz", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"max_in_flight\":33"), "{body}");
}

/// A hanging source makes an ask last until its deadline, but the server kept up: the admission limit stays.
/// (It once counted the wait for the hanging source as the CPU's and shrank.)
#[test]
fn a_hanging_source_does_not_shrink_the_admission_limit() {
    let server = Server::start(&["--max-in-flight", "20"]);
    for _ in 0..3 {
        let (status, _, report) = server.ask(&format!(
            "{{\"question\": \"{QUESTION}\", \"deadline_ms\": 1500, \"faults\": {{\"news\": \"hang\"}}}}"
        ));
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["status"], "degraded", "{report}");
    }
    let (_, _, ready) = server.request("GET", "/readyz", "");
    assert!(ready.contains("\"limit\":20"), "{ready}");
}
