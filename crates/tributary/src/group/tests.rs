//! Structured concurrency across nesting, cancellation and panics: the cases that once broke (each named after
//! what it checks), on both runtime flavours where the runtime matters.
//!
//! Live tasks are counted with [`Live`] guards: a guard is created when a task's code starts and dropped when
//! the task ends (or is dropped), so "nothing outlives the scope" is `live == 0` right after it returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::sleep;

use super::test_probes::Live;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum TestError {
    Failed(&'static str),
    Lost,
    Nested(String),
}

impl std::fmt::Display for TestError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{self:?}")
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

/// Busy for about `millis` without awaiting: a task in the middle of a poll when its cancellation comes.
fn spin(millis: u64) {
    let until = std::time::Instant::now() + Duration::from_millis(millis);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Panics with its message (a `&str` payload) when dropped: cleanup code that crashes while a task is cancelled.
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        std::panic::panic_any(self.0);
    }
}

/// Alive (counted by `live`) and busy until cancelled: each poll spins for `millis` before it yields.
async fn busy_until_cancelled(live: Live, millis: u64) -> Result<(), TestError> {
    let _alive = live.enter();
    loop {
        spin(millis); // busy on its thread when the cancellation arrives
        tokio::task::yield_now().await;
    }
}

/// A child that runs a nested group whose one task is busy (see [`busy_until_cancelled`]) and then waits forever:
/// only a cancellation ends it, and it must take the grandchild with it.
async fn parent_of_a_busy_grandchild(live: Live, millis: u64) -> Result<(), TestError> {
    scope(GroupConfig::new(), |inner| async move {
        inner
            .spawn("grandchild", busy_until_cancelled(live, millis))
            .await?;
        std::future::pending::<()>().await;
        Ok::<_, TestError>(())
    })
    .await
    .map_err(|error| TestError::Nested(error.to_string()))
}

/// Panics with `message` when first polled.
async fn panics(message: &'static str) -> Result<(), TestError> {
    panic!("{message}")
}

/// A grandchild that is mid-poll on another worker thread when the outer group cancels its parent still ends
/// before the outer scope returns: the inner group hands its aborted task to the outer group, which joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_never_outlives_the_outer_scope() {
    for _ in 0..20 {
        let live = Live::default();
        let grandchild_live = live.clone();
        let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
            group
                .spawn("parent", parent_of_a_busy_grandchild(grandchild_live, 5))
                .await?;
            group
                .spawn("failing", async {
                    sleep(Duration::from_millis(3)).await;
                    Err::<(), _>(TestError::Failed("sibling"))
                })
                .await?;
            Ok(())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(live.count(), 0, "a grandchild outlived the scope");
    }
}

/// The same when the nested group is in the outer group's body, and the body is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_nested_in_the_body_is_joined_when_the_body_is_cancelled() {
    for _ in 0..20 {
        let live = Live::default();
        let inner_live = live.clone();
        let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
            group
                .spawn("failing", async {
                    sleep(Duration::from_millis(3)).await;
                    Err::<(), _>(TestError::Failed("child"))
                })
                .await?;
            scope(GroupConfig::new(), |inner| async move {
                inner
                    .spawn("worker", busy_until_cancelled(inner_live, 5))
                    .await?;
                std::future::pending::<()>().await;
                Ok::<_, TestError>(())
            })
            .await
            .map_err(|error| TestError::Nested(error.to_string()))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(
            live.count(),
            0,
            "a task of the body's group outlived the scope"
        );
    }
}

/// Three levels: the outer group's join waits for every level below a cancelled child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_below_a_cancelled_child_is_joined() {
    let live = Live::default();
    let deep = live.clone();
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("level 1", async move {
                scope(GroupConfig::new(), |one| async move {
                    one.spawn("level 2", async move {
                        scope(GroupConfig::new(), |two| async move {
                            for index in 0..4 {
                                two.spawn(
                                    format!("level 3 #{index}"),
                                    busy_until_cancelled(deep.clone(), 2),
                                )
                                .await?;
                            }
                            std::future::pending::<()>().await;
                            Ok::<(), TestError>(())
                        })
                        .await
                        .map_err(|error| TestError::Nested(error.to_string()))
                    })
                    .await?;
                    std::future::pending::<()>().await;
                    Ok::<(), TestError>(())
                })
                .await
                .map_err(|error| TestError::Nested(error.to_string()))
            })
            .await?;
        sleep(Duration::from_millis(10)).await;
        Err(TestError::Failed("body"))
    })
    .await;
    assert!(matches!(
        result.unwrap_err().body_error,
        Some(TestError::Failed("body"))
    ));
    assert_eq!(live.count(), 0);
}

/// A child spawned but not yet started when the group shuts down never runs, on either runtime.
#[tokio::test]
async fn a_child_that_never_started_never_runs_current_thread() {
    a_child_that_never_started_never_runs().await;
}

