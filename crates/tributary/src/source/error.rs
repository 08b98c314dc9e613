//! What can go wrong when fetching from a source, in kinds the agent maps to statuses.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use super::rate::RateLimit;
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
    /// `source_name`'s fetch failed with `kind` after the attempts of `attempt_log` (none: nothing was sent).
    pub fn new(source_name: &str, kind: FetchErrorKind, attempt_log: Vec<AttemptRecord>) -> Self {
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

    /// How many HTTP requests this caller sent, hedges included (zero when it never got to send one, e.g. the
    /// deadline had already passed, the circuit was open, or it was waiting on another caller's identical
    /// request).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How many of those requests were hedges.
    pub fn hedges(&self) -> u32 {
        super::retry::hedges_in(&self.attempt_log)
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
        /// The original parser error (not a `source`: its text is `detail` and the position, already in the
        /// message, and an error chain would print it twice).
        cause: Arc<serde_json::Error>,
    },
    /// Connecting, sending the request or reading the body failed at the transport level (retryable).
    #[error("talk to the source over http")]
    Transport(#[source] Arc<reqwest::Error>),
    /// The source's circuit breaker is open: it kept failing, so it was not asked (never retried).
    #[error("ask the source: its circuit is open after repeated failures (next probe {})", next_probe(*retry_in))]
    CircuitOpen {
        /// How long until the breaker lets a probe through (zero: probes are in flight now).
        retry_in: Duration,
    },
    /// The source's rate limit has no free slot before the deadline, so the request was not sent (never
    /// retried).
    #[error("send within the source's rate limit of {limit} before the deadline (the next slot is {} away)", crate::trace::format_duration(*wait))]
    RateLimited {
        /// The source's limit.
        limit: RateLimit,
        /// How long the next free slot was away.
        wait: Duration,
    },
    /// A call through the caller's own transport ([`SourceClient::call`](super::SourceClient::call)) failed;
    /// `detail` reads after "failed to " and says what the source did.
    #[error("{detail}")]
    Call {
        /// What went wrong, after "failed to ": "call the tool `search`: the server exited".
        detail: String,
        /// Which kind of failure it was: decides retrying and the breaker.
        failure: CallFailure,
    },
}

/// How a [`FetchErrorKind::Call`] failed, which decides whether it is retried and whether the circuit breaker
/// counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallFailure {
    /// The source could not be reached (its process not started, its address refused): retried, counted.
    Connect,
    /// The exchange broke after it began (the process exited, the connection closed): retried, counted.
    Transport,
    /// The source's answer could not be read (not its protocol, garbage): not retried, counted.
    Malformed,
    /// The source answered that the call failed (a tool's error result): not retried, counted.
    Failed,
    /// The source refused the request as wrong (an unknown tool, arguments of the wrong shape): not retried, not
    /// counted (the request's fault, like a 4xx).
    Refused,
}

/// "in 3000 ms" (the one duration format), or "once the probes in flight report".
fn next_probe(retry_in: Duration) -> String {
    if retry_in.is_zero() {
        "once the probes in flight report".to_owned()
    } else {
        format!("in {}", crate::trace::format_duration(retry_in))
    }
}

impl FetchErrorKind {
    /// For [`CircuitOpen`](Self::CircuitOpen), when the breaker lets its next probe through, as this error's
    /// message says it ("in 3000 ms", or "once the probes in flight report"); `None` for every other kind.
    pub fn next_probe(&self) -> Option<String> {
        match self {
            Self::CircuitOpen { retry_in } => Some(next_probe(*retry_in)),
            _ => None,
        }
    }

