//! Plan: which sources apply to a question, and with what parameters.
//!
//! - weather: applies when the question names a city the gazetteer knows (longest match wins);
//! - news: applies when the question has content words, which become the search keywords;
//! - knowledge base: always applies, with the whole question.
//!
//! A source that does not apply is planned as [`Action::Skip`] with the reason, and reported `skipped`.

use crate::agent::question::Question;
use crate::sim::find_city_in_text;
use crate::source::{SourceKind, SourceRequest, SourceSpec};

/// The most keywords sent to the news search.
const MAX_NEWS_KEYWORDS: usize = 6;

/// What to do with one source for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Fetch(SourceRequest),
    Skip { reason: String },
}

/// One source and what to do with it.
#[derive(Debug, Clone)]
pub struct Step {
    pub source: SourceSpec,
    pub action: Action,
}

/// Plans every configured source for `question`, in configuration order.
pub fn plan(question: &Question, sources: &[SourceSpec]) -> Vec<Step> {
    sources
        .iter()
        .map(|source| Step {
            source: source.clone(),
            action: plan_source(question, source.kind),
        })
        .collect()
}

fn plan_source(question: &Question, kind: SourceKind) -> Action {
    match kind {
        SourceKind::Weather => match find_city_in_text(question.as_str()) {
            Some(city) => Action::Fetch(request("/weather", "city", city.name)),
            None => Action::Skip {
                reason: "the question names no city the gazetteer knows".to_owned(),
            },
        },
        SourceKind::News => {
            let keywords = keywords(question.as_str());
            if keywords.is_empty() {
                Action::Skip {
                    reason: "the question has no keywords to search the news for".to_owned(),
                }
            } else {
                Action::Fetch(request("/news", "q", &keywords.join(" ")))
            }
        }
        SourceKind::KnowledgeBase => Action::Fetch(request("/kb/search", "q", question.as_str())),
    }
}

fn request(path: &str, key: &str, value: &str) -> SourceRequest {
    SourceRequest {
        path: path.to_owned(),
        query: vec![(key.to_owned(), value.to_owned())],
    }
}

/// The content words of `text`: lower-cased, stop words and one-letter words removed, first occurrence order,
/// no repeats, at most [`MAX_NEWS_KEYWORDS`].
pub fn keywords(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '-' && c != '\'') {
        let word = word.trim_matches(|c| c == '-' || c == '\'').to_lowercase();
        if word.chars().count() < 2 || STOP_WORDS.contains(&word.as_str()) || found.contains(&word)
        {
            continue;
        }
        found.push(word);
        if found.len() == MAX_NEWS_KEYWORDS {
            break;
        }
    }
    found
}

const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "between", "both", "but", "by", "can", "could", "did", "do", "does",
    "doing", "during", "each", "for", "from", "get", "give", "had", "has", "have", "how", "i",
    "if", "in", "into", "is", "it", "its", "it's", "just", "latest", "like", "me", "more", "most",
    "my", "new", "news", "no", "not", "now", "of", "on", "or", "our", "out", "over", "please",
    "should", "so", "some", "tell", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "to", "today", "tomorrow", "under", "up", "us", "was", "we",
    "weather", "were", "what", "what's", "when", "where", "which", "while", "who", "why", "will",
    "with", "would", "you", "your",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_drop_stop_words_and_repeats_and_keep_order() {
        assert_eq!(
            keywords("What is the latest news about the GIL and the gil in Python?"),
            vec!["gil", "python"]
        );
    }

    #[test]
    fn keywords_are_capped() {
        assert_eq!(
            keywords("alpha beta gamma delta epsilon zeta eta theta").len(),
            MAX_NEWS_KEYWORDS
        );
    }

    #[test]
    fn a_question_of_only_stop_words_has_no_keywords() {
        assert!(keywords("what is it?").is_empty());
    }
}
