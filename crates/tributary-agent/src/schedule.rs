//! The ideal schedule: the yardstick that efficiency is measured against.
//!
//! Given what a run measured (when each response arrived, how much CPU its inference took), the ideal is the
//! best schedule on the machine's cores under two rules: an inference cannot start before its response arrives,
//! and it cannot be split across cores. Taking jobs in arrival order and placing each on the earliest free core
//! (list scheduling) is optimal here when inferences cost about the same, and never worse than the real run, which
//! obeys the same rules. Efficiency is `ideal / measured`: 1.0 means no time was lost to orchestration.

use std::time::Duration;

/// One unit of work as a run measured it: the response arrived at `arrival` (since the start of the run) and its
/// inference took `cpu`. A source with no response (skipped, failed) has `cpu == 0` and only delays by its arrival
/// when that arrival is the last thing the answer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasuredJob {
    pub arrival: Duration,
    pub cpu: Duration,
}

/// The makespan of the best schedule of `jobs` on `cores` cores (at least one).
pub fn ideal_makespan(jobs: &[MeasuredJob], cores: usize) -> Duration {
    let mut ordered: Vec<MeasuredJob> = jobs.to_vec();
    ordered.sort_by_key(|job| (job.arrival, std::cmp::Reverse(job.cpu)));
    let mut core_free_at = vec![Duration::ZERO; cores.max(1)];
    let mut makespan = Duration::ZERO;
    for job in ordered {
        if job.cpu.is_zero() {
            makespan = makespan.max(job.arrival);
            continue;
        }
        let (index, free_at) = core_free_at
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, free_at)| free_at)
            .expect("there is at least one core");
        let finish = free_at.max(job.arrival) + job.cpu;
        core_free_at[index] = finish;
        makespan = makespan.max(finish);
    }
    makespan
}

/// The time the sequential baseline ideally takes: every fetch, then its inference, one after another.
pub fn sequential_makespan(fetches: &[Duration], inferences: &[Duration]) -> Duration {
    fetches.iter().chain(inferences).sum()
}

/// `ideal / measured`, capped at 1.0 (a measured run can only tie the ideal; rounding may make it look better).
pub fn efficiency(ideal: Duration, measured: Duration) -> f64 {
    if measured.is_zero() {
        return 1.0;
    }
    (ideal.as_secs_f64() / measured.as_secs_f64()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn job(arrival: u64, cpu: u64) -> MeasuredJob {
        MeasuredJob {
            arrival: ms(arrival),
            cpu: ms(cpu),
        }
    }

    #[test]
    fn staggered_arrivals_never_wait_for_a_core() {
        let jobs = [job(600, 300), job(1000, 300), job(1400, 300)];
        assert_eq!(ideal_makespan(&jobs, 1), ms(1700));
    }

    #[test]
    fn with_fewer_cores_than_sources_the_last_inference_waits() {
        let jobs = [job(1000, 300), job(1000, 300), job(1000, 300)];
        assert_eq!(ideal_makespan(&jobs, 2), ms(1600));
        assert_eq!(ideal_makespan(&jobs, 3), ms(1300));
    }

    #[test]
    fn an_inference_cannot_start_before_its_response_arrives() {
        let jobs = [job(0, 100), job(900, 100)];
        assert_eq!(ideal_makespan(&jobs, 4), ms(1000));
    }

    #[test]
    fn a_source_without_inference_still_counts_its_arrival() {
        let jobs = [job(200, 300), job(2000, 0)];
        assert_eq!(ideal_makespan(&jobs, 2), ms(2000));
    }

    #[test]
    fn zero_cores_is_treated_as_one() {
        assert_eq!(ideal_makespan(&[job(0, 10), job(0, 10)], 0), ms(20));
    }

    #[test]
    fn efficiency_is_capped_at_one_and_falls_with_waste() {
        assert_eq!(efficiency(ms(100), ms(50)), 1.0);
        assert!((efficiency(ms(90), ms(100)) - 0.9).abs() < 1e-9);
        assert_eq!(sequential_makespan(&[ms(1), ms(2)], &[ms(3)]), ms(6));
    }
}
