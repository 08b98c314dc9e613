//! `tributary batch`: resuming after kill -9, malformed input, database errors, stdin, export.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tributary_batch::StoreReader;

use crate::harness::{code, stderr, stdout, tributary};

/// Fast engine flags: short fixed latencies and cheap inference.
pub(crate) const FAST: &[&str] = &[
    "--inference-cost",
    "1ms",
    "--fault",
    "weather=latency:20ms",
    "--fault",
    "news=latency:20ms",
    "--fault",
    "kb=latency:20ms",
];

pub(crate) struct Workspace {
    directory: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        Self {
            directory: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write input");
        path
    }

    pub(crate) fn batch(&self, input: &Path, extra: &[&str]) -> Output {
        tributary()
            .arg("batch")
            .arg(input)
            .arg("--db")
            .arg(self.path("answers.db"))
            .args(FAST)
            .args(extra)
            .output()
            .expect("run tributary batch")
    }

    pub(crate) fn stored(&self) -> u64 {
        StoreReader::open(&self.path("answers.db"))
            .and_then(|reader| reader.counts())
            .map(|counts| counts.total())
            .unwrap_or(0)
    }

    pub(crate) fn exported(&self) -> Vec<Value> {
        let mut out = Vec::new();
        StoreReader::open(&self.path("answers.db"))
            .expect("open the database")
            .export_jsonl(&mut out)
            .expect("export");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect()
    }
}

pub(crate) fn summary(output: &Output) -> Value {
    serde_json::from_str(stdout(output).trim()).unwrap_or_else(|error| {
        panic!(
            "no JSON summary ({error}): {}\n{}",
            stdout(output),
            stderr(output)
        )
    })
}

/// `count` questions for the knowledge base (and the news, which has nothing on the GIL), each worded apart: the same question again would be answered from the
/// response and inference caches in a moment, and the tests that stop a batch mid-run need it to take its time.
pub(crate) fn kb_questions(count: usize) -> String {
    (0..count)
        .map(|take| format!("what is the GIL, take {take}?\n"))
        .collect()
}

#[test]
fn a_batch_killed_mid_run_is_finished_by_a_rerun_with_nothing_lost_or_duplicated() {
    let workspace = Workspace::new();
    let lines = 300;
    let input = workspace.write("questions.txt", &kb_questions(lines));
    let slow = ["--io-concurrency", "2", "--workers", "1", "--quiet"];

    let mut child = tributary()
        .arg("batch")
        .arg(&input)
        .arg("--db")
        .arg(workspace.path("answers.db"))
        .args(FAST)
        .args(slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary batch");
    // Wait until some answers are committed, then kill -9 in the middle of the run.
    let give_up = Instant::now() + Duration::from_secs(60);
    while workspace.stored() < 10 {
        assert!(Instant::now() < give_up, "no answers committed within 60 s");
        assert!(
            child.try_wait().expect("poll the child").is_none(),
            "the batch ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let before = workspace.stored();
    assert!(
        before < lines as u64,
        "the batch finished before the kill; make it slower"
    );

    let rerun = workspace.batch(&input, &[&slow[..], &["--json"]].concat());
    assert_eq!(code(&rerun), 0, "{}", stderr(&rerun));
    let summary = summary(&rerun);
    assert_eq!(summary["already_stored"], before);
    assert_eq!(summary["in_db"]["ok"], lines);

    let rows = workspace.exported();
    let mut ids: Vec<u64> = rows
        .iter()
        .map(|row| {
            row["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("a line number")
        })
        .collect();
    ids.dedup();
    assert_eq!(
        ids,
        (1..=lines as u64).collect::<Vec<_>>(),
        "every line once, in order"
    );
}

#[test]
fn malformed_json_lines_are_reported_by_line_and_stored_as_failed() {
    let workspace = Workspace::new();
    let input = workspace.write(
        "questions.jsonl",
        "{\"id\": \"a\", \"question\": \"what is the GIL?\"}\n\
         {\"id\": \"b\", \"question\": \n\
         {\"id\": \"c\", \"question\": \"what is a future?\"}\n",
    );
    let output = workspace.batch(&input, &["--json", "--quiet"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("line 2: malformed JSON"),
        "{}",
        stderr(&output)
    );
    let summary = summary(&output);
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(summary["invalid"], 1);
    let failed: Vec<Value> = workspace
        .exported()
        .into_iter()
        .filter(|row| row["status"] == "failed")
        .collect();
    assert_eq!(
        (&failed[0]["id"], failed[0]["line"].as_u64()),
        (&Value::Null, Some(2)),
        "a line whose id cannot be read has no id"
    );
}

#[test]
fn a_database_that_cannot_be_opened_is_a_clear_error_with_exit_code_2() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &kb_questions(2));
    let output = tributary()
        .arg("batch")
        .arg(&input)
        .arg("--db")
        .arg(workspace.path("missing-directory/answers.db"))
        .output()
        .expect("run");
    assert_eq!(code(&output), 2);
    let message = stderr(&output);
    assert!(
        message.contains("error: failed to open the answers database"),
        "{message}"
    );
    assert!(
        message.contains("hint: --db needs a writable file"),
        "{message}"
    );

    let not_a_database = workspace.write("notes.db", &"not sqlite\n".repeat(1000));
    let output = tributary()
        .arg("batch")
        .arg(&input)
        .arg("--db")
        .arg(&not_a_database)
        .output()
        .expect("run");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&not_a_database).expect("read"),
        "not sqlite\n".repeat(1000),
        "the file is left as it was"
    );
}

/// Whether this process ignores file permissions (root, or CAP_DAC_OVERRIDE): a read-only file it can open for
/// writing all the same.
fn permissions_are_ignored(workspace: &Workspace) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let probe = workspace.write("probe", "");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o444)).expect("chmod 444");
    std::fs::OpenOptions::new().write(true).open(&probe).is_ok()
}

