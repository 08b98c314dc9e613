//! Admission: how many runs go at once. A request over the limit is refused at once (503), never queued.
//!
//! The limit adapts between 1 and `--max-in-flight` (its start, and the most it grows to) by how the runs it
//! let in fared, additive increase and multiplicative decrease as in TCP:
//!
//! - a run in which a source's **CPU phase** (from its answer's arrival to its inference's end: the wait for a
//!   worker and the inference) took more than the CPU budget, or whose inference the deadline cut short, was admitted into a
//!   server that could not keep up: the limit shrinks by [`DECREASE`], at most once per [`DECREASE_EVERY`] (a
//!   burst of late runs is one signal, not fifty);
//! - any other run that got an answer grows it by 1/limit (so by one per limit's worth of good runs).
//!
//! The CPU budget is what the default bound counts on: the deadline less the per-source timeout (half the
//! deadline when that is not shorter). A slow or hanging source makes a run long but not late by this
//! measure, so it does not shrink the limit: only the server's own queue does. Written here rather than taken
//! from a crate: the adaptive limiters for tower (tower-acc, vector's) queue a request until a slot frees,
//! where this must refuse at once, and judge by latency or errors, where the signal that matters is
//! domain-specific: an ask's CPU phase against its deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tributary_agent::{AgentReport, SourceFailure};

/// What the limit is multiplied by after a late run.
pub const DECREASE: f64 = 0.9;

/// At most one decrease in this long.
pub const DECREASE_EVERY: Duration = Duration::from_millis(100);

/// The adaptive limit on runs in flight.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    in_flight: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    last_decrease: Option<Instant>,
}

/// One admitted run's place; the run leaves the count when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
}

/// How an admitted run fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fared {
    /// It got its answer within its CPU budget.
    Well,
    /// Its CPU phase overran its budget, or the deadline cut its inference.
    Late,
    /// Nothing to learn: no source answered, or it was cancelled.
    Unknown,
}

