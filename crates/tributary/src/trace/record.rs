//! The [`Timeline`] and its records.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::live::{Live, Update};

/// A shared, thread-safe recording of spans and instant events, with times relative to an origin.
///
/// Cloning is cheap and every clone records into the same timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    origin: Instant,
    pub(super) recording: Arc<Mutex<Recording>>,
}

/// What a span was doing; decides its glyph and colour in charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// Waiting on I/O: a request to a source.
    Fetch,
    /// CPU work: simulated inference on a worker.
    Infer,
    /// Anything else (planning, aggregation, queueing).
    Other,
}

/// How a span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Finished successfully.
    Ok,
    /// Finished with an error.
    Failed,
    /// Stopped by a timeout or deadline.
    TimedOut,
    /// Abandoned: the span's guard was dropped without [`SpanGuard::finish`] (e.g. its future was cancelled).
    Cancelled,
}

/// What an instant event marks; decides its glyph in charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A retry of a failed attempt.
    Retry,
    /// A timeout or deadline fired.
    Timeout,
    /// A failure worth seeing on its own.
    Failure,
    /// Anything else.
    Note,
}

/// Something that took time on a lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The row it belongs to, e.g. `source weather` or `worker 2`.
    pub lane: String,
    /// What it was, e.g. `GET /weather` or `infer news`.
    pub name: String,
    /// What kind of work it was.
    pub activity: Activity,
    /// How it ended.
    pub outcome: Outcome,
    /// Start, relative to the timeline's origin.
    pub start: Duration,
    /// End, relative to the timeline's origin; never before `start`.
    pub end: Duration,
    /// Extra details carried into exports, such as `attempt`, `status` or `cached`.
    pub args: Map<String, Value>,
}

/// Something that happened at one point on a lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstantEvent {
    /// The row it belongs to.
    pub lane: String,
    /// What happened, e.g. `retry` or `per-call timeout`.
    pub name: String,
    /// What kind of event it is.
    pub kind: EventKind,
    /// When, relative to the timeline's origin.
    pub at: Duration,
    /// Extra details carried into exports.
    pub args: Map<String, Value>,
}

/// A lane (row) and the group it is shown in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lane {
    /// The lane's name, e.g. `worker 1`.
    pub name: String,
    /// The group, e.g. `worker`: the lane name up to its first space.
    pub group: String,
}

/// A span in progress. Record it with [`SpanGuard::finish`]; dropping it unfinished records it as
/// [`Outcome::Cancelled`], so a future cancelled at a deadline still shows up on the timeline.
#[derive(Debug)]
#[must_use = "a span is recorded when finished or dropped; dropping it at once records an empty cancelled span"]
pub struct SpanGuard {
    timeline: Timeline,
    span: Option<Span>,
    /// The span's id in the live updates.
    id: u64,
}

/// A consistent copy of a timeline, taken under the lock and rendered without it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// Lanes in display order: grouped, groups in order of first appearance.
    pub(crate) lanes: Vec<Lane>,
    pub(crate) spans: Vec<Span>,
    pub(crate) events: Vec<InstantEvent>,
    /// The latest end or event time: the length of the chart.
    pub(crate) end: Duration,
}

#[derive(Debug, Default)]
pub(super) struct Recording {
    spans: Vec<Span>,
    /// What live watchers are told, in order; `None` unless the timeline is [`Timeline::live`].
    pub(super) live: Option<Live>,
    events: Vec<InstantEvent>,
    /// Lanes in order of first appearance.
    lanes: Vec<Lane>,
    /// Lanes named by `set_lane_order`, shown before all others.
    explicit_order: Vec<String>,
}

impl Timeline {
    /// A new, empty timeline whose origin is now.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A new, empty timeline with the given origin (e.g. when the request arrived).
    pub fn starting_at(origin: Instant) -> Self {
        Self {
            origin,
            recording: Arc::default(),
        }
    }

