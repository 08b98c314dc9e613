//! The circuit breaker: a source that keeps failing is not asked again until a cool-down has passed, so a dead
//! source costs a question nothing instead of its whole timeout.
//!
//! ```text
//!            failure rate >= threshold over the window (at least `min_calls` calls)
//!   closed ───────────────────────────────────────────────────────────────────────▶ open
//!     ▲                                                                              │
//!     │ `probes` probes succeeded                        the cool-down has passed    │
//!     └──────────────────────────── half-open ◀──────────────────────────────────────┘
//!                                       │  a probe failed: open again, a new cool-down
//!                                       └──────────────────────────────────────────▶ open
//! ```
//!
//! - **Closed:** every request is sent; each finished request's outcome goes into a sliding window of the last
//!   `window` of time (at most [`MAX_WINDOW_CALLS`] calls). Once the window holds at least `min_calls` calls and
//!   `failure_percent` of them failed, the circuit opens.
//! - **Open:** no request is sent; the fetch fails at once with
//!   [`FetchErrorKind::CircuitOpen`](super::FetchErrorKind::CircuitOpen).
//! - **Half-open:** after the cool-down, up to `probes` requests at a time are let through as probes (the others
//!   are refused as if open). `probes` successes close the circuit with an empty window; one failure opens it
//!   again for another cool-down.
//!
//! What counts: a request that ends with a transport error, a timeout (its own or the caller's deadline while it
//! was in flight), a 5xx or 429, or an oversized or malformed body is a failure; a success or another 4xx (the
//! request's fault, not the source's) is a success. A request that is dropped unfinished (the caller went away,
//! or a hedge won) counts for nothing.
//!
//! Written here rather than taken from `failsafe` or `tower-resilience`: see ARCHITECTURE.md ("Written by hand").

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The most outcomes a closed circuit's window keeps: at thousands of calls a second, the window is the latest
/// calls rather than the whole duration, and its memory stays bounded.
pub const MAX_WINDOW_CALLS: usize = 1_000;

/// When a source's circuit opens and how it recovers: closed → open when the failure rate over the window
/// reaches `failure_percent` (with at least `min_calls` calls), open → half-open after `cool_down`, half-open →
/// closed after `probes` successful probes, or open again after one failed probe.
///
/// The defaults suit an agent that makes a few calls a second: a 10 s window, at least 5 calls, 50% failures,
/// a 5 s cool-down, 2 probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerPolicy {
    /// How far back the failure rate looks.
    pub window: Duration,
    /// The fewest calls in the window before the rate counts: one early failure does not open the circuit.
    pub min_calls: u32,
    /// The failure rate, in percent (1 to 100), at or above which the circuit opens.
    pub failure_percent: u32,
    /// How long an open circuit refuses every request before it lets probes through.
    pub cool_down: Duration,
    /// How many probes must succeed, in the half-open state, to close the circuit (and how many run at once).
    pub probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_calls: 5,
            failure_percent: 50,
            cool_down: Duration::from_secs(5),
            probes: 2,
        }
    }
}

/// The state of a source's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Requests are sent and their outcomes watched.
    Closed,
    /// Requests are refused until the cool-down has passed.
    Open,
    /// A few probes are let through to see whether the source is back.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`: the name in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source's circuit as it is now: what [`SourceClient::circuits`](super::SourceClient::circuits) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitReport {
    /// The source's name.
    pub source: String,
    /// Its circuit's state.
    pub state: CircuitState,
    /// How many times it has opened (from closed or from half-open) since the client was made.
    pub opened: u64,
    /// How many state changes it has gone through, of every kind.
    pub transitions: u64,
}

/// How one request ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    /// The source did its job (a success, or a 4xx that is the request's fault).
    Success,
    /// The source failed (see the module docs for what counts).
    Failure,
}

/// One source's breaker. Cheap to clone: clones share the state.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    source: Arc<str>,
    state: Arc<Mutex<BreakerState>>,
}

#[derive(Debug)]
struct BreakerState {
    phase: Phase,
    /// Bumped at every transition: a permit from an earlier phase reports into nothing.
    generation: u64,
    opened: u64,
    transitions: u64,
}

#[derive(Debug)]
enum Phase {
    /// Outcomes of finished calls: when, and whether it failed.
    Closed {
        window: VecDeque<(Instant, bool)>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
    },
}

