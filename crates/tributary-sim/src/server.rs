//! The HTTP server: [`SimServer`] binds, routes, counts requests, applies fault injection, and shuts down.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary::group::{ChildHandle, ChildLost, GroupConfig, OwnedGroup, scope};

use super::config::{Fault, Latency, Service, SimConfig};
use super::error::{ApiError, SimError};
use super::fault::{self, Params, Plan};
use super::kb::KnowledgeBase;
use super::news::{self, NewsIndex};
use super::seed::rng_for;
use super::serve::{Limits, serve_connections};
use super::weather;

/// How long [`SimServer::shutdown`] waits for connections to close before it stops waiting on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A request whose simulated latency ends within this of a shutdown is answered as usual (the server drains);
/// a longer one is answered 503 at once. Shorter than [`SHUTDOWN_GRACE`], so a drained answer is never cut.
const DRAIN_PATIENCE: Duration = Duration::from_secs(3);

/// The running simulated services. Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct SimServer {
    local_addr: SocketAddr,
    state: Arc<AppState>,
    /// Cancelled to stop accepting, end hanging and dripping responses, and let the serve task finish.
    shutdown: CancellationToken,
    /// The serve task, in a group the server owns: [`SimServer::shutdown`] joins it, dropping the server aborts it.
    /// `None` once shut down.
    tasks: Option<OwnedGroup<Infallible>>,
    /// The serve task's handle, to wait for its graceful end.
    serving: Option<ChildHandle<()>>,
}

/// What every handler shares.
#[derive(Debug)]
struct AppState {
    config: SimConfig,
    /// Requests received per service, indexed by [`Service::index`].
    requests: [AtomicU64; 3],
    /// Latency and fault draws per service: seeded, so a run with one client is reproducible.
    /// A std mutex is right here: it is held for a few random draws and never across an `.await`.
    rngs: [Mutex<StdRng>; 3],
    shutdown: CancellationToken,
    news: NewsIndex,
    kb: KnowledgeBase,
}

