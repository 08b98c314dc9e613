//! The resilient HTTP client: one shared connection pool, per-attempt timeouts inside the caller's deadline,
//! a streaming size limit, retries with full-jitter backoff, and the single-flight cache in front.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use backon::Retryable;
use futures::StreamExt;
use reqwest::header::{ACCEPT, HeaderValue, USER_AGENT};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;
use url::Url;

use super::breaker::{CallOutcome, CircuitReport, Permit};
use super::cache::{CacheKey, ResponseCache, SharedFailure};
use super::error::{FetchError, FetchErrorKind};
use super::hedge::HedgePolicy;
use super::resolve::{AsyncResolver, NameResolution};
use super::retry::{self, AttemptOutcome, AttemptRecord, BackoffPolicy, RetryDecision};
use super::spec::SourceSpec;
use super::state::{SourceState, SourceStates};

/// The request header that tells a source how many milliseconds this attempt has left (the earlier of the
/// per-attempt timeout and the caller's deadline), so that a source can stop working for a caller that has
/// given up. `tributary serve` reads the same header from its clients.
pub const DEADLINE_HEADER: &str = "x-deadline-ms";
use crate::group::{Deadline, ElapsedKind, with_timeout};

/// Settings shared by all sources of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Delays between attempts.
    pub backoff: BackoffPolicy,
    /// Idle keep-alive connections kept per host. Fan-out to one host opens as many connections as there are
    /// requests in flight; keeping them lets the next burst skip the TCP handshake.
    pub max_idle_connections_per_host: usize,
    /// How many answers the cache holds at most, over all sources.
    pub cache_capacity: u64,
    /// Where host names are looked up: the system's configuration, or name servers given instead.
    pub name_resolution: NameResolution,
}

impl ClientOptions {
    /// The same options with `backoff` between attempts.
    pub fn with_backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// The same options with a cache of at most `entries` answers.
    pub fn with_cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// The same options with host names looked up as `resolution` says.
    pub fn with_name_resolution(mut self, resolution: NameResolution) -> Self {
        self.name_resolution = resolution;
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            backoff: BackoffPolicy::default(),
            max_idle_connections_per_host: 1024,
            cache_capacity: 10_000,
            name_resolution: NameResolution::System,
        }
    }
}

/// Talks to HTTP sources. Cheap to clone: clones share the connection pool, the cache, and each source's
/// circuit breaker, rate limiter and hedge budget.
#[derive(Debug, Clone)]
pub struct SourceClient {
    http: reqwest::Client,
    /// What it was built with, for [`fresh`](Self::fresh).
    options: ClientOptions,
    backoff: BackoffPolicy,
    cache: ResponseCache,
    states: Arc<SourceStates>,
}

/// The `User-Agent` a source gets unless its spec names another: the tool, its version, and where to read
/// about it (public APIs ask for this).
pub const USER_AGENT_DEFAULT: &str = concat!(
    "tributary/",
    env!("CARGO_PKG_VERSION"),
    " (+",
    env!("CARGO_PKG_REPOSITORY"),
    ")"
);

/// What to ask a source: a path below its base URL, and query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SourceRequest {
    /// Appended to the source's base URL (`/forecast` below `http://host/api` is `http://host/api/forecast`).
    pub path: String,
    /// Query parameters, in any order (the cache sorts them).
    pub query: Vec<(String, String)>,
}

impl SourceRequest {
    /// A request for `path` without query parameters.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            query: Vec::new(),
        }
    }

    /// Adds one query parameter.
    pub fn with_query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }
}

/// A source's answer, and what it took to get it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The parsed JSON body; shared with the cache and with other callers of the same request.
    pub body: Arc<Value>,
    /// HTTP requests this caller sent: 1 + retries + hedges, or 0 when the answer came from the cache.
    pub attempts: u32,
    /// How many of those requests were hedges.
    pub hedges: u32,
    /// Whether the answer came from the cache (or from another caller's identical, concurrent request) rather
    /// than from a request this caller sent.
    pub cached: bool,
    /// One record per attempt, in order; empty when `cached`.
    pub attempt_log: Vec<AttemptRecord>,
    /// Time from the call to the answer, for this caller.
    pub elapsed: Duration,
}

