//! The rules of ARCHITECTURE.md that a machine can check, checked: which crate may depend on which, what the
//! engine pulls in without its default features, and that no library crate writes to stdout.
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
    for crate_name in [ENGINE, AGENT, BATCH, SERVE, SIM, LAB, CLI] {
        assert!(
            dependencies.contains_key(crate_name),
            "{crate_name} is not in the workspace"
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
];

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
        for outside in ["rusqlite", "libsqlite3-sys", "async-nats", "axum"] {
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
    for crate_name in [ENGINE, AGENT, BATCH, SERVE, SIM, LAB] {
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
    for crate_name in [AGENT, BATCH, SERVE, SIM, LAB] {
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
