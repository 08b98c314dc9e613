//! What can go wrong when fetching from a source, in kinds the agent maps to statuses.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use super::retry::AttemptRecord;

/// A fetch failed after one or more attempts.
///
/// The [`kind`](Self::kind) says what went wrong on the last attempt; [`attempts`](Self::attempts) and
/// [`attempt_log`](Self::attempt_log) say how hard the client tried, so the caller can draw retries and timeouts
/// on its timeline even when the fetch failed. It is `Clone` because a single-flight cache hands the same
/// failure to every caller that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fetch from source `{source_name}` after {attempts} attempt(s)")]
pub struct FetchError {
    source_name: String,
    #[source]
    kind: FetchErrorKind,
    attempts: u32,
    attempt_log: Vec<AttemptRecord>,
}

impl FetchError {
    pub(crate) fn new(
        source_name: &str,
        kind: FetchErrorKind,
        attempt_log: Vec<AttemptRecord>,
    ) -> Self {
        Self {
            source_name: source_name.to_owned(),
            kind,
            attempts: u32::try_from(attempt_log.len()).unwrap_or(u32::MAX),
            attempt_log,
        }
    }

    /// The name of the source that failed.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// What went wrong (on the last attempt, when there were several).
    pub fn kind(&self) -> &FetchErrorKind {
        &self.kind
    }

    /// How many HTTP requests this caller sent (zero when it never got to send one, e.g. the deadline had
    /// already passed, or it was waiting on another caller's identical request).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// One record per attempt, in order.
    pub fn attempt_log(&self) -> &[AttemptRecord] {
        &self.attempt_log
    }

    /// Whether the overall deadline (rather than anything about the source itself) ended the fetch.
    pub fn is_deadline(&self) -> bool {
        matches!(self.kind, FetchErrorKind::DeadlineExceeded)
    }
}

/// The kinds of fetch failure. Messages read well after "failed to ".
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// One attempt took longer than the source's per-attempt timeout (retryable).
    #[error("get an answer within the per-attempt timeout of {}", humantime::format_duration(*timeout))]
    AttemptTimeout {
        /// The source's per-attempt timeout.
        timeout: Duration,
    },
    /// The caller's overall deadline passed (never retried).
    #[error("finish before the overall deadline")]
    DeadlineExceeded,
    /// The source answered with a non-success status. 5xx and 429 are retried, other 4xx are not.
    #[error("get a successful response: http status {status}")]
    HttpStatus {
        /// The status the source answered with.
        status: StatusCode,
    },
    /// The response body was larger than the source's limit (never retried).
    #[error("read a response body within the {limit_bytes}-byte limit")]
    BodyTooLarge {
        /// The limit that was exceeded, in bytes.
        limit_bytes: u64,
    },
    /// The body was not valid JSON (never retried: a broken encoder tends to stay broken).
    #[error("parse the response body as json: {detail} at line {line} column {column}")]
    MalformedJson {
        /// serde_json's description of the problem, without the position.
        detail: String,
        /// 1-based line of the problem in the body.
        line: usize,
        /// 1-based column of the problem in the body.
        column: usize,
        /// The original parser error.
        #[source]
        cause: Arc<serde_json::Error>,
    },
    /// Connecting, sending the request or reading the body failed at the transport level (retryable).
    #[error("talk to the source over http")]
    Transport(#[source] Arc<reqwest::Error>),
}

impl FetchErrorKind {
    /// Whether another attempt could plausibly succeed: timeouts, transport errors, 5xx and 429.
    ///
    /// Deadline expiry is not retryable (there is no time left), and neither is a 4xx other than 429 (the request
    /// itself is wrong), an oversized body, or malformed JSON.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchErrorKind::AttemptTimeout { .. } | FetchErrorKind::Transport(_) => true,
            FetchErrorKind::HttpStatus { status } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            FetchErrorKind::DeadlineExceeded
            | FetchErrorKind::BodyTooLarge { .. }
            | FetchErrorKind::MalformedJson { .. } => false,
        }
    }

    pub(crate) fn malformed_json(error: serde_json::Error) -> Self {
        let message = error.to_string();
        // serde_json appends " at line L column C"; keep the description on its own.
        let detail = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(detail, _)| detail)
            .to_owned();
        FetchErrorKind::MalformedJson {
            detail,
            line: error.line(),
            column: error.column(),
            cause: Arc::new(error),
        }
    }
}