/// The breaker let a request through; report how it ended with [`record`](Self::record). Dropped without a
/// record (the request was cancelled), it counts for nothing, and a probe's slot is freed.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Breaker,
    generation: u64,
    probe: bool,
    recorded: bool,
}

/// The breaker refused a request: the circuit is open (or half-open with every probe slot taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// How long until the next probe may go (zero while half-open probes are in flight).
    pub(crate) retry_in: Duration,
}

impl Breaker {
    pub(crate) fn new(source: &str, policy: BreakerPolicy) -> Self {
        Self {
            policy,
            source: Arc::from(source),
            state: Arc::new(Mutex::new(BreakerState {
                phase: Phase::Closed {
                    window: VecDeque::new(),
                },
                generation: 0,
                opened: 0,
                transitions: 0,
            })),
        }
    }

    pub(crate) fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    /// Lets one request through, or refuses it.
    pub(crate) fn admit(&self) -> Result<Permit, Refused> {
        let now = Instant::now();
        let mut state = self.lock();
        let probe = match &mut state.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < *until => {
                return Err(Refused {
                    retry_in: *until - now,
                });
            }
            Phase::Open { .. } => {
                self.transition(
                    &mut state,
                    Phase::HalfOpen {
                        in_flight: 1,
                        succeeded: 0,
                    },
                );
                true
            }
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded >= self.policy.probes.max(1) {
                    return Err(Refused {
                        retry_in: Duration::ZERO,
                    });
                }
                *in_flight += 1;
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            generation: state.generation,
            probe,
            recorded: false,
        })
    }

    /// Whether a request would be let through now, without taking a slot: for a hedge, which is only worth
    /// sending while the circuit is closed.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.lock().phase, Phase::Closed { .. })
    }

    pub(crate) fn report(&self) -> CircuitReport {
        let state = self.lock();
        CircuitReport {
            source: self.source.to_string(),
            state: state.phase.state(),
            opened: state.opened,
            transitions: state.transitions,
        }
    }

    fn record(&self, generation: u64, probe: bool, outcome: Option<CallOutcome>) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.generation != generation {
            // The call began in an earlier phase; what it says is about a circuit that is no more.
            return;
        }
        let policy = self.policy;
        match (&mut state.phase, probe) {
            (Phase::Closed { window }, false) => {
                let Some(outcome) = outcome else { return };
                window.push_back((now, outcome == CallOutcome::Failure));
                while window.len() > MAX_WINDOW_CALLS
                    || window
                        .front()
                        .is_some_and(|(at, _)| now.saturating_duration_since(*at) > policy.window)
                {
                    window.pop_front();
                }
                let calls = u64::try_from(window.len()).unwrap_or(u64::MAX);
                let failures =
                    u64::try_from(window.iter().filter(|(_, failed)| *failed).count()).unwrap_or(0);
                if calls >= u64::from(policy.min_calls.max(1))
                    && failures * 100 >= u64::from(policy.failure_percent.clamp(1, 100)) * calls
                {
                    tracing::warn!(
                        source = %self.source,
                        failures,
                        calls,
                        cool_down = ?policy.cool_down,
                        "circuit opened: the source keeps failing; it is not asked until the cool-down has passed"
                    );
                    self.transition(
                        &mut state,
                        Phase::Open {
                            until: now + policy.cool_down,
                        },
                    );
                }
            }
            (
                Phase::HalfOpen {
                    in_flight,
                    succeeded,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                match outcome {
                    None => {}
                    Some(CallOutcome::Success) => {
                        *succeeded += 1;
                        if *succeeded >= policy.probes.max(1) {
                            tracing::info!(source = %self.source, "circuit closed: the probes succeeded");
                            self.transition(
                                &mut state,
                                Phase::Closed {
                                    window: VecDeque::new(),
                                },
                            );
                        }
                    }
                    Some(CallOutcome::Failure) => {
                        tracing::warn!(source = %self.source, cool_down = ?policy.cool_down, "circuit opened again: a probe failed");
                        self.transition(
                            &mut state,
                            Phase::Open {
                                until: now + policy.cool_down,
                            },
                        );
                    }
                }
            }
            // A permit always matches its generation's phase; nothing else can happen.
            _ => {}
        }
    }

    fn transition(&self, state: &mut BreakerState, to: Phase) {
        let from = state.phase.state();
        let to_state = to.state();
        if to_state == CircuitState::Open {
            state.opened += 1;
        }
        if to_state == CircuitState::HalfOpen {
            tracing::info!(source = %self.source, "circuit half-open: the cool-down has passed; probing the source");
        }
        tracing::debug!(source = %self.source, %from, to = %to_state, "circuit transition");
        state.phase = to;
        state.generation += 1;
        state.transitions += 1;
    }

    /// The state is only changed whole under the lock, so a panic elsewhere cannot leave it half-changed.
    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Phase {
    fn state(&self) -> CircuitState {
        match self {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

impl Permit {
    /// Reports how the request ended.
    pub(crate) fn record(mut self, outcome: CallOutcome) {
        self.recorded = true;
        self.breaker
            .record(self.generation, self.probe, Some(outcome));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(self.generation, self.probe, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_percent: 50,
            cool_down: Duration::from_secs(5),
            probes: 2,
        }
    }

    fn call(breaker: &Breaker, outcome: CallOutcome) {
        breaker.admit().expect("admitted").record(outcome);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_only_once_the_window_has_enough_calls() {
        let breaker = Breaker::new("news", policy());
        for _ in 0..3 {
            call(&breaker, CallOutcome::Failure);
        }
        assert_eq!(
            breaker.report().state,
            CircuitState::Closed,
            "3 calls < min_calls"
        );
        call(&breaker, CallOutcome::Failure);
        assert_eq!(breaker.report().state, CircuitState::Open);
        let refused = breaker.admit().expect_err("open");
        assert_eq!(refused.retry_in, Duration::from_secs(5));
        assert_eq!(breaker.report().opened, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_under_the_threshold_keeps_it_closed() {
        let breaker = Breaker::new("news", policy());
        for round in 0..20 {
            // 1 failure in 3 calls: 33% < 50%.
            call(&breaker, CallOutcome::Success);
            call(&breaker, CallOutcome::Success);
            call(&breaker, CallOutcome::Failure);
            assert_eq!(
                breaker.report().state,
                CircuitState::Closed,
                "round {round}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_the_window_are_forgotten() {
        let breaker = Breaker::new("news", policy());
        for _ in 0..3 {
            call(&breaker, CallOutcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        call(&breaker, CallOutcome::Failure);
        call(&breaker, CallOutcome::Success);
        call(&breaker, CallOutcome::Success);
        call(&breaker, CallOutcome::Success);
        assert_eq!(breaker.report().state, CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_probes_close_it_or_one_failure_opens_it_again() {
        let breaker = Breaker::new("news", policy());
        for _ in 0..4 {
            call(&breaker, CallOutcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        // Half-open: two probes at a time, a third request is refused.
        let first = breaker.admit().expect("probe");
        assert_eq!(breaker.report().state, CircuitState::HalfOpen);
        let second = breaker.admit().expect("probe");
        assert!(breaker.admit().is_err());
        first.record(CallOutcome::Success);
        assert_eq!(breaker.report().state, CircuitState::HalfOpen);
        second.record(CallOutcome::Success);
        assert_eq!(breaker.report().state, CircuitState::Closed);

        for _ in 0..4 {
            call(&breaker, CallOutcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        call(&breaker, CallOutcome::Failure);
        assert_eq!(breaker.report().state, CircuitState::Open);
        assert_eq!(breaker.report().opened, 3);
        assert_eq!(
            breaker.admit().expect_err("open again").retry_in,
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_its_slot_and_a_stale_permit_changes_nothing() {
        let breaker = Breaker::new("news", policy());
        let stale = breaker.admit().expect("closed");
        for _ in 0..4 {
            call(&breaker, CallOutcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.admit().expect("probe");
        let other = breaker.admit().expect("probe");
        drop(probe);
        let again = breaker.admit().expect("the dropped probe's slot is free");
        // A call admitted while closed reports into a circuit that is no more.
        stale.record(CallOutcome::Failure);
        assert_eq!(breaker.report().state, CircuitState::HalfOpen);
        other.record(CallOutcome::Success);
        again.record(CallOutcome::Success);
        assert_eq!(breaker.report().state, CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_is_bounded() {
        let breaker = Breaker::new("news", policy());
        for _ in 0..(MAX_WINDOW_CALLS * 3) {
            call(&breaker, CallOutcome::Success);
        }
        let state = breaker.lock();
        let Phase::Closed { window } = &state.phase else {
            panic!("closed")
        };
        assert_eq!(window.len(), MAX_WINDOW_CALLS);
    }
}
