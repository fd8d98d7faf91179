//! The two schemas in the file: LLMC's (version 8 in `PRAGMA user_version`, created only on a
//! fresh database, never altered), and enrich's additive tables (versioned in `llmc_meta` under
//! `enrich_schema_version`, brought up by an append-only list of migrations).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// The LLMC schema version (`PRAGMA user_version`) this crate reads and writes.
pub const LLMC_SCHEMA_VERSION: i64 = 8;

/// The `llmc_meta` key that holds enrich's schema version.
pub const ENRICH_SCHEMA_VERSION_KEY: &str = "enrich_schema_version";

/// LLMC's tables and indexes at schema version 8, as LLMC's `tools/rag/database.py` (later
/// `llmc/rag/database.py`) declares them. `llmc_meta` is the key/value table LLMC keeps its
/// `index_generation` in. LLMC creates its `enrichments_fts` FTS5 table itself on every open, so
/// it is not part of this script.
pub(crate) const LLMC_V8_DDL: &str = "
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    lang TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sidecar_path TEXT
);

CREATE TABLE spans (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    symbol TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    byte_start INTEGER NOT NULL,
    byte_end INTEGER NOT NULL,
    span_hash TEXT NOT NULL UNIQUE,
    doc_hint TEXT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    slice_type TEXT,
    slice_language TEXT,
    classifier_confidence REAL,
    classifier_version TEXT,
    imports TEXT
);

CREATE TABLE embeddings_meta (
    profile TEXT NOT NULL DEFAULT 'default',
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (profile, model)
);

CREATE TABLE embeddings (
    span_hash TEXT PRIMARY KEY,
    vec BLOB NOT NULL,
    route_name TEXT,
    profile_name TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE
);

CREATE TABLE emb_code (
    span_hash TEXT PRIMARY KEY,
    vec BLOB NOT NULL,
    route_name TEXT,
    profile_name TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE
);

CREATE TABLE enrichments (
    span_hash TEXT PRIMARY KEY,
    summary TEXT,
    tags TEXT,
    evidence TEXT,
    model TEXT,
    created_at DATETIME,
    schema_ver TEXT,
    inputs TEXT,
    outputs TEXT,
    side_effects TEXT,
    pitfalls TEXT,
    usage_snippet TEXT,
    content_type TEXT,
    content_language TEXT,
    content_type_confidence REAL,
    content_type_source TEXT,
    tokens_per_second REAL,
    eval_count INTEGER,
    eval_duration_ns INTEGER,
    prompt_eval_count INTEGER,
    total_duration_ns INTEGER,
    backend_host TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE
);

CREATE INDEX idx_files_path ON files(path);
CREATE INDEX idx_spans_file_id ON spans(file_id);
CREATE INDEX idx_spans_span_hash ON spans(span_hash);

CREATE TABLE file_descriptions (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    file_path TEXT UNIQUE NOT NULL,
    description TEXT,
    source TEXT,
    updated_at DATETIME,
    content_hash TEXT,
    input_hash TEXT
);

CREATE INDEX idx_file_descriptions_file_path ON file_descriptions(file_path);
CREATE INDEX idx_file_descriptions_input_hash ON file_descriptions(input_hash);

CREATE TABLE llmc_meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
";

/// `llmc_meta` as enrich creates it in an LLMC database that lacks it.
pub(crate) const LLMC_META_DDL: &str =
    "CREATE TABLE IF NOT EXISTS llmc_meta (key TEXT PRIMARY KEY, value TEXT)";

/// The LLMC columns enrich reads or writes; an existing index must have every one.
pub(crate) const REQUIRED_COLUMNS: &[(&str, &[&str])] = &[
    ("files", &["id", "path", "lang", "mtime"]),
    (
        "spans",
        &[
            "id",
            "file_id",
            "symbol",
            "kind",
            "start_line",
            "end_line",
            "byte_start",
            "byte_end",
            "span_hash",
            "slice_type",
            "slice_language",
            "classifier_confidence",
        ],
    ),
    (
        "enrichments",
        &[
            "span_hash",
            "summary",
            "tags",
            "evidence",
            "model",
            "created_at",
            "schema_ver",
            "inputs",
            "outputs",
            "side_effects",
            "pitfalls",
            "usage_snippet",
            "content_type",
            "content_language",
            "content_type_confidence",
            "content_type_source",
            "tokens_per_second",
            "eval_count",
            "eval_duration_ns",
            "prompt_eval_count",
            "total_duration_ns",
            "backend_host",
        ],
    ),
];

