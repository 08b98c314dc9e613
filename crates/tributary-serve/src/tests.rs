//! The router in-process, with `tower::ServiceExt::oneshot`: no socket between the test and the handlers, the
//! simulated services behind the agent (on loopback, as `tributary serve` runs on them by default).

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;
use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{ClientOptions, SourceClient};
use tributary_agent::infer::InferenceCost;
use tributary_agent::{Agent, AgentSettings, SourcesConfig};
use tributary_sim::{SimConfig, SimServer, city_named_in};
use url::Url;

use super::*;

/// The simulated services and an agent asking them, with a small inference cost.
struct Fixture {
    services: SimServer,
    agent: Agent,
}

impl Fixture {
    async fn start() -> Self {
        let services = SimServer::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            SimConfig::default(),
        )
        .await
        .expect("start the simulated services");
        let base = Url::parse(&services.base_url()).expect("the simulator's url");
        let pool =
            CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
        let client = SourceClient::new(ClientOptions::default()).expect("client");
        let settings = AgentSettings {
            per_source_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            inference_cost: InferenceCost::Units(1_000),
            places: Arc::new(city_named_in),
            ..AgentSettings::default()
        };
        let agent = Agent::new(
            client,
            Executor::from_pool(pool),
            SourcesConfig::all_kinds_at(&base).sources,
            settings,
        );
        Self { services, agent }
    }

    fn state(&self, max_in_flight: usize) -> Arc<AppState> {
        AppState::new(
            self.agent.clone(),
            NonZeroUsize::new(max_in_flight).expect("at least 1"),
        )
    }

    async fn stop(self, state: Arc<AppState>) {
        state.stop();
        state.join_runs().await;
        self.agent.executor().shutdown().await;
        self.services.shutdown().await;
    }
}

/// Sends one request through the router; returns the status, the headers and the body as bytes.
async fn send(
    state: &Arc<AppState>,
    request: Request<Body>,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let response = router(Arc::clone(state))
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("a request")
}

fn post_json(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request")
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a JSON body")
}

