//! Inferences kept beside the response they read. The simulated model is deterministic: the same response to the
//! same question gives the same inference, so a response served from the cache no longer pays for its inference
//! again on every question.
//!
//! An entry is keyed by the source, the question and the response's address, and holds the response itself:
//! while the entry lives no other response can have that address, so an address that matches is the same
//! response. A response fetched again (not from the cache) is a new allocation and misses.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde_json::Value;

use crate::infer::{Inference, Models};

/// The most inferences kept, over all sources and questions.
const CAPACITY: u64 = 1_024;

/// An inference nobody asked for in this long is dropped (its response has long left the response cache).
const IDLE: Duration = Duration::from_secs(10 * 60);

/// Inferences by source, question and response. Cheap to clone: clones share the entries.
#[derive(Debug, Clone)]
pub struct InferenceCache(Cache<Key, Kept>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    question: String,
    models: Models,
    response: usize,
}

#[derive(Debug, Clone)]
struct Kept {
    /// Held so that its address is not reused while the entry lives.
    _response: Arc<Value>,
    inference: Inference,
}

impl Default for InferenceCache {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
        )
    }
}

impl InferenceCache {
    /// The inference made earlier of `source`'s `response` to `question`, if kept. (A synchronous cache: a lookup
    /// never waits, and its future would only have grown every step's.)
    pub fn get(
        &self,
        source: &str,
        question: &str,
        models: &Models,
        response: &Arc<Value>,
    ) -> Option<Inference> {
        self.0
            .get(&key(source, question, models, response))
            .map(|kept| kept.inference)
    }

    /// Keeps `inference` by `models` of `source`'s `response` to `question`.
    pub fn insert(
        &self,
        source: &str,
        question: &str,
        models: &Models,
        response: &Arc<Value>,
        inference: &Inference,
    ) {
        let kept = Kept {
            _response: Arc::clone(response),
            inference: inference.clone(),
        };
        self.0.insert(key(source, question, models, response), kept);
    }
}

fn key(source: &str, question: &str, models: &Models, response: &Arc<Value>) -> Key {
    Key {
        source: source.to_owned(),
        question: question.to_owned(),
        models: models.clone(),
        response: Arc::as_ptr(response) as usize,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::infer::{Document, InferenceCost, infer};

    #[test]
    fn the_same_response_to_the_same_question_is_a_hit_and_nothing_else_is() {
        let cache = InferenceCache::default();
        let response = Arc::new(json!({"text": "Rain in Lima."}));
        let inference = infer(
            "Rain in Lima?",
            &Document::new("weather", "Rain in Lima."),
            InferenceCost::free(),
            &|| false,
        )
        .expect("never cancelled");
        let simulated = Models::simulated();
        cache.insert(
            "weather",
            "Rain in Lima?",
            &simulated,
            &response,
            &inference,
        );
        assert_eq!(
            cache.get("weather", "Rain in Lima?", &simulated, &response),
            Some(inference)
        );
        // An equal response fetched again is another response; another question, source or model misses too.
        let again = Arc::new(json!({"text": "Rain in Lima."}));
        assert_eq!(
            cache.get("weather", "Rain in Lima?", &simulated, &again),
            None
        );
        assert_eq!(
            cache.get("weather", "Sun in Lima?", &simulated, &response),
            None
        );
        assert_eq!(
            cache.get("news", "Rain in Lima?", &simulated, &response),
            None
        );
        let embedder = Models {
            embedder: Some("all-MiniLM-L6-v2".into()),
            ..Models::default()
        };
        assert_eq!(
            cache.get("weather", "Rain in Lima?", &embedder, &response),
            None
        );
    }
}
