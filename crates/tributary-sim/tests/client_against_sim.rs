//! The HTTP source client against the real embedded simulated services, over loopback: each fault the simulator
//! can inject, and what the client is expected to do about it.
//!
//! `source/tests.rs` scripts hand-made servers; these tests use [`SimServer`] instead, so they also check that the
//! client and the simulator agree on what a fault looks like on the wire.
//!
//! Sockets are real, so time is real too (no paused clock). Assertions are about kinds, counts
//! ([`SimServer::requests`] sees every request that reached the server) and the order of events; a bound on time
//! is only ever a lower bound the code guarantees (a timer never fires early) or an ordering against a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tributary::group::Deadline;
use tributary::source::{
    AttemptOutcome, AttemptRecord, BackoffPolicy, ClientOptions, DEFAULT_MAX_BODY_BYTES,
    FetchError, FetchErrorKind, Fetched, RetryDecision, SourceClient, SourceRequest, SourceSpec,
};
use tributary_sim::{Fault, Latency, Service, ServiceBehavior, SimConfig, SimServer, cities};
use url::Url;

/// An overall deadline that never binds unless a test means it to.
const GENEROUS_DEADLINE: Duration = Duration::from_secs(30);
/// A per-attempt timeout short enough to keep the tests quick, long enough for a loopback answer.
const SHORT_TIMEOUT: Duration = Duration::from_millis(200);

async fn start_sim(config: SimConfig) -> SimServer {
    SimServer::start("127.0.0.1:0".parse().expect("valid address"), config)
        .await
        .expect("the simulated services start")
}

/// A source named `name` at the simulator's root; requests name the service path.
fn source(server: &SimServer, name: &str) -> SourceSpec {
    let base_url = Url::parse(&server.base_url()).expect("the simulator's base url parses");
    SourceSpec::new(name, base_url)
}

fn weather_source(server: &SimServer) -> SourceSpec {
    source(server, "weather")
}

fn weather_in(city: &str) -> SourceRequest {
    SourceRequest::new(Service::Weather.path()).with_query("city", city)
}

fn client() -> SourceClient {
    SourceClient::new(ClientOptions::default()).expect("the http client builds")
}

/// A client whose backoff is a few milliseconds, for tests that retry many times.
fn impatient_client() -> SourceClient {
    let mut options = ClientOptions::default();
    options.backoff = BackoffPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    };
    SourceClient::new(options).expect("the http client builds")
}

fn expect_failure(result: Result<Fetched, FetchError>, what: &str) -> FetchError {
    match result {
        Ok(fetched) => panic!("{what}: expected a failure, got {:?}", fetched.body),
        Err(error) => error,
    }
}

/// The HTTP status of a `HttpStatus` failure.
fn status_of(kind: &FetchErrorKind) -> Option<u16> {
    match kind {
        FetchErrorKind::HttpStatus { status } => Some(status.as_u16()),
        _ => None,
    }
}

/// What an attempt failed with and what the client decided next; `None` for a success.
fn failure_of(record: &AttemptRecord) -> Option<(&FetchErrorKind, RetryDecision)> {
    match &record.outcome {
        AttemptOutcome::Failed { error, next } => Some((error, *next)),
        _ => None,
    }
}

fn is_attempt_timeout(kind: &FetchErrorKind, expected: Duration) -> bool {
    matches!(kind, FetchErrorKind::AttemptTimeout { timeout } if *timeout == expected)
}

// ---- fault=hang: per-attempt timeout --------------------------------------------------------------------------

#[tokio::test]
async fn a_hang_is_cut_by_the_per_attempt_timeout() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.timeout = SHORT_TIMEOUT;
    spec.retries = 0;

    let request = weather_in("Lima").with_query("fault", "hang");
    let error = expect_failure(
        client()
            .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
            .await,
        "a hanging service",
    );

    assert!(is_attempt_timeout(error.kind(), SHORT_TIMEOUT), "{error:?}");
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(Service::Weather), 1);
    let record = &error.attempt_log()[0];
    assert!(record.ended - record.started >= SHORT_TIMEOUT, "{record:?}");
    assert_eq!(
        failure_of(record).map(|(_, next)| next),
        Some(RetryDecision::RetriesExhausted)
    );
}

