//! The answers database: SQLite in WAL mode, one row per input id, written in batched transactions.
//!
//! Every method here blocks; the pipeline calls them from its own threads, never from the async runtime.
//!
//! # Schema (version 1, in `PRAGMA user_version`)
//!
//! ```sql
//! CREATE TABLE answers (
//!     id         TEXT PRIMARY KEY NOT NULL,  -- the input id (see RecordId)
//!     line       INTEGER NOT NULL,           -- the input line it came from
//!     question   TEXT,                       -- NULL when the line had no readable question
//!     status     TEXT NOT NULL,              -- 'ok' | 'degraded' | 'failed'
//!     answer     TEXT NOT NULL,              -- JSON: the answer object, as `ask --json` prints it

//!     error      TEXT,                       -- why it failed or degraded; NULL when ok
//!     fetch_ms   REAL,                       -- wall time fetching every source (NULL: nothing fetched)
//!     infer_ms   REAL,                       -- CPU time of its inferences, summed (NULL: none ran)
//!     elapsed_ms REAL NOT NULL,              -- from its first fetch to its answer, queueing excluded
//!     stored_at  TEXT NOT NULL               -- UTC, RFC 3339
//! );
//! CREATE INDEX answers_by_line ON answers (line);
//! ```
//!
//! An ordinary rowid table, not `WITHOUT ROWID`: a row holds the whole answer object (about 1 KB, more with long
//! summaries), and SQLite keeps only about 1 KB of a `WITHOUT ROWID` row on its b-tree page before spilling the
//! rest to an overflow page of its own. Measured on 100,000 rows of about 1 KB: 114,208 pages `WITHOUT ROWID`
//! against 34,104 as a rowid table, and 8,800 against 11,300 rows a second. (Databases created before keep their
//! table as it is: the columns, and so the schema version, are the same.)
//!
//! # Durability
//! Rows are committed in transactions of up to a few hundred rows. WAL with `synchronous = NORMAL` survives
//! the process being killed at any moment (`kill -9` included): a transaction is either wholly in the database
//! or wholly absent, so a rerun finds every row exactly once or not at all. (A power cut may lose the last
//! transactions, never corrupt the file.) A failed write, such as a full disk, rolls its transaction back.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::pipeline::input::RecordId;
use crate::report::{AgentReport, AnswerStatus};

/// The schema version this code writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const CREATE_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS answers (
        id         TEXT PRIMARY KEY NOT NULL,
        line       INTEGER NOT NULL,
        question   TEXT,
        status     TEXT NOT NULL CHECK (status IN ('ok', 'degraded', 'failed')),
        answer     TEXT NOT NULL,
        error      TEXT,
        fetch_ms   REAL,
        infer_ms   REAL,
        elapsed_ms REAL NOT NULL,
        stored_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX IF NOT EXISTS answers_by_line ON answers (line);
";

/// One row of `answers`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRow {
    /// The input id: the primary key.
    pub id: RecordId,
    /// The input line it came from.
    pub line: u64,
    /// The question; `None` when the line held no readable one.
    pub question: Option<String>,
    /// How it ended.
    pub status: AnswerStatus,
    /// The `answer` column: the answer object, stored as JSON.
    pub answer: AgentReport,
    /// Why it failed, or which sources a degraded answer lacks and why.
    pub error: Option<String>,
    /// Wall time fetching every source (`None`: nothing was fetched).
    pub fetch_ms: Option<f64>,
    /// CPU time of its inferences, summed (`None`: none ran).
    pub infer_ms: Option<f64>,
    /// From its first fetch to its answer, queueing excluded.
    pub elapsed_ms: f64,
}

/// What one batch write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows added, by status.
    pub inserted: StoredCounts,
    /// Rows not added because their id was already stored.
    pub already_stored: u64,
}

/// Rows in the database by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoredCounts {
    pub ok: u64,
    pub degraded: u64,
    pub failed: u64,
}

/// The writer's connection to the answers database.
#[derive(Debug)]
pub struct Store {
    connection: Connection,
    path: PathBuf,
}

/// A read-only connection: "is this id stored?" (one index lookup per id, so that resuming a run of millions of
/// lines never holds their ids in memory), counts and the export. Safe to use while a batch writes.
#[derive(Debug)]
pub struct StoreReader {
    connection: Connection,
}

