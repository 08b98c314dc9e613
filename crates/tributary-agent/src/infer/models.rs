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
        self.embedder.is_none() && self.generator.is_none()
    }

    /// The models named by `specs`, each `simulated` or a path (a directory is an embedder, a `.gguf` file a
    /// generator), at most one of each kind.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Self, ModelsError> {
        let mut models = Self::default();
        for spec in specs {
            let spec = spec.as_ref();
            if spec == "simulated" {
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
