//! A Gantt chart for the terminal: one row per lane, bars scaled to the chart width, a time axis and a legend.
//!
//! It reads without colour: bars are drawn with different glyphs per activity (`█` fetch, `▒` inference,
//! `░` other), a failed or timed-out span ends in `×`, a cancelled one in `-`, and instant events are marked
//! on top (`·` retry, `×` timeout or failure, `!` other). Colour is opt-in with [`GanttStyle::Colour`]; the
//! caller decides (TTY, `NO_COLOR`). The figure after each row is the lane's busy time: the union of its spans,
//! so overlapping spans count once.
//!
//! ```text
//! source weather │████·█████                               │   130 ms
//! source news    │██████████████████████████×              │   245 ms
//! worker 1       │          ▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒│   300 ms
//!                └┬─────────┬─────────┬─────────┬─────────┬┘
//!                 0         100 ms    200 ms    300 ms    400 ms
//! █ fetch  ▒ infer  ░ other  × failed/timed out  - cancelled  · retry  ! event  total 420 ms
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use super::palette;
use super::record::{
    Activity, EventKind, Outcome, Snapshot, Timeline, busy_time, format_duration, tick_step,
};

/// Whether the chart uses ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GanttStyle {
    /// Glyphs only: for pipes, files, `NO_COLOR` and tests.
    #[default]
    Plain,
    /// Glyphs plus ANSI colours, for a terminal.
    Colour,
}

impl Timeline {
    /// Render the timeline as a Gantt chart about `width` characters wide (the bar area never gets narrower
    /// than ten cells, so very small widths overflow). Every line ends with a newline.
    pub fn render_gantt(&self, width: usize, style: GanttStyle) -> String {
        render(&self.snapshot(), width, style)
    }
}

const MIN_LABEL_WIDTH: usize = 4;
const MAX_LABEL_WIDTH: usize = 28;
const MIN_BAR_WIDTH: usize = 10;
/// Right-aligned busy time after each row, including a leading space.
const DURATION_WIDTH: usize = 9;
const MAX_TICKS: u32 = 6;

/// What a cell shows, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paint {
    Empty,
    Fetch,
    Infer,
    Other,
    Failed,
    Cancelled,
    Retry,
    Note,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    glyph: char,
    paint: Paint,
}

const EMPTY: Cell = Cell {
    glyph: ' ',
    paint: Paint::Empty,
};

