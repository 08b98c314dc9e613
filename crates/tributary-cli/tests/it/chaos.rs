//! Chaos: a few hundred randomized `ask` runs against mixes of hostile and healthy sources (issue: hardening).
//!
//! The hostile server below misbehaves in the ways real peers do: resets, stalls after the headers, drips,
//! bodies that never end, a wrong `Content-Length`, a gzip bomb, invalid UTF-8, redirect loops, garbage, huge
//! or endless headers, JSON nested past any parser's limit. The healthy sources are `tributary sources` (the
//! simulated services) in a child process. Every run must end with exit 0 within its deadline + 100 ms by the
//! wall clock from the moment the process was spawned, with no panic, each healthy source's answer present, and
//! a bounded peak memory; the simulator's memory must stay flat over the whole test. Beside the runs, loiterers
//! hold more idle connections to the simulator than its cap, and requests whose body never completes.
//!
//! `TRIBUTARY_CHAOS_ASKS` (default 200) sets the number of runs; `TRIBUTARY_CHAOS_SEED` replays a mix (the
//! seed is printed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{SourcesProcess, tributary};

const QUESTION: &str = "What's the weather in Paris, and why does the GIL matter?";

/// How far past its deadline a run may end, by the wall clock from the spawn (the bound).
const SLACK: Duration = Duration::from_millis(100);

/// A run's peak resident memory must stay under this.
const PEAK_LIMIT_KB: u64 = 200 * 1024;

/// 64 MiB of zeros, gzip-compressed to 64 KB.
const GZIP_BOMB: &[u8] = include_bytes!("fixtures/zeros-64mib.json.gz");

/// How a hostile source misbehaves; chosen by the first segment of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    Reset,
    StallAfterHeaders,
    Drip,
    EndlessBody,
    WrongLength,
    GzipBomb,
    InvalidUtf8,
    RedirectLoop,
    Garbage,
    HugeHeaders,
    EndlessHeaders,
    DeepJson,
}

impl Misbehaviour {
    const ALL: [Misbehaviour; 12] = [
        Misbehaviour::Reset,
        Misbehaviour::StallAfterHeaders,
        Misbehaviour::Drip,
        Misbehaviour::EndlessBody,
        Misbehaviour::WrongLength,
        Misbehaviour::GzipBomb,
        Misbehaviour::InvalidUtf8,
        Misbehaviour::RedirectLoop,
        Misbehaviour::Garbage,
        Misbehaviour::HugeHeaders,
        Misbehaviour::EndlessHeaders,
        Misbehaviour::DeepJson,
    ];

    fn name(self) -> &'static str {
        match self {
            Misbehaviour::Reset => "reset",
            Misbehaviour::StallAfterHeaders => "stall",
            Misbehaviour::Drip => "drip",
            Misbehaviour::EndlessBody => "endless",
            Misbehaviour::WrongLength => "wrong-length",
            Misbehaviour::GzipBomb => "gzip-bomb",
            Misbehaviour::InvalidUtf8 => "invalid-utf8",
            Misbehaviour::RedirectLoop => "redirect",
            Misbehaviour::Garbage => "garbage",
            Misbehaviour::HugeHeaders => "huge-headers",
            Misbehaviour::EndlessHeaders => "endless-headers",
            Misbehaviour::DeepJson => "deep-json",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|behaviour| behaviour.name() == name)
    }
}

/// The hostile HTTP server: one thread per connection, stopped (and its threads let go) on drop.
struct Hostile {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hostile server");
        let address = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for connection in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(connection) = connection else { continue };
                let stop = Arc::clone(&stopped);
                thread::spawn(move || misbehave(connection, &stop));
            }
        });
        Self { address, stop }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _woken = TcpStream::connect(self.address);
    }
}

