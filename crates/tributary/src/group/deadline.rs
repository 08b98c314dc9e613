//! Deadlines and per-call timeouts: [`Deadline`], [`with_timeout`] (documented in `group`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// An absolute point in time by which work must be finished, or no deadline at all.
///
/// Uses [`tokio::time::Instant`] so that tests can run it under paused time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// No deadline: work may take as long as it takes.
    pub const fn none() -> Self {
        Self { at: None }
    }

    /// A deadline at the given instant.
    pub const fn at(instant: Instant) -> Self {
        Self { at: Some(instant) }
    }

    /// A deadline `duration` from now. A duration too long for the clock to represent (centuries) is no
    /// deadline, never a panic.
    pub fn after(duration: Duration) -> Self {
        Self::after_from(Instant::now(), duration)
    }

    /// A deadline `duration` after `start`; like [`after`](Self::after), one past what the clock can represent
    /// is no deadline.
    pub fn after_from(start: Instant, duration: Duration) -> Self {
        start.checked_add(duration).map_or(Self::none(), Self::at)
    }

    /// This deadline moved `extra` later (a grace period); one moved past what the clock can represent is no
    /// deadline.
    pub fn extended(self, extra: Duration) -> Self {
        match self.at {
            Some(at) => Self::after_from(at, extra),
            None => Self::none(),
        }
    }

    /// The instant, if there is a deadline.
    pub const fn instant(&self) -> Option<Instant> {
        self.at
    }

    /// The earlier of two deadlines (no deadline counts as later than any deadline).
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.at, other.at) {
            (Some(a), Some(b)) => Deadline::at(a.min(b)),
            (Some(a), None) | (None, Some(a)) => Deadline::at(a),
            (None, None) => Deadline::none(),
        }
    }

    /// Time left before the deadline: `None` when there is no deadline, zero once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// The effective bound for a child call with its own timeout inside this deadline, and which of the two is
    /// the binding one.
    pub fn narrow(&self, per_call_timeout: Option<Duration>) -> (Deadline, ElapsedKind) {
        match per_call_timeout {
            None => (*self, ElapsedKind::Deadline),
            Some(timeout) => {
                let own = Deadline::after(timeout);
                // Ties go to the overall deadline: when both fire together we are out of time either way.
                if self
                    .at
                    .is_some_and(|parent| parent <= own.at.unwrap_or(parent))
                {
                    (*self, ElapsedKind::Deadline)
                } else {
                    (own, ElapsedKind::PerCallTimeout(timeout))
                }
            }
        }
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Self::none()
    }
}

/// Which bound cut a call short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElapsedKind {
    /// The call's own timeout fired first.
    PerCallTimeout(Duration),
    /// The overall deadline, inherited from the caller, fired first.
    Deadline,
}

/// A call was cut short by its timeout or by the overall deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Elapsed {
    /// The call's own timeout fired first.
    #[error("call timed out after {0:?}")]
    PerCallTimeout(Duration),
    /// The overall deadline fired first.
    #[error("overall deadline exceeded")]
    DeadlineExceeded,
}

impl Elapsed {
    /// Whether the overall deadline (rather than the call's own timeout) fired.
    pub fn is_deadline(&self) -> bool {
        matches!(self, Elapsed::DeadlineExceeded)
    }
}

impl From<ElapsedKind> for Elapsed {
    fn from(kind: ElapsedKind) -> Self {
        match kind {
            ElapsedKind::PerCallTimeout(timeout) => Elapsed::PerCallTimeout(timeout),
            ElapsedKind::Deadline => Elapsed::DeadlineExceeded,
        }
    }
}

/// Runs `future` until it finishes or until `min(now + per_call_timeout, parent)`, whichever comes first.
///
/// The future is dropped (cancelled) when the bound fires. The error tells which bound it was.
pub async fn with_timeout<F: Future>(
    per_call_timeout: Option<Duration>,
    parent: Deadline,
    future: F,
) -> Result<F::Output, Elapsed> {
    let (effective, kind) = parent.narrow(per_call_timeout);
    match effective.instant() {
        None => Ok(future.await),
        Some(at) => tokio::time::timeout_at(at, future)
            .await
            .map_err(|_| Elapsed::from(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--deadline 18446744073709551615s` once panicked on `Instant` overflow (and the `sources_file` fuzz target
    /// found `timeout = "300000000000y"`): a duration past what the clock can represent is no deadline, and a
    /// per-call timeout that long leaves the parent's deadline in charge.
    #[tokio::test(start_paused = true)]
    async fn durations_past_the_clock_are_no_deadline_not_a_panic() {
        assert_eq!(Deadline::after(Duration::MAX), Deadline::none());
        assert_eq!(
            Deadline::after(Duration::from_secs(1)).extended(Duration::MAX),
            Deadline::none()
        );
        let parent = Deadline::after(Duration::from_secs(1));
        assert_eq!(
            parent.narrow(Some(Duration::MAX)),
            (parent, ElapsedKind::Deadline)
        );
        let result = with_timeout(Some(Duration::MAX), Deadline::none(), async { 7 }).await;
        assert_eq!(result, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn per_call_timeout_wins_when_it_is_shorter() {
        let parent = Deadline::after(Duration::from_secs(10));
        let result = with_timeout(
            Some(Duration::from_secs(1)),
            parent,
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(result, Err(Elapsed::PerCallTimeout(Duration::from_secs(1))));
    }

    #[tokio::test(start_paused = true)]
    async fn parent_deadline_wins_when_it_is_sooner() {
        let parent = Deadline::after(Duration::from_secs(1));
        let start = Instant::now();
        let result = with_timeout(
            Some(Duration::from_secs(2)),
            parent,
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(result, Err(Elapsed::DeadlineExceeded));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_bounds_means_the_future_runs_to_completion() {
        let result = with_timeout(None, Deadline::none(), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            7
        })
        .await;
        assert_eq!(result, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn min_prefers_the_earlier_deadline_and_ignores_none() {
        let soon = Deadline::after(Duration::from_secs(1));
        let late = Deadline::after(Duration::from_secs(5));
        assert_eq!(soon.min(late), soon);
        assert_eq!(late.min(soon), soon);
        assert_eq!(Deadline::none().min(late), late);
        assert_eq!(Deadline::none().min(Deadline::none()), Deadline::none());
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_saturates_at_zero_after_expiry() {
        let deadline = Deadline::after(Duration::from_millis(10));
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(deadline.is_expired());
        assert_eq!(deadline.remaining(), Some(Duration::ZERO));
        assert_eq!(Deadline::none().remaining(), None);
    }
}
