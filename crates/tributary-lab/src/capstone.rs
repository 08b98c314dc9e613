//! `capstone`: the agent against its sequential baseline, on the embedded default scenario.
//!
//! [`Agent::compare`] runs the chapter's baseline (fetch, infer, fetch, infer, ...) and then the concurrent
//! agent, each with a fresh cache, on the simulated services with the default scenario's latencies
//! ([`default_scenario`]: weather 1.2 s, news 1.5 s, knowledge base 1.2 s) and 300 ms of inference per answer.
//! Quick mode divides every latency and the inference cost by five.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Serialize;

use std::sync::Arc;

use tributary::pool::Executor;
use tributary::source::{ClientOptions, SourceClient};
use tributary_agent::infer::InferenceCost;
use tributary_agent::{Agent, AgentSettings, Question, SourceStatus, SourcesConfig};
use tributary_sim::{Latency, Service, SimConfig, SimServer, city_named_in, default_scenario};
use url::Url;

use super::experiment::{Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError};
use super::services::calibrated_pool;
use super::verdict::Verdict;

/// The agent must be at least this many times faster than its sequential baseline.
pub const CAPSTONE_MIN_SPEEDUP: f64 = 2.0;
/// And within 10 % of the ideal schedule.
pub const CAPSTONE_MIN_EFFICIENCY: f64 = 0.90;

/// The question: it names a city (weather), has keywords (news) and asks about concurrency (knowledge base).
pub const QUESTION: &str = "What's the weather in Paris, and why does the GIL matter?";
/// Quick mode divides latencies and the inference cost by this.
const QUICK_SCALE: u32 = 5;

/// The figures of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// CPU pool workers.
    pub workers: usize,
    /// CPU time of each inference.
    pub infer_cpu_ms: f64,
    /// The sequential baseline.
    pub sequential_ms: f64,
    /// The concurrent agent.
    pub concurrent_ms: f64,
    /// `sequential / concurrent`.
    pub speedup: f64,
    /// The ideal schedule of what the concurrent run measured.
    pub ideal_ms: f64,
    /// `ideal / concurrent`, at most 1.
    pub efficiency: f64,
    /// The speed-up the ideal schedules allow.
    pub ideal_speedup: f64,
    /// Sources that answered in each run, out of those asked.
    pub sources_ok: usize,
    /// Sources asked in each run.
    pub sources: usize,
    /// Whether both runs produced an answer.
    pub answered: bool,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "capstone",
    title: "Capstone: the agent against its sequential baseline",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let scale = config.pick(1, QUICK_SCALE);
    let infer_cpu = InferenceCost::DEFAULT_CPU / scale;
    let scenario = scaled(default_scenario(), scale);
    let workers = config.cores;
    let cost = InferenceCost::cpu(infer_cpu);
    let pool = calibrated_pool(workers, cost).await?;
    let services = SimServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), scenario)
        .await
        .map_err(LabError::Services)?;
    let base = Url::parse(&services.base_url())
        .map_err(|error| LabError::Setup(format!("parse the simulator's url: {error}")))?;
    let client = SourceClient::new(ClientOptions::default()).map_err(LabError::Client)?;
    let settings = AgentSettings {
        inference_cost: cost,
        places: Arc::new(city_named_in),
        ..AgentSettings::default()
    };
    let agent = Agent::new(
        client,
        Executor::from_pool(pool.clone()),
        SourcesConfig::all_kinds_at(&base).sources,
        settings,
    );
    let question = Question::new(QUESTION)
        .map_err(|error| LabError::Setup(format!("the capstone question is invalid: {error}")))?;
    let (comparison, timeline) = agent.compare(&question).await.map_err(LabError::Client)?;
    services.shutdown().await;
    pool.shutdown().await;

    let ok = |report: &tributary_agent::AgentReport| {
        report
            .sources
            .iter()
            .filter(|source| source.status == SourceStatus::Ok)
            .count()
    };
    let measured = Measured {
        workers: workers.get(),
        infer_cpu_ms: super::experiment::millis(infer_cpu),
        sequential_ms: comparison.sequential.elapsed_ms,
        concurrent_ms: comparison.concurrent.elapsed_ms,
        speedup: comparison.speedup,
        ideal_ms: comparison.concurrent.ideal_ms,
        efficiency: comparison.concurrent.efficiency,
        ideal_speedup: comparison.ideal_speedup,
        sources_ok: ok(&comparison.sequential).min(ok(&comparison.concurrent)),
        sources: comparison.concurrent.sources.len(),
        answered: comparison.sequential.answered() && comparison.concurrent.answered(),
    };
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "Asks \"{QUESTION}\" of the agent on the default scenario (weather {} ms, news {} ms, knowledge base \
             {} ms, {} ms of inference per answer, {} workers): first the sequential baseline, then the \
             concurrent agent, each with a fresh cache. The chart shows the concurrent run.",
            1200 / scale,
            1500 / scale,
            1200 / scale,
            infer_cpu.as_millis(),
            workers
        ),
        format!(
            "The agent is at least {CAPSTONE_MIN_SPEEDUP:.0}x faster than its sequential baseline, and within \
             {:.0}% of the ideal schedule on this machine (efficiency at least {CAPSTONE_MIN_EFFICIENCY:.2}).",
            (1.0 - CAPSTONE_MIN_EFFICIENCY) * 100.0
        ),
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: both runs answered from every source; speed-up at least [`CAPSTONE_MIN_SPEEDUP`] and efficiency
/// at least [`CAPSTONE_MIN_EFFICIENCY`].
pub fn judge(measured: &Measured) -> Verdict {
    if !measured.answered || measured.sources_ok < measured.sources {
        return Verdict::fail(format!(
            "only {} of {} sources answered (answer produced: {}), so the timings mean nothing",
            measured.sources_ok, measured.sources, measured.answered
        ));
    }
    Verdict::all([
        Verdict::check(
            measured.speedup >= CAPSTONE_MIN_SPEEDUP,
            format!(
                "{:.2}x faster ({:.0} ms against {:.0} ms; at least {CAPSTONE_MIN_SPEEDUP:.1}x claimed, {:.2}x ideal)",
                measured.speedup,
                measured.concurrent_ms,
                measured.sequential_ms,
                measured.ideal_speedup
            ),
        ),
        Verdict::check(
            measured.efficiency >= CAPSTONE_MIN_EFFICIENCY,
            format!(
                "efficiency {:.2} against the ideal {:.0} ms (at least {CAPSTONE_MIN_EFFICIENCY:.2})",
                measured.efficiency, measured.ideal_ms
            ),
        ),
    ])
}