    /// The instant all times are relative to.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Time since the origin.
    pub fn elapsed(&self) -> Duration {
        self.offset(Instant::now())
    }

    /// The time of `instant` relative to the origin (zero for instants before it).
    pub fn offset(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.origin)
    }

    /// Start a span now; it is recorded when the guard is finished or dropped. A live timeline tells its
    /// watchers at once ([`Update::Began`]), and again when it ends ([`Update::Span`], [`Update::Closed`]).
    pub fn start_span(
        &self,
        lane: impl Into<String>,
        name: impl Into<String>,
        activity: Activity,
    ) -> SpanGuard {
        let lane = lane.into();
        let name = name.into();
        let start = self.elapsed();
        let id = self.began(&lane, &name, activity, None, start);
        SpanGuard {
            timeline: self.clone(),
            span: Some(Span::new(lane, name, activity, start, start)),
            id,
        }
    }

    /// Record a finished span.
    pub fn record(&self, span: Span) {
        let mut recording = self.lock();
        recording.touch_lane(&span.lane);
        if let Some(live) = &mut recording.live {
            live.push(Update::Span(span.clone()));
        }
        recording.spans.push(span);
    }

    /// Record an instant event.
    pub fn record_event(&self, event: InstantEvent) {
        let mut recording = self.lock();
        recording.touch_lane(&event.lane);
        if let Some(live) = &mut recording.live {
            live.push(Update::Event(event.clone()));
        }
        recording.events.push(event);
    }

    /// Record an instant event happening now, without args.
    pub fn event(&self, lane: impl Into<String>, name: impl Into<String>, kind: EventKind) {
        self.record_event(InstantEvent::new(lane, name, kind, self.elapsed()));
    }

    /// Show these lanes first, in this order (declaring any that have not appeared yet); lanes not named
    /// follow in order of first appearance. Lanes stay together by group either way.
    pub fn set_lane_order<S: AsRef<str>>(&self, lanes: &[S]) {
        let mut recording = self.lock();
        recording.explicit_order = lanes.iter().map(|lane| lane.as_ref().to_owned()).collect();
        for lane in lanes {
            recording.touch_lane(lane.as_ref());
        }
    }

    /// All spans recorded so far, in recording order.
    pub fn spans(&self) -> Vec<Span> {
        self.lock().spans.clone()
    }

    /// All instant events recorded so far, in recording order.
    pub fn events(&self) -> Vec<InstantEvent> {
        self.lock().events.clone()
    }

    /// The lanes in display order.
    pub fn lanes(&self) -> Vec<Lane> {
        self.snapshot().lanes
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let (mut lanes, spans, events, explicit_order) = {
            let recording = self.lock();
            (
                recording.lanes.clone(),
                recording.spans.clone(),
                recording.events.clone(),
                recording.explicit_order.clone(),
            )
        };
        // Explicitly ordered lanes first, then the rest by first appearance (a stable sort keeps that order)...
        lanes.sort_by_key(|lane| {
            explicit_order
                .iter()
                .position(|name| *name == lane.name)
                .unwrap_or(usize::MAX)
        });
        // ...then keep each group together, groups in the order they first appear.
        let mut group_order: Vec<String> = Vec::new();
        for lane in &lanes {
            if !group_order.contains(&lane.group) {
                group_order.push(lane.group.clone());
            }
        }
        lanes.sort_by_key(|lane| group_order.iter().position(|group| *group == lane.group));
        let end = spans
            .iter()
            .map(|span| span.end)
            .chain(events.iter().map(|event| event.at))
            .max()
            .unwrap_or_default();
        Snapshot {
            lanes,
            spans,
            events,
            end,
        }
    }

    /// The recording is only ever appended to, so it stays consistent even if a recording thread panicked.
    pub(super) fn lock(&self) -> MutexGuard<'_, Recording> {
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Recording {
    pub(super) fn touch_lane(&mut self, lane: &str) {
        if !self.lanes.iter().any(|existing| existing.name == lane) {
            self.lanes.push(Lane {
                name: lane.to_owned(),
                group: lane.split(' ').next().unwrap_or(lane).to_owned(),
            });
        }
    }
}

