//! schemathesis (PyPI) against the server's own `/openapi.json`: requests generated from the document, every
//! response checked against it (status codes, content types, headers, schemas, SSE events) and never a 5xx.

use std::process::Command;

use crate::harness::outside_program;
use crate::serve::Server;

#[test]
fn schemathesis_finds_no_server_error_and_no_response_off_the_document() {
    let Some(schemathesis) = outside_program(
        "TRIBUTARY_SCHEMATHESIS",
        &["st", "schemathesis"],
        "the schemathesis run against /openapi.json",
        "pip install schemathesis",
    ) else {
        return;
    };
    // Short deadlines: generated asks may ask for hanging sources.
    let server = Server::start(&["--deadline", "1s", "--per-source-timeout", "500ms"]);
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/schemathesis/schemathesis.toml"
    );
    // schemathesis writes a `.schemathesis/` cache where it runs: not in the repository.
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(schemathesis)
        .current_dir(scratch.path())
        .args(["--config-file", config])
        .args(["run", &format!("http://{}/openapi.json", server.address)])
        // Every check but "schema-valid data is accepted": the document cannot say that a question must not
        // be blank or that a fault must name a configured source, which the server checks and answers 400.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "25", "--workers", "1"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
