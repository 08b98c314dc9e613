//! Tiny random models written on the spot, for tests: the real loaders, tokenizers and generation loop run on
//! them in milliseconds, with no download. Their outputs are meaningless but deterministic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use serde_json::json;

/// Writes a 2-layer BERT with a small word-piece vocabulary (`words`, lowercase, plus the specials) into
/// `directory`, laid out as a sentence-transformers model; returns the directory.
pub fn write_embedder(directory: &Path, words: &[&str]) -> candle_core::Result<PathBuf> {
    std::fs::create_dir_all(directory)?;
    let mut vocabulary: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .map(|word| (*word).to_owned())
        .collect();
    vocabulary.extend(words.iter().map(|word| word.to_lowercase()));
    vocabulary.extend([".", ",", "?", "!"].map(str::to_owned));
    let (hidden, intermediate, layers, positions) = (16, 32, 2, 64);
    let config = json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocabulary.len(),
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
        "intermediate_size": intermediate, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "max_position_embeddings": positions, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "position_embedding_type": "absolute",
    });
    std::fs::write(directory.join("config.json"), config.to_string())?;
    let ids: serde_json::Map<String, serde_json::Value> = vocabulary
        .iter()
        .enumerate()
        .map(|(id, word)| (word.clone(), json!(id)))
        .collect();
    let special = |id: usize| {
        json!({"id": id, "content": vocabulary[id], "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0), special(1), special(2), special(3)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    });
    std::fs::write(directory.join("tokenizer.json"), tokenizer.to_string())?;
    let mut weights = Weights::new(0x7e57);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, tensor: Tensor| {
        tensors.insert(name, tensor);
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        weights.random(&[vocabulary.len(), hidden])?,
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        weights.random(&[positions, hidden])?,
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        weights.random(&[2, hidden])?,
    );
    put(
        "embeddings.LayerNorm.weight".into(),
        Tensor::ones(hidden, DType::F32, &Device::Cpu)?,
    );
    put(
        "embeddings.LayerNorm.bias".into(),
        Tensor::zeros(hidden, DType::F32, &Device::Cpu)?,
    );
    for layer in 0..layers {
        let prefix = format!("encoder.layer.{layer}");
        let mut linear = |name: &str, outputs: usize, inputs: usize| -> candle_core::Result<()> {
            put(
                format!("{prefix}.{name}.weight"),
                weights.random(&[outputs, inputs])?,
            );
            put(
                format!("{prefix}.{name}.bias"),
                Tensor::zeros(outputs, DType::F32, &Device::Cpu)?,
            );
            Ok(())
        };
        for name in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            linear(name, hidden, hidden)?;
        }
        linear("intermediate.dense", intermediate, hidden)?;
        linear("output.dense", hidden, intermediate)?;
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(
                format!("{prefix}.{name}.weight"),
                Tensor::ones(hidden, DType::F32, &Device::Cpu)?,
            );
            put(
                format!("{prefix}.{name}.bias"),
                Tensor::zeros(hidden, DType::F32, &Device::Cpu)?,
            );
        }
    }
    candle_core::safetensors::save(&tensors, directory.join("model.safetensors"))?;
    Ok(directory.to_owned())
}

