//! Async I/O to information sources: the resilient HTTP client, retries and the single-flight cache.
//!
//! - `spec`: [`SourceSpec`], one source and how patiently to ask it.
//! - `client`: [`SourceClient::fetch`] (and [`SourceClient::call`], the same machinery over a caller's own
//!   transport), one shared connection pool; per-attempt timeouts inside the caller's
//!   [`Deadline`](crate::group::Deadline); a response-size limit enforced while streaming.
//! - `retry`: full-jitter backoff, `Retry-After`, and the per-attempt log ([`AttemptRecord`]) that callers draw on
//!   their timelines.
//! - `cache`: the TTL cache that also coalesces concurrent identical requests into one upstream call.
//! - `breaker`: the per-source circuit breaker ([`BreakerPolicy`]): a source that keeps failing is answered at
//!   once with [`FetchErrorKind::CircuitOpen`] until a cool-down has passed and probes succeed.
//! - `hedge`: hedged requests ([`HedgePolicy`]): a slow attempt gets one more identical request after a fixed
//!   delay or the source's own latency percentile, within a budget; the first success wins.
//! - `rate`: per-source rate limits ([`RateLimit`]), waited for within the deadline.
//! - `resolve`: host names looked up as futures, cancelled with their request ([`NameResolution`]).
//! - `state`: what the client keeps per source between fetches (breaker, limiter, latencies, hedge budget).
//! - `error`: [`FetchError`] and its [`FetchErrorKind`]s, which the agent maps to statuses.
//! - `tests`: the client and the cache against scripted servers on loopback.
//!
//! # Invariants
//! - No fetch outlives its caller: this module spawns no task, so dropping a `fetch` future cancels the request,
//!   its retries and its backoff sleeps.
//! - No attempt, retry or backoff sleep runs past the caller's deadline: a delay that would end after it is not
//!   slept, and the last failure is reported instead.
//! - No body larger than the source's `max_body_bytes` is ever held in memory (plus at most one network chunk).
//! - Only successes are cached; a failure is shared with the callers that waited on it, then forgotten.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tributary::group::Deadline;
//! use tributary::source::{ClientOptions, SourceClient, SourceRequest, SourceSpec};
//!
//! let mut weather = SourceSpec::new("weather", "http://127.0.0.1:8080".parse()?);
//! weather.cache_ttl = Some(Duration::from_secs(60));
//! let client = SourceClient::new(ClientOptions::default())?;
//! let request = SourceRequest::new("/weather").with_query("city", "Lyon");
//! let fetched = client.fetch(&weather, &request, Deadline::after(Duration::from_secs(3))).await?;
//! println!("{} after {} attempt(s), cached: {}", fetched.body, fetched.attempts, fetched.cached);
//! # Ok(())
//! # }
//! ```

mod breaker;
mod cache;
mod client;
mod error;
mod hedge;
mod rate;
mod resolve;
mod retry;
mod spec;
mod state;

pub use breaker::{BreakerPolicy, CircuitReport, CircuitState, MAX_WINDOW_CALLS};
pub use client::{
    ClientBuildError, ClientOptions, DEADLINE_HEADER, Fetched, SourceCall, SourceClient,
    SourceRequest, USER_AGENT_DEFAULT,
};
pub use error::{CallFailure, FetchError, FetchErrorKind};
pub use hedge::{HedgeDelay, HedgePolicy};
pub use rate::RateLimit;
pub use resolve::NameResolution;
pub use retry::{AttemptOutcome, AttemptRecord, BackoffPolicy, FullJitter, RetryDecision};
pub use spec::{
    BearerToken, DEFAULT_MAX_BODY_BYTES, DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_CACHE_TTL,
    SourceSpec,
};

#[cfg(test)]
mod tests;
