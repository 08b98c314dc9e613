//! The CPU jobs of the simulated LLM, as [`CpuJob`]s any of the engine's executors runs (worker processes
//! included): [`InferenceJob`] and the pure kernel [`BurnJob`]. [`worker_jobs`] is what a worker process of a
//! program that runs them must serve.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tributary::pool::{CpuJob, WorkerJobs};

use super::model::{Document, InferError, Inference, infer};
use super::models::Models;
use super::work::{Decoder, Embeddings, InferenceCost, UNITS_BETWEEN_STOP_CHECKS, calibration};

/// One inference: the inputs of [`infer`], with the budget already in work units, so that a worker process
/// spends exactly the work a thread would and never calibrates. Build it with [`InferenceJob::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceJob {
    /// The question the inference is asked to answer.
    pub question: String,
    /// The source's answer, as text.
    pub document: Document,
    /// Work units to spend (the simulated model's; real models spend what they need).
    pub units: u64,
    /// The models that read the document ([`Models::simulated`] by default).
    #[serde(default, skip_serializing_if = "Models::is_simulated")]
    pub models: Models,
    /// When a generation still running stops and returns what it has, marked as cut short: shortly before the
    /// caller's deadline, so the text arrives in time. Wall-clock time, so a worker process on the same machine
    /// reads it as the caller meant it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wind_up_at: Option<SystemTime>,
}

/// One answer across the sources' summaries, written by the chat model of `models` after the fan-out
/// (`ask --synthesize`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthesisJob {
    /// The question.
    pub question: String,
    /// Each source's name and summary, in configuration order.
    pub summaries: Vec<(String, String)>,
    /// The models; only the chat model (a local `.gguf`) writes.
    pub models: Models,
    /// When the writing stops and keeps what it has, marked as cut short (as [`InferenceJob::wind_up_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wind_up_at: Option<SystemTime>,
}

/// What a [`SynthesisJob`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synthesized {
    /// The text, trimmed; ends `… (cut short)` when stopped by the wind-up or the token limit. Empty when not a
    /// token came in time.
    pub text: String,
    /// Whether the wind-up or the token limit stopped it.
    pub cut_short: bool,
}

impl CpuJob for SynthesisJob {
    const NAME: &'static str = "synthesize";
    type Output = Result<Synthesized, InferError>;

    fn run(self, should_stop: &dyn Fn() -> bool) -> Self::Output {
        self.run_with_progress(should_stop, &|_| {})
    }

    /// The chat model reports each piece of text as it writes it.
    fn run_with_progress(
        self,
        should_stop: &dyn Fn() -> bool,
        progress: &dyn Fn(&str),
    ) -> Self::Output {
        #[cfg(feature = "models")]
        {
            super::real::synthesize_with(
                &self.models,
                &self.question,
                &self.summaries,
                self.wind_up_at,
                should_stop,
                &mut |text| progress(text),
            )
        }
        #[cfg(not(feature = "models"))]
        {
            let _ = (should_stop, progress);
            Err(not_built(self.models.generator))
        }
    }
}

/// A job that names a model file in a build without the `models` feature: the error names the file.
#[cfg(not(feature = "models"))]
fn not_built(path: Option<std::path::PathBuf>) -> InferError {
    InferError::Model {
        detail: super::models::ModelsError::NotBuilt {
            path: path.unwrap_or_default(),
        }
        .to_string(),
    }
}

/// A pure CPU benchmark job: `units` work units of the inference kernel, nothing else.
///
/// One unit costs the same as one unit of inference, so [`calibration`] converts between units and CPU time for
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurnJob {
    /// Work units to spend.
    pub units: u64,
}

/// What a [`BurnJob`] computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurnReport {
    /// Work units spent.
    pub units: u64,
    /// Checksum of every score computed, in hex: identical for the same units on every machine and executor.
    pub checksum: String,
}

impl InferenceJob {
    /// A job for `question` and `document` with `units` work units (see [`work_units_off_runtime`]).
    pub fn new(question: impl Into<String>, document: Document, units: u64) -> Self {
        Self {
            question: question.into(),
            document,
            units,
            models: Models::default(),
            wind_up_at: None,
        }
    }

    /// The same job read by `models`, a generation winding up at `wind_up_at`.
    pub fn with_models(mut self, models: Models, wind_up_at: Option<SystemTime>) -> Self {
        self.models = models;
        self.wind_up_at = wind_up_at;
        self
    }
}

impl CpuJob for InferenceJob {
    const NAME: &'static str = "infer";
    type Output = Result<Inference, InferError>;

    fn run(self, should_stop: &dyn Fn() -> bool) -> Self::Output {
        self.run_with_progress(should_stop, &|_| {})
    }

    /// A chat model reports each piece of text as it writes it; the simulated model and the embedder report
    /// nothing.
    fn run_with_progress(
        self,
        should_stop: &dyn Fn() -> bool,
        progress: &dyn Fn(&str),
    ) -> Self::Output {
        if self.models.is_simulated() {
            return infer(
                &self.question,
                &self.document,
                InferenceCost::units(self.units),
                should_stop,
            );
        }
        #[cfg(feature = "models")]
        {
            super::real::infer_with(
                &self.models,
                &self.question,
                &self.document,
                self.wind_up_at,
                should_stop,
                &mut |text| progress(text),
            )
        }
        #[cfg(not(feature = "models"))]
        {
            let _ = progress;
            Err(not_built(self.models.embedder.or(self.models.generator)))
        }
    }
}

