//! Integration tests of the `tributary` binary: one test binary, driven through a small harness that runs the
//! real executable.

mod architecture;
mod ask;
mod batch;
mod chaos;
mod chat_endpoint;
mod completions;
mod config;
mod connections;
mod environment;
mod harness;
mod lab;
mod mcp;
mod model;
#[cfg(feature = "models")]
mod models;
mod nats;
#[cfg(feature = "otlp")]
mod otlp;
mod page;
mod public_sources;
mod schemathesis;
mod serve;
mod serve_stream;
mod signals;
mod sources;

use harness::tributary;

#[test]
fn version_prints_the_crate_version() {
    let output = tributary()
        .arg("--version")
        .output()
        .expect("run tributary");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        stdout.trim(),
        format!("tributary {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let output = tributary()
        .args(["ask", "--help"])
        .output()
        .expect("run tributary");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    for line in ["Exit codes:", "0  an answer", "2  usage", "3  no answer"] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
