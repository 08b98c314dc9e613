//! The experiments by name, how they are configured, and what each one returns.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::pool::WorkerCommand;
use crate::trace::Timeline;

use super::verdict::Verdict;
use super::{blocking, capstone, fail_fast, hybrid, parallelism, sync_vs_async, timeouts};

/// One of the lab's experiments, in the order of the chapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Experiment {
    /// Three calls one after another, then at once.
    SyncVsAsync,
    /// CPU work on the event loop, then through the pool, while other tasks tick.
    Blocking,
    /// Ten fetches, one failing: a fail-fast group against settle.
    FailFastVsSettle,
    /// A hanging call cut by its timeout, nested timeouts, retries with backoff.
    Timeouts,
    /// The same CPU jobs through four executors, and the pool running out of workers.
    Parallelism,
    /// Fetch and process N items, sequentially and overlapped.
    Hybrid,
    /// The agent against its sequential baseline.
    Capstone,
}

/// How the lab runs.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Shorter durations and smaller jobs, the same claims: the whole lab in seconds.
    pub quick: bool,
    /// Cores the claims that scale with the machine are judged against, and the pool's worker count.
    pub cores: NonZeroUsize,
    /// How to start a worker process for the `processes` executor (the CLI: itself with its hidden `__worker`
    /// command). Without it, `parallelism` runs without processes and its claim about them fails as unmeasured.
    pub worker_command: Option<WorkerCommand>,
}

/// What an experiment did, what it measured, and whether the claim held.
#[derive(Debug, Clone)]
pub struct ExperimentReport {
    /// Which experiment.
    pub experiment: Experiment,
    /// What it does, in a sentence or two.
    pub description: String,
    /// The chapter's claim, with the threshold it is judged against on this machine.
    pub claim: String,
    /// The figures, as a JSON object (the experiment's `Measured` struct).
    pub measured: Value,
    /// PASS or FAIL, and why.
    pub verdict: Verdict,
    /// What ran where and when, for the Gantt chart, the SVG and the Chrome trace.
    pub timeline: Timeline,
}

/// An experiment could not run at all (as opposed to running and failing its claim).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The simulated services did not start.
    #[error("start the simulated services")]
    Services(#[source] crate::sim::SimError),
    /// The HTTP client could not be built.
    #[error("build the http client")]
    Client(#[source] crate::source::ClientBuildError),
    /// The CPU pool could not start or lost a job the experiment needed.
    #[error("run a job on the cpu pool")]
    Pool(#[source] crate::pool::PoolError),
    /// The experiment's own event loop (a dedicated thread) could not be started or did not finish.
    #[error("run the experiment's own event loop")]
    EventLoop(#[source] std::io::Error),
    /// The measured figures could not be encoded as JSON.
    #[error("encode the measurements as json")]
    Encode(#[source] serde_json::Error),
    /// The experiment needs something this build or invocation does not provide.
    #[error("set up the experiment: {0}")]
    Setup(String),
}

/// A name that is not an experiment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("find experiment `{given}`: the experiments are {}", Experiment::names().join(", "))]
pub struct UnknownExperiment {
    /// The name given.
    pub given: String,
}

impl Experiment {
    /// Every experiment, in the order the lab runs them.
    pub const ALL: [Experiment; 7] = [
        Experiment::SyncVsAsync,
        Experiment::Blocking,
        Experiment::FailFastVsSettle,
        Experiment::Timeouts,
        Experiment::Parallelism,
        Experiment::Hybrid,
        Experiment::Capstone,
    ];

    /// The name on the command line and in JSON, e.g. `fail-fast-vs-settle`.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::SyncVsAsync => "sync-vs-async",
            Experiment::Blocking => "blocking",
            Experiment::FailFastVsSettle => "fail-fast-vs-settle",
            Experiment::Timeouts => "timeouts",
            Experiment::Parallelism => "parallelism",
            Experiment::Hybrid => "hybrid",
            Experiment::Capstone => "capstone",
        }
    }

    /// A short title for headings.
    pub fn title(self) -> &'static str {
        match self {
            Experiment::SyncVsAsync => "Sequential calls against concurrent calls",
            Experiment::Blocking => "Blocking the event loop",
            Experiment::FailFastVsSettle => "Fail-fast groups against settle (TaskGroup vs gather)",
            Experiment::Timeouts => "Timeouts, nested timeouts and retries",
            Experiment::Parallelism => "CPU parallelism: inline, a GIL model, threads, processes",
            Experiment::Hybrid => "The hybrid pipeline: overlap I/O and CPU",
            Experiment::Capstone => "Capstone: the agent against its sequential baseline",
        }
    }

    /// Every name, in order, for error messages and help.
    pub fn names() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .map(|experiment| experiment.name())
            .collect()
    }

    /// Runs the experiment. Must be called inside a multi-threaded tokio runtime.
    pub async fn run(self, config: &LabConfig) -> Result<ExperimentReport, LabError> {
        match self {
            Experiment::SyncVsAsync => sync_vs_async::run(config).await,
            Experiment::Blocking => blocking::run(config).await,
            Experiment::FailFastVsSettle => fail_fast::run(config).await,
            Experiment::Timeouts => timeouts::run(config).await,
            Experiment::Parallelism => parallelism::run(config).await,
            Experiment::Hybrid => hybrid::run(config).await,
            Experiment::Capstone => capstone::run(config).await,
        }
    }
}

