//! The work order in the database: each file's weight and each span's place, kept in enrich's
//! own tables (`enrich_file_weights`, `enrich_span_order`) so that the next page of pending
//! spans in (weight, span id) order is one walk of one index, whatever the size of the index.
//!
//! The weights are a cache of a function of the file's path that this crate does not know (the
//! caller passes it): [`Db::refresh_work_order`] brings the cache up to date with the files and
//! spans LLMC's or enrich's indexer wrote, and with the weighing rules, before a run reads pages.

use std::ops::RangeInclusive;

use rusqlite::OptionalExtension;

use crate::error::DbError;
use crate::open::Db;
use crate::pending::{span_from_row, with_limit};

/// A weight page query (`o.weight = ?1`) with the weight and the limit in its text.
///
/// SQLite plans `column = ?` with the bound value (to estimate how many rows match), and so
/// re-prepares such a statement every time the parameter is bound again: binding the weight
/// cost a full re-parse per page. With the weight (one of ten) and the run's page size in the
/// text, the statement cache serves every page; `?1` is then left unused.
pub(crate) fn for_weight(sql: &str, weight: u8, limit: usize) -> String {
    debug_assert!(sql.contains("o.weight = ?1"), "not a weight page query");
    with_limit(
        &sql.replacen("o.weight = ?1", &format!("o.weight = {weight}"), 1),
        limit,
    )
}
use crate::types::PendingSpan;

/// The `llmc_meta` key holding the fingerprint of the rules the stored weights were computed
/// with.
pub const WORK_ORDER_RULES_KEY: &str = "enrich_work_order_rules";

/// Files whose stored weight is missing or belongs to another path (a reused file id).
const STALE_FILES_SQL: &str = "SELECT f.id, f.path FROM files AS f \
     LEFT JOIN enrich_file_weights AS w ON w.file_id = f.id \
     WHERE w.file_id IS NULL OR w.path IS NOT f.path";
/// Every file with its stored weight, when the rules changed.
const ALL_FILES_SQL: &str = "SELECT f.id, f.path, w.weight, w.path FROM files AS f \
     LEFT JOIN enrich_file_weights AS w ON w.file_id = f.id";
const UPSERT_FILE_WEIGHT_SQL: &str = "INSERT INTO enrich_file_weights (file_id, path, weight) \
     VALUES (?1, ?2, ?3) \
     ON CONFLICT (file_id) DO UPDATE SET path = excluded.path, weight = excluded.weight";
const DELETE_GONE_FILES_SQL: &str = "DELETE FROM enrich_file_weights WHERE NOT EXISTS \
     (SELECT 1 FROM files WHERE files.id = enrich_file_weights.file_id)";

/// Gives every span whose order row is missing, or names another file or weight, the row its
/// file's weight says: new spans, spans moved between files, spans of reweighed files. One pass
/// over the spans' `file_id` index with a primary-key lookup per span; only differing rows are
/// written.
pub(crate) const SYNC_SPANS_SQL: &str = "INSERT INTO enrich_span_order (span_id, file_id, weight) \
     SELECT s.id, s.file_id, w.weight FROM spans AS s \
     JOIN enrich_file_weights AS w ON w.file_id = s.file_id \
     WHERE NOT EXISTS (SELECT 1 FROM enrich_span_order AS o \
                       WHERE o.span_id = s.id AND o.file_id = s.file_id AND o.weight = w.weight) \
     ON CONFLICT (span_id) DO UPDATE SET file_id = excluded.file_id, weight = excluded.weight";
const ORDER_SURPLUS_SQL: &str =
    "SELECT (SELECT COUNT(*) FROM enrich_span_order) - (SELECT COUNT(*) FROM spans)";
const DELETE_GONE_SPANS_SQL: &str = "DELETE FROM enrich_span_order WHERE NOT EXISTS \
     (SELECT 1 FROM spans WHERE spans.id = enrich_span_order.span_id)";

