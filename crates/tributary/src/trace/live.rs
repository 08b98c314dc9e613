//! Watching a timeline while it is recorded: [`Timeline::live`], [`Update`], [`OpenSpan`].
//!
//! A live timeline keeps, beside its spans and events, the ordered list of what happened to it: work that
//! began ([`Update::Began`]), what that work reported while it ran ([`Update::Progress`]), finished spans and
//! instant events as they are recorded, and the end of the work that began ([`Update::Closed`]). A watcher reads the list from any position ([`Timeline::updates_since`]),
//! so one that reconnects resumes where it left off, and waits for more with [`Timeline::wait_for_update`].
//! A timeline made with [`Timeline::new`] keeps no such list and pays nothing for it.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::record::{Activity, InstantEvent, Outcome, Span, Timeline};

/// One thing that happened to a live timeline, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Work began on `lane`; an [`Update::Closed`] with the same `id` follows when it ends, whatever ends it.
    Began {
        /// Names the work in the [`Update::Closed`] that ends it.
        id: u64,
        /// The row it runs on.
        lane: String,
        /// What it is, e.g. `GET /news`.
        name: String,
        /// What kind of work it is.
        activity: Activity,
        /// What the work is for, when its lane does not say: a source's inference runs on a worker's lane, and
        /// names its source here ([`Timeline::begin_for`]).
        subject: Option<String>,
        /// When it began, relative to the origin.
        at: Duration,
    },
    /// The work begun as `id` reported a piece of text while it ran (the next words of a generation, say):
    /// watchers show it as it comes; it is not kept in the recording's spans.
    Progress {
        /// The [`Update::Began`] it belongs to.
        id: u64,
        /// The piece of text, to be appended to what came before.
        text: String,
        /// When it was reported, relative to the origin.
        at: Duration,
    },
    /// The work begun as `id` ended. The spans that show what it did are recorded before this.
    Closed {
        /// The [`Update::Began`] this ends.
        id: u64,
        /// How it ended ([`Outcome::Cancelled`] when its [`OpenSpan`] was dropped).
        outcome: Outcome,
        /// When it ended, relative to the origin.
        at: Duration,
    },
    /// A finished span was recorded.
    Span(Span),
    /// An instant event was recorded.
    Event(InstantEvent),
}

/// Work in progress on a live timeline: [`Update::Began`] when made, [`Update::Closed`] when
/// [`close`](Self::close)d or dropped (as cancelled, so a future cut short still ends what it began). It
/// records no span itself: the code that did the work records the spans that show it (one per attempt, say).
#[derive(Debug)]
#[must_use = "dropping an open span at once closes it as cancelled"]
pub struct OpenSpan {
    timeline: Timeline,
    id: u64,
    closed: bool,
}

/// Reports the progress of an [`OpenSpan`] from anywhere (a CPU worker, say): cheap to clone, `Send` and `Sync`,
/// and a no-op on a timeline that is not live.
#[derive(Debug, Clone)]
pub struct SpanProgress {
    timeline: Timeline,
    id: u64,
}

/// The update list of a live timeline and the count its watchers wait on.
#[derive(Debug)]
pub(super) struct Live {
    updates: Vec<Update>,
    count: watch::Sender<usize>,
}

impl Timeline {
    /// A new, empty timeline with the given origin that keeps its [`Update`]s for watchers.
    pub fn live(origin: Instant) -> Self {
        let timeline = Self::starting_at(origin);
        timeline.lock().live = Some(Live {
            updates: Vec::new(),
            count: watch::Sender::new(0),
        });
        timeline
    }

    /// Whether this timeline keeps its updates ([`Timeline::live`]).
    pub fn is_live(&self) -> bool {
        self.lock().live.is_some()
    }

    /// Work begins now on `lane`; see [`OpenSpan`].
    pub fn begin(
        &self,
        lane: impl Into<String>,
        name: impl Into<String>,
        activity: Activity,
    ) -> OpenSpan {
        self.begin_with(lane.into(), name.into(), activity, None)
    }

