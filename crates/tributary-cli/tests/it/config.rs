//! The config file of defaults: read from the platform's config directory or `TRIBUTARY_CONFIG_FILE`, beaten by
//! a variable, which a flag beats; a bad file refused with where and why; `tributary config` saying where each
//! default comes from.

use crate::harness::{FAST, code, json_lines, stderr, stdout, tributary};

const QUESTION: &str = "Is it raining in Lima?";

/// A config file with `text` in a temporary directory, at `tributary/config.toml` as the platform's config
/// directory would hold it.
fn config_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a config directory");
    std::fs::create_dir(dir.path().join("tributary")).expect("the tributary directory");
    std::fs::write(dir.path().join("tributary").join("config.toml"), text)
        .expect("write the config file");
    dir
}

#[test]
fn a_flag_beats_a_variable_which_beats_the_file_which_beats_the_built_in_default() {
    let dir = config_dir(
        "deadline = \"7s\"\nper-source-timeout = \"3s\"\nworkers = 1\n\n[ask]\ndeadline = \"8s\"\n\n[serve]\ndeadline = \"9s\"\n",
    );
    let file = dir.path().join("tributary").join("config.toml");
    let output = tributary()
        .arg("ask")
        .args(FAST)
        .args([QUESTION, "--json", "--workers", "2"])
        .env("TRIBUTARY_CONFIG_FILE", &file)
        .env("TRIBUTARY_PER_SOURCE_TIMEOUT", "4s")
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report = json_lines(&output).remove(0);
    // [ask] beats the top level; the variable beats the file; the flag beats the file.
    assert_eq!(report["deadline_ms"], 8000.0, "{report}");
    assert_eq!(report["per_source_timeout_ms"], 4000.0);
    assert_eq!(report["workers"], 2);

    // The same file found in the platform's config directory when no variable names one.
    let output = tributary()
        .args(["config", "ask"])
        .env_remove("TRIBUTARY_CONFIG_FILE")
        .env("XDG_CONFIG_HOME", dir.path())
        .env("TRIBUTARY_PER_SOURCE_TIMEOUT", "4s")
        .output()
        .expect("run tributary config");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(shown.contains("config.toml"), "{shown}");
    let row = |option: &str| {
        shown
            .lines()
            .find(|line| line.split_whitespace().next() == Some(option))
            .unwrap_or_else(|| panic!("no {option} in:\n{shown}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("--deadline"), "8s config file [ask], line 6");
    assert_eq!(row("--workers"), "1 config file, line 3");
    assert_eq!(
        row("--per-source-timeout"),
        "4s variable TRIBUTARY_PER_SOURCE_TIMEOUT"
    );
    assert_eq!(row("--executor"), "threads built-in");
    assert_eq!(row("--timeline"), "false built-in");

    // `--help` shows the file's values as the defaults, and says where they came from.
    let output = tributary()
        .args(["serve", "--help"])
        .env("TRIBUTARY_CONFIG_FILE", &file)
        .output()
        .expect("run tributary serve --help");
    let help = stdout(&output);
    assert!(help.contains("[default: 9s]"), "{help}");
    assert!(help.contains("Defaults from the config file"), "{help}");
}

#[test]
fn a_bad_file_is_refused_with_its_line_column_and_key_and_nothing_runs() {
    let dir = config_dir("workers = 2\n[ask]\ndeadline = \"soon\"\n");
    let output = tributary()
        .args(["ask", QUESTION])
        .env_remove("TRIBUTARY_CONFIG_FILE")
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let message = stderr(&output);
    assert!(
        message.contains(
            "config.toml, line 3, column 12, key `ask.deadline`: `soon` is not a duration"
        ),
        "{message}"
    );
    assert_eq!(message.matches("error:").count(), 1, "{message}");
    // The manual and the completion scripts do not read it: their output is the same for everyone.
    for command in [&["man"][..], &["completions", "bash"]] {
        let output = tributary()
            .args(command)
            .env_remove("TRIBUTARY_CONFIG_FILE")
            .env("XDG_CONFIG_HOME", dir.path())
            .output()
            .expect("run tributary");
        assert_eq!(code(&output), 0, "{command:?}: {}", stderr(&output));
    }
    // A file the variable names must exist.
    let output = tributary()
        .args(["ask", QUESTION])
        .env("TRIBUTARY_CONFIG_FILE", dir.path().join("missing.toml"))
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("missing.toml: cannot be read"),
        "{}",
        stderr(&output)
    );
}
