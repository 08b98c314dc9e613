//! Hacker News stories through Algolia's search API (<https://hn.algolia.com/api>), keyless: one request.
//!
//! Rate limit: 10,000 requests an hour per IP address.

use std::sync::Arc;

use serde_json::Value;
use tributary::source::SourceRequest;

use super::{Reading, query_value, sentence, text_field};

/// The search API: a source's default `base_url`.
pub const URL: &str = "https://hn.algolia.com";

/// Stories asked for per question.
pub(crate) const HITS_PER_PAGE: usize = 5;

/// The longest story text read from one hit, in characters: the title says most, and a long self-post would
/// crowd out the other stories.
const MAX_STORY_CHARS: usize = 1_000;

/// The search for stories matching `keywords`.
pub(crate) fn search_request(keywords: &str) -> SourceRequest {
    SourceRequest::new("/api/v1/search")
        .with_query("query", keywords)
        .with_query("tags", "story")
        .with_query("hitsPerPage", HITS_PER_PAGE.to_string())
}

/// The answer, or no result when no hit has a title or text (zero hits is `"hits": []`).
pub(crate) fn read(request: &SourceRequest, body: Arc<Value>) -> Reading {
    if text(&body).is_some() {
        Reading::Answer(body)
    } else {
        Reading::NoResult(format!(
            "Hacker News has no story matching \"{}\"",
            query_value(request, "query").unwrap_or_default()
        ))
    }
}

/// The text inference reads: each story's title with its points and comments, then its text (HTML removed).
pub(crate) fn text(body: &Value) -> Option<String> {
    let hits = body.get("hits").and_then(Value::as_array)?;
    let mut sentences = Vec::new();
    for hit in hits {
        let title = text_field(hit, "title");
        if let Some(title) = title {
            let number = |key: &str| hit.get(key).and_then(Value::as_u64);
            let standing = match (number("points"), number("num_comments")) {
                (Some(points), Some(comments)) => {
                    format!(" ({points} points, {comments} comments on Hacker News)")
                }
                (Some(points), None) => format!(" ({points} points on Hacker News)"),
                (None, Some(comments)) => format!(" ({comments} comments on Hacker News)"),
                (None, None) => String::new(),
            };
            sentences.push(sentence(&format!(
                "{}{standing}",
                title.trim_end_matches('.')
            )));
        }
        if let Some(story) = text_field(hit, "story_text") {
            let story: String = strip_html(story).chars().take(MAX_STORY_CHARS).collect();
            if !story.trim().is_empty() {
                sentences.push(sentence(&story));
            }
        }
    }
    (!sentences.is_empty()).then(|| sentences.join(" "))
}

/// `html` as plain text: tags dropped (a paragraph break becomes a space), the common entities decoded,
/// whitespace collapsed.
fn strip_html(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for character in html.chars() {
        match character {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            _ => text.push(character),
        }
    }
    let decoded = text
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_story_reads_as_its_title_standing_and_text() {
        let body = json!({"hits": [
            {"title": "Python 3.13 removes the GIL", "points": 412, "num_comments": 230, "story_text": null},
            {"title": "Ask HN: Is free threading ready?", "points": 12, "story_text": "<p>We tried it &amp; it&#x27;s fast.<p>Really."},
            {"title": "", "story_text": "   "},
            {"points": "many"}
        ]});
        assert_eq!(
            text(&body).as_deref(),
            Some(
                "Python 3.13 removes the GIL (412 points, 230 comments on Hacker News). \
                 Ask HN: Is free threading ready? (12 points on Hacker News). We tried it & it's fast. Really."
            )
        );
    }

    #[test]
    fn zero_hits_or_hits_without_text_are_no_result() {
        let request = search_request("atlantis weather");
        for body in [
            json!({"hits": [], "nbHits": 0}),
            json!({"hits": [{"title": null}, {"url": "https://example.com"}]}),
            json!({"nbHits": 3}),
            json!({"hits": "none"}),
            json!(null),
        ] {
            let Reading::NoResult(why) = read(&request, Arc::new(body.clone())) else {
                panic!("{body}: not a no-result");
            };
            assert_eq!(
                why,
                "Hacker News has no story matching \"atlantis weather\""
            );
        }
    }

    #[test]
    fn html_is_stripped_even_when_broken() {
        assert_eq!(strip_html("a<b>b</b>c"), "a b c");
        assert_eq!(strip_html("unclosed <a href="), "unclosed");
        assert_eq!(strip_html("x > y &amp;&lt;"), "x > y &<");
    }
}