/// Why the answers database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("open the answers database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "use {}: it is not a tributary batch database (schema version {found}, expected {SCHEMA_VERSION})",
        path.display()
    )]
    ForeignSchema { path: PathBuf, found: i64 },
    #[error("write answers to the database")]
    Write(#[source] rusqlite::Error),
    /// An answer could not be encoded as JSON (a bug: every report encodes).
    #[error("encode an answer as json")]
    Encode(#[source] serde_json::Error),
    #[error("read the answers database")]
    Read(#[source] rusqlite::Error),
    #[error("write the export")]
    Export(#[source] io::Error),
}

impl StoredCounts {
    pub fn total(&self) -> u64 {
        self.ok + self.degraded + self.failed
    }

    fn add(&mut self, status: AnswerStatus) {
        match status {
            AnswerStatus::Ok => self.ok += 1,
            AnswerStatus::Degraded => self.degraded += 1,
            AnswerStatus::Failed => self.failed += 1,
        }
    }
}

impl StoreError {
    /// Whether the disk (or the database's size limit) is full: the user can free space and rerun.
    pub fn is_disk_full(&self) -> bool {
        let cause = match self {
            StoreError::Open { source, .. }
            | StoreError::Write(source)
            | StoreError::Read(source) => source,
            StoreError::ForeignSchema { .. } | StoreError::Encode(_) => return false,
            StoreError::Export(error) => return error.kind() == io::ErrorKind::StorageFull,
        };
        matches!(cause.sqlite_error_code(), Some(ErrorCode::DiskFull))
    }
}

impl Store {
    /// Opens the database at `path`, creating it (and its schema) if needed, in WAL mode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let connection = Connection::open(path).map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // Reading the version is the first real read: a file that is not SQLite fails here.
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open_error)?;
        let has_tables: bool = connection
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table')",
                [],
                |row| row.get(0),
            )
            .map_err(open_error)?;
        if version != SCHEMA_VERSION && (version != 0 || has_tables) {
            return Err(StoreError::ForeignSchema {
                path: path.to_owned(),
                found: version,
            });
        }
        let _mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open_error)?;
        connection
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(open_error)?;
        connection
            .execute_batch(CREATE_SCHEMA)
            .map_err(open_error)?;
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_error)?;
        Ok(Self {
            connection,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second, read-only connection, for resume checks while this one writes.
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        StoreReader::open(&self.path)
    }

    /// Inserts `rows` in one transaction. A row whose id is already stored is left as it is (first one wins).
    pub fn write_batch(&mut self, rows: &[AnswerRow]) -> Result<Written, StoreError> {
        let transaction = self.connection.transaction().map_err(StoreError::Write)?;
        let mut written = Written::default();
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO answers
                         (id, line, question, status, answer, error, fetch_ms, infer_ms, elapsed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO NOTHING",
                )
                .map_err(StoreError::Write)?;
            for row in rows {
                let answer = serde_json::to_string(&row.answer).map_err(StoreError::Encode)?;
                let changed = insert
                    .execute(params![
                        row.id.as_str(),
                        row.line as i64,
                        row.question,
                        row.status.as_str(),
                        answer,
                        row.error,
                        row.fetch_ms,
                        row.infer_ms,
                        row.elapsed_ms,
                    ])
                    .map_err(StoreError::Write)?;
                if changed == 1 {
                    written.inserted.add(row.status);
                } else {
                    written.already_stored += 1;
                }
            }
        }
        // Dropping an uncommitted transaction rolls it back, so an error above leaves the database unchanged.
        transaction.commit().map_err(StoreError::Write)?;
        Ok(written)
    }

    /// Rows by status, over the whole database (this run and earlier ones).
    pub fn counts(&self) -> Result<StoredCounts, StoreError> {
        count_by_status(&self.connection)
    }
}

