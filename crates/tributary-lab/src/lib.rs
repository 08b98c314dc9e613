//! The lab: every measurable claim of the asyncio chapter, run as an experiment on this machine, with the figures
//! it measured, a verdict and a timeline to draw.
//!
//! Each experiment runs real work: real HTTP requests to the embedded simulated services, real CPU work through
//! the calibrated inference kernel. Nothing sleeps to pretend to compute. Each returns an [`ExperimentReport`]:
//! what it did, the claim, the measured figures, a [`Verdict`] and the [`Timeline`](tributary::trace::Timeline)
//! of the run. The verdict logic ([`verdict`]) is pure, so it is tested with injected measurements; its
//! thresholds scale with the machine's cores where the claim does.
//!
//! | experiment            | the chapter's claim                                                           |
//! |-----------------------|-------------------------------------------------------------------------------|
//! | `sync-vs-async`       | three concurrent calls take about as long as the longest one                  |
//! | `blocking`            | CPU work on the event loop freezes it; through the pool it does not           |
//! | `fail-fast-vs-settle` | a TaskGroup cancels the siblings of a failed child; gather collects them all  |
//! | `timeouts`            | a timeout cuts a hanging call; the sooner of nested bounds wins; retries back off |
//! | `parallelism`         | a GIL gives no CPU speed-up; a pool gives one per core                        |
//! | `hybrid`              | overlapping fetches and inference saves at least 40 %                         |
//! | `capstone`            | the agent is at least 2× faster than its baseline, within 10 % of the ideal   |
//!
//! [`LabConfig::quick`] shrinks durations (1 s calls become 200 ms, jobs get smaller) so the whole lab runs in
//! seconds, with the same claims.
//!
//! # Adding an experiment
//! Write one file that defines its `Measured` figures, its `run` function and its `EXPERIMENT` (name, title,
//! `run`), and add one line to [`EXPERIMENTS`]. The command line lists, validates and runs it from there.
//!
//! # Layout
//! - `experiment`: [`Experiment`], [`LabConfig`], [`ExperimentReport`], [`LabError`].
//! - [`verdict`]: the claims as pure functions of the measurements, and their thresholds.
//! - `services`: the simulated services and the HTTP client every experiment shares the set-up of.
//! - `jobs`: [`CrashJob`], the job that crashes a worker process on purpose, and [`worker_jobs`].
//! - one module per experiment: [`sync_vs_async`], [`blocking`], [`fail_fast`], [`timeouts`], [`parallelism`],
//!   [`hybrid`], [`capstone`].

pub mod blocking;
pub mod capstone;
mod experiment;
pub mod fail_fast;
pub mod hybrid;
mod jobs;
pub mod parallelism;
mod services;
pub mod sync_vs_async;
pub mod timeouts;
pub mod verdict;

pub use experiment::{Experiment, ExperimentReport, LabConfig, LabError, UnknownExperiment};
pub use jobs::{CrashJob, worker_jobs};
pub use verdict::Verdict;

/// Every experiment, in the order the lab runs them (the chapter's).
pub static EXPERIMENTS: &[Experiment] = &[
    sync_vs_async::EXPERIMENT,
    blocking::EXPERIMENT,
    fail_fast::EXPERIMENT,
    timeouts::EXPERIMENT,
    parallelism::EXPERIMENT,
    hybrid::EXPERIMENT,
    capstone::EXPERIMENT,
];
