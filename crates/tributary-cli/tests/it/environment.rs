//! The `TRIBUTARY_*` variables that give the engine flags their values: used when the flag is not given, beaten
//! by the flag, and a bad one reported under its own name.

use crate::harness::{FAST, code, json_lines, stderr, tributary};

const QUESTION: &str = "Is it raining in Lima?";

#[test]
fn a_variable_sets_its_flag_and_the_flag_beats_it() {
    let run = |variables: &[(&str, &str)], extra: &[&str]| {
        let output = tributary()
            .arg("ask")
            .args(FAST)
            .args([QUESTION, "--json"])
            .args(extra)
            .envs(variables.iter().copied())
            .output()
            .expect("run tributary ask");
        assert_eq!(code(&output), 0, "{variables:?}: {}", stderr(&output));
        json_lines(&output).remove(0)
    };
    let from_variables = run(
        &[
            ("TRIBUTARY_DEADLINE", "7s"),
            ("TRIBUTARY_PER_SOURCE_TIMEOUT", "3s"),
            ("TRIBUTARY_WORKERS", "1"),
        ],
        &[],
    );
    assert_eq!(from_variables["deadline_ms"], 7000.0, "{from_variables}");
    assert_eq!(from_variables["per_source_timeout_ms"], 3000.0);
    assert_eq!(from_variables["workers"], 1);
    let flags_win = run(
        &[("TRIBUTARY_DEADLINE", "7s"), ("TRIBUTARY_WORKERS", "1")],
        &["--deadline", "6s", "--workers=2"],
    );
    assert_eq!(flags_win["deadline_ms"], 6000.0, "{flags_win}");
    assert_eq!(flags_win["workers"], 2);
}

#[test]
fn a_bad_value_in_a_variable_is_an_error_that_names_the_variable() {
    for (variable, value, command, reason) in [
        (
            "TRIBUTARY_DEADLINE",
            "soon",
            "ask",
            "`soon` is not a duration",
        ),
        (
            "TRIBUTARY_PER_SOURCE_TIMEOUT",
            "0s",
            "ask",
            "must be longer than zero",
        ),
        (
            "TRIBUTARY_INFERENCE_COST",
            "2m",
            "ask",
            "must be at most 1m",
        ),
        ("TRIBUTARY_WORKERS", "0", "ask", "must be at least 1"),
        (
            "TRIBUTARY_MODEL",
            "/nonexistent/model.gguf",
            "ask",
            "model /nonexistent/model.gguf: No such file or directory",
        ),
        (
            "TRIBUTARY_EXECUTOR",
            "gpu",
            "ask",
            "possible values: threads",
        ),
        (
            "TRIBUTARY_IO_CONCURRENCY",
            "lots",
            "batch",
            "is not a whole number",
        ),
    ] {
        let mut command_line = tributary();
        command_line.arg(command);
        if command == "batch" {
            command_line.args(["questions.txt", "--db", "answers.db"]);
        } else {
            command_line.arg(QUESTION);
        }
        let output = command_line
            .env(variable, value)
            .output()
            .expect("run tributary");
        let message = stderr(&output);
        assert_eq!(code(&output), 2, "{variable}={value}: {message}");
        assert!(
            message.contains(&format!("invalid value '{value}' for '{variable}'")),
            "{variable}={value}: {message}"
        );
        assert!(message.contains(reason), "{variable}={value}: {message}");
        assert!(
            message.contains(&format!("tip: the environment variable {variable} sets --")),
            "{message}"
        );
    }
    // A sources file that cannot be read names the file, and the hint names both ways of giving it.
    let output = tributary()
        .args(["ask", QUESTION])
        .env("TRIBUTARY_CONFIG", "/nonexistent/sources.toml")
        .output()
        .expect("run tributary");
    let message = stderr(&output);
    assert_eq!(code(&output), 2, "{message}");
    assert!(message.contains("/nonexistent/sources.toml"), "{message}");
    assert!(message.contains("TRIBUTARY_CONFIG"), "{message}");
}

#[test]
fn help_shows_each_flags_variable() {
    let output = tributary()
        .args(["batch", "--help"])
        .output()
        .expect("run tributary batch --help");
    assert_eq!(code(&output), 0);
    let help = crate::harness::stdout(&output);
    for variable in crate::harness::ENGINE_VARIABLES {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable}:\n{help}"
        );
    }
}
