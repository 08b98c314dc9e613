//! Tests for the CPU pool: one per rule in the pool's contract.
//!
//! Jobs are held and released with channels, never with sleeps. Any wait that could hang if the pool were broken
//! is bounded by [`PATIENCE`], so a regression fails instead of hanging the test run.

use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::poll;

use super::{CpuPool, JobContext, PoolConfig, PoolError};

/// Upper bound on waits that only time out when the pool is broken.
const PATIENCE: Duration = Duration::from_secs(10);

fn pool(workers: usize, queue_capacity: usize) -> CpuPool {
    let config = PoolConfig {
        queue_capacity: NonZeroUsize::new(queue_capacity).expect("test queue capacity is positive"),
        ..PoolConfig::with_workers(
            NonZeroUsize::new(workers).expect("test worker count is positive"),
        )
    };
    CpuPool::new(config).expect("start test pool")
}

/// A job that occupies a worker until released, and says when it has started.
struct HeldJob {
    started: flume::Receiver<()>,
    release: flume::Sender<()>,
}

impl HeldJob {
    fn new() -> (
        Self,
        impl FnOnce(&JobContext) -> &'static str + Send + 'static,
    ) {
        let (started_sender, started) = flume::bounded(1);
        let (release, release_receiver) = flume::bounded::<()>(1);
        let job = move |_: &JobContext| {
            let _ = started_sender.send(());
            let _ = release_receiver.recv_timeout(PATIENCE);
            "held"
        };
        (Self { started, release }, job)
    }

    async fn wait_started(&self) {
        tokio::time::timeout(PATIENCE, self.started.recv_async())
            .await
            .expect("held job started in time")
            .expect("held job reports its start");
    }

    fn release(&self) {
        self.release.send(()).expect("held job still waiting");
    }
}

#[tokio::test]
async fn submit_returns_the_value_and_where_and_when_it_ran() {
    let pool = pool(2, 4);
    let before = Instant::now();
    let ((value, lane), timing) = pool
        .submit_timed(|ctx: &JobContext| (6 * 7, ctx.worker_index()))
        .await
        .expect("job runs");
    assert_eq!(value, 42);
    assert_eq!(timing.worker_index, lane);
    assert!(timing.worker_index < 2);
    assert!(before <= timing.queued_at);
    assert!(timing.queued_at <= timing.started_at);
    assert!(timing.started_at <= timing.finished_at);
    assert_eq!(
        pool.submit(|_: &JobContext| "plain")
            .await
            .expect("job runs"),
        "plain"
    );
}

#[test]
fn default_config_has_one_worker_per_core() {
    let cores = std::thread::available_parallelism().expect("core count is known");
    let config = PoolConfig::default();
    assert_eq!(config.workers, cores);
    assert!(config.queue_capacity >= config.workers);
}

#[tokio::test]
async fn submit_waits_while_the_queue_is_full_and_proceeds_when_a_slot_frees() {
    let pool = pool(1, 1);
    let (held, held_job) = HeldJob::new();
    let running = pool.enqueue(held_job).await.expect("queue has room");
    held.wait_started().await;
    let queued = pool
        .enqueue(|_: &JobContext| "queued")
        .await
        .expect("the one slot is free");

    let mut waiting = pin!(pool.enqueue(|_: &JobContext| "waiting"));
    assert!(
        poll!(&mut waiting).is_pending(),
        "the queue is full, so enqueue must wait"
    );
    assert!(
        poll!(&mut waiting).is_pending(),
        "still full while the worker is held"
    );

    held.release();
    let waiting = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("a slot frees once the worker moves on")
        .expect("pool is running");
    assert_eq!(running.await.expect("held job finishes"), "held");
    assert_eq!(queued.await.expect("queued job runs"), "queued");
    assert_eq!(waiting.await.expect("waiting job runs"), "waiting");
    assert_eq!(pool.stats().rejected, 0);
}

#[tokio::test]
async fn try_submit_fails_at_once_when_the_queue_is_full() {
    let pool = pool(1, 1);
    let (held, held_job) = HeldJob::new();
    let running = pool.try_submit(held_job).expect("queue has room");
    held.wait_started().await;
    let queued = pool
        .try_submit(|_: &JobContext| 1)
        .expect("the one slot is free");

    let refused = pool.try_submit(|_: &JobContext| 2);
    assert!(
        matches!(refused, Err(PoolError::Overloaded { queue_capacity: 1 })),
        "{refused:?}"
    );
    let stats = pool.stats();
    assert_eq!((stats.rejected, stats.queued, stats.running), (1, 1, 1));

    held.release();
    running.await.expect("held job finishes");
    assert_eq!(queued.await.expect("queued job runs"), 1);
}

