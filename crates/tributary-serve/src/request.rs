//! What a client asks for: the body of `POST /v1/ask` and `/v1/compare`, or the query of `GET /v1/ask/stream`,
//! turned into a question and the agent's settings for it. Every mistake is a message for a 400.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use axum::http::HeaderMap;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tributary::source::DEADLINE_HEADER;
use tributary_agent::limits::MAX_DURATION;
use tributary_agent::{AgentSettings, Question, RunMode};

use tributary_sim::faults::replace_faults;

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
    /// replaces the server's `--fault` flags for this ask. A source named twice is refused.
    #[serde(default, deserialize_with = "faults_named_once")]
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

/// What a body must be, for the message that refuses another.
const EXPECTED_BODY: &str = "a JSON object: {\"question\": \"...\"} with optional deadline_ms, \
                             per_source_timeout_ms, faults and mode";

impl AskRequest {
    /// From a JSON body: an object, each field at most once, no other field. serde's derived struct would also
    /// take an array of the fields in order (`["a"]` as the question "a"), which the document does not offer.
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice::<ObjectBody>(body)
            .map(|ObjectBody(request)| request)
            .map_err(|cause| format!("invalid request body: {cause}"))
    }

    /// From a query string: `question=...&deadline_ms=N&per_source_timeout_ms=N&mode=M&fault=SOURCE=KIND`
    /// (`fault` repeatable). Names and values are percent-decoded as a form is (`+` is a space) and must then
    /// be UTF-8, as a body must: nothing is replaced.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = Self::default();
        let mut question = None;
        for (key, value) in query_pairs(query)? {
            let number = |value: &str| {
                value.trim().parse::<u64>().map_err(|_| {
                    format!(
                        "query parameter `{key}`: `{value}` is not a whole number of milliseconds"
                    )
                })
            };
            match key.as_str() {
                "question" if question.is_none() => question = Some(value),
                "deadline_ms" if request.deadline_ms.is_none() => {
                    request.deadline_ms = Some(number(&value)?);
                }
                "per_source_timeout_ms" if request.per_source_timeout_ms.is_none() => {
                    request.per_source_timeout_ms = Some(number(&value)?);
                }
                "mode" if request.mode.is_none() => request.mode = Some(value),
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
        // In the request's own terms (the `faults` object's keys and values), not the command line's `--fault`.
        let extra_query = replace_faults(
            &server.extra_query,
            &state.sources.iter().map(String::as_str).collect::<Vec<_>>(),
            &self.faults,
        )?;
        Ok(AgentSettings {
            deadline,
            per_source_timeout,
            extra_query,
            ..server.clone()
        })
    }
}

/// An [`AskRequest`] read only from a JSON object (`deserialize_map`): an array, a string, a number, `true` or
/// `null` is an "invalid type" error naming what was expected.
struct ObjectBody(AskRequest);

impl<'de> Deserialize<'de> for ObjectBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;

        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = ObjectBody;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(EXPECTED_BODY)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectBody, A::Error> {
                AskRequest::deserialize(MapAccessDeserializer::new(map)).map(ObjectBody)
            }
        }

        deserializer.deserialize_map(ObjectOnly)
    }
}

/// `faults` as an object whose keys are all different: JSON allows a repeated key, and a map would keep the
/// last silently (the query refuses a source named twice too).
fn faults_named_once<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Faults;

    impl<'de> Visitor<'de> for Faults {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("an object of source name to fault kind, e.g. {\"news\": \"hang\"}")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut faults = BTreeMap::new();
            while let Some((source, kind)) = map.next_entry::<String, String>()? {
                if faults.contains_key(&source) {
                    return Err(de::Error::custom(format_args!(
                        "faults: source `{source}` named twice"
                    )));
                }
                faults.insert(source, kind);
            }
            Ok(faults)
        }
    }

    deserializer.deserialize_map(Faults)
}

/// The `name=value` pairs of a query, percent-decoded as a form is (`+` is a space); a name or value that is not
/// UTF-8 once decoded (`%FF`) is an error rather than a replacement character.
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |text: &str| -> Option<String> {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .ok()
            .map(Cow::into_owned)
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).ok_or_else(|| {
                "the query is not valid UTF-8 once percent-decoded: a parameter's name".to_owned()
            })?;
            let value = decode(value).ok_or_else(|| {
                format!(
                    "the query is not valid UTF-8 once percent-decoded: the value of parameter `{key}`"
                )
            })?;
            Ok((key, value))
        })
        .collect()
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

    /// `["a"]` was accepted as the question "a": serde's derived struct also reads an array of its fields.
    #[test]
    fn only_a_json_object_is_a_body() {
        for (body, expected) in [
            (r#"["a"]"#, "invalid type: sequence, expected a JSON object"),
            (r#"["a", null, null, {}, null]"#, "invalid type: sequence"),
            (
                r#""a""#,
                "invalid type: string \"a\", expected a JSON object",
            ),
            ("null", "invalid type: null, expected a JSON object"),
            ("42", "invalid type: integer `42`, expected a JSON object"),
            (
                "true",
                "invalid type: boolean `true`, expected a JSON object",
            ),
            ("", "EOF while parsing"),
            ("{}", "missing field `question`"),
            (
                r#"{"question": ["a"]}"#,
                "invalid type: sequence, expected a string",
            ),
            (
                r#"{"question": "a", "question": "b"}"#,
                "duplicate field `question`",
            ),
            (
                r#"{"question": "a", "colour": "blue"}"#,
                "unknown field `colour`",
            ),
            (
                r#"{"question": "a", "faults": ["news"]}"#,
                "expected an object of source name",
            ),
            (
                r#"{"question": "a", "faults": {"news": "hang", "news": "error"}}"#,
                "faults: source `news` named twice",
            ),
            (r#"{"question": "a"} {}"#, "trailing characters"),
        ] {
            let error = AskRequest::from_body(body.as_bytes()).expect_err(body);
            assert!(
                error.starts_with("invalid request body: ") && error.contains(expected),
                "{body}: {error}"
            );
        }
        let request = AskRequest::from_body(
            br#" {"question": "a", "deadline_ms": null, "mode": "sequential", "faults": {"news": "hang", "kb": "error"}} "#,
        )
        .expect("an object with the documented fields");
        assert_eq!(
            (
                request.question.as_str(),
                request.deadline_ms,
                request.faults.len()
            ),
            ("a", None, 2)
        );
    }

    /// `?question=%FF` was accepted as the question "\u{FFFD}", where the same bytes in a body are a 400.
    #[test]
    fn a_query_that_is_not_utf8_once_decoded_is_refused() {
        for (query, expected) in [
            (
                "question=%FF",
                "the query is not valid UTF-8 once percent-decoded: the value of parameter `question`",
            ),
            (
                "question=a&fault=news%3D%C3%28",
                "the value of parameter `fault`",
            ),
            ("%FF=a&question=a", "a parameter's name"),
        ] {
            let error = AskRequest::from_query(query).expect_err(query);
            assert!(error.contains(expected), "{query}: {error}");
        }
        let request = AskRequest::from_query("question=caf%C3%A9+au+lait%3F&mode=")
            .expect("UTF-8 once decoded");
        assert_eq!(request.question, "café au lait?");
        assert_eq!(request.mode.as_deref(), Some(""));
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
