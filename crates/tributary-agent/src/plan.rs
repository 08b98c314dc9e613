//! Plan: which sources apply to a question, and with what parameters.
//!
//! - weather: applies when the question is about the weather ([`about_weather`]) and the agent's [`PlaceFinder`]
//!   finds a place in it;
//! - news: applies when the question has content words, which become the search keywords;
//! - knowledge base: applies when the question has content words, which become the search;
//! - open-meteo: applies when the question is about the weather and [`place_candidate`] finds a name to geocode
//!   (no gazetteer: the API resolves it);
//! - hn-algolia: applies when the question has content words, which become the search keywords;
//! - wikipedia: applies when the question has content words, which become the page search.
//!
//! A two-request kind's first request is planned here; its second is built from the first's response
//! ([`crate::protocols`]).
//!
//! A source that does not apply is planned as [`Action::Skip`] with the reason, and reported `skipped`.

use tributary::source::SourceRequest;

use crate::places::{PlaceFinder, about_weather, place_candidate};
use crate::protocols::{hn_algolia, open_meteo, wikipedia};
use crate::question::Question;
use crate::sources::{McpTool, Source, SourceKind};

/// The most keywords sent to the news search.
const MAX_NEWS_KEYWORDS: usize = 6;

/// What to do with one source for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the source this.
    Fetch(SourceRequest),
    /// Do not ask it, for this reason (reported with status `skipped`).
    Skip {
        /// Why the source does not apply, e.g. "the question names no place".
        reason: String,
    },
}

/// One source and what to do with it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The source.
    pub source: Source,
    /// What to ask it, or why not.
    pub action: Action,
}

/// Plans every configured source for `question`, in configuration order.
pub fn plan(question: &Question, sources: &[Source], places: &dyn PlaceFinder) -> Vec<Step> {
    sources
        .iter()
        .map(|source| Step {
            source: source.clone(),
            action: match &source.mcp {
                Some(tool) => tool_call(question, tool),
                None => plan_source(question, source.kind, places),
            },
        })
        .collect()
}

fn plan_source(question: &Question, kind: SourceKind, places: &dyn PlaceFinder) -> Action {
    if matches!(kind, SourceKind::Weather | SourceKind::OpenMeteo)
        && !about_weather(question.as_str())
    {
        return Action::Skip {
            reason: "the question is not about the weather".to_owned(),
        };
    }
    match kind {
        SourceKind::Weather => match places.find_place(question.as_str()) {
            Some(place) => Action::Fetch(request("/weather", "city", &place)),
            None => Action::Skip {
                reason: "the question names no city the gazetteer knows".to_owned(),
            },
        },
        SourceKind::News => with_keywords(
            question,
            "the question has no keywords to search the news for",
            |keywords| request("/news", "q", keywords),
        ),
        // The content words, as for the news: "news" or "weather" in a question say which source to read, not
        // what to look up ("What's the news about rust?" once matched the knowledge base's page on fan-out).
        SourceKind::KnowledgeBase => with_keywords(
            question,
            "the question has no keywords to look up",
            |keywords| request("/kb/search", "q", keywords),
        ),
        SourceKind::OpenMeteo => match place_candidate(question.as_str()) {
            Some(place) => Action::Fetch(open_meteo::geocode_request(&place)),
            None => Action::Skip {
                reason: "the question names no place to look up".to_owned(),
            },
        },
        SourceKind::HnAlgolia => with_keywords(
            question,
            "the question has no keywords to search for",
            hn_algolia::search_request,
        ),
        SourceKind::Wikipedia => with_keywords(
            question,
            "the question has no keywords to search for",
            wikipedia::search_request,
        ),
        SourceKind::Mcp => Action::Skip {
            reason: "an `mcp` source needs its server and tool (`Source::mcp`)".to_owned(),
        },
    }
}

/// An `mcp` source's call: the tool, and its arguments for the question, as the request (the cache's key; the
/// timeline's label).
fn tool_call(question: &Question, tool: &McpTool) -> Action {
    let arguments = tool.arguments_for(question.as_str(), &keywords(question.as_str()).join(" "));
    Action::Fetch(SourceRequest {
        path: tool.tool.clone(),
        query: vec![(
            TOOL_ARGUMENTS.to_owned(),
            serde_json::Value::Object(arguments).to_string(),
        )],
    })
}

/// The query key of an `mcp` source's request that holds the tool's arguments, as JSON.
pub const TOOL_ARGUMENTS: &str = "arguments";