impl Span {
    /// A successful span without args; `end` is clamped so it is never before `start`.
    pub fn new(
        lane: impl Into<String>,
        name: impl Into<String>,
        activity: Activity,
        start: Duration,
        end: Duration,
    ) -> Self {
        Self {
            lane: lane.into(),
            name: name.into(),
            activity,
            outcome: Outcome::Ok,
            start,
            end: end.max(start),
            args: Map::new(),
        }
    }

    /// The same span with another outcome.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The same span with one more arg.
    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.args.insert(key.into(), value.into());
        self
    }

    /// How long it took.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

impl InstantEvent {
    /// An event without args.
    pub fn new(
        lane: impl Into<String>,
        name: impl Into<String>,
        kind: EventKind,
        at: Duration,
    ) -> Self {
        Self {
            lane: lane.into(),
            name: name.into(),
            kind,
            at,
            args: Map::new(),
        }
    }

    /// The same event with one more arg.
    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.args.insert(key.into(), value.into());
        self
    }
}

impl SpanGuard {
    /// Attach a detail to the span, e.g. `attempt` or `cached`.
    pub fn set_arg(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        if let Some(span) = &mut self.span {
            span.args.insert(key.into(), value.into());
        }
        self
    }

    /// End the span now with `outcome` and record it.
    pub fn finish(mut self, outcome: Outcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: Outcome) {
        if let Some(mut span) = self.span.take() {
            span.outcome = outcome;
            span.end = self.timeline.elapsed().max(span.start);
            let end = span.end;
            self.timeline.record(span);
            self.timeline.closed(self.id, outcome, end);
        }
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        self.record(Outcome::Cancelled);
    }
}

impl Activity {
    /// Lowercase name, as used in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Infer => "infer",
            Self::Other => "other",
        }
    }
}

