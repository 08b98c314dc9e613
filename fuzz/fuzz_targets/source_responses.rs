//! From a source's response body to what inference reads, for every source kind (the public APIs' included):
//! the client's JSON decoding (`serde_json::from_slice`, as `SourceClient` does it), `extract::document_for`,
//! then the simulated LLM's text
//! processing on the document (an `InferenceJob` with no work units: the reading, summary, key terms, sentiment
//! and generation, without the budgeted kernel). A body that is not JSON is a fetch error and goes no further.
//!
//! The job runs the way `--executor processes` runs it: encoded as the parent's request frame, served by
//! `serve_worker` with the agent's own `worker_jobs`, and its reply decoded by the parent as the job's output
//! type. The job must survive the encoding unchanged and its outcome must come back usable.
//!
//! Input: the question on the first line (itself outside input: batch lines, `ask`'s argument), then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tributary::pool::fuzzing::{Reply, parent_reads_line, request_line};
use tributary::pool::{CpuJob, serve_worker};
use tributary_agent::extract::document_for;
use tributary_agent::infer::{InferenceJob, worker_jobs};
use tributary_agent::{Question, Source, SourceKind};
use url::Url;

/// The id of the one request each job goes out as.
const REQUEST_ID: u64 = 1;

/// Every kind: the simulated protocol's three, the public APIs' (Open-Meteo, HN Algolia, Wikipedia) and an MCP
/// tool's result.
const KINDS: [SourceKind; 7] = SourceKind::ALL;

fuzz_target!(|data: &[u8]| {
    let (question, body) = match data.iter().position(|byte| *byte == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"what is new?"[..], data),
    };
    let Some(question) = std::str::from_utf8(question)
        .ok()
        .and_then(|text| Question::new(text).ok())
    else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let base_url = Url::parse("http://127.0.0.1:9").expect("a valid URL");
    let jobs = worker_jobs();
    for kind in KINDS {
        let source = Source::new(kind.as_str(), kind, base_url.clone());
        let document = document_for(&source, &body);
        assert_eq!(document.source, kind.as_str());
        let job = InferenceJob::new(question.as_str(), document, 0);
        let input = serde_json::to_value(&job).expect("a job encodes");
        let decoded: InferenceJob = serde_json::from_value(input.clone()).expect("a job decodes");
        assert_eq!(decoded, job);

        let request = request_line(REQUEST_ID, InferenceJob::NAME, input);
        let mut reply = Vec::new();
        serve_worker(&jobs, request.as_bytes(), &mut reply)
            .expect("serving from memory cannot fail");
        let reply = String::from_utf8(reply).expect("the worker writes UTF-8");
        let output = match parent_reads_line(&reply, REQUEST_ID) {
            Some(Ok(Reply::Output(output))) => output,
            Some(Ok(Reply::Progress(_))) => {
                panic!("the simulated model reported progress: {reply}")
            }
            Some(Err(why)) => panic!("the parent cannot use the reply: {why}\n{reply}"),
            None => panic!("the worker answered no frame: {reply}"),
        };
        let outcome: <InferenceJob as CpuJob>::Output = match serde_json::from_value(output) {
            Ok(outcome) => outcome,
            Err(error) => panic!("the parent cannot decode the outcome: {error}\n{reply}"),
        };
        let inference = outcome.expect("inference that is never told to stop finishes");
        assert_eq!(inference.source, kind.as_str());
    }
});
