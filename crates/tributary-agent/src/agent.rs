//! [`Agent`]: one question in, every source asked at once, one answer out within the deadline.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary::group::Deadline;
use tributary::pool::Executor;
use tributary::source::{ClientBuildError, SourceClient};
use tributary::trace::Timeline;

use crate::infer::{InferenceCost, Models, work_units_off_runtime};
use crate::places::{NoPlaces, PlaceFinder};
use crate::plan::plan;
use crate::question::Question;
use crate::report::{AgentReport, Comparison, RunMode};
use crate::run::{run_concurrent, run_sequential};
use crate::sources::{McpServers, NoMcp, Source};
use crate::step::{
    Chat, ExtraQuery, InferenceCache, RunFacts, SYNTHESIS_LANE, StepContext, add_synthesis, report,
    source_lane, synthesize, worker_lane,
};

/// How the agent runs a question.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Time allowed to each source, all its attempts included, inside the overall deadline.
    pub per_source_timeout: Duration,
    /// Time allowed to the whole question.
    pub deadline: Duration,
    /// CPU each inference of the simulated model spends.
    pub inference_cost: InferenceCost,
    /// The models that read the responses (the simulated one by default).
    pub models: Models,
    /// Extra query parameters per source name, e.g. `("news", [("fault", "hang")])` for fault injection.
    pub extra_query: ExtraQuery,
    /// Finds the place a question names, for weather sources ([`NoPlaces`] by default: they are skipped).
    pub places: Arc<dyn PlaceFinder>,
    /// After the fan-out, has the chat model of `models` (a local `.gguf`) write one answer across the sources'
    /// summaries ([`AgentReport::synthesis`](crate::report::AgentReport::synthesis)). Off by default.
    pub synthesize: bool,
    /// How `mcp` sources reach their servers ([`NoMcp`] by default: they fail, saying so).
    pub mcp: Arc<dyn McpServers>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            per_source_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            inference_cost: InferenceCost::default(),
            models: Models::default(),
            extra_query: Vec::new(),
            places: Arc::new(NoPlaces),
            synthesize: false,
            mcp: Arc::new(NoMcp),
        }
    }
}

/// A finished run: the report and its timeline.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the run answered and measured.
    pub report: AgentReport,
    /// What ran where and when.
    pub timeline: Timeline,
}

/// The baseline and the agent on one question ([`Agent::compare_runs`]).
#[derive(Debug, Clone)]
pub struct Compared {
    /// Both reports and the speed-up.
    pub comparison: Comparison,
    /// What the sequential baseline ran when.
    pub sequential: Timeline,
    /// What the concurrent agent ran when.
    pub concurrent: Timeline,
}

/// The agent. Cheap to clone; clones share the HTTP client (and its cache) and the executor.
#[derive(Debug, Clone)]
pub struct Agent {
    client: SourceClient,
    executor: Executor,
    sources: Arc<Vec<Source>>,
    settings: Arc<AgentSettings>,
    /// `settings.extra_query`, shared by every question's steps.
    extra_query: Arc<ExtraQuery>,
    /// Inferences of the client's cached responses; a new client starts a new one.
    inferences: InferenceCache,
}

/// Whether a question's steps record a timeline.
#[derive(Debug, Clone)]
pub enum Recording {
    /// Record spans and events for a chart, on a new timeline starting when the question did.
    Timeline,
    /// Record on this timeline (a live one a driver streams).
    Into(Timeline),
    /// Record nothing (a batch: thousands of questions, no chart).
    Nothing,
}

impl Agent {
    /// An agent asking `sources` through `client` and running inference on `executor` (usually the thread
    /// pool, `Executor::from_pool`).
    pub fn new(
        client: SourceClient,
        executor: Executor,
        sources: Vec<Source>,
        settings: AgentSettings,
    ) -> Self {
        Self {
            client,
            executor,
            sources: Arc::new(sources),
            extra_query: Arc::new(settings.extra_query.clone()),
            settings: Arc::new(settings),
            inferences: InferenceCache::default(),
        }
    }

