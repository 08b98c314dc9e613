//! # tributary-python
//!
//! The extension module `tributary._tributary` under the Python package `tributary` (`python/tributary/`): the
//! agent, its event stream and the batch, each run on the engine's own tokio runtime and awaited from asyncio
//! through `pyo3-async-runtimes`. The typed API Python users see (`Agent`, `Answer`, the exceptions) is the
//! package's Python; this module offers the few calls it is made of, and hands reports over as JSON, the very
//! JSON `ask --json` prints.
//!
//! # Layout
//! - `agent.rs`: [`NativeAgent`]: the agent started as the CLI starts it (the simulated services by default, a
//!   sources file or sources given as Python objects, the models, the executor), and what it runs.
//! - `run.rs`: [`NativeRun`]: one ask or comparison running on the runtime, its result, its events, its
//!   cancellation.
//! - `batch.rs`: [`NativeBatch`]: a batch into a SQLite database, its progress and its summary.
//!
//! # Invariants
//! - The GIL is never held while Rust waits or computes: every wait is a future awaited by asyncio (the GIL is
//!   taken only to hand a result over), starting and stopping an agent release it, and inference runs on the
//!   engine's CPU pool, whose threads never touch Python.
//! - A run is cancelled, never abandoned: dropping or cancelling a [`NativeRun`] or [`NativeBatch`] cancels its
//!   work, which the engine joins, and the Python side awaits that join before it re-raises the cancellation.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tributary_agent::limits::MAX_DURATION;

mod agent;
mod batch;
mod run;

pub use agent::NativeAgent;
pub use batch::NativeBatch;
pub use run::NativeRun;

// The package's exceptions (`python/tributary/errors.py`), raised from here with the CLI's messages.
pyo3::import_exception!(tributary.errors, ConfigError);
pyo3::import_exception!(tributary.errors, QuestionError);
pyo3::import_exception!(tributary.errors, BatchError);
pyo3::import_exception!(tributary.errors, TributaryError);

/// The module `tributary._tributary`.
#[pymodule]
fn _tributary(module: &Bound<'_, PyModule>) -> PyResult<()> {
    // asyncio's futures resolve from the engine's runtime: the one every agent of this process runs on.
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
    module.add_class::<NativeAgent>()?;
    module.add_class::<NativeRun>()?;
    module.add_class::<NativeBatch>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// The process's tokio runtime, started on first use: the I/O of every agent, and the tasks that drive its runs.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tributary")
            .build()
            // Without a runtime there is nothing this module can do; the OS refused threads or an epoll fd.
            .expect("failed to start tributary's tokio runtime")
    })
}

/// A run's or a batch's end: its JSON, or why there is none. `None` while it goes on.
type Finished = Option<Result<String, String>>;

/// An awaitable of what `finished` will hold: the JSON, or the error `raise` makes of why there is none (`what`
/// names the run or the batch). Any number
/// of awaits may read it; cancelling one cancels nothing but that await.
fn await_finished<'py>(
    py: Python<'py>,
    mut finished: watch::Receiver<Finished>,
    what: &'static str,
    raise: fn(String) -> PyErr,
) -> PyResult<Bound<'py, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let result = finished
            .wait_for(Option::is_some)
            .await
            .map_err(|_| raise(format!("{what} ended without a result (it panicked)")))?
            .clone();
        match result {
            Some(Ok(json)) => Ok(json),
            Some(Err(error)) => Err(raise(error)),
            None => Err(raise(format!("{what} ended without a result"))),
        }
    })
}

/// Seconds given from Python for `field`, or `default` when not given.
fn seconds_or(field: &str, value: Option<f64>, default: Duration) -> PyResult<Duration> {
    value.map_or(Ok(default), |value| seconds(field, value))
}

/// Seconds given from Python as a duration: more than 0, at most a day.
fn seconds(field: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 && value <= MAX_DURATION.as_secs_f64() {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::new_err(format!(
            "{field}: must be more than 0 and at most {} seconds (a day), not {value}",
            MAX_DURATION.as_secs()
        )))
    }
}
