//! Runs the real binary and decodes what it prints.

use std::io::Write;
use std::process::{Command, Output};

use serde_json::Value;

/// The binary under test, with logs quiet, no colour, and none of the environment variables that change its
/// output or its flags' defaults from the environment the tests run in.
pub fn tributary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
    command
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env_remove("COLUMNS")
        // A developer's collector must not receive the tests' spans (the OTLP tests set their own).
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    for variable in ENGINE_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The variables that give the engine flags their values when the flags are not given.
pub const ENGINE_VARIABLES: &[&str] = &[
    "TRIBUTARY_DEADLINE",
    "TRIBUTARY_PER_SOURCE_TIMEOUT",
    "TRIBUTARY_INFERENCE_COST",
    "TRIBUTARY_WORKERS",
    "TRIBUTARY_EXECUTOR",
    "TRIBUTARY_CONFIG",
    "TRIBUTARY_SOURCES",
    "TRIBUTARY_IO_CONCURRENCY",
];

/// Fast defaults for `ask`: short simulated latencies and cheap inference, so each run takes well under a second.
pub const FAST: &[&str] = &[
    "--inference-cost",
    "20ms",
    "--fault",
    "weather=latency:60ms",
    "--fault",
    "news=latency:90ms",
    "--fault",
    "kb=latency:40ms",
];

/// Runs `tributary ask` with [`FAST`] defaults and `extra` flags.
pub fn ask(extra: &[&str]) -> Output {
    tributary()
        .arg("ask")
        .args(FAST)
        .args(extra)
        .output()
        .expect("run tributary ask")
}

pub fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("exited with a code, not a signal")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is utf-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is utf-8")
}

/// Every stdout line as JSON.
pub fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect()
}

/// The report of the source `name` in a JSON report.
pub fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .expect("sources is an array")
        .iter()
        .find(|source| source["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {report}"))
}

/// An outside program a test needs (Chromium, Node.js, schemathesis): the path from `variable` if set, else
/// the first of `names` on `PATH`. When it is missing the test prints one line saying what was skipped and how
/// to install it, and passes, unless `TRIBUTARY_REQUIRE_EXTERNAL=1` (as CI sets it), when it fails.
pub fn outside_program(
    variable: &str,
    names: &[&str],
    test: &str,
    install: &str,
) -> Option<std::path::PathBuf> {
    let found = std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| names.iter().find_map(|name| on_path(name)));
    if found.is_none() {
        missing(
            &format!("{} ({variable} or PATH)", names.join("/")),
            test,
            install,
        );
    }
    found
}

/// Reports a missing outside requirement of `test`: a skip, or a failure under `TRIBUTARY_REQUIRE_EXTERNAL=1`.
pub fn missing(what: &str, test: &str, install: &str) {
    let message = format!("{test} needs {what}, which was not found; install: {install}");
    assert!(
        std::env::var("TRIBUTARY_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
        "{message} (required: TRIBUTARY_REQUIRE_EXTERNAL=1)"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of a passing test, and this
    // line must be seen.
    let _ = writeln!(std::io::stderr().lock(), "skipped: {message}");
}

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}
