//! Composing one answer from the per-source inferences (cheap: safe to call on the async runtime).

use serde::{Deserialize, Serialize};

use super::model::{Inference, Sentiment, round3};
use crate::sources::Topic;

/// The unified answer to a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The question answered.
    pub question: String,
    /// A few lines: weather first, then news, then background knowledge, then any other source, and finally
    /// the list of sources that contributed.
    pub text: String,
    /// The sources that contributed, in the order their lines appear.
    pub sources: Vec<String>,
    /// The mean sentiment of the contributing sources (neutral when there are none).
    pub sentiment: Sentiment,
}

/// Compose one answer from per-source results, given as `(source name, topic, inference)`.
///
/// The order of `parts` does not matter (sources finish in any order): lines are sorted by the source's
/// [`Topic`] (weather, news, knowledge), given rather than guessed from its name, so a source named
/// `lyon-meteo` still reads as the weather, and then by name; several parts from one source (e.g. one per news
/// article) keep their given order and the source is named once.
pub fn aggregate(question: &str, parts: &[(&str, Topic, &Inference)]) -> Answer {
    let mut ordered: Vec<(Topic, &str, &Inference)> = parts
        .iter()
        .map(|(name, topic, inference)| (*topic, *name, *inference))
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));

    let mut lines = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    let mut contributing_scores = Vec::new();
    for (topic, name, inference) in &ordered {
        if let Some(line) = line(*topic, inference) {
            lines.push(line);
            contributing_scores.push(inference.sentiment.score);
            // A source may contribute several documents (news articles); name it once.
            if !sources.iter().any(|source| source == name) {
                sources.push((*name).to_owned());
            }
        }
    }
    if sources.is_empty() {
        lines.push(format!(
            "No source had anything to say about \"{}\".",
            question.trim()
        ));
    } else {
        lines.push(format!("Sources: {}.", sources.join(", ")));
    }

    let mean = if contributing_scores.is_empty() {
        0.0
    } else {
        contributing_scores.iter().sum::<f64>() / contributing_scores.len() as f64
    };
    Answer {
        question: question.to_owned(),
        text: lines.join("\n"),
        sources,
        sentiment: Sentiment::from_score(round3(mean)),
    }
}

/// Whether a source on `topic` with this inference has anything to say in an answer.
pub(crate) fn contributes(topic: Topic, inference: &Inference) -> bool {
    line(topic, inference).is_some()
}

/// The line a source on `topic` contributes, or `None` when its inference found nothing to say.
fn line(topic: Topic, inference: &Inference) -> Option<String> {
    let sentences = |count: usize| {
        let picked: Vec<&str> = inference
            .summary
            .iter()
            .take(count)
            .map(String::as_str)
            .collect();
        if picked.is_empty() {
            // Fall back on the generated text when no sentence was found relevant.
            (!inference.generated.is_empty()).then(|| inference.generated.clone())
        } else {
            Some(picked.join(" "))
        }
    };
    match topic {
        Topic::Weather => sentences(1).map(|text| format!("Weather: {text}")),
        Topic::News => {
            let body = sentences(2);
            match (&inference.title, body) {
                (Some(title), Some(body)) => Some(format!("In the news: {title}. {body}")),
                (Some(title), None) => Some(format!("In the news: {title}.")),
                (None, Some(body)) => Some(format!("In the news: {body}")),
                (None, None) => None,
            }
        }
        Topic::Knowledge => sentences(2).map(|text| format!("Background: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{Document, InferenceCost, infer};

    fn inference(source: &str, title: Option<&str>, text: &str) -> Inference {
        let mut document = Document::new(source, text);
        document.title = title.map(str::to_owned);
        infer(
            "Should I cycle to work tomorrow?",
            &document,
            InferenceCost::free(),
            &|| false,
        )
        .expect("never cancelled")
    }

    #[test]
    fn the_topic_given_decides_the_line_whatever_the_name() {
        let weather = inference(
            "lyon-meteo",
            None,
            "Current weather in Lyon: overcast, 12.3 °C.",
        );
        let answer = aggregate(
            "Weather in Lyon?",
            &[("lyon-meteo", Topic::Weather, &weather)],
        );
        assert!(answer.text.starts_with("Weather: "), "{}", answer.text);
        assert_eq!(answer.sources, ["lyon-meteo"]);
    }

    #[test]
    fn answer_orders_sources_by_kind_and_names_them() {
        let weather = inference(
            "weather",
            None,
            "Tomorrow: rain in the morning, dry and mild after noon. Wind 20 km/h.",
        );
        let news = inference(
            "news",
            Some("City opens new cycle lanes"),
            "Three new cycle lanes open tomorrow. Cycling to work is up twenty percent.",
        );
        let knowledge = inference(
            "knowledge",
            None,
            "Cycling to work improves health. A bicycle is efficient.",
        );
        // Deliberately out of order: the answer must not depend on which source finished first.
        let answer = aggregate(
            "Should I cycle to work tomorrow?",
            &[
                ("knowledge", Topic::Knowledge, &knowledge),
                ("news", Topic::News, &news),
                ("weather", Topic::Weather, &weather),
            ],
        );
        let lines: Vec<&str> = answer.text.lines().collect();
        assert!(
            lines[0].starts_with("Weather: Tomorrow: rain in the morning"),
            "{}",
            answer.text
        );
        assert!(
            lines[1].starts_with("In the news: City opens new cycle lanes."),
            "{}",
            answer.text
        );
        assert!(
            lines[2].starts_with("Background: Cycling to work improves health."),
            "{}",
            answer.text
        );
        assert_eq!(lines[3], "Sources: weather, news, knowledge.");
        assert_eq!(answer.sources, ["weather", "news", "knowledge"]);
    }

    #[test]
    fn several_documents_from_one_source_name_it_once() {
        let first = inference(
            "news",
            Some("Storm hits coast"),
            "A severe storm caused flooding.",
        );
        let second = inference(
            "news",
            Some("Festival a success"),
            "The festival was a great success.",
        );
        let empty = inference("weather", None, "");
        let answer = aggregate(
            "news?",
            &[
                ("news", Topic::News, &first),
                ("weather", Topic::Weather, &empty),
                ("news", Topic::News, &second),
            ],
        );
        assert_eq!(answer.sources, ["news"]);
        assert_eq!(
            answer
                .text
                .lines()
                .filter(|line| line.starts_with("In the news"))
                .count(),
            2
        );
        let expected_mean = (first.sentiment.score + second.sentiment.score) / 2.0;
        assert!((answer.sentiment.score - expected_mean).abs() < 0.001);
    }

    #[test]
    fn answer_without_sources_says_so() {
        let empty = inference("news", None, "");
        let answer = aggregate("Is it raining?", &[("news", Topic::News, &empty)]);
        assert_eq!(
            answer.text,
            "No source had anything to say about \"Is it raining?\"."
        );
        assert!(answer.sources.is_empty());
        assert_eq!(answer.sentiment.score, 0.0);
    }
}
