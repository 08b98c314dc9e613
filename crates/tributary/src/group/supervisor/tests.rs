//! The supervisor's rules, one test each: failures stay with their child, shutdown joins every level, a handle
//! cancels one child, a dropped supervisor aborts (and, inside a group, hands up) its children, memory stays
//! flat, and what is reported where. Live tasks are counted with [`Live`] guards, as in `group::tests`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::sleep;

use super::*;
use crate::group::test_probes::Live;
use crate::group::{GroupConfig, OwnedGroup, scope};

/// Alive until cancelled.
async fn hang(live: Live) -> Result<(), String> {
    let _alive = live.enter();
    std::future::pending().await
}

/// Alive until cancelled, with a fail-fast group of two hanging grandchildren and an owned group of one inside:
/// the levels a shutdown must join.
async fn hang_with_nested_groups(live: Live) -> Result<(), String> {
    let _alive = live.enter();
    let owned = OwnedGroup::<String>::new();
    owned
        .group()
        .spawn("owned grandchild", hang(live.clone()))
        .await
        .map_err(|error| error.to_string())?;
    scope(GroupConfig::new(), |group| async move {
        for index in 0..2 {
            group
                .spawn(format!("grandchild {index}"), hang(live.clone()))
                .await
                .map_err(|error| error.to_string())?;
        }
        std::future::pending::<Result<(), String>>().await
    })
    .await
    .map_err(|error| error.to_string())?;
    owned.shutdown().await.map_err(|error| error.to_string())
}

/// Alive and busy until cancelled: each poll spins for 2 ms before it yields, so on the multi-thread runtime
/// it is often mid-poll on another thread when its cancellation comes.
async fn busy_until_cancelled(live: Live) -> Result<(), String> {
    let _alive = live.enter();
    loop {
        spin(2);
        tokio::task::yield_now().await;
    }
}

/// Panics with `message` when first polled.
async fn panics(message: &'static str) -> Result<(), String> {
    panic!("{message}")
}

fn supervisor() -> Supervisor {
    Supervisor::new(SupervisorConfig::new())
}

