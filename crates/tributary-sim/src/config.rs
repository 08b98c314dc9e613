//! What the simulated services are and how each one misbehaves: [`Service`], [`Fault`], [`Latency`],
//! [`ServiceBehavior`] and [`SimConfig`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use super::error::ParseNameError;

/// One of the three simulated services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `GET /weather?city=NAME`: current conditions and a three-day forecast.
    Weather,
    /// `GET /news?q=QUERY[&page=N]`: BM25-ranked articles from a generated corpus.
    News,
    /// `GET /kb/search?q=QUESTION[&limit=N]`: passages about concurrency from SQLite FTS5.
    KnowledgeBase,
}

impl Service {
    /// Every service, in a stable order (the order of the `/` index).
    pub const ALL: [Service; 3] = [Service::Weather, Service::News, Service::KnowledgeBase];

    /// The HTTP path the service answers on, e.g. `/kb/search`.
    pub fn path(&self) -> &'static str {
        match self {
            Service::Weather => "/weather",
            Service::News => "/news",
            Service::KnowledgeBase => "/kb/search",
        }
    }

    /// The short name used on the command line and in JSON: `weather`, `news` or `kb`.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Weather => "weather",
            Service::News => "news",
            Service::KnowledgeBase => "kb",
        }
    }

    /// Position in [`Service::ALL`], used to index per-service arrays (counters, random generators).
    pub(crate) fn index(self) -> usize {
        match self {
            Service::Weather => 0,
            Service::News => 1,
            Service::KnowledgeBase => 2,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = ParseNameError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|service| service.name().eq_ignore_ascii_case(input.trim()))
            .ok_or_else(|| ParseNameError::new("service", input, "weather, news, kb"))
    }
}

/// A way for a service to fail. Names (for [`FromStr`], [`fmt::Display`] and the `fault=` query parameter) are
/// kebab-case: `error`, `unavailable`, `hang`, `slow-body`, `malformed`, `huge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with a JSON error body.
    Error,
    /// HTTP 503 with a `Retry-After` header (whole seconds, rounded up).
    Unavailable {
        /// What the `Retry-After` header tells the client.
        retry_after: Duration,
    },
    /// Accept the request and never answer, until the server shuts down.
    Hang,
    /// Send status 200 and headers at once, then drip the real body a few bytes every 100 ms.
    SlowBody,
    /// Status 200 with `application/json` content that is not valid JSON (the real body, truncated).
    Malformed,
    /// Status 200 with a valid-looking JSON body larger than [`HUGE_BODY_BYTES`], streamed.
    Huge,
}

/// The size of a [`Fault::Huge`] body: far over any sane client limit.
pub const HUGE_BODY_BYTES: u64 = 24 * 1024 * 1024;

/// What `unavailable` means when no `Retry-After` is given.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

impl Fault {
    /// Every kebab-case fault name, for help texts and the `/` index.
    pub const NAMES: [&'static str; 6] = [
        "error",
        "unavailable",
        "hang",
        "slow-body",
        "malformed",
        "huge",
    ];

    /// The kebab-case name of this fault.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Error => "error",
            Fault::Unavailable { .. } => "unavailable",
            Fault::Hang => "hang",
            Fault::SlowBody => "slow-body",
            Fault::Malformed => "malformed",
            Fault::Huge => "huge",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = ParseNameError;

    /// Parses a kebab-case name; `unavailable` gets [`DEFAULT_RETRY_AFTER`].
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(Fault::Error),
            "unavailable" => Ok(Fault::Unavailable {
                retry_after: DEFAULT_RETRY_AFTER,
            }),
            "hang" => Ok(Fault::Hang),
            "slow-body" => Ok(Fault::SlowBody),
            "malformed" => Ok(Fault::Malformed),
            "huge" => Ok(Fault::Huge),
            _ => Err(ParseNameError::new(
                "fault",
                input,
                "error, unavailable, hang, slow-body, malformed, huge",
            )),
        }
    }
}

