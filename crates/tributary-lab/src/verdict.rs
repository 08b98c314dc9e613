//! The claims as pure functions of the measurements: each takes an experiment's `Measured` figures (and the
//! cores, where the threshold scales with the machine) and says PASS or FAIL, and why.
//!
//! Keeping them pure lets the tests inject measurements, including failing ones, without timing anything.

use serde::Serialize;

use super::blocking;
use super::capstone;
use super::fail_fast::{self, CHILDREN, Case, INNER_CHILDREN};
use super::hybrid;
use super::parallelism;
use super::sync_vs_async;
use super::timeouts::{self, Winner};
use tributary::pool::ExecutorKind;

/// Whether a claim held, and why (the figures it was judged on and the threshold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True when the claim held.
    pub pass: bool,
    /// The figures and thresholds behind the verdict, in a sentence.
    pub reason: String,
}

/// `sync-vs-async`: the concurrent total may exceed the longest call by at most this fraction.
pub const CONCURRENT_TOLERANCE: f64 = 0.10;

/// `blocking`: run directly, the job must hold the loop for at least this fraction of its duration.
pub const BLOCKED_FRACTION: f64 = 0.8;

/// `hybrid`: the overlapped pipeline must save at least this share of the sequential time (SC-008).
pub const HYBRID_MIN_REDUCTION: f64 = 0.40;

/// `capstone`: the agent must be at least this many times faster than its sequential baseline.
pub const CAPSTONE_MIN_SPEEDUP: f64 = 2.0;
/// `capstone`: and within 10 % of the ideal schedule.
pub const CAPSTONE_MIN_EFFICIENCY: f64 = 0.90;

/// `parallelism`: the global-lock model may be at most this much faster than inline.
pub const GLOBAL_LOCK_MAX_SPEEDUP: f64 = 1.2;
/// `parallelism`: the thread pool must be at least this many times faster than inline, per core.
pub const POOL_MIN_SPEEDUP_PER_CORE: f64 = 0.9;

/// How late a timer may fire and still count as on time: 10 % of the bound plus 25 ms of scheduling on a busy
/// machine (a timer never fires early).
pub fn timer_tolerance(bound_ms: f64) -> f64 {
    bound_ms * 0.10 + 25.0
}

impl Verdict {
    /// The claim held.
    pub fn pass(reason: impl Into<String>) -> Self {
        Self {
            pass: true,
            reason: reason.into(),
        }
    }

