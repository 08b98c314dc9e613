//! A llama-family chat model in one GGUF file, generating greedily token by token: the loop, the stops and the
//! streaming here, the model's arithmetic in a backend ([`candle`]).

mod candle;
#[cfg(feature = "llama")]
mod llama;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::shared::Loaded;

/// A chat model loaded from a GGUF file: llama architecture, a GPT-2-style (byte-level BPE) vocabulary in the
/// file's metadata, and a ChatML chat template (`<|im_start|>role ... <|im_end|>`), as SmolLM2 and many small
/// instruct models have.
///
/// Weights are loaded once and shared: each [`Generator::generate`] keeps its own KV cache, so every pool worker
/// can generate at once.
#[derive(Debug)]
pub struct Generator {
    path: PathBuf,
    model: Box<dyn Model>,
    /// Threads of one generation (llama.cpp's; candle's are process-wide, see the crate's documentation).
    threads: usize,
}

/// What a chat model is asked: a system message and one user message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// How the model should behave.
    pub system: String,
    /// The request itself.
    pub user: String,
}

impl Prompt {
    /// The prompt as the model reads it: ChatML, ending where the assistant's reply begins.
    pub fn to_chatml(&self) -> String {
        format!(
            "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            self.system, self.user
        )
    }
}

/// A reply and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// The reply's text, trimmed.
    pub text: String,
    /// Tokens of the prompt as the model saw it (template included).
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token not counted).
    pub generated_tokens: usize,
    /// Why generation stopped.
    pub finish: Finish,
}

/// Why a generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model ended its reply.
    Stop,
    /// The reply reached its token limit.
    Length,
    /// The stop check said to stop; the text is what was generated until then.
    Cancelled,
}

/// The code that runs a chat model's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// candle, pure Rust: always built. Requantises Q4_1 and Q5 files to Q8_0 at load (its SIMD kernels).
    Candle,
    /// llama.cpp, C++ (the `llama` feature): reads every quantisation as it is, 1.7 to 2.3 times candle's speed.
    #[cfg(feature = "llama")]
    Llama,
}

impl Backend {
    /// The fastest built: llama.cpp when the `llama` feature is on, else candle.
    pub const DEFAULT: Backend = {
        #[cfg(feature = "llama")]
        {
            Backend::Llama
        }
        #[cfg(not(feature = "llama"))]
        {
            Backend::Candle
        }
    };

    /// Every backend built, the default first.
    pub fn all() -> &'static [Backend] {
        &[
            #[cfg(feature = "llama")]
            Backend::Llama,
            Backend::Candle,
        ]
    }
}

