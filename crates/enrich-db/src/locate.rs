//! Finding a span by location: the innermost span of a file containing a line.

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::open::Db;

/// What [`Db::span_at`] found at `PATH:LINE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanAt {
    /// The innermost span containing the line: its hash.
    Found(String),
    /// The file holds no span there, but a file with the same content (the same file hash, size
    /// and language) does: the index stores content shared by several files once, at the file whose
    /// path sorts first.
    SameContent {
        /// The innermost span of that file containing the line.
        span_hash: String,
        /// The file that holds it.
        owner: String,
    },
    /// The file is not in the index.
    NoFile,
    /// The file is indexed, but none of its spans (nor of its copies) contains the line; they
    /// cover `first..=last`.
    NoSpan {
        /// The first line any span of the file covers.
        first: u32,
        /// The last line any span of the file covers.
        last: u32,
    },
    /// The file is indexed without any span, and no file with the same content has one (it is
    /// blank, or LLMC could not split it).
    NoSpans,
}

const INNERMOST_SQL: &str = "SELECT s.span_hash FROM spans AS s JOIN files AS f ON f.id = s.file_id
     WHERE f.path = ?1 AND s.start_line <= ?2 AND s.end_line >= ?2
     ORDER BY s.end_line - s.start_line, s.start_line DESC LIMIT 1";

/// The innermost span around the line in another file with the same content; the first path
/// wins a tie.
const COPY_INNERMOST_SQL: &str = "SELECT s.span_hash, c.path FROM files AS f
     JOIN files AS c ON c.file_hash = f.file_hash AND c.size = f.size AND c.lang = f.lang
         AND c.id <> f.id
     JOIN spans AS s ON s.file_id = c.id
     WHERE f.path = ?1 AND s.start_line <= ?2 AND s.end_line >= ?2
     ORDER BY s.end_line - s.start_line, s.start_line DESC, c.path LIMIT 1";

/// The lines the spans of the file and of its copies cover, and whether the file is indexed.
const FILE_RANGE_SQL: &str = "SELECT MIN(s.start_line), MAX(s.end_line),
     (SELECT count(*) FROM files WHERE path = ?1)
     FROM files AS f JOIN files AS c
     ON c.file_hash = f.file_hash AND c.size = f.size AND c.lang = f.lang
     JOIN spans AS s ON s.file_id = c.id WHERE f.path = ?1";

impl Db {
    /// The innermost span (fewest lines, then the latest start) of the file at `path` (as the
    /// index stores it: relative to the repo root, `/`-separated) that contains `line`; when the
    /// file has none there, the innermost one of a file with the same content
    /// ([`SpanAt::SameContent`]).
    ///
    /// Uses LLMC's unique index on `files.path` and the spans of that one file; only a file
    /// without a span at the line costs a scan of `files` for copies.
    pub fn span_at(&self, path: &str, line: u32) -> Result<SpanAt, DbError> {
        let action = "look up a span by location";
        let hash: Option<String> = self
            .conn
            .prepare_cached(INNERMOST_SQL)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![path, line], |row| row.get(0))
                    .optional()
            })
            .map_err(self.err(action))?;
        if let Some(hash) = hash {
            return Ok(SpanAt::Found(hash));
        }
        let copy: Option<(String, String)> = self
            .conn
            .prepare_cached(COPY_INNERMOST_SQL)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![path, line], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
            })
            .map_err(self.err(action))?;
        if let Some((span_hash, owner)) = copy {
            return Ok(SpanAt::SameContent { span_hash, owner });
        }
        let range: (Option<u32>, Option<u32>, u64) = self
            .conn
            .prepare_cached(FILE_RANGE_SQL)
            .and_then(|mut stmt| {
                stmt.query_row([path], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            })
            .map_err(self.err(action))?;
        Ok(match range {
            (Some(first), Some(last), _) => SpanAt::NoSpan { first, last },
            (_, _, 0) => SpanAt::NoFile,
            _ => SpanAt::NoSpans,
        })
    }
}
