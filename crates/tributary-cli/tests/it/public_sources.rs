//! `tributary ask --json` with a sources file of the public kinds, pointed at a mock server on loopback that
//! replays the APIs' documented shapes (the agent's fixtures, `tributary-agent/tests/fixtures/public/`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{code, json_lines, stderr, tributary};

fn replay(status: u16, name: &str) -> ResponseTemplate {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tributary-agent/tests/fixtures/public")
        .join(name);
    let body =
        std::fs::read(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

/// A sources file of the three public kinds at `server`, in `directory`.
fn sources_file(directory: &Path, server: &MockServer) -> PathBuf {
    let base = server.uri();
    let file = directory.join("public.toml");
    std::fs::write(
        &file,
        format!(
            r#"[[source]]
name = "weather"
kind = "open-meteo"
base_url = "{base}/forecast"
geocoding_url = "{base}/geocoding"
rate_limit = "600/min"

[[source]]
name = "news"
kind = "hn-algolia"
base_url = "{base}"

[[source]]
name = "wikipedia"
kind = "wikipedia"
base_url = "{base}"
user_agent = "tributary-tests/1 (+https://example.invalid/tributary)"
"#
        ),
    )
    .expect("write the sources file");
    file
}

/// Runs `tributary ask --json` on `question` with `config`, off the runtime that serves the mock.
async fn ask_json(config: PathBuf, question: &'static str) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        tributary()
            .args(["ask", "--json", "--inference-cost", "20ms", "--config"])
            .arg(&config)
            .arg(question)
            .output()
            .expect("run tributary ask")
    })
    .await
    .expect("the command ran")
}

fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|source| source["name"] == name))
        .unwrap_or_else(|| panic!("no source {name}: {report:#}"))
}

#[tokio::test]
async fn ask_answers_from_the_public_kinds_of_a_sources_file() {
    let server = MockServer::start().await;
    Mock::given(path("/geocoding/v1/search"))
        .and(query_param("name", "Lyon"))
        .respond_with(replay(200, "open-meteo-geocoding-lyon.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/forecast/v1/forecast"))
        .and(query_param("latitude", "45.74846"))
        .respond_with(replay(200, "open-meteo-forecast-lyon.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/search"))
        .and(query_param("tags", "story"))
        .respond_with(replay(200, "hn-search-gil.json"))
        .mount(&server)
        .await;
    Mock::given(path("/w/rest.php/v1/search/page"))
        .respond_with(replay(200, "wikipedia-search-mercury.json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/rest_v1/page/summary/Mercury"))
        .respond_with(replay(200, "wikipedia-summary-disambiguation.json"))
        .mount(&server)
        .await;

    let directory = tempfile::tempdir().expect("a temp dir");
    let output = ask_json(
        sources_file(directory.path(), &server),
        "Will it rain in Lyon, and can I see Mercury tonight?",
    )
    .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reports = json_lines(&output);
    let report = &reports[0];
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(report["degraded"], false);
    let weather = source(report, "weather");
    assert_eq!(
        (
            &weather["kind"],
            &weather["topic"],
            &weather["status"],
            &weather["attempts"]
        ),
        (
            &"open-meteo".into(),
            &"weather".into(),
            &"ok".into(),
            &2.into()
        )
    );
    let news = source(report, "news");
    assert_eq!(
        (&news["kind"], &news["topic"], &news["status"]),
        (&"hn-algolia".into(), &"news".into(), &"ok".into())
    );
    let wikipedia = source(report, "wikipedia");
    assert_eq!(wikipedia["topic"], "knowledge");
    assert_eq!(wikipedia["status"], "no_result");
    assert_eq!(
        wikipedia["error"],
        "\"Mercury\" is ambiguous on Wikipedia (disambiguation page)"
    );
    let answer = report["answer"].as_str().expect("an answer");
    assert!(
        answer.contains("Current weather in Lyon, Auvergne-Rhône-Alpes, France: overcast"),
        "{answer}"
    );
}

#[tokio::test]
async fn nothing_found_is_no_answer_with_each_reason() {
    let server = MockServer::start().await;
    Mock::given(path("/geocoding/v1/search"))
        .respond_with(replay(200, "open-meteo-geocoding-none.json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/search"))
        .respond_with(replay(200, "hn-search-none.json"))
        .mount(&server)
        .await;
    Mock::given(path("/w/rest.php/v1/search/page"))
        .respond_with(replay(200, "wikipedia-search-none.json"))
        .mount(&server)
        .await;

    let directory = tempfile::tempdir().expect("a temp dir");
    let output = ask_json(
        sources_file(directory.path(), &server),
        "Is it sunny in Atlantis?",
    )
    .await;
    assert_eq!(code(&output), 3, "no answer: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    assert_eq!(report["status"], "failed");
    for name in ["weather", "news", "wikipedia"] {
        assert_eq!(source(report, name)["status"], "no_result", "{report:#}");
    }
    let error = report["error"].as_str().expect("why");
    assert!(
        error.starts_with("no source had anything for the question"),
        "{error}"
    );
    assert!(
        error.contains("Open-Meteo knows no place named \"Atlantis\""),
        "{error}"
    );
}

#[test]
fn sources_public_and_a_config_file_conflict() {
    let output = tributary()
        .args([
            "ask",
            "x",
            "--sources",
            "public",
            "--config",
            "sources.toml",
        ])
        .output()
        .expect("run tributary");
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("--sources"), "{}", stderr(&output));
}
