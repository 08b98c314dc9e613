//! The client and the cache against real HTTP servers on loopback, one small axum handler per behaviour.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use url::Url;

use super::*;
use crate::group::Deadline;

/// What the test server answers to one request.
#[derive(Clone)]
enum Reply {
    /// 200 with this JSON text.
    Json(&'static str),
    /// This status, with a small JSON body.
    Status(StatusCode),
    /// 503 with `Retry-After: <seconds>`.
    Unavailable { retry_after_secs: u64 },
    /// Never answers.
    Hang,
    /// 200 with `Content-Length: <bytes>`, then a body that never comes.
    DeclaredLength { bytes: u64 },
    /// 200, the start of a body, then nothing more.
    StallsMidBody,
    /// 200 with a chunked body that never ends (and so has no Content-Length).
    Endless,
    /// 200 with this JSON text after `delay_ms`.
    After { delay_ms: u64, json: &'static str },
    /// 200 with `{"user_agent": "<the request's User-Agent>"}`.
    EchoUserAgent,
    /// 200 with these lines, one chunk each, with a pause between them.
    Lines(&'static [&'static str]),
    /// 200 with these lines, then the connection breaks mid-body.
    LinesThenBreak(&'static [&'static str]),
    /// Signals `request_seen`, then waits for a permit from `gate` before answering with this JSON.
    Gated {
        request_seen: Arc<Notify>,
        gate: Arc<Semaphore>,
        json: &'static str,
    },
}

impl Reply {
    async fn into_response(self, headers: axum::http::HeaderMap) -> Response {
        match self {
            Reply::After { delay_ms, json } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                json_response(StatusCode::OK, json)
            }
            Reply::EchoUserAgent => {
                let user_agent = headers
                    .get(header::USER_AGENT)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                axum::Json(json!({ "user_agent": user_agent })).into_response()
            }
            Reply::Json(text) => json_response(StatusCode::OK, text),
            Reply::Lines(lines) => Response::new(Body::from_stream(line_chunks(lines))),
            Reply::LinesThenBreak(lines) => {
                // After a pause, so that the lines are on the wire before the connection is dropped.
                let broken = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<Bytes, _>(std::io::Error::other("the connection broke"))
                });
                Response::new(Body::from_stream(line_chunks(lines).chain(broken)))
            }
            Reply::Status(status) => json_response(status, r#"{"error":"scripted"}"#),
            Reply::Unavailable { retry_after_secs } => {
                let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, "{}");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            Reply::Hang => std::future::pending().await,
            Reply::DeclaredLength { bytes } => {
                let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
                let mut response = Response::new(Body::from_stream(never));
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
                response
            }
            Reply::StallsMidBody => {
                let start = futures::stream::once(async {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"{\"a\":"))
                });
                Response::new(Body::from_stream(start.chain(futures::stream::pending())))
            }
            Reply::Endless => {
                let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                let chunks =
                    futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                Response::new(Body::from_stream(chunks))
            }
            Reply::Gated {
                request_seen,
                gate,
                json,
            } => {
                request_seen.notify_one();
                let _permit = gate.acquire().await;
                json_response(StatusCode::OK, json)
            }
        }
    }
}

/// Each line with its `\n` as a chunk of its own, 5 ms apart.
fn line_chunks(
    lines: &'static [&'static str],
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::iter(lines).then(|line| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(Bytes::from(format!("{line}\n")))
    })
}

