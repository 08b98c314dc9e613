//! Tokens per second of a GGUF chat model, one generation alone and then as many at once as there are cores (one
//! per thread, as tributary's pool runs them), with candle's own threads as the environment sets them:
//!
//! ```sh
//! CANDLE_NUM_THREADS=1 cargo run --release -p tributary-models --example speed -- MODEL.gguf
//! CANDLE_NUM_THREADS=2 cargo run --release -p tributary-models --example speed -- MODEL.gguf
//! ```

use std::path::PathBuf;
use std::time::Instant;

use tributary_models::{Generator, Prompt};

const TOKENS: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = PathBuf::from(std::env::args().nth(1).ok_or("usage: speed MODEL.gguf")?);
    let started = Instant::now();
    let generator = Generator::shared(&path)?;
    println!("loaded in {:.2} s", started.elapsed().as_secs_f64());
    let prompt = Prompt {
        system: "You answer a question from the data given, in one or two short sentences.".to_owned(),
        user: "Question: Should I take an umbrella in Lisbon?\nData from weather:\n- Rain in Lisbon, Portugal, at \
               14.8°C (feels like 14.8°C) with 15 km/h winds from the N; tomorrow sunny, 9.1 to 16.9°C.\n"
            .to_owned(),
    };
    // Prompt speed: a generation of one token is the prompt's pass and one step.
    let mut best_prompt = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let reply = generator.generate(&prompt, 1, &|| false, &mut |_| {})?;
        best_prompt = best_prompt.min(started.elapsed().as_secs_f64() / reply.prompt_tokens as f64);
    }
    let prompt_tokens = generator
        .generate(&prompt, 1, &|| false, &mut |_| {})?
        .prompt_tokens;
    println!(
        "prompt: {prompt_tokens} tokens, {:.1} tokens/s",
        1.0 / best_prompt
    );
    let generate = || -> Result<(usize, f64), tributary_models::ModelError> {
        let mut first_token_at = None;
        let started = Instant::now();
        let reply = generator.generate(&prompt, TOKENS, &|| false, &mut |_| {
            first_token_at.get_or_insert_with(Instant::now);
        })?;
        let first = first_token_at.unwrap_or(started);
        // Tokens after the first, over the time after the first: generation alone, not the prompt.
        Ok((
            reply.generated_tokens.saturating_sub(1),
            first.elapsed().as_secs_f64(),
        ))
    };
    let (tokens, seconds) = generate()?;
    println!(
        "generation alone: {tokens} tokens, {:.1} tokens/s",
        tokens as f64 / seconds
    );
    let threads = std::thread::available_parallelism()?.get();
    let started = Instant::now();
    let results: Vec<(usize, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(generate)).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic").expect("generates"))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let total: usize = results.iter().map(|(tokens, _)| tokens).sum();
    println!(
        "{threads} generations at once: {total} tokens in {wall:.2} s, {:.1} tokens/s in all",
        total as f64 / wall
    );
    Ok(())
}
