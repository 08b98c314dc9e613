//! The routes and their handlers: the page, the ask and compare endpoints, the event streams, the kept runs,
//! health, readiness, metrics and the OpenAPI document.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary::group::{SupervisedChild, Supervisor, SupervisorConfig, SupervisorHandle};
use tributary::lag::{LagConfig, LagMonitor};
use tributary::source::CircuitState;
use tributary_agent::{Agent, AgentReport};
use tributary_sim::Fault;

use crate::admission::{Admission, Admitted};
use crate::api::{self, CompareResponse, ErrorBody, SpanView, StreamEvent, Timelines};
use crate::metrics::Metrics;
use crate::request::{Ask, AskRequest};
use crate::runs::{self, Cursor, Drive, LiveRun, Owner, RETRY_AFTER_DISCONNECT, Runs, drive};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a 503 asks the client to wait before trying again.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The page, served at `/`.
pub(crate) const PAGE: &str = include_str!("../assets/page.html");

/// What every handler shares: the agent, admission, the kept runs, the metrics, and every run's task.
pub struct AppState {
    pub(crate) agent: Agent,
    /// The adaptive limit on runs in flight, at most `--max-in-flight`.
    admission: Arc<Admission>,
    /// Cancelled when the server starts stopping.
    stopping: CancellationToken,
    /// The sources' names, for checking a request's faults.
    pub(crate) sources: Vec<String>,
    metrics: Arc<Metrics>,
    runs: Arc<Runs>,
    /// Every run's task is a child of this supervisor: one run's failure or panic touches no other run, and
    /// [`join_runs`](Self::join_runs) waits for them all.
    runs_supervisor: SupervisorHandle,
    /// The supervisor itself, taken by [`join_runs`](Self::join_runs).
    supervisor: Mutex<Option<Supervisor>>,
    /// How late the runtime's timers fire: `/metrics`' loop lag.
    lag: LagMonitor,
    /// The `Host` header values `/mcp` answers (its DNS rebinding protection); empty: any.
    mcp_hosts: Vec<String>,
}

impl AppState {
    /// The state of a server answering with `agent`, at most `max_in_flight` runs at once.
    pub fn new(agent: Agent, max_in_flight: NonZeroUsize) -> Arc<Self> {
        let sources = agent
            .sources()
            .iter()
            .map(|source| source.name().to_owned())
            .collect();
        let supervisor = Supervisor::new(SupervisorConfig::new());
        Arc::new(Self {
            agent,
            admission: Arc::new(Admission::new(max_in_flight.get())),
            stopping: CancellationToken::new(),
            sources,
            metrics: Arc::new(Metrics::new()),
            runs: Arc::default(),
            runs_supervisor: supervisor.handle(),
            supervisor: Mutex::new(Some(supervisor)),
            lag: LagMonitor::spawn(LagConfig::default()),
            mcp_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        })
    }

    /// The state of a server listening on `address`: on a loopback address, `/mcp` answers only requests
    /// whose `Host` is a loopback name (a web page's script cannot reach it through a name it controls: DNS
    /// rebinding); on any other address, which its operator chose to expose, any `Host`.
    pub fn listening_on(
        agent: Agent,
        max_in_flight: NonZeroUsize,
        address: std::net::SocketAddr,
    ) -> Arc<Self> {
        let mut state = Self::new(agent, max_in_flight);
        if !address.ip().is_loopback()
            && let Some(state) = Arc::get_mut(&mut state)
        {
            state.mcp_hosts.clear();
        }
        state
    }

    /// Starts stopping: from now on every ask is refused (503) and `/readyz` says so.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Cancelled once the server starts stopping.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Waits until every run has ended: the runs of clients that left are cancelled, the others finish within
    /// their deadline. Call after [`stop`](Self::stop), once no request can start a run.
    pub async fn join_runs(&self) {
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(supervisor) = supervisor {
            let stats = supervisor.join().await;
            tracing::info!(
                runs = stats.spawned,
                panicked = stats.panicked,
                "every run has ended"
            );
        }
    }

    /// Runs in flight now.
    fn in_flight(&self) -> usize {
        self.admission.in_flight()
    }

    /// A place for one run, if the limit has one now (the in-flight gauge follows).
    pub(crate) fn try_admit(&self) -> Option<Admitted> {
        let admitted = self.admission.try_admit();
        self.note_in_flight();
        admitted
    }

