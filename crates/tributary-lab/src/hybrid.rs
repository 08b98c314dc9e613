//! `hybrid`: fetch N items and process each, sequentially and overlapped.
//!
//! Each item is a real news search on the simulated services (latencies staggered around one base latency) and
//! a real inference on its answer. The sequential baseline fetches an item, infers on it, then moves to the
//! next. The overlapped pipeline fetches every item at once and submits each answer to the CPU pool as it
//! arrives, so inference on early items runs while later items are still on the wire. Efficiency compares the
//! overlapped run with the ideal schedule of what it measured ([`ideal_makespan`]): the arrivals and the
//! inference times, placed on the pool's workers with no time lost.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use tributary::group::{Deadline, Outcome, SettleConfig, settle};
use tributary::pool::{CpuPool, JobContext, JobTiming};
use tributary::source::SourceClient;
use tributary::trace::{Activity, Span, Timeline};
use tributary_agent::Source;
use tributary_agent::extract::document_for;
use tributary::pool::CpuJob as _;
use tributary_agent::infer::{InferenceCost, InferenceJob, Models, infer};
use tributary_agent::schedule::{MeasuredJob, efficiency, ideal_makespan};
use tributary_sim::Service;

use super::experiment::{Experiment, ExperimentReport, ExperimentRun, LabConfig, LabError, millis};
use super::services::{LabServices, calibrated_pool, news_topic, request};
use super::verdict::Verdict;

/// The overlapped pipeline must save at least this share of the sequential time (SC-008).
pub const HYBRID_MIN_REDUCTION: f64 = 0.40;

/// The figures of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// Items fetched and processed.
    pub items: usize,
    /// CPU pool workers.
    pub workers: usize,
    /// The latency each item's fetch asked for.
    pub latencies_ms: Vec<f64>,
    /// The CPU time each inference was calibrated to.
    pub infer_cpu_ms: f64,
    /// The sequential baseline.
    pub sequential_ms: f64,
    /// The overlapped pipeline.
    pub overlapped_ms: f64,
    /// `1 - overlapped / sequential`: the share of time saved.
    pub reduction: f64,
    /// The best schedule of the overlapped run's arrivals and inference times on the workers.
    pub ideal_ms: f64,
    /// `ideal / overlapped`, at most 1.
    pub efficiency: f64,
    /// Items whose fetch or inference failed (in either run).
    pub failed_items: usize,
}

/// One item's fetch and inference, as measured.
#[derive(Debug, Clone, Copy)]
struct ItemTiming {
    arrived: Instant,
    infer: JobTiming,
}

/// The experiment, for the registry ([`crate::EXPERIMENTS`]).
pub const EXPERIMENT: Experiment = Experiment {
    name: "hybrid",
    title: "The hybrid pipeline: overlap I/O and CPU",
    run: start,
};

fn start(config: &LabConfig) -> ExperimentRun<'_> {
    Box::pin(run(config))
}