#[tokio::test]
async fn a_hang_is_retried_and_every_attempt_is_logged_as_timed_out() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.timeout = SHORT_TIMEOUT;
    spec.retries = 2;

    let request = weather_in("Lima").with_query("fault", "hang");
    let error = expect_failure(
        client()
            .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
            .await,
        "a hanging service",
    );

    assert!(is_attempt_timeout(error.kind(), SHORT_TIMEOUT), "{error:?}");
    assert_eq!(error.attempts(), 3);
    assert_eq!(server.requests(Service::Weather), 3);
    let log = error.attempt_log();
    assert_eq!(
        log.iter().map(|record| record.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for (index, record) in log.iter().enumerate() {
        let (kind, next) = failure_of(record).expect("every attempt failed");
        assert!(is_attempt_timeout(kind, SHORT_TIMEOUT), "{record:?}");
        assert!(record.ended - record.started >= SHORT_TIMEOUT, "{record:?}");
        if index + 1 < log.len() {
            assert!(matches!(next, RetryDecision::Retried { .. }), "{record:?}");
            assert!(log[index + 1].started >= record.ended, "attempts overlap");
        } else {
            assert_eq!(next, RetryDecision::RetriesExhausted);
        }
    }
}

// ---- fault=error with a probability: retry, then success -------------------------------------------------------

/// The simulator has no "fail the first N requests" mode, only a probability, so this runs many calls.
///
/// Each request is faulted independently with probability 0.2, and a call makes up to 11 attempts. A call fails
/// only when all 11 are faulted: 0.2^11 ≈ 2.0e-8, so some of the 100 calls failing has probability ≤ 2.1e-6.
/// No call needing a retry at all has probability 0.8^100 ≈ 2.0e-10. (The fault draws are seeded and this
/// client is sequential, so a given build actually repeats one sequence; the figures say that the assertions do
/// not depend on a lucky seed.)
#[tokio::test]
async fn a_flaky_service_is_retried_until_it_answers() {
    const CALLS: usize = 100;
    let mut config = SimConfig::instant();
    *config.behavior_mut(Service::Weather) =
        ServiceBehavior::healthy(Latency::None).with_fault(Fault::Error, 0.2);
    let server = start_sim(config).await;
    let mut spec = weather_source(&server);
    spec.retries = 10;
    let client = impatient_client();

    let mut calls_that_retried = 0;
    let mut total_attempts = 0;
    for _ in 0..CALLS {
        let fetched = client
            .fetch(
                &spec,
                &weather_in("Lima"),
                Deadline::after(GENEROUS_DEADLINE),
            )
            .await
            .expect("eleven attempts are enough for a service that fails one time in five");
        assert!(!fetched.cached);
        assert!(fetched.attempts >= 1);
        assert_eq!(fetched.attempt_log.len(), fetched.attempts as usize);
        let (last, failed) = fetched
            .attempt_log
            .split_last()
            .expect("at least one attempt");
        assert!(
            matches!(last.outcome, AttemptOutcome::Succeeded),
            "{last:?}"
        );
        for record in failed {
            let (kind, next) = failure_of(record).expect("only the last attempt succeeded");
            assert_eq!(status_of(kind), Some(500), "{record:?}");
            assert!(matches!(next, RetryDecision::Retried { .. }), "{record:?}");
        }
        assert_eq!(fetched.body["city"]["name"], "Lima");
        if fetched.attempts > 1 {
            calls_that_retried += 1;
        }
        total_attempts += u64::from(fetched.attempts);
    }
    assert!(calls_that_retried >= 1, "no call needed a retry");
    assert_eq!(server.requests(Service::Weather), total_attempts);
}

// ---- fault=unavailable: Retry-After ----------------------------------------------------------------------------

#[tokio::test]
async fn retry_after_is_honoured_between_attempts() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.retries = 1;

    let request = weather_in("Lima")
        .with_query("fault", "unavailable")
        .with_query("retry_after", "1");
    let error = expect_failure(
        client()
            .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
            .await,
        "an unavailable service",
    );

    assert_eq!(status_of(error.kind()), Some(503), "{error:?}");
    assert_eq!(error.attempts(), 2);
    assert_eq!(server.requests(Service::Weather), 2);
    let [first, second] = error.attempt_log() else {
        panic!("two attempts: {:?}", error.attempt_log());
    };
    let (first_kind, first_next) = failure_of(first).expect("503");
    assert_eq!(status_of(first_kind), Some(503));
    assert!(
        matches!(first_next, RetryDecision::Retried { delay } if delay >= Duration::from_secs(1)),
        "{first_next:?}"
    );
    assert!(
        second.started - first.ended >= Duration::from_secs(1),
        "slept {:?} between the attempts",
        second.started - first.ended
    );
    assert_eq!(
        failure_of(second).map(|(_, next)| next),
        Some(RetryDecision::RetriesExhausted)
    );
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_stops_at_once() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.retries = 2;

    let request = weather_in("Lima")
        .with_query("fault", "unavailable")
        .with_query("retry_after", "60");
    let deadline = Deadline::after(Duration::from_secs(10));
    let error = expect_failure(
        client().fetch(&spec, &request, deadline).await,
        "an unavailable service",
    );
    let returned = Instant::now();

    assert!(
        returned < deadline.instant().expect("a deadline"),
        "did not wait for the deadline"
    );
    assert_eq!(status_of(error.kind()), Some(503), "{error:?}");
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(Service::Weather), 1, "no second request");
    let (_, next) = failure_of(&error.attempt_log()[0]).expect("503");
    assert!(
        matches!(
            next,
            RetryDecision::DeadlineTooClose { delay, remaining }
                if delay >= Duration::from_secs(60) && remaining < Duration::from_secs(10)
        ),
        "{next:?}"
    );
}