    /// The claim did not hold.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            pass: false,
            reason: reason.into(),
        }
    }

    /// PASS or FAIL, as printed.
    pub fn label(&self) -> &'static str {
        if self.pass { "PASS" } else { "FAIL" }
    }

    /// `pass` when `holds`, else `fail`, with the same reason.
    fn check(holds: bool, reason: String) -> Self {
        Self {
            pass: holds,
            reason,
        }
    }

    /// Several sub-claims: passes when all pass; the reason lists every failure, or every check when all pass.
    fn all(checks: impl IntoIterator<Item = Verdict>) -> Self {
        let checks: Vec<Verdict> = checks.into_iter().collect();
        let failures: Vec<&str> = checks
            .iter()
            .filter(|check| !check.pass)
            .map(|check| check.reason.as_str())
            .collect();
        if failures.is_empty() {
            Self::pass(
                checks
                    .iter()
                    .map(|check| check.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        } else {
            Self::fail(failures.join("; "))
        }
    }
}

/// `sync-vs-async`: the concurrent total is within [`CONCURRENT_TOLERANCE`] of the longest call, and every call
/// succeeded (a failed call would make the run trivially short).
pub fn sync_vs_async(measured: &sync_vs_async::Measured) -> Verdict {
    let failed = measured
        .sequential_calls
        .iter()
        .chain(&measured.concurrent_calls)
        .filter(|call| !call.ok)
        .count();
    if failed > 0 {
        return Verdict::fail(format!(
            "{failed} call(s) failed, so the timings mean nothing"
        ));
    }
    let limit = measured.longest_call_ms * (1.0 + CONCURRENT_TOLERANCE);
    let over = measured.concurrent_total_ms / measured.longest_call_ms.max(f64::MIN_POSITIVE) - 1.0;
    Verdict::check(
        measured.concurrent_total_ms <= limit,
        format!(
            "concurrent total {:.0} ms is {:+.1}% of the longest call ({:.0} ms; limit +{:.0}%), against {:.0} ms \
             sequentially ({:.2}x)",
            measured.concurrent_total_ms,
            over * 100.0,
            measured.longest_call_ms,
            CONCURRENT_TOLERANCE * 100.0,
            measured.sequential_total_ms,
            measured.speedup,
        ),
    )
}

/// `fail-fast-vs-settle`: in every case the group fails once and cancels every sibling (and, nested, the inner
/// group cancels its own), before settle, which returns all but one result and exactly one error.
pub fn fail_fast_vs_settle(measured: &fail_fast::Measured) -> Verdict {
    Verdict::all(measured.cases.iter().map(|case| {
        let group = &case.fail_fast;
        let settle = &case.settle;
        let siblings = CHILDREN - 1;
        let mut problems = Vec::new();
        if group.failed.len() != 1 {
            problems.push(format!("the group reported {} failures, not 1", group.failed.len()));
        }
        if group.cancelled.len() != siblings || group.succeeded != 0 {
            problems.push(format!(
                "the group cancelled {} of the {siblings} siblings ({} had already finished)",
                group.cancelled.len(),
                group.succeeded
            ));
        }
        if settle.ok != siblings || settle.errors.len() != 1 || settle.other != 0 {
            problems.push(format!(
                "settle returned {} results, {} errors and {} other outcomes, not {siblings}, 1 and 0",
                settle.ok,
                settle.errors.len(),
                settle.other
            ));
        }
        if group.total_ms >= settle.total_ms {
            problems.push(format!(
                "the group took {:.0} ms, not less than settle's {:.0} ms",
                group.total_ms, settle.total_ms
            ));
        }
        match case.case {
            Case::OneFailingFetch => {}
            Case::TimeoutInside => {
                if !group.failed_by_timeout || !settle.error_is_timeout {
                    problems.push("the one error was not the child's timeout".to_owned());
                }
            }
            Case::NestedGroup => {
                let inner_siblings = INNER_CHILDREN - 1;
                if group.inner_cancelled.len() != inner_siblings
                    || settle.inner_cancelled.len() != inner_siblings
                {
                    problems.push(format!(
                        "the nested group cancelled {} (fail-fast outside) and {} (settle outside) of its \
                         {inner_siblings} siblings",
                        group.inner_cancelled.len(),
                        settle.inner_cancelled.len()
                    ));
                }
            }
        }
        let label = serde_json::to_value(case.case)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        if problems.is_empty() {
            Verdict::pass(format!(
                "{label}: group failed at {:.0} ms and cancelled {}{}, settle {} results + 1 error at {:.0} ms",
                group.shut_down_at_ms,
                group.cancelled.len(),
                if group.inner_cancelled.is_empty() {
                    String::new()
                } else {
                    format!(" (+{} inner)", group.inner_cancelled.len())
                },
                settle.ok,
                settle.total_ms
            ))
        } else {
            Verdict::fail(format!("{label}: {}", problems.join(", ")))
        }
    }))
}

/// `timeouts`: each cut call ended at the bound that should win, on time; the flaky fetch succeeded after at
/// least one retry, every delay within its doubling bound.
pub fn timeouts(measured: &timeouts::Measured) -> Verdict {
    let cut = |label: &str, figure: &timeouts::TimeoutFigure, expected: Winner| {
        let bound = match expected {
            Winner::Outer => figure.outer_ms.unwrap_or(figure.inner_ms),
            Winner::Inner | Winner::None => figure.inner_ms,
        };
        let on_time = figure.ended_at_ms >= bound - 1.0
            && figure.ended_at_ms <= bound + timer_tolerance(bound);
        Verdict::check(
            figure.winner == expected && on_time,
            format!(
                "{label}: cut by the {:?} bound at {:.0} ms (expected the {expected:?} bound at {bound:.0} ms, \
                 +{:.0} ms at most)",
                figure.winner,
                figure.ended_at_ms,
                timer_tolerance(bound)
            )
            .to_lowercase(),
        )
    };
    let retry = &measured.retry;
    let delays_within_bounds = retry.attempts.iter().all(|attempt| {
        match (attempt.delay_after_ms, attempt.delay_bound_ms) {
            (Some(delay), Some(bound)) => delay <= bound + 0.001,
            _ => true,
        }
    });
    let delays: Vec<String> = retry
        .attempts
        .iter()
        .filter_map(|attempt| {
            Some(format!(
                "{:.0}/{:.0}",
                attempt.delay_after_ms?, attempt.delay_bound_ms?
            ))
        })
        .collect();
    let retried = Verdict::check(
        retry.succeeded && retry.attempts.len() >= 2 && delays_within_bounds,
        format!(
            "flaky fetch {} after {} attempt(s), delays/bounds {} ms",
            if retry.succeeded {
                "succeeded"
            } else {
                "failed"
            },
            retry.attempts.len(),
            if delays.is_empty() {
                "none".to_owned()
            } else {
                delays.join(", ")
            },
        ),
    );
    Verdict::all([
        cut("hanging call", &measured.hanging, Winner::Inner),
        cut(
            "inner 2x inside outer 1x",
            &measured.outer_sooner,
            Winner::Outer,
        ),
        cut(
            "inner 1x inside outer 2x",
            &measured.inner_sooner,
            Winner::Inner,
        ),
        retried,
    ])
}

/// `blocking`: inline, the loop's lag and the tickers' worst delay are at least [`BLOCKED_FRACTION`] of the job;
/// through the pool, no stall and no tick as late as the stall threshold.
pub fn blocking(measured: &blocking::Measured) -> Verdict {
    let inline = &measured.inline;
    let pool = &measured.pool;
    let frozen = inline.job_ms * BLOCKED_FRACTION;
    let threshold = measured.stall_threshold_ms;
    Verdict::all([
        Verdict::check(
            inline.max_lag_ms >= frozen && inline.worst_tick_delay_ms >= frozen,
            format!(
                "directly: the {:.0} ms job froze the loop for {:.0} ms and delayed a tick by {:.0} ms \
                 (at least {frozen:.0} ms expected; {} of {} ticks late)",
                inline.job_ms,
                inline.max_lag_ms,
                inline.worst_tick_delay_ms,
                inline.delayed_ticks,
                inline.ticks
            ),
        ),
        Verdict::check(
            pool.stalls == 0 && pool.worst_tick_delay_ms < threshold && pool.max_lag_ms < threshold,
            format!(
                "through the pool: worst lag {:.1} ms, worst tick delay {:.1} ms, {} stall(s) (under \
                 {threshold:.0} ms and none expected)",
                pool.max_lag_ms, pool.worst_tick_delay_ms, pool.stalls
            ),
        ),
    ])
}

/// `hybrid`: every item processed, and the overlapped run at least [`HYBRID_MIN_REDUCTION`] shorter.
pub fn hybrid(measured: &hybrid::Measured) -> Verdict {
    if measured.failed_items > 0 {
        return Verdict::fail(format!(
            "{} item(s) failed, so the timings mean nothing",
            measured.failed_items
        ));
    }
    Verdict::check(
        measured.reduction >= HYBRID_MIN_REDUCTION,
        format!(
            "overlapped {:.0} ms against sequential {:.0} ms: {:.0}% less time (at least {:.0}% claimed); \
             efficiency {:.2} against the ideal {:.0} ms",
            measured.overlapped_ms,
            measured.sequential_ms,
            measured.reduction * 100.0,
            HYBRID_MIN_REDUCTION * 100.0,
            measured.efficiency,
            measured.ideal_ms
        ),
    )
}

/// `capstone`: both runs answered from every source; speed-up at least [`CAPSTONE_MIN_SPEEDUP`] and efficiency
/// at least [`CAPSTONE_MIN_EFFICIENCY`].
pub fn capstone(measured: &capstone::Measured) -> Verdict {
    if !measured.answered || measured.sources_ok < measured.sources {
        return Verdict::fail(format!(
            "only {} of {} sources answered (answer produced: {}), so the timings mean nothing",
            measured.sources_ok, measured.sources, measured.answered
        ));
    }
    Verdict::all([
        Verdict::check(
            measured.speedup >= CAPSTONE_MIN_SPEEDUP,
            format!(
                "{:.2}x faster ({:.0} ms against {:.0} ms; at least {CAPSTONE_MIN_SPEEDUP:.1}x claimed, {:.2}x ideal)",
                measured.speedup,
                measured.concurrent_ms,
                measured.sequential_ms,
                measured.ideal_speedup
            ),
        ),
        Verdict::check(
            measured.efficiency >= CAPSTONE_MIN_EFFICIENCY,
            format!(
                "efficiency {:.2} against the ideal {:.0} ms (at least {CAPSTONE_MIN_EFFICIENCY:.2})",
                measured.efficiency, measured.ideal_ms
            ),
        ),
    ])
}

/// `parallelism`: global-lock speed-up at most [`GLOBAL_LOCK_MAX_SPEEDUP`]; threads at least
/// [`POOL_MIN_SPEEDUP_PER_CORE`] × cores; a process hop measured and dearer than a thread hop; a crashed worker
/// fails only its job and is replaced; a saturated pool never runs more jobs than workers, queues the rest, makes
/// submitters wait and refuses `try_submit`.
pub fn parallelism(measured: &parallelism::Measured) -> Verdict {
    let speedup = |kind: ExecutorKind| {
        measured
            .executors
            .iter()
            .find(|figures| figures.executor == kind)
            .map(|figures| (figures.speedup, figures.failed))
    };
    let failed: usize = measured
        .executors
        .iter()
        .map(|figures| figures.failed)
        .sum();
    let jobs_ran = Verdict::check(
        failed == 0,
        format!("{failed} job(s) failed across the executors"),
    );
    let global_lock = match speedup(ExecutorKind::GlobalLock) {
        Some((speedup, _)) => Verdict::check(
            speedup <= GLOBAL_LOCK_MAX_SPEEDUP,
            format!(
                "global-lock (GIL model) {speedup:.2}x (at most {GLOBAL_LOCK_MAX_SPEEDUP:.1}x)"
            ),
        ),
        None => Verdict::fail("global-lock was not measured"),
    };
    let wanted = POOL_MIN_SPEEDUP_PER_CORE * measured.cores as f64;
    let threads = match speedup(ExecutorKind::Threads) {
        Some((speedup, _)) => Verdict::check(
            speedup >= wanted,
            format!(
                "threads {speedup:.2}x (at least {wanted:.2}x on {} cores)",
                measured.cores
            ),
        ),
        None => Verdict::fail("threads were not measured"),
    };
    let overhead = &measured.overhead;
    let hop = match overhead.processes_us {
        Some(processes_us) => Verdict::check(
            processes_us > overhead.threads_us,
            format!(
                "per-job overhead: processes {processes_us:.0} µs against threads {:.0} µs ({:.0}x)",
                overhead.threads_us,
                processes_us / overhead.threads_us.max(f64::MIN_POSITIVE)
            ),
        ),
        None => {
            Verdict::fail("the process hop was not measured: no worker processes in this build")
        }
    };
    let crash = match &measured.crash {
        Some(crash) => Verdict::check(
            crash.job_failed && crash.next_job_ok && crash.workers_replaced >= 1,
            format!(
                "crashed worker: its job {}, the next job {}, {} worker(s) replaced",
                if crash.job_failed {
                    "failed"
                } else {
                    "did not fail"
                },
                if crash.next_job_ok { "ran" } else { "failed" },
                crash.workers_replaced
            ),
        ),
        None => {
            Verdict::fail("the worker crash was not measured: no worker processes in this build")
        }
    };
    let saturation = &measured.saturation;
    let saturated = Verdict::check(
        saturation.max_running <= saturation.workers as u64
            && saturation.max_queued >= 1
            && saturation.submitters_blocked >= 1
            && saturation.try_submit_refused,
        format!(
            "saturated pool: at most {} running on {} workers, up to {} queued, {} of {} submitters waited \
             (up to {:.0} ms), try_submit {}",
            saturation.max_running,
            saturation.workers,
            saturation.max_queued,
            saturation.submitters_blocked,
            saturation.submitters,
            saturation.max_submit_wait_ms,
            if saturation.try_submit_refused {
                "refused"
            } else {
                "accepted"
            }
        ),
    );
    if failed == 0 {
        Verdict::all([global_lock, threads, hop, crash, saturated])
    } else {
        Verdict::all([jobs_ran, global_lock, threads, hop, crash, saturated])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(ms: &[f64]) -> Vec<sync_vs_async::CallFigure> {
        ms.iter()
            .map(|&ms| sync_vs_async::CallFigure {
                service: "weather".to_owned(),
                ms,
                ok: true,
            })
            .collect()
    }

    fn sync_vs_async_measured(concurrent_total_ms: f64) -> sync_vs_async::Measured {
        sync_vs_async::Measured {
            call_latency_ms: 1000.0,
            sequential_calls: calls(&[1002.0, 1003.0, 1004.0]),
            sequential_total_ms: 3010.0,
            sum_of_calls_ms: 3009.0,
            longest_call_ms: 1004.0,
            concurrent_calls: calls(&[1005.0, 1006.0, 1007.0]),
            concurrent_total_ms,
            speedup: 3010.0 / concurrent_total_ms,
        }
    }

    #[test]
    fn sync_vs_async_passes_near_the_longest_call_and_fails_past_ten_percent() {
        assert!(sync_vs_async(&sync_vs_async_measured(1008.0)).pass);
        let slow = sync_vs_async(&sync_vs_async_measured(1200.0));
        assert!(!slow.pass);
        assert!(slow.reason.contains("+19.5%"), "{}", slow.reason);
    }

    #[test]
    fn sync_vs_async_fails_when_a_call_failed() {
        let mut measured = sync_vs_async_measured(1008.0);
        measured.concurrent_calls[1].ok = false;
        assert!(!sync_vs_async(&measured).pass);
    }

    fn child(name: &str, at_ms: f64) -> fail_fast::ChildFigure {
        fail_fast::ChildFigure {
            name: name.to_owned(),
            at_ms,
            error: None,
        }
    }

    /// A textbook run of `case`: one failure at 40 ms, nine cancelled, settle 9 + 1 at 420 ms.
    fn textbook_case(case: Case) -> fail_fast::CaseFigures {
        let inner_cancelled = if case == Case::NestedGroup {
            vec![child("inner 0", 40.0), child("inner 1", 40.0)]
        } else {
            Vec::new()
        };
        fail_fast::CaseFigures {
            case,
            fail_fast: fail_fast::FailFastFigures {
                total_ms: 41.0,
                cause: "child `fetch 3` failed".to_owned(),
                shut_down_at_ms: 40.0,
                failed: vec![child("fetch 3", 40.0)],
                cancelled: (0..9)
                    .map(|index| child(&format!("fetch {index}"), 40.5))
                    .collect(),
                succeeded: 0,
                failed_by_timeout: case == Case::TimeoutInside,
                inner_cancelled: inner_cancelled.clone(),
            },
            settle: fail_fast::SettleFigures {
                total_ms: 420.0,
                ok: 9,
                errors: vec!["fetch 3: boom".to_owned()],
                other: 0,
                error_is_timeout: case == Case::TimeoutInside,
                inner_cancelled,
            },
        }
    }

    fn textbook_fail_fast() -> fail_fast::Measured {
        fail_fast::Measured {
            cases: vec![
                textbook_case(Case::OneFailingFetch),
                textbook_case(Case::TimeoutInside),
                textbook_case(Case::NestedGroup),
            ],
        }
    }

    #[test]
    fn fail_fast_vs_settle_passes_a_textbook_run() {
        let verdict = fail_fast_vs_settle(&textbook_fail_fast());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn fail_fast_vs_settle_fails_when_a_sibling_finished_or_settle_lost_a_result() {
        let mut measured = textbook_fail_fast();
        measured.cases[0].fail_fast.cancelled.pop();
        measured.cases[0].fail_fast.succeeded = 1;
        let verdict = fail_fast_vs_settle(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("cancelled 8 of the 9"),
            "{}",
            verdict.reason
        );

        let mut measured = textbook_fail_fast();
        measured.cases[2].settle.ok = 8;
        measured.cases[2].settle.other = 1;
        assert!(!fail_fast_vs_settle(&measured).pass);
    }

    #[test]
    fn fail_fast_vs_settle_fails_when_the_error_was_not_the_timeout_or_the_inner_group_kept_running()
     {
        let mut measured = textbook_fail_fast();
        measured.cases[1].fail_fast.failed_by_timeout = false;
        assert!(!fail_fast_vs_settle(&measured).pass);

        let mut measured = textbook_fail_fast();
        measured.cases[2].fail_fast.inner_cancelled.clear();
        assert!(!fail_fast_vs_settle(&measured).pass);
    }

    fn cut(
        outer_ms: Option<f64>,
        inner_ms: f64,
        ended_at_ms: f64,
        winner: Winner,
    ) -> timeouts::TimeoutFigure {
        timeouts::TimeoutFigure {
            outer_ms,
            inner_ms,
            ended_at_ms,
            winner,
            error: String::new(),
        }
    }

    fn attempt(number: u32, delay: Option<(f64, f64)>) -> timeouts::AttemptFigure {
        timeouts::AttemptFigure {
            number,
            started_ms: 0.0,
            ms: 20.0,
            outcome: "ok".to_owned(),
            delay_after_ms: delay.map(|(delay, _)| delay),
            delay_bound_ms: delay.map(|(_, bound)| bound),
        }
    }

    fn textbook_timeouts() -> timeouts::Measured {
        timeouts::Measured {
            hanging: cut(None, 1000.0, 1002.0, Winner::Inner),
            outer_sooner: cut(Some(1000.0), 2000.0, 1001.0, Winner::Outer),
            inner_sooner: cut(Some(2000.0), 1000.0, 1003.0, Winner::Inner),
            retry: timeouts::RetryFigures {
                failure_probability: 0.6,
                base_ms: 100.0,
                cap_ms: 2000.0,
                succeeded: true,
                attempts: vec![
                    attempt(1, Some((80.0, 100.0))),
                    attempt(2, Some((150.0, 200.0))),
                    attempt(3, None),
                ],
                total_ms: 300.0,
            },
        }
    }

    #[test]
    fn timeouts_pass_a_textbook_run() {
        let verdict = timeouts(&textbook_timeouts());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn timeouts_fail_when_the_wrong_bound_wins_or_fires_late() {
        let mut measured = textbook_timeouts();
        measured.outer_sooner.winner = Winner::Inner;
        assert!(!timeouts(&measured).pass);

        let mut measured = textbook_timeouts();
        measured.hanging.ended_at_ms = 1300.0;
        let verdict = timeouts(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.starts_with("hanging call"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn timeouts_fail_without_a_retry_or_with_a_delay_past_its_bound() {
        let mut measured = textbook_timeouts();
        measured.retry.attempts = vec![attempt(1, None)];
        assert!(!timeouts(&measured).pass);

        let mut measured = textbook_timeouts();
        measured.retry.attempts[1] = attempt(2, Some((250.0, 200.0)));
        assert!(!timeouts(&measured).pass);
    }

    fn phase(
        job_ms: f64,
        max_lag_ms: f64,
        worst_tick_delay_ms: f64,
        stalls: usize,
    ) -> blocking::PhaseFigures {
        blocking::PhaseFigures {
            job_ms,
            max_lag_ms,
            stalls,
            ticks: 30,
            delayed_ticks: stalls * 3,
            worst_tick_delay_ms,
        }
    }

    fn textbook_blocking() -> blocking::Measured {
        blocking::Measured {
            job_cpu_ms: 1000.0,
            stall_threshold_ms: 100.0,
            inline: phase(1010.0, 1005.0, 1003.0, 1),
            pool: phase(1008.0, 1.2, 1.5, 0),
        }
    }

    #[test]
    fn blocking_passes_a_textbook_run() {
        let verdict = blocking(&textbook_blocking());
        assert!(verdict.pass, "{}", verdict.reason);
    }

    #[test]
    fn blocking_fails_when_the_pool_lags_or_the_inline_job_did_not_freeze_the_loop() {
        let mut measured = textbook_blocking();
        measured.pool = phase(1008.0, 150.0, 140.0, 1);
        let verdict = blocking(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.starts_with("through the pool"),
            "{}",
            verdict.reason
        );

        let mut measured = textbook_blocking();
        measured.inline = phase(1010.0, 12.0, 10.0, 0);
        assert!(!blocking(&measured).pass);
    }

    fn hybrid_measured(sequential_ms: f64, overlapped_ms: f64) -> hybrid::Measured {
        hybrid::Measured {
            items: 8,
            workers: 2,
            latencies_ms: vec![600.0, 1400.0],
            infer_cpu_ms: 250.0,
            sequential_ms,
            overlapped_ms,
            reduction: 1.0 - overlapped_ms / sequential_ms,
            ideal_ms: 1650.0,
            efficiency: 1650.0 / overlapped_ms,
            failed_items: 0,
        }
    }

    #[test]
    fn hybrid_passes_at_forty_percent_less_and_fails_below() {
        assert!(hybrid(&hybrid_measured(10_000.0, 1700.0)).pass);
        assert!(hybrid(&hybrid_measured(10_000.0, 6000.0)).pass);
        let verdict = hybrid(&hybrid_measured(10_000.0, 6100.0));
        assert!(!verdict.pass);
        assert!(verdict.reason.contains("39% less"), "{}", verdict.reason);
    }

    #[test]
    fn hybrid_fails_when_an_item_failed() {
        let mut measured = hybrid_measured(10_000.0, 1700.0);
        measured.failed_items = 1;
        assert!(!hybrid(&measured).pass);
    }

    fn capstone_measured(concurrent_ms: f64, ideal_ms: f64) -> capstone::Measured {
        capstone::Measured {
            workers: 2,
            infer_cpu_ms: 300.0,
            sequential_ms: 4800.0,
            concurrent_ms,
            speedup: 4800.0 / concurrent_ms,
            ideal_ms,
            efficiency: (ideal_ms / concurrent_ms).min(1.0),
            ideal_speedup: 4800.0 / ideal_ms,
            sources_ok: 3,
            sources: 3,
            answered: true,
        }
    }

    #[test]
    fn capstone_passes_near_the_ideal_and_fails_when_slow_or_wasteful() {
        assert!(capstone(&capstone_measured(1850.0, 1800.0)).pass);
        let slow = capstone(&capstone_measured(2500.0, 2400.0));
        assert!(!slow.pass);
        assert!(slow.reason.contains("1.92x faster"), "{}", slow.reason);
        let wasteful = capstone(&capstone_measured(2300.0, 1800.0));
        assert!(!wasteful.pass);
        assert!(
            wasteful.reason.starts_with("efficiency 0.78"),
            "{}",
            wasteful.reason
        );
    }

    #[test]
    fn capstone_fails_when_a_source_did_not_answer() {
        let mut measured = capstone_measured(1850.0, 1800.0);
        measured.sources_ok = 2;
        assert!(!capstone(&measured).pass);
    }

    fn executor(executor: ExecutorKind, speedup: f64) -> parallelism::ExecutorFigures {
        parallelism::ExecutorFigures {
            executor,
            description: String::new(),
            total_ms: 2000.0 / speedup,
            speedup,
            mean_job_ms: 250.0,
            failed: 0,
        }
    }

    fn textbook_parallelism(cores: usize, threads_speedup: f64) -> parallelism::Measured {
        parallelism::Measured {
            cores,
            jobs: 4 * cores,
            job_cpu_ms: 250.0,
            executors: vec![
                executor(ExecutorKind::Inline, 1.0),
                executor(ExecutorKind::GlobalLock, 1.01),
                executor(ExecutorKind::Threads, threads_speedup),
                executor(ExecutorKind::Processes, threads_speedup * 0.97),
            ],
            global_lock_handoffs: 400,
            overhead: parallelism::OverheadFigures {
                round_trips: 200,
                threads_us: 12.0,
                processes_us: Some(85.0),
                explanation: String::new(),
            },
            crash: Some(parallelism::CrashFigures {
                job_failed: true,
                error: "crashed".to_owned(),
                next_job_ok: true,
                workers_replaced: 1,
            }),
            saturation: parallelism::SaturationFigures {
                workers: cores,
                queue_capacity: cores,
                submitters: 12,
                max_queued: 10,
                max_running: cores as u64,
                submitters_blocked: 8,
                max_submit_wait_ms: 300.0,
                max_queue_wait_ms: 500.0,
                try_submit_refused: true,
                sampled_at_ms: vec![0, 5],
                queued_over_time: vec![10, 9],
                running_over_time: vec![2, 2],
            },
        }
    }

    #[test]
    fn parallelism_passes_a_textbook_run_and_the_threshold_scales_with_cores() {
        let verdict = parallelism(&textbook_parallelism(2, 1.9));
        assert!(verdict.pass, "{}", verdict.reason);
        // 1.9x is a pass on 2 cores (at least 1.8x) and a fail on 4 (at least 3.6x).
        let verdict = parallelism(&textbook_parallelism(4, 1.9));
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("at least 3.60x on 4 cores"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn parallelism_fails_when_the_gil_model_speeds_up_or_a_crash_is_not_contained() {
        let mut measured = textbook_parallelism(2, 1.9);
        measured.executors[1] = executor(ExecutorKind::GlobalLock, 1.5);
        assert!(!parallelism(&measured).pass);

        let mut measured = textbook_parallelism(2, 1.9);
        if let Some(crash) = &mut measured.crash {
            crash.next_job_ok = false;
        }
        assert!(!parallelism(&measured).pass);

        let mut measured = textbook_parallelism(2, 1.9);
        measured.crash = None;
        measured.overhead.processes_us = None;
        let verdict = parallelism(&measured);
        assert!(!verdict.pass);
        assert!(
            verdict.reason.contains("not measured"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn parallelism_fails_when_the_pool_never_pushed_back() {
        let mut measured = textbook_parallelism(2, 1.9);
        measured.saturation.submitters_blocked = 0;
        measured.saturation.try_submit_refused = false;
        assert!(!parallelism(&measured).pass);
    }

    #[test]
    fn all_lists_only_the_failures() {
        let verdict = Verdict::all([Verdict::pass("a held"), Verdict::fail("b broke")]);
        assert_eq!(verdict, Verdict::fail("b broke"));
        assert_eq!(
            Verdict::all([Verdict::pass("a"), Verdict::pass("b")]),
            Verdict::pass("a; b")
        );
    }
}
