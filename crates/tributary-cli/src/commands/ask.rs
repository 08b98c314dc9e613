//! `tributary ask`: the agent, on the embedded simulated services unless `--config` names other sources.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tributary::source::ClientOptions;
use tributary::trace::Timeline;
use tributary_agent::{
    Agent, AgentReport, AnswerFailure, Comparison, Question, Run, RunMode, SourceFailure,
    SourceReport,
};

use crate::error::{CliError, Outcome};
use crate::printer::Printer;
use crate::ready_agent::{self, ReadyAgent};
use crate::render;
use crate::settings::{AskMode, AskSettings};
use crate::signals::Signals;
use crate::writing;

/// Runs `ask`; `process_started` is when the process started: the first question's deadline counts from
/// there, so starting the runtime, the services and the pool is inside it.
pub async fn run(
    settings: AskSettings,
    printer: Printer,
    process_started: std::time::Instant,
) -> Result<Outcome, CliError> {
    // With `mcp` sources started as commands, Ctrl-C and SIGTERM stop the questions and then the servers, rather
    // than the process at once: a server that ignores its closed stdin is not left running.
    let signals = if ready_agent::starts_processes(&settings.engine) {
        Some(Signals::install()?)
    } else {
        None
    };
    let ready = ReadyAgent::start(&settings.engine, ClientOptions::default()).await?;
    let result = match signals {
        None => ask_all(&settings, &ready, printer, process_started).await,
        Some(mut signals) => tokio::select! {
            result = ask_all(&settings, &ready, printer, process_started) => result,
            signal = signals.recv() => {
                printer.note(&format!("{signal}: stopping the MCP servers"));
                Ok(Outcome::Interrupted(signal))
            }
        },
    };
    ready.shutdown().await;
    result
}

async fn ask_all(
    settings: &AskSettings,
    ready: &ReadyAgent,
    printer: Printer,
    process_started: std::time::Instant,
) -> Result<Outcome, CliError> {
    let agent = &ready.agent;
    let count = settings.questions.len();
    let mut outcome = Outcome::Done;
    for (index, question) in settings.questions.iter().enumerate() {
        let trace_path = settings
            .trace
            .as_deref()
            .map(|path| numbered_path(path, index, count));
        let answered = match settings.mode {
            AskMode::Compare => {
                let (comparison, timeline) = agent.compare(question).await?;
                let report = &comparison.concurrent;
                print_report(settings, printer, &comparison, report, &timeline, index)?;
                write_trace(printer, trace_path.as_deref(), &timeline).await?;
                comparison.concurrent.answered()
            }
            AskMode::Sequential | AskMode::Concurrent => {
                let mode = if settings.mode == AskMode::Sequential {
                    RunMode::Sequential
                } else {
                    RunMode::Concurrent
                };
                // The first question arrived with the process; each later one when its turn comes.
                let arrived = if index == 0 {
                    tokio::time::Instant::from_std(process_started)
                } else {
                    tokio::time::Instant::now()
                };
                let run = if printer.stderr_live() && settings.engine.models.chat_model().is_some()
                {
                    ask_showing_words(agent, question, mode, arrived, printer).await
                } else {
                    agent.ask_arrived_at(question, mode, arrived).await
                };
                print_report(
                    settings,
                    printer,
                    &run.report,
                    &run.report,
                    &run.timeline,
                    index,
                )?;
                write_trace(printer, trace_path.as_deref(), &run.timeline).await?;
                run.report.answered()
            }
        };
        if !answered {
            outcome = Outcome::NoAnswer;
        }
    }
    Ok(outcome)
}

/// [`Agent::ask_arrived_at`], showing on the terminal what the chat model writes for each source while it runs.
async fn ask_showing_words(
    agent: &Agent,
    question: &Question,
    mode: RunMode,
    arrived: tokio::time::Instant,
    printer: Printer,
) -> Run {
    let timeline = Timeline::live(arrived.into_std());
    let done = CancellationToken::new();
    let sources = agent
        .sources()
        .iter()
        .map(|source| source.name().to_owned())
        .collect();
    let (run, ()) = tokio::join!(
        async {
            let run = agent
                .ask_watched(question, mode, timeline.clone(), CancellationToken::new())
                .await;
            done.cancel();
            run
        },
        writing::show(timeline.clone(), sources, printer, done.clone()),
    );
    run
}

