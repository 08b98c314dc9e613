//! Text processing the model is built from: words, sentences, stopwords and a small sentiment lexicon.
//!
//! Everything here is cheap and deterministic; the CPU cost of inference lives in [`super::work`].

/// Lowercase words of `text`: runs of alphanumeric characters. An apostrophe inside a word is dropped
/// (`don't` → `dont`) so that negations such as `isn't` stay one token.
pub(crate) fn words(text: &str) -> Vec<String> {
    split_words(text, Case::Lower)
}

/// The same words as [`words`], in the same order, but as written (`Berlin`, `NASA`), for display.
pub(crate) fn words_as_written(text: &str) -> Vec<String> {
    split_words(text, Case::AsWritten)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    AsWritten,
}

fn split_words(text: &str, case: Case) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for character in text.chars() {
        if character.is_alphanumeric() {
            match case {
                Case::Lower => current.extend(character.to_lowercase()),
                Case::AsWritten => current.push(character),
            }
        } else if matches!(character, '\'' | '’') && !current.is_empty() {
            // Keep the word going: "don't" becomes "dont".
        } else if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The sentences of `text`, trimmed, with inner line breaks collapsed to single spaces.
///
/// A sentence ends at `.`, `!` or `?` followed by whitespace (so `12.5` does not split) or at a line break.
/// Fragments without any alphanumeric character are dropped.
pub(crate) fn sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut characters = text.char_indices().peekable();
    while let Some((index, character)) = characters.next() {
        let next_is_space_or_end = characters
            .peek()
            .is_none_or(|(_, next)| next.is_whitespace());
        let ends_sentence =
            character == '\n' || (matches!(character, '.' | '!' | '?') && next_is_space_or_end);
        if ends_sentence {
            let end = index + character.len_utf8();
            push_sentence(&mut sentences, &text[start..end]);
            start = end;
        }
    }
    push_sentence(&mut sentences, &text[start..]);
    sentences
}

fn push_sentence(sentences: &mut Vec<String>, fragment: &str) {
    if fragment.chars().any(char::is_alphanumeric) {
        sentences.push(fragment.split_whitespace().collect::<Vec<_>>().join(" "));
    }
}

/// Whether `word` carries content: not a stopword, not a bare number, at least two characters long.
pub(crate) fn is_content_word(word: &str) -> bool {
    word.chars().count() >= 2
        && !word.chars().all(|character| character.is_ascii_digit())
        && !STOPWORDS.contains(&word)
}

/// Whether `word` is common in any English text, so says little about this document (the "background" half of
/// a tf-idf weighting, without needing a corpus).
pub(crate) fn is_background_word(word: &str) -> bool {
    BACKGROUND_WORDS.contains(&word)
}

/// The sentiment weight of `word` in -3..=3, or `None` when the lexicon does not know it.
pub(crate) fn sentiment_weight(word: &str) -> Option<i32> {
    POSITIVE_WORDS
        .iter()
        .find(|(known, _)| *known == word)
        .map(|(_, weight)| *weight)
        .or_else(|| {
            NEGATIVE_WORDS
                .iter()
                .find(|(known, _)| *known == word)
                .map(|(_, weight)| -*weight)
        })
}

/// Whether `word` negates the sentiment of the words that follow it ("not good").
pub(crate) fn is_negation(word: &str) -> bool {
    NEGATIONS.contains(&word)
}

#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
    "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
    "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "itself", "just", "me", "more", "most", "my", "myself", "nor", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
    "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours",
    "yourself", "yourselves", "also", "may", "might", "must", "shall", "s", "t", "tell", "please", "whats",
    "its", "im", "ive", "youre", "theyre", "thats", "theres", "let", "lets", "get", "got", "been", "much",
    "many", "there", "via", "per",
];

#[rustfmt::skip]
const BACKGROUND_WORDS: &[&str] = &[
    "according", "around", "day", "days", "expected", "first", "like", "made", "make", "new", "news", "one",
    "people", "report", "reported", "reports", "said", "says", "still", "three", "time", "today", "tomorrow",
    "two", "week", "weeks", "well", "year", "years", "yesterday", "know", "known", "latest", "use", "used",
    "using", "way", "many", "part", "said", "say", "since", "think", "going", "back", "even", "another",
];

