//! Full-text search over the stored enrichments: [`Db::search`] with a [`SearchQuery`], answered
//! as ranked [`SearchHit`]s from enrich's FTS5 table `enrich_search` (migration 12).
//!
//! The table holds, per enrichment whose span is indexed, the span's symbol, the summary, the
//! inputs, outputs, side effects and pitfalls (one item per line) and the file's path, under
//! the enrichment's rowid; the [`fts`](crate::fts) module keeps it in step with every write of
//! an enrich connection, so a span is found as soon as the transaction storing it commits.
//!
//! Ranking is FTS5's BM25 with the column weights of [`SEARCH_WEIGHTS`]: a word matched in the
//! symbol counts ten times what it counts in a pitfall, and a rare word more than a common one;
//! short fields (a symbol) weigh a match more than long ones (a summary). Plain words
//! ([`QuerySyntax::Words`]) are quoted for FTS5, so punctuation never makes a query fail, and a
//! span matching any of them is a hit; spans matching more of them rank higher.
//!
//! A search only reads: in WAL mode it sees the last committed state and never waits for a
//! writer. When the table is missing on a connection that cannot write (an index whose enrich
//! tables are older, opened read-only), the search builds it in the connection's TEMP schema
//! first, from what is stored.

use rusqlite::{Connection, ErrorCode, params};
use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::fts::{SEARCH_FTS, SEARCH_TABLE_SQL, keep_in_step};
use crate::open::Db;
use crate::path_glob::PathGlob;

/// The BM25 weight of each column of the search table, in its column order: matches in the
/// symbol and the summary count most.
pub const SEARCH_WEIGHTS: [(&str, f64); 7] = [
    ("symbol", 10.0),
    ("summary", 5.0),
    ("inputs", 2.0),
    ("outputs", 2.0),
    ("side_effects", 1.0),
    ("pitfalls", 1.0),
    ("path", 2.0),
];

/// The most words (whitespace-separated) a [`SearchQuery`] may hold: each plain word is a phrase
/// to look up and to rank, so a pasted page would make one search do the work of thousands.
pub const MAX_SEARCH_WORDS: usize = 64;

/// The default number of hits of a [`SearchQuery`].
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;

/// The rows from which plain words found in more than half of them are left out of a search
/// (see `Db::without_ubiquitous`).
const PRUNE_FROM_ROWS: i64 = 10_000;

/// The last rows of the search table on which a word's share is measured.
const PRUNE_SAMPLE: i64 = 10_000;

/// The most tokens an excerpt holds.
const EXCERPT_TOKENS: u32 = 24;

/// How the text of a [`SearchQuery`] is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuerySyntax {
    /// Plain words: each is quoted as an FTS5 phrase (so `foo-bar`, `a.b` or a stray `"` are
    /// words, never syntax), a word ending in `*` is a prefix, and a span matching any word is
    /// a hit.
    #[default]
    Words,
    /// FTS5's query syntax as written (`AND`, `OR`, `NOT`, `NEAR(…)`, `"phrases"`, `prefix*`,
    /// `column:word`); a mistake is [`DbError::BadSearchQuery`].
    Fts5,
}

/// What to search for, and how many hits to return.
///
/// Deserialized, every field but `text` may be left out: `{"text": "retry backoff"}` is
/// [`SearchQuery::words`]`("retry backoff")`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    /// The words (or the FTS5 query) to search for.
    pub text: String,
    /// How `text` is read.
    pub syntax: QuerySyntax,
    /// The most hits to return (at least 1).
    pub limit: u32,
    /// Only spans whose file path (relative to the repository root) matches this
    /// [`PathGlob`]: `*` and `?` stay inside a directory, `**` crosses directories, a glob
    /// without `/` matches the file name at any depth; case-sensitive.
    pub path: Option<String>,
    /// Only spans of files of this language (`files.lang`, such as `python`; any case).
    pub language: Option<String>,
    /// Written before each matched word of an excerpt.
    pub mark_start: String,
    /// Written after each matched word of an excerpt.
    pub mark_end: String,
}

impl Default for SearchQuery {
    /// A search for nothing yet, with the defaults of [`SearchQuery::words`].
    fn default() -> Self {
        Self::words(String::new())
    }
}

