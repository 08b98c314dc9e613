//! `tributary batch --nats` and `tributary worker`: the real binary against a real `nats-server -js`.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::batch::{FAST, Workspace, summary};
use crate::harness::{NatsServer, code, stderr, tributary};

/// How long a distributed batch of these tests may take before it is taken for hung: far past what one needs
/// (seconds), so only a question that is never answered reaches it.
const HUNG_AFTER: Duration = Duration::from_secs(90);

/// One test of this file at a time, and none beside a test with a tight wall-clock bound: each runs a broker,
/// three or four processes of the binary and their engines, which together would starve one another on a 2-core
/// machine (and answers would turn degraded).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    crate::harness::heavy()
}

/// Starts a worker against `server`, quiet, with the fast engine flags and a short `ack_wait`.
fn worker(server: &NatsServer, name: &str) -> Child {
    worker_with(server, name, &["--ack-wait", "3s"])
}

/// Starts a worker against `server`, quiet, with the fast engine flags and `extra`.
fn worker_with(server: &NatsServer, name: &str, extra: &[&str]) -> Child {
    tributary()
        .args(["worker", "--nats", &server.url(), "--name", name, "--quiet"])
        .args(extra)
        .args(FAST)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
}

/// Starts a worker for each of `names` (see [`worker`]).
fn start_workers(server: &NatsServer, names: &[&str]) -> Vec<Child> {
    names.iter().map(|name| worker(server, name)).collect()
}

/// Stops every one of `workers` with SIGTERM, each of which must exit 0.
fn stop_workers(workers: Vec<Child>) {
    for child in workers {
        assert_eq!(terminate(child), 0, "a worker stops cleanly on SIGTERM");
    }
}

/// Stops a worker with SIGTERM and returns its exit code.
fn terminate(child: Child) -> i32 {
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let output = child.wait_with_output().expect("the worker ends");
    assert!(output.status.code().is_some(), "{}", stderr(&output));
    code(&output)
}