impl Generator {
    /// Loads the model in the GGUF file at `path` on the [default backend](Backend::DEFAULT), one thread per
    /// generation.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_on(path, Backend::DEFAULT)
    }

    /// Loads the model in the GGUF file at `path` on `backend`, one thread per generation.
    pub fn load_on(path: &Path, backend: Backend) -> Result<Self, ModelError> {
        let model: Box<dyn Model> = match backend {
            Backend::Candle => Box::new(candle::Candle::load(path)?),
            #[cfg(feature = "llama")]
            Backend::Llama => Box::new(llama::Llama::load(path)?),
        };
        Ok(Self {
            path: path.to_owned(),
            model,
            threads: 1,
        })
    }

    /// The same model with `threads` threads per generation (llama.cpp only: candle's threads are one pool for
    /// the whole process). One is right when a pool runs one generation per core (`docs/BENCHMARKS.md`).
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The model at `path`, loaded the first time any thread of this process asks.
    pub fn shared(path: &Path) -> Result<Arc<Self>, ModelError> {
        static LOADED: OnceLock<Loaded<Generator>> = OnceLock::new();
        LOADED
            .get_or_init(Loaded::new)
            .get_or_load(path, Self::load)
    }

    /// Replies to `prompt`, greedily (the likeliest token each time: the same prompt gives the same reply),
    /// with at most `max_tokens` tokens. `should_stop` is checked before each token and between chunks of the
    /// prompt (a stop before the first token returns an empty reply, [`Finish::Cancelled`]); `on_text` receives the
    /// reply's text as it grows, a piece per token (a token that ends inside a UTF-8 character waits for the
    /// next).
    pub fn generate(
        &self,
        prompt: &Prompt,
        max_tokens: usize,
        should_stop: &dyn Fn() -> bool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, ModelError> {
        let run = |e: &dyn std::fmt::Display| ModelError::run(&self.path, e);
        let prompt_ids = self
            .model
            .tokenize(&prompt.to_chatml())
            .map_err(|e| run(&e))?;
        if prompt_ids.len() + max_tokens > self.model.context() {
            return Err(run(&format_args!(
                "a prompt of {} tokens and {max_tokens} to generate exceed the model's context of {}",
                prompt_ids.len(),
                self.model.context()
            )));
        }
        let mut session = self
            .model
            .start(prompt_ids.len() + max_tokens, self.threads)
            .map_err(|e| run(&e))?;
        // The prompt goes in a few tokens at a time, so that a stop is seen within one chunk's time, not the
        // whole prompt's (a second for a hundred tokens of a 135M model on candle here).
        let chunk_size = self.model.prompt_chunk();
        let mut next = None;
        for (index, chunk) in prompt_ids.chunks(chunk_size).enumerate() {
            if should_stop() {
                return Ok(Generation {
                    text: String::new(),
                    prompt_tokens: prompt_ids.len(),
                    generated_tokens: 0,
                    finish: Finish::Cancelled,
                });
            }
            next = Some(
                session
                    .step(chunk, index * chunk_size)
                    .map_err(|e| run(&e))?,
            );
        }
        let mut next = next.ok_or_else(|| run(&"the prompt is empty"))?;
        let mut generated: Vec<u32> = Vec::new();
        let mut shown = 0;
        let finish = loop {
            if generated.len() == max_tokens {
                break Finish::Length;
            }
            if self.model.is_stop(next) {
                break Finish::Stop;
            }
            generated.push(next);
            let so_far = self.model.decode(&generated).map_err(|e| run(&e))?;
            if so_far.len() > shown && !so_far.ends_with('\u{FFFD}') {
                if let Some(piece) = so_far.get(shown..) {
                    on_text(piece);
                }
                shown = so_far.len();
            }
            if generated.len() == max_tokens {
                break Finish::Length;
            }
            if should_stop() {
                break Finish::Cancelled;
            }
            // Each later input is the last token, after the prompt and the tokens before it.
            let position = prompt_ids.len() + generated.len() - 1;
            next = session.step(&[next], position).map_err(|e| run(&e))?;
        };
        let text = self.model.decode(&generated).map_err(|e| run(&e))?;
        Ok(Generation {
            text: text.trim().to_owned(),
            prompt_tokens: prompt_ids.len(),
            generated_tokens: generated.len(),
            finish,
        })
    }

    /// The names of the tokens `text` is split into (the chat template's special tokens parsed as such).
    #[cfg(test)]
    pub(crate) fn token_names(&self, text: &str) -> Vec<String> {
        let tokens = self.model.tokenize(text).expect("tokenizes");
        self.model.token_names(&tokens)
    }

    /// Prompt tokens per forward pass (tests).
    #[cfg(test)]
    pub(crate) fn prompt_chunk(&self) -> usize {
        self.model.prompt_chunk()
    }
}

/// What a backend reports going wrong, named with the model's file by the caller.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A chat model's weights and vocabulary, loaded once and shared by every generation.
trait Model: std::fmt::Debug + Send + Sync {
    /// The tokens of `text`, with the chat template's special tokens (`<|im_start|>`) as single tokens.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, Failure>;
    /// Each token's name in the vocabulary (tests).
    #[cfg(test)]
    fn token_names(&self, tokens: &[u32]) -> Vec<String>;
    /// The text of `tokens`, special tokens left out (a character cut at the end shows as U+FFFD).
    fn decode(&self, tokens: &[u32]) -> Result<String, Failure>;
    /// Whether `token` ends a reply.
    fn is_stop(&self, token: u32) -> bool;
    /// The longest prompt plus reply the model takes.
    fn context(&self) -> usize;
    /// Prompt tokens per forward pass: a stop is seen between two.
    fn prompt_chunk(&self) -> usize;
    /// A new generation of at most `capacity` tokens, prompt included, with a KV cache of its own, on `threads`
    /// threads where the backend sets them per generation.
    fn start(&self, capacity: usize, threads: usize) -> Result<Box<dyn Session + '_>, Failure>;
}

/// One generation's state: its KV cache.
trait Session {
    /// Runs `input` at `position` (the tokens before it are in the cache) and returns the likeliest next token.
    fn step(&mut self, input: &[u32], position: usize) -> Result<u32, Failure>;
}

/// Refuses a GGUF file that is not a llama-architecture ChatML model, the only kind the prompt is written for.
fn check_chat_model(architecture: &str, template: &str) -> Result<(), String> {
    if architecture != "llama" {
        return Err(format!(
            "architecture `{architecture}` is not supported (llama only)"
        ));
    }
    if !template.contains("<|im_start|>") {
        return Err(
            "its chat template is not ChatML (<|im_start|>), the only one supported".to_owned(),
        );
    }
    Ok(())
}
