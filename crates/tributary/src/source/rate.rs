//! Per-source rate limits: a public API's documented limit is kept by waiting for a slot (within the caller's
//! deadline), never by sending and being refused. [`governor`]'s GCRA does the accounting.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::group::Deadline;

/// At most `requests` requests per `per`, with bursts of up to `requests`: `600 per 1m` lets 600 go at once,
/// then one every 100 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period (at least 1).
    pub requests: u32,
    /// The period (more than zero).
    pub per: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {}",
            self.requests,
            humantime::format_duration(self.per)
        )
    }
}

/// One source's limiter.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    limiter: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
    clock: DefaultClock,
}

/// No slot frees up before the deadline: the request is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoSlot {
    pub(crate) wait: Duration,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let requests = NonZeroU32::new(limit.requests).unwrap_or(NonZeroU32::MIN);
        let interval = (limit.per / requests.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(requests);
        let clock = DefaultClock::default();
        Self {
            limit,
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a slot now, if one is free.
    pub(crate) fn try_take(&self) -> bool {
        self.limiter.check().is_ok()
    }

    /// Waits for a slot and takes it; refuses at once when the wait would end at or past `deadline`.
    pub(crate) async fn take(&self, deadline: Deadline) -> Result<(), NoSlot> {
        loop {
            let wait = match self.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(self.clock.now()),
            };
            if deadline
                .remaining()
                .is_some_and(|remaining| wait >= remaining)
            {
                return Err(NoSlot { wait });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_goes_at_once_and_the_next_request_waits_for_its_slot() {
        let limiter = Limiter::new(RateLimit {
            requests: 3,
            per: Duration::from_millis(300),
        });
        for _ in 0..3 {
            assert!(limiter.try_take());
        }
        assert!(!limiter.try_take());
        let started = std::time::Instant::now();
        limiter
            .take(Deadline::after(Duration::from_secs(5)))
            .await
            .expect("a slot in about 100 ms");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_is_refused_at_once() {
        let limiter = Limiter::new(RateLimit {
            requests: 1,
            per: Duration::from_secs(60),
        });
        assert!(limiter.try_take());
        let started = std::time::Instant::now();
        let refused = limiter
            .take(Deadline::after(Duration::from_secs(1)))
            .await
            .expect_err("the next slot is a minute away");
        assert!(refused.wait > Duration::from_secs(50));
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn limits_read_as_words() {
        let limit = RateLimit {
            requests: 600,
            per: Duration::from_secs(60),
        };
        assert_eq!(limit.to_string(), "600 per 1m");
    }
}
