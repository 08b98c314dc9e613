//! A source's summary written by an OpenAI-compatible chat endpoint (`--model openai:MODEL@BASE_URL`): inference
//! as I/O. The sentences are picked on the CPU pool as always; then the endpoint is asked, through the same
//! [`SourceClient`](tributary::source::SourceClient) as the sources, for a streamed completion
//! (`POST BASE_URL/chat/completions`, `"stream": true`): its circuit breaker, its per-attempt timeout (the
//! per-source timeout), retries until the first token, the question's deadline, and its attempts drawn on the
//! source's lane. Each token goes to the source's open inference as progress, as a local model's do.
//!
//! It winds up like a local generation: shortly before the deadline the stream is dropped and what came is kept,
//! marked cut short. An endpoint that fails, refuses or writes nothing leaves the sentences as the summary, and
//! says why on the timeline.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use tributary::group::Deadline;
use tributary::source::{BearerToken, BreakerPolicy, SourceRequest, SourceSpec};
use tributary::trace::{EventKind, InstantEvent, Outcome as SpanOutcome, SpanProgress};

use super::StepContext;
use super::timeline::record_requests;
use crate::infer::{ChatEndpoint, Document, Inference, prompt};

/// The variable that holds the endpoint's API key, sent as a bearer token when set (what OpenAI's own clients
/// read).
pub const API_KEY_VARIABLE: &str = "OPENAI_API_KEY";

/// The name of the endpoint's breaker and of its requests on the timeline.
const ENDPOINT_NAME: &str = "chat endpoint";

/// The endpoint and how it is asked: built once per question from the models and the environment.
#[derive(Debug, Clone)]
pub struct Chat {
    spec: SourceSpec,
    model: String,
}

impl Chat {
    /// How `endpoint` is asked: each attempt bounded by `per_source_timeout`, two retries before the first token,
    /// a circuit breaker shared by every question of the client; the key from [`API_KEY_VARIABLE`].
    pub fn new(endpoint: &ChatEndpoint, per_source_timeout: Duration) -> Option<Self> {
        let base_url = url::Url::parse(&endpoint.base_url).ok()?;
        let mut spec = SourceSpec::new(ENDPOINT_NAME, base_url);
        spec.timeout = per_source_timeout;
        spec.breaker = Some(BreakerPolicy::default());
        spec.bearer_token = std::env::var(API_KEY_VARIABLE)
            .ok()
            .filter(|key| !key.is_empty())
            .map(BearerToken::new);
        Some(Self {
            spec,
            model: endpoint.model.clone(),
        })
    }
}

/// One chunk of a streamed chat completion (the fields read; others are ignored).
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

/// A completion that was not streamed (a server that ignores `"stream": true`): the fields read.
#[derive(Debug, Deserialize)]
struct Whole {
    choices: Vec<WholeChoice>,
}

#[derive(Debug, Deserialize)]
struct WholeChoice {
    message: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// What the stream has brought so far.
#[derive(Debug, Default)]
struct Written {
    text: String,
    /// Content pieces, about one per token.
    pieces: usize,
    finish_reason: Option<String>,
    /// The data of the event being read (an event's `data:` lines, joined), until its blank line.
    event: Option<String>,
    /// The first event that did not parse, if any.
    malformed: Option<String>,
    done: bool,
    /// The body's lines while no event came: a completion that was not streamed is one JSON document.
    unstreamed: String,
    events: usize,
}

impl Written {
    /// Ends the body: a last event without its blank line counts, and a body with no event at all may be a
    /// completion that was not streamed.
    fn finish(&mut self) {
        if let Some(data) = self.event.take() {
            self.event_data(&data, None);
        }
        if self.events == 0
            && let Ok(whole) = serde_json::from_str::<Whole>(&self.unstreamed)
            && let Some(choice) = whole.choices.into_iter().next()
        {
            self.text = choice.message.content.unwrap_or_default();
            self.pieces = 1;
            self.finish_reason = choice.finish_reason;
        }
    }

    /// Reads one line of the event stream (<https://html.spec.whatwg.org/multipage/server-sent-events.html>):
    /// `data` fields accumulate, a blank line ends the event, comments and other fields are skipped.
    fn line(&mut self, line: &str, progress: Option<&SpanProgress>) {
        if line.is_empty() {
            if let Some(data) = self.event.take() {
                self.event_data(&data, progress);
            }
            return;
        }
        if self.events == 0 && self.event.is_none() {
            self.unstreamed.push_str(line);
            self.unstreamed.push('\n');
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.event {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.event = Some(value.to_owned()),
            }
        }
    }

