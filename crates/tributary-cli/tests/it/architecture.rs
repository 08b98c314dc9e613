//! The rules of ARCHITECTURE.md that a machine can check, checked: which crate may depend on which, what the
//! engine pulls in without its default features, that no library crate writes to stdout, and that no driver
//! decides anything by reading error text.
//!
//! The dependency rules read `cargo metadata` (declared dependencies) and `cargo tree` (what a build resolves),
//! offline: everything they need was downloaded to build this test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace's crates, from the bottom of the graph up.
const ENGINE: &str = "tributary";
const AGENT: &str = "tributary-agent";
const BATCH: &str = "tributary-batch";
const SERVE: &str = "tributary-serve";
const SIM: &str = "tributary-sim";
const LAB: &str = "tributary-lab";
const CLI: &str = "tributary-cli";
const MODELS: &str = "tributary-models";
const MCP: &str = "tributary-mcp";
const PYTHON: &str = "tributary-python";

/// Packages that only the binary may depend on: argument parsing (and the completions and manual generated from
/// it: so no driver parses arguments), the terminal (progress, its size), installing a subscriber, exporting
/// spans. The libraries emit `tracing`
/// spans; where they go is the program's choice.
const BINARY_ONLY: &[&str] = &[
    "clap",
    "clap_complete",
    "clap_mangen",
    "indicatif",
    "terminal_size",
    "tracing-subscriber",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry-otlp",
    "tracing-opentelemetry",
    "console-subscriber",
];

/// Each library crate's forbidden normal dependencies: the crates above it, and what it must not know.
fn forbidden() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        // The engine knows nothing of the agent, the simulator, SQLite, axum or configuration files.
        (
            ENGINE,
            vec![
                AGENT,
                BATCH,
                SERVE,
                SIM,
                LAB,
                CLI,
                "axum",
                "rusqlite",
                "toml",
                "hyper-util",
            ],
        ),
        // The domain knows no driver, no database, no broker, no HTTP server, and not the simulated services it
        // is usually pointed at.
        (
            AGENT,
            vec![
                BATCH,
                SERVE,
                SIM,
                LAB,
                CLI,
                "axum",
                "hyper-util",
                "rusqlite",
                "async-nats",
            ],
        ),
        // The drivers know neither each other nor what sits above them.
        (BATCH, vec![SERVE, LAB, CLI, "axum"]),
        (SERVE, vec![BATCH, LAB, CLI, "rusqlite", "async-nats"]),
        // The simulated services are standalone: they know nothing of the agent that asks them.
        (SIM, vec![AGENT, BATCH, SERVE, LAB, CLI, "reqwest"]),
        // The lab measures the engine and the agent, not a driver.
        (LAB, vec![BATCH, SERVE, CLI]),
        // The models are standalone and synchronous: they know no crate of ours and no async runtime.
        (
            MODELS,
            vec![ENGINE, AGENT, BATCH, SERVE, SIM, LAB, CLI, "tokio"],
        ),
        // The Python package is a front end as the binary is: it puts the libraries together, but not the lab or
        // the binary (and nothing depends on it: `every_crate_depends_only_downwards`).
        (PYTHON, vec![LAB, CLI]),
    ])
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/tributary-cli sits two levels below the workspace root")
        .to_path_buf()
}

/// Each workspace package's declared normal (non-dev, non-build) dependencies, by package name.
fn normal_dependencies() -> BTreeMap<String, Vec<String>> {
    let output = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--locked",
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("a name").to_owned();
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|dependency| dependency["kind"].is_null())
                .map(|dependency| dependency["name"].as_str().expect("a name").to_owned())
                .collect();
            (name, dependencies)
        })
        .collect()
}

