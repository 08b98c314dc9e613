//! CPython's `Lib/test/test_asyncio/test_timeouts.py`, ported case by case to [`with_timeout`], [`Deadline`] and
//! group deadlines. Each test keeps the CPython name; the docs say what the case checks in tributary's terms.
//!
//! `asyncio.timeout(delay)` is `with_timeout(Some(delay), parent, future)`; `asyncio.timeout_at(when)` is a
//! [`Deadline::at`] passed as the parent; "the code inside was cancelled" is "the future was dropped", seen
//! through a drop guard.
//!
//! # Cases Rust cannot express, and why
//!
//! - `test_timeout_exception_context`, `test_foreign_exception_on_timeout`, `test_foreign_exception_on_timeout_2`,
//!   `test_nested_timeout_in_finally`: exception chaining (`__cause__`, `__context__`) and code in a `finally`
//!   that raises or awaits while the timeout unwinds. A Rust future cut by a timeout is dropped: its cleanup is
//!   `Drop`, which can neither return an error nor await, so there is no chain to check.
//! - `test_reschedule`, `test_timeout_finished`, `test_timeout_expired`, `test_timeout_expiring`,
//!   `test_timeout_not_entered`, `test_timeout_already_entered`, `test_timeout_double_enter`,
//!   `test_timeout_without_task`: the timeout context manager's lifecycle (enter once, reschedule while
//!   active). A [`Deadline`] is an immutable value passed down, and [`with_timeout`] takes the future it
//!   bounds, so "entered twice", "rescheduled after expiry" and "outside a task" cannot be written.
//! - `test_repr_active`, `test_repr_expired`, `test_repr_finished`, `test_repr_disabled`: the context
//!   manager's `repr`; there is no such object.
//! - `test_timeout_after_cancellation`, `test_cancel_in_timeout_after_cancellation`: a task that catches its own
//!   cancellation and then awaits cleanup under a new timeout (asyncio's cancel counting, `uncancel`). A
//!   cancelled Rust future is dropped and never resumes, so it cannot await after its cancellation.
//! - `test_timeout_zero_sleep_zero`, `test_timeout_in_the_past_sleep_zero` are ported with one difference,
//!   stated in their docs: tokio polls the future before its timer, so work that finishes without ever
//!   yielding is not cut even by an expired bound. Work that yields once is, as in CPython.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::group::test_probes::DropFlag;

fn flag() -> (Arc<AtomicBool>, DropFlag) {
    let flag = Arc::new(AtomicBool::new(false));
    (Arc::clone(&flag), DropFlag(flag))
}