impl SearchQuery {
    /// A search for plain `words`: the default limit, no filters, matched words marked
    /// `**like this**`.
    pub fn words(words: impl Into<String>) -> Self {
        Self {
            text: words.into(),
            syntax: QuerySyntax::Words,
            limit: DEFAULT_SEARCH_LIMIT,
            path: None,
            language: None,
            mark_start: "**".to_owned(),
            mark_end: "**".to_owned(),
        }
    }

    /// The FTS5 query this search runs (before [`Db::search`] leaves out words found in most
    /// spans); `None` when plain words hold nothing to search for.
    pub fn match_expression(&self) -> Option<String> {
        match self.syntax {
            QuerySyntax::Fts5 => Some(self.text.clone()).filter(|t| !t.trim().is_empty()),
            QuerySyntax::Words => {
                let phrases = self.phrases();
                (!phrases.is_empty()).then(|| phrases.join(" OR "))
            }
        }
    }

    /// Each plain word as an FTS5 phrase: quoted (`"` doubled), a trailing `*` kept as a
    /// prefix; words without a letter or digit hold no token to match and are left out.
    fn phrases(&self) -> Vec<String> {
        self.text
            .split_whitespace()
            .filter_map(|word| {
                let (stem, prefix) = match word.strip_suffix('*') {
                    Some(stem) => (stem.trim_end_matches('*'), "*"),
                    None => (word, ""),
                };
                stem.chars()
                    .any(char::is_alphanumeric)
                    .then(|| format!("\"{}\"{prefix}", stem.replace('"', "\"\"")))
            })
            .collect()
    }
}

/// One span found by [`Db::search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// 1 for the best hit, then 2, 3, …
    pub rank: u32,
    /// The file's path relative to the repository root.
    pub path: String,
    /// The span's first line.
    pub start_line: u32,
    /// The span's last line (inclusive).
    pub end_line: u32,
    /// The symbol the span defines.
    pub symbol: String,
    /// The kind of span (`function`, `class`, …).
    pub kind: String,
    /// The file's language (`files.lang`).
    pub language: String,
    /// The span's hash (`enrich show` takes it).
    pub span_hash: String,
    /// How well the span matches: BM25 with [`SEARCH_WEIGHTS`], higher is better. Comparable
    /// between the hits of one search, not across searches.
    pub score: f64,
    /// Part of the summary around the matched words, each wrapped in the query's marks (the
    /// summary's start when only other fields matched; empty when there is no summary).
    pub excerpt: String,
}

/// What [`Db::sync_search_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "rows")]
pub enum SearchSync {
    /// Nothing to do: every stored enrichment is searchable.
    Current,
    /// The table was missing and was built from every stored enrichment (this many rows).
    Built(u64),
    /// Enrichments another program stored were added (this many rows).
    CaughtUp(u64),
}

/// The rowid after which no enrichment is in the search table yet (0 when it is empty).
const SEARCH_LAST_ROWID_SQL: &str = "SELECT coalesce(\
     (SELECT rowid FROM main.enrich_search ORDER BY rowid DESC LIMIT 1), 0)";

/// The search: matching rows in rank order, each joined to its enrichment (and checked to be
/// that enrichment's), span and file; the search table drives the join.
const SEARCH_SQL: &str = "
SELECT f.path, s.start_line, s.end_line, s.symbol, s.kind, f.lang, e.span_hash,
       enrich_search.rank, snippet(enrich_search, 1, ?3, ?4, '…', ?5)
FROM enrich_search
CROSS JOIN main.enrichments AS e
    ON e.rowid = enrich_search.rowid AND e.span_hash = enrich_search.span_hash
CROSS JOIN main.spans AS s ON s.span_hash = e.span_hash
CROSS JOIN main.files AS f ON f.id = s.file_id
WHERE enrich_search MATCH ?1 AND enrich_search.rank MATCH ?2
  AND (?6 IS NULL OR f.id IN (SELECT value FROM json_each(?6)))
  AND (?7 IS NULL OR lower(f.lang) = lower(?7))
ORDER BY enrich_search.rank
LIMIT ?8";

