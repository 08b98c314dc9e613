//! What a chat model is asked (a local GGUF or an OpenAI-compatible endpoint): the same instructions and the same
//! data, so that the two write comparable summaries.

use super::model::Document;

/// The instructions.
pub(crate) const SYSTEM: &str = "You answer a question from the data given, in one or two short sentences. Use \
                                 only the data. Keep every number, place and name exactly as the data gives it.";

/// The most tokens a summary may take.
pub(crate) const SUMMARY_TOKENS: usize = 64;

/// The question and the relevant sentences of one source.
pub(crate) fn grounded_user(question: &str, document: &Document, sentences: &[String]) -> String {
    let mut data = String::new();
    if let Some(title) = &document.title {
        data.push_str(&format!("Title: {title}\n"));
    }
    for sentence in sentences {
        data.push_str(&format!("- {sentence}\n"));
    }
    format!(
        "Question: {question}\nData from {}:\n{data}",
        document.source
    )
}

/// The instructions of a synthesis: one answer from the sources' summaries (a local chat model's only).
#[cfg(feature = "models")]
pub(crate) const SYNTHESIS_SYSTEM: &str = "You answer a question from what several sources said, in two or three \
                                           short sentences. Use only what they said. Keep every number, place and \
                                           name exactly as they give it.";

/// The most tokens a synthesis may take.
#[cfg(feature = "models")]
pub(crate) const SYNTHESIS_TOKENS: usize = 96;

/// The question and each source's summary, for a synthesis.
#[cfg(feature = "models")]
pub(crate) fn synthesis_user(question: &str, summaries: &[(String, String)]) -> String {
    let mut data = String::new();
    for (source, summary) in summaries {
        data.push_str(&format!("- {source}: {summary}\n"));
    }
    format!("Question: {question}\nWhat the sources said:\n{data}")
}
