//! Finding the place a question is about, for weather sources.
//!
//! Two ways, one per kind of weather source:
//!
//! - `weather` (the simulated protocol): the agent does not know which places the service understands; whoever
//!   builds the agent does. The simulated services know their gazetteer of cities
//!   (`tributary_sim::city_named_in`). So the planner asks a [`PlaceFinder`] it is given, and any
//!   `Fn(&str) -> Option<String>` is one.
//! - `open-meteo`: the service geocodes names itself, so no gazetteer is needed, only a *candidate* name from
//!   the question's text: [`place_candidate`] (a heuristic over capitalised words, see there). A wrong
//!   candidate costs one geocoding request that answers "no such place" (`no_result`).
//!
//! ```
//! use std::sync::Arc;
//! use tributary_agent::places::{NoPlaces, PlaceFinder};
//!
//! let known: Arc<dyn PlaceFinder> =
//!     Arc::new(|text: &str| text.contains("Lima").then(|| "Lima".to_owned()));
//! assert_eq!(known.find_place("Is it raining in Lima?").as_deref(), Some("Lima"));
//! assert_eq!(NoPlaces.find_place("Is it raining in Lima?"), None);
//! ```

use std::fmt;

/// Finds the place a question names, as the name to send to a weather source.
pub trait PlaceFinder: Send + Sync {
    /// The place `text` names, if it names one the weather sources are likely to know.
    fn find_place(&self, text: &str) -> Option<String>;
}

impl<F> PlaceFinder for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn find_place(&self, text: &str) -> Option<String> {
        self(text)
    }
}

impl fmt::Debug for dyn PlaceFinder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("PlaceFinder")
    }
}

/// Finds no place: weather sources are always skipped. The default until a driver provides a finder.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPlaces;

impl PlaceFinder for NoPlaces {
    fn find_place(&self, _text: &str) -> Option<String> {
        None
    }
}

/// Finds a place name by [`place_candidate`], without a gazetteer: what a geocoding source needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CapitalizedNames;

impl PlaceFinder for CapitalizedNames {
    fn find_place(&self, text: &str) -> Option<String> {
        place_candidate(text)
    }
}

/// Words that introduce a place: "weather **in** Lyon", "**near** Mount Fuji".
const PLACE_PREPOSITIONS: &[&str] = &["in", "at", "for", "near", "around"];

/// Lower-case words that may sit inside a place name between capitalised ones: "Rio **de** Janeiro", "Frankfurt
/// **am** Main", "Isle **of** Man".
const NAME_CONNECTORS: &[&str] = &[
    "de", "da", "do", "dos", "das", "del", "della", "di", "du", "des", "la", "le", "les", "am",
    "an", "im", "of", "on", "upon", "sur", "y", "en", "van", "von", "der", "den", "al", "el",
];

/// Capitalised words that are not places, wherever they stand: question words, pronouns, days, months.
const NOT_PLACES: &[&str] = &[
    "i",
    "what",
    "what's",
    "whats",
    "will",
    "is",
    "are",
    "does",
    "do",
    "how",
    "how's",
    "should",
    "can",
    "could",
    "would",
    "tell",
    "give",
    "show",
    "please",
    "the",
    "a",
    "an",
    "it",
    "today",
    "tomorrow",
    "tonight",
    "yesterday",
    "weather",
    "forecast",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "celsius",
    "fahrenheit",
    "news",
    "latest",
];

/// Words that say a question is about the weather: only then is a capitalised name that no preposition
/// introduces taken as a place ("Lyon weather tomorrow?"), so that "Tell me about Rust" asks no weather.
const WEATHER_WORDS: &[&str] = &[
    "weather",
    "forecast",
    "rain",
    "raining",
    "rainy",
    "snow",
    "snowing",
    "sunny",
    "sun",
    "wind",
    "windy",
    "temperature",
    "hot",
    "cold",
    "warm",
    "umbrella",
    "storm",
    "cloudy",
    "humid",
    "humidity",
    "degrees",
    "temperatures",
    "snowy",
    "fog",
    "foggy",
    "freezing",
    "frost",
    "heat",
    "heatwave",
    "thunder",
    "thunderstorm",
    "drizzle",
    "showers",
    "hail",
    "celsius",
    "fahrenheit",
];

