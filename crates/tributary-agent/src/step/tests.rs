//! The kind of each failure path, end to end through `Agent::ask`: the simulated services' faults, a port nobody
//! listens on, a server that hangs up, a rate limit, an inference cut short. Every driver decides by these kinds
//! (a hint, a metric label, a badge), so each path is pinned to its kind here.

use std::num::NonZeroUsize;
use std::time::Duration;

use tributary::pool::{CpuPool, Executor, PoolConfig};
use tributary::source::{ClientOptions, RateLimit, SourceClient};
use tributary_sim::{SimConfig, SimServer};
use url::Url;

use crate::infer::InferenceCost;
use crate::report::{AgentReport, AnswerFailure, AnswerStatus, SourceFailure, SourceStatus};
use crate::sources::Source;
use crate::test_support::simulator_agent_settings;
use crate::{Agent, AgentSettings, Question};

/// Names a city (weather applies), has keywords (news applies); kb always applies.
const QUESTION: &str = "What is the weather in Paris, and the news about structured concurrency?";

/// How a test's agent is set up: the services are the simulator's, each source's fault is a query parameter.
struct Setup {
    faults: Vec<(&'static str, &'static str)>,
    deadline: Duration,
    per_source_timeout: Duration,
    inference_cost: InferenceCost,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            faults: Vec::new(),
            deadline: Duration::from_secs(30),
            per_source_timeout: Duration::from_secs(30),
            inference_cost: InferenceCost::free(),
        }
    }
}

impl Setup {
    fn faults(faults: &[(&'static str, &'static str)]) -> Self {
        Self {
            faults: faults.to_vec(),
            ..Self::default()
        }
    }

    /// The agent on the simulated services, with `change` applied to its sources first.
    async fn agent_with(self, change: impl FnOnce(&mut Vec<Source>)) -> (Agent, SimServer) {
        let (services, mut sources, places) = simulator_agent_settings(SimConfig::instant()).await;
        change(&mut sources);
        let settings = AgentSettings {
            inference_cost: self.inference_cost,
            places,
            extra_query: self
                .faults
                .iter()
                .map(|(source, fault)| {
                    (
                        (*source).to_owned(),
                        vec![("fault".to_owned(), (*fault).to_owned())],
                    )
                })
                .collect(),
            deadline: self.deadline,
            per_source_timeout: self.per_source_timeout,
            ..AgentSettings::default()
        };
        let pool =
            CpuPool::new(PoolConfig::with_workers(NonZeroUsize::new(2).expect("2"))).expect("pool");
        let client = SourceClient::new(ClientOptions::default()).expect("client");
        (
            Agent::new(client, Executor::from_pool(pool), sources, settings),
            services,
        )
    }

    async fn ask_with(self, question: &str, change: impl FnOnce(&mut Vec<Source>)) -> AgentReport {
        let (agent, _services) = self.agent_with(change).await;
        agent
            .ask(&Question::new(question).expect("a valid question"))
            .await
            .report
    }

    async fn ask(self) -> AgentReport {
        self.ask_with(QUESTION, |_| {}).await
    }
}

/// `name`'s status, failure kind and HTTP status in `report`, checking that a failure kind comes with a message
/// and only then.
fn failure_of(
    report: &AgentReport,
    name: &str,
) -> (SourceStatus, Option<SourceFailure>, Option<u16>) {
    let source = report
        .sources
        .iter()
        .find(|source| source.name == name)
        .unwrap_or_else(|| panic!("{name} is reported: {report:#?}"));
    assert_eq!(
        source.error.is_some(),
        source.failure.is_some(),
        "a message exactly when a kind: {source:#?}"
    );
    (source.status, source.failure, source.http_status)
}

/// A free loopback port: bound, then released, so a connection to it is refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

#[tokio::test]
async fn a_source_that_answers_has_no_failure_and_neither_has_the_answer() {
    let report = Setup::default().ask().await;
    assert_eq!(report.status, AnswerStatus::Ok, "{report:#?}");
    assert_eq!(report.failure, None);
    for name in ["weather", "news", "kb"] {
        assert_eq!(failure_of(&report, name), (SourceStatus::Ok, None, None));
    }
}