/// Every package a build of `package` with `flags` compiles for the host, normal dependencies only.
fn resolved(package: &str, flags: &[&str]) -> Vec<String> {
    let output = cargo()
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .args(flags)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_crate_depends_only_downwards() {
    let dependencies = normal_dependencies();
    for crate_name in [
        ENGINE, AGENT, BATCH, SERVE, SIM, LAB, CLI, MODELS, MCP, PYTHON,
    ] {
        assert!(
            dependencies.contains_key(crate_name),
            "{crate_name} is not in the workspace"
        );
    }
    for (crate_name, crate_dependencies) in &dependencies {
        assert!(
            !crate_dependencies.iter().any(|name| name == PYTHON),
            "Architecture Invariant broken: {crate_name} depends on the Python package {PYTHON}"
        );
    }
    for (crate_name, forbidden) in forbidden() {
        for dependency in &dependencies[crate_name] {
            assert!(
                !forbidden.contains(&dependency.as_str()),
                "Architecture Invariant broken: {crate_name} depends on {dependency}"
            );
        }
    }
    for (crate_name, crate_dependencies) in &dependencies {
        if crate_name == CLI {
            continue;
        }
        for binary_only in BINARY_ONLY {
            assert!(
                !crate_dependencies.iter().any(|name| name == binary_only),
                "Architecture Invariant broken: the library {crate_name} depends on {binary_only}"
            );
        }
    }
}

/// Packages that only some workspace crates may declare: those that own that kind of outside system.
const OWNED_BY: &[(&str, &[&str])] = &[
    // The NATS client lives in the batch driver's `distributed/` (feature `nats`); the engine and the domain
    // stay free of any broker, and the binary reaches NATS only through the batch crate.
    ("async-nats", &[BATCH]),
    // SQLite: the batch's answers database, and the simulated knowledge base's FTS5 index.
    ("rusqlite", &[BATCH, SIM]),
    // An HTTP server: the serve driver's routes, and the simulated services.
    ("axum", &[SERVE, SIM]),
    // The tensor library and the tokenizers: only the models crate; the agent reaches them through it.
    ("candle-core", &[MODELS]),
    ("candle-transformers", &[MODELS]),
    ("tokenizers", &[MODELS]),
    // llama.cpp's bindings (feature `llama`): only the models crate, as the second backend of its chat model.
    ("llama-cpp-2", &[MODELS]),
    // The MCP SDK: only the MCP driver; `serve` mounts its service and the agent reaches MCP servers through the
    // `McpServers` the binary gives it, so neither the engine nor the domain builds an MCP client or server.
    ("rmcp", &[MCP]),
    // CPython's API and the asyncio bridge: only the Python package; no library knows it is called from Python.
    ("pyo3", &[PYTHON]),
    ("pyo3-async-runtimes", &[PYTHON]),
];

#[test]
fn the_readme_build_compiles_no_cpp_and_the_llama_feature_does() {
    // The README's two commands must work on a machine with a Rust toolchain alone: `models` is pure Rust.
    let sys = "llama-cpp-sys-2";
    let models = resolved(CLI, &["--features", "models"]);
    assert!(
        !models.iter().any(|name| name == sys),
        "Architecture Invariant broken: the `models` feature builds {sys} (C++)"
    );
    let llama = resolved(CLI, &["--features", "llama"]);
    assert!(
        llama.iter().any(|name| name == sys),
        "the `llama` feature does not build {sys}"
    );
}

#[test]
fn only_the_owning_crate_depends_on_an_outside_system() {
    let dependencies = normal_dependencies();
    for (package, owners) in OWNED_BY {
        for (crate_name, crate_dependencies) in &dependencies {
            if owners.contains(&crate_name.as_str()) {
                continue;
            }
            assert!(
                !crate_dependencies.iter().any(|name| name == package),
                "Architecture Invariant broken: {crate_name} depends on {package}, which only {owners:?} may"
            );
        }
    }
    // And the engine does not get it through a feature of something else either.
    for features in [&[][..], &["--all-features"][..]] {
        let engine = resolved(ENGINE, features);
        assert!(
            !engine.iter().any(|name| name == "async-nats"),
            "Architecture Invariant broken: tributary builds async-nats ({features:?})"
        );
    }
}

/// The domain builds no database, broker or HTTP server, through any of its features or anyone else's.
#[test]
fn the_domain_builds_no_database_broker_or_server() {
    for features in [&[][..], &["--all-features"][..]] {
        let packages = resolved(AGENT, features);
        assert!(packages.iter().any(|name| name == ENGINE), "{packages:?}");
        for outside in ["rusqlite", "libsqlite3-sys", "async-nats", "axum", "rmcp"] {
            assert!(
                !packages.iter().any(|name| name == outside),
                "Architecture Invariant broken: {AGENT} builds {outside} ({features:?})"
            );
        }
    }
}

#[test]
fn the_engine_without_default_features_needs_no_http_stack() {
    let packages = resolved(ENGINE, &["--no-default-features"]);
    assert!(packages.iter().any(|name| name == "tokio"), "{packages:?}");
    for heavy in ["reqwest", "hyper", "rustls", "moka", "axum", "rusqlite"] {
        assert!(
            !packages.iter().any(|name| name == heavy),
            "Architecture Invariant broken: tributary without default features builds {heavy}"
        );
    }
    let with_http = resolved(ENGINE, &[]);
    assert!(
        with_http.iter().any(|name| name == "reqwest"),
        "the http feature brings the HTTP client: {with_http:?}"
    );
}

#[test]
fn no_library_crate_writes_to_stdout() {
    let root = workspace_root();
    for crate_name in [ENGINE, AGENT, BATCH, SERVE, SIM, LAB, MCP, PYTHON] {
        let mut files = Vec::new();
        rust_files(
            &root.join("crates").join(crate_name).join("src"),
            &mut files,
        );
        assert!(!files.is_empty(), "no sources found for {crate_name}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            // A file's unit tests sit at its end, after `#[cfg(test)]`; tests may print.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (number, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for writer in ["println!", "print!(", "io::stdout", "dbg!("] {
                    assert!(
                        !line.contains(writer),
                        "Architecture Invariant broken: {}:{} writes to stdout ({writer})",
                        file.display(),
                        number + 1
                    );
                }
            }
        }
    }
}

/// Ways to start a task or a thread that no group owns.
const DETACHED_SPAWNS: &[&str] = &[
    "tokio::spawn",
    "task::spawn",
    "spawn_local(",
    "thread::spawn",
    "thread::Builder",
    "thread::scope",
    "JoinSet",
    "TaskTracker",
    "Handle::current().spawn",
];

/// The one place outside the engine that starts a thread of its own, and why (ARCHITECTURE.md says it too).
const SPAWN_EXCEPTIONS: &[(&str, &str)] = &[(
    "tributary-batch/src/detached.rs",
    "a blocking read of stdin cannot be interrupted, so its thread is detached on purpose",
)];

/// Every task belongs to a group, and CPU work goes through the pool: no library but the engine starts a task or
/// a thread itself. A library runs concurrent work as children of the engine's groups (`scope`, `OwnedGroup`,
/// `Supervisor`, the settle policies), blocking calls through `group::blocking` or `Group::spawn_blocking`, and
/// CPU work on an `Executor`.
#[test]
fn no_library_but_the_engine_spawns_a_task_or_a_thread() {
    let root = workspace_root();
    for crate_name in [AGENT, BATCH, SERVE, SIM, LAB, MCP, PYTHON] {
        let mut files = Vec::new();
        rust_files(
            &root.join("crates").join(crate_name).join("src"),
            &mut files,
        );
        for file in files {
            let relative = file
                .strip_prefix(root.join("crates"))
                .expect("below crates/")
                .to_string_lossy()
                .replace('\\', "/");
            if SPAWN_EXCEPTIONS
                .iter()
                .any(|(path, _why)| *path == relative)
            {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (number, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for spawn in DETACHED_SPAWNS {
                    assert!(
                        !line.contains(spawn),
                        "Architecture Invariant broken: {relative}:{} starts work no group owns ({spawn}); \
                         spawn it as a child of a group of tributary::group",
                        number + 1
                    );
                }
            }
        }
    }
}

/// String searches that read text: on an error or a message, each is a decision made from words that are free to
/// change. Rust's, then the page's JavaScript.
const TEXT_SEARCHES: &[&str] = &[
    ".contains(",
    ".starts_with(",
    ".ends_with(",
    ".strip_prefix(",
    ".strip_suffix(",
    ".find(",
    ".rfind(",
    ".trim_start_matches(",
    ".trim_end_matches(",
];
const PAGE_TEXT_SEARCHES: &[&str] = &[
    ".includes(",
    ".indexOf(",
    ".startsWith(",
    ".endsWith(",
    ".match(",
    ".test(",
    ".search(",
];

/// Words that name error or message text in an expression (`error`, `report.error`, `message`, `why`, ...).
const MESSAGE_WORDS: &[&str] = &["error", "message", "reason", "why"];

/// The searches the rule allows, each a `(file, text of the call)` with why it reads no error text. Each entry
/// must still match: a stale one fails the test.
const TEXT_SEARCHES_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "crates/tributary-agent/src/infer/work.rs",
        ".strip_suffix(\"unit",
        "parses an inference cost the user wrote: `250000 units`",
    ),
    (
        "crates/tributary-agent/src/sources/config.rs",
        ".strip_prefix(\"://\")",
        "reads a URL in a sources file",
    ),
    (
        "crates/tributary-cli/src/cli.rs",
        ".contains(\"://\")",
        "reads the --nats URL the user wrote, as the NATS client does: nats:// when no scheme is given",
    ),
    (
        "crates/tributary-cli/src/cli.rs",
        ".strip_prefix(\"--\")",
        "reads a flag's name from the command line and from clap's context for it",
    ),
    (
        "crates/tributary-agent/src/step/messages.rs",
        "message.ends_with(&text)",
        "writes the message itself (a cause its parent already printed is not repeated): words, not a decision",
    ),
    (
        "crates/tributary-agent/src/infer/models.rs",
        ".strip_prefix(\"openai:\")",
        "reads a --model value the user wrote: `openai:MODEL@URL` names a chat endpoint",
    ),
    (
        "crates/tributary-cli/src/cli.rs",
        "!text.contains('/')",
        "reads the --model value the user wrote: a value without `/` is a name looked up in the models directory",
    ),
    (
        "crates/tributary-cli/src/commands/model/download.rs",
        ".trim_start_matches(\"W/\")",
        "reads an HTTP ETag header (RFC 9110: a weak one starts `W/`) for the checksum the hub names",
    ),
    (
        "crates/tributary-cli/src/cli.rs",
        ".strip_prefix(\"--color\")",
        "reads --color from the command line before clap parses it, so that clap's own errors are coloured as asked",
    ),
    (
        "crates/tributary-cli/src/commands/man.rs",
        ".starts_with(\"Exit codes\")",
        "lays out the binary's own --help text as manual sections: its `Exit codes:` paragraph is EXIT STATUS",
    ),
    (
        "crates/tributary-serve/assets/page.html",
        "key.endsWith(\"_ms\")",
        "formats a span's arguments: a key ending in `_ms` is a duration",
    ),
];