/// Writes a 2-layer llama chat model (ChatML template, SmolLM's pre-tokenizer name, a byte-level vocabulary of
/// the 256 bytes plus `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`) to `path`. Its attention's query weights
/// are Q4_1, which the loader requantises, and the rest f32.
pub fn write_generator(path: &Path) -> candle_core::Result<PathBuf> {
    let (hidden, feed_forward, layers, heads, kv_heads) = (64, 128, 2, 2, 1);
    let head = hidden / heads;
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .map(|token| (*token).to_owned())
        .collect();
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort_unstable();
    tokens.extend(alphabet.iter().map(char::to_string));
    tokens.push("Ġt".to_owned());
    let vocabulary = tokens.len();
    let kinds: Vec<gguf_file::Value> = (0..vocabulary)
        .map(|id| gguf_file::Value::I32(if id < 3 { 3 } else { 1 }))
        .collect();
    let string = |text: &str| gguf_file::Value::String(text.to_owned());
    let number = |value: u32| gguf_file::Value::U32(value);
    let metadata: Vec<(&str, gguf_file::Value)> = vec![
        ("general.architecture", string("llama")),
        ("llama.block_count", number(layers)),
        ("llama.context_length", number(1024)),
        ("llama.embedding_length", number(hidden as u32)),
        ("llama.feed_forward_length", number(feed_forward as u32)),
        ("llama.attention.head_count", number(heads as u32)),
        ("llama.attention.head_count_kv", number(kv_heads as u32)),
        ("llama.rope.dimension_count", number(head as u32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            gguf_file::Value::F32(1e-5),
        ),
        ("tokenizer.ggml.model", string("gpt2")),
        ("tokenizer.ggml.pre", string("smollm")),
        (
            "tokenizer.ggml.tokens",
            gguf_file::Value::Array(tokens.iter().map(|token| string(token)).collect()),
        ),
        ("tokenizer.ggml.token_type", gguf_file::Value::Array(kinds)),
        (
            "tokenizer.ggml.merges",
            gguf_file::Value::Array(vec![string("Ġ t")]),
        ),
        ("tokenizer.ggml.bos_token_id", number(1)),
        ("tokenizer.ggml.eos_token_id", number(2)),
        (
            "tokenizer.chat_template",
            string(
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}{% endfor %}",
            ),
        ),
    ];
    let mut weights = Weights::new(0x5eed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let f32 = |tensor: Tensor| QTensor::quantize(&tensor, GgmlDType::F32);
    tensors.push((
        "token_embd.weight".into(),
        f32(weights.random(&[vocabulary, hidden])?)?,
    ));
    tensors.push((
        "output_norm.weight".into(),
        f32(Tensor::ones(hidden, DType::F32, &Device::Cpu)?)?,
    ));
    tensors.push((
        "output.weight".into(),
        f32(weights.random(&[vocabulary, hidden])?)?,
    ));
    for layer in 0..layers {
        let name = |part: &str| format!("blk.{layer}.{part}.weight");
        let query = weights.random(&[hidden, hidden])?;
        tensors.push((name("attn_q"), QTensor::quantize(&query, GgmlDType::Q4_1)?));
        tensors.push((
            name("attn_k"),
            f32(weights.random(&[kv_heads * head, hidden])?)?,
        ));
        tensors.push((
            name("attn_v"),
            f32(weights.random(&[kv_heads * head, hidden])?)?,
        ));
        tensors.push((
            name("attn_output"),
            f32(weights.random(&[hidden, hidden])?)?,
        ));
        tensors.push((
            name("ffn_gate"),
            f32(weights.random(&[feed_forward, hidden])?)?,
        ));
        tensors.push((
            name("ffn_up"),
            f32(weights.random(&[feed_forward, hidden])?)?,
        ));
        tensors.push((
            name("ffn_down"),
            f32(weights.random(&[hidden, feed_forward])?)?,
        ));
        tensors.push((
            name("attn_norm"),
            f32(Tensor::ones(hidden, DType::F32, &Device::Cpu)?)?,
        ));
        tensors.push((
            name("ffn_norm"),
            f32(Tensor::ones(hidden, DType::F32, &Device::Cpu)?)?,
        ));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(key, value)| (*key, value)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), tensor))
        .collect();
    let mut file = std::fs::File::create(path)?;
    gguf_file::write(&mut file, &metadata, &tensors)?;
    Ok(path.to_owned())
}

/// Reproducible weights in -0.5..0.5 (a linear congruential generator: the tests need the same model every
/// run, not good randomness).
struct Weights {
    state: u64,
}

impl Weights {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn random(&mut self, shape: &[usize]) -> candle_core::Result<Tensor> {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| {
                self.state = self
                    .state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((self.state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu)
    }
}
