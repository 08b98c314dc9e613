//! How each [`SourceKind`] reads a response, and whether a second request follows: the adapters for the real,
//! keyless public APIs, beside the simulated protocol (which always answers in one request).
//!
//! - `open_meteo`: Open-Meteo. Geocoding (`/v1/search`, on the geocoding host), then the forecast
//!   (`/v1/forecast`, on the source's `base_url`) for the coordinates found; the text is the current conditions
//!   in words.
//! - `hn_algolia`: Hacker News stories through Algolia's search (`/api/v1/search`), one request.
//! - `wikipedia`: Wikipedia's REST APIs. A page search (`/w/rest.php/v1/search/page`), then the summary of the
//!   page found (`/api/rest_v1/page/summary/KEY`).
//!
//! # A kind that needs two requests
//! The planner makes the first request ([`crate::plan`]). [`crate::step::fetch_source`] sends it through the
//! engine's `SourceClient::fetch` and hands the body to `read`, which says what it means: the `Reading` is
//! the answer, nothing for the question (`Reading::NoResult`, reported `no_result`), or the next request,
//! built from this response, and the part of it to keep (`Reading::Next`). The second request goes through
//! `fetch` too (retries, cache, its spans on the source's timeline lane), within the same per-source deadline;
//! its body and what was kept make the answer. A failed request that means "nothing here" (Wikipedia's 404 for
//! a missing page) is read by `read_failure`.
//!
//! Every field of every response is optional: a missing or odd field gives `no_result` or a shorter text,
//! never a panic.

pub(crate) mod hn_algolia;
pub(crate) mod open_meteo;
pub(crate) mod wikipedia;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use tributary::source::{FetchError, FetchErrorKind, SourceRequest, SourceSpec};

use crate::sources::{Source, SourceKind};

pub use hn_algolia::URL as HN_ALGOLIA_URL;
pub use open_meteo::{FORECAST_URL as OPEN_METEO_URL, GEOCODING_URL as OPEN_METEO_GEOCODING_URL};
pub use wikipedia::URL as WIKIPEDIA_URL;

/// The most requests one source makes for one question.
pub(crate) const MAX_REQUESTS: usize = 2;

/// Which of a source's hosts a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The source's `base_url`.
    Base,
    /// Open-Meteo's geocoding API: the source's `geocoding_url`, or the real one.
    Geocoding,
}

/// What one response means for the question.
#[derive(Debug)]
pub(crate) enum Reading {
    /// The body inference reads ([`crate::extract::document_for`]).
    Answer(Arc<Value>),
    /// The source answered but has nothing for the question, and why.
    NoResult(String),
    /// Ask this next.
    Next(NextRequest),
}

/// The second request of a two-request kind.
#[derive(Debug)]
pub(crate) struct NextRequest {
    /// The request.
    pub(crate) request: SourceRequest,
    /// Where it goes.
    pub(crate) endpoint: Endpoint,
    /// What the answer needs of the first response (the place found, the page found).
    pub(crate) keep: Value,
}

/// Where the first request of `kind` goes.
pub(crate) fn first_endpoint(kind: SourceKind) -> Endpoint {
    match kind {
        SourceKind::OpenMeteo => Endpoint::Geocoding,
        _ => Endpoint::Base,
    }
}

/// `source`'s spec for a request to `endpoint`: the same name (the cache keys on it and the path), timeout,
/// retries, cache and size limit, with the endpoint's base URL.
pub(crate) fn spec_for(source: &Source, endpoint: Endpoint) -> Cow<'_, SourceSpec> {
    match endpoint {
        Endpoint::Base => Cow::Borrowed(&source.spec),
        Endpoint::Geocoding => {
            let mut spec = source.spec.clone();
            spec.base_url = source
                .geocoding_url
                .clone()
                .unwrap_or_else(open_meteo::geocoding_url);
            Cow::Owned(spec)
        }
    }
}

/// What `body`, the answer to `request`, means for a source of `kind`; `kept` is what the first response left
/// when this is the second.
pub(crate) fn read(
    kind: SourceKind,
    kept: Option<&Value>,
    request: &SourceRequest,
    body: Arc<Value>,
) -> Reading {
    match (kind, kept) {
        (SourceKind::Weather, _) => Reading::Answer(body),
        (SourceKind::News, _) => read_listing(request, body, "articles", "no news article"),
        (SourceKind::KnowledgeBase, _) => {
            read_listing(request, body, "results", "the knowledge base has no entry")
        }
        (SourceKind::OpenMeteo, None) => open_meteo::read_geocoding(request, &body),
        (SourceKind::OpenMeteo, Some(place)) => open_meteo::read_forecast(place, &body),
        (SourceKind::HnAlgolia, _) => hn_algolia::read(request, body),
        (SourceKind::Wikipedia, None) => wikipedia::read_search(request, &body),
        (SourceKind::Wikipedia, Some(page)) => wikipedia::read_summary(page, body),
        (SourceKind::Mcp, _) => match crate::sources::result_text(&body) {
            Some(_) => Reading::Answer(body),
            None => Reading::NoResult(format!("the tool `{}` answered no text", request.path)),
        },
    }
}