/// The page of pending spans of weight `?1` after span id `?2`, with `$extra` conditions, in
/// span id order.
macro_rules! weight_page {
    ($extra:expr) => {
        concat!(
            "SELECT ",
            $crate::pending::span_columns!(),
            " FROM enrich_span_order AS o
JOIN spans AS s ON s.id = o.span_id
JOIN files AS f ON f.id = s.file_id
WHERE o.weight = ?1
  AND o.span_id > ?2
  AND s.file_id = o.file_id",
            $crate::pending::pending_conditions!(),
            $extra,
            "
ORDER BY o.span_id"
        )
    };
}
pub(crate) use weight_page;

/// Pending spans of one weight after a span id, in span id order. The walk is the
/// `(weight, span_id, file_id)` index of `enrich_span_order` from the cursor; each row costs
/// primary-key lookups of its span and file and the two exclusions' index lookups, as in
/// [`PENDING_PAGE_SQL`](crate::pending::PENDING_PAGE_SQL). An order row whose span moved to
/// another file since the last refresh is passed over. A page across weights is this query per
/// weight, lowest first (SQLite cannot seek a `(weight, span_id) > (?, ?)` range within a weight
/// range in one index walk).
///
/// Run it through [`for_weight`], which writes the weight in place of `?1`; the constant keeps
/// `?1` so the tests can explain its plan, and the other parameters keep their numbers.
pub(crate) const WEIGHT_PAGE_SQL: &str = weight_page!("");

/// A place in the work order: spans are taken by weight (1 first), then by span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WorkOrderKey {
    /// The span's weight, 1 (most important) to 10.
    pub weight: u8,
    /// `spans.id`.
    pub span_id: i64,
}

impl WorkOrderKey {
    /// The cursor before every span.
    pub const START: Self = Self {
        weight: 0,
        span_id: 0,
    };
}

/// A pending span read in work order, with its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedSpan {
    /// Its file's weight when the work order was last refreshed.
    pub weight: u8,
    /// The span.
    pub span: PendingSpan,
}

impl WeightedSpan {
    /// Its place in the work order: the cursor that pages on after it.
    pub fn key(&self) -> WorkOrderKey {
        WorkOrderKey {
            weight: self.weight,
            span_id: self.span.id,
        }
    }
}

/// What [`Db::refresh_work_order`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkOrderRefresh {
    /// The rules differed from the ones the stored weights were computed with, so every file
    /// was weighed again.
    pub rules_changed: bool,
    /// Files weighed (new files, files with a new path, or all of them when the rules changed).
    pub files_weighed: u64,
    /// Files whose weight is new or changed.
    pub files_changed: u64,
    /// Spans given a new or changed place in the order.
    pub spans_placed: u64,
    /// Order rows of spans that no longer exist, removed.
    pub spans_removed: u64,
}

