//! Ports of CPython's `Lib/test/test_asyncio/test_taskgroups.py` (named after the case they port), plus the
//! rules that have no asyncio counterpart (panics, concurrency limit, deadline). "Cancelling the runner
//! from outside" is dropping the scope future or cancelling the token of `cancelled_by`.
//!
//! Every case Rust can express is here. The others, and why:
//! - `_15`, `_16`, `_18`: a task awaits, or raises a new exception, inside its `except CancelledError`. Rust
//!   cancels by dropping a future; a destructor can neither await nor return an error.
//! - `_19`, `_20`, `_20a`, `_21`, `_21a`: a `finally` raises while the task is cancelled. The closest Rust
//!   has is a destructor that panics, which is ported as `panic_while_a_child_is_cancelled_..` and
//!   `group::tests::a_panic_and_an_error_are_reported_together`; `KeyboardInterrupt` and other
//!   `BaseException`s have no counterpart.
//! - `test_taskgroup_task_context`, `test_cancelling_level_preserved`, `test_error_and_cancel`,
//!   `test_cancellation_does_not_leak_out_of_tg`: contextvars and a task's `cancelling()` count. A Rust future
//!   has neither; cancellation is a token or a drop, never an ambient state of the caller that could leak.
//! - `test_taskgroup_already_entered`, `_double_enter`, `_not_entered`, `_without_parent_task`: a `scope` is
//!   a function call, so it cannot be entered twice or used before it is entered.
//! - `test_exception_refcycles_*`: reference cycles under Python's garbage collector.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::group::deadline::{Elapsed, ElapsedKind, with_timeout};

#[derive(Debug)]
enum TestError {
    ZeroDivision,
    Value(u64),
    Lost,
    Nested(Box<GroupError<TestError>>),
}

impl fmt::Display for TestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, formatter)
    }
}

impl From<ChildLost> for TestError {
    fn from(_: ChildLost) -> Self {
        TestError::Lost
    }
}

impl From<SpawnError> for TestError {
    fn from(_: SpawnError) -> Self {
        TestError::Lost
    }
}

/// Sends its name when dropped: how a test learns, without sleeping, that a child or body was cancelled.
struct DropProbe {
    name: &'static str,
    dropped: mpsc::UnboundedSender<&'static str>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let _receiver_gone = self.dropped.send(self.name);
    }
}

fn probe(name: &'static str, dropped: &mpsc::UnboundedSender<&'static str>) -> DropProbe {
    DropProbe {
        name,
        dropped: dropped.clone(),
    }
}