/// Meaning in types, not strings: a status, a failure's kind and its cause travel as enums
/// (`SourceFailure`, `AnswerFailure`, `SourceStatus`, ...), and every hint, exit code, metric label and page
/// badge is chosen by them. So the non-test code of the domain, the drivers and the binary (a file's text before
/// its first `#[cfg(test)]`; `tests.rs` and `test_*` files skipped) and the server's page make no text search
/// ([`TEXT_SEARCHES`], [`PAGE_TEXT_SEARCHES`]) that could read error text.
///
/// The rule is precise rather than broad, in two parts: a search is refused (1) when the expression it is called
/// on (the line up to the call, with the lines of its method chain above) names error or message text
/// ([`MESSAGE_WORDS`]), or (2) when it searches for a string literal, which is how a message's words get
/// matched, whatever the variable is called. Searches that parse input formats (a cost, a URL, a flag) are
/// literal searches too: they are in [`TEXT_SEARCHES_ALLOWED`], each with its reason.
#[test]
fn no_driver_decides_by_error_text() {
    let root = workspace_root();
    let mut found = Vec::new();
    let mut allowed_used = vec![false; TEXT_SEARCHES_ALLOWED.len()];
    let mut check = |relative: &str, line_number: usize, call: String| match TEXT_SEARCHES_ALLOWED
        .iter()
        .position(|(path, needle, _)| *path == relative && call.contains(needle))
    {
        Some(index) => allowed_used[index] = true,
        None => found.push(format!("{relative}:{line_number}: {call}")),
    };
    for crate_name in [AGENT, BATCH, SERVE, MCP, PYTHON, CLI] {
        let mut files = Vec::new();
        rust_files(
            &root.join("crates").join(crate_name).join("src"),
            &mut files,
        );
        assert!(!files.is_empty(), "no sources found for {crate_name}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let relative = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            for (line_number, call) in text_searches(code, TEXT_SEARCHES) {
                check(&relative, line_number, call);
            }
        }
    }
    let page = "crates/tributary-serve/assets/page.html";
    let page_text = std::fs::read_to_string(root.join(page)).expect("read the page");
    for (line_number, call) in text_searches(&page_text, PAGE_TEXT_SEARCHES) {
        check(page, line_number, call);
    }
    assert!(
        found.is_empty(),
        "Architecture Invariant broken: decided by reading error or message text (carry a kind instead, or, \
         for a search that parses an input format, add it to TEXT_SEARCHES_ALLOWED with why):\n{}",
        found.join("\n")
    );
    let stale: Vec<_> = TEXT_SEARCHES_ALLOWED
        .iter()
        .zip(&allowed_used)
        .filter(|(_, used)| !**used)
        .map(|((path, needle, _), _)| format!("{path}: {needle}"))
        .collect();
    assert!(
        stale.is_empty(),
        "TEXT_SEARCHES_ALLOWED names searches that no longer exist: {stale:?}"
    );
}

