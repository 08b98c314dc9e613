//! The chat model on llama.cpp itself (through `llama-cpp-2`): the GGUF file is mapped as it is, in its own
//! quantisation, and each generation runs on a thread count of its own.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use super::{Failure, Model, Session};
use crate::ModelError;

/// Prompt tokens per forward pass: llama.cpp reads 64 tokens of a 135M model in about 0.35 s on one thread here (a
/// stop is seen within that), at 0.97 of the speed of the whole prompt in one pass; 32-token chunks would halve the
/// wait and cost 14 % of the speed (`examples/speed.rs`).
const PROMPT_CHUNK: usize = 64;

/// llama.cpp's process-wide state, set up once and kept for the life of the process (dropping it would free
/// the backend under every model), with its log lines sent to `tracing` (at their own level) instead of stderr.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A GGUF chat model's weights and vocabulary, in llama.cpp.
#[derive(Debug)]
pub(super) struct Llama {
    model: LlamaModel,
    /// Held while a generation's context is made: llama.cpp may write to the model then
    /// (`llama_new_context_with_model`), so two contexts are never made at once. Generations run at once.
    making_context: Mutex<()>,
    /// The longest prompt plus reply the model takes.
    context: usize,
}

impl Llama {
    pub(super) fn load(path: &Path) -> Result<Self, ModelError> {
        let format = |e: &dyn std::fmt::Display| ModelError::format(path, e);
        // Opened here first, so that a file that is not there or not readable says so (llama.cpp only fails).
        std::fs::File::open(path).map_err(|e| ModelError::read(path, e))?;
        let backend = backend().map_err(|e| format(&e))?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| {
                format(&format_args!(
                    "llama.cpp could not load it as a GGUF model ({e}; RUST_LOG=llama_cpp_2=info says why)"
                ))
            })?;
        let text = |key: &str| model.meta_val_str(key).unwrap_or_default();
        super::check_chat_model(
            &text("general.architecture"),
            &text("tokenizer.chat_template"),
        )
        .map_err(|e| format(&e))?;
        let context = model.n_ctx_train() as usize;
        Ok(Self {
            model,
            making_context: Mutex::new(()),
            context,
        })
    }
}

impl Model for Llama {
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, Failure> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|token| Ok(u32::try_from(token.0)?))
            .collect()
    }

    #[cfg(test)]
    fn token_names(&self, tokens: &[u32]) -> Vec<String> {
        let vocab = self.model.vocab();
        tokens
            .iter()
            .map(|token| {
                vocab
                    .text(llama_token(*token))
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, Failure> {
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        for token in tokens {
            // Special tokens (ChatML's markers) are left out, as candle's decoder leaves them out.
            bytes.extend(vocab.token_to_piece(llama_token(*token), false, None));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn is_stop(&self, token: u32) -> bool {
        // End of generation: the end-of-sequence token and the chat template's end of turn (`<|im_end|>`).
        self.model.vocab().is_eog(llama_token(token))
    }

    fn context(&self) -> usize {
        self.context
    }

    fn prompt_chunk(&self) -> usize {
        PROMPT_CHUNK
    }

    fn start(&self, capacity: usize, threads: usize) -> Result<Box<dyn Session + '_>, Failure> {
        let threads = i32::try_from(threads.max(1))?;
        let chunk = u32::try_from(PROMPT_CHUNK)?;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(u32::try_from(capacity)?))
            .with_n_batch(chunk)
            .with_n_ubatch(chunk)
            .with_n_seq_max(1)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let context = {
            let _making = self
                .making_context
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.model.new_context(backend()?, params)?
        };
        Ok(Box::new(LlamaSession {
            context,
            batch: LlamaBatch::new(PROMPT_CHUNK, 1),
        }))
    }
}

fn llama_token(token: u32) -> LlamaToken {
    // Token ids come from this model's vocabulary, which is far smaller than i32::MAX.
    LlamaToken::new(i32::try_from(token).unwrap_or(i32::MAX))
}

/// One generation's context: its KV cache and working buffers.
struct LlamaSession<'a> {
    context: LlamaContext<'a>,
    batch: LlamaBatch<'a>,
}

impl Session for LlamaSession<'_> {
    fn step(&mut self, input: &[u32], position: usize) -> Result<u32, Failure> {
        self.batch.clear();
        for (offset, token) in input.iter().enumerate() {
            let last = offset + 1 == input.len();
            self.batch.add(
                llama_token(*token),
                i32::try_from(position + offset)?,
                &[0],
                last,
            )?;
        }
        self.context.decode(&mut self.batch)?;
        let logits = self.context.get_logits_ith(self.batch.n_tokens() - 1);
        // Greedy: the likeliest token, the first of equals (as candle's argmax).
        let (best, _) = logits.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |(best, top), (index, logit)| {
                if *logit > top {
                    (index, *logit)
                } else {
                    (best, top)
                }
            },
        );
        Ok(u32::try_from(best)?)
    }
}