// ---- 4xx: not retried ------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_city_is_a_404_and_is_not_retried() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.retries = 2;

    let error = expect_failure(
        client()
            .fetch(
                &spec,
                &weather_in("Atlantis"),
                Deadline::after(GENEROUS_DEADLINE),
            )
            .await,
        "an unknown city",
    );

    assert_eq!(status_of(error.kind()), Some(404), "{error:?}");
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(Service::Weather), 1);
    assert_eq!(
        failure_of(&error.attempt_log()[0]).map(|(_, next)| next),
        Some(RetryDecision::NotRetryable)
    );
}

// ---- fault=hang: the overall deadline --------------------------------------------------------------------------

#[tokio::test]
async fn a_hang_is_cut_by_the_overall_deadline_when_it_is_sooner() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.timeout = Duration::from_secs(20);
    spec.retries = 2;

    let request = weather_in("Lima").with_query("fault", "hang");
    let started = Instant::now();
    let deadline = Deadline::after(Duration::from_millis(300));
    let error = expect_failure(
        client().fetch(&spec, &request, deadline).await,
        "a hanging service",
    );
    let returned = Instant::now();

    assert!(error.is_deadline(), "{error:?}");
    assert!(
        returned >= deadline.instant().expect("a deadline"),
        "gave up before the deadline"
    );
    assert!(
        returned < started + spec.timeout,
        "waited for the per-attempt timeout"
    );
    assert_eq!(error.attempts(), 1, "an expired deadline is not retried");
    assert_eq!(server.requests(Service::Weather), 1);
    assert_eq!(
        failure_of(&error.attempt_log()[0]).map(|(_, next)| next),
        Some(RetryDecision::NotRetryable)
    );
}

// ---- fault=slow-body -------------------------------------------------------------------------------------------

/// A news search with no match has a short body (about 60 bytes), which the simulator drips over 0.7 s or more
/// (8 bytes per 100 ms): long enough to be cut by a short timeout, short enough to read whole under a long one.
fn news_with_no_match_dripping() -> SourceRequest {
    SourceRequest::new(Service::News.path())
        .with_query("q", "xylophonequagmire")
        .with_query("fault", "slow-body")
}

#[tokio::test]
async fn a_dripping_body_is_cut_by_the_per_attempt_timeout() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = source(&server, "news");
    spec.timeout = SHORT_TIMEOUT;
    spec.retries = 0;

    let error = expect_failure(
        client()
            .fetch(
                &spec,
                &news_with_no_match_dripping(),
                Deadline::after(GENEROUS_DEADLINE),
            )
            .await,
        "a dripping body",
    );
    assert!(is_attempt_timeout(error.kind(), SHORT_TIMEOUT), "{error:?}");
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(Service::News), 1);

    // The same drip, with time to finish: it is a complete answer, just slower than the timeout above.
    spec.timeout = Duration::from_secs(20);
    let fetched = client()
        .fetch(
            &spec,
            &news_with_no_match_dripping(),
            Deadline::after(GENEROUS_DEADLINE),
        )
        .await
        .expect("the whole body arrives in the end");
    assert_eq!(fetched.body["total"], 0, "{}", fetched.body);
    let record = &fetched.attempt_log[0];
    assert!(record.ended - record.started > SHORT_TIMEOUT, "{record:?}");
}

