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
    /// The file is not in the index.
    NoFile,
    /// The file is indexed, but none of its spans contains the line; its spans cover
    /// `first..=last`.
    NoSpan {
        /// The first line any span of the file covers.
        first: u32,
        /// The last line any span of the file covers.
        last: u32,
    },
}

const INNERMOST_SQL: &str = "SELECT s.span_hash FROM spans AS s JOIN files AS f ON f.id = s.file_id
     WHERE f.path = ?1 AND s.start_line <= ?2 AND s.end_line >= ?2
     ORDER BY s.end_line - s.start_line, s.start_line DESC LIMIT 1";

const FILE_RANGE_SQL: &str = "SELECT MIN(s.start_line), MAX(s.end_line) FROM spans AS s
     JOIN files AS f ON f.id = s.file_id WHERE f.path = ?1";

impl Db {
    /// The innermost span (fewest lines, then the latest start) of the file at `path` (as the
    /// index stores it: relative to the repo root, `/`-separated) that contains `line`.
    ///
    /// Uses LLMC's unique index on `files.path` and the spans of that one file.
    pub fn span_at(&self, path: &str, line: u32) -> Result<SpanAt, DbError> {
        let hash: Option<String> = self
            .conn
            .prepare_cached(INNERMOST_SQL)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![path, line], |row| row.get(0))
                    .optional()
            })
            .map_err(self.err("look up a span by location"))?;
        if let Some(hash) = hash {
            return Ok(SpanAt::Found(hash));
        }
        let range: (Option<u32>, Option<u32>) = self
            .conn
            .prepare_cached(FILE_RANGE_SQL)
            .and_then(|mut stmt| stmt.query_row([path], |row| Ok((row.get(0)?, row.get(1)?))))
            .map_err(self.err("look up a span by location"))?;
        Ok(match range {
            (Some(first), Some(last)) => SpanAt::NoSpan { first, last },
            _ => SpanAt::NoFile,
        })
    }
}
