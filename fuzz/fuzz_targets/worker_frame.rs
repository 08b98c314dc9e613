//! The process pool's frame protocol, both sides, on the same bytes:
//!
//! - The worker (`serve_worker`) reads them as its stdin: it must answer every frame with exactly one frame
//!   that the parent can decode (an output or a rejection, never a "parse reply" error), ignore every other
//!   line, and fail only on input that is not UTF-8 (the parent never writes any).
//! - The parent (`pool::fuzzing::parent_reads_line`) reads each of their lines as a worker's stdout while it
//!   waits for request 7: never a panic, and a reply it cannot use says why.
//! - Round trip: the parent's request line for an `echo` job carrying the whole input as text
//!   (`pool::fuzzing::request_line`), served by the worker, gives the same text back to the parent, however
//!   many line breaks and frame tags it holds.
//!
//! The worker serves two cheap jobs of this file; the protocol knows nothing of what jobs do, and the real ones
//! take their cost from their input (a burn job of 10^18 units would be a hang, not a finding).

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use tributary::pool::fuzzing::{FRAME_TAG, Reply, parent_reads_line, request_line};
use tributary::pool::{CpuJob, WorkerJobs, serve_worker};

/// The request the parent is waiting for when it reads the input as a worker's output.
const AWAITED_ID: u64 = 7;

/// Gives its text back.
#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    text: String,
}

impl CpuJob for Echo {
    const NAME: &'static str = "echo";
    type Output = String;

    fn run(self, _should_stop: &dyn Fn() -> bool) -> String {
        self.text
    }
}

/// Adds its numbers up, wrapping.
#[derive(Debug, Serialize, Deserialize)]
struct Sum {
    numbers: Vec<u64>,
}

impl CpuJob for Sum {
    const NAME: &'static str = "sum";
    type Output = u64;

    fn run(self, _should_stop: &dyn Fn() -> bool) -> u64 {
        self.numbers.iter().fold(0, |sum, n| sum.wrapping_add(*n))
    }
}

fuzz_target!(|data: &[u8]| {
    let jobs = WorkerJobs::new().with::<Echo>().with::<Sum>();
    let mut output = Vec::new();
    let served = serve_worker(&jobs, Cursor::new(data), &mut output);
    match std::str::from_utf8(data) {
        Ok(input) => {
            served.expect("serving UTF-8 from memory cannot fail");
            check_worker_output(input, &output);
            for line in input.lines() {
                if let Some(Err(why)) = parent_reads_line(line, AWAITED_ID) {
                    assert!(!why.is_empty(), "an unusable reply without a reason");
                }
            }
            check_echo_round_trip(&jobs, input);
        }
        Err(_) => assert!(served.is_err(), "a worker read input that is not UTF-8"),
    }
});

/// One decodable frame per request frame, in order.
fn check_worker_output(input: &str, output: &[u8]) {
    let output = std::str::from_utf8(output).expect("the worker writes UTF-8");
    let requests = input
        .lines()
        .filter(|line| line.contains(FRAME_TAG))
        .count();
    let replies: Vec<&str> = output.lines().collect();
    assert_eq!(replies.len(), requests, "one reply per request:\n{output}");
    assert!(output.is_empty() || output.ends_with('\n'));
    for reply in replies {
        assert!(reply.starts_with(FRAME_TAG), "not a frame: {reply}");
        let id = serde_json::from_str::<serde_json::Value>(&reply[FRAME_TAG.len()..])
            .expect("a reply frame is JSON")["id"]
            .as_u64()
            .expect("a reply frame has an id");
        match parent_reads_line(reply, id) {
            Some(Ok(Reply::Output(_))) => {}
            Some(Ok(Reply::Progress(text))) => {
                panic!("progress from a job that reports none: {text}")
            }
            Some(Err(why)) => assert!(
                why.starts_with("the worker rejected the request: "),
                "the parent cannot use a reply: {why}\n{reply}"
            ),
            None => panic!("the parent does not see a frame in {reply}"),
        }
    }
}

/// The whole input as the text of an `echo` job, through the parent's encoding, the worker and the parent's
/// decoding.
fn check_echo_round_trip(jobs: &WorkerJobs, text: &str) {
    let request = request_line(AWAITED_ID, Echo::NAME, serde_json::json!({ "text": text }));
    assert_eq!(
        request.matches('\n').count(),
        1,
        "a request frame is one line: {request}"
    );
    let mut output = Vec::new();
    serve_worker(jobs, request.as_bytes(), &mut output).expect("serving from memory cannot fail");
    let output = String::from_utf8(output).expect("the worker writes UTF-8");
    let reply = parent_reads_line(&output, AWAITED_ID).expect("the worker answered with a frame");
    match reply {
        Ok(Reply::Output(echoed)) => assert_eq!(echoed.as_str(), Some(text), "{output}"),
        Ok(Reply::Progress(_)) => panic!("the echo reported progress: {output}"),
        Err(why) => panic!("the parent cannot use the echo: {why}\n{output}"),
    }
}
