//! The upper bound of every duration and count a user can give, in one place.
//!
//! Past a bound the user gets a clear error naming it, before anything starts; below it nothing overflows,
//! aborts or waits for centuries. The bounds are generous: each is far past any sensible setting, and close
//! enough that the machine survives it (a thread's stack per worker, a task per source in flight).

use std::time::Duration;

/// The longest deadline, per-source timeout or cache lifetime: a day. (A source's per-attempt `timeout` has a
/// tighter bound, an hour: [`crate::sources::MAX_TIMEOUT`].)
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The most sources one sources file may declare (and so one question may ask).
pub const MAX_SOURCES: usize = 10_000;

/// The most sources one question fetches at once; the others wait for a free slot, in the file's order, so
/// memory and sockets follow this bound, not the number of sources. A source whose turn comes after the
/// deadline is not asked: it is reported as timed out.
pub const MAX_SOURCES_IN_FLIGHT: usize = 64;

/// The most CPU workers (`--workers`): each is an OS thread or process.
pub const MAX_WORKERS: usize = 256;

/// The most questions a batch fetches at once (`--io-concurrency`).
pub const MAX_IO_CONCURRENCY: usize = 4_096;

/// The most CPU time one simulated inference may cost (`--inference-cost`).
pub const MAX_INFERENCE_COST: Duration = Duration::from_secs(60);

/// The largest response body a source may be allowed (`max_body_bytes` in a sources file): 1 GiB.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;

/// `what` must be at most `limit`: the message of the error otherwise, in humantime's words.
pub fn check_duration(what: &str, value: Duration, limit: Duration) -> Result<(), String> {
    if value > limit {
        return Err(format!(
            "{what} must be at most {}, got {}",
            humantime::format_duration(limit),
            humantime::format_duration(value)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_past_its_bound_is_named_with_both_values() {
        assert_eq!(
            check_duration("--deadline", MAX_DURATION, MAX_DURATION),
            Ok(())
        );
        assert_eq!(
            check_duration("--deadline", Duration::from_secs(90_000), MAX_DURATION),
            Err("--deadline must be at most 1day, got 1day 1h".to_owned())
        );
    }
}
