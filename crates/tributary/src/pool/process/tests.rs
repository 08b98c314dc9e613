//! Tests for the process pool. The worker processes are this test binary itself.
//!
//! # How the test binary becomes a worker
//!
//! [`test_worker_command`] starts `current_exe()` with
//! `--exact pool::process::tests::process_worker_entry --nocapture --test-threads=1` and
//! `TRIBUTARY_TEST_WORKER=<mode>`. libtest runs only [`process_worker_entry`], which sees the variable, serves
//! the protocol on stdin and stdout and exits the process at end of input, before libtest reports anything.
//! libtest's own lines ("running 1 test", "test ... ") still reach stdout; the frame tag lets the parent skip
//! them, which is exactly the robustness the protocol promises. In an ordinary test run the variable is unset
//! and the entry returns at once.
//!
//! Waits that would hang if the pool were broken are bounded by [`PATIENCE`].

use std::io::{self, BufRead, Cursor, Write};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::frame::{
    FRAME_TAG, Reply, RequestFrame, ResponseFrame, decode_reply, encode_frame, frame_payload,
};
use super::*;
use crate::pool::test_jobs::{CountAloud, CrashJob, SpinJob, jobs};
use crate::pool::{CpuJob, ExecutorError, JobTiming};

const PATIENCE: Duration = Duration::from_secs(30);

/// Environment variable that turns the test binary into a worker (see [`process_worker_entry`]).
const TEST_WORKER_ENV: &str = "TRIBUTARY_TEST_WORKER";

/// The test binary itself as a well-behaved worker serving [`test_jobs`](crate::pool::test_jobs).
pub(crate) fn test_worker_command() -> WorkerCommand {
    test_worker_command_in_mode("serve")
}

fn test_worker_command_in_mode(mode: &str) -> WorkerCommand {
    let test_binary = std::env::current_exe().expect("the test binary knows its path");
    WorkerCommand::new(
        test_binary,
        [
            "--exact",
            "pool::process::tests::process_worker_entry",
            "--nocapture",
            "--test-threads=1",
        ],
    )
    .with_env(TEST_WORKER_ENV, mode)
}

/// Not a test: the worker side of these tests (see the module docs). Returns at once in an ordinary run.
#[test]
fn process_worker_entry() {
    let Ok(mode) = std::env::var(TEST_WORKER_ENV) else {
        return;
    };
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let served = match mode.as_str() {
        "serve" => serve_worker(&jobs(), stdin, &mut stdout),
        // A broken worker: answers every line with a frame that is not JSON.
        "malformed" => stdin.lines().try_for_each(|line| {
            line?;
            writeln!(stdout, "{FRAME_TAG}{{this is not json")?;
            stdout.flush()
        }),
        other => panic!("unknown {TEST_WORKER_ENV} mode `{other}`"),
    };
    // Exit now, so libtest never prints its summary into the protocol stream.
    std::process::exit(i32::from(served.is_err()));
}

fn pool_of(workers: usize, command: WorkerCommand) -> ProcessPool {
    let workers = NonZeroUsize::new(workers).expect("positive");
    ProcessPool::new(ProcessPoolConfig {
        workers,
        queue_capacity: workers,
        command,
    })
    .expect("start worker processes")
}

async fn spin_on(
    pool: &ProcessPool,
    rounds: u64,
) -> Result<(Option<u64>, JobTiming), ExecutorError> {
    tokio::time::timeout(PATIENCE, pool.run(SpinJob { rounds }))
        .await
        .expect("the worker answered in time")
}

fn expected_spin(rounds: u64) -> Option<u64> {
    SpinJob { rounds }.run(&|| false)
}

