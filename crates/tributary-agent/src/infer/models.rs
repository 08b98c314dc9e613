//! Which models read the sources' responses: the simulated one (the default), or real ones from files.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The models inference runs. With neither path, the simulated LLM ([`super::infer`]) reads every response.
///
/// - `embedder`: a sentence-transformers BERT directory (`config.json`, `model.safetensors`, `tokenizer.json`):
///   each response's sentences are ranked by their similarity to the question, and the relevant ones are the
///   summary (extractive).
/// - `generator`: a llama-family chat model in a GGUF file: it writes each source's summary from the sentences
///   picked (the embedder's, or the simulated model's without one), marked as generated.
/// - `endpoint`: an OpenAI-compatible chat endpoint that does the generator's work over HTTP, as I/O (the
///   sentences are still picked on the CPU pool). At most one of `generator` and `endpoint`.
///
/// Plain data, so a job naming it runs in a worker process too; each process loads a model once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Models {
    /// The sentence embedder's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<PathBuf>,
    /// The chat model's GGUF file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<PathBuf>,
    /// The chat endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ChatEndpoint>,
}

/// An OpenAI-compatible chat completions API (llama.cpp's server, Ollama, vLLM, a hosted one), given as
/// `openai:MODEL@BASE_URL`: requests go to `BASE_URL/chat/completions` asking for `MODEL`, streamed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatEndpoint {
    /// The model the endpoint is asked for.
    pub model: String,
    /// Where its API starts, e.g. `http://127.0.0.1:8080/v1` (an http or https URL: checked when parsed).
    pub base_url: String,
}

impl ChatEndpoint {
    /// The endpoint `openai:MODEL@BASE_URL` names (`spec` without the `openai:`).
    fn parse(spec: &str) -> Result<Self, ModelsError> {
        let invalid = |detail: &str| ModelsError::Endpoint {
            spec: format!("openai:{spec}"),
            detail: detail.to_owned(),
        };
        let (model, base_url) = spec.split_once('@').ok_or_else(|| {
            invalid(
                "expected openai:MODEL@BASE_URL, e.g. openai:llama3.2@http://127.0.0.1:11434/v1",
            )
        })?;
        if model.trim().is_empty() {
            return Err(invalid("the model name is empty"));
        }
        let base_url = url::Url::parse(base_url)
            .map_err(|error| invalid(&format!("the base URL: {error}")))?;
        if !matches!(base_url.scheme(), "http" | "https") || !base_url.has_host() {
            return Err(invalid(
                "the base URL must be http:// or https:// with a host",
            ));
        }
        Ok(Self {
            model: model.to_owned(),
            base_url: base_url.into(),
        })
    }
}

/// Why a `--model` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// The path does not exist or cannot be read.
    #[error("model {path}: {detail}")]
    Missing {
        /// The path given.
        path: PathBuf,
        /// What the file system said.
        detail: String,
    },
    /// The path is neither kind of model.
    #[error(
        "model {path}: neither a sentence-transformers directory (with config.json, model.safetensors and \
         tokenizer.json) nor a .gguf file"
    )]
    Unknown {
        /// The path given.
        path: PathBuf,
    },
    /// Two models of one kind.
    #[error("two {kind} models given ({first} and {second}): give at most one of each kind")]
    Twice {
        /// `embedder` or `generator`.
        kind: &'static str,
        /// The first.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// An `openai:` model that cannot be used.
    #[error("model {spec}: {detail}")]
    Endpoint {
        /// The value given.
        spec: String,
        /// What is wrong with it.
        detail: String,
    },
    /// This build has no real models.
    #[error(
        "model {path}: this tributary was built without real models; build it with the `models` feature \
         (cargo install --locked --path crates/tributary-cli --features models)"
    )]
    NotBuilt {
        /// The path given.
        path: PathBuf,
    },
    /// The model could not be loaded.
    #[error("{0}")]
    Load(String),
}

impl Models {
    /// The simulated LLM alone.
    pub fn simulated() -> Self {
        Self::default()
    }

    /// Whether only the simulated LLM runs.
    pub fn is_simulated(&self) -> bool {
        self.embedder.is_none() && self.generator.is_none() && self.endpoint.is_none()
    }

    /// The models that run on the CPU pool: all but the endpoint, which the caller asks itself.
    pub fn on_cpu(&self) -> Self {
        Self {
            endpoint: None,
            ..self.clone()
        }
    }

