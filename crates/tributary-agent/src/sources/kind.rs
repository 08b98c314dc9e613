//! [`SourceKind`]: what a source knows about, which decides the request the planner makes
//! ([`plan`](crate::plan)) and how its response is read ([`extract`](crate::extract)).

use std::fmt;

use serde::Deserialize;

/// What a source knows about, and so which protocol it speaks (the simulated services speak all three):
///
/// | kind      | request                  | response read                                  |
/// |-----------|--------------------------|------------------------------------------------|
/// | `weather` | `GET /weather?city=NAME` | `summary` and each `forecast[].summary`        |
/// | `news`    | `GET /news?q=KEYWORDS`   | every prose field (`title`, `summary`, `body`) |
/// | `kb`      | `GET /kb/search?q=TEXT`  | every prose field (`title`, `text`, `snippet`) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum SourceKind {
    /// Current conditions and forecasts.
    #[serde(rename = "weather")]
    Weather,
    /// Recent headlines.
    #[serde(rename = "news")]
    News,
    /// Reference articles.
    #[serde(rename = "kb")]
    KnowledgeBase,
}

impl SourceKind {
    /// The name used in sources files and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceKind::Weather => "weather",
            SourceKind::News => "news",
            SourceKind::KnowledgeBase => "kb",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