impl CpuJob for BurnJob {
    const NAME: &'static str = "burn";
    type Output = Result<BurnReport, InferError>;

    fn run(self, should_stop: &dyn Fn() -> bool) -> Self::Output {
        burn(self, should_stop)
    }
}

/// The jobs of this crate, for a worker process to serve: `infer`, `synthesize` and `burn`.
pub fn worker_jobs() -> WorkerJobs {
    WorkerJobs::new()
        .with::<InferenceJob>()
        .with::<SynthesisJob>()
        .with::<BurnJob>()
}

/// The work units `cost` buys, from async code: a CPU-time budget needs this machine's calibration, which
/// takes about 40 ms of CPU the first time, so the first call computes it on tokio's blocking threads instead
/// of the caller's runtime thread. Later calls, and unit budgets, return at once.
pub async fn work_units_off_runtime(cost: InferenceCost) -> u64 {
    match cost {
        InferenceCost::Units(units) => units,
        InferenceCost::Cpu(duration) if is_calibrated() => calibration().units_for(duration),
        InferenceCost::Cpu(_) => {
            match tributary::group::blocking("calibrate inference", move || cost.work_units()).await
            {
                Ok(units) => units,
                // The calibration's own panic, passed on as before (it never panics on any input).
                Err(panicked) => panic!("{panicked}"),
            }
        }
    }
}

/// Whether [`calibration`] has run in this process.
fn is_calibrated() -> bool {
    super::work::calibration_if_done().is_some()
}

/// Spends `job.units` work units of the inference kernel, checking `should_stop` between slices.
///
/// Synchronous and CPU-bound, like [`infer`]: run it through an executor. Deterministic: the same units give
/// the same checksum everywhere.
pub fn burn(job: BurnJob, should_stop: &dyn Fn() -> bool) -> Result<BurnReport, InferError> {
    let embeddings = burn_embeddings();
    let mut decoder = Decoder::new(BURN_SEED);
    let mut units_done = 0;
    while units_done < job.units {
        if should_stop() {
            return Err(InferError::Cancelled {
                units_done,
                units_budget: job.units,
            });
        }
        let slice = (job.units - units_done).min(UNITS_BETWEEN_STOP_CHECKS);
        decoder.run(embeddings, slice);
        units_done += slice;
    }
    Ok(BurnReport {
        units: units_done,
        checksum: format!("{:016x}", decoder.checksum()),
    })
}

/// A burn job of about `duration` of CPU on this machine (runs the calibration the first time).
pub fn burn_for(duration: Duration) -> BurnJob {
    BurnJob {
        units: calibration().units_for(duration),
    }
}

/// Vocabulary size of the burn kernel: the size the calibration uses, so a burn unit costs what it measured.
const BURN_VOCABULARY: usize = 256;
const BURN_SEED: u64 = 0xb0_0057;

/// The burn kernel's vocabulary, built once per process so that a tiny burn job measures executor overhead and
/// not the set-up.
fn burn_embeddings() -> &'static Embeddings {
    static EMBEDDINGS: OnceLock<Embeddings> = OnceLock::new();
    EMBEDDINGS.get_or_init(|| {
        let vocabulary: Vec<String> = (0..BURN_VOCABULARY)
            .map(|index| format!("burn-{index}"))
            .collect();
        Embeddings::new(vocabulary.iter().map(String::as_str))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inference_job_runs_infer_with_its_units() {
        let document = Document::new(
            "news",
            "Trains run late today. The new line opens next week.",
        );
        let job = InferenceJob::new("What about trains?", document.clone(), 30_000);
        let expected = infer(
            "What about trains?",
            &document,
            InferenceCost::units(30_000),
            &|| false,
        );
        assert_eq!(job.run(&|| false), expected);
    }

    #[test]
    fn burn_is_deterministic_and_stoppable() {
        let job = BurnJob { units: 20_000 };
        let first = burn(job, &|| false).expect("burns");
        assert_eq!(burn(job, &|| false).expect("burns"), first);
        assert_ne!(
            burn(BurnJob { units: 20_001 }, &|| false).expect("burns"),
            first
        );
        assert!(matches!(
            burn(job, &|| true),
            Err(InferError::Cancelled { units_done: 0, .. })
        ));
    }

    #[test]
    fn outputs_survive_the_wire() {
        let cancelled: Result<BurnReport, InferError> = Err(InferError::Cancelled {
            units_done: 3,
            units_budget: 9,
        });
        let json = serde_json::to_value(&cancelled).expect("encodes");
        assert_eq!(
            serde_json::from_value::<Result<BurnReport, InferError>>(json).expect("decodes"),
            cancelled
        );
    }

    #[test]
    fn the_worker_serves_every_job() {
        assert_eq!(
            worker_jobs().names().collect::<Vec<_>>(),
            ["burn", "infer", "synthesize"]
        );
    }

    #[tokio::test]
    async fn unit_budgets_need_no_calibration() {
        assert_eq!(work_units_off_runtime(InferenceCost::units(7)).await, 7);
    }
}
