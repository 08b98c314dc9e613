//! `tributary serve`'s event stream, compare, trace and OpenAPI document, against the real server on loopback:
//! a run streamed in order, resumed with Last-Event-ID, and cancelled and joined when its client leaves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{QUESTION, Server, source};

/// One Server-Sent Event.
#[derive(Debug)]
struct SseEvent {
    id: String,
    name: String,
    data: Value,
}

/// A response being read as Server-Sent Events (asked for over HTTP/1.0, so the body is not chunked).
struct EventReader {
    lines: BufReader<TcpStream>,
}

/// Opens `path` with `headers`: the status, the lowercased head, and the events when the status is 200.
fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, String, EventReader) {
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n", server.address);
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut lines = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        lines.read_line(&mut line).expect("read the head");
        if line.trim().is_empty() {
            break;
        }
        head.push_str(&line.to_lowercase());
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status in {head}"));
    (status, head, EventReader { lines })
}

impl EventReader {
    /// The next event; `None` when the stream ends. Comments (keep-alives) are skipped.
    fn next(&mut self) -> Option<SseEvent> {
        let (mut id, mut name, mut data) = (String::new(), String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).expect("read an event") == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if name.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data)
                    .unwrap_or_else(|error| panic!("event {name} data not JSON ({error}): {data}"));
                return Some(SseEvent { id, name, data });
            }
            if let Some(value) = line.strip_prefix("id: ") {
                id = value.to_owned();
            } else if let Some(value) = line.strip_prefix("event: ") {
                name = value.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            }
        }
    }

    fn rest(&mut self) -> Vec<SseEvent> {
        std::iter::from_fn(|| self.next()).collect()
    }

    /// The body of a response that is not a stream.
    fn body(mut self) -> String {
        let mut body = String::new();
        self.lines.read_to_string(&mut body).expect("read the body");
        body
    }
}

fn stream_path(question: &str, extra: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("question", question)
        .finish();
    format!("/v1/ask/stream?{query}{extra}")
}

fn position(event: &SseEvent) -> usize {
    event
        .id
        .rsplit_once('/')
        .and_then(|(_, position)| position.parse().ok())
        .unwrap_or_else(|| panic!("an id RUN/POSITION: {event:?}"))
}

#[test]
fn a_streamed_run_tells_what_began_and_ended_then_the_answer() {
    let server = Server::start(&[]);
    let (status, head, mut events) = open(&server, &stream_path(QUESTION, ""), &[]);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    let events = events.rest();

    // Numbered from 0 in order, all of one run; `run` first, `done` last, the answer just before.
    let run_id = events[0].data["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    assert_eq!(events[0].name, "run");
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.id, format!("{run_id}/{index}"));
    }
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["answer", "done"], "{names:?}");
    assert!(
        !names.contains(&"text"),
        "the simulated model writes no words: {names:?}"
    );
    assert_eq!(events[events.len() - 1].data["outcome"], "answered");
    let lanes = &events[0].data["lanes"];
    assert!(
        lanes
            .as_array()
            .is_some_and(|lanes| lanes.contains(&"source news".into())),
        "{lanes}"
    );

    // Every piece of work that began ended, after it began; a fetch span and an inference span per source.
    for began in events.iter().filter(|event| event.name == "span_started") {
        let closed = events
            .iter()
            .find(|event| event.name == "span_closed" && event.data["id"] == began.data["id"])
            .unwrap_or_else(|| panic!("never closed: {began:?}"));
        assert!(position(closed) > position(began));
        assert_eq!(closed.data["outcome"], "ok");
        // An inference in progress is drawn where it runs: on a worker's lane, not its source's.
        if began.data["activity"] == "infer" {
            assert!(
                began.data["lane"]
                    .as_str()
                    .is_some_and(|lane| lane.starts_with("worker ")),
                "{began:?}"
            );
        }
    }
    let spans: Vec<&Value> = events
        .iter()
        .filter(|event| event.name == "span")
        .map(|event| &event.data)
        .collect();
    for name in ["weather", "news", "kb"] {
        let lane = format!("source {name}");
        assert!(
            spans
                .iter()
                .any(|span| span["lane"] == lane.as_str() && span["activity"] == "fetch"),
            "no fetch on {lane}: {spans:?}"
        );
        assert!(
            spans
                .iter()
                .any(|span| span["name"] == format!("infer {name}").as_str()
                    && span["lane"]
                        .as_str()
                        .is_some_and(|lane| lane.starts_with("worker "))),
            "no inference of {name}: {spans:?}"
        );
        // The source's statuses in order: fetching, fetched, inferring, inferred (as the bar ends, not only with
        // the answer), then the final ok.
        let statuses: Vec<&str> = events
            .iter()
            .filter(|event| event.name == "source" && event.data["source"] == name)
            .filter_map(|event| event.data["status"].as_str())
            .collect();
        assert_eq!(
            statuses,
            ["fetching", "fetched", "inferring", "inferred", "ok"],
            "{name}"
        );
    }
    let answer = &events[events.len() - 2].data;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(source(answer, "news")["status"], "ok");

    // The run is kept: its trace downloads as a Chrome trace, its events read again.
    let (status, head, body) = server.request("GET", &format!("/v1/runs/{run_id}/trace"), "");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-disposition: attachment"), "{head}");
    let trace: Value = serde_json::from_str(&body).expect("trace JSON");
    assert!(
        trace["traceEvents"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event["ph"] == "X")),
        "{trace}"
    );
    let (status, _, mut again) = open(&server, &format!("/v1/runs/{run_id}/events"), &[]);
    assert_eq!(status, 200);
    assert_eq!(again.rest().len(), events.len());
}

