//! The embedded simulated services: real HTTP services on loopback, with fault injection, so that tributary runs
//! and is tested on a machine with no network.
//!
//! [`SimServer::start`] serves three JSON APIs from one axum server. Their data are generated from
//! [`SimConfig::seed`] or written by us, so the same request always gets the same answer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tributary_sim::SimError> {
//! use tributary_sim::{Fault, Service, SimConfig, SimServer};
//!
//! let mut config = SimConfig::default();
//! config.behavior_mut(Service::News).fault = Some(Fault::Unavailable { retry_after: std::time::Duration::from_secs(1) });
//! config.behavior_mut(Service::News).fault_probability = 0.1; // one request in ten
//! let server = SimServer::start("127.0.0.1:0".parse().expect("valid address"), config).await?;
//! let weather_url = format!("{}?city=Lima", server.url(Service::Weather));
//! # let _ = weather_url;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Endpoints
//!
//! Every response is JSON (`Content-Type: application/json`) unless a fault says otherwise. Errors have the shape
//! `{"error": {"status": 404, "code": "unknown_city", "message": "..."}}`; a missing or blank required parameter,
//! or a parameter that does not parse, is a 400 with `"code": "bad_request"`.
//!
//! ## `GET /weather?city=NAME`
//! `NAME` is matched case-, accent- and punctuation-insensitively against [`cities()`] (and a few aliases such as
//! "NYC" or "Bombay"); an unknown city is a 404 with `"code": "unknown_city"`.
//! ```json
//! {
//!   "city": {"name": "São Paulo", "country": "Brazil", "latitude": -23.55, "longitude": -46.63},
//!   "current": {"condition": "light rain", "temperature_c": 24.3, "feels_like_c": 24.3,
//!               "humidity_pct": 78, "wind_kph": 12.4, "wind_direction": "SE", "precipitation_mm": 1.9},
//!   "forecast": [{"days_ahead": 1, "condition": "sunny", "high_c": 28.1, "low_c": 19.0,
//!                 "precipitation_chance_pct": 7}, "... 3 days in all"],
//!   "summary": "Light rain in São Paulo, Brazil, at 24.3°C (feels like 24.3°C) with 12 km/h winds from the SE; tomorrow sunny, 19.0 to 28.1°C."
//! }
//! ```
//!
//! ## `GET /news?q=QUERY[&page=N]`
//! BM25 ranking over a generated corpus of news articles; 10 per page, pages from 1 (default 1); a page past
//! the end has an empty `articles`. `score` is the BM25 score (higher is better), rounded to 4 decimals.
//! ```json
//! {
//!   "query": "solar power", "page": 1, "per_page": 10, "total": 57,
//!   "articles": [{"id": "news-0042", "title": "...", "summary": "...", "body": "...",
//!                 "published_at": "2026-02-03T14:05:00Z", "outlet": "The Meridian Post",
//!                 "city": "Lagos", "country": "Nigeria", "topic": "energy", "score": 9.8123}]
//! }
//! ```
//!
//! ## `GET /kb/search?q=QUESTION[&limit=N]`
//! Full-text search (SQLite FTS5, ranked by `bm25`) over our articles about concurrency. `limit` is 1 to 50,
//! default 5. `score` is the negated `bm25()` value, so higher is better; `snippet` marks matches with `[...]`.
//! ```json
//! {
//!   "query": "what is the GIL?", "total": 3,
//!   "results": [{"id": "gil", "title": "The global interpreter lock (GIL)", "text": "...",
//!                "snippet": "...the [GIL] lets one thread...", "score": 7.1234}]
//! }
//! ```
//!
//! ## `GET /health` and `GET /`
//! `/health` answers `{"status": "ok"}` and is never faulted. `/` lists the services, their parameters, their
//! configured latency and fault, and the override parameters.
//!
//! # Fault injection
//! Each service has a start-up [`ServiceBehavior`]: a [`Latency`] (none, fixed, or log-normal with a tail), an
//! optional [`Fault`], and the probability that a request gets it. Any request may override them:
//! `latency_ms=N` (fixed latency), `fault=KIND` (always injected; `fault=none` disables a configured fault),
//! `retry_after=SECONDS` (the Retry-After of a `fault=unavailable` given in the same request; a start-up
//! `unavailable` fault keeps its configured value). A bad override value is a 400. Latency comes first, then the
//! fault, so a slow error is possible. What each fault does to the response:
//!
//! | fault         | status | body                                                                         |
//! |---------------|--------|------------------------------------------------------------------------------|
//! | `error`       | 500    | JSON error body                                                              |
//! | `unavailable` | 503    | JSON error body, `Retry-After: SECONDS` (default 2)                          |
//! | `hang`        | none   | never answers; at shutdown the request ends with a 503 or a closed connection |
//! | `slow-body`   | real   | the real body, 8 bytes every 100 ms (about 13 s per KiB)                     |
//! | `malformed`   | real   | the real body cut in half: `application/json` that does not parse           |
//! | `huge`        | 200    | [`HUGE_BODY_BYTES`] of valid JSON with a `Content-Length`, streamed in chunks  |
//!
//! Hanging and dripping responses end when the server shuts down. The latency and fault draws come from a
//! per-service random generator seeded from [`SimConfig::seed`], so a run with one sequential client is
//! reproducible; concurrent clients interleave the draws.
//!
//! # Layout
//! - `config.rs`: [`Service`], [`Fault`], [`Latency`], [`ServiceBehavior`], [`SimConfig`], and
//!   [`default_scenario`], the latencies `tributary ask` runs on.
//! - `server.rs`: [`SimServer`]: binding, routing, request counting, shutdown.
//! - `fault.rs`: per-request plans (latency, fault) and the misbehaving responses; [`faults`]: `SOURCE=KIND`, how
//!   a driver asks for a fault (parsed, checked, turned into the override parameters).
//! - `weather.rs`, `cities.rs`: the weather service and its city table ([`find_city_in_text`] for the planner).
//! - `news.rs`: the generated news corpus and its in-memory BM25 index.
//! - `kb.rs`, `kb/articles/*.md`: the knowledge base (SQLite FTS5) and its articles.
//! - `seed.rs`: deterministic random streams from the seed.
//! - `error.rs`: [`SimError`], [`ParseNameError`] and the JSON error bodies.

mod cities;
mod config;
mod error;
mod fault;
pub mod faults;
mod kb;
mod news;
mod seed;
pub mod serve;
mod server;
mod weather;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

pub use cities::{City, cities, city_named_in, find_city, find_city_in_text};
pub use config::{
    DEFAULT_RETRY_AFTER, Fault, HUGE_BODY_BYTES, Latency, Service, ServiceBehavior, SimConfig,
    default_scenario,
};
pub use error::{ParseNameError, SimError};
pub use fault::MAX_LATENCY_OVERRIDE;
pub use server::SimServer;