impl fmt::Display for Experiment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Experiment {
    type Err = UnknownExperiment;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|experiment| experiment.name() == text.trim())
            .ok_or_else(|| UnknownExperiment {
                given: text.to_owned(),
            })
    }
}

impl Serialize for Experiment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl LabConfig {
    /// Full-size experiments, judged against every core of this machine.
    pub fn new() -> Self {
        Self {
            quick: false,
            cores: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            worker_command: None,
        }
    }

    /// The same with worker processes started by `command`.
    pub fn with_worker_command(mut self, command: WorkerCommand) -> Self {
        self.worker_command = Some(command);
        self
    }

    /// The same with quick mode on or off.
    pub fn with_quick(mut self, quick: bool) -> Self {
        self.quick = quick;
        self
    }

    /// `full` normally, `quick` in quick mode.
    pub(crate) fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    /// A duration in quick mode or not.
    pub(crate) fn duration(&self, full_ms: u64, quick_ms: u64) -> Duration {
        Duration::from_millis(self.pick(full_ms, quick_ms))
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ExperimentReport {
    /// A report from an experiment's `Measured` figures.
    pub(crate) fn new(
        experiment: Experiment,
        description: impl Into<String>,
        claim: impl Into<String>,
        measured: &impl Serialize,
        verdict: Verdict,
        timeline: Timeline,
    ) -> Result<Self, LabError> {
        Ok(Self {
            experiment,
            description: description.into(),
            claim: claim.into(),
            measured: serde_json::to_value(measured).map_err(LabError::Encode)?,
            verdict,
            timeline,
        })
    }

    /// The report without its timeline, as one JSON object: `experiment`, `title`, `description`, `claim`,
    /// `measured`, `verdict` (`pass`, `reason`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "experiment": self.experiment.name(),
            "title": self.experiment.title(),
            "description": self.description,
            "claim": self.claim,
            "measured": self.measured,
            "verdict": self.verdict,
        })
    }
}

/// Milliseconds as a float with microsecond precision, for the figures.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for experiment in Experiment::ALL {
            assert_eq!(experiment.name().parse::<Experiment>(), Ok(experiment));
        }
        let error = "sync".parse::<Experiment>().unwrap_err();
        assert!(
            error.to_string().contains("sync-vs-async, blocking"),
            "{error}"
        );
    }

    #[test]
    fn quick_mode_picks_the_short_durations() {
        let quick = LabConfig::new().with_quick(true);
        assert_eq!(quick.duration(1000, 200), Duration::from_millis(200));
        assert_eq!(
            LabConfig::new().duration(1000, 200),
            Duration::from_millis(1000)
        );
    }
}
