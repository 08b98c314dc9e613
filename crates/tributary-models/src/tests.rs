//! The loaders, tokenizers, ranking and generation loop on tiny random models written by each test.

use std::cell::Cell;

use crate::tiny::{write_embedder, write_generator};
use crate::{Backend, Embedder, Finish, Generator, ModelError, Prompt};

const WORDS: &[&str] = &[
    "rain", "falls", "in", "lisbon", "the", "market", "rose", "sun", "shines",
];

fn embedder() -> (tempfile::TempDir, Embedder) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = write_embedder(directory.path(), WORDS).expect("writes the model");
    let embedder = Embedder::load(&path).expect("loads");
    (directory, embedder)
}

/// The tiny chat model on every backend built.
fn generators() -> (tempfile::TempDir, Vec<(Backend, Generator)>) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = write_generator(&directory.path().join("tiny.gguf")).expect("writes the model");
    let generators = Backend::all()
        .iter()
        .map(|backend| {
            let generator = Generator::load_on(&path, *backend)
                .unwrap_or_else(|e| panic!("{backend:?} loads: {e}"));
            (*backend, generator)
        })
        .collect();
    (directory, generators)
}

fn prompt() -> Prompt {
    Prompt {
        system: "Answer in one sentence.".to_owned(),
        user: "Is it raining in Lisbon?".to_owned(),
    }
}

#[test]
fn embeddings_are_unit_length_and_the_same_text_ranks_first() {
    let (_directory, embedder) = embedder();
    let embeddings = embedder
        .embed(&["Rain falls in Lisbon.", "The market rose."])
        .expect("embeds");
    assert_eq!(embeddings.len(), 2);
    for embedding in &embeddings {
        let norm: f32 = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let sentences = [
        "The market rose.",
        "Rain falls in Lisbon.",
        "The sun shines.",
    ];
    let scores = embedder
        .rank(
            &["Rain falls in Lisbon.", "The sun shines."],
            &sentences,
            &|| false,
        )
        .expect("ranks")
        .expect("not stopped");
    assert_eq!(scores.len(), 2, "a row per query");
    assert!((scores[1][2] - 1.0).abs() < 1e-4, "{scores:?}");
    let scores = &scores[0];
    assert_eq!(scores.len(), 3);
    assert!((scores[1] - 1.0).abs() < 1e-4, "{scores:?}");
    assert!(scores[0] < scores[1] && scores[2] < scores[1], "{scores:?}");
    // Padding in a batch changes nothing: a sentence alone scores what it scores beside longer ones.
    let alone = embedder
        .rank(&["Rain falls in Lisbon."], &sentences[..1], &|| false)
        .expect("ranks")
        .expect("not stopped");
    assert!(
        (alone[0][0] - scores[0]).abs() < 1e-4,
        "{alone:?} {scores:?}"
    );
}

#[test]
fn ranking_stops_when_asked() {
    let (_directory, embedder) = embedder();
    let ranked = embedder
        .rank(&["rain"], &["The sun shines."], &|| true)
        .expect("runs");
    assert_eq!(ranked, None);
}

#[test]
fn an_embedder_that_is_not_there_or_not_a_model_says_which_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let missing = Embedder::load(directory.path()).expect_err("no files");
    assert!(
        matches!(&missing, ModelError::Read { path, .. } if path.ends_with("config.json")),
        "{missing}"
    );
    let path = write_embedder(directory.path(), WORDS).expect("writes");
    std::fs::write(path.join("model.safetensors"), b"not a safetensors file").expect("writes");
    let broken = Embedder::load(&path).expect_err("garbage weights");
    assert!(
        matches!(&broken, ModelError::Format { path, .. } if path.ends_with("model.safetensors")),
        "{broken}"
    );
}

#[test]
fn a_shared_model_is_loaded_once_per_path() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = write_embedder(directory.path(), WORDS).expect("writes");
    let first = Embedder::shared(&path).expect("loads");
    let second = Embedder::shared(&path).expect("loads");
    assert!(std::sync::Arc::ptr_eq(&first, &second));
}