/// `scenario` with every latency divided by `scale`.
fn scaled(mut scenario: SimConfig, scale: u32) -> SimConfig {
    for service in Service::ALL {
        let behavior = scenario.behavior_mut(service);
        behavior.latency = match behavior.latency {
            Latency::Fixed(latency) => Latency::Fixed(latency / scale),
            Latency::LogNormal { median, sigma } => Latency::LogNormal {
                median: median / scale,
                sigma,
            },
            Latency::Stalls {
                typical,
                stall,
                share,
            } => Latency::Stalls {
                typical: typical / scale,
                stall: stall / scale,
                share,
            },
            Latency::None => Latency::None,
        };
    }
    scenario
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capstone_measured(concurrent_ms: f64, ideal_ms: f64) -> Measured {
        Measured {
            workers: 2,
            infer_cpu_ms: 300.0,
            sequential_ms: 4800.0,
            concurrent_ms,
            speedup: 4800.0 / concurrent_ms,
            ideal_ms,
            efficiency: (ideal_ms / concurrent_ms).min(1.0),
            ideal_speedup: 4800.0 / ideal_ms,
            sources_ok: 3,
            sources: 3,
            answered: true,
        }
    }

    #[test]
    fn capstone_passes_near_the_ideal_and_fails_when_slow_or_wasteful() {
        assert!(judge(&capstone_measured(1850.0, 1800.0)).pass);
        let slow = judge(&capstone_measured(2500.0, 2400.0));
        assert!(!slow.pass);
        assert!(slow.reason.contains("1.92x faster"), "{}", slow.reason);
        let wasteful = judge(&capstone_measured(2300.0, 1800.0));
        assert!(!wasteful.pass);
        assert!(
            wasteful.reason.starts_with("efficiency 0.78"),
            "{}",
            wasteful.reason
        );
    }

    #[test]
    fn capstone_fails_when_a_source_did_not_answer() {
        let mut measured = capstone_measured(1850.0, 1800.0);
        measured.sources_ok = 2;
        assert!(!judge(&measured).pass);
    }
}
