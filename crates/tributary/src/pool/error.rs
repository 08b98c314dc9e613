//! The errors a [`CpuPool`](super::CpuPool) returns to its callers.

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `try_submit` found every queue slot taken; the job was not queued.
    #[error("queue cpu job: the pool is overloaded (all {queue_capacity} queue slots are taken)")]
    Overloaded {
        /// How many jobs the queue holds when full.
        queue_capacity: usize,
    },
    /// The job panicked; the worker thread caught the panic and keeps serving other jobs.
    #[error("run cpu job: it panicked: {0}")]
    Panicked(String),
    /// The pool was shut down before the job could be queued or run.
    #[error("use cpu pool: it is shut down")]
    ShutDown,
    /// The operating system refused to start a worker thread.
    #[error("spawn cpu pool worker thread")]
    Spawn(#[source] std::io::Error),
}