/// Whether `text` asks about the weather (rain, wind, forecast, temperature, ...): weather sources are asked only
/// then, so that naming a city ("Any news about event loops in Cairo?") does not add its weather to the answer.
pub fn about_weather(text: &str) -> bool {
    words_of(text)
        .iter()
        .any(|word| WEATHER_WORDS.contains(&word.text.to_lowercase().as_str()))
}

/// The most words a candidate holds ("Santa Cruz de la Sierra" is five).
const MAX_NAME_WORDS: usize = 6;

/// A place name the question seems to give, without knowing any place: the first run of capitalised words
/// after "in", "at", "for", "near" or "around" ("Will it rain in São Paulo tomorrow?" → "São Paulo"; "weather
/// in New York City" → "New York City"), with lower-case connectors inside a name ("Rio de Janeiro"), a
/// leading "the" skipped, and punctuation ending it ("in Lyon, France" → "Lyon"). Failing that, when the
/// question talks about the weather, the first capitalised run that is not a question word ("Lyon weather
/// tomorrow?" → "Lyon").
///
/// A letter without case (東京) counts as capitalised. Days, months and question words are never places. It
/// errs towards a candidate: "What is new in Rust?" gives "Rust", which the geocoder may well find (in Austria);
/// a source that must not guess gets a [`PlaceFinder`] of its own.
pub fn place_candidate(text: &str) -> Option<String> {
    let words = words_of(text);
    let after_preposition = (0..words.len())
        .filter(|&index| {
            let word = &words[index];
            !word.ends_clause && PLACE_PREPOSITIONS.contains(&word.text.to_lowercase().as_str())
        })
        .find_map(|index| name_at(&words, index + 1, true));
    after_preposition.or_else(|| {
        if !about_weather(text) {
            return None;
        }
        (0..words.len()).find_map(|index| name_at(&words, index, false))
    })
}

/// One word of the question, trimmed of punctuation.
#[derive(Debug)]
struct Word<'a> {
    text: &'a str,
    /// Punctuation followed it (`,` `.` `?` `;` `:` `!` or a closing bracket or quote): a name ends here.
    ends_clause: bool,
}

fn words_of(text: &str) -> Vec<Word<'_>> {
    text.split_whitespace()
        .filter_map(|raw| {
            let trimmed_end = raw.trim_end_matches(|c: char| !c.is_alphanumeric());
            let ends_clause = trimmed_end.len() != raw.len();
            let mut word = trimmed_end.trim_start_matches(|c: char| !c.is_alphanumeric());
            // A possessive is not part of the name: "Lyon's old town".
            for suffix in ["'s", "\u{2019}s"] {
                if let Some(stem) = word.strip_suffix(suffix) {
                    word = stem;
                }
            }
            (!word.is_empty()).then_some(Word {
                text: word,
                ends_clause: ends_clause || word.len() != trimmed_end.len(),
            })
        })
        .collect()
}