/// One step of enrich's own schema. The list is append-only: a released migration never
/// changes (a test pins each one's SQL hash); a change is a new migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version the database has after this step; versions count up from 1 without gaps.
    pub version: u32,
    /// What the step does.
    pub name: &'static str,
    /// The SQL, run in one transaction together with the version bump.
    pub sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs, attempt log and failure ledger",
        sql: "
CREATE TABLE enrich_runs (
    id INTEGER PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    config_fingerprint TEXT NOT NULL,
    attempted INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE enrich_attempts (
    id INTEGER PRIMARY KEY,
    span_hash TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES enrich_runs(id),
    attempt INTEGER NOT NULL,
    backend TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    host TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    failure_kind TEXT,
    message TEXT,
    started_at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    prompt_eval_count INTEGER,
    eval_count INTEGER,
    tokens_per_second REAL,
    UNIQUE (span_hash, run_id, attempt)
);

CREATE INDEX enrich_attempts_run ON enrich_attempts(run_id);

CREATE TABLE enrich_failures (
    span_hash TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    last_run_id INTEGER,
    last_failure_kind TEXT NOT NULL,
    last_message TEXT NOT NULL,
    dead_lettered INTEGER NOT NULL DEFAULT 0 CHECK (dead_lettered IN (0, 1)),
    dead_lettered_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL
);

CREATE INDEX enrich_failures_dead ON enrich_failures(dead_lettered, span_hash);
",
    },
    Migration {
        version: 2,
        name: "work order: file weights and span order",
        sql: "
CREATE TABLE enrich_file_weights (
    file_id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    weight INTEGER NOT NULL CHECK (weight BETWEEN 1 AND 10)
);

CREATE TABLE enrich_span_order (
    span_id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    weight INTEGER NOT NULL CHECK (weight BETWEEN 1 AND 10)
);

CREATE INDEX enrich_span_order_weight ON enrich_span_order(weight, span_id, file_id);
",
    },
    Migration {
        version: 3,
        name: "span leases of concurrent runs",
        sql: "
CREATE TABLE enrich_leases (
    span_hash TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_start INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

CREATE INDEX enrich_leases_run ON enrich_leases(run_id);
",
    },
    Migration {
        version: 4,
        name: "the process that runs each run",
        sql: "
ALTER TABLE enrich_runs ADD COLUMN holder_host TEXT;
ALTER TABLE enrich_runs ADD COLUMN holder_pid INTEGER;
ALTER TABLE enrich_runs ADD COLUMN holder_start INTEGER;
",
    },
    Migration {
        version: 5,
        name: "pending frontiers",
        // The triggers that keep frontiers true are created with the first frontier
        // (`Db::advance_frontier`), not here: a read-only connection shadows these tables.
        sql: "
CREATE TABLE enrich_frontiers (
    lane TEXT PRIMARY KEY,
    weight_lo INTEGER NOT NULL,
    weight_hi INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    span_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL
);
",
    },
    Migration {
        version: 6,
        name: "spans a file shares with the file that owns them",
        // One row per span a file holds but another file owns (identical content): what the
        // file's span would be, so it can take the span over when the owner lets go of it.
        sql: "
CREATE TABLE enrich_shared_spans (
    span_hash TEXT NOT NULL,
    path TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    symbol TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    byte_start INTEGER NOT NULL,
    byte_end INTEGER NOT NULL,
    doc_hint TEXT,
    slice_type TEXT,
    slice_language TEXT,
    classifier_confidence REAL,
    classifier_version TEXT,
    PRIMARY KEY (span_hash, path)
) WITHOUT ROWID;

CREATE INDEX enrich_shared_spans_path ON enrich_shared_spans(path);
",
    },
    Migration {
        version: 7,
        name: "the quality gate's score of each stored enrichment",
        // One row per enrichment the gate judged, written in the transaction that stores it
        // (and deleted when an enrichment without a score replaces it). Keyed like
        // `enrichments`, without a foreign key, like every enrich table: readers join it.
        sql: "
CREATE TABLE enrich_quality (
    span_hash TEXT PRIMARY KEY,
    score REAL NOT NULL,
    level TEXT NOT NULL,
    failed_checks TEXT NOT NULL,
    repairs TEXT NOT NULL,
    gate_version TEXT NOT NULL,
    scored_at_ms INTEGER NOT NULL
);
",
    },
    Migration {
        version: 8,
        name: "the prompt fingerprint of each run",
        // sha256 (short hex) of what every span's prompt of the run shares: the configured
        // template, or the built-in prompt's fixed text. Runs before this step have NULL,
        // which the quality report shows as `unknown`.
        sql: "
ALTER TABLE enrich_runs ADD COLUMN prompt_fingerprint TEXT;
",
    },
    Migration {
        version: 9,
        name: "the chain of each attempt",
        // The chain the attempt's span was routed to. Attempts before this step have NULL,
        // which the quality report shows as `unknown`.
        sql: "
ALTER TABLE enrich_attempts ADD COLUMN chain TEXT;
",
    },
    Migration {
        version: 10,
        name: "the provenance of each stored enrichment",
        // One row per enrichment enrich writes, in the transaction that stores it; no row is
        // unknown provenance (LLMC's rows, rows stored before this step). The enrichment's own
        // `created_at`, untyped so it keeps the stored value as it is, ties the row to the
        // enrichment it describes: readers join on it, so an enrichment another program wrote
        // over is unknown again.
        sql: "
CREATE TABLE enrich_provenance (
    span_hash TEXT PRIMARY KEY,
    run_id INTEGER,
    backend TEXT,
    provider TEXT,
    model TEXT,
    model_digest TEXT,
    chain TEXT,
    prompt_fingerprint TEXT,
    schema_version TEXT,
    options_fingerprint TEXT,
    enrich_version TEXT,
    created_at_ms INTEGER,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    enrichment_created_at
);
",
    },
    Migration {
        version: 11,
        name: "an index of enrichments by the time they were stored",
        // `enrich export --since` reads only what was stored after a time. An index on LLMC's
        // table adds no column, so LLMC reads and writes the table as before.
        sql: "
CREATE INDEX IF NOT EXISTS enrich_enrichments_created_at ON enrichments(created_at);
",
    },
    Migration {
        version: 12,
        name: "the full-text search table",
        // `enrich search`'s FTS5 table, filled with every enrichment already stored; kept in
        // step by the TEMP triggers of `fts.rs` on each read-write connection.
        sql: crate::fts::SEARCH_TABLE_SQL,
    },
    Migration {
        version: 13,
        name: "batches sent to batch engines and the requests they hold",
        // One row per batch (one input file: a Batch API batch, or a file exported for an
        // offline engine), with the run whose leases hold its spans; one row per request, by
        // its custom_id, `sent` until its answer is stored (`ingested`, in the transaction
        // that stores it) or it goes back to pending (`returned`).
        sql: "
CREATE TABLE enrich_batches (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    engine TEXT NOT NULL,
    chain TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_fingerprint TEXT NOT NULL,
    remote_id TEXT,
    input_file_id TEXT,
    output_file_id TEXT,
    error_file_id TEXT,
    status TEXT NOT NULL,
    requests INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    estimated_tokens INTEGER,
    estimated_cost REAL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    collected_at_ms INTEGER
);
CREATE INDEX enrich_batches_remote ON enrich_batches (remote_id);
CREATE TABLE enrich_batch_requests (
    batch_id INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    span_hash TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    settled_at_ms INTEGER,
    PRIMARY KEY (batch_id, custom_id)
) WITHOUT ROWID;
CREATE INDEX enrich_batch_requests_span ON enrich_batch_requests (run_id, span_hash);
CREATE INDEX enrich_batch_requests_custom ON enrich_batch_requests (custom_id, state);
",
    },
];