#[tokio::test]
async fn a_job_dropped_before_it_starts_never_runs() {
    let pool = pool(1, 4);
    let (held, held_job) = HeldJob::new();
    let running = pool.enqueue(held_job).await.expect("queue has room");
    held.wait_started().await;

    let ran = Arc::new(AtomicBool::new(false));
    let ran_in_job = Arc::clone(&ran);
    {
        let mut abandoned =
            pin!(pool.submit(move |_: &JobContext| ran_in_job.store(true, Ordering::SeqCst)));
        assert!(
            poll!(&mut abandoned).is_pending(),
            "queued behind the held job"
        );
        assert_eq!(pool.stats().queued, 1);
    } // the caller stops waiting here
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.skipped), (0, 1));

    held.release();
    running.await.expect("held job finishes");
    // The queue is FIFO on one worker: once this job has run, the abandoned one has been taken off the queue.
    pool.submit(|_: &JobContext| ())
        .await
        .expect("later job runs");
    assert!(!ran.load(Ordering::SeqCst), "abandoned job must not run");
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.skipped, stats.cancelled), (2, 1, 0));
}

#[tokio::test]
async fn a_submit_dropped_while_waiting_for_a_queue_slot_never_runs() {
    let pool = pool(1, 1);
    let (held, held_job) = HeldJob::new();
    let running = pool.enqueue(held_job).await.expect("queue has room");
    held.wait_started().await;
    let queued = pool
        .enqueue(|_: &JobContext| ())
        .await
        .expect("the one slot is free");

    let ran = Arc::new(AtomicBool::new(false));
    let ran_in_job = Arc::clone(&ran);
    {
        let mut waiting =
            pin!(pool.submit(move |_: &JobContext| ran_in_job.store(true, Ordering::SeqCst)));
        assert!(poll!(&mut waiting).is_pending(), "the queue is full");
    } // the caller gives up while still waiting for a slot
    assert_eq!(pool.stats().skipped, 1);

    held.release();
    running.await.expect("held job finishes");
    queued.await.expect("queued job runs");
    pool.submit(|_: &JobContext| ())
        .await
        .expect("later job runs");
    assert!(
        !ran.load(Ordering::SeqCst),
        "a job given up before it was queued must not run"
    );
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.skipped, stats.completed), (0, 1, 3));
}

#[tokio::test]
async fn dropping_the_caller_while_the_job_runs_fires_its_cancellation_token() {
    let pool = pool(1, 4);
    let (started_sender, started) = flume::bounded(1);
    let (saw_cancel_sender, saw_cancel) = flume::bounded(1);
    {
        let mut caller = pin!(pool.submit(move |ctx: &JobContext| {
            let _ = started_sender.send(());
            let give_up_at = Instant::now() + PATIENCE;
            while !ctx.is_cancelled() && Instant::now() < give_up_at {
                std::thread::yield_now();
            }
            let _ = saw_cancel_sender.send(ctx.cancellation_token().is_cancelled());
        }));
        assert!(poll!(&mut caller).is_pending());
        started.recv_async().await.expect("job starts");
        assert_eq!(pool.stats().running, 1);
    } // the caller stops waiting here
    let saw_cancel = saw_cancel.recv_async().await.expect("job reports");
    assert!(saw_cancel, "the running job must see its token fire");
    // Wait for the worker to be free again before reading the counters.
    pool.submit(|_: &JobContext| ())
        .await
        .expect("later job runs");
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.skipped, stats.running), (1, 0, 0));
}

#[tokio::test]
async fn a_panicking_job_returns_an_error_and_the_worker_keeps_serving() {
    let pool = pool(1, 4);
    let outcome = pool
        .submit(|_: &JobContext| -> u32 { panic!("model weights missing") })
        .await;
    match outcome {
        Err(PoolError::Panicked(message)) => {
            assert!(message.contains("model weights missing"), "{message}")
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    let formatted = pool
        .submit(|_: &JobContext| -> u32 { panic!("{} tokens", 3) })
        .await;
    assert!(matches!(formatted, Err(PoolError::Panicked(message)) if message == "3 tokens"));

    assert_eq!(
        pool.submit(|_: &JobContext| 7)
            .await
            .expect("the same worker still serves"),
        7
    );
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed, stats.running), (2, 1, 0));
}

#[tokio::test]
async fn counters_follow_jobs_through_queue_and_workers() {
    let pool = pool(1, 4);
    assert_eq!(
        pool.stats(),
        super::PoolStats {
            workers: 1,
            queue_capacity: 4,
            ..Default::default()
        }
    );

    let (held, held_job) = HeldJob::new();
    let running = pool.enqueue(held_job).await.expect("queue has room");
    held.wait_started().await;
    let first = pool
        .enqueue(|_: &JobContext| ())
        .await
        .expect("queue has room");
    let second = pool
        .enqueue(|_: &JobContext| ())
        .await
        .expect("queue has room");
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued, stats.completed), (1, 2, 0));

    held.release();
    running.await.expect("held job finishes");
    first.await.expect("job runs");
    second.await.expect("job runs");
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued, stats.completed), (0, 0, 3));
}