#[tokio::test]
async fn a_job_round_trips_through_a_worker_process() {
    let pool = pool_of(2, test_worker_command());
    let (output, timing) = spin_on(&pool, 30_000).await.expect("job ran");
    assert_eq!(output, expected_spin(30_000));
    assert!(timing.worker_index < 2);
    let (output, _) = spin_on(&pool, 5_000).await.expect("second job ran");
    assert_eq!(output, expected_spin(5_000));
    let stats = pool.stats();
    assert_eq!(
        (stats.jobs.completed, stats.crashed, stats.workers_replaced),
        (2, 0, 0)
    );
    assert_eq!((stats.jobs.queued, stats.jobs.running), (0, 0));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_crash_is_reported_and_the_next_job_runs_on_a_replacement() {
    let pool = pool_of(1, test_worker_command());
    let first_pid = pool.worker_pids()[0].expect("worker started");
    let crashed = tokio::time::timeout(PATIENCE, pool.run(CrashJob))
        .await
        .expect("crash noticed in time");
    match crashed {
        Err(ExecutorError::WorkerCrashed { worker, detail }) => {
            assert_eq!(worker, 0);
            assert!(detail.contains("stdout closed"), "{detail}");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    assert_eq!(pool.worker_pids(), vec![None]);

    let (output, _) = spin_on(&pool, 1_000)
        .await
        .expect("a replacement ran the next job");
    assert_eq!(output, expected_spin(1_000));
    assert_ne!(pool.worker_pids()[0], Some(first_pid));
    let stats = pool.stats();
    assert_eq!(
        (stats.crashed, stats.workers_replaced, stats.jobs.completed),
        (1, 1, 1)
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn dropping_a_running_job_kills_its_worker() {
    let pool = pool_of(1, test_worker_command());
    let first_pid = pool.worker_pids()[0].expect("worker started");
    // Hours of work: it can only end by being killed. The first poll takes the idle worker and sends the job
    // before waiting for the reply, so by the time the timeout fires the job is running.
    let endless = pool.run(SpinJob { rounds: u64::MAX });
    let gave_up = tokio::time::timeout(Duration::from_millis(50), endless).await;
    assert!(gave_up.is_err(), "an endless job cannot finish");
    let stats = pool.stats();
    assert_eq!((stats.jobs.cancelled, stats.jobs.running), (1, 0));
    assert_eq!(pool.worker_pids(), vec![None]);
    #[cfg(target_os = "linux")]
    wait_until_dead(first_pid).await;

    let (output, _) = spin_on(&pool, 1_000)
        .await
        .expect("a replacement ran the next job");
    assert_eq!(output, expected_spin(1_000));
    assert_ne!(pool.worker_pids()[0], Some(first_pid));
    assert_eq!(pool.stats().workers_replaced, 1);
    pool.shutdown().await;
}

/// Waits until `pid` no longer runs (gone, or a zombie waiting for tokio's reaper). SIGKILL is delivered
/// asynchronously, so this polls the kernel's view; it fails after [`PATIENCE`].
#[cfg(target_os = "linux")]
async fn wait_until_dead(pid: u32) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // The state follows the parenthesised command name, which may itself contain spaces.
                let after_name = stat.rsplit_once(')')?.1;
                after_name.split_whitespace().next().map(str::to_owned)
            });
        match state.as_deref() {
            None | Some("Z" | "X") => return,
            Some(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "worker {pid} still runs after being killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_malformed_reply_is_reported_and_its_worker_replaced() {
    let pool = pool_of(1, test_worker_command_in_mode("malformed"));
    for _ in 0..2 {
        match spin_on(&pool, 10).await {
            Err(ExecutorError::Protocol { worker: 0, detail }) => {
                assert!(detail.contains("parse reply"), "{detail}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
    let stats = pool.stats();
    assert_eq!((stats.crashed, stats.workers_replaced), (2, 1));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_cannot_start_is_reported() {
    let command = WorkerCommand::new("/nonexistent/tributary-worker", ["__worker"]);
    let started = ProcessPool::new(ProcessPoolConfig {
        workers: NonZeroUsize::MIN,
        queue_capacity: NonZeroUsize::MIN,
        command,
    });
    assert!(
        matches!(started, Err(ExecutorError::SpawnWorker { .. })),
        "{started:?}"
    );
}

#[test]
fn the_current_executable_can_be_its_own_worker() {
    let command = WorkerCommand::current_exe(["__worker"]).expect("the test binary knows its path");
    assert_eq!(
        command.program,
        std::env::current_exe().expect("current exe")
    );
    assert_eq!(command.args, ["__worker"]);
}

#[test]
fn a_pool_needs_a_runtime() {
    let started = ProcessPool::new(ProcessPoolConfig {
        workers: NonZeroUsize::MIN,
        queue_capacity: NonZeroUsize::MIN,
        command: test_worker_command(),
    });
    assert!(
        matches!(started, Err(ExecutorError::NoRuntime)),
        "{started:?}"
    );
}

#[tokio::test]
async fn jobs_after_shutdown_are_refused() {
    let pool = pool_of(1, test_worker_command());
    pool.shutdown().await;
    assert_eq!(pool.worker_pids(), vec![None]);
    assert!(matches!(
        spin_on(&pool, 1).await,
        Err(ExecutorError::ShutDown)
    ));
    assert_eq!(pool.stats().jobs.rejected, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_job_waits_for_a_busy_worker() {
    let pool = pool_of(1, test_worker_command());
    let (first, second) = tokio::join!(spin_on(&pool, 200_000), spin_on(&pool, 1_000));
    let (_, first) = first.expect("first job");
    let (_, second) = second.expect("second job");
    // One worker: the second job starts only after the first one finished.
    assert!(second.started_at >= first.finished_at);
    assert!(second.queue_wait() > Duration::ZERO);
    pool.shutdown().await;
}

#[test]
fn the_worker_skips_stray_lines_and_rejects_malformed_frames() {
    let request = encode_frame(&RequestFrame {
        id: 9,
        job: SpinJob::NAME.to_owned(),
        input: serde_json::json!({"rounds": 100}),
        trace: None,
    });
    let input = format!(
        "running 1 test\n{FRAME_TAG}{{\"id\":4,\"job\":\"teleport\",\"input\":{{}}}}\n\
         {FRAME_TAG}not json at all\n\
         {FRAME_TAG}{{\"id\":5,\"job\":\"spin\",\"input\":{{\"turns\":1}}}}\n\
         some log line\ntest worker ... {request}"
    );
    let mut output = Vec::new();
    serve_worker(&jobs(), Cursor::new(input), &mut output).expect("serve until end of input");
    let output = String::from_utf8(output).expect("frames are UTF-8");
    let frames: Vec<ResponseFrame> = output
        .lines()
        .map(|line| {
            let payload = frame_payload(line).expect("the worker writes only frames");
            serde_json::from_str(payload).expect("the worker writes valid frames")
        })
        .collect();
    assert_eq!(frames.len(), 4, "{output}");
    let rejection = |frame: &ResponseFrame| frame.rejected.clone().unwrap_or_default();
    assert_eq!(frames[0].id, 4);
    assert!(
        rejection(&frames[0]).contains(
            "unknown job `teleport`; this worker runs: count-aloud, crash, spin, spin-for"
        ),
        "{output}"
    );
    assert_eq!(frames[1].id, 0);
    assert!(rejection(&frames[1]).contains("parse request"), "{output}");
    assert_eq!(frames[2].id, 5);
    assert!(
        rejection(&frames[2]).contains("parse job `spin`"),
        "{output}"
    );
    assert_eq!(frames[3].id, 9);
    let output = frames.into_iter().nth(3).expect("four frames").into_reply();
    assert_eq!(
        output,
        Ok(Reply::Output(serde_json::json!(expected_spin(100))))
    );
}

#[test]
#[should_panic(expected = "two worker jobs are named `spin`")]
fn two_jobs_with_one_name_are_refused() {
    let _ = jobs().with::<SpinJob>();
}

#[tokio::test]
async fn a_reply_that_does_not_decode_as_the_output_is_a_protocol_error() {
    /// Claims the name of `spin-for` (whose output is a bool) but expects a number back.
    #[derive(Debug, Serialize, Deserialize)]
    struct Impostor {
        millis: u64,
    }
    impl CpuJob for Impostor {
        const NAME: &'static str = "spin-for";
        type Output = u64;
        fn run(self, _should_stop: &dyn Fn() -> bool) -> u64 {
            0
        }
    }
    let pool = pool_of(1, test_worker_command());
    let replied = tokio::time::timeout(PATIENCE, pool.run(Impostor { millis: 0 }))
        .await
        .expect("answered in time");
    match replied {
        Err(ExecutorError::Protocol { detail, .. }) => {
            assert!(
                detail.contains("decode the output of `spin-for`"),
                "{detail}"
            );
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    pool.shutdown().await;
}

/// Progress frames come before the reply, addressed like it; a frame that is both, or progress for another
/// request, is refused.
#[test]
fn progress_frames_precede_the_reply_and_must_answer_the_awaited_request() {
    let request = encode_frame(&RequestFrame {
        id: 3,
        job: CountAloud::NAME.to_owned(),
        input: serde_json::json!({"count": 2}),
        trace: None,
    });
    let mut output = Vec::new();
    serve_worker(&jobs(), Cursor::new(request), &mut output).expect("serve until end of input");
    let output = String::from_utf8(output).expect("frames are UTF-8");
    let replies: Vec<Result<Reply, String>> = output
        .lines()
        .map(|line| decode_reply(frame_payload(line).expect("only frames"), 3))
        .collect();
    assert_eq!(
        replies,
        [
            Ok(Reply::Progress("1".to_owned())),
            Ok(Reply::Progress("2".to_owned())),
            Ok(Reply::Output(serde_json::json!(2))),
        ],
        "{output}"
    );
    let both = decode_reply(r#"{"id":3,"output":1,"progress":"x"}"#, 3);
    assert!(both.is_err_and(|why| why.contains("both")));
    let elsewhere = decode_reply(r#"{"id":4,"progress":"x"}"#, 3);
    assert!(elsewhere.is_err_and(|why| why.contains("request 4")));
}

#[test]
fn frames_are_found_after_stray_text_on_the_same_line() {
    assert_eq!(
        frame_payload(&format!("test x ... {FRAME_TAG}{{}}\n")),
        Some("{}")
    );
    assert_eq!(frame_payload("running 1 test"), None);
}

#[tokio::test]
async fn a_job_dropped_while_waiting_for_a_worker_never_runs() {
    let pool = pool_of(1, test_worker_command());
    let mut busy = std::pin::pin!(pool.run(SpinJob { rounds: 200_000 }));
    assert!(futures::poll!(busy.as_mut()).is_pending());
    let mut waiting = Box::pin(pool.run(SpinJob { rounds: 1 }));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    assert_eq!(pool.stats().jobs.queued, 1);
    drop(waiting);
    tokio::time::timeout(PATIENCE, busy)
        .await
        .expect("answered in time")
        .expect("the running job is unaffected");
    let stats = pool.stats();
    assert_eq!(
        (stats.jobs.skipped, stats.jobs.completed, stats.jobs.queued),
        (1, 1, 0)
    );
    assert_eq!(stats.workers_replaced, 0);
    pool.shutdown().await;
}

#[test]
fn a_traced_worker_runs_each_job_in_the_span_made_from_the_context_sent_with_it() {
    let traced = encode_frame(&RequestFrame {
        id: 1,
        job: SpinJob::NAME.to_owned(),
        input: serde_json::json!({"rounds": 10}),
        trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
    });
    let untraced = encode_frame(&RequestFrame {
        id: 2,
        job: SpinJob::NAME.to_owned(),
        input: serde_json::json!({"rounds": 10}),
        trace: None,
    });
    let seen = std::sync::Mutex::new(Vec::new());
    let mut output = Vec::new();
    serve_worker_traced(
        &jobs(),
        Cursor::new(format!("{traced}{untraced}")),
        &mut output,
        |job, trace| {
            seen.lock()
                .expect("the list")
                .push((job.to_owned(), trace.map(str::to_owned)));
            tracing::Span::none()
        },
    )
    .expect("serve until end of input");
    assert_eq!(
        seen.into_inner().expect("the list"),
        [
            (
                "spin".to_owned(),
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned())
            ),
            ("spin".to_owned(), None),
        ]
    );
    assert_eq!(String::from_utf8(output).expect("utf-8").lines().count(), 2);
}