/// enrich's migrations, oldest first.
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// The enrich schema version this build writes: the last migration's.
pub const ENRICH_SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Reads enrich's schema version from `llmc_meta` (0 when the table or the key is absent).
pub(crate) fn enrich_version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llmc_meta')",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(0);
    }
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM llmc_meta WHERE key = ?1",
            [ENRICH_SCHEMA_VERSION_KEY],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    // A value that is not a number is treated as "newer than known" by the caller's check, so
    // nothing is written over a table we do not understand.
    Ok(value.map_or(0, |v| v.trim().parse().unwrap_or(u32::MAX)))
}

/// The failure of one migration step.
pub(crate) struct MigrationFailure {
    pub(crate) migration: Migration,
    pub(crate) source: rusqlite::Error,
}

/// The outcome of checking versions before migrating.
pub(crate) enum MigrateError {
    /// The database is newer than this build.
    TooNew(u32),
    /// A step failed (rolled back).
    Step(MigrationFailure),
    /// Reading the version or starting a transaction failed.
    Sqlite(rusqlite::Error),
}

/// Applies every migration newer than the database's version, each in its own `IMMEDIATE`
/// transaction that re-reads the version first (another process may have migrated meanwhile).
/// Returns the version the database is at afterwards.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, MigrateError> {
    let current = enrich_version(conn).map_err(MigrateError::Sqlite)?;
    if current > ENRICH_SCHEMA_VERSION {
        return Err(MigrateError::TooNew(current));
    }
    if current == ENRICH_SCHEMA_VERSION {
        // Up to date: no write lock taken on the common path.
        return Ok(current);
    }
    for migration in MIGRATIONS {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(MigrateError::Sqlite)?;
        let now = enrich_version(&tx).map_err(MigrateError::Sqlite)?;
        if now > ENRICH_SCHEMA_VERSION {
            return Err(MigrateError::TooNew(now));
        }
        if now >= migration.version {
            continue;
        }
        let step = |tx: &rusqlite::Transaction<'_>| -> rusqlite::Result<()> {
            tx.execute_batch(LLMC_META_DDL)?;
            tx.execute_batch(migration.sql)?;
            tx.execute(
                "INSERT INTO llmc_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (ENRICH_SCHEMA_VERSION_KEY, migration.version.to_string()),
            )?;
            Ok(())
        };
        step(&tx).map_err(|source| {
            MigrateError::Step(MigrationFailure {
                migration: *migration,
                source,
            })
        })?;
        tx.commit().map_err(|source| {
            MigrateError::Step(MigrationFailure {
                migration: *migration,
                source,
            })
        })?;
    }
    Ok(ENRICH_SCHEMA_VERSION)
}

