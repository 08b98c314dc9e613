//! From a source's JSON response to the text the simulated LLM reads.
//!
//! Each kind has a known shape (see [`SourceKind`]; the public APIs' are read in [`crate::protocols`]); anything
//! else falls back to collecting the
//! readable string fields of the response in document order, so a configured source with another schema still
//! gives inference something to read.

use serde_json::Value;

use crate::infer::Document;
use crate::protocols;
use crate::sources::{Source, SourceKind};

/// Fields that hold prose, in the order they are worth reading.
const PROSE_FIELDS: &[&str] = &[
    "title",
    "summary",
    "text",
    "passage",
    "snippet",
    "body",
    "content",
    "description",
];

/// The document for one source's response.
pub fn document_for(source: &Source, body: &Value) -> Document {
    let text = match source.kind {
        SourceKind::Weather => weather_text(body),
        SourceKind::News => None,
        SourceKind::KnowledgeBase => Some(knowledge_text(body)),
        SourceKind::OpenMeteo => protocols::open_meteo::text(body),
        SourceKind::HnAlgolia => protocols::hn_algolia::text(body),
        SourceKind::Wikipedia => protocols::wikipedia::text(body),
        SourceKind::Mcp => crate::sources::result_text(body),
    }
    .unwrap_or_else(|| prose(body));
    Document::new(source.name(), text)
}

/// The knowledge base's results without their `snippet`: an excerpt of the same `text` with the search terms in
/// brackets, which read twice, brackets and all, in 95 of 300 answers.
fn knowledge_text(body: &Value) -> String {
    let mut without_snippets = body.clone();
    if let Some(results) = without_snippets
        .get_mut("results")
        .and_then(Value::as_array_mut)
    {
        for result in results.iter_mut().filter_map(Value::as_object_mut) {
            result.remove("snippet");
        }
    }
    prose(&without_snippets)
}

fn weather_text(body: &Value) -> Option<String> {
    let mut sentences = Vec::new();
    if let Some(summary) = body.get("summary").and_then(Value::as_str) {
        sentences.push(summary.to_owned());
    }
    if let Some(days) = body.get("forecast").and_then(Value::as_array) {
        for day in days {
            if let Some(summary) = day.get("summary").and_then(Value::as_str) {
                sentences.push(summary.to_owned());
            }
        }
    }
    (!sentences.is_empty()).then(|| sentences.join(" "))
}

/// Every prose field anywhere in `value`, in document order, each ending with a full stop.
pub fn prose(value: &Value) -> String {
    let mut sentences = Vec::new();
    collect_prose(value, &mut sentences);
    sentences.join(" ")
}

fn collect_prose(value: &Value, sentences: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for field in PROSE_FIELDS {
                if let Some(text) = map.get(*field).and_then(Value::as_str) {
                    let text = text.trim();
                    if !text.is_empty() {
                        let ends_a_sentence = text.ends_with(['.', '!', '?']);
                        let sentence = if ends_a_sentence {
                            text.to_owned()
                        } else {
                            format!("{text}.")
                        };
                        // A headline often repeats as the summary's first sentence: read it once.
                        if !sentences.contains(&sentence) {
                            sentences.push(sentence);
                        }
                    }
                }
            }
            for (key, nested) in map {
                if nested.is_object() || nested.is_array() {
                    let _ = key;
                    collect_prose(nested, sentences);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_prose(item, sentences)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prose_collects_readable_fields_in_order_and_ends_sentences() {
        let body = json!({
            "total": 2,
            "articles": [
                {"title": "Rust 2.0 ships", "summary": "It is fast.", "score": 3.2},
                {"title": "Python 3.14", "body": "Free threading lands"}
            ]
        });
        assert_eq!(
            prose(&body),
            "Rust 2.0 ships. It is fast. Python 3.14. Free threading lands."
        );
    }

    #[test]
    fn a_field_repeating_an_earlier_one_is_read_once() {
        let body = json!({"title": "Rain in Lima", "summary": "Rain in Lima."});
        assert_eq!(prose(&body), "Rain in Lima.");
    }

    #[test]
    fn a_body_without_prose_gives_empty_text() {
        assert_eq!(prose(&json!({"n": 1, "list": [1, 2]})), "");
    }

    /// The snippet repeated the text with the search terms in brackets: "…or [GIL], is a mutex…" in the answer.
    #[test]
    fn the_knowledge_base_is_read_without_its_highlighted_snippets() {
        let body = json!({"query": "gil", "results": [{
            "id": "gil",
            "title": "The GIL",
            "text": "The global interpreter lock, or GIL, is a mutex.",
            "snippet": "…or [GIL], is a mutex.",
        }]});
        let text = knowledge_text(&body);
        assert_eq!(
            text,
            "The GIL. The global interpreter lock, or GIL, is a mutex."
        );
    }
}