    /// The in-flight gauge, set to the count now.
    pub(crate) fn note_in_flight(&self) {
        self.metrics.set_in_flight(self.in_flight());
    }

    /// Counts a run refused because the server was full.
    pub(crate) fn refused_rejected(&self) {
        self.metrics.refused("rejected");
    }

    /// The most runs admitted at once now.
    pub(crate) fn admission_limit(&self) -> usize {
        self.admission.limit()
    }

    /// The most the limit grows to.
    pub(crate) fn admission_max(&self) -> usize {
        self.admission.max()
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("sources", &self.sources)
            .field("in_flight", &self.in_flight())
            .field("stopping", &self.stopping.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// The server's routes on `state`: what [`run`](crate::run) serves, and what a test drives in-process.
pub fn router(state: Arc<AppState>) -> Router {
    let mcp = tributary_mcp::http_service(
        state.agent.clone(),
        Arc::new(crate::mcp::Admission {
            state: Arc::clone(&state),
        }),
        state.stopping.child_token(),
        state.mcp_hosts.clone(),
    );
    Router::new()
        .route_service("/mcp", mcp)
        .route("/", get(page))
        .route("/v1/ask", post(ask))
        .route("/v1/ask/stream", get(ask_stream))
        .route("/v1/compare", post(compare))
        .route("/v1/sources", get(sources))
        .route("/v1/runs/{run_id}/events", get(run_events))
        .route("/v1/runs/{run_id}/trace", get(run_trace))
        .route("/openapi.json", get(api::openapi_json))
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

/// The `{run_id}` of a `/v1/runs/...` path. axum's `Path` answers a rejection (a run id that is not UTF-8 once
/// percent-decoded, `/v1/runs/%FF/trace`) in plain text; this one answers it in the JSON error shape, as every
/// other error.
struct RunId(String);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(run_id)) => Ok(Self(run_id)),
            // For one `String` parameter, a client's mistake can only be bad UTF-8; anything else is the
            // route's (a 500).
            Err(rejection) if rejection.status().is_client_error() => Err(error(
                rejection.status(),
                "the run id in the path is not valid UTF-8 once percent-decoded",
            )),
            Err(rejection) => Err(error(
                rejection.status(),
                format!("internal error: {}", rejection.body_text()),
            )),
        }
    }
}

/// Why a request was not run: a 4xx for a bad request, a 503 when the server is full or stopping.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn stopping() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is stopping".to_owned(),
        }
    }

    fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    fn into_response(self) -> Response {
        let mut response = error(self.status, self.message);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// Admits a checked request to run, or refuses it; a refusal is counted (`rejected` or `invalid`). Admission comes after validation, so a bad request is told so even when the server is full.
fn admit(state: &AppState, checked: Result<Ask, Refusal>) -> Result<(Ask, Admitted), Refusal> {
    let admitted = checked.and_then(|ask| {
        let full = || {
            if state.stopping.is_cancelled() {
                return Refusal::stopping();
            }
            Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "overloaded: {} asks in flight (the limit adapts to how runs fare, up to {}); retry later",
                    state.admission.limit(),
                    state.admission.max()
                ),
            }
        };
        if state.stopping.is_cancelled() {
            return Err(full());
        }
        let permit = state.admission.try_admit().ok_or_else(full)?;
        state.metrics.set_in_flight(state.in_flight());
        Ok((ask, permit))
    });
    admitted.inspect_err(|refusal| {
        if refusal.status == StatusCode::SERVICE_UNAVAILABLE {
            state.metrics.refused("rejected");
        } else {
            state.metrics.refused("invalid");
        }
    })
}

/// A request's JSON body as an ask.
fn ask_from_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Ask, Refusal> {
    // Over the body limit (413), a body that stopped arriving (408), or one that could not be read: in the JSON
    // error shape, as every error.
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if tributary_sim::serve::is_body_timeout(&rejection) {
            Refusal {
                status: StatusCode::REQUEST_TIMEOUT,
                message: "the request body stopped arriving before it was complete".to_owned(),
            }
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal {
                status,
                message: format!(
                    "the request body is over the limit of {} KiB",
                    MAX_BODY_BYTES / 1024
                ),
            }
        } else {
            Refusal {
                status,
                message: format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            }
        }
    })?;
    AskRequest::from_body(&body)
        .and_then(|request| request.check(state, headers))
        .map_err(Refusal::bad_request)
}