/// Makes a read-only connection see enrich's current schema over whatever version of it the file
/// holds, without writing to the file: an index enrich never wrote, or one an older enrich wrote
/// that cannot be migrated here.
///
/// The current schema is what the migrations build on LLMC's tables in an in-memory database, so
/// this follows every migration, released or future, that creates tables or adds columns:
/// - a table (or virtual table, or view) of enrich's that the file lacks becomes an empty `TEMP`
///   one of the same name, which SQLite looks in before the file's own schema;
/// - a table that lacks columns a later migration adds is shadowed by a `TEMP` view of the same
///   name selecting its stored columns and, for each missing one, the column's default (`NULL`
///   when it has none): what `ALTER TABLE … ADD COLUMN` would have given the stored rows.
///
/// Indexes and triggers are left out: reading needs neither. A migration that rewrites stored
/// rows is not replayed: the rows are read as they are.
pub(crate) fn shadow_missing(conn: &Connection) -> rusqlite::Result<()> {
    shadow_missing_of(conn, MIGRATIONS)
}

/// [`shadow_missing`] for the schema that `migrations` build.
fn shadow_missing_of(conn: &Connection, migrations: &[Migration]) -> rusqlite::Result<()> {
    let target = Connection::open_in_memory()?;
    target.execute_batch(LLMC_V8_DDL)?;
    let llmc_objects = object_names(&target)?;
    for migration in migrations {
        target.execute_batch(migration.sql)?;
    }
    let mut objects = target.prepare(
        "SELECT l.name, l.type, m.sql FROM pragma_table_list AS l
         JOIN sqlite_master AS m ON m.name = l.name
         WHERE l.schema = 'main' AND l.type IN ('table', 'virtual', 'view')
           AND l.name NOT LIKE 'sqlite_%'
         ORDER BY m.rowid",
    )?;
    let enrich_objects = objects
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|(name, ..)| !llmc_objects.contains(name));
    for (name, kind, sql) in enrich_objects {
        // The search table is built and filled by the first search that needs it
        // (`Db::search`), never shadowed empty.
        if name == crate::fts::SEARCH_FTS.name {
            continue;
        }
        let stored = columns(conn, "main", &name)?;
        if stored.is_empty() {
            conn.execute_batch(&temp_copy(&target, &name, &kind, &sql)?)?;
            continue;
        }
        let wanted = column_defaults(&target, &name)?;
        if wanted.iter().all(|(column, _)| stored.contains(column)) {
            continue;
        }
        let select: Vec<String> = wanted
            .iter()
            .map(|(column, default)| {
                let value = if stored.contains(column) {
                    quoted(column)
                } else {
                    default.clone().unwrap_or_else(|| "NULL".to_owned())
                };
                format!("{value} AS {}", quoted(column))
            })
            .collect();
        conn.execute_batch(&format!(
            "CREATE TEMP VIEW {name} AS SELECT {} FROM main.{name}",
            select.join(", "),
            name = quoted(&name),
        ))?;
    }
    Ok(())
}