/// `value` as JSON (with the chart on stderr), or the human report of `report` (and the chart) on stdout.
fn print_report<T: serde::Serialize + HumanReport>(
    settings: &AskSettings,
    printer: Printer,
    value: &T,
    report: &AgentReport,
    timeline: &Timeline,
    index: usize,
) -> Result<(), CliError> {
    if settings.json {
        printer.json_line(value)?;
        if settings.timeline {
            printer
                .note_raw(&timeline.render_gantt(printer.width(false), printer.gantt_style(false)));
        }
        if report.answer.is_none() {
            printer.note(&format!(
                "error: no answer: {}",
                render::no_answer_headline(report)
            ));
            printer.note(&no_answer_hint(report));
        }
        return Ok(());
    }
    if index > 0 {
        printer.data_line("")?;
    }
    printer.data(&value.human(printer.stdout_colour()))?;
    if settings.timeline {
        printer.data_line("")?;
        printer.data(&timeline.render_gantt(printer.width(true), printer.gantt_style(true)))?;
    }
    if report.answer.is_none() {
        // The human report already says why, once, with each source's reason in the table.
        printer.note(&no_answer_hint(report));
    }
    Ok(())
}

/// What to try when a run has no answer, chosen by the kinds the report gives (the answer's `failure` and each
/// source's), never by its messages.
fn no_answer_hint(report: &AgentReport) -> String {
    let asked: Vec<&SourceReport> = report
        .sources
        .iter()
        .filter(|source| source.failure != Some(SourceFailure::Skipped))
        .collect();
    let all = |failure: SourceFailure| {
        !asked.is_empty() && asked.iter().all(|source| source.failure == Some(failure))
    };
    let hint = if report.failure == Some(AnswerFailure::NoInferenceFinished) {
        "hint: the sources answered; inference ran out of time: a longer --deadline, more --workers or a \
         smaller --inference-cost"
    } else if all(SourceFailure::Connect) {
        "hint: no source could be reached (see the errors above): check the network, or the sources' base_url"
    } else if all(SourceFailure::NoResult) {
        "hint: every source answered but had nothing for this question: name a place, or a topic they know"
    } else if asked
        .iter()
        .any(|source| source.failure == Some(SourceFailure::CircuitOpen))
    {
        "hint: a source whose circuit is open failed repeatedly and is not asked until its cool-down has passed \
         (its [source.breaker] in a sources file)"
    } else {
        return timed_out_hint(report, &asked)
            .unwrap_or_else(|| "hint: see the per-source errors above".to_owned());
    };
    hint.to_owned()
}