/// The ranking function with [`SEARCH_WEIGHTS`] (FTS5's `rank MATCH` syntax).
fn rank_function() -> String {
    let weights: Vec<String> = SEARCH_WEIGHTS
        .iter()
        .map(|(_, weight)| format!("{weight:.1}"))
        .collect();
    // The last column, `span_hash`, is not indexed: it never matches.
    format!("bm25({}, 0.0)", weights.join(", "))
}

/// Whether an error of the search statement is FTS5 refusing the query (its syntax, an unknown
/// column), rather than the database failing.
fn is_query_error(error: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(failure, Some(message)) = error else {
        return None;
    };
    let query_error = failure.code == ErrorCode::Unknown
        && [
            "fts5:",
            "no such column",
            "unknown special query",
            "unterminated",
        ]
        .iter()
        .any(|p| message.starts_with(p));
    query_error.then(|| message.trim_start_matches("fts5: ").to_owned())
}

/// Whether `schema` holds the search table.
fn has_search_table(conn: &Connection, schema: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.sqlite_master \
             WHERE type = 'table' AND name = 'enrich_search')"
        ),
        [],
        |row| row.get(0),
    )
}

impl Db {
    /// Searches the stored enrichments: at most `query.limit` spans in rank order (best first),
    /// restricted by the query's path glob and language.
    ///
    /// Returns no hits when plain words hold nothing to search for. An FTS5 query FTS5 refuses
    /// is [`DbError::BadSearchQuery`] with FTS5's reason; plain words never are. A query of more
    /// than [`MAX_SEARCH_WORDS`] words is [`DbError::SearchQueryTooLong`]. Of plain words, those
    /// found in more than half of the spans are left out when the others find something (see
    /// docs/database.md, "Full text").
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, DbError> {
        let words = query.text.split_whitespace().count();
        if words > MAX_SEARCH_WORDS {
            return Err(DbError::SearchQueryTooLong {
                words,
                max: MAX_SEARCH_WORDS,
            });
        }
        self.ensure_search_table()?;
        let (expression, all_words) = match query.syntax {
            QuerySyntax::Fts5 => (query.match_expression(), None),
            QuerySyntax::Words => {
                let phrases = query.phrases();
                let kept = self.without_ubiquitous(phrases.clone())?;
                let all = (kept.len() < phrases.len()).then(|| phrases.join(" OR "));
                ((!kept.is_empty()).then(|| kept.join(" OR ")), all)
            }
        };
        let Some(expression) = expression else {
            return Ok(Vec::new());
        };
        let files = match &query.path {
            Some(glob) => Some(self.files_matching(glob)?),
            None => None,
        };
        let files = files.as_deref();
        let hits = self.ranked(query, &expression, files)?;
        match all_words {
            // The rarer words found nothing: the common ones are all there is to rank.
            Some(all) if hits.is_empty() => self.ranked(query, &all, files),
            _ => Ok(hits),
        }
    }

    /// The ids of the files whose path matches `glob` ([`PathGlob`]), as a JSON array for the
    /// search's `json_each`. The glob is matched in Rust, over every file of the index (far
    /// fewer than spans), so the search itself keeps its filter and limit in SQL.
    fn files_matching(&self, glob: &str) -> Result<String, DbError> {
        let glob_matcher = PathGlob::new(glob).map_err(|reason| DbError::BadPathGlob {
            glob: glob.to_owned(),
            reason,
        })?;
        let action = "read the file paths for the search's path glob";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, path FROM main.files")
            .map_err(self.err(action))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(self.err(action))?;
        let mut ids = Vec::new();
        for row in rows {
            let (id, path) = row.map_err(self.err(action))?;
            if glob_matcher.matches(&path) {
                ids.push(id);
            }
        }
        Ok(serde_json::Value::from(ids).to_string())
    }

