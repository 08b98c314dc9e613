//! The pipeline against the simulated services on loopback, with free inference: resume, duplicates,
//! malformed lines, backpressure and a failing store.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{ClientOptions, SourceClient};
use tributary_sim::{Fault, SimConfig, SimServer, cities};

use super::*;
use crate::test_support::simulator_agent_settings;
use tributary_agent::infer::InferenceCost;
use tributary_agent::{Agent, AgentSettings};

struct Fixture {
    agent: Agent,
    _services: SimServer,
    directory: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with(SimConfig::instant(), AgentSettings::default()).await
}

/// A fixture on services behaving as `config` says, with `settings`' timeouts and free inference.
async fn fixture_with(config: SimConfig, settings: AgentSettings) -> Fixture {
    let (services, sources, places) = simulator_agent_settings(config).await;
    let settings = AgentSettings {
        inference_cost: InferenceCost::free(),
        places,
        ..settings
    };
    let pool =
        CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
    let client = SourceClient::new(ClientOptions::default()).expect("client");
    Fixture {
        agent: Agent::new(client, Executor::from_pool(pool), sources, settings),
        _services: services,
        directory: tempfile::tempdir().expect("temp dir"),
    }
}

/// `count` questions that every source applies to (a known city, some keywords).
fn questions(count: usize) -> String {
    let cities = cities();
    (0..count)
        .map(|index| {
            format!(
                "Weather in {} and news about topic{index}?\n",
                cities[index % cities.len()].name
            )
        })
        .collect()
}

fn small_settings() -> BatchSettings {
    BatchSettings {
        io_concurrency: NonZeroUsize::new(4).expect("4"),
        infer_concurrency: NonZeroUsize::new(2).expect("2"),
        store_batch_rows: NonZeroUsize::new(8).expect("8"),
        store_batch_interval: Duration::from_millis(20),
    }
}

impl Fixture {
    fn db(&self) -> std::path::PathBuf {
        self.directory.path().join("answers.db")
    }

