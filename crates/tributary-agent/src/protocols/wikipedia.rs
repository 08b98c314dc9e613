//! Wikipedia's REST APIs (<https://en.wikipedia.org/w/rest.php> and <https://en.wikipedia.org/api/rest_v1/>),
//! keyless: a page search, then the summary of the page found.
//!
//! Rate limit: 200 requests a second for the REST APIs; the agent asks far less (two requests a question, the
//! summaries cached an hour). Wikipedia's policy asks every client for a User-Agent naming the tool and a way
//! to reach its operator: the engine's client sends `tributary/VERSION` (see docs/SOURCES.md).

use std::sync::Arc;

use serde_json::Value;
use tributary::source::SourceRequest;

use super::{Endpoint, NextRequest, Reading, query_value, sentence, text_field};

/// The API host: a source's default `base_url`.
pub const URL: &str = "https://en.wikipedia.org";

/// The search for the page best matching `text`.
pub(crate) fn search_request(text: &str) -> SourceRequest {
    SourceRequest::new("/w/rest.php/v1/search/page")
        .with_query("q", text)
        .with_query("limit", "1")
}

/// The summary request for the page `key` (the title with underscores), percent-encoded as one path segment:
/// "AC/DC" is `AC%2FDC`, not two segments.
fn summary_request(key: &str) -> SourceRequest {
    SourceRequest::new(format!("/api/rest_v1/page/summary/{}", path_segment(key)))
}

/// The search answer: the first page's summary next, or no result (zero hits is `"pages": []`).
pub(crate) fn read_search(request: &SourceRequest, body: &Value) -> Reading {
    let asked = query_value(request, "q").unwrap_or_default();
    let page = body
        .get("pages")
        .and_then(Value::as_array)
        .and_then(|pages| pages.first());
    let key = page.and_then(|page| {
        text_field(page, "key")
            .map(str::to_owned)
            .or_else(|| text_field(page, "title").map(|title| title.replace(' ', "_")))
    });
    let (Some(page), Some(key)) = (page, key) else {
        return Reading::NoResult(format!("Wikipedia has no page matching \"{asked}\""));
    };
    let title = text_field(page, "title").unwrap_or(&key).to_owned();
    Reading::Next(NextRequest {
        request: summary_request(&key),
        endpoint: Endpoint::Base,
        keep: serde_json::json!({ "key": key, "title": title }),
    })
}

/// The summary answer: the answer when it has an extract; no result for a disambiguation page or a page
/// without an extract.
pub(crate) fn read_summary(page: &Value, body: Arc<Value>) -> Reading {
    let title = text_field(&body, "title")
        .or_else(|| text_field(page, "title"))
        .unwrap_or("the page found")
        .to_owned();
    match text_field(&body, "type") {
        Some("disambiguation") => Reading::NoResult(format!(
            "\"{title}\" is ambiguous on Wikipedia (disambiguation page)"
        )),
        _ if text_field(&body, "extract").is_none() => {
            Reading::NoResult(format!("Wikipedia's page \"{title}\" has no summary"))
        }
        _ => Reading::Answer(body),
    }
}

/// Why a summary answered 404: the page the search found is missing.
pub(crate) fn missing_page(page: &Value) -> String {
    let title = text_field(page, "title").unwrap_or("the page found");
    format!("Wikipedia has no page \"{title}\" (HTTP 404)")
}

/// The text inference reads: "Title: description." then the extract.
pub(crate) fn text(body: &Value) -> Option<String> {
    let extract = text_field(body, "extract")?;
    let heading = match (text_field(body, "title"), text_field(body, "description")) {
        (Some(title), Some(description)) => Some(sentence(&format!("{title}: {description}"))),
        (Some(title), None) => Some(sentence(title)),
        (None, Some(description)) => Some(sentence(description)),
        (None, None) => None,
    };
    Some(match heading {
        Some(heading) => format!("{heading} {}", sentence(extract)),
        None => sentence(extract),
    })
}

/// `text` percent-encoded as one URL path segment: every byte but the unreserved characters of RFC 3986.
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_page_found_is_summarised_next_under_its_encoded_key() {
        let body = json!({"pages": [{"id": 1, "key": "AC/DC", "title": "AC/DC", "excerpt": "<span>AC/DC</span>"}]});
        let Reading::Next(next) = read_search(&search_request("acdc"), &body) else {
            panic!("a next request");
        };
        assert_eq!(next.request.path, "/api/rest_v1/page/summary/AC%2FDC");
        assert_eq!(next.keep, json!({"key": "AC/DC", "title": "AC/DC"}));
        assert_eq!(
            path_segment("São Paulo (state)"),
            "S%C3%A3o%20Paulo%20%28state%29"
        );
    }

    #[test]
    fn a_page_without_a_key_is_found_by_its_title() {
        let body = json!({"pages": [{"title": "Global interpreter lock"}]});
        let Reading::Next(next) = read_search(&search_request("gil"), &body) else {
            panic!("a next request");
        };
        assert_eq!(
            next.request.path,
            "/api/rest_v1/page/summary/Global_interpreter_lock"
        );
    }

    #[test]
    fn zero_hits_and_odd_pages_are_no_result() {
        for body in [
            json!({"pages": []}),
            json!({"pages": [{"id": 3, "key": "", "title": null}]}),
            json!({"pages": {"key": "x"}}),
            json!("pages"),
        ] {
            let Reading::NoResult(why) = read_search(&search_request("qwxzy"), &body) else {
                panic!("{body}: not a no-result");
            };
            assert_eq!(why, "Wikipedia has no page matching \"qwxzy\"");
        }
    }

    #[test]
    fn a_disambiguation_page_or_a_missing_extract_is_no_result() {
        let page = json!({"key": "Lyon_(disambiguation)", "title": "Lyon (disambiguation)"});
        let reading = read_summary(
            &page,
            Arc::new(
                json!({"type": "disambiguation", "title": "Lyon", "extract": "Lyon may refer to:"}),
            ),
        );
        let Reading::NoResult(why) = reading else {
            panic!("no result")
        };
        assert_eq!(
            why,
            "\"Lyon\" is ambiguous on Wikipedia (disambiguation page)"
        );
        for body in [
            json!({"type": "no-extract", "title": "Lyon"}),
            json!({"type": "standard", "extract": " "}),
        ] {
            let Reading::NoResult(why) = read_summary(&page, Arc::new(body)) else {
                panic!("no result")
            };
            assert!(why.ends_with("has no summary"), "{why}");
        }
        assert_eq!(
            missing_page(&page),
            "Wikipedia has no page \"Lyon (disambiguation)\" (HTTP 404)"
        );
        assert_eq!(
            missing_page(&json!(null)),
            "Wikipedia has no page \"the page found\" (HTTP 404)"
        );
    }

    #[test]
    fn the_summary_reads_as_its_title_description_and_extract() {
        let body = json!({"type": "standard", "title": "Lyon", "description": "City in France", "extract": "Lyon is the third-largest city of France."});
        assert_eq!(
            text(&body).as_deref(),
            Some("Lyon: City in France. Lyon is the third-largest city of France.")
        );
        assert_eq!(
            text(&json!({"extract": "Just this"})).as_deref(),
            Some("Just this.")
        );
        assert_eq!(text(&json!({"title": "No extract"})), None);
        assert_eq!(text(&json!({"extract": 42})), None);
    }
}