impl StoreReader {
    /// Opens an existing answers database read-only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open_error)?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::ForeignSchema {
                path: path.to_owned(),
                found: version,
            });
        }
        Ok(Self { connection })
    }

    /// Rows by status, over the whole database.
    pub fn counts(&self) -> Result<StoredCounts, StoreError> {
        count_by_status(&self.connection)
    }

    /// Writes every row as one JSON object per line, in input-line order; returns the number of rows.
    /// Streams: one row in memory at a time.
    ///
    /// Each line is the stored answer object (what `ask --json` prints) with the row's `id`, `line`,
    /// `fetch_ms`, `infer_ms` and `stored_at` added.
    pub fn export_jsonl(&self, mut out: impl Write) -> Result<u64, StoreError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT id, line, question, status, answer, error, fetch_ms, infer_ms, elapsed_ms, stored_at
                 FROM answers ORDER BY line, id",
            )
            .map_err(StoreError::Read)?;
        let mut rows = statement.query([]).map_err(StoreError::Read)?;
        let mut exported = 0;
        while let Some(row) = rows.next().map_err(StoreError::Read)? {
            let answer: String = row.get(4).map_err(StoreError::Read)?;
            let mut record = match serde_json::from_str(&answer) {
                Ok(Value::Object(fields)) => fields,
                // Not an object: a row this version did not write. Keep it, readably.
                _ => Map::from_iter([("answer".to_owned(), Value::String(answer))]),
            };
            let id: String = row.get(0).map_err(StoreError::Read)?;
            let line: i64 = row.get(1).map_err(StoreError::Read)?;
            let question: Option<String> = row.get(2).map_err(StoreError::Read)?;
            let status: String = row.get(3).map_err(StoreError::Read)?;
            let error: Option<String> = row.get(5).map_err(StoreError::Read)?;
            let fetch_ms: Option<f64> = row.get(6).map_err(StoreError::Read)?;
            let infer_ms: Option<f64> = row.get(7).map_err(StoreError::Read)?;
            let elapsed_ms: f64 = row.get(8).map_err(StoreError::Read)?;
            let stored_at: String = row.get(9).map_err(StoreError::Read)?;
            // The columns are the truth; the answer object agrees with them for every row this version wrote.
            record.insert("id".to_owned(), id.into());
            record.insert("line".to_owned(), line.into());
            record.insert("question".to_owned(), question.into());
            record.insert("status".to_owned(), status.into());
            record.entry("error").or_insert(error.into());
            record.insert("fetch_ms".to_owned(), fetch_ms.into());
            record.insert("infer_ms".to_owned(), infer_ms.into());
            record.entry("elapsed_ms").or_insert(elapsed_ms.into());
            record.insert("stored_at".to_owned(), stored_at.into());
            serde_json::to_writer(&mut out, &record)
                .map_err(|error| StoreError::Export(error.into()))?;
            out.write_all(b"\n").map_err(StoreError::Export)?;
            exported += 1;
        }
        out.flush().map_err(StoreError::Export)?;
        Ok(exported)
    }

    /// Whether an answer for `id` is stored (committed by this run or an earlier one).
    pub fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        let mut lookup = self
            .connection
            .prepare_cached("SELECT 1 FROM answers WHERE id = ?1")
            .map_err(StoreError::Read)?;
        let found: Option<i64> = lookup
            .query_row([id.as_str()], |row| row.get(0))
            .optional()
            .map_err(StoreError::Read)?;
        Ok(found.is_some())
    }
}

