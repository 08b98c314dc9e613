//! End-to-end tests: a real server on `127.0.0.1:0`, a real HTTP client.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::*;

async fn start(config: SimConfig) -> SimServer {
    SimServer::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .expect("bind an ephemeral loopback port")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds")
}

async fn get(url: &str) -> reqwest::Response {
    client()
        .get(url)
        .send()
        .await
        .expect("the simulated server answers")
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    let response = get(url).await;
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

fn assert_error_body(body: &Value, status: u16) {
    assert_eq!(body["error"]["status"], status, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn weather_answers_with_conditions_forecast_and_summary() {
    let server = start(SimConfig::instant()).await;
    let (status, body) = get_json(&format!(
        "{}?city=sao%20paulo",
        server.url(Service::Weather)
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["city"]["name"], "São Paulo");
    assert_eq!(body["city"]["country"], "Brazil");
    assert!(body["city"]["latitude"].is_f64());
    for field in [
        "temperature_c",
        "feels_like_c",
        "wind_kph",
        "precipitation_mm",
    ] {
        assert!(body["current"][field].is_f64(), "{field} in {body}");
    }
    assert!(body["current"]["condition"].is_string() && body["current"]["humidity_pct"].is_u64());
    let forecast = body["forecast"].as_array().expect("a forecast array");
    assert_eq!(forecast.len(), 3);
    assert_eq!(forecast[0]["days_ahead"], 1);
    assert!(forecast[0]["high_c"].as_f64() >= forecast[0]["low_c"].as_f64());
    let summary = body["summary"].as_str().expect("a summary");
    assert!(
        summary.contains("São Paulo") && summary.ends_with('.'),
        "{summary}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_city_is_a_404_and_missing_city_a_400_with_json_bodies() {
    let server = start(SimConfig::instant()).await;
    let (status, body) = get_json(&format!("{}?city=Atlantis", server.url(Service::Weather))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body, 404);
    assert_eq!(body["error"]["code"], "unknown_city");
    for url in [
        server.url(Service::Weather),
        format!("{}?city=", server.url(Service::Weather)),
    ] {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert_error_body(&body, 400);
    }
    let (status, body) = get_json(&format!("{}/nowhere", server.base_url())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body, 404);
}

#[tokio::test]
async fn same_seed_same_answers_across_requests_and_servers() {
    let first = start(SimConfig::instant()).await;
    let second = start(SimConfig::instant()).await;
    let other_seed = start(SimConfig {
        seed: 7,
        ..SimConfig::instant()
    })
    .await;
    let requests = [
        (Service::Weather, "?city=Oslo"),
        (Service::News, "?q=heatwave+records"),
        (Service::KnowledgeBase, "?q=semaphore+permits"),
    ];
    for (service, query) in requests {
        let body = |server: &SimServer| {
            let url = format!("{}{query}", server.url(service));
            async move { get(&url).await.bytes().await.expect("a body") }
        };
        let reference = body(&first).await;
        assert_eq!(reference, body(&first).await, "{service}");
        assert_eq!(reference, body(&second).await, "{service}");
        if service != Service::KnowledgeBase {
            // The knowledge base is written by hand, not generated: it does not depend on the seed.
            assert_ne!(reference, body(&other_seed).await, "{service}");
        }
    }
}

#[tokio::test]
async fn health_and_index_describe_the_server() {
    let mut config = SimConfig::default();
    config.news = config.news.with_fault(Fault::Hang, 0.25);
    let server = start(config).await;
    let (status, body) = get_json(&format!("{}/health", server.base_url())).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = get_json(&format!("{}/", server.base_url())).await;
    assert_eq!(status, StatusCode::OK);
    let services = body["services"].as_array().expect("services");
    let names: Vec<&str> = services
        .iter()
        .filter_map(|service| service["name"].as_str())
        .collect();
    assert_eq!(names, ["weather", "news", "kb"]);
    assert_eq!(services[1]["fault"], "hang");
    assert_eq!(services[1]["fault_probability"], 0.25);
    assert_eq!(services[0]["latency"]["kind"], "log-normal");
    assert_eq!(
        body["fault_kinds"].as_array().map(Vec::len),
        Some(Fault::NAMES.len())
    );
}

fn weather_url(server: &SimServer, extra: &str) -> String {
    format!("{}?city=Lima&{extra}", server.url(Service::Weather))
}

#[tokio::test]
async fn fault_error_is_a_500_with_a_json_body() {
    let server = start(SimConfig::instant()).await;
    let (status, body) = get_json(&weather_url(&server, "fault=error")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_error_body(&body, 500);
}

#[tokio::test]
async fn fault_unavailable_is_a_503_with_retry_after() {
    let server = start(SimConfig::instant()).await;
    let response = get(&weather_url(&server, "fault=unavailable&retry_after=3")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("3")
    );
    let mut config = SimConfig::instant();
    config.weather.fault = Some(Fault::Unavailable {
        retry_after: Duration::from_millis(1500),
    });
    let configured = start(config).await;
    let response = get(&weather_url(&configured, "")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("2")
    );
    let body: Value = response.json().await.expect("a JSON body");
    assert_error_body(&body, 503);
}

#[tokio::test]
async fn shutdown_answers_a_request_whose_latency_ends_soon_and_refuses_a_long_one() {
    let server = start(SimConfig::instant()).await;
    let soon = tokio::spawn(client().get(weather_url(&server, "latency_ms=400")).send());
    let long = tokio::spawn(
        client()
            .get(weather_url(&server, "latency_ms=60000"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("shutdown drains within its grace");
    let status = |response: reqwest::Result<reqwest::Response>| {
        response.expect("an answer, not a cut connection").status()
    };
    assert_eq!(status(soon.await.expect("no panic")), StatusCode::OK);
    assert_eq!(
        status(long.await.expect("no panic")),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn fault_hang_never_answers_until_shutdown() {
    let server = start(SimConfig::instant()).await;
    let hanging = tokio::spawn(client().get(weather_url(&server, "fault=hang")).send());
    // A healthy request sent after the hanging one completes while the hanging one is still pending.
    let (status, _) = get_json(&weather_url(&server, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!hanging.is_finished(), "the hanging request got an answer");
    let timed_out = client()
        .get(weather_url(&server, "fault=hang"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(timed_out.is_err_and(|error| error.is_timeout()));
    // Shutting down ends the hang: the request finishes (with a 503 or a closed connection) instead of waiting.
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("shutdown ends hanging handlers");
    let outcome = tokio::time::timeout(Duration::from_secs(30), hanging)
        .await
        .expect("the hang ended");
    let outcome = outcome.expect("the request task did not panic");
    assert!(
        outcome.is_err()
            || outcome.is_ok_and(|response| response.status() == StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn fault_slow_body_sends_headers_then_drips() {
    let server = start(SimConfig::instant()).await;
    let mut response = get(&weather_url(&server, "fault=slow-body")).await;
    assert_eq!(response.status(), StatusCode::OK, "headers arrive at once");
    let first = response
        .chunk()
        .await
        .expect("the first bytes arrive")
        .expect("some bytes");
    assert!(first.starts_with(b"{"), "{first:?}");
    let rest = tokio::time::timeout(Duration::from_millis(500), response.bytes()).await;
    assert!(rest.is_err(), "the whole body arrived within 500 ms");
}

#[tokio::test]
async fn fault_malformed_is_a_200_that_does_not_parse() {
    let server = start(SimConfig::instant()).await;
    let response = get(&weather_url(&server, "fault=malformed")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/json")
    );
    let body = response.bytes().await.expect("a body");
    assert!(!body.is_empty());
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "{body:?}");
}

#[tokio::test]
async fn fault_huge_streams_more_than_16_mib() {
    let server = start(SimConfig::instant()).await;
    let mut response = get(&weather_url(&server, "fault=huge")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .content_length()
            .is_some_and(|length| length > 16 * 1024 * 1024),
        "{:?}",
        response.headers()
    );
    let mut received = 0usize;
    while let Some(chunk) = response.chunk().await.expect("the stream continues") {
        received += chunk.len();
    }
    assert!(received > 16 * 1024 * 1024, "{received} bytes");
}

#[tokio::test]
async fn request_overrides_beat_the_start_up_configuration() {
    let mut config = SimConfig::instant();
    config.weather = ServiceBehavior::healthy(Latency::None).with_fault(Fault::Error, 1.0);
    let server = start(config).await;
    assert_eq!(
        get(&weather_url(&server, "")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        get(&weather_url(&server, "fault=none")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&weather_url(&server, "fault=malformed")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&weather_url(&server, "fault=unavailable"))
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, body) = get_json(&weather_url(&server, "fault=sideways")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_body(&body, 400);
}

#[tokio::test]
async fn latency_override_delays_the_answer() {
    let server = start(SimConfig::instant()).await;
    let started = Instant::now();
    assert_eq!(
        get(&weather_url(&server, "latency_ms=250")).await.status(),
        StatusCode::OK
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // A configured fixed latency applies to every request, faulty ones included.
    let mut config = SimConfig::instant();
    config.weather.latency = Latency::Fixed(Duration::from_millis(200));
    let slow = start(config).await;
    let started = Instant::now();
    assert_eq!(
        get(&weather_url(&slow, "fault=error")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_are_counted_per_service() {
    let server = start(SimConfig::instant()).await;
    for service in Service::ALL {
        assert_eq!(server.requests(service), 0);
    }
    get(&weather_url(&server, "")).await;
    get(&weather_url(&server, "fault=error")).await;
    get(&server.url(Service::Weather)).await; // a 400 still reached the service
    get(&format!("{}/health", server.base_url())).await;
    assert_eq!(server.requests(Service::Weather), 3);
    assert_eq!(server.requests(Service::News), 0);
}

#[tokio::test]
async fn fault_probability_is_roughly_honoured() {
    let mut config = SimConfig::instant();
    config.weather = config.weather.with_fault(Fault::Error, 0.3);
    let server = start(config).await;
    let client = client();
    let mut failures = 0;
    for _ in 0..200 {
        let response = client
            .get(weather_url(&server, ""))
            .send()
            .await
            .expect("an answer");
        if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
        }
    }
    assert!(
        (30..=100).contains(&failures),
        "{failures} of 200 failed at p = 0.3"
    );
}

#[tokio::test]
async fn binding_a_taken_port_names_the_address() {
    let server = start(SimConfig::instant()).await;
    let error = SimServer::start(server.local_addr(), SimConfig::instant())
        .await
        .expect_err("the port is taken");
    assert!(
        error.to_string().contains(&server.local_addr().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn news_ranks_pages_and_repeats_itself() {
    let server = start(SimConfig::instant()).await;
    let url = format!("{}?q=metro%20rail%20commuters", server.url(Service::News));
    let (status, first) = get_json(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (first["page"].as_u64(), first["per_page"].as_u64()),
        (Some(1), Some(10))
    );
    let total = first["total"].as_u64().expect("a total");
    assert!(total > 10, "{total}");
    let articles = first["articles"].as_array().expect("articles");
    assert_eq!(articles.len(), 10);
    for article in articles {
        for field in [
            "id",
            "title",
            "summary",
            "body",
            "published_at",
            "outlet",
            "city",
            "topic",
        ] {
            assert!(article[field].is_string(), "{field} in {article}");
        }
        assert!(
            article["score"].as_f64().is_some_and(|score| score > 0.0),
            "{article}"
        );
    }
    assert_eq!(articles[0]["topic"], "transport", "{}", articles[0]);
    let (_, again) = get_json(&url).await;
    assert_eq!(first, again);
    let (_, second_page) = get_json(&format!("{url}&page=2")).await;
    assert_eq!(second_page["total"], total);
    assert_ne!(second_page["articles"][0]["id"], articles[0]["id"]);
    let (status, body) = get_json(&server.url(Service::News)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_body(&body, 400);
    assert_eq!(server.requests(Service::News), 4);
}

#[tokio::test]
async fn kb_finds_the_gil_article_first_with_a_bm25_score() {
    let server = start(SimConfig::instant()).await;
    let url = format!(
        "{}?q=Why%20does%20the%20GIL%20matter%3F",
        server.url(Service::KnowledgeBase)
    );
    let (status, body) = get_json(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["query"], "Why does the GIL matter?");
    let results = body["results"].as_array().expect("results");
    assert!(!results.is_empty() && results.len() <= 5, "{body}");
    assert!(body["total"].as_u64() >= Some(results.len() as u64));
    assert_eq!(results[0]["id"], "gil", "{body}");
    assert!(
        results[0]["title"]
            .as_str()
            .is_some_and(|title| title.contains("GIL"))
    );
    assert!(
        results[0]["text"]
            .as_str()
            .is_some_and(|text| text.split_whitespace().count() > 100)
    );
    assert!(
        results[0]["snippet"]
            .as_str()
            .is_some_and(|snippet| snippet.contains("[GIL]")),
        "{body}"
    );
    assert!(
        results[0]["score"]
            .as_f64()
            .is_some_and(|score| score > 0.0)
    );
    let (_, limited) = get_json(&format!("{url}&limit=2")).await;
    assert_eq!(limited["results"].as_array().map(Vec::len), Some(2));
    let (status, body) = get_json(&format!("{}?q=", server.url(Service::KnowledgeBase))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_body(&body, 400);
}

#[tokio::test]
async fn shutdown_cuts_a_dripping_body_instead_of_ending_it_cleanly() {
    let server = start(SimConfig::instant()).await;
    let response = get(&weather_url(&server, "fault=slow-body")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reading = tokio::spawn(response.bytes());
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("shutdown ends dripping responses");
    let outcome = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the body ended")
        .expect("the reading task did not panic");
    assert!(
        outcome.is_err(),
        "a cut body must not look complete: {outcome:?}"
    );
}