#[tokio::test]
async fn a_server_error_is_http_status_with_its_code() {
    let report = Setup::faults(&[("news", "error")]).ask().await;
    assert_eq!(
        failure_of(&report, "news"),
        (
            SourceStatus::Failed,
            Some(SourceFailure::HttpStatus),
            Some(500)
        )
    );
    // The others answered: degraded, which is an answer, so the answer has no failure kind.
    assert_eq!(report.status, AnswerStatus::Degraded);
    assert_eq!(report.failure, None);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_malformed_and_one_too_big_is_body_too_large() {
    let report = Setup::faults(&[("news", "malformed"), ("kb", "huge")])
        .ask()
        .await;
    assert_eq!(
        failure_of(&report, "news"),
        (SourceStatus::Failed, Some(SourceFailure::Malformed), None)
    );
    assert_eq!(
        failure_of(&report, "kb"),
        (
            SourceStatus::Failed,
            Some(SourceFailure::BodyTooLarge),
            None
        )
    );
}

/// A hanging source is cut by its own bound (`timed_out`) or by the overall deadline (`deadline`): two
/// different fixes, told apart by which bound was the nearer one.
#[tokio::test]
async fn a_hanging_source_is_timed_out_by_its_own_bound_and_deadline_by_the_overall_one() {
    let own_bound = Setup {
        per_source_timeout: Duration::from_millis(300),
        ..Setup::faults(&[("news", "hang")])
    }
    .ask()
    .await;
    assert_eq!(
        failure_of(&own_bound, "news"),
        (SourceStatus::TimedOut, Some(SourceFailure::TimedOut), None)
    );

    let overall = Setup {
        deadline: Duration::from_millis(500),
        ..Setup::faults(&[("news", "hang")])
    }
    .ask()
    .await;
    assert_eq!(
        failure_of(&overall, "news"),
        (SourceStatus::TimedOut, Some(SourceFailure::Deadline), None)
    );
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_connect() {
    let port = closed_port();
    let report = Setup::default()
        .ask_with(QUESTION, |sources| {
            let news = sources
                .iter_mut()
                .find(|source| source.name() == "news")
                .expect("news");
            news.spec.base_url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
            news.spec.retries = 0;
        })
        .await;
    assert_eq!(
        failure_of(&report, "news"),
        (SourceStatus::Failed, Some(SourceFailure::Connect), None)
    );
}

/// A server that accepts the connection and closes it without answering: the connection was made, so this is
/// `transport`, not `connect`.
#[tokio::test]
async fn a_server_that_hangs_up_is_transport() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("its address");
    let hang_up = tokio::spawn(async move {
        loop {
            let Ok((connection, _)) = listener.accept().await else {
                return;
            };
            drop(connection);
        }
    });
    let report = Setup::default()
        .ask_with(QUESTION, |sources| {
            let news = sources
                .iter_mut()
                .find(|source| source.name() == "news")
                .expect("news");
            news.spec.base_url = Url::parse(&format!("http://{address}")).expect("url");
            news.spec.retries = 0;
        })
        .await;
    hang_up.abort();
    assert_eq!(
        failure_of(&report, "news"),
        (SourceStatus::Failed, Some(SourceFailure::Transport), None)
    );
}

/// One request an hour: the second question finds no slot before its deadline, and the request is not sent.
#[tokio::test]
async fn a_rate_limit_with_no_slot_before_the_deadline_is_rate_limited() {
    let (agent, _services) = Setup::default()
        .agent_with(|sources| {
            let news = sources
                .iter_mut()
                .find(|source| source.name() == "news")
                .expect("news");
            news.spec.rate_limit = Some(RateLimit {
                requests: 1,
                per: Duration::from_secs(3600),
            });
            // Every question reaches the limiter, none the cache.
            news.spec.cache_ttl = None;
        })
        .await;
    let question = Question::new(QUESTION).expect("a valid question");
    let first = agent.ask(&question).await.report;
    assert_eq!(failure_of(&first, "news"), (SourceStatus::Ok, None, None));
    let second = agent.ask(&question).await.report;
    assert_eq!(
        failure_of(&second, "news"),
        (SourceStatus::Failed, Some(SourceFailure::RateLimited), None)
    );
}

#[tokio::test]
async fn a_source_the_question_gives_nothing_to_look_up_is_skipped() {
    // No city the gazetteer knows: weather is not asked.
    let report = Setup::default()
        .ask_with("What is new about structured concurrency?", |_| {})
        .await;
    assert_eq!(
        failure_of(&report, "weather"),
        (SourceStatus::Skipped, Some(SourceFailure::Skipped), None)
    );
    assert_eq!(report.status, AnswerStatus::Ok, "{report:#?}");
}

/// Every source answered, and the deadline cut every inference: the sources say `inference_timed_out`, the answer
/// `no_inference_finished` (more time or workers is the fix, not the network).
#[tokio::test]
async fn inference_cut_by_the_deadline_is_inference_timed_out() {
    let report = Setup {
        deadline: Duration::from_millis(600),
        // Far more work than the deadline allows on any machine; the job stops when it is given up.
        inference_cost: InferenceCost::units(1 << 50),
        ..Setup::default()
    }
    .ask()
    .await;
    for name in ["weather", "news", "kb"] {
        assert_eq!(
            failure_of(&report, name),
            (
                SourceStatus::TimedOut,
                Some(SourceFailure::InferenceTimedOut),
                None
            )
        );
    }
    assert_eq!(report.failure, Some(AnswerFailure::NoInferenceFinished));
}

#[tokio::test]
async fn no_source_answering_fails_the_answer_as_no_source_answered() {
    let report = Setup::faults(&[
        ("weather", "malformed"),
        ("news", "malformed"),
        ("kb", "malformed"),
    ])
    .ask()
    .await;
    assert_eq!(report.status, AnswerStatus::Failed);
    assert_eq!(report.failure, Some(AnswerFailure::NoSourceAnswered));
}

#[tokio::test]
async fn a_required_source_that_fails_fails_the_answer_as_required_source_failed() {
    let report = Setup::faults(&[("kb", "malformed")])
        .ask_with(QUESTION, |sources| {
            for source in sources.iter_mut().filter(|source| source.name() == "kb") {
                source.required = true;
            }
        })
        .await;
    assert_eq!(report.status, AnswerStatus::Failed);
    assert_eq!(report.failure, Some(AnswerFailure::RequiredSourceFailed));
}