fn drain(receiver: &mut mpsc::UnboundedReceiver<&'static str>) -> Vec<&'static str> {
    let mut names = Vec::new();
    while let Ok(name) = receiver.try_recv() {
        names.push(name);
    }
    names.sort_unstable();
    names
}

async fn sleep_then<T>(millis: u64, value: T) -> Result<T, TestError> {
    sleep(Duration::from_millis(millis)).await;
    Ok(value)
}

async fn sleep_then_divide_by_zero(millis: u64) -> Result<u64, TestError> {
    sleep(Duration::from_millis(millis)).await;
    Err(TestError::ZeroDivision)
}

async fn panic_after(millis: u64, message: &'static str) -> Result<(), TestError> {
    sleep(Duration::from_millis(millis)).await;
    panic!("{message}");
}

async fn crash_after(millis: u64) -> Result<(), TestError> {
    sleep(Duration::from_millis(millis)).await;
    Err(TestError::Value(millis))
}

/// Ports `test_taskgroup_01`: children's results are available once the group ends.
#[tokio::test(start_paused = true)]
async fn taskgroup_01_children_results_are_returned() {
    let result = scope(GroupConfig::new(), |group| async move {
        let first = group.spawn("foo1", sleep_then(100, 42)).await?;
        let second = group.spawn("foo2", sleep_then(200, 11)).await?;
        Ok((first.await?, second.await?))
    })
    .await;
    assert_eq!(result.unwrap(), (42, 11));
}

/// Ports `test_taskgroup_02`: a child spawned after the body awaited runs as well.
#[tokio::test(start_paused = true)]
async fn taskgroup_02_spawn_after_body_awaits() {
    let result = scope(GroupConfig::new(), |group| async move {
        let first = group.spawn("foo1", sleep_then(100, 42)).await?;
        sleep(Duration::from_millis(150)).await;
        let second = group.spawn("foo2", sleep_then(200, 11)).await?;
        Ok((first.await?, second.await?))
    })
    .await;
    assert_eq!(result.unwrap(), (42, 11));
}

/// Ports `test_taskgroup_03`: cancelling one child explicitly is not a group failure.
#[tokio::test(start_paused = true)]
async fn taskgroup_03_cancelling_one_child_keeps_the_group_running() {
    let result = scope(GroupConfig::new(), |group| async move {
        let first = group.spawn("foo1", sleep_then(1000, 42)).await?;
        sleep(Duration::from_millis(150)).await;
        first.cancel();
        let second = group.spawn("foo2", sleep_then(200, 11)).await?;
        Ok((first.await, second.await?))
    })
    .await;
    let (first, second) = result.unwrap();
    assert_eq!(first.unwrap_err().name.as_ref(), "foo1");
    assert_eq!(second, 11);
}

/// Ports `test_taskgroup_04`: the first child error cancels its sibling, the code after the group does not
/// run, and the cancelled sibling is reported as cancelled, not as an error.
#[tokio::test(start_paused = true)]
async fn taskgroup_04_children_cancelled_on_first_error() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let start = Instant::now();
    let result = scope(GroupConfig::new(), |group| async move {
        group.spawn("foo1", sleep_then_divide_by_zero(100)).await?;
        let guard = probe("foo2", &dropped);
        group
            .spawn("foo2", async move {
                let _guard = guard;
                sleep_then(1000, 1).await
            })
            .await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(
        error.cause,
        ShutdownCause::ChildFailed {
            name: "foo1".into()
        }
    );
    assert!(matches!(error.failed[0].error, TestError::ZeroDivision));
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["foo1"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["foo2"]);
    assert_eq!(error.shut_down_at, start + Duration::from_millis(100));
    assert_eq!(error.cancelled[0].cancelled_at, error.shut_down_at);
    assert_eq!(drain(&mut dropped_names), ["foo2"]);
}

/// Ports `test_cancel_children_on_child_error`: three children failing at the same moment are all
/// collected, the fourth is cancelled, and so is the body.
///
/// The three failures are due at the same instant, and all three are reported: the first one polled shuts the
/// group down, but the other two were already woken then, so they run that step and fail too, as asyncio runs
/// the steps already scheduled before its cancellation (CPython's test tolerates fewer, "if the cancellation
/// happens in the middle", only for a busy host). `foo2` and the body, not due then, are cancelled. The strict
/// port, and the same on the multi-thread runtime, are in `same_instant.rs`.
#[tokio::test(start_paused = true)]
async fn cancel_children_on_child_error_collects_every_error() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let body_guard = probe("body", &dropped);
    let sibling_guard = probe("foo2", &dropped);
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        let _body_guard = body_guard;
        for name in ["foo1-a", "foo1-b", "foo1-c"] {
            group.spawn(name, sleep_then_divide_by_zero(100)).await?;
        }
        group
            .spawn("foo2", async move {
                let _guard = sibling_guard;
                sleep_then(5000, 0).await
            })
            .await?;
        sleep(Duration::from_secs(10)).await;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert!(
        error
            .failed
            .iter()
            .all(|failure| matches!(failure.error, TestError::ZeroDivision))
    );
    let mut failed: Vec<&str> = error.failed_names().collect();
    failed.sort_unstable();
    assert_eq!(failed, ["foo1-a", "foo1-b", "foo1-c"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["foo2"]);
    assert!(error.body_error.is_none());
    assert_eq!(drain(&mut dropped_names), ["body", "foo2"]);
}

/// The agent's demo: one source fails and "the other nine were cancelled at t=…", all at the same instant.
#[tokio::test(start_paused = true)]
async fn first_error_reports_the_other_nine_cancelled_with_the_instant() {
    let start = Instant::now();
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group.spawn("weather", crash_after(250)).await?;
        for index in 0..9_u64 {
            group
                .spawn(format!("source-{index}"), sleep_then(1000, ()))
                .await?;
        }
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["weather"]);
    assert_eq!(error.cancelled.len(), 9);
    let shut_down_at = start + Duration::from_millis(250);
    assert!(
        error
            .cancelled
            .iter()
            .all(|child| child.cancelled_at == shut_down_at)
    );
    assert!(
        error
            .to_string()
            .contains("child `weather` failed (1 failed, 9 cancelled)")
    );
}

/// Ports `test_cancellation`: dropping the scope future (here by an outer timeout) cancels every child.
#[tokio::test(start_paused = true)]
async fn cancellation_from_outside_cancels_every_child() {
    let start = Instant::now();
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let guards: Vec<_> = ["c0", "c1", "c2", "c3", "c4"]
        .map(|name| probe(name, &dropped))
        .into();
    drop(dropped);
    let outer = tokio::time::timeout(
        Duration::from_millis(100),
        scope(GroupConfig::new(), |group| async move {
            for guard in guards {
                group
                    .spawn(guard.name, async move {
                        let _guard = guard;
                        sleep_then(5000, ()).await
                    })
                    .await?;
            }
            Ok::<_, TestError>(())
        }),
    )
    .await;
    assert!(outer.is_err(), "the outer timeout fires first");
    let mut names = Vec::new();
    // Every sender lives in a child: the channel closes once all five were dropped by the abort.
    while let Some(name) = dropped_names.recv().await {
        names.push(name);
    }
    names.sort_unstable();
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    // Dropped by the abort at the outer timeout, not by running to the end of their 5 s sleep.
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

/// Ports `test_taskgroup_07`: cancelling from outside cancels the body as well as the children.
#[tokio::test(start_paused = true)]
async fn taskgroup_07_outer_cancellation_cancels_body_and_children() {
    let start = Instant::now();
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let body_guard = probe("body", &dropped);
    let child_guard = probe("child", &dropped);
    drop(dropped);
    let outer = tokio::time::timeout(
        Duration::from_millis(100),
        scope(GroupConfig::new(), |group| async move {
            let _body_guard = body_guard;
            group
                .spawn("child", async move {
                    let _guard = child_guard;
                    sleep_then(5000, ()).await
                })
                .await?;
            sleep(Duration::from_secs(10)).await;
            Ok::<_, TestError>(())
        }),
    )
    .await;
    assert!(outer.is_err());
    let mut names = Vec::new();
    while let Some(name) = dropped_names.recv().await {
        names.push(name);
    }
    names.sort_unstable();
    assert_eq!(names, ["body", "child"]);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

/// Ports `test_taskgroup_09`: a body error after an await cancels the children and is reported.
#[tokio::test(start_paused = true)]
async fn taskgroup_09_body_error_cancels_children() {
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group.spawn("foo1", sleep_then(1000, 42)).await?;
        group.spawn("foo2", sleep_then(2000, 11)).await?;
        sleep(Duration::from_millis(100)).await;
        Err(TestError::ZeroDivision)
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.cause, ShutdownCause::BodyFailed);
    assert!(matches!(error.body_error, Some(TestError::ZeroDivision)));
    assert!(error.failed.is_empty());
    let mut cancelled: Vec<_> = error.cancelled_names().collect();
    cancelled.sort_unstable();
    assert_eq!(cancelled, ["foo1", "foo2"]);
}

/// Ports `test_taskgroup_10`: a body error before any await cancels the children too.
#[tokio::test(start_paused = true)]
async fn taskgroup_10_immediate_body_error_cancels_children() {
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group.spawn("foo1", sleep_then(1000, 42)).await?;
        group.spawn("foo2", sleep_then(2000, 11)).await?;
        Err(TestError::ZeroDivision)
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.cause, ShutdownCause::BodyFailed);
    assert_eq!(error.cancelled.len(), 2);
}

/// Ports `test_taskgroup_12`: cancelling the outer group cancels the children of an inner group.
#[tokio::test(start_paused = true)]
async fn taskgroup_12_outer_cancellation_reaches_inner_children() {
    let start = Instant::now();
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let outer_guard = probe("outer-child", &dropped);
    let inner_guard = probe("inner-child", &dropped);
    drop(dropped);
    let outer = tokio::time::timeout(
        Duration::from_millis(100),
        scope(GroupConfig::new(), |outer_group| async move {
            outer_group
                .spawn("outer-child", async move {
                    let _guard = outer_guard;
                    sleep_then(10_000, ()).await
                })
                .await?;
            scope(GroupConfig::new(), |inner_group| async move {
                inner_group
                    .spawn("inner-child", async move {
                        let _guard = inner_guard;
                        sleep_then(10_000, ()).await
                    })
                    .await?;
                sleep(Duration::from_secs(10)).await;
                Ok(())
            })
            .await
            .map_err(|error| TestError::Nested(Box::new(error)))
        }),
    )
    .await;
    assert!(outer.is_err());
    let mut names = Vec::new();
    while let Some(name) = dropped_names.recv().await {
        names.push(name);
    }
    names.sort_unstable();
    assert_eq!(names, ["inner-child", "outer-child"]);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

/// Ports `test_taskgroup_13`: an outer child failing first cancels the inner group running in the body; only
/// the outer child's error is reported.
#[tokio::test(start_paused = true)]
async fn taskgroup_13_outer_child_failure_cancels_inner_group() {
    let result: Result<(), _> = scope(GroupConfig::new(), |outer_group| async move {
        outer_group.spawn("crash-100ms", crash_after(100)).await?;
        scope(GroupConfig::new(), |inner_group| async move {
            inner_group.spawn("crash-10s", crash_after(10_000)).await?;
            Ok(())
        })
        .await
        .map_err(|error| TestError::Nested(Box::new(error)))
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["crash-100ms"]);
    assert!(matches!(error.failed[0].error, TestError::Value(100)));
    assert!(error.body_error.is_none());
}

/// Ports `test_taskgroup_14`: an inner group's failure is an ordinary error of the outer child running it.
#[tokio::test(start_paused = true)]
async fn taskgroup_14_inner_group_failure_is_an_outer_child_error() {
    let result: Result<(), _> = scope(GroupConfig::new(), |outer_group| async move {
        outer_group.spawn("crash-10s", crash_after(10_000)).await?;
        let inner = scope(GroupConfig::new(), |inner_group| async move {
            inner_group.spawn("crash-100ms", crash_after(100)).await?;
            Ok(())
        });
        outer_group
            .spawn("inner-group", async move {
                inner
                    .await
                    .map_err(|error| TestError::Nested(Box::new(error)))
            })
            .await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["inner-group"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["crash-10s"]);
    let TestError::Nested(inner) = &error.failed[0].error else {
        panic!(
            "expected the inner group's error, got {:?}",
            error.failed[0].error
        );
    };
    assert_eq!(inner.failed_names().collect::<Vec<_>>(), ["crash-100ms"]);
    assert!(matches!(inner.failed[0].error, TestError::Value(100)));
}

/// Ports `test_taskgroup_24`: a child may spawn more children; the scope waits for them all.
#[tokio::test(start_paused = true)]
async fn taskgroup_24_children_spawn_children() {
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&finished);
    let result = scope(GroupConfig::new(), |group| async move {
        let spawner = group.clone();
        group
            .spawn("root", async move {
                sleep(Duration::from_millis(100)).await;
                for delay in [100, 200] {
                    let counter = Arc::clone(&counter);
                    spawner
                        .spawn(format!("coro1-{delay}"), async move {
                            sleep(Duration::from_millis(delay)).await;
                            counter.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await?;
                }
                Ok(())
            })
            .await?;
        Ok::<_, TestError>(())
    })
    .await;
    result.unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 2);
}

fn hydra(
    group: Group<TestError>,
    heads: Arc<AtomicUsize>,
) -> BoxFuture<'static, Result<(), TestError>> {
    Box::pin(async move {
        heads.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(10)).await;
        for _ in 0..2 {
            // Refused once hercules has failed: the hydra then simply stops growing.
            if group
                .spawn("hydra", hydra(group.clone(), Arc::clone(&heads)))
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    })
}

/// Ports `test_taskgroup_25`: children spawning children without bound are stopped by a failure, and
/// their spawns after the failure are refused.
#[tokio::test(start_paused = true)]
async fn taskgroup_25_hydra_is_stopped_by_a_failure() {
    let heads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&heads);
    let result = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("hydra", hydra(group.clone(), Arc::clone(&counted)))
            .await?;
        group
            .spawn("hercules", async move {
                while counted.load(Ordering::SeqCst) < 10 {
                    sleep(Duration::from_millis(15)).await;
                }
                Err::<(), _>(TestError::ZeroDivision)
            })
            .await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["hercules"]);
    assert!(heads.load(Ordering::SeqCst) >= 10);
}

/// Ports `test_taskgroup_23`: finished children are released while the group runs, not kept to the end.
#[tokio::test(start_paused = true)]
async fn taskgroup_23_finished_children_are_released() {
    let result = scope(GroupConfig::new(), |group| async move {
        for count in 0..10 {
            sleep(Duration::from_millis(100)).await;
            group.spawn("do_job", sleep_then(300, ())).await?;
            if count == 5 {
                assert!(group.running() < 5, "finished children were reaped");
            }
        }
        Ok::<_, TestError>(())
    })
    .await;
    result.unwrap();
}

/// Ports `test_taskgroup_task_name`: a child keeps the name it was given.
#[tokio::test]
async fn taskgroup_task_name_is_kept() {
    let result = scope(GroupConfig::new(), |group| async move {
        let handle = group
            .spawn("yolo", async { Ok::<_, TestError>(()) })
            .await?;
        assert_eq!(handle.name(), "yolo");
        handle.await?;
        Ok(())
    })
    .await;
    result.unwrap();
}

/// Mirrors asyncio's `RuntimeError("TaskGroup ... is shutting down")`: spawning during shutdown (here from a
/// child being cancelled) and after the group ended is refused.
#[tokio::test(start_paused = true)]
async fn spawn_after_shutdown_is_refused() {
    struct SpawnOnDrop {
        group: Group<TestError>,
        refused: std::sync::mpsc::Sender<Result<(), SpawnError>>,
    }
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let attempt = self.group.try_spawn("late", async { Ok(()) }).map(drop);
            let _receiver_gone = self.refused.send(attempt);
        }
    }
    let (refused, attempts) = std::sync::mpsc::channel();
    let (leak, leaked) = oneshot::channel();
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        let _sent = leak.send(group.clone());
        let on_drop = SpawnOnDrop {
            group: group.clone(),
            refused,
        };
        group
            .spawn("slow", async move {
                let _on_drop = on_drop;
                sleep_then(1000, ()).await
            })
            .await?;
        group.spawn("failing", crash_after(100)).await?;
        Ok(())
    })
    .await;
    assert!(result.is_err());
    let during_shutdown = attempts
        .try_recv()
        .expect("the cancelled child tried to spawn");
    assert!(matches!(
        during_shutdown,
        Err(SpawnError::ShuttingDown { .. })
    ));
    let group = leaked.await.unwrap();
    assert!(group.is_shutting_down());
    let after_end = group.spawn("after", async { Ok(()) }).await;
    assert!(matches!(after_end, Err(SpawnError::ShuttingDown { .. })));
}