/// With a chat model, each source's words stream as `text` events under its inference while it writes, before
/// the answer, and together they are the summary the answer gives.
#[cfg(feature = "models")]
#[test]
fn a_chat_models_words_stream_before_the_answer() {
    let Some(models) = crate::models::both_models("a_chat_models_words_stream_before_the_answer")
    else {
        return;
    };
    let _heavy = crate::harness::heavy();
    let server = Server::start(&["--model", &models, "--workers", "2"]);
    let path = stream_path(
        "Should I take an umbrella in Lisbon?",
        "&deadline_ms=120000&fault=news%3Dhang&fault=kb%3Dhang",
    );
    let (status, head, mut events) = open(&server, &path, &[]);
    assert_eq!(status, 200, "{head}");
    let events = events.rest();
    let inference_id = events
        .iter()
        // The only inference (news and kb hang): the weather's, on the lane of the worker that runs it.
        .find(|event| {
            event.name == "span_started"
                && event.data["activity"] == "infer"
                && event.data["lane"]
                    .as_str()
                    .is_some_and(|lane| lane.starts_with("worker "))
        })
        .map(|event| event.data["id"].clone())
        .expect("the weather's inference began");
    let texts: Vec<&SseEvent> = events.iter().filter(|event| event.name == "text").collect();
    assert!(texts.len() > 1, "the words came one by one: {texts:?}");
    let mut written = String::new();
    for text in &texts {
        assert_eq!(text.data["source"], "weather", "{text:?}");
        assert_eq!(text.data["id"], inference_id, "{text:?}");
        written.push_str(text.data["text"].as_str().expect("text"));
    }
    let answer = events
        .iter()
        .find(|event| event.name == "answer")
        .expect("an answer");
    assert!(position(answer) > position(texts[texts.len() - 1]));
    let weather = source(&answer.data, "weather");
    assert_eq!(
        weather["generated_by"], "SmolLM2-135M-Instruct.Q4_1",
        "{weather}"
    );
    assert_eq!(
        weather["summary"].as_str(),
        Some(written.trim()),
        "{weather}"
    );
}

