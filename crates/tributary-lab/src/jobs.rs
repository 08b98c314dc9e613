//! [`CrashJob`]: the job that crashes a worker process on purpose, for the `parallelism` experiment's crash
//! demo. The worker processes it is sent to belong to the program that runs the lab, so that program registers
//! it with its own jobs (the binary's `__worker` command does). And the real-model work of `lab --model`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tributary::pool::CpuJob;
use tributary_agent::infer::{Document, InferenceJob, Models};

/// Aborts the process that runs it, as a native crash (a segfault, the OOM killer) would: no unwinding, no
/// destructors.
///
/// Send it only to a worker process ([`ProcessPool::run`](tributary::pool::ProcessPool::run)): on any other
/// executor it aborts *this* program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashJob;

impl CpuJob for CrashJob {
    const NAME: &'static str = "crash";
    type Output = ();

    fn run(self, _should_stop: &dyn Fn() -> bool) {
        std::process::abort()
    }
}

/// One real inference, the same every time: an answer about Lisbon's weather read for an umbrella question by
/// `models` (a chat model writes a sentence or two from the relevant ones).
pub(crate) fn real_inference(models: &Models) -> InferenceJob {
    let document = Document::new(
        "weather",
        "Light rain is falling in Lisbon right now. The temperature is 14 degrees with a wind from the west. \
         Showers are expected to continue through the evening, clearing overnight. Tomorrow will be dry and \
         sunny with a high of 19 degrees.",
    );
    InferenceJob::new("Should I take an umbrella in Lisbon?", document, 0)
        .with_models(models.clone(), None)
}

/// What reads each answer, in words: the simulated model's CPU time, or the real models' names.
pub(crate) fn reader(models: &Models, simulated_cpu: Duration) -> String {
    if models.is_simulated() {
        return format!("a {} ms inference", simulated_cpu.as_millis());
    }
    let name = |path: &std::path::PathBuf| {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
    };
    let names: Vec<String> = models
        .embedder
        .iter()
        .chain(&models.generator)
        .map(name)
        .collect();
    format!("real models ({})", names.join(" and "))
}