/// The HTTP client could not be built (e.g. the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("build the http client")]
pub struct ClientBuildError(#[source] reqwest::Error);

impl SourceClient {
    /// A client with one connection pool for all sources.
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT_DEFAULT)
            .pool_max_idle_per_host(options.max_idle_connections_per_host)
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(AsyncResolver::new(&options.name_resolution)))
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self {
            http,
            backoff: options.backoff,
            cache: ResponseCache::new(options.cache_capacity),
            options,
            states: Arc::new(SourceStates::default()),
        })
    }

    /// A client with the same options and nothing shared with this one: its own connections, an empty cache,
    /// closed circuits.
    pub fn fresh(&self) -> Result<Self, ClientBuildError> {
        Self::new(self.options.clone())
    }

    /// Every circuit breaker this client has used, by source name: its state and how often it opened.
    pub fn circuits(&self) -> Vec<CircuitReport> {
        self.states.circuits()
    }

    /// Asks `spec`'s source for `request`, within `deadline`.
    ///
    /// When the source has a cache TTL, a fresh cached answer is returned at once, and concurrent identical
    /// requests share one upstream fetch (single flight); failures are never cached. Otherwise, or on a miss, see
    /// [`fetch_uncached`](Self::fetch_uncached).
    ///
    /// Cancellation: dropping the returned future stops everything, including retries; nothing is left running.
    pub async fn fetch(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        deadline: Deadline,
    ) -> Result<Fetched, FetchError> {
        in_fetch_span(spec, request, self.fetch_in_span(spec, request, deadline)).await
    }

    /// [`fetch`](Self::fetch) inside its span.
    async fn fetch_in_span(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        deadline: Deadline,
    ) -> Result<Fetched, FetchError> {
        let Some(time_to_live) = spec.cache_lifetime() else {
            return self.fetch_uncached(spec, request, deadline).await;
        };
        self.cached(spec, request, deadline, time_to_live, || {
            self.fetch_uncached(spec, request, deadline)
        })
        .await
    }

    /// `fetch()`'s answer from the cache under `spec`'s name and `request`, or from the one fetch that concurrent
    /// identical callers share (this caller's when no other is running).
    async fn cached<F>(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        deadline: Deadline,
        time_to_live: Duration,
        fetch: impl Fn() -> F,
    ) -> Result<Fetched, FetchError>
    where
        F: Future<Output = Result<Fetched, FetchError>>,
    {
        let started = Instant::now();
        loop {
            // The lookup's span holds the fetch it runs on a miss; `hit` says whether it ran one.
            let lookup_span = tracing::info_span!("source.cache", hit = tracing::field::Empty);
            let lookup = self
                .cache
                .get_or_fetch(CacheKey::new(&spec.name, request), time_to_live, fetch())
                .instrument(lookup_span.clone());
            // This caller may be waiting on another caller's fetch, which runs under *that* caller's deadline:
            // bound the wait by our own. (When we run the fetch ourselves it already stops at our deadline, and
            // it is polled first, so its error, with its attempt log, wins the tie.)
            let lookup = match deadline.instant() {
                None => lookup.await,
                Some(at) => tokio::time::timeout_at(at, lookup).await.map_err(|_| {
                    FetchError::new(&spec.name, FetchErrorKind::DeadlineExceeded, Vec::new())
                })?,
            };
            if let Ok(lookup) = &lookup {
                lookup_span.record("hit", !lookup.fetched_by_this_caller);
            }
            return match lookup {
                Ok(lookup) if lookup.fetched_by_this_caller => Ok(Fetched::clone(&lookup.fetched)),
                Ok(lookup) => Ok(Fetched {
                    body: Arc::clone(&lookup.fetched.body),
                    attempts: 0,
                    hedges: 0,
                    cached: true,
                    attempt_log: Vec::new(),
                    elapsed: started.elapsed(),
                }),
                Err(SharedFailure {
                    error,
                    ran_fetch: true,
                }) => Err(Arc::unwrap_or_clone(error)),
                // The caller we waited on ran out of *its* time; we have some left, so ask again (joining another
                // caller's fetch, or running our own).
                Err(SharedFailure {
                    error,
                    ran_fetch: false,
                }) if error.is_deadline() && !deadline.is_expired() => {
                    continue;
                }
                // Another caller's failure: same kind, but this caller sent nothing itself.
                Err(SharedFailure {
                    error,
                    ran_fetch: false,
                }) => Err(FetchError::new(
                    &spec.name,
                    error.kind().clone(),
                    Vec::new(),
                )),
            };
        }
    }

    /// Asks the source without looking at the cache: up to `1 + spec.retries` attempts, each bounded by
    /// `spec.timeout` and all by `deadline`.
    ///
    /// Retries: transport errors, per-attempt timeouts, 5xx and 429, after a full-jitter backoff or the server's
    /// `Retry-After` if that is longer. Never: other 4xx, oversized or malformed bodies, an expired deadline, or
    /// when the delay would end past the deadline (the last failure is returned at once instead).
    ///
    /// Each attempt first asks the source's circuit breaker (an open circuit ends the fetch at once with
    /// [`FetchErrorKind::CircuitOpen`]) and waits for a rate-limit slot within `deadline`; a slow attempt of a
    /// hedged source may send one more identical request, the first success winning.
    pub async fn fetch_uncached(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        deadline: Deadline,
    ) -> Result<Fetched, FetchError> {
        self.exchange(spec, request, deadline, Exchange::json())
            .await
    }

    /// POSTs `body` as JSON to `spec`'s source for `request` and hands each line of the response body to
    /// `on_line` as it arrives (a line ends at `\n`; a trailing `\r` is dropped): a server-sent event stream, such
    /// as a chat model's reply token by token. The returned [`Fetched`]'s body is `null`: the lines were the
    /// answer.
    ///
    /// Never cached. Like [`fetch_uncached`](Self::fetch_uncached) in everything else (the breaker, the rate
    /// limit, each attempt bounded by `spec.timeout`, all by `deadline`, the attempt log), except that it is never
    /// hedged (a second identical generation would cost as much as the first), and an attempt is retried only
    /// while no line of it was handed over: once the caller has seen part of one answer, another attempt would
    /// repeat it. `spec.max_body_bytes` bounds the whole stream.
    pub async fn stream_post(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        body: &Value,
        deadline: Deadline,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<Fetched, FetchError> {
        let delivered = AtomicBool::new(false);
        let exchange = Exchange {
            body: Some(body),
            lines: Some(LineSink {
                on_line,
                delivered: &delivered,
            }),
            call: None,
        };
        self.exchange(spec, request, deadline, exchange).await
    }

    /// Asks `spec`'s source through the caller's own transport rather than HTTP (a tool of an MCP server): each
    /// attempt runs `call`, and everything else is [`fetch`](Self::fetch)'s: the cache (keyed by `spec`'s name and
    /// `key`, which must say everything the call depends on), the breaker, the rate limit, the per-attempt timeout
    /// (`call`'s future is dropped when it passes), hedging, retries of a failure whose
    /// [`FetchErrorKind::is_retryable`] says so, the attempt log and the deadline. A source whose calls must not be
    /// repeated gets `retries = 0` and no hedge in `spec`.
    pub async fn call<'a>(
        &self,
        spec: &SourceSpec,
        key: &SourceRequest,
        deadline: Deadline,
        call: &'a SourceCall<'a>,
    ) -> Result<Fetched, FetchError> {
        let exchange = Exchange {
            body: None,
            lines: None,
            call: Some(call),
        };
        let fetched = async {
            match spec.cache_lifetime() {
                None => self.exchange(spec, key, deadline, exchange).await,
                Some(time_to_live) => {
                    self.cached(spec, key, deadline, time_to_live, || {
                        self.exchange(spec, key, deadline, exchange)
                    })
                    .await
                }
            }
        };
        in_fetch_span(spec, key, fetched).await
    }

    /// [`fetch_uncached`](Self::fetch_uncached) or [`stream_post`](Self::stream_post), as `exchange` says.
    async fn exchange(
        &self,
        spec: &SourceSpec,
        request: &SourceRequest,
        deadline: Deadline,
        exchange: Exchange<'_>,
    ) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        if deadline.is_expired() {
            return Err(FetchError::new(
                &spec.name,
                FetchErrorKind::DeadlineExceeded,
                Vec::new(),
            ));
        }
        let url = request_url(&spec.base_url, request);
        // Written by the attempt (its record) and by the retry hooks (the decision that followed it); locked
        // only for a push or an update, never across an await.
        let attempt_log = Mutex::new(Vec::<AttemptRecord>::new());
        // The latest attempt's span, kept open until the retry decision that follows it is recorded on it.
        let last_attempt = Mutex::new(tracing::Span::none());

        let state = self.states.get(spec);
        let result = (|| {
            self.attempt(
                spec,
                &state,
                &url,
                deadline,
                (&attempt_log, &last_attempt),
                exchange,
            )
        })
        .retry(self.backoff.full_jitter(spec.retries))
        .sleep(tokio::time::sleep)
        .when(|error: &AttemptError| error.kind.is_retryable() && !exchange.has_delivered())
        .adjust(|error: &AttemptError, backoff| {
            let decision = retry::decide_retry(backoff, error.retry_after, deadline.remaining());
            record_decision(&attempt_log, decision);
            let attempt_span = std::mem::replace(
                &mut *last_attempt.lock().unwrap_or_else(PoisonError::into_inner),
                tracing::Span::none(),
            );
            attempt_span.record("retry", decision_name(decision));
            if let RetryDecision::Retried { delay } = decision {
                attempt_span.record("retry_delay_ms", duration_ms(delay));
            }
            match decision {
                RetryDecision::Retried { delay } => Some(delay),
                _ => None,
            }
        })
        .notify(|error: &AttemptError, delay| {
            tracing::debug!(source = %spec.name, error = %error.kind, ?delay, "retrying source");
        })
        .await;

        drop(last_attempt);
        let attempt_log = attempt_log
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(body) => Ok(Fetched {
                body,
                attempts: u32::try_from(attempt_log.len()).unwrap_or(u32::MAX),
                hedges: retry::hedges_in(&attempt_log),
                cached: false,
                attempt_log,
                elapsed: started.elapsed(),
            }),
            Err(error) => Err(FetchError::new(&spec.name, error.kind, attempt_log)),
        }
    }

    /// One attempt: the breaker's permission, a rate-limit slot, then the request (and, when the source hedges
    /// and the request is slow, one more identical request; the first success wins). Bounded by the per-attempt
    /// timeout and the deadline; every request sent is logged.
    async fn attempt(
        &self,
        spec: &SourceSpec,
        state: &SourceState,
        url: &Url,
        deadline: Deadline,
        (attempt_log, last_attempt): (&Mutex<Vec<AttemptRecord>>, &Mutex<tracing::Span>),
        exchange: Exchange<'_>,
    ) -> Result<Arc<Value>, AttemptError> {
        let number = lock(attempt_log)
            .last()
            .map_or(1, |record| record.number.saturating_add(1));
        let span = tracing::info_span!(
            "source.attempt",
            attempt = number,
            status = tracing::field::Empty,
            error = tracing::field::Empty,
            retry = tracing::field::Empty,
            retry_delay_ms = tracing::field::Empty,
            hedged = tracing::field::Empty,
            winner = tracing::field::Empty,
        );
        let result = self
            .attempt_in_span(
                spec,
                state,
                url,
                deadline,
                number,
                attempt_log,
                &span,
                exchange,
            )
            .instrument(span.clone())
            .await;
        match &result {
            Ok(_) => {
                span.record("status", 200);
            }
            Err(error) => {
                if let FetchErrorKind::HttpStatus { status } = &error.kind {
                    span.record("status", status.as_u16());
                }
                span.record("error", tracing::field::display(&error.kind));
                tracing::debug!(parent: &span, source = %spec.name, attempt = number, error = %error.kind, "source attempt failed");
            }
        }
        *last_attempt.lock().unwrap_or_else(PoisonError::into_inner) = span;
        result
    }

    /// [`attempt`](Self::attempt) inside its span.
    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's whole context, passed down once"
    )]
    async fn attempt_in_span(
        &self,
        spec: &SourceSpec,
        state: &SourceState,
        url: &Url,
        deadline: Deadline,
        number: u32,
        attempt_log: &Mutex<Vec<AttemptRecord>>,
        span: &tracing::Span,
        exchange: Exchange<'_>,
    ) -> Result<Arc<Value>, AttemptError> {
        // An open circuit answers at once: nothing is sent, nothing is logged as an attempt.
        let permit = match &state.breaker {
            None => None,
            Some(breaker) => Some(breaker.admit().map_err(|refused| {
                AttemptError::from(FetchErrorKind::CircuitOpen {
                    retry_in: refused.retry_in,
                })
            })?),
        };
        if let Some(limiter) = &state.limiter {
            limiter.take(deadline).await.map_err(|no_slot| {
                AttemptError::from(FetchErrorKind::RateLimited {
                    limit: limiter.limit(),
                    wait: no_slot.wait,
                })
            })?;
        }
        // The attempt's own bound: the earlier of the per-attempt timeout and the caller's deadline. A hedge
        // shares it: it is part of the same attempt.
        let (attempt_deadline, bound) = deadline.narrow(Some(spec.timeout));
        // Boxed: a request's future (reqwest's, and the body reading) is large, and an attempt may hold two.
        let request = |hedge: bool, permit: Option<Permit>| {
            Box::pin(self.request(
                spec,
                state,
                url,
                (attempt_deadline, bound),
                RequestRecord::begin(attempt_log, number, hedge),
                permit,
                exchange,
            ))
        };
        state.hedging.note_request();
        let mut primary = request(false, permit);
        let Some((policy, delay)) = spec
            .hedge
            .as_ref()
            .filter(|_| exchange.lines.is_none())
            .and_then(|policy| Some((policy, state.hedging.delay(policy)?)))
        else {
            return primary.await;
        };
        tokio::select! {
            biased;
            result = &mut primary => return result,
            () = tokio::time::sleep(delay) => {}
        }
        let Some(hedge_permit) = self.admit_hedge(state, policy) else {
            return primary.await;
        };
        span.record("hedged", true);
        let mut hedge = request(true, hedge_permit);
        // The first success wins; the other request is dropped (cancelled) when this returns. If one fails,
        // the other may still succeed.
        let (result, winner) = tokio::select! {
            result = &mut primary => match result {
                Ok(body) => (Ok(body), "primary"),
                Err(_) => (hedge.await, "hedge"),
            },
            result = &mut hedge => match result {
                Ok(body) => (Ok(body), "hedge"),
                Err(_) => (primary.await, "primary"),
            },
        };
        if result.is_ok() {
            span.record("winner", winner);
        }
        result
    }

    /// Whether a slow attempt may be hedged now, and the breaker's permit for the hedge: only while the circuit
    /// is closed, within the hedge budget, with a rate-limit slot free at once (a hedge never waits).
    fn admit_hedge(&self, state: &SourceState, policy: &HedgePolicy) -> Option<Option<Permit>> {
        if state
            .breaker
            .as_ref()
            .is_some_and(|breaker| !breaker.is_closed())
        {
            return None;
        }
        // The budget before the rate slot: a slot taken and then unused would cost the source's real limit.
        if !state.hedging.take_hedge(policy) {
            return None;
        }
        if state
            .limiter
            .as_ref()
            .is_some_and(|limiter| !limiter.try_take())
        {
            return None;
        }
        match &state.breaker {
            None => Some(None),
            Some(breaker) => breaker.admit().ok().map(Some),
        }
    }

    /// One HTTP request of an attempt, bounded by the attempt's deadline; reports to the breaker and the
    /// latency record, and logs itself (as abandoned if it is dropped unfinished).
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's whole context, passed down once"
    )]
    async fn request(
        &self,
        spec: &SourceSpec,
        state: &SourceState,
        url: &Url,
        (attempt_deadline, bound): (Deadline, ElapsedKind),
        record: RequestRecord<'_>,
        permit: Option<Permit>,
        exchange: Exchange<'_>,
    ) -> Result<Arc<Value>, AttemptError> {
        let budget = attempt_deadline.remaining();
        let result = match with_timeout(
            None,
            attempt_deadline,
            self.send_and_read(spec, url, budget, exchange),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(match bound {
                ElapsedKind::PerCallTimeout(timeout) => FetchErrorKind::AttemptTimeout { timeout },
                ElapsedKind::Deadline => FetchErrorKind::DeadlineExceeded,
            }
            .into()),
        };
        if let Some(permit) = permit {
            permit.record(match &result {
                Err(error) if error.kind.counts_against_source() => CallOutcome::Failure,
                _ => CallOutcome::Success,
            });
        }
        if result.is_ok() {
            state.hedging.record_latency(record.started.elapsed());
        }
        record.finish(match &result {
            Ok(_) => AttemptOutcome::Succeeded,
            Err(error) => AttemptOutcome::Failed {
                error: error.kind.clone(),
                // Updated by the retry hooks if the failure is retryable.
                next: RetryDecision::NotRetryable,
            },
        });
        result
    }

    async fn send_and_read(
        &self,
        spec: &SourceSpec,
        url: &Url,
        budget: Option<Duration>,
        exchange: Exchange<'_>,
    ) -> Result<Arc<Value>, AttemptError> {
        if let Some(call) = exchange.call {
            return call().await.map(Arc::new).map_err(AttemptError::from);
        }
        let mut request = match exchange.body {
            Some(body) => self.http.post(url.clone()).json(body),
            None => self.http.get(url.clone()),
        };
        request = request.header(
            ACCEPT,
            HeaderValue::from_static(match exchange.lines {
                Some(_) => "text/event-stream",
                None => "application/json",
            }),
        );
        if let Some(user_agent) = &spec.user_agent {
            request = request.header(USER_AGENT, user_agent.as_str());
        }
        if let Some(token) = &spec.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(budget) = budget {
            request = request.header(DEADLINE_HEADER, budget.as_millis().to_string());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AttemptError {
                kind: FetchErrorKind::HttpStatus { status },
                retry_after: retry::retry_after(response.headers()),
            });
        }
        if let Some(sink) = exchange.lines {
            read_lines_within(response, spec.max_body_bytes, sink).await?;
            return Ok(Arc::new(Value::Null));
        }
        let body = read_body_within(response, spec.max_body_bytes).await?;
        serde_json::from_slice(&body)
            .map(Arc::new)
            .map_err(|error| FetchErrorKind::malformed_json(error, &body).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_for(base_url: &str, request: &SourceRequest) -> String {
        request_url(&Url::parse(base_url).unwrap(), request).to_string()
    }

    #[test]
    fn request_urls_keep_the_base_path_prefix_and_add_the_query() {
        let request = SourceRequest::new("/forecast").with_query("city", "São Paulo");
        assert_eq!(
            url_for("http://127.0.0.1:8080", &request),
            "http://127.0.0.1:8080/forecast?city=S%C3%A3o+Paulo"
        );
        assert_eq!(
            url_for(
                "http://127.0.0.1:8080/api/",
                &SourceRequest::new("forecast")
            ),
            "http://127.0.0.1:8080/api/forecast"
        );
        assert_eq!(
            url_for(
                "http://127.0.0.1:8080/api",
                &SourceRequest::new("/forecast")
            ),
            "http://127.0.0.1:8080/api/forecast"
        );
    }
}

