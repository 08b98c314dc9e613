//! The messages on the streams: serde JSON with a version field, so that a coordinator and workers of different
//! releases refuse each other's messages instead of misreading them.
//!
//! A question carries what the worker needs to answer it and what the coordinator needs to store it (its id and
//! line come back in the answer, so the coordinator keeps no per-question state beyond its window). An answer is
//! the store's row: the answer object exactly as `ask --json` prints it, plus the columns the row adds.

use serde::{Deserialize, Serialize};

use crate::input::RecordId;
use crate::store::AnswerRow;
use tributary_agent::report::{AgentReport, AnswerStatus};

/// The version of both message shapes this code writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// A question, as the coordinator publishes it (on `tributary.questions.BATCH`, with `Nats-Msg-Id` =
/// `BATCH:ID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The batch's key: the answer goes to `tributary.answers.BATCH`.
    pub batch: String,
    /// The input id: the store's primary key, and the message id the stream de-duplicates on.
    pub id: String,
    /// The input line it came from.
    pub line: u64,
    /// The question's text, as read (the worker validates it again).
    pub question: String,
    /// Deliveries of this question at most (the batch's `--max-deliver`): on that one, the worker answers it
    /// `failed` instead of running it, since every delivery before ended without an answer.
    ///
    /// The workers keep this limit, not the server: the consumer redelivers without end. With the server's own
    /// `max_deliver`, a worker killed (or a broker restarted) during a question's last delivery left it
    /// delivered to nobody ever again, and its batch waiting forever; now the next delivery is answered
    /// `failed` too. It also makes the limit the batch's, not whichever side made the consumer first.
    pub max_deliver: u32,
}

/// An answer, as a worker publishes it (on `tributary.answers.BATCH`, with `Nats-Msg-Id` = `BATCH:ID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    pub id: String,
    pub line: u64,
    /// Which worker answered: the coordinator's per-worker throughput.
    pub worker: String,
    pub status: AnswerStatus,
    /// The answer object, as `ask --json` prints it and the store keeps it.
    pub answer: AgentReport,
    pub error: Option<String>,
    pub fetch_ms: Option<f64>,
    pub infer_ms: Option<f64>,
    pub elapsed_ms: f64,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("decode a message")]
    Decode(#[source] serde_json::Error),
    #[error("read a message of version {found} (this build reads version {WIRE_VERSION})")]
    Version { found: u32 },
    #[error("encode a message")]
    Encode(#[source] serde_json::Error),
}

/// Only the version, read first: a message of another version is refused by its version, not by a field it
/// happens to lack.
#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

impl QuestionMessage {
    pub fn new(batch: &str, id: &str, line: u64, question: &str, max_deliver: u32) -> Self {
        Self {
            v: WIRE_VERSION,
            batch: batch.to_owned(),
            id: id.to_owned(),
            line,
            question: question.to_owned(),
            max_deliver,
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        decode(payload)
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(WireError::Encode)
    }
}

impl AnswerMessage {
    /// The message for `row`, answered by `worker`. Only rows with a given id travel: a line whose id cannot be
    /// read is stored by the coordinator itself.
    pub fn from_row(row: AnswerRow, id: String, worker: &str) -> Self {
        Self {
            v: WIRE_VERSION,
            id,
            line: row.line,
            worker: worker.to_owned(),
            status: row.status,
            answer: row.answer,
            error: row.error,
            fetch_ms: row.fetch_ms,
            infer_ms: row.infer_ms,
            elapsed_ms: row.elapsed_ms,
        }
    }

    /// The row to store.
    pub fn into_row(self) -> AnswerRow {
        AnswerRow {
            id: RecordId::new(self.id),
            line: self.line,
            question: self.answer.question.clone(),
            status: self.status,
            answer: self.answer,
            error: self.error,
            fetch_ms: self.fetch_ms,
            infer_ms: self.infer_ms,
            elapsed_ms: self.elapsed_ms,
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        decode(payload)
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(WireError::Encode)
    }
}

fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, WireError> {
    let Versioned { v } = serde_json::from_slice(payload).map_err(WireError::Decode)?;
    if v != WIRE_VERSION {
        return Err(WireError::Version { found: v });
    }
    serde_json::from_slice(payload).map_err(WireError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_agent::report::{AnswerFailure, RunMode};

    #[test]
    fn a_question_round_trips() {
        let message = QuestionMessage::new("0123abcd", "q7", 7, "Is it raining in Lima?", 5);
        let encoded = message.encode().expect("encodes");
        assert_eq!(QuestionMessage::decode(&encoded).expect("decodes"), message);
    }

    fn answer_message(failure: Option<AnswerFailure>) -> AnswerMessage {
        AnswerMessage {
            v: WIRE_VERSION,
            id: "q7".to_owned(),
            line: 7,
            worker: "host:1".to_owned(),
            status: AnswerStatus::Failed,
            answer: AgentReport {
                question: Some("Is it raining in Lima?".to_owned()),
                status: AnswerStatus::Failed,
                answer: None,
                error: Some("no source answered (...)".to_owned()),
                failure,
                degraded: true,
                mode: RunMode::Concurrent,
                elapsed_ms: 4.0,
                ideal_ms: 3.0,
                efficiency: 0.75,
                workers: 2,
                deadline_ms: 15_000.0,
                per_source_timeout_ms: 5_000.0,
                sources: Vec::new(),
                synthesis: None,
            },
            error: Some("no source answered (...)".to_owned()),
            fetch_ms: Some(1.0),
            infer_ms: None,
            elapsed_ms: 4.0,
        }
    }

    /// The failure kinds were added to the answer object without a new wire version: an answer from a worker
    /// that predates them (no `failure` key) reads with no kind, and a key a reader does not know is ignored,
    /// which is how a version-1 reader that predates them reads this version's answers.
    #[test]
    fn answers_with_and_without_the_failure_kinds_read_as_version_1() {
        let message = answer_message(Some(AnswerFailure::NoSourceAnswered));
        let encoded = message.encode().expect("encodes");
        let mut json: serde_json::Value = serde_json::from_slice(&encoded).expect("json");
        assert_eq!(json["v"], 1);
        assert_eq!(json["answer"]["failure"], "no_source_answered");
        assert_eq!(AnswerMessage::decode(&encoded).expect("decodes"), message);

        let answer = json["answer"].as_object_mut().expect("an object");
        answer.remove("failure");
        let older = serde_json::to_vec(&json).expect("encodes");
        assert_eq!(
            AnswerMessage::decode(&older).expect("an older worker's answer decodes"),
            answer_message(None)
        );

        json["answer"]["a_field_from_a_newer_version"] = serde_json::json!(true);
        let newer = serde_json::to_vec(&json).expect("encodes");
        assert_eq!(
            AnswerMessage::decode(&newer).expect("a newer worker's answer decodes"),
            answer_message(None)
        );
    }

    #[test]
    fn another_version_is_refused_by_its_version() {
        let error = QuestionMessage::decode(br#"{"v": 2, "id": "1"}"#).expect_err("refused");
        assert!(matches!(error, WireError::Version { found: 2 }), "{error}");
        let error = QuestionMessage::decode(b"not json").expect_err("refused");
        assert!(matches!(error, WireError::Decode(_)), "{error}");
    }
}
