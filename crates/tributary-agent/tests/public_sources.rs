//! The public sources' kinds through the real agent, against a mock server on loopback that replays the APIs'
//! documented response shapes (`fixtures/public/`): the answers, and every edge case mapped to its status.
//!
//! The same agent against the live APIs is in `live.rs`, which runs only with `TRIBUTARY_LIVE=1`.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{ClientOptions, SourceClient};
use tributary::trace::Outcome;
use tributary_agent::infer::InferenceCost;
use tributary_agent::{
    Agent, AgentSettings, AnswerFailure, AnswerStatus, Question, Run, SourceFailure, SourceReport,
    SourceStatus, SourcesConfig,
};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/public")
        .join(name);
    std::fs::read(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()))
}

/// A JSON response with `status` and the fixture's body.
fn replay(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(fixture(name), "application/json")
}

/// The three public kinds, every one at `server`: Open-Meteo's forecast under `/forecast` and its geocoding
/// under `/geocoding` (two hosts in production), HN Algolia and Wikipedia at the root.
fn sources_file(server: &MockServer) -> String {
    let base = server.uri();
    format!(
        r#"
[[source]]
name = "weather"
kind = "open-meteo"
base_url = "{base}/forecast"
geocoding_url = "{base}/geocoding"
retries = 0

[[source]]
name = "news"
kind = "hn-algolia"
base_url = "{base}"
retries = 0

[[source]]
name = "wikipedia"
kind = "wikipedia"
base_url = "{base}"
retries = 0
"#
    )
}

fn agent(server: &MockServer, only: &[&str]) -> Agent {
    let mut sources = SourcesConfig::from_str_named(&sources_file(server), "public.toml")
        .expect("the sources file is valid")
        .sources;
    sources.retain(|source| only.contains(&source.name()));
    let settings = AgentSettings {
        inference_cost: InferenceCost::free(),
        deadline: Duration::from_secs(20),
        per_source_timeout: Duration::from_secs(10),
        ..AgentSettings::default()
    };
    let pool = CpuPool::new(PoolConfig::with_workers(NonZeroUsize::MIN)).expect("a pool");
    let client = SourceClient::new(ClientOptions::default()).expect("a client");
    Agent::new(client, Executor::from_pool(pool), sources, settings)
}

async fn ask(agent: &Agent, question: &str) -> Run {
    agent
        .ask(&Question::new(question).expect("a valid question"))
        .await
}

fn source<'a>(run: &'a Run, name: &str) -> &'a SourceReport {
    run.report
        .sources
        .iter()
        .find(|source| source.name == name)
        .unwrap_or_else(|| panic!("no source {name}: {:#?}", run.report))
}