/// Starts a run of `ask` as a child of the server's supervisor; refused (503) if the server began stopping
/// since the request was admitted.
fn start_run(
    state: &AppState,
    ask: Ask,
    permit: Admitted,
    owner: Owner,
) -> Result<(Arc<LiveRun>, SupervisedChild<AgentReport, Infallible>), Refusal> {
    let run = state.runs.start(owner);
    let report = drive(
        &state.runs,
        &run,
        Drive {
            agent: state.agent.with_settings(ask.settings),
            question: ask.question,
            mode: ask.mode,
            permit,
            metrics: Arc::clone(&state.metrics),
        },
        &state.runs_supervisor,
    );
    match report {
        Ok(report) => Ok((run, report)),
        Err(_stopping) => {
            state.runs.ended(&run);
            Err(Refusal::stopping())
        }
    }
}

/// Answers one question: the JSON `ask --json` prints.
#[utoipa::path(
    post,
    path = "/v1/ask",
    request_body = AskRequest,
    params(("x-deadline-ms" = Option<u64>, Header, minimum = 1, maximum = 86_400_000,
            description = "The caller's remaining time, in milliseconds")),
    responses(
        (status = 200, description = "An answer, maybe degraded", body = AgentReport,
         headers(("x-run-id" = String, description = "The run, for /v1/runs/{run_id}/trace"))),
        (status = 502, description = "No answer: the report says why", body = AgentReport),
        (status = 400, description = "A bad request", body = ErrorBody),
        (status = 408, description = "The body stopped arriving: no chunk within the body timeout", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
        (status = 503, description = "Over the in-flight bound, or stopping", body = ErrorBody,
         headers(("retry-after" = u64, description = "Seconds to wait"))),
    )
)]
async fn ask(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (ask, permit) = match admit(&state, ask_from_body(&state, &headers, body)) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let (run, report) = match start_run(&state, ask, permit, Owner::Request) {
        Ok(started) => started,
        Err(refusal) => return refusal.into_response(),
    };
    // A client that disconnects drops this future: the guard cancels the run, which the supervisor joins.
    let cancel_on_disconnect = run.cancel.clone().drop_guard();
    let report = report.await;
    cancel_on_disconnect.disarm();
    let Ok(report) = report else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the run ended without a report (see the server's log)",
        );
    };
    let status = if report.answered() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let mut response = (status, axum::Json(report)).into_response();
    if let Ok(id) = HeaderValue::from_str(&run.id) {
        response.headers_mut().insert(RUN_ID_HEADER, id);
    }
    response
}

/// The response header naming a `POST /v1/ask`'s run, for `/v1/runs/{id}/trace`.
const RUN_ID_HEADER: &str = "x-run-id";

/// Runs one question and streams it as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/ask/stream",
    params(
        ("question" = String, Query, min_length = 1, max_length = 4096, description = "The question"),
        ("deadline_ms" = Option<u64>, Query, minimum = 1, maximum = 86_400_000,
         description = "Capped by the server's --deadline"),
        ("per_source_timeout_ms" = Option<u64>, Query, minimum = 1, maximum = 86_400_000,
         description = "Default the server's"),
        ("mode" = Option<String>, Query, pattern = "^(concurrent|sequential)$",
         description = "concurrent (default) or sequential"),
        ("fault" = Option<Vec<String>>, Query, description = "SOURCE=KIND, repeatable, e.g. news=hang"),
        ("last-event-id" = Option<String>, Header, description = "Resume that run after that event"),
        ("x-deadline-ms" = Option<u64>, Header, minimum = 1, maximum = 86_400_000,
         description = "The caller's remaining time"),
    ),
    responses(
        (status = 200, description = "Events: run, span_started, span, mark, text, span_closed, source, answer, done; \
                                      each with the id RUN/POSITION", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "A bad request", body = ErrorBody),
        (status = 404, description = "Last-Event-ID names a run no longer kept", body = ErrorBody),
        (status = 431, description = "The query and headers are too large for the HTTP server to read (refused \
                                      before any handler, with an empty body)"),
        (status = 503, description = "Over the in-flight bound, or stopping", body = ErrorBody),
    )
)]
async fn ask_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // A browser reconnecting sends the last event it saw: resume that run, do not start another.
    if let Some(last) = headers.get("last-event-id") {
        return resume(&state, last);
    }
    let checked = AskRequest::from_query(query.as_deref().unwrap_or(""))
        .and_then(|request| request.check(&state, &headers))
        .map_err(Refusal::bad_request);
    let (ask, permit) = match admit(&state, checked) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    match start_run(&state, ask, permit, Owner::Listeners) {
        // The stream reads the run's events; the report's handle is not needed (dropping it cancels nothing).
        Ok((run, _report)) => event_stream(run, 0),
        Err(refusal) => refusal.into_response(),
    }
}