#[rustfmt::skip]
const POSITIVE_WORDS: &[(&str, i32)] = &[
    ("good", 2), ("great", 3), ("excellent", 3), ("sunny", 2), ("clear", 1), ("warm", 1), ("pleasant", 2),
    ("calm", 1), ("mild", 1), ("success", 2), ("successful", 2), ("succeeded", 2), ("improve", 2),
    ("improved", 2), ("improves", 2), ("improvement", 2), ("growth", 2), ("gain", 2), ("gains", 2), ("win", 2),
    ("wins", 2), ("won", 2), ("happy", 3), ("benefit", 2), ("benefits", 2), ("safe", 2), ("strong", 1),
    ("stable", 1), ("recovery", 2), ("recovered", 2), ("breakthrough", 3), ("positive", 2), ("celebrate", 3),
    ("celebrated", 3), ("best", 3), ("better", 2), ("beautiful", 3), ("bright", 2), ("hope", 2),
    ("hopeful", 2), ("praised", 2), ("boost", 2), ("boosts", 2), ("boosted", 2), ("efficient", 2),
    ("reliable", 2), ("love", 3), ("nice", 2), ("easy", 1), ("fair", 1), ("fine", 1), ("sunshine", 2),
    ("welcome", 2), ("progress", 2), ("thrive", 3), ("thriving", 3), ("healthy", 2), ("award", 2),
    ("innovative", 2), ("opportunity", 2), ("robust", 2), ("fast", 1), ("clean", 1), ("peaceful", 2),
];

#[rustfmt::skip]
const NEGATIVE_WORDS: &[(&str, i32)] = &[
    ("bad", 2), ("terrible", 3), ("awful", 3), ("storm", 2), ("storms", 2), ("stormy", 2), ("rain", 1),
    ("rainy", 1), ("flood", 3), ("floods", 3), ("flooding", 3), ("cold", 1), ("freezing", 2), ("hail", 2),
    ("thunderstorm", 2), ("thunderstorms", 2), ("gale", 2), ("gales", 2), ("warning", 2), ("warnings", 2),
    ("danger", 3), ("dangerous", 3), ("crisis", 3), ("crash", 3), ("failure", 3), ("fail", 2), ("failed", 2),
    ("fails", 2), ("loss", 2), ("losses", 2), ("decline", 2), ("declines", 2), ("declined", 2), ("fell", 1),
    ("drop", 1), ("risk", 2), ("risks", 2), ("threat", 2), ("threats", 2), ("war", 3), ("conflict", 2),
    ("injured", 3), ("killed", 3), ("death", 3), ("deaths", 3), ("dead", 3), ("disaster", 3), ("outage", 2),
    ("outages", 2), ("delay", 1), ("delays", 1), ("delayed", 1), ("slow", 1), ("problem", 2), ("problems", 2),
    ("error", 2), ("errors", 2), ("worse", 2), ("worst", 3), ("poor", 2), ("sad", 2), ("angry", 2),
    ("fear", 2), ("fears", 2), ("concern", 1), ("concerns", 1), ("shortage", 2), ("shortages", 2),
    ("protest", 1), ("protests", 1), ("fire", 2), ("fires", 2), ("wildfire", 3), ("drought", 2),
    ("pollution", 2), ("unsafe", 2), ("weak", 1), ("bug", 2), ("bugs", 2), ("collapse", 3), ("collapsed", 3),
    ("damage", 2), ("damaged", 2), ("severe", 2), ("deadlock", 2), ("hate", 3), ("miserable", 3),
];

#[rustfmt::skip]
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "hardly", "isnt", "arent", "wasnt", "werent", "dont", "doesnt", "didnt",
    "cannot", "cant", "wont", "neither", "nor",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercase_and_keep_contractions_whole() {
        assert_eq!(
            words("Don't PANIC: 42 towels!"),
            ["dont", "panic", "42", "towels"]
        );
        assert!(words("  ...  ").is_empty());
        assert_eq!(
            words_as_written("Don't PANIC: 42 towels!"),
            ["Dont", "PANIC", "42", "towels"]
        );
    }

    #[test]
    fn sentences_split_on_terminators_but_not_on_decimals() {
        let text = "It is 12.5 degrees. Rain later!\nWind from the west? yes";
        assert_eq!(
            sentences(text),
            [
                "It is 12.5 degrees.",
                "Rain later!",
                "Wind from the west?",
                "yes"
            ]
        );
        assert!(sentences("").is_empty());
    }

    #[test]
    fn lexicon_knows_polarity_and_content_words() {
        assert_eq!(sentiment_weight("great"), Some(3));
        assert_eq!(sentiment_weight("storm"), Some(-2));
        assert_eq!(sentiment_weight("table"), None);
        assert!(is_content_word("forecast"));
        assert!(!is_content_word("the"));
        assert!(!is_content_word("2026"));
    }
}