/// A read-only database (a `chmod 444` file, or a directory without write permission) failed only at the first
/// commit, after 1.7 s of work, with the hint "rerun the same command to resume". It fails at open now, before
/// any question is asked, naming the path and saying it is not writable.
#[test]
fn a_database_that_is_not_writable_fails_at_once_without_a_resume_hint() {
    use std::os::unix::fs::PermissionsExt as _;
    let workspace = Workspace::new();
    if permissions_are_ignored(&workspace) {
        // Not a missing program (no TRIBUTARY_REQUIRE_EXTERNAL failure): CI may well run as root.
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: batch::a_database_that_is_not_writable_fails_at_once runs as root, which ignores file \
             permissions; run the tests as an ordinary user to check it"
        );
        return;
    }
    let input = workspace.write("questions.txt", &kb_questions(2));
    let output = workspace.batch(&input, &["--quiet"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let db = workspace.path("answers.db");
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let more = workspace.write("more.txt", &kb_questions(5));
    // The file read-only; then the file writable in a directory that is not.
    for (file, directory) in [(0o444, 0o755), (0o644, 0o555)] {
        mode(&db, file);
        mode(workspace.directory.path(), directory);
        let output = workspace.batch(&more, &[]);
        mode(workspace.directory.path(), 0o755);
        let message = stderr(&output);
        assert_eq!(code(&output), 2, "{message}");
        assert!(
            message.contains(&format!(
                "error: failed to write to the answers database {}: it is not writable",
                db.display()
            )),
            "{message}"
        );
        assert!(!message.contains("resume"), "{message}");
        assert!(!message.contains("done in"), "no work was done: {message}");
    }
    mode(&db, 0o644);
    assert_eq!(workspace.stored(), 2, "the database is as it was");
}

#[test]
fn a_missing_input_file_is_a_usage_error() {
    let workspace = Workspace::new();
    let output = workspace.batch(&workspace.path("nowhere.txt"), &[]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("failed to open the input"),
        "{}",
        stderr(&output)
    );
    assert!(
        !workspace.path("answers.db").exists(),
        "no database is created for a run that cannot start"
    );
}

#[test]
fn stdin_is_read_with_a_dash_and_export_writes_every_answer() {
    let workspace = Workspace::new();
    let export = workspace.path("answers.jsonl");
    let mut child = tributary()
        .arg("batch")
        .arg("-")
        .arg("--db")
        .arg(workspace.path("answers.db"))
        .args(FAST)
        .args(["--json", "--export"])
        .arg(&export)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"What is the weather in Paris?\n\nwhat is the GIL?\n")
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let summary = summary(&output);
    assert_eq!(
        (summary["read"].as_u64(), summary["exported"].as_u64()),
        (Some(2), Some(2))
    );
    let rows: Vec<Value> = std::fs::read_to_string(&export)
        .expect("export file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["id"].as_str(), rows[1]["id"].as_str()),
        (Some("1"), Some("3"))
    );
    // Each line is the answer object `ask --json` prints, with the row's own fields added.
    assert!(rows[0]["answer"].is_string(), "{}", rows[0]);
    assert!(
        rows[0]["sources"]
            .as_array()
            .is_some_and(|sources| sources.len() == 3),
        "{}",
        rows[0]
    );
    let asked = crate::harness::ask(&["What is the weather in Paris?", "--json"]);
    let asked = &crate::harness::json_lines(&asked)[0];
    for (key, _) in asked.as_object().expect("an object") {
        assert!(
            rows[0].get(key).is_some(),
            "the export lacks `{key}`: {}",
            rows[0]
        );
    }
    for key in ["id", "line", "stored_at", "fetch_ms", "infer_ms"] {
        assert!(
            rows[0].get(key).is_some(),
            "the export lacks `{key}`: {}",
            rows[0]
        );
    }
}

#[test]
fn progress_is_not_drawn_into_a_pipe() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &kb_questions(3));
    let output = workspace.batch(&input, &[]);
    assert_eq!(code(&output), 0);
    let message = stderr(&output);
    assert!(
        !message.contains('\r') && !message.contains('\u{1b}'),
        "{message:?}"
    );
    assert!(
        message.contains("3 answered (ok 3, degraded 0, failed 0)"),
        "{message}"
    );
    assert!(stdout(&output).is_empty(), "stdout is for --json only");
}

