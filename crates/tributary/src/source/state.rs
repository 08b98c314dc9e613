//! What a client remembers about each source between fetches: its circuit breaker, its rate limiter, its
//! latencies and hedge budget. Shared by every clone of the client, so every question of an `ask`, a `batch` or
//! a server sees the same breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::breaker::{Breaker, BreakerPolicy, CircuitReport};
use super::hedge::HedgeState;
use super::rate::{Limiter, RateLimit};
use super::spec::SourceSpec;

/// Every source's state, by source name.
#[derive(Debug, Default)]
pub(crate) struct SourceStates {
    by_name: Mutex<HashMap<String, Arc<SourceState>>>,
}

/// One source's state.
#[derive(Debug)]
pub(crate) struct SourceState {
    pub(crate) breaker: Option<Breaker>,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) hedging: HedgeState,
}

impl SourceStates {
    /// `spec`'s state, made on first use. A spec whose breaker or rate limit differs from the state's (the same
    /// name reconfigured) starts afresh.
    pub(crate) fn get(&self, spec: &SourceSpec) -> Arc<SourceState> {
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = by_name.get(&spec.name)
            && state.matches(spec.breaker, spec.rate_limit)
        {
            return Arc::clone(state);
        }
        let state = Arc::new(SourceState {
            breaker: spec.breaker.map(|policy| Breaker::new(&spec.name, policy)),
            limiter: spec.rate_limit.map(Limiter::new),
            hedging: HedgeState::new(),
        });
        by_name.insert(spec.name.clone(), Arc::clone(&state));
        state
    }

    /// Every source's circuit that has a breaker, by name.
    pub(crate) fn circuits(&self) -> Vec<CircuitReport> {
        let by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        let mut circuits: Vec<CircuitReport> = by_name
            .values()
            .filter_map(|state| state.breaker.as_ref().map(Breaker::report))
            .collect();
        circuits.sort_by(|a, b| a.source.cmp(&b.source));
        circuits
    }
}

impl SourceState {
    fn matches(&self, breaker: Option<BreakerPolicy>, rate_limit: Option<RateLimit>) -> bool {
        self.breaker.as_ref().map(Breaker::policy) == breaker
            && self.limiter.as_ref().map(Limiter::limit) == rate_limit
    }
}
