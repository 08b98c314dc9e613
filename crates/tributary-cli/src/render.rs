//! Human-readable output: the answer, the per-source table, the totals. Plain text, readable without colour;
//! with colour (the printer's decision for the stream), statuses and outcomes in the terminal's own colours:
//! green for what worked, red for what failed, yellow for what did only in part.

use std::fmt::Write as _;

use std::time::Duration;

use anstyle::{AnsiColor, Style};
use tributary::trace::format_duration;
use unicode_width::UnicodeWidthStr;

use tributary_agent::{AgentReport, AnswerFailure, Comparison, SourceReport, SourceStatus};

/// The width of charts and wrapped prose when neither `COLUMNS` nor a terminal says (a pipe, a file).
pub const DEFAULT_WIDTH: usize = 100;

/// The narrowest width drawn at: a narrower terminal (or `COLUMNS`) gets this, and wraps.
pub const MIN_WIDTH: usize = 40;

/// The width to draw at: `COLUMNS` when it holds a number (the user's override, as in `COLUMNS=80 tributary
/// ask ...`), else the width of the terminal the text goes to, else [`DEFAULT_WIDTH`]; never under
/// [`MIN_WIDTH`]. A pure function of what [`crate::printer::Printer::new`] reads once.
pub fn width(columns: Option<&str>, terminal_columns: Option<u16>) -> usize {
    columns
        .and_then(|columns| columns.trim().parse::<usize>().ok())
        .filter(|&columns| columns > 0)
        .or_else(|| {
            terminal_columns
                .map(usize::from)
                .filter(|&columns| columns > 0)
        })
        .unwrap_or(DEFAULT_WIDTH)
        .max(MIN_WIDTH)
}

/// The answer, the source table and the totals line; `colour` paints statuses and the outcome.
pub fn report(report: &AgentReport, colour: bool) -> String {
    let mut out = String::new();
    match &report.answer {
        Some(answer) => {
            let _ = writeln!(out, "{answer}");
        }
        None => {
            let _ = writeln!(out, "No answer: {}.", no_answer_headline(report));
        }
    }
    out.push('\n');
    out.push_str(&source_table(&report.sources, colour));
    out.push('\n');
    let _ = writeln!(out, "{}", totals(report, colour));
    out
}

/// Why there is no answer, in a few words: the kind of failure, without the per-source reasons the table gives
/// (the report's `error` holds both, for the JSON and the batch database).
pub fn no_answer_headline(report: &AgentReport) -> String {
    let required = || {
        report
            .sources
            .iter()
            .find(|source| source.required && source.status != SourceStatus::Ok)
            .map_or_else(String::new, |source| format!(" `{}`", source.name))
    };
    match report.failure {
        Some(AnswerFailure::RequiredSourceFailed) => {
            format!("the required source{} did not answer", required())
        }
        Some(AnswerFailure::RequiredSourceNoResult) => {
            format!(
                "the required source{} had nothing for the question",
                required()
            )
        }
        // An unknown kind (a newer version's) says no more than its message.
        None | Some(AnswerFailure::Other) => report
            .error
            .clone()
            .unwrap_or_else(|| AnswerFailure::NoSourceAnswered.describe().to_owned()),
        Some(failure) => failure.describe().to_owned(),
    }
}

/// Both runs of `--compare`, and the speed-up.
pub fn comparison(comparison: &Comparison, colour: bool) -> String {
    let mut out = report(&comparison.concurrent, colour);
    let _ = writeln!(
        out,
        "sequential baseline: {} (ideal {})",
        millis(comparison.sequential.elapsed_ms),
        millis(comparison.sequential.ideal_ms)
    );
    let _ = writeln!(
        out,
        "concurrent agent:    {} (ideal {}, efficiency {:.2})",
        millis(comparison.concurrent.elapsed_ms),
        millis(comparison.concurrent.ideal_ms),
        comparison.concurrent.efficiency
    );
    let _ = writeln!(
        out,
        "speed-up:            {:.2}x (ideal {:.2}x)",
        comparison.speedup, comparison.ideal_speedup
    );
    out
}

fn totals(report: &AgentReport, colour: bool) -> String {
    let (state, style) = match (&report.answer, report.degraded) {
        (None, _) => ("no answer", BAD),
        (Some(_), true) => ("degraded", PARTIAL),
        (Some(_), false) => ("complete", GOOD),
    };
    format!(
        "{} · {} run in {} (deadline {}) · {} {} · efficiency {:.2} (ideal {})",
        paint(state, style.bold(), colour),
        report.mode.as_str(),
        millis(report.elapsed_ms),
        millis(report.deadline_ms),
        report.workers,
        if report.workers == 1 {
            "worker"
        } else {
            "workers"
        },
        report.efficiency,
        millis(report.ideal_ms)
    )
}

