//! The single-flight TTL cache in front of the HTTP client.
//!
//! [`moka`] does the hard parts: concurrent lookups of one missing key run a single initialiser while the other
//! callers wait for its result, failed initialisations are not stored, and entries expire. This module adds the
//! key normalisation (so `?b=2&a=1` and `?a=1&b=2` share an entry) and the per-source time to live.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use moka::Expiry;
use moka::future::Cache;

use super::client::{Fetched, SourceRequest};
use super::error::FetchError;

/// Which upstream request a cached answer is for: the source name plus the normalised request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    source_name: String,
    /// The path with exactly one leading `/`.
    path: String,
    /// The query pairs, sorted, so that their order in the request does not matter.
    query: Vec<(String, String)>,
}

impl CacheKey {
    pub(crate) fn new(source_name: &str, request: &SourceRequest) -> Self {
        let mut query = request.query.clone();
        query.sort();
        Self {
            source_name: source_name.to_owned(),
            path: format!("/{}", request.path.trim_start_matches('/')),
            query,
        }
    }
}

/// A successful answer and how long it stays fresh.
#[derive(Debug, Clone)]
struct CachedAnswer {
    fetched: Arc<Fetched>,
    time_to_live: Duration,
}

/// Expires each entry after its own source's time to live.
#[derive(Debug, Clone, Copy)]
struct PerSourceTimeToLive;

impl Expiry<CacheKey, CachedAnswer> for PerSourceTimeToLive {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &CachedAnswer,
        _created_at: StdInstant,
    ) -> Option<Duration> {
        Some(value.time_to_live)
    }
}

/// Shared by all clones of a [`SourceClient`](super::SourceClient).
#[derive(Clone)]
pub(crate) struct ResponseCache {
    entries: Cache<CacheKey, CachedAnswer>,
}

/// Not derived: moka's `Debug` lists every entry, bodies included.
impl fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

/// A failed lookup: the fetch's error, shared by every caller that waited on it.
pub(crate) struct SharedFailure {
    pub(crate) error: Arc<FetchError>,
    /// `true` when this caller ran the failed fetch, `false` when it waited on another caller's.
    pub(crate) ran_fetch: bool,
}

/// A cache lookup's answer, and whether this caller is the one that fetched it.
pub(crate) struct Lookup {
    pub(crate) fetched: Arc<Fetched>,
    /// `true` when this caller ran the upstream fetch, `false` when it got another caller's answer.
    pub(crate) fetched_by_this_caller: bool,
}

impl ResponseCache {
    pub(crate) fn new(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerSourceTimeToLive)
                .build(),
        }
    }

    /// The fresh cached answer for `key`, or the result of `fetch`, which runs at most once however many callers
    /// ask for the same key at the same time. A failure is handed to all the callers waiting on it, and is not
    /// stored: the next lookup fetches again.
    pub(crate) async fn get_or_fetch(
        &self,
        key: CacheKey,
        time_to_live: Duration,
        fetch: impl Future<Output = Result<Fetched, FetchError>>,
    ) -> Result<Lookup, SharedFailure> {
        let mut ran_fetch = false;
        let lookup = self
            .entries
            .entry(key)
            .or_try_insert_with(async {
                ran_fetch = true;
                fetch.await.map(|fetched| CachedAnswer {
                    fetched: Arc::new(fetched),
                    time_to_live,
                })
            })
            .await;
        match lookup {
            Ok(entry) => Ok(Lookup {
                fetched_by_this_caller: entry.is_fresh(),
                fetched: entry.into_value().fetched,
            }),
            Err(error) => Err(SharedFailure { error, ran_fetch }),
        }
    }
}
