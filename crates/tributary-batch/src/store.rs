//! The answers database: SQLite in WAL mode, one row per input id, written in batched transactions.
//!
//! Every method here blocks; the pipeline calls them from its own threads, never from the async runtime.
//!
//! # Schema (version 3, in `PRAGMA user_version`; `PRAGMA application_id` = 0x54524942, "TRIB")
//!
//! ```sql
//! CREATE TABLE answers (
//!     id         TEXT PRIMARY KEY NOT NULL,  -- the input id (see RecordId)
//!     line       INTEGER NOT NULL,           -- the input line it came from (the earliest, for a repeated id)
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
//! CREATE TABLE rejected (                    -- JSON lines whose id cannot be read, by line
//!     line       INTEGER PRIMARY KEY NOT NULL,
//!     answer     TEXT NOT NULL,              -- the failed answer object
//!     error      TEXT NOT NULL,              -- why the line cannot be used
//!     stored_at  TEXT NOT NULL
//! );
//! CREATE TABLE batch (                       -- at most one row: this database's batch, for a distributed run
//!     key        TEXT PRIMARY KEY NOT NULL,  -- 16 random hex digits, made the first time it is asked for
//!     created_at TEXT NOT NULL
//! );
//! ```
//!
//! A line whose id cannot be read is kept in `rejected`, not under a made-up id in `answers`: a made-up
//! `line:N` once collided with a line whose given id was `"line:N"`, and the valid question was dropped.
//! A repeated id keeps the answer of its earliest line, whatever order the answers arrive in.
//!
//! Version 1 (no `rejected` table; unreadable lines under `line:N` in `answers`) and version 2 (no `batch`
//! table) are migrated in place, in one transaction, the first time a batch opens them. The export reads
//! version 2 as it is: its answers are the same.
//!
//! The `batch` key names this database's batch on a NATS server (`batch --nats`): its subjects, message ids
//! and consumer carry it, so two batches on one server never take each other's questions or answers, and a
//! rerun on the same database (the same key) finds what its killed run left.
//!
//! # Foreign files
//! Nothing is written to a file before it is known to be ours: a new or empty database, or one with our
//! `application_id` (or, for version 1, which predates it, no application id) whose tables have exactly our
//! columns. Anything else is refused unchanged: not even its journal mode is switched.
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

use rusqlite::{Connection, DatabaseName, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::input::RecordId;
use tributary_agent::report::{AgentReport, AnswerStatus};

/// The schema version this code writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 3;

/// `PRAGMA application_id` of an answers database: "TRIB".
pub const APPLICATION_ID: i64 = 0x5452_4942;

/// The columns of `answers`, as `pragma_table_info` lists them: name, declared type, not null, primary key.
const ANSWERS_COLUMNS: &[(&str, &str, bool, bool)] = &[
    ("id", "TEXT", true, true),
    ("line", "INTEGER", true, false),
    ("question", "TEXT", false, false),
    ("status", "TEXT", true, false),
    ("answer", "TEXT", true, false),
    ("error", "TEXT", false, false),
    ("fetch_ms", "REAL", false, false),
    ("infer_ms", "REAL", false, false),
    ("elapsed_ms", "REAL", true, false),
    ("stored_at", "TEXT", true, false),
];

/// The columns of `batch`.
const BATCH_COLUMNS: &[(&str, &str, bool, bool)] = &[
    ("key", "TEXT", true, true),
    ("created_at", "TEXT", true, false),
];

/// The columns of `rejected`.
const REJECTED_COLUMNS: &[(&str, &str, bool, bool)] = &[
    ("line", "INTEGER", true, true),
    ("answer", "TEXT", true, false),
    ("error", "TEXT", true, false),
    ("stored_at", "TEXT", true, false),
];

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
    CREATE TABLE IF NOT EXISTS rejected (
        line       INTEGER PRIMARY KEY NOT NULL,
        answer     TEXT NOT NULL,
        error      TEXT NOT NULL,
        stored_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE IF NOT EXISTS batch (
        key        TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
";

/// Version 1 to 2: the unreadable lines move from `answers` (under `line:N`) to `rejected`. Runs after
/// `CREATE_SCHEMA`, in the same transaction.
const MIGRATE_FROM_1: &str = "
    INSERT OR IGNORE INTO rejected (line, answer, error, stored_at)
        SELECT line, answer, COALESCE(error, 'the line cannot be used'), stored_at FROM answers
        WHERE id = 'line:' || line AND question IS NULL AND status = 'failed';
    DELETE FROM answers WHERE id = 'line:' || line AND question IS NULL AND status = 'failed';
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
    #[error("use {}: it is not a tributary batch database ({why})", path.display())]
    ForeignSchema { path: PathBuf, why: String },
    /// The database can be read but not written (a read-only file, or a directory where SQLite cannot make its
    /// write-ahead log): found at open, before any work, instead of at the first commit.
    #[error(
        "write to the answers database {}: it is not writable (check the permissions of the file and of its \
         directory)",
        path.display()
    )]
    NotWritable {
        path: PathBuf,
        #[source]
        source: Option<rusqlite::Error>,
    },
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
            StoreError::ForeignSchema { .. }
            | StoreError::NotWritable { .. }
            | StoreError::Encode(_) => return false,
            StoreError::Export(error) => return error.kind() == io::ErrorKind::StorageFull,
        };
        matches!(cause.sqlite_error_code(), Some(ErrorCode::DiskFull))
    }
}