    /// The hits of the FTS5 `expression`, with `query`'s filters (`files`: the ids of the files
    /// its path glob matches, a JSON array), limit and marks.
    fn ranked(
        &self,
        query: &SearchQuery,
        expression: &str,
        files: Option<&str>,
    ) -> Result<Vec<SearchHit>, DbError> {
        let action = "search the enrichments";
        let mut stmt = self
            .conn
            .prepare_cached(SEARCH_SQL)
            .map_err(self.err(action))?;
        let rows = stmt
            .query_map(
                params![
                    expression,
                    rank_function(),
                    query.mark_start,
                    query.mark_end,
                    EXCERPT_TOKENS,
                    files,
                    query.language,
                    query.limit.max(1),
                ],
                |row| {
                    Ok(SearchHit {
                        rank: 0,
                        path: row.get(0)?,
                        start_line: row.get(1)?,
                        end_line: row.get(2)?,
                        symbol: row.get(3)?,
                        kind: row.get(4)?,
                        language: row.get(5)?,
                        span_hash: row.get(6)?,
                        score: -row.get::<_, f64>(7)?,
                        excerpt: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    })
                },
            )
            .map_err(|e| self.search_error(query, e))?;
        let mut hits = Vec::new();
        for (rank, hit) in (1..).zip(rows) {
            let mut hit = hit.map_err(|e| self.search_error(query, e))?;
            hit.rank = rank;
            hits.push(hit);
        }
        Ok(hits)
    }

    /// Whether enrichments are stored that the search table does not hold yet (written by a
    /// program without enrich's triggers, such as LLMC), or the table is missing:
    /// [`sync_search_index`](Self::sync_search_index) on a read-write connection adds them.
    pub fn search_index_needs_sync(&self) -> Result<bool, DbError> {
        let action = "check the search table";
        if !has_search_table(&self.conn, "main").map_err(self.err(action))? {
            return Ok(true);
        }
        self.conn
            .query_row(
                &format!(
                    "SELECT EXISTS ({} WHERE e.rowid > ({SEARCH_LAST_ROWID_SQL}) LIMIT 1)",
                    SEARCH_FTS.rows
                ),
                [],
                |row| row.get(0),
            )
            .map_err(self.err(action))
    }

    /// Brings the search table up to date, in one `IMMEDIATE` transaction when there is
    /// something to do: builds it from every stored enrichment when it is missing, else adds
    /// the enrichments stored after its last row by a program without enrich's triggers. Every
    /// read-write open does this, so `enrich index` and `enrich run` leave the table complete.
    ///
    /// Enrichments another program rewrote in place, or deleted, are not found this way: a
    /// deleted one never shows up in results (each hit is checked against its enrichment),
    /// a rewritten one is found by its old words until enrich writes it again.
    pub fn sync_search_index(&mut self) -> Result<SearchSync, DbError> {
        self.ensure_writable("update the search table")?;
        let done = if self.search_index_needs_sync()? {
            let (tx, errors) = self.immediate("lock the database to update the search table")?;
            let err = |action| errors.on(action);
            let done = if has_search_table(&tx, "main").map_err(err("check the search table"))? {
                let last: i64 = tx
                    .query_row(SEARCH_LAST_ROWID_SQL, [], |row| row.get(0))
                    .map_err(err("read the search table"))?;
                let added = tx
                    .execute(
                        &format!(
                            "INSERT INTO main.enrich_search ({}) {} WHERE e.rowid > ?1",
                            SEARCH_FTS.columns, SEARCH_FTS.rows
                        ),
                        [last],
                    )
                    .map_err(err("add new enrichments to the search table"))?;
                SearchSync::CaughtUp(added as u64)
            } else {
                tx.execute_batch(SEARCH_TABLE_SQL)
                    .map_err(err("build the search table"))?;
                let rows: u64 = tx
                    .query_row("SELECT count(*) FROM main.enrich_search", [], |row| {
                        row.get(0)
                    })
                    .map_err(err("count the search table's rows"))?;
                SearchSync::Built(rows)
            };
            tx.commit().map_err(err("commit the search table"))?;
            done
        } else {
            SearchSync::Current
        };
        keep_in_step(&self.conn).map_err(self.err("keep the full-text tables in step"))?;
        Ok(done)
    }

    /// Makes sure the search has a table: when neither `main` nor `temp` holds one (a
    /// read-only connection to an index without it), builds one in `temp` from what is stored.
    fn ensure_search_table(&self) -> Result<(), DbError> {
        let action = "build a temporary search table";
        let present = has_search_table(&self.conn, "main")
            .and_then(|main| Ok(main || has_search_table(&self.conn, "temp")?))
            .map_err(self.err(action))?;
        if present {
            return Ok(());
        }
        let temp = SEARCH_TABLE_SQL.replacen(
            "CREATE VIRTUAL TABLE enrich_search",
            "CREATE VIRTUAL TABLE temp.enrich_search",
            1,
        );
        self.conn.execute_batch(&temp).map_err(self.err(action))
    }