/// Answers one connection the way its path asks for.
fn misbehave(mut stream: TcpStream, stop: &AtomicBool) {
    let _timeouts = stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(2))));
    // Peeked, not read: a reset needs the request still unread in the socket when it is closed.
    let mut buffer = [0_u8; 8192];
    let head_length = loop {
        match stream.peek(&mut buffer) {
            Ok(0) => return,
            Ok(seen) => {
                if let Some(end) = buffer[..seen]
                    .windows(4)
                    .position(|window| window == b"\r\n\r\n")
                {
                    break end + 4;
                }
                if seen == buffer.len() {
                    return;
                }
                thread::sleep(Duration::from_millis(1));
            }
            Err(_) if stop.load(Ordering::SeqCst) => return,
            Err(_) => {}
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_length]).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let behaviour = target
        .trim_start_matches('/')
        .split('/')
        .next()
        .and_then(Misbehaviour::named);
    let Some(behaviour) = behaviour else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if behaviour == Misbehaviour::Reset {
        // Closing with the request unread makes the kernel answer with a reset (RST), not an orderly FIN.
        drop(stream);
        return;
    }
    let mut request = vec![0_u8; head_length];
    if stream.read_exact(&mut request).is_err() {
        return;
    }
    // `Connection: close` on every answer: the client must not wait to reuse a connection this server drops.
    let ok_json = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n";
    let _ended = match behaviour {
        Misbehaviour::Reset => Ok(()),
        Misbehaviour::StallAfterHeaders => stream
            .write_all(format!("{ok_json}Content-Length: 64\r\n\r\n{{\"temp").as_bytes())
            .map(|()| wait_for_close(&mut stream, stop)),
        Misbehaviour::Drip => stream
            .write_all(format!("{ok_json}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
            .and_then(|()| {
                while !stop.load(Ordering::SeqCst) {
                    stream.write_all(b"1\r\n \r\n")?;
                    thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            }),
        Misbehaviour::EndlessBody => stream
            .write_all(format!("{ok_json}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
            .and_then(|()| {
                let chunk = format!("10000\r\n{}\r\n", "1,".repeat(0x8000));
                stream.write_all(b"3\r\n[1,\r\n")?;
                while !stop.load(Ordering::SeqCst) {
                    stream.write_all(chunk.as_bytes())?;
                }
                Ok(())
            }),
        Misbehaviour::WrongLength => stream
            .write_all(format!("{ok_json}Content-Length: 5000\r\n\r\n{{\"a\": 1}}").as_bytes()),
        Misbehaviour::GzipBomb => stream
            .write_all(
                format!(
                    "{ok_json}Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                    GZIP_BOMB.len()
                )
                .as_bytes(),
            )
            .and_then(|()| stream.write_all(GZIP_BOMB)),
        Misbehaviour::InvalidUtf8 => {
            let body = b"{\"summary\": \"\xff\xfe\xfd\", \"temperature_c\": 20}";
            stream
                .write_all(format!("{ok_json}Content-Length: {}\r\n\r\n", body.len()).as_bytes())
                .and_then(|()| stream.write_all(body))
        }
        Misbehaviour::RedirectLoop => stream.write_all(
            format!(
                "HTTP/1.1 302 Found\r\nConnection: close\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
            )
                .as_bytes(),
        ),
        Misbehaviour::Garbage => {
            stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02\xff\r\n\r\n")
        }
        Misbehaviour::HugeHeaders => stream.write_all(
            format!(
                "{ok_json}X-Padding: {}\r\nContent-Length: 2\r\n\r\n{{}}",
                "a".repeat(1024 * 1024)
            )
            .as_bytes(),
        ),
        Misbehaviour::EndlessHeaders => stream.write_all(b"HTTP/1.1 200 OK\r\n").and_then(|()| {
            while !stop.load(Ordering::SeqCst) {
                stream.write_all(b"X-Slow: a\r\n")?;
                thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }),
        Misbehaviour::DeepJson => {
            let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
            stream.write_all(
                format!("{ok_json}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
            )
        }
    };
}

/// Holds the connection open, sending nothing, until the client closes it (or the test ends).
fn wait_for_close(stream: &mut TcpStream, stop: &AtomicBool) {
    let mut buffer = [0_u8; 512];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// `tributary sources` in a child process: the healthy sources, with short fixed latencies.
/// Clients that hold connections to the simulator without finishing a request (issue: hardening, round two):
/// more idle ones than its connection cap, and requests whose body stops after one byte. Closed ones are
/// replaced, a few at a time, for as long as the runs go on; every run's healthy sources must answer anyway.
struct Loiterers {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<(usize, usize)>>,
}

impl Loiterers {
    const IDLE: usize = 1_200;
    const SLOW_BODIES: usize = 100;
    /// At most this many replaced per pass (every 200 ms), so that the churn does not load the machine.
    const REPLACED_PER_PASS: usize = 25;

    fn start(address: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let slow = format!(
                    "GET /weather?city=Lima HTTP/1.1\r\nHost: {address}\r\nContent-Length: 1000\r\n\r\na"
                );
                let open = |first: &[u8]| {
                    let mut stream = TcpStream::connect(&address).ok()?;
                    stream.write_all(first).ok()?;
                    stream.set_nonblocking(true).ok()?;
                    Some(stream)
                };
                let mut idle: Vec<TcpStream> = (0..Self::IDLE).filter_map(|_| open(b"")).collect();
                let mut slow_bodies: Vec<TcpStream> = (0..Self::SLOW_BODIES)
                    .filter_map(|_| open(slow.as_bytes()))
                    .collect();
                let (mut opened, mut closed) = (idle.len() + slow_bodies.len(), 0);
                while !stop.load(Ordering::Relaxed) {
                    for (clients, first) in
                        [(&mut idle, &b""[..]), (&mut slow_bodies, slow.as_bytes())]
                    {
                        let before = clients.len();
                        clients.retain_mut(|stream| {
                            let mut chunk = [0_u8; 512];
                            loop {
                                match stream.read(&mut chunk) {
                                    Ok(0) => return false,
                                    Ok(_) => continue, // an answer: read on
                                    Err(error) => {
                                        return error.kind() == std::io::ErrorKind::WouldBlock;
                                    }
                                }
                            }
                        });
                        closed += before - clients.len();
                        let wanted = if first.is_empty() {
                            Self::IDLE
                        } else {
                            Self::SLOW_BODIES
                        };
                        let missing = wanted
                            .saturating_sub(clients.len())
                            .min(Self::REPLACED_PER_PASS);
                        let replaced: Vec<TcpStream> =
                            (0..missing).filter_map(|_| open(first)).collect();
                        opened += replaced.len();
                        clients.extend(replaced);
                    }
                    thread::sleep(Duration::from_millis(200));
                }
                (opened, closed)
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops holding: how many connections were opened, and how many of them the simulator closed.
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or((0, 0), |thread| {
            thread.join().expect("the loiterers' thread")
        })
    }
}

impl Drop for Loiterers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The resident memory of process `pid` in kB; 0 where unknown.
fn resident_kb(pid: u32) -> u64 {
    memory_kb(pid, "VmRSS:").unwrap_or(0)
}

/// A field of `/proc/PID/status` in kB (Linux); `None` elsewhere or once the process is gone.
fn memory_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// splitmix64: a reproducible mix from one printed seed.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One planned run: its sources file, its deadline, and which sources are healthy.
struct Plan {
    sources: String,
    deadline_ms: u64,
    per_source_timeout_ms: u64,
    healthy: Vec<String>,
    hostile: Vec<&'static str>,
}

fn plan(mix: &mut Mix, simulator: &str, hostile: SocketAddr) -> Plan {
    let kinds = ["weather", "news", "kb"];
    let mut sources = String::new();
    let mut healthy = Vec::new();
    for kind in kinds {
        if healthy.is_empty() || mix.below(2) == 0 {
            let name = format!("healthy-{kind}");
            sources.push_str(&format!(
                "[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{simulator}/\"\ntimeout = \"2s\"\n\n"
            ));
            healthy.push(name);
        }
    }
    let mut names = Vec::new();
    for index in 0..1 + mix.below(6) {
        let behaviour = Misbehaviour::ALL[mix.below(Misbehaviour::ALL.len() as u64) as usize];
        let kind = kinds[mix.below(3) as usize];
        let timeout_ms = 100 + mix.below(900);
        let retries = mix.below(3);
        sources.push_str(&format!(
            "[[source]]\nname = \"{}-{index}\"\nkind = \"{kind}\"\nbase_url = \"http://{hostile}/{}/\"\n\
             timeout = \"{timeout_ms}ms\"\nretries = {retries}\n\n",
            behaviour.name(),
            behaviour.name()
        ));
        names.push(behaviour.name());
    }
    Plan {
        sources,
        deadline_ms: 500 + mix.below(700),
        per_source_timeout_ms: 300 + mix.below(1500),
        healthy,
        hostile: names,
    }
}

/// What one run did.
struct Ran {
    elapsed: Duration,
    peak_kb: u64,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ask` on `plan` and samples its peak memory until it exits.
fn run(plan: &Plan, directory: &std::path::Path, index: usize) -> Ran {
    let config = directory.join(format!("sources-{index}.toml"));
    std::fs::write(&config, &plan.sources).expect("write the sources file");
    let started = Instant::now();
    let mut child = tributary()
        .args([
            "ask",
            QUESTION,
            "--json",
            "--inference-cost",
            "5ms",
            "--workers",
            "2",
        ])
        .args(["--deadline", &format!("{}ms", plan.deadline_ms)])
        .args([
            "--per-source-timeout",
            &format!("{}ms", plan.per_source_timeout_ms),
        ])
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary ask");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let error_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let mut peak_kb = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Some(high_water) = memory_kb(child.id(), "VmHWM:") {
            peak_kb = peak_kb.max(high_water);
        }
        thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    Ran {
        elapsed,
        peak_kb,
        code: status.code(),
        stdout: reader.join().expect("stdout reader"),
        stderr: error_reader.join().expect("stderr reader"),
    }
}

#[test]
fn randomized_asks_against_hostile_sources_end_in_time_without_a_panic() {
    // Its bound is 100 ms of wall clock: not beside the tests that start a broker and its workers.
    let _heavy = crate::harness::heavy();
    let asks: usize = std::env::var("TRIBUTARY_CHAOS_ASKS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("TRIBUTARY_CHAOS_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_nanos() as u64)
        });
    println!("chaos: {asks} asks, TRIBUTARY_CHAOS_SEED={seed}");
    let hostile = Hostile::start();
    let simulator = SourcesProcess::start(&[
        "--fault",
        "weather=latency:20ms",
        "--fault",
        "news=latency:30ms",
        "--fault",
        "kb=latency:10ms",
    ]);
    let directory = tempfile::tempdir().expect("temp dir");
    let mut mix = Mix(seed);
    let plans: Vec<Plan> = (0..asks)
        .map(|_| plan(&mut mix, &simulator.base_url, hostile.address))
        .collect();
    let loiterers = Loiterers::start(simulator.address().to_owned());
    // Measured once the loiterers hold their connections: the runs must not grow it further.
    thread::sleep(Duration::from_secs(1));
    let simulator_before_kb = resident_kb(simulator.child.id());

    // Two runs at a time: the machine has two cores, and each run waits on sockets most of the time.
    let results: Vec<(usize, Ran)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (plans, directory) = (&plans, directory.path());
                scope.spawn(move || {
                    (worker..plans.len())
                        .step_by(2)
                        .map(|index| (index, run(&plans[index], directory, index)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a runner thread"))
            .collect()
    });
    let simulator_after_kb = resident_kb(simulator.child.id());
    let (opened, closed) = loiterers.finish();
    println!(
        "chaos: beside the runs, {opened} idle and slow-body connections were held to the simulator (up to {} at \
         once); it closed {closed} of them",
        Loiterers::IDLE + Loiterers::SLOW_BODIES
    );

    let mut failures = Vec::new();
    let mut overrun_ms: Vec<i64> = Vec::new();
    let mut peak_kb = 0;
    // One error message per misbehaviour, printed at the end: what a user would read.
    let mut errors = std::collections::BTreeMap::new();
    for (index, ran) in &results {
        let plan = &plans[*index];
        let context = format!(
            "run {index} (deadline {} ms, hostile {:?})",
            plan.deadline_ms, plan.hostile
        );
        peak_kb = peak_kb.max(ran.peak_kb);
        let over = ran.elapsed.as_millis() as i64 - plan.deadline_ms as i64;
        overrun_ms.push(over);
        if ran.elapsed > Duration::from_millis(plan.deadline_ms) + SLACK {
            failures.push(format!("{context}: ended {over} ms past its deadline"));
        }
        if ran.code != Some(0) {
            failures.push(format!("{context}: exit {:?}: {}", ran.code, ran.stderr));
            continue;
        }
        if ran.stderr.contains("panicked") {
            failures.push(format!("{context}: a panic: {}", ran.stderr));
        }
        if ran.peak_kb > PEAK_LIMIT_KB {
            failures.push(format!("{context}: peak {} kB", ran.peak_kb));
        }
        let report: Value = match serde_json::from_str(ran.stdout.trim()) {
            Ok(report) => report,
            Err(error) => {
                failures.push(format!("{context}: not JSON ({error}): {}", ran.stdout));
                continue;
            }
        };
        // No hostile source passes for healthy, and each says why it failed.
        for source in report["sources"].as_array().into_iter().flatten() {
            let name = source["name"].as_str().unwrap_or_default();
            if plan.healthy.iter().any(|healthy| healthy == name) {
                continue;
            }
            let error = source["error"].as_str().unwrap_or_default();
            if source["status"] == "ok" || error.is_empty() {
                failures.push(format!("{context}: hostile `{name}` reported {source}"));
            }
            errors.insert(
                name.rsplit_once('-')
                    .map_or(name, |(kind, _)| kind)
                    .to_owned(),
                error.to_owned(),
            );
        }
        for name in &plan.healthy {
            let source = report["sources"].as_array().and_then(|sources| {
                sources
                    .iter()
                    .find(|source| source["name"] == name.as_str())
            });
            let status = source.map(|source| source["status"].clone());
            if status != Some(Value::from("ok")) {
                failures.push(format!("{context}: healthy `{name}` is {source:?}"));
            }
        }
    }
    overrun_ms.sort_unstable();
    let percentile = |p: usize| overrun_ms[(overrun_ms.len() - 1) * p / 100];
    println!(
        "chaos: wall clock past the deadline: median {} ms, p95 {} ms, max {} ms; peak run memory {} MB; \
         simulator {} -> {} MB",
        percentile(50),
        percentile(95),
        percentile(100),
        peak_kb / 1024,
        simulator_before_kb / 1024,
        simulator_after_kb / 1024
    );
    for (behaviour, error) in &errors {
        println!("chaos: {behaviour}: {error}");
    }
    // The simulator served every healthy request of every run: its memory must not grow with the runs.
    if simulator_before_kb > 0 && simulator_after_kb > simulator_before_kb + 64 * 1024 {
        failures.push(format!(
            "the simulator grew from {simulator_before_kb} kB to {simulator_after_kb} kB"
        ));
    }
    assert!(
        failures.is_empty(),
        "TRIBUTARY_CHAOS_SEED={seed}: {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