// ---- fault=huge ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_body_is_refused_and_not_retried() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.retries = 2;
    assert_eq!(spec.max_body_bytes, DEFAULT_MAX_BODY_BYTES);

    let request = weather_in("Lima").with_query("fault", "huge");
    let error = expect_failure(
        client()
            .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
            .await,
        "a 24 MiB body",
    );

    assert!(
        matches!(
            error.kind(),
            FetchErrorKind::BodyTooLarge { limit_bytes } if *limit_bytes == DEFAULT_MAX_BODY_BYTES
        ),
        "{error:?}"
    );
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(Service::Weather), 1);
}

// ---- fault=malformed -------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_reported_with_its_position_and_not_retried() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.retries = 2;

    let request = weather_in("Lima").with_query("fault", "malformed");
    let error = expect_failure(
        client()
            .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
            .await,
        "a truncated body",
    );

    let FetchErrorKind::MalformedJson {
        detail,
        line,
        column,
        ..
    } = error.kind()
    else {
        panic!("expected malformed json: {error:?}");
    };
    assert!(
        detail.contains("EOF"),
        "a truncated body ends early: {detail}"
    );
    // The simulator writes its JSON on one line, so the error is on line 1, past the opening brace.
    assert_eq!(*line, 1);
    assert!(*column > 1, "column {column}");
    assert_eq!(error.attempts(), 1);
    assert_eq!(server.requests(Service::Weather), 1);
}

// ---- the cache -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_identical_fetch_is_a_cache_hit() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let client = client();

    let first = client
        .fetch(
            &spec,
            &weather_in("Lima").with_query("latency_ms", "0"),
            Deadline::after(GENEROUS_DEADLINE),
        )
        .await
        .expect("weather for Lima");
    assert!(!first.cached);
    assert_eq!(first.attempts, 1);
    assert_eq!(server.requests(Service::Weather), 1);

    // The same request with its query in another order is the same cache entry.
    let same_request = SourceRequest::new(Service::Weather.path())
        .with_query("latency_ms", "0")
        .with_query("city", "Lima");
    let second = client
        .fetch(&spec, &same_request, Deadline::after(GENEROUS_DEADLINE))
        .await
        .expect("weather for Lima, again");
    assert!(second.cached);
    assert_eq!(second.attempts, 0);
    assert!(second.attempt_log.is_empty());
    assert!(Arc::ptr_eq(&first.body, &second.body));
    assert_eq!(server.requests(Service::Weather), 1, "no upstream request");
}

#[tokio::test]
async fn failures_are_not_cached() {
    let server = start_sim(SimConfig::instant()).await;
    let mut spec = weather_source(&server);
    spec.cache_ttl = Some(Duration::from_secs(60));
    spec.retries = 0;
    let client = client();
    let failing = weather_in("Lima").with_query("fault", "error");

    for expected_requests in 1..=2 {
        let error = expect_failure(
            client
                .fetch(&spec, &failing, Deadline::after(GENEROUS_DEADLINE))
                .await,
            "an injected error",
        );
        assert_eq!(status_of(error.kind()), Some(500), "{error:?}");
        assert_eq!(
            error.attempts(),
            1,
            "sent upstream, not served from the cache"
        );
        assert_eq!(server.requests(Service::Weather), expected_requests);
    }
}

