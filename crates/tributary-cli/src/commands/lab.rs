//! `tributary lab`: the chapter's claims as experiments on this machine, each with its figures, the claim, a
//! verdict, and (with `--out`) an SVG chart and a Chrome trace.
//!
//! Exit code 0 when every experiment passed, 4 when one ran and failed its claim; an unknown experiment is
//! refused by the arguments (exit 2).

use std::path::Path;

use tributary_lab::machine::{BUSY_CORES, LoadMeter};
use tributary_lab::{ExperimentReport, LabConfig};
use unicode_width::UnicodeWidthStr as _;

use crate::error::{CliError, ErrorKind, Outcome};
use crate::printer::Printer;
use crate::ready_agent::{load_models, worker_command};
use crate::render;
use crate::settings::LabSettings;

/// The logs' targets whose warnings the lab causes on purpose: `parallelism` crashes a worker process to show
/// that it fails its job alone (`worker process crashed`), and `blocking` blocks an event loop to show the stall
/// (`async runtime was blocked`). Their figures are in the reports; without `-v` the warnings would read as
/// something gone wrong.
pub const EXPECTED_WARNINGS: &[&str] = &["tributary::pool::process", "tributary::lag"];

pub async fn run(settings: LabSettings, printer: Printer) -> Result<Outcome, CliError> {
    if let Some(out) = &settings.out {
        tokio::fs::create_dir_all(out).await.map_err(|error| {
            CliError::caused(
                ErrorKind::Output,
                format_args!("failed to create the output directory {}", out.display()),
                &error,
            )
            .with_hint("--out takes a directory that tributary can create or write to")
        })?;
    }
    load_models(&settings.models).await?;
    let mut config = LabConfig::new()
        .with_quick(settings.quick)
        .with_models(settings.models.clone());
    match worker_command() {
        Ok(command) => config = config.with_worker_command(command),
        Err(error) => printer.note(&format!(
            "warning: the processes executor is unavailable: {}",
            error.message
        )),
    }
    let count = settings.experiments.len();
    let mut failed: Vec<String> = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (index, experiment) in settings.experiments.iter().enumerate() {
        printer.note(&format!(
            "running {} ({}/{count}){}...",
            experiment.name,
            index + 1,
            if settings.quick { ", quick" } else { "" }
        ));
        let meter = LoadMeter::start();
        let report = experiment.run(&config).await.map_err(|error| {
            CliError::caused(
                ErrorKind::Environment,
                format_args!("failed to run experiment {}", experiment.name),
                &error,
            )
        })?;
        let load = meter
            .and_then(|meter| meter.others())
            .map(|others| Load { others, cores });
        if !report.verdict.pass {
            let busy = load
                .filter(Load::is_busy)
                .map_or("", |_| " (the machine was busy)");
            failed.push(format!("{}{busy}", experiment.name));
        }
        if settings.json {
            let mut json = report.to_json();
            if let (Some(load), Some(object)) = (load, json.as_object_mut()) {
                object.insert("machine".to_owned(), load.to_json());
            }
            printer.data_line(&json.to_string())?;
        } else {
            if index > 0 {
                printer.data_line("")?;
            }
            printer.data(&human(&report, load, printer))?;
        }
        if let Some(out) = &settings.out {
            write_outputs(printer, out, &report).await?;
        }
    }
    let held = count - failed.len();
    let summary = match failed.is_empty() {
        true => format!("claims: {held} of {count} held"),
        false => format!(
            "claims: {held} of {count} held, {} failed: {}",
            failed.len(),
            failed.join(", ")
        ),
    };
    if settings.json {
        printer.note(&summary);
    } else {
        printer.data(&format!(
            "\n{}\n",
            render::paint(
                &summary,
                verdict_style(failed.is_empty()),
                printer.stdout_colour()
            )
        ))?;
    }
    Ok(if failed.is_empty() {
        Outcome::Done
    } else {
        Outcome::ClaimFailed
    })
}

/// How a verdict (an experiment's, or the lab's last line) is painted: bold green when the claims held, bold red
/// when not.
fn verdict_style(held: bool) -> anstyle::Style {
    if held { render::GOOD } else { render::BAD }.bold()
}

/// What other programs did with the machine while an experiment ran.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// The cores they kept busy on average.
    others: f64,
    /// The machine's.
    cores: usize,
}

impl Load {
    fn is_busy(&self) -> bool {
        self.others >= BUSY_CORES
    }

