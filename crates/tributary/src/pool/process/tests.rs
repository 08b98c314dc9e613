//! Tests for the process pool. The worker processes are this test binary itself.
//!
//! # How the test binary becomes a worker
//!
//! [`test_worker_command`](super::test_worker_command) starts `current_exe()` with
//! `--exact pool::process::tests::process_worker_entry --nocapture --test-threads=1` and
//! `TRIBUTARY_TEST_WORKER=<mode>`. libtest runs only [`process_worker_entry`], which sees the variable, serves
//! the protocol on stdin and stdout and exits the process at end of input, before libtest reports anything.
//! libtest's own lines ("running 1 test", "test ... ") still reach stdout; the frame tag lets the parent skip
//! them, which is exactly the robustness the protocol promises. In an ordinary test run the variable is unset
//! and the entry returns at once.
//!
//! Waits that would hang if the pool were broken are bounded by [`PATIENCE`].

use std::io::Cursor;
use std::time::Duration;

use super::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// Not a test: the worker side of these tests (see the module docs). Returns at once in an ordinary run.
#[test]
fn process_worker_entry() {
    let Ok(mode) = std::env::var(TEST_WORKER_ENV) else {
        return;
    };
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let served = match mode.as_str() {
        "serve" => serve_worker(stdin, &mut stdout),
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

async fn burn_on(
    pool: &ProcessPool,
    units: u64,
) -> Result<(WorkerResponse, JobTiming), ExecutorError> {
    tokio::time::timeout(PATIENCE, pool.run(WorkerRequest::Burn(BurnJob { units })))
        .await
        .expect("the worker answered in time")
}

fn expected_burn(units: u64) -> WorkerResponse {
    WorkerResponse::Burned(burn(BurnJob { units }, &|| false))
}

#[tokio::test]
async fn a_job_round_trips_through_a_worker_process() {
    let pool = pool_of(2, test_worker_command());
    let job = InferenceJob {
        question: "What is the news about trains?".to_owned(),
        document: Document::new(
            "news",
            "Trains run late today. The new line opens next week.",
        ),
        cost: InferenceCost::units(30_000),
    };
    let expected = infer(&job.question, &job.document, job.cost, &|| false);
    let (response, timing) = tokio::time::timeout(PATIENCE, pool.run(WorkerRequest::Infer(job)))
        .await
        .expect("answered in time")
        .expect("inference ran");
    assert_eq!(response, WorkerResponse::Inferred(expected));
    assert!(timing.worker_index < 2);
    let (response, _) = burn_on(&pool, 5_000).await.expect("burn ran");
    assert_eq!(response, expected_burn(5_000));
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
    let crashed = tokio::time::timeout(PATIENCE, pool.run(WorkerRequest::Crash))
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

    let (response, _) = burn_on(&pool, 1_000)
        .await
        .expect("a replacement ran the next job");
    assert_eq!(response, expected_burn(1_000));
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
    let endless = pool.run(WorkerRequest::Burn(BurnJob { units: u64::MAX }));
    let gave_up = tokio::time::timeout(Duration::from_millis(50), endless).await;
    assert!(gave_up.is_err(), "an endless job cannot finish");
    let stats = pool.stats();
    assert_eq!((stats.jobs.cancelled, stats.jobs.running), (1, 0));
    assert_eq!(pool.worker_pids(), vec![None]);
    #[cfg(target_os = "linux")]
    wait_until_dead(first_pid).await;

    let (response, _) = burn_on(&pool, 1_000)
        .await
        .expect("a replacement ran the next job");
    assert_eq!(response, expected_burn(1_000));
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
        match burn_on(&pool, 10).await {
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
        burn_on(&pool, 1).await,
        Err(ExecutorError::ShutDown)
    ));
    assert_eq!(pool.stats().jobs.rejected, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_job_waits_for_a_busy_worker() {
    let pool = pool_of(1, test_worker_command());
    let (first, second) = tokio::join!(burn_on(&pool, 200_000), burn_on(&pool, 1_000));
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
        request: WireRequest::Burn { units: 100 },
    });
    let input = format!(
        "running 1 test\n{FRAME_TAG}{{\"id\":4,\"request\":{{\"kind\":\"teleport\"}}}}\n\
         {FRAME_TAG}not json at all\nsome log line\ntest worker ... {request}"
    );
    let mut output = Vec::new();
    serve_worker(Cursor::new(input), &mut output).expect("serve until end of input");
    let output = String::from_utf8(output).expect("frames are UTF-8");
    let frames: Vec<ResponseFrame> = output
        .lines()
        .map(|line| {
            let payload = frame_payload(line).expect("the worker writes only frames");
            serde_json::from_str(payload).expect("the worker writes valid frames")
        })
        .collect();
    assert_eq!(frames.len(), 3, "{output}");
    assert!(matches!(
        &frames[0],
        ResponseFrame {
            id: 4,
            response: WireResponse::Rejected { .. }
        }
    ));
    assert!(matches!(
        &frames[1],
        ResponseFrame {
            id: 0,
            response: WireResponse::Rejected { .. }
        }
    ));
    assert_eq!(frames[2].id, 9);
    let ResponseFrame { response, .. } = frames.into_iter().nth(2).expect("three frames");
    assert_eq!(response.into_response(), Ok(expected_burn(100)));
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
    let mut busy = std::pin::pin!(pool.run(WorkerRequest::Burn(BurnJob { units: 200_000 })));
    assert!(futures::poll!(busy.as_mut()).is_pending());
    let mut waiting = Box::pin(pool.run(WorkerRequest::Burn(BurnJob { units: 1 })));
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
