//! Runs the real binary and decodes what it prints.

use std::process::{Command, Output};

use serde_json::Value;

/// The binary under test, with logs quiet and no colour.
pub fn tributary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
    command.env("NO_COLOR", "1").env_remove("RUST_LOG");
    command
}

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