/// A spawn waiting for a slot is refused, not left hanging, when the group shuts down meanwhile.
#[tokio::test(start_paused = true)]
async fn spawn_waiting_for_a_slot_is_refused_on_shutdown() {
    let (leak, leaked) = oneshot::channel();
    let limit = NonZeroUsize::new(1).unwrap();
    let waiter = tokio::spawn(async move {
        let group: Group<TestError> = leaked.await.unwrap();
        group.spawn("waiting", async { Ok(()) }).await.map(drop)
    });
    let result: Result<(), _> = scope(
        GroupConfig::new().max_concurrency(limit),
        |group| async move {
            group.spawn("failing", crash_after(100)).await?;
            let _sent = leak.send(group.clone());
            sleep(Duration::from_secs(10)).await;
            Ok(())
        },
    )
    .await;
    assert_eq!(
        result.unwrap_err().failed_names().collect::<Vec<_>>(),
        ["failing"]
    );
    assert!(matches!(
        waiter.await.unwrap(),
        Err(SpawnError::ShuttingDown { .. })
    ));
}

/// A body awaiting the handle of a child that fails is cancelled, not woken with `ChildLost`: the group
/// reports the child's error, not a second-hand body error.
#[tokio::test(start_paused = true)]
async fn body_awaiting_a_failed_child_is_cancelled_not_woken() {
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        let handle = group
            .spawn("failing", sleep_then_divide_by_zero(100))
            .await?;
        handle.await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert!(error.body_error.is_none());
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["failing"]);
}