    /// The name of the chat model that writes the summaries, if one does: the GGUF file's stem, or the
    /// endpoint's model.
    pub fn chat_model(&self) -> Option<String> {
        match (&self.generator, &self.endpoint) {
            (Some(path), _) => Some(path.file_stem().map_or_else(
                || path.display().to_string(),
                |stem| stem.to_string_lossy().into_owned(),
            )),
            (None, Some(endpoint)) => Some(endpoint.model.clone()),
            (None, None) => None,
        }
    }

    /// The models named by `specs`, each `simulated`, a path (a directory is an embedder, a `.gguf` file a
    /// generator) or `openai:MODEL@BASE_URL` (an endpoint), at most one of each kind and one chat model.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Self, ModelsError> {
        let mut models = Self::default();
        for spec in specs {
            let spec = spec.as_ref();
            if spec == "simulated" {
                continue;
            }
            if let Some(endpoint) = spec.strip_prefix("openai:") {
                let endpoint = ChatEndpoint::parse(endpoint)?;
                if let Some(first) = &models.generator {
                    return Err(ModelsError::Endpoint {
                        spec: spec.to_owned(),
                        detail: format!("a chat model is already given ({})", first.display()),
                    });
                }
                if models.endpoint.replace(endpoint).is_some() {
                    return Err(ModelsError::Endpoint {
                        spec: spec.to_owned(),
                        detail: "a chat endpoint is already given".to_owned(),
                    });
                }
                continue;
            }
            let path = PathBuf::from(spec);
            let metadata = std::fs::metadata(&path).map_err(|error| ModelsError::Missing {
                path: path.clone(),
                detail: error.to_string(),
            })?;
            let (kind, slot) = if metadata.is_dir() && path.join("config.json").is_file() {
                ("embedder", &mut models.embedder)
            } else if metadata.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension.eq_ignore_ascii_case("gguf"))
            {
                ("generator", &mut models.generator)
            } else {
                return Err(ModelsError::Unknown { path });
            };
            if !cfg!(feature = "models") {
                return Err(ModelsError::NotBuilt { path });
            }
            if kind == "generator"
                && let Some(endpoint) = &models.endpoint
            {
                return Err(ModelsError::Endpoint {
                    spec: format!("openai:{}@{}", endpoint.model, endpoint.base_url),
                    detail: format!("a chat model is also given ({})", path.display()),
                });
            }
            if let Some(first) = slot.replace(path.clone()) {
                return Err(ModelsError::Twice {
                    kind,
                    first,
                    second: path,
                });
            }
        }
        Ok(models)
    }

    /// Loads every model now, in this process, so that a model that cannot be loaded is an error before any
    /// question (and the first question does not pay for the loading).
    pub fn load(&self) -> Result<(), ModelsError> {
        #[cfg(feature = "models")]
        {
            super::real::load(self)
        }
        #[cfg(not(feature = "models"))]
        {
            match self.embedder.iter().chain(&self.generator).next() {
                Some(path) => Err(ModelsError::NotBuilt { path: path.clone() }),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_a_chat_model_asked_over_http() {
        let models =
            Models::from_specs(&["openai:llama3.2:1b@http://127.0.0.1:11434/v1"]).expect("valid");
        let endpoint = models.endpoint.clone().expect("an endpoint");
        assert_eq!(endpoint.model, "llama3.2:1b");
        assert_eq!(endpoint.base_url, "http://127.0.0.1:11434/v1");
        assert!(!models.is_simulated());
        assert_eq!(models.chat_model().as_deref(), Some("llama3.2:1b"));
        assert!(
            models.on_cpu().is_simulated(),
            "the endpoint is not asked on the CPU pool"
        );
        let twice =
            Models::from_specs(&["openai:a@http://127.0.0.1:1", "openai:b@http://127.0.0.1:2"]);
        assert!(
            matches!(twice, Err(ModelsError::Endpoint { .. })),
            "{twice:?}"
        );
    }

    #[test]
    fn an_endpoint_and_a_gguf_are_two_chat_models() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let gguf = directory.path().join("chat.gguf");
        std::fs::write(&gguf, b"GGUF").expect("written");
        let gguf = gguf.display().to_string();
        for specs in [
            [gguf.as_str(), "openai:m@http://127.0.0.1:1/v1"],
            ["openai:m@http://127.0.0.1:1/v1", gguf.as_str()],
        ] {
            let error = Models::from_specs(&specs).expect_err("two chat models");
            if cfg!(feature = "models") {
                assert!(matches!(error, ModelsError::Endpoint { .. }), "{error}");
            }
        }
    }
}
