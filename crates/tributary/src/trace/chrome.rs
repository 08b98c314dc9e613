//! Chrome Trace Event JSON: open the file in <https://ui.perfetto.dev> or `chrome://tracing`.
//!
//! Each lane group becomes a process (`pid`) and each lane a thread (`tid`), named by metadata (`ph: "M"`)
//! events and sorted in display order. Spans are complete events (`ph: "X"`), instant events are thread-scoped
//! instants (`ph: "i"`, `s: "t"`). Times are microseconds since the timeline's origin.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::record::{Snapshot, Timeline};

impl Timeline {
    /// The timeline as a Chrome Trace Event JSON object: `{"traceEvents": [...], "displayTimeUnit": "ms"}`.
    pub fn chrome_trace(&self) -> Value {
        chrome_trace(&self.snapshot())
    }
}

fn chrome_trace(snapshot: &Snapshot) -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for lane in &snapshot.lanes {
        if !groups.contains(&lane.group.as_str()) {
            groups.push(&lane.group);
        }
    }
    // Ids start at 1: some viewers treat pid/tid 0 specially.
    let pid_of_group = |group: &str| {
        groups
            .iter()
            .position(|known| *known == group)
            .map_or(0, |index| index + 1)
    };
    let ids_of_lane = |lane_name: &str| {
        snapshot
            .lanes
            .iter()
            .position(|lane| lane.name == lane_name)
            .map_or((0, 0), |index| {
                (pid_of_group(&snapshot.lanes[index].group), index + 1)
            })
    };

    let mut events = Vec::new();
    for (sort_index, group) in groups.iter().enumerate() {
        let pid = sort_index + 1;
        events.push(metadata(
            "process_name",
            pid,
            None,
            json!({ "name": group }),
        ));
        events.push(metadata(
            "process_sort_index",
            pid,
            None,
            json!({ "sort_index": sort_index }),
        ));
    }
    for (sort_index, lane) in snapshot.lanes.iter().enumerate() {
        let (pid, tid) = (pid_of_group(&lane.group), sort_index + 1);
        events.push(metadata(
            "thread_name",
            pid,
            Some(tid),
            json!({ "name": lane.name }),
        ));
        events.push(metadata(
            "thread_sort_index",
            pid,
            Some(tid),
            json!({ "sort_index": sort_index }),
        ));
    }
    for span in &snapshot.spans {
        let (pid, tid) = ids_of_lane(&span.lane);
        let mut args = span.args.clone();
        args.insert("outcome".to_owned(), json!(span.outcome.as_str()));
        events.push(json!({
            "name": span.name,
            "cat": span.activity.as_str(),
            "ph": "X",
            "ts": micros(span.start),
            "dur": micros(span.duration()),
            "pid": pid,
            "tid": tid,
            "args": args,
        }));
    }
    for event in &snapshot.events {
        let (pid, tid) = ids_of_lane(&event.lane);
        events.push(json!({
            "name": event.name,
            "cat": event.kind.as_str(),
            "ph": "i",
            "s": "t",
            "ts": micros(event.at),
            "pid": pid,
            "tid": tid,
            "args": event.args,
        }));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

fn metadata(name: &str, pid: usize, tid: Option<usize>, args: Value) -> Value {
    let mut event = Map::new();
    event.insert("name".to_owned(), json!(name));
    event.insert("ph".to_owned(), json!("M"));
    event.insert("pid".to_owned(), json!(pid));
    if let Some(tid) = tid {
        event.insert("tid".to_owned(), json!(tid));
    }
    event.insert("args".to_owned(), args);
    Value::Object(event)
}

/// Microseconds, keeping sub-microsecond precision as a fraction.
fn micros(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Activity, EventKind, InstantEvent, Outcome, Span};

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn sample() -> Timeline {
        let timeline = Timeline::new();
        timeline.record(
            Span::new(
                "source weather",
                "GET /weather",
                Activity::Fetch,
                ms(0),
                ms(120),
            )
            .with_arg("attempt", 2),
        );
        timeline.record(
            Span::new("source news", "GET /news", Activity::Fetch, ms(5), ms(250))
                .with_outcome(Outcome::TimedOut),
        );
        timeline.record(Span::new(
            "worker 1",
            "infer weather",
            Activity::Infer,
            ms(120),
            ms(420),
        ));
        timeline.record_event(
            InstantEvent::new("source weather", "retry", EventKind::Retry, ms(60))
                .with_arg("attempt", 2),
        );
        timeline
    }

    fn events_with_phase<'a>(trace: &'a Value, phase: &str) -> Vec<&'a Value> {
        trace["traceEvents"]
            .as_array()
            .expect("traceEvents is an array")
            .iter()
            .filter(|event| event["ph"] == phase)
            .collect()
    }

    #[test]
    fn every_span_is_a_complete_event_on_its_lane_in_microseconds() {
        let trace = sample().chrome_trace();
        let text = trace.to_string();
        let reparsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(reparsed["displayTimeUnit"], "ms");

        let thread_names: Vec<(u64, String)> = events_with_phase(&reparsed, "M")
            .into_iter()
            .filter(|event| event["name"] == "thread_name")
            .map(|event| {
                let tid = event["tid"].as_u64().expect("tid");
                (
                    tid,
                    event["args"]["name"].as_str().expect("name").to_owned(),
                )
            })
            .collect();
        let lane_of_tid = |tid: u64| {
            thread_names
                .iter()
                .find(|(known, _)| *known == tid)
                .map(|(_, name)| name.clone())
                .expect("every tid is named")
        };
        assert_eq!(thread_names.len(), 3);

        let complete = events_with_phase(&reparsed, "X");
        assert_eq!(complete.len(), 3);
        let news = complete
            .iter()
            .find(|event| event["name"] == "GET /news")
            .expect("news span");
        assert_eq!(
            lane_of_tid(news["tid"].as_u64().expect("tid")),
            "source news"
        );
        assert_eq!(news["ts"], 5_000.0);
        assert_eq!(news["dur"], 245_000.0);
        assert_eq!(news["cat"], "fetch");
        assert_eq!(news["args"]["outcome"], "timed_out");
        let weather = complete
            .iter()
            .find(|event| event["name"] == "GET /weather")
            .expect("weather span");
        assert_eq!(weather["args"]["attempt"], 2);
        let infer = complete
            .iter()
            .find(|event| event["cat"] == "infer")
            .expect("infer span");
        assert_eq!(lane_of_tid(infer["tid"].as_u64().expect("tid")), "worker 1");
        assert_ne!(
            infer["pid"], weather["pid"],
            "sources and workers are separate processes"
        );
    }

    #[test]
    fn instant_events_are_thread_scoped_with_args() {
        let trace = sample().chrome_trace();
        let instants = events_with_phase(&trace, "i");
        assert_eq!(instants.len(), 1);
        assert_eq!(instants[0]["s"], "t");
        assert_eq!(instants[0]["ts"], 60_000.0);
        assert_eq!(instants[0]["args"]["attempt"], 2);
        assert_eq!(instants[0]["cat"], "retry");
    }

    #[test]
    fn metadata_names_every_process_and_lane() {
        let trace = sample().chrome_trace();
        let metadata = events_with_phase(&trace, "M");
        let named = |kind: &str| {
            metadata
                .iter()
                .filter(|event| event["name"] == kind)
                .map(|event| event["args"]["name"].as_str().expect("name").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(named("process_name"), ["source", "worker"]);
        assert_eq!(
            named("thread_name"),
            ["source weather", "source news", "worker 1"]
        );
        assert_eq!(
            metadata
                .iter()
                .filter(|event| event["name"] == "thread_sort_index")
                .count(),
            3
        );
    }
}