/// Streams a kept run's events from after `Last-Event-ID`.
fn resume(state: &AppState, last: &HeaderValue) -> Response {
    let parsed = last.to_str().ok().and_then(|text| {
        let (run_id, position) = text.trim().rsplit_once('/')?;
        Some((run_id.to_owned(), position.parse::<Cursor>().ok()?))
    });
    let Some((run_id, position)) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "the Last-Event-ID header must be an event id this server sent (RUN/POSITION)",
        );
    };
    match state.runs.get(&run_id) {
        Some(run) => event_stream(run, position.saturating_add(1)),
        None => forgotten(&run_id),
    }
}

fn forgotten(run_id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no run `{run_id}`: runs are kept {} minutes after they end",
            runs::KEPT_FOR.as_secs() / 60
        ),
    )
}

/// A kept run's events again, from the start or after Last-Event-ID.
#[utoipa::path(
    get,
    path = "/v1/runs/{run_id}/events",
    params(
        ("run_id" = String, Path, description = "The run"),
        ("last-event-id" = Option<String>, Header, description = "Resume after that event"),
    ),
    responses(
        (status = 200, description = "The run's events", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "A bad Last-Event-ID, or a run id that is not UTF-8", body = ErrorBody),
        (status = 404, description = "No such run (kept 10 minutes after it ends)", body = ErrorBody),
    )
)]
async fn run_events(
    State(state): State<Arc<AppState>>,
    RunId(run_id): RunId,
    headers: HeaderMap,
) -> Response {
    if let Some(last) = headers.get("last-event-id") {
        return resume(&state, last);
    }
    match state.runs.get(&run_id) {
        Some(run) => event_stream(run, 0),
        None => forgotten(&run_id),
    }
}

/// A kept run's timeline as Chrome Trace Event JSON (Perfetto, chrome://tracing).
#[utoipa::path(
    get,
    path = "/v1/runs/{run_id}/trace",
    params(("run_id" = String, Path, description = "The run")),
    responses(
        (status = 200, description = "The trace, as an attachment", body = Object),
        (status = 400, description = "A run id that is not UTF-8", body = ErrorBody),
        (status = 404, description = "No such run (kept 10 minutes after it ends)", body = ErrorBody),
    )
)]
async fn run_trace(State(state): State<Arc<AppState>>, RunId(run_id): RunId) -> Response {
    let Some(run) = state.runs.get(&run_id) else {
        return forgotten(&run_id);
    };
    let disposition = format!("attachment; filename=\"tributary-{}.trace.json\"", run.id);
    let mut response = axum::Json(run.timeline.chrome_trace()).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// A run's events from position `from` as Server-Sent Events, each with the id `<run>/<position>`; ends after
/// `done`. Not compressed (no layer here compresses), not cached, not buffered by a proxy.
fn event_stream(run: Arc<LiveRun>, from: Cursor) -> Response {
    let listener = run.listen();
    let stream = futures::stream::unfold(
        (run, from, listener, VecDeque::new(), true),
        |(run, mut cursor, listener, mut pending, mut first)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((
                        Ok::<Event, Infallible>(event),
                        (run, cursor, listener, pending, first),
                    ));
                }
                // Read `ended` first: it is set after the last event, so none is missed.
                let ended = run.is_ended();
                let events = run.events_since(cursor);
                if events.is_empty() {
                    if ended {
                        return None;
                    }
                    run.wait_for_event(cursor).await;
                    continue;
                }
                for event in events {
                    let mut sse = Event::default()
                        .event(event.name)
                        .id(format!("{}/{cursor}", run.id))
                        .data(event.data.to_string());
                    if first {
                        sse = sse.retry(RETRY_AFTER_DISCONNECT);
                        first = false;
                    }
                    pending.push_back(sse);
                    cursor += 1;
                }
            }
        },
    );
    let sse = Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(runs::KEEP_ALIVE)
            .text("keep-alive"),
    );
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        sse,
    )
        .into_response()
}