    /// Work for `subject` begins now on `lane`: a watcher that follows a subject (a source) finds its work on
    /// another lane (a worker's) by it.
    pub fn begin_for(
        &self,
        lane: impl Into<String>,
        name: impl Into<String>,
        activity: Activity,
        subject: impl Into<String>,
    ) -> OpenSpan {
        self.begin_with(lane.into(), name.into(), activity, Some(subject.into()))
    }

    fn begin_with(
        &self,
        lane: String,
        name: String,
        activity: Activity,
        subject: Option<String>,
    ) -> OpenSpan {
        let id = self.began(&lane, &name, activity, subject, self.elapsed());
        OpenSpan {
            timeline: self.clone(),
            id,
            closed: false,
        }
    }

    /// The updates from position `cursor` on (all of them from 0); empty when the timeline is not live or has
    /// nothing new. The next cursor is `cursor` plus the length of what came back.
    pub fn updates_since(&self, cursor: usize) -> Vec<Update> {
        self.lock()
            .live
            .as_ref()
            .and_then(|live| live.updates.get(cursor..))
            .map(<[Update]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits until there are more than `cursor` updates. Returns at once when there are already, and never
    /// when the timeline is not live (a watcher selects it against the end of the run it watches).
    pub async fn wait_for_update(&self, cursor: usize) {
        let receiver = self.lock().live.as_ref().map(|live| live.count.subscribe());
        match receiver {
            // The sender lives as long as the timeline, which `self` keeps alive: `wait_for` cannot fail.
            Some(mut receiver) => {
                let _ = receiver.wait_for(|count| *count > cursor).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Records the start of `name` on `lane` for watchers; returns its id.
    pub(super) fn began(
        &self,
        lane: &str,
        name: &str,
        activity: Activity,
        subject: Option<String>,
        at: Duration,
    ) -> u64 {
        let mut recording = self.lock();
        recording.touch_lane(lane);
        let Some(live) = &mut recording.live else {
            return 0;
        };
        let id = live.updates.len() as u64;
        live.push(Update::Began {
            id,
            lane: lane.to_owned(),
            name: name.to_owned(),
            activity,
            subject,
            at,
        });
        id
    }

    /// Records the end of the work begun as `id`, for watchers.
    pub(super) fn closed(&self, id: u64, outcome: Outcome, at: Duration) {
        if let Some(live) = &mut self.lock().live {
            live.push(Update::Closed { id, outcome, at });
        }
    }
}

impl Live {
    pub(super) fn push(&mut self, update: Update) {
        self.updates.push(update);
        self.count.send_replace(self.updates.len());
    }
}

impl SpanProgress {
    /// The work reported `text` now ([`Update::Progress`]).
    pub fn report(&self, text: &str) {
        let at = self.timeline.elapsed();
        if let Some(live) = &mut self.timeline.lock().live {
            live.push(Update::Progress {
                id: self.id,
                text: text.to_owned(),
                at,
            });
        }
    }
}

impl OpenSpan {
    /// What reports this work's progress while it runs.
    pub fn progress(&self) -> SpanProgress {
        SpanProgress {
            timeline: self.timeline.clone(),
            id: self.id,
        }
    }

    /// The work ended now with `outcome`.
    pub fn close(mut self, outcome: Outcome) {
        self.close_now(outcome);
    }

    fn close_now(&mut self, outcome: Outcome) {
        if !self.closed {
            self.closed = true;
            self.timeline
                .closed(self.id, outcome, self.timeline.elapsed());
        }
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        self.close_now(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_timeline_lists_what_happened_in_order() {
        let timeline = Timeline::live(Instant::now());
        let fetch = timeline.begin("source news", "GET /news", Activity::Fetch);
        timeline.record(Span::new(
            "source news",
            "GET /news",
            Activity::Fetch,
            Duration::ZERO,
            Duration::from_millis(5),
        ));
        fetch.close(Outcome::Ok);
        let guard = timeline.start_span("worker 1", "infer news", Activity::Infer);
        drop(guard);

        let updates = timeline.updates_since(0);
        assert_eq!(updates.len(), 6, "{updates:#?}");
        assert!(matches!(&updates[0], Update::Began { id: 0, lane, .. } if lane == "source news"));
        assert!(matches!(&updates[1], Update::Span(span) if span.name == "GET /news"));
        assert!(matches!(
            &updates[2],
            Update::Closed {
                id: 0,
                outcome: Outcome::Ok,
                ..
            }
        ));
        let Update::Began { id: infer, .. } = &updates[3] else {
            panic!("expected the inference to begin: {updates:#?}");
        };
        assert!(matches!(&updates[4], Update::Span(span) if span.outcome == Outcome::Cancelled));
        assert!(matches!(
            &updates[5],
            Update::Closed { id, outcome: Outcome::Cancelled, .. } if id == infer
        ));
        assert_eq!(timeline.updates_since(4).len(), 2);
        assert!(timeline.updates_since(6).is_empty());
        assert!(timeline.updates_since(60).is_empty());
    }

    #[test]
    fn progress_is_listed_under_its_work_and_only_on_a_live_timeline() {
        let timeline = Timeline::live(Instant::now());
        let infer = timeline.begin("source kb", "infer kb", Activity::Infer);
        let progress = infer.progress();
        std::thread::spawn(move || progress.report("Take"))
            .join()
            .expect("the reporter does not panic");
        infer.progress().report(" an umbrella");
        infer.close(Outcome::Ok);
        let texts: Vec<(u64, String)> = timeline
            .updates_since(1)
            .into_iter()
            .filter_map(|update| match update {
                Update::Progress { id, text, .. } => Some((id, text)),
                _ => None,
            })
            .collect();
        assert_eq!(
            texts,
            [(0, "Take".to_owned()), (0, " an umbrella".to_owned())]
        );
        assert!(timeline.spans().is_empty(), "progress is not a span");

        let quiet = Timeline::new();
        let infer = quiet.begin("source kb", "infer kb", Activity::Infer);
        infer.progress().report("nobody listens");
        infer.close(Outcome::Ok);
        assert!(quiet.updates_since(0).is_empty());
    }

    #[test]
    fn a_dropped_open_span_closes_as_cancelled() {
        let timeline = Timeline::live(Instant::now());
        drop(timeline.begin("source kb", "GET /kb/search", Activity::Fetch));
        assert!(matches!(
            timeline.updates_since(1).as_slice(),
            [Update::Closed {
                id: 0,
                outcome: Outcome::Cancelled,
                ..
            }]
        ));
    }

    #[test]
    fn a_timeline_that_is_not_live_keeps_no_updates() {
        let timeline = Timeline::new();
        timeline
            .begin("source kb", "GET /kb/search", Activity::Fetch)
            .close(Outcome::Ok);
        timeline.event("source kb", "retry", super::super::EventKind::Retry);
        assert!(!timeline.is_live());
        assert!(timeline.updates_since(0).is_empty());
        assert_eq!(timeline.events().len(), 1);
    }

    #[tokio::test]
    async fn a_watcher_wakes_when_an_update_comes() {
        let timeline = Timeline::live(Instant::now());
        let watcher = tokio::spawn({
            let timeline = timeline.clone();
            async move {
                timeline.wait_for_update(0).await;
                timeline.updates_since(0)
            }
        });
        tokio::task::yield_now().await;
        timeline.event("source kb", "hello", super::super::EventKind::Note);
        let seen = watcher.await.expect("the watcher does not panic");
        assert!(matches!(seen.as_slice(), [Update::Event(event)] if event.name == "hello"));
        // Already more than the cursor: no wait.
        timeline.wait_for_update(0).await;
    }
}
