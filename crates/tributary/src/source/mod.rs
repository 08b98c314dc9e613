//! Async I/O to information sources: the resilient HTTP client, retries, the single-flight cache and the
//! sources configuration.
//!
//! - `config`: [`SourcesConfig`] and [`SourceSpec`], loaded from a TOML file with errors that point at the line.
//! - `client`: [`SourceClient::fetch`], one shared connection pool; per-attempt timeouts inside the caller's
//!   [`Deadline`](crate::group::Deadline); a response-size limit enforced while streaming.
//! - `retry`: full-jitter backoff, `Retry-After`, and the per-attempt log ([`AttemptRecord`]) that callers draw on
//!   their timelines.
//! - `cache`: the TTL cache that also coalesces concurrent identical requests into one upstream call.
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
//! use tributary::source::{ClientOptions, SourceClient, SourceRequest, SourcesConfig};
//!
//! let config = SourcesConfig::from_path("sources.toml".as_ref())?;
//! let client = SourceClient::new(ClientOptions::default())?;
//! let weather = config.get("weather").expect("configured");
//! let request = SourceRequest::new("/weather").with_query("city", "Lyon");
//! let fetched = client.fetch(weather, &request, Deadline::after(Duration::from_secs(3))).await?;
//! println!("{} after {} attempt(s), cached: {}", fetched.body, fetched.attempts, fetched.cached);
//! # Ok(())
//! # }
//! ```

mod cache;
mod client;
mod config;
mod error;
mod retry;

pub use client::{ClientBuildError, ClientOptions, Fetched, SourceClient, SourceRequest};
pub use config::{
    ConfigError, DEFAULT_MAX_BODY_BYTES, DEFAULT_RETRIES, DEFAULT_TIMEOUT, EmbeddedSourceUrls,
    MAX_RETRIES, SourceKind, SourceSpec, SourcesConfig,
};
pub use error::{FetchError, FetchErrorKind};
pub use retry::{AttemptOutcome, AttemptRecord, BackoffPolicy, FullJitter, RetryDecision};

#[cfg(test)]
mod tests;
