//! Fault injection: deciding, per request, how long to wait and which fault (if any) to inject, and building the
//! misbehaving responses.
//!
//! A request's plan comes from the service's start-up [`ServiceBehavior`], overridden by the query parameters
//! `latency_ms=N` (a fixed latency, `0` for none), `fault=KIND` (always injected; `fault=none` turns a configured
//! fault off) and `retry_after=SECONDS` (for `unavailable`).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::config::{DEFAULT_RETRY_AFTER, Fault, HUGE_BODY_BYTES, ServiceBehavior};
use super::error::ApiError;

/// Query parameters of one request.
pub(crate) type Params = HashMap<String, String>;

/// Bytes sent per tick by [`Fault::SlowBody`].
const DRIP_BYTES: usize = 8;
/// Pause between ticks of [`Fault::SlowBody`]: a 1 KiB body takes about 13 seconds.
const DRIP_INTERVAL: Duration = Duration::from_millis(100);
/// Longest latency a request may ask for with `latency_ms` (and `tributary sources --fault SERVICE=latency:D`).
pub const MAX_LATENCY_OVERRIDE: Duration = Duration::from_secs(600);

/// The per-request overrides found in the query string.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Overrides {
    latency: Option<Duration>,
    /// `Some(None)` is `fault=none`: no fault, whatever the configuration says.
    fault: Option<Option<Fault>>,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    pub(crate) latency: Duration,
    pub(crate) fault: Option<Fault>,
}

/// Reads `latency_ms`, `fault` and `retry_after`; a value that does not parse is a 400.
pub(crate) fn parse_overrides(params: &Params) -> Result<Overrides, ApiError> {
    let latency = match params.get("latency_ms") {
        None => None,
        Some(text) => {
            let millis: u64 = text.trim().parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "`latency_ms` must be a whole number of milliseconds, got {text:?}"
                ))
            })?;
            let latency = Duration::from_millis(millis);
            if latency > MAX_LATENCY_OVERRIDE {
                return Err(ApiError::bad_request(format!(
                    "`latency_ms` must be at most {}",
                    MAX_LATENCY_OVERRIDE.as_millis()
                )));
            }
            Some(latency)
        }
    };
    let retry_after = match params.get("retry_after") {
        None => DEFAULT_RETRY_AFTER,
        Some(text) => Duration::from_secs(text.trim().parse().map_err(|_| {
            ApiError::bad_request(format!(
                "`retry_after` must be a whole number of seconds, got {text:?}"
            ))
        })?),
    };
    let fault = match params.get("fault").map(|text| text.trim()) {
        None => None,
        Some(text) if text.eq_ignore_ascii_case("none") => Some(None),
        Some(text) => {
            let fault = text
                .parse::<Fault>()
                .map_err(|error| ApiError::bad_request(format!("failed to {error}")))?;
            Some(Some(match fault {
                Fault::Unavailable { .. } => Fault::Unavailable { retry_after },
                other => other,
            }))
        }
    };
    Ok(Overrides { latency, fault })
}

/// Decides latency and fault for one request. The random draws happen even when an override makes them moot,
/// so that one request's overrides do not shift the random sequence seen by the next ones.
pub(crate) fn plan(behavior: &ServiceBehavior, overrides: Overrides, rng: &mut impl Rng) -> Plan {
    let sampled_latency = behavior.latency.sample(rng);
    let draw: f64 = rng.random();
    let configured_fault = behavior
        .fault
        .filter(|_| draw < behavior.fault_probability.clamp(0.0, 1.0));
    Plan {
        latency: overrides.latency.unwrap_or(sampled_latency),
        fault: overrides.fault.unwrap_or(configured_fault),
    }
}

/// Builds the response for `fault` given what the service would have answered (`status`, `body`).
/// [`Fault::Hang`] is the caller's job (it has to wait for shutdown); here it degrades to the honest answer.
pub(crate) fn respond(
    fault: Option<Fault>,
    status: StatusCode,
    body: Vec<u8>,
    shutdown: &CancellationToken,
) -> Response {
    match fault {
        None | Some(Fault::Hang) => json_response(status, Body::from(body)),
        Some(Fault::Error) => ApiError::internal("injected fault: internal error").into_response(),
        Some(Fault::Unavailable { retry_after }) => {
            let mut response =
                ApiError::unavailable("injected fault: service unavailable").into_response();
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Some(Fault::SlowBody) => json_response(
            status,
            Body::from_stream(until_shutdown(drip(body), shutdown)),
        ),
        Some(Fault::Malformed) => json_response(status, Body::from(truncate_to_invalid_json(body))),
        Some(Fault::Huge) => {
            let huge = HugeBody::new();
            let mut response = json_response(
                StatusCode::OK,
                Body::from_stream(until_shutdown(huge.stream(), shutdown)),
            );
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(huge.total_len()));
            response
        }
    }
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Ends a streamed body with an error when the server shuts down, so the connection is cut rather than the
/// client seeing a short body that looks complete.
fn until_shutdown(
    body: impl Stream<Item = Bytes> + Send + 'static,
    shutdown: &CancellationToken,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = (Box::pin(body), shutdown.clone(), false);
    stream::unfold(state, |(mut body, shutdown, cut)| async move {
        if cut {
            return None;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                let error = std::io::Error::other("simulated services shutting down");
                Some((Err(error), (body, shutdown, true)))
            }
            chunk = body.next() => chunk.map(|chunk| (Ok(chunk), (body, shutdown, false))),
        }
    })
}

