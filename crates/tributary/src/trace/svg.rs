//! A self-contained SVG Gantt chart (no scripts, no external styles), for reports and the lab's charts.
//!
//! Each span is one `<rect class="span ...">` with a `<title>` tooltip; instant events are small diamonds.

use std::fmt::Write as _;
use std::time::Duration;

use super::palette;
use super::record::{Activity, EventKind, Outcome, Snapshot, Timeline, format_duration, tick_step};

impl Timeline {
    /// Render the timeline as an SVG document titled `title`.
    pub fn render_svg(&self, title: &str) -> String {
        render(&self.snapshot(), title)
    }
}

const WIDTH: f64 = 960.0;
const LABEL_WIDTH: f64 = 170.0;
const RIGHT_MARGIN: f64 = 30.0;
const TITLE_HEIGHT: f64 = 40.0;
const ROW_HEIGHT: f64 = 26.0;
const BAR_HEIGHT: f64 = 16.0;
const AXIS_HEIGHT: f64 = 30.0;
const LEGEND_HEIGHT: f64 = 30.0;
const MAX_TICKS: u32 = 10;

fn render(snapshot: &Snapshot, title: &str) -> String {
    let end = snapshot.end.max(Duration::from_millis(1));
    let plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    let x_of = |at: Duration| LABEL_WIDTH + at.as_secs_f64() / end.as_secs_f64() * plot_width;
    let rows_height = ROW_HEIGHT * snapshot.lanes.len() as f64;
    let height = TITLE_HEIGHT + rows_height + AXIS_HEIGHT + LEGEND_HEIGHT;
    let row_top = |lane_name: &str| {
        let index = snapshot
            .lanes
            .iter()
            .position(|lane| lane.name == lane_name)
            .unwrap_or(0);
        TITLE_HEIGHT + ROW_HEIGHT * index as f64
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        "<style>.fetch{{fill:{}}}.infer{{fill:{}}}.other{{fill:#9e9e9e}}\
         .failed,.timed_out{{fill:{}}}.cancelled{{fill:{}}}.grid{{stroke:#e0e0e0}}\
         .group{{stroke:#757575;stroke-dasharray:4 3}}\
         .event{{stroke:#212121;stroke-width:1}}</style>",
        palette::FETCH.hex,
        palette::INFER.hex,
        palette::FAILED.hex,
        palette::CANCELLED.hex,
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        LABEL_WIDTH,
        escape(title)
    );

    // Axis: grid lines and tick labels.
    let step = tick_step(end, MAX_TICKS);
    let axis_y = TITLE_HEIGHT + rows_height;
    for tick in (0u32..)
        .map(|index| step * index)
        .take_while(|tick| *tick <= end)
    {
        let x = x_of(tick);
        let label = if tick.is_zero() {
            "0".to_owned()
        } else {
            format_duration(tick)
        };
        let _ = writeln!(
            svg,
            r#"<line class="grid" x1="{x:.1}" y1="{TITLE_HEIGHT}" x2="{x:.1}" y2="{axis_y}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            axis_y + 16.0
        );
    }

    // Lane labels, with a divider where one group of lanes (sources) gives way to the next (workers).
    for (index, lane) in snapshot.lanes.iter().enumerate() {
        let top = TITLE_HEIGHT + ROW_HEIGHT * index as f64;
        if index > 0 && snapshot.lanes[index - 1].group != lane.group {
            let _ = writeln!(
                svg,
                r#"<line class="group" x1="0" y1="{top:.1}" x2="{WIDTH}" y2="{top:.1}"/>"#
            );
        }
        let y = top + ROW_HEIGHT / 2.0 + 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="8" y="{y:.1}">{}</text>"#,
            escape(&lane.name)
        );
    }

    // Spans.
    for span in &snapshot.spans {
        let x = x_of(span.start);
        let width = (x_of(span.end) - x).max(1.0);
        let y = row_top(&span.lane) + (ROW_HEIGHT - BAR_HEIGHT) / 2.0;
        let class = match span.outcome {
            Outcome::Ok => span.activity.as_str(),
            other => other.as_str(),
        };
        let mut tooltip = format!("{} · {}", span.name, format_duration(span.duration()));
        if span.outcome != Outcome::Ok {
            let _ = write!(tooltip, " · {}", span.outcome);
        }
        for (key, value) in &span.args {
            let _ = write!(tooltip, " · {key}={value}");
        }
        let _ = writeln!(
            svg,
            r#"<rect class="span {class}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{BAR_HEIGHT}" rx="2"><title>{}</title></rect>"#,
            escape(&tooltip)
        );
    }

    // Instant events: a small diamond on the lane.
    for event in &snapshot.events {
        let x = x_of(event.at);
        let y = row_top(&event.lane) + ROW_HEIGHT / 2.0;
        let fill = match event.kind {
            EventKind::Retry => palette::CANCELLED.hex,
            EventKind::Timeout | EventKind::Failure => palette::FAILED.hex,
            EventKind::Note => "#8e24aa",
        };
        let _ = writeln!(
            svg,
            r#"<path class="event {}" d="M{x:.1} {:.1} l5 5 l-5 5 l-5 -5 z" fill="{fill}"><title>{}</title></path>"#,
            event.kind.as_str(),
            y - 5.0,
            escape(&format!("{} at {}", event.name, format_duration(event.at)))
        );
    }

    // Legend.
    let legend_y = axis_y + AXIS_HEIGHT + 12.0;
    let legend = [
        (Activity::Fetch.as_str(), "fetch"),
        (Activity::Infer.as_str(), "inference"),
        (Activity::Other.as_str(), "other"),
        (Outcome::Failed.as_str(), "failed / timed out"),
        (Outcome::Cancelled.as_str(), "cancelled"),
    ];
    let mut x = LABEL_WIDTH;
    for (class, text) in legend {
        let _ = writeln!(
            svg,
            r#"<rect class="{class}" x="{x:.1}" y="{:.1}" width="12" height="12"/><text x="{:.1}" y="{legend_y:.1}">{text}</text>"#,
            legend_y - 10.0,
            x + 16.0
        );
        x += 16.0 + 7.0 * text.len() as f64 + 18.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Escape text for XML content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{InstantEvent, Span};

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn svg_has_a_rect_per_span_labels_ticks_and_an_escaped_title() {
        let timeline = Timeline::new();
        timeline.record(Span::new(
            "source weather",
            "GET",
            Activity::Fetch,
            ms(0),
            ms(100),
        ));
        timeline.record(
            Span::new("source news", "GET <news>", Activity::Fetch, ms(0), ms(200))
                .with_outcome(Outcome::Failed),
        );
        timeline.record(Span::new(
            "worker 1",
            "infer",
            Activity::Infer,
            ms(100),
            ms(400),
        ));
        timeline.record_event(InstantEvent::new(
            "source news",
            "retry",
            EventKind::Retry,
            ms(80),
        ));
        let svg = timeline.render_svg("Ask <weather> & news");

        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect class=\"span ").count(), 3);
        assert_well_formed(&svg);
        assert!(svg.contains("class=\"span failed\""));
        assert!(svg.contains("class=\"span infer\""));
        assert!(svg.contains("Ask &lt;weather&gt; &amp; news"));
        assert!(svg.contains("GET &lt;news&gt;"));
        assert!(svg.contains(">source weather</text>") && svg.contains(">worker 1</text>"));
        assert!(svg.contains(">400 ms</text>"));
        assert_eq!(svg.matches("class=\"event retry\"").count(), 1);
        assert_eq!(
            svg.matches("<line class=\"group\"").count(),
            1,
            "one divider between sources and workers"
        );
        // Bars are placed proportionally: the worker's span starts a quarter of the way along the plot.
        let plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
        assert!(svg.contains(&format!("x=\"{:.1}\"", LABEL_WIDTH + plot_width / 4.0)));
    }

    /// Every element is closed, in order (a small stand-in for an XML parser; enough for generated markup).
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<&str> = Vec::new();
        for tag in svg
            .split('<')
            .skip(1)
            .map(|rest| rest.split('>').next().expect("tag closes"))
        {
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("tag name"));
            }
        }
        assert!(open.is_empty(), "unclosed elements: {open:?}");
    }
}