/// Runs the experiment.
pub async fn run(config: &LabConfig) -> Result<ExperimentReport, LabError> {
    let items = config.pick(8, 6);
    let base_latency = config.duration(1000, 200);
    let infer_cpu = config.duration(250, 50);
    let latencies: Vec<Duration> = (0..items)
        .map(|index| base_latency.mul_f64(0.6 + 0.8 * index as f64 / (items - 1) as f64))
        .collect();
    let workers = config.cores;
    let cost = InferenceCost::cpu(infer_cpu);
    let pool = calibrated_pool(workers, cost).await?;
    let services = LabServices::start().await?;
    services.warm_up().await;
    let item = Item {
        client: services.client(),
        source: services.source(Service::News),
        pool: pool.clone(),
        cost,
        models: config.models.clone(),
    };
    let timeline = Timeline::new();
    let mut lanes = vec!["sequential".to_owned()];
    lanes.extend((0..items).map(|index| format!("item {}", index + 1)));
    lanes.extend((0..workers.get()).map(|index| format!("worker {}", index + 1)));
    timeline.set_lane_order(&lanes);

    let started = Instant::now();
    let sequential = run_sequential(&item, &latencies, &timeline).await;
    let sequential_total = started.elapsed();

    let started = Instant::now();
    let overlapped = run_overlapped(&item, &latencies, &timeline).await;
    let overlapped_total = started.elapsed();
    services.shutdown().await;
    pool.shutdown().await;

    let jobs: Vec<MeasuredJob> = overlapped
        .iter()
        .flatten()
        .map(|timing| MeasuredJob {
            arrival: timing.arrived.saturating_duration_since(started),
            cpu: timing.infer.run_time(),
        })
        .collect();
    let ideal = ideal_makespan(&jobs, workers.get());
    let failed_items = sequential.iter().filter(|timing| timing.is_none()).count()
        + overlapped.iter().filter(|timing| timing.is_none()).count();
    // Real models take what they take: their mean over the overlapped run.
    let infer_cpu = if config.models.is_simulated() {
        infer_cpu
    } else {
        jobs.iter()
            .map(|job| job.cpu)
            .sum::<Duration>()
            .checked_div(u32::try_from(jobs.len()).unwrap_or(u32::MAX))
            .unwrap_or_default()
    };
    let measured = Measured {
        items,
        workers: workers.get(),
        latencies_ms: latencies.iter().copied().map(millis).collect(),
        infer_cpu_ms: millis(infer_cpu),
        sequential_ms: millis(sequential_total),
        overlapped_ms: millis(overlapped_total),
        reduction: 1.0 - overlapped_total.as_secs_f64() / sequential_total.as_secs_f64().max(1e-9),
        ideal_ms: millis(ideal),
        efficiency: efficiency(ideal, overlapped_total),
        failed_items,
    };
    let verdict = judge(&measured);
    ExperimentReport::new(
        &EXPERIMENT,
        format!(
            "{items} news searches ({} to {} ms each), each answer then read by {}. Sequential: fetch, infer, \
             next. Overlapped: every fetch at once, each answer submitted to the {}-worker pool as it arrives.",
            latencies[0].as_millis(),
            latencies[items - 1].as_millis(),
            crate::jobs::reader(&config.models, infer_cpu),
            workers
        ),
        format!(
            "Overlapping I/O and CPU takes at least {:.0}% less time than the sequential pipeline (the chapter's \
             SC-008); efficiency against the ideal schedule is reported.",
            HYBRID_MIN_REDUCTION * 100.0
        ),
        &measured,
        verdict,
        timeline,
    )
}

/// Judges the claim: every item processed, and the overlapped run at least [`HYBRID_MIN_REDUCTION`] shorter.
pub fn judge(measured: &Measured) -> Verdict {
    if measured.failed_items > 0 {
        return Verdict::fail(format!(
            "{} item(s) failed, so the timings mean nothing",
            measured.failed_items
        ));
    }
    Verdict::check(
        measured.reduction >= HYBRID_MIN_REDUCTION,
        format!(
            "overlapped {:.0} ms against sequential {:.0} ms: {:.0}% less time (at least {:.0}% claimed); \
             efficiency {:.2} against the ideal {:.0} ms",
            measured.overlapped_ms,
            measured.sequential_ms,
            measured.reduction * 100.0,
            HYBRID_MIN_REDUCTION * 100.0,
            measured.efficiency,
            measured.ideal_ms
        ),
    )
}

/// What every item needs: where to fetch it and where to infer on it.
#[derive(Debug, Clone)]
struct Item {
    client: SourceClient,
    source: Source,
    pool: CpuPool,
    cost: InferenceCost,
    /// Real models read each answer instead of the calibrated simulated model, unless simulated.
    models: Models,
}