/// A child whose handle was dropped still belongs to the group: the scope waits for it.
#[tokio::test(start_paused = true)]
async fn child_with_dropped_handle_is_still_joined() {
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&finished);
    let result = scope(GroupConfig::new(), |group| async move {
        let handle = group
            .spawn("detached-looking", async move {
                sleep(Duration::from_secs(5)).await;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TestError>(())
            })
            .await?;
        drop(handle);
        Ok(())
    })
    .await;
    result.unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

/// A child panic cancels and joins the siblings, then resumes on the caller; the process does not abort.
#[tokio::test(start_paused = true)]
async fn child_panic_cancels_siblings_then_resumes_on_caller() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let sibling_guard = probe("sibling", &dropped);
    let caller = tokio::spawn(scope(GroupConfig::new(), |group| async move {
        group
            .spawn("sibling", async move {
                let _guard = sibling_guard;
                sleep_then(10_000, ()).await
            })
            .await?;
        group
            .spawn("panicking", panic_after(100, "inference crashed"))
            .await?;
        Ok::<_, TestError>(())
    }));
    let join_error = caller.await.unwrap_err();
    // The scope joined the sibling before resuming the panic.
    assert_eq!(drain(&mut dropped_names), ["sibling"]);
    let payload = join_error.into_panic();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("inference crashed")
    );
}

