//! [`Agent`]: one question in, every source asked at once, one answer out within the deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::agent::plan::plan;
use crate::agent::question::Question;
use crate::agent::report::{AgentReport, Comparison, SourceStatus};
use crate::agent::run::{
    ExtraQuery, StepContext, StepRecord, millis, run_concurrent, run_sequential, source_lane,
    worker_lane,
};
use crate::agent::schedule::{MeasuredJob, efficiency, ideal_makespan};
use crate::group::Deadline;
use crate::infer::{InferenceCost, aggregate};
use crate::pool::Executor;
use crate::source::{ClientBuildError, ClientOptions, SourceClient, SourceSpec};
use crate::trace::Timeline;

/// How the agent runs a question.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Time allowed to each source, all its attempts included, inside the overall deadline.
    pub per_source_timeout: Duration,
    /// Time allowed to the whole question.
    pub deadline: Duration,
    /// CPU each inference spends.
    pub inference_cost: InferenceCost,
    /// Extra query parameters per source name, e.g. `("news", [("fault", "hang")])` for fault injection.
    pub extra_query: ExtraQuery,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            per_source_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            inference_cost: InferenceCost::default(),
            extra_query: Vec::new(),
        }
    }
}

/// A finished run: the report and its timeline.
#[derive(Debug, Clone)]
pub struct Run {
    pub report: AgentReport,
    pub timeline: Timeline,
}

/// The agent. Cheap to clone; clones share the HTTP client (and its cache) and the executor.
#[derive(Debug, Clone)]
pub struct Agent {
    client: SourceClient,
    executor: Executor,
    sources: Arc<Vec<SourceSpec>>,
    settings: Arc<AgentSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Concurrent,
    Sequential,
}

impl Agent {
    /// An agent asking `sources` through `client` and running inference on `executor` (usually the thread
    /// pool, `Executor::from_pool`).
    pub fn new(
        client: SourceClient,
        executor: Executor,
        sources: Vec<SourceSpec>,
        settings: AgentSettings,
    ) -> Self {
        Self {
            client,
            executor,
            sources: Arc::new(sources),
            settings: Arc::new(settings),
        }
    }

    /// The same agent with a new, empty cache, so that one run cannot serve another from its cache (used by
    /// [`compare`](Self::compare)).
    pub fn with_fresh_cache(&self) -> Result<Self, ClientBuildError> {
        Ok(Self {
            client: SourceClient::new(ClientOptions::default())?,
            ..self.clone()
        })
    }

    pub fn sources(&self) -> &[SourceSpec] {
        &self.sources
    }

    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// The HTTP client and its cache, for callers that drive fetches themselves (the batch pipeline).
    pub fn client(&self) -> &SourceClient {
        &self.client
    }

    /// Where inference runs, for callers that drive inference themselves (the batch pipeline).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Asks every applicable source at once and infers on each response as it arrives.
    pub async fn ask(&self, question: &Question) -> Run {
        self.run(question, Mode::Concurrent).await
    }

    /// The chapter's baseline: fetch, infer, fetch, infer, ... one step at a time.
    pub async fn ask_sequential(&self, question: &Question) -> Run {
        self.run(question, Mode::Sequential).await
    }

    /// The sequential baseline, then the concurrent agent, each with a fresh cache; returns both and the
    /// speed-up, with the concurrent run's timeline.
    pub async fn compare(
        &self,
        question: &Question,
    ) -> Result<(Comparison, Timeline), ClientBuildError> {
        let sequential = self.with_fresh_cache()?.ask_sequential(question).await;
        let concurrent = self.with_fresh_cache()?.ask(question).await;
        let speedup = ratio(sequential.report.elapsed_ms, concurrent.report.elapsed_ms);
        let ideal_speedup = ratio(sequential.report.ideal_ms, concurrent.report.ideal_ms);
        let comparison = Comparison {
            question: question.to_string(),
            sequential: sequential.report,
            concurrent: concurrent.report,
            speedup,
            ideal_speedup,
        };
        Ok((comparison, concurrent.timeline))
    }