/// `timeout(0.01)` around `sleep(10)`: the call is cut at its own timeout, which the error names.
#[tokio::test(start_paused = true)]
async fn test_timeout_basic() {
    let start = Instant::now();
    let result = with_timeout(
        Some(Duration::from_millis(10)),
        Deadline::none(),
        sleep(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        result,
        Err(Elapsed::PerCallTimeout(Duration::from_millis(10)))
    );
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

/// `timeout_at(now + 0.01)`: an absolute deadline cuts the call at that instant and says it was the deadline.
#[tokio::test(start_paused = true)]
async fn test_timeout_at_basic() {
    let at = Instant::now() + Duration::from_millis(10);
    let deadline = Deadline::at(at);
    let result = with_timeout(None, deadline, sleep(Duration::from_secs(10))).await;
    assert_eq!(result, Err(Elapsed::DeadlineExceeded));
    assert!(deadline.is_expired());
    assert_eq!(deadline.instant(), Some(at));
    assert_eq!(Instant::now(), at);
}

/// Two timeouts at the same instant: the inner work is cancelled, the error names the overall deadline (the
/// outer bound, "only the topmost raises"), and the outer code is cut too: it does not run on past it.
#[tokio::test(start_paused = true)]
async fn test_nested_timeouts() {
    let deadline = Deadline::after(Duration::from_millis(10));
    let (inner_cancelled, guard) = flag();
    let outer_went_on = Arc::new(AtomicBool::new(false));
    let went_on = Arc::clone(&outer_went_on);
    let outer = with_timeout(None, deadline, async move {
        // The inner call's own timeout ties with the overall deadline: the deadline is the one reported.
        let inner = with_timeout(Some(Duration::from_millis(10)), deadline, async move {
            let _guard = guard;
            sleep(Duration::from_secs(10)).await;
        })
        .await;
        assert_eq!(inner, Err(Elapsed::DeadlineExceeded));
        sleep(Duration::from_secs(10)).await;
        went_on.store(true, Ordering::SeqCst);
    })
    .await;
    assert_eq!(outer, Err(Elapsed::DeadlineExceeded));
    assert!(inner_cancelled.load(Ordering::SeqCst));
    assert!(!outer_went_on.load(Ordering::SeqCst));
    assert!(deadline.is_expired());
}

/// The work under an expired timeout is cancelled (dropped), not left running.
#[tokio::test(start_paused = true)]
async fn test_waiter_cancelled() {
    let (cancelled, guard) = flag();
    let result = with_timeout(Some(Duration::from_millis(10)), Deadline::none(), async {
        let _guard = guard;
        sleep(Duration::from_secs(10)).await;
    })
    .await;
    assert!(result.is_err());
    assert!(cancelled.load(Ordering::SeqCst));
}

/// Work that finishes before its timeout returns its value; the timeout never fires.
#[tokio::test(start_paused = true)]
async fn test_timeout_not_called() {
    let deadline = Deadline::after(Duration::from_secs(10));
    let start = Instant::now();
    let result = with_timeout(Some(Duration::from_secs(10)), deadline, async {
        sleep(Duration::from_millis(10)).await;
        7
    })
    .await;
    assert_eq!(result, Ok(7));
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert!(!deadline.is_expired());
    assert!(deadline.instant().is_some_and(|at| at > Instant::now()));
}

/// `timeout(None)`: no bound at all; the work runs to its end.
#[tokio::test(start_paused = true)]
async fn test_timeout_disabled() {
    let result = with_timeout(None, Deadline::none(), async {
        sleep(Duration::from_millis(10)).await;
        "done"
    })
    .await;
    assert_eq!(result, Ok("done"));
    assert_eq!(Deadline::none().instant(), None);
    assert!(!Deadline::none().is_expired());
}

/// `timeout_at(None)`: the same through the absolute form (a parent with no deadline).
#[tokio::test(start_paused = true)]
async fn test_timeout_at_disabled() {
    let parent = Deadline::none();
    let (deadline, kind) = parent.narrow(None);
    assert_eq!(deadline.instant(), None);
    assert_eq!(kind, ElapsedKind::Deadline);
    let result = with_timeout(None, parent, sleep(Duration::from_millis(10))).await;
    assert_eq!(result, Ok(()));
}

/// `timeout(0)` around a long sleep: cut at once, no time passes.
#[tokio::test(start_paused = true)]
async fn test_timeout_zero() {
    let start = Instant::now();
    let result = with_timeout(
        Some(Duration::ZERO),
        Deadline::none(),
        sleep(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(result, Err(Elapsed::PerCallTimeout(Duration::ZERO)));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// `timeout(0)` around work that yields once (CPython's `sleep(0)`): cut, as in CPython. Unlike CPython, work
/// that finishes without yielding at all is not cut: tokio polls the future before its timer.
#[tokio::test(start_paused = true)]
async fn test_timeout_zero_sleep_zero() {
    let yielded = with_timeout(
        Some(Duration::ZERO),
        Deadline::none(),
        tokio::task::yield_now(),
    )
    .await;
    assert_eq!(yielded, Err(Elapsed::PerCallTimeout(Duration::ZERO)));

    let at_once = with_timeout(Some(Duration::ZERO), Deadline::none(), async { 1 }).await;
    assert_eq!(at_once, Ok(1));
}

/// A deadline already in the past: work that yields is cut at once and the error names the deadline (the
/// same difference as above for work that never yields).
#[tokio::test(start_paused = true)]
async fn test_timeout_in_the_past_sleep_zero() {
    let past = Instant::now()
        .checked_sub(Duration::from_secs(11))
        .expect("the clock is past eleven seconds");
    let deadline = Deadline::at(past);
    assert!(deadline.is_expired());
    assert_eq!(deadline.remaining(), Some(Duration::ZERO));
    let start = Instant::now();
    let yielded = with_timeout(None, deadline, tokio::task::yield_now()).await;
    assert_eq!(yielded, Err(Elapsed::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::ZERO);
    // A per-call timeout cannot push a past deadline back.
    let narrowed = with_timeout(
        Some(Duration::from_secs(10)),
        deadline,
        tokio::task::yield_now(),
    )
    .await;
    assert_eq!(narrowed, Err(Elapsed::DeadlineExceeded));
}

/// The work's own error passes through the timeout untouched, and is not a timeout.
#[tokio::test(start_paused = true)]
async fn test_foreign_exception_passed() {
    let deadline = Deadline::after(Duration::from_millis(10));
    let result = with_timeout(Some(Duration::from_millis(10)), deadline, async {
        Err::<(), _>("KeyError")
    })
    .await;
    assert_eq!(result, Ok(Err("KeyError")));
    assert!(!deadline.is_expired());
}

/// A child with a long timeout cancelled from outside (its group's token) is reported as cancelled, not as
/// timed out, and the timeout never fired.
#[tokio::test(start_paused = true)]
async fn test_foreign_cancel_doesnt_timeout_if_not_expired() {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let start = Instant::now();
    let result = scope(GroupConfig::new().cancelled_by(token), |group| async move {
        group
            .spawn("waiter", async move {
                with_timeout(Some(Duration::from_secs(10)), Deadline::none(), async {
                    cancel.cancel();
                    sleep(Duration::from_secs(10)).await;
                })
                .await
                .map_err(|elapsed| elapsed.to_string())
            })
            .await
            .map_err(|error| error.to_string())?;
        Ok::<_, String>(())
    })
    .await;
    let error = result.expect_err("the group was cancelled");
    assert_eq!(error.cause, ShutdownCause::Cancelled);
    assert!(error.failed.is_empty());
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["waiter"]);
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// A timeout cuts only the work it bounds: the child that handled its own timeout succeeds, and so does the
/// group around it.
#[tokio::test(start_paused = true)]
async fn test_outer_task_is_not_cancelled() {
    let result = scope(GroupConfig::new(), |group| async move {
        let outer = group
            .spawn("outer", async {
                let inner = with_timeout(
                    Some(Duration::from_millis(1)),
                    Deadline::none(),
                    sleep(Duration::from_secs(10)),
                )
                .await;
                Ok::<_, String>(inner.is_err())
            })
            .await
            .map_err(|error| error.to_string())?;
        outer.await.map_err(|error| error.to_string())
    })
    .await;
    assert!(
        result.expect("nothing failed"),
        "the child saw its own timeout"
    );
}

/// The outer timeout expired while the thread was busy, the inner one did not: the outer bound cuts the work
/// and names its own timeout. Real time: a blocked thread does not move a paused clock.
#[tokio::test]
async fn test_nested_timeouts_concurrent() {
    let result = with_timeout(Some(Duration::from_millis(2)), Deadline::none(), async {
        with_timeout(Some(Duration::from_millis(100)), Deadline::none(), async {
            // Pretend we crunch some numbers.
            std::thread::sleep(Duration::from_millis(10));
            sleep(Duration::from_secs(1)).await;
        })
        .await
    })
    .await;
    assert_eq!(
        result,
        Err(Elapsed::PerCallTimeout(Duration::from_millis(2)))
    );
}

/// The thread is busy past both bounds: the inner timeout reports first, and the outer one then stops the
/// long sleep that follows it. Real time, as above; the bound checked is a generous one, not a tight time.
#[tokio::test]
async fn test_nested_timeouts_loop_busy() {
    let start = std::time::Instant::now();
    let outer = with_timeout(Some(Duration::from_millis(100)), Deadline::none(), async {
        let inner = with_timeout(Some(Duration::from_millis(10)), Deadline::none(), async {
            // Pretend the runtime is busy for a while.
            std::thread::sleep(Duration::from_millis(100));
            sleep(Duration::from_secs(1)).await;
        })
        .await;
        assert_eq!(
            inner,
            Err(Elapsed::PerCallTimeout(Duration::from_millis(10)))
        );
        // This sleep is interrupted by the outer timeout.
        sleep(Duration::from_secs(10)).await;
    })
    .await;
    assert_eq!(
        outer,
        Err(Elapsed::PerCallTimeout(Duration::from_millis(100)))
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// A deadline around a group, the way that joins: the group's own deadline cancels the child and the body,
/// and the scope returns only after the child has ended (its drop guard ran), reporting the deadline.
#[tokio::test(start_paused = true)]
async fn test_timeout_taskgroup() {
    let (child_ended, guard) = flag();
    let config = GroupConfig::new().deadline(Deadline::after(Duration::from_millis(10)));
    let result = scope(config, |group| async move {
        group
            .spawn("task", async move {
                let _guard = guard;
                sleep(Duration::from_secs(2)).await;
                Ok::<_, String>(())
            })
            .await
            .map_err(|error| error.to_string())?;
        sleep(Duration::from_secs(1)).await;
        Err::<(), _>("ValueError".to_owned())
    })
    .await;
    assert!(child_ended.load(Ordering::SeqCst));
    let error = result.expect_err("the deadline passed");
    assert!(error.is_deadline_exceeded());
    assert!(error.body_error.is_none());
    assert!(error.failed.is_empty());
    assert_eq!(error.cancelled_names().collect::<Vec<_>>(), ["task"]);
}

/// The other way to put a deadline around a group: a timeout around the scope future drops it. The scope then
/// cannot wait; its child is aborted and never runs again (see [`scope`] on dropped scopes).
#[tokio::test(start_paused = true)]
async fn test_timeout_taskgroup_dropped_scope() {
    let ran_after = Arc::new(AtomicBool::new(false));
    let after = Arc::clone(&ran_after);
    let result = with_timeout(
        Some(Duration::from_millis(10)),
        Deadline::none(),
        scope(GroupConfig::new(), |group| async move {
            group
                .spawn("task", async move {
                    sleep(Duration::from_secs(2)).await;
                    after.store(true, Ordering::SeqCst);
                    Ok::<_, String>(())
                })
                .await
                .map_err(|error| error.to_string())?;
            Ok::<_, String>(())
        }),
    )
    .await;
    assert_eq!(
        result.map(|_| ()),
        Err(Elapsed::PerCallTimeout(Duration::from_millis(10)))
    );
    sleep(Duration::from_secs(5)).await;
    assert!(!ran_after.load(Ordering::SeqCst));
}
