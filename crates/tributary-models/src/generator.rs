//! A llama-family chat model in one GGUF file, generating greedily token by token.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{D, Device, Tensor};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::ModelError;
use crate::shared::Loaded;

/// A chat model loaded from a GGUF file: llama architecture, a GPT-2-style (byte-level BPE) vocabulary in the
/// file's metadata, and a ChatML chat template (`<|im_start|>role ... <|im_end|>`), as SmolLM2 and many small
/// instruct models have.
///
/// Weights are loaded once and shared: each [`Generator::generate`] clones the weights' handles (not the
/// weights) and keeps its own KV cache, so every pool worker can generate at once.
#[derive(Debug)]
pub struct Generator {
    path: PathBuf,
    weights: ModelWeights,
    pub(crate) tokenizer: Tokenizer,
    /// Tokens that end a reply: the end-of-sequence token and ChatML's `<|im_end|>`.
    stops: Vec<u32>,
    /// The longest prompt plus reply the model takes.
    context: usize,
}

/// What a chat model is asked: a system message and one user message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// How the model should behave.
    pub system: String,
    /// The request itself.
    pub user: String,
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

/// Prompt tokens per forward pass: a stop is seen within about 80 ms of a 135M model here, and the prompt takes
/// about as long in chunks as whole (candle's quantised matmul works row by row).
const PROMPT_CHUNK: usize = 8;

/// Quantisations candle has no SIMD kernel for on x86 (Q4_1 runs at a sixth of Q8_0's speed): requantised to
/// Q8_0 at load, which costs memory (about twice) and a second at start for a 135M model.
const SLOW_TYPES: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

impl Generator {
    /// Loads the model in the GGUF file at `path`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let format = |e: &dyn std::fmt::Display| ModelError::format(path, e);
        let mut file = File::open(path).map_err(|e| ModelError::read(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| format(&e))?;
        let text = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(|value| value.to_string().ok())
                .cloned()
        };
        let architecture = text("general.architecture").unwrap_or_default();
        if architecture != "llama" {
            return Err(format(&format_args!(
                "architecture `{architecture}` is not supported (llama only)"
            )));
        }
        let template = text("tokenizer.chat_template").unwrap_or_default();
        if !template.contains("<|im_start|>") {
            return Err(format(
                &"its chat template is not ChatML (<|im_start|>), the only one supported",
            ));
        }
        let mut tokenizer = Tokenizer::from_gguf(&content).map_err(|e| format(&e))?;
        if text("tokenizer.ggml.pre").as_deref() == Some("smollm") {
            // candle reads an unknown pre-tokenizer as GPT-2's, which adds a space before every segment of the
            // chat template; SmolLM's own splits digits one by one and adds no space.
            let smollm: tokenizers::PreTokenizerWrapper =
                serde_json::from_str(SMOLLM_PRE_TOKENIZER).map_err(|e| format(&e))?;
            tokenizer.with_pre_tokenizer(Some(smollm));
        }
        let token = |name: &str| tokenizer.token_to_id(name);
        let eos = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|value| value.to_u32().ok());
        let stops: Vec<u32> = eos.into_iter().chain(token("<|im_end|>")).collect();
        let context = content
            .metadata
            .get("llama.context_length")
            .and_then(|value| value.to_u32().ok())
            .map_or(MAX_SEQ_LEN, |length| (length as usize).min(MAX_SEQ_LEN));
        let weights = if content
            .tensor_infos
            .values()
            .any(|info| SLOW_TYPES.contains(&info.ggml_dtype))
        {
            let (content, mut requantised) =
                requantise(content, &mut file).map_err(|e| format(&e))?;
            ModelWeights::from_gguf(content, &mut requantised, &Device::Cpu)
        } else {
            ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
        }
        .map_err(|e| format(&e))?;
        Ok(Self {
            path: path.to_owned(),
            weights,
            tokenizer,
            stops,
            context,
        })
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
        let text = format!(
            "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            prompt.system, prompt.user
        );
        let prompt_ids = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| run(&e))?
            .get_ids()
            .to_vec();
        if prompt_ids.len() + max_tokens > self.context {
            return Err(run(&format_args!(
                "a prompt of {} tokens and {max_tokens} to generate exceed the model's context of {}",
                prompt_ids.len(),
                self.context
            )));
        }
        // The weights' handles, not the weights: this generation's KV cache is its own.
        let mut model = self.weights.clone();
        model.clear_kv_cache();
        let step = |model: &mut ModelWeights, input: &[u32], position: usize| {
            let logits =
                model.forward(&Tensor::new(input, &Device::Cpu)?.unsqueeze(0)?, position)?;
            logits.squeeze(0)?.argmax(D::Minus1)?.to_scalar::<u32>()
        };
        // The prompt goes in a few tokens at a time, so that a stop is seen within one chunk's time, not the
        // whole prompt's (a second for a hundred tokens of a 135M model here).
        let mut next = None;
        for (index, chunk) in prompt_ids.chunks(PROMPT_CHUNK).enumerate() {
            if should_stop() {
                return Ok(Generation {
                    text: String::new(),
                    prompt_tokens: prompt_ids.len(),
                    generated_tokens: 0,
                    finish: Finish::Cancelled,
                });
            }
            next = Some(step(&mut model, chunk, index * PROMPT_CHUNK).map_err(|e| run(&e))?);
        }
        let mut next = next.ok_or_else(|| run(&"the prompt is empty"))?;
        let mut generated: Vec<u32> = Vec::new();
        let mut shown = 0;
        let finish = loop {
            if generated.len() == max_tokens {
                break Finish::Length;
            }
            if self.stops.contains(&next) {
                break Finish::Stop;
            }
            generated.push(next);
            let so_far = self
                .tokenizer
                .decode(&generated, true)
                .map_err(|e| run(&e))?;
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
            next = step(&mut model, &[next], position).map_err(|e| run(&e))?;
        };
        let text = self
            .tokenizer
            .decode(&generated, true)
            .map_err(|e| run(&e))?;
        Ok(Generation {
            text: text.trim().to_owned(),
            prompt_tokens: prompt_ids.len(),
            generated_tokens: generated.len(),
            finish,
        })
    }
}

/// SmolLM's pre-tokenizer, from its `tokenizer.json`.
const SMOLLM_PRE_TOKENIZER: &str = r#"{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}"#;

/// The same model with its [`SLOW_TYPES`] tensors as Q8_0, as an in-memory GGUF file.
fn requantise(
    content: gguf_file::Content,
    file: &mut (impl Read + Seek),
) -> candle_core::Result<(gguf_file::Content, File)> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        let tensor = if SLOW_TYPES.contains(&tensor.dtype()) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (*name, tensor))
        .collect();
    // Written to an unnamed temporary file (gone when closed), not to memory: a buffer would be a second copy
    // of the weights beside the model read from it, 145 MB more at the peak for a 135M model.
    let mut buffer = tempfile::tempfile()?;
    gguf_file::write(&mut buffer, &metadata, &tensor_refs)?;
    // The requantised tensors are in the file now: free them before the model is read from it.
    drop(tensor_refs);
    drop(tensors);
    buffer.seek(SeekFrom::Start(0))?;
    let requantised = gguf_file::Content::read(&mut buffer)?;
    Ok((requantised, buffer))
}
