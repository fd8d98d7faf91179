//! The two rankings of a retrieval evaluation (`enrich eval search`): what BM25 finds for a
//! question over the code alone, and over the code and its enrichment.
//!
//! [`Db::retrieval_corpus`] reads every span of the index once, with its source text and its
//! enrichment (if any), into two FTS5 tables of a private temporary database (SQLite's `""`
//! file: on disk, deleted when closed, so a large index does not have to fit in memory):
//!
//! - `code(symbol, path, source)`: what a search finds without enrichment;
//! - `enriched(symbol, path, source, summary, inputs, outputs, side_effects, pitfalls)`: the
//!   same plus the enrichment's text fields (lists one item a line). Usage snippets and
//!   evidence are left out, as in `enrich search`.
//!
//! Both use the `unicode61` tokenizer (as LLMC's `enrichments_fts`: no stemming, which hurts
//! code words; `get_netrc_auth` is the words `get`, `netrc`, `auth`) and BM25 with every
//! column weighted 1, ties broken by span order. Every span of the index is a document of both,
//! so the rankings differ only by the enrichment text. The index itself is only read.

use rusqlite::{Connection, params};

use crate::error::DbError;
use crate::open::Db;
use crate::pending::{span_columns, span_from_row};
use crate::read::decode_list;
use crate::source::SourceReader;

const CORPUS_SQL: &str = concat!(
    "SELECT ",
    span_columns!(),
    ", e.span_hash IS NOT NULL, e.summary, e.inputs, e.outputs, e.side_effects, e.pitfalls \
     FROM spans AS s JOIN files AS f ON f.id = s.file_id \
     LEFT JOIN enrichments AS e ON e.span_hash = s.span_hash \
     ORDER BY s.id"
);

const TABLES_SQL: &str = "
CREATE VIRTUAL TABLE code USING fts5(symbol, path, source, tokenize = 'unicode61');
CREATE VIRTUAL TABLE enriched USING fts5(
    symbol, path, source, summary, inputs, outputs, side_effects, pitfalls,
    tokenize = 'unicode61'
);
";

/// A span of a [`RetrievalCorpus`]: what an expected answer is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusSpan {
    /// The span's hash.
    pub span_hash: String,
    /// Its file's path, relative to the repository root.
    pub path: String,
    /// The symbol it defines.
    pub symbol: String,
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, inclusive.
    pub end_line: u32,
    /// Whether it has an enrichment.
    pub enriched: bool,
}

/// Which text a ranking searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// Symbol names, paths and source text.
    CodeOnly,
    /// The same plus the enrichment's text fields.
    Enriched,
}

/// Every span of an index in two full-text tables, ready to rank questions
/// ([`Db::retrieval_corpus`]).
pub struct RetrievalCorpus {
    conn: Connection,
    spans: Vec<CorpusSpan>,
    unreadable: u64,
}

impl std::fmt::Debug for RetrievalCorpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrievalCorpus")
            .field("spans", &self.spans.len())
            .field("unreadable", &self.unreadable)
            .finish_non_exhaustive()
    }
}

fn scratch(action: &'static str) -> impl Fn(rusqlite::Error) -> DbError {
    move |source| DbError::Retrieval { action, source }
}