/// A panic in a child's destructor, run while the group cancels it, still reaches the caller, and so does the
/// error that made the group cancel it: together, in a `GroupPanic`.
#[tokio::test(start_paused = true)]
async fn panic_while_a_child_is_cancelled_resumes_on_caller() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("cleanup crashed");
        }
    }
    let caller = tokio::spawn(scope(GroupConfig::new(), |group| async move {
        group
            .spawn("messy", async {
                let _cleanup = PanicOnDrop;
                sleep_then(10_000, ()).await
            })
            .await?;
        group.spawn("failing", crash_after(100)).await?;
        Ok::<_, TestError>(())
    }));
    let payload = caller.await.unwrap_err().into_panic();
    let both = payload
        .downcast::<GroupPanic<TestError>>()
        .expect("the panic and the error together");
    assert_eq!(both.panic.downcast_ref::<&str>(), Some(&"cleanup crashed"));
    assert_eq!(both.error.failed_names().collect::<Vec<_>>(), ["failing"]);
}

/// A body panic cancels and joins the children, then resumes on the caller.
#[tokio::test(start_paused = true)]
async fn body_panic_cancels_children_then_resumes_on_caller() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let child_guard = probe("child", &dropped);
    let caller = tokio::spawn(scope(GroupConfig::new(), |group| async move {
        group
            .spawn("child", async move {
                let _guard = child_guard;
                sleep_then(10_000, ()).await
            })
            .await?;
        panic_after(100, "body crashed").await
    }));
    let join_error = caller.await.unwrap_err();
    assert_eq!(drain(&mut dropped_names), ["child"]);
    assert!(join_error.is_panic());
}

/// With a limit, `spawn` waits for a free slot and `try_spawn` refuses at once.
#[tokio::test]
async fn concurrency_limit_makes_spawn_wait_for_a_free_slot() {
    let limit = NonZeroUsize::new(2).unwrap();
    let result = scope(
        GroupConfig::new().max_concurrency(limit),
        |group| async move {
            let (release_first, first_released) = oneshot::channel::<()>();
            let (release_second, second_released) = oneshot::channel::<()>();
            let first = group
                .spawn("first", async move {
                    first_released.await.map_err(|_| TestError::Lost)
                })
                .await?;
            group
                .spawn("second", async move {
                    second_released.await.map_err(|_| TestError::Lost)
                })
                .await?;

            let refused = group.try_spawn("third", async { Ok(()) });
            assert!(matches!(
                refused,
                Err(SpawnError::AtCapacity { limit: 2, .. })
            ));
            let waiting = group.spawn("third", async { Ok(()) });
            tokio::pin!(waiting);
            assert!(
                futures::poll!(&mut waiting).is_pending(),
                "both slots are taken"
            );

            release_first.send(()).map_err(|()| TestError::Lost)?;
            first.await?;
            let third = waiting.await?;
            third.await?;
            release_second.send(()).map_err(|()| TestError::Lost)?;
            Ok(())
        },
    )
    .await;
    result.unwrap();
}

