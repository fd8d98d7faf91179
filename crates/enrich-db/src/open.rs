//! [`Db`] and opening it: checks that run before anything is written, LLMC's schema on a fresh
//! file, enrich's migrations, connection settings.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{DbError, sqlite_error};
use crate::schema::{
    self, ENRICH_SCHEMA_VERSION, LLMC_META_DDL, LLMC_SCHEMA_VERSION, LLMC_V8_DDL, MigrateError,
    REQUIRED_COLUMNS,
};

/// The default busy timeout: how long a connection waits for another process's write lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The default number of failed runs after which a span is dead-lettered.
pub const DEFAULT_MAX_FAILURES_PER_SPAN: u32 = 3;

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How many findings of `PRAGMA quick_check` are read at most: enough to say what is wrong, not
/// a line for every damaged page of a wrecked file.
const QUICK_CHECK_MAX_FINDINGS: u32 = 20;

/// How many findings a [`DbError::Damaged`] quotes.
const DAMAGE_QUOTED: usize = 3;

/// The size of the SQLite file header.
const SQLITE_HEADER_LEN: u64 = 100;

/// Prepared statements kept per connection; the write path uses fewer than this.
const STATEMENT_CACHE_CAPACITY: usize = 32;

/// LLMC's index location inside a repository: `<repo>/.llmc/rag/index_v2.db`.
pub fn default_db_path(repo_root: &Path) -> PathBuf {
    repo_root.join(".llmc").join("rag").join("index_v2.db")
}

/// How to open the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Open an existing index read-write; a missing file is an error, never created.
    #[default]
    Existing,
    /// Open the index read-write, creating it (and its parent directories) with LLMC's schema
    /// when the file is missing or empty.
    CreateIfMissing,
    /// Open an existing index read-only; nothing is ever written. enrich's tables are read as the
    /// file holds them, the tables and columns of a newer enrich schema shadowed empty for this
    /// connection (see [`OpenMode::ReadUpgrading`]).
    ReadOnly,
    /// Open an existing index for reading, as commands that only look do: when enrich's tables
    /// are older than this build and the file can be written, they are migrated first (each step
    /// in its own transaction, LLMC's tables untouched, as a read-write open does); when it
    /// cannot be written, as [`OpenMode::ReadOnly`]. The connection itself is read-only either
    /// way. An index enrich never wrote to gets no enrich tables from a reading command.
    ReadUpgrading,
}

/// Settings for [`Db::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// Whether to create, write or only read.
    pub mode: OpenMode,
    /// How long to wait for another process's lock before failing with [`DbError::Busy`].
    pub busy_timeout: Duration,
    /// Failed runs after which a span is dead-lettered; 0 never dead-letters.
    pub max_failures_per_span: u32,
    /// Run SQLite's `PRAGMA quick_check` once the schema has been read and before anything is
    /// written, refusing a damaged file with [`DbError::Damaged`]. It reads every page: about
    /// 0.4 s for an index of a million spans (docs/database.md has the measurements).
    pub quick_check: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            mode: OpenMode::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_failures_per_span: DEFAULT_MAX_FAILURES_PER_SPAN,
            quick_check: false,
        }
    }
}

/// A connection to an LLMC index with enrich's tables.
///
/// `Db` is `Send` (not `Sync`): one writer thread owns it. Reads take `&self`, writes `&mut self`
/// and run in `IMMEDIATE` transactions, so a concurrent LLMC or enrich process waits up to the
/// busy timeout instead of failing.
#[derive(Debug)]
pub struct Db {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    pub(crate) read_only: bool,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_failures_per_span: u32,
    /// When this connection last deleted dead span leases (claims do it at most every
    /// few seconds).
    pub(crate) last_reap: Option<std::time::Instant>,
}

/// What the file on disk is, judged from its bytes before SQLite opens it.
enum FileState {
    Missing,
    Empty,
    Sqlite,
}