/// The names of the tables, virtual tables and views of `conn`'s main schema.
fn object_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type != 'shadow'")?;
    stmt.query_map([], |row| row.get(0))?.collect()
}

/// The column names of `schema.table` (none when it does not exist).
fn columns(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1, ?2)")?;
    stmt.query_map([table, schema], |row| row.get(0))?.collect()
}

/// The columns of `table` in the target schema with their default expressions, in order.
fn column_defaults(
    target: &Connection,
    table: &str,
) -> rusqlite::Result<Vec<(String, Option<String>)>> {
    let mut stmt = target.prepare("SELECT name, dflt_value FROM pragma_table_info(?1)")?;
    stmt.query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// The statement creating an empty `TEMP` copy of the target schema's object `name`.
fn temp_copy(target: &Connection, name: &str, kind: &str, sql: &str) -> rusqlite::Result<String> {
    // SQLite stores a schema statement with its leading keywords normalised: `CREATE VIEW`,
    // `CREATE VIRTUAL TABLE` and then the bare name.
    if let Some(rest) = sql.strip_prefix("CREATE VIRTUAL TABLE ") {
        return Ok(format!("CREATE VIRTUAL TABLE temp.{rest}"));
    }
    if let Some(rest) = sql.strip_prefix("CREATE VIEW ") {
        return Ok(format!("CREATE TEMP VIEW {rest}"));
    }
    debug_assert_eq!(kind, "table", "{sql}");
    let mut stmt = target.prepare("SELECT name, type, dflt_value FROM pragma_table_info(?1)")?;
    let definitions = stmt
        .query_map([name], |row| {
            let (column, declared, default): (String, String, Option<String>) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let default = default
                .map(|d| format!(" DEFAULT ({d})"))
                .unwrap_or_default();
            Ok(format!("{} {declared}{default}", quoted(&column)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(format!(
        "CREATE TEMP TABLE {} ({})",
        quoted(name),
        definitions.join(", ")
    ))
}

/// `name` as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables and views of `schema` in `conn` (shadow tables of virtual ones left out), with
    /// their columns in order.
    fn shape(conn: &Connection, schema: &str) -> Vec<(String, Vec<String>)> {
        let mut stmt = conn
            .prepare(
                "SELECT name FROM pragma_table_list WHERE schema = ?1 AND type != 'shadow'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .expect("tables");
        let names: Vec<String> = stmt
            .query_map([schema], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("names");
        names
            .into_iter()
            .map(|name| {
                let cols = columns(conn, schema, &name).expect("columns");
                (name, cols)
            })
            .collect()
    }

    /// A file with LLMC's tables and enrich's first `n` migrations, as a build of that version
    /// left it.
    fn at_version(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
        let path = dir.join(format!("v{n}.db"));
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(LLMC_V8_DDL).expect("LLMC's tables");
        for migration in &MIGRATIONS[..n] {
            conn.execute_batch(migration.sql).expect("migration");
        }
        conn.execute(
            "INSERT INTO llmc_meta (key, value) VALUES (?1, ?2)",
            (ENRICH_SCHEMA_VERSION_KEY, n.to_string()),
        )
        .expect("version");
        path
    }

    #[test]
    fn a_read_only_connection_to_every_older_schema_sees_the_current_tables_and_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let current = Connection::open_in_memory().expect("memory");
        current.execute_batch(LLMC_V8_DDL).expect("LLMC");
        for migration in MIGRATIONS {
            current.execute_batch(migration.sql).expect("migration");
        }
        // The search table is the one exception: the first search builds and fills it.
        let expected: Vec<_> = shape(&current, "main")
            .into_iter()
            .filter(|(name, _)| !name.starts_with(crate::fts::SEARCH_FTS.name))
            .collect();
        for n in 0..MIGRATIONS.len() {
            let path = at_version(dir.path(), n);
            let before = std::fs::read(&path).expect("read");
            let conn =
                Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .expect("open read-only");
            shadow_missing(&conn).expect("shadow");
            // What a query names resolves to the shadow first: every table and column of the
            // current schema answers, in the current order.
            let seen: Vec<(String, Vec<String>)> = expected
                .iter()
                .map(|(name, _)| {
                    let stmt = conn
                        .prepare(&format!("SELECT * FROM {} LIMIT 0", quoted(name)))
                        .unwrap_or_else(|e| panic!("version {n}: {name}: {e}"));
                    let cols = stmt.column_names().map(str::to_owned).collect();
                    (name.clone(), cols)
                })
                .collect();
            assert_eq!(seen, expected, "version {n}");
            // LLMC's tables are never shadowed.
            let shadowed: Vec<String> = shape(&conn, "temp").into_iter().map(|(n, _)| n).collect();
            assert!(
                shadowed.iter().all(|name| name.starts_with("enrich_")),
                "version {n}: {shadowed:?}"
            );
            drop(conn);
            assert_eq!(std::fs::read(&path).expect("read"), before, "version {n}");
        }
    }

    #[test]
    fn an_added_column_reads_as_its_default_on_the_stored_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.db");
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(LLMC_V8_DDL).expect("LLMC");
        conn.execute_batch(MIGRATIONS[0].sql).expect("v1");
        conn.execute_batch(
            "INSERT INTO enrich_runs (started_at_ms, config_fingerprint) VALUES (5, 'fp');
             ALTER TABLE enrich_runs DROP COLUMN skipped;",
        )
        .expect("a run, and a column the current schema has with a default");
        drop(conn);
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
        shadow_missing(&conn).expect("shadow");
        let row: (i64, String, i64, Option<String>, Option<String>) = conn
            .query_row(
                "SELECT started_at_ms, status, skipped, holder_host, prompt_fingerprint
                 FROM enrich_runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .expect("the run");
        assert_eq!(row, (5, "running".to_owned(), 0, None, None));
    }

    #[test]
    fn virtual_tables_views_and_added_columns_of_any_later_migration_are_shadowed() {
        const LATER: &[Migration] = &[
            Migration {
                version: 1,
                name: "a table, an index, a trigger",
                sql: "CREATE TABLE enrich_a (id INTEGER PRIMARY KEY, x TEXT NOT NULL);
                      CREATE INDEX enrich_a_x ON enrich_a(x);
                      CREATE TRIGGER enrich_a_t AFTER INSERT ON enrichments BEGIN
                          INSERT INTO enrich_a (x) VALUES (new.span_hash);
                      END;",
            },
            Migration {
                version: 2,
                name: "a column, a full-text table, a view",
                sql: "ALTER TABLE enrich_a ADD COLUMN y INTEGER NOT NULL DEFAULT 7;
                      CREATE VIRTUAL TABLE IF NOT EXISTS enrich_text USING fts5(
                          symbol, summary, tokenize='unicode61');
                      CREATE VIEW enrich_a_view AS SELECT x, y FROM enrich_a;",
            },
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.db");
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(LLMC_V8_DDL).expect("LLMC");
        conn.execute_batch(LATER[0].sql).expect("version 1");
        conn.execute("INSERT INTO enrich_a (x) VALUES ('stored')", [])
            .expect("a row");
        drop(conn);
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
        shadow_missing_of(&conn, LATER).expect("shadow");
        let row: (String, i64) = conn
            .query_row("SELECT x, y FROM enrich_a_view", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("the stored row through the view, with the added column's default");
        assert_eq!(row, ("stored".to_owned(), 7));
        let found: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM enrich_text WHERE enrich_text MATCH 'parser'",
                [],
                |r| r.get(0),
            )
            .expect("an empty full-text table answers MATCH");
        assert_eq!(found, 0);
    }
}
