//! The knowledge-base service: short articles about concurrency, searched with SQLite FTS5 and ranked by `bm25`.
//!
//! The articles live in `kb/articles/*.md` (a `# Title` line, a blank line, then the text) and are compiled into
//! the binary. At start-up they are loaded into an in-memory SQLite database with an FTS5 table using the Porter
//! stemmer and accent folding. SQLite calls block, so every query runs off the runtime threads (`tributary::group::blocking`).

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::cities::fold;
use super::error::ApiError;
use super::fault::Params;
use super::news::is_stop_word;

/// Results returned when the request has no `limit`.
const DEFAULT_LIMIT: usize = 5;
/// The largest `limit` accepted.
const MAX_LIMIT: usize = 50;
/// Column weights for `bm25()`: slug (not indexed), title, body. A title match counts five times a body match.
const RANK: &str = "bm25(articles, 0.0, 5.0, 1.0)";

/// The body of `GET /kb/search`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct KbAnswer {
    query: String,
    total: usize,
    results: Vec<Passage>,
}

/// One matching article.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Passage {
    id: String,
    title: String,
    text: String,
    /// A short extract around the matches, with matched terms in `[brackets]`.
    snippet: String,
    /// The negated `bm25()` rank: higher is better.
    score: f64,
}

/// The in-memory FTS5 database. Cloning shares the connection.
#[derive(Debug, Clone)]
pub(crate) struct KnowledgeBase {
    /// A std mutex: it is only locked inside a blocking call, never on a runtime thread or across an `.await`.
    connection: Arc<Mutex<Connection>>,
}

impl KnowledgeBase {
    /// Creates and fills the database. Blocking: call it off the runtime threads.
    pub(crate) fn build() -> Result<Self, rusqlite::Error> {
        let connection = Connection::open_in_memory()?;
        connection.execute_batch(
            "CREATE VIRTUAL TABLE articles USING fts5(
                 slug UNINDEXED, title, body,
                 tokenize = 'porter unicode61 remove_diacritics 2'
             );",
        )?;
        {
            let mut insert = connection
                .prepare("INSERT INTO articles (slug, title, body) VALUES (?1, ?2, ?3)")?;
            for (slug, source) in ARTICLES {
                let (title, body) = parse_article(source);
                insert.execute(params![slug, title, body])?;
            }
        }
        Ok(KnowledgeBase {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Answers `GET /kb/search?q=QUESTION[&limit=N]`.
    pub(crate) async fn answer(&self, params: &Params) -> Result<KbAnswer, ApiError> {
        let query = params
            .get("q")
            .map(|query| query.trim())
            .filter(|query| !query.is_empty());
        let query = query
            .ok_or_else(|| ApiError::missing_parameter("q"))?
            .to_owned();
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"
                    ))
                })?,
        };
        let Some(expression) = match_expression(&query) else {
            return Ok(KbAnswer {
                query,
                total: 0,
                results: Vec::new(),
            });
        };
        let connection = Arc::clone(&self.connection);
        let (total, results) = tributary::group::blocking("knowledge-base search", move || {
            let connection = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            search(&connection, &expression, limit)
        })
        .await
        .map_err(|error| ApiError::internal(format!("knowledge-base search task failed: {error}")))?
        .map_err(|error| ApiError::internal(format!("knowledge-base query failed: {error}")))?;
        Ok(KbAnswer {
            query,
            total,
            results,
        })
    }
}

