//! From a source's response body to what inference reads, for every source kind: the client's JSON decoding
//! (`serde_json::from_slice`, as `SourceClient` does it), `extract::document_for`, then the simulated LLM's text
//! processing on the document (`infer` with no work units: the reading, summary, key terms, sentiment and
//! generation, without the budgeted kernel). A body that is not JSON is a fetch error and goes no further.
//!
//! The job and its outcome cross the worker-process protocol as JSON (`--executor processes`): the job must
//! come back equal, and the outcome must decode as the type the parent expects.
//!
//! Input: the question on the first line (itself outside input: batch lines, `ask`'s argument), then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tributary_agent::extract::document_for;
use tributary_agent::infer::{InferError, Inference, InferenceCost, InferenceJob, infer};
use tributary_agent::{Question, Source, SourceKind};
use url::Url;

const KINDS: [SourceKind; 3] = [
    SourceKind::Weather,
    SourceKind::News,
    SourceKind::KnowledgeBase,
];

fuzz_target!(|data: &[u8]| {
    let (question, body) = match data.iter().position(|byte| *byte == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"what is new?"[..], data),
    };
    let Ok(question) = std::str::from_utf8(question)
        .ok()
        .and_then(|text| Question::new(text).ok())
        .ok_or(())
    else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let base_url = Url::parse("http://127.0.0.1:9").expect("a valid URL");
    for kind in KINDS {
        let source = Source::new(kind.as_str(), kind, base_url.clone());
        let document = document_for(&source, &body);
        assert_eq!(document.source, kind.as_str());
        let job = InferenceJob::new(question.as_str(), document.clone(), 0);
        let encoded = serde_json::to_value(&job).expect("a job encodes");
        let decoded: InferenceJob = serde_json::from_value(encoded).expect("a job decodes");
        assert_eq!(decoded, job);

        let outcome = infer(
            question.as_str(),
            &document,
            InferenceCost::Units(0),
            &|| false,
        );
        let inference = outcome
            .as_ref()
            .expect("inference that is never told to stop finishes");
        assert_eq!(inference.source, kind.as_str());
        let encoded = serde_json::to_value(&outcome).expect("an outcome encodes");
        if let Err(error) = serde_json::from_value::<Result<Inference, InferError>>(encoded) {
            panic!("the parent could not decode the outcome: {error}");
        }
    }
});
