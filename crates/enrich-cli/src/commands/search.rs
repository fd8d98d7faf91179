//! `enrich search`: the stored enrichments ranked for a query ([`enrich_db::Db::search`]).

use std::fmt::Write as _;

use anyhow::Result;
use enrich_db::{Db, DbError, OpenMode, OpenOptions, QuerySyntax, SearchHit, SearchQuery};
use serde::Serialize;

use crate::cli::SearchArgs;
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;

/// The `--json` document (and the answer of `enrich mcp`'s `search` tool).
#[derive(Serialize)]
pub(crate) struct SearchReport<'a> {
    pub(crate) query: &'a SearchQuery,
    pub(crate) hits: Vec<SearchHit>,
}

/// Searches the index and prints the hits, best first.
pub(crate) fn search(repo: &Repo, args: &SearchArgs, json: bool) -> Result<Exit> {
    let query = query(
        args.query.join(" "),
        args.fts,
        args.limit,
        args.path.clone(),
        args.lang.clone(),
    );
    let hits = find(repo, &query)?;
    if json {
        output::json(&SearchReport {
            query: &query,
            hits,
        })?;
    } else {
        output::text(&render(&hits))?;
    }
    Ok(Exit::Success)
}

/// A search for `text`, plain words or (`fts`) FTS5 syntax, with its limit and filters.
pub(crate) fn query(
    text: String,
    fts: bool,
    limit: u32,
    path: Option<String>,
    language: Option<String>,
) -> SearchQuery {
    SearchQuery {
        syntax: if fts {
            QuerySyntax::Fts5
        } else {
            QuerySyntax::Words
        },
        limit,
        path,
        language,
        ..SearchQuery::words(text)
    }
}

/// The hits of `query`, best first. A query without a word to search for, or with an FTS5
/// mistake, is a usage error saying why.
pub(crate) fn find(repo: &Repo, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    if query.match_expression().is_none() {
        return Err(usage(format!(
            "the query {:?} has no word to search for (letters or digits); give the words the enrichment should mention, such as `enrich search retry backoff`",
            query.text
        )));
    }
    let db = open(repo)?;
    db.search(query).map_err(|e| match e {
        DbError::BadSearchQuery { .. }
        | DbError::SearchQueryTooLong { .. }
        | DbError::BadPathGlob { .. } => usage(e.to_string()),
        other => anyhow::Error::new(other).context(format!(
            "cannot search the index {}",
            repo.db_path.display()
        )),
    })
}

/// The index for searching: read-only, unless enrichments are stored that the search table
/// lacks (written by LLMC) and the file is writable: then a read-write open adds them first
/// (without the whole-file check a run makes, so a search stays quick).
fn open(repo: &Repo) -> Result<Db> {
    let db = repo.open_read_only()?;
    if !db.search_index_needs_sync()? {
        return Ok(db);
    }
    let writable = OpenOptions {
        mode: OpenMode::Existing,
        ..OpenOptions::default()
    };
    Ok(match Db::open_with(&repo.db_path, &writable) {
        Ok(updated) => updated,
        Err(e) => {
            output::note(&format!(
                "note: some stored enrichments are not in the search table yet and it cannot be updated ({e}); they are not searched\n"
            ));
            db
        }
    })
}

/// One block per hit: rank, place, symbol and score, then the summary's excerpt.
fn render(hits: &[SearchHit]) -> String {
    if hits.is_empty() {
        return "no enrichment matches; try other words, fewer filters, or a prefix (`pars*`)\n"
            .to_owned();
    }
    let width = hits.len().to_string().len();
    let mut text = String::new();
    for hit in hits {
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "{rank:>width$}. {path}:{start}-{end}  {symbol}  (score {score:.2})",
            rank = hit.rank,
            path = hit.path,
            start = hit.start_line,
            end = hit.end_line,
            symbol = hit.symbol,
            score = hit.score,
        );
        if !hit.excerpt.is_empty() {
            let _ = writeln!(text, "{:width$}  {}", "", hit.excerpt.replace('\n', " "));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_render_as_rank_place_symbol_score_and_excerpt() {
        let hit = |rank, excerpt: &str| SearchHit {
            rank,
            path: "src/a.py".to_owned(),
            start_line: 3,
            end_line: 9,
            symbol: "retry".to_owned(),
            kind: "function".to_owned(),
            language: "python".to_owned(),
            span_hash: "sha256:aa".to_owned(),
            score: 4.256,
            excerpt: excerpt.to_owned(),
        };
        let hits: Vec<SearchHit> = (1..=10)
            .map(|rank| {
                hit(
                    rank,
                    if rank == 1 {
                        "Waits\nthen **retries**."
                    } else {
                        ""
                    },
                )
            })
            .collect();
        let text = render(&hits);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], " 1. src/a.py:3-9  retry  (score 4.26)");
        assert_eq!(lines[1], "    Waits then **retries**.");
        assert_eq!(lines[10], "10. src/a.py:3-9  retry  (score 4.26)");
        assert!(render(&[]).starts_with("no enrichment matches"));
    }
}
