//! `/mcp`: the agent over MCP's streamable HTTP transport (`tributary_mcp`), behind the server's own admission:
//! an MCP run takes a place under the same adaptive limit as `/v1/ask`, is refused at once when there is none
//! (or the server is stopping), and teaches the limit how it fared.

use std::sync::Arc;

use tributary::trace::Timeline;
use tributary_agent::AgentReport;
use tributary_mcp::{Gate, Pass};

use crate::admission::{Admitted, Fared, cpu_budget, fared};
use crate::routes::AppState;
use crate::runs::inference_ends;

/// The server's admission, as an MCP run sees it.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) state: Arc<AppState>,
}

impl Gate for Admission {
    fn admit(&self) -> Result<Box<dyn Pass>, String> {
        let state = &self.state;
        if state.stopping().is_cancelled() {
            return Err(
                "the server is stopping; ask another instance, or again once it is back".to_owned(),
            );
        }
        let Some(admitted) = state.try_admit() else {
            state.refused_rejected();
            return Err(format!(
                "overloaded: {} asks in flight (the limit adapts to how runs fare, up to {}); retry later",
                state.admission_limit(),
                state.admission_max()
            ));
        };
        Ok(Box::new(Place {
            admitted,
            state: Arc::clone(state),
        }))
    }
}

/// An admitted MCP run's place.
struct Place {
    admitted: Admitted,
    state: Arc<AppState>,
}

impl Pass for Place {
    fn finish(self: Box<Self>, report: &AgentReport, timeline: &Timeline) {
        let settings = self.state.agent.settings();
        let fared = if report
            .sources
            .iter()
            .any(|source| source.failure == Some(tributary_agent::SourceFailure::Cancelled))
        {
            Fared::Unknown
        } else {
            fared(
                report,
                &inference_ends(timeline),
                cpu_budget(settings.deadline, settings.per_source_timeout),
            )
        };
        self.admitted.finish(fared);
        self.state.note_in_flight();
    }
}
