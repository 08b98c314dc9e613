//! `tributary model`: pulling from a mock of the Hugging Face hub on loopback (`HF_ENDPOINT`), with its redirect
//! to a CDN and the checksum it names there, resuming, refusing a file that does not match; then listing and
//! verifying what is installed.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::harness::{code, stderr, stdout, tributary};

/// `tributary model ARGS` with its models in `dir` and the hub at `hub`, off the runtime that serves the mock.
async fn model(dir: &Path, hub: &MockServer, args: &[&str]) -> std::process::Output {
    let dir = dir.to_owned();
    let endpoint = hub.uri();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        tributary()
            .arg("model")
            .args(&args)
            .env("TRIBUTARY_MODELS_DIR", &dir)
            .env("HF_ENDPOINT", endpoint)
            .output()
            .expect("run tributary model")
    })
    .await
    .expect("the command's thread does not panic")
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Some bytes that stand for a GGUF file (the command does not read them: `--model` does).
fn weights() -> Vec<u8> {
    (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect()
}

/// The hub's answer for a large file: a redirect to its CDN naming the file's SHA-256, as huggingface.co does.
async fn hub_with(file: &str, bytes: &[u8], named_sha256: &str) -> MockServer {
    let hub = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/owner/repo/resolve/main/{file}")))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("/cdn/{file}?signed=1"))
                .insert_header("x-linked-etag", format!("\"{named_sha256}\"")),
        )
        .mount(&hub)
        .await;
    let bytes = bytes.to_vec();
    Mock::given(method("GET"))
        .and(path(format!("/cdn/{file}")))
        .respond_with(move |request: &Request| ranged(&bytes, request))
        .mount(&hub)
        .await;
    hub
}

/// The whole body, or from the start of a `Range: bytes=N-` header on, as a 206.
fn ranged(bytes: &[u8], request: &Request) -> ResponseTemplate {
    let from = request
        .headers
        .get("range")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("bytes="))
        .and_then(|value| value.strip_suffix('-'))
        .and_then(|value| value.parse::<usize>().ok());
    match from {
        Some(from) if from < bytes.len() => ResponseTemplate::new(206)
            .insert_header(
                "content-range",
                format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
            )
            .set_body_bytes(bytes[from..].to_vec()),
        Some(_) => ResponseTemplate::new(416),
        None => ResponseTemplate::new(200).set_body_bytes(bytes.to_vec()),
    }
}

#[tokio::test]
async fn a_pulled_model_is_verified_listed_and_checked_again() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bytes = weights();
    let hub = hub_with("sub/tiny.Q8_0.gguf", &bytes, &sha256(&bytes)).await;

    let output = model(
        dir.path(),
        &hub,
        &["pull", "owner/repo", "sub/tiny.Q8_0.gguf"],
    )
    .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("Installed tiny.Q8_0.gguf"),
        "{}",
        stdout(&output)
    );
    assert!(stderr(&output).contains("verified"), "{}", stderr(&output));
    let installed = dir.path().join("tiny.Q8_0.gguf");
    assert_eq!(std::fs::read(&installed).expect("installed"), bytes);
    assert!(!dir.path().join("tiny.Q8_0.gguf.part").exists());
    let record = std::fs::read_to_string(dir.path().join("SHA256SUMS")).expect("recorded");
    assert_eq!(record, format!("{}  tiny.Q8_0.gguf\n", sha256(&bytes)));

    let list = model(dir.path(), &hub, &["list"]).await;
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    assert!(
        stdout(&list).contains("Use by name: --model tiny.Q8_0.gguf"),
        "{}",
        stdout(&list)
    );
    assert!(
        stdout(&list).contains("tiny.Q8_0.gguf  chat model  0.8 MB  known"),
        "{}",
        stdout(&list)
    );

    let verify = model(dir.path(), &hub, &["verify"]).await;
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("tiny.Q8_0.gguf: ok"),
        "{}",
        stdout(&verify)
    );

    // One byte changed on disk: verify names the file and fails; a pull replaces it.
    let mut damaged = bytes.clone();
    damaged[1000] ^= 1;
    std::fs::write(&installed, &damaged).expect("damage the file");
    let verify = model(dir.path(), &hub, &["verify", "tiny.Q8_0.gguf"]).await;
    assert_eq!(code(&verify), 1, "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("tiny.Q8_0.gguf: MISMATCH"),
        "{}",
        stdout(&verify)
    );
    assert!(
        stderr(&verify).contains("do not match their checksums: tiny.Q8_0.gguf"),
        "{}",
        stderr(&verify)
    );
    let again = model(
        dir.path(),
        &hub,
        &["pull", "owner/repo", "sub/tiny.Q8_0.gguf"],
    )
    .await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(std::fs::read(&installed).expect("installed"), bytes);

    let unknown = model(dir.path(), &hub, &["verify", "nothing-here"]).await;
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
}

#[tokio::test]
async fn an_interrupted_pull_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bytes = weights();
    let hub = hub_with("tiny.gguf", &bytes, &sha256(&bytes)).await;
    // What an interrupted pull left: the first part of the file.
    std::fs::write(dir.path().join("tiny.gguf.part"), &bytes[..300_000]).expect("a partial file");
    // Only the rest may be asked for.
    Mock::given(method("GET"))
        .and(path("/cdn/tiny.gguf"))
        .and(header("range", "bytes=300000-"))
        .respond_with(move |request: &Request| ranged(&bytes, request))
        .with_priority(1)
        .expect(1)
        .mount(&hub)
        .await;
    let output = model(dir.path(), &hub, &["pull", "owner/repo", "tiny.gguf"]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        std::fs::read(dir.path().join("tiny.gguf")).expect("installed"),
        weights()
    );
    hub.verify().await;
}

#[tokio::test]
async fn a_download_that_does_not_match_its_checksum_installs_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let hub = hub_with("tiny.gguf", &weights(), &"0".repeat(64)).await;
    let output = model(dir.path(), &hub, &["pull", "owner/repo", "tiny.gguf"]).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("does not match its checksum"),
        "{}",
        stderr(&output)
    );
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("the directory")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "nothing installed, nothing partial: {left:?}"
    );
}

#[tokio::test]
async fn a_missing_file_or_a_refusal_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let hub = MockServer::start().await;
    Mock::given(path("/owner/gated/resolve/main/model.gguf"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"gguf".to_vec()))
        .mount(&hub)
        .await;
    Mock::given(path("/owner/gated/resolve/main/model.gguf"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&hub)
        .await;
    let output = model(dir.path(), &hub, &["pull", "owner/missing", "model.gguf"]).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not found at"),
        "{}",
        stderr(&output)
    );
    let output = model(dir.path(), &hub, &["pull", "owner/gated", "model.gguf"]).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("HF_TOKEN"), "{}", stderr(&output));
    let output = model(dir.path(), &hub, &["pull", "owner/gated"]).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let output = model(dir.path(), &hub, &["list"]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("No model in"),
        "{}",
        stdout(&output)
    );
}
