//! Every enriched span, one row at a time, for `enrich export`: the span (path, lines, symbol,
//! kind, language, hash), its enrichment decoded the way LLMC stores it, and what is known of
//! where the enrichment came from.
//!
//! Streaming by design: [`Db::for_each_export_row`] steps one SQLite statement and hands each
//! row to the caller before reading the next, so memory stays flat whatever the index holds
//! (nothing is collected; SQLite's own sorter spills to a temporary file when it sorts). The
//! statement holds one read transaction for its whole length, so the export sees one consistent
//! state of the index while a run keeps writing (WAL).
//!
//! `since` selects by `enrichments.created_at` (Unix seconds, stamped when the enrichment was
//! stored) with the index `enrich_enrichments_created_at` (migration 11), so an incremental
//! export reads only the rows it returns; those come in the order they were stored. A full
//! export walks the spans in `spans.id` order.

use rusqlite::Row;

use crate::error::DbError;
use crate::open::Db;
use crate::pending::{span_columns, span_from_row};
use crate::provenance::{provenance_columns, read_row_at, valid_provenance_join};
use crate::read::{RawQuality, enrichment_columns, raw_enrichment_at};
use crate::types::{PendingSpan, StoredEnrichment};

/// The number of [`span_columns!`]: where the enrichment columns start.
const SPAN_COLUMN_COUNT: usize = 14;
/// The number of [`enrichment_columns!`]: where the quality columns start after them.
const ENRICHMENT_COLUMN_COUNT: usize = 23;
/// The number of quality columns: after them, `p.span_hash` (null when the provenance is
/// unknown), then the [`provenance_columns!`].
const QUALITY_COLUMN_COUNT: usize = 5;

/// The SELECT of every export, the one place its columns and joins are named: the span, its
/// file, its enrichment, and its provenance as far as it is known. The model and the time come
/// from LLMC's `enrichments` row, the quality score from `enrich_quality`, how enrich made it
/// from `enrich_provenance` (a row still describing this enrichment; none means unknown),
/// joined here so a row costs no query of its own.
macro_rules! export_select {
    () => {
        concat!(
            "SELECT ",
            span_columns!(),
            ", ",
            enrichment_columns!(),
            ", q.score, q.level, q.failed_checks, q.repairs, q.gate_version, p.span_hash, ",
            provenance_columns!(),
            " FROM enrichments AS e \
             JOIN spans AS s ON s.span_hash = e.span_hash \
             JOIN files AS f ON f.id = s.file_id \
             LEFT JOIN enrich_quality AS q ON q.span_hash = e.span_hash \
             LEFT JOIN ",
            valid_provenance_join!(),
            " "
        )
    };
}

/// Everything, in span order (the spans' primary key, no sort).
const EXPORT_ALL_SQL: &str = concat!(export_select!(), "ORDER BY s.id");

/// What was stored at or after `?1` (Unix seconds), in the order it was stored: a range of the
/// index on `created_at`, whose order (then the row id) is the output's, so nothing is sorted.
const EXPORT_SINCE_SQL: &str = concat!(
    export_select!(),
    "WHERE e.created_at >= ?1 ORDER BY e.created_at, e.rowid"
);

/// Which enriched spans to export.
#[derive(Default)]
pub struct ExportFilter<'a> {
    /// Only enrichments stored at or after this time (Unix seconds, compared with
    /// `enrichments.created_at`). A row without a time is left out; one whose time is not a
    /// number (text an older tool wrote) sorts after every number and is kept.
    pub since: Option<i64>,
    /// Only spans whose file path (relative to the repository root) this accepts; checked
    /// before the rest of the row is decoded.
    pub path: Option<&'a dyn Fn(&str) -> bool>,
}

/// Where an exported enrichment came from, as far as the index knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportProvenance {
    /// The model that wrote it (`enrichments.model`; empty when the row names none).
    pub model: String,
    /// When it was stored, Unix seconds (`enrichments.created_at`).
    pub created_at: Option<i64>,
    /// The quality gate's score, from 0 to 1, when the gate judged it.
    pub quality_score: Option<f64>,
}

/// One enriched span as [`Db::for_each_export_row`] hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    /// The span: file path, language, symbol, kind, lines, bytes, hash.
    pub span: PendingSpan,
    /// Its enrichment, with LLMC's other columns and the quality verdict.
    pub stored: StoredEnrichment,
    /// Where the enrichment came from.
    pub provenance: ExportProvenance,
}

impl Db {
    /// Calls `each` with every enriched span `filter` selects, one row at a time, and returns
    /// how many it was given. Spans whose enrichment has no span any more are not exported.
    ///
    /// # Errors
    ///
    /// The first error of `each` (the export stops there), or a [`DbError`] (converted into
    /// `E`) when reading fails or a row does not decode.
    pub fn for_each_export_row<E: From<DbError>>(
        &self,
        filter: &ExportFilter<'_>,
        mut each: impl FnMut(ExportRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let sql = if filter.since.is_some() {
            EXPORT_SINCE_SQL
        } else {
            EXPORT_ALL_SQL
        };
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(self.err("prepare the export query"))?;
        let mut rows = match filter.since {
            Some(since) => stmt.query([since]),
            None => stmt.query([]),
        }
        .map_err(self.err("read enriched spans"))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(self.err("read enriched spans"))? {
            let path = row
                .get_ref(2)
                .and_then(|value| Ok(value.as_str()?.to_owned()))
                .map_err(self.err("read enriched spans"))?;
            if filter.path.is_some_and(|accepts| !accepts(&path)) {
                continue;
            }
            each(self.export_row(row)?)?;
            count += 1;
        }
        Ok(count)
    }

    /// One row of [`export_select!`] decoded.
    fn export_row(&self, row: &Row<'_>) -> Result<ExportRow, DbError> {
        let read = self.err("read enriched spans");
        let span = span_from_row(row).map_err(&read)?;
        let raw = raw_enrichment_at(row, SPAN_COLUMN_COUNT).map_err(&read)?;
        let q = SPAN_COLUMN_COUNT + ENRICHMENT_COLUMN_COUNT;
        let quality = match row.get::<_, Option<f64>>(q).map_err(&read)? {
            None => None,
            Some(score) => {
                let raw: RawQuality = (
                    score,
                    row.get(q + 1).map_err(&read)?,
                    row.get(q + 2).map_err(&read)?,
                    row.get(q + 3).map_err(&read)?,
                    row.get(q + 4).map_err(&read)?,
                );
                Some(self.decode_quality(&span.span_hash, raw)?)
            }
        };
        let p = q + QUALITY_COLUMN_COUNT;
        let provenance = match row.get_ref(p).map_err(&read)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(read_row_at(row, p + 1).map_err(&read)?),
        };
        let stored = self.decode_enrichment_with(raw, quality, provenance)?;
        let provenance = ExportProvenance {
            model: stored.enrichment.model.clone(),
            created_at: stored.created_at,
            quality_score: stored.enrichment.quality.as_ref().map(|q| q.score),
        };
        Ok(ExportRow {
            span,
            stored,
            provenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column counts the row reader relies on are the macros' own.
    #[test]
    fn column_offsets_match_the_column_lists() {
        let count = |columns: &str| columns.split(',').count();
        assert_eq!(count(span_columns!()), SPAN_COLUMN_COUNT);
        assert_eq!(count(enrichment_columns!()), ENRICHMENT_COLUMN_COUNT);
    }
}