/// The sequential baseline, then the agent, on one question, each with a fresh cache.
#[utoipa::path(
    post,
    path = "/v1/compare",
    request_body = AskRequest,
    responses(
        (status = 200, description = "Both reports, the speed-up and both timelines", body = CompareResponse),
        (status = 400, description = "A bad request", body = ErrorBody),
        (status = 408, description = "The body stopped arriving: no chunk within the body timeout", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
        (status = 503, description = "Over the in-flight bound, or stopping", body = ErrorBody),
    )
)]
async fn compare(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (ask, permit) = match admit(&state, ask_from_body(&state, &headers, body)) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let agent = state.agent.with_settings(ask.settings);
    // Both runs in a child of the server's supervisor: a client that leaves cancels them, and they are joined.
    let cancel = CancellationToken::new();
    let comparing = state.runs_supervisor.spawn("compare", {
        let agent = agent.clone();
        let cancel = cancel.clone();
        async move {
            let compared = agent.compare_runs(&ask.question, cancel).await;
            drop(permit);
            Ok::<_, Infallible>(compared)
        }
    });
    let Ok(comparing) = comparing else {
        return Refusal::stopping().into_response();
    };
    let cancel_on_disconnect = cancel.drop_guard();
    let compared = comparing.await;
    cancel_on_disconnect.disarm();
    let compared = match compared {
        Ok(Ok(compared)) => compared,
        Ok(Err(cause)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: failed to build an HTTP client: {cause}"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the comparison ended without a result (see the server's log)",
            );
        }
    };
    let spans = |timeline: &tributary::trace::Timeline| -> Vec<SpanView> {
        timeline.spans().iter().map(SpanView::from).collect()
    };
    axum::Json(CompareResponse {
        timelines: Timelines {
            sequential: spans(&compared.sequential),
            concurrent: spans(&compared.concurrent),
        },
        lanes: agent.lanes(),
        comparison: compared.comparison,
    })
    .into_response()
}

/// The sources, the fault kinds and the server's settings.
#[utoipa::path(get, path = "/v1/sources", responses((status = 200, description = "The sources", body = Object)))]
async fn sources(State(state): State<Arc<AppState>>) -> Response {
    let settings = state.agent.settings();
    // The breakers are the server's, shared by every client: a page shows them so that a source "circuit open"
    // because of someone else's runs is explained. A source not asked yet has a closed circuit.
    let circuits = state.agent.client().circuits();
    let sources: Vec<_> = state
        .agent
        .sources()
        .iter()
        .map(|source| {
            let circuit = circuits
                .iter()
                .find(|circuit| circuit.source == source.name())
                .map_or(CircuitState::Closed, |circuit| circuit.state);
            json!({
                "name": source.name(),
                "kind": source.kind.as_str(),
                "required": source.required,
                "circuit": circuit.as_str(),
            })
        })
        .collect();
    let mut faults: Vec<String> = Fault::NAMES.iter().map(|name| (*name).to_owned()).collect();
    faults.push("latency:2s".to_owned());
    axum::Json(json!({
        "sources": sources,
        "faults": faults,
        "deadline_ms": runs::millis(settings.deadline),
        "per_source_timeout_ms": runs::millis(settings.per_source_timeout),
        "workers": state.agent.executor().stats().jobs.workers,
        "max_in_flight": state.admission.max(),
    }))
    .into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// Prometheus (OpenMetrics) text.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String))
)]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.set_in_flight(state.in_flight());
    state.metrics.set_admission_limit(state.admission.limit());
    let text = state.metrics.render(
        &state.agent.executor().stats(),
        &state.lag.snapshot(),
        &state.agent.client().circuits(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Whether the process runs.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "It runs", body = Object)))]
async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Whether the server takes asks.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready, with the runs in flight", body = Object),
        (status = 503, description = "Stopping", body = ErrorBody),
    )
)]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.stopping.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    }
    let in_flight = state.in_flight();
    axum::Json(json!({
        "status": "ready",
        "in_flight": in_flight,
        "limit": state.admission.limit(),
        "max_in_flight": state.admission.max(),
    }))
    .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: GET /openapi.json lists them",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "wrong method for this endpoint: GET /openapi.json lists them",
    )
}