impl Outcome {
    /// Lowercase name, as used in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

impl EventKind {
    /// Lowercase name, as used in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Timeout => "timeout",
            Self::Failure => "failure",
            Self::Note => "note",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A duration as people read it, the one format of everything tributary prints: `0.4 ms`, `12 ms`, `2300 ms`,
/// `12.3 s`, `4 min 45 s`, `2 h 5 min`. Milliseconds to ten seconds, so that a chart's and a table's figures of
/// one run compare at a glance; then seconds, then minutes.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    let seconds = duration.as_secs();
    if millis < 10.0 {
        format!("{millis:.1} ms")
    } else if millis < 10_000.0 {
        format!("{millis:.0} ms")
    } else if millis < 60_000.0 {
        format!("{:.1} s", millis / 1000.0)
    } else if seconds < 3600 {
        format!("{} min {} s", seconds / 60, seconds % 60)
    } else {
        format!("{} h {} min", seconds / 3600, seconds % 3600 / 60)
    }
}

/// A round step for axis ticks (1, 2 or 5 times a power of ten milliseconds) giving at most `max_ticks` ticks.
pub(crate) fn tick_step(total: Duration, max_ticks: u32) -> Duration {
    let total_nanos = total.as_nanos();
    let max_ticks = u128::from(max_ticks.max(1));
    // Integer nanoseconds keep the steps exact (no 0.30000000000000004 ms ticks).
    let mut magnitude: u128 = 1_000;
    loop {
        for factor in [1, 2, 5] {
            let step = magnitude * factor;
            if total_nanos <= step * max_ticks {
                return Duration::from_nanos(u64::try_from(step).unwrap_or(u64::MAX));
            }
        }
        magnitude *= 10;
    }
}

/// Total time covered by the union of spans (overlapping spans on one lane count once).
pub(crate) fn busy_time<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Duration {
    let mut intervals: Vec<(Duration, Duration)> = spans
        .into_iter()
        .map(|span| (span.start, span.end))
        .collect();
    intervals.sort();
    let mut busy = Duration::ZERO;
    let mut covered_until = Duration::ZERO;
    for (start, end) in intervals {
        let start = start.max(covered_until);
        if end > start {
            busy += end - start;
            covered_until = end;
        }
    }
    busy
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn lanes_appear_grouped_in_order_of_first_appearance() {
        let timeline = Timeline::new();
        timeline.record(Span::new(
            "source weather",
            "fetch",
            Activity::Fetch,
            ms(0),
            ms(10),
        ));
        timeline.record(Span::new(
            "worker 1",
            "infer",
            Activity::Infer,
            ms(10),
            ms(20),
        ));
        timeline.record(Span::new(
            "source news",
            "fetch",
            Activity::Fetch,
            ms(0),
            ms(15),
        ));
        let names: Vec<String> = timeline.lanes().into_iter().map(|lane| lane.name).collect();
        assert_eq!(names, ["source weather", "source news", "worker 1"]);
        assert_eq!(timeline.lanes()[2].group, "worker");
    }

    #[test]
    fn explicit_lane_order_comes_first_and_declares_lanes() {
        let timeline = Timeline::new();
        timeline.record(Span::new(
            "source weather",
            "fetch",
            Activity::Fetch,
            ms(0),
            ms(10),
        ));
        timeline.set_lane_order(&["source news", "source weather"]);
        let names: Vec<String> = timeline.lanes().into_iter().map(|lane| lane.name).collect();
        assert_eq!(names, ["source news", "source weather"]);
    }

    #[test]
    fn span_guard_records_outcome_and_cancellation() {
        let timeline = Timeline::new();
        let mut fetch = timeline.start_span("source weather", "GET", Activity::Fetch);
        fetch.set_arg("attempt", 2);
        fetch.finish(Outcome::Failed);
        drop(timeline.start_span("source news", "GET", Activity::Fetch));
        let spans = timeline.spans();
        assert_eq!(spans[0].outcome, Outcome::Failed);
        assert_eq!(spans[0].args["attempt"], 2);
        assert_eq!(spans[1].outcome, Outcome::Cancelled);
        assert!(spans.iter().all(|span| span.end >= span.start));
    }

    #[test]
    fn threads_record_concurrently_without_losing_records() {
        let timeline = Timeline::new();
        thread::scope(|scope| {
            for worker in 0..8 {
                let timeline = timeline.clone();
                scope.spawn(move || {
                    for index in 0..100 {
                        timeline
                            .start_span(
                                format!("worker {worker}"),
                                format!("job {index}"),
                                Activity::Infer,
                            )
                            .finish(Outcome::Ok);
                        timeline.event(format!("worker {worker}"), "tick", EventKind::Note);
                    }
                });
            }
        });
        assert_eq!(timeline.spans().len(), 800);
        assert_eq!(timeline.events().len(), 800);
        assert_eq!(timeline.lanes().len(), 8);
    }

    #[test]
    fn helpers_format_and_measure() {
        assert_eq!(format_duration(Duration::from_micros(2_460)), "2.5 ms");
        assert_eq!(format_duration(ms(412)), "412 ms");
        assert_eq!(format_duration(ms(12_345)), "12.3 s");
        assert_eq!(format_duration(ms(285_547)), "4 min 45 s");
        assert_eq!(format_duration(ms(7_530_000)), "2 h 5 min");
        assert_eq!(tick_step(ms(412), 5), ms(100));
        assert_eq!(tick_step(ms(40), 5), ms(10));
        let spans = [
            Span::new("a", "x", Activity::Fetch, ms(0), ms(10)),
            Span::new("a", "y", Activity::Fetch, ms(5), ms(20)),
            Span::new("a", "z", Activity::Fetch, ms(30), ms(40)),
        ];
        assert_eq!(busy_time(&spans), ms(30));
    }
}
