//! Inference by real models (feature `models`): the embedder picks the relevant sentences, the generator writes
//! the summary from them. The simulated reading still gives the key terms and sentiment (cheap text statistics).

use std::time::SystemTime;

use tributary_models::{Embedder, Finish, Generator, ModelError, Prompt};

use super::jobs::Synthesized;
use super::model::{Document, InferError, Inference, infer};
use super::models::{Models, ModelsError};
use super::prompt::{self, SUMMARY_TOKENS, SYNTHESIS_TOKENS};
use super::text;
use super::work::InferenceCost;
use crate::places::place_candidate;

/// Sentences in an extractive summary at most.
const SUMMARY_SENTENCES: usize = 3;

/// The similarity to the question (cosine, all-MiniLM-L6-v2's scale) a sentence needs to be relevant: below it,
/// a sentence merely shares a word or a theme. Chosen on the evaluation set (`docs/MODELS.md`).
const RELEVANT: f32 = 0.3;

/// The similarity a sentence needs to the question without the place it names: a city's name alone brings a
/// sentence about that city over [`RELEVANT`] ("Lisbon switches on its largest solar farm" scores 0.35 for
/// "Should I take an umbrella in Lisbon?", and 0.03 for "Should I take an umbrella in?"; the city's rain, 0.54
/// and 0.20).
const ON_TOPIC: f32 = 0.15;

/// Loads every model of `models` in this process.
pub(super) fn load(models: &Models) -> Result<(), ModelsError> {
    if let Some(directory) = &models.embedder {
        Embedder::shared(directory).map_err(|error| ModelsError::Load(error.to_string()))?;
    }
    if let Some(path) = &models.generator {
        Generator::shared(path).map_err(|error| ModelsError::Load(error.to_string()))?;
    }
    Ok(())
}

