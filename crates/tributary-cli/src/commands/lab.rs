//! `tributary lab`: the chapter's claims as experiments on this machine, each with its figures, the claim, a
//! verdict, and (with `--out`) an SVG chart and a Chrome trace.
//!
//! Exit code 0 when every experiment passed, 4 when one ran and failed its claim, 2 for an unknown experiment.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use tributary::lab::{Experiment, ExperimentReport, LabConfig};
use tributary::pool::WorkerCommand;
use tributary::trace::GanttStyle;

use crate::error::{CliError, ExitCode};
use crate::render;

/// The hidden command a worker process of the `processes` executor runs (see `main.rs`).
const WORKER_COMMAND: &str = "__worker";

/// Arguments of `tributary lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Experiments to run, in the order given (default: all): sync-vs-async, blocking, fail-fast-vs-settle,
    /// timeouts, parallelism, hybrid, capstone.
    #[arg(value_name = "EXPERIMENT")]
    pub experiments: Vec<String>,

    /// Shorter durations and smaller jobs, the same claims: the whole lab in seconds.
    #[arg(long)]
    pub quick: bool,

    /// Print one JSON object per experiment on stdout, one per line: experiment, title, description, claim,
    /// measured, verdict {pass, reason}.
    #[arg(long)]
    pub json: bool,

    /// Write EXPERIMENT.svg (a chart of the run) and EXPERIMENT.trace.json (a Chrome trace) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub async fn run(args: LabArgs) -> Result<ExitCode, CliError> {
    let experiments = select(&args.experiments)?;
    if let Some(out) = &args.out {
        tokio::fs::create_dir_all(out).await.map_err(|error| {
            CliError::usage(CliError::chain(
                &format!("failed to create the output directory {}", out.display()),
                &error,
            ))
            .with_hint("--out takes a directory that tributary can create or write to")
        })?;
    }
    let mut config = LabConfig::new().with_quick(args.quick);
    match WorkerCommand::current_exe([WORKER_COMMAND]) {
        Ok(command) => config = config.with_worker_command(command),
        Err(error) => eprintln!(
            "warning: the processes executor is unavailable, the path of this executable is unknown: {error}"
        ),
    }
    let mut all_passed = true;
    for (index, experiment) in experiments.iter().enumerate() {
        eprintln!(
            "running {} ({}/{}){}...",
            experiment,
            index + 1,
            experiments.len(),
            if args.quick { ", quick" } else { "" }
        );
        let report = experiment.run(&config).await.map_err(|error| {
            CliError::internal(CliError::chain(
                &format!("failed to run experiment {experiment}"),
                &error,
            ))
        })?;
        all_passed &= report.verdict.pass;
        if args.json {
            println!("{}", report.to_json());
        } else {
            if index > 0 {
                println!();
            }
            print!("{}", human(&report));
        }
        if let Some(out) = &args.out {
            write_outputs(out, &report).await?;
        }
    }
    Ok(if all_passed {
        ExitCode::Success
    } else {
        ExitCode::ClaimFailed
    })
}

/// The experiments named, or all of them; an unknown name is a usage error listing the valid ones.
fn select(names: &[String]) -> Result<Vec<Experiment>, CliError> {
    if names.is_empty() {
        return Ok(Experiment::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            name.parse::<Experiment>().map_err(|error| {
                CliError::usage(format!("unknown experiment `{}`", error.given)).with_hint(format!(
                    "the experiments are {} (none runs them all)",
                    Experiment::names().join(", ")
                ))
            })
        })
        .collect()
}

/// Title, what it does, the figures, the claim, the verdict, and the Gantt chart.
fn human(report: &ExperimentReport) -> String {
    let mut out = String::new();
    let heading = format!("{} — {}", report.experiment, report.experiment.title());
    out.push_str(&heading);
    out.push('\n');
    out.push_str(&"=".repeat(heading.chars().count()));
    out.push('\n');
    out.push_str(&wrap(&report.description, render::terminal_width()));
    out.push_str("\n\nmeasured:\n");
    out.push_str(&figures(&report.measured, 1));
    out.push_str("\nclaim:   ");
    out.push_str(&report.claim);
    out.push('\n');
    out.push_str(&format!(
        "verdict: {} — {}\n",
        report.verdict.label(),
        report.verdict.reason
    ));
    if !report.timeline.spans().is_empty() {
        out.push('\n');
        out.push_str(
            &report
                .timeline
                .render_gantt(render::terminal_width(), gantt_style()),
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

/// Wraps prose at `width` columns.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
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

fn gantt_style() -> GanttStyle {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        GanttStyle::Colour
    } else {
        GanttStyle::Plain
    }
}

/// `DIR/EXPERIMENT.svg` and `DIR/EXPERIMENT.trace.json`, each written to a temporary name, then renamed.
async fn write_outputs(out: &Path, report: &ExperimentReport) -> Result<(), CliError> {
    let name = report.experiment.name();
    let svg = report
        .timeline
        .render_svg(&format!("{name}: {}", report.experiment.title()));
    let trace = serde_json::to_vec_pretty(&report.timeline.chrome_trace()).map_err(|error| {
        CliError::internal(CliError::chain("failed to encode the trace", &error))
    })?;
    write_atomically(&out.join(format!("{name}.svg")), svg.as_bytes()).await?;
    write_atomically(&out.join(format!("{name}.trace.json")), &trace).await?;
    Ok(())
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let partial = path.with_extension("partial");
    let fail = |error: std::io::Error| {
        CliError::usage(CliError::chain(
            &format!("failed to write {}", path.display()),
            &error,
        ))
        .with_hint("check that the --out directory is writable")
    };
    tokio::fs::write(&partial, bytes).await.map_err(fail)?;
    tokio::fs::rename(&partial, path).await.map_err(fail)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_names_selects_every_experiment_in_order() {
        assert_eq!(select(&[]).unwrap(), Experiment::ALL.to_vec());
        assert_eq!(
            select(&["timeouts".to_owned(), "blocking".to_owned()]).unwrap(),
            [Experiment::Timeouts, Experiment::Blocking]
        );
    }

    #[test]
    fn an_unknown_name_is_a_usage_error_that_lists_the_valid_ones() {
        let error = select(&["gil".to_owned()]).unwrap_err();
        assert_eq!(error.exit_code, ExitCode::Usage);
        assert_eq!(error.message, "unknown experiment `gil`");
        let hint = error.hint.expect("a hint");
        assert!(hint.contains("sync-vs-async, blocking"), "{hint}");
    }

    #[test]
    fn figures_print_nested_objects_and_rows() {
        let value = serde_json::json!({"total_ms": 1.5, "calls": [{"service": "news", "ms": 2}]});
        assert_eq!(
            figures(&value, 1),
            "  calls:\n    - ms=2 service=news\n  total_ms: 1.50\n"
        );
    }
}
