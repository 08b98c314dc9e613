//! `tributary completions SHELL` and `tributary man`: generated from the binary's own arguments, on stdout.

use std::process::Command;

use crate::harness::{code, outside_program, stderr, stdout, tributary};

/// The commands a user can run, in the manual's order; the hidden `__worker` (a process pool's worker) is not
/// one of them, `worker` (a distributed batch's) is.
const COMMANDS: &[&str] = &[
    "ask",
    "batch",
    "worker",
    "serve",
    "mcp",
    "sources",
    "lab",
    "model",
    "config",
    "completions",
    "man",
];

const TEST: &str = "the bash completion test";

/// The completion script of `shell`, as the binary prints it.
fn script(shell: &str) -> String {
    let output = tributary()
        .args(["completions", shell])
        .output()
        .expect("run tributary completions");
    assert_eq!(code(&output), 0, "{shell}: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn every_shell_gets_a_script_without_the_hidden_worker() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = script(shell);
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: no {command}");
        }
        // A word of its own: the scripts' function names (`tributary__subcmd__worker`) for the visible
        // `worker` end the same way.
        assert!(
            !script
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .any(|word| word == "__worker"),
            "{shell} offers the hidden worker"
        );
    }
    let output = tributary()
        .args(["completions", "nushell"])
        .output()
        .expect("run");
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("possible values: bash"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_bash_script_parses_and_completes_commands_flags_and_values() {
    let Some(bash) = outside_program("TRIBUTARY_BASH", &["bash"], TEST, "apt-get install bash")
    else {
        return;
    };
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("tributary.bash");
    std::fs::write(&path, script("bash")).expect("write the script");

    let parsed = Command::new(&bash)
        .arg("-n")
        .arg(&path)
        .output()
        .expect("run bash -n");
    assert!(
        parsed.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );

    // What bash does on TAB: call the function the script registered for `tributary` with the words so far,
    // the word being completed and the one before it, and offer what it leaves in COMPREPLY.
    let complete = |words: &[&str]| -> Vec<String> {
        let driver = r#"
            source "$1"; shift
            spec=$(complete -p tributary) || { echo "no completion registered" >&2; exit 3; }
            function=${spec#*-F }; function=${function%% *}
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
            COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
            previous=${COMP_WORDS[COMP_CWORD - 1]}
            "$function" tributary "${COMP_WORDS[COMP_CWORD]}" "$previous"
            printf '%s\n' "${COMPREPLY[@]}"
        "#;
        let output = Command::new(&bash)
            .arg("-c")
            .arg(driver)
            .arg("bash")
            .arg(&path)
            .args(words)
            .output()
            .expect("run bash");
        assert!(
            output.status.success(),
            "{words:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(complete(&["tributary", "ba"]), ["batch"]);
    assert_eq!(complete(&["tributary", "ask", "--dead"]), ["--deadline"]);
    assert_eq!(
        complete(&["tributary", "ask", "x", "--executor", "gl"]),
        ["global-lock"]
    );
    let commands = complete(&["tributary", ""]);
    for command in COMMANDS {
        assert!(
            commands.iter().any(|offered| offered == command),
            "{command}: {commands:?}"
        );
    }
    assert!(
        !commands.iter().any(|offered| offered.starts_with("__")),
        "{commands:?}"
    );
}

#[test]
fn man_prints_a_page_for_the_cli_and_for_each_command() {
    let output = tributary().arg("man").output().expect("run tributary man");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let roff = stdout(&output);
    let titles: Vec<&str> = roff
        .lines()
        .filter_map(|line| line.strip_prefix(".TH "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let expected: Vec<String> = std::iter::once("tributary".to_owned())
        .chain(
            COMMANDS
                .iter()
                .map(|command| format!("tributary-{command}")),
        )
        .collect();
    assert_eq!(titles, expected);
    // The manual's own sections; the help text after the options is not an "EXTRA" refilled mid-line.
    for heading in [
        "ENGINE",
        "SOURCES",
        "OUTPUT",
        "GLOBAL",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "FILES",
    ] {
        assert!(
            roff.contains(&format!(".SH {heading}")),
            "no {heading} section"
        );
    }
    assert!(
        roff.contains("TRIBUTARY_DEADLINE"),
        "the variables are documented"
    );
    assert!(!roff.contains("__worker"), "the hidden worker has no page");
    assert!(!roff.contains(".SH EXTRA"), "an EXTRA section");
    // One tagged paragraph per exit code, on every page: ask's 3 among them.
    assert_eq!(
        roff.matches(".SH \"EXIT STATUS\"").count(),
        titles.len(),
        "a page without EXIT STATUS"
    );
    assert!(roff.contains(".TP\n\\fB3\\fR\n"), "no tagged exit code");
}
