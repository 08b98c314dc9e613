//! Benchmark: hedged requests against a heavy latency tail, and the circuit breaker against a source that is
//! down. Each figure is a ratio from one run, on the simulated services on loopback.
//!
//! Run with `cargo bench -p tributary-batch --bench resilience` (add `-- --quick` for a short run that only checks
//! the benchmark works).
//!
//! - **Hedging**: every service usually answers in about 20 ms, but 3% of requests stall for 200 ms (the
//!   simulator's `Latency::Stalls`: a request's p99 is 10 × its p50). The same questions are asked one at a time,
//!   each asking its three sources at once, without hedging and with `hedge = "p95"` (budget 10%), after the same
//!   warm-up. Target: the ask p99 cut at least 2× for at most 10% extra requests. Then the same with a smooth
//!   tail of the same p99/p50 (log-normal, sigma 0.99), where a hedge sent at p95 waits longer before it helps.
//! - **Circuit breaker**: the news service hangs; a batch (the real pipeline, 64 questions fetching at once, the
//!   default timeouts: 2 s per attempt, 5 s per source) runs without and with the breaker (the agent's default: 10 s window, 5 calls, 50%, 5 s
//!   cool-down, 2 probes). Target: throughput with it at least 5× without. Then recovery: news is down (nothing
//!   listens), questions keep coming until its circuit opens, a healthy service starts on its address, and the
//!   time until the circuit closes is measured. Target: within the cool-down (plus the probes' own time).

use std::io::Cursor;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{CircuitState, ClientOptions, HedgeDelay, HedgePolicy, SourceClient};
use tributary_agent::infer::InferenceCost;
use tributary_agent::{Agent, AgentSettings, Question, Source, SourcesConfig};
use tributary_batch::{
    BatchInput, BatchSettings, BatchStats, InputFormat, Shutdown, Store, run_batch,
};
use tributary_sim::{Fault, Latency, ServiceBehavior, SimConfig, SimServer, cities, city_named_in};
use url::Url;

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        hedging(
            quick,
            Latency::Stalls {
                typical: Duration::from_millis(20),
                stall: Duration::from_millis(200),
                share: 0.03,
            },
            "~20 ms, 3% of requests stall for 200 ms",
        )
        .await;
        // The same p99/p50 ratio from a smooth tail: log-normal, sigma 0.99 (p99 = e^(2.326 x 0.99) = 10 x p50).
        hedging(
            quick,
            Latency::LogNormal {
                median: Duration::from_millis(20),
                sigma: 0.99,
            },
            "log-normal, median 20 ms, p99 200 ms",
        )
        .await;
        breaker_throughput(quick).await;
        breaker_recovery().await;
    });
}

/// `count` distinct questions every source applies to, from `offset`.
fn questions(offset: usize, count: usize) -> Vec<String> {
    let cities = cities();
    (offset..offset + count)
        .map(|index| {
            let city = cities[index % cities.len()].name;
            format!("Weather in {city} and news about topic{index}?")
        })
        .collect()
}

fn agent(sources: Vec<Source>, settings: AgentSettings) -> Agent {
    let pool =
        CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
    let client = SourceClient::new(ClientOptions::default()).expect("client");
    Agent::new(client, Executor::from_pool(pool), sources, settings)
}

fn settings() -> AgentSettings {
    AgentSettings {
        inference_cost: InferenceCost::free(),
        places: Arc::new(city_named_in),
        ..AgentSettings::default()
    }
}

fn percentile(sorted: &[f64], percentile: f64) -> f64 {
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn hedging(quick: bool, latency: Latency, tail: &str) {
    let (warm_up, count) = if quick { (40, 200) } else { (100, 2_000) };
    let behavior = ServiceBehavior::healthy(latency);
    let services = SimServer::start(
        "127.0.0.1:0".parse().expect("address"),
        SimConfig {
            weather: behavior,
            news: behavior,
            kb: behavior,
            ..SimConfig::instant()
        },
    )
    .await
    .expect("start the simulator");
    let base = Url::parse(&services.base_url()).expect("url");
    println!(
        "hedging: every service {tail}; {count} questions asked one at a time, after {warm_up} to warm up"
    );
    let mut results = Vec::new();
    for hedge in [None, Some(HedgePolicy::new(HedgeDelay::Percentile(95)))] {
        let mut sources = SourcesConfig::all_kinds_at(&base).sources;
        for source in &mut sources {
            // Every ask must reach the services: no answer from the cache.
            source.spec.cache_ttl = None;
            source.spec.hedge = hedge;
        }
        let agent = agent(sources, settings());
        for question in questions(0, warm_up) {
            agent.ask(&Question::new(&question).expect("valid")).await;
        }
        let mut elapsed = Vec::with_capacity(count);
        let (mut requests, mut hedges) = (0u64, 0u64);
        for question in questions(warm_up, count) {
            let run = agent.ask(&Question::new(&question).expect("valid")).await;
            elapsed.push(run.report.elapsed_ms);
            for source in &run.report.sources {
                requests += u64::from(source.attempts);
                hedges += u64::from(source.hedges);
            }
        }
        elapsed.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&elapsed, 50.0), percentile(&elapsed, 99.0));
        let extra = hedges as f64 / (requests - hedges) as f64;
        println!(
            "  {:<10} ask p50 {p50:>6.1} ms, p99 {p99:>6.1} ms; {requests} requests, {hedges} hedges ({:.1}% extra)",
            if hedge.is_some() {
                "hedge p95"
            } else {
                "no hedge"
            },
            extra * 100.0
        );
        results.push((p99, extra));
        agent.executor().shutdown().await;
    }
    let (plain_p99, _) = results[0];
    let (hedged_p99, extra) = results[1];
    println!(
        "  hedging cuts the ask p99 {:.2}x (target >= 2x) for {:.1}% extra requests (target <= 10%)\n",
        plain_p99 / hedged_p99,
        extra * 100.0
    );
    services.shutdown().await;
}