fn json_response(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A server on `127.0.0.1:0` that answers the n-th request with `replies[n]`, repeating the last reply.
struct ScriptedServer {
    base_url: Url,
    requests: Arc<AtomicUsize>,
}

impl ScriptedServer {
    async fn start(replies: Vec<Reply>) -> Self {
        assert!(!replies.is_empty());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let replies = Arc::new(replies);
        let router = Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let reply = replies[index.min(replies.len() - 1)].clone();
            reply.into_response(headers)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base_url: Url::parse(&format!("http://{address}")).unwrap(),
            requests,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// A spec for this server: 5 s per attempt, the given retries, no cache.
    fn spec(&self, retries: u32) -> SourceSpec {
        let mut spec = SourceSpec::new("test", self.base_url.clone());
        spec.timeout = Duration::from_secs(5);
        spec.retries = retries;
        spec
    }
}

/// A client with short backoffs, so that retry tests are quick.
fn client() -> SourceClient {
    SourceClient::new(ClientOptions {
        backoff: BackoffPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
        ..ClientOptions::default()
    })
    .unwrap()
}

fn request() -> SourceRequest {
    SourceRequest::new("/weather").with_query("city", "Lyon")
}

fn ten_seconds() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

fn decisions(log: &[AttemptRecord]) -> Vec<Option<RetryDecision>> {
    log.iter()
        .map(|record| match record.outcome {
            AttemptOutcome::Succeeded => None,
            AttemptOutcome::Failed { next, .. } => Some(next),
            AttemptOutcome::Abandoned => panic!("no request is abandoned without hedging"),
        })
        .collect()
}

#[tokio::test]
async fn server_errors_are_retried_until_success_and_attempts_are_reported() {
    let server = ScriptedServer::start(vec![
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Json(r#"{"temperature": 21}"#),
    ])
    .await;

    let fetched = client()
        .fetch(&server.spec(2), &request(), ten_seconds())
        .await
        .unwrap();

    assert_eq!(*fetched.body, json!({"temperature": 21}));
    assert_eq!(fetched.attempts, 3);
    assert!(!fetched.cached);
    assert_eq!(server.requests(), 3);
    let decisions = decisions(&fetched.attempt_log);
    assert!(matches!(decisions[0], Some(RetryDecision::Retried { .. })));
    assert!(matches!(decisions[1], Some(RetryDecision::Retried { .. })));
    assert_eq!(decisions[2], None);
    let numbers: Vec<u32> = fetched
        .attempt_log
        .iter()
        .map(|record| record.number)
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    for pair in fetched.attempt_log.windows(2) {
        assert!(pair[0].ended <= pair[1].started);
    }
}

#[tokio::test]
async fn a_hanging_source_is_cut_by_the_per_attempt_timeout_and_retried() {
    let server = ScriptedServer::start(vec![Reply::Hang]).await;
    let mut spec = server.spec(1);
    spec.timeout = Duration::from_millis(100);

    let error = client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::AttemptTimeout { timeout } if *timeout == spec.timeout),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 2);
    assert_eq!(server.requests(), 2);
    assert_eq!(
        decisions(error.attempt_log())[1],
        Some(RetryDecision::RetriesExhausted)
    );
}

#[tokio::test]
async fn the_per_attempt_timeout_covers_reading_the_body_not_just_the_headers() {
    let server = ScriptedServer::start(vec![Reply::StallsMidBody]).await;
    let mut spec = server.spec(0);
    spec.timeout = Duration::from_millis(200);

    let error = client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::AttemptTimeout { .. }),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 1);
}

#[tokio::test]
async fn a_hanging_source_is_cut_by_the_deadline_when_it_is_the_shorter_bound() {
    let server = ScriptedServer::start(vec![Reply::Hang]).await;
    let deadline = Deadline::after(Duration::from_millis(300));

    let error = client()
        .fetch(&server.spec(2), &request(), deadline)
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::DeadlineExceeded),
        "{error:?}"
    );
    assert!(error.is_deadline());
    assert_eq!(error.attempts(), 1, "a deadline is never retried");
    assert_eq!(
        decisions(error.attempt_log()),
        [Some(RetryDecision::NotRetryable)]
    );
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_backoff() {
    let server = ScriptedServer::start(vec![
        Reply::Unavailable {
            retry_after_secs: 1,
        },
        Reply::Json("{}"),
    ])
    .await;

    let fetched = client()
        .fetch(&server.spec(2), &request(), ten_seconds())
        .await
        .unwrap();

    assert_eq!(fetched.attempts, 2);
    let log = &fetched.attempt_log;
    assert_eq!(log[0].delay_before_next(), Some(Duration::from_secs(1)));
    assert!(log[1].started.duration_since(log[0].ended) >= Duration::from_secs(1));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = ScriptedServer::start(vec![Reply::Status(StatusCode::NOT_FOUND)]).await;

    let error = client()
        .fetch(&server.spec(2), &request(), ten_seconds())
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::HttpStatus { status } if *status == StatusCode::NOT_FOUND),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(), 1);
    assert_eq!(
        decisions(error.attempt_log()),
        [Some(RetryDecision::NotRetryable)]
    );
}

