//! [`NativeBatch`]: a batch into a SQLite database, its live counters and its summary.

use std::convert::Infallible;
use std::error::Error;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use tokio::sync::watch;
use tributary::group::SupervisorHandle;
use tributary::source::SourceClient;
use tributary_agent::Agent;
use tributary_batch::{
    BatchInput, BatchSettings, BatchStats, InputFormat, Shutdown, Store, batch_client_options,
    run_batch,
};

use crate::{BatchError, ConfigError, Finished, TributaryError, await_finished, runtime};

/// A batch started on the engine's runtime (`tributary.batch` iterates its progress). Dropping it abandons the
/// questions in flight (a rerun answers them); what was answered is committed.
#[pyclass(module = "tributary._tributary", frozen)]
#[derive(Debug)]
pub struct NativeBatch {
    stats: Arc<BatchStats>,
    shutdown: Shutdown,
    /// The summary as JSON, or why the batch stopped.
    finished: watch::Receiver<Finished>,
}

impl NativeBatch {
    /// Opens `input` and the database `db`, then starts the batch as a child of `runs`.
    pub(crate) fn start(
        py: Python<'_>,
        agent: Agent,
        runs: &SupervisorHandle,
        input: PathBuf,
        db: PathBuf,
        format: Option<&str>,
    ) -> PyResult<Self> {
        let format = match format {
            None => InputFormat::from_file_name(&input.to_string_lossy()),
            Some(name) => name
                .parse()
                .map_err(|error| ConfigError::new_err(format!("format: {error}")))?,
        };
        let (input, store) = py
            .detach(|| {
                let opened = BatchInput::open(&input, format)
                    .map_err(|error| format!("failed to open {}: {error}", input.display()))?;
                let store = Store::open(&db)
                    .map_err(|error| format!("{}: {}", db.display(), chain(&error)))?;
                Ok::<_, String>((opened, store))
            })
            .map_err(BatchError::new_err)?;
        let client = SourceClient::new(batch_client_options()).map_err(|error| {
            TributaryError::new_err(format!("failed to build the HTTP client: {error}"))
        })?;
        let agent = agent.with_client(client);
        let settings = BatchSettings::for_workers(
            NonZeroUsize::new(agent.workers()).unwrap_or(NonZeroUsize::MIN),
        );
        let stats = Arc::new(BatchStats::new());
        let shutdown = Shutdown::new();
        let (finish, finished) = watch::channel(None);
        let work = {
            let stats = Arc::clone(&stats);
            let shutdown = shutdown.clone();
            async move {
                let result = run_batch(&agent, &settings, input, store, stats, shutdown)
                    .await
                    .map(|summary| {
                        serde_json::json!({
                            "stats": summary.stats,
                            "elapsed_ms": summary.elapsed.as_secs_f64() * 1000.0,
                            "throughput": summary.throughput(),
                            "in_store": summary.in_store,
                        })
                        .to_string()
                    })
                    .map_err(|error| chain(&error));
                finish.send_replace(Some(result));
                Ok::<(), Infallible>(())
            }
        };
        let _enter = runtime().enter();
        let child = runs
            .spawn("python batch", work)
            .map_err(|_| TributaryError::new_err("the agent is closing"))?;
        // The child goes on without its handle: its result comes through `finish`, and the agent's supervisor
        // cancels and joins it when the agent closes.
        drop(child);
        Ok(Self {
            stats,
            shutdown,
            finished,
        })
    }
}

#[pymethods]
impl NativeBatch {
    /// The live counters as JSON (the CLI's `batch --json` `stats`).
    fn stats(&self) -> String {
        serde_json::to_string(&self.stats.snapshot()).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Stops reading the input: what was read is answered and stored.
    fn stop(&self) {
        self.shutdown.stop_reading();
    }

    /// Stops reading and drops every question not yet answered (not stored; a rerun answers it).
    fn abandon(&self) {
        self.shutdown.abandon_in_flight();
    }

    /// Whether the batch has ended.
    fn done(&self) -> bool {
        self.finished.borrow().is_some()
    }

    /// An awaitable of the summary's JSON once the batch has ended and committed; raises `BatchError` when it
    /// stopped early (the input could not be read, the database could not be written).
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        await_finished(py, self.finished.clone(), "the batch", |why| {
            BatchError::new_err(why)
        })
    }
}

impl Drop for NativeBatch {
    /// Nobody can read the batch any more: it stops, keeping what it committed.
    fn drop(&mut self) {
        self.shutdown.abandon_in_flight();
    }
}

/// An error and its causes, as the CLI prints them: `what: why: why`.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
