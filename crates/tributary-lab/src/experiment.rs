//! The experiments by name, how they are configured, and what each one returns.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tributary::pool::WorkerCommand;
use tributary::trace::Timeline;
use tributary_agent::infer::Models;

use super::verdict::Verdict;

/// One experiment of the lab: its name, its title and how to run it. The registry is [`crate::EXPERIMENTS`];
/// each experiment's file defines its own `EXPERIMENT`.
pub struct Experiment {
    /// The name on the command line and in JSON, e.g. `fail-fast-vs-settle`.
    pub name: &'static str,
    /// A short title for headings.
    pub title: &'static str,
    /// Runs the experiment. Must be called inside a multi-threaded tokio runtime.
    pub(crate) run: for<'a> fn(&'a LabConfig) -> ExperimentRun<'a>,
}

/// A running experiment.
pub(crate) type ExperimentRun<'a> =
    Pin<Box<dyn Future<Output = Result<ExperimentReport, LabError>> + Send + 'a>>;

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
    /// The models whose inference `parallelism` and `hybrid` run instead of the calibrated kernel (the simulated
    /// model by default).
    pub models: Models,
}

/// What an experiment did, what it measured, and whether the claim held.
#[derive(Debug, Clone)]
pub struct ExperimentReport {
    /// Which experiment.
    pub experiment: &'static Experiment,
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
    Services(#[source] tributary_sim::SimError),
    /// The HTTP client could not be built.
    #[error("build the http client")]
    Client(#[source] tributary::source::ClientBuildError),
    /// The CPU pool could not start or lost a job the experiment needed.
    #[error("run a job on the cpu pool")]
    Pool(#[source] tributary::pool::PoolError),
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
    /// Runs the experiment. Must be called inside a multi-threaded tokio runtime.
    pub async fn run(&'static self, config: &LabConfig) -> Result<ExperimentReport, LabError> {
        (self.run)(config).await
    }

    /// The experiment called `name`, from the registry.
    pub fn named(name: &str) -> Result<&'static Experiment, UnknownExperiment> {
        crate::EXPERIMENTS
            .iter()
            .find(|experiment| experiment.name == name.trim())
            .ok_or_else(|| UnknownExperiment {
                given: name.to_owned(),
            })
    }

    /// Every name, in the registry's order, for error messages and help.
    pub fn names() -> Vec<&'static str> {
        crate::EXPERIMENTS
            .iter()
            .map(|experiment| experiment.name)
            .collect()
    }
}

impl fmt::Debug for Experiment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name)
    }
}

impl fmt::Display for Experiment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name)
    }
}

impl PartialEq for Experiment {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Experiment {}

impl Serialize for Experiment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl LabConfig {
    /// Full-size experiments, judged against every core of this machine.
    pub fn new() -> Self {
        Self {
            quick: false,
            cores: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            worker_command: None,
            models: Models::simulated(),
        }
    }

    /// The same measuring real inference by `models` where an experiment can.
    pub fn with_models(mut self, models: Models) -> Self {
        self.models = models;
        self
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
        experiment: &'static Experiment,
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
            "experiment": self.experiment.name,
            "title": self.experiment.title,
            "description": self.description,
            "claim": self.claim,
            "measured": self.measured,
            "verdict": self.verdict,
        })
    }
}

/// Runs the future `make` returns on a single-threaded event loop of its own, on a blocking thread (a
/// `group::blocking` call), and waits for it: the experiments that block their loop on purpose do it there, never on
/// the lab's runtime. `make` runs on that thread before the loop starts, so set-up it does is not on the loop.
pub(crate) async fn on_own_event_loop<T, Make, Fut>(make: Make) -> Result<T, LabError>
where
    Make: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, LabError>>,
    T: Send + 'static,
{
    tributary::group::blocking("the one-thread event loop", move || {
        let event_loop = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LabError::EventLoop)?;
        event_loop.block_on(make())
    })
    .await
    .map_err(|error| LabError::EventLoop(std::io::Error::other(error.to_string())))?
}

/// Milliseconds as a float with microsecond precision, for the figures.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_and_unknown_names_list_the_valid_ones() {
        for experiment in crate::EXPERIMENTS {
            assert_eq!(Experiment::named(experiment.name), Ok(experiment));
            assert!(!experiment.title.is_empty());
        }
        let error = Experiment::named("sync").unwrap_err();
        assert!(
            error.to_string().contains(&Experiment::names().join(", ")),
            "{error}"
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names = Experiment::names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), crate::EXPERIMENTS.len());
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
