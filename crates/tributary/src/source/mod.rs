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
