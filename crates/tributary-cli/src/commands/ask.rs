//! `tributary ask`: the agent, on the embedded simulated services unless `--config` names other sources.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tributary::agent::{AgentReport, Comparison, Question, Run};
use tributary::trace::{GanttStyle, Timeline};

use crate::cli::AskArgs;
use crate::engine::Engine;
use crate::error::{CliError, ExitCode};
use crate::render;
use crate::stdout;

pub async fn run(args: AskArgs) -> Result<ExitCode, CliError> {
    let questions = validate_questions(&args.questions)?;
    let engine = Engine::start(&args.engine).await?;
    let agent = engine.agent.clone();

    let mut exit_code = ExitCode::Success;
    for (index, question) in questions.iter().enumerate() {
        let trace_path = args
            .trace
            .as_deref()
            .map(|path| numbered_path(path, index, questions.len()));
        let answered = if args.compare {
            let (comparison, timeline) = agent.compare(question).await.map_err(|error| {
                CliError::internal(CliError::chain("failed to build the HTTP client", &error))
            })?;
            print_comparison(&args, &comparison, &timeline, index)?;
            write_trace(trace_path.as_deref(), &timeline).await?;
            comparison.concurrent.answered()
        } else {
            let run = if args.sequential {
                agent.ask_sequential(question).await
            } else {
                agent.ask(question).await
            };
            print_run(&args, &run, index)?;
            write_trace(trace_path.as_deref(), &run.timeline).await?;
            run.report.answered()
        };
        if !answered {
            exit_code = ExitCode::NoAnswer;
        }
    }
    engine.shutdown().await;
    Ok(exit_code)
}

fn validate_questions(texts: &[String]) -> Result<Vec<Question>, CliError> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Question::new(text).map_err(|error| {
                CliError::usage(format!("question {}: {error}", index + 1))
                    .with_hint("ask a question in words, e.g. tributary ask \"What is the GIL?\"")
            })
        })
        .collect()
}

fn print_run(args: &AskArgs, run: &Run, index: usize) -> Result<(), CliError> {
    if args.json {
        print_json(&run.report)?;
        if args.timeline {
            eprint!("{}", gantt(&run.timeline, false));
        }
        return Ok(());
    }
    if index > 0 {
        stdout::println("")?;
    }
    stdout::print(&render::report(&run.report))?;
    if args.timeline {
        stdout::println("")?;
        stdout::print(&gantt(&run.timeline, true))?;
    }
    print_no_answer(&run.report);
    Ok(())
}

fn print_comparison(
    args: &AskArgs,
    comparison: &Comparison,
    timeline: &Timeline,
    index: usize,
) -> Result<(), CliError> {
    if args.json {
        print_json(comparison)?;
        if args.timeline {
            eprint!("{}", gantt(timeline, false));
        }
        return Ok(());
    }
    if index > 0 {
        stdout::println("")?;
    }
    stdout::print(&render::comparison(comparison))?;
    if args.timeline {
        stdout::println("")?;
        stdout::print(&gantt(timeline, true))?;
    }
    print_no_answer(&comparison.concurrent);
    Ok(())
}

fn print_no_answer(report: &AgentReport) {
    if let Some(error) = &report.error {
        eprintln!("error: no answer: {error}");
        eprintln!(
            "hint: see the per-source errors above; --per-source-timeout and --deadline give sources more time"
        );
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let line = serde_json::to_string(value).map_err(|error| {
        CliError::internal(CliError::chain(
            "failed to encode the report as JSON",
            &error,
        ))
    })?;
    stdout::println(&line)
}

/// The chart for stdout (or stderr with `--json`), coloured only on a terminal and without `NO_COLOR`.
fn gantt(timeline: &Timeline, to_stdout: bool) -> String {
    let is_terminal = if to_stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let style = if is_terminal && std::env::var_os("NO_COLOR").is_none() {
        GanttStyle::Colour
    } else {
        GanttStyle::Plain
    };
    timeline.render_gantt(render::terminal_width(), style)
}

/// `trace.json` for a single question; `trace-1.json`, `trace-2.json`, ... for several.
fn numbered_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count <= 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(extension) => format!("{stem}-{}.{}", index + 1, extension.to_string_lossy()),
        None => format!("{stem}-{}", index + 1),
    };
    path.with_file_name(name)
}

/// Writes the Chrome trace next to its destination, then renames it into place: never a half-written file.
async fn write_trace(path: Option<&Path>, timeline: &Timeline) -> Result<(), CliError> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = serde_json::to_vec_pretty(&timeline.chrome_trace()).map_err(|error| {
        CliError::internal(CliError::chain("failed to encode the trace", &error))
    })?;
    let partial = path.with_extension("partial");
    let fail = |error: std::io::Error| {
        CliError::usage(CliError::chain(
            &format!("failed to write the trace to {}", path.display()),
            &error,
        ))
        .with_hint("check that the directory exists and is writable")
    };
    tokio::fs::write(&partial, json).await.map_err(fail)?;
    tokio::fs::rename(&partial, path).await.map_err(fail)?;
    eprintln!(
        "trace written to {} (open it in https://ui.perfetto.dev)",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_paths_are_numbered_only_for_several_questions() {
        assert_eq!(
            numbered_path(Path::new("out/t.json"), 0, 1),
            PathBuf::from("out/t.json")
        );
        assert_eq!(
            numbered_path(Path::new("out/t.json"), 1, 3),
            PathBuf::from("out/t-2.json")
        );
        assert_eq!(
            numbered_path(Path::new("trace"), 0, 2),
            PathBuf::from("trace-1")
        );
    }
}