/// How long a service thinks before it answers (or fails).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Answer at once.
    None,
    /// Always wait this long.
    Fixed(Duration),
    /// Log-normal jitter: half the requests take less than `median`, and a larger `sigma` gives a longer tail
    /// (sigma 0.5 puts the 99th percentile at about 3.2 × the median).
    LogNormal {
        /// The 50th percentile.
        median: Duration,
        /// Standard deviation of the underlying normal distribution (of the log of the latency).
        sigma: f64,
    },
    /// Usually about `typical` (log-normal, sigma 0.1), but a `share` of requests (0.0 to 1.0) stall for `stall`
    /// instead: a slow replica, a garbage-collection pause. With `share` = 3% and `stall` = 10 × `typical`, the
    /// 99th percentile is 10 × the median: the heavy tail hedged requests are for.
    Stalls {
        /// The usual latency (the median).
        typical: Duration,
        /// The latency of a stalled request.
        stall: Duration,
        /// The chance that a request stalls.
        share: f64,
    },
}

/// No sampled latency exceeds this, so a misconfigured sigma cannot park a request for hours.
const MAX_SAMPLED_LATENCY: Duration = Duration::from_secs(60);

impl Latency {
    /// Draws one latency. Invalid log-normal parameters (negative or non-finite sigma) fall back to the median.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(duration) => duration,
            Latency::Stalls {
                typical,
                stall,
                share,
            } => {
                if rng.random_bool(share.clamp(0.0, 1.0)) {
                    stall.min(MAX_SAMPLED_LATENCY)
                } else {
                    Latency::LogNormal {
                        median: typical,
                        sigma: 0.1,
                    }
                    .sample(rng)
                }
            }
            Latency::LogNormal { median, sigma } => {
                if median.is_zero() {
                    return Duration::ZERO;
                }
                if !(sigma.is_finite() && sigma >= 0.0) {
                    return median;
                }
                match LogNormal::new(median.as_secs_f64().ln(), sigma) {
                    Ok(distribution) => {
                        let seconds = distribution.sample(rng);
                        Duration::try_from_secs_f64(seconds)
                            .unwrap_or(MAX_SAMPLED_LATENCY)
                            .min(MAX_SAMPLED_LATENCY)
                    }
                    Err(_) => median,
                }
            }
        }
    }
}

/// How one service behaves for every request, unless the request overrides it with `latency_ms=` or `fault=`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceBehavior {
    /// Delay before answering (also before failing).
    pub latency: Latency,
    /// The fault this service injects, if any.
    pub fault: Option<Fault>,
    /// The chance (0.0 to 1.0) that a request gets `fault`. 1.0, the default, means every request; values outside
    /// the range are clamped. Ignored when `fault` is `None`.
    pub fault_probability: f64,
}

impl ServiceBehavior {
    /// A healthy service with the given latency.
    pub fn healthy(latency: Latency) -> Self {
        ServiceBehavior {
            latency,
            fault: None,
            fault_probability: 1.0,
        }
    }

    /// Injects `fault` into a fraction `probability` of the requests.
    pub fn with_fault(self, fault: Fault, probability: f64) -> Self {
        ServiceBehavior {
            fault: Some(fault),
            fault_probability: probability,
            ..self
        }
    }
}

impl Default for ServiceBehavior {
    /// Instant and healthy.
    fn default() -> Self {
        ServiceBehavior::healthy(Latency::None)
    }
}

/// Start-up configuration of the simulated services.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Behaviour of `/weather`.
    pub weather: ServiceBehavior,
    /// Behaviour of `/news`.
    pub news: ServiceBehavior,
    /// Behaviour of `/kb/search`.
    pub kb: ServiceBehavior,
    /// Seeds the generated data (weather, news corpus) and the latency and fault draws: same seed, same answers.
    pub seed: u64,
}

impl SimConfig {
    /// The seed used by [`SimConfig::default`] and [`SimConfig::instant`].
    pub const DEFAULT_SEED: u64 = 42;

    /// Zero latency and no faults: for tests, where only per-request overrides should slow things down.
    pub fn instant() -> Self {
        SimConfig {
            weather: ServiceBehavior::default(),
            news: ServiceBehavior::default(),
            kb: ServiceBehavior::default(),
            seed: Self::DEFAULT_SEED,
        }
    }

    /// The behaviour of one service.
    pub fn behavior(&self, service: Service) -> &ServiceBehavior {
        match service {
            Service::Weather => &self.weather,
            Service::News => &self.news,
            Service::KnowledgeBase => &self.kb,
        }
    }

    /// The behaviour of one service, to change it before start-up.
    pub fn behavior_mut(&mut self, service: Service) -> &mut ServiceBehavior {
        match service {
            Service::Weather => &mut self.weather,
            Service::News => &mut self.news,
            Service::KnowledgeBase => &mut self.kb,
        }
    }
}

