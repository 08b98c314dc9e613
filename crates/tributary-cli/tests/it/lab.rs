//! `tributary lab` through the real binary: every experiment's quick mode, the JSON shape, the exit codes and the
//! files `--out` writes.
//!
//! Timing claims are not asserted PASS here: on a busy 2-core machine a 10 % tolerance can fail honestly. The
//! test asserts the figures are present and plausible (generous ratios, orderings), and PASS only where the
//! claim does not depend on timing: which children a group cancels, what settle returns, which bound fires.

use serde_json::Value;
use tributary_lab::Experiment;

use crate::harness::{code, json_lines, stderr, tributary};

fn number(value: &Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}

fn find<'a>(reports: &'a [Value], name: &str) -> &'a Value {
    reports
        .iter()
        .find(|report| report["experiment"] == name)
        .unwrap_or_else(|| panic!("no report for {name}"))
}

#[test]
fn quick_lab_runs_every_experiment_and_reports_figures_and_verdicts() {
    let output = tributary()
        .args(["lab", "--quick", "--json"])
        .output()
        .expect("run tributary lab");
    let reports = json_lines(&output);
    let names: Vec<&str> = reports
        .iter()
        .map(|report| {
            report["experiment"]
                .as_str()
                .expect("experiment is a string")
        })
        .collect();
    // Every experiment of the registry, in its order: a new experiment is run here without naming it.
    assert_eq!(names, Experiment::names(), "stderr:\n{}", stderr(&output));

    for report in &reports {
        for field in ["title", "description", "claim"] {
            assert!(
                report[field].as_str().is_some_and(|text| !text.is_empty()),
                "{field} missing in {report}"
            );
        }
        assert!(report["measured"].is_object(), "{report}");
        assert!(report["verdict"]["pass"].is_boolean(), "{report}");
        assert!(
            report["verdict"]["reason"]
                .as_str()
                .is_some_and(|reason| !reason.is_empty()),
            "{report}"
        );
    }
    let all_passed = reports
        .iter()
        .all(|report| report["verdict"]["pass"] == true);
    assert_eq!(code(&output), if all_passed { 0 } else { 4 });

    // Claims that do not depend on timing must PASS.
    let fail_fast = find(&reports, "fail-fast-vs-settle");
    assert_eq!(fail_fast["verdict"]["pass"], true, "{fail_fast}");
    for case in fail_fast["measured"]["cases"].as_array().expect("cases") {
        assert_eq!(
            case["fail_fast"]["cancelled"].as_array().map(Vec::len),
            Some(9)
        );
        assert_eq!(case["settle"]["ok"], 9);
        assert_eq!(case["settle"]["errors"].as_array().map(Vec::len), Some(1));
    }
    let timeouts = &find(&reports, "timeouts")["measured"];
    assert_eq!(timeouts["hanging"]["winner"], "inner");
    assert_eq!(timeouts["outer_sooner"]["winner"], "outer");
    assert_eq!(timeouts["inner_sooner"]["winner"], "inner");
    assert_eq!(timeouts["retry"]["succeeded"], true);
    assert!(timeouts["retry"]["attempts"].as_array().map(Vec::len) >= Some(2));

    // Timing claims: plausible figures, generous orderings.
    let sync = &find(&reports, "sync-vs-async")["measured"];
    assert!(number(sync, "/concurrent_total_ms") < 0.6 * number(sync, "/sequential_total_ms"));
    let blocking = &find(&reports, "blocking")["measured"];
    assert!(number(blocking, "/inline/max_lag_ms") >= 0.5 * number(blocking, "/inline/job_ms"));
    assert!(number(blocking, "/pool/max_lag_ms") < number(blocking, "/inline/max_lag_ms"));
    let hybrid = &find(&reports, "hybrid")["measured"];
    assert!(number(hybrid, "/overlapped_ms") < number(hybrid, "/sequential_ms"));
    let efficiency = number(hybrid, "/efficiency");
    assert!(efficiency > 0.0 && efficiency <= 1.0, "{efficiency}");
    let capstone = &find(&reports, "capstone")["measured"];
    assert_eq!(capstone["answered"], true);
    assert!(number(capstone, "/speedup") > 1.0);

    let parallelism = &find(&reports, "parallelism")["measured"];
    let executors: Vec<&str> = parallelism["executors"]
        .as_array()
        .expect("executors")
        .iter()
        .map(|executor| executor["executor"].as_str().expect("a name"))
        .collect();
    assert_eq!(executors, ["inline", "global-lock", "threads", "processes"]);
    assert_eq!(parallelism["crash"]["job_failed"], true, "{parallelism}");
    assert_eq!(parallelism["crash"]["next_job_ok"], true, "{parallelism}");
    let saturation = &parallelism["saturation"];
    assert!(number(saturation, "/max_running") <= number(saturation, "/workers"));
    assert!(
        number(saturation, "/submitters_blocked") >= 1.0,
        "{saturation}"
    );
    assert_eq!(saturation["try_submit_refused"], true, "{saturation}");
}

#[test]
fn out_writes_a_chart_and_a_trace_per_experiment() {
    let out = tempfile::tempdir().expect("temp dir");
    let output = tributary()
        .args(["lab", "fail-fast-vs-settle", "--quick", "--out"])
        .arg(out.path())
        .output()
        .expect("run tributary lab");
    assert!(matches!(code(&output), 0 | 4), "{}", stderr(&output));
    let svg = std::fs::read_to_string(out.path().join("fail-fast-vs-settle.svg")).expect("svg");
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{svg:.80}"
    );
    let trace =
        std::fs::read_to_string(out.path().join("fail-fast-vs-settle.trace.json")).expect("trace");
    let trace: Value = serde_json::from_str(&trace).expect("the trace is JSON");
    assert!(trace.is_object() || trace.is_array());
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn human_output_shows_the_claim_the_verdict_and_a_chart() {
    let output = tributary()
        .args(["lab", "fail-fast-vs-settle", "--quick"])
        .output()
        .expect("run tributary lab");
    let stdout = crate::harness::stdout(&output);
    for expected in ["measured:", "claim:", "verdict: PASS", "fetch 3", "total"] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn an_unknown_experiment_is_a_usage_error_listing_the_valid_ones() {
    let output = tributary()
        .args(["lab", "gil"])
        .output()
        .expect("run tributary lab");
    assert_eq!(code(&output), 2);
    let stderr = stderr(&output);
    assert!(stderr.contains("invalid value 'gil'"), "{stderr}");
    assert!(stderr.contains(&Experiment::names().join(", ")), "{stderr}");
}

#[test]
fn a_misspelt_experiment_gets_a_suggestion_and_help_lists_them_all() {
    let output = tributary()
        .args(["lab", "blockng"])
        .output()
        .expect("run tributary lab");
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("'blocking'"),
        "{}",
        stderr(&output)
    );

    let output = tributary()
        .args(["lab", "--help"])
        .output()
        .expect("run tributary lab --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for name in Experiment::names() {
        assert!(help.contains(name), "{name} missing from:\n{help}");
    }
}

#[test]
fn a_reader_that_goes_away_is_not_a_panic() {
    // `tributary lab --quick sync-vs-async --json | true` once panicked on the closed pipe.
    let mut child = tributary()
        .args(["lab", "--quick", "sync-vs-async", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tributary lab");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}
