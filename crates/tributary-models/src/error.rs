//! What can go wrong loading or running a model.

use std::path::PathBuf;

/// A model that could not be loaded or run. Every variant names the file it is about.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read.
    #[error("read {path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A file was read but is not a model this crate runs.
    #[error("load {path}: {detail}")]
    Format {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The model failed while running (a tensor operation, the tokenizer).
    #[error("run {path}: {detail}")]
    Run {
        /// The model's file or directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl ModelError {
    pub(crate) fn read(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::Read {
            path: path.into(),
            detail: error.to_string(),
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::Format {
            path: path.into(),
            detail: error.to_string(),
        }
    }

    pub(crate) fn run(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::Run {
            path: path.into(),
            detail: error.to_string(),
        }
    }
}
