//! Ctrl-C and SIGTERM, sent for real to the real binary: `batch` stops gracefully, says what it stored and what
//! is left, exits 130 or 143, and a rerun finishes the job; a second Ctrl-C quits at once; `sources` drains.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::batch::{FAST, Workspace, kb_questions, summary};
use crate::harness::{code, stderr, tributary};

/// Sends `signal` (`INT`, `TERM`) to `child` with kill(1).
fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} failed");
}

/// Waits for `child` to exit, at most `within`; its exit code.
fn exit_code(child: &mut Child, within: Duration) -> Option<i32> {
    let give_up = Instant::now() + within;
    while Instant::now() < give_up {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// Starts `tributary batch INPUT --db answers.db FAST extra`, stderr piped.
fn start_batch(workspace: &Workspace, input: &Path, extra: &[&str]) -> Child {
    tributary()
        .arg("batch")
        .arg(input)
        .arg("--db")
        .arg(workspace.path("answers.db"))
        .args(FAST)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tributary batch")
}

/// Waits until the database holds at least `rows` rows, while `child` runs.
fn wait_for_rows(workspace: &Workspace, child: &mut Child, rows: u64) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while workspace.stored() < rows {
        assert!(Instant::now() < give_up, "no rows committed within 60 s");
        assert!(
            child.try_wait().expect("poll the child").is_none(),
            "the batch ended before it was signalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything `child` wrote to stdout and stderr, once it has exited.
fn outputs(child: &mut Child) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).expect("read stdout");
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).expect("read stderr");
    }
    (out, err)
}

/// The numbers of "interrupted: N stored, M left; ...".
fn stored_and_left(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("interrupted: "))
        .unwrap_or_else(|| panic!("no \"interrupted:\" line in:\n{stderr}"));
    assert!(
        line.ends_with("left; run the same command to resume"),
        "{line}"
    );
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// A line the reader refuses (too long): stored as failed at once, without fetching. Seeing its row in the
/// database tells the test the run is reading.
fn unusable_line() -> String {
    format!("{}\n", "x".repeat(5_000))
}

/// Starts a batch of an unusable line and `questions` questions to a knowledge base that never answers (and
/// nothing times out for an hour: only a shutdown ends the run), and waits until the unusable line's row is
/// committed: the run is reading, and its questions hang in flight.
fn start_hanging_batch(workspace: &Workspace, questions: usize, extra: &[&str]) -> Child {
    let input = workspace.write(
        "questions.txt",
        &format!("{}{}", unusable_line(), kb_questions(questions)),
    );
    let hang = [
        "--fault",
        "kb=hang",
        "--per-source-timeout",
        "1h",
        "--deadline",
        "2h",
    ];
    let mut child = start_batch(workspace, &input, &[&hang[..], extra].concat());
    wait_for_rows(workspace, &mut child, 1);
    child
}

#[test]
fn ctrl_c_lets_the_questions_in_flight_finish_reports_what_is_left_and_a_rerun_finishes() {
    let workspace = Workspace::new();
    let lines = 300;
    let input = workspace.write("questions.txt", &kb_questions(lines));
    let slow = ["--io-concurrency", "2", "--workers", "1"];
    let mut child = start_batch(
        &workspace,
        &input,
        &[&slow[..], &["--grace", "1m"]].concat(),
    );
    wait_for_rows(&workspace, &mut child, 10);
    send(&child, "INT");
    let exited = exit_code(&mut child, Duration::from_secs(60));
    let (_, stderr_text) = outputs(&mut child);
    assert_eq!(exited, Some(130), "{stderr_text}");
    let (stored, left) = stored_and_left(&stderr_text);
    assert!(stored >= 10 && left > 0, "{stderr_text}");
    assert_eq!(stored + left, lines as u64, "every line is stored or left");
    assert_eq!(
        workspace.stored(),
        stored,
        "what it said it stored is committed"
    );
    assert!(
        !stderr_text.contains("dropping"),
        "a minute is grace enough for questions of 20 ms: {stderr_text}"
    );

    let rerun = workspace.batch(&input, &[&slow[..], &["--json"]].concat());
    assert_eq!(code(&rerun), 0, "{}", stderr(&rerun));
    let summary = summary(&rerun);
    assert_eq!(summary["already_stored"], stored);
    assert_eq!(summary["ok"], left);
    assert_eq!(summary["in_db"]["ok"], lines);
}

