//! Retry policy: exponential backoff with full jitter, `Retry-After`, and the per-attempt log.
//!
//! The retry loop itself is [`backon`]'s; this module supplies what backon does not have:
//! - [`FullJitter`], a backoff whose n-th delay is `random(0, min(cap, base * 2^n))` (the "full jitter" of the
//!   AWS architecture blog). backon's `ExponentialBuilder::with_jitter` adds a random amount *on top of* the
//!   exponential delay instead, which does not spread synchronized clients as well.
//! - [`AttemptRecord`], the per-attempt log that callers draw on their timelines as retry and timeout markers.
//! - [`retry_after`], the `Retry-After` header in both its forms: delay-seconds and an HTTP-date.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

use super::error::FetchErrorKind;

/// How long to wait between attempts. The number of attempts is per source
/// ([`SourceSpec::retries`](super::SourceSpec::retries)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The upper bound of the first delay; each later retry doubles it.
    pub base: Duration,
    /// No delay is ever drawn above this (a server's `Retry-After` can still ask for more).
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        }
    }
}

impl BackoffPolicy {
    /// The backoff for one fetch that may retry `retries` times.
    pub fn full_jitter(&self, retries: u32) -> FullJitter {
        FullJitter {
            policy: *self,
            retries_left: retries,
            retry_index: 0,
        }
    }
}

/// Exponential backoff with full jitter: the n-th delay (from 0) is uniform in `[0, min(cap, base * 2^n)]`.
///
/// It is an iterator of delays, which is what backon's [`Backoff`](backon::Backoff) is; it ends after the
/// configured number of retries.
#[derive(Debug, Clone)]
pub struct FullJitter {
    policy: BackoffPolicy,
    retries_left: u32,
    retry_index: u32,
}

impl FullJitter {
    /// The upper bound of the next delay, before jitter.
    fn ceiling(&self) -> Duration {
        let factor = 2u32.checked_pow(self.retry_index).unwrap_or(u32::MAX);
        self.policy
            .base
            .checked_mul(factor)
            .unwrap_or(self.policy.cap)
            .min(self.policy.cap)
    }
}

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retries_left == 0 {
            return None;
        }
        let ceiling = self.ceiling();
        self.retries_left -= 1;
        self.retry_index = self.retry_index.saturating_add(1);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(
            rand::rng().random_range(0..=ceiling_nanos),
        ))
    }
}

/// The delay a server asked for with `Retry-After`: delay-seconds (`Retry-After: 120`) or an HTTP-date
/// (`Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`, in any of the three formats RFC 9110 allows).
///
/// A date in the past asks for no delay at all (zero, so the backoff decides); a value that is neither form is
/// ignored (`None`, the backoff decides as well).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What happened during one attempt, for timelines and for tests.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// 1 for the first attempt, 2 for the first retry, and so on; a hedge has its attempt's number.
    pub number: u32,
    /// Whether this request was a hedge: one more identical request sent because the attempt's first one was
    /// slow.
    pub hedge: bool,
    /// When the request was started.
    pub started: Instant,
    /// When the response was fully read, or the attempt failed.
    pub ended: Instant,
    /// How it ended, and what the client did next.
    pub outcome: AttemptOutcome,
}

/// How one attempt ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// A complete, valid JSON answer.
    Succeeded,
    /// The attempt failed; `next` says whether and when the client tried again.
    Failed {
        /// What went wrong.
        error: FetchErrorKind,
        /// What the client decided after this failure.
        next: RetryDecision,
    },
    /// The request was cancelled unfinished because the other request of its hedged attempt succeeded first
    /// (or the caller went away).
    Abandoned,
}

/// What the client decided after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryDecision {
    /// It slept `delay` and tried again.
    Retried {
        /// The delay before the next attempt (backoff, or the server's `Retry-After` if longer).
        delay: Duration,
    },
    /// The failure is not one that a retry could fix.
    NotRetryable,
    /// The source's retry budget was spent.
    RetriesExhausted,
    /// The delay before the next attempt would have ended at or past the deadline, so the client gave up early.
    DeadlineTooClose {
        /// The delay the client would have slept.
        delay: Duration,
        /// The time that was left before the deadline.
        remaining: Duration,
    },
}

impl AttemptRecord {
    /// The delay slept after this attempt before the next one, if there was a next one.
    pub fn delay_before_next(&self) -> Option<Duration> {
        match self.outcome {
            AttemptOutcome::Failed {
                next: RetryDecision::Retried { delay },
                ..
            } => Some(delay),
            _ => None,
        }
    }
}