/// [`infer`] by `models`: the summary is the sentences the embedder finds relevant (the simulated model's
/// without one), rewritten by the generator when there is one. A generation still running at `wind_up` stops
/// there and is kept, marked as cut short; `should_stop` (the caller gave up) cancels everything.
pub(super) fn infer_with(
    models: &Models,
    question: &str,
    document: &Document,
    wind_up: Option<SystemTime>,
    should_stop: &dyn Fn() -> bool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Inference, InferError> {
    let mut inference = infer(question, document, InferenceCost::units(0), should_stop)?;
    // The part of the question this source's summary answers: the generator is asked that alone.
    let mut focus = question.to_owned();
    if let Some(directory) = &models.embedder {
        let embedder = Embedder::shared(directory).map_err(model_error)?;
        focus = pick_relevant(&embedder, question, document, &mut inference, should_stop)?;
    }
    let Some(path) = &models.generator else {
        return Ok(inference);
    };
    if inference.summary.is_empty() {
        // Nothing relevant to ground a summary on: the source has nothing to say.
        return Ok(inference);
    }
    let prompt = grounded_prompt(&focus, document, &inference.summary);
    let written = write(path, &prompt, SUMMARY_TOKENS, wind_up, should_stop, on_text)?;
    if written.text.is_empty() {
        return Ok(inference);
    }
    inference.summary = vec![written.text.clone()];
    inference.generated = written.text;
    inference.generated_by = models.chat_model();
    inference.cut_short = written.cut_short;
    inference.tokens.generated = written.tokens;
    Ok(inference)
}

/// What the chat model wrote: its text, ending `… (cut short)` when the wind-up or the token limit stopped it
/// (empty when not a token came in time).
struct Written {
    text: String,
    cut_short: bool,
    tokens: usize,
}

/// Has the chat model at `path` reply to `prompt` in at most `max_tokens` tokens, stopped at `wind_up` and kept;
/// `should_stop` (the caller gave up) cancels it.
fn write(
    path: &std::path::Path,
    prompt: &Prompt,
    max_tokens: usize,
    wind_up: Option<SystemTime>,
    should_stop: &dyn Fn() -> bool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Written, InferError> {
    let generator = Generator::shared(path).map_err(model_error)?;
    let past_wind_up = || wind_up.is_some_and(|at| SystemTime::now() >= at);
    let generation = generator
        .generate(
            prompt,
            max_tokens,
            &|| should_stop() || past_wind_up(),
            on_text,
        )
        .map_err(model_error)?;
    if generation.finish == Finish::Cancelled && should_stop() {
        return Err(InferError::Cancelled {
            units_done: 0,
            units_budget: 0,
        });
    }
    let cut_short = generation.finish != Finish::Stop;
    let text = if cut_short && !generation.text.is_empty() {
        format!("{} … (cut short)", generation.text)
    } else {
        generation.text
    };
    Ok(Written {
        text,
        cut_short,
        tokens: generation.generated_tokens,
    })
}

/// One answer across `summaries` (each source's name and summary) by the chat model of `models`, stopped at
/// `wind_up` and kept, marked as cut short; `should_stop` (the caller gave up) cancels it.
pub(super) fn synthesize_with(
    models: &Models,
    question: &str,
    summaries: &[(String, String)],
    wind_up: Option<SystemTime>,
    should_stop: &dyn Fn() -> bool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Synthesized, InferError> {
    let path = models.generator.as_ref().ok_or_else(|| InferError::Model {
        detail: "a synthesis needs a chat model (a .gguf file in --model)".to_owned(),
    })?;
    let prompt = Prompt {
        system: prompt::SYNTHESIS_SYSTEM.to_owned(),
        user: prompt::synthesis_user(question, summaries),
    };
    let written = write(
        path,
        &prompt,
        SYNTHESIS_TOKENS,
        wind_up,
        should_stop,
        on_text,
    )?;
    Ok(Synthesized {
        text: written.text,
        cut_short: written.cut_short,
    })
}

/// Replaces the simulated summary with the sentences `embedder` finds relevant to `question`, best first up to
/// [`SUMMARY_SENTENCES`], in document order; a title that is not relevant either is dropped, so that a response
/// with nothing relevant says nothing. Returns the part of the question the summary answers (the whole question,
/// or one of its clauses: "What's the weather in Paris, and why does the GIL matter?" asks two things, and a
/// sentence about the GIL is far from the whole).
fn pick_relevant(
    embedder: &Embedder,
    question: &str,
    document: &Document,
    inference: &mut Inference,
    should_stop: &dyn Fn() -> bool,
) -> Result<String, InferError> {
    let sentences = text::sentences(&document.text);
    let mut candidates: Vec<&str> = sentences.iter().map(String::as_str).collect();
    candidates.extend(document.title.as_deref());
    // Each part as asked, then each without the place it names (the same when it names none).
    let parts = question_parts(question);
    let mut queries: Vec<String> = parts.clone();
    queries.extend(parts.iter().map(|part| {
        place_candidate(part).map_or_else(|| part.clone(), |place| part.replacen(&place, "", 1))
    }));
    let query_refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let scores = embedder
        .rank(&query_refs, &candidates, should_stop)
        .map_err(model_error)?
        .ok_or(InferError::Cancelled {
            units_done: 0,
            units_budget: 0,
        })?;
    // A candidate's score is its best part's among the parts it is on topic for.
    let score = |index: usize| -> Option<(f32, usize)> {
        (0..parts.len())
            .filter(|&part| {
                scores[part][index] >= RELEVANT && scores[parts.len() + part][index] >= ON_TOPIC
            })
            .map(|part| (scores[part][index], part))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let mut ranked: Vec<(usize, f32, usize)> = (0..sentences.len())
        .filter_map(|index| score(index).map(|(value, part)| (index, value, part)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let answered = ranked.first().map_or(0, |best| best.2);
    let mut chosen: Vec<usize> = Vec::with_capacity(SUMMARY_SENTENCES);
    for (index, _, _) in ranked {
        if chosen.len() == SUMMARY_SENTENCES {
            break;
        }
        if !chosen
            .iter()
            .any(|&kept| sentences[kept] == sentences[index])
        {
            chosen.push(index);
        }
    }
    chosen.sort_unstable();
    inference.summary = chosen
        .iter()
        .map(|&index| sentences[index].clone())
        .collect();
    // The bigram text is the simulated model's: a real model's answer is what it found relevant, or nothing.
    inference.generated = String::new();
    let title_relevant = document.title.is_some() && score(sentences.len()).is_some();
    if inference.summary.is_empty() && !title_relevant {
        inference.title = None;
    }
    Ok(parts[answered].clone())
}

/// The whole question, then its clauses when it has several (split at commas, semicolons, question marks and
/// "and"/"but" between clauses), each of at least two words.
fn question_parts(question: &str) -> Vec<String> {
    let mut parts = vec![question.trim().to_owned()];
    let clauses: Vec<String> = question
        .split([',', ';', '?'])
        .flat_map(|piece| piece.split(" and ").flat_map(|piece| piece.split(" but ")))
        .map(|clause| clause.trim().to_owned())
        .filter(|clause| clause.split_whitespace().count() >= 2)
        .collect();
    if clauses.len() > 1 {
        parts.extend(clauses);
    }
    parts
}

/// The question and the relevant sentences of one source, for the generator.
fn grounded_prompt(question: &str, document: &Document, sentences: &[String]) -> Prompt {
    Prompt {
        system: prompt::SYSTEM.to_owned(),
        user: prompt::grounded_user(question, document, sentences),
    }
}

fn model_error(error: ModelError) -> InferError {
    InferError::Model {
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use tributary_models::tiny::{write_embedder, write_generator};

    use super::*;

    const DOCUMENT: &str = "Rain falls in Lisbon. The market rose. The sun shines.";

    fn models(directory: &Path, generator: bool) -> Models {
        let words = [
            "rain", "falls", "in", "lisbon", "the", "market", "rose", "sun", "shines",
        ];
        let embedder = write_embedder(&directory.join("embedder"), &words).expect("writes");
        let generator: Option<PathBuf> =
            generator.then(|| write_generator(&directory.join("tiny.gguf")).expect("writes"));
        Models {
            embedder: Some(embedder),
            generator,
            endpoint: None,
        }
    }

    fn document() -> Document {
        Document::new("weather", DOCUMENT)
    }

    /// The question that is one of the document's sentences, asked of `models`.
    fn ask_rain(
        models: &Models,
        wind_up: Option<SystemTime>,
        on_text: &mut dyn FnMut(&str),
    ) -> Inference {
        infer_with(models, RAIN, &document(), wind_up, &|| false, on_text).expect("infers")
    }

    /// Whether the sentence the question repeats is in the summary (the tiny embedder scores it 1).
    fn picked_the_rain(inference: &Inference) -> bool {
        inference.summary.iter().any(|sentence| sentence == RAIN)
    }

    const RAIN: &str = "Rain falls in Lisbon.";

    #[test]
    fn the_embedder_picks_the_sentence_the_question_is_about() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let inference = ask_rain(&models(directory.path(), false), None, &mut |_| {});
        assert!(picked_the_rain(&inference), "{inference:?}");
        assert_eq!(inference.generated_by, None);
        assert!(
            inference.generated.is_empty(),
            "no bigram text from a real model"
        );
    }

    #[test]
    fn the_generator_writes_the_summary_and_says_so() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut streamed = String::new();
        let inference = ask_rain(&models(directory.path(), true), None, &mut |piece| {
            streamed.push_str(piece);
        });
        if inference.generated_by.is_some() {
            assert_eq!(inference.generated_by.as_deref(), Some("tiny"));
            assert_eq!(
                inference.summary,
                std::slice::from_ref(&inference.generated)
            );
            assert!(
                inference.summary[0].starts_with(streamed.trim()),
                "{inference:?} {streamed:?}"
            );
        } else {
            // The tiny model ended its reply at once: the extractive summary stands.
            assert!(picked_the_rain(&inference), "{inference:?}");
        }
    }

    #[test]
    fn a_generation_past_its_wind_up_keeps_what_was_picked() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let past = SystemTime::now() - Duration::from_secs(1);
        let inference = ask_rain(&models(directory.path(), true), Some(past), &mut |_| {});
        // Not a token was generated in time: the sentences picked are the summary, not lost.
        assert!(picked_the_rain(&inference), "{inference:?}");
        assert!(!inference.cut_short);
    }

    #[test]
    fn a_synthesis_is_written_from_every_summary_and_streams() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let models = models(directory.path(), true);
        let summaries = vec![
            ("weather".to_owned(), RAIN.to_owned()),
            ("news".to_owned(), "The market rose.".to_owned()),
        ];
        let mut streamed = String::new();
        let written = synthesize_with(
            &models,
            "Rain?",
            &summaries,
            None,
            &|| false,
            &mut |piece| streamed.push_str(piece),
        )
        .expect("writes");
        assert!(
            written.text.starts_with(streamed.trim()),
            "{written:?} {streamed:?}"
        );
        // Past its wind-up before a token: nothing, and not an error.
        let past = SystemTime::now() - Duration::from_secs(1);
        let late = synthesize_with(
            &models,
            "Rain?",
            &summaries,
            Some(past),
            &|| false,
            &mut |_| {},
        )
        .expect("writes");
        assert_eq!(late.text, "");
        let gave_up = synthesize_with(&models, "Rain?", &summaries, None, &|| true, &mut |_| {});
        assert!(
            matches!(gave_up, Err(InferError::Cancelled { .. })),
            "{gave_up:?}"
        );
        let without = synthesize_with(
            &Models::default(),
            "Rain?",
            &summaries,
            None,
            &|| false,
            &mut |_| {},
        );
        assert!(
            matches!(without, Err(InferError::Model { .. })),
            "{without:?}"
        );
    }

    #[test]
    fn a_question_of_several_clauses_is_asked_whole_and_by_clause() {
        assert_eq!(
            question_parts("What's the weather in Paris, and why does the GIL matter?"),
            [
                "What's the weather in Paris, and why does the GIL matter?",
                "What's the weather in Paris",
                "why does the GIL matter",
            ]
        );
        assert_eq!(question_parts("What is the GIL?"), ["What is the GIL?"]);
    }

    #[test]
    fn a_caller_that_gave_up_cancels_the_inference() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let models = models(directory.path(), true);
        let outcome = infer_with(&models, "Rain?", &document(), None, &|| true, &mut |_| {});
        assert!(
            matches!(outcome, Err(InferError::Cancelled { .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_model_that_cannot_be_loaded_fails_the_inference_naming_it() {
        let models = Models {
            embedder: Some(PathBuf::from("/nonexistent/embedder")),
            ..Models::default()
        };
        let outcome = infer_with(&models, "Rain?", &document(), None, &|| false, &mut |_| {});
        let Err(InferError::Model { detail }) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            detail.contains("/nonexistent/embedder/config.json"),
            "{detail}"
        );
    }
}