    fn event_data(&mut self, data: &str, progress: Option<&SpanProgress>) {
        self.events += 1;
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        match serde_json::from_str::<Chunk>(data) {
            Ok(chunk) => {
                for choice in chunk.choices.into_iter().take(1) {
                    if let Some(content) =
                        choice.delta.content.filter(|content| !content.is_empty())
                    {
                        if let Some(progress) = progress {
                            progress.report(&content);
                        }
                        self.text.push_str(&content);
                        self.pieces += 1;
                    }
                    if choice.finish_reason.is_some() {
                        self.finish_reason = choice.finish_reason;
                    }
                }
            }
            Err(error) => {
                self.malformed.get_or_insert_with(|| {
                    format!("an event that is not a completion chunk ({error})")
                });
            }
        }
    }
}

/// Asks `chat` to write `inference`'s summary for `question` from its sentences, streaming into `progress`, and
/// winding up at `wind_up` within `deadline`. On success the summary is the endpoint's, marked generated (and
/// cut short when it was); returns false, leaving the sentences, when no text came (the reason on the timeline).
#[expect(
    clippy::too_many_arguments,
    reason = "one generation's whole context, passed down once"
)]
pub(super) async fn write_summary(
    context: &StepContext,
    chat: &Chat,
    lane: &str,
    question: &str,
    document: &Document,
    inference: &mut Inference,
    (wind_up, deadline): (Deadline, Deadline),
    progress: Option<SpanProgress>,
) -> bool {
    let body = json!({
        "model": chat.model,
        "messages": [
            { "role": "system", "content": prompt::SYSTEM },
            { "role": "user", "content": prompt::grounded_user(question, document, &inference.summary) },
        ],
        "stream": true,
        "temperature": 0,
        "max_tokens": prompt::SUMMARY_TOKENS,
    });
    let written = Mutex::new(Written::default());
    let on_line = |line: &str| {
        written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .line(line, progress.as_ref());
    };
    let started = Instant::now();
    let request = SourceRequest::new("chat/completions");
    let call = context
        .client
        .stream_post(&chat.spec, &request, &body, deadline, &on_line);
    let outcome = match wind_up.instant() {
        Some(at) => tokio::time::timeout_at(at, call).await.ok(),
        None => Some(call.await),
    };
    let ended = Instant::now();
    let mut written = written.into_inner().unwrap_or_else(PoisonError::into_inner);
    if matches!(outcome, Some(Ok(_))) {
        written.finish();
    }
    let (span_outcome, attempts, failure) = match &outcome {
        None => (
            SpanOutcome::TimedOut,
            Vec::new(),
            Some("wound up before the deadline".to_owned()),
        ),
        Some(Ok(fetched)) => (SpanOutcome::Ok, fetched.attempt_log.clone(), None),
        Some(Err(error)) => (
            if error.is_deadline() {
                SpanOutcome::TimedOut
            } else {
                SpanOutcome::Failed
            },
            error.attempt_log().to_vec(),
            Some(crate::step::error_chain(error)),
        ),
    };
    record_requests(
        context.timeline.as_ref(),
        lane,
        format!("POST {} ({ENDPOINT_NAME})", request.path),
        (started, ended),
        span_outcome,
        &attempts,
    );
    let text = written.text.trim();
    if text.is_empty() {
        let why = failure
            .or(written.malformed)
            .unwrap_or_else(|| "the endpoint wrote nothing".to_owned());
        note(context, lane, format!("{ENDPOINT_NAME}: no summary: {why}"));
        tracing::warn!(endpoint = %chat.spec.base_url, %why, "the chat endpoint wrote no summary; the sentences stand");
        return false;
    }
    // Whole when the stream ended by itself for a reason other than its token limit.
    let whole = outcome.as_ref().is_some_and(Result::is_ok)
        && written.finish_reason.as_deref() != Some("length");
    if let Some(why) = failure.or(written.malformed) {
        note(context, lane, format!("{ENDPOINT_NAME}: cut short: {why}"));
    }
    inference.summary = vec![if whole {
        text.to_owned()
    } else {
        format!("{text} … (cut short)")
    }];
    inference.generated = text.to_owned();
    inference.generated_by = Some(chat.model.clone());
    inference.cut_short = !whole;
    inference.tokens.generated = written.pieces;
    true
}

fn note(context: &StepContext, lane: &str, name: String) {
    if let Some(timeline) = &context.timeline {
        timeline.record_event(InstantEvent::new(
            lane,
            name,
            EventKind::Failure,
            timeline.elapsed(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Written {
        let mut written = Written::default();
        for line in lines {
            written.line(line, None);
        }
        written
    }

    #[test]
    fn the_stream_is_read_event_by_event() {
        let written = read(&[
            ": a comment",
            r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#,
            "",
            r#"data: {"choices":[{"delta":{"content":"Take"}}]}"#,
            "",
            "event: message",
            r#"data:{"choices":[{"delta":{"content":" an umbrella."}}]}"#,
            "",
            r#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            "",
            "data: [DONE]",
            "",
        ]);
        assert_eq!(written.text, "Take an umbrella.");
        assert_eq!(written.pieces, 2);
        assert_eq!(written.finish_reason.as_deref(), Some("stop"));
        assert!(written.done && written.malformed.is_none());
    }

    #[test]
    fn a_completion_that_was_not_streamed_is_read_whole() {
        let mut written = read(&[
            r#"{"id": "x", "choices": [{"index": 0,"#,
            r#"  "message": {"role": "assistant", "content": "Take an umbrella."}, "finish_reason": "stop"}]}"#,
        ]);
        written.finish();
        assert_eq!(written.text, "Take an umbrella.");
        assert_eq!(written.finish_reason.as_deref(), Some("stop"));
        let mut html = read(&["<html>", "</html>"]);
        html.finish();
        assert!(html.text.is_empty());
    }

    #[test]
    fn an_event_over_several_lines_is_joined_and_garbage_is_named() {
        let written = read(&[
            r#"data: {"choices":[{"delta":"#,
            r#"data: {"content":"Rain."}}]}"#,
            "",
            "data: <html>",
            "",
        ]);
        assert_eq!(written.text, "Rain.");
        assert!(
            written
                .malformed
                .as_deref()
                .is_some_and(|why| why.contains("not a completion chunk")),
            "{written:?}"
        );
    }
}