/// How a request is sent and its body read: a GET whose body is one JSON value, or a POST of a JSON body whose
/// response is handed over line by line (and whether any line was).
#[derive(Clone, Copy)]
struct Exchange<'a> {
    body: Option<&'a Value>,
    lines: Option<LineSink<'a>>,
    /// The caller's own transport instead of HTTP ([`SourceClient::call`]).
    call: Option<&'a SourceCall<'a>>,
}

/// Where a streamed answer's lines go, and whether one went.
#[derive(Clone, Copy)]
struct LineSink<'a> {
    on_line: &'a (dyn Fn(&str) + Sync),
    delivered: &'a AtomicBool,
}

impl Exchange<'_> {
    fn json() -> Self {
        Self {
            body: None,
            lines: None,
            call: None,
        }
    }

    /// Whether a line of the answer was handed over: the exchange can no longer be retried.
    fn has_delivered(&self) -> bool {
        self.lines
            .is_some_and(|sink| sink.delivered.load(Ordering::Relaxed))
    }
}

/// Hands each line of the body to `on_line` as it arrives, refusing the body once it exceeds `limit_bytes`; sets
/// `delivered` before the first line goes out. A last line without `\n` is handed over at the end.
async fn read_lines_within(
    response: reqwest::Response,
    limit_bytes: u64,
    LineSink { on_line, delivered }: LineSink<'_>,
) -> Result<(), AttemptError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let hand_over = |line: &[u8]| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        delivered.store(true, Ordering::Relaxed);
        on_line(&String::from_utf8_lossy(line));
    };
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(transport_error)?;
        total = total.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if total > limit_bytes {
            return Err(FetchErrorKind::BodyTooLarge { limit_bytes }.into());
        }
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&byte| byte == b'\n') {
            hand_over(&pending[start..start + end]);
            start += end + 1;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        hand_over(&pending);
    }
    Ok(())
}