async fn breaker_throughput(quick: bool) {
    // Ten waves of 64 questions without the breaker (each waits out news's 5 s), so the run stays under a minute.
    let count = if quick { 128 } else { 640 };
    let services = SimServer::start(
        "127.0.0.1:0".parse().expect("address"),
        SimConfig {
            news: ServiceBehavior::healthy(Latency::Fixed(Duration::from_millis(5)))
                .with_fault(Fault::Hang, 1.0),
            ..SimConfig::instant()
        },
    )
    .await
    .expect("start the simulator");
    let base = Url::parse(&services.base_url()).expect("url");
    println!(
        "circuit breaker: news hangs; a batch of {count} questions, 64 fetching at once, the default timeouts \
         (2 s per attempt, 5 s per source)"
    );
    let mut throughputs = Vec::new();
    for breaker in [false, true] {
        let mut sources = SourcesConfig::all_kinds_at(&base).sources;
        for source in &mut sources {
            if !breaker {
                source.spec.breaker = None;
            }
        }
        let agent = agent(sources, settings());
        let batch = BatchSettings {
            io_concurrency: NonZeroUsize::new(64).expect("64"),
            ..BatchSettings::for_workers(NonZeroUsize::new(2).expect("2"))
        };
        let directory = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&directory.path().join("answers.db")).expect("store");
        let text = questions(0, count).join("\n");
        let input = BatchInput::from_reader(Cursor::new(text.into_bytes()), InputFormat::Text);
        let started = Instant::now();
        run_batch(
            &agent,
            &batch,
            input,
            store,
            Arc::new(BatchStats::new()),
            Shutdown::new(),
        )
        .await
        .expect("the batch runs");
        let elapsed = started.elapsed();
        let throughput = count as f64 / elapsed.as_secs_f64();
        let circuit = agent
            .client()
            .circuits()
            .into_iter()
            .find(|circuit| circuit.source == "news");
        println!(
            "  {:<12} {:>7.1} questions/s ({count} in {:.1} s; news circuit: {})",
            if breaker { "breaker" } else { "no breaker" },
            throughput,
            elapsed.as_secs_f64(),
            circuit.map_or("none".to_owned(), |circuit| format!(
                "{}, opened {} time(s)",
                circuit.state, circuit.opened
            ))
        );
        throughputs.push(throughput);
        agent.executor().shutdown().await;
    }
    println!(
        "  the breaker multiplies batch throughput {:.1}x (target >= 5x)\n",
        throughputs[1] / throughputs[0]
    );
    services.shutdown().await;
}

async fn breaker_recovery() {
    // An address nothing listens on: news is down (connection refused) until a service starts there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let news_address: SocketAddr = listener.local_addr().expect("address");
    drop(listener);
    let others = SimServer::start(
        "127.0.0.1:0".parse().expect("address"),
        SimConfig::instant(),
    )
    .await
    .expect("start the simulator");
    let base = Url::parse(&others.base_url()).expect("url");
    let news_url = Url::parse(&format!("http://{news_address}")).expect("url");
    let mut sources = SourcesConfig::all_kinds_at(&base).sources;
    for source in &mut sources {
        source.spec.cache_ttl = None;
        if source.name() == "news" {
            source.spec.base_url = news_url.clone();
        }
    }
    let cool_down = sources[0].spec.breaker.expect("on by default").cool_down;
    let agent = agent(sources, settings());
    let news_state = |agent: &Agent| {
        agent
            .client()
            .circuits()
            .into_iter()
            .find(|circuit| circuit.source == "news")
            .map(|circuit| circuit.state)
    };
    // A question every 50 ms until news's circuit opens.
    let mut index = 0;
    while news_state(&agent) != Some(CircuitState::Open) {
        agent
            .ask(&Question::new(&questions(index, 1)[0]).expect("valid"))
            .await;
        index += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = Instant::now();
    println!(
        "circuit breaker recovery: news down, its circuit opened after {index} question(s); the service starts \
         again 1 s later"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let news = SimServer::start(news_address, SimConfig::instant())
        .await
        .expect("start news on its old address");
    let recovered = Instant::now();
    while news_state(&agent) != Some(CircuitState::Closed) {
        agent
            .ask(&Question::new(&questions(index, 1)[0]).expect("valid"))
            .await;
        index += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if recovered.elapsed() > Duration::from_secs(60) {
            println!("  the circuit did not close within 60 s");
            break;
        }
    }
    println!(
        "  closed {:.2} s after the source recovered ({:.2} s after it opened; cool-down {} s): {}\n",
        recovered.elapsed().as_secs_f64(),
        opened.elapsed().as_secs_f64(),
        cool_down.as_secs(),
        if recovered.elapsed() <= cool_down + Duration::from_millis(500) {
            "within the cool-down"
        } else {
            "LATER than the cool-down"
        }
    );
    agent.executor().shutdown().await;
    news.shutdown().await;
    others.shutdown().await;
}
