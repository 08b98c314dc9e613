//! Admission of MCP runs: a driver decides whether a run may start now, and learns how it fared.

use std::fmt;

use tributary::trace::Timeline;
use tributary_agent::AgentReport;

/// Decides whether a run may start now. `serve` gives its adaptive admission, so `/mcp` and `/v1/ask` share one
/// limit; `tributary mcp` admits every run ([`Open`]).
pub trait Gate: Send + Sync + fmt::Debug {
    /// A place for one run, or why there is none now (refused at once, never queued).
    fn admit(&self) -> Result<Box<dyn Pass>, String>;
}

/// One admitted run's place, given back when it ends.
pub trait Pass: Send {
    /// The run ended with `report`, drawn on `timeline`: the gate may learn from it.
    fn finish(self: Box<Self>, report: &AgentReport, timeline: &Timeline);
}

/// Admits every run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Gate for Open {
    fn admit(&self) -> Result<Box<dyn Pass>, String> {
        Ok(Box::new(Open))
    }
}

impl Pass for Open {
    fn finish(self: Box<Self>, _report: &AgentReport, _timeline: &Timeline) {}
}
