//! Hedged requests: when an attempt has had no response after a delay, one more identical request is sent, and
//! the first success wins (the other is cancelled: dropped, which closes its connection).
//!
//! The delay is fixed, or a percentile of the source's own recent latencies (`p95`: hedge the slowest 5%). A
//! budget caps hedges at a share of the requests, so a source that is slow for everyone is not asked twice as
//! often exactly when it can least afford it. Only for idempotent requests: every source request is a GET.
//!
//! Written here rather than with tower's `Hedge`: see ARCHITECTURE.md ("Written by hand").

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The most recent successful latencies a source's percentile is computed over.
const LATENCY_SAMPLES: usize = 1_000;

/// The percentile is recomputed after this many new samples, not at every request.
const RECOMPUTE_EVERY: u32 = 16;

/// When to send a hedge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    /// After this long without a response.
    Fixed(Duration),
    /// After the source's own `p`-th percentile latency (1 to 99) of its recent successful requests; no hedge
    /// until it has [`HedgePolicy::min_samples`] of them.
    Percentile(u8),
}

/// Whether and when a source's attempts are hedged. Off unless a source has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgePolicy {
    /// When to send the hedge.
    pub delay: HedgeDelay,
    /// Hedges allowed per 100 requests (primary requests, over the client's life): 10 by default.
    pub budget_percent: u32,
    /// Successful requests needed before a percentile delay is trusted: 20 by default.
    pub min_samples: u32,
}

impl HedgePolicy {
    /// Hedge after `delay`, with the default budget (10%).
    pub fn new(delay: HedgeDelay) -> Self {
        Self {
            delay,
            budget_percent: 10,
            min_samples: 20,
        }
    }
}

/// One source's latencies and hedge budget.
#[derive(Debug)]
pub(crate) struct HedgeState {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    latencies: VecDeque<Duration>,
    /// The percentile last computed, for the percentile it was computed for.
    cached: Option<(u8, Duration)>,
    samples_since_computed: u32,
    requests: u64,
    hedges: u64,
}

impl HedgeState {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A primary request was sent (what the budget is a share of).
    pub(crate) fn note_request(&self) {
        self.lock().requests += 1;
    }

    /// A request succeeded after `latency`.
    pub(crate) fn record_latency(&self, latency: Duration) {
        let mut inner = self.lock();
        if inner.latencies.len() == LATENCY_SAMPLES {
            inner.latencies.pop_front();
        }
        inner.latencies.push_back(latency);
        inner.samples_since_computed += 1;
    }

    /// How long to wait before hedging, or `None` when the policy cannot say yet (too few samples).
    pub(crate) fn delay(&self, policy: &HedgePolicy) -> Option<Duration> {
        match policy.delay {
            HedgeDelay::Fixed(delay) => Some(delay),
            HedgeDelay::Percentile(percentile) => {
                let mut inner = self.lock();
                if inner.latencies.len() < usize::try_from(policy.min_samples).unwrap_or(usize::MAX)
                    || inner.latencies.is_empty()
                {
                    return None;
                }
                match inner.cached {
                    Some((cached_for, delay))
                        if cached_for == percentile
                            && inner.samples_since_computed < RECOMPUTE_EVERY =>
                    {
                        Some(delay)
                    }
                    _ => {
                        let delay = percentile_of(&inner.latencies, percentile);
                        inner.cached = Some((percentile, delay));
                        inner.samples_since_computed = 0;
                        Some(delay)
                    }
                }
            }
        }
    }

    /// Takes one hedge from the budget, if it allows one more: `hedges + 1 <= budget% of requests`.
    pub(crate) fn take_hedge(&self, policy: &HedgePolicy) -> bool {
        let mut inner = self.lock();
        let allowed = (inner.hedges + 1) * 100 <= u64::from(policy.budget_percent) * inner.requests;
        if allowed {
            inner.hedges += 1;
        }
        allowed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `percentile`-th percentile (nearest rank) of `samples`, which is not empty.
fn percentile_of(samples: &VecDeque<Duration>, percentile: u8) -> Duration {
    let mut sorted: Vec<Duration> = samples.iter().copied().collect();
    sorted.sort_unstable();
    let percentile = usize::from(percentile.clamp(1, 99));
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = (percentile * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn a_percentile_delay_waits_for_enough_samples_then_follows_them() {
        let state = HedgeState::new();
        let policy = HedgePolicy::new(HedgeDelay::Percentile(95));
        for latency in 1..=19 {
            state.record_latency(ms(latency));
        }
        assert_eq!(state.delay(&policy), None, "19 samples < 20");
        state.record_latency(ms(20));
        assert_eq!(state.delay(&policy), Some(ms(19)));
        for latency in 21..=100 {
            state.record_latency(ms(latency));
        }
        assert_eq!(state.delay(&policy), Some(ms(95)));
        assert_eq!(
            HedgeState::new().delay(&HedgePolicy::new(HedgeDelay::Fixed(ms(7)))),
            Some(ms(7))
        );
    }

    #[test]
    fn only_the_latest_samples_count() {
        let state = HedgeState::new();
        let policy = HedgePolicy::new(HedgeDelay::Percentile(50));
        for _ in 0..LATENCY_SAMPLES {
            state.record_latency(ms(1_000));
        }
        for _ in 0..LATENCY_SAMPLES {
            state.record_latency(ms(10));
        }
        assert_eq!(state.delay(&policy), Some(ms(10)));
    }

    #[test]
    fn the_budget_caps_hedges_at_their_share_of_requests() {
        let state = HedgeState::new();
        let policy = HedgePolicy::new(HedgeDelay::Fixed(ms(1)));
        let mut hedges = 0;
        for _ in 0..1_000 {
            state.note_request();
            if state.take_hedge(&policy) {
                hedges += 1;
            }
        }
        assert_eq!(hedges, 100);
        let none = HedgePolicy {
            budget_percent: 0,
            ..policy
        };
        state.note_request();
        assert!(!state.take_hedge(&none));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: VecDeque<Duration> = [5, 1, 3, 2, 4].into_iter().map(ms).collect();
        assert_eq!(percentile_of(&samples, 50), ms(3));
        assert_eq!(percentile_of(&samples, 99), ms(5));
        assert_eq!(percentile_of(&samples, 1), ms(1));
        assert_eq!(percentile_of(&[ms(9)].into_iter().collect(), 95), ms(9));
    }
}
