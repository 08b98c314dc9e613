//! Not written yet.

use super::experiment::{ExperimentReport, LabConfig, LabError};

/// Runs the experiment.
pub async fn run(_config: &LabConfig) -> Result<ExperimentReport, LabError> {
    Err(LabError::Setup("not written yet".to_owned()))
}