#[tokio::test]
async fn too_many_requests_is_retried() {
    let server = ScriptedServer::start(vec![
        Reply::Status(StatusCode::TOO_MANY_REQUESTS),
        Reply::Json("{}"),
    ])
    .await;

    let fetched = client()
        .fetch(&server.spec(2), &request(), ten_seconds())
        .await
        .unwrap();

    assert_eq!(fetched.attempts, 2);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn retries_stop_when_the_delay_would_end_past_the_deadline() {
    let server = ScriptedServer::start(vec![Reply::Unavailable {
        retry_after_secs: 30,
    }])
    .await;
    let deadline = Deadline::after(Duration::from_secs(5));

    let error = client()
        .fetch(&server.spec(2), &request(), deadline)
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::HttpStatus { status } if *status == StatusCode::SERVICE_UNAVAILABLE),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 1);
    assert!(
        matches!(
            decisions(error.attempt_log())[0],
            Some(RetryDecision::DeadlineTooClose { delay, .. }) if delay == Duration::from_secs(30)
        ),
        "{:?}",
        error.attempt_log()
    );
    assert!(
        !deadline.is_expired(),
        "gave up at once rather than sleeping into the deadline"
    );
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let base_url = Url::parse(&format!("http://{address}")).unwrap();
    let mut spec = SourceSpec::new("closed", base_url);
    spec.retries = 1;

    let error = client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::Transport(_)),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 2);
}

#[tokio::test]
async fn an_oversized_body_is_refused_from_its_content_length() {
    // The body never comes: a client that waited for it before checking would hit the timeout instead.
    let server = ScriptedServer::start(vec![Reply::DeclaredLength {
        bytes: 2 * 1024 * 1024,
    }])
    .await;

    let error = client()
        .fetch(&server.spec(2), &request(), ten_seconds())
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::BodyTooLarge { limit_bytes } if *limit_bytes == DEFAULT_MAX_BODY_BYTES),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 1, "an oversized body is not retried");
}