#[test]
fn sigterm_after_the_grace_period_drops_the_hanging_questions_and_exits_143() {
    let workspace = Workspace::new();
    let mut child = start_hanging_batch(&workspace, 50, &["--grace", "200ms", "--json"]);
    send(&child, "TERM");
    let exited = exit_code(&mut child, Duration::from_secs(60));
    let (stdout_text, stderr_text) = outputs(&mut child);
    assert_eq!(exited, Some(143), "{stderr_text}");
    assert!(stderr_text.contains("SIGTERM: stopping"), "{stderr_text}");
    assert!(
        stderr_text.contains("the grace period is over: dropping"),
        "{stderr_text}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout_text.trim()).expect("the JSON summary");
    assert_eq!(summary["interrupted"], "SIGTERM");
    assert_eq!(
        (summary["failed"].as_u64(), summary["ok"].as_u64()),
        (Some(1), Some(0))
    );
    let abandoned = summary["abandoned"].as_u64().expect("abandoned");
    assert!(abandoned > 0, "{summary}");
    assert_eq!(
        summary["left"], 50,
        "the unusable line is stored; every question is left"
    );
    assert_eq!(workspace.stored(), 1);
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_keeps_what_was_committed() {
    let workspace = Workspace::new();
    let mut child = start_hanging_batch(&workspace, 20, &["--grace", "1h"]);
    let stderr_pipe = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    send(&child, "INT");
    // The first Ctrl-C is acknowledged; with an hour of grace, only a second one ends the run.
    let mut seen = Vec::new();
    loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the first Ctrl-C is acknowledged on stderr");
        let stopping = line.starts_with("Ctrl-C: stopping");
        seen.push(line);
        if stopping {
            break;
        }
    }
    send(&child, "INT");
    let exited = exit_code(&mut child, Duration::from_secs(30));
    reader.join().expect("the stderr reader");
    seen.extend(lines_rx.try_iter());
    let stderr_text = seen.join("\n");
    assert_eq!(exited, Some(130), "{stderr_text}");
    assert!(
        stderr_text.contains("Ctrl-C again: quitting now"),
        "{stderr_text}"
    );
    assert_eq!(workspace.stored(), 1, "the committed row is kept");
}

#[test]
fn sources_finishes_the_requests_in_flight_on_sigterm_then_exits_0() {
    let mut child = tributary()
        .args(["sources", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary sources");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let weather = lines
        .next()
        .expect("a url line")
        .expect("utf-8")
        .split_whitespace()
        .nth(1)
        .expect("name then url")
        .to_owned();
    let host = weather
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(host, _)| host.to_owned())
        .expect("http url");
    // A request that takes a second, under way when SIGTERM comes.
    let mut stream = TcpStream::connect(&host).expect("connect");
    write!(
        stream,
        "GET /weather?city=Paris&latency_ms=1000 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    send(&child, "TERM");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the request in flight is answered: {response}"
    );
    assert_eq!(exit_code(&mut child, Duration::from_secs(30)), Some(0));
}

#[test]
fn sigterm_stops_a_batch_whose_stdin_writer_has_gone_quiet() {
    let workspace = Workspace::new();
    let mut child = tributary()
        .args(["batch", "-", "--db"])
        .arg(workspace.path("answers.db"))
        .args(FAST)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tributary batch");
    // Three questions, then nothing more, with the pipe kept open: the reader waits for a line that never comes.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(kb_questions(3).as_bytes())
        .expect("write the questions");
    stdin.flush().expect("flush");
    wait_for_rows(&workspace, &mut child, 3);
    send(&child, "TERM");
    let exited = exit_code(&mut child, Duration::from_secs(60));
    let (_, stderr_text) = outputs(&mut child);
    drop(stdin);
    assert_eq!(exited, Some(143), "{stderr_text}");
    assert!(
        stderr_text.contains("interrupted: 3 stored, the rest of the input left"),
        "{stderr_text}"
    );
}