    /// Whether another attempt could plausibly succeed: timeouts, transport errors, 5xx and 429.
    ///
    /// Deadline expiry is not retryable (there is no time left), and neither is a 4xx other than 429 (the request
    /// itself is wrong), an oversized body, malformed JSON, or a transport error that a second identical request
    /// would meet again: a redirect loop, a response that is not HTTP, headers over the size limit.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchErrorKind::AttemptTimeout { .. } => true,
            FetchErrorKind::Call { failure, .. } => {
                matches!(failure, CallFailure::Connect | CallFailure::Transport)
            }
            FetchErrorKind::Transport(error) => !cannot_heal(error),
            FetchErrorKind::HttpStatus { status } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            FetchErrorKind::DeadlineExceeded
            | FetchErrorKind::BodyTooLarge { .. }
            | FetchErrorKind::MalformedJson { .. }
            | FetchErrorKind::CircuitOpen { .. }
            | FetchErrorKind::RateLimited { .. } => false,
        }
    }

    /// Whether this failure is the source's fault, as a circuit breaker counts it: a transport error, a
    /// timeout, a 5xx or 429, an oversized or malformed body. A 4xx other than 429 is the request's fault; the
    /// breaker and the rate limit are the client's own decisions.
    pub fn counts_against_source(&self) -> bool {
        match self {
            FetchErrorKind::HttpStatus { status } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            FetchErrorKind::AttemptTimeout { .. }
            | FetchErrorKind::DeadlineExceeded
            | FetchErrorKind::BodyTooLarge { .. }
            | FetchErrorKind::MalformedJson { .. }
            | FetchErrorKind::Transport(_) => true,
            FetchErrorKind::Call { failure, .. } => *failure != CallFailure::Refused,
            FetchErrorKind::CircuitOpen { .. } | FetchErrorKind::RateLimited { .. } => false,
        }
    }

    /// `body` failed to parse with `error`; the detail names what the body is when it is plainly not JSON
    /// (an HTML error page, compressed bytes, binary), which the parser's "expected value" does not say.
    pub(crate) fn malformed_json(error: serde_json::Error, body: &[u8]) -> Self {
        let message = error.to_string();
        // serde_json appends " at line L column C"; keep the description on its own.
        let parsed = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(detail, _)| detail);
        let detail = match body_kind(body) {
            Some(kind) => format!("{kind} ({parsed})"),
            None => parsed.to_owned(),
        };
        FetchErrorKind::MalformedJson {
            detail,
            line: error.line(),
            column: error.column(),
            cause: Arc::new(error),
        }
    }
}

/// Whether a transport error is the source's way of answering rather than bad luck on the wire: too many
/// redirects (a loop), or a response hyper cannot parse (garbage, an invalid status line, headers too large).
/// A reset or a closed connection may well heal, and is retried.
fn cannot_heal(error: &reqwest::Error) -> bool {
    if error.is_redirect() {
        return true;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        if let Some(http) = inner.downcast_ref::<hyper::Error>() {
            return http.is_parse() || http.is_parse_status();
        }
        cause = inner.source();
    }
    false
}

/// What a body that is plainly not JSON is, by its first bytes, as a sentence.
fn body_kind(body: &[u8]) -> Option<&'static str> {
    let start = body.trim_ascii_start();
    if start.starts_with(&[0x1f, 0x8b]) {
        return Some("the body is gzip-compressed data, not JSON");
    }
    if start.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some("the body is zstd-compressed data, not JSON");
    }
    if start.starts_with(b"BZh") {
        return Some("the body is bzip2-compressed data, not JSON");
    }
    let lowercase = |length: usize| start.get(..length).map(<[u8]>::to_ascii_lowercase);
    if lowercase(9).as_deref() == Some(b"<!doctype") || lowercase(5).as_deref() == Some(b"<html") {
        return Some("the body is an HTML page, not JSON");
    }
    if start.starts_with(b"<") {
        return Some("the body is HTML or XML, not JSON");
    }
    if std::str::from_utf8(body).is_err() {
        return Some("the body is not valid UTF-8");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(body: &[u8]) -> String {
        let error = serde_json::from_slice::<serde_json::Value>(body).expect_err("not json");
        match FetchErrorKind::malformed_json(error, body) {
            FetchErrorKind::MalformedJson { detail, .. } => detail,
            other => panic!("{other:?}"),
        }
    }

    /// An HTML error page or a compressed body was once reported as a bare "expected value".
    #[test]
    fn a_body_that_is_plainly_not_json_is_named() {
        assert_eq!(
            detail(b"<!DOCTYPE html><p>502</p>"),
            "the body is an HTML page, not JSON (expected value)"
        );
        assert!(detail(b"  <html>").starts_with("the body is an HTML page"));
        assert!(detail(b"<?xml version=\"1.0\"?>").starts_with("the body is HTML or XML"));
        assert!(detail(&[0x1f, 0x8b, 8, 0, 0]).starts_with("the body is gzip-compressed data"));
        assert!(detail(&[0xff, 0xfe, 0x00]).starts_with("the body is not valid UTF-8 ("));
        assert_eq!(detail(b"{\"a\": oops}"), "expected value");
    }

    /// The parser's detail was once printed twice in an error chain (in the message and as its source).
    #[test]
    fn malformed_json_is_described_once_in_the_chain() {
        let body = b"{oops";
        let error = serde_json::from_slice::<serde_json::Value>(body).expect_err("not json");
        let kind = FetchErrorKind::malformed_json(error, body);
        assert!(std::error::Error::source(&kind).is_none());
        assert_eq!(
            kind.to_string().matches("key must be a string").count(),
            1,
            "{kind}"
        );
    }
}