    /// The sentence under a failed verdict: the figure, and whether it may explain the failure.
    fn sentence(&self) -> String {
        let figure = format!(
            "other programs kept {:.2} of the {} cores busy while it ran",
            self.others, self.cores
        );
        if self.is_busy() {
            format!(
                "the machine was busy: {figure}, which slows a timing claim down; rerun on a quieter machine"
            )
        } else {
            format!("the machine was quiet: {figure}")
        }
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "other_programs_cores": (self.others * 100.0).round() / 100.0,
            "cores": self.cores,
            "busy": self.is_busy(),
        })
    }
}

/// Title, what it does, the figures, the claim, the verdict, and the Gantt chart.
fn human(report: &ExperimentReport, load: Option<Load>, printer: Printer) -> String {
    let mut out = String::new();
    let heading = format!("{} — {}", report.experiment.name, report.experiment.title);
    out.push_str(&heading);
    out.push('\n');
    out.push_str(&"=".repeat(heading.width()));
    out.push('\n');
    out.push_str(&wrap(&report.description, printer.width(true)));
    out.push_str("\n\nmeasured:\n");
    out.push_str(&figures(&report.measured, 1));
    out.push_str("\nclaim:   ");
    out.push_str(&report.claim);
    out.push('\n');
    out.push_str(&format!(
        "verdict: {} — {}\n",
        render::paint(
            report.verdict.label(),
            verdict_style(report.verdict.pass),
            printer.stdout_colour()
        ),
        report.verdict.reason
    ));
    if let Some(load) = load.filter(|_| !report.verdict.pass) {
        out.push_str(&format!("machine: {}\n", load.sentence()));
    }
    if !report.timeline.spans().is_empty() {
        out.push('\n');
        out.push_str(
            &report
                .timeline
                .render_gantt(printer.width(true), printer.gantt_style(true)),
        );
    }
    out
}

/// The measured JSON as indented `key: value` lines, like YAML: flat objects in a list on one line each,
/// nested ones as blocks.
fn figures(value: &serde_json::Value, depth: usize) -> String {
    use serde_json::Value;
    let indent = "  ".repeat(depth);
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item {
                    Value::Object(_) => {
                        out.push_str(&format!("{indent}{key}:\n{}", figures(item, depth + 1)));
                    }
                    Value::Array(items) if items.iter().any(Value::is_object) => {
                        out.push_str(&format!("{indent}{key}:\n"));
                        for item in items {
                            if is_flat(item) {
                                out.push_str(&format!("{indent}  - {}\n", inline(item)));
                            } else {
                                let block = figures(item, depth + 2);
                                out.push_str(&format!("{indent}  -\n{block}"));
                            }
                        }
                    }
                    _ => out.push_str(&format!("{indent}{key}: {}\n", inline(item))),
                }
            }
        }
        other => out.push_str(&format!("{indent}{}\n", inline(other))),
    }
    out
}

/// An object whose values are all scalars (or it is not an object at all).
fn is_flat(value: &serde_json::Value) -> bool {
    value.as_object().is_none_or(|map| {
        map.values()
            .all(|item| !item.is_object() && !item.is_array())
    })
}

/// One value on one line: numbers rounded, objects as `key=value` pairs.
fn inline(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => format!("{float:.2}"),
            _ => number.to_string(),
        },
        Value::String(text) => text.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| format!("{key}={}", inline(item)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Wraps prose at `width` terminal columns.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.width() + 1 + word.width() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// `DIR/EXPERIMENT.svg` and `DIR/EXPERIMENT.trace.json`, each written to a temporary name, then renamed.
async fn write_outputs(
    printer: Printer,
    out: &Path,
    report: &ExperimentReport,
) -> Result<(), CliError> {
    let name = report.experiment.name;
    let svg = report
        .timeline
        .render_svg(&format!("{name}: {}", report.experiment.title));
    let trace = serde_json::to_vec_pretty(&report.timeline.chrome_trace())
        .map_err(|error| CliError::internal("failed to encode the trace", &error))?;
    write_atomically(printer, &out.join(format!("{name}.svg")), svg.as_bytes()).await?;
    write_atomically(printer, &out.join(format!("{name}.trace.json")), &trace).await?;
    Ok(())
}

async fn write_atomically(printer: Printer, path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let partial = path.with_extension("partial");
    let fail = |error: std::io::Error| {
        CliError::output(path, &error, "check that the --out directory is writable")
    };
    tokio::fs::write(&partial, bytes).await.map_err(fail)?;
    tokio::fs::rename(&partial, path).await.map_err(fail)?;
    printer.note(&format!("wrote {}", path.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_nested_objects_and_rows() {
        let value = serde_json::json!({"total_ms": 1.5, "calls": [{"service": "news", "ms": 2}]});
        assert_eq!(
            figures(&value, 1),
            "  calls:\n    - ms=2 service=news\n  total_ms: 1.50\n"
        );
    }
}