    /// `phrases` without those found in more than half of the search table's rows, unless that
    /// would leave none (tables under [`PRUNE_FROM_ROWS`] rows are ranked whole: that is
    /// quick). BM25 gives such a word no weight (FTS5 clamps its IDF to almost 0), so leaving
    /// it out changes no score that matters; keeping it would make every one of those rows a
    /// hit to rank (a plain-words query such as `how is the cache invalidated` would rank
    /// nearly the whole table). A word's share is measured on the last [`PRUNE_SAMPLE`] rows.
    fn without_ubiquitous(&self, phrases: Vec<String>) -> Result<Vec<String>, DbError> {
        if phrases.len() < 2 {
            return Ok(phrases);
        }
        let action = "count the rows of a search word";
        let last: i64 = self
            .conn
            .query_row(
                "SELECT coalesce((SELECT rowid FROM enrich_search ORDER BY rowid DESC LIMIT 1), 0)",
                [],
                |row| row.get(0),
            )
            .map_err(self.err(action))?;
        let after = last - PRUNE_SAMPLE;
        // The sample's rows (rowids of deleted enrichments are gaps).
        let sample: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM enrich_search_docsize WHERE id > ?1",
                [after],
                |row| row.get(0),
            )
            .map_err(self.err(action))?;
        if last < PRUNE_FROM_ROWS || sample == 0 {
            return Ok(phrases);
        }
        let mut count = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM enrich_search WHERE enrich_search MATCH ?1 AND rowid > ?2",
            )
            .map_err(self.err(action))?;
        let mut kept = Vec::with_capacity(phrases.len());
        for phrase in &phrases {
            let rows: i64 = count
                .query_row(params![phrase, after], |row| row.get(0))
                .map_err(self.err(action))?;
            if rows * 2 <= sample {
                kept.push(phrase.clone());
            }
        }
        Ok(if kept.is_empty() { phrases } else { kept })
    }

    fn search_error(&self, query: &SearchQuery, error: rusqlite::Error) -> DbError {
        match is_query_error(&error) {
            Some(reason) => DbError::BadSearchQuery {
                query: query.text.clone(),
                reason,
            },
            None => self.err("search the enrichments")(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expression(text: &str) -> Option<String> {
        SearchQuery::words(text).match_expression()
    }

    #[test]
    fn plain_words_become_quoted_phrases_joined_by_or() {
        assert_eq!(
            expression("retry back-off").as_deref(),
            Some("\"retry\" OR \"back-off\"")
        );
        assert_eq!(
            expression("say \"hi a.b").as_deref(),
            Some("\"say\" OR \"\"\"hi\" OR \"a.b\"")
        );
        assert_eq!(
            expression("pars* x**").as_deref(),
            Some("\"pars\"* OR \"x\"*")
        );
        assert_eq!(expression("  -- * \" "), None);
        let fts = SearchQuery {
            syntax: QuerySyntax::Fts5,
            ..SearchQuery::words("a AND (b")
        };
        assert_eq!(fts.match_expression().as_deref(), Some("a AND (b"));
    }

    #[test]
    fn a_query_deserializes_from_its_text_alone() {
        let query: SearchQuery =
            serde_json::from_str(r#"{"text": "retry", "limit": 3}"#).expect("query");
        assert_eq!(
            query,
            SearchQuery {
                limit: 3,
                ..SearchQuery::words("retry")
            }
        );
        let fts: SearchQuery =
            serde_json::from_str(r#"{"text": "a OR b", "syntax": "fts5"}"#).expect("query");
        assert_eq!(fts.syntax, QuerySyntax::Fts5);
    }

    #[test]
    fn the_rank_function_weighs_every_indexed_column() {
        assert_eq!(
            rank_function(),
            "bm25(10.0, 5.0, 2.0, 2.0, 1.0, 1.0, 2.0, 0.0)"
        );
        let names: Vec<&str> = SEARCH_WEIGHTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, SEARCH_FTS.declared[..7]);
    }
}
