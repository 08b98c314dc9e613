//! The chat model on candle (pure Rust): `quantized_llama`, with the tokenizer from the GGUF file's metadata.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{D, Device, Tensor};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use tokenizers::Tokenizer;

use super::{Failure, Model, Session};
use crate::ModelError;

/// A GGUF chat model's weights and tokenizer, in candle.
#[derive(Debug)]
pub(super) struct Candle {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    /// Tokens that end a reply: the end-of-sequence token and ChatML's `<|im_end|>`.
    stops: Vec<u32>,
    /// The longest prompt plus reply the model takes.
    context: usize,
}

/// Prompt tokens per forward pass: a stop is seen within about 80 ms of a 135M model here, and the prompt takes
/// about as long in chunks as whole (candle's quantised matmul works row by row).
const PROMPT_CHUNK: usize = 8;

/// Quantisations candle has no SIMD kernel for on x86 (Q4_1 runs at a sixth of Q8_0's speed): requantised to
/// Q8_0 at load, which costs memory (about twice) and a second at start for a 135M model.
const SLOW_TYPES: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

impl Candle {
    pub(super) fn load(path: &Path) -> Result<Self, ModelError> {
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
        super::check_chat_model(
            &text("general.architecture").unwrap_or_default(),
            &text("tokenizer.chat_template").unwrap_or_default(),
        )
        .map_err(|e| format(&e))?;
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
            weights,
            tokenizer,
            stops,
            context,
        })
    }
}

impl Model for Candle {
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, Failure> {
        Ok(self.tokenizer.encode(text, false)?.get_ids().to_vec())
    }

    #[cfg(test)]
    fn token_names(&self, tokens: &[u32]) -> Vec<String> {
        tokens
            .iter()
            .map(|token| self.tokenizer.id_to_token(*token).unwrap_or_default())
            .collect()
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, Failure> {
        self.tokenizer.decode(tokens, true)
    }

    fn is_stop(&self, token: u32) -> bool {
        self.stops.contains(&token)
    }

    fn context(&self) -> usize {
        self.context
    }

    fn prompt_chunk(&self) -> usize {
        PROMPT_CHUNK
    }

    fn start(&self, _capacity: usize, _threads: usize) -> Result<Box<dyn Session + '_>, Failure> {
        // The weights' handles, not the weights: this generation's KV cache is its own.
        let mut weights = self.weights.clone();
        weights.clear_kv_cache();
        Ok(Box::new(CandleSession { weights }))
    }
}

/// One generation's KV cache.
struct CandleSession {
    weights: ModelWeights,
}

impl Session for CandleSession {
    fn step(&mut self, input: &[u32], position: usize) -> Result<u32, Failure> {
        let logits = self
            .weights
            .forward(&Tensor::new(input, &Device::Cpu)?.unsqueeze(0)?, position)?;
        Ok(logits.squeeze(0)?.argmax(D::Minus1)?.to_scalar::<u32>()?)
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
