//! [`DbError`]: every way opening, reading or writing the index can fail, each with the path it
//! concerns and what to do about it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

use crate::types::RunId;

/// An error of the index database or of reading a span's source file.
///
/// Every variant names the file it concerns. The variants about a file that is not, or no longer,
/// a usable index all mean the same thing for the caller: nothing was written to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The caller asked to open an existing database and there is none.
    #[error(
        "no index database at {path}; build it with `enrich index` in the repository (an index LLMC built works too), or pass --repo or --db with the right path"
    )]
    NotFound {
        /// The path that was looked at.
        path: PathBuf,
    },

    /// The file exists but is not an SQLite database (wrong header, too short, garbage).
    #[error(
        "{path} is not a SQLite database ({detail}); pass --db with the right path (the file was not modified)"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        detail: String,
    },

    /// The file is an SQLite database but SQLite reports it damaged.
    #[error(
        "{path} is a damaged SQLite database ({source}); restore it from a backup or rebuild the index with LLMC (the file was not modified)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },

    /// A valid SQLite database that is not an LLMC index.
    #[error(
        "{path} is not an LLMC index: {reason}; pass --db with the right path (the file was not modified)"
    )]
    NotAnIndex {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// An LLMC index older than schema version 8.
    #[error(
        "{path} is an LLMC index of schema version {found}, enrich needs version {expected}; open it once with a current LLMC so it migrates the file (the file was not modified)"
    )]
    LlmcSchemaTooOld {
        /// The file.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i64,
        /// The version enrich reads and writes.
        expected: i64,
    },

    /// An LLMC index newer than this build knows.
    #[error(
        "{path} is an LLMC index of schema version {found}, newer than version {expected} that this enrich build knows; upgrade enrich (the file was not modified)"
    )]
    LlmcSchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i64,
        /// The version enrich reads and writes.
        expected: i64,
    },

    /// An LLMC table lacks a column that enrich reads or writes.
    #[error(
        "{path}: table `{table}` has no column `{column}`, which LLMC schema version 8 defines; the index is damaged or was not written by LLMC (the file was not modified)"
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The missing column.
        column: &'static str,
    },

    /// enrich's own tables were written by a newer enrich.
    #[error(
        "{path} carries enrich schema version {found}, newer than version {supported} that this build knows; upgrade enrich (the file was not modified)"
    )]
    EnrichSchemaTooNew {
        /// The file.
        path: PathBuf,
        /// The `enrich_schema_version` found in `llmc_meta`.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },

    /// enrich's own tables are older than this build and the database was opened read-only.
    #[error(
        "{path} carries enrich schema version {found} but this build reads version {supported}; run a writing command (such as `enrich run`) once to migrate it"
    )]
    EnrichSchemaOutdated {
        /// The file.
        path: PathBuf,
        /// The `enrich_schema_version` found in `llmc_meta`.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    /// One of enrich's own migrations failed; it was rolled back.
    #[error(
        "{path}: enrich schema migration {version} ({name}) failed and was rolled back: {source}"
    )]
    Migration {
        /// The file.
        path: PathBuf,
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },

    /// Another process held the database lock for longer than the busy timeout.
    #[error(
        "{path} stayed locked by another process for the whole busy timeout ({timeout:?}) while trying to {action}; wait for the other enrich or LLMC process to finish, or raise the busy timeout"
    )]
    Busy {
        /// The file.
        path: PathBuf,
        /// What enrich was doing.
        action: &'static str,
        /// How long it waited.
        timeout: Duration,
    },

    /// A write was attempted on a database opened read-only.
    #[error("{path} was opened read-only, so enrich cannot {action}; open it read-write")]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// The refused write.
        action: &'static str,
    },

    /// Any other SQLite error.
    #[error("{path}: cannot {action}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What enrich was doing.
        action: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },

    /// The directory for a new database could not be created, or the file could not be inspected.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What enrich was doing.
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A stored row cannot be decoded (for instance a list column that is not a JSON array).
    #[error(
        "{path}: the `{column}` of the row for span {span_hash} cannot be read ({detail}); rewrite the row by re-enriching that span"
    )]
    BadRow {
        /// The file.
        path: PathBuf,
        /// The span the row belongs to.
        span_hash: String,
        /// The column.
        column: &'static str,
        /// What is wrong.
        detail: String,
    },

    /// A write to an `llmc_meta` key that belongs to LLMC.
    #[error(
        "llmc_meta key {key:?} is not enrich's (its keys start with `enrich_`); refusing to write it"
    )]
    ForeignMetaKey {
        /// The key.
        key: String,
    },

    /// `finish_run` or an outcome named a run that `start_run` never returned.
    #[error("{path}: there is no run {run}; use the id `start_run` returned")]
    UnknownRun {
        /// The file.
        path: PathBuf,
        /// The unknown id.
        run: RunId,
    },

    /// A span's file path is absolute, but index paths are relative to the repo root.
    #[error(
        "span path {path:?} is absolute, but index paths are relative to the repo root; refusing to read it"
    )]
    AbsoluteSpanPath {
        /// The path as stored in the index.
        path: String,
    },

    /// A span's file path leads outside the repo root (`..`, or a symlink pointing out).
    #[error("span path {path:?} leads outside the repo root {root}; refusing to read it")]
    SpanPathEscapes {
        /// The path as stored in the index.
        path: String,
        /// The repo root.
        root: PathBuf,
    },

    /// A span's source file cannot be read (missing, unreadable).
    #[error(
        "cannot read the source of a span from {path}: {source}; if the file moved or was deleted, re-index the repo with LLMC"
    )]
    SourceIo {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A span's byte range does not fit its source file.
    #[error(
        "span bytes {start}..{end} do not fit {path} ({len} bytes); the file changed since it was indexed, re-index it with LLMC"
    )]
    SpanOutOfRange {
        /// The file.
        path: PathBuf,
        /// The span's first byte.
        start: u64,
        /// The span's end (exclusive).
        end: u64,
        /// The file's length.
        len: u64,
    },
}

/// Maps a rusqlite error to a [`DbError`] with the file and the action in it, recognising the
/// SQLite codes that have a dedicated variant.
pub(crate) fn sqlite_error(
    path: &Path,
    action: &'static str,
    busy_timeout: Duration,
    source: rusqlite::Error,
) -> DbError {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Busy {
            path,
            action,
            timeout: busy_timeout,
        },
        Some(ErrorCode::NotADatabase) => DbError::NotADatabase {
            path,
            detail: source.to_string(),
        },
        Some(ErrorCode::DatabaseCorrupt) => DbError::Corrupt { path, source },
        Some(ErrorCode::ReadOnly) => DbError::ReadOnly { path, action },
        _ => DbError::Sqlite {
            path,
            action,
            source,
        },
    }
}
