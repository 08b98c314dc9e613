//! Timeline recording and export: what ran where, when, and how it ended.
//!
//! A [`Timeline`] collects [`Span`]s (something that took time on a lane: a fetch, an inference) and
//! [`InstantEvent`]s (something that happened at a point: a retry, a timeout). Lanes are rows such as
//! `source weather` or `worker 1`; they belong to groups (`source`, `worker`) and appear grouped, in order of
//! first appearance unless [`Timeline::set_lane_order`] says otherwise.
//!
//! The timeline is cheap to clone and safe to record into from any thread, including pool workers; the lock is
//! only held to push a record, never across an `.await`.
//!
//! ```
//! use tributary::trace::{Activity, GanttStyle, Outcome, Timeline};
//!
//! let timeline = Timeline::new();
//! let mut fetch = timeline.start_span("source weather", "GET /weather", Activity::Fetch);
//! fetch.set_arg("attempt", 1);
//! fetch.finish(Outcome::Ok);
//! let chart = timeline.render_gantt(80, GanttStyle::Plain);
//! assert!(chart.contains("source weather"));
//! let chrome_json = timeline.chrome_trace().to_string();
//! assert!(chrome_json.contains("\"ph\":\"X\""));
//! ```
//!
//! Exports, all methods of [`Timeline`]: [`chrome_trace`](Timeline::chrome_trace) (Chrome Trace Event JSON, for
//! Perfetto and `chrome://tracing`), [`render_gantt`](Timeline::render_gantt) (a Gantt chart for the terminal)
//! and [`render_svg`](Timeline::render_svg) (a self-contained SVG Gantt chart).
//!
//! A timeline made with [`Timeline::live`] can also be watched while it is recorded: it keeps the ordered
//! [`Update`]s (work began, a span or event recorded, work ended) that a server streams to a browser.
//!
//! Layout: `record` (the timeline and its records), `live` (watching it), `chrome`, `gantt`, `svg` (the exports).

mod chrome;
mod gantt;
mod live;
mod record;
mod svg;

pub mod palette;

pub use gantt::GanttStyle;
pub use live::{OpenSpan, SpanProgress, Update};
pub use record::{
    Activity, EventKind, InstantEvent, Lane, Outcome, Span, SpanGuard, Timeline, format_duration,
};
