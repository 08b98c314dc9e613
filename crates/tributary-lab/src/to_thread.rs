//! `to-thread`: blocking calls (a synchronous HTTP GET, the way `requests.get` makes one) made directly from a
//! task, then handed to threads with [`Group::spawn_blocking`], the counterpart of `asyncio.to_thread`, while a
//! ticker task wants to wake every [`TICK_PERIOD`].
//!
//! Like `blocking`, the experiment runs its own single-threaded event loop (a current-thread tokio runtime on a
//! dedicated thread), like asyncio's, so one blocked thread is a blocked loop. The work is I/O, not CPU: the
//! calling thread waits on a socket until the simulated weather service answers, after the latency each request
//! asks for (`latency_ms=`). Called directly, the three calls hold the loop for their sum; on threads, the loop
//! keeps ticking and the waits overlap (CPython too releases the GIL while a thread waits on a socket).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tributary::group::{Group, GroupConfig, scope};
use tributary::trace::{Activity, EventKind, Outcome as SpanOutcome, Span, Timeline};
use tributary_sim::Service;

use super::experiment::{
    Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis, on_own_event_loop,
};
use super::services::LabServices;
use super::verdict::Verdict;

/// Called directly, the calls must hold the loop for at least this fraction of their total.
pub const BLOCKED_FRACTION: f64 = 0.8;
/// On threads, no tick may be this late: a third of a quick-mode call, far below the frozen loop's delay.
pub const LATE_TICK_MS: f64 = 50.0;
/// On threads, the calls must take at most this share of their time one after another (a third, ideally).
pub const OVERLAPPED_MAX_SHARE: f64 = 0.5;

/// How often the ticker wants to run.
pub const TICK_PERIOD: Duration = Duration::from_millis(10);
/// One weather call per city, in each phase.
pub const CITIES: [&str; 3] = ["Lima", "Paris", "Oslo"];
/// Quiet time before and after each phase, so the chart shows normal ticking around it.
const QUIET: Duration = Duration::from_millis(50);
/// Bound on connecting, sending and reading, so a blocking call (which no token can interrupt) always returns.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// The figures of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// The latency each call asked the service for.
    pub call_latency_ms: f64,
    /// The calls made directly from a task on the loop.
    pub directly: PhaseFigures,
    /// The same calls, each on a thread of its own.
    pub to_thread: PhaseFigures,
}

/// The calls of one phase and what the loop went through meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseFigures {
    /// Each call and how long it took.
    pub calls: Vec<CallFigure>,
    /// From the first call's start to the last call's end.
    pub total_ms: f64,
    /// The ticks that were waiting at some point of the phase.
    pub ticks: usize,
    /// The latest any of them came.
    pub worst_tick_delay_ms: f64,
}

/// One blocking call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallFigure {
    /// The city asked for.
    pub city: String,
    /// From connecting to the last byte of the response.
    pub ms: f64,
    /// Whether the service answered 200.
    pub ok: bool,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "to-thread",
    title: "Blocking calls on the event loop and on threads (to_thread)",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment on its own single-threaded event loop.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let latency = config.duration(500, 150);
    let services = LabServices::start().await?;
    let base = services.spec(Service::Weather).base_url;
    let address = match (base.host(), base.port()) {
        (Some(url::Host::Ipv4(ip)), Some(port)) => SocketAddr::from((ip, port)),
        _ => {
            return Err(LabError::Setup(format!(
                "the simulator's url {base} is not an IPv4 address and port"
            )));
        }
    };
    let timeline = Timeline::new();
    let recording = timeline.clone();
    let measured = on_own_event_loop(move || on_one_thread(address, latency, recording)).await;
    services.shutdown().await;
    let measured = measured?;
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "On a single-threaded event loop, a task ticks every {} ms while {} blocking HTTP GETs (a synchronous \
             client, like requests.get) ask the weather service for an answer after {} ms each: first called \
             directly from a task, one after another, then each handed to a thread with spawn_blocking \
             (asyncio.to_thread) and awaited together.",
            TICK_PERIOD.as_millis(),
            CITIES.len(),
            latency.as_millis()
        ),
        format!(
            "Called directly, the calls freeze the loop for their whole duration (the ticker's worst delay at \
             least {:.0}% of it); on threads, the loop keeps ticking (no tick {LATE_TICK_MS:.0} ms late) and the \
             calls overlap (at most {:.0}% of their time one after another).",
            BLOCKED_FRACTION * 100.0,
            OVERLAPPED_MAX_SHARE * 100.0
        ),
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: every call answered; directly, the ticker's worst delay is at least [`BLOCKED_FRACTION`]
/// of the calls' total; on threads, no tick [`LATE_TICK_MS`] late and the total at most [`OVERLAPPED_MAX_SHARE`]
/// of the direct one.
pub fn judge(measured: &Measured) -> Verdict {
    let directly = &measured.directly;
    let to_thread = &measured.to_thread;
    let failed = directly
        .calls
        .iter()
        .chain(&to_thread.calls)
        .filter(|call| !call.ok)
        .count();
    if failed > 0 {
        return Verdict::fail(format!(
            "{failed} call(s) failed, so the timings mean nothing"
        ));
    }
    let frozen = directly.total_ms * BLOCKED_FRACTION;
    let overlapped = directly.total_ms * OVERLAPPED_MAX_SHARE;
    Verdict::all([
        Verdict::check(
            directly.worst_tick_delay_ms >= frozen,
            format!(
                "directly: the calls took {:.0} ms and delayed a tick by {:.0} ms (at least {frozen:.0} ms \
                 expected)",
                directly.total_ms, directly.worst_tick_delay_ms
            ),
        ),
        Verdict::check(
            to_thread.worst_tick_delay_ms < LATE_TICK_MS,
            format!(
                "on threads: worst tick delay {:.1} ms over {} ticks (under {LATE_TICK_MS:.0} ms expected)",
                to_thread.worst_tick_delay_ms, to_thread.ticks
            ),
        ),
        Verdict::check(
            to_thread.total_ms <= overlapped,
            format!(
                "on threads the calls took {:.0} ms together, against {:.0} ms directly (at most \
                 {overlapped:.0} ms expected)",
                to_thread.total_ms, directly.total_ms
            ),
        ),
    ])
}