impl Db {
    /// Brings the work order up to date, in one `IMMEDIATE` transaction.
    ///
    /// `rules` identifies the weighing rules (a fingerprint; stored in `llmc_meta` under
    /// [`WORK_ORDER_RULES_KEY`]) and `weigh` gives the weight, 1 to 10, of a repo-relative
    /// path. Files are weighed when they are new or have a new path, and all of them when
    /// `rules` differs from the stored fingerprint; then every span gets its file's weight (one
    /// pass over the spans, writing only the rows that change). Nothing here depends on who
    /// indexed the files, so spans LLMC's indexer added or moved are placed too. Safe to run
    /// from several processes: the second one finds nothing to do.
    ///
    /// On a million spans the pass takes about a second; after a change of rules that moves
    /// every span, a few seconds (see `docs/database.md`).
    pub fn refresh_work_order(
        &mut self,
        rules: &str,
        mut weigh: impl FnMut(&str) -> u8,
    ) -> Result<WorkOrderRefresh, DbError> {
        self.ensure_writable("refresh the work order")?;
        let (tx, errors) = self.immediate("lock the database to refresh the work order")?;
        let err = |action| errors.on(action);
        let mut report = WorkOrderRefresh::default();

        let stored: Option<String> = tx
            .query_row(
                "SELECT value FROM llmc_meta WHERE key = ?1",
                [WORK_ORDER_RULES_KEY],
                |row| row.get(0),
            )
            .optional()
            .map_err(err("read the work order's rules"))?
            .flatten();
        report.rules_changed = stored.as_deref() != Some(rules);

        // (file id, path, stored weight and path when the file has a row).
        type FileRow = (i64, String, Option<u8>, Option<String>);
        let files: Vec<FileRow> = if report.rules_changed {
            tx.prepare(ALL_FILES_SQL)
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect()
                })
                .map_err(err("list the indexed files"))?
        } else {
            tx.prepare(STALE_FILES_SQL)
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, None, None)))?
                        .collect()
                })
                .map_err(err("list new and renamed files"))?
        };
        {
            let mut upsert = tx
                .prepare(UPSERT_FILE_WEIGHT_SQL)
                .map_err(err("store file weights"))?;
            for (id, file_path, stored_weight, stored_path) in &files {
                report.files_weighed += 1;
                let weight = weigh(file_path);
                if *stored_weight == Some(weight) && stored_path.as_deref() == Some(file_path) {
                    continue;
                }
                upsert
                    .execute((id, file_path, weight))
                    .map_err(err("store a file weight"))?;
                report.files_changed += 1;
            }
        }
        tx.execute(DELETE_GONE_FILES_SQL, [])
            .map_err(err("forget the weights of removed files"))?;

        let placed = tx
            .execute(SYNC_SPANS_SQL, [])
            .map_err(err("place spans in the work order"))?;
        report.spans_placed = placed as u64;
        let surplus: i64 = tx
            .query_row(ORDER_SURPLUS_SQL, [], |row| row.get(0))
            .map_err(err("count the work order"))?;
        if surplus > 0 {
            let removed = tx
                .execute(DELETE_GONE_SPANS_SQL, [])
                .map_err(err("remove removed spans from the work order"))?;
            report.spans_removed = removed as u64;
        }
        if report.rules_changed {
            tx.execute(
                "INSERT INTO llmc_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (WORK_ORDER_RULES_KEY, rules),
            )
            .map_err(err("store the work order's rules"))?;
        }
        tx.commit().map_err(err("commit the work order"))?;
        Ok(report)
    }

    /// Up to `limit` pending spans weighing within `weights`, after `after` in work order
    /// (weight, then span id), as of the last [`refresh_work_order`](Self::refresh_work_order).
    ///
    /// Start with [`WorkOrderKey::START`] and pass the last returned span's
    /// [`key`](WeightedSpan::key) to get the next page; an empty page means the end. Spans
    /// indexed after the last refresh are not seen until the next one.
    pub fn pending_by_weight(
        &self,
        weights: RangeInclusive<u8>,
        after: WorkOrderKey,
        limit: usize,
    ) -> Result<Vec<WeightedSpan>, DbError> {
        let mut page = Vec::new();
        let first = after.weight.max(*weights.start());
        for weight in first..=*weights.end() {
            let wanted = limit - page.len();
            if wanted == 0 {
                break;
            }
            let mut stmt = self
                .conn
                .prepare_cached(&for_weight(WEIGHT_PAGE_SQL, weight, limit))
                .map_err(self.err("select pending spans in work order"))?;
            let after_id = if weight == after.weight {
                after.span_id
            } else {
                i64::MIN
            };
            let rows = stmt
                .query_map((weight, after_id), |row| {
                    Ok(WeightedSpan {
                        span: span_from_row(row)?,
                        weight,
                    })
                })
                .map_err(self.err("select pending spans in work order"))?;
            for row in rows.take(wanted) {
                page.push(row.map_err(self.err("read pending spans in work order"))?);
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::tests::check_uses_indexes;

    #[test]
    fn the_work_order_page_walks_the_weight_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_or_create(dir.path().join("index_v2.db")).expect("create");
        check_uses_indexes(
            &db,
            WEIGHT_PAGE_SQL,
            &[
                "SEARCH o USING COVERING INDEX enrich_span_order_weight (weight=? AND span_id>?)",
                "SEARCH s USING INTEGER PRIMARY KEY (rowid=?)",
                "SEARCH f USING INTEGER PRIMARY KEY (rowid=?)",
                "sqlite_autoindex_enrichments_1 (span_hash=?)",
                "SEARCH d USING",
            ],
        );
        check_uses_indexes(
            &db,
            SYNC_SPANS_SQL,
            &[
                "SEARCH w USING INTEGER PRIMARY KEY (rowid=?)",
                "SEARCH o USING INTEGER PRIMARY KEY (rowid=?)",
            ],
        );
    }
}