impl Db {
    /// Builds the two rankings' tables from every span of the index, its source (read through
    /// `sources`) and its enrichment. A span whose source cannot be read (its file is gone or
    /// changed) is a document without source text, counted in
    /// [`RetrievalCorpus::unreadable_sources`].
    ///
    /// # Errors
    ///
    /// [`DbError`] when the index cannot be read or a row does not decode, and
    /// [`DbError::Retrieval`] when the temporary tables cannot be built (no FTS5, no space).
    pub fn retrieval_corpus(&self, sources: &SourceReader) -> Result<RetrievalCorpus, DbError> {
        let mut conn = Connection::open("").map_err(scratch("open"))?;
        conn.execute_batch(TABLES_SQL)
            .map_err(scratch("create the full-text tables"))?;
        let tx = conn.transaction().map_err(scratch("fill the tables"))?;
        let mut spans = Vec::new();
        let mut unreadable = 0;
        {
            let mut code = tx
                .prepare("INSERT INTO code (rowid, symbol, path, source) VALUES (?1, ?2, ?3, ?4)")
                .map_err(scratch("fill the tables"))?;
            let mut enriched = tx
                .prepare(
                    "INSERT INTO enriched (rowid, symbol, path, source, summary, inputs, outputs, \
                     side_effects, pitfalls) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(scratch("fill the tables"))?;
            let read = self.err("read the spans for a retrieval evaluation");
            let mut stmt = self.conn.prepare(CORPUS_SQL).map_err(&read)?;
            let mut rows = stmt.query([]).map_err(&read)?;
            while let Some(row) = rows.next().map_err(&read)? {
                let span = span_from_row(row).map_err(&read)?;
                let has_enrichment: bool = row.get(14).map_err(&read)?;
                let field = |i: usize| -> rusqlite::Result<String> {
                    Ok(row.get::<_, Option<String>>(i)?.unwrap_or_default())
                };
                let list = |i: usize| -> rusqlite::Result<String> {
                    let text = field(i)?;
                    // A column that is not a JSON list is searched as it is stored.
                    Ok(decode_list(Some(&text)).map_or(text, |items| items.join("\n")))
                };
                let source = sources.read(&span).unwrap_or_else(|_| {
                    unreadable += 1;
                    String::new()
                });
                let rowid = i64::try_from(spans.len()).unwrap_or(i64::MAX);
                code.execute(params![rowid, span.symbol, span.file_path, source])
                    .map_err(scratch("fill the tables"))?;
                enriched
                    .execute(params![
                        rowid,
                        span.symbol,
                        span.file_path,
                        source,
                        field(15).map_err(&read)?,
                        list(16).map_err(&read)?,
                        list(17).map_err(&read)?,
                        list(18).map_err(&read)?,
                        list(19).map_err(&read)?,
                    ])
                    .map_err(scratch("fill the tables"))?;
                spans.push(CorpusSpan {
                    span_hash: span.span_hash,
                    path: span.file_path,
                    symbol: span.symbol,
                    start_line: span.start_line,
                    end_line: span.end_line,
                    enriched: has_enrichment,
                });
            }
        }
        tx.commit().map_err(scratch("fill the tables"))?;
        Ok(RetrievalCorpus {
            conn,
            spans,
            unreadable,
        })
    }
}

impl RetrievalCorpus {
    /// Every span, in span order; [`rank`](Self::rank) answers with indexes into this.
    pub fn spans(&self) -> &[CorpusSpan] {
        &self.spans
    }

    /// How many spans' source could not be read (indexed without source text).
    pub fn unreadable_sources(&self) -> u64 {
        self.unreadable
    }

    /// The best `limit` spans for `question` by `ranking`, best first, as indexes into
    /// [`spans`](Self::spans). The question is plain text: each distinct word (a run of letters
    /// and digits, lowercased) is one quoted term, and a span matches when it holds any of
    /// them ([`plain_words_query`]); a question without words ranks nothing.
    ///
    /// # Errors
    ///
    /// [`DbError::Retrieval`] when the search fails.
    pub fn rank(
        &self,
        ranking: Ranking,
        question: &str,
        limit: usize,
    ) -> Result<Vec<usize>, DbError> {
        let Some(query) = plain_words_query(question) else {
            return Ok(Vec::new());
        };
        let sql = match ranking {
            Ranking::CodeOnly => {
                "SELECT rowid FROM code WHERE code MATCH ?1 ORDER BY bm25(code), rowid LIMIT ?2"
            }
            Ranking::Enriched => {
                "SELECT rowid FROM enriched WHERE enriched MATCH ?1 \
                 ORDER BY bm25(enriched), rowid LIMIT ?2"
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(scratch("search the full-text tables"))?;
        let rows = stmt
            .query_map(params![query, limit], |row| row.get::<_, i64>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(scratch("search the full-text tables"))?;
        Ok(rows
            .into_iter()
            .filter_map(|rowid| usize::try_from(rowid).ok())
            .collect())
    }
}

/// A plain-text question as an FTS5 query: each distinct word (a run of letters and digits,
/// lowercased), double-quoted so no word is read as FTS5 syntax (`AND`, `NEAR`, `col:`), joined
/// with `OR`. `None` when the text has no word.
pub fn plain_words_query(text: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
    }
    (!words.is_empty()).then(|| {
        words
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" OR ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_are_quoted_terms_joined_with_or() {
        assert_eq!(
            plain_words_query("How do I set a timeout? NEAR(a b) col:x how").as_deref(),
            Some(
                r#""how" OR "do" OR "i" OR "set" OR "a" OR "timeout" OR "near" OR "b" OR "col" OR "x""#
            )
        );
        assert_eq!(plain_words_query(" ?! \"\" "), None);
    }
}
