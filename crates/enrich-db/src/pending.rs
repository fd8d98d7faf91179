//! Pending spans: no enrichment and not dead-lettered, in `spans.id` order, paged by keyset.

use rusqlite::Row;

use crate::error::DbError;
use crate::frontier::FrontierLane;
use crate::open::Db;
use crate::types::PendingSpan;

/// The columns of a [`PendingSpan`], for `s` = spans and `f` = files, as a literal for
/// `concat!`.
macro_rules! span_columns {
    () => {
        "s.id, s.span_hash, f.path, f.lang, s.symbol, s.kind, s.start_line, s.end_line, \
         s.byte_start, s.byte_end, s.slice_type, s.slice_language, s.classifier_confidence, \
         f.mtime"
    };
}
pub(crate) use span_columns;

/// What makes a span `s` pending, as a `WHERE` continuation: no enrichment and not
/// dead-lettered. Every page query (plain or claiming, by id or by weight) uses this one
/// definition.
macro_rules! pending_conditions {
    () => {
        "
  AND NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = s.span_hash)
  AND NOT EXISTS (SELECT 1 FROM enrich_failures AS d
                  WHERE d.dead_lettered = 1 AND d.span_hash = s.span_hash)"
    };
}
pub(crate) use pending_conditions;

/// The page of pending spans after span id `?1`, with `$extra` conditions, in span id order.
macro_rules! pending_page {
    ($extra:expr) => {
        concat!(
            "SELECT ",
            $crate::pending::span_columns!(),
            " FROM spans AS s
JOIN files AS f ON f.id = s.file_id
WHERE s.id > ?1",
            $crate::pending::pending_conditions!(),
            $extra,
            "
ORDER BY s.id"
        )
    };
}
pub(crate) use pending_page;

/// One page of pending spans after a keyset cursor. Every step is an index lookup: the spans
/// primary key for the range and the order, the files primary key for the join, the
/// enrichments primary key and the ledger's `(dead_lettered, span_hash)` index for the two
/// exclusions. A page costs its own rows plus the enriched or dead spans it skips, never a scan
/// of the table.
pub(crate) const PENDING_PAGE_SQL: &str = pending_page!("");

/// `sql` with `LIMIT limit` appended. A page query keeps its limit in its text, never as a bound
/// parameter: SQLite plans with a bound `LIMIT`'s value and so re-prepares the statement every
/// time it is bound again, which cost more than the page itself. The limit is the same for every
/// page of a run, so the prepared-statement cache still serves the text.
pub(crate) fn with_limit(sql: &str, limit: usize) -> String {
    format!("{sql}\nLIMIT {limit}")
}

/// Spans, enrichments of existing spans, dead letters of existing unenriched spans: pending is
/// the first minus the other two. Each walks one index once; see [`Db::pending_count`].
/// Pending spans after the span-id frontier `?1` (none at or before it is pending).
pub(crate) const COUNT_PENDING_AFTER_SQL: &str = concat!(
    "SELECT COUNT(*) FROM spans AS s WHERE s.id > ?1",
    pending_conditions!()
);
pub(crate) const COUNT_SPANS_SQL: &str = "SELECT COUNT(*) FROM spans";
pub(crate) const COUNT_ENRICHED_SQL: &str = "SELECT COUNT(*) FROM enrichments AS e \
     WHERE EXISTS (SELECT 1 FROM spans AS s WHERE s.span_hash = e.span_hash)";
pub(crate) const COUNT_DEAD_SQL: &str = "SELECT COUNT(*) FROM enrich_failures AS d \
     WHERE d.dead_lettered = 1 \
       AND EXISTS (SELECT 1 FROM spans AS s WHERE s.span_hash = d.span_hash) \
       AND NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = d.span_hash)";

/// Reads a [`PendingSpan`] from a row of `span_columns!()`.
pub(crate) fn span_from_row(row: &Row<'_>) -> rusqlite::Result<PendingSpan> {
    Ok(PendingSpan {
        id: row.get(0)?,
        span_hash: row.get(1)?,
        file_path: row.get(2)?,
        lang: row.get(3)?,
        symbol: row.get(4)?,
        kind: row.get(5)?,
        start_line: row.get(6)?,
        end_line: row.get(7)?,
        byte_start: row.get(8)?,
        byte_end: row.get(9)?,
        slice_type: row.get(10)?,
        slice_language: row.get(11)?,
        classifier_confidence: row.get(12)?,
        file_mtime: row.get(13)?,
        renewal: false,
    })
}