/// Maps an SQLite error to `not_writable` when it says the file (or its directory) refuses writes, else to
/// `other`.
fn refused_write(
    other: impl Fn(rusqlite::Error) -> StoreError,
    not_writable: impl Fn(Option<rusqlite::Error>) -> StoreError,
) -> impl Fn(rusqlite::Error) -> StoreError {
    move |error| match error.sqlite_error_code() {
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            not_writable(Some(error))
        }
        _ => other(error),
    }
}

impl Store {
    /// Opens the database at `path`, creating it (and its schema) if needed, in WAL mode; a version 1 or 2
    /// database is migrated. A file that is not ours is refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let foreign = |why: String| StoreError::ForeignSchema {
            path: path.to_owned(),
            why,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // Reading the header is the first real read: a file that is not SQLite fails here, unchanged.
        let facts = Facts::read(&connection).map_err(open_error)?;
        let fresh = facts.tables.is_empty() && facts.version == 0 && facts.application_id == 0;
        if !fresh {
            facts.check_ours(&connection).map_err(foreign)?;
        }
        let not_writable = |source| StoreError::NotWritable {
            path: path.to_owned(),
            source,
        };
        // SQLite opens a file it may not write read-only, silently: the first commit would fail, after work.
        if connection
            .is_readonly(DatabaseName::Main)
            .map_err(open_error)?
        {
            return Err(not_writable(None));
        }
        let _mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(refused_write(open_error, not_writable))?;
        connection
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(open_error)?;
        // The write lock, taken and given back: it needs the write-ahead log beside the database, which a
        // directory without write permission refuses. Nothing is written.
        connection
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(refused_write(open_error, not_writable))?;
        if fresh || facts.version < SCHEMA_VERSION {
            let transaction = connection.transaction().map_err(open_error)?;
            transaction
                .execute_batch(CREATE_SCHEMA)
                .map_err(open_error)?;
            if facts.version == 1 {
                transaction
                    .execute_batch(MIGRATE_FROM_1)
                    .map_err(open_error)?;
            }
            transaction
                .pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(open_error)?;
            transaction
                .pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_error)?;
            transaction.commit().map_err(open_error)?;
        }
        Ok(Self {
            connection,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This database's batch key: 16 hex digits, made at random (by SQLite) the first time it is asked for and
    /// the same ever after, so a rerun on this database is the same batch to a NATS server.
    pub fn batch_key(&mut self) -> Result<String, StoreError> {
        let transaction = self.connection.transaction().map_err(StoreError::Write)?;
        transaction
            .execute(
                "INSERT INTO batch (key) SELECT lower(hex(randomblob(8))) WHERE NOT EXISTS (SELECT 1 FROM batch)",
                [],
            )
            .map_err(StoreError::Write)?;
        let key = transaction
            .query_row(
                "SELECT key FROM batch ORDER BY created_at LIMIT 1",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::Read)?;
        transaction.commit().map_err(StoreError::Write)?;
        Ok(key)
    }

    /// A second, read-only connection, for resume checks while this one writes.
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        StoreReader::open(&self.path)
    }

    /// Stores `rows` in one transaction. A row whose id is already stored replaces it only if it comes from an
    /// earlier input line (a repeated id keeps its earliest line's answer, whatever the order of arrival); a
    /// line whose id cannot be read is stored once, by line, in `rejected`.
    pub fn write_batch(&mut self, rows: &[AnswerRow]) -> Result<Written, StoreError> {
        let transaction = self.connection.transaction().map_err(StoreError::Write)?;
        let mut written = Written::default();
        {
            let mut stored_line = transaction
                .prepare_cached("SELECT line FROM answers WHERE id = ?1")
                .map_err(StoreError::Write)?;
            let mut upsert = transaction
                .prepare_cached(
                    "INSERT INTO answers
                         (id, line, question, status, answer, error, fetch_ms, infer_ms, elapsed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET
                         line = excluded.line, question = excluded.question, status = excluded.status,
                         answer = excluded.answer, error = excluded.error, fetch_ms = excluded.fetch_ms,
                         infer_ms = excluded.infer_ms, elapsed_ms = excluded.elapsed_ms,
                         stored_at = excluded.stored_at
                     WHERE excluded.line < answers.line",
                )
                .map_err(StoreError::Write)?;
            let mut reject = transaction
                .prepare_cached(
                    "INSERT INTO rejected (line, answer, error) VALUES (?1, ?2, ?3)
                     ON CONFLICT (line) DO NOTHING",
                )
                .map_err(StoreError::Write)?;
            for row in rows {
                let answer = serde_json::to_string(&row.answer).map_err(StoreError::Encode)?;
                let line = i64::try_from(row.line).unwrap_or(i64::MAX);
                let Some(id) = row.id.given() else {
                    let error = row.error.as_deref().unwrap_or("the line cannot be used");
                    let changed = reject
                        .execute(params![line, answer, error])
                        .map_err(StoreError::Write)?;
                    if changed == 1 {
                        written.inserted.add(AnswerStatus::Failed);
                    } else {
                        written.already_stored += 1;
                    }
                    continue;
                };
                let earlier: Option<i64> = stored_line
                    .query_row([id], |found| found.get(0))
                    .optional()
                    .map_err(StoreError::Write)?;
                if earlier.is_some_and(|earlier| earlier <= line) {
                    written.already_stored += 1;
                    continue;
                }
                upsert
                    .execute(params![
                        id,
                        line,
                        row.question,
                        row.status.as_str(),
                        answer,
                        row.error,
                        row.fetch_ms,
                        row.infer_ms,
                        row.elapsed_ms,
                    ])
                    .map_err(StoreError::Write)?;
                if earlier.is_some() {
                    // A later line's answer for this id was stored first: replaced, not added.
                    written.already_stored += 1;
                } else {
                    written.inserted.add(row.status);
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
        let facts = Facts::read(&connection).map_err(open_error)?;
        // Version 2 lacks only the `batch` table, which the export does not read.
        let current = facts.version >= 2;
        facts
            .check_ours(&connection)
            .and_then(|()| {
                current.then_some(()).ok_or_else(|| {
                    format!(
                        "schema version {}: run a batch on it once to migrate it",
                        facts.version
                    )
                })
            })
            .map_err(|why| StoreError::ForeignSchema {
                path: path.to_owned(),
                why,
            })?;
        Ok(Self { connection })
    }

    /// Rows by status, over the whole database.
    pub fn counts(&self) -> Result<StoredCounts, StoreError> {
        count_by_status(&self.connection)
    }

    /// Whether the database holds nothing a rerun needs: no answer, and no batch key (a distributed batch may
    /// have published questions under it, whose answers only a database with that key collects). Such a file
    /// can be removed. A version 2 database, which has no `batch` table, is never unused.
    pub fn is_unused(&self) -> Result<bool, StoreError> {
        self.connection
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM answers) AND NOT EXISTS (SELECT 1 FROM batch)",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::Read)
    }

    /// Writes every row as one JSON object per line, in input-line order; returns the number of rows.
    /// Streams: one row in memory at a time.
    ///
    /// Each line is the stored answer object (what `ask --json` prints) with the row's `id`, `line`,
    /// `fetch_ms`, `infer_ms` and `stored_at` added; a line whose id cannot be read has `"id": null`.
    pub fn export_jsonl(&self, mut out: impl Write) -> Result<u64, StoreError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT id, line, question, status, answer, error, fetch_ms, infer_ms, elapsed_ms, stored_at
                 FROM answers
                 UNION ALL
                 SELECT NULL, line, NULL, 'failed', answer, error, NULL, NULL, 0.0, stored_at FROM rejected
                 ORDER BY 2, 1",
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
            // `null` for a line whose id cannot be read.
            let id: Option<String> = row.get(0).map_err(StoreError::Read)?;
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
            if record["id"].is_null() {
                // A rejected line: its column says why, always.
                record.insert("error".to_owned(), error.into());
            } else {
                record.entry("error").or_insert(error.into());
            }
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

    /// Whether the record of input line `line` with `id` needs no run: an answer for `id` from this line or an
    /// earlier one is stored (committed by this run or an earlier one), or, for a line whose id cannot be read,
    /// the line is stored in `rejected`.
    pub fn contains(&self, id: &RecordId, line: u64) -> Result<bool, StoreError> {
        let line = i64::try_from(line).unwrap_or(i64::MAX);
        let found: Option<i64> = match id.given() {
            Some(id) => self
                .connection
                .prepare_cached("SELECT 1 FROM answers WHERE id = ?1 AND line <= ?2")
                .and_then(|mut lookup| {
                    lookup
                        .query_row(params![id, line], |row| row.get(0))
                        .optional()
                })
                .map_err(StoreError::Read)?,
            None => self
                .connection
                .prepare_cached("SELECT 1 FROM rejected WHERE line = ?1")
                .and_then(|mut lookup| lookup.query_row([line], |row| row.get(0)).optional())
                .map_err(StoreError::Read)?,
        };
        Ok(found.is_some())
    }
}

/// What a file's header and schema say, read before anything is written to it.
#[derive(Debug)]
struct Facts {
    version: i64,
    application_id: i64,
    tables: Vec<String>,
}

impl Facts {
    fn read(connection: &Connection) -> rusqlite::Result<Self> {
        let version = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let application_id = connection.query_row("PRAGMA application_id", [], |row| row.get(0))?;
        let mut statement = connection.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let tables = statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            version,
            application_id,
            tables,
        })
    }

    /// `Ok` if this is an answers database of ours (this version or one this code migrates), else why not.
    fn check_ours(&self, connection: &Connection) -> Result<(), String> {
        match (self.application_id, self.version) {
            (APPLICATION_ID, SCHEMA_VERSION | 2) | (APPLICATION_ID | 0, 1) => {}
            (APPLICATION_ID, version) if version > SCHEMA_VERSION => {
                return Err(format!(
                    "schema version {version} is newer than this tributary's {SCHEMA_VERSION}"
                ));
            }
            (APPLICATION_ID, version) => return Err(format!("unknown schema version {version}")),
            (0, version) => {
                return Err(format!(
                    "another program's SQLite database: schema version {version}, tables {}",
                    self.table_list()
                ));
            }
            (other, _) => {
                return Err(format!(
                    "another program's SQLite database: application id {other:#x}"
                ));
            }
        }
        let expected: &[&str] = match self.version {
            1 => &["answers"],
            2 => &["answers", "rejected"],
            _ => &["answers", "batch", "rejected"],
        };
        if self.tables != expected {
            return Err(format!(
                "its tables are {}, expected {}",
                self.table_list(),
                expected.join(", ")
            ));
        }
        check_columns(connection, "answers", ANSWERS_COLUMNS)?;
        if self.version >= 2 {
            check_columns(connection, "rejected", REJECTED_COLUMNS)?;
        }
        if self.version >= 3 {
            check_columns(connection, "batch", BATCH_COLUMNS)?;
        }
        Ok(())
    }

    fn table_list(&self) -> String {
        if self.tables.is_empty() {
            "none".to_owned()
        } else {
            self.tables.join(", ")
        }
    }
}

/// `Ok` if `table` has exactly `expected` columns, in order.
fn check_columns(
    connection: &Connection,
    table: &str,
    expected: &[(&str, &str, bool, bool)],
) -> Result<(), String> {
    let read = || -> rusqlite::Result<Vec<(String, String, bool, bool)>> {
        let mut statement = connection.prepare(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
        )?;
        statement
            .query_map([table], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, String>(1)?.to_uppercase(),
                    row.get(2)?,
                    row.get::<_, i64>(3)? > 0,
                ))
            })?
            .collect()
    };
    let found = read().map_err(|error| format!("its `{table}` table cannot be read: {error}"))?;
    let matches = found.len() == expected.len()
        && found.iter().zip(expected).all(|(found, expected)| {
            (found.0.as_str(), found.1.as_str(), found.2, found.3) == *expected
        });
    if matches {
        return Ok(());
    }
    let names: Vec<&str> = found.iter().map(|column| column.0.as_str()).collect();
    Err(format!(
        "its `{table}` table has other columns ({})",
        names.join(", ")
    ))
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
    let rejected: i64 = connection
        .query_row("SELECT COUNT(*) FROM rejected", [], |row| row.get(0))
        .map_err(StoreError::Read)?;
    counts.failed += u64::try_from(rejected).unwrap_or(0);
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_agent::report::RunMode;

    fn report(answer: &str, status: AnswerStatus) -> AgentReport {
        AgentReport {
            question: Some("question?".to_owned()),
            status,
            answer: Some(answer.to_owned()),
            error: None,
            failure: None,
            degraded: status == AnswerStatus::Degraded,
            mode: RunMode::Concurrent,
            elapsed_ms: 4.0,
            ideal_ms: 3.0,
            efficiency: 0.75,
            workers: 2,
            deadline_ms: 15_000.0,
            per_source_timeout_ms: 5_000.0,
            sources: Vec::new(),
            synthesis: None,
        }
    }

    /// Every exported line, as JSON.
    fn exported(reader: &StoreReader) -> Vec<Value> {
        let mut out = Vec::new();
        reader.export_jsonl(&mut out).expect("export");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect()
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

    /// What a failed run may remove: a database with neither an answer nor a batch key (a distributed batch's
    /// questions may be out under its key).
    #[test]
    fn a_database_is_unused_until_it_holds_an_answer_or_a_batch_key() {
        let directory = tempfile::tempdir().expect("temp dir");
        let unused = |name: &str| {
            StoreReader::open(&directory.path().join(name))
                .and_then(|reader| reader.is_unused())
                .expect("read")
        };
        let mut answered = Store::open(&directory.path().join("answered.db")).expect("open");
        let mut keyed = Store::open(&directory.path().join("keyed.db")).expect("open");
        assert!(unused("answered.db") && unused("keyed.db"));
        answered
            .write_batch(&[row("a", 1, AnswerStatus::Ok)])
            .expect("write");
        keyed.batch_key().expect("a key");
        assert!(!unused("answered.db"));
        assert!(!unused("keyed.db"));
    }

    /// SQLite opens a read-only file read-only without a word; the first commit failed, after the work.
    #[test]
    fn a_read_only_database_is_refused_at_open() {
        use std::os::unix::fs::PermissionsExt as _;
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("answers.db");
        drop(Store::open(&path).expect("open"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
            eprintln!("skipped: file permissions do not apply to this user (root)");
            return;
        }
        let error = Store::open(&path).map(drop).expect_err("not writable");
        assert!(matches!(error, StoreError::NotWritable { .. }), "{error:?}");
        assert!(error.to_string().contains("it is not writable"), "{error}");
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
        assert!(
            index
                .contains(&RecordId::new("a"), u64::MAX)
                .expect("lookup")
        );
        assert!(
            !index
                .contains(&RecordId::new("z"), u64::MAX)
                .expect("lookup")
        );
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
            Err(StoreError::ForeignSchema { .. })
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

    /// A repeated id once kept whichever answer arrived first: now the earliest input line wins, whatever the
    /// order of arrival, and a rerun does not skip an earlier line whose answer is not the stored one.
    #[test]
    fn a_repeated_id_keeps_the_answer_of_its_earliest_line() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&directory.path().join("answers.db")).expect("open");
        let mut late = row("a", 9, AnswerStatus::Failed);
        late.question = Some("from line 9".to_owned());
        store.write_batch(&[late]).expect("write line 9");
        let reader = store.reader().expect("reader");
        assert!(reader.contains(&RecordId::new("a"), 9).expect("lookup"));
        assert!(
            !reader.contains(&RecordId::new("a"), 2).expect("lookup"),
            "line 2 must still run: its answer wins"
        );
        let mut early = row("a", 2, AnswerStatus::Ok);
        early.question = Some("from line 2".to_owned());
        let written = store.write_batch(&[early.clone()]).expect("write line 2");
        assert_eq!(written.already_stored, 1, "a replacement, not a new row");
        let mut later_again = row("a", 5, AnswerStatus::Degraded);
        later_again.question = Some("from line 5".to_owned());
        store.write_batch(&[later_again]).expect("write line 5");
        let lines = exported(&reader);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["line"], 2);
        assert_eq!(lines[0]["question"], "from line 2");
        assert_eq!(lines[0]["status"], "ok");
        assert_eq!(store.counts().expect("counts").total(), 1);
    }

    /// The made-up id `line:N` of an unreadable line once collided with a given id `"line:N"`, and the valid
    /// question was dropped as a duplicate. They are now stored apart.
    #[test]
    fn an_unreadable_line_never_collides_with_a_given_id() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&directory.path().join("answers.db")).expect("open");
        let mut unreadable = row("x", 3, AnswerStatus::Failed);
        unreadable.id = RecordId::for_line(3);
        unreadable.question = None;
        unreadable.error = Some("line 3: malformed JSON".to_owned());
        let given = row("line:3", 7, AnswerStatus::Ok);
        let written = store
            .write_batch(&[unreadable.clone(), given])
            .expect("write");
        assert_eq!(written.inserted.total(), 2);
        assert_eq!(written.already_stored, 0);
        assert_eq!(
            store
                .write_batch(&[unreadable])
                .expect("again")
                .already_stored,
            1
        );
        let reader = store.reader().expect("reader");
        assert!(reader.contains(&RecordId::for_line(3), 3).expect("lookup"));
        assert!(!reader.contains(&RecordId::for_line(7), 7).expect("lookup"));
        assert!(
            reader
                .contains(&RecordId::new("line:3"), 7)
                .expect("lookup")
        );
        let lines = exported(&reader);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], Value::Null);
        assert_eq!(lines[0]["line"], 3);
        assert_eq!(lines[0]["status"], "failed");
        assert_eq!(lines[0]["error"], "line 3: malformed JSON");
        assert_eq!(lines[1]["id"], "line:3");
        assert_eq!(lines[1]["status"], "ok");
        assert_eq!(
            store.counts().expect("counts"),
            StoredCounts {
                ok: 1,
                degraded: 0,
                failed: 1
            }
        );
    }

    /// A database written by version 1 (unreadable lines under `line:N`, no application id) is migrated.
    #[test]
    fn a_version_1_database_is_migrated_in_place() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("answers.db");
        {
            let connection = Connection::open(&path).expect("create");
            connection
                .execute_batch(
                    "CREATE TABLE answers (
                        id TEXT PRIMARY KEY NOT NULL, line INTEGER NOT NULL, question TEXT,
                        status TEXT NOT NULL CHECK (status IN ('ok', 'degraded', 'failed')),
                        answer TEXT NOT NULL, error TEXT, fetch_ms REAL, infer_ms REAL,
                        elapsed_ms REAL NOT NULL,
                        stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
                     CREATE INDEX answers_by_line ON answers (line);
                     INSERT INTO answers (id, line, question, status, answer, error, elapsed_ms)
                        VALUES ('a', 1, 'why?', 'ok', '{}', NULL, 1.0),
                               ('line:2', 2, NULL, 'failed', '{}', 'line 2: malformed JSON', 0.0);
                     PRAGMA user_version = 1;",
                )
                .expect("a version 1 database");
        }
        let store = Store::open(&path).expect("migrated");
        let reader = store.reader().expect("reader");
        assert!(reader.contains(&RecordId::new("a"), 1).expect("lookup"));
        assert!(reader.contains(&RecordId::for_line(2), 2).expect("lookup"));
        assert!(
            !reader
                .contains(&RecordId::new("line:2"), 9)
                .expect("lookup")
        );
        assert_eq!(store.counts().expect("counts").total(), 2);
        let (version, application_id): (i64, i64) = store
            .connection
            .query_row(
                "SELECT user_version, application_id FROM pragma_user_version, pragma_application_id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("pragmas");
        assert_eq!((version, application_id), (SCHEMA_VERSION, APPLICATION_ID));
    }

    /// A version 2 database (no `batch` table) is exported as it is, and migrated by the first batch to open it;
    /// its key is made once and kept.
    #[test]
    fn a_version_2_database_is_read_as_it_is_and_migrated_with_a_lasting_batch_key() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("answers.db");
        {
            let mut store = Store::open(&path).expect("create");
            store
                .write_batch(&[row("a", 1, AnswerStatus::Ok)])
                .expect("write");
            store
                .connection
                .execute_batch("DROP TABLE batch; PRAGMA user_version = 2;")
                .expect("made a version 2 database");
        }
        let reader = StoreReader::open(&path).expect("version 2 is readable");
        assert_eq!(exported(&reader).len(), 1);
        drop(reader);
        let mut store = Store::open(&path).expect("migrated");
        let key = store.batch_key().expect("a key");
        assert_eq!(key.len(), 16, "{key}");
        assert!(key.bytes().all(|byte| byte.is_ascii_hexdigit()), "{key}");
        assert_eq!(store.batch_key().expect("the same key"), key);
        drop(store);
        let mut reopened = Store::open(&path).expect("reopened");
        assert_eq!(reopened.batch_key().expect("kept"), key);
        assert_eq!(reopened.counts().expect("counts").total(), 1);
        let other = Store::open(&directory.path().join("other.db"))
            .and_then(|mut other| other.batch_key())
            .expect("another database's key");
        assert_ne!(other, key, "two databases, two batches");
    }

    /// A file with another `answers` table was once switched to WAL before the check failed, and a crafted
    /// table that passed `user_version` was written to. Now neither changes by a byte.
    #[test]
    fn a_foreign_database_is_refused_without_a_byte_changed() {
        let directory = tempfile::tempdir().expect("temp dir");
        for (name, setup) in [
            (
                "other-answers.db",
                "CREATE TABLE answers (id TEXT PRIMARY KEY, text TEXT); PRAGMA user_version = 1;",
            ),
            (
                "crafted.db",
                "CREATE TABLE answers (id TEXT PRIMARY KEY NOT NULL, line INTEGER NOT NULL);
                 CREATE TABLE rejected (line INTEGER PRIMARY KEY);
                 PRAGMA user_version = 2;",
            ),
            (
                "other-app.db",
                "CREATE TABLE notes (x TEXT); PRAGMA application_id = 42; PRAGMA user_version = 2;",
            ),
            (
                "extra-table.db",
                "CREATE TABLE notes (x TEXT); PRAGMA user_version = 1;",
            ),
        ] {
            let path = directory.path().join(name);
            Connection::open(&path)
                .and_then(|connection| connection.execute_batch(setup))
                .expect("a foreign database");
            let before = std::fs::read(&path).expect("read");
            let error = Store::open(&path).expect_err(name);
            assert!(
                matches!(error, StoreError::ForeignSchema { .. }),
                "{name}: {error}"
            );
            assert!(
                error.to_string().contains("not a tributary batch database"),
                "{name}: {error}"
            );
            assert_eq!(
                std::fs::read(&path).expect("read"),
                before,
                "{name} changed"
            );
            assert!(
                !directory.path().join(format!("{name}-wal")).exists(),
                "{name}: no WAL file"
            );
            assert!(
                StoreReader::open(&path).is_err(),
                "{name}: the reader refuses it too"
            );
        }
    }
}
