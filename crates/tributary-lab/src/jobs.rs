//! [`CrashJob`]: the job that crashes a worker process on purpose, for the `parallelism` experiment's crash
//! demo, and [`worker_jobs`], every job a worker process of the lab runs.

use serde::{Deserialize, Serialize};
use tributary::pool::{CpuJob, WorkerJobs};

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

/// The jobs a worker process serves for `tributary ask`, `batch` and `lab`: the agent's ([`InferenceJob`],
/// [`BurnJob`]) and [`CrashJob`].
///
/// [`InferenceJob`]: tributary_agent::infer::InferenceJob
/// [`BurnJob`]: tributary_agent::infer::BurnJob
pub fn worker_jobs() -> WorkerJobs {
    tributary_agent::infer::worker_jobs().with::<CrashJob>()
}