/// What bounded the wait of the sources that timed out, as the setting that would give them more time: the
/// deadline, each source's per-source timeout, or each attempt's timeout (a source that gave up before its
/// per-source timeout had every attempt time out, and retries could not help).
fn timed_out_hint(report: &AgentReport, asked: &[&SourceReport]) -> Option<String> {
    let names = |sources: Vec<&SourceReport>| {
        sources
            .iter()
            .map(|source| source.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let with = |failure: SourceFailure| -> Vec<&SourceReport> {
        asked
            .iter()
            .copied()
            .filter(|source| source.failure == Some(failure))
            .collect()
    };
    let cut_by_the_deadline = with(SourceFailure::Deadline);
    if !cut_by_the_deadline.is_empty() {
        return Some(format!(
            "hint: the overall deadline ended {} before it answered: a longer --deadline",
            names(cut_by_the_deadline)
        ));
    }
    let timed_out = with(SourceFailure::TimedOut);
    if timed_out.is_empty() {
        return None;
    }
    // A fetch that ended well before its per-source timeout did not use it up: its attempts' own limit ended it.
    let used_up = |source: &&SourceReport| {
        source.fetch_ms.unwrap_or(0.0) >= report.per_source_timeout_ms * 0.95
    };
    let (whole, attempts): (Vec<&SourceReport>, Vec<&SourceReport>) =
        timed_out.into_iter().partition(used_up);
    Some(if !attempts.is_empty() {
        format!(
            "hint: every attempt at {} ran out of its per-attempt timeout: a longer --attempt-timeout",
            names(attempts)
        )
    } else if whole.iter().any(|source| source.attempts > 1) {
        format!(
            "hint: {} used up its --per-source-timeout over several attempts: a longer --attempt-timeout gives \
             each attempt more time, a longer --per-source-timeout (inside --deadline) the source",
            names(whole)
        )
    } else {
        format!(
            "hint: {} used up its per-source timeout: a longer --per-source-timeout (inside --deadline)",
            names(whole)
        )
    })
}

/// What the human-readable output of a run or a comparison is.
trait HumanReport {
    fn human(&self, colour: bool) -> String;
}

impl HumanReport for AgentReport {
    fn human(&self, colour: bool) -> String {
        render::report(self, colour)
    }
}

impl HumanReport for Comparison {
    fn human(&self, colour: bool) -> String {
        render::comparison(self, colour)
    }
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
async fn write_trace(
    printer: Printer,
    path: Option<&Path>,
    timeline: &Timeline,
) -> Result<(), CliError> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = serde_json::to_vec_pretty(&timeline.chrome_trace())
        .map_err(|error| CliError::internal("failed to encode the trace", &error))?;
    let partial = path.with_extension("partial");
    let fail = |error: std::io::Error| {
        CliError::output(
            path,
            &error,
            "check that the directory exists and is writable",
        )
    };
    tokio::fs::write(&partial, json).await.map_err(fail)?;
    tokio::fs::rename(&partial, path).await.map_err(fail)?;
    printer.note(&format!(
        "trace written to {} (open it in https://ui.perfetto.dev)",
        path.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A failed report whose answer failed as `failure`, with one source per `(status, failure)`; every message
    /// says the same thing, so only the kinds can tell the hints apart.
    fn failed(failure: &str, sources: &[(&str, &str)]) -> AgentReport {
        let sources: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(index, (status, failure))| {
                json!({
                    "name": format!("source{index}"), "kind": "news", "topic": "news", "status": status,
                    "error": "dns error: connection refused; no inference finished", "failure": failure,
                    "attempts": 1, "hedges": 0, "cached": false, "fetch_ms": 1.0, "infer_ms": null,
                    "arrived_at_ms": 1.0, "worker": null, "required": false, "summary": null,
                })
            })
            .collect();
        serde_json::from_value(json!({
            "question": "q?", "status": "failed", "answer": null,
            "error": "dns error: connection refused; no inference finished", "failure": failure,
            "degraded": true, "mode": "concurrent", "elapsed_ms": 1.0, "ideal_ms": 1.0, "efficiency": 1.0,
            "workers": 1, "deadline_ms": 1.0, "per_source_timeout_ms": 1.0, "sources": sources,
        }))
        .expect("a report")
    }

    /// The hint follows the kinds: the same words in every message give four different hints.
    #[test]
    fn the_hint_is_chosen_by_the_failure_kinds_not_the_messages() {
        let hint = |report: &AgentReport| no_answer_hint(report);
        assert!(
            hint(&failed(
                "no_inference_finished",
                &[("timed_out", "inference_timed_out"), ("skipped", "skipped")]
            ))
            .contains("inference ran out of time")
        );
        assert!(
            hint(&failed(
                "no_source_answered",
                &[
                    ("failed", "connect"),
                    ("failed", "connect"),
                    ("skipped", "skipped")
                ]
            ))
            .contains("no source could be reached")
        );
        assert!(
            hint(&failed(
                "nothing_found",
                &[("no_result", "no_result"), ("skipped", "skipped")]
            ))
            .contains("had nothing for this question")
        );
        assert!(
            hint(&failed(
                "no_source_answered",
                &[("failed", "connect"), ("circuit_open", "circuit_open")]
            ))
            .contains("circuit is open")
        );
        // One source reached and failed otherwise: not "could not be reached", whatever its message says.
        assert!(
            hint(&failed(
                "no_source_answered",
                &[("failed", "connect"), ("failed", "http_status")]
            ))
            .contains("see the per-source errors above")
        );
    }

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
