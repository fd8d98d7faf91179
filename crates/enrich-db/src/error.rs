//! [`DbError`]: every way opening, reading or writing the index can fail, each with the path it
//! concerns and what to do about it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

use enrich_types::RunId;

/// An error of the index database or of reading a span's source file.
///
/// Every variant names the file it concerns. The variants whose message says "the file was not
/// modified" are only raised before enrich writes anything to the file; [`DbError::Corrupt`],
/// damage found while working, makes no such claim.
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

    /// SQLite found damage while enrich was working on the file. Writes that committed before
    /// the damage showed stay in the file, so this error makes no claim that nothing was written.
    #[error(
        "{path} is a damaged SQLite database: SQLite reported {source} while trying to {action}; {DAMAGE_FIX}"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What enrich was doing.
        action: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },

    /// The file failed the integrity check made before anything is written (a damaged page, a
    /// truncated file): it was refused and left byte for byte as it was.
    #[error(
        "{path} is a damaged SQLite database ({}); {DAMAGE_FIX} (the file was not modified)",
        problems.join("; ")
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// SQLite's findings (the first few lines of `PRAGMA quick_check`, or the error that
        /// reading the schema ran into).
        problems: Vec<String>,
    },

    /// The index file's permissions do not let this user read it, or write it when a writing
    /// command opened it.
    #[error(
        "{path} cannot be {access} by this user (permission denied); give the user running enrich \
         read and write permission on it, or pass --db with an index it can use (the file was not \
         modified)"
    )]
    PermissionDenied {
        /// The file.
        path: PathBuf,
        /// `read` or `written`.
        access: &'static str,
    },

    /// The index's directory is not writable, which SQLite's WAL journal needs even to read.
    #[error(
        "the directory {} of the index {} is not writable: SQLite keeps the index's WAL journal \
         (`-wal` and `-shm` files) next to it, so enrich needs to write there even to read; make \
         the directory writable for this user (chmod u+w), or copy the index to a writable \
         directory and pass --db",
        directory.display(),
        path.display()
    )]
    ReadOnlyDirectory {
        /// The directory holding the index.
        directory: PathBuf,
        /// The index.
        path: PathBuf,
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

    /// A search query in FTS5's syntax that FTS5 refuses (a syntax error, an unknown column).
    #[error(
        "the search query {query:?} is not valid FTS5 syntax ({reason}); quote words that hold punctuation (\"foo-bar\"), close every quote and parenthesis, write AND, OR, NOT and NEAR in capitals, and name only the columns symbol, summary, inputs, outputs, side_effects, pitfalls and path; or search for plain words"
    )]
    BadSearchQuery {
        /// The query as given.
        query: String,
        /// FTS5's reason.
        reason: String,
    },

    /// A `--path` glob that does not compile.
    #[error(
        "the path glob {glob:?} is not valid ({reason}); close every `[` and `{{`, or escape it with `\\`"
    )]
    BadPathGlob {
        /// The glob as given.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A search query with more words than a search takes.
    #[error(
        "the search query has {words} words; a search takes at most {max}: keep the words that name what you look for"
    )]
    SearchQueryTooLong {
        /// The query's words (whitespace-separated).
        words: usize,
        /// The most a search takes.
        max: usize,
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

    /// A `--refresh` selector that does not parse.
    #[error(
        "cannot read the refresh selector {selector:?}: {reason}; a selector is one of {}, and selectors joined by commas select what matches them all, e.g. --refresh 'model=qwen2.5:0.5b,older-than=30d'",
        crate::refresh::SELECTOR_FORMS
    )]
    RefreshSelector {
        /// The selector as written.
        selector: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The temporary full-text tables of a retrieval evaluation could not be built or searched.
    #[error(
        "cannot {action} in the retrieval evaluation's temporary database: {source}; it needs SQLite built with FTS5 (enrich's own build has it) and free space in the temporary directory (TMPDIR)"
    )]
    Retrieval {
        /// What was being done.
        action: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
}

/// What to do about a damaged index.
const DAMAGE_FIX: &str = "restore it from a backup, or delete it and rebuild it with `enrich index` \
     (an LLMC index: with LLMC's own re-index), which enriches every span again";

/// SQLite's `SQLITE_READONLY_DIRECTORY`: the database's directory is not writable, so its
/// journal cannot be created.
const READONLY_DIRECTORY: std::ffi::c_int = rusqlite::ffi::SQLITE_READONLY_DIRECTORY;

fn extended_code(error: &rusqlite::Error) -> Option<std::ffi::c_int> {
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
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
        Some(ErrorCode::DatabaseCorrupt) => DbError::Corrupt {
            path,
            action,
            source,
        },
        Some(ErrorCode::ReadOnly) if extended_code(&source) == Some(READONLY_DIRECTORY) => {
            DbError::ReadOnlyDirectory {
                directory: directory_of(&path),
                path,
            }
        }
        Some(ErrorCode::ReadOnly) => DbError::ReadOnly { path, action },
        _ => DbError::Sqlite {
            path,
            action,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_directory_is_named_as_the_directory() {
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(READONLY_DIRECTORY),
            Some("attempt to write a readonly database".to_owned()),
        );
        let err = sqlite_error(
            Path::new("/srv/repo/.llmc/rag/index_v2.db"),
            "read the schema",
            Duration::from_secs(1),
            refused,
        );
        let message = err.to_string();
        assert!(
            message.starts_with("the directory /srv/repo/.llmc/rag of the index"),
            "{message}"
        );
        assert!(message.contains("make the directory writable"), "{message}");
        // A file that is read-only itself stays a plain refused write.
        let file = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        );
        let err = sqlite_error(Path::new("i.db"), "write", Duration::from_secs(1), file);
        assert!(matches!(err, DbError::ReadOnly { .. }), "{err:?}");
    }
}
