//! [`CrashJob`]: the job that crashes a worker process on purpose, for the `parallelism` experiment's crash
//! demo. The worker processes it is sent to belong to the program that runs the lab, so that program registers
//! it with its own jobs (the binary's `__worker` command does).

use serde::{Deserialize, Serialize};
use tributary::pool::CpuJob;

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