/// The group's deadline shuts it down like a failure: children are cancelled at the deadline.
#[tokio::test(start_paused = true)]
async fn deadline_shuts_down_the_group() {
    let start = Instant::now();
    let config = GroupConfig::new().deadline(Deadline::after(Duration::from_secs(1)));
    let result: Result<(), _> = scope(config, |group| async move {
        group.spawn("fast", sleep_then(500, ())).await?;
        group.spawn("slow", sleep_then(5000, ())).await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert!(error.is_deadline_exceeded());
    assert_eq!(error.shut_down_at, start + Duration::from_secs(1));
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["slow"]);
    assert!(error.failed.is_empty());
}

/// A child narrows the group's deadline with its own timeout: the sooner of the two wins, and the child can
/// tell which one fired.
#[tokio::test(start_paused = true)]
async fn child_timeout_is_nested_in_the_group_deadline() {
    let start = Instant::now();
    let config = GroupConfig::new().deadline(Deadline::after(Duration::from_secs(10)));
    let result = scope(config, |group| async move {
        let deadline = group.deadline();
        let own_timeout_wins = group
            .spawn("short-timeout", async move {
                Ok(
                    with_timeout(Some(Duration::from_secs(1)), deadline, sleep_then(5000, ()))
                        .await,
                )
            })
            .await?;
        let deadline_wins = group
            .spawn("long-timeout", async move {
                Ok(deadline.narrow(Some(Duration::from_secs(60))))
            })
            .await?;
        Ok::<_, TestError>((own_timeout_wins.await?, deadline_wins.await?))
    })
    .await;
    let (own_timeout_wins, (effective, binding)) = result.unwrap();
    assert!(matches!(
        own_timeout_wins,
        Err(Elapsed::PerCallTimeout(timeout)) if timeout == Duration::from_secs(1)
    ));
    // The child's 60 s timeout is cut to the group's 10 s deadline.
    assert_eq!(effective, Deadline::at(start + Duration::from_secs(10)));
    assert_eq!(binding, ElapsedKind::Deadline);
}

/// A token passed in with `cancelled_by` cancels the group from outside without dropping it.
#[tokio::test(start_paused = true)]
async fn outside_token_cancels_the_group() {
    let token = CancellationToken::new();
    let canceller = token.clone();
    let result: Result<(), _> = scope(GroupConfig::new().cancelled_by(token), |group| async move {
        group.spawn("slow", sleep_then(5000, ())).await?;
        canceller.cancel();
        sleep(Duration::from_secs(10)).await;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.cause, ShutdownCause::Cancelled);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["slow"]);
}

/// A blocking child is waited for even when the group shuts down: it sees its token and stops, and the
/// scope returns only after the thread has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_child_is_joined_when_a_sibling_fails() {
    let finished = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&finished);
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group
            .spawn_blocking("reader", move |token| {
                while !token.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await?;
        group
            .spawn("failing", async { Err::<(), _>(TestError::Value(7)) })
            .await?;
        Ok(())
    })
    .await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "joined before the scope returned"
    );
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["failing"]);
}

/// A blocking child's error fails the group, and its value reaches the body.
#[tokio::test]
async fn a_blocking_child_reports_its_value_or_its_error() {
    let value = scope(GroupConfig::new(), |group| async move {
        let handle = group
            .spawn_blocking("sum", |_| Ok((1..=4).sum::<u32>()))
            .await?;
        Ok::<_, TestError>(handle.await?)
    })
    .await;
    assert_eq!(value.unwrap(), 10);
    let failed: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group
            .spawn_blocking("store", |_| Err::<(), _>(TestError::Value(3)))
            .await?;
        Ok(())
    })
    .await;
    assert!(matches!(
        failed.unwrap_err().failed[0].error,
        TestError::Value(3)
    ));
}

/// An owned group runs its children until shut down, then cancels and joins them; that is not an error.
#[tokio::test(start_paused = true)]
async fn an_owned_group_cancels_and_joins_on_shutdown() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let background = OwnedGroup::<TestError>::new();
    let guard = probe("server", &dropped);
    drop(dropped);
    background
        .group()
        .spawn("server", async move {
            let _guard = guard;
            sleep_then(60_000, ()).await
        })
        .await
        .expect("open");
    sleep(Duration::from_millis(10)).await;
    background
        .shutdown()
        .await
        .expect("a requested shutdown is not an error");
    assert_eq!(dropped_names.recv().await, Some("server"));
}

/// An owned group whose child failed reports the failure at shutdown.
#[tokio::test(start_paused = true)]
async fn an_owned_group_reports_a_failed_child_at_shutdown() {
    let background = OwnedGroup::<TestError>::new();
    let group = background.group();
    group.spawn("crash", crash_after(5)).await.expect("open");
    group
        .spawn("other", sleep_then(60_000, ()))
        .await
        .expect("open");
    sleep(Duration::from_millis(10)).await;
    assert!(group.is_shutting_down());
    let error = background.shutdown().await.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["crash"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["other"]);
}

/// The first error is the first child's to fail, else the body's, else none (a deadline alone).
#[tokio::test(start_paused = true)]
async fn the_first_error_is_the_first_failure() {
    let child_first: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group.spawn("crash", crash_after(5)).await?;
        sleep(Duration::from_millis(10)).await;
        Err(TestError::Value(99))
    })
    .await;
    assert!(matches!(
        child_first.unwrap_err().into_first_error(),
        Some(TestError::Value(5))
    ));
    let body_only: Result<(), _> = scope(GroupConfig::new(), |_group| async {
        Err(TestError::Value(1))
    })
    .await;
    assert!(matches!(
        body_only.unwrap_err().into_first_error(),
        Some(TestError::Value(1))
    ));
    let deadline: Result<(), GroupError<TestError>> = scope(
        GroupConfig::new().deadline(Deadline::after(Duration::from_millis(5))),
        |_group| async {
            sleep(Duration::from_secs(1)).await;
            Ok(())
        },
    )
    .await;
    assert!(deadline.unwrap_err().into_first_error().is_none());
}