#[tokio::test]
async fn health_readiness_and_the_stop() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    let (status, _, body) = send(&state, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "ok");
    let (status, _, body) = send(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["max_in_flight"], 4);
    state.stop();
    let (status, _, body) = send(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&body)["error"], "the server is stopping");
    // A stopping server refuses new asks at once, with Retry-After.
    let (status, headers, _) = send(
        &state,
        post_json("/v1/ask", r#"{"question": "What is the GIL?"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    fixture.stop(state).await;
}

#[tokio::test]
async fn an_ask_answers_with_the_report_ask_json_prints() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    let (status, headers, body) = send(
        &state,
        post_json("/v1/ask", r#"{"question": "What is the GIL?"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let report = json(&body);
    assert_eq!(report["question"], "What is the GIL?");
    assert!(report["answer"].is_string(), "{report}");
    let run_id = headers
        .get("x-run-id")
        .and_then(|value| value.to_str().ok())
        .expect("the run's id")
        .to_owned();
    // The run is kept: its trace can be read back.
    let (status, headers, body) = send(&state, get(&format!("/v1/runs/{run_id}/trace"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("ascii")
            .contains(&run_id)
    );
    assert!(json(&body)["traceEvents"].is_array());
    // And it is counted.
    let (status, _, body) = send(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(body).expect("text");
    assert!(metrics.contains("asks"), "{metrics}");
    fixture.stop(state).await;
}

#[tokio::test]
async fn a_faulted_required_answer_is_a_502_with_the_report() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    let body = r#"{"question": "What is the GIL?", "faults": {"kb": "error", "news": "error", "weather": "error"}}"#;
    let (status, _, body) = send(&state, post_json("/v1/ask", body)).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let report = json(&body);
    assert_eq!(report["status"], "failed");
    assert!(report["answer"].is_null());
    // Why, as kinds: the answer's and each source's (the question names no city: weather is not asked).
    assert_eq!(report["failure"], "no_source_answered");
    let source = |name: &str| {
        report["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .find(|source| source["name"] == name)
            .cloned()
            .expect("reported")
    };
    assert_eq!(
        (
            source("kb")["failure"].clone(),
            source("kb")["http_status"].clone()
        ),
        (serde_json::json!("http_status"), serde_json::json!(500))
    );
    assert_eq!(source("weather")["failure"], "skipped");
    // The metrics are labelled by the same kinds.
    let (_, _, body) = send(&state, get("/metrics")).await;
    let metrics = String::from_utf8(body).expect("text");
    for line in [
        "tributary_ask_failures_total{failure=\"no_source_answered\"} 1",
        "tributary_source_failures_total{source=\"kb\",failure=\"http_status\"} 1",
        "tributary_source_failures_total{source=\"weather\",failure=\"skipped\"} 1",
    ] {
        assert!(
            metrics.lines().any(|metric| metric == line),
            "{line}: {metrics}"
        );
    }
    fixture.stop(state).await;
}

#[tokio::test]
async fn bad_requests_are_told_what_is_wrong() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    for (request, expected_status, expected) in [
        (
            post_json("/v1/ask", "not json"),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        (
            post_json("/v1/ask", r#"{"question": "  "}"#),
            StatusCode::BAD_REQUEST,
            "question",
        ),
        (
            post_json(
                "/v1/ask",
                r#"{"question": "a", "faults": {"nowhere": "hang"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "faults: no source is called \"nowhere\"; the sources are",
        ),
        // In the request's terms: the field, not the command line's --fault.
        (
            post_json(
                "/v1/ask",
                r#"{"question": "a", "faults": {"news": "explode"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "faults.news: unknown fault kind `explode`; the kinds are error,",
        ),
        (
            get("/v1/ask/stream?question=a&fault=kb%3Dlatency:soon"),
            StatusCode::BAD_REQUEST,
            "faults.kb: `soon` is not a duration",
        ),
        (
            post_json("/v1/ask", r#"{"question": "a", "mode": "sideways"}"#),
            StatusCode::BAD_REQUEST,
            "mode",
        ),
        (
            get("/v1/ask/stream?colour=blue"),
            StatusCode::BAD_REQUEST,
            "unknown query parameter",
        ),
        (
            get("/v1/runs/nope/events"),
            StatusCode::NOT_FOUND,
            "no run `nope`",
        ),
        (get("/nowhere"), StatusCode::NOT_FOUND, "no such endpoint"),
        (
            Request::builder()
                .method(Method::DELETE)
                .uri("/v1/ask")
                .body(Body::empty())
                .expect("a request"),
            StatusCode::METHOD_NOT_ALLOWED,
            "wrong method",
        ),
    ] {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, _, body) = send(&state, request).await;
        assert_eq!(status, expected_status, "{what}");
        let message = json(&body)["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(expected), "{what}: {message}");
        assert!(
            !message.contains("--"),
            "{what}: a command-line flag in an HTTP reply: {message}"
        );
    }
    let oversized = format!(r#"{{"question": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    let (status, _, _) = send(&state, post_json("/v1/ask", &oversized)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    fixture.stop(state).await;
}

#[tokio::test]
async fn over_the_in_flight_bound_a_request_is_refused_at_once() {
    let fixture = Fixture::start().await;
    let state = fixture.state(1);
    // One ask holds the only place: its kb hangs until the deadline.
    let holding = tokio::spawn({
        let state = Arc::clone(&state);
        async move {
            // The weather answers, the knowledge base holds the slot until the deadline: a degraded 200.
            let body = r#"{"question": "What's the weather in Paris, and why does the GIL matter?", "deadline_ms": 3000, "faults": {"kb": "hang"}}"#;
            send(&state, post_json("/v1/ask", body)).await
        }
    });
    // Wait (by readiness, not by time) until it is admitted.
    loop {
        let (_, _, body) = send(&state, get("/readyz")).await;
        if json(&body)["in_flight"] == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let (status, headers, body) = send(
        &state,
        post_json("/v1/ask", r#"{"question": "What is the GIL?"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|message| message.starts_with("overloaded")),
    );
    let (status, _, _) = holding.await.expect("the holding ask");
    assert_eq!(status, StatusCode::OK);
    fixture.stop(state).await;
}

#[tokio::test]
async fn the_sources_the_page_and_the_openapi_document() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    let (status, _, body) = send(&state, get("/v1/sources")).await;
    assert_eq!(status, StatusCode::OK);
    let sources = json(&body);
    let names: Vec<&str> = sources["sources"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|source| source["name"].as_str())
        .collect();
    assert_eq!(names, ["weather", "news", "kb"]);
    let (status, headers, body) = send(&state, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert!(String::from_utf8_lossy(&body).contains("<html"));
    let (status, _, body) = send(&state, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(json(&body)["paths"]["/v1/ask"].is_object());
    fixture.stop(state).await;
}

/// `run` serves until its shutdown future completes, then lets the run in flight finish and joins it.
#[tokio::test]
async fn run_stops_on_shutdown_and_joins_the_runs() {
    let fixture = Fixture::start().await;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig {
        max_in_flight: NonZeroUsize::new(4).expect("4"),
        limits: tributary_sim::serve::Limits::default(),
    };
    let server = tokio::spawn(run(listener, fixture.agent.clone(), config, async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stop.send(()).expect("the server waits");
    server.await.expect("the server ends");
    fixture.agent.executor().shutdown().await;
    fixture.services.shutdown().await;
}

/// `["a"]` was answered as the question "a", `?question=%FF` as "\u{FFFD}", and `/v1/runs/%FF/trace` got axum's
/// plain-text 400: every refusal is now a 4xx in the JSON error shape, saying what was expected.
#[tokio::test]
async fn odd_bodies_queries_and_paths_are_refused_in_the_json_error_shape() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    let oversized = format!(r#"{{"question": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    for (request, expected_status, expected) in [
        (
            post_json("/v1/ask", r#"["a"]"#),
            StatusCode::BAD_REQUEST,
            "invalid type: sequence, expected a JSON object",
        ),
        (
            post_json("/v1/compare", r#""a""#),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        (
            post_json("/v1/ask", "null"),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        (
            post_json("/v1/ask", r#"{"question": "a", "question": "b"}"#),
            StatusCode::BAD_REQUEST,
            "duplicate field `question`",
        ),
        (
            post_json(
                "/v1/ask",
                r#"{"question": "a", "faults": {"ne\u202Ews": "hang"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            "contains U+202E",
        ),
        (
            get("/v1/ask/stream?question=%FF"),
            StatusCode::BAD_REQUEST,
            "the query is not valid UTF-8 once percent-decoded",
        ),
        (
            get("/v1/ask/stream?question=a&fault=k%E2%80%8Bb%3Dhang"),
            StatusCode::BAD_REQUEST,
            "contains U+200B",
        ),
        (
            get("/v1/runs/%FF/trace"),
            StatusCode::BAD_REQUEST,
            "the run id in the path is not valid UTF-8",
        ),
        (
            get("/v1/runs/%C3%28/events"),
            StatusCode::BAD_REQUEST,
            "the run id in the path is not valid UTF-8",
        ),
        (
            post_json("/v1/compare", &oversized),
            StatusCode::PAYLOAD_TOO_LARGE,
            "over the limit of 64 KiB",
        ),
    ] {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, headers, body) = send(&state, request).await;
        assert_eq!(status, expected_status, "{what}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{what}");
        let message = json(&body)["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(expected), "{what}: {message}");
    }
    fixture.stop(state).await;
}

/// Every path and method of the OpenAPI document, given a run id, a query and a body that are not UTF-8 or not
/// JSON: whatever is refused is refused in the JSON error shape, never an extractor's plain text.
#[tokio::test]
async fn no_route_answers_a_bad_request_in_plain_text() {
    let fixture = Fixture::start().await;
    let state = fixture.state(4);
    let (_, _, document) = send(&state, get("/openapi.json")).await;
    let document = json(&document);
    let paths = document["paths"].as_object().expect("paths");
    let mut refused = 0;
    for (path, operations) in paths {
        let path = path.replace("{run_id}", "%FF");
        for method in operations.as_object().expect("operations").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            for (query, body) in [
                ("", "["),
                ("?%FF=%FF", "\u{FEFF}{}"),
                ("?question=%C3%28", "[1]"),
            ] {
                let request = Request::builder()
                    .method(method.clone())
                    .uri(format!("{path}{query}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .expect("a request");
                let what = format!("{method} {path}{query} {body:?}");
                let (status, headers, body) = send(&state, request).await;
                if status.is_success() {
                    continue;
                }
                refused += 1;
                assert!(status.is_client_error(), "{what}: {status}");
                assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{what}");
                assert!(json(&body)["error"].is_string(), "{what}");
            }
        }
    }
    assert!(
        refused >= 12,
        "{refused} refusals: the document lists the routes"
    );
    // The document says what the server accepts: an object with `question`, and nothing else.
    let ask = &document["components"]["schemas"]["AskRequest"];
    assert_eq!(ask["type"], "object", "{ask}");
    assert_eq!(ask["required"], serde_json::json!(["question"]), "{ask}");
    assert_eq!(ask["additionalProperties"], false, "{ask}");
    fixture.stop(state).await;
}

/// The page draws fetching, inference and failures in the colours of the terminal chart and the lab's SVG.
#[test]
fn the_page_speaks_the_engines_colour_language() {
    use tributary::trace::palette;
    let page = crate::routes::PAGE;
    for (variable, colour) in [
        ("--fetch", palette::FETCH),
        ("--infer", palette::INFER),
        ("--bad", palette::FAILED),
    ] {
        assert!(
            page.contains(&format!("{variable}: {};", colour.hex)),
            "the page's {variable} is not {}",
            colour.hex
        );
    }
}
