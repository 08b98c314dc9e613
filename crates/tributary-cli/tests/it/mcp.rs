//! The Model Context Protocol, both ways, against code no one here wrote: the official Python SDK's client drives
//! `tributary mcp` (stdio) and `serve`'s `/mcp` (streamable HTTP); servers written with its MCPServer (FastMCP
//! before mcp 2) are asked as sources, well-behaved or not. And the protocol's bad input, raw.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{FAST, code, missing, source, stderr, stdout, tributary};
use crate::serve::Server;

/// The test scripts: the SDK's client and a server.
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");
const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/server.py");

/// A Python with the official MCP SDK (`TRIBUTARY_MCP_PYTHON`, else `python3` on PATH, if it imports `mcp`), or
/// `None` after a visible skip (a failure under `TRIBUTARY_REQUIRE_EXTERNAL=1`).
fn mcp_python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("TRIBUTARY_MCP_PYTHON")
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let imports = Command::new(&python)
        .args(["-c", "import mcp.server.mcpserver, mcp.client.stdio"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if imports {
        Some(python)
    } else {
        missing(
            "the official MCP Python SDK (TRIBUTARY_MCP_PYTHON or python3 with `mcp`)",
            test,
            "pip install mcp==2.3.0",
        );
        None
    }
}

/// Runs the SDK's client script with `args`; its JSON line of what it saw.
fn client(python: &Path, args: &[&str]) -> Value {
    let output = Command::new(python)
        .arg(CLIENT)
        .args(args)
        .output()
        .expect("run the MCP client");
    assert!(
        output.status.success(),
        "the Python SDK's client failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().expect("a line")).expect("one JSON line")
}

/// What the client checks (client.py): tools and schemas, the resource, an ask with progress, a bad argument,
/// a faulted source, a cancelled ask and the next one after it.
fn assert_client_saw(seen: &Value) {
    assert_eq!(seen["tools"], json!(["ask", "compare"]), "{seen}");
    assert_eq!(seen["sources"], json!(["weather", "news", "kb"]), "{seen}");
    assert_eq!(seen["faulted_news"], "failed", "{seen}");
    assert!(
        seen["progress"]
            .as_array()
            .is_some_and(|progress| progress.len() >= 4),
        "{seen}"
    );
    // The cancelled ask's source hangs for a minute: the client got control back when it cancelled.
    assert!(
        seen["cancelled_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 30_000),
        "{seen}"
    );
    assert_eq!(seen["after_cancel"], "ok", "{seen}");
}

#[test]
fn the_python_sdk_lists_and_calls_ask_over_stdio_with_progress_and_cancellation() {
    let Some(python) = mcp_python("the MCP stdio interoperability test") else {
        return;
    };
    let binary = env!("CARGO_BIN_EXE_tributary");
    let mut args = vec!["stdio", binary, "mcp"];
    args.extend(FAST);
    let seen = client(&python, &args);
    assert_client_saw(&seen);
}

#[test]
fn the_python_sdk_lists_and_calls_ask_over_http_at_serve_s_mcp() {
    let Some(python) = mcp_python("the MCP streamable HTTP interoperability test") else {
        return;
    };
    let server = Server::start(&[]);
    let seen = client(
        &python,
        &["http", &format!("http://{}/mcp", server.address)],
    );
    assert_client_saw(&seen);
}

#[test]
fn an_mcp_ask_is_refused_at_once_when_serve_is_full() {
    let Some(python) = mcp_python("the MCP admission test") else {
        return;
    };
    let server = Server::start(&["--max-in-flight", "1"]);
    // One ask holds the only place: its news source hangs until its 8 s deadline.
    let address = server.address.clone();
    let holder = std::thread::spawn(move || {
        crate::serve::request_at(
            &address,
            "POST",
            "/v1/ask",
            r#"{"question": "What is the news about rust?", "faults": {"news": "hang"}, "deadline_ms": 8000, "per_source_timeout_ms": 8000}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = client(
        &python,
        &["http-busy", &format!("http://{}/mcp", server.address)],
    );
    assert!(
        seen["refused"]
            .as_str()
            .is_some_and(|message| message.contains("overloaded")),
        "{seen}"
    );
    assert!(
        seen["refused_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 3000),
        "refused at once: {seen}"
    );
    let (status, _, _) = holder.join().expect("the holding ask");
    assert_eq!(status, 200);
}

/// A sources file asking the test server's `tools` over stdio, each source its own process (`env` differs), all
/// writing their pids and counts to `state`.
fn stdio_sources(python: &Path, state: &Path, tools: &[&str], timeout: &str) -> PathBuf {
    let mut text = String::new();
    for tool in tools {
        text.push_str(&format!(
            "[[source]]\nname = \"{tool}\"\nkind = \"mcp\"\ncommand = [{python:?}, {SERVER:?}, \"stdio\"]\n\
             env = {{ TRIBUTARY_TEST_STATE = {state:?}, ONE_PROCESS_PER_SOURCE = \"{tool}\" }}\n\
             tool = \"{tool}\"\ntimeout = \"{timeout}\"\n\n",
            python = python.display().to_string(),
            state = state.display().to_string(),
        ));
    }
    let path = state.join("sources.toml");
    std::fs::write(&path, text).expect("write the sources file");
    path
}

/// The pids the test servers wrote.
fn server_pids(state: &Path) -> Vec<u32> {
    std::fs::read_to_string(state.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for its parent).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits up to 5 s for every pid to be gone (a killed child is reaped by init once its parent has exited).
fn assert_all_gone(pids: &[u32]) {
    let until = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| alive(*pid)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<&u32> = pids.iter().filter(|pid| alive(**pid)).collect();
    assert!(
        left.is_empty(),
        "MCP server processes outlived tributary: {left:?}"
    );
}

#[test]
fn an_ask_fans_out_to_mcp_servers_and_contains_every_failure_within_the_deadline() {
    let Some(python) = mcp_python("the MCP sources test") else {
        return;
    };
    let state = tempfile::tempdir().expect("a state directory");
    let tools = [
        "search",
        "docs",
        "fail",
        "hang",
        "crash_once",
        "write",
        "garbage",
        "flood",
        "huge",
    ];
    let sources = stdio_sources(&python, state.path(), &tools, "2s");
    let output = tributary()
        .args([
            "ask",
            "--json",
            "--inference-cost",
            "20ms",
            "--deadline",
            "12s",
            "--per-source-timeout",
            "10s",
        ])
        .arg("--config")
        .arg(&sources)
        .arg("Why is rust fast?")
        .output()
        .expect("run tributary ask");
    let report: Value = serde_json::from_str(&stdout(&output)).expect("one JSON report");
    assert_eq!(code(&output), 0, "{report}\n{}", stderr(&output));
    assert_eq!(report["status"], "degraded", "{report}");
    let status = |name: &str| source(&report, name)["status"].clone();
    let failure = |name: &str| source(&report, name)["failure"].clone();
    for answered in ["search", "docs", "garbage", "flood"] {
        assert_eq!(
            status(answered),
            "ok",
            "{answered}: {}",
            source(&report, answered)
        );
    }
    // An error result, not retried.
    assert_eq!(failure("fail"), "tool_error", "{}", source(&report, "fail"));
    assert_eq!(source(&report, "fail")["attempts"], 1);
    // Never answers: each attempt bounded by the source's 2 s timeout, all by its 10 s.
    assert_eq!(status("hang"), "timed_out", "{}", source(&report, "hang"));
    // The process died mid-call: started again, and the retry answered (the tool is read-only).
    assert_eq!(
        status("crash_once"),
        "ok",
        "{}",
        source(&report, "crash_once")
    );
    assert_eq!(
        std::fs::read_to_string(state.path().join("crash_once")).expect("its count"),
        "2"
    );
    // Not read-only: the broken call is not sent again.
    assert_eq!(
        failure("write"),
        "transport",
        "{}",
        source(&report, "write")
    );
    assert_eq!(
        std::fs::read_to_string(state.path().join("write")).expect("its count"),
        "1"
    );
    // 3 MB against the 1 MiB default limit.
    assert_eq!(
        failure("huge"),
        "body_too_large",
        "{}",
        source(&report, "huge")
    );
    // The deadline held.
    assert!(
        report["elapsed_ms"].as_f64().expect("elapsed") <= 12_000.0 + 500.0,
        "{report}"
    );
    // The servers' stderr went to the log, not the terminal.
    assert!(
        !stderr(&output).contains("test server"),
        "{}",
        stderr(&output)
    );
    let pids = server_pids(state.path());
    assert!(
        pids.len() >= tools.len(),
        "one process per source, one more restarted: {pids:?}"
    );
    assert_all_gone(&pids);
}

#[test]
fn sigterm_during_an_ask_stops_the_mcp_servers_with_it() {
    let Some(python) = mcp_python("the MCP SIGTERM test") else {
        return;
    };
    let state = tempfile::tempdir().expect("a state directory");
    let sources = stdio_sources(&python, state.path(), &["hang", "search"], "60s");
    let mut child = tributary()
        .args([
            "ask",
            "--deadline",
            "60s",
            "--per-source-timeout",
            "60s",
            "--config",
        ])
        .arg(&sources)
        .arg("Why is rust fast?")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tributary ask");
    let until = Instant::now() + Duration::from_secs(30);
    while server_pids(state.path()).len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = server_pids(state.path());
    assert_eq!(pids.len(), 2, "both servers started");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exited = child.wait().expect("tributary exits");
    assert_eq!(exited.code(), Some(143), "{exited:?}");
    assert_all_gone(&pids);
}

#[test]
fn a_streamable_http_mcp_server_is_a_source_and_sources_check_lists_its_tools() {
    let Some(python) = mcp_python("the MCP HTTP source test") else {
        return;
    };
    let port = crate::harness::free_port();
    let mut server = Command::new(&python)
        .args([SERVER, "http", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Python MCP server");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = tempfile::tempdir().expect("a directory");
    let sources = dir.path().join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[[source]]\nname = \"facts\"\nkind = \"mcp\"\nurl = \"{url}\"\ntool = \"search\"\n\
             arguments = {{ question = \"{{keywords}}\" }}\n\n\
             [[source]]\nname = \"missing\"\nkind = \"mcp\"\nurl = \"{url}\"\ntool = \"no_such_tool\"\n"
        ),
    )
    .expect("write the sources file");
    let output = tributary()
        .args(["ask", "--json", "--inference-cost", "20ms", "--config"])
        .arg(&sources)
        .arg("Why is rust fast?")
        .output()
        .expect("run tributary ask");
    let report: Value = serde_json::from_str(&stdout(&output)).expect("one JSON report");
    assert_eq!(source(&report, "facts")["status"], "ok", "{report}");
    assert!(
        report["answer"]
            .as_str()
            .expect("an answer")
            .contains("ownership"),
        "{report}"
    );
    let missing = source(&report, "missing");
    assert_eq!(missing["failure"], "tool_error", "{missing}");
    assert!(
        missing["error"]
            .as_str()
            .expect("why")
            .contains("no such tool; it has"),
        "{missing}"
    );

    let check = tributary()
        .args(["sources", "--check"])
        .arg(&sources)
        .output()
        .expect("run tributary sources --check");
    let listed = stdout(&check);
    assert!(
        listed.contains("* search  (read-only: retried, hedged, cached)"),
        "{listed}"
    );
    assert!(
        listed.contains("- write  (not read-only: called once)"),
        "{listed}"
    );
    // The second source shares the server: started once, listed once.
    assert_eq!(listed.matches(" search  (").count(), 1, "{listed}");
    assert!(listed.contains("(the tools listed above)"), "{listed}");
    assert_eq!(code(&check), 1, "a source's tool is missing");
    assert!(
        stderr(&check).contains("the server has no tool `no_such_tool`"),
        "{}",
        stderr(&check)
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// `tributary mcp` fed raw lines: what it answers, one JSON-RPC message per line.
struct RawSession {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl RawSession {
    fn start() -> Self {
        let mut child = tributary()
            .arg("mcp")
            .args(FAST)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tributary mcp");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, lines }
    }

    fn send(&mut self, line: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(line).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    /// The next message; every line on stdout must be one.
    fn receive(&mut self) -> Value {
        let line = self.lines.next().expect("a line").expect("utf-8");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON-RPC ({error}): {line}"))
    }

    fn call(&mut self, id: u64, name: &str, arguments: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}});
        self.send(request.to_string().as_bytes());
        self.receive()
    }
}

#[test]
fn bad_json_rpc_on_stdin_gets_clear_errors_and_the_session_goes_on() {
    let mut session = RawSession::start();
    // Not JSON: a parse error each, without an id (JSON-RPC 2.0).
    session.send(b"this is not json");
    session.send(&[0xff, 0x00, 0xfe]);
    for _ in 0..2 {
        let error = session.receive();
        assert_eq!(error["error"]["code"], -32700, "{error}");
        assert!(error.get("id").is_none(), "{error}");
    }
    // JSON, but not a message: an invalid request, with its id.
    session.send(br#"{"jsonrpc": "2.0", "id": 40, "method": "initialize", "params": 3}"#);
    let invalid = session.receive();
    assert_eq!(invalid["error"]["code"], -32600, "{invalid}");
    assert_eq!(invalid["id"], 40, "{invalid}");
    session.send(br#"{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}"#);
    let initialized = session.receive();
    assert_eq!(
        initialized["result"]["serverInfo"]["name"], "tributary",
        "{initialized}"
    );
    session.send(br#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#);

    let unknown = session.call(2, "no_such_tool", json!({}));
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not found")),
        "{unknown}"
    );
    let wrong_shape = session.call(3, "ask", json!({"question": 7}));
    let said = wrong_shape.to_string();
    assert!(said.contains("expected a string"), "{said}");
    let unknown_field = session.call(
        4,
        "ask",
        json!({"question": "What is the GIL?", "bogus": 1}),
    );
    assert!(
        unknown_field.to_string().contains("unknown field `bogus`"),
        "{unknown_field}"
    );
    // 10 MB of question: refused by the question's own limit, the process unharmed.
    let huge = session.call(5, "ask", json!({"question": "x".repeat(10 * 1024 * 1024)}));
    assert!(
        huge["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("over the limit of 4096 bytes")),
        "{huge}"
    );
    let bad_fault = session.call(
        6,
        "ask",
        json!({"question": "What is the GIL?", "faults": {"moon": "hang"}}),
    );
    assert!(
        bad_fault
            .to_string()
            .contains("no source is called \\\"moon\\\""),
        "{bad_fault}"
    );
    // A cut line (a parse error), then a ping: answered.
    session.send(br#"{"jsonrpc": "2.0", "id": 7, "method":"#);
    assert_eq!(session.receive()["error"]["code"], -32700);
    session.send(br#"{"jsonrpc": "2.0", "id": 8, "method": "ping"}"#);
    let pong = session.receive();
    assert_eq!(pong["id"], 8, "{pong}");
    let asked = session.call(9, "ask", json!({"question": "What is the GIL?"}));
    assert_eq!(
        asked["result"]["structuredContent"]["status"], "ok",
        "{asked}"
    );
    drop(session.child.stdin.take());
    let exited = session.child.wait().expect("exits when stdin closes");
    assert!(exited.success(), "{exited:?}");
}

/// The MCP Inspector's CLI (npm `@modelcontextprotocol/inspector`, `tests/mcp/node_modules`), or `None` after a
/// visible skip.
fn inspector(test: &str) -> Option<PathBuf> {
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/node_modules/.bin/mcp-inspector");
    let found = std::env::var_os("TRIBUTARY_MCP_INSPECTOR")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| installed.is_file().then_some(installed));
    if found.is_none() {
        missing(
            "the MCP Inspector (TRIBUTARY_MCP_INSPECTOR or tests/mcp/node_modules)",
            test,
            "npm ci --prefix crates/tributary-cli/tests/mcp",
        );
    }
    found
}

/// Runs the Inspector's CLI on `target` (a command and its arguments, or a URL) with `args`; its JSON output.
fn inspect(inspector: &Path, target: &[&str], args: &[&str]) -> Value {
    let scratch = tempfile::tempdir().expect("a directory for its catalog");
    let output = Command::new(inspector)
        .arg("--cli")
        .args(target)
        .args(args)
        // Its catalog of servers, which it would otherwise write under the home directory.
        .env("MCP_CATALOG_PATH", scratch.path().join("catalog.json"))
        .output()
        .expect("run the MCP Inspector");
    assert!(
        output.status.success(),
        "the Inspector failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the Inspector")
}

#[test]
fn the_mcp_inspector_lists_and_calls_ask_over_stdio_and_http() {
    let Some(inspector) = inspector("the MCP Inspector test") else {
        return;
    };
    let binary = env!("CARGO_BIN_EXE_tributary");
    let mut stdio = vec![binary, "mcp"];
    stdio.extend(FAST);
    let server = Server::start(&[]);
    let url = format!("http://{}/mcp", server.address);
    for target in [stdio, vec![url.as_str()]] {
        let tools = inspect(&inspector, &target, &["--method", "tools/list"]);
        let names: Vec<&str> = tools["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|tool| tool["name"].as_str())
            .collect();
        assert_eq!(names, ["ask", "compare"], "{tools}");
        let asked = inspect(
            &inspector,
            &target,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "ask",
                "--tool-arg",
                "question=What is the GIL?",
            ],
        );
        assert_eq!(asked["structuredContent"]["status"], "ok", "{asked}");
        assert!(
            asked["content"][0]["text"]
                .as_str()
                .is_some_and(|text| text.contains("GIL")),
            "{asked}"
        );
        let sources = inspect(
            &inspector,
            &target,
            &["--method", "resources/read", "--uri", "tributary://sources"],
        );
        assert!(
            sources["contents"][0]["text"]
                .as_str()
                .is_some_and(|text| text.contains("\"kb\"")),
            "{sources}"
        );
    }
}
