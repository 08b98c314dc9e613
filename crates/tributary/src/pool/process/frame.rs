//! The wire frames: one JSON object per line after [`FRAME_TAG`], a request from the parent and one response
//! from the worker, and how each side encodes and finds them (see the protocol in the `process` module docs).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Marks a protocol frame; everything before it on a line, and every line without it, is ignored.
pub(crate) const FRAME_TAG: &str = "tributary-frame/2 ";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RequestFrame {
    pub(super) id: u64,
    /// The job's [`CpuJob::NAME`](crate::pool::CpuJob::NAME).
    pub(super) job: String,
    /// The job itself.
    pub(super) input: Value,
    /// The job's span context, from [`TraceContext::inject`](super::TraceContext::inject); absent when not traced
    /// (and from older parents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) trace: Option<String>,
}

/// Exactly one of `output`, `rejected` and `progress`. Any number of progress frames may come before the one
/// that ends the job with its output or rejection.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ResponseFrame {
    pub(super) id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rejected: Option<String>,
    /// A piece of text the running job reported (see [`CpuJob::run_with_progress`](crate::pool::CpuJob)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) progress: Option<String>,
}

/// What a response frame to the awaited request brings.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The job is still running and reported this text.
    Progress(String),
    /// The job ended with this output.
    Output(Value),
}

/// Just the id of a frame whose body did not parse, to address the rejection.
#[derive(Debug, Deserialize)]
pub(super) struct FrameId {
    pub(super) id: u64,
}

impl ResponseFrame {
    pub(super) fn answer(id: u64, outcome: Result<Value, String>) -> Self {
        let (output, rejected) = match outcome {
            Ok(output) => (Some(output), None),
            Err(why) => (None, Some(why)),
        };
        Self {
            id,
            output,
            rejected,
            progress: None,
        }
    }

    pub(super) fn progress(id: u64, text: &str) -> Self {
        Self {
            id,
            output: None,
            rejected: None,
            progress: Some(text.to_owned()),
        }
    }

    pub(super) fn into_reply(self) -> Result<Reply, String> {
        match (self.output, self.rejected, self.progress) {
            (_, Some(why), _) => Err(format!("the worker rejected the request: {why}")),
            (Some(output), None, None) => Ok(Reply::Output(output)),
            (None, None, Some(text)) => Ok(Reply::Progress(text)),
            (Some(_), None, Some(_)) => Err("the reply has both an output and progress".to_owned()),
            (None, None, None) => Err("the reply has neither an output nor a rejection".to_owned()),
        }
    }
}

/// One frame: the tag, the JSON, a newline.
pub(super) fn encode_frame(frame: &impl Serialize) -> String {
    let json = serde_json::to_string(frame).expect("protocol frames always serialise to JSON");
    format!("{FRAME_TAG}{json}\n")
}

/// The JSON after the frame tag, if the line holds a frame.
pub(super) fn frame_payload(line: &str) -> Option<&str> {
    line.find(FRAME_TAG)
        .map(|start| line[start + FRAME_TAG.len()..].trim_end())
}

/// The job's progress or output in the response frame `payload`, which must answer request `id`; `Err` says why
/// the reply cannot be used (the worker is then out of step).
pub(super) fn decode_reply(payload: &str, id: u64) -> Result<Reply, String> {
    let frame: ResponseFrame =
        serde_json::from_str(payload).map_err(|error| format!("parse reply: {error}"))?;
    if frame.id != id {
        return Err(format!(
            "got the reply to request {} while waiting for {id}",
            frame.id
        ));
    }
    frame.into_reply()
}