/// Ports `test_cancellation_in_body`: the runner is cancelled from outside at the moment its children fail;
/// the caller sees the cancellation, and every child is joined.
#[tokio::test(start_paused = true)]
async fn cancellation_in_body_while_children_fail() {
    let token = CancellationToken::new();
    let canceller = token.clone();
    let result: Result<(), _> = scope(GroupConfig::new().cancelled_by(token), |group| async move {
        for index in 0..5_u64 {
            group
                .spawn(format!("foo {index}"), sleep_then_divide_by_zero(100))
                .await?;
        }
        sleep(Duration::from_millis(100)).await;
        canceller.cancel();
        sleep(Duration::from_secs(10)).await;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    // Whichever came first shut the group down; every child is accounted for once.
    assert_eq!(error.failed.len() + error.cancelled.len(), 5);
}

/// Ports `test_taskgroup_11`: a group nested in the body of a group, the runner cancelled from outside:
/// the inner group's children are cancelled and joined too.
#[tokio::test(start_paused = true)]
async fn taskgroup_11_outer_cancellation_reaches_a_group_nested_in_the_body() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let guards: Vec<_> = ["g2-0", "g2-1", "g2-2"]
        .map(|name| probe(name, &dropped))
        .into();
    drop(dropped);
    let token = CancellationToken::new();
    let canceller = token.clone();
    let outer = scope(
        GroupConfig::new().cancelled_by(token),
        |_outer| async move {
            scope(GroupConfig::new(), |inner| async move {
                for guard in guards {
                    inner
                        .spawn(guard.name, async move {
                            let _guard = guard;
                            sleep_then(10_000, ()).await
                        })
                        .await?;
                }
                sleep(Duration::from_secs(10)).await;
                Ok::<_, TestError>(())
            })
            .await
            .map_err(|error| TestError::Nested(Box::new(error)))
        },
    );
    let (result, ()) = tokio::join!(outer, async move {
        sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    assert_eq!(result.unwrap_err().cause, ShutdownCause::Cancelled);
    let mut names = Vec::new();
    while let Some(name) = dropped_names.recv().await {
        names.push(name);
    }
    names.sort_unstable();
    assert_eq!(names, ["g2-0", "g2-1", "g2-2"]);
}

/// Ports `test_taskgroup_17`: an empty group whose body is cancelled from outside ends as cancelled.
#[tokio::test(start_paused = true)]
async fn taskgroup_17_an_empty_group_cancelled_from_outside() {
    let token = CancellationToken::new();
    let canceller = token.clone();
    let (result, ()) = tokio::join!(
        scope(GroupConfig::new().cancelled_by(token), |_group| async {
            sleep(Duration::from_secs(10)).await;
            Ok::<(), TestError>(())
        }),
        async move {
            sleep(Duration::from_millis(100)).await;
            canceller.cancel();
        }
    );
    let error = result.unwrap_err();
    assert_eq!(error.cause, ShutdownCause::Cancelled);
    assert!(error.failed.is_empty() && error.cancelled.is_empty());
}

/// Ports `test_taskgroup_22`: children running when the runner is cancelled are cancelled.
#[tokio::test(start_paused = true)]
async fn taskgroup_22_running_children_are_cancelled_with_the_runner() {
    let token = CancellationToken::new();
    let canceller = token.clone();
    let (result, ()) = tokio::join!(
        scope(GroupConfig::new().cancelled_by(token), |group| async move {
            group.spawn("foo1", sleep_then(1_000, 42)).await?;
            group.spawn("foo2", sleep_then(2_000, 11)).await?;
            Ok::<(), TestError>(())
        }),
        async move {
            sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        }
    );
    let error = result.unwrap_err();
    let mut cancelled: Vec<&str> = error.cancelled_names().collect();
    cancelled.sort_unstable();
    assert_eq!(cancelled, ["foo1", "foo2"]);
}

/// Ports `test_taskgroup_no_create_task_after_failure`: once a child failed, spawning is refused.
#[tokio::test(start_paused = true)]
async fn no_spawn_after_a_failure() {
    let (refused, refusal) = tokio::sync::oneshot::channel();
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group.spawn("coro1", sleep_then_divide_by_zero(1)).await?;
        let late = group.clone();
        // The failure cancels the body before it can try; a handle kept by someone else is refused.
        let _ = refused.send(late);
        sleep(Duration::from_secs(1)).await;
        Ok(())
    })
    .await;
    assert!(result.is_err());
    let late = refusal.await.expect("the body sent its handle");
    assert!(matches!(
        late.try_spawn("coro2", sleep_then(1, ())),
        Err(SpawnError::ShuttingDown { .. })
    ));
}

/// Ports `test_taskgroup_context_manager_exit_raises`: the body and a child both fail; both errors are
/// reported.
#[tokio::test(start_paused = true)]
async fn the_body_and_a_child_failing_are_both_reported() {
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("raise_exc", async { Err::<(), _>(TestError::Value(1)) })
            .await?;
        Err(TestError::Value(2))
    })
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error.body_error, Some(TestError::Value(2))));
    // The child had not started when the body failed: it never runs (its error never happens).
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["raise_exc"]);
}

