//! `tributary serve`: the agent as an HTTP service, on the same step as `ask`.
//!
//! `POST /v1/ask` answers one question with the JSON `ask --json` prints; `GET /healthz` and `GET /readyz` say
//! whether the process runs and whether it takes asks. At most `--max-in-flight` asks run at once: over that a
//! request gets 503 with `Retry-After` at once, rather than a queue that makes everyone miss the deadline.
//! Ctrl-C or SIGTERM stops accepting, lets the asks in flight finish (each is bounded by its deadline), and the
//! command exits 0. The connections are served with the simulator's limits (a connection cap and a header
//! timeout, `tributary_sim::serve`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tributary::source::{ClientOptions, DEADLINE_HEADER};
use tributary_agent::limits::MAX_DURATION;
use tributary_agent::{Agent, AgentSettings, Question};
use tributary_sim::serve::{Limits, serve_connections};

use crate::engine::Engine;
use crate::error::{CliError, ErrorKind, Outcome};
use crate::metrics::Metrics;
use crate::printer::Printer;
use crate::settings::{ServeSettings, fault_queries};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a 503 asks the client to wait before trying again.
const RETRY_AFTER_SECONDS: u64 = 1;

/// What every handler shares.
struct AppState {
    agent: Agent,
    /// One permit per ask in flight.
    admission: Semaphore,
    max_in_flight: usize,
    /// Cancelled when the server starts stopping.
    stopping: CancellationToken,
    /// The sources' names, for checking a request's faults.
    sources: Vec<String>,
    metrics: Metrics,
}

impl AppState {
    /// Asks running now: the admission permits taken.
    fn in_flight(&self) -> usize {
        self.max_in_flight - self.admission.available_permits()
    }
}

/// The body of `POST /v1/ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskRequest {
    question: String,
    /// At most the server's `--deadline`, which is also the default.
    deadline_ms: Option<u64>,
    /// Default: the server's `--per-source-timeout`.
    per_source_timeout_ms: Option<u64>,
    /// Source name to fault kind, as `--fault` takes them (`"hang"`, `"latency:2s"`); for the sources it names,
    /// replaces the server's `--fault` flags for this ask.
    #[serde(default)]
    faults: BTreeMap<String, String>,
}

pub async fn run(settings: ServeSettings, printer: Printer) -> Result<Outcome, CliError> {
    let engine = Engine::start(&settings.engine, ClientOptions::default()).await?;
    let served = serve(&settings, &engine, printer).await;
    engine.shutdown().await;
    served
}

async fn serve(
    settings: &ServeSettings,
    engine: &Engine,
    printer: Printer,
) -> Result<Outcome, CliError> {
    let listener = TcpListener::bind(settings.listen).await.map_err(|error| {
        CliError::caused(
            ErrorKind::Environment,
            format_args!("failed to listen on {}", settings.listen),
            &error,
        )
        .with_hint("pick another address with --listen, or port 0 for any free port")
    })?;
    let address = listener.local_addr().map_err(|error| {
        CliError::caused(
            ErrorKind::Environment,
            "failed to read the bound address",
            &error,
        )
    })?;
    let stopping = CancellationToken::new();
    let state = Arc::new(AppState {
        agent: engine.agent.clone(),
        admission: Semaphore::new(settings.max_in_flight.get()),
        max_in_flight: settings.max_in_flight.get(),
        stopping: stopping.clone(),
        sources: engine
            .agent
            .sources()
            .iter()
            .map(|source| source.name().to_owned())
            .collect(),
        metrics: Metrics::new(),
    });
    // The URL is the command's data (a script reads it); the rest goes to stderr.
    printer.data_line(&format!("http://{address}"))?;
    printer.note(&format!(
        "serving the agent on http://{address}: POST /v1/ask; at most {} asks at once; Ctrl-C or SIGTERM stops",
        settings.max_in_flight
    ));
    let serving = serve_connections(listener, router(state), Limits::default(), stopping.clone());
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => return Ok(Outcome::Done),
        signal = stop_signal() => {
            printer.note(&format!("{}: stopping; the asks in flight finish first", signal?));
        }
    }
    stopping.cancel();
    serving.await;
    Ok(Outcome::Done)
}