#[test]
fn the_chat_template_gets_no_stray_spaces() {
    let (_directory, generators) = generators();
    for (backend, generator) in &generators {
        // `<|im_start|>` is one special token, and "user" follows it with no space byte (Ġ) before it.
        let tokens = generator.token_names("<|im_start|>user\nhi");
        assert_eq!(tokens[0], "<|im_start|>");
        assert_eq!(&tokens[1..5], ["u", "s", "e", "r"]);
        assert!(
            !tokens.iter().any(|token| token.starts_with('Ġ')),
            "{backend:?}: {tokens:?}"
        );
    }
}

#[test]
fn generation_is_greedy_bounded_and_streams_what_it_returns() {
    let (_directory, generators) = generators();
    for (backend, generator) in &generators {
        let mut pieces = String::new();
        let first = generator
            .generate(&prompt(), 12, &|| false, &mut |piece| {
                pieces.push_str(piece)
            })
            .expect("generates");
        assert!(first.generated_tokens <= 12);
        assert!(
            matches!(first.finish, Finish::Stop | Finish::Length),
            "{backend:?}: {first:?}"
        );
        assert_eq!(pieces.trim(), first.text);
        assert!(first.prompt_tokens > 10, "{backend:?}: {first:?}");
        let second = generator
            .generate(&prompt(), 12, &|| false, &mut |_| {})
            .expect("generates");
        assert_eq!(
            first, second,
            "{backend:?}: greedy, the same prompt, the same reply"
        );
    }
}

#[test]
fn generation_stops_at_the_next_token_when_asked() {
    let (_directory, generators) = generators();
    for (backend, generator) in &generators {
        // Asked to stop once three pieces of text have come: the next check stops it.
        let pieces = Cell::new(0);
        let generation = generator
            .generate(&prompt(), 50, &|| pieces.get() >= 3, &mut |_| {
                pieces.set(pieces.get() + 1)
            })
            .expect("generates");
        match generation.finish {
            Finish::Cancelled => assert!(
                generation.generated_tokens >= 3,
                "{backend:?}: {generation:?}"
            ),
            // The tiny model ended its reply before.
            finish => assert_eq!(finish, Finish::Stop, "{backend:?}: {generation:?}"),
        }
    }
}

#[test]
fn a_stop_during_the_prompt_returns_an_empty_reply() {
    let (_directory, generators) = generators();
    for (backend, generator) in &generators {
        let checks = Cell::new(0);
        let generation = generator
            .generate(
                &prompt(),
                50,
                &|| {
                    checks.set(checks.get() + 1);
                    checks.get() > 1
                },
                &mut |_| panic!("no text"),
            )
            .expect("generates");
        // One chunk went in before the stop, and the prompt is longer than that: the stop came mid-prompt.
        assert!(
            generation.prompt_tokens > generator.prompt_chunk(),
            "{backend:?}: {generation:?}"
        );
        assert_eq!(generation.finish, Finish::Cancelled, "{backend:?}");
        assert_eq!(generation.generated_tokens, 0, "{backend:?}");
        assert_eq!(generation.text, "", "{backend:?}");
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let (_directory, generators) = generators();
    for (backend, generator) in &generators {
        let long = Prompt {
            system: String::new(),
            user: "rain ".repeat(300),
        };
        let error = generator
            .generate(&long, 10, &|| false, &mut |_| {})
            .expect_err("too long");
        assert!(
            error
                .to_string()
                .contains("exceed the model's context of 1024"),
            "{backend:?}: {error}"
        );
    }
}

#[test]
fn a_gguf_that_is_not_a_llama_chat_model_is_refused() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let garbage = directory.path().join("garbage.gguf");
    std::fs::write(&garbage, b"GGUF but not really").expect("writes");
    for backend in Backend::all() {
        let error = Generator::load_on(&garbage, *backend).expect_err("garbage");
        assert!(
            matches!(&error, ModelError::Format { path, .. } if path == &garbage),
            "{backend:?}: {error}"
        );
        let missing = Generator::load_on(&directory.path().join("missing.gguf"), *backend)
            .expect_err("missing");
        assert!(
            matches!(missing, ModelError::Read { .. }),
            "{backend:?}: {missing}"
        );
    }
}