/// Runs the ranked query and counts all matches. Blocking.
fn search(
    connection: &Connection,
    expression: &str,
    limit: usize,
) -> Result<(usize, Vec<Passage>), rusqlite::Error> {
    let total: i64 = connection.query_row(
        "SELECT count(*) FROM articles WHERE articles MATCH ?1",
        [expression],
        |row| row.get(0),
    )?;
    let sql = format!(
        "SELECT slug, title, body, snippet(articles, 2, '[', ']', '…', 24), {RANK}
         FROM articles WHERE articles MATCH ?1 ORDER BY {RANK}, slug LIMIT ?2"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let limit = i64::try_from(limit).expect("limit is at most MAX_LIMIT");
    let results = statement
        .query_map(params![expression, limit], |row| {
            let rank: f64 = row.get(4)?;
            Ok(Passage {
                id: row.get(0)?,
                title: row.get(1)?,
                text: row.get(2)?,
                snippet: row.get(3)?,
                score: (-rank * 10_000.0).round() / 10_000.0,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((usize::try_from(total).unwrap_or(0), results))
}

/// An FTS5 query matching any content word of the question: `"gil" OR "thread"`. Folding leaves only ASCII
/// letters and digits, so quoting cannot be broken out of. `None` when the question has no content words.
fn match_expression(question: &str) -> Option<String> {
    let folded = fold(question);
    let mut words: Vec<&str> = folded
        .split(' ')
        .filter(|word| !word.is_empty() && !is_stop_word(word))
        .collect();
    words.dedup();
    if words.is_empty() {
        return None;
    }
    Some(
        words
            .iter()
            .map(|word| format!("\"{word}\""))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// Splits `# Title\n\nbody` into title and body.
fn parse_article(source: &'static str) -> (&'static str, &'static str) {
    let (first_line, body) = source.split_once('\n').unwrap_or((source, ""));
    (first_line.trim_start_matches('#').trim(), body.trim())
}

/// Every article: (slug, Markdown source).
const ARTICLES: &[(&str, &str)] = &[
    ("amdahl", include_str!("kb/articles/amdahl.md")),
    (
        "async-context",
        include_str!("kb/articles/async-context.md"),
    ),
    ("async-locks", include_str!("kb/articles/async-locks.md")),
    ("backpressure", include_str!("kb/articles/backpressure.md")),
    (
        "blocking-the-loop",
        include_str!("kb/articles/blocking-the-loop.md"),
    ),
    (
        "bounded-queues",
        include_str!("kb/articles/bounded-queues.md"),
    ),
    ("caching", include_str!("kb/articles/caching.md")),
    (
        "cancellation-safety",
        include_str!("kb/articles/cancellation-safety.md"),
    ),
    ("cancellation", include_str!("kb/articles/cancellation.md")),
    (
        "circuit-breakers",
        include_str!("kb/articles/circuit-breakers.md"),
    ),
    (
        "connection-pools",
        include_str!("kb/articles/connection-pools.md"),
    ),
    ("coroutines", include_str!("kb/articles/coroutines.md")),
    ("deadlines", include_str!("kb/articles/deadlines.md")),
    ("deadlocks", include_str!("kb/articles/deadlocks.md")),
    (
        "event-loop-python-vs-tokio",
        include_str!("kb/articles/event-loop-python-vs-tokio.md"),
    ),
    ("event-loop", include_str!("kb/articles/event-loop.md")),
    (
        "fan-out-fan-in",
        include_str!("kb/articles/fan-out-fan-in.md"),
    ),
    (
        "free-threaded-python",
        include_str!("kb/articles/free-threaded-python.md"),
    ),
    ("futures", include_str!("kb/articles/futures.md")),
    ("gather", include_str!("kb/articles/gather.md")),
    ("gil", include_str!("kb/articles/gil.md")),
    (
        "graceful-degradation",
        include_str!("kb/articles/graceful-degradation.md"),
    ),
    (
        "hedged-requests",
        include_str!("kb/articles/hedged-requests.md"),
    ),
    ("idempotency", include_str!("kb/articles/idempotency.md")),
    (
        "interpreter-pools",
        include_str!("kb/articles/interpreter-pools.md"),
    ),
    ("io-vs-cpu", include_str!("kb/articles/io-vs-cpu.md")),
    (
        "latency-tails",
        include_str!("kb/articles/latency-tails.md"),
    ),
    ("littles-law", include_str!("kb/articles/littles-law.md")),
    (
        "load-shedding",
        include_str!("kb/articles/load-shedding.md"),
    ),
    ("pipelines", include_str!("kb/articles/pipelines.md")),
    (
        "process-pools",
        include_str!("kb/articles/process-pools.md"),
    ),
    (
        "race-conditions",
        include_str!("kb/articles/race-conditions.md"),
    ),
    (
        "rate-limiting",
        include_str!("kb/articles/rate-limiting.md"),
    ),
    (
        "retries-backoff",
        include_str!("kb/articles/retries-backoff.md"),
    ),
    (
        "run-in-executor",
        include_str!("kb/articles/run-in-executor.md"),
    ),
    ("rust-futures", include_str!("kb/articles/rust-futures.md")),
    ("semaphores", include_str!("kb/articles/semaphores.md")),
    (
        "single-flight",
        include_str!("kb/articles/single-flight.md"),
    ),
    (
        "spawn-blocking",
        include_str!("kb/articles/spawn-blocking.md"),
    ),
    (
        "structured-concurrency",
        include_str!("kb/articles/structured-concurrency.md"),
    ),
    ("taskgroup", include_str!("kb/articles/taskgroup.md")),
    ("tasks", include_str!("kb/articles/tasks.md")),
    ("thread-pools", include_str!("kb/articles/thread-pools.md")),
    (
        "threads-vs-async",
        include_str!("kb/articles/threads-vs-async.md"),
    ),
    (
        "timeouts-in-practice",
        include_str!("kb/articles/timeouts-in-practice.md"),
    ),
    ("timeouts", include_str!("kb/articles/timeouts.md")),
    (
        "work-stealing",
        include_str!("kb/articles/work-stealing.md"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(knowledge_base: &KnowledgeBase, question: &str) -> KbAnswer {
        let params = Params::from([("q".to_owned(), question.to_owned())]);
        knowledge_base
            .answer(&params)
            .await
            .expect("a valid question")
    }

    #[test]
    fn articles_are_many_short_and_titled() {
        assert!(ARTICLES.len() >= 40, "{}", ARTICLES.len());
        for (slug, source) in ARTICLES {
            let (title, body) = parse_article(source);
            assert!(
                source.starts_with("# ") && !title.is_empty(),
                "{slug} has no title"
            );
            let words = body.split_whitespace().count();
            assert!((110..=260).contains(&words), "{slug} has {words} words");
        }
    }

    #[tokio::test]
    async fn questions_find_the_right_article_first() {
        let knowledge_base = KnowledgeBase::build().expect("the database builds");
        for (question, expected) in [
            ("What is the GIL?", "gil"),
            ("how does a circuit breaker work", "circuit-breakers"),
            (
                "exponential backoff with jitter for retries",
                "retries-backoff",
            ),
            ("Amdahl's law speedup", "amdahl"),
            ("asyncio.gather return_exceptions", "gather"),
            (
                "InterpreterPoolExecutor subinterpreters",
                "interpreter-pools",
            ),
        ] {
            let answer = ask(&knowledge_base, question).await;
            assert_eq!(
                answer.results.first().map(|passage| passage.id.as_str()),
                Some(expected),
                "{question}"
            );
            assert!(answer.results[0].score > 0.0);
            assert!(
                answer
                    .results
                    .windows(2)
                    .all(|pair| pair[0].score >= pair[1].score)
            );
        }
    }

    #[tokio::test]
    async fn limits_and_empty_questions() {
        let knowledge_base = KnowledgeBase::build().expect("the database builds");
        assert_eq!(
            ask(&knowledge_base, "thread pool").await.results.len(),
            DEFAULT_LIMIT
        );
        assert_eq!(
            ask(&knowledge_base, "what is the?").await.total,
            0,
            "only stop words"
        );
        assert_eq!(
            ask(&knowledge_base, "\" OR NOT *").await.total,
            0,
            "FTS5 syntax is not interpreted"
        );
        for limit in ["0", "51", "many"] {
            let params = Params::from([
                ("q".to_owned(), "gil".to_owned()),
                ("limit".to_owned(), limit.to_owned()),
            ]);
            let error = knowledge_base.answer(&params).await.expect_err("bad limit");
            assert_eq!(error.status.as_u16(), 400, "{limit}");
        }
    }
}