impl Item {
    /// Fetches item `index`, then infers on it in the pool; `None` if either failed.
    async fn process(
        self,
        index: usize,
        latency: Duration,
        timeline: Timeline,
        fetch_lane: String,
        infer_lane: Option<String>,
    ) -> Option<ItemTiming> {
        let request = request(Service::News, index, Some(latency), None);
        let fetch_started = Instant::now();
        let fetched = self
            .client
            .fetch_uncached(&self.source.spec, &request, Deadline::none())
            .await
            .ok()?;
        let arrived = Instant::now();
        record(
            &timeline,
            &fetch_lane,
            format!("fetch {index}"),
            Activity::Fetch,
            fetch_started,
            arrived,
        );
        let document = document_for(&self.source, &fetched.body);
        let cost = self.cost;
        let models = self.models.clone();
        let (inference, timing) = self
            .pool
            .submit_timed(move |job: &JobContext| {
                let should_stop = || job.is_cancelled();
                if models.is_simulated() {
                    return infer("What is in the news?", &document, cost, &should_stop);
                }
                // A question each answer bears on, so that a chat model has something to write.
                let question = format!("What is the news about {}?", news_topic(index));
                InferenceJob::new(question, document, 0)
                    .with_models(models, None)
                    .run(&should_stop)
            })
            .await
            .ok()?;
        inference.ok()?;
        let lane = infer_lane.unwrap_or_else(|| format!("worker {}", timing.worker_index + 1));
        record(
            &timeline,
            &lane,
            format!("infer {index}"),
            Activity::Infer,
            Instant::from_std(timing.started_at),
            Instant::from_std(timing.finished_at),
        );
        Some(ItemTiming {
            arrived,
            infer: timing,
        })
    }
}

/// The baseline: each item fetched and processed before the next is asked for.
async fn run_sequential(
    item: &Item,
    latencies: &[Duration],
    timeline: &Timeline,
) -> Vec<Option<ItemTiming>> {
    let mut timings = Vec::new();
    for (index, &latency) in latencies.iter().enumerate() {
        let lane = "sequential".to_owned();
        timings.push(
            item.clone()
                .process(index, latency, timeline.clone(), lane.clone(), Some(lane))
                .await,
        );
    }
    timings
}

/// Every fetch at once; each item goes to the pool as soon as its answer arrives.
async fn run_overlapped(
    item: &Item,
    latencies: &[Duration],
    timeline: &Timeline,
) -> Vec<Option<ItemTiming>> {
    let tasks = latencies.iter().enumerate().map(|(index, &latency)| {
        let item = item.clone();
        let timeline = timeline.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                item.process(index, latency, timeline, format!("item {}", index + 1), None)
                    .await,
            )
        }
    });
    settle(SettleConfig::new(), tasks)
        .await
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Ok(timing) => timing,
            _ => None,
        })
        .collect()
}

fn record(
    timeline: &Timeline,
    lane: &str,
    name: String,
    activity: Activity,
    started: Instant,
    ended: Instant,
) {
    timeline.record(Span::new(
        lane,
        name,
        activity,
        timeline.offset(started.into_std()),
        timeline.offset(ended.into_std()),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid_measured(sequential_ms: f64, overlapped_ms: f64) -> Measured {
        Measured {
            items: 8,
            workers: 2,
            latencies_ms: vec![600.0, 1400.0],
            infer_cpu_ms: 250.0,
            sequential_ms,
            overlapped_ms,
            reduction: 1.0 - overlapped_ms / sequential_ms,
            ideal_ms: 1650.0,
            efficiency: 1650.0 / overlapped_ms,
            failed_items: 0,
        }
    }

    #[test]
    fn hybrid_passes_at_forty_percent_less_and_fails_below() {
        assert!(judge(&hybrid_measured(10_000.0, 1700.0)).pass);
        assert!(judge(&hybrid_measured(10_000.0, 6000.0)).pass);
        let verdict = judge(&hybrid_measured(10_000.0, 6100.0));
        assert!(!verdict.pass);
        assert!(verdict.reason.contains("39% less"), "{}", verdict.reason);
    }

    #[test]
    fn hybrid_fails_when_an_item_failed() {
        let mut measured = hybrid_measured(10_000.0, 1700.0);
        measured.failed_items = 1;
        assert!(!judge(&measured).pass);
    }
}