/// A chat endpoint's tokens stream as `text` events too, each under its source's inference, and together they
/// are the summary (an OpenAI-compatible mock on loopback: no model needed).
#[test]
fn a_chat_endpoints_tokens_stream_as_text_events() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the mock endpoint");
    let endpoint = runtime.block_on(async {
        let endpoint = wiremock::MockServer::start().await;
        let mut body = String::new();
        for piece in ["Take", " an", " umbrella."] {
            let chunk = serde_json::json!({"choices": [{"delta": {"content": piece}}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"),
            )
            .mount(&endpoint)
            .await;
        endpoint
    });
    let model = format!("openai:tiny-chat@{}/v1", endpoint.uri());
    let server = Server::start(&["--model", &model]);
    let (status, head, mut events) = open(&server, &stream_path(QUESTION, ""), &[]);
    assert_eq!(status, 200, "{head}");
    let events = events.rest();
    let answer = &events[events.len() - 2];
    assert_eq!(answer.name, "answer");
    for name in ["weather", "news", "kb"] {
        let report = source(&answer.data, name);
        if report["status"] != "ok" {
            continue;
        }
        let written: String = events
            .iter()
            .filter(|event| event.name == "text" && event.data["source"] == name)
            .map(|event| event.data["text"].as_str().expect("text").to_owned())
            .collect();
        assert_eq!(written, "Take an umbrella.", "{name}: {events:?}");
        assert_eq!(report["summary"], "Take an umbrella.", "{report}");
        assert_eq!(report["generated_by"], "tiny-chat", "{report}");
    }
    assert!(
        events.iter().any(|event| event.name == "text"),
        "{events:?}"
    );
}

/// A reconnect with Last-Event-ID gets exactly the events after it, while the run goes on and after it ended.
#[test]
fn last_event_id_resumes_the_run_where_it_left_off() {
    let server = Server::start(&[]);
    // news answers after 1.5 s: the first connection leaves while the run goes on.
    let path = stream_path(QUESTION, "&fault=news%3Dlatency%3A1500ms");
    let (status, _, mut first) = open(&server, &path, &[]);
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(first.next().expect("an event"));
    }
    drop(first);
    let last = seen.last().expect("three events").id.clone();
    let (status, _, mut resumed) = open(&server, &path, &[("Last-Event-ID", &last)]);
    assert_eq!(status, 200);
    let rest = resumed.rest();
    assert_eq!(
        position(&rest[0]),
        3,
        "resumed right after {last}: {:?}",
        rest[0]
    );
    for (offset, event) in rest.iter().enumerate() {
        assert_eq!(position(event), 3 + offset);
    }
    let done = rest.last().expect("events");
    assert_eq!(done.name, "done");
    assert_eq!(
        done.data["outcome"], "answered",
        "one disconnect within the grace does not cancel"
    );
    assert_eq!(rest[rest.len() - 2].data["status"], "ok");

    // After the end: the last few again; after the last: nothing; a forgotten run: 404.
    let (status, _, mut tail) = open(
        &server,
        &path,
        &[("Last-Event-ID", &rest[rest.len() - 3].id)],
    );
    assert_eq!(status, 200);
    assert_eq!(tail.rest().len(), 2);
    let (status, _, mut none) = open(&server, &path, &[("Last-Event-ID", &done.id)]);
    assert_eq!(status, 200);
    assert!(none.rest().is_empty());
    let (status, _, gone) = open(&server, &path, &[("Last-Event-ID", "r999-00000000/4")]);
    assert_eq!(status, 404);
    assert!(gone.body().contains("no run `r999-00000000`"));
}

/// A source that accepts a request and never answers; tells when the client closed the connection.
fn hanging_source() -> (String, mpsc::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (closed, closes) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let closed = closed.clone();
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 4096];
                // Read the request and whatever follows until the client closes the connection.
                while matches!(stream.read(&mut buffer), Ok(read) if read > 0) {}
                let _ = closed.send(Instant::now());
            });
        }
    });
    (format!("http://{address}/"), closes)
}

/// A server whose only source hangs, with a deadline far away (30 s), so only a cancellation ends a run early.
fn server_with_a_hanging_source() -> (Server, mpsc::Receiver<Instant>, tempfile::TempDir) {
    let (url, closes) = hanging_source();
    let directory = tempfile::tempdir().expect("temp dir");
    let config = directory.path().join("sources.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nname = \"news\"\nkind = \"news\"\nbase_url = \"{url}\"\ntimeout = \"30s\"\nretries = 0\n"
        ),
    )
    .expect("write the sources file");
    let server = Server::start_bare(&[
        "--inference-cost",
        "20ms",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--deadline",
        "30s",
        "--per-source-timeout",
        "30s",
    ]);
    (server, closes, directory)
}