    async fn run(&self, question: &Question, mode: Mode) -> Run {
        let started = Instant::now();
        let timeline = Timeline::starting_at(started.into_std());
        let workers = self.executor.stats().jobs.workers;
        let mut lanes: Vec<String> = self
            .sources
            .iter()
            .map(|spec| source_lane(&spec.name))
            .collect();
        lanes.extend((0..workers).map(worker_lane));
        timeline.set_lane_order(&lanes);

        let context = StepContext {
            client: self.client.clone(),
            executor: self.executor.clone(),
            question: question.clone(),
            per_source_timeout: self.settings.per_source_timeout,
            inference_cost: self.settings.inference_cost,
            deadline: Deadline::at(started + self.settings.deadline),
            started,
            timeline: timeline.clone(),
            extra_query: Arc::new(self.settings.extra_query.clone()),
        };
        let steps = plan(question, &self.sources);
        let records = match mode {
            Mode::Concurrent => run_concurrent(&context, steps).await,
            Mode::Sequential => run_sequential(&context, steps).await,
        };
        let (answer, error) = self.answer(question, &records);
        let elapsed = started.elapsed();

        let ideal = match mode {
            Mode::Concurrent => ideal_concurrent(&records, workers),
            Mode::Sequential => ideal_sequential(&records),
        };
        let degraded = records.iter().any(|record| {
            !matches!(
                record.report.status,
                SourceStatus::Ok | SourceStatus::Skipped
            )
        });
        let report = AgentReport {
            question: question.to_string(),
            answer,
            error,
            degraded,
            mode: match mode {
                Mode::Concurrent => "concurrent",
                Mode::Sequential => "sequential",
            },
            elapsed_ms: millis(elapsed),
            ideal_ms: millis(ideal),
            efficiency: efficiency(ideal, elapsed),
            workers,
            deadline_ms: millis(self.settings.deadline),
            per_source_timeout_ms: millis(self.settings.per_source_timeout),
            sources: records.into_iter().map(|record| record.report).collect(),
        };
        tracing::info!(
            mode = report.mode,
            elapsed_ms = report.elapsed_ms,
            ideal_ms = report.ideal_ms,
            degraded = report.degraded,
            answered = report.answer.is_some(),
            "question answered"
        );
        Run { report, timeline }
    }

    /// The unified answer, or why there is none: no source answered, or a required one did not.
    fn answer(
        &self,
        question: &Question,
        records: &[StepRecord],
    ) -> (Option<String>, Option<String>) {
        if let Some(missing) = records
            .iter()
            .find(|record| record.report.required && record.report.status != SourceStatus::Ok)
        {
            let why = missing.report.error.as_deref().unwrap_or("no answer");
            return (
                None,
                Some(format!(
                    "required source `{}` did not answer: {why}",
                    missing.report.name
                )),
            );
        }
        let parts: Vec<(&str, &crate::infer::Inference)> = records
            .iter()
            .filter_map(|record| {
                record
                    .inference
                    .as_ref()
                    .map(|inference| (record.report.name.as_str(), inference))
            })
            .collect();
        if parts.is_empty() {
            return (None, Some("no source answered".to_owned()));
        }
        (Some(aggregate(question.as_str(), &parts).text), None)
    }
}

/// The best schedule of the measured arrivals and inference times on `workers` cores.
fn ideal_concurrent(records: &[StepRecord], workers: usize) -> Duration {
    let jobs: Vec<MeasuredJob> = records
        .iter()
        .filter_map(|record| {
            let arrival = record.report.arrived_at_ms?;
            Some(MeasuredJob {
                arrival: Duration::from_secs_f64(arrival / 1000.0),
                cpu: Duration::from_secs_f64(record.report.infer_ms.unwrap_or(0.0) / 1000.0),
            })
        })
        .collect();
    ideal_makespan(&jobs, workers)
}

/// The sequential baseline ideally costs every fetch plus every inference.
fn ideal_sequential(records: &[StepRecord]) -> Duration {
    let total_ms: f64 = records
        .iter()
        .map(|record| record.report.fetch_ms.unwrap_or(0.0) + record.report.infer_ms.unwrap_or(0.0))
        .sum();
    Duration::from_secs_f64(total_ms / 1000.0)
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}
