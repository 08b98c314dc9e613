//! Benchmark: 1,000 concurrent requests through [`SourceClient`] to a loopback service with a fixed 200 ms latency.
//!
//! Every request waits 200 ms on the server, and they all run at once, so an ideal run takes 200 ms; whatever is
//! above that is our orchestration overhead (connection set-up, the client's retry/timeout machinery, scheduling
//! 1,000 tasks on a 2-core machine). The first round opens the connections (cold); later rounds reuse them from the
//! pool (warm).
//!
//! Run: `cargo bench -p tributary --bench sources`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tributary::group::Deadline;
use tributary::source::{ClientOptions, SourceClient, SourceRequest, SourceSpec};
use url::Url;

/// Requests in flight together.
const CONCURRENT_REQUESTS: usize = 1_000;
/// What every request costs on the server.
const SERVICE_LATENCY: Duration = Duration::from_millis(200);
/// The first round is cold (connects); the rest reuse pooled connections.
const ROUNDS: usize = 5;
/// Pending connections the server's listener queues before refusing: above the fan-out, so that the burst of
/// connects in the cold round is not dropped and retried by the kernel (which costs whole seconds).
const ACCEPT_BACKLOG: u32 = 4_096;

fn main() {
    let address = start_service();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(run_rounds(address));
}

/// The fixed-latency service, on its own runtime and thread so that the client's measurements include only the
/// client's own scheduling. Lives until the process exits.
fn start_service() -> SocketAddr {
    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("service runtime");
        runtime.block_on(async move {
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.1:0".parse().expect("address"))
                .expect("bind");
            let listener = socket.listen(ACCEPT_BACKLOG).expect("listen");
            address_sender
                .send(listener.local_addr().expect("local address"))
                .expect("send address");
            let router = Router::new().route(
                "/weather",
                get(|| async {
                    tokio::time::sleep(SERVICE_LATENCY).await;
                    axum::Json(serde_json::json!({"city": "Lyon", "temperature": 21}))
                }),
            );
            axum::serve(listener, router).await.expect("serve");
        });
    });
    address_receiver.recv().expect("service address")
}

async fn run_rounds(address: SocketAddr) {
    let client = SourceClient::new(ClientOptions::default()).expect("client");
    let base_url = Url::parse(&format!("http://{address}")).expect("url");
    let mut spec = SourceSpec::new("weather", base_url);
    // No cache: identical requests would be coalesced into one, which is not what this measures.
    spec.cache_ttl = None;
    spec.timeout = Duration::from_secs(10);
    spec.retries = 0;

    println!(
        "{CONCURRENT_REQUESTS} concurrent requests, {} ms service latency, {} cores",
        SERVICE_LATENCY.as_millis(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("round  pool   total(ms)  overhead(ms)  p50(ms)  p99(ms)  max(ms)  failed");
    for round in 1..=ROUNDS {
        let report = run_round(&client, &spec).await;
        let total = report.total.as_secs_f64() * 1e3;
        println!(
            "{round:>5}  {:<5}  {total:>9.1}  {:>12.1}  {:>7.1}  {:>7.1}  {:>7.1}  {:>6}",
            if round == 1 { "cold" } else { "warm" },
            total - SERVICE_LATENCY.as_secs_f64() * 1e3,
            report.percentile(0.50),
            report.percentile(0.99),
            report.percentile(1.0),
            report.failed,
        );
    }
}

struct RoundReport {
    total: Duration,
    /// Per-request latencies in milliseconds, sorted.
    latencies_ms: Vec<f64>,
    failed: usize,
}

impl RoundReport {
    /// The nearest-rank percentile, `quantile` in `0.0..=1.0`.
    fn percentile(&self, quantile: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let rank = (quantile * self.latencies_ms.len() as f64).ceil() as usize;
        self.latencies_ms[rank.clamp(1, self.latencies_ms.len()) - 1]
    }
}

/// All requests at once, one task each (so both cores drive them), every one inside the same deadline.
async fn run_round(client: &SourceClient, spec: &SourceSpec) -> RoundReport {
    let deadline = Deadline::after(Duration::from_secs(30));
    let started = Instant::now();
    let mut requests = JoinSet::new();
    for _ in 0..CONCURRENT_REQUESTS {
        let client = client.clone();
        let spec = spec.clone();
        requests.spawn(async move {
            let request_started = Instant::now();
            let result = client
                .fetch(&spec, &SourceRequest::new("/weather"), deadline)
                .await;
            (request_started.elapsed(), result.is_ok())
        });
    }
    let mut latencies_ms = Vec::with_capacity(CONCURRENT_REQUESTS);
    let mut failed = 0;
    while let Some(joined) = requests.join_next().await {
        let (latency, ok) = joined.expect("request task panicked");
        if ok {
            latencies_ms.push(latency.as_secs_f64() * 1e3);
        } else {
            failed += 1;
        }
    }
    let total = started.elapsed();
    latencies_ms.sort_by(f64::total_cmp);
    RoundReport {
        total,
        latencies_ms,
        failed,
    }
}