#[tokio::test]
async fn an_oversized_chunked_body_is_refused_while_streaming() {
    // The body never ends: a client that buffered it before checking would hit the timeout instead.
    let server = ScriptedServer::start(vec![Reply::Endless]).await;
    let mut spec = server.spec(0);
    spec.max_body_bytes = 256 * 1024;

    let error = client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap_err();

    assert!(
        matches!(error.kind(), FetchErrorKind::BodyTooLarge { limit_bytes } if *limit_bytes == 256 * 1024),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_body_within_the_limit_is_accepted() {
    let server = ScriptedServer::start(vec![Reply::Json(r#"{"ok": true}"#)]).await;
    let mut spec = server.spec(0);
    spec.max_body_bytes = 12;

    let fetched = client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap();

    assert_eq!(*fetched.body, json!({"ok": true}));
}

#[tokio::test]
async fn malformed_json_is_reported_with_its_position_and_not_retried() {
    let server = ScriptedServer::start(vec![Reply::Json("{\"temperature\":\n  oops}")]).await;

    let error = client()
        .fetch(&server.spec(2), &request(), ten_seconds())
        .await
        .unwrap_err();

    match error.kind() {
        FetchErrorKind::MalformedJson {
            line,
            column,
            detail,
            ..
        } => {
            assert_eq!((*line, *column), (2, 3));
            assert!(detail.contains("expected value"), "{detail}");
        }
        other => panic!("expected malformed json, got {other:?}"),
    }
    assert_eq!(error.attempts(), 1);
    assert!(error.kind().to_string().contains("at line 2 column 3"));
}

#[tokio::test]
async fn a_second_identical_request_is_a_cache_hit() {
    let server = ScriptedServer::start(vec![Reply::Json(r#"{"headline": "rain"}"#)]).await;
    let mut spec = server.spec(0);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();
    let first = SourceRequest::new("/news")
        .with_query("a", "1")
        .with_query("b", "2");
    let same_in_another_order = SourceRequest::new("news")
        .with_query("b", "2")
        .with_query("a", "1");

    let miss = client.fetch(&spec, &first, ten_seconds()).await.unwrap();
    let hit = client
        .fetch(&spec, &same_in_another_order, ten_seconds())
        .await
        .unwrap();

    assert_eq!(server.requests(), 1);
    assert!(!miss.cached);
    assert_eq!(miss.attempts, 1);
    assert!(hit.cached);
    assert_eq!(hit.attempts, 0);
    assert!(hit.attempt_log.is_empty());
    assert_eq!(hit.body, miss.body);
}

#[tokio::test]
async fn different_requests_and_sources_do_not_share_cache_entries() {
    let server = ScriptedServer::start(vec![Reply::Json("{}")]).await;
    let mut spec = server.spec(0);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let mut other_source = spec.clone();
    other_source.name = "other".to_owned();
    let client = client();

    client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap();
    let other_query = SourceRequest::new("/weather").with_query("city", "Oslo");
    assert!(
        !client
            .fetch(&spec, &other_query, ten_seconds())
            .await
            .unwrap()
            .cached
    );
    assert!(
        !client
            .fetch(&other_source, &request(), ten_seconds())
            .await
            .unwrap()
            .cached
    );

    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn a_source_without_a_cache_ttl_is_asked_every_time() {
    let server = ScriptedServer::start(vec![Reply::Json("{}")]).await;
    let spec = server.spec(0);
    let client = client();

    for _ in 0..2 {
        let fetched = client
            .fetch(&spec, &request(), ten_seconds())
            .await
            .unwrap();
        assert!(!fetched.cached);
    }

    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let server = ScriptedServer::start(vec![
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Json(r#"{"recovered": true}"#),
    ])
    .await;
    let mut spec = server.spec(0);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();

    let error = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap_err();
    let fetched = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap();

    assert_eq!(error.attempts(), 1);
    assert!(!fetched.cached, "the failure must not have been cached");
    assert_eq!(*fetched.body, json!({"recovered": true}));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn concurrent_identical_requests_make_one_upstream_call() {
    const CALLERS: usize = 50;
    let request_seen = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let server = ScriptedServer::start(vec![Reply::Gated {
        request_seen: Arc::clone(&request_seen),
        gate: Arc::clone(&gate),
        json: r#"{"article": "rivers"}"#,
    }])
    .await;
    let mut spec = server.spec(0);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();
    let request = request();

    // join_all polls every caller before the server can answer (it holds the answer until the gate opens, and
    // the gate opens only once the first request has arrived), so all of them are in flight together.
    let callers = join_all((0..CALLERS).map(|_| client.fetch(&spec, &request, ten_seconds())));
    let open_gate = async {
        request_seen.notified().await;
        gate.add_permits(CALLERS);
    };
    let (results, ()) = tokio::join!(callers, open_gate);

    assert_eq!(server.requests(), 1);
    let fetched: Vec<Fetched> = results.into_iter().map(Result::unwrap).collect();
    assert!(
        fetched
            .iter()
            .all(|each| *each.body == json!({"article": "rivers"}))
    );
    assert_eq!(
        fetched.iter().filter(|each| each.cached).count(),
        CALLERS - 1
    );
    assert_eq!(fetched.iter().map(|each| each.attempts).sum::<u32>(), 1);
}

#[tokio::test]
async fn an_expired_deadline_sends_nothing() {
    let server = ScriptedServer::start(vec![Reply::Json("{}")]).await;
    let expired = Deadline::at(tokio::time::Instant::now());

    let error = client()
        .fetch(&server.spec(2), &request(), expired)
        .await
        .unwrap_err();

    assert!(error.is_deadline());
    assert_eq!(error.attempts(), 0);
    assert_eq!(server.requests(), 0);
}

#[test]
fn error_messages_read_after_failed_to() {
    let error = FetchError::new(
        "weather",
        FetchErrorKind::BodyTooLarge { limit_bytes: 1024 },
        Vec::new(),
    );
    assert_eq!(
        format!("failed to {error}: {}", error.kind()),
        "failed to fetch from source `weather` after 0 attempt(s): read a response body within the 1024-byte limit"
    );
}

#[tokio::test]
async fn a_caller_waiting_on_another_callers_fetch_still_stops_at_its_own_deadline() {
    let request_seen = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let server = ScriptedServer::start(vec![Reply::Gated {
        request_seen: Arc::clone(&request_seen),
        gate: Arc::clone(&gate),
        json: "{}",
    }])
    .await;
    let mut spec = server.spec(0);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();
    let request = request();

    let patient = client.fetch(&spec, &request, ten_seconds());
    let hurried = async {
        request_seen.notified().await;
        let result = client
            .fetch(&spec, &request, Deadline::after(Duration::from_millis(200)))
            .await;
        gate.add_permits(1);
        result
    };
    let (patient, hurried) = tokio::join!(patient, hurried);

    let hurried = hurried.unwrap_err();
    assert!(hurried.is_deadline(), "{hurried:?}");
    assert_eq!(hurried.attempts(), 0);
    assert!(!patient.unwrap().cached);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn another_callers_expired_deadline_does_not_fail_a_caller_with_time_left() {
    let server =
        ScriptedServer::start(vec![Reply::Hang, Reply::Json(r#"{"late": "but fine"}"#)]).await;
    let mut spec = server.spec(0);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();
    let request = request();

    // Polled first, so the hurried caller runs the fetch and the patient one waits on it.
    let mut hurried =
        Box::pin(client.fetch(&spec, &request, Deadline::after(Duration::from_millis(200))));
    assert!(futures::poll!(&mut hurried).is_pending());
    let patient = client.fetch(&spec, &request, ten_seconds());
    let (hurried, patient) = tokio::join!(hurried, patient);

    let hurried = hurried.unwrap_err();
    assert!(hurried.is_deadline(), "{hurried:?}");
    assert_eq!(hurried.attempts(), 1);
    let patient = patient.unwrap();
    assert_eq!(*patient.body, json!({"late": "but fine"}));
    assert_eq!(patient.attempts, 1, "the patient caller fetched for itself");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn dropping_the_caller_that_runs_the_fetch_does_not_strand_the_callers_waiting_on_it() {
    let request_seen = Arc::new(Notify::new());
    let never_opened = Arc::new(Semaphore::new(0));
    let server = ScriptedServer::start(vec![
        Reply::Gated {
            request_seen: Arc::clone(&request_seen),
            gate: never_opened,
            json: "{}",
        },
        Reply::Json(r#"{"second": true}"#),
    ])
    .await;
    let mut spec = server.spec(2);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();
    let request = request();

    let mut first = Box::pin(client.fetch(&spec, &request, ten_seconds()));
    tokio::select! {
        result = &mut first => panic!("the gated request cannot finish: {result:?}"),
        () = request_seen.notified() => {}
    }
    let mut second = Box::pin(client.fetch(&spec, &request, ten_seconds()));
    assert!(futures::poll!(&mut second).is_pending());
    drop(first);
    let second = second.await.unwrap();

    assert_eq!(*second.body, json!({"second": true}));
    assert!(!second.cached);
    assert_eq!(server.requests(), 2);
}

/// A raw TCP server that answers every connection with the same bytes (read the request, write, close): for
/// answers axum will not send. Counts connections.
async fn raw_server(reply: Vec<u8>) -> (Url, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let reply: Arc<[u8]> = reply.into();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let reply = Arc::clone(&reply);
            tokio::spawn(async move {
                let mut request = [0_u8; 4096];
                let _read = socket.read(&mut request).await;
                let _written = socket.write_all(&reply).await;
                let _shut = socket.shutdown().await;
            });
        }
    });
    (
        Url::parse(&format!("http://{address}")).unwrap(),
        connections,
    )
}

/// Retries were once spent on errors a second identical request meets again: a response that is not HTTP,
/// headers over hyper's limit, a redirect loop. One attempt each; a dropped connection is still retried.
#[tokio::test]
async fn transport_errors_that_cannot_heal_are_not_retried() {
    let huge_header = format!(
        "HTTP/1.1 200 OK\r\nX-Padding: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(512 * 1024)
    );
    for (name, reply) in [
        ("garbage", b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()),
        ("huge headers", huge_header.into_bytes()),
        (
            "redirect loop",
            b"HTTP/1.1 302 Found\r\nLocation: /weather?city=Lyon\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        ),
    ] {
        let (base_url, connections) = raw_server(reply).await;
        let mut spec = SourceSpec::new(name, base_url);
        spec.retries = 2;
        let error = client()
            .fetch(&spec, &request(), ten_seconds())
            .await
            .unwrap_err();
        assert!(
            matches!(error.kind(), FetchErrorKind::Transport(_)),
            "{name}: {error:?}"
        );
        assert!(!error.kind().is_retryable(), "{name}: {error:?}");
        assert_eq!(error.attempts(), 1, "{name}: {error:?}");
        if name != "redirect loop" {
            assert_eq!(connections.load(Ordering::SeqCst), 1, "{name}");
        }
    }
    // A connection closed before any response may heal: retried.
    let (base_url, _) = raw_server(Vec::new()).await;
    let mut spec = SourceSpec::new("closed", base_url);
    spec.retries = 1;
    let error = client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap_err();
    assert_eq!(error.attempts(), 2, "{error:?}");
}

/// Each attempt tells the source how long it has (deadline propagation): the earlier of the per-attempt
/// timeout and what is left of the caller's deadline, in `x-deadline-ms`.
#[tokio::test]
async fn each_attempt_tells_the_source_its_remaining_time() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let recorder = Arc::clone(&seen);
    let router = Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let recorder = Arc::clone(&recorder);
        async move {
            let millis: Option<u64> = headers
                .get(DEADLINE_HEADER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok());
            recorder.lock().unwrap().extend(millis);
            json_response(StatusCode::OK, "{}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut spec = SourceSpec::new("told", Url::parse(&format!("http://{address}")).unwrap());
    spec.timeout = Duration::from_secs(5);

    client()
        .fetch(&spec, &request(), Deadline::after(Duration::from_secs(2)))
        .await
        .unwrap();
    client()
        .fetch(&spec, &request(), ten_seconds())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        (1_500..=2_000).contains(&seen[0]),
        "the deadline binds: {seen:?}"
    );
    assert!(
        (4_500..=5_000).contains(&seen[1]),
        "the attempt timeout binds: {seen:?}"
    );
}

// ---- Circuit breakers, hedged requests, rate limits, User-Agent ----

fn breaker(min_calls: u32, cool_down_ms: u64, probes: u32) -> BreakerPolicy {
    BreakerPolicy {
        min_calls,
        failure_percent: 50,
        cool_down: Duration::from_millis(cool_down_ms),
        probes,
        ..BreakerPolicy::default()
    }
}

#[tokio::test]
async fn an_open_circuit_answers_at_once_and_closes_after_a_successful_probe() {
    let server = ScriptedServer::start(vec![
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Json(r#"{"ok": true}"#),
    ])
    .await;
    let client = client();
    let mut spec = server.spec(0);
    spec.breaker = Some(breaker(3, 300, 1));
    for _ in 0..3 {
        let error = client
            .fetch(&spec, &request(), ten_seconds())
            .await
            .expect_err("500");
        assert!(matches!(error.kind(), FetchErrorKind::HttpStatus { .. }));
    }
    let error = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect_err("open");
    let FetchErrorKind::CircuitOpen { retry_in } = error.kind() else {
        panic!("{error:?}");
    };
    assert!(*retry_in <= Duration::from_millis(300));
    assert_eq!(error.attempts(), 0, "nothing was sent");
    assert_eq!(server.requests(), 3);
    assert!(!error.kind().is_retryable());
    assert_eq!(client.circuits()[0].state, CircuitState::Open);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let fetched = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect("the probe succeeds");
    assert_eq!(fetched.attempts, 1);
    let circuit = &client.circuits()[0];
    assert_eq!(
        (
            circuit.source.as_str(),
            circuit.state,
            circuit.opened,
            circuit.transitions
        ),
        ("test", CircuitState::Closed, 1, 3)
    );
}

#[tokio::test]
async fn a_circuit_that_opens_mid_fetch_stops_the_retries() {
    let server = ScriptedServer::start(vec![Reply::Status(StatusCode::SERVICE_UNAVAILABLE)]).await;
    let client = client();
    let mut spec = server.spec(5);
    spec.breaker = Some(breaker(2, 60_000, 1));
    let error = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect_err("503, then open");
    assert!(
        matches!(error.kind(), FetchErrorKind::CircuitOpen { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.attempts(),
        2,
        "the third attempt was refused, not sent"
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn the_requests_fault_does_not_open_the_circuit() {
    let server = ScriptedServer::start(vec![Reply::Status(StatusCode::NOT_FOUND)]).await;
    let client = client();
    let mut spec = server.spec(0);
    spec.breaker = Some(breaker(2, 60_000, 1));
    for _ in 0..6 {
        let error = client
            .fetch(&spec, &request(), ten_seconds())
            .await
            .expect_err("404");
        assert!(matches!(error.kind(), FetchErrorKind::HttpStatus { .. }));
    }
    assert_eq!(client.circuits()[0].state, CircuitState::Closed);
}

#[tokio::test]
async fn a_hedge_wins_over_a_slow_first_request_and_the_loser_is_abandoned() {
    let server = ScriptedServer::start(vec![
        Reply::After {
            delay_ms: 5_000,
            json: r#"{"who": "slow"}"#,
        },
        Reply::Json(r#"{"who": "hedge"}"#),
    ])
    .await;
    let client = client();
    let mut spec = server.spec(0);
    let mut policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)));
    policy.budget_percent = 100;
    spec.hedge = Some(policy);
    let fetched = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect("the hedge answers");
    assert_eq!(fetched.body["who"], "hedge");
    assert_eq!((fetched.attempts, fetched.hedges), (2, 1));
    assert!(
        fetched.elapsed < Duration::from_secs(4),
        "{:?}",
        fetched.elapsed
    );
    let outcomes: Vec<(u32, bool, bool)> = fetched
        .attempt_log
        .iter()
        .map(|record| {
            (
                record.number,
                record.hedge,
                matches!(record.outcome, AttemptOutcome::Succeeded),
            )
        })
        .collect();
    assert_eq!(outcomes, vec![(1, true, true), (1, false, false)]);
    assert!(matches!(
        fetched.attempt_log[1].outcome,
        AttemptOutcome::Abandoned
    ));
}

#[tokio::test]
async fn a_fast_answer_sends_no_hedge_and_the_budget_caps_hedges() {
    let server = ScriptedServer::start(vec![Reply::After {
        delay_ms: 30,
        json: r#"{"ok": true}"#,
    }])
    .await;
    let client = client();
    let mut spec = server.spec(0);
    spec.hedge = Some(HedgePolicy::new(HedgeDelay::Fixed(Duration::from_secs(3))));
    let fetched = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect("ok");
    assert_eq!((fetched.attempts, fetched.hedges), (1, 0));

    // Every request is slower than the delay: only the budget (10%) limits the hedges.
    spec.hedge = Some(HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(
        1,
    ))));
    let mut hedges = 0;
    for _ in 0..30 {
        hedges += client
            .fetch(&spec, &request(), ten_seconds())
            .await
            .expect("ok")
            .hedges;
    }
    assert!((2..=3).contains(&hedges), "{hedges} hedges for 31 requests");
    assert_eq!(server.requests(), 31 + usize::try_from(hedges).unwrap());
}

#[tokio::test]
async fn a_percentile_delay_waits_for_enough_samples() {
    let server = ScriptedServer::start(vec![Reply::After {
        delay_ms: 5,
        json: r#"{"ok": true}"#,
    }])
    .await;
    let client = client();
    let mut spec = server.spec(0);
    let mut policy = HedgePolicy::new(HedgeDelay::Percentile(50));
    policy.budget_percent = 100;
    policy.min_samples = 5;
    spec.hedge = Some(policy);
    let mut hedges = Vec::new();
    for _ in 0..5 {
        hedges.push(
            client
                .fetch(&spec, &request(), ten_seconds())
                .await
                .expect("ok")
                .hedges,
        );
    }
    assert_eq!(hedges, vec![0; 5], "no delay is known before 5 samples");
}

#[tokio::test]
async fn a_rate_limit_waits_for_a_slot_and_refuses_one_past_the_deadline() {
    let server = ScriptedServer::start(vec![Reply::Json(r#"{"ok": true}"#)]).await;
    let client = client();
    let mut spec = server.spec(0);
    spec.rate_limit = Some(RateLimit {
        requests: 2,
        per: Duration::from_secs(60),
    });
    for _ in 0..2 {
        client
            .fetch(&spec, &request(), ten_seconds())
            .await
            .expect("a slot");
    }
    let error = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect_err("the next slot is 30 s away");
    assert!(
        matches!(error.kind(), FetchErrorKind::RateLimited { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("test") && error.kind().to_string().contains("2 per 1m"),
        "{}",
        error.kind()
    );
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn each_source_can_send_its_own_user_agent() {
    let server = ScriptedServer::start(vec![Reply::EchoUserAgent]).await;
    let client = client();
    let mut spec = server.spec(0);
    let fetched = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect("ok");
    assert_eq!(fetched.body["user_agent"], USER_AGENT_DEFAULT);
    assert!(USER_AGENT_DEFAULT.starts_with("tributary/"));
    spec.user_agent = Some("tributary-test/1 (mailto:ops@example.org)".to_owned());
    let fetched = client
        .fetch(&spec, &request(), ten_seconds())
        .await
        .expect("ok");
    assert_eq!(
        fetched.body["user_agent"],
        "tributary-test/1 (mailto:ops@example.org)"
    );
}

/// What a streamed POST's caller was handed, line by line.
fn collect_lines() -> (Arc<std::sync::Mutex<Vec<String>>>, impl Fn(&str) + Sync) {
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    (lines, move |line: &str| {
        sink.lock().expect("not poisoned").push(line.to_owned())
    })
}

#[tokio::test]
async fn a_streamed_post_sends_its_body_and_token_and_hands_over_each_line() {
    let router = Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|headers: axum::http::HeaderMap, body: String| async move {
            let authorization = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            format!("auth {authorization}\r\nbody {body}\ndata: [DONE]")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut spec = SourceSpec::new(
        "endpoint",
        Url::parse(&format!("http://{address}/v1")).unwrap(),
    );
    spec.bearer_token = Some(BearerToken::new("secret-key"));
    assert!(
        !format!("{spec:?}").contains("secret-key"),
        "the key is never logged"
    );
    let (lines, on_line) = collect_lines();
    let fetched = client()
        .stream_post(
            &spec,
            &SourceRequest::new("chat/completions"),
            &json!({"stream": true}),
            ten_seconds(),
            &on_line,
        )
        .await
        .unwrap();
    assert_eq!(*fetched.body, serde_json::Value::Null);
    assert_eq!(fetched.attempts, 1);
    assert_eq!(
        *lines.lock().unwrap(),
        [
            "auth Bearer secret-key",
            r#"body {"stream":true}"#,
            "data: [DONE]"
        ]
    );
}

/// A streamed POST to a server answering with `replies`: the server, the outcome, and the lines handed over.
async fn stream_from(
    replies: Vec<Reply>,
) -> (ScriptedServer, Result<Fetched, FetchError>, Vec<String>) {
    let server = ScriptedServer::start(replies).await;
    let (lines, on_line) = collect_lines();
    let outcome = client()
        .stream_post(
            &server.spec(2),
            &request(),
            &json!({}),
            ten_seconds(),
            &on_line,
        )
        .await;
    let lines = lines.lock().unwrap().clone();
    (server, outcome, lines)
}

#[tokio::test]
async fn a_streamed_post_is_retried_only_before_its_first_line() {
    let (_, outcome, lines) = stream_from(vec![
        Reply::Status(StatusCode::SERVICE_UNAVAILABLE),
        Reply::Lines(&["data: a", "data: b"]),
    ])
    .await;
    assert_eq!(outcome.unwrap().attempts, 2);
    assert_eq!(lines, ["data: a", "data: b"]);

    // A break after a line was handed over is final: another attempt would repeat the answer.
    let (server, outcome, lines) = stream_from(vec![
        Reply::LinesThenBreak(&["data: a"]),
        Reply::Lines(&["data: a", "data: b"]),
    ])
    .await;
    let error = outcome.unwrap_err();
    assert!(
        matches!(error.kind(), FetchErrorKind::Transport(_)),
        "{error:?}"
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(lines, ["data: a"]);
}

/// `call`: a source reached through the caller's own transport gets the same retries, timeouts, breaker and cache
/// as an HTTP one, by the failure's kind.
mod calls {
    use super::*;

    fn call_spec(retries: u32) -> SourceSpec {
        let mut spec = SourceSpec::new("tool", Url::parse("stdio:server").expect("a url"));
        spec.retries = retries;
        spec.timeout = Duration::from_millis(200);
        spec
    }

    fn client() -> SourceClient {
        SourceClient::new(ClientOptions::default().with_backoff(BackoffPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        }))
        .expect("a client")
    }

    fn failing(failure: CallFailure) -> FetchErrorKind {
        FetchErrorKind::Call {
            detail: "call the tool `t`: it broke".to_owned(),
            failure,
        }
    }

    #[tokio::test]
    async fn a_broken_call_is_retried_and_a_refused_one_is_not() {
        let client = client();
        let calls = AtomicUsize::new(0);
        let flaky = || {
            let attempt = calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if attempt == 0 {
                    Err(failing(CallFailure::Transport))
                } else {
                    Ok(json!({"ok": true}))
                }
            }) as futures::future::BoxFuture<'_, _>
        };
        let key = SourceRequest::new("t");
        let fetched = client
            .call(
                &call_spec(2),
                &key,
                Deadline::after(Duration::from_secs(5)),
                &flaky,
            )
            .await
            .expect("the retry answered");
        assert_eq!(fetched.attempts, 2);
        assert_eq!(*fetched.body, json!({"ok": true}));

        let refused_calls = AtomicUsize::new(0);
        let refused = || {
            refused_calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(failing(CallFailure::Refused)) })
                as futures::future::BoxFuture<'_, _>
        };
        let error = client
            .call(
                &call_spec(2),
                &key,
                Deadline::after(Duration::from_secs(5)),
                &refused,
            )
            .await
            .expect_err("refused");
        assert_eq!(
            refused_calls.load(Ordering::SeqCst),
            1,
            "a refused call is not sent again"
        );
        assert!(!error.kind().counts_against_source());
        assert_eq!(
            error.to_string(),
            "fetch from source `tool` after 1 attempt(s)"
        );
        assert_eq!(error.kind().to_string(), "call the tool `t`: it broke");
    }

    #[tokio::test]
    async fn a_hanging_call_is_cut_at_its_attempt_timeout_and_a_cached_answer_is_shared() {
        let client = client();
        let hang = || Box::pin(std::future::pending()) as futures::future::BoxFuture<'_, _>;
        let key = SourceRequest::new("t");
        let error = client
            .call(
                &call_spec(1),
                &key,
                Deadline::after(Duration::from_secs(5)),
                &hang,
            )
            .await
            .expect_err("timed out");
        assert!(
            matches!(error.kind(), FetchErrorKind::AttemptTimeout { .. }),
            "{error:?}"
        );
        assert_eq!(error.attempts(), 2);

        let mut cached = call_spec(0);
        cached.cache_ttl = Some(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let answer = || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(json!("one")) }) as futures::future::BoxFuture<'_, _>
        };
        let deadline = Deadline::after(Duration::from_secs(5));
        let first = client
            .call(&cached, &key, deadline, &answer)
            .await
            .expect("answered");
        let second = client
            .call(&cached, &key, deadline, &answer)
            .await
            .expect("answered");
        assert!(!first.cached && second.cached);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