#[tokio::test(start_paused = true)]
async fn a_failing_child_leaves_its_siblings_running() {
    let supervisor = supervisor();
    let (release, released) = oneshot::channel::<u32>();
    let sibling = supervisor
        .spawn("sibling", async move {
            Ok::<_, String>(released.await.expect("released"))
        })
        .expect("open");
    let broken = supervisor
        .spawn("broken", async {
            Err::<(), _>("the source is down".to_owned())
        })
        .expect("open");
    match broken.await {
        Err(ChildError::Failed { name, error }) => {
            assert_eq!((&*name, error.as_str()), ("broken", "the source is down"));
        }
        other => panic!("expected the child's error, got {other:?}"),
    }
    sleep(Duration::from_millis(10)).await;
    assert_eq!(supervisor.running(), 1, "the sibling is still running");
    release.send(7).expect("the sibling is waiting");
    assert_eq!(sibling.await.expect("untouched by the failure"), 7);
    // Still usable after a failure.
    let after = supervisor
        .spawn("after", async { Ok::<_, String>("fine") })
        .expect("a failure does not close the supervisor");
    assert_eq!(after.await.expect("ran"), "fine");
    let stats = supervisor.shutdown().await;
    assert_eq!(
        (
            stats.spawned,
            stats.succeeded,
            stats.failed,
            stats.cancelled
        ),
        (3, 2, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_child_is_reported_and_never_resumed() {
    let live = Live::default();
    let supervisor = supervisor();
    let sibling = supervisor
        .spawn("sibling", hang(live.clone()))
        .expect("open");
    let crashing = supervisor
        .spawn("crashing", async {
            sleep(Duration::from_millis(5)).await;
            panics("boom").await
        })
        .expect("open");
    match crashing.await {
        Err(ChildError::Panicked { name, message }) => {
            assert_eq!((&*name, message.as_str()), ("crashing", "boom"));
        }
        other => panic!("expected the panic, got {other:?}"),
    }
    assert_eq!(live.count(), 1, "the sibling is still running");
    // Shutting down does not resume the panic: it was reported where it happened.
    let stats = supervisor.shutdown().await;
    assert_eq!((stats.panicked, stats.cancelled), (1, 1));
    assert!(sibling.await.expect_err("cancelled").is_cancelled());
    assert_eq!(live.count(), 0);
}

/// A child whose cleanup panics as the shutdown cancels it is reported as panicked; the shutdown completes.
#[tokio::test(start_paused = true)]
async fn a_panic_in_a_cancelled_childs_cleanup_is_reported() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            std::panic::panic_any("cleanup crashed");
        }
    }
    let supervisor = supervisor();
    let messy = supervisor
        .spawn("messy", async {
            let _cleanup = PanicOnDrop;
            std::future::pending::<Result<(), String>>().await
        })
        .expect("open");
    sleep(Duration::from_millis(1)).await;
    let stats = supervisor.shutdown().await;
    assert_eq!((stats.panicked, stats.cancelled), (1, 0));
    match messy.await {
        Err(ChildError::Panicked { message, .. }) => assert_eq!(message, "cleanup crashed"),
        other => panic!("expected the cleanup's panic, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn spawning_is_refused_once_shutdown_starts() {
    let supervisor = supervisor();
    let handle = supervisor.handle();
    let (told, said) = oneshot::channel();
    // A child that tries to spawn a sibling while the shutdown cancels it: refused.
    let _spawner = supervisor
        .spawn("spawner", {
            let handle = handle.clone();
            async move {
                struct SpawnOnDrop(SupervisorHandle, Option<oneshot::Sender<bool>>);
                impl Drop for SpawnOnDrop {
                    fn drop(&mut self) {
                        let spawned = self.0.spawn("late", async { Ok::<_, String>(()) });
                        if let Some(told) = self.1.take() {
                            let _ = told.send(spawned.is_ok());
                        }
                    }
                }
                let _on_cancel = SpawnOnDrop(handle, Some(told));
                std::future::pending::<Result<(), String>>().await
            }
        })
        .expect("open");
    sleep(Duration::from_millis(1)).await;
    assert!(!handle.is_shutting_down());
    let stats = supervisor.shutdown().await;
    assert!(
        !said.await.expect("the child was dropped"),
        "spawned during shutdown"
    );
    assert!(handle.is_shutting_down());
    assert!(matches!(
        handle.spawn("after", async { Ok::<_, String>(()) }),
        Err(SpawnError::ShuttingDown { .. })
    ));
    assert_eq!((stats.spawned, stats.cancelled), (1, 1));
}

/// Shutdown returns only once every child and every group nested in one has ended.
async fn shutdown_joins_nested_groups() {
    let live = Live::default();
    let supervisor = supervisor();
    for index in 0..3 {
        let _child = supervisor
            .spawn(
                format!("run {index}"),
                hang_with_nested_groups(live.clone()),
            )
            .expect("open");
    }
    while live.count() < 3 * 4 {
        sleep(Duration::from_millis(1)).await;
    }
    let stats = supervisor.shutdown().await;
    assert_eq!(live.count(), 0, "a task outlived the shutdown");
    assert_eq!(stats.cancelled, 3);
}

#[tokio::test(start_paused = true)]
async fn shutdown_joins_nested_groups_current_thread() {
    shutdown_joins_nested_groups().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_joins_nested_groups_multi_thread() {
    shutdown_joins_nested_groups().await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_handle_cancels_that_child_alone() {
    let (doomed_live, other_live) = (Live::default(), Live::default());
    let supervisor = supervisor();
    let doomed = supervisor
        .spawn("doomed", hang_with_nested_groups(doomed_live.clone()))
        .expect("open");
    let other = supervisor
        .spawn("other", hang(other_live.clone()))
        .expect("open");
    sleep(Duration::from_millis(1)).await;
    assert_eq!(doomed_live.count(), 4);
    doomed.cancel();
    let outcome = doomed.await;
    assert!(
        matches!(&outcome, Err(ChildError::Cancelled { name }) if &**name == "doomed"),
        "{outcome:?}"
    );
    sleep(Duration::from_millis(1)).await;
    assert_eq!(doomed_live.count(), 0, "its nested groups went with it");
    assert_eq!(other_live.count(), 1, "the other child runs on");
    assert!(!supervisor.handle().is_shutting_down());
    other.cancel();
    let stats = supervisor.shutdown().await;
    assert_eq!(stats.cancelled, 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_supervisor_aborts_its_children() {
    let live = Live::default();
    let supervisor = supervisor();
    let handle = supervisor.handle();
    let child = supervisor.spawn("child", hang(live.clone())).expect("open");
    sleep(Duration::from_millis(1)).await;
    drop(supervisor);
    // Aborted: the task is dropped the next time the runtime gets to it.
    tokio::task::yield_now().await;
    assert_eq!(live.count(), 0);
    assert!(child.await.expect_err("aborted").is_cancelled());
    assert!(handle.is_shutting_down());
    assert!(handle.spawn("late", async { Ok::<_, String>(()) }).is_err());
}

/// A supervisor created in a child and dropped with it hands its aborted children to the enclosing group,
/// whose scope joins them: they are busy across polls on another thread when the abort comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_supervisor_hands_its_children_to_the_enclosing_group() {
    let live = Live::default();
    let inner_live = live.clone();
    let result = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("owner", async move {
                let supervisor = supervisor();
                for index in 0..4 {
                    let live = inner_live.clone();
                    let _busy = supervisor
                        .spawn(format!("busy {index}"), busy_until_cancelled(live))
                        .expect("open");
                }
                sleep(Duration::from_millis(5)).await;
                drop(supervisor);
                Ok::<(), String>(())
            })
            .await
            .map_err(|error| error.to_string())?;
        Ok::<(), String>(())
    })
    .await;
    result.expect("nothing failed");
    assert_eq!(
        live.count(),
        0,
        "an aborted child outlived the enclosing scope"
    );
}

/// A child whose cleanup panics as a dropped supervisor aborts it: the panic is counted and logged, not handed
/// up to the enclosing group (where it would cancel everything and resume on its owner).
#[tokio::test(start_paused = true)]
async fn a_panic_as_a_dropped_supervisor_aborts_a_child_stays_with_the_supervisor() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            std::panic::panic_any("cleanup crashed");
        }
    }
    let (told, handle) = oneshot::channel();
    let result = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("owner", async move {
                let supervisor = supervisor();
                let _messy = supervisor
                    .spawn("messy", async {
                        let _cleanup = PanicOnDrop;
                        std::future::pending::<Result<(), String>>().await
                    })
                    .expect("open");
                sleep(Duration::from_millis(1)).await;
                let _ = told.send(supervisor.handle());
                drop(supervisor);
                Ok::<(), String>(())
            })
            .await
            .map_err(|error| error.to_string())?;
        Ok::<(), String>(())
    })
    .await;
    result.expect("the panic did not reach the enclosing scope");
    let handle = handle.await.expect("sent");
    assert_eq!(handle.stats().panicked, 1);
}

