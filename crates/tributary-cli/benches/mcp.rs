//! Benchmark: what the Model Context Protocol costs, both ways.
//!
//! Run with `cargo bench -p tributary-cli --bench mcp` (about a minute; `-- --quick` for a short run that only
//! checks the benchmark works). It drives the release binary as a user would.
//!
//! - **The agent as an MCP tool.** The same questions asked three ways, one after the other, on the embedded
//!   services (every source 50 ms, inference 5 ms): in-process (`tributary ask --json Q1 Q2 ...`: each report's
//!   own `elapsed_ms`), through `tributary mcp` over stdio and through `tributary serve`'s `/mcp`, both called by
//!   tributary's own MCP client (`tributary_mcp::McpConnections`, rmcp). For a call, the overhead is its wall time
//!   at the client less the `elapsed_ms` its report gives: the protocol, the transport, the admission and the
//!   progress, and nothing the ask itself did. Medians, after one warm-up call.
//! - **MCP servers as sources.** The same questions over three `mcp` sources (each its own server process, the
//!   Python SDK's MCPServer of `tests/mcp/server.py`, whose `search` tool answers at once) and over three HTTP
//!   sources (the simulated news service, latency 0, on loopback: an in-memory search): each question's I/O phase, the longest
//!   `fetch_ms` of its three sources, median; and the ratio. It needs the MCP Python SDK (`TRIBUTARY_MCP_PYTHON`
//!   or `python3` with `mcp`); without it that part says so and is skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Map, Value, json};
use tributary_agent::Topic;
use tributary_agent::sources::{McpServer, McpServers, McpTool};
use tributary_mcp::McpConnections;

/// The environment variables that would give the binary's flags other values than the benchmark's.
const FLAG_VARIABLES: &[&str] = &[
    "TRIBUTARY_CONFIG",
    "TRIBUTARY_DEADLINE",
    "TRIBUTARY_EXECUTOR",
    "TRIBUTARY_INFERENCE_COST",
    "TRIBUTARY_PER_SOURCE_TIMEOUT",
    "TRIBUTARY_SOURCES",
    "TRIBUTARY_WORKERS",
    "TRIBUTARY_MODEL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
];

/// The engine of the first part: every source 50 ms, inference 5 ms.
const ENGINE: &[&str] = &[
    "--inference-cost",
    "5ms",
    "--fault",
    "weather=latency:50ms",
    "--fault",
    "news=latency:50ms",
    "--fault",
    "kb=latency:50ms",
];

const QUESTIONS: &[&str] = &[
    "What is the weather in Paris and the news about rust?",
    "Why does the GIL matter?",
    "What is the weather in Tokyo?",
    "What is the news about climate?",
    "How do subinterpreters run in parallel?",
    "What is the weather in Lagos and the news about markets?",
    "What is structured concurrency?",
    "What is the news about elections?",
];

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let rounds = if quick { 8 } else { 40 };
    let binary = release_binary();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    println!("questions per path: {rounds} (after one warm-up)");

    let in_process = ask_in_process(&binary, rounds);
    let connections = McpConnections::new();
    let stdio = McpServer::Command {
        argv: [binary.display().to_string(), "mcp".to_owned()]
            .into_iter()
            .chain(ENGINE.iter().map(|flag| (*flag).to_owned()))
            .collect(),
        env: Vec::new(),
        cwd: None,
    };
    let through_stdio = runtime.block_on(ask_through(&connections, "stdio", stdio, rounds));
    let (mut serve, address) = start_serve(&binary);
    let http = McpServer::Url(format!("http://{address}/mcp").parse().expect("a URL"));
    let through_http = runtime.block_on(ask_through(&connections, "http", http, rounds));
    runtime.block_on(connections.close());
    let _ = serve.kill();
    let _ = serve.wait();

    println!();
    println!("the agent as an MCP tool (median of {rounds} asks):");
    println!(
        "  in-process ask            {:>8.2} ms  (the report's elapsed_ms)",
        median(&in_process)
    );
    for (name, calls) in [
        ("stdio", &through_stdio),
        ("streamable HTTP", &through_http),
    ] {
        let walls: Vec<f64> = calls.iter().map(|call| call.wall_ms).collect();
        let overheads: Vec<f64> = calls
            .iter()
            .map(|call| call.wall_ms - call.elapsed_ms)
            .collect();
        println!(
            "  through MCP {name:<14}{:>8.2} ms  at the client; overhead {:.2} ms per ask (p90 {:.2} ms)",
            median(&walls),
            median(&overheads),
            percentile(&overheads, 0.9)
        );
    }

    println!();
    match mcp_python() {
        None => println!(
            "MCP servers as sources: skipped: no Python with the MCP SDK (TRIBUTARY_MCP_PYTHON, or pip install mcp==2.3.0)"
        ),
        Some(python) => {
            let (mcp, http) = sources_compared(&binary, &python, rounds);
            println!(
                "an ask over 3 sources, its I/O phase (the longest fetch of the three), median of {rounds}:"
            );
            println!(
                "  3 HTTP sources (the simulated news service)     {:>8.2} ms",
                median(&http)
            );
            println!(
                "  3 MCP sources (stdio, the Python SDK's server)  {:>8.2} ms",
                median(&mcp)
            );
            println!(
                "  ratio MCP / HTTP: {:.2} (p90: {:.2} ms against {:.2} ms)",
                median(&mcp) / median(&http),
                percentile(&mcp, 0.9),
                percentile(&http, 0.9)
            );
        }
    }
}

/// `target/release/tributary`, built now.
fn release_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "tributary-cli", "--quiet"])
        .current_dir(&root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "the release build failed");
    root.join("target/release/tributary")
}