/// Starts `batch --nats` (quiet, a JSON summary) in the background. No engine flags: they are the workers'.
fn start_batch(workspace: &Workspace, input: &Path, server: &NatsServer, extra: &[&str]) -> Child {
    tributary()
        .arg("batch")
        .arg(input)
        .arg("--db")
        .arg(workspace.path("answers.db"))
        .args(["--nats", &server.url(), "--json", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tributary batch --nats")
}

/// Waits for `batch` to end; a batch still running after [`HUNG_AFTER`] is killed and fails the test (a
/// question lost on the way is a batch that never ends).
fn finish(mut batch: Child) -> Output {
    let give_up = Instant::now() + HUNG_AFTER;
    while batch.try_wait().expect("poll the batch").is_none() {
        if Instant::now() > give_up {
            let _ = batch.kill();
            let output = batch.wait_with_output().expect("reap the batch");
            panic!(
                "the batch did not end within {HUNG_AFTER:?}: {}",
                stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    batch.wait_with_output().expect("the batch's output")
}

/// Waits until at least `rows` answers are committed while `batch` runs: the middle of the run.
fn wait_until_stored(workspace: &Workspace, batch: &mut Child, rows: u64) {
    let give_up = Instant::now() + HUNG_AFTER;
    while workspace.stored() < rows {
        assert!(
            Instant::now() < give_up,
            "fewer than {rows} answers within {HUNG_AFTER:?}"
        );
        assert!(
            batch.try_wait().expect("poll the batch").is_none(),
            "the batch ended before {rows} answers were stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a process with SIGKILL (`kill -9`: no signal handler, no clean-up) and reaps it.
fn kill_9(child: &mut Child) {
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

/// Asserts that a finished batch stored every one of `count` questions once, all answered.
fn assert_every_id_once(workspace: &Workspace, output: &Output, count: u64) {
    assert_eq!(code(output), 0, "{}", stderr(output));
    let summary = summary(output);
    assert_eq!(summary["left"], 0, "{summary}");
    assert_eq!(summary["in_db"]["failed"], 0, "{summary}");
    // Degraded (a source slow on a busy machine) is still an answer: what matters here is one per id.
    let answered = summary["in_db"]["ok"].as_u64().unwrap_or(0)
        + summary["in_db"]["degraded"].as_u64().unwrap_or(0);
    assert_eq!(answered, count, "{summary}");
    assert_eq!(rows_and_ids(workspace), (count, count));
}

fn questions(count: usize) -> String {
    (1..=count)
        .map(|n| format!("What is the weather in Lima, and the news about rust {n}?\n"))
        .collect()
}

/// The database's rows and its distinct ids, from its export: equal when every id is stored once.
fn rows_and_ids(workspace: &Workspace) -> (u64, u64) {
    let exported = workspace.exported();
    let mut ids: Vec<String> = exported
        .iter()
        .map(|row| row["id"].as_str().expect("an id").to_owned())
        .collect();
    let rows = ids.len() as u64;
    ids.sort();
    ids.dedup();
    (rows, ids.len() as u64)
}

#[test]
fn three_workers_answer_every_question_once_and_a_rerun_resumes() {
    let _running = one_at_a_time();
    let Some(server) = NatsServer::start("nats::three_workers_answer_every_question_once") else {
        return;
    };
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(300));
    let workers = start_workers(&server, &["a", "b", "c"]);
    // A window of 16: publishing waits for answers all along, and the run still ends with every id.
    let output = finish(start_batch(
        &workspace,
        &input,
        &server,
        &["--window", "16"],
    ));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let first = summary(&output);
    assert_eq!(first["left"], 0, "{first}");
    assert_eq!(first["in_db"]["failed"], 0, "{first}");
    assert_eq!(rows_and_ids(&workspace), (300, 300));
    // Who answered what, by the names the workers were given.
    let by_worker = first["workers"].as_object().expect("answers by worker");
    assert!(
        by_worker
            .keys()
            .all(|name| ["a", "b", "c"].contains(&name.as_str())),
        "{first}"
    );
    let answered: u64 = by_worker.values().filter_map(Value::as_u64).sum();
    assert_eq!(answered, 300, "{first}");

    // Everything is stored: a rerun publishes nothing and ends at once.
    let output = finish(start_batch(&workspace, &input, &server, &[]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let again = summary(&output);
    assert_eq!(again["already_stored"], 300, "{again}");
    assert_eq!(rows_and_ids(&workspace), (300, 300));

    stop_workers(workers);
}

#[test]
fn a_worker_killed_mid_run_loses_no_question_and_stores_none_twice() {
    let _running = one_at_a_time();
    let Some(server) = NatsServer::start("nats::a_worker_killed_mid_run_loses_no_question") else {
        return;
    };
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(2000));
    let mut workers = start_workers(&server, &["a", "b", "c"]);
    let mut batch = start_batch(&workspace, &input, &server, &[]);
    wait_until_stored(&workspace, &mut batch, 300);
    // Its questions in flight are neither answered nor acknowledged: only ack_wait brings them back.
    let mut killed = workers.remove(1);
    kill_9(&mut killed);
    let output = finish(batch);
    assert_every_id_once(&workspace, &output, 2000);
    stop_workers(workers);
}

#[test]
fn a_coordinator_killed_mid_run_is_finished_by_a_rerun_with_every_id_once() {
    let _running = one_at_a_time();
    let Some(server) = NatsServer::start("nats::a_coordinator_killed_mid_run") else {
        return;
    };
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(2000));
    let workers = start_workers(&server, &["a", "b", "c"]);
    let mut batch = start_batch(&workspace, &input, &server, &[]);
    wait_until_stored(&workspace, &mut batch, 300);
    // Questions published and unanswered, answers published and not stored: all left in the streams.
    kill_9(&mut batch);
    let before = workspace.stored();
    assert!(
        before < 2000,
        "the batch finished before the kill; make it bigger"
    );
    let output = finish(start_batch(&workspace, &input, &server, &[]));
    assert_every_id_once(&workspace, &output, 2000);
    let rerun = summary(&output);
    assert!(
        rerun["already_stored"].as_u64() >= Some(before),
        "the rerun skips what was stored: {rerun}"
    );
    stop_workers(workers);
}

/// A question no worker finishes is answered `failed` once it has been delivered `--max-deliver` times, by
/// whichever worker gets the next delivery. The worker here holds every delivery of it, the last one included,
/// and is then killed: with the server's own `max_deliver` (as before), nobody was ever given the question again
/// and the batch waited forever.
#[test]
fn a_question_no_worker_finishes_is_answered_failed_after_max_deliver() {
    let _running = one_at_a_time();
    let Some(server) = NatsServer::start("nats::a_question_no_worker_finishes") else {
        return;
    };
    let workspace = Workspace::new();
    let mut lines = questions(40);
    lines.push_str("What is the news about the poison pill?\n");
    lines.push_str(&questions(9));
    let input = workspace.write("questions.txt", &lines);
    let mut stuck = worker_with(
        &server,
        "stuck",
        &["--ack-wait", "1s", "--stall-on", "poison"],
    );
    let mut batch = start_batch(&workspace, &input, &server, &["--max-deliver", "2"]);
    wait_until_stored(&workspace, &mut batch, 49);
    // Delivered at once, again after one ack_wait: by now the stuck worker holds its last delivery (or later).
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        workspace.stored(),
        49,
        "the poison question is not answered yet"
    );
    kill_9(&mut stuck);
    let healthy = worker_with(&server, "healthy", &["--ack-wait", "1s"]);
    let output = finish(batch);
    let summary = summary(&output);
    // A batch's failed answers are stored, not an exit code: the run itself succeeded.
    assert_eq!(code(&output), 0, "{summary}: {}", stderr(&output));
    assert_eq!(summary["in_db"]["ok"], 49, "{summary}");
    assert_eq!(summary["in_db"]["failed"], 1, "{summary}");
    assert_eq!(rows_and_ids(&workspace), (50, 50));
    let rows = workspace.exported();
    let poison = rows
        .iter()
        .find(|row| row["line"] == 41)
        .expect("the poison line's row");
    assert_eq!(poison["status"], "failed", "{poison}");
    assert_eq!(poison["failure"], "delivery_limit", "{poison}");
    let why = poison["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("not run: delivered "), "{poison}");
    assert!(why.contains("(the batch allows 2)"), "{poison}");
    assert_eq!(terminate(healthy), 0, "a worker stops cleanly on SIGTERM");
}

#[test]
fn a_broker_restarted_mid_run_still_ends_with_every_id_once() {
    let _running = one_at_a_time();
    let Some(mut server) = NatsServer::start("nats::a_broker_restarted_mid_run") else {
        return;
    };
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(2000));
    let workers = start_workers(&server, &["a", "b", "c"]);
    let mut batch = start_batch(&workspace, &input, &server, &[]);
    wait_until_stored(&workspace, &mut batch, 300);
    // SIGKILL, then the same port and store directory: the streams come back from disk.
    server.restart();
    assert!(
        workspace.stored() < 2000,
        "the batch finished before the restart; make it bigger"
    );
    let output = finish(batch);
    assert_every_id_once(&workspace, &output, 2000);
    stop_workers(workers);
}

#[test]
fn an_id_repeated_after_its_answer_is_stored_is_not_asked_again() {
    let _running = one_at_a_time();
    let Some(server) = NatsServer::start("nats::an_id_repeated_after_its_answer_is_stored") else {
        return;
    };
    let workspace = Workspace::new();
    // 1,200 ids, then the first 600 again: each repeat is read while its first line is still in flight or
    // just stored, and published again it would be dropped by the stream's duplicate window.
    let lines: String = (0..1800)
        .map(|n| {
            format!(
                "{{\"id\": \"q{}\", \"question\": \"What is the news about rust {n}?\"}}\n",
                n % 1200
            )
        })
        .collect();
    let input = workspace.write("questions.jsonl", &lines);
    let workers = start_workers(&server, &["a", "b"]);
    let output = finish(start_batch(&workspace, &input, &server, &[]));
    assert_every_id_once(&workspace, &output, 1200);
    // A repeat read after its id was stored is skipped by the reader (already stored); one read before, a
    // duplicate: each of the 600 is one or the other.
    let summary = summary(&output);
    let repeats = summary["duplicates"].as_u64().unwrap_or(0)
        + summary["already_stored"].as_u64().unwrap_or(0);
    assert_eq!(repeats, 600, "{summary}");
    stop_workers(workers);
}

/// Two input files both have a line 1: before batches had keys, a second batch within the stream's duplicate
/// window (two minutes) had every question dropped as a repeat of the first's and waited forever, and two at
/// once took each other's answers.
#[test]
fn batches_on_one_server_one_after_another_or_at_once_keep_their_own_questions_and_answers() {
    let _running = one_at_a_time();
    let Some(server) = NatsServer::start("nats::batches_on_one_server_keep_their_own") else {
        return;
    };
    // Each line its own question, and one the knowledge base answers: a question nothing answers is stored
    // failed (nothing found), which is not what this test is about.
    let about = |topic: &str| -> String {
        (1..=150)
            .map(|n| format!("Why does the GIL matter to {topic} programmers, take {n}?\n"))
            .collect()
    };
    let workers = start_workers(&server, &["a", "b"]);
    let first = Workspace::new();
    let input = first.write("questions.txt", &about("rust"));
    let output = finish(start_batch(&first, &input, &server, &[]));
    assert_every_id_once(&first, &output, 150);

    let (second, third) = (Workspace::new(), Workspace::new());
    let second_input = second.write("questions.txt", &about("python"));
    let third_input = third.write("questions.txt", &about("haskell"));
    let second_batch = start_batch(&second, &second_input, &server, &[]);
    let third_batch = start_batch(&third, &third_input, &server, &[]);
    let (second_output, third_output) = (finish(second_batch), finish(third_batch));
    assert_every_id_once(&second, &second_output, 150);
    assert_every_id_once(&third, &third_output, 150);
    for (workspace, topic) in [(&first, "rust"), (&second, "python"), (&third, "haskell")] {
        for row in workspace.exported() {
            let question = row["question"].as_str().unwrap_or_default();
            let line = row["line"].as_u64().unwrap_or_default();
            assert_eq!(
                question,
                format!("Why does the GIL matter to {topic} programmers, take {line}?"),
                "each database holds its own questions' answers: {row}"
            );
        }
    }
    stop_workers(workers);
}

/// The engine and sources flags say how questions are answered, and with `--nats` the workers answer them: given
/// to the coordinator they changed nothing, silently. Now they are refused before anything is made; a variable
/// set for the workers on the same machine is not.
#[test]
fn batch_with_nats_refuses_the_workers_flags_but_not_their_variables() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(3));
    // FAST: --inference-cost and three --fault.
    let output = workspace.batch(&input, &["--nats", "nats://127.0.0.1:9", "--workers", "2"]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "--inference-cost, --fault, --workers cannot be used with --nats: the workers answer the \
             questions, so give them to `tributary worker`"
        ),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("tributary batch"),
        "{}",
        stderr(&output)
    );
    assert!(!workspace.path("answers.db").exists());

    // From the environment they pass; nothing listens on port 9, so the run fails to connect (exit 1).
    let output = tributary()
        .arg("batch")
        .arg(&input)
        .arg("--db")
        .arg(workspace.path("answers.db"))
        .args(["--nats", "nats://127.0.0.1:9", "--quiet"])
        .env("TRIBUTARY_WORKERS", "2")
        .env("TRIBUTARY_INFERENCE_COST", "1ms")
        .output()
        .expect("run tributary batch");
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("connect to NATS"),
        "{}",
        stderr(&output)
    );
}

/// A loopback port that accepts connections and never writes a byte: neither a NATS server nor a refusal. Stops
/// accepting when dropped.
struct SilentServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let accepting = std::thread::spawn(move || {
            // Held open, never written to, until the server is dropped.
            let mut held = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            stop,
            accepting: Some(accepting),
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// Waits for `child` at most `within`; its output, or `None` (and the child killed) when it is still running.
fn output_within(mut child: Child, within: Duration) -> Option<Output> {
    let give_up = Instant::now() + within;
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("the child's output"))
}

/// Sends SIGTERM to `child` with kill(1).
fn send_sigterm(child: &Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
}

/// `worker --nats URL` or `batch --nats URL` (`command`), started in the background against `url`.
fn start_against(command: &str, workspace: &Workspace, input: &Path, url: &str) -> Child {
    let mut run = tributary();
    if command == "worker" {
        run.args(["worker", "--nats", url, "--name", "w"])
            .args(FAST);
    } else {
        run.arg("batch")
            .arg(input)
            .arg("--db")
            .arg(workspace.path("answers.db"))
            .args(["--nats", url, "--quiet"]);
    }
    run.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start tributary {command}: {error}"))
}

/// Something that accepts TCP and never sends NATS's INFO greeting: both commands waited for it for ever, deaf
/// to SIGTERM and SIGINT. Now the handshake is bounded (5 s): exit 1, saying what was missing, and a failed
/// `batch --nats` leaves no database behind (it used to leave an initialised, empty one) and changes none that
/// was there.
#[test]
fn a_server_that_never_greets_fails_both_commands_within_seconds_and_leaves_no_database() {
    let silent = SilentServer::start();
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(3));
    for command in ["worker", "batch"] {
        let started = Instant::now();
        let child = start_against(command, &workspace, &input, &silent.url());
        let output = output_within(child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{command} still waits for a greeting after 20 s"));
        let took = started.elapsed();
        let text = stderr(&output);
        assert_eq!(code(&output), 1, "{command}: {text}");
        assert!(
            text.contains(&format!(
                "connect to NATS at {}: no NATS greeting within 5s: is it a NATS server?",
                silent.url()
            )),
            "{command}: {text}"
        );
        // The bound is 5 s; anything near the old behaviour (for ever) is far beyond this.
        assert!(took < Duration::from_secs(15), "{command} took {took:?}");
        eprintln!("{command}: no greeting reported after {took:?}");
    }
    assert!(
        !workspace.path("answers.db").exists(),
        "a failed batch --nats leaves no database behind"
    );

    // A database that was there is left as it was, byte for byte.
    let output = workspace.batch(&input, &["--quiet"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let before = std::fs::read(workspace.path("answers.db")).expect("the database");
    let output = output_within(
        tributary()
            .arg("batch")
            .arg(&input)
            .arg("--db")
            .arg(workspace.path("answers.db"))
            .args(["--nats", &silent.url(), "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tributary batch --nats"),
        Duration::from_secs(20),
    )
    .expect("the batch ends");
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let after = std::fs::read(workspace.path("answers.db")).expect("the database");
    assert!(before == after, "the existing database was changed");
}

/// While they wait for the greeting, one SIGTERM ends both commands at once (it used to be ignored, twice).
#[test]
fn one_sigterm_ends_worker_and_batch_while_they_wait_for_a_greeting() {
    let silent = SilentServer::start();
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(3));
    for command in ["worker", "batch"] {
        let child = start_against(command, &workspace, &input, &silent.url());
        std::thread::sleep(Duration::from_secs(1));
        let signalled = Instant::now();
        send_sigterm(&child);
        let output = output_within(child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{command} ignored SIGTERM for 20 s"));
        let took = signalled.elapsed();
        let text = stderr(&output);
        // Not the connect timeout's failure: the signal ended the wait.
        assert!(
            text.contains("SIGTERM: stopped while connecting to NATS"),
            "{command}: {text}"
        );
        assert!(!text.contains("no NATS greeting"), "{command}: {text}");
        // A worker stopped by a signal exits 0; an interrupted batch 143, as after any SIGTERM.
        let expected = if command == "worker" { 0 } else { 143 };
        assert_eq!(code(&output), expected, "{command}: {text}");
        assert!(took < Duration::from_secs(5), "{command} took {took:?}");
        eprintln!("{command}: ended {took:?} after SIGTERM");
    }
    assert!(!workspace.path("answers.db").exists());
}

/// `--nats ''` reached the client and came back as a DNS failure (exit 1): it is a usage error.
#[test]
fn an_empty_or_malformed_nats_url_is_a_usage_error() {
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(1));
    for url in ["", "   ", "http://127.0.0.1:4222", "nats://"] {
        let worker = tributary()
            .args(["worker", "--nats", url])
            .output()
            .expect("run tributary worker");
        let batch = tributary()
            .arg("batch")
            .arg(&input)
            .arg("--db")
            .arg(workspace.path("answers.db"))
            .args(["--nats", url])
            .output()
            .expect("run tributary batch");
        for (command, output) in [("worker", worker), ("batch", batch)] {
            let text = stderr(&output);
            assert_eq!(code(&output), 2, "{command} --nats {url:?}: {text}");
            assert!(
                text.contains("a NATS URL looks like nats://HOST:PORT, e.g. nats://127.0.0.1:4222"),
                "{command} --nats {url:?}: {text}"
            );
        }
    }
    assert!(!workspace.path("answers.db").exists());
}

/// The broker killed mid-run, then one SIGTERM to each: the coordinator used to say "the grace period is over"
/// and keep running (retrying its publishes for a minute); now it ends after `--grace` with what it stored
/// committed, and a rerun resumes. The worker, whose held answers cannot be published, hands them back, says
/// so on its last line, and exits 1: with the broker gone it did not do its job.
#[test]
fn with_the_broker_killed_one_sigterm_ends_coordinator_and_worker() {
    let _running = one_at_a_time();
    let Some(mut server) = NatsServer::start("nats::with_the_broker_killed_one_sigterm_ends")
    else {
        return;
    };
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(200));
    // Slow inference: whatever the moment of the kill, the worker holds questions it is still answering.
    let slow = tributary()
        .args(["worker", "--nats", &server.url(), "--name", "slow"])
        .args([
            "--ack-wait",
            "30s",
            "--workers",
            "1",
            "--inference-cost",
            "400ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker");
    let mut batch = start_batch(&workspace, &input, &server, &["--grace", "2s"]);
    wait_until_stored(&workspace, &mut batch, 3);
    server.kill();
    let before = workspace.stored();
    let signalled = Instant::now();
    send_sigterm(&batch);
    send_sigterm(&slow);
    let batch_output = output_within(batch, Duration::from_secs(20))
        .expect("the coordinator still runs 20 s after one SIGTERM");
    let batch_took = signalled.elapsed();
    let worker_output = output_within(slow, Duration::from_secs(30))
        .expect("the worker still runs 30 s after one SIGTERM");
    let worker_took = signalled.elapsed();
    eprintln!(
        "broker killed at {before} stored: coordinator ended {batch_took:?} after SIGTERM (--grace 2s), worker \
         {worker_took:?}"
    );

    let text = stderr(&batch_output);
    assert_eq!(code(&batch_output), 143, "{text}");
    assert!(text.contains("the grace period is over"), "{text}");
    assert!(
        !text.contains("did not end within"),
        "ended on its own: {text}"
    );
    // The grace (2 s) and a few seconds more: it used to be alive a minute later.
    assert!(
        batch_took < Duration::from_secs(10),
        "took {batch_took:?}: {text}"
    );
    let interrupted = summary(&batch_output);
    assert_eq!(interrupted["interrupted"], "SIGTERM", "{interrupted}");
    let stored = workspace.stored();
    assert!(
        stored >= before,
        "what was stored stays: {stored} < {before}"
    );
    assert!(
        stored < 200,
        "the batch finished before the kill; make it slower"
    );

    let text = stderr(&worker_output);
    assert_eq!(code(&worker_output), 1, "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("questions it could not publish; they will be redelivered to another worker"),
        "{text}"
    );
    assert!(last.contains("worker slow handed back "), "{text}");

    // Readable and resumable: with the broker back, a rerun stores every id once.
    server.restart();
    let workers = start_workers(&server, &["a"]);
    let output = finish(start_batch(&workspace, &input, &server, &[]));
    assert_every_id_once(&workspace, &output, 200);
    let rerun = summary(&output);
    assert!(
        rerun["already_stored"].as_u64() >= Some(stored),
        "the rerun skips what was stored: {rerun}"
    );
    stop_workers(workers);
}