/// `fetched` inside a `source.fetch` span for `spec`'s `request`, which records how it ended.
async fn in_fetch_span(
    spec: &SourceSpec,
    request: &SourceRequest,
    fetched: impl Future<Output = Result<Fetched, FetchError>>,
) -> Result<Fetched, FetchError> {
    let span = tracing::info_span!(
        "source.fetch",
        source = %spec.name,
        path = %request.path,
        attempts = tracing::field::Empty,
        cached = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let fetched = fetched.instrument(span.clone()).await;
    match &fetched {
        Ok(fetched) => {
            span.record("attempts", fetched.attempts);
            span.record("cached", fetched.cached);
        }
        Err(error) => {
            span.record("attempts", error.attempts());
            span.record("error", tracing::field::display(error.kind()));
        }
    }
    fetched
}

/// One attempt of a [`SourceClient::call`]: the caller's own request to its source, answering the JSON the
/// source gave or why it failed ([`FetchErrorKind::Call`]). It is called again for each attempt and hedge.
pub type SourceCall<'a> =
    dyn Fn() -> futures::future::BoxFuture<'a, Result<Value, FetchErrorKind>> + Sync + 'a;

/// A failed attempt, with what the server said about retrying.
#[derive(Debug)]
struct AttemptError {
    kind: FetchErrorKind,
    retry_after: Option<Duration>,
}

impl From<FetchErrorKind> for AttemptError {
    fn from(kind: FetchErrorKind) -> Self {
        Self {
            kind,
            retry_after: None,
        }
    }
}

fn transport_error(error: reqwest::Error) -> AttemptError {
    FetchErrorKind::Transport(Arc::new(error)).into()
}

/// Reads the whole body, refusing it as soon as it is known to exceed `limit_bytes`: up front from
/// Content-Length when there is one, otherwise while counting the streamed chunks. At most `limit_bytes` (plus
/// one chunk) is ever held in memory.
async fn read_body_within(
    response: reqwest::Response,
    limit_bytes: u64,
) -> Result<Vec<u8>, AttemptError> {
    let too_large = || AttemptError::from(FetchErrorKind::BodyTooLarge { limit_bytes });
    let declared_length = response.content_length();
    if declared_length.is_some_and(|length| length > limit_bytes) {
        return Err(too_large());
    }
    let capacity = declared_length.unwrap_or(0).min(limit_bytes);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(transport_error)?;
        let new_length = u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX);
        if new_length > limit_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `base_url` + `request.path` (keeping any path prefix of the base) + the request's query.
fn request_url(base_url: &Url, request: &SourceRequest) -> Url {
    let mut url = base_url.clone();
    let path = format!(
        "{}/{}",
        base_url.path().trim_end_matches('/'),
        request.path.trim_start_matches('/')
    );
    url.set_path(&path);
    if !request.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&request.query);
    }
    url
}