fn tributary(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for variable in FLAG_VARIABLES {
        command.env_remove(variable);
    }
    command
        .env("TRIBUTARY_CONFIG_FILE", "")
        .env("NO_COLOR", "1");
    command
}

/// The questions of `rounds` asks, after one warm-up question; each different, so that none is answered from
/// the cache of another (the simulated sources cache their answers).
fn questions(rounds: usize) -> Vec<String> {
    QUESTIONS
        .iter()
        .cycle()
        .take(rounds + 1)
        .enumerate()
        .map(|(round, question)| format!("{question} (round {round})"))
        .collect()
}

/// Each report's `elapsed_ms` of `tributary ask --json` over the questions, the first (warm-up) left out.
fn ask_in_process(binary: &Path, rounds: usize) -> Vec<f64> {
    let output = tributary(binary)
        .args(["ask", "--json"])
        .args(ENGINE)
        .args(questions(rounds))
        .output()
        .expect("run tributary ask");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            let report: Value = serde_json::from_str(line).expect("a JSON report");
            report["elapsed_ms"].as_f64().expect("elapsed_ms")
        })
        .collect()
}

/// One call through MCP: its wall time at the client and its report's own time.
struct Call {
    wall_ms: f64,
    elapsed_ms: f64,
}

async fn ask_through(
    connections: &McpConnections,
    name: &str,
    server: McpServer,
    rounds: usize,
) -> Vec<Call> {
    let tool = McpTool {
        server,
        tool: "ask".to_owned(),
        arguments: Map::new(),
        topic: Topic::Knowledge,
    };
    let mut calls = Vec::new();
    for (round, question) in questions(rounds).into_iter().enumerate() {
        let arguments = json!({ "question": question })
            .as_object()
            .cloned()
            .expect("an object");
        // The first call starts the server (stdio) and opens the session: the warm-up.
        let started = Instant::now();
        let result = connections
            .call(name, &tool, arguments, 16 * 1024 * 1024)
            .await
            .unwrap_or_else(|error| panic!("ask through {name}: {error}"));
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        let elapsed_ms = result["structuredContent"]["elapsed_ms"]
            .as_f64()
            .expect("a report");
        if round > 0 {
            calls.push(Call {
                wall_ms,
                elapsed_ms,
            });
        }
    }
    calls
}

/// `tributary serve` on a free loopback port with the benchmark's engine; its address.
fn start_serve(binary: &Path) -> (std::process::Child, String) {
    let mut child = tributary(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(ENGINE)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tributary serve");
    let line = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("the URL")
        .expect("utf-8");
    let address = line.trim_start_matches("http://").to_owned();
    (child, address)
}

/// A Python with the MCP SDK, if there is one.
fn mcp_python() -> Option<PathBuf> {
    let python = std::env::var_os("TRIBUTARY_MCP_PYTHON")
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    Command::new(&python)
        .args(["-c", "import mcp.server.mcpserver"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        .then_some(python)
}

/// Each question's I/O phase over three MCP sources and over three HTTP sources, the warm-up left out.
fn sources_compared(binary: &Path, python: &Path, rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let dir = tempfile::tempdir().expect("a directory");
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/server.py");
    let mut mcp = String::new();
    for name in ["one", "two", "three"] {
        mcp.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nkind = \"mcp\"\ncommand = [{:?}, {:?}, \"stdio\"]\n\
             env = {{ PROCESS = \"{name}\" }}\ntool = \"search\"\n\n",
            python.display().to_string(),
            server.display().to_string(),
        ));
    }
    let mut sim = tributary(binary)
        .args([
            "sources",
            "--listen",
            "127.0.0.1:0",
            "--fault",
            "news=latency:0ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulated services");
    let lines: Vec<String> = BufReader::new(sim.stdout.take().expect("stdout"))
        .lines()
        .take(3)
        .map(|line| line.expect("utf-8"))
        .collect();
    let news = lines
        .iter()
        .find(|line| line.starts_with("news"))
        .and_then(|line| line.split_whitespace().nth(1))
        .expect("the news line");
    let base = &news[..news.find("/news").expect("a news URL")];
    let mut http = String::new();
    for name in ["one", "two", "three"] {
        http.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nkind = \"news\"\nbase_url = \"{base}\"\n\n"
        ));
    }
    let mut phases = Vec::new();
    for (file, text) in [("mcp.toml", mcp), ("http.toml", http)] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("write the sources file");
        // A server process starts in the background from the start; the warm-up question waits for them.
        let output = tributary(binary)
            .args([
                "ask",
                "--json",
                "--inference-cost",
                "1ms",
                "--deadline",
                "60s",
                "--per-source-timeout",
                "30s",
            ])
            .arg("--config")
            .arg(&path)
            .args(
                questions(rounds)
                    .iter()
                    .map(|question| format!("Why is rust fast? {question}")),
            )
            .output()
            .expect("run tributary ask");
        let reports: Vec<f64> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .map(|line| {
                let report: Value = serde_json::from_str(line).expect("a JSON report");
                report["sources"]
                    .as_array()
                    .expect("sources")
                    .iter()
                    .map(|source| source["fetch_ms"].as_f64().expect("each source fetched"))
                    .fold(0.0, f64::max)
            })
            .collect();
        phases.push(reports);
    }
    let _ = sim.kill();
    let _ = sim.wait();
    let http = phases.pop().expect("http");
    let mcp = phases.pop().expect("mcp");
    (mcp, http)
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

fn percentile(values: &[f64], share: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let index = ((sorted.len() - 1) as f64 * share).round() as usize;
    sorted[index]
}
