//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the parent's side of the frame protocol
//! without a process. [`serve_worker`](super::serve_worker) is the worker's side. Not part of the API: it may
//! change at any time.

use serde_json::Value;

pub use super::frame::Reply;
use super::frame::{RequestFrame, decode_reply, encode_frame, frame_payload};

/// Marks a protocol frame.
pub const FRAME_TAG: &str = super::frame::FRAME_TAG;

/// What the parent makes of one line of a worker's stdout while it waits for the reply to request `id`:
/// `None` for a line without a frame (ignored), else the job's progress or output, or why the reply is unusable.
pub fn parent_reads_line(line: &str, id: u64) -> Option<Result<Reply, String>> {
    frame_payload(line).map(|payload| decode_reply(payload, id))
}

/// The request line the parent writes for job `job` with `input`, as request `id`.
pub fn request_line(id: u64, job: &str, input: Value) -> String {
    encode_frame(&RequestFrame {
        id,
        job: job.to_owned(),
        input,
        trace: None,
    })
}
