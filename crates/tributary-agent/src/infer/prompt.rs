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