/// Jitter of the default scenario's latencies: small, so that a run is repeatable, but never zero.
const DEFAULT_SCENARIO_SIGMA: f64 = 0.05;

/// The scenario `tributary ask` runs on by default: weather 1.2 s, news 1.5 s, knowledge base 1.2 s (medians,
/// log-normal jitter), no faults.
///
/// The latencies are chosen for the chapter's capstone claim: on a 2-core machine with the default inference
/// cost (about 300 ms of CPU per response), the ideal concurrent run is about 2.7× faster than the sequential
/// baseline. That needs latencies several times the inference cost: sequentially the agent pays every latency
/// and every inference (1.2 + 1.5 + 1.2 s + 3 × 0.3 s = 4.8 s); concurrently it pays the slowest latency plus the
/// inferences that cannot overlap it (1.5 + 0.3 s = 1.8 s), because the two inferences of the responses that
/// arrive at 1.2 s run on the two cores while the news is still on its way.
pub fn default_scenario() -> SimConfig {
    let latency = |millis| Latency::LogNormal {
        median: Duration::from_millis(millis),
        sigma: DEFAULT_SCENARIO_SIGMA,
    };
    SimConfig {
        weather: ServiceBehavior::healthy(latency(1200)),
        news: ServiceBehavior::healthy(latency(1500)),
        kb: ServiceBehavior::healthy(latency(1200)),
        ..SimConfig::default()
    }
}

impl Default for SimConfig {
    /// Realistic latencies with a modest tail (medians: weather 400 ms, news 700 ms, kb 250 ms) and no faults.
    fn default() -> Self {
        let log_normal = |median_ms, sigma| Latency::LogNormal {
            median: Duration::from_millis(median_ms),
            sigma,
        };
        SimConfig {
            weather: ServiceBehavior::healthy(log_normal(400, 0.35)),
            news: ServiceBehavior::healthy(log_normal(700, 0.4)),
            kb: ServiceBehavior::healthy(log_normal(250, 0.3)),
            seed: Self::DEFAULT_SEED,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn names_round_trip() {
        for service in Service::ALL {
            assert_eq!(service.to_string().parse::<Service>().ok(), Some(service));
        }
        for name in Fault::NAMES {
            let fault: Fault = name.parse().expect("every listed name parses");
            assert_eq!(fault.name(), name);
        }
        assert!("Slow-Body".parse::<Fault>().is_ok());
        let error = "sluggish".parse::<Fault>().expect_err("not a fault");
        assert!(error.to_string().contains("sluggish"), "{error}");
    }

    #[test]
    fn log_normal_latency_centres_on_the_median() {
        let latency = Latency::LogNormal {
            median: Duration::from_millis(100),
            sigma: 0.5,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut samples: Vec<Duration> = (0..2001).map(|_| latency.sample(&mut rng)).collect();
        samples.sort();
        let median = samples[1000];
        assert!(
            median > Duration::from_millis(80) && median < Duration::from_millis(125),
            "{median:?}"
        );
        assert!(
            samples[2000] > Duration::from_millis(200),
            "a tail exists: {:?}",
            samples[2000]
        );
    }

    #[test]
    fn stalls_put_the_p99_at_the_stall_and_the_median_at_the_typical_latency() {
        let latency = Latency::Stalls {
            typical: Duration::from_millis(20),
            stall: Duration::from_millis(200),
            share: 0.03,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut samples: Vec<Duration> = (0..10_000).map(|_| latency.sample(&mut rng)).collect();
        samples.sort();
        let (p50, p99) = (samples[4_999], samples[9_899]);
        assert!(
            p50 > Duration::from_millis(18) && p50 < Duration::from_millis(22),
            "{p50:?}"
        );
        assert_eq!(p99, Duration::from_millis(200));
        let stalled = samples
            .iter()
            .filter(|sample| **sample == Duration::from_millis(200))
            .count();
        assert!((200..400).contains(&stalled), "{stalled} of 10,000 stalled");
    }

    #[test]
    fn invalid_sigma_falls_back_to_the_median() {
        let latency = Latency::LogNormal {
            median: Duration::from_millis(100),
            sigma: -1.0,
        };
        assert_eq!(
            latency.sample(&mut StdRng::seed_from_u64(1)),
            Duration::from_millis(100)
        );
    }
}