/// One tick: when it was due and how late it came.
#[derive(Debug, Clone, Copy)]
struct Tick {
    due: Instant,
    late: Duration,
}

/// The calls of one phase, and when the phase began and ended.
struct Phase {
    calls: Vec<CallFigure>,
    started: Instant,
    ended: Instant,
}

/// Everything that runs on the single event-loop thread: the ticker, a child of a group that joins it, and the
/// two phases, each between quiet spells.
async fn on_one_thread(
    address: SocketAddr,
    latency: Duration,
    timeline: Timeline,
) -> Result<Measured, LabError> {
    let ticks: Arc<Mutex<Vec<Tick>>> = Arc::default();
    let stop = CancellationToken::new();
    let (directly, to_thread) = scope(GroupConfig::new(), |group| {
        let (ticks, stop, timeline) = (Arc::clone(&ticks), stop.clone(), timeline.clone());
        async move {
            let ticker = tick(ticks, stop.clone(), timeline.clone());
            group
                .spawn("ticker", async move {
                    ticker.await;
                    Ok(())
                })
                .await
                .map_err(|error| LabError::Setup(error.to_string()))?;
            tokio::time::sleep(QUIET).await;
            let directly = call_directly(address, latency, &timeline);
            tokio::time::sleep(QUIET).await;
            let to_thread = call_on_threads(&group, address, latency, &timeline).await?;
            tokio::time::sleep(QUIET).await;
            stop.cancel();
            Ok((directly, to_thread))
        }
    })
    .await
    .map_err(|error| {
        let cause = error.cause.to_string();
        error
            .into_first_error()
            .unwrap_or_else(|| LabError::Setup(format!("the ticker stopped: {cause}")))
    })?;
    let ticks = ticks.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Ok(Measured {
        call_latency_ms: millis(latency),
        directly: figures(directly, &ticks),
        to_thread: figures(to_thread, &ticks),
    })
}

/// The bug this experiment shows: each call blocks the loop's only thread until its answer has arrived.
fn call_directly(address: SocketAddr, latency: Duration, timeline: &Timeline) -> Phase {
    let started = Instant::now();
    let calls = CITIES
        .iter()
        .map(|city| timed_call(address, city, latency, timeline, "event loop"))
        .collect();
    Phase {
        calls,
        started,
        ended: Instant::now(),
    }
}

/// The fix: each call on a blocking thread of its own, a child of the group, all awaited together.
async fn call_on_threads(
    group: &Group<LabError>,
    address: SocketAddr,
    latency: Duration,
    timeline: &Timeline,
) -> Result<Phase, LabError> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for (index, city) in CITIES.into_iter().enumerate() {
        let timeline = timeline.clone();
        // The token goes unused: a blocking read cannot be interrupted, and `SOCKET_TIMEOUT` bounds it instead.
        let handle = group
            .spawn_blocking(format!("to_thread {city}"), move |_token| {
                let lane = format!("thread {}", index + 1);
                Ok(timed_call(address, city, latency, &timeline, &lane))
            })
            .await
            .map_err(|error| LabError::Setup(error.to_string()))?;
        handles.push(handle);
    }
    let mut calls = Vec::new();
    for handle in handles {
        calls.push(
            handle
                .await
                .map_err(|lost| LabError::Setup(lost.to_string()))?,
        );
    }
    Ok(Phase {
        calls,
        started,
        ended: Instant::now(),
    })
}

