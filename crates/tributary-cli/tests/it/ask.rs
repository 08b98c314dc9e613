//! `tributary ask`: the agent, end to end, on the embedded simulated services.

use serde_json::Value;

use crate::harness::{FAST, ask, code, json_lines, source, stderr, stdout, tributary};

const QUESTION: &str = "What's the weather in Paris, and why does the GIL matter?";

#[test]
fn a_healthy_run_answers_from_every_source() {
    let output = ask(&[QUESTION, "--json"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let reports = json_lines(&output);
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report["degraded"], false);
    for name in ["weather", "news", "kb"] {
        assert_eq!(source(report, name)["status"], "ok", "{name}: {report}");
    }
    let answer = report["answer"].as_str().expect("an answer");
    assert!(answer.contains("Paris"), "{answer}");
    assert!(answer.contains("GIL"), "{answer}");
}

#[test]
fn the_human_output_has_the_answer_the_table_and_the_totals() {
    let output = ask(&[QUESTION]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("Weather: "), "{text}");
    assert!(text.contains("source   status"), "{text}");
    assert!(text.contains("complete · concurrent run in"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes with NO_COLOR: {text}"
    );
}

#[test]
fn a_hanging_source_times_out_and_the_answer_still_comes_within_the_deadline() {
    let output = ask(&[
        QUESTION,
        "--json",
        "--fault",
        "news=hang",
        "--per-source-timeout",
        "1s",
        "--deadline",
        "2s",
    ]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    assert_eq!(source(report, "news")["status"], "timed_out");
    assert_eq!(source(report, "weather")["status"], "ok");
    assert_eq!(report["degraded"], true);
    assert!(report["answer"].is_string());
    // The deadline is a timer, not a hope: the answer comes back after the per-source timeout and well before
    // a second deadline would pass (generous, for a busy machine).
    let elapsed = report["elapsed_ms"].as_f64().expect("elapsed_ms");
    assert!((1000.0..4000.0).contains(&elapsed), "elapsed {elapsed}");
}

#[test]
fn the_overall_deadline_cuts_a_hang_before_the_per_source_timeout() {
    let output = ask(&[
        QUESTION,
        "--json",
        "--fault",
        "kb=hang",
        "--per-source-timeout",
        "10s",
        "--deadline",
        "1s",
    ]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    let kb = source(report, "kb");
    assert_eq!(kb["status"], "timed_out");
    assert_eq!(kb["error"], "overall deadline exceeded");
}

#[test]
fn two_failing_sources_give_a_degraded_answer_from_the_third() {
    let output = ask(&[
        QUESTION,
        "--json",
        "--fault",
        "weather=error",
        "--fault",
        "news=malformed",
    ]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    assert_eq!(report["degraded"], true);
    let weather = source(report, "weather");
    assert_eq!(weather["status"], "failed");
    assert_eq!(weather["attempts"], 3, "a 500 is retried: {weather}");
    let news = source(report, "news");
    assert_eq!(news["status"], "failed");
    assert_eq!(news["attempts"], 1, "malformed JSON is not retried: {news}");
    assert!(
        news["error"].as_str().unwrap_or_default().contains("json"),
        "{news}"
    );
    assert_eq!(source(report, "kb")["status"], "ok");
    let answer = report["answer"].as_str().expect("an answer");
    assert!(answer.contains("GIL"), "{answer}");
}

#[test]
fn all_sources_failing_exits_3_with_the_reason() {
    let every_source_failing = [
        QUESTION,
        "--fault",
        "weather=error",
        "--fault",
        "news=huge",
        "--fault",
        "kb=unavailable",
    ];
    let output = ask(&every_source_failing);
    assert_eq!(code(&output), 3, "stdout: {}", stdout(&output));
    // Said once: the headline on stdout, each source's reason once in the table, a hint on stderr.
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(out.starts_with("No answer: no source answered.\n"), "{out}");
    assert_eq!(
        out.matches("read a response body within the 1048576-byte limit")
            .count(),
        1,
        "{out}"
    );
    assert!(
        !err.contains("1048576"),
        "the reason again on stderr: {err}"
    );
    assert!(err.starts_with("hint: "), "{err}");
    // With --json the reason is in the JSON, and stderr says in a line why there is no answer.
    let output = ask(&[&every_source_failing[..], &["--json"]].concat());
    assert_eq!(code(&output), 3);
    assert!(
        stderr(&output).starts_with("error: no answer: no source answered\nhint: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_timeout_hint_names_the_setting_that_bounded_the_wait() {
    // Each attempt at kb is capped at 2 s by default, and it answers after 3 s: no per-source timeout helps.
    let run = |extra: &[&str]| {
        tributary()
            .args(["ask", "What is the GIL?", "--inference-cost", "20ms"])
            .args(["--fault", "news=hang", "--fault", "kb=latency:3s"])
            .args(extra)
            .output()
            .expect("run tributary ask")
    };
    let output = run(&["--per-source-timeout", "7s"]);
    assert_eq!(code(&output), 3, "{}", stdout(&output));
    assert!(
        stderr(&output).contains("a longer --attempt-timeout"),
        "{}",
        stderr(&output)
    );
    // With each attempt given 4 s, kb answers: the answer is degraded, news timed out.
    let output = run(&["--per-source-timeout", "5s", "--attempt-timeout", "4s"]);
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("degraded"), "{}", stdout(&output));
}

#[test]
fn a_repeated_question_is_served_from_the_cache() {
    let output = ask(&[QUESTION, QUESTION, "--json"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let reports = json_lines(&output);
    assert_eq!(reports.len(), 2);
    for name in ["weather", "news", "kb"] {
        assert_eq!(source(&reports[0], name)["cached"], false);
        assert_eq!(
            source(&reports[1], name)["cached"],
            true,
            "{name} second time: {}",
            reports[1]
        );
        assert_eq!(source(&reports[1], name)["attempts"], 0);
    }
}

#[test]
fn the_json_report_follows_the_documented_schema() {
    let output = ask(&["Why does the GIL matter?", "--json"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    for (field, check) in [
        ("question", Value::is_string as fn(&Value) -> bool),
        ("answer", Value::is_string),
        ("error", Value::is_null),
        ("failure", Value::is_null),
        ("degraded", Value::is_boolean),
        ("mode", Value::is_string),
        ("elapsed_ms", Value::is_number),
        ("ideal_ms", Value::is_number),
        ("efficiency", Value::is_number),
        ("workers", Value::is_u64),
        ("deadline_ms", Value::is_number),
        ("per_source_timeout_ms", Value::is_number),
        ("sources", Value::is_array),
    ] {
        assert!(check(&report[field]), "field {field} in {report}");
    }
    let weather = source(report, "weather");
    assert_eq!(
        weather["status"], "skipped",
        "not a question about the weather"
    );
    assert!(
        weather["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not about the weather")
    );
    assert_eq!(weather["failure"], "skipped");
    for source in report["sources"].as_array().expect("array") {
        for field in [
            "name",
            "kind",
            "topic",
            "status",
            "error",
            "failure",
            "http_status",
            "attempts",
            "cached",
            "fetch_ms",
            "infer_ms",
        ] {
            assert!(
                source.get(field).is_some(),
                "source field {field} in {source}"
            );
        }
    }
}

#[test]
fn the_trace_file_is_chrome_json_with_events_for_every_source() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("run.json");
    let output = ask(&[QUESTION, "--trace", path.to_str().expect("utf-8 path")]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let trace: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("trace written")).expect("valid JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let lane_tid = |lane: &str| {
        events
            .iter()
            .find(|event| {
                event["ph"] == "M"
                    && event["name"] == "thread_name"
                    && event["args"]["name"] == lane
            })
            .map(|event| (event["pid"].clone(), event["tid"].clone()))
            .unwrap_or_else(|| panic!("no lane {lane}"))
    };
    for name in ["weather", "news", "kb"] {
        let (pid, tid) = lane_tid(&format!("source {name}"));
        let spans: Vec<&Value> = events
            .iter()
            .filter(|event| event["ph"] == "X" && event["pid"] == pid && event["tid"] == tid)
            .collect();
        assert!(!spans.is_empty(), "no span for {name}");
        assert!(
            spans
                .iter()
                .all(|span| span["args"].get("cached").is_some())
        );
    }
    assert!(
        events
            .iter()
            .any(|event| event["ph"] == "X" && event["name"] == "infer news")
    );
    assert!(
        !directory.path().join("run.partial").exists(),
        "no leftover partial file"
    );
}

#[test]
fn sequential_and_compare_run_the_baseline() {
    let output = ask(&[QUESTION, "--json", "--sequential"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(json_lines(&output)[0]["mode"], "sequential");

    let output = ask(&[QUESTION, "--json", "--compare"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let comparison = &json_lines(&output)[0];
    assert_eq!(comparison["sequential"]["mode"], "sequential");
    assert_eq!(comparison["concurrent"]["mode"], "concurrent");
    // Fresh caches for both runs: the second run must not be served by the first.
    assert_eq!(source(&comparison["concurrent"], "kb")["cached"], false);
    // What the two modes do, read from the reports rather than from the wall clock (a ratio of times failed
    // on a loaded machine): the concurrent run's fetches overlap (the last arrives before the fetches' summed
    // time), and the baseline's do not (each arrives at least its fetch time after the one before).
    let times = |report: &Value, field: &str| -> Vec<f64> {
        report["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .map(|source| source[field].as_f64().expect("a time"))
            .collect()
    };
    let concurrent = &comparison["concurrent"];
    let last_arrival = times(concurrent, "arrived_at_ms")
        .into_iter()
        .fold(0.0, f64::max);
    let fetching: f64 = times(concurrent, "fetch_ms").iter().sum();
    assert!(last_arrival < fetching, "no overlap: {concurrent}");
    let sequential = &comparison["sequential"];
    let arrivals = times(sequential, "arrived_at_ms");
    let fetches = times(sequential, "fetch_ms");
    for index in 1..arrivals.len() {
        assert!(
            arrivals[index] >= arrivals[index - 1] + fetches[index] - 1.0,
            "the baseline's fetches overlap: {sequential}"
        );
    }
    assert!(comparison["speedup"].as_f64().is_some(), "{comparison}");
}

#[test]
fn the_timeline_draws_a_lane_per_source_and_worker() {
    let output = ask(&[QUESTION, "--timeline", "--workers", "2"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let text = stdout(&output);
    for lane in [
        "source weather",
        "source news",
        "source kb",
        "worker 1",
        "worker 2",
    ] {
        assert!(text.contains(lane), "missing lane {lane}:\n{text}");
    }
}

#[test]
fn colour_is_one_decision_that_the_flag_overrides() {
    const ESCAPE: char = '\u{1b}';
    // The harness sets NO_COLOR=1 and stdout is a pipe: plain by default...
    let plain = ask(&[QUESTION, "--timeline"]);
    assert!(!stdout(&plain).contains(ESCAPE), "{}", stdout(&plain));
    // ...and `--color always` wins over both, as no-color.org asks of a flag.
    let coloured = ask(&[QUESTION, "--timeline", "--color", "always"]);
    assert_eq!(code(&coloured), 0, "{}", stderr(&coloured));
    assert!(stdout(&coloured).contains(ESCAPE), "{}", stdout(&coloured));
    // An empty NO_COLOR does not count as set.
    let empty = tributary()
        .arg("ask")
        .args(crate::harness::FAST)
        .args([QUESTION, "--timeline", "--color", "never"])
        .env("NO_COLOR", "")
        .output()
        .expect("run");
    assert!(!stdout(&empty).contains(ESCAPE));
}

#[test]
fn clicolor_force_colours_a_pipe_unless_no_color_says_otherwise() {
    const ESCAPE: char = '\u{1b}';
    let run = |no_color: Option<&str>| {
        let mut command = tributary();
        command
            .arg("ask")
            .args(crate::harness::FAST)
            .args([QUESTION, "--timeline"])
            .env("CLICOLOR_FORCE", "1")
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        command.output().expect("run")
    };
    let forced = run(None);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert!(stdout(&forced).contains(ESCAPE), "{}", stdout(&forced));
    let refused = run(Some("1"));
    assert!(!stdout(&refused).contains(ESCAPE), "{}", stdout(&refused));
}

#[test]
fn columns_sets_the_width_of_the_chart() {
    // Into a pipe, a chart is 100 columns wide unless COLUMNS says otherwise.
    let widest_chart_line = |columns: Option<&str>| {
        let mut command = tributary();
        command
            .arg("ask")
            .args(crate::harness::FAST)
            .args([QUESTION, "--timeline"]);
        if let Some(columns) = columns {
            command.env("COLUMNS", columns);
        }
        let output = command.output().expect("run");
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        stdout(&output)
            .lines()
            .filter(|line| line.contains('│'))
            .map(|line| line.chars().count())
            .max()
            .expect("a chart")
    };
    let narrow = widest_chart_line(Some("60"));
    let default = widest_chart_line(None);
    let wide = widest_chart_line(Some("140"));
    assert!(narrow <= 60, "{narrow}");
    assert!(narrow < default && default <= 100, "{default}");
    assert!(default < wide && wide <= 140, "{wide}");
}

#[test]
fn bad_flags_are_refused_before_the_services_start() {
    // Flags are validated before the services or any worker process start: the error comes first and alone.
    let output = tributary()
        .args(["ask", "x", "--executor", "processes", "--workers", "0"])
        .output()
        .expect("run");
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("'--workers <N>': must be at least 1"),
        "{}",
        stderr(&output)
    );
    let output = tributary()
        .args(["ask", "x", "--config", "/nonexistent/sources.toml"])
        .output()
        .expect("run");
    assert_eq!(code(&output), 2);
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/sources.toml"), "{message}");
    assert!(message.contains("hint:"), "{message}");
}

#[test]
fn bad_input_is_a_usage_error_with_a_clear_message() {
    let huge = "18446744073709551615s";
    let cases: [(&[&str], &str); 12] = [
        (&["   "], "question 1: the question is empty"),
        // Once exit 134 (a stack guard per thread could not be allocated).
        (
            &["x", "--workers", "100000"],
            "'--workers <N>': must be at most 256",
        ),
        // Once exit 101 (`Instant` overflow).
        (&["x", "--deadline", huge], "must be at most 1day"),
        (&["x", "--per-source-timeout", huge], "must be at most 1day"),
        (&["x", "--inference-cost", "61s"], "must be at most 1m"),
        // Once accepted, and then every request failed with a bare 400.
        (
            &["x", "--fault", "news=latency:1000000h"],
            "the latency must be at most 10m",
        ),
        // Once the last one won silently.
        (
            &["x", "--fault", "news=hang", "--fault", "news=error"],
            "gives `news` a fault twice",
        ),
        (
            &["x", "--fault", "news=explode"],
            "unknown fault kind `explode`",
        ),
        (&["x", "--fault", "moon=hang"], "unknown source `moon`"),
        (
            &["x", "--workers", "0"],
            "'--workers <N>': must be at least 1",
        ),
        (&["x", "--deadline", "0s"], "must be longer than zero"),
        (&["x", "--deadline", "soon"], "not a duration"),
    ];
    for (args, message) in cases {
        let output = tributary().arg("ask").args(args).output().expect("run");
        assert_eq!(code(&output), 2, "{args:?}");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let long = "why ".repeat(1100);
    let output = tributary().args(["ask", &long]).output().expect("run");
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("over the limit of 4096 bytes"),
        "{}",
        stderr(&output)
    );
}

/// Runs `ask x` with a sources file of one `kb` source whose last line is `last_line`.
fn ask_with_config(last_line: &str) -> std::process::Output {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("sources.toml");
    std::fs::write(
        &path,
        format!("[[source]]\nname = \"kb\"\nkind = \"kb\"\nbase_url = \"http://127.0.0.1:9\"\n{last_line}\n"),
    )
    .expect("write config");
    tributary()
        .args(["ask", "the GIL", "--config", path.to_str().expect("utf-8")])
        .output()
        .expect("run")
}

#[test]
fn a_bad_config_file_is_reported_with_its_line() {
    let output = ask_with_config("colour = \"blue\"");
    assert_eq!(code(&output), 2);
    let message = stderr(&output);
    assert!(message.contains("sources.toml:5"), "{message}");
    assert!(message.contains("colour"), "{message}");
}

/// A sources file `timeout` too long for the clock once panicked in every step ("the step panicked").
#[test]
fn a_config_file_duration_past_its_bound_is_reported_with_its_line() {
    let output = ask_with_config("timeout = \"18446744073709551615s\"");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("sources.toml:5"), "{message}");
    assert!(message.contains("must be at most 1h"), "{message}");
}

#[test]
fn a_reader_that_goes_away_is_not_a_panic() {
    let mut child = crate::harness::tributary()
        .arg("ask")
        .args(crate::harness::FAST)
        .args([QUESTION, QUESTION, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tributary ask");
    drop(child.stdout.take()); // close the read end before the first answer is printed
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn every_executor_answers_and_processes_run_in_worker_processes() {
    for executor in ["processes", "global-lock", "inline"] {
        let output = ask(&[QUESTION, "--json", "--executor", executor]);
        assert_eq!(code(&output), 0, "{executor}: {}", stderr(&output));
        let report = &json_lines(&output)[0];
        for name in ["weather", "news", "kb"] {
            assert_eq!(
                source(report, name)["status"],
                "ok",
                "{executor} {name}: {report}"
            );
        }
    }
    let output = tributary()
        .args(["ask", "x", "--executor", "fibers"])
        .output()
        .expect("run");
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("threads, processes, global-lock, inline"),
        "{}",
        stderr(&output)
    );
}

/// Every source answered but the deadline cut each inference: the answer once said "no source answered". And a
/// source's error once read like success ("read a response body within the 1048576-byte limit").
#[test]
fn messages_say_what_happened() {
    // Inference that cannot finish in time, with the fast latencies (FAST without its inference cost).
    let cut_short = |extra: &[&str]| {
        tributary()
            .args([
                "ask",
                QUESTION,
                "--inference-cost",
                "5s",
                "--deadline",
                "1s",
            ])
            .args(extra)
            .args(FAST.iter().skip(2))
            .output()
            .expect("run")
    };
    let output = cut_short(&["--json"]);
    assert_eq!(code(&output), 3, "stderr: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    let error = report["error"].as_str().expect("an error");
    assert!(
        error.starts_with("3 of 3 source(s) answered, but no inference finished"),
        "{error}"
    );
    // The same, as kinds: what the hint below is chosen by.
    assert_eq!(report["failure"], "no_inference_finished", "{report}");
    for name in ["weather", "news", "kb"] {
        assert_eq!(source(report, name)["failure"], "inference_timed_out");
    }
    let human = cut_short(&[]);
    assert_eq!(code(&human), 3, "stderr: {}", stderr(&human));
    assert!(
        stderr(&human).contains("inference ran out of time"),
        "{}",
        stderr(&human)
    );

    let output = ask(&[QUESTION, "--json", "--fault", "news=huge"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let reports = json_lines(&output);
    let news = source(&reports[0], "news");
    let error = news["error"].as_str().expect("an error");
    assert!(
        error.starts_with(
            "failed to fetch from source `news` after 1 attempt(s): read a response body"
        ),
        "{error}"
    );
    assert_eq!(news["failure"], "body_too_large");
    assert_eq!(reports[0]["failure"], serde_json::Value::Null, "an answer");
}

/// A source nobody listens on: the run has no answer, and the hint says what to check (not "more time"), chosen
/// by the source's failure kind, `connect`, which `--json` shows.
#[test]
fn sources_that_cannot_be_reached_get_a_network_hint() {
    let output = ask_with_config("retries = 0");
    assert_eq!(code(&output), 3, "stderr: {}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("hint: no source could be reached"),
        "{message}"
    );
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("sources.toml");
    std::fs::write(
        &path,
        "[[source]]\nname = \"kb\"\nkind = \"kb\"\nbase_url = \"http://127.0.0.1:9\"\nretries = 0\n",
    )
    .expect("write config");
    let output = tributary()
        .args([
            "ask",
            "the GIL",
            "--json",
            "--config",
            path.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert_eq!(code(&output), 3, "stderr: {}", stderr(&output));
    let report = &json_lines(&output)[0];
    assert_eq!(report["failure"], "no_source_answered", "{report}");
    assert_eq!(source(report, "kb")["failure"], "connect", "{report}");
}

/// With a resolver that swallows every query, `ask --sources public` printed its answer at the deadline and exited
/// 9 s later: the blocking lookups were waited for at shutdown. Lookups are futures now, dropped with their
/// requests, and the runtime does not wait for what nobody awaits.
#[test]
fn exit_follows_the_answer_whatever_the_name_servers_do() {
    // A name server on loopback that receives every query and never answers: nothing leaves the machine.
    let name_server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let address = name_server.local_addr().expect("its address").to_string();
    let started = std::time::Instant::now();
    let mut child = tributary()
        .args([
            "ask",
            "What is the weather in Paris?",
            "--sources",
            "public",
        ])
        .args(["--deadline", "2s", "--json", "--name-server", &address])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tributary ask");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut answer).expect("the answer line");
    let answered = started.elapsed();
    let status = child.wait().expect("wait");
    let exited = started.elapsed();
    println!(
        "dns: answered at {answered:?}, exited {:?} later",
        exited - answered
    );
    let report: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(status.code(), Some(3));
    // The bug was 9 s; a second is far beyond any scheduling noise.
    assert!(
        exited - answered < std::time::Duration::from_secs(1),
        "exited {:?} after the answer",
        exited - answered
    );
    // The lookups went to the name server the flag named.
    name_server
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("a read timeout");
    let mut query = [0_u8; 512];
    assert!(
        name_server.recv_from(&mut query).is_ok(),
        "no query reached the name server"
    );
}

#[test]
fn the_inline_executor_runs_one_inference_at_a_time_so_the_ideal_is_never_longer_than_the_run() {
    // Weather and kb arrive together: on a multi-threaded runtime their inline inferences once ran at once on
    // "one worker", and the ideal schedule of those times was longer than the run.
    let output = tributary()
        .args([
            "ask",
            "What's the weather in Paris, and why does the GIL matter?",
            "--json",
        ])
        .args(["--executor", "inline", "--inference-cost", "100ms"])
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report = json_lines(&output).remove(0);
    let (ideal, elapsed) = (
        report["ideal_ms"].as_f64().expect("ideal"),
        report["elapsed_ms"].as_f64().expect("elapsed"),
    );
    assert!(
        ideal <= elapsed + 1.0,
        "ideal {ideal} ms > run {elapsed} ms: {report}"
    );
}

#[test]
fn color_always_colours_the_report_the_labels_and_usage_errors() {
    // NO_COLOR is set by the harness: `--color always` wins over it.
    let output = ask(&["How do I bake sourdough bread?", "--color", "always"]);
    assert_eq!(code(&output), 3);
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(out.contains("\u{1b}[33mno_result\u{1b}[0m"), "{out:?}");
    assert!(out.contains("\u{1b}[31mno answer\u{1b}[0m"), "{out:?}");
    assert!(
        err.starts_with("\u{1b}[1m\u{1b}[36mhint:\u{1b}[0m "),
        "{err:?}"
    );
    // Without it, nothing is coloured (NO_COLOR), and the columns are the same.
    let plain = ask(&["How do I bake sourdough bread?"]);
    assert!(!stdout(&plain).contains('\u{1b}') && !stderr(&plain).contains('\u{1b}'));
    let strip = |text: &str| {
        let mut plain = String::new();
        let mut escape = false;
        for character in text.chars() {
            match (escape, character) {
                (false, '\u{1b}') => escape = true,
                (true, 'm') => escape = false,
                (false, character) => plain.push(character),
                (true, _) => {}
            }
        }
        plain
    };
    let table = |text: &str| {
        text.lines()
            .skip(2)
            .take(4)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let without_times = |lines: Vec<String>| {
        lines
            .iter()
            .map(|line| {
                line.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_times(table(&strip(&out))),
        without_times(table(&stdout(&plain)))
    );
    // A usage error, from clap, is coloured too.
    let output = tributary()
        .args(["ask", "--color", "always", "--bogus"])
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains('\u{1b}'), "{:?}", stderr(&output));
}