/// The rule finds what the drivers once did (a hint by "dns error", a late run by "inference", a prefix cut off
/// a message), and lets searches on other text be.
#[test]
fn the_error_text_rule_finds_what_the_drivers_once_did() {
    let once = r#"
        let unreachable = |source: &SourceReport| {
            source.error.as_deref().is_some_and(|error| {
                ["dns error", "Connection refused"].iter().any(|sign| error.contains(sign))
            })
        };
        if error.contains("no inference finished") {}
        let inference_cut = source
            .error
            .as_deref()
            .is_some_and(|text| text.contains("inference"));
        let open = error.kind().to_string().trim_start_matches("ask the source: ");
        if let Some(source) = lane.strip_prefix("source ") {}
    "#;
    let found: Vec<usize> = text_searches(once, TEXT_SEARCHES)
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    assert_eq!(found, [4, 7, 11, 12, 13]);
    let fine = r#"
        let source = report.sources.iter().find(|source| source.name == *name)?;
        if done.contains(id, line) {}
        // error.contains("in a comment")
    "#;
    assert!(text_searches(fine, TEXT_SEARCHES).is_empty());
    assert_eq!(
        text_searches(
            "if (data.error.includes(\"timed out\")) {}",
            PAGE_TEXT_SEARCHES
        )
        .len(),
        1
    );
}

/// The text searches in `code` that rule [`no_driver_decides_by_error_text`] refuses: `(line number, line)` for
/// each call of one of `searches` on an expression that names a message, or with a string literal argument.
fn text_searches(code: &str, searches: &[&str]) -> Vec<(usize, String)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") || trimmed.starts_with('*') {
            continue;
        }
        for search in searches {
            for (at, _) in line.match_indices(search) {
                // The expression the search is called on: this line up to the call, and the lines above it
                // while this one continues their method chain.
                let mut receiver = line[..at].to_lowercase();
                let mut above = index;
                while above > 0 && lines[above].trim_start().starts_with('.') {
                    above -= 1;
                    receiver.insert_str(0, &lines[above].to_lowercase());
                }
                let names_a_message = MESSAGE_WORDS.iter().any(|word| receiver.contains(word));
                let literal = line[at + search.len()..].starts_with('"');
                if names_a_message || literal {
                    found.push((index + 1, trimmed.to_owned()));
                }
            }
        }
    }
    found
}

/// Every `.rs` file below `directory`, except test-only files.
fn rust_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
            continue;
        }
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let test_only = name == "tests.rs" || name.starts_with("test_");
        if name.ends_with(".rs") && !test_only {
            files.push(path);
        }
    }
}
