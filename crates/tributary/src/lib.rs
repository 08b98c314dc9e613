//! # tributary
//!
//! The engine behind hybrid AI workloads: wait on many slow services at once (I/O), then burn CPU on what comes
//! back (inference, parsing, ranking), and return one answer within a deadline even when some services are slow,
//! failing or down.
//!
//! It is the Rust counterpart of Python asyncio's toolbox: fail-fast task groups (`TaskGroup`), collect-all
//! settling (`gather(return_exceptions=True)`), timeouts nested inside an overall deadline (`asyncio.timeout`),
//! and a CPU worker pool that async code awaits (`InterpreterPoolExecutor` + `run_in_executor`).
//!
//! # Layout
//! - [`group`]: structured concurrency: fail-fast groups, supervisors, settle (collect-all), deadlines.
//! - [`pool`]: CPU executors, the only place that runs blocking or CPU-heavy work.
//! - [`lag`]: the loop-lag monitor, which notices when something blocks the async runtime.
//! - [`name`]: which characters a name people read (a source's) may not hold: controls, bidi, invisible.
//! - [`trace`]: the timeline recorder and its exports (terminal Gantt chart, SVG, Chrome Trace Event JSON).
//! - `source` (feature `http`, on by default): the resilient HTTP source client: per-attempt timeouts inside a
//!   deadline, retries with full-jitter backoff, a single-flight cache, a streaming size limit.
//!
//! With `default-features = false` the crate is groups, deadlines, the executors, the lag monitor and the
//! timeline on tokio alone: no HTTP stack.
//!
//! # Examples
//!
//! Each is a program in `examples/` (`cargo run -p tributary --example NAME`), tested as written.
//!
//! ## Fan out with a deadline, keep the partial results (`fan_out`)
//!
#![doc = "```rust"]
#![doc = include_str!("../examples/fan_out.rs")]
#![doc = "```"]
//!
//! ## Await CPU work from async code (`cpu_from_async`)
//!
#![doc = "```rust"]
#![doc = include_str!("../examples/cpu_from_async.rs")]
#![doc = "```"]
//!
//! ## A fail-fast group (`fail_fast`)
//!
#![doc = "```rust"]
#![doc = include_str!("../examples/fail_fast.rs")]
#![doc = "```"]
//!
//! ## A custom source with retries and a cache (`custom_source`, feature `http`)
//!
#![cfg_attr(feature = "http", doc = "```rust")]
#![cfg_attr(feature = "http", doc = include_str!("../examples/custom_source.rs"))]
#![cfg_attr(feature = "http", doc = "```")]

pub mod group;
pub mod lag;
pub mod name;
mod panics;
pub mod pool;
#[cfg(feature = "http")]
pub mod source;
pub mod trace;
