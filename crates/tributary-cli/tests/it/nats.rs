//! `tributary batch --nats` and `tributary worker`: the real binary against a real `nats-server -js`.

use std::process::{Child, Stdio};

use crate::batch::{FAST, Workspace, summary};
use crate::harness::{NatsServer, code, stderr, tributary};

/// Starts a worker against `server`, quiet, with the fast engine flags and a short `ack_wait`.
fn worker(server: &NatsServer, name: &str) -> Child {
    tributary()
        .args(["worker", "--nats", &server.url(), "--name", name, "--quiet"])
        .args(["--ack-wait", "3s"])
        .args(FAST)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
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
    let Some(server) = NatsServer::start("nats::three_workers_answer_every_question_once") else {
        return;
    };
    let workspace = Workspace::new();
    let input = workspace.write("questions.txt", &questions(300));
    let workers: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|name| worker(&server, name))
        .collect();
    let output = workspace.batch(&input, &["--nats", &server.url(), "--json", "--quiet"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let first = summary(&output);
    assert_eq!(first["left"], 0, "{first}");
    assert_eq!(first["in_db"]["failed"], 0, "{first}");
    assert_eq!(rows_and_ids(&workspace), (300, 300));

    // Everything is stored: a rerun publishes nothing and ends at once.
    let output = workspace.batch(&input, &["--nats", &server.url(), "--json", "--quiet"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let again = summary(&output);
    assert_eq!(again["already_stored"], 300, "{again}");
    assert_eq!(rows_and_ids(&workspace), (300, 300));

    for child in workers {
        assert_eq!(terminate(child), 0, "a worker stops cleanly on SIGTERM");
    }
}