/// On the multi-thread runtime a free worker may start the child at once, before the body fails: both workers
/// are kept busy (the test's body runs on the test thread, outside them) so that the child cannot start first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_never_started_never_runs_multi_thread() {
    let release = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let (release, busy) = (Arc::clone(&release), Arc::clone(&busy));
            tokio::spawn(async move {
                busy.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    while busy.load(Ordering::SeqCst) < 2 {
        std::thread::yield_now();
    }
    let checked = a_child_that_never_started_never_runs();
    // The scope's own code runs here, on the test thread; its child waits for a worker.
    let releaser = {
        let release = Arc::clone(&release);
        async move {
            tokio::task::yield_now().await;
            release.store(true, Ordering::SeqCst);
        }
    };
    tokio::join!(checked, releaser);
    release.store(true, Ordering::SeqCst);
    for spinner in spinners {
        spinner.await.expect("a spinner ends");
    }
}

async fn a_child_that_never_started_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("late", async move {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await?;
        // The body fails before it ever yields: the child has not been polled yet.
        Err(TestError::Failed("body"))
    })
    .await;
    let error = result.unwrap_err();
    assert!(!ran.load(Ordering::SeqCst), "the unstarted child ran");
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["late"]);
}

/// A child whose handle is cancelled before it started never runs either; the group carries on.
#[tokio::test]
async fn a_child_cancelled_through_its_handle_before_it_started_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let value = scope(GroupConfig::new(), |group| async move {
        let handle = group
            .spawn("never", async move {
                flag.store(true, Ordering::SeqCst);
                Ok(1)
            })
            .await?;
        handle.cancel();
        let lost = handle.await;
        Ok::<_, TestError>(lost.is_err())
    })
    .await;
    assert_eq!(value.ok(), Some(true));
    assert!(!ran.load(Ordering::SeqCst));
}

/// Cancelling one child through its handle reaches the groups it created: they are cancelled and joined, the
/// outer scope returns with nothing alive, and the rest of the group carries on as if nothing failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cancelled_through_its_handle_takes_its_inner_groups_with_it() {
    for _ in 0..10 {
        let live = Live::default();
        let grandchild_live = live.clone();
        let value = scope(GroupConfig::new(), |group| async move {
            let parent = group
                .spawn("parent", parent_of_a_busy_grandchild(grandchild_live, 1))
                .await?;
            let sibling = group.spawn("sibling", async { Ok(5) }).await?;
            sleep(Duration::from_millis(2)).await;
            parent.cancel();
            let lost = parent.await;
            Ok::<_, TestError>((lost.is_err(), sibling.await?))
        })
        .await;
        assert_eq!(value.ok(), Some((true, 5)));
        assert_eq!(
            live.count(),
            0,
            "a grandchild outlived its cancelled parent"
        );
    }
}

/// A blocking child cancelled through its handle sees its token cancelled, and the group waits for it.
#[tokio::test]
async fn a_blocking_child_cancelled_through_its_handle_sees_its_token() {
    let stopped = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&stopped);
    let value = scope(GroupConfig::new(), |group| async move {
        let reader = group
            .spawn_blocking("reader", move |token| {
                while !token.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen.store(true, Ordering::SeqCst);
                Ok::<_, TestError>(())
            })
            .await?;
        sleep(Duration::from_millis(5)).await;
        reader.cancel();
        Ok::<_, TestError>(())
    })
    .await;
    assert!(value.is_ok());
    assert!(stopped.load(Ordering::SeqCst));
}

/// A sibling that awaits a failed child's handle is cancelled, not reported as a second failure.
#[tokio::test(start_paused = true)]
async fn a_sibling_awaiting_a_failed_childs_handle_is_cancelled_not_failed() {
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        let failing = group
            .spawn("failing", async {
                sleep(Duration::from_millis(10)).await;
                Err::<u32, _>(TestError::Failed("first"))
            })
            .await?;
        group
            .spawn("waiting", async move {
                let value = failing.await?;
                Ok(value + 1)
            })
            .await?;
        Ok(())
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.failed_names().collect::<Vec<_>>(), ["failing"]);
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["waiting"]);
}

/// A group that is shutting down answers "shutting down" even when it is also full, so a caller that retries
/// on "at capacity" does not spin.
#[tokio::test]
async fn shutdown_wins_over_capacity_in_try_spawn() {
    let token = tokio_util::sync::CancellationToken::new();
    let config = GroupConfig::new()
        .max_concurrency(std::num::NonZeroUsize::MIN)
        .cancelled_by(token.clone());
    let (said, told) = tokio::sync::oneshot::channel();
    let _ = scope(config, |group| async move {
        group
            .spawn("busy", std::future::pending::<Result<(), TestError>>())
            .await?;
        token.cancel();
        let _ = said.send(group.try_spawn("more", async { Ok(()) }).map(|_| ()));
        Ok::<_, TestError>(())
    })
    .await;
    assert!(matches!(
        told.await.expect("the body answered"),
        Err(SpawnError::ShuttingDown { .. })
    ));
}

