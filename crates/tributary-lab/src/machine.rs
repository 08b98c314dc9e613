//! How busy the machine was while an experiment ran: the CPU that other programs used, so that a timing claim
//! that fails on a busy machine says so, with the figure.
//!
//! [`LoadMeter::start`] reads the CPU time the whole system and this process (with its child processes, the
//! `processes` executor's workers) have used; [`LoadMeter::others`] reads them again and divides the difference,
//! the other programs' CPU time, by the wall time: the cores they kept busy on average. Linux only (`/proc`);
//! elsewhere there is no figure.

use std::time::Instant;

/// Cores other programs used on average at or above which the machine counts as busy for a timing claim.
pub const BUSY_CORES: f64 = 0.25;

/// A measurement of the machine's load, started.
#[derive(Debug, Clone)]
pub struct LoadMeter {
    started: Instant,
    sample: Sample,
}

/// CPU seconds used so far: by every program, and by this process and its children.
#[derive(Debug, Clone, Copy)]
struct Sample {
    system: f64,
    own: f64,
}

impl LoadMeter {
    /// Starts measuring; `None` where the system does not say (not Linux, no `/proc`).
    pub fn start() -> Option<Self> {
        Some(Self {
            started: Instant::now(),
            sample: sample()?,
        })
    }

    /// The cores that programs other than tributary kept busy on average since [`LoadMeter::start`].
    pub fn others(&self) -> Option<f64> {
        let now = sample()?;
        let wall = self.started.elapsed().as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let others = (now.system - self.sample.system) - (now.own - self.sample.own);
        Some((others / wall).max(0.0))
    }
}

#[cfg(target_os = "linux")]
fn sample() -> Option<Sample> {
    use procfs::process::Process;
    use procfs::{CurrentSI as _, KernelStats};
    let ticks = procfs::ticks_per_second() as f64;
    let total = KernelStats::current().ok()?.total;
    let busy = total.user
        + total.nice
        + total.system
        + total.irq.unwrap_or(0)
        + total.softirq.unwrap_or(0)
        + total.steal.unwrap_or(0);
    let myself = Process::myself().ok()?;
    let pid = myself.pid();
    let cpu = |stat: &procfs::process::Stat| stat.utime + stat.stime;
    // Our time, with that of the children that ended and were waited for (workers of the processes executor
    // stopped, crashed or replaced): theirs is ours too.
    let mut own = myself
        .stat()
        .ok()
        .map(|stat| cpu(&stat) + u64::try_from(stat.cutime + stat.cstime).unwrap_or(0))?;
    // The workers still running are our children too.
    if let Ok(processes) = procfs::process::all_processes() {
        own += processes
            .filter_map(Result::ok)
            .filter_map(|process| process.stat().ok())
            .filter(|stat| stat.ppid == pid)
            .map(|stat| cpu(&stat))
            .sum::<u64>();
    }
    Some(Sample {
        system: busy as f64 / ticks,
        own: own as f64 / ticks,
    })
}

#[cfg(not(target_os = "linux"))]
fn sample() -> Option<Sample> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_measure_is_a_number_of_cores_no_larger_than_the_machine() {
        let meter = LoadMeter::start().expect("Linux has /proc");
        // Our own work does not count as another program's.
        let started = Instant::now();
        let mut spin = 0u64;
        while started.elapsed().as_millis() < 200 {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let others = meter.others().expect("a figure");
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        assert!((0.0..=cores + 0.5).contains(&others), "{others}");
    }
}