/// A search of the simulated services (news, knowledge base): no result when its list `field` is empty, which is
/// how both say that nothing matched (a response without the list is read as it is).
fn read_listing(request: &SourceRequest, body: Arc<Value>, field: &str, none: &str) -> Reading {
    let empty = body
        .get(field)
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    if empty {
        Reading::NoResult(format!(
            "{none} matching \"{}\"",
            query_value(request, "q").unwrap_or_default()
        ))
    } else {
        Reading::Answer(body)
    }
}

/// Why a failed request means "nothing for the question" rather than a failure, for the few that do: a
/// Wikipedia summary answered 404 (the page is missing).
pub(crate) fn read_failure(
    kind: SourceKind,
    kept: Option<&Value>,
    error: &FetchError,
) -> Option<String> {
    let FetchErrorKind::HttpStatus { status } = error.kind() else {
        return None;
    };
    match (kind, kept) {
        (SourceKind::Wikipedia, Some(page)) if status.as_u16() == 404 => {
            Some(wikipedia::missing_page(page))
        }
        _ => None,
    }
}

/// The first value of query parameter `key` in `request`.
pub(crate) fn query_value<'a>(request: &'a SourceRequest, key: &str) -> Option<&'a str> {
    request
        .query
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// A non-empty, trimmed string field of `value`.
pub(crate) fn text_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// `text` ending with a full stop (or the `!`/`?` it already has).
pub(crate) fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sources::SourcesConfig;

    /// Odd JSON everywhere a field is read: wrong types, nulls, empty containers, huge and negative numbers.
    fn odd_bodies() -> Vec<Value> {
        let odd = [
            json!(null),
            json!(true),
            json!(-1),
            json!(1e308),
            json!(""),
            json!([]),
            json!({}),
            json!([null, {}]),
            json!({"": null}),
        ];
        let keys = [
            "results",
            "pages",
            "hits",
            "current",
            "current_units",
            "place",
            "forecast",
            "title",
            "extract",
            "type",
            "key",
            "latitude",
            "longitude",
            "weather_code",
            "temperature_2m",
            "story_text",
            "points",
        ];
        let mut bodies: Vec<Value> = odd.to_vec();
        for key in keys {
            for value in &odd {
                bodies.push(json!({ key: value }));
                bodies.push(json!({ key: [value] }));
                bodies.push(
                    json!({ "place": { key: value }, "forecast": { "current": { key: value } } }),
                );
                bodies.push(json!({ "results": [{ key: value, "latitude": 1, "longitude": 2 }] }));
            }
        }
        bodies
    }

    #[test]
    fn no_response_of_any_shape_panics_any_kind() {
        let sources = SourcesConfig::public().sources;
        for body in odd_bodies() {
            for kind in SourceKind::ALL {
                let request = SourceRequest::new("/");
                let first = read(kind, None, &request, Arc::new(body.clone()));
                let kept = match first {
                    Reading::Next(next) => next.keep,
                    _ => body.clone(),
                };
                let _ = read(kind, Some(&kept), &request, Arc::new(body.clone()));
                let _ = read(kind, Some(&body), &request, Arc::new(kept.clone()));
                for source in &sources {
                    let _ = crate::extract::document_for(source, &body);
                }
            }
        }
    }

    #[test]
    fn the_first_request_of_open_meteo_goes_to_its_geocoding_host() {
        let mut source = SourcesConfig::public().sources.remove(0);
        assert_eq!(first_endpoint(source.kind), Endpoint::Geocoding);
        assert_eq!(
            spec_for(&source, Endpoint::Geocoding).base_url.as_str(),
            "https://geocoding-api.open-meteo.com/"
        );
        source.geocoding_url = Some("http://127.0.0.1:9/geo".parse().expect("a url"));
        let geocoding = spec_for(&source, Endpoint::Geocoding);
        assert_eq!(geocoding.base_url.as_str(), "http://127.0.0.1:9/geo");
        assert_eq!(
            geocoding.name, source.spec.name,
            "one cache namespace, one rate limit"
        );
        assert_eq!(
            spec_for(&source, Endpoint::Base).base_url,
            source.spec.base_url
        );
    }
}