/// Mounts Open-Meteo's two answers for Lyon.
async fn lyon(server: &MockServer, forecast: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/geocoding/v1/search"))
        .and(query_param("name", "Lyon"))
        .and(query_param("count", "1"))
        .and(query_param("language", "en"))
        .and(query_param("format", "json"))
        .respond_with(replay(200, "open-meteo-geocoding-lyon.json"))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/forecast/v1/forecast"))
        .and(query_param("latitude", "45.74846"))
        .and(query_param("longitude", "4.84671"))
        .and(query_param("timezone", "auto"))
        .and(query_param(
            "current",
            "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,weather_code,wind_speed_10m",
        ))
        .respond_with(forecast)
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_three_public_apis_answer_a_question_together() {
    let server = MockServer::start().await;
    lyon(&server, replay(200, "open-meteo-forecast-lyon.json")).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/search"))
        .and(query_param("query", "rain lyon gil python"))
        .and(query_param("tags", "story"))
        .and(query_param("hitsPerPage", "5"))
        .respond_with(replay(200, "hn-search-gil.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/w/rest.php/v1/search/page"))
        .and(query_param("q", "rain lyon gil python"))
        .and(query_param("limit", "1"))
        .respond_with(replay(200, "wikipedia-search-gil.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/rest_v1/page/summary/Global_interpreter_lock"))
        .respond_with(replay(200, "wikipedia-summary-gil.json"))
        .expect(1)
        .mount(&server)
        .await;

    let agent = agent(&server, &["weather", "news", "wikipedia"]);
    let run = ask(
        &agent,
        "Will it rain in Lyon, and what about the GIL in Python?",
    )
    .await;
    assert_eq!(run.report.status, AnswerStatus::Ok, "{:#?}", run.report);

    let weather = source(&run, "weather");
    assert_eq!(
        (weather.kind.as_str(), weather.topic.as_str()),
        ("open-meteo", "weather")
    );
    assert_eq!(weather.status, SourceStatus::Ok);
    assert_eq!(weather.attempts, 2, "geocoding, then the forecast");
    let news = source(&run, "news");
    assert_eq!(
        (news.kind.as_str(), news.topic.as_str()),
        ("hn-algolia", "news")
    );
    assert_eq!((news.status, news.attempts), (SourceStatus::Ok, 1));
    let wikipedia = source(&run, "wikipedia");
    assert_eq!(
        (wikipedia.kind.as_str(), wikipedia.topic.as_str()),
        ("wikipedia", "knowledge")
    );
    assert_eq!(
        (wikipedia.status, wikipedia.attempts),
        (SourceStatus::Ok, 2)
    );

    let answer = run.report.answer.as_deref().expect("an answer");
    assert!(
        answer.contains("Lyon, Auvergne-Rhône-Alpes, France: overcast, 12.3 °C"),
        "{answer}"
    );
    assert!(answer.contains("global interpreter lock"), "{answer}");

    // Both requests of a two-request kind are drawn on the source's lane, in order.
    let on_lane = |lane: &str| -> Vec<(String, Outcome)> {
        let mut spans = run.timeline.spans();
        spans.retain(|span| span.lane == lane);
        spans.sort_by_key(|span| span.start);
        spans
            .into_iter()
            .map(|span| (span.name, span.outcome))
            .collect()
    };
    assert_eq!(
        on_lane("source weather"),
        [
            ("GET /v1/search".to_owned(), Outcome::Ok),
            ("GET /v1/forecast".to_owned(), Outcome::Ok)
        ]
    );
    assert_eq!(
        on_lane("source wikipedia"),
        [
            ("GET /w/rest.php/v1/search/page".to_owned(), Outcome::Ok),
            (
                "GET /api/rest_v1/page/summary/Global_interpreter_lock".to_owned(),
                Outcome::Ok
            )
        ]
    );
}

#[tokio::test]
async fn nothing_found_anywhere_is_no_result_and_a_failed_answer_with_the_reasons() {
    let server = MockServer::start().await;
    Mock::given(path("/geocoding/v1/search"))
        .and(query_param("name", "Atlantis"))
        .respond_with(replay(200, "open-meteo-geocoding-none.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/forecast/v1/forecast"))
        .respond_with(replay(200, "open-meteo-forecast-lyon.json"))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/search"))
        .respond_with(replay(200, "hn-search-none.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/w/rest.php/v1/search/page"))
        .respond_with(replay(200, "wikipedia-search-none.json"))
        .expect(1)
        .mount(&server)
        .await;

    let agent = agent(&server, &["weather", "news", "wikipedia"]);
    let run = ask(&agent, "Is it sunny in Atlantis?").await;
    for (name, why) in [
        ("weather", "Open-Meteo knows no place named \"Atlantis\""),
        (
            "news",
            "Hacker News has no story matching \"sunny atlantis\"",
        ),
        (
            "wikipedia",
            "Wikipedia has no page matching \"sunny atlantis\"",
        ),
    ] {
        let report = source(&run, name);
        assert_eq!(report.status, SourceStatus::NoResult, "{report:#?}");
        assert_eq!(report.failure, Some(SourceFailure::NoResult));
        assert_eq!(report.error.as_deref(), Some(why));
        assert_eq!(report.attempts, 1, "{name}: no second request");
    }
    assert_eq!(run.report.status, AnswerStatus::Failed);
    assert_eq!(run.report.failure, Some(AnswerFailure::NothingFound));
    assert!(!run.report.degraded, "no source failed");
    let error = run.report.error.as_deref().expect("why");
    assert!(
        error.starts_with(
            "no source had anything for the question (weather: Open-Meteo knows no place"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_disambiguation_page_is_no_result_and_does_not_degrade_the_answer() {
    let server = MockServer::start().await;
    lyon(&server, replay(200, "open-meteo-forecast-lyon.json")).await;
    Mock::given(path("/w/rest.php/v1/search/page"))
        .respond_with(replay(200, "wikipedia-search-mercury.json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/rest_v1/page/summary/Mercury"))
        .respond_with(replay(200, "wikipedia-summary-disambiguation.json"))
        .expect(1)
        .mount(&server)
        .await;

    let agent = agent(&server, &["weather", "wikipedia"]);
    let run = ask(&agent, "Is it cloudy in Lyon: can you see Mercury tonight?").await;
    let wikipedia = source(&run, "wikipedia");
    assert_eq!(wikipedia.status, SourceStatus::NoResult);
    assert_eq!(
        wikipedia.error.as_deref(),
        Some("\"Mercury\" is ambiguous on Wikipedia (disambiguation page)")
    );
    assert_eq!(source(&run, "weather").status, SourceStatus::Ok);
    assert_eq!(run.report.status, AnswerStatus::Ok, "{:#?}", run.report);
    assert!(!run.report.degraded);
}

#[tokio::test]
async fn a_missing_page_is_no_result_and_its_title_is_one_encoded_path_segment() {
    let server = MockServer::start().await;
    Mock::given(path("/w/rest.php/v1/search/page"))
        .and(query_param("q", "ac dc"))
        .respond_with(replay(200, "wikipedia-search-acdc.json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/rest_v1/page/summary/AC%2FDC"))
        .respond_with(replay(404, "wikipedia-summary-404.json"))
        .expect(1)
        .mount(&server)
        .await;

    let agent = agent(&server, &["wikipedia"]);
    let run = ask(&agent, "What is AC/DC?").await;
    let wikipedia = source(&run, "wikipedia");
    assert_eq!(wikipedia.status, SourceStatus::NoResult, "{wikipedia:#?}");
    // A missing page is the answer "nothing here", not a failed request: no `http_status` kind.
    assert_eq!(
        (wikipedia.failure, wikipedia.http_status),
        (Some(SourceFailure::NoResult), None)
    );
    assert_eq!(
        wikipedia.error.as_deref(),
        Some("Wikipedia has no page \"AC/DC\" (HTTP 404)")
    );
    assert_eq!(wikipedia.attempts, 2, "a 404 is not retried");
}

#[tokio::test]
async fn missing_null_and_odd_fields_give_a_shorter_text() {
    let server = MockServer::start().await;
    lyon(&server, replay(200, "open-meteo-forecast-sparse.json")).await;
    let agent = agent(&server, &["weather"]);
    let run = ask(&agent, "Weather in Lyon?").await;
    let weather = source(&run, "weather");
    assert_eq!(weather.status, SourceStatus::Ok, "{weather:#?}");
    let answer = run.report.answer.as_deref().expect("an answer");
    assert!(
        answer.contains("Current weather in Lyon, Auvergne-Rhône-Alpes, France: slight rain."),
        "{answer}"
    );
}

#[tokio::test]
async fn an_api_error_is_a_failure_of_the_source() {
    let server = MockServer::start().await;
    lyon(&server, replay(400, "open-meteo-forecast-error.json")).await;
    let agent = agent(&server, &["weather"]);
    let run = ask(&agent, "Weather in Lyon?").await;
    let weather = source(&run, "weather");
    assert_eq!(weather.status, SourceStatus::Failed, "{weather:#?}");
    assert_eq!(
        (weather.failure, weather.http_status),
        (Some(SourceFailure::HttpStatus), Some(400))
    );
    let error = weather.error.as_deref().expect("why");
    assert!(error.contains("400"), "{error}");
    assert_eq!(run.report.status, AnswerStatus::Failed);
}

#[tokio::test]
async fn a_body_that_is_not_json_at_all_is_a_failure_not_a_panic() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/search"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>rate limited</html>", "text/html"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/w/rest.php/v1/search/page"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("[1, {\"pages\": 3}]", "application/json"),
        )
        .mount(&server)
        .await;
    let agent = agent(&server, &["news", "wikipedia"]);
    let run = ask(&agent, "What is new about Rust?").await;
    assert_eq!(source(&run, "news").status, SourceStatus::Failed);
    assert_eq!(source(&run, "news").failure, Some(SourceFailure::Malformed));
    assert_eq!(source(&run, "wikipedia").status, SourceStatus::NoResult);
}