/// The name starting at `start`, if a capitalised word is there (after a "the", when `after_preposition`).
fn name_at(words: &[Word<'_>], start: usize, after_preposition: bool) -> Option<String> {
    let mut index = start;
    if after_preposition && words.get(index)?.text == "the" {
        if words[index].ends_clause {
            return None;
        }
        index += 1;
    }
    let first = words.get(index)?;
    // "The Hague": a capitalised article after a preposition starts the name, when a name follows it.
    let article_of_a_name = after_preposition
        && first.text == "The"
        && !first.ends_clause
        && words
            .get(index + 1)
            .is_some_and(|next| is_capitalized(next.text));
    if !is_capitalized(first.text)
        || (NOT_PLACES.contains(&first.text.to_lowercase().as_str()) && !article_of_a_name)
    {
        return None;
    }
    let mut name: Vec<&str> = vec![first.text];
    let mut last = first;
    index += 1;
    while !last.ends_clause && name.len() < MAX_NAME_WORDS {
        let Some(next) = words.get(index) else { break };
        if is_capitalized(next.text) && !NOT_PLACES.contains(&next.text.to_lowercase().as_str()) {
            name.push(next.text);
            last = next;
            index += 1;
            continue;
        }
        // A connector belongs to the name only when a capitalised word follows it: "Rio de Janeiro", not
        // "Lyon de nuit".
        let joins = NAME_CONNECTORS.contains(&next.text.to_lowercase().as_str())
            && !next.ends_clause
            && words
                .get(index + 1)
                .is_some_and(|after| is_capitalized(after.text));
        if !joins {
            break;
        }
        name.push(next.text);
        index += 1;
        last = next;
    }
    Some(name.join(" "))
}

/// Whether a word starts with a letter that is not lower case (upper case, or a script without case), after
/// an elided article: "Paris", "東京", "d'Ivoire", "L'Aquila".
fn is_capitalized(word: &str) -> bool {
    let unelided = ["d'", "l'", "d\u{2019}", "l\u{2019}"]
        .iter()
        .find_map(|prefix| word.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(word);
    unelided
        .chars()
        .next()
        .is_some_and(|first| first.is_alphabetic() && !first.is_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_after_a_preposition_is_the_candidate() {
        for (question, place) in [
            ("Will it rain in São Paulo tomorrow?", "São Paulo"),
            ("weather in New York City", "New York City"),
            ("What's the weather at Mount Fuji?", "Mount Fuji"),
            ("Forecast for Reykjavík please", "Reykjavík"),
            ("Is it windy near Cape Town?", "Cape Town"),
            ("In Paris, will it be sunny?", "Paris"),
            ("I live in Lyon. Will it rain?", "Lyon"),
            ("weather in Lyon, France", "Lyon"),
            ("weather in Rio de Janeiro", "Rio de Janeiro"),
            ("weather in Frankfurt am Main today", "Frankfurt am Main"),
            ("news from the beaches in the Hague", "Hague"),
            ("weather in The Hague", "The Hague"),
            ("weather in Saint-Étienne?", "Saint-Étienne"),
            ("Is it cold in Côte d'Ivoire?", "Côte d'Ivoire"),
            ("Any storm in L'Aquila?", "L'Aquila"),
            ("weather in Lyon's old town", "Lyon"),
            ("Weather in \"Zürich\"?", "Zürich"),
            ("天気 in 東京?", "東京"),
            ("Will it snow in ÅLESUND", "ÅLESUND"),
        ] {
            assert_eq!(
                place_candidate(question).as_deref(),
                Some(place),
                "{question}"
            );
        }
    }

    #[test]
    fn days_months_and_lower_case_words_after_a_preposition_are_passed_over() {
        assert_eq!(
            place_candidate("Will it rain on Monday in January in Oslo?").as_deref(),
            Some("Oslo")
        );
        assert_eq!(
            place_candidate("What's in the news in Berlin today?").as_deref(),
            Some("Berlin")
        );
        assert_eq!(
            place_candidate("weather in Lyon de nuit").as_deref(),
            Some("Lyon")
        );
    }

    #[test]
    fn without_a_preposition_a_weather_question_names_its_place_anywhere() {
        assert_eq!(
            place_candidate("Lyon weather tomorrow?").as_deref(),
            Some("Lyon")
        );
        assert_eq!(
            place_candidate("Will Buenos Aires be hot?").as_deref(),
            Some("Buenos Aires")
        );
    }

    #[test]
    fn a_question_without_a_place_has_no_candidate() {
        for question in [
            "Will it rain tomorrow?",
            "What is the latest news about the GIL?",
            "Tell me about Rust",
            "weather in paris",
            "what is in the news?",
            "in",
            "",
            "?!, ...",
            "Weather in the",
        ] {
            assert_eq!(place_candidate(question), None, "{question}");
        }
    }

    #[test]
    fn a_long_run_of_capitalised_words_is_capped() {
        let candidate = place_candidate("weather in A B C D E F G H").expect("a candidate");
        assert_eq!(candidate.split(' ').count(), MAX_NAME_WORDS);
    }

    #[test]
    fn odd_text_never_panics() {
        for text in [
            "'s",
            "in 's",
            "in d'",
            "in l\u{2019}",
            "\u{2019}s in",
            "in \u{0}",
        ] {
            let _ = place_candidate(text);
        }
        assert_eq!(
            CapitalizedNames.find_place("rain in Lima?").as_deref(),
            Some("Lima")
        );
    }
}