/// A long-lived group releases children as they finish, without waiting for the next spawn.
#[tokio::test(start_paused = true)]
async fn finished_children_are_released_when_they_finish() {
    let background = OwnedGroup::<TestError>::new();
    let group = background.group();
    for index in 0..50 {
        group
            .spawn(format!("short {index}"), async move {
                sleep(Duration::from_millis(index)).await;
                Ok(())
            })
            .await
            .expect("open");
    }
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        background.running(),
        0,
        "an idle group holds no finished child"
    );
    background.shutdown().await.expect("nothing failed");
}

/// A panic and an error together: the panic resumes carrying the error, so neither is lost. (The body's error
/// cancels the child, whose cleanup panics.)
#[tokio::test(start_paused = true)]
async fn a_panic_and_an_error_are_reported_together() {
    let caller = tokio::spawn(scope(GroupConfig::new(), |group| async move {
        group
            .spawn("messy", async {
                let _cleanup = PanicOnDrop("cleanup crashed");
                std::future::pending::<Result<(), TestError>>().await
            })
            .await?;
        sleep(Duration::from_millis(5)).await;
        Err::<(), _>(TestError::Failed("body"))
    }));
    let payload = caller.await.unwrap_err().into_panic();
    let both = payload
        .downcast::<GroupPanic<TestError>>()
        .expect("the panic carries the error");
    assert_eq!(both.panic.downcast_ref::<&str>(), Some(&"cleanup crashed"));
    assert_eq!(both.error.body_error, Some(TestError::Failed("body")));
}

/// A panic alone resumes with its own payload, untouched.
#[tokio::test(start_paused = true)]
async fn a_panic_alone_keeps_its_payload() {
    let caller = tokio::spawn(scope(GroupConfig::new(), |group| async move {
        group.spawn("panicking", panics("alone")).await?;
        Ok::<(), TestError>(())
    }));
    let payload = caller.await.unwrap_err().into_panic();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("alone")
    );
}

/// A panic in the destructor of a task aborted because its group was dropped reaches the enclosing scope.
#[tokio::test(start_paused = true)]
async fn a_panic_in_an_aborted_grandchild_reaches_the_outer_scope() {
    let caller = tokio::spawn(scope(GroupConfig::new(), |group| async move {
        group
            .spawn("parent", async {
                scope(GroupConfig::new(), |inner| async move {
                    inner
                        .spawn("grandchild", async {
                            let _cleanup = PanicOnDrop("grandchild cleanup crashed");
                            std::future::pending::<Result<(), TestError>>().await
                        })
                        .await?;
                    std::future::pending::<()>().await;
                    Ok::<(), TestError>(())
                })
                .await
                .map_err(|error| TestError::Nested(error.to_string()))
            })
            .await?;
        sleep(Duration::from_millis(5)).await;
        Err::<(), _>(TestError::Failed("body"))
    }));
    let payload = caller.await.unwrap_err().into_panic();
    let both = payload
        .downcast::<GroupPanic<TestError>>()
        .expect("the body's error travels with the panic");
    assert_eq!(
        both.panic.downcast_ref::<&str>(),
        Some(&"grandchild cleanup crashed")
    );
}

/// A blocking child of a dropped group is waited for by the enclosing group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_grandchild_is_waited_for() {
    let live = Live::default();
    let thread_live = live.clone();
    let result: Result<(), _> = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("parent", async move {
                scope(GroupConfig::new(), |inner| async move {
                    inner
                        .spawn_blocking("reader", move |_ignores_its_token| {
                            let _alive = thread_live.enter();
                            spin(50);
                            Ok(())
                        })
                        .await?;
                    std::future::pending::<()>().await;
                    Ok::<(), TestError>(())
                })
                .await
                .map_err(|error| TestError::Nested(error.to_string()))
            })
            .await?;
        sleep(Duration::from_millis(5)).await;
        Err::<(), _>(TestError::Failed("body"))
    })
    .await;
    assert!(result.is_err());
    assert_eq!(live.count(), 0, "the blocking thread outlived the scope");
}

/// Dropping a scope at the top of a tree aborts its children (they never run again), without waiting.
#[tokio::test(start_paused = true)]
async fn a_dropped_top_level_scope_aborts_its_children() {
    let live = Live::default();
    let child_live = live.clone();
    let outcome = tokio::time::timeout(
        Duration::from_millis(10),
        scope(GroupConfig::new(), |group| async move {
            group
                .spawn("child", async move {
                    let _alive = child_live.enter();
                    std::future::pending::<Result<(), TestError>>().await
                })
                .await?;
            std::future::pending::<()>().await;
            Ok::<(), TestError>(())
        }),
    )
    .await;
    assert!(outcome.is_err());
    // Aborted: the task is dropped the next time the runtime gets to it.
    tokio::task::yield_now().await;
    assert_eq!(live.count(), 0);
}