impl Db {
    /// Opens an existing index read-write ([`OpenMode::Existing`], default settings).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Opens the index read-write, creating it with LLMC's schema if it does not exist
    /// ([`OpenMode::CreateIfMissing`], default settings).
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let options = OpenOptions {
            mode: OpenMode::CreateIfMissing,
            ..OpenOptions::default()
        };
        Self::open_with(path, &options)
    }

    /// Opens an existing index read-only ([`OpenMode::ReadOnly`], default settings).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let options = OpenOptions {
            mode: OpenMode::ReadOnly,
            ..OpenOptions::default()
        };
        Self::open_with(path, &options)
    }

    /// Opens the index as `options` say.
    ///
    /// Before anything is written the file is checked: its header must be SQLite's, SQLite must
    /// read its schema, `PRAGMA user_version` must be 8 and LLMC's columns must be there, and,
    /// with [`OpenOptions::quick_check`], SQLite's `quick_check` must find no damage. A file that
    /// fails any check is reported and left byte for byte as it was (damage found here is
    /// [`DbError::Damaged`]). Then, read-write only: WAL mode, and enrich's migrations.
    ///
    /// A read-only open of an index in a directory this process may not write, which SQLite
    /// needs for the WAL's shared-memory file even to read, reads the file as it is on disk
    /// (SQLite's `immutable` mode) when there is no WAL beside it holding newer pages; with a WAL,
    /// it is [`DbError::ReadOnlyDirectory`].
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self, DbError> {
        let path = path.as_ref();
        let read_only = matches!(options.mode, OpenMode::ReadOnly | OpenMode::ReadUpgrading);
        match Self::open_as(path.to_path_buf(), options, false) {
            Err(DbError::ReadOnlyDirectory { .. })
                if read_only && !has_wal(path) && path.to_str().is_some() =>
            {
                Self::open_as(path.to_path_buf(), options, true)
            }
            other => other,
        }
    }

    /// [`Self::open_with`], the file opened in SQLite's `immutable` mode when `immutable`.
    fn open_as(path: PathBuf, options: &OpenOptions, immutable: bool) -> Result<Self, DbError> {
        match (inspect_file(&path)?, options.mode) {
            (FileState::Missing, OpenMode::CreateIfMissing) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| DbError::Io {
                        path: parent.to_path_buf(),
                        action: "create the directory for the index",
                        source,
                    })?;
                }
            }
            (FileState::Missing, _) => return Err(DbError::NotFound { path }),
            (FileState::Empty, OpenMode::CreateIfMissing) | (FileState::Sqlite, _) => {}
            (FileState::Empty, _) => {
                return Err(DbError::NotAnIndex {
                    path,
                    reason: "the file is empty".to_owned(),
                });
            }
        }

        let read_only = matches!(options.mode, OpenMode::ReadOnly | OpenMode::ReadUpgrading);
        let flags = match options.mode {
            OpenMode::ReadOnly | OpenMode::ReadUpgrading => OpenFlags::SQLITE_OPEN_READ_ONLY,
            OpenMode::Existing => OpenFlags::SQLITE_OPEN_READ_WRITE,
            OpenMode::CreateIfMissing => {
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            }
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let busy_timeout = options.busy_timeout;
        let opened = if immutable {
            Connection::open_with_flags(immutable_uri(&path), flags | OpenFlags::SQLITE_OPEN_URI)
        } else {
            Connection::open_with_flags(&path, flags)
        };
        let conn = opened.map_err(|e| sqlite_error(&path, "open the database", busy_timeout, e))?;
        // SQLite quietly opens a file it may not write read-only; a writing command would only
        // find out at its first write.
        if !read_only
            && conn
                .is_readonly(rusqlite::MAIN_DB)
                .map_err(|e| sqlite_error(&path, "open the database", busy_timeout, e))?
        {
            return Err(DbError::PermissionDenied {
                path,
                access: "written",
            });
        }

        let mut db = Db {
            conn,
            path,
            read_only,
            busy_timeout,
            max_failures_per_span: options.max_failures_per_span,
            last_reap: None,
        };
        db.configure().map_err(unwritten)?;
        if options.mode == OpenMode::CreateIfMissing {
            let (version, tables) = read_header(&db.conn)
                .map_err(db.err("read the schema"))
                .map_err(unwritten)?;
            if version == 0 && tables == 0 {
                db.create_llmc_schema()?;
            }
        }
        db.check_llmc_schema().map_err(unwritten)?;
        if options.quick_check {
            db.refuse_damaged().map_err(unwritten)?;
        }
        if db.read_only {
            db.read_enrich_schema(options).map_err(unwritten)?;
        } else {
            db.set_wal()?;
            db.run_migrations()?;
            db.sync_search_index()?;
        }
        Ok(db)
    }

    /// The database file this connection is on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the connection was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Sets how long this connection waits for another connection's lock before a write or
    /// read fails with [`DbError::Busy`].
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<(), DbError> {
        self.busy_timeout = timeout;
        self.conn
            .busy_timeout(timeout)
            .map_err(self.err("set the busy timeout"))
    }

    /// Lets this connection keep up to `bytes` of database pages in memory (SQLite's default is
    /// 2 MiB); the memory is taken only as pages are read. A connection that writes all over
    /// big indexes, as a run's writer does (`enrichments` and `enrich_attempts` are keyed by
    /// span hash), then reads fewer pages back from the WAL or the file.
    pub fn set_page_cache(&mut self, bytes: u64) -> Result<(), DbError> {
        let kib = i64::try_from(bytes / 1024).unwrap_or(i64::MAX).max(1);
        // A negative `cache_size` is a size in KiB rather than a number of pages.
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = -{kib}"))
            .map_err(self.err("set the page cache size"))
    }

    /// Runs SQLite's `PRAGMA quick_check` over the whole file (it reads every page: about 0.4 s
    /// for an index of a million spans) and returns its findings, at most 20; an empty list
    /// means the file is sound. Damage bad enough to stop the check is an error
    /// ([`DbError::Corrupt`]).
    pub fn quick_check(&self) -> Result<Vec<String>, DbError> {
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA quick_check({QUICK_CHECK_MAX_FINDINGS})"))
            .map_err(self.err("check the database"))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(self.err("check the database"))?;
        let mut problems = Vec::new();
        for row in rows {
            // One row may hold several findings, one per line, under a heading naming the
            // schema ("*** in database main ***").
            let text = row.map_err(self.err("check the database"))?;
            problems.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && *line != "ok" && !line.starts_with("***"))
                    .map(str::to_owned),
            );
        }
        Ok(problems)
    }

    /// [`Self::quick_check`], with its findings as a [`DbError::Damaged`].
    fn refuse_damaged(&self) -> Result<(), DbError> {
        let problems = self.quick_check()?;
        if problems.is_empty() {
            return Ok(());
        }
        let mut quoted: Vec<String> = problems.iter().take(DAMAGE_QUOTED).cloned().collect();
        if problems.len() > DAMAGE_QUOTED {
            quoted.push(format!(
                "{} more findings: see `enrich doctor`",
                problems.len() - DAMAGE_QUOTED
            ));
        }
        Err(DbError::Damaged {
            path: self.path.clone(),
            problems: quoted,
        })
    }

    /// A closure mapping a rusqlite error to [`DbError`] with this file and `action`.
    pub(crate) fn err(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |e| sqlite_error(&self.path, action, self.busy_timeout, e)
    }

    /// Starts an `IMMEDIATE` transaction (the write lock taken at once, waiting up to the busy
    /// timeout), a failure to take it reported as `lock_action`; with it, what the
    /// transaction's statements report their failures with.
    pub(crate) fn immediate(
        &mut self,
        lock_action: &'static str,
    ) -> Result<(rusqlite::Transaction<'_>, TxErrors), DbError> {
        let errors = TxErrors {
            path: self.path.clone(),
            busy: self.busy_timeout,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(errors.on(lock_action))?;
        Ok((tx, errors))
    }

    /// Refuses a write on a read-only connection with a clear message.
    pub(crate) fn ensure_writable(&self, action: &'static str) -> Result<(), DbError> {
        if self.read_only {
            return Err(DbError::ReadOnly {
                path: self.path.clone(),
                action,
            });
        }
        Ok(())
    }

    /// Per-connection settings; none of them writes to the file.
    fn configure(&mut self) -> Result<(), DbError> {
        self.conn
            .busy_timeout(self.busy_timeout)
            .map_err(self.err("set the busy timeout"))?;
        self.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        crate::refresh::register_functions(&self.conn)
            .map_err(self.err("register enrich's SQL functions"))?;
        // LLMC declares ON DELETE CASCADE; the constraints only hold with this on.
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON")
            .map_err(self.err("enable foreign keys"))?;
        if !self.read_only {
            // Safe in WAL mode (no corruption on power loss, at worst the last batches are
            // lost and, being idempotent, redone); saves an fsync per batch.
            // Checkpoint the WAL every 10,000 pages (about 40 MB) instead of 1,000: a run's
            // batches dirty the same index pages again and again, and each checkpoint writes
            // and syncs them; this cuts the fsyncs of a run by more than half.
            self.conn
                .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000")
                .map_err(self.err("configure the write connection"))?;
        }
        Ok(())
    }

    /// Creates LLMC's schema on an empty database, unless another process did it first (checked
    /// again under the write lock).
    fn create_llmc_schema(&mut self) -> Result<(), DbError> {
        // Switch to WAL before the first table exists: this is LLMC's first statement too.
        self.set_wal()?;
        let (tx, errors) = self.immediate("lock the new database")?;
        let err = |action| errors.on(action);
        let (version, tables) = read_header(&tx).map_err(err("read the new database"))?;
        if version == 0 && tables == 0 {
            tx.execute_batch(LLMC_V8_DDL)
                .map_err(err("create LLMC's tables"))?;
            tx.pragma_update(None, "user_version", LLMC_SCHEMA_VERSION)
                .map_err(err("set the schema version"))?;
        }
        tx.commit().map_err(err("create LLMC's tables"))
    }

    /// Checks `user_version` and the columns enrich uses. Reads only.
    fn check_llmc_schema(&self) -> Result<(), DbError> {
        let (version, tables) = read_header(&self.conn).map_err(self.err("read the schema"))?;
        match version {
            LLMC_SCHEMA_VERSION => {}
            0 if tables == 0 => {
                return Err(DbError::NotAnIndex {
                    path: self.path.clone(),
                    reason: "the database has no tables".to_owned(),
                });
            }
            0 => {
                let reason = if self.has_table("spans")? {
                    "it has LLMC's tables but no schema version (an index from before LLMC \
                     versioned its schema); open it once with a current LLMC so it migrates the file"
                } else {
                    "it has neither LLMC's tables nor its schema version"
                };
                return Err(DbError::NotAnIndex {
                    path: self.path.clone(),
                    reason: reason.to_owned(),
                });
            }
            found if found < LLMC_SCHEMA_VERSION => {
                return Err(DbError::LlmcSchemaTooOld {
                    path: self.path.clone(),
                    found,
                    expected: LLMC_SCHEMA_VERSION,
                });
            }
            found => {
                return Err(DbError::LlmcSchemaTooNew {
                    path: self.path.clone(),
                    found,
                    expected: LLMC_SCHEMA_VERSION,
                });
            }
        }
        for (table, columns) in REQUIRED_COLUMNS {
            let present = self.columns(table)?;
            if let Some(column) = columns.iter().find(|c| !present.iter().any(|p| p == *c)) {
                return Err(DbError::MissingColumn {
                    path: self.path.clone(),
                    table,
                    column,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn has_table(&self, name: &str) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [name],
                |row| row.get(0),
            )
            .map_err(self.err("read the schema"))
    }

    fn columns(&self, table: &str) -> Result<Vec<String>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(self.err("read the schema"))?;
        let names = stmt
            .query_map([table], |row| row.get(0))
            .map_err(self.err("read the schema"))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(self.err("read the schema"))?;
        Ok(names)
    }

    fn set_wal(&self) -> Result<(), DbError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .map_err(self.err("read the journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            self.conn
                .query_row("PRAGMA journal_mode = WAL", [], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(self.err("switch the journal to WAL"))?;
        }
        Ok(())
    }

    fn run_migrations(&mut self) -> Result<(), DbError> {
        // `llmc_meta` belongs to LLMC's v8 schema; create it if this index lacks it, since that
        // is where enrich's version lives.
        self.conn
            .execute_batch(LLMC_META_DDL)
            .map_err(self.err("create llmc_meta"))?;
        match schema::migrate(&mut self.conn) {
            Ok(_) => Ok(()),
            Err(MigrateError::TooNew(found)) => Err(DbError::EnrichSchemaTooNew {
                path: self.path.clone(),
                found,
                supported: ENRICH_SCHEMA_VERSION,
            }),
            Err(MigrateError::Step(failure)) => Err(DbError::Migration {
                path: self.path.clone(),
                version: failure.migration.version,
                name: failure.migration.name,
                source: failure.source,
            }),
            Err(MigrateError::Sqlite(e)) => Err(self.err("migrate enrich's tables")(e)),
        }
    }

    /// Makes a read-only connection see enrich's current schema: migrates the file first when
    /// the mode says so and the file can be written, shadows what is still missing otherwise.
    fn read_enrich_schema(&self, options: &OpenOptions) -> Result<(), DbError> {
        let mut found = self.enrich_version()?;
        if found > 0
            && found < ENRICH_SCHEMA_VERSION
            && options.mode == OpenMode::ReadUpgrading
            && self.migrate_if_writable(options)?
        {
            found = self.enrich_version()?;
        }
        if found > ENRICH_SCHEMA_VERSION {
            return Err(DbError::EnrichSchemaTooNew {
                path: self.path.clone(),
                found,
                supported: ENRICH_SCHEMA_VERSION,
            });
        }
        if found == ENRICH_SCHEMA_VERSION {
            return Ok(());
        }
        schema::shadow_missing(&self.conn)
            .map_err(self.err("prepare views of enrich's tables as this build reads them"))
    }

    fn enrich_version(&self) -> Result<u32, DbError> {
        schema::enrich_version(&self.conn).map_err(self.err("read llmc_meta"))
    }

    /// Migrates enrich's tables through a read-write connection of its own, as
    /// [`OpenMode::Existing`] does; false when this user or this file system may not write the
    /// file (or its directory, for the WAL journal).
    fn migrate_if_writable(&self, options: &OpenOptions) -> Result<bool, DbError> {
        let writable = OpenOptions {
            mode: OpenMode::Existing,
            quick_check: false,
            ..options.clone()
        };
        match Db::open_with(&self.path, &writable) {
            Ok(_) => Ok(true),
            Err(
                DbError::PermissionDenied { .. }
                | DbError::ReadOnly { .. }
                | DbError::ReadOnlyDirectory { .. },
            ) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

/// Damage SQLite ran into before anything was written: [`DbError::Damaged`], whose message can
/// say that the file was not modified.
fn unwritten(error: DbError) -> DbError {
    match error {
        DbError::Corrupt { path, source, .. } => DbError::Damaged {
            path,
            problems: vec![source.to_string()],
        },
        other => other,
    }
}

/// `PRAGMA user_version` and the number of tables: reading both makes SQLite parse the header
/// and the schema, which is where a damaged file shows first.
fn read_header(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let version = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let tables = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    Ok((version, tables))
}

/// Whether a WAL file with content lies beside the database (pages a reader must see).
fn has_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// The `file:` URI that opens `path` in SQLite's `immutable` mode: no lock taken, no
/// shared-memory file needed, the file assumed unchanging while the connection reads it.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_str().unwrap_or_default().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Looks at the file's bytes without SQLite: missing, empty, or with SQLite's header. Anything
/// else is refused here, before SQLite could touch it.
fn inspect_file(path: &Path) -> Result<FileState, DbError> {
    let io_err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::PermissionDenied => DbError::PermissionDenied {
            path: path.to_path_buf(),
            access: "read",
        },
        _ => DbError::Io {
            path: path.to_path_buf(),
            action: "inspect",
            source,
        },
    };
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(io_err(e)),
    };
    if !metadata.is_file() {
        return Err(DbError::NotADatabase {
            path: path.to_path_buf(),
            detail: "it is not a regular file".to_owned(),
        });
    }
    let len = metadata.len();
    if len == 0 {
        return Ok(FileState::Empty);
    }
    if len < SQLITE_HEADER_LEN {
        return Err(DbError::NotADatabase {
            path: path.to_path_buf(),
            detail: format!("{len} bytes, shorter than SQLite's {SQLITE_HEADER_LEN}-byte header"),
        });
    }
    let mut magic = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(io_err)?;
    if &magic != SQLITE_MAGIC {
        return Err(DbError::NotADatabase {
            path: path.to_path_buf(),
            detail: "its first bytes are not SQLite's header".to_owned(),
        });
    }
    Ok(FileState::Sqlite)
}

/// How the statements of one write transaction report a failure: the file and its busy timeout,
/// with the action given per statement ([`Db::immediate`]).
pub(crate) struct TxErrors {
    path: PathBuf,
    busy: Duration,
}

impl TxErrors {
    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The error of `action` failing with a SQLite error.
    pub(crate) fn on(
        &self,
        action: &'static str,
    ) -> impl Fn(rusqlite::Error) -> DbError + Copy + '_ {
        move |e| sqlite_error(&self.path, action, self.busy, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_cache_is_sized_in_bytes_per_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.db");
        let mut db = Db::open_or_create(&path).expect("create");
        let cache = |db: &Db| -> i64 {
            db.conn
                .query_row("PRAGMA cache_size", [], |row| row.get(0))
                .expect("cache_size")
        };
        let default = cache(&db);
        db.set_page_cache(32 << 20).expect("set");
        assert_eq!(cache(&db), -32 * 1024, "32 MiB, in KiB");
        assert_eq!(
            cache(&Db::open(&path).expect("open")),
            default,
            "others keep theirs"
        );
        db.set_page_cache(0).expect("set");
        assert_eq!(cache(&db), -1, "never less than 1 KiB");
    }
}
