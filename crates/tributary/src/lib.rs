//! # tributary
//!
//! The engine behind hybrid AI workloads: wait on many slow services at once (I/O), then burn CPU on what comes
//! back (inference), and return one answer within a deadline even when some services are slow, failing or down.
//!
//! It is the Rust counterpart of Python asyncio's toolbox: fail-fast task groups (`TaskGroup`), collect-all
//! settling (`gather(return_exceptions=True)`), timeouts nested inside an overall deadline (`asyncio.timeout`),
//! and a CPU worker pool that async code awaits (`InterpreterPoolExecutor` + `run_in_executor`).
//!
//! # Layout
//! - [`group`]: structured concurrency: fail-fast groups, settle (collect-all), deadlines.
//! - [`pool`]: CPU executors, the only place that runs blocking or CPU-heavy work.
//! - [`lag`]: the loop-lag monitor, which notices when something blocks the async runtime.
//! - [`source`]: async I/O to information sources: HTTP client, retries, single-flight cache, configuration.
//! - [`sim`]: the embedded simulated services (weather, news, knowledge base) with fault injection.
//! - [`infer`]: the deterministic, CPU-bound simulated LLM.
//! - [`agent`]: plan → fetch → infer → aggregate for one question: the capstone.
//! - [`lab`]: the chapter's claims as experiments on this machine, each with figures, a verdict and a timeline.
//! - [`pipeline`]: batch: read → fetch → infer → store for millions of questions, resumable, memory bounded.
//! - [`trace`]: the timeline recorder and its exports (terminal Gantt chart, Chrome Trace Event JSON).

pub mod agent;
pub mod group;
pub mod infer;
pub mod lab;
pub mod lag;
mod panics;
pub mod pipeline;
pub mod pool;
pub mod sim;
pub mod source;
pub mod trace;
