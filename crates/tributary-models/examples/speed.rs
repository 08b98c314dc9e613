//! Tokens per second of a GGUF chat model, one generation alone and then as many at once as there are cores (one
//! per thread, as tributary's pool runs them), on a backend (`llama`, the default when built with the `llama`
//! feature, or `candle`) and a number of threads per generation (llama.cpp's; candle's are one pool for the
//! process, sized by `CANDLE_NUM_THREADS`):
//!
//! ```sh
//! cargo run --release -p tributary-models --features llama --example speed -- MODEL.gguf llama 1
//! cargo run --release -p tributary-models --features llama --example speed -- MODEL.gguf llama 2
//! CANDLE_NUM_THREADS=1 cargo run --release -p tributary-models --example speed -- MODEL.gguf candle
//! ```
//!
//! Built with `llama`, it first measures llama.cpp alone in a child process, on the same file, prompt and thread
//! count (the whole prompt in one batch, then token by token: what `llama-bench` does, through the same
//! library), and prints each figure of the backend as a ratio of llama.cpp's.

use std::path::PathBuf;
use std::time::Instant;

use tributary_models::{Backend, Generator, Prompt};

const TOKENS: usize = 64;

/// The instructions and the data every measurement uses.
fn prompt() -> Prompt {
    Prompt {
        system: "You answer a question from the data given, in one or two short sentences.".to_owned(),
        user: "Question: Should I take an umbrella in Lisbon?\nData from weather:\n- Rain in Lisbon, Portugal, at \
               14.8°C (feels like 14.8°C) with 15 km/h winds from the N; tomorrow sunny, 9.1 to 16.9°C.\n"
            .to_owned(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "llama")]
    if std::env::args().nth(1).as_deref() == Some("--llama-cpp-alone") {
        return alone::main();
    }
    let usage = "usage: speed MODEL.gguf [llama|candle] [THREADS]";
    let mut arguments = std::env::args().skip(1);
    let path = PathBuf::from(arguments.next().ok_or(usage)?);
    let backend = match arguments.next().as_deref() {
        None => Backend::DEFAULT,
        Some("candle") => Backend::Candle,
        #[cfg(feature = "llama")]
        Some("llama") => Backend::Llama,
        Some(other) => return Err(format!("backend `{other}` is not built; {usage}").into()),
    };
    let per_generation: usize = arguments.next().map_or(Ok(1), |n| n.parse())?;
    let started = Instant::now();
    let generator = Generator::load_on(&path, backend)?.with_threads(per_generation);
    println!(
        "{backend:?}, {per_generation} thread(s) per generation: loaded in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    #[cfg(feature = "llama")]
    let anchor = alone::measure(&path, per_generation)?;
    let prompt = prompt();
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
    #[cfg(feature = "llama")]
    println!(
        "  {:.2}x llama.cpp alone ({:.1} tokens/s)",
        1.0 / best_prompt / anchor.0,
        anchor.0
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
    #[cfg(feature = "llama")]
    println!(
        "  {:.2}x llama.cpp alone ({:.1} tokens/s)",
        tokens as f64 / seconds / anchor.1,
        anchor.1
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

/// llama.cpp alone, through `llama-cpp-2` with nothing of ours in between.
#[cfg(feature = "llama")]
mod alone {
    use std::num::NonZeroU32;
    use std::path::Path;
    use std::time::Instant;

    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;

    /// Tokens generated for the generation figure (none is a stop: llama.cpp is told to go on, as llama-bench).
    const GENERATED: usize = 64;

    /// Runs this example again as `--llama-cpp-alone MODEL THREADS` and reads its two figures: prompt and
    /// generation tokens/s. A child process, since llama.cpp's backend is set up once per process.
    pub fn measure(path: &Path, threads: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
        let output = std::process::Command::new(std::env::current_exe()?)
            .arg("--llama-cpp-alone")
            .arg(path)
            .arg(threads.to_string())
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "llama.cpp alone failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let text = String::from_utf8(output.stdout)?;
        println!("{}", text.trim_end());
        let figures: Vec<f64> = text
            .lines()
            .filter_map(|line| line.rsplit(' ').nth(1)?.parse().ok())
            .collect();
        match figures[..] {
            [prompt, generation] => Ok((prompt, generation)),
            _ => Err(format!("unexpected output: {text}").into()),
        }
    }

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        let mut arguments = std::env::args().skip(2);
        let path = arguments.next().ok_or("model")?;
        let threads: i32 = arguments.next().ok_or("threads")?.parse()?;
        let backend = LlamaBackend::init()?;
        llama_cpp_2::send_logs_to_tracing(
            llama_cpp_2::LogOptions::default().with_logs_enabled(false),
        );
        let model = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default())?;
        let text = super::prompt().to_chatml();
        let tokens = model.vocab().tokenize(text.as_bytes(), false, true);
        let length = u32::try_from(tokens.len() + GENERATED)?;
        let mut best_prompt = f64::MAX;
        let mut best_generation = f64::MAX;
        for _ in 0..3 {
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(length))
                .with_n_batch(length)
                .with_n_ubatch(length)
                .with_n_threads(threads)
                .with_n_threads_batch(threads);
            let mut context = model.new_context(&backend, params)?;
            let mut batch = LlamaBatch::new(tokens.len(), 1);
            batch.add_sequence(&tokens, 0, false)?;
            let started = Instant::now();
            context.decode(&mut batch)?;
            best_prompt = best_prompt.min(started.elapsed().as_secs_f64() / tokens.len() as f64);
            let started = Instant::now();
            let mut next = argmax(context.get_logits_ith(batch.n_tokens() - 1));
            for position in tokens.len()..tokens.len() + GENERATED {
                batch.clear();
                batch.add(
                    llama_cpp_2::token::LlamaToken::new(i32::try_from(next)?),
                    i32::try_from(position)?,
                    &[0],
                    true,
                )?;
                context.decode(&mut batch)?;
                next = argmax(context.get_logits_ith(0));
            }
            best_generation =
                best_generation.min(started.elapsed().as_secs_f64() / GENERATED as f64);
        }
        println!(
            "llama.cpp alone, {threads} thread(s): prompt of {} tokens in one batch: {:.1} tokens/s",
            tokens.len(),
            1.0 / best_prompt
        );
        println!(
            "llama.cpp alone, {threads} thread(s): generation of {GENERATED} tokens: {:.1} tokens/s",
            1.0 / best_generation
        );
        Ok(())
    }

    fn argmax(logits: &[f32]) -> usize {
        let mut best = 0;
        for (index, logit) in logits.iter().enumerate() {
            if *logit > logits[best] {
                best = index;
            }
        }
        best
    }
}