fn render(snapshot: &Snapshot, width: usize, style: GanttStyle) -> String {
    if snapshot.lanes.is_empty() {
        return "(empty timeline)\n".to_owned();
    }
    let label_width = snapshot
        .lanes
        .iter()
        .map(|lane| lane.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(MIN_LABEL_WIDTH, MAX_LABEL_WIDTH);
    let bar_width = width
        .saturating_sub(label_width + 2 + 1 + DURATION_WIDTH)
        .max(MIN_BAR_WIDTH);
    // A zero-length timeline still needs a scale: pretend it lasted one millisecond.
    let end = snapshot.end.max(Duration::from_millis(1));
    let scale = Scale { bar_width, end };

    let mut chart = String::new();
    for lane in &snapshot.lanes {
        let mut cells = vec![EMPTY; bar_width];
        let mut lane_spans: Vec<_> = snapshot
            .spans
            .iter()
            .filter(|span| span.lane == lane.name)
            .collect();
        // Successful spans first, so failure markers drawn later stay visible where spans overlap.
        lane_spans.sort_by_key(|span| span.outcome != Outcome::Ok);
        for span in &lane_spans {
            let (first, last) = scale.cells(span.start, span.end);
            let body = match span.activity {
                Activity::Fetch => Cell {
                    glyph: '█',
                    paint: Paint::Fetch,
                },
                Activity::Infer => Cell {
                    glyph: '▒',
                    paint: Paint::Infer,
                },
                Activity::Other => Cell {
                    glyph: '░',
                    paint: Paint::Other,
                },
            };
            let (body, tail) = match span.outcome {
                Outcome::Ok => (body, body),
                Outcome::Failed | Outcome::TimedOut => {
                    let paint = Paint::Failed;
                    (Cell { paint, ..body }, Cell { glyph: '×', paint })
                }
                Outcome::Cancelled => {
                    let paint = Paint::Cancelled;
                    (Cell { paint, ..body }, Cell { glyph: '-', paint })
                }
            };
            cells[first..last].fill(body);
            cells[last - 1] = tail;
        }
        for event in snapshot
            .events
            .iter()
            .filter(|event| event.lane == lane.name)
        {
            let (cell, _) = scale.cells(event.at, event.at);
            cells[cell] = match event.kind {
                EventKind::Retry => Cell {
                    glyph: '·',
                    paint: Paint::Retry,
                },
                EventKind::Timeout | EventKind::Failure => Cell {
                    glyph: '×',
                    paint: Paint::Failed,
                },
                EventKind::Note => Cell {
                    glyph: '!',
                    paint: Paint::Note,
                },
            };
        }
        let busy = if lane_spans.is_empty() {
            "-".to_owned()
        } else {
            format_duration(busy_time(lane_spans.iter().copied()))
        };
        let label = truncate(&lane.name, label_width);
        let _ = writeln!(
            chart,
            "{label:<label_width$} │{}│{busy:>DURATION_WIDTH$}",
            paint_cells(&cells, style)
        );
    }
    render_axis(&mut chart, &scale, label_width);
    render_legend(&mut chart, snapshot.end, width, style);
    chart
}

/// Maps times to cells of the bar area.
#[derive(Debug, Clone, Copy)]
struct Scale {
    bar_width: usize,
    end: Duration,
}

impl Scale {
    /// The cell a time falls in, clamped to the bar area.
    fn cell(&self, at: Duration) -> usize {
        let cell = at.as_nanos() * self.bar_width as u128 / self.end.as_nanos();
        usize::try_from(cell)
            .unwrap_or(usize::MAX)
            .min(self.bar_width - 1)
    }

    /// Cells `first..last` covered by `start..end`: at least one cell, so short spans stay visible.
    fn cells(&self, start: Duration, end: Duration) -> (usize, usize) {
        let first = self.cell(start);
        let end_boundary = end.as_nanos() * self.bar_width as u128;
        // Round the end up to the next cell boundary.
        let last =
            usize::try_from(end_boundary.div_ceil(self.end.as_nanos())).unwrap_or(usize::MAX);
        (first, last.clamp(first + 1, self.bar_width))
    }
}

fn render_axis(chart: &mut String, scale: &Scale, label_width: usize) {
    let step = tick_step(scale.end, MAX_TICKS);
    let ticks: Vec<Duration> = (0u32..)
        .map(|index| step * index)
        .take_while(|tick| *tick <= scale.end)
        .collect();
    let mut axis: Vec<char> = vec!['─'; scale.bar_width];
    let mut labels: Vec<char> = vec![' '; scale.bar_width + 1 + DURATION_WIDTH];
    let mut free_from = 0;
    for tick in ticks {
        let cell = scale.cell(tick);
        axis[cell] = '┬';
        let text = if tick.is_zero() {
            "0".to_owned()
        } else {
            format_duration(tick)
        };
        let length = text.chars().count();
        let start = cell.min(labels.len().saturating_sub(length));
        if start >= free_from {
            labels.splice(start..start + length, text.chars());
            free_from = start + length + 1;
        }
    }
    let padding = " ".repeat(label_width + 1);
    let axis: String = axis.into_iter().collect();
    let labels: String = labels.into_iter().collect();
    let _ = writeln!(chart, "{padding}└{axis}┘");
    let _ = writeln!(chart, "{padding} {}", labels.trim_end());
}

fn render_legend(chart: &mut String, total: Duration, width: usize, style: GanttStyle) {
    let items = [
        (
            Cell {
                glyph: '█',
                paint: Paint::Fetch,
            },
            "fetch",
        ),
        (
            Cell {
                glyph: '▒',
                paint: Paint::Infer,
            },
            "infer",
        ),
        (
            Cell {
                glyph: '░',
                paint: Paint::Other,
            },
            "other",
        ),
        (
            Cell {
                glyph: '×',
                paint: Paint::Failed,
            },
            "failed/timed out",
        ),
        (
            Cell {
                glyph: '-',
                paint: Paint::Cancelled,
            },
            "cancelled",
        ),
        (
            Cell {
                glyph: '·',
                paint: Paint::Retry,
            },
            "retry",
        ),
        (
            Cell {
                glyph: '!',
                paint: Paint::Note,
            },
            "event",
        ),
    ];
    let mut texts: Vec<(usize, String)> = items
        .iter()
        .map(|(cell, text)| {
            (
                text.chars().count() + 2,
                format!("{} {text}", paint_cells(&[*cell], style)),
            )
        })
        .collect();
    let total = format!("total {}", format_duration(total));
    texts.push((total.chars().count(), total));
    // Wrap the legend at the chart width, measuring visible characters only (colour codes take no space).
    let mut line_length = 0;
    for (visible_length, text) in texts {
        if line_length > 0 && line_length + 2 + visible_length > width {
            chart.push('\n');
            line_length = 0;
        }
        if line_length > 0 {
            chart.push_str("  ");
            line_length += 2;
        }
        chart.push_str(&text);
        line_length += visible_length;
    }
    chart.push('\n');
}

fn paint_cells(cells: &[Cell], style: GanttStyle) -> String {
    let mut painted = String::new();
    let mut current = Paint::Empty;
    for cell in cells {
        if style == GanttStyle::Colour && cell.paint != current && cell.glyph != ' ' {
            painted.push_str(ansi(cell.paint));
            current = cell.paint;
        }
        painted.push(cell.glyph);
    }
    if current != Paint::Empty {
        painted.push_str(RESET);
    }
    painted
}

const RESET: &str = "\x1b[0m";

fn ansi(paint: Paint) -> &'static str {
    match paint {
        Paint::Empty => RESET,
        Paint::Fetch => palette::FETCH.ansi,
        Paint::Infer => palette::INFER.ansi,
        Paint::Other => "\x1b[37m",
        Paint::Failed => palette::FAILED.ansi,
        Paint::Cancelled | Paint::Retry => palette::CANCELLED.ansi,
        Paint::Note => "\x1b[35m",
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        text.chars()
            .take(width.saturating_sub(1))
            .chain(['…'])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{InstantEvent, Span};

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Two sources fetched in parallel, one retried, one timed out, and one inference on a worker.
    fn sample() -> Timeline {
        let timeline = Timeline::new();
        timeline.record(Span::new(
            "source weather",
            "GET",
            Activity::Fetch,
            ms(0),
            ms(100),
        ));
        timeline.record(
            Span::new("source news", "GET", Activity::Fetch, ms(0), ms(200))
                .with_outcome(Outcome::TimedOut),
        );
        timeline.record(Span::new(
            "worker 1",
            "infer weather",
            Activity::Infer,
            ms(100),
            ms(400),
        ));
        timeline.record_event(InstantEvent::new(
            "source weather",
            "retry",
            EventKind::Retry,
            ms(50),
        ));
        timeline
    }

    /// The bar area of the row for `lane`.
    fn bar<'a>(chart: &'a str, lane: &str) -> &'a str {
        let row = chart
            .lines()
            .find(|line| line.starts_with(lane))
            .expect("row for lane");
        let start = row.find('│').expect("left border") + '│'.len_utf8();
        let end = row.rfind('│').expect("right border");
        &row[start..end]
    }

    #[test]
    fn bars_are_proportional_to_time() {
        // Label column 14 + " │" + 40 cells + "│" + 9 = 66.
        let chart = sample().render_gantt(66, GanttStyle::Plain);
        let weather: Vec<char> = bar(&chart, "source weather").chars().collect();
        let worker: Vec<char> = bar(&chart, "worker 1").chars().collect();
        assert_eq!(weather.len(), 40);
        // 0..100 ms of 400 ms is the first quarter: cells 0..10, with the retry at 50 ms in cell 5.
        assert_eq!(weather[..10].iter().collect::<String>(), "█████·████");
        assert!(weather[10..].iter().all(|cell| *cell == ' '));
        // 100..400 ms is the last three quarters.
        assert!(worker[..10].iter().all(|cell| *cell == ' '));
        assert!(worker[10..].iter().all(|cell| *cell == '▒'));
        // The timed-out fetch covers the first half and ends with a failure marker.
        let news: Vec<char> = bar(&chart, "source news").chars().collect();
        assert_eq!(news[19], '×');
        assert!(news[..19].iter().all(|cell| *cell == '█'));
    }

    #[test]
    fn chart_has_labels_durations_axis_and_legend_within_width() {
        let chart = sample().render_gantt(80, GanttStyle::Plain);
        for lane in ["source weather", "source news", "worker 1"] {
            assert!(
                chart.lines().any(|line| line.starts_with(lane)),
                "missing {lane}:\n{chart}"
            );
        }
        assert!(
            chart
                .lines()
                .any(|line| line.starts_with("source weather") && line.ends_with("100 ms"))
        );
        assert!(
            chart
                .lines()
                .any(|line| line.starts_with("worker 1") && line.ends_with("300 ms"))
        );
        assert!(chart.contains('└') && chart.contains("100 ms") && chart.contains("400 ms"));
        assert!(chart.contains("▒ infer") && chart.contains("total 400 ms"));
        for line in chart.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line}");
        }
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(
            !sample()
                .render_gantt(80, GanttStyle::Plain)
                .contains('\x1b')
        );
        let coloured = sample().render_gantt(80, GanttStyle::Colour);
        assert!(coloured.contains("\x1b[32m▒"));
        assert!(coloured.contains(RESET));
    }

    #[test]
    fn empty_timeline_renders_a_placeholder() {
        assert_eq!(
            Timeline::new().render_gantt(80, GanttStyle::Plain),
            "(empty timeline)\n"
        );
    }
}