/// `--export` naming the database (or one of its SQLite side files, or the input) is refused before anything
/// runs: the stored answers are untouched. (It once truncated the database before reading it.)
#[test]
fn export_over_the_database_or_the_input_is_refused_and_loses_nothing() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &kb_questions(3));
    let first = workspace.batch(&input, &[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let database = workspace.path("answers.db");
    let before = workspace.exported();
    assert_eq!(before.len(), 3);

    let wal = workspace.path("answers.db-wal");
    let same_through_dots = workspace.path("sub/../answers.db");
    std::fs::create_dir(workspace.path("sub")).expect("mkdir");
    for target in [&database, &same_through_dots, &wal] {
        let output = workspace.batch(&input, &["--export", &target.to_string_lossy()]);
        assert_eq!(code(&output), 2, "{}", stderr(&output));
        assert!(
            stderr(&output).contains("would overwrite the answers database"),
            "{}",
            stderr(&output)
        );
        assert_eq!(
            workspace.exported(),
            before,
            "the answers are all still there"
        );
    }

    let output = workspace.batch(&input, &["--export", &input.to_string_lossy()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("would overwrite the input"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(&input).expect("read"),
        kb_questions(3)
    );
}

/// The database given as the input, a directory, or another SQLite file as the input: each is named, exit 2,
/// and no database is created or changed.
#[test]
fn an_input_that_is_a_database_or_a_directory_is_refused_by_name() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &kb_questions(1));
    let first = workspace.batch(&input, &[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let database = workspace.path("answers.db");
    let before = std::fs::read(&database).expect("read the database");

    let output = workspace.batch(&database, &[]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is the answers database --db"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&database).expect("read"), before);

    let other = workspace.directory.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let output = tributary()
        .arg("batch")
        .arg(&other)
        .arg("--db")
        .arg(workspace.path("fresh.db"))
        .output()
        .expect("run");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains(&*other.to_string_lossy()), "{message}");
    assert!(message.contains("it is a directory"), "{message}");
    assert!(
        !workspace.path("fresh.db").exists(),
        "no database is left behind"
    );

    let output = tributary()
        .arg("batch")
        .arg(&database)
        .arg("--db")
        .arg(workspace.path("fresh.db"))
        .output()
        .expect("run");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("it is a SQLite database"),
        "{}",
        stderr(&output)
    );
    assert!(!workspace.path("fresh.db").exists());
}

/// `batch --deadline 18446744073709551615s` once panicked on `Instant` overflow ("task 11 panicked"); a count
/// past its bound is refused the same way, before any database exists.
#[test]
fn durations_and_counts_past_their_bounds_are_refused_before_the_database_is_made() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &kb_questions(1));
    for (extra, message) in [
        (
            &["--deadline", "18446744073709551615s"][..],
            "must be at most 1day",
        ),
        (&["--io-concurrency", "100000"], "must be at most 4096"),
        (&["--workers", "257"], "must be at most 256"),
    ] {
        let output = workspace.batch(&input, extra);
        assert_eq!(code(&output), 2, "{extra:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(message),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(!workspace.path("answers.db").exists(), "{extra:?}");
    }
}

/// Three id bugs, through the real binary: an unreadable line's made-up id `line:2` once swallowed the valid
/// question whose id is `"line:2"`; a repeated id kept whichever answer came first, not the earliest line's;
/// a question of NUL bytes was answered `ok`.
#[test]
fn ids_never_collide_the_earliest_line_wins_and_control_characters_are_refused() {
    let workspace = Workspace::new();
    let input = workspace.write(
        "questions.jsonl",
        "{\"id\": \"a\", \"question\": \"what is a future?\"}\n\
         {not json\n\
         {\"id\": \"line:2\", \"question\": \"what is the GIL?\"}\n\
         {\"id\": \"nul\", \"question\": \"\\u0000\\u0000\\u0000\"}\n\
         {\"id\": \"a\", \"question\": \"and the event loop?\"}\n",
    );
    let output = workspace.batch(&input, &["--json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let rows = workspace.exported();
    let by_line = |line: u64| {
        rows.iter()
            .find(|row| row["line"] == line)
            .unwrap_or_else(|| panic!("line {line} in {rows:?}"))
    };
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(by_line(1)["id"], "a");
    assert_eq!(by_line(1)["question"], "what is a future?");
    assert_eq!(by_line(2)["id"], Value::Null);
    assert_eq!(by_line(2)["status"], "failed");
    assert_eq!(by_line(3)["id"], "line:2");
    assert_ne!(by_line(3)["status"], "failed", "{}", by_line(3));
    assert_eq!(by_line(4)["status"], "failed");
    assert!(
        by_line(4)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("control character U+0000"),
        "{}",
        by_line(4)
    );
    // A rerun finds every line accounted for.
    let again = workspace.batch(&input, &["--json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(workspace.exported(), rows);
}