fn count_by_status(connection: &Connection) -> Result<StoredCounts, StoreError> {
    let mut statement = connection
        .prepare("SELECT status, COUNT(*) FROM answers GROUP BY status")
        .map_err(StoreError::Read)?;
    let mut rows = statement.query([]).map_err(StoreError::Read)?;
    let mut counts = StoredCounts::default();
    while let Some(row) = rows.next().map_err(StoreError::Read)? {
        let status: String = row.get(0).map_err(StoreError::Read)?;
        let count: i64 = row.get(1).map_err(StoreError::Read)?;
        let count = u64::try_from(count).unwrap_or(0);
        match status.as_str() {
            "ok" => counts.ok = count,
            "degraded" => counts.degraded = count,
            _ => counts.failed += count,
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunMode;

    fn report(answer: &str, status: AnswerStatus) -> AgentReport {
        AgentReport {
            question: Some("question?".to_owned()),
            status,
            answer: Some(answer.to_owned()),
            error: None,
            degraded: status == AnswerStatus::Degraded,
            mode: RunMode::Concurrent,
            elapsed_ms: 4.0,
            ideal_ms: 3.0,
            efficiency: 0.75,
            workers: 2,
            deadline_ms: 15_000.0,
            per_source_timeout_ms: 5_000.0,
            sources: Vec::new(),
        }
    }

    fn row(id: &str, line: u64, status: AnswerStatus) -> AnswerRow {
        AnswerRow {
            id: RecordId::new(id),
            line,
            question: Some(format!("question {id}?")),
            status,
            answer: report("yes", status),
            error: None,
            fetch_ms: Some(1.5),
            infer_ms: Some(2.0),
            elapsed_ms: 4.0,
        }
    }

    #[test]
    fn rows_are_written_once_and_counted_by_status() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&directory.path().join("answers.db")).expect("open");
        let written = store
            .write_batch(&[
                row("a", 1, AnswerStatus::Ok),
                row("b", 2, AnswerStatus::Failed),
            ])
            .expect("write");
        assert_eq!(
            written.inserted,
            StoredCounts {
                ok: 1,
                degraded: 0,
                failed: 1
            }
        );
        assert_eq!(written.already_stored, 0);
        let again = store
            .write_batch(&[
                row("a", 9, AnswerStatus::Failed),
                row("c", 3, AnswerStatus::Degraded),
            ])
            .expect("write");
        assert_eq!(
            again.inserted,
            StoredCounts {
                ok: 0,
                degraded: 1,
                failed: 0
            }
        );
        assert_eq!(again.already_stored, 1);
        assert_eq!(
            store.counts().expect("counts"),
            StoredCounts {
                ok: 1,
                degraded: 1,
                failed: 1
            }
        );

        let index = store.reader().expect("reader");
        assert!(index.contains(&RecordId::new("a")).expect("lookup"));
        assert!(!index.contains(&RecordId::new("z")).expect("lookup"));
    }

    #[test]
    fn answers_live_in_a_rowid_table_so_a_row_of_a_few_kilobytes_stays_on_its_page() {
        let directory = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&directory.path().join("answers.db")).expect("open");
        let sql: String = store
            .connection
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'answers'",
                [],
                |row| row.get(0),
            )
            .expect("the table exists");
        assert!(!sql.to_uppercase().contains("WITHOUT ROWID"), "{sql}");
    }

    #[test]
    fn a_reopened_database_keeps_its_rows_and_is_in_wal_mode() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("answers.db");
        Store::open(&path)
            .expect("open")
            .write_batch(&[row("a", 1, AnswerStatus::Ok)])
            .expect("write");
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.counts().expect("counts").total(), 1);
        let mode: String = store
            .connection
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn export_writes_one_json_object_per_row_in_line_order() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&directory.path().join("answers.db")).expect("open");
        store
            .write_batch(&[
                row("b", 2, AnswerStatus::Ok),
                row("a", 1, AnswerStatus::Degraded),
            ])
            .expect("write");
        let mut out = Vec::new();
        assert_eq!(
            store
                .reader()
                .expect("reader")
                .export_jsonl(&mut out)
                .expect("export"),
            2
        );
        let lines: Vec<Value> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        assert_eq!(lines[0]["id"], "a");
        assert_eq!(lines[0]["line"], 1);
        assert_eq!(lines[0]["status"], "degraded");
        assert_eq!(lines[0]["answer"], "yes");
        assert_eq!(lines[0]["question"], "question a?");
        assert_eq!(lines[0]["mode"], "concurrent");
        assert_eq!(lines[0]["infer_ms"], 2.0);
        assert!(lines[0]["stored_at"].is_string());
        assert_eq!(lines[1]["id"], "b");
    }

    #[test]
    fn a_file_that_is_not_a_database_or_another_schema_is_refused() {
        let directory = tempfile::tempdir().expect("temp dir");
        let garbage = directory.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 8192]).expect("write");
        assert!(matches!(
            Store::open(&garbage),
            Err(StoreError::Open { .. })
        ));

        let foreign = directory.path().join("foreign.db");
        Connection::open(&foreign)
            .and_then(|connection| connection.execute_batch("CREATE TABLE other (x INTEGER);"))
            .expect("foreign db");
        assert!(matches!(
            Store::open(&foreign),
            Err(StoreError::ForeignSchema { found: 0, .. })
        ));
    }

    #[test]
    fn a_full_database_fails_the_write_cleanly_and_keeps_what_was_committed() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&directory.path().join("answers.db")).expect("open");
        store
            .write_batch(&[row("kept", 1, AnswerStatus::Ok)])
            .expect("write");
        // A size limit stands in for a full disk: SQLite reports both as SQLITE_FULL.
        let pages: i64 = store
            .connection
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("pages");
        store
            .connection
            .pragma_update(None, "max_page_count", pages + 2)
            .expect("limit");
        let mut big = row("big", 2, AnswerStatus::Ok);
        big.answer = report(&"x".repeat(64 * 1024), AnswerStatus::Ok);
        let batch: Vec<AnswerRow> = (0..8)
            .map(|index| AnswerRow {
                id: RecordId::new(format!("big-{index}")),
                ..big.clone()
            })
            .collect();
        let error = store.write_batch(&batch).expect_err("the database is full");
        assert!(error.is_disk_full(), "{error:?}");

        let integrity: String = store
            .connection
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(integrity, "ok");
        // The failed transaction left nothing behind: only the committed row is there.
        assert_eq!(
            store.counts().expect("counts"),
            StoredCounts {
                ok: 1,
                degraded: 0,
                failed: 0
            }
        );
    }

    #[test]
    fn a_database_in_a_missing_directory_cannot_be_opened() {
        let directory = tempfile::tempdir().expect("temp dir");
        let error =
            Store::open(&directory.path().join("missing/answers.db")).expect_err("no directory");
        assert!(matches!(error, StoreError::Open { .. }));
        assert!(!error.is_disk_full());
    }
}
