//! [`blocking`]: one blocking call awaited where it is made, as the one child of a group of its own:
//! `asyncio.to_thread`, for code that is not already inside a group.
//!
//! # Why not `tokio::task::spawn_blocking`
//!
//! A bare `spawn_blocking` detaches: if the future awaiting it is dropped (a `select!` that took another branch,
//! a cancelled request), the thread runs on with nobody waiting for it, and a server's shutdown or a test's end
//! does not wait either. Here the call is a child of a [`scope`](super::scope), so it belongs to the tree it was
//! called in: dropped inside another group, that group takes the thread over and joins it (see
//! [`scope`](super::scope)). A panic in `work` is caught and returned as [`BlockingPanicked`], the way callers
//! already treat a `JoinError`: an internal error with a message, not a crash of the caller.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::fail_fast::{GroupConfig, scope};
use crate::panics::panic_message;

/// The call was refused or lost: only when the runtime shuts down under it.
struct NotRun;

/// The blocking call panicked (or, only if the runtime is shutting down, was never run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingPanicked {
    /// The name the call was given.
    pub name: String,
    /// The panic's message.
    pub message: String,
}

impl fmt::Display for BlockingPanicked {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} panicked: {}", self.name, self.message)
    }
}

impl std::error::Error for BlockingPanicked {}

/// Runs `work` on tokio's blocking threads and waits for it: for a file, a database or a computation that must
/// not run on a runtime thread, awaited where it is called. `name` names the child in spans and errors.
///
/// CPU-heavy work that runs often belongs in [`pool`](crate::pool), whose workers are bounded and whose jobs
/// can be abandoned; this is for the occasional blocking call (opening a database, a count, a one-time
/// calibration).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sum = tributary::group::blocking("sum", || (1..=100_u64).sum::<u64>()).await;
/// assert_eq!(sum, Ok(5050));
/// # }
/// ```
pub async fn blocking<T, Work>(name: &str, work: Work) -> Result<T, BlockingPanicked>
where
    Work: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let owned_name = name.to_owned();
    let ran = scope(GroupConfig::new(), |group| async move {
        let child = group
            .spawn_blocking(owned_name, move |_token| {
                Ok::<_, NotRun>(catch_unwind(AssertUnwindSafe(work)))
            })
            .await
            .map_err(|_refused| NotRun)?;
        child.await.map_err(|_lost| NotRun)
    })
    .await;
    let panicked = |payload: Option<Box<dyn Any + Send>>| BlockingPanicked {
        name: name.to_owned(),
        message: payload.map_or_else(
            || "the call did not run to its end".to_owned(),
            |payload| panic_message(payload.as_ref()),
        ),
    };
    match ran {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => Err(panicked(Some(payload))),
        Err(_group_error) => Err(panicked(None)),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_value_comes_back_and_the_work_ran_off_the_runtime_thread() {
        let runtime_thread = std::thread::current().id();
        let ran_on = blocking("where", move || std::thread::current().id())
            .await
            .expect("no panic");
        assert_ne!(ran_on, runtime_thread);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_is_an_error_with_its_message() {
        let error = blocking("explode", || -> u32 { panic!("boom") })
            .await
            .expect_err("it panicked");
        assert_eq!(error.name, "explode");
        assert_eq!(error.message, "boom");
        assert_eq!(error.to_string(), "explode panicked: boom");
    }

    /// Dropped inside a group, the call is not detached: the enclosing scope waits for the thread. (With a bare
    /// `spawn_blocking` the scope would return while the thread still sleeps, and `finished` would be false.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_inside_a_group_the_thread_is_still_joined() {
        let finished = Arc::new(AtomicBool::new(false));
        let outer = scope(GroupConfig::new(), {
            let finished = Arc::clone(&finished);
            |_group: super::super::Group<Infallible>| async move {
                let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
                let call = blocking("held", move || {
                    let _ = started_tx.send(());
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    finished.store(true, Ordering::SeqCst);
                });
                tokio::select! {
                    _ = call => unreachable!("the call sleeps past the start signal"),
                    _ = started_rx => {}
                }
                // The call's future is dropped here, its thread still asleep.
                Ok(())
            }
        })
        .await;
        assert!(outer.is_ok());
        assert!(
            finished.load(Ordering::SeqCst),
            "the scope returned before the dropped call's thread ended"
        );
    }
}