    /// The same agent asking through `client` (e.g. one whose cache is sized for a batch).
    pub fn with_client(&self, client: SourceClient) -> Self {
        Self {
            client,
            inferences: InferenceCache::default(),
            ..self.clone()
        }
    }

    /// The same agent (client, cache, executor, sources) running questions with `settings`: a server's
    /// per-request deadline and faults.
    pub fn with_settings(&self, settings: AgentSettings) -> Self {
        Self {
            extra_query: Arc::new(settings.extra_query.clone()),
            settings: Arc::new(settings),
            ..self.clone()
        }
    }

    /// The same agent with a new, empty cache, so that one run cannot serve another from its cache (used by
    /// [`compare`](Self::compare)).
    pub fn with_fresh_cache(&self) -> Result<Self, ClientBuildError> {
        Ok(self.with_client(self.client.fresh()?))
    }

    /// The sources, in the order they are asked and reported.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// How questions are run.
    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// The HTTP client and its cache.
    pub fn client(&self) -> &SourceClient {
        &self.client
    }

    /// Where inference runs.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Asks every applicable source at once and infers on each response as it arrives.
    pub async fn ask(&self, question: &Question) -> Run {
        self.ask_arrived_at(question, RunMode::Concurrent, Instant::now())
            .await
    }

    /// The chapter's baseline: fetch, infer, fetch, infer, ... one step at a time.
    pub async fn ask_sequential(&self, question: &Question) -> Run {
        self.ask_arrived_at(question, RunMode::Sequential, Instant::now())
            .await
    }

    /// Like [`ask`](Self::ask) (or [`ask_sequential`](Self::ask_sequential) for [`RunMode::Sequential`]) for a
    /// question that arrived at `arrived`, say when the process started: the deadline, the elapsed time and
    /// the timeline count from then, so the time spent starting up is inside the deadline.
    pub async fn ask_arrived_at(
        &self,
        question: &Question,
        mode: RunMode,
        arrived: Instant,
    ) -> Run {
        self.run(
            question,
            mode,
            arrived,
            Recording::Timeline,
            CancellationToken::new(),
        )
        .await
    }

    /// Like [`ask_arrived_at`](Self::ask_arrived_at) for a driver that watches the run and may stop it: the
    /// steps record on `timeline` (made with [`Timeline::live`] to be watched; the run starts at its origin),
    /// and cancelling `cancel` stops them. The run returns only when every step has ended, with the sources it
    /// stopped reported failed, "cancelled".
    pub async fn ask_watched(
        &self,
        question: &Question,
        mode: RunMode,
        timeline: Timeline,
        cancel: CancellationToken,
    ) -> Run {
        let started = Instant::from_std(timeline.origin());
        self.run(question, mode, started, Recording::Into(timeline), cancel)
            .await
    }

    /// The sequential baseline, then the concurrent agent, each with a fresh cache; returns both and the
    /// speed-up, with the concurrent run's timeline.
    pub async fn compare(
        &self,
        question: &Question,
    ) -> Result<(Comparison, Timeline), ClientBuildError> {
        let compared = self
            .compare_runs(question, CancellationToken::new())
            .await?;
        Ok((compared.comparison, compared.concurrent))
    }

    /// [`compare`](Self::compare) with both runs' timelines; cancelling `cancel` stops the run going (its steps
    /// joined, as [`ask_watched`](Self::ask_watched)'s) and skips the other.
    pub async fn compare_runs(
        &self,
        question: &Question,
        cancel: CancellationToken,
    ) -> Result<Compared, ClientBuildError> {
        let sequential = self
            .with_fresh_cache()?
            .run(
                question,
                RunMode::Sequential,
                Instant::now(),
                Recording::Timeline,
                cancel.clone(),
            )
            .await;
        let concurrent = self
            .with_fresh_cache()?
            .run(
                question,
                RunMode::Concurrent,
                Instant::now(),
                Recording::Timeline,
                cancel,
            )
            .await;
        let speedup = ratio(sequential.report.elapsed_ms, concurrent.report.elapsed_ms);
        let ideal_speedup = ratio(sequential.report.ideal_ms, concurrent.report.ideal_ms);
        let comparison = Comparison {
            question: question.to_string(),
            sequential: sequential.report,
            concurrent: concurrent.report,
            speedup,
            ideal_speedup,
        };
        Ok(Compared {
            comparison,
            sequential: sequential.timeline,
            concurrent: concurrent.timeline,
        })
    }

