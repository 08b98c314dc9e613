//! Models loaded once per process and path, shared by every thread that asks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::ModelError;

/// The models of one type loaded so far, by path. A failed load is not kept: the next ask tries again (the file
/// may have been fixed). Two threads asking for the same path at once load it once: the lock is held while
/// loading, which is what a second asker would wait for anyway.
#[derive(Debug)]
pub(crate) struct Loaded<T> {
    models: Mutex<HashMap<PathBuf, Arc<T>>>,
}

impl<T> Loaded<T> {
    pub(crate) fn new() -> Self {
        Self {
            models: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get_or_load(
        &self,
        path: &Path,
        load: impl FnOnce(&Path) -> Result<T, ModelError>,
    ) -> Result<Arc<T>, ModelError> {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(model) = models.get(path) {
            return Ok(Arc::clone(model));
        }
        let model = Arc::new(load(path)?);
        models.insert(path.to_owned(), Arc::clone(&model));
        Ok(model)
    }
}
