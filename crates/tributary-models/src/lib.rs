//! Real language models for tributary's CPU pool, on [candle](https://github.com/huggingface/candle) (pure Rust,
//! CPU), and with the `llama` feature on [llama.cpp](https://github.com/ggml-org/llama.cpp) (C++):
//!
//! - [`Embedder`]: a sentence-transformers BERT (`config.json`, `model.safetensors`, `tokenizer.json` in one
//!   directory, e.g. all-MiniLM-L6-v2): mean-pooled, normalised sentence embeddings, and [`Embedder::rank`], the
//!   cosine similarity of each sentence to a question.
//! - [`Generator`]: a llama-family chat model in one GGUF file (e.g. SmolLM2-135M-Instruct), greedy, token by
//!   token, with a stop check and a callback between tokens, on a [`Backend`]: candle, or llama.cpp when built (the
//!   default then: 1.7 to 2.3 times as fast).
//!
//! Both are synchronous and CPU-bound: run them on a pool worker, never on an async runtime. Both are loaded once
//! per process and path ([`Embedder::shared`], [`Generator::shared`]) and shared by every worker thread; a
//! generation keeps its own KV cache.
//!
//! **Threads.** A llama.cpp generation runs on its own threads, one unless [`Generator::with_threads`] says
//! otherwise. candle's CPU kernels share one process-wide pool sized, once, by the `CANDLE_NUM_THREADS`
//! variable (or `RAYON_NUM_THREADS`, or the cores). A program that runs one inference per pool worker should
//! start with `CANDLE_NUM_THREADS=1`, so that the pool owns the parallelism (see `docs/BENCHMARKS.md`).

mod embedder;
mod error;
mod generator;
mod shared;
pub mod tiny;

pub use embedder::Embedder;
pub use error::ModelError;
pub use generator::{Backend, Finish, Generation, Generator, Prompt};

#[cfg(test)]
mod tests;
