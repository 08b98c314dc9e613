//! [`SourceSpec`]: one HTTP source and how patiently to ask it.

use std::time::Duration;

use url::Url;

use super::breaker::BreakerPolicy;
use super::hedge::HedgePolicy;
use super::rate::RateLimit;

/// Per-attempt timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries after the first attempt when none are given.
pub const DEFAULT_RETRIES: u32 = 2;
/// Response-size limit when none is given: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The longest a cached answer stays fresh: a longer [`SourceSpec::cache_ttl`] counts as this (the cache's
/// clock cannot represent centuries).
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// One HTTP source and how to ask it: where it is, how long each attempt may take, how often to retry, whether
/// to cache, and how large an answer may be.
///
/// Build one with [`SourceSpec::new`] (which fills in the defaults) and adjust the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceSpec {
    /// Unique name; also the cache namespace.
    pub name: String,
    /// Requests go to `base_url` + the request path (a path prefix in `base_url` is kept).
    pub base_url: Url,
    /// Bound on each attempt, from sending the request to the last byte of the body. Always inside the
    /// caller's overall deadline.
    pub timeout: Duration,
    /// Retries after the first attempt; `0` means one attempt only.
    pub retries: u32,
    /// How long an answer stays fresh in the cache (at most [`MAX_CACHE_TTL`]); `None` means no caching (and no
    /// request coalescing).
    pub cache_ttl: Option<Duration>,
    /// Bodies larger than this are refused while streaming, without buffering them.
    pub max_body_bytes: u64,
    /// At most this many requests per period, waited for within the caller's deadline; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Hedge slow attempts with one more identical request; `None` (the default): never.
    pub hedge: Option<HedgePolicy>,
    /// Stop asking a source that keeps failing until a cool-down has passed; `None` (the default): always ask.
    pub breaker: Option<BreakerPolicy>,
    /// The `User-Agent` sent to this source; `None`: the client's (`tributary/VERSION (+URL)`).
    pub user_agent: Option<String>,
    /// Sent as `Authorization: Bearer TOKEN` (an API key); `None`: no `Authorization` header.
    pub bearer_token: Option<BearerToken>,
}

/// A secret sent as a bearer token. Its `Debug` shows no part of it, so a spec can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("BearerToken(***)")
    }
}

impl SourceSpec {
    /// How long its answers stay fresh in the cache, if they are cached at all: `cache_ttl` when longer than zero,
    /// at most [`MAX_CACHE_TTL`].
    pub fn cache_lifetime(&self) -> Option<Duration> {
        self.cache_ttl
            .filter(|ttl| !ttl.is_zero())
            .map(|ttl| ttl.min(MAX_CACHE_TTL))
    }

    /// A source with the default timeout (2 s), retries (2), size limit (1 MiB), and no cache, rate limit, hedging
    /// or circuit breaker.
    pub fn new(name: impl Into<String>, base_url: Url) -> Self {
        Self {
            name: name.into(),
            base_url,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            cache_ttl: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limit: None,
            hedge: None,
            breaker: None,
            user_agent: None,
            bearer_token: None,
        }
    }
}