/// The same request failing, then succeeding: only the success is cached.
///
/// Each request fails with probability 0.5 and there are no retries. A city's first call fails with probability
/// 0.5, so no city among 30 showing a failure before its success has probability 0.5^30 ≈ 9.3e-10; a city not
/// succeeding within 40 calls has probability 0.5^40, under 3e-11 for all 30 together.
#[tokio::test]
async fn after_failures_the_first_success_is_cached() {
    const CITIES: usize = 30;
    const CALLS_PER_CITY: usize = 40;
    let mut config = SimConfig::instant();
    *config.behavior_mut(Service::Weather) =
        ServiceBehavior::healthy(Latency::None).with_fault(Fault::Error, 0.5);
    let server = start_sim(config).await;
    let mut spec = weather_source(&server);
    spec.cache_ttl = Some(Duration::from_secs(60));
    spec.retries = 0;
    let client = client();

    let mut cities_that_failed_first = 0;
    for city in cities().iter().take(CITIES) {
        let request = weather_in(city.name);
        let mut failures = 0;
        let success = loop {
            assert!(failures < CALLS_PER_CITY, "{} never answered", city.name);
            let requests_before = server.requests(Service::Weather);
            let result = client
                .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
                .await;
            assert_eq!(
                server.requests(Service::Weather),
                requests_before + 1,
                "every call until the first success goes upstream"
            );
            match result {
                Ok(fetched) => break fetched,
                Err(error) => {
                    assert_eq!(status_of(error.kind()), Some(500), "{error:?}");
                    failures += 1;
                }
            }
        };
        assert!(!success.cached);
        if failures > 0 {
            cities_that_failed_first += 1;
        }

        let requests_before = server.requests(Service::Weather);
        let again = client
            .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
            .await
            .expect("the cached success");
        assert!(again.cached);
        assert!(Arc::ptr_eq(&again.body, &success.body));
        assert_eq!(server.requests(Service::Weather), requests_before);
    }
    assert!(
        cities_that_failed_first >= 1,
        "no request failed before succeeding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_callers_share_one_upstream_request() {
    const CALLERS: usize = 50;
    let mut config = SimConfig::instant();
    // Long enough that every caller asks while the first request is still in flight.
    config.behavior_mut(Service::Weather).latency = Latency::Fixed(Duration::from_millis(300));
    let server = start_sim(config).await;
    let mut spec = weather_source(&server);
    spec.cache_ttl = Some(Duration::from_secs(60));
    let spec = Arc::new(spec);
    let client = client();

    let deadline = Deadline::after(GENEROUS_DEADLINE);
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let client = client.clone();
        let spec = Arc::clone(&spec);
        callers.spawn(async move { client.fetch(&spec, &weather_in("Lima"), deadline).await });
    }
    let answers: Vec<Fetched> = callers
        .join_all()
        .await
        .into_iter()
        .map(|result| result.expect("every caller gets the weather"))
        .collect();

    assert_eq!(server.requests(Service::Weather), 1);
    let (fetchers, waiters): (Vec<&Fetched>, Vec<&Fetched>) =
        answers.iter().partition(|fetched| !fetched.cached);
    assert_eq!(fetchers.len(), 1, "one caller sent the request");
    assert_eq!(fetchers[0].attempts, 1);
    assert_eq!(waiters.len(), CALLERS - 1);
    for waiter in &waiters {
        assert_eq!(waiter.attempts, 0);
        assert!(Arc::ptr_eq(&waiter.body, &fetchers[0].body));
    }
}

#[tokio::test]
async fn different_sources_never_share_cache_entries() {
    let server = start_sim(SimConfig::instant()).await;
    let cached = |mut spec: SourceSpec| {
        spec.cache_ttl = Some(Duration::from_secs(60));
        spec
    };
    let weather = cached(weather_source(&server));
    // The same service under another name: a separate source, so a separate cache namespace.
    let weather_mirror = cached(source(&server, "weather-mirror"));
    let news = cached(source(&server, "news"));
    let lima_weather = weather_in("Lima");
    let lima_news = SourceRequest::new(Service::News.path()).with_query("q", "Lima");
    let client = client();
    let fetch = |spec: &SourceSpec, request: &SourceRequest| {
        let (client, spec, request) = (client.clone(), spec.clone(), request.clone());
        async move {
            client
                .fetch(&spec, &request, Deadline::after(GENEROUS_DEADLINE))
                .await
                .expect("a healthy service answers")
        }
    };

    let from_weather = fetch(&weather, &lima_weather).await;
    let from_mirror = fetch(&weather_mirror, &lima_weather).await;
    let from_news = fetch(&news, &lima_news).await;
    assert!(!from_weather.cached && !from_mirror.cached && !from_news.cached);
    assert_eq!(server.requests(Service::Weather), 2);
    assert_eq!(server.requests(Service::News), 1);
    assert_eq!(
        from_weather.body, from_mirror.body,
        "same service, same answer"
    );
    assert!(!Arc::ptr_eq(&from_weather.body, &from_mirror.body));
    assert_ne!(from_weather.body, from_news.body);

    // Each source now answers from its own entry.
    for (spec, request, first) in [
        (&weather, &lima_weather, &from_weather),
        (&weather_mirror, &lima_weather, &from_mirror),
        (&news, &lima_news, &from_news),
    ] {
        let again = fetch(spec, request).await;
        assert!(again.cached, "{}", spec.name);
        assert!(Arc::ptr_eq(&again.body, &first.body), "{}", spec.name);
    }
    assert_eq!(server.requests(Service::Weather), 2);
    assert_eq!(server.requests(Service::News), 1);
}