    async fn run(&self, input: &str, format: InputFormat) -> Result<BatchSummary, BatchError> {
        let store = Store::open(&self.db()).expect("open the store");
        let input =
            BatchInput::from_reader(std::io::Cursor::new(input.to_owned().into_bytes()), format);
        run_batch(
            &self.agent,
            &small_settings(),
            input,
            store,
            Arc::new(BatchStats::new()),
            Shutdown::new(),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_question_is_stored_once_and_a_rerun_skips_them_all() {
    let fixture = fixture().await;
    let input = questions(40);

    let first = fixture
        .run(&input, InputFormat::Text)
        .await
        .expect("first run");
    assert_eq!(first.stats.ok, 40, "{:?}", first.stats);
    assert_eq!((first.stats.done, first.in_store.total()), (40, 40));

    let second = fixture
        .run(&input, InputFormat::Text)
        .await
        .expect("second run");
    assert_eq!((second.stats.skipped, second.stats.stored()), (40, 0));
    assert_eq!(second.in_store.total(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_is_finished_by_the_next_without_duplicates() {
    let fixture = fixture().await;
    let input = questions(30);
    // The first run sees only the first 12 lines, as if it had been killed there.
    let first_part: String = input
        .lines()
        .take(12)
        .map(|line| format!("{line}\n"))
        .collect();
    fixture
        .run(&first_part, InputFormat::Text)
        .await
        .expect("cut-short run");

    let rest = fixture.run(&input, InputFormat::Text).await.expect("rerun");
    assert_eq!((rest.stats.skipped, rest.stats.stored()), (12, 18));
    assert_eq!(rest.in_store.total(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_failed_rows_and_the_batch_goes_on() {
    let fixture = fixture().await;
    let input = "{\"id\": \"a\", \"question\": \"Weather in Paris?\"}\n\
                 {\"id\": \"b\", \"question\": \n\
                 \n\
                 {\"id\": \"c\", \"question\": \"\"}\n\
                 {\"id\": \"d\", \"question\": \"What is the GIL?\"}\n";
    let summary = fixture
        .run(input, InputFormat::JsonLines)
        .await
        .expect("run");
    assert_eq!(summary.stats.invalid, 2);
    assert_eq!(
        (
            summary.in_store.ok + summary.in_store.degraded,
            summary.in_store.failed
        ),
        (2, 2)
    );

    let mut export = Vec::new();
    let reader = StoreReader::open(&fixture.db()).expect("open");
    reader.export_jsonl(&mut export).expect("export");
    let rows: Vec<serde_json::Value> = String::from_utf8(export)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    let line_two = rows
        .iter()
        .find(|row| row["line"] == 2)
        .expect("line 2 is stored");
    assert_eq!(
        line_two["id"],
        serde_json::Value::Null,
        "no id could be read"
    );
    assert!(
        line_two["error"]
            .as_str()
            .expect("error")
            .starts_with("line 2: malformed JSON")
    );
    assert_eq!(line_two["failure"], "unusable_line");
    let empty = rows
        .iter()
        .find(|row| row["id"] == "c")
        .expect("c is stored");
    assert_eq!(
        (
            empty["status"].as_str(),
            empty["line"].as_u64(),
            empty["failure"].as_str()
        ),
        (Some("failed"), Some(4), Some("unusable_line"))
    );
    // An answered row has no failure kind.
    let answered = rows
        .iter()
        .find(|row| row["id"] == "a")
        .expect("a is stored");
    assert_eq!(answered["failure"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_id_is_answered_once_and_every_line_is_accounted_for() {
    let fixture = fixture().await;
    let input: String = (0..20)
        .map(|index| {
            format!(
                "{{\"id\": {}, \"question\": \"Weather in Paris, take {index}?\"}}\n",
                index % 5
            )
        })
        .collect();
    let summary = fixture
        .run(&input, InputFormat::JsonLines)
        .await
        .expect("run");
    assert_eq!(summary.in_store.total(), 5);
    assert_eq!(summary.stats.stored(), 5);
    assert_eq!(summary.stats.skipped + summary.stats.duplicates, 15);
    assert_eq!(summary.stats.done, 20);
}

/// A sink that writes nothing and takes its time, and checks on every batch how many questions are between the
/// reader and itself.
#[derive(Debug)]
struct SlowSink {
    stats: Arc<BatchStats>,
    most_in_flight: Arc<AtomicU64>,
    fail_after_batches: Option<u64>,
    batches: u64,
}

impl AnswerSink for SlowSink {
    fn write_batch(&mut self, rows: &[AnswerRow]) -> Result<Written, StoreError> {
        self.most_in_flight
            .fetch_max(self.stats.snapshot().in_flight(), Ordering::Relaxed);
        // Slowness, not synchronisation: the stages before must wait for the store.
        std::thread::sleep(Duration::from_millis(3));
        self.batches += 1;
        if self
            .fail_after_batches
            .is_some_and(|limit| self.batches > limit)
        {
            return Err(StoreError::Write(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".to_owned()),
            )));
        }
        let mut written = Written::default();
        written.inserted.ok = rows.len() as u64;
        Ok(written)
    }
}

async fn run_with_slow_sink(
    fixture: &Fixture,
    lines: usize,
    fail_after_batches: Option<u64>,
) -> (Result<SlowSink, BatchError>, u64, Arc<BatchStats>) {
    let stats = Arc::new(BatchStats::new());
    let most_in_flight = Arc::new(AtomicU64::new(0));
    let sink = SlowSink {
        stats: stats.clone(),
        most_in_flight: most_in_flight.clone(),
        fail_after_batches,
        batches: 0,
    };
    let input = BatchInput::from_reader(
        std::io::Cursor::new(questions(lines).into_bytes()),
        InputFormat::Text,
    );
    let result = stages::run_stages(
        &fixture.agent,
        &small_settings(),
        input,
        sink,
        |_, _| Ok(false),
        stats.clone(),
        Shutdown::new(),
    )
    .await;
    (result, most_in_flight.load(Ordering::Relaxed), stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_holds_the_reader_back() {
    let fixture = fixture().await;
    let lines = 600;
    let (result, most_in_flight, stats) = run_with_slow_sink(&fixture, lines, None).await;
    result.expect("run");
    let bound = small_settings().max_in_flight() as u64;
    assert!(
        most_in_flight <= bound,
        "{most_in_flight} questions were in flight, over the bound of {bound}"
    );
    // Without backpressure the reader would have read all 600 lines before the first slow write.
    assert!(bound < lines as u64 / 4);
    assert_eq!(stats.snapshot().ok, lines as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_stops_the_run_with_its_error() {
    let fixture = fixture().await;
    let (result, _, stats) = run_with_slow_sink(&fixture, 2_000, Some(3)).await;
    let error = result.expect_err("the store failed");
    assert!(
        matches!(&error, BatchError::Store(store) if store.is_disk_full()),
        "{error:?}"
    );
    // The reader stopped soon after: it did not read the whole input.
    assert!(stats.snapshot().read < 2_000, "{:?}", stats.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_requested_before_the_start_reads_nothing() {
    let fixture = fixture().await;
    let store = Store::open(&fixture.db()).expect("open the store");
    let shutdown = Shutdown::new();
    shutdown.stop_reading();
    let input = BatchInput::from_reader(
        std::io::Cursor::new(questions(50).into_bytes()),
        InputFormat::Text,
    );
    let stats = Arc::new(BatchStats::new());
    let summary = run_batch(
        &fixture.agent,
        &small_settings(),
        input,
        store,
        stats,
        shutdown,
    )
    .await
    .expect("run");
    assert_eq!((summary.stats.read, summary.in_store.total()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoning_drops_what_is_in_flight_commits_the_rest_and_a_rerun_finishes() {
    // The weather answers at once; the news hangs far longer than the test may take, so every question is in
    // flight until it is abandoned.
    let mut config = SimConfig::instant();
    config.news = config.news.with_fault(Fault::Hang, 1.0);
    let hour = Duration::from_secs(3600);
    let settings = AgentSettings {
        per_source_timeout: hour,
        deadline: hour,
        ..AgentSettings::default()
    };
    let fixture = fixture_with(config, settings).await;
    let input = questions(20);
    // A line that cannot be used (too long) is stored as failed without fetching: committed despite the abandon.
    let input = format!("\n{}\n{input}", "x".repeat(5_000));
    let store = Store::open(&fixture.db()).expect("open the store");
    let stats = Arc::new(BatchStats::new());
    let shutdown = Shutdown::new();
    let batch_settings = small_settings();
    // Boxed: the whole pipeline's state machine is large, and the test thread's stack is not.
    let run = Box::pin(run_batch(
        &fixture.agent,
        &batch_settings,
        BatchInput::from_reader(
            std::io::Cursor::new(input.clone().into_bytes()),
            InputFormat::Text,
        ),
        store,
        stats.clone(),
        shutdown.clone(),
    ));
    let abandon = async {
        // Wait until questions are being fetched (they hang there), then stop in two steps.
        while stats.snapshot().fetching == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.stop_reading();
        shutdown.abandon_in_flight();
    };
    let (summary, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(run, abandon)
    })
    .await
    .expect("an abandoned run ends without waiting for its hanging sources");
    let summary = summary.expect("an abandoned run ends like any other");
    let stats = summary.stats;
    assert!(stats.abandoned > 0, "{stats:?}");
    assert_eq!(stats.read, stats.abandoned + stats.stored(), "{stats:?}");
    assert_eq!(
        (
            stats.fetching,
            stats.inferring,
            stats.queued_for_fetch,
            stats.queued_for_infer,
            stats.queued_for_store
        ),
        (0, 0, 0, 0, 0),
        "every gauge is empty once the run has ended: {stats:?}"
    );
    assert_eq!(summary.in_store.total(), stats.stored());

    // The rerun (with the news healthy again) answers exactly what was abandoned or never read.
    let fixture = Fixture {
        directory: fixture.directory,
        ..fixture_with(SimConfig::instant(), AgentSettings::default()).await
    };
    let rerun = fixture.run(&input, InputFormat::Text).await.expect("rerun");
    assert_eq!(rerun.stats.skipped, stats.stored(), "{:?}", rerun.stats);
    assert_eq!(
        rerun.in_store.total(),
        21,
        "20 questions and one unusable line"
    );
}