/// The body, a few bytes at a time: the first bytes at once (so headers go out), then one tick per chunk.
fn drip(body: Vec<u8>) -> impl Stream<Item = Bytes> + Send + 'static {
    let body = Bytes::from(body);
    stream::unfold(0usize, move |offset| {
        let body = body.clone();
        async move {
            if offset >= body.len() {
                return None;
            }
            if offset > 0 {
                tokio::time::sleep(DRIP_INTERVAL).await;
            }
            let end = (offset + DRIP_BYTES).min(body.len());
            Some((body.slice(offset..end), end))
        }
    })
}

/// Cuts a JSON object in half, which leaves an unclosed object: never valid JSON.
fn truncate_to_invalid_json(mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(body.len() / 2);
    if body.is_empty() {
        body.extend_from_slice(b"{\"");
    }
    body
}

/// A JSON document of [`HUGE_BODY_BYTES`] or more, `{"items":[{"id":"00000000","text":"..."},...]}`, produced
/// in chunks so it never sits in memory whole.
struct HugeBody {
    records: u64,
}

const HUGE_PREFIX: &str = "{\"fault\":\"huge\",\"items\":[";
const HUGE_SUFFIX: &str = "]}";
const HUGE_FILLER: &str = "The quick brown fox jumps over the lazy dog while the event loop waits on \
    another slow upstream service that keeps sending more and more data than any client should accept.";
const HUGE_RECORDS_PER_CHUNK: u64 = 512;

impl HugeBody {
    fn new() -> Self {
        let record = Self::record(0).len() as u64 + 1; // + 1 for the separating comma
        let fixed = (HUGE_PREFIX.len() + HUGE_SUFFIX.len()) as u64;
        HugeBody {
            records: (HUGE_BODY_BYTES - fixed).div_ceil(record) + 1,
        }
    }

    fn record(id: u64) -> String {
        format!("{{\"id\":\"{id:08}\",\"text\":\"{HUGE_FILLER}\"}}")
    }

    fn total_len(&self) -> u64 {
        let record = Self::record(0).len() as u64;
        (HUGE_PREFIX.len() + HUGE_SUFFIX.len()) as u64 + self.records * record + (self.records - 1)
    }

    fn stream(&self) -> impl Stream<Item = Bytes> + Send + 'static {
        let records = self.records;
        let chunks = records.div_ceil(HUGE_RECORDS_PER_CHUNK);
        stream::iter(0..chunks).map(move |chunk| {
            let first = chunk * HUGE_RECORDS_PER_CHUNK;
            let last = (first + HUGE_RECORDS_PER_CHUNK).min(records);
            let mut text = String::with_capacity(((last - first) * 256) as usize);
            if chunk == 0 {
                text.push_str(HUGE_PREFIX);
            }
            for id in first..last {
                if id > 0 {
                    text.push(',');
                }
                text.push_str(&Self::record(id));
            }
            if last == records {
                text.push_str(HUGE_SUFFIX);
            }
            Bytes::from(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::config::Latency;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn overrides_beat_the_configuration() {
        let behavior = ServiceBehavior::healthy(Latency::Fixed(Duration::from_secs(1)))
            .with_fault(Fault::Error, 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        let overrides =
            parse_overrides(&params(&[("latency_ms", "5"), ("fault", "none")])).expect("valid");
        assert_eq!(
            plan(&behavior, overrides, &mut rng),
            Plan {
                latency: Duration::from_millis(5),
                fault: None
            }
        );
        let overrides = parse_overrides(&params(&[("fault", "unavailable"), ("retry_after", "7")]))
            .expect("valid");
        assert_eq!(
            plan(&behavior, overrides, &mut rng).fault,
            Some(Fault::Unavailable {
                retry_after: Duration::from_secs(7)
            })
        );
        assert_eq!(
            plan(&behavior, Overrides::default(), &mut rng).fault,
            Some(Fault::Error)
        );
    }

    #[test]
    fn bad_overrides_are_rejected() {
        for bad in [
            ("latency_ms", "soon"),
            ("latency_ms", "-3"),
            ("fault", "gremlins"),
            ("retry_after", "x"),
        ] {
            let error = parse_overrides(&params(&[bad])).expect_err("invalid");
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn huge_body_is_valid_json_of_the_announced_length() {
        let huge = HugeBody::new();
        assert!(huge.total_len() >= HUGE_BODY_BYTES);
        let bytes: Vec<u8> =
            futures::executor::block_on(huge.stream().collect::<Vec<Bytes>>()).concat();
        assert_eq!(bytes.len() as u64, huge.total_len());
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(
            value["items"].as_array().map(Vec::len),
            Some(huge.records as usize)
        );
    }

    #[test]
    fn truncated_json_never_parses() {
        let body = br#"{"city":{"name":"Paris"},"summary":"Sunny."}"#.to_vec();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&truncate_to_invalid_json(body)).is_err()
        );
    }
}
