//! What a client asks for: the body of `POST /v1/ask` and `/v1/compare`, or the query of `GET /v1/ask/stream`,
//! turned into a question and the agent's settings for it. Every mistake is a message for a 400.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Deserialize;
use tributary::source::DEADLINE_HEADER;
use tributary_agent::limits::MAX_DURATION;
use tributary_agent::{AgentSettings, Question, RunMode};

use tributary_sim::faults::fault_queries;

use crate::routes::AppState;

/// The body of `POST /v1/ask` and `POST /v1/compare`; the query of `GET /v1/ask/stream` says the same.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question: not blank, at most 4 KiB (trimmed), no control characters but tab and line breaks.
    #[schema(min_length = 1, max_length = 4096)]
    pub question: String,
    /// The time allowed to the whole question; at most the server's `--deadline`, which is also the default.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub deadline_ms: Option<u64>,
    /// The time allowed to each source, all its attempts included; default the server's
    /// `--per-source-timeout`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub per_source_timeout_ms: Option<u64>,
    /// Source name to fault kind, as `--fault` takes them (`"hang"`, `"latency:2s"`); for the sources it names,
    /// replaces the server's `--fault` flags for this ask.
    #[serde(default)]
    pub faults: BTreeMap<String, String>,
    /// `concurrent` (the agent, the default) or `sequential` (the chapter's baseline).
    #[serde(default)]
    #[schema(pattern = "^(concurrent|sequential)$")]
    pub mode: Option<String>,
}

/// A checked request: what to ask, how, and with which settings.
#[derive(Debug)]
pub struct Ask {
    pub question: Question,
    pub mode: RunMode,
    pub settings: AgentSettings,
}

impl AskRequest {
    /// From a JSON body.
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|cause| format!("invalid request body: {cause}"))
    }

    /// From a query string: `question=...&deadline_ms=N&per_source_timeout_ms=N&mode=M&fault=SOURCE=KIND`
    /// (`fault` repeatable).
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = Self::default();
        let mut question = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let number = |value: &str| {
                value.trim().parse::<u64>().map_err(|_| {
                    format!(
                        "query parameter `{key}`: `{value}` is not a whole number of milliseconds"
                    )
                })
            };
            match key.as_ref() {
                "question" if question.is_none() => question = Some(value.into_owned()),
                "deadline_ms" if request.deadline_ms.is_none() => {
                    request.deadline_ms = Some(number(&value)?);
                }
                "per_source_timeout_ms" if request.per_source_timeout_ms.is_none() => {
                    request.per_source_timeout_ms = Some(number(&value)?);
                }
                "mode" if request.mode.is_none() => request.mode = Some(value.into_owned()),
                "fault" => {
                    let Some((source, kind)) = value.split_once('=') else {
                        return Err(format!(
                            "query parameter `fault`: `{value}` is not SOURCE=KIND (e.g. fault=news=hang)"
                        ));
                    };
                    if request
                        .faults
                        .insert(source.trim().to_owned(), kind.trim().to_owned())
                        .is_some()
                    {
                        return Err(format!(
                            "query parameter `fault`: source `{}` named twice",
                            source.trim()
                        ));
                    }
                }
                "question" | "deadline_ms" | "per_source_timeout_ms" | "mode" => {
                    return Err(format!("query parameter `{key}` given twice"));
                }
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`: expected question, deadline_ms, \
                         per_source_timeout_ms, mode or fault"
                    ));
                }
            }
        }
        request.question =
            question.ok_or_else(|| "missing query parameter `question`".to_owned())?;
        Ok(request)
    }

    /// Checks the request against the server's settings; `headers` may carry the caller's remaining time.
    pub fn check(&self, state: &AppState, headers: &HeaderMap) -> Result<Ask, String> {
        let told = told_deadline(headers)?;
        let settings = self.settings(state, told)?;
        let question =
            Question::new(&self.question).map_err(|cause| format!("question: {cause}"))?;
        let mode = match self.mode.as_deref() {
            None | Some("concurrent") => RunMode::Concurrent,
            Some("sequential") => RunMode::Sequential,
            Some(other) => {
                return Err(format!(
                    "mode: `{other}` is not one of concurrent, sequential"
                ));
            }
        };
        Ok(Ask {
            question,
            mode,
            settings,
        })
    }

    /// The agent's settings for this request: its deadline (capped by the server's and the caller's), per-source
    /// timeout and faults.
    fn settings(&self, state: &AppState, told: Option<u64>) -> Result<AgentSettings, String> {
        let server = state.agent.settings();
        let mut deadline = match self.deadline_ms {
            None => server.deadline,
            Some(millis) => milliseconds("deadline_ms", millis)?.min(server.deadline),
        };
        if let Some(millis) = told {
            deadline = deadline.min(Duration::from_millis(millis));
        }
        let per_source_timeout = match self.per_source_timeout_ms {
            None => server.per_source_timeout,
            Some(millis) => milliseconds("per_source_timeout_ms", millis)?,
        };
        let flags: Vec<String> = self
            .faults
            .iter()
            .map(|(source, kind)| format!("{source}={kind}"))
            .collect();
        let requested = fault_queries(&flags, &state.sources)
            .map_err(|cause| format!("faults: {}", cause.message))?;
        // The request's faults replace the server's `--fault` flags for the sources it names, and only those.
        let mut extra_query = server.extra_query.clone();
        extra_query.retain(|(source, _)| !requested.iter().any(|(named, _)| named == source));
        extra_query.extend(requested);
        Ok(AgentSettings {
            deadline,
            per_source_timeout,
            extra_query,
            ..server.clone()
        })
    }
}

/// A duration given in milliseconds: from 1 ms to [`MAX_DURATION`] (a day).
fn milliseconds(name: &str, millis: u64) -> Result<Duration, String> {
    let duration = Duration::from_millis(millis);
    if millis == 0 || duration > MAX_DURATION {
        return Err(format!(
            "{name} must be from 1 to {} milliseconds (a day)",
            MAX_DURATION.as_millis()
        ));
    }
    Ok(duration)
}

/// The caller's remaining time from the `x-deadline-ms` header (as this server's own source requests send it).
fn told_deadline(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|millis| milliseconds(DEADLINE_HEADER, *millis).is_ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "the {DEADLINE_HEADER} header must be a whole number of milliseconds from 1 to {} (a day)",
                MAX_DURATION.as_millis()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_says_what_a_body_says() {
        let request = AskRequest::from_query(
            "question=Weather+in+Paris%3F&deadline_ms=2000&fault=news%3Dhang&fault=kb=latency:1s&mode=sequential",
        )
        .expect("a valid query");
        assert_eq!(request.question, "Weather in Paris?");
        assert_eq!(request.deadline_ms, Some(2000));
        assert_eq!(request.faults["news"], "hang");
        assert_eq!(request.faults["kb"], "latency:1s");
        assert_eq!(request.mode.as_deref(), Some("sequential"));
    }

    #[test]
    fn a_bad_query_is_told_what_is_wrong() {
        for (query, expected) in [
            ("", "missing query parameter `question`"),
            ("question=a&question=b", "`question` given twice"),
            (
                "question=a&deadline_ms=soon",
                "`soon` is not a whole number",
            ),
            ("question=a&fault=news", "`news` is not SOURCE=KIND"),
            (
                "question=a&fault=news=hang&fault=news=error",
                "`news` named twice",
            ),
            ("question=a&colour=blue", "unknown query parameter `colour`"),
        ] {
            let error = AskRequest::from_query(query).expect_err(query);
            assert!(error.contains(expected), "{query}: {error}");
        }
    }
}