    /// A context for the steps of one question started at `started`, recording on a fresh timeline or not.
    pub async fn step_context(
        &self,
        question: &Question,
        started: Instant,
        recording: Recording,
    ) -> StepContext {
        StepContext {
            client: self.client.clone(),
            executor: self.executor.clone(),
            question: question.clone(),
            per_source_timeout: self.settings.per_source_timeout,
            inference_units: work_units_off_runtime(self.settings.inference_cost).await,
            models: self.settings.models.clone(),
            chat: self
                .settings
                .models
                .endpoint
                .as_ref()
                .and_then(|endpoint| Chat::new(endpoint, self.settings.per_source_timeout)),
            started,
            timeline: match recording {
                Recording::Timeline => Some(Timeline::starting_at(started.into_std())),
                Recording::Into(timeline) => Some(timeline),
                Recording::Nothing => None,
            },
            extra_query: Arc::clone(&self.extra_query),
            inferences: self.inferences.clone(),
            cancel: CancellationToken::new(),
            mcp: Arc::clone(&self.settings.mcp),
        }
    }

    /// A run's timeline lanes in display order: each source's, the synthesis's when there is one, then each CPU
    /// worker's.
    pub fn lanes(&self) -> Vec<String> {
        let mut lanes: Vec<String> = self
            .sources
            .iter()
            .map(|source| source_lane(source.name()))
            .collect();
        if self.settings.synthesize {
            lanes.push(SYNTHESIS_LANE.to_owned());
        }
        lanes.extend((0..self.workers()).map(worker_lane));
        lanes
    }

    /// CPU workers of the executor.
    pub fn workers(&self) -> usize {
        self.executor.stats().jobs.workers
    }

    /// One run of `question` started at `started`, recording as `recording` says, stopped by `cancel`.
    async fn run(
        &self,
        question: &Question,
        mode: RunMode,
        started: Instant,
        recording: Recording,
        cancel: CancellationToken,
    ) -> Run {
        let span = tracing::info_span!(
            "question",
            question = question.as_str(),
            mode = mode.as_str(),
            status = tracing::field::Empty,
        );
        let run = self
            .run_in_span(question, mode, started, recording, cancel)
            .instrument(span.clone())
            .await;
        span.record("status", run.report.status.as_str());
        run
    }

    /// [`run`](Self::run) inside the question's span.
    async fn run_in_span(
        &self,
        question: &Question,
        mode: RunMode,
        started: Instant,
        recording: Recording,
        cancel: CancellationToken,
    ) -> Run {
        let mut context = self.step_context(question, started, recording).await;
        context.cancel = cancel;
        let deadline = Deadline::after_from(started, self.settings.deadline);
        let timeline = context.timeline.clone().expect("a run records a timeline");
        let workers = self.workers();
        timeline.set_lane_order(&self.lanes());

        let steps = plan(question, &self.sources, self.settings.places.as_ref());
        let records = match mode {
            RunMode::Concurrent => run_concurrent(&context, steps, deadline).await,
            RunMode::Sequential => run_sequential(&context, steps, deadline).await,
        };
        let synthesis = if self.settings.synthesize {
            synthesize(&context, &records, deadline).await
        } else {
            None
        };
        let mut report = report(
            question,
            records,
            RunFacts {
                mode,
                elapsed: started.elapsed(),
                workers,
                deadline: self.settings.deadline,
                per_source_timeout: self.settings.per_source_timeout,
            },
        );
        if let Some(synthesis) = synthesis {
            add_synthesis(&mut report, synthesis);
        }
        tracing::info!(
            mode = report.mode.as_str(),
            elapsed_ms = report.elapsed_ms,
            ideal_ms = report.ideal_ms,
            status = report.status.as_str(),
            "question answered"
        );
        Run { report, timeline }
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

#[cfg(test)]
pub(crate) mod spans;
#[cfg(test)]
mod tests;