/// A supervisor created in a child of a fail-fast group is cancelled with that child: the group's shutdown
/// reaches the supervisor's children at once, and the scope joins them.
#[tokio::test(start_paused = true)]
async fn a_supervisor_in_a_cancelled_child_is_cancelled_and_joined() {
    let live = Live::default();
    let inner_live = live.clone();
    let result = scope(GroupConfig::new(), |group| async move {
        group
            .spawn("owner", async move {
                let supervisor = supervisor();
                let _run = supervisor
                    .spawn("run", hang_with_nested_groups(inner_live))
                    .expect("open");
                supervisor.join().await;
                Ok::<(), String>(())
            })
            .await
            .map_err(|error| error.to_string())?;
        sleep(Duration::from_millis(5)).await;
        Err::<(), _>("the body gives up".to_owned())
    })
    .await;
    assert!(result.is_err());
    assert_eq!(live.count(), 0, "a supervised task outlived the scope");
}

#[tokio::test(start_paused = true)]
async fn the_config_token_shuts_it_down() {
    let live = Live::default();
    let token = CancellationToken::new();
    let supervisor = Supervisor::new(SupervisorConfig::new().cancelled_by(token.clone()));
    let handle = supervisor.handle();
    let child = supervisor
        .spawn("child", hang_with_nested_groups(live.clone()))
        .expect("open");
    sleep(Duration::from_millis(1)).await;
    token.cancel();
    assert!(handle.is_shutting_down());
    assert!(handle.spawn("late", async { Ok::<_, String>(()) }).is_err());
    // Waiting now ends, since the token cancelled every child.
    let stats = supervisor.join().await;
    assert_eq!(live.count(), 0);
    assert_eq!(stats.cancelled, 1);
    assert!(child.await.expect_err("cancelled").is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn join_waits_for_children_to_end_on_their_own() {
    let supervisor = supervisor();
    let handle = supervisor.handle();
    let slow = supervisor
        .spawn("slow", async {
            sleep(Duration::from_secs(3)).await;
            Ok::<_, String>("done")
        })
        .expect("open");
    let joining = tokio::spawn(supervisor.join());
    sleep(Duration::from_millis(1)).await;
    assert!(
        handle.spawn("late", async { Ok::<_, String>(()) }).is_err(),
        "spawning is refused while joining"
    );
    let stats = joining.await.expect("joined");
    assert_eq!(slow.await.expect("not cancelled"), "done");
    assert_eq!((stats.succeeded, stats.cancelled), (1, 0));
}

/// A million children would take a minute in a debug build; ten thousand of them, half failing, show what
/// matters: the supervisor holds only the running ones (plus a bounded number of finished handles not yet
/// pruned), however many it ran. The memory figure is in docs/BENCHMARKS.md (`benches/group.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_children_are_released() {
    let supervisor = supervisor();
    let mut most_held = 0;
    for index in 0..10_000_u32 {
        let child = supervisor
            .spawn("short", async move {
                if index % 2 == 0 {
                    Ok(index)
                } else {
                    Err(format!("odd {index}"))
                }
            })
            .expect("open");
        let _ = child.await;
        most_held = most_held.max(supervisor.supervised.shared.lock().children.held());
    }
    assert!(most_held <= 128, "held up to {most_held} finished children");
    let stats = supervisor.shutdown().await;
    assert_eq!((stats.succeeded, stats.failed), (5_000, 5_000));
}

/// The reports: the group's span says `supervisor`, each child runs in a `group.child` span with its name, and a
/// failure and a panic each give an event naming the child.
#[tokio::test(start_paused = true)]
async fn failures_are_logged_with_the_childs_name() {
    let recorded = Recorder::default();
    let _default = tracing::dispatcher::set_default(&tracing::Dispatch::new(recorded.clone()));
    let supervisor = supervisor();
    let broken = supervisor
        .spawn("broken", async { Err::<(), _>("the source is down") })
        .expect("open");
    let crashing = supervisor.spawn("crashing", panics("boom")).expect("open");
    let _ = (broken.await, crashing.await);
    supervisor.shutdown().await;
    let lines = recorded.0.lock().expect("recorder").clone();
    let has = |needle: &[&str]| {
        lines
            .iter()
            .any(|line| needle.iter().all(|part| line.contains(part)))
    };
    assert!(has(&["span group", "policy=supervisor"]), "{lines:#?}");
    assert!(has(&["span group.child", "name=broken"]), "{lines:#?}");
    assert!(
        has(&["WARN", "child=broken", "error=the source is down"]),
        "{lines:#?}"
    );
    assert!(
        has(&["ERROR", "child=crashing", "panic=boom"]),
        "{lines:#?}"
    );
}

/// Busy for about `millis` without awaiting.
fn spin(millis: u64) {
    let until = std::time::Instant::now() + Duration::from_millis(millis);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// A `tracing` subscriber that writes each new span and each event as one line of text.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

/// Collects fields as ` name=value`.
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("span {}", span.metadata().name()));
        span.record(&mut fields);
        let mut lines = self.0.lock().expect("recorder");
        lines.push(fields.0);
        tracing::span::Id::from_u64(lines.len() as u64)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!("event {}", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().expect("recorder").push(fields.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// What a server keeps in its shared state and hands between tasks.
#[test]
fn the_handles_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    fn sendable<T: Send + Unpin + 'static>() {}
    shareable::<Supervisor>();
    shareable::<SupervisorHandle>();
    sendable::<SupervisedChild<String, std::io::Error>>();
    shareable::<ChildError<std::io::Error>>();
}