/// What followed a failed attempt, as a span field.
fn decision_name(decision: RetryDecision) -> &'static str {
    match decision {
        RetryDecision::Retried { .. } => "retried",
        RetryDecision::NotRetryable => "not_retryable",
        RetryDecision::RetriesExhausted => "retries_exhausted",
        RetryDecision::DeadlineTooClose { .. } => "deadline_too_close",
    }
}

/// A duration in whole milliseconds, for a span field.
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Sets the decision that followed the latest failed request.
fn record_decision(attempt_log: &Mutex<Vec<AttemptRecord>>, decision: RetryDecision) {
    if let Some(next) =
        lock(attempt_log)
            .iter_mut()
            .rev()
            .find_map(|record| match &mut record.outcome {
                AttemptOutcome::Failed { next, .. } => Some(next),
                _ => None,
            })
    {
        *next = decision;
    }
}

/// One request's entry in the attempt log, pushed when it finishes, or as [`AttemptOutcome::Abandoned`] when
/// it is dropped unfinished (the other request of a hedged attempt won, or the caller went away).
struct RequestRecord<'log> {
    log: &'log Mutex<Vec<AttemptRecord>>,
    number: u32,
    hedge: bool,
    started: Instant,
    finished: bool,
}

impl<'log> RequestRecord<'log> {
    fn begin(log: &'log Mutex<Vec<AttemptRecord>>, number: u32, hedge: bool) -> Self {
        Self {
            log,
            number,
            hedge,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, outcome: AttemptOutcome) {
        self.finished = true;
        self.push(outcome);
    }

    fn push(&self, outcome: AttemptOutcome) {
        lock(self.log).push(AttemptRecord {
            number: self.number,
            hedge: self.hedge,
            started: self.started,
            ended: Instant::now(),
            outcome,
        });
    }
}

impl Drop for RequestRecord<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.push(AttemptOutcome::Abandoned);
        }
    }
}

/// The log is only ever pushed to or updated in place, so a panic elsewhere cannot leave it inconsistent.
fn lock(attempt_log: &Mutex<Vec<AttemptRecord>>) -> MutexGuard<'_, Vec<AttemptRecord>> {
    attempt_log.lock().unwrap_or_else(PoisonError::into_inner)
}
