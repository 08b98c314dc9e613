//! Human-readable output: the answer, the per-source table, the totals. Plain text, readable without colour.

use std::fmt::Write as _;

use tributary_agent::{AgentReport, Comparison, SourceReport};

/// Width for charts: `COLUMNS` when set, else 100.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.parse::<usize>().ok())
        .filter(|&columns| columns >= 40)
        .unwrap_or(100)
}

/// The answer, the source table and the totals line.
pub fn report(report: &AgentReport) -> String {
    let mut out = String::new();
    match &report.answer {
        Some(answer) => {
            let _ = writeln!(out, "{answer}");
        }
        None => {
            let _ = writeln!(
                out,
                "No answer: {}",
                report.error.as_deref().unwrap_or("no source answered")
            );
        }
    }
    out.push('\n');
    out.push_str(&source_table(&report.sources));
    out.push('\n');
    let _ = writeln!(out, "{}", totals(report));
    out
}

/// Both runs of `--compare`, and the speed-up.
pub fn comparison(comparison: &Comparison) -> String {
    let mut out = report(&comparison.concurrent);
    let _ = writeln!(
        out,
        "sequential baseline: {} (ideal {})",
        seconds(comparison.sequential.elapsed_ms),
        seconds(comparison.sequential.ideal_ms)
    );
    let _ = writeln!(
        out,
        "concurrent agent:    {} (ideal {}, efficiency {:.2})",
        seconds(comparison.concurrent.elapsed_ms),
        seconds(comparison.concurrent.ideal_ms),
        comparison.concurrent.efficiency
    );
    let _ = writeln!(
        out,
        "speed-up:            {:.2}x (ideal {:.2}x)",
        comparison.speedup, comparison.ideal_speedup
    );
    out
}

fn totals(report: &AgentReport) -> String {
    let state = match (&report.answer, report.degraded) {
        (None, _) => "no answer",
        (Some(_), true) => "degraded",
        (Some(_), false) => "complete",
    };
    format!(
        "{state} · {} {} in {} (deadline {}) · {} workers · efficiency {:.2} (ideal {})",
        report.mode.as_str(),
        "run",
        seconds(report.elapsed_ms),
        seconds(report.deadline_ms),
        report.workers,
        report.efficiency,
        seconds(report.ideal_ms)
    )
}

fn source_table(sources: &[SourceReport]) -> String {
    let header = [
        "source", "status", "attempts", "cached", "fetch", "infer", "worker", "note",
    ];
    let rows: Vec<[String; 8]> = sources
        .iter()
        .map(|source| {
            [
                source.name.clone(),
                source.status.as_str().to_owned(),
                source.attempts.to_string(),
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
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[index]);
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&header.map(str::to_owned));
    for row in &rows {
        line(row);
    }
    out
}

fn millis(value: f64) -> String {
    format!("{value:.0} ms")
}

fn seconds(value_ms: f64) -> String {
    format!("{:.2} s", value_ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use tributary_agent::{AnswerStatus, RunMode, SourceStatus};

    use super::*;

    fn source(
        name: &str,
        status: SourceStatus,
        error: Option<&str>,
        times: Option<(f64, f64, usize)>,
    ) -> SourceReport {
        SourceReport {
            name: name.to_owned(),
            kind: name.to_owned(),
            status,
            error: error.map(str::to_owned),
            attempts: if status == SourceStatus::Skipped {
                0
            } else {
                1
            },
            cached: false,
            fetch_ms: times.map(|(fetch, _, _)| fetch),
            infer_ms: times.map(|(_, infer, _)| infer),
            arrived_at_ms: times.map(|(fetch, _, _)| fetch),
            worker: times.map(|(_, _, worker)| worker),
            required: false,
            summary: None,
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
        };
        insta::assert_snapshot!(self::report(&report));
    }
}