fn source_table(sources: &[SourceReport], colour: bool) -> String {
    let header = [
        "source", "status", "attempts", "cached", "fetch", "infer", "worker", "note",
    ];
    let rows: Vec<[String; 8]> = sources
        .iter()
        .map(|source| {
            [
                source.name.clone(),
                source.status.as_str().to_owned(),
                match source.hedges {
                    0 => source.attempts.to_string(),
                    hedges => format!("{} ({hedges} hedge)", source.attempts),
                },
                if source.cached { "yes" } else { "no" }.to_owned(),
                source
                    .fetch_ms
                    .map(millis)
                    .unwrap_or_else(|| "-".to_owned()),
                source
                    .infer_ms
                    .map(millis)
                    .unwrap_or_else(|| "-".to_owned()),
                source
                    .worker
                    .map(|worker| (worker + 1).to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                source.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut table = vec![header.map(str::to_owned).to_vec()];
    table.extend(rows.into_iter().map(Vec::from));
    if !colour {
        return self::table(&table);
    }
    // The header bold; each source's status in its colour.
    table_with(&table, |row, column| match (row, column) {
        (0, _) => Style::new().bold(),
        (row, 1) => status_style(sources[row - 1].status),
        _ => Style::new(),
    })
}

/// What worked.
pub const GOOD: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
/// What failed.
pub const BAD: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
/// What worked in part, or found nothing.
pub const PARTIAL: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
/// What did not take part.
const QUIET: Style = Style::new().dimmed();

/// A source's status colour.
fn status_style(status: SourceStatus) -> Style {
    match status {
        SourceStatus::Ok => GOOD,
        SourceStatus::TimedOut | SourceStatus::Failed | SourceStatus::CircuitOpen => BAD,
        SourceStatus::NoResult => PARTIAL,
        SourceStatus::Skipped => QUIET,
    }
}

/// `text` in `style` when `colour`, else as it is.
pub fn paint(text: &str, style: Style, colour: bool) -> String {
    if colour && style != Style::new() {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

/// `error:`, `warning:` and `hint:` at the start of a line of `text` in their styles (bold red, bold yellow,
/// bold cyan, as clap's own errors), when `colour`.
pub fn paint_labels(text: &str, colour: bool) -> String {
    if !colour {
        return text.to_owned();
    }
    let labels = [
        ("error:", BAD.bold()),
        ("warning:", PARTIAL.bold()),
        (
            "hint:",
            Style::new()
                .bold()
                .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan))),
        ),
    ];
    text.split_inclusive('\n')
        .map(|line| {
            labels
                .iter()
                .find_map(|(label, style)| {
                    line.strip_prefix(label)
                        .map(|rest| format!("{}{rest}", paint(label, *style, true)))
                })
                .unwrap_or_else(|| line.to_owned())
        })
        .collect()
}

/// Rows of cells (the first the header) as lines of columns, two spaces apart. Columns line up by display
/// width, not bytes or chars: a source named in CJK, or a note with an emoji, takes two terminal columns per
/// such character.
pub fn table(rows: &[Vec<String>]) -> String {
    table_with(rows, |_, _| Style::new())
}

/// [`table`], each cell in the style `style(row, column)` gives it (the header is row 0); the padding stays
/// outside the escape sequences, so columns line up as without colour.
pub fn table_with(rows: &[Vec<String>], style: impl Fn(usize, usize) -> Style) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    let mut out = String::new();
    for (row, cells) in rows.iter().enumerate() {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            text.push_str(&paint(cell, style(row, index), true));
            if index + 1 < cells.len() {
                let padding = widths[index].saturating_sub(cell.width()) + 2;
                text.extend(std::iter::repeat_n(' ', padding));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
    out
}

/// Milliseconds as the one duration format ([`format_duration`]).
pub fn millis(value_ms: f64) -> String {
    format_duration(Duration::from_secs_f64(value_ms.max(0.0) / 1000.0))
}

#[cfg(test)]
mod tests {
    use tributary_agent::{AnswerStatus, RunMode, SourceFailure, SourceKind, SourceStatus, Topic};
    use unicode_width::UnicodeWidthChar as _;

    use super::*;

    fn source(
        name: &str,
        status: SourceStatus,
        error: Option<&str>,
        times: Option<(f64, f64, usize)>,
    ) -> SourceReport {
        SourceReport {
            name: name.to_owned(),
            kind: SourceKind::News,
            topic: Topic::News,
            status,
            error: error.map(str::to_owned),
            failure: match status {
                SourceStatus::Ok => None,
                SourceStatus::Skipped => Some(SourceFailure::Skipped),
                SourceStatus::NoResult => Some(SourceFailure::NoResult),
                SourceStatus::CircuitOpen => Some(SourceFailure::CircuitOpen),
                SourceStatus::TimedOut => Some(SourceFailure::TimedOut),
                SourceStatus::Failed => Some(SourceFailure::Transport),
            },
            http_status: None,
            attempts: if status == SourceStatus::Skipped {
                0
            } else {
                1
            },
            hedges: 0,
            cached: false,
            fetch_ms: times.map(|(fetch, _, _)| fetch),
            infer_ms: times.map(|(_, infer, _)| infer),
            arrived_at_ms: times.map(|(fetch, _, _)| fetch),
            worker: times.map(|(_, _, worker)| worker),
            required: false,
            summary: None,
            generated_by: None,
        }
    }

    #[test]
    fn a_degraded_report_reads_well_without_colour() {
        let report = AgentReport {
            question: Some("Is it raining in Lima?".to_owned()),
            status: AnswerStatus::Degraded,
            answer: Some(
                "Weather: Light rain in Lima, Peru, at 18.0°C.\nSources: weather.".to_owned(),
            ),
            error: None,
            failure: None,
            degraded: true,
            mode: RunMode::Concurrent,
            elapsed_ms: 2003.4,
            ideal_ms: 2001.9,
            efficiency: 0.999,
            workers: 2,
            deadline_ms: 15000.0,
            per_source_timeout_ms: 2000.0,
            sources: vec![
                source("weather", SourceStatus::Ok, None, Some((1201.2, 298.7, 0))),
                source(
                    "news",
                    SourceStatus::TimedOut,
                    Some("per-source timeout of 2s exceeded"),
                    None,
                ),
                source(
                    "kb",
                    SourceStatus::Skipped,
                    Some("nothing to look up"),
                    None,
                ),
            ],
            synthesis: None,
        };
        insta::assert_snapshot!(self::report(&report, false));
    }

    #[test]
    fn the_width_is_columns_then_the_terminal_then_the_default() {
        assert_eq!(width(None, None), DEFAULT_WIDTH, "a pipe");
        assert_eq!(width(None, Some(132)), 132, "a terminal");
        assert_eq!(width(Some("80"), Some(132)), 80, "COLUMNS overrides");
        assert_eq!(width(Some("80"), None), 80, "COLUMNS into a pipe");
        for unusable in ["", "wide", "-3", "0"] {
            assert_eq!(width(Some(unusable), Some(132)), 132, "{unusable:?}");
            assert_eq!(width(Some(unusable), None), DEFAULT_WIDTH, "{unusable:?}");
        }
        assert_eq!(width(Some("20"), None), MIN_WIDTH);
        assert_eq!(width(None, Some(30)), MIN_WIDTH);
    }

    #[test]
    fn the_table_lines_up_by_display_width() {
        let sources = [
            source("weather", SourceStatus::Ok, None, Some((1201.2, 298.7, 0))),
            // Two columns per CJK character and per emoji: padding by chars would be short by one per character.
            source("天気予報", SourceStatus::Ok, None, Some((980.0, 301.0, 1))),
            source(
                "news 📰",
                SourceStatus::TimedOut,
                Some("タイムアウト ⏱ per-source timeout"),
                None,
            ),
            source("kb", SourceStatus::Failed, Some("HTTP 500 💥"), None),
        ];
        let table = source_table(&sources, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + sources.len(), "{table}");
        // Where each cell starts, in terminal columns: after two spaces or more (no cell holds two in a row).
        let starts = |line: &str| -> Vec<usize> {
            let mut starts = vec![0];
            let (mut column, mut spaces) = (0, 0);
            for character in line.chars() {
                if character == ' ' {
                    spaces += 1;
                } else {
                    if spaces >= 2 {
                        starts.push(column);
                    }
                    spaces = 0;
                }
                column += character.width().unwrap_or(0);
            }
            starts
        };
        let header = starts(lines[0]);
        assert_eq!(header.len(), 8, "{table}");
        for line in &lines[1..] {
            let cells = starts(line);
            assert_eq!(
                cells[..],
                header[..cells.len()],
                "{line:?} does not line up with the header:\n{table}"
            );
        }
        assert!(table.contains("天気予報  ok"), "{table}");
    }
}
