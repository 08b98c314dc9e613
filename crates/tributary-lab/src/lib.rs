//! The lab: every measurable claim of the asyncio chapter, run as an experiment on this machine, with the figures
//! it measured, a verdict and a timeline to draw.
//!
//! Each experiment runs real work: real HTTP requests to the embedded simulated services, real CPU work through
//! the calibrated inference kernel. Nothing sleeps to pretend to compute. Each returns an [`ExperimentReport`]:
//! what it did, the claim, the measured figures, a [`Verdict`] and the [`Timeline`](tributary::trace::Timeline)
//! of the run. Each experiment judges its own claim: its `judge` is a pure function of its figures, so it is
//! tested with injected measurements; its thresholds scale with the machine's cores where the claim does.
//!
//! The experiments are [`EXPERIMENTS`], in the chapter's order. Each module's doc says what its experiment does
//! and the claim it judges; `tributary lab --help` lists them with their titles, from the registry.
//!
//! [`LabConfig::quick`] shrinks durations (1 s calls become 200 ms, jobs get smaller) so the whole lab runs in
//! seconds, with the same claims.
//!
//! # Adding an experiment
//! Write one file, `src/NAME.rs`, that defines its `Measured` figures, its `judge` (the claim as a pure function
//! of them, with its thresholds and its unit tests on injected figures), its `run` and its `EXPERIMENT` (name,
//! title, `run`); then add `NAME` to the `experiments!` list at the end of `lib.rs`, which declares the module and
//! puts its `EXPERIMENT` in [`EXPERIMENTS`]. Nothing else has to name it: the command line lists, validates
//! and runs the registry's, and its tests run every one of them.
//!
//! Adding [`to_thread`] (`to-thread`) touched 2 files: `to_thread.rs` (new) and one line of `lib.rs`, as
//! `git show --stat` of its commit shows; the command line and its tests ran it with no change. Telling readers
//! about it (`docs/CONCEPTS.md`, `docs/LAB.md`) was a commit of its own, like this paragraph: documentation
//! is welcome, not required.
//!
//! # Layout
//! - `experiment`: [`Experiment`], [`LabConfig`], [`ExperimentReport`], [`LabError`].
//! - [`verdict`]: [`Verdict`] and the helpers the claims share; it knows no experiment.
//! - `services`: the simulated services and the HTTP client every experiment shares the set-up of.
//! - `jobs`: [`CrashJob`], the job that crashes a worker process on purpose.
//! - [`machine`]: how busy the machine was while an experiment ran (the CPU other programs used).
//! - one module per experiment, in the `experiments!` list.

mod experiment;
mod jobs;
pub mod machine;
mod services;
pub mod verdict;

pub use experiment::{Experiment, ExperimentReport, LabConfig, LabError, UnknownExperiment};
pub use jobs::CrashJob;
pub use verdict::Verdict;

/// Declares each experiment's module and lists its `EXPERIMENT` in [`EXPERIMENTS`], so an experiment is its file
/// plus one line here, and a file cannot be declared without being registered.
macro_rules! experiments {
    ($($module:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Every experiment, in the order the lab runs them (the chapter's).
        pub static EXPERIMENTS: &[Experiment] = &[$($module::EXPERIMENT),+];
    };
}

experiments! {
    sync_vs_async,
    blocking,
    to_thread,
    fail_fast,
    timeouts,
    parallelism,
    hybrid,
    capstone,
}