/// How many of `attempt_log`'s requests were hedges.
pub(crate) fn hedges_in(attempt_log: &[AttemptRecord]) -> u32 {
    u32::try_from(attempt_log.iter().filter(|record| record.hedge).count()).unwrap_or(u32::MAX)
}

/// What to do after a retryable failure.
///
/// - `backoff` is the backoff's next delay, `None` once the retry budget is spent.
/// - `retry_after` is the server's `Retry-After`, honoured when it asks for longer than the backoff.
/// - `remaining` is the time left before the deadline (`None`: no deadline). A delay that would end at or past the
///   deadline is not slept: the client stops and reports the last failure instead of sleeping into a timeout.
pub(crate) fn decide_retry(
    backoff: Option<Duration>,
    retry_after: Option<Duration>,
    remaining: Option<Duration>,
) -> RetryDecision {
    let Some(backoff) = backoff else {
        return RetryDecision::RetriesExhausted;
    };
    let delay = backoff.max(retry_after.unwrap_or_default());
    match remaining {
        Some(remaining) if delay >= remaining => {
            RetryDecision::DeadlineTooClose { delay, remaining }
        }
        _ => RetryDecision::Retried { delay },
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling_and_the_cap() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
        };
        for _ in 0..200 {
            let delays: Vec<Duration> = policy.full_jitter(4).collect();
            assert_eq!(delays.len(), 4);
            let ceilings = [100, 200, 350, 350].map(Duration::from_millis);
            for (delay, ceiling) in delays.iter().zip(ceilings) {
                assert!(*delay <= ceiling, "{delay:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn full_jitter_spreads_delays_rather_than_repeating_one() {
        let policy = BackoffPolicy::default();
        let first_delays: std::collections::HashSet<Duration> = (0..50)
            .filter_map(|_| policy.full_jitter(1).next())
            .collect();
        assert!(first_delays.len() > 10, "{first_delays:?}");
    }

    #[test]
    fn no_retries_means_no_delays() {
        assert_eq!(BackoffPolicy::default().full_jitter(0).next(), None);
    }

    #[test]
    fn huge_retry_counts_do_not_overflow() {
        let policy = BackoffPolicy::default();
        let last = policy.full_jitter(100).last();
        assert!(last.is_some_and(|delay| delay <= policy.cap));
    }

    #[test]
    fn decide_retry_takes_the_longer_of_backoff_and_retry_after() {
        let ms = Duration::from_millis;
        assert_eq!(
            decide_retry(Some(ms(50)), Some(ms(1000)), None),
            RetryDecision::Retried { delay: ms(1000) }
        );
        assert_eq!(
            decide_retry(Some(ms(50)), None, Some(ms(500))),
            RetryDecision::Retried { delay: ms(50) }
        );
    }

    #[test]
    fn decide_retry_stops_when_the_budget_or_the_deadline_runs_out() {
        let ms = Duration::from_millis;
        assert_eq!(
            decide_retry(None, Some(ms(1)), None),
            RetryDecision::RetriesExhausted
        );
        assert_eq!(
            decide_retry(Some(ms(50)), Some(ms(1000)), Some(ms(400))),
            RetryDecision::DeadlineTooClose {
                delay: ms(1000),
                remaining: ms(400)
            }
        );
        assert_eq!(
            decide_retry(Some(ms(400)), None, Some(ms(400))),
            RetryDecision::DeadlineTooClose {
                delay: ms(400),
                remaining: ms(400)
            }
        );
    }

    #[test]
    fn retry_after_reads_delay_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 0 "));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_reads_an_http_date() {
        let mut headers = HeaderMap::new();
        // A date in the future: the time until then (HTTP dates have whole seconds, so up to a second less).
        let in_two_minutes = std::time::SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(in_two_minutes);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&date).expect("a header value"),
        );
        let delay = retry_after(&headers).expect("a date is understood");
        assert!(
            delay > Duration::from_secs(100) && delay <= Duration::from_secs(120),
            "{date}: {delay:?}"
        );
        // A date in the past, in each of the three formats RFC 9110 allows: no delay.
        for past in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(past));
            assert_eq!(retry_after(&headers), Some(Duration::ZERO), "{past}");
        }
    }

    #[test]
    fn retry_after_ignores_what_is_neither_seconds_nor_a_date() {
        let mut headers = HeaderMap::new();
        for value in ["soon", "-3", "1.5", "Wed, 32 Oct 2015 07:28:00 GMT", ""] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            assert_eq!(retry_after(&headers), None, "{value:?}");
        }
    }
}
