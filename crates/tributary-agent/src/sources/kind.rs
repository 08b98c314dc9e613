//! [`SourceKind`]: the protocol a source speaks, which decides the request the planner makes
//! ([`plan`](crate::plan)), whether a second request follows ([`protocols`](crate::protocols)) and how its response
//! is read ([`extract`](crate::extract)); and its [`Topic`], what it knows about.
//!
//! Both are the one place these names are spelled: a sources file's `kind`, a report's `kind` and `topic`, and the
//! order of an answer's lines all come from here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The protocol a source speaks. Three are the simulated services' (which speak all three), three are real,
/// keyless public APIs ([`protocols`](crate::protocols)):
///
/// | kind         | topic     | request(s)                                                    | response read                                  |
/// |--------------|-----------|---------------------------------------------------------------|------------------------------------------------|
/// | `weather`    | weather   | `GET /weather?city=NAME`                                      | `summary` and each `forecast[].summary`        |
/// | `news`       | news      | `GET /news?q=KEYWORDS`                                        | every prose field (`title`, `summary`, `body`) |
/// | `kb`         | knowledge | `GET /kb/search?q=TEXT`                                       | every prose field (`title`, `text`, `snippet`) |
/// | `open-meteo` | weather   | `GET /v1/search?name=PLACE` (geocoding), then `GET /v1/forecast?latitude=..&longitude=..&current=..` | the current conditions, in words |
/// | `hn-algolia` | news      | `GET /api/v1/search?query=KEYWORDS&tags=story`                | each hit's `title`, points and `story_text`    |
/// | `mcp`        | its file's `topic` | `tools/call` of its `tool` on an MCP server ([`McpTool`](super::McpTool)) | the result's text contents, or its structured content's strings |
/// | `wikipedia`  | knowledge | `GET /w/rest.php/v1/search/page?q=KEYWORDS&limit=1`, then `GET /api/rest_v1/page/summary/KEY` | `title`, `description`, `extract` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SourceKind {
    /// Current conditions and forecasts (the simulated protocol).
    #[serde(rename = "weather")]
    Weather,
    /// Recent headlines (the simulated protocol).
    #[serde(rename = "news")]
    News,
    /// Reference articles (the simulated protocol).
    #[serde(rename = "kb")]
    KnowledgeBase,
    /// Open-Meteo's geocoding and forecast APIs: current conditions.
    #[serde(rename = "open-meteo")]
    OpenMeteo,
    /// Hacker News stories through Algolia's search API.
    #[serde(rename = "hn-algolia")]
    HnAlgolia,
    /// Wikipedia's REST APIs: a page search, then the page's summary.
    #[serde(rename = "wikipedia")]
    Wikipedia,
    /// A tool of a Model Context Protocol server ([`McpTool`](super::McpTool)).
    #[serde(rename = "mcp")]
    Mcp,
}

/// What a source knows about, whatever protocol it speaks. The order of the variants is the order of an
/// answer's lines: weather first, then news, then background knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Weather conditions and forecasts.
    Weather,
    /// Recent news.
    News,
    /// Background knowledge.
    Knowledge,
}

impl SourceKind {
    /// Every kind, in the order of the table above.
    pub const ALL: [SourceKind; 7] = [
        SourceKind::Weather,
        SourceKind::News,
        SourceKind::KnowledgeBase,
        SourceKind::OpenMeteo,
        SourceKind::HnAlgolia,
        SourceKind::Wikipedia,
        SourceKind::Mcp,
    ];

    /// The name used in sources files and in reports' `kind`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceKind::Weather => "weather",
            SourceKind::News => "news",
            SourceKind::KnowledgeBase => "kb",
            SourceKind::OpenMeteo => "open-meteo",
            SourceKind::HnAlgolia => "hn-algolia",
            SourceKind::Wikipedia => "wikipedia",
            SourceKind::Mcp => "mcp",
        }
    }

    /// What a source of this kind knows about (an `mcp` source's file says; this is its default).
    pub fn topic(&self) -> Topic {
        match self {
            SourceKind::Weather | SourceKind::OpenMeteo => Topic::Weather,
            SourceKind::News | SourceKind::HnAlgolia => Topic::News,
            SourceKind::KnowledgeBase | SourceKind::Wikipedia | SourceKind::Mcp => Topic::Knowledge,
        }
    }
}

impl Topic {
    /// The name in reports' `topic`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Topic::Weather => "weather",
            Topic::News => "news",
            Topic::Knowledge => "knowledge",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports carried these names as strings before they were enums: the JSON must not change by a byte.
    #[test]
    fn serde_names_are_the_names_reports_always_had() {
        for kind in SourceKind::ALL {
            let json = serde_json::to_value(kind).expect("serializes");
            assert_eq!(json, kind.as_str(), "{kind:?}");
            let back: SourceKind = serde_json::from_value(json).expect("reads back");
            assert_eq!(back, kind);
        }
        for topic in [Topic::Weather, Topic::News, Topic::Knowledge] {
            let json = serde_json::to_value(topic).expect("serializes");
            assert_eq!(json, topic.as_str(), "{topic:?}");
            let back: Topic = serde_json::from_value(json).expect("reads back");
            assert_eq!(back, topic);
        }
    }
}