/// Waits for Ctrl-C or (on Unix) SIGTERM; names the one that came.
async fn stop_signal() -> Result<&'static str, CliError> {
    let failed = |error: std::io::Error| {
        CliError::caused(
            ErrorKind::Environment,
            "failed to wait for a signal",
            &error,
        )
    };
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(failed)?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.map(|()| "Ctrl-C").map_err(failed),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map(|()| "Ctrl-C")
            .map_err(failed)
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/ask", post(ask))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn ask(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let response = run_ask(&state, &headers, body).await;
    // A ran ask is counted by its outcome where it ends; here only the ones that never ran.
    match response.status() {
        StatusCode::SERVICE_UNAVAILABLE => state.metrics.refused("rejected"),
        status if status.is_client_error() => state.metrics.refused("invalid"),
        _ => {}
    }
    response
}

async fn run_ask(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // Over the body limit (413), or a body that could not be read.
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let request: AskRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(cause) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {cause}"),
            );
        }
    };
    // The caller's remaining time travels in a header too (`x-deadline-ms`, as this server's own source
    // requests send it): the ask gets the earliest of it, `deadline_ms` and the server's --deadline.
    let told = match headers.get(DEADLINE_HEADER).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|millis| *millis > 0)
    }) {
        None => None,
        Some(Some(millis)) => Some(millis),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the {DEADLINE_HEADER} header must be a whole number of milliseconds above 0"
                ),
            );
        }
    };
    let settings = match ask_settings(state, &request, told) {
        Ok(settings) => settings,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let question = match Question::new(&request.question) {
        Ok(question) => question,
        Err(cause) => return error(StatusCode::BAD_REQUEST, format!("question: {cause}")),
    };
    if state.stopping.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    }
    // Admission after validation: a bad request is told so even when the server is full.
    let Ok(_admitted) = state.admission.try_acquire() else {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "overloaded: {} asks in flight; retry later",
                state.max_in_flight
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        return response;
    };
    state.metrics.set_in_flight(state.in_flight());
    let run = state.agent.with_settings(settings).ask(&question).await;
    state.metrics.answered(&run.report);
    let status = if run.report.answered() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (status, axum::Json(run.report)).into_response()
}

/// The agent's settings for one request: its deadline (capped by the server's), per-source timeout and faults.
fn ask_settings(
    state: &AppState,
    request: &AskRequest,
    told_millis: Option<u64>,
) -> Result<AgentSettings, String> {
    let server = state.agent.settings();
    let mut deadline = match request.deadline_ms {
        None => server.deadline,
        Some(0) => return Err("deadline_ms must be at least 1".to_owned()),
        Some(millis) => Duration::from_millis(millis).min(server.deadline),
    };
    if let Some(millis) = told_millis {
        deadline = deadline.min(Duration::from_millis(millis));
    }
    let per_source_timeout = match request.per_source_timeout_ms {
        None => server.per_source_timeout,
        Some(0) => return Err("per_source_timeout_ms must be at least 1".to_owned()),
        Some(millis) => Duration::from_millis(millis).min(MAX_DURATION),
    };
    let flags: Vec<String> = request
        .faults
        .iter()
        .map(|(source, kind)| format!("{source}={kind}"))
        .collect();
    let requested = fault_queries(&flags, &state.sources)
        .map_err(|cause| format!("faults: {}", cause.message))?;
    // The request's faults replace the server's `--fault` flags for the sources it names, and only those.
    let mut extra_query = server.extra_query.clone();
    extra_query.retain(|(source, _)| !requested.iter().any(|(named, _)| named == source));
    extra_query.extend(requested);
    Ok(AgentSettings {
        deadline,
        per_source_timeout,
        extra_query,
        ..server.clone()
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.set_in_flight(state.in_flight());
    let text = state.metrics.render(&state.agent.executor().stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.stopping.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    }
    let in_flight = state.in_flight();
    axum::Json(json!({
        "status": "ready",
        "in_flight": in_flight,
        "max_in_flight": state.max_in_flight,
    }))
    .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: POST /v1/ask, GET /healthz, GET /readyz, GET /metrics",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "wrong method: POST /v1/ask, GET /healthz, GET /readyz, GET /metrics",
    )
}