/// One blocking weather call for `city`, timed and drawn on `lane`.
fn timed_call(
    address: SocketAddr,
    city: &str,
    latency: Duration,
    timeline: &Timeline,
    lane: &str,
) -> CallFigure {
    let path = format!(
        "{}?city={city}&latency_ms={}",
        Service::Weather.path(),
        latency.as_millis()
    );
    let started = Instant::now();
    let ok = blocking_get(address, &path).unwrap_or(false);
    let ended = Instant::now();
    timeline.record(
        Span::new(
            lane,
            format!("GET weather {city}, blocking"),
            Activity::Fetch,
            timeline.offset(started.into_std()),
            timeline.offset(ended.into_std()),
        )
        .with_outcome(if ok {
            SpanOutcome::Ok
        } else {
            SpanOutcome::Failed
        }),
    );
    CallFigure {
        city: city.to_owned(),
        ms: millis(ended - started),
        ok,
    }
}

/// An HTTP GET the way a synchronous client makes one: the calling thread waits on the socket until the whole
/// response has arrived. True when the service answered 200.
fn blocking_get(address: SocketAddr, path_and_query: &str) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&address, SOCKET_TIMEOUT)?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    // One write: `write!` on an unbuffered stream would send each piece as a segment of its own.
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response.starts_with(b"HTTP/1.1 200 "))
}

/// The phase's figures, with the ticks that were waiting at some point of it: due before it ended, come after it
/// started (a tick due just before a frozen phase comes only after it).
fn figures(phase: Phase, ticks: &[Tick]) -> PhaseFigures {
    let in_phase: Vec<&Tick> = ticks
        .iter()
        .filter(|tick| tick.due < phase.ended && tick.due + tick.late > phase.started)
        .collect();
    PhaseFigures {
        calls: phase.calls,
        total_ms: millis(phase.ended - phase.started),
        ticks: in_phase.len(),
        worst_tick_delay_ms: millis(
            in_phase
                .iter()
                .map(|tick| tick.late)
                .max()
                .unwrap_or_default(),
        ),
    }
}

/// The ticker: wakes every [`TICK_PERIOD`] and records how late it woke; a late tick is drawn on its lane.
async fn tick(ticks: Arc<Mutex<Vec<Tick>>>, stop: CancellationToken, timeline: Timeline) {
    let lane = "ticker";
    timeline.event(lane, "ticking", EventKind::Note);
    let mut due = Instant::now() + TICK_PERIOD;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        ticks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Tick { due, late });
        if late >= TICK_PERIOD {
            timeline.record(
                Span::new(
                    lane,
                    format!("tick {} ms late", late.as_millis()),
                    Activity::Other,
                    timeline.offset(due.into_std()),
                    timeline.offset(now.into_std()),
                )
                .with_outcome(SpanOutcome::Failed),
            );
        }
        due = now + TICK_PERIOD;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(call_ms: &[f64], total_ms: f64, worst_tick_delay_ms: f64) -> PhaseFigures {
        PhaseFigures {
            calls: call_ms
                .iter()
                .zip(CITIES)
                .map(|(&ms, city)| CallFigure {
                    city: city.to_owned(),
                    ms,
                    ok: true,
                })
                .collect(),
            total_ms,
            ticks: 15,
            worst_tick_delay_ms,
        }
    }

    fn textbook() -> Measured {
        Measured {
            call_latency_ms: 150.0,
            directly: phase(&[152.0, 151.0, 153.0], 456.0, 448.0),
            to_thread: phase(&[153.0, 154.0, 152.0], 156.0, 1.2),
        }
    }

    #[test]
    fn to_thread_passes_a_textbook_run() {
        let verdict = judge(&textbook());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn to_thread_fails_when_the_loop_lagged_on_threads_or_did_not_freeze_directly() {
        let mut measured = textbook();
        measured.to_thread.worst_tick_delay_ms = 150.0;
        let verdict = judge(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.starts_with("on threads: worst tick delay 150.0"),
            "{}",
            verdict.reason
        );

        let mut measured = textbook();
        measured.directly.worst_tick_delay_ms = 12.0;
        assert!(!judge(&measured).pass);
    }

    #[test]
    fn to_thread_fails_when_the_calls_did_not_overlap_or_one_failed() {
        let mut measured = textbook();
        measured.to_thread = phase(&[152.0, 151.0, 153.0], 458.0, 1.2);
        let verdict = judge(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("took 458 ms together"),
            "{}",
            verdict.reason
        );

        let mut measured = textbook();
        measured.to_thread.calls[2].ok = false;
        assert!(!judge(&measured).pass);
    }

    #[test]
    fn a_blocking_get_reads_the_whole_answer_and_its_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut request = Vec::new();
                let mut buffer = [0_u8; 256];
                while !request.ends_with(b"\r\n\r\n") {
                    let read = stream.read(&mut buffer).expect("read the request");
                    assert!(read > 0, "the request ended early: {request:?}");
                    request.extend_from_slice(&buffer[..read]);
                }
                assert!(request.starts_with(b"GET /weather?city=Lima HTTP/1.1\r\n"));
                write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\n{{}}")
                    .expect("answer");
            }
        });
        assert!(blocking_get(address, "/weather?city=Lima").expect("the first call"));
        assert!(!blocking_get(address, "/weather?city=Lima").expect("the second call"));
        server.join().expect("the server thread");
    }
}
