//! `--otlp-endpoint`: a run's spans reach an OTLP/HTTP collector (a minimal one here, on loopback, that keeps
//! what it is sent).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use crate::harness::{FAST, code, stderr, tributary};

/// One request the collector got.
#[derive(Debug)]
struct Received {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// Accepts connections on a free loopback port and answers every request 200, keeping it.
fn collector() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || serve(stream, &keep));
        }
    });
    (url, received)
}

/// Reads requests off one keep-alive connection until it closes.
fn serve(stream: TcpStream, keep: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let (mut length, mut content_type) = (0, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => value.trim().clone_into(&mut content_type),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        keep.lock().expect("the list").push(Received {
            path,
            content_type,
            body,
        });
        let answered = writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
        if answered.is_err() {
            return;
        }
    }
}

#[test]
fn an_ask_exports_its_spans_to_the_collector() {
    let (url, received) = collector();
    let output = tributary()
        .arg("ask")
        .args(FAST)
        .args(["--otlp-endpoint", &url, "Is it raining in Paris?"])
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let received = received.lock().expect("the list");
    assert!(!received.is_empty(), "nothing was exported");
    let body: Vec<u8> = received
        .iter()
        .inspect(|request| {
            assert_eq!(request.path, "/v1/traces");
            assert_eq!(request.content_type, "application/x-protobuf");
        })
        .flat_map(|request| request.body.iter().copied())
        .collect();
    // Protobuf keeps strings as they are: the span names and the service's name are in the bytes.
    let contains = |needle: &str| {
        body.windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    for name in [
        "tributary",
        "question",
        "source.fetch",
        "source.attempt",
        "pool.job",
        "group.child",
    ] {
        assert!(contains(name), "no {name:?} in what was exported");
    }
}

#[test]
fn an_otlp_endpoint_that_is_not_http_is_a_usage_error() {
    let output = tributary()
        .args([
            "ask",
            "--otlp-endpoint",
            "ftp://collector:21",
            "Is it raining?",
        ])
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("must be an http or https URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_collector_that_is_down_costs_a_warning_not_the_answer() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let output = tributary()
        .arg("ask")
        .args(FAST)
        .args([
            "--otlp-endpoint",
            &format!("http://127.0.0.1:{port}"),
            "Is it raining in Paris?",
        ])
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("failed to export the spans"),
        "{}",
        stderr(&output)
    );
    // A sentence, not the SDK's debug dump of the HTTP client's error.
    for dump in ["InternalFailure", "reqwest::Error", "Err("] {
        assert!(!stderr(&output).contains(dump), "{}", stderr(&output));
    }
}

/// A span as the collector got it.
#[derive(Debug)]
struct Exported {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    /// The `service.name` of the process that sent it.
    service: String,
}

/// Every span in what the collector received, decoded from OTLP protobuf.
fn decode(received: &[Received]) -> Vec<Exported> {
    let mut spans = Vec::new();
    for request in received {
        let export = ExportTraceServiceRequest::decode(request.body.as_slice())
            .expect("an OTLP ExportTraceServiceRequest");
        for resource_spans in export.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref())
                .map(|value| format!("{:?}", value.value))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(Exported {
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        service: service.clone(),
                    });
                }
            }
        }
    }
    spans
}

#[test]
fn a_worker_process_continues_the_trace_of_the_job_it_runs() {
    let (url, received) = collector();
    let output = tributary()
        .arg("ask")
        .args(FAST)
        .args([
            "--executor",
            "processes",
            "--workers",
            "2",
            "--otlp-endpoint",
            &url,
            "Is it raining in Paris?",
        ])
        .output()
        .expect("run tributary ask");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let spans = decode(&received.lock().expect("the list"));
    let named =
        |name: &str| -> Vec<&Exported> { spans.iter().filter(|span| span.name == name).collect() };
    let jobs = named("pool.job");
    let worker_jobs = named("worker.job");
    assert!(!jobs.is_empty(), "the parent's job spans were exported");
    assert_eq!(
        worker_jobs.len(),
        jobs.len(),
        "each job's span in the worker process was exported too"
    );
    for worker_job in worker_jobs {
        let parent = jobs
            .iter()
            .find(|job| job.span_id == worker_job.parent_span_id)
            .expect("a worker's span is the child of the parent's pool.job span");
        assert_eq!(
            worker_job.trace_id, parent.trace_id,
            "one trace across the processes"
        );
        assert!(
            worker_job.service.contains("tributary"),
            "{}",
            worker_job.service
        );
    }
}