/// Asks with the question's content words ([`keywords`], space-separated), or skips the source for `no_keywords`.
fn with_keywords(
    question: &Question,
    no_keywords: &str,
    ask: impl FnOnce(&str) -> SourceRequest,
) -> Action {
    let keywords = keywords(question.as_str());
    if keywords.is_empty() {
        Action::Skip {
            reason: no_keywords.to_owned(),
        }
    } else {
        Action::Fetch(ask(&keywords.join(" ")))
    }
}

fn request(path: &str, key: &str, value: &str) -> SourceRequest {
    SourceRequest {
        path: path.to_owned(),
        query: vec![(key.to_owned(), value.to_owned())],
    }
}

/// The content words of `text`: lower-cased, stop words and one-letter words removed, first occurrence order,
/// no repeats, at most six.
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
    use url::Url;

    use super::*;
    use crate::places::NoPlaces;
    use crate::sources::SourcesConfig;

    #[test]
    fn the_weather_source_asks_for_the_place_found_and_is_skipped_without_one() {
        let sources =
            SourcesConfig::all_kinds_at(&Url::parse("http://127.0.0.1:1").expect("url")).sources;
        let question = Question::new("Will it rain in Lima tomorrow?").expect("valid");
        let lima = |text: &str| text.contains("Lima").then(|| "Lima".to_owned());
        let steps = plan(&question, &sources, &lima);
        assert_eq!(
            steps[0].action,
            Action::Fetch(SourceRequest::new("/weather").with_query("city", "Lima"))
        );
        assert_eq!(
            steps[1].action,
            Action::Fetch(SourceRequest::new("/news").with_query("q", "rain lima"))
        );
        let steps = plan(&question, &sources, &NoPlaces);
        assert!(matches!(steps[0].action, Action::Skip { .. }));
        assert!(matches!(steps[2].action, Action::Fetch(_)));
    }

    /// Naming a city once added its weather to any answer ("Any news about event loops in Cairo?"), and the
    /// knowledge base was searched for "news" when asked for the news about rust.
    #[test]
    fn weather_is_asked_only_about_the_weather_and_the_kb_only_for_the_content_words() {
        let sources =
            SourcesConfig::all_kinds_at(&Url::parse("http://127.0.0.1:1").expect("url")).sources;
        let cairo = |text: &str| text.contains("Cairo").then(|| "Cairo".to_owned());
        let question = Question::new("Any news about event loops in Cairo?").expect("valid");
        let steps = plan(&question, &sources, &cairo);
        assert_eq!(
            steps[0].action,
            Action::Skip {
                reason: "the question is not about the weather".to_owned()
            }
        );
        assert_eq!(
            steps[2].action,
            Action::Fetch(SourceRequest::new("/kb/search").with_query("q", "event loops cairo"))
        );
        let question = Question::new("Is it windy in Cairo?").expect("valid");
        let steps = plan(&question, &sources, &cairo);
        assert!(matches!(steps[0].action, Action::Fetch(_)));
        let public = SourcesConfig::public().sources;
        let question = Question::new("What happened in São Paulo?").expect("valid");
        assert!(matches!(
            plan(&question, &public, &NoPlaces)[0].action,
            Action::Skip { .. }
        ));
    }

    #[test]
    fn the_public_kinds_plan_their_first_request_without_a_gazetteer() {
        let sources = SourcesConfig::public().sources;
        let question = Question::new("Will it rain in São Paulo tomorrow?").expect("valid");
        let steps = plan(&question, &sources, &NoPlaces);
        assert_eq!(
            steps[0].action,
            Action::Fetch(
                SourceRequest::new("/v1/search")
                    .with_query("name", "São Paulo")
                    .with_query("count", "1")
                    .with_query("language", "en")
                    .with_query("format", "json")
            )
        );
        assert_eq!(
            steps[1].action,
            Action::Fetch(
                SourceRequest::new("/api/v1/search")
                    .with_query("query", "rain são paulo")
                    .with_query("tags", "story")
                    .with_query("hitsPerPage", "5")
            )
        );
        assert_eq!(
            steps[2].action,
            Action::Fetch(
                SourceRequest::new("/w/rest.php/v1/search/page")
                    .with_query("q", "rain são paulo")
                    .with_query("limit", "1")
            )
        );
        let steps = plan(
            &Question::new("what is it?").expect("valid"),
            &sources,
            &NoPlaces,
        );
        assert!(
            steps
                .iter()
                .all(|step| matches!(step.action, Action::Skip { .. }))
        );
    }

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
