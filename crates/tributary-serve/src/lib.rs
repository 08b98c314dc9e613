//! # tributary-serve
//!
//! The agent as an HTTP service (`tributary serve`), on the same step as `ask`: a library with a thin command,
//! as mini-redis's `server::run`. [`run`] serves a bound listener until a shutdown future completes;
//! [`router`] is the same service as an axum [`Router`](axum::Router), for tests that drive it in-process.
//!
//! - `GET /`: the page (`assets/page.html`, one self-contained file): a question, fault toggles, the run's
//!   Gantt chart filling live, the sources' statuses, the answer, a comparison with the sequential baseline, the
//!   run as a Chrome trace.
//! - `POST /v1/ask` answers one question with the JSON `ask --json` prints (200 with an answer, 502 without);
//!   `GET /v1/ask/stream` runs one and streams it as Server-Sent Events (`runs.rs`); `GET /v1/runs/{id}/events`
//!   and `/v1/runs/{id}/trace` read a kept run again; `POST /v1/compare` runs the baseline and the agent.
//! - `GET /healthz`, `/readyz`, `/metrics` (Prometheus text), `/openapi.json` (`api.rs`), `/v1/sources`.
//! - `/mcp`: the same agent over the Model Context Protocol (streamable HTTP): the tools `ask` and `compare`
//!   (`tributary_mcp`), admitted like `/v1/ask`.
//!
//! At most [`ServeConfig::max_in_flight`] runs at once: over that a request gets 503 with `Retry-After` at once,
//! rather than a queue that makes everyone miss the deadline. Every run is a child of the server's supervisor,
//! cancelled when its client leaves and joined before [`run`] returns. The shutdown future stops accepting, lets
//! the runs in flight finish (each is bounded by its deadline), and [`run`] returns. The connections are served
//! with the simulator's limits (a connection cap that sheds the idlest, a head size, each phase of a connection
//! timed: `tributary_sim::serve`).
//!
//! # Layout
//! - `routes.rs`: [`router`], the handlers, [`AppState`].
//! - `admission.rs`: the adaptive limit on runs in flight (refused at once, never queued).
//! - `runs.rs`: the kept runs and the task that drives each one into its ordered event list; [`run_streamed`],
//!   one run's events as they happen, for any driver that streams them (the Python package's `agent.stream`).
//! - `request.rs`: a request body or query checked into a question and the agent's settings.
//! - `api.rs`: the OpenAPI document and the server's own response types.
//! - `metrics.rs`: `/metrics`, on prometheus-client.
//! - `mcp.rs`: `/mcp`, the agent over MCP's streamable HTTP transport behind the same admission.

mod admission;
mod api;
mod mcp;
mod metrics;
mod request;
mod routes;
mod runs;

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::net::TcpListener;
use tributary_agent::Agent;
use tributary_sim::serve::{Limits, serve_connections};

pub use routes::{AppState, MAX_BODY_BYTES, router};
pub use runs::{outcome, run_streamed};

/// The most asks a server answers at once.
pub const MAX_IN_FLIGHT: usize = 1024;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Asks answered at once (the adaptive limit's ceiling); over that, 503.
    pub max_in_flight: NonZeroUsize,
    /// The connection cap, the request head's size, and each phase's time limit.
    pub limits: Limits,
}

/// Serves the agent on `listener` until `shutdown` completes, then stops accepting, lets the runs in flight
/// finish (each within its deadline) and returns once every run's task has ended.
pub async fn run(
    listener: TcpListener,
    agent: Agent,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let state = match listener.local_addr() {
        Ok(address) => AppState::listening_on(agent, config.max_in_flight, address),
        Err(_) => AppState::new(agent, config.max_in_flight),
    };
    let serving = serve_connections(
        listener,
        router(state.clone()),
        config.limits,
        state.stopping().clone(),
    );
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => {}
        () = shutdown => {}
    };
    state.stop();
    serving.await;
    // Runs whose clients left are cancelled; every run's task has ended before the server does.
    state.join_runs().await;
}

/// What the CPU workers can infer in the time an ask has left after its sources answered: workers x (deadline -
/// per-source timeout) / (sources x inference cost), between 1 and [`MAX_IN_FLIGHT`] (half the deadline when the
/// per-source timeout is not shorter). More asks than that at once would wait for the CPU until their deadline
/// cut the inference short: every one admitted would come back degraded and late (measured: docs/BENCHMARKS.md).
pub fn default_max_in_flight(
    workers: NonZeroUsize,
    sources: usize,
    deadline: Duration,
    per_source_timeout: Duration,
    inference_cost: Duration,
) -> usize {
    let per_ask = inference_cost.as_secs_f64() * sources.max(1) as f64;
    if per_ask <= 0.0 {
        return MAX_IN_FLIGHT;
    }
    let cpu_time = admission::cpu_budget(deadline, per_source_timeout);
    let fits = workers.get() as f64 * cpu_time.as_secs_f64() / per_ask;
    (fits.floor() as usize).clamp(1, MAX_IN_FLIGHT)
}

#[cfg(test)]
mod tests;