impl Admission {
    /// At most `max` runs at once, the limit starting there.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            in_flight: AtomicUsize::new(0),
            state: Mutex::new(State {
                limit: max.max(1) as f64,
                last_decrease: None,
            }),
        }
    }

    /// Admits a run if fewer than the limit are in flight.
    pub fn try_admit(self: &Arc<Self>) -> Option<Admitted> {
        let limit = self.limit();
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |count| {
                (count < limit).then_some(count + 1)
            })
            .ok()
            .map(|_| Admitted {
                admission: Arc::clone(self),
            })
    }

    /// Runs in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most runs admitted at once now.
    pub fn limit(&self) -> usize {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "the limit is kept between 1 and max, a usize"
        )]
        let limit = self.lock().limit.floor() as usize;
        limit.clamp(1, self.max)
    }

    /// The most the limit grows to (`--max-in-flight`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Learns from a run that ended.
    pub fn record(&self, fared: Fared) {
        self.record_at(fared, Instant::now());
    }

    fn record_at(&self, fared: Fared, now: Instant) {
        let mut state = self.lock();
        match fared {
            Fared::Unknown => {}
            Fared::Well => {
                state.limit = (state.limit + 1.0 / state.limit).min(self.max as f64);
            }
            Fared::Late => {
                let due = state
                    .last_decrease
                    .is_none_or(|last| now.duration_since(last) >= DECREASE_EVERY);
                if due {
                    state.limit = (state.limit * DECREASE).max(1.0);
                    state.last_decrease = Some(now);
                }
            }
        }
    }

    /// The state is two numbers, always valid: a panic elsewhere cannot leave it half-written.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Admitted {
    /// Learns how the run fared and leaves the count.
    pub fn finish(self, fared: Fared) {
        self.admission.record(fared);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a run fared, from its report and the end of each inference (source name, end in ms since the run
/// started, from its timeline), given the CPU time it could count on after its sources: late when a source's
/// CPU phase (from its answer's arrival to its inference's end) overran the budget, or the deadline cut an
/// inference short. A source still fetching (a slow or hanging one) does not make another's CPU phase longer.
pub fn fared(
    report: &AgentReport,
    inference_ends: &[(String, f64)],
    cpu_budget: Duration,
) -> Fared {
    let phases: Vec<f64> = inference_ends
        .iter()
        .filter_map(|(name, end_ms)| {
            let source = report.sources.iter().find(|source| source.name == *name)?;
            Some(end_ms - source.arrived_at_ms?)
        })
        .collect();
    judge(
        &phases,
        report.sources.iter().any(inference_cut),
        cpu_budget,
    )
}

/// Late when the deadline cut an inference or a CPU phase overran the budget; unknown without any phase.
fn judge(cpu_phases_ms: &[f64], inference_cut: bool, cpu_budget: Duration) -> Fared {
    if inference_cut {
        return Fared::Late;
    }
    let budget_ms = cpu_budget.as_secs_f64() * 1000.0;
    match cpu_phases_ms.iter().copied().reduce(f64::max) {
        None => Fared::Unknown,
        Some(longest) if longest > budget_ms => Fared::Late,
        Some(_) => Fared::Well,
    }
}

/// Whether the deadline cut this source's inference short (it answered, and timed out after), by its kind.
fn inference_cut(source: &tributary_agent::SourceReport) -> bool {
    source.failure == Some(SourceFailure::InferenceTimedOut)
}

/// The CPU time an ask can count on after its sources: the deadline less the per-source timeout, or half the
/// deadline when that is not shorter (the default bound's reckoning too).
pub fn cpu_budget(deadline: Duration, per_source_timeout: Duration) -> Duration {
    if per_source_timeout < deadline {
        deadline - per_source_timeout
    } else {
        deadline / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_frees_a_place_on_drop() {
        let admission = Arc::new(Admission::new(2));
        let first = admission.try_admit().expect("1 of 2");
        let _second = admission.try_admit().expect("2 of 2");
        assert!(admission.try_admit().is_none());
        assert_eq!(admission.in_flight(), 2);
        drop(first);
        assert!(admission.try_admit().is_some());
    }

    #[test]
    fn late_runs_shrink_the_limit_once_per_window_and_good_ones_grow_it_back() {
        let admission = Admission::new(100);
        let start = Instant::now();
        // A burst of late runs within one window is one decrease.
        for offset in 0..50 {
            admission.record_at(Fared::Late, start + Duration::from_micros(offset));
        }
        assert_eq!(admission.limit(), 90);
        admission.record_at(Fared::Late, start + DECREASE_EVERY);
        assert_eq!(admission.limit(), 81);
        // Never below 1.
        for window in 2..200 {
            admission.record_at(Fared::Late, start + DECREASE_EVERY * window);
        }
        assert_eq!(admission.limit(), 1);
        // Good runs grow it by 1/limit each, up to the max.
        for _ in 0..3 {
            admission.record(Fared::Well);
        }
        assert!(admission.limit() >= 2, "{}", admission.limit());
        for _ in 0..100_000 {
            admission.record(Fared::Well);
        }
        assert_eq!(admission.limit(), 100);
        admission.record(Fared::Unknown);
        assert_eq!(admission.limit(), 100);
    }

    #[test]
    fn a_run_is_judged_by_its_longest_cpu_phase() {
        let budget = Duration::from_secs(1);
        assert_eq!(judge(&[], false, budget), Fared::Unknown);
        assert_eq!(judge(&[20.0, 900.0], false, budget), Fared::Well);
        assert_eq!(judge(&[20.0, 1100.0], false, budget), Fared::Late);
        assert_eq!(judge(&[20.0], true, budget), Fared::Late);
    }

    /// A run is late when the deadline cut an inference, told by the source's failure kind; a fetch the deadline
    /// cut is the network's doing, not the CPU's, and a source that failed otherwise says nothing either way.
    #[test]
    fn an_inference_cut_by_the_deadline_makes_the_run_late_by_its_kind() {
        let report = |failure: SourceFailure| {
            let source = tributary_agent::Source::new(
                "kb",
                tributary_agent::SourceKind::KnowledgeBase,
                url::Url::parse("http://127.0.0.1:1").expect("url"),
            );
            let mut source = tributary_agent::SourceReport::new_for(&source);
            source.status = tributary_agent::SourceStatus::TimedOut;
            source.failure = Some(failure);
            source.error = Some("whatever the words".to_owned());
            let mut report: AgentReport = serde_json::from_value(serde_json::json!({
                "question": "q", "status": "degraded", "answer": "a", "error": null, "degraded": true,
                "mode": "concurrent", "elapsed_ms": 1.0, "ideal_ms": 1.0, "efficiency": 1.0, "workers": 1,
                "deadline_ms": 1000.0, "per_source_timeout_ms": 500.0, "sources": [],
            }))
            .expect("a report");
            report.sources.push(source);
            report
        };
        let budget = Duration::from_secs(1);
        assert_eq!(
            fared(&report(SourceFailure::InferenceTimedOut), &[], budget),
            Fared::Late
        );
        assert_eq!(
            fared(&report(SourceFailure::Deadline), &[], budget),
            Fared::Unknown
        );
        assert_eq!(
            fared(&report(SourceFailure::Cancelled), &[], budget),
            Fared::Unknown
        );
    }

    #[test]
    fn the_cpu_budget_is_what_the_sources_leave() {
        assert_eq!(
            cpu_budget(Duration::from_secs(2), Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            cpu_budget(Duration::from_secs(2), Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }
}