/// Ports `test_taskgroup_finished` and `test_coro_closed_when_tg_closed`: spawning into a group that has
/// ended is refused, and the future given is dropped, not leaked or run.
#[tokio::test(start_paused = true)]
async fn spawning_into_an_ended_group_is_refused_and_drops_the_future() {
    let kept = scope(GroupConfig::new(), |group| async move {
        Ok::<_, TestError>(group)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let guard = probe("late", &dropped);
    let refused = kept.try_spawn("late", async move {
        let _guard = guard;
        Ok(())
    });
    assert!(matches!(refused, Err(SpawnError::ShuttingDown { .. })));
    assert_eq!(drain(&mut dropped_names), ["late"]);
}

/// Ports `test_nested_groups_both_cancelled`: an inner group in the body fails while an outer child fails at
/// the same moment. Both are reported: the inner group, cancelled by the outer failure, still winds down and
/// returns its error, which becomes the body's error.
#[tokio::test(start_paused = true)]
async fn nested_groups_both_failing_report_both_errors() {
    let result: Result<(), _> = scope(GroupConfig::new(), |outer| async move {
        scope(GroupConfig::new(), |inner| {
            let outer = outer.clone();
            async move {
                inner
                    .spawn("runtime error", async { Err::<(), _>(TestError::Value(1)) })
                    .await?;
                outer
                    .spawn("value error", async { Err::<(), _>(TestError::Value(2)) })
                    .await?;
                sleep(Duration::from_secs(1)).await;
                Ok::<(), TestError>(())
            }
        })
        .await
        .map_err(|error| TestError::Nested(Box::new(error)))
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["value error"]);
    match &error.body_error {
        Some(TestError::Nested(inner)) => {
            assert_eq!(inner.failed_names().collect::<Vec<_>>(), ["runtime error"]);
        }
        other => panic!("expected the inner group's error as the body's, got {other:?}"),
    }
}

/// The same with the inner group in a child: the child, cancelled by its sibling's failure right after its
/// inner group recorded a failure (both due at the same instant, the inner one first), still reports the
/// failure of the group it was running.
#[tokio::test(start_paused = true)]
async fn a_cancelled_child_reports_the_failure_of_its_inner_group() {
    let result: Result<(), _> = scope(GroupConfig::new(), |outer| async move {
        outer
            .spawn("runner", async {
                scope(GroupConfig::new(), |inner| async move {
                    inner
                        .spawn("inner failure", sleep_then_divide_by_zero(10))
                        .await?;
                    sleep(Duration::from_secs(1)).await;
                    Ok::<(), TestError>(())
                })
                .await
                .map_err(|error| TestError::Nested(Box::new(error)))
            })
            .await?;
        // Registered after the inner failure's timer, for the same instant.
        sleep(Duration::from_millis(1)).await;
        outer.spawn("outer failure", crash_after(9)).await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    let mut failed: Vec<&str> = error.failed_names().collect();
    failed.sort_unstable();
    assert_eq!(failed, ["outer failure", "runner"], "{error}");
    let runner = error
        .failed
        .iter()
        .find(|failure| &*failure.name == "runner")
        .expect("the runner failed");
    assert!(matches!(&runner.error, TestError::Nested(inner)
        if inner.failed_names().collect::<Vec<_>>() == ["inner failure"]));
}

/// A child cancelled while its inner group winds down without a failure is reported as cancelled, not as
/// failed, even though it returns the inner group's "cancelled" error.
#[tokio::test(start_paused = true)]
async fn a_cancelled_child_whose_inner_group_did_not_fail_is_cancelled() {
    let result: Result<(), _> = scope(GroupConfig::new(), |outer| async move {
        outer
            .spawn("runner", async {
                scope(GroupConfig::new(), |inner| async move {
                    inner.spawn("waiting", sleep_then(10_000, ())).await?;
                    sleep(Duration::from_secs(10)).await;
                    Ok::<(), TestError>(())
                })
                .await
                .map_err(|error| TestError::Nested(Box::new(error)))
            })
            .await?;
        outer.spawn("failing", crash_after(10)).await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["failing"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["runner"]);
}

/// Ports `test_cancels_task_if_created_during_creation`: a child spawns a sibling that fails at once; the
/// spawning child is cancelled at its next await.
#[tokio::test(start_paused = true)]
async fn a_child_is_cancelled_by_a_sibling_it_spawned() {
    let (dropped, mut dropped_names) = mpsc::unbounded_channel();
    let guard = probe("second", &dropped);
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        let spawner = group.clone();
        group
            .spawn("second", async move {
                let _guard = guard;
                spawner
                    .spawn("third", async { Err::<(), _>(TestError::Value(3)) })
                    .await?;
                sleep(Duration::from_secs(1)).await;
                Ok(())
            })
            .await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["third"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["second"]);
    assert_eq!(drain(&mut dropped_names), ["second"]);
}