/// Waits until `/readyz` says no run is in flight, then returns the metrics.
fn idle_metrics(server: &Server, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let (_, _, ready) = server.request("GET", "/readyz", "");
        if ready.contains("\"in_flight\":0") {
            return server.request("GET", "/metrics", "").2;
        }
        assert!(started.elapsed() < within, "the run never ended: {ready}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stream_whose_client_leaves_is_cancelled_and_joined() {
    let (server, closes, _directory) = server_with_a_hanging_source();
    let (status, _, mut events) = open(&server, &stream_path("news about asyncio", ""), &[]);
    assert_eq!(status, 200);
    // Wait until the fetch is under way, then leave.
    while let Some(event) = events.next() {
        if event.name == "source" && event.data["status"] == "fetching" {
            break;
        }
    }
    let left = Instant::now();
    drop(events);
    // The source sees its request dropped after the reconnect grace (2 s), long before the 30 s deadline...
    let closed = closes
        .recv_timeout(Duration::from_secs(15))
        .expect("the hanging request is dropped");
    let waited = closed.duration_since(left);
    assert!(
        waited >= Duration::from_secs(1),
        "not before the reconnect grace: {waited:?}"
    );
    // ...and the run's slot is free once its steps are joined; it is counted as cancelled.
    let metrics = idle_metrics(&server, Duration::from_secs(10));
    assert!(
        metrics.contains("tributary_asks_total{outcome=\"cancelled\"} 1"),
        "{metrics}"
    );
}

/// Posts `body` to `path`, waits until its run holds its slot, and leaves without reading the answer.
fn post_and_leave(server: &Server, path: &str, body: &str) {
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let started = Instant::now();
    loop {
        let (_, _, ready) = server.request("GET", "/readyz", "");
        if ready.contains("\"in_flight\":1") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{ready}");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(stream);
}

#[test]
fn an_ask_whose_client_leaves_is_cancelled_and_joined_at_once() {
    let (server, closes, _directory) = server_with_a_hanging_source();
    post_and_leave(&server, "/v1/ask", "{\"question\": \"news about asyncio\"}");
    closes
        .recv_timeout(Duration::from_secs(10))
        .expect("the hanging request is dropped");
    let metrics = idle_metrics(&server, Duration::from_secs(10));
    assert!(
        metrics.contains("tributary_asks_total{outcome=\"cancelled\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_comparison_whose_client_leaves_is_cancelled_and_joined() {
    let (server, closes, _directory) = server_with_a_hanging_source();
    post_and_leave(
        &server,
        "/v1/compare",
        "{\"question\": \"news about asyncio\"}",
    );
    // The baseline's hanging request is dropped, the agent's run never starts, and the slot comes free.
    closes
        .recv_timeout(Duration::from_secs(10))
        .expect("the hanging request is dropped");
    let _ = idle_metrics(&server, Duration::from_secs(10));
    assert!(
        closes.recv_timeout(Duration::from_millis(300)).is_err(),
        "the second run was not started"
    );
}

#[test]
fn a_bad_stream_request_gets_a_4xx_with_a_json_error() {
    let server = Server::start(&[]);
    for (path, headers, expected, message) in [
        (
            "/v1/ask/stream",
            &[][..],
            400,
            "missing query parameter `question`",
        ),
        (
            "/v1/ask/stream?question=x&deadline_ms=-1",
            &[][..],
            400,
            "not a whole number",
        ),
        (
            "/v1/ask/stream?question=x&fault=moon%3Dhang",
            &[][..],
            400,
            "faults: no source is called \"moon\"",
        ),
        (
            "/v1/ask/stream?question=x&mode=fast",
            &[][..],
            400,
            "not one of concurrent, sequential",
        ),
        ("/v1/ask/stream?question=%01", &[][..], 400, "question"),
        (
            "/v1/ask/stream?question=x",
            &[("Last-Event-ID", "garbage")][..],
            400,
            "Last-Event-ID",
        ),
        ("/v1/runs/nope/trace", &[][..], 404, "no run `nope`"),
        ("/v1/runs/nope/events", &[][..], 404, "no run `nope`"),
    ] {
        let (status, _, response) = open(&server, path, headers);
        let body = response.body();
        assert_eq!(status, expected, "{path}: {body}");
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{path}: not JSON ({error}): {body}"));
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{path}: {error}");
    }
}

#[test]
fn compare_runs_the_baseline_and_the_agent_with_both_timelines() {
    let server = Server::start(&[]);
    let (status, _, body) = server.request(
        "POST",
        "/v1/compare",
        &format!("{{\"question\": \"{QUESTION}\"}}"),
    );
    assert_eq!(status, 200, "{body}");
    let compared: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(compared["sequential"]["mode"], "sequential");
    assert_eq!(compared["concurrent"]["mode"], "concurrent");
    assert!(
        compared["speedup"]
            .as_f64()
            .is_some_and(|speedup| speedup > 0.0),
        "{compared}"
    );
    for mode in ["sequential", "concurrent"] {
        let spans = compared["timelines"][mode].as_array().expect("spans");
        assert!(
            spans.iter().any(|span| span["activity"] == "infer"),
            "{mode}: {spans:?}"
        );
    }
}

#[test]
fn the_openapi_document_lists_every_endpoint() {
    let server = Server::start(&[]);
    let (status, _, body) = server.request("GET", "/openapi.json", "");
    assert_eq!(status, 200, "{body}");
    let document: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1"))
    );
    for path in [
        "/v1/ask",
        "/v1/ask/stream",
        "/v1/compare",
        "/v1/sources",
        "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/trace",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(
        document["components"]["schemas"]
            .get("AgentReport")
            .is_some()
    );
    let (status, head, page) = server.request("GET", "/", "");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        page.contains("<html") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
}