impl Db {
    /// Up to `limit` pending spans with `spans.id > after_id`, in `spans.id` order.
    ///
    /// Start with `after_id = 0` and pass the last returned `id` to get the next page; an empty
    /// page means the end. Spans enriched or dead-lettered meanwhile drop out; spans added
    /// behind the cursor are picked up by the next run.
    pub fn pending_spans(&self, after_id: i64, limit: usize) -> Result<Vec<PendingSpan>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(&with_limit(PENDING_PAGE_SQL, limit))
            .map_err(self.err("select pending spans"))?;
        let rows = stmt
            .query_map([after_id], span_from_row)
            .map_err(self.err("select pending spans"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("read pending spans"))
    }

    /// The number of pending spans, exact.
    ///
    /// Computed as spans − enrichments of existing spans − dead letters of existing unenriched
    /// spans, each by walking one index (no join of the big tables): about 0.3 s per million
    /// enrichments, so call it once per run and count down, not once per batch. When the
    /// span-id lane has a valid [frontier](Self::frontier) near the end of the spans, only the
    /// spans after it are counted (a mostly enriched index answers at once).
    pub fn pending_count(&self) -> Result<u64, DbError> {
        if let Some(frontier) = self.frontier(&FrontierLane::SpanId)? {
            let last: i64 = self
                .conn
                .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM spans")
                .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
                .map_err(self.err("count rows"))?;
            // Each span after the frontier costs an index probe, each enrichment in the other
            // method a quarter of one: count from the frontier when it is near the end.
            if last.saturating_sub(frontier.span_id).saturating_mul(4) <= last {
                return self
                    .conn
                    .prepare_cached(COUNT_PENDING_AFTER_SQL)
                    .and_then(|mut stmt| stmt.query_row([frontier.span_id], |row| row.get(0)))
                    .map_err(self.err("count rows"));
            }
        }
        let spans = self.count(COUNT_SPANS_SQL)?;
        let enriched = self.count(COUNT_ENRICHED_SQL)?;
        let dead = self.count(COUNT_DEAD_SQL)?;
        Ok(spans.saturating_sub(enriched).saturating_sub(dead))
    }

    /// Runs a `SELECT COUNT(*)`.
    pub(crate) fn count(&self, sql: &str) -> Result<u64, DbError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(self.err("count rows"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::open::Db;

    /// The plan of `sql`, one detail line per step.
    fn plan(db: &Db, sql: &str) -> Vec<String> {
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let unbound = vec![rusqlite::types::Null; stmt.parameter_count()];
        stmt.query_map(rusqlite::params_from_iter(unbound), |row| {
            row.get::<_, String>(3)
        })
        .expect("plan rows")
        .collect::<Result<_, _>>()
        .expect("plan")
    }

    /// A step that reads a table without an index: `SCAN t` without `USING … INDEX`.
    fn full_scans(plan: &[String]) -> Vec<&String> {
        plan.iter()
            .filter(|step| step.starts_with("SCAN") && !step.contains("INDEX"))
            .collect()
    }

    /// Fails unless the plan of `sql` reads every table through an index, mentions each of
    /// `must_mention`, and sorts nothing.
    pub(crate) fn check_uses_indexes(db: &Db, sql: &str, must_mention: &[&str]) {
        let plan = plan(db, sql);
        assert!(full_scans(&plan).is_empty(), "full scan in {plan:#?}");
        for needle in must_mention {
            assert!(
                plan.iter().any(|step| step.contains(needle)),
                "{needle:?} not in {plan:#?}"
            );
        }
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "sort or temp index in {plan:#?}"
        );
    }

    #[test]
    fn pending_and_count_queries_use_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_or_create(dir.path().join("index_v2.db")).expect("create");
        check_uses_indexes(
            &db,
            PENDING_PAGE_SQL,
            &[
                "SEARCH s USING INTEGER PRIMARY KEY (rowid>?)",
                "SEARCH f USING INTEGER PRIMARY KEY (rowid=?)",
                "sqlite_autoindex_enrichments_1 (span_hash=?)",
                "SEARCH d USING",
            ],
        );
        check_uses_indexes(&db, COUNT_SPANS_SQL, &["COVERING INDEX"]);
        check_uses_indexes(
            &db,
            COUNT_ENRICHED_SQL,
            &["sqlite_autoindex_spans_1 (span_hash=?)"],
        );
        check_uses_indexes(
            &db,
            COUNT_DEAD_SQL,
            &[
                "enrich_failures_dead (dead_lettered=?)",
                "sqlite_autoindex_spans_1 (span_hash=?)",
                "sqlite_autoindex_enrichments_1 (span_hash=?)",
            ],
        );
    }
}