impl SimServer {
    /// Builds the data, binds `listen` (port 0 picks a free port) and starts serving in a background task.
    pub async fn start(listen: SocketAddr, config: SimConfig) -> Result<SimServer, SimError> {
        let (news, kb) = build_data(config.seed).await?;
        let listener = super::serve::bind(listen).map_err(|source| SimError::Bind {
            address: listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Bind {
            address: listen,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let rngs = Service::ALL
            .map(|service| Mutex::new(rng_for(config.seed, &format!("faults/{service}"))));
        let state = Arc::new(AppState {
            config,
            requests: Default::default(),
            rngs,
            shutdown: shutdown.clone(),
            news,
            kb,
        });
        let app = router(Arc::clone(&state));
        let stop = shutdown.clone();
        let tasks = OwnedGroup::new();
        let serving = tasks
            .group()
            .spawn("serve", async move {
                serve_connections(listener, app, Limits::default(), stop).await;
                Ok(())
            })
            .await
            .map_err(SimError::Serve)?;
        tracing::debug!(%local_addr, "simulated services listening");
        Ok(SimServer {
            local_addr,
            state,
            shutdown,
            tasks: Some(tasks),
            serving: Some(serving),
        })
    }

    /// The address actually bound (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://IP:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The full URL of one service, e.g. `http://127.0.0.1:4321/kb/search`.
    pub fn url(&self, service: Service) -> String {
        format!("{}{}", self.base_url(), service.path())
    }

    /// Requests the service has received so far, whatever their outcome (including faults and 400s).
    pub fn requests(&self, service: Service) -> u64 {
        self.state.requests[service.index()].load(Ordering::Relaxed)
    }

    /// The configuration the server started with.
    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// Stops accepting, ends hanging and slow responses, and waits (up to a few seconds) for open connections.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(serving) = self.serving.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, serving).await.is_err()
        {
            tracing::warn!(
                "simulated services: connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"
            );
        }
        // Joins the serve task: at once if it ended gracefully, by cancelling it otherwise.
        if let Some(tasks) = self.tasks.take()
            && let Err(error) = tasks.shutdown().await
        {
            tracing::warn!(%error, "simulated services stopped with an error");
        }
    }
}

/// Generates and indexes the news corpus and builds the knowledge base, both at once, off the runtime threads
/// (it is CPU work and SQLite), each a child of a group that joins both before returning.
async fn build_data(seed: u64) -> Result<(NewsIndex, KnowledgeBase), SimError> {
    let built = scope(GroupConfig::new(), |group| async move {
        let news = group
            .spawn_blocking("build the news corpus", move |_| Ok(NewsIndex::build(seed)))
            .await
            .map_err(SimError::Serve)?;
        let kb = group
            .spawn_blocking("build the knowledge base", |_| {
                KnowledgeBase::build().map_err(SimError::KnowledgeBase)
            })
            .await
            .map_err(SimError::Serve)?;
        let lost = |lost: ChildLost| SimError::Build(lost.to_string());
        Ok((news.await.map_err(lost)?, kb.await.map_err(lost)?))
    })
    .await;
    built.map_err(|error| {
        error
            .into_first_error()
            .unwrap_or_else(|| SimError::Build("the build was cancelled".to_owned()))
    })
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route(Service::Weather.path(), get(weather_handler))
        .route(Service::News.path(), get(news_handler))
        .route(Service::KnowledgeBase.path(), get(kb_handler))
        .fallback(not_found)
        .with_state(state)
}

async fn weather_handler(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_query(query.as_deref());
    let seed = state.config.seed;
    serve(&state, Service::Weather, &params, || async {
        weather::answer(seed, &params)
    })
    .await
}

async fn news_handler(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let params = parse_query(query.as_deref());
    // A BM25 lookup over a few hundred articles takes microseconds: fine on a runtime thread.
    serve(&state, Service::News, &params, || async {
        news::answer(&state.news, &params)
    })
    .await
}

async fn kb_handler(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let params = parse_query(query.as_deref());
    serve(&state, Service::KnowledgeBase, &params, || {
        state.kb.answer(&params)
    })
    .await
}

/// Query parameters by name (the last one wins when repeated). Parsed by hand rather than with axum's `Query`
/// so that no request is rejected before it is counted, and every error body is JSON.
pub(crate) fn parse_query(query: Option<&str>) -> Params {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The part every service shares: count, plan faults, wait, answer, then misbehave as planned.
async fn serve<T, F, Fut>(
    state: &AppState,
    service: Service,
    params: &Params,
    answer: F,
) -> Response
where
    T: Serialize,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    state.requests[service.index()].fetch_add(1, Ordering::Relaxed);
    let plan = match fault::parse_overrides(params) {
        Ok(overrides) => {
            let mut rng = state.rngs[service.index()]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            fault::plan(state.config.behavior(service), overrides, &mut *rng)
        }
        Err(error) => return error.into_response(),
    };
    let Plan { latency, fault } = plan;
    let wake = tokio::time::Instant::now() + latency;
    tokio::select! {
        () = state.shutdown.cancelled() => {
            // Draining: a wait that ends soon is served as usual; a long one is refused now, not cut later.
            if wake.saturating_duration_since(tokio::time::Instant::now()) > DRAIN_PATIENCE {
                return shutting_down();
            }
            tokio::time::sleep_until(wake).await;
        }
        () = tokio::time::sleep_until(wake) => {}
    }
    if fault == Some(Fault::Hang) {
        state.shutdown.cancelled().await;
        return shutting_down();
    }
    let (status, body) = status_and_body(answer().await);
    fault::respond(fault, status, body, &state.shutdown)
}

/// The status and JSON body of a service's answer, before a fault changes them.
pub(crate) fn status_and_body<T: Serialize>(answer: Result<T, ApiError>) -> (StatusCode, Vec<u8>) {
    match answer {
        Ok(answer) => (
            StatusCode::OK,
            serde_json::to_vec(&answer).expect("response types always serialize"),
        ),
        Err(error) => (error.status, error.body()),
    }
}

fn shutting_down() -> Response {
    ApiError::unavailable("the simulated services are shutting down").into_response()
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn not_found() -> Response {
    ApiError::not_found("not_found", "no such endpoint; GET / lists them").into_response()
}

/// `GET /`: what is served here and how each service is configured to misbehave.
async fn index(State(state): State<Arc<AppState>>) -> Response {
    let services: Vec<_> = Service::ALL
        .into_iter()
        .map(|service| {
            let behavior = state.config.behavior(service);
            json!({
                "name": service.name(),
                "path": service.path(),
                "params": service_params(service),
                "latency": latency_json(&behavior.latency),
                "fault": behavior.fault.map(|fault| fault.name()),
                "fault_probability": behavior.fault_probability,
            })
        })
        .collect();
    axum::Json(json!({
        "name": "tributary simulated services",
        "seed": state.config.seed,
        "services": services,
        "other_endpoints": ["/", "/health"],
        "fault_kinds": Fault::NAMES,
        "override_params": {
            "latency_ms": "fixed latency for this request, in milliseconds",
            "fault": "inject this fault (or `none`) into this request",
            "retry_after": "seconds for the Retry-After header of fault=unavailable",
        },
    }))
    .into_response()
}

fn service_params(service: Service) -> serde_json::Value {
    match service {
        Service::Weather => json!({ "city": "required: a city name" }),
        Service::News => {
            json!({ "q": "required: search words", "page": "optional, from 1; 10 articles per page" })
        }
        Service::KnowledgeBase => {
            json!({ "q": "required: a question", "limit": "optional, 1 to 50, default 5" })
        }
    }
}

fn latency_json(latency: &Latency) -> serde_json::Value {
    match latency {
        Latency::None => json!({ "kind": "none" }),
        Latency::Fixed(duration) => json!({ "kind": "fixed", "ms": duration.as_millis() }),
        Latency::LogNormal { median, sigma } => {
            json!({ "kind": "log-normal", "median_ms": median.as_millis(), "sigma": sigma })
        }
        Latency::Stalls {
            typical,
            stall,
            share,
        } => {
            json!({ "kind": "stalls", "typical_ms": typical.as_millis(), "stall_ms": stall.as_millis(), "share": share })
        }
    }
}