#[tokio::test]
async fn results_come_back_in_submission_order_whatever_the_completion_order() {
    const JOBS: usize = 4;
    let pool = pool(JOBS, JOBS);
    let finished_order = Arc::new(Mutex::new(Vec::new()));
    // Channel i says "job i has finished". Job i waits for job i + 1 to finish first, so completion order is the
    // reverse of submission order.
    let (finished_senders, finished_receivers): (Vec<_>, Vec<_>) =
        (0..JOBS).map(|_| flume::bounded::<()>(1)).unzip();
    let jobs = (0..JOBS).map(|index| {
        let next_finished = finished_receivers.get(index + 1).cloned();
        let i_finished = finished_senders[index].clone();
        let finished_order = Arc::clone(&finished_order);
        pool.submit(move |_: &JobContext| {
            if let Some(next_finished) = next_finished {
                next_finished
                    .recv_timeout(PATIENCE)
                    .expect("the next job finishes first");
            }
            finished_order
                .lock()
                .expect("no job panics holding the lock")
                .push(index);
            let _ = i_finished.send(());
            index
        })
    });
    let results: Vec<usize> = join_all(jobs)
        .await
        .into_iter()
        .map(|result| result.expect("job runs"))
        .collect();
    assert_eq!(results, vec![0, 1, 2, 3]);
    assert_eq!(*finished_order.lock().expect("lock"), vec![3, 2, 1, 0]);
}

#[tokio::test]
async fn jobs_run_in_parallel_on_distinct_workers() {
    let pool = pool(2, 4);
    // Each job waits for the other to have started: both finish only if they run at the same time.
    let (a_started, a_seen) = flume::bounded::<()>(1);
    let (b_started, b_seen) = flume::bounded::<()>(1);
    let first = pool.submit(move |ctx: &JobContext| {
        let _ = a_started.send(());
        (b_seen.recv_timeout(PATIENCE).is_ok(), ctx.worker_index())
    });
    let second = pool.submit(move |ctx: &JobContext| {
        let _ = b_started.send(());
        (a_seen.recv_timeout(PATIENCE).is_ok(), ctx.worker_index())
    });
    let (first, second) = tokio::join!(first, second);
    let (first_met, first_lane) = first.expect("job runs");
    let (second_met, second_lane) = second.expect("job runs");
    assert!(first_met && second_met, "the two jobs must overlap in time");
    assert_ne!(first_lane, second_lane);
}

#[tokio::test]
async fn shutdown_finishes_queued_jobs_then_refuses_new_ones() {
    let pool = pool(1, 4);
    let (held, held_job) = HeldJob::new();
    let running = pool.enqueue(held_job).await.expect("queue has room");
    held.wait_started().await;
    let queued = pool
        .enqueue(|_: &JobContext| "drained")
        .await
        .expect("queue has room");

    let clone = pool.clone();
    let mut shutdown = pin!(pool.shutdown());
    assert!(
        poll!(&mut shutdown).is_pending(),
        "shutdown waits for the held job"
    );
    assert!(pool.is_shut_down() && clone.is_shut_down());
    assert!(matches!(
        clone.submit(|_: &JobContext| ()).await,
        Err(PoolError::ShutDown)
    ));
    assert!(matches!(
        clone.try_submit(|_: &JobContext| ()),
        Err(PoolError::ShutDown)
    ));

    held.release();
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown completes once the jobs finish");
    assert_eq!(running.await.expect("held job finishes"), "held");
    assert_eq!(queued.await.expect("queued job still runs"), "drained");
    assert_eq!(pool.stats().rejected, 2);
    pool.shutdown().await; // a second shutdown is harmless
}

thread_local! {
    static KEPT_UNTIL_THREAD_EXIT: std::cell::RefCell<Option<Arc<()>>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn dropping_the_last_handle_outside_a_runtime_joins_the_workers() {
    let pool = pool(2, 4);
    let marker = Arc::new(());
    let in_job = Arc::clone(&marker);
    futures::executor::block_on(pool.submit(move |_: &JobContext| {
        KEPT_UNTIL_THREAD_EXIT.with(|slot| *slot.borrow_mut() = Some(in_job));
    }))
    .expect("job runs");
    assert_eq!(
        Arc::strong_count(&marker),
        2,
        "the worker thread keeps the marker until it exits"
    );
    drop(pool);
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "drop returns only after the worker thread has exited"
    );
}

#[tokio::test]
async fn dropping_the_last_handle_inside_a_job_does_not_deadlock() {
    let pool = pool(1, 4);
    let (held, held_job) = HeldJob::new();
    let last_handle = pool.clone();
    let running = pool
        .enqueue(move |ctx: &JobContext| {
            let value = held_job(ctx);
            drop(last_handle); // the pool's last handle dies on its own worker thread
            value
        })
        .await
        .expect("queue has room");
    held.wait_started().await;
    drop(pool);
    held.release();
    let value = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("job finishes")
        .expect("job runs");
    assert_eq!(value, "held");
}

#[tokio::test]
async fn submitting_to_a_shut_down_pool_is_an_error() {
    let pool = pool(1, 1);
    pool.shutdown().await;
    let error = pool
        .submit(|_: &JobContext| ())
        .await
        .expect_err("pool is shut down");
    assert!(matches!(error, PoolError::ShutDown));
    assert_eq!(error.to_string(), "use cpu pool: it is shut down");
}
