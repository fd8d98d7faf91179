//! Writing the index itself: LLMC's `files` and `spans` rows, replaced file by file so that a
//! span whose content did not change keeps its row and its enrichment.
//!
//! A span's identity is its content hash (`spans.span_hash`, unique across the table), and the
//! rows derived from a span (`enrichments`, `embeddings`, `emb_code`) are keyed by that hash.
//! Replacing a file's spans therefore updates the rows whose hash is still there (new lines and
//! bytes, same id), inserts the new hashes, moves a hash that another file held to this file,
//! and deletes the rest.
//!
//! Identical content in several files (copies of a licence, vendored duplicates) yields the same
//! span hash, so only one file can own the row: the one whose path sorts first (byte order, as
//! SQLite compares text). A file that comes later only notes that the span is shared; one that
//! comes earlier takes the row over. The indexer writes files in path order, so the owner does not
//! depend on which file was read first, and re-indexing an unchanged tree moves nothing.
//!
//! Each file that shares a span leaves a record of it in enrich's `enrich_shared_spans`: the
//! span as the file's split found it (position, symbol, metadata) and the file's content hash.
//! When the owner lets go of the span (it is removed, or its new content lacks it), the row is
//! not deleted but taken over, id and enrichment included, by the next path that shares it, from
//! that record: the other file need not be read or be part of the batch, so an unchanged copy (or
//! one a watcher was not told about) never loses content it holds. A record whose file LLMC has
//! changed or removed since (another content hash in `files`) is not trusted and is dropped. The
//! cost is a record per shared span and an index probe per span that leaves its file.
//!
//! The deletes run with foreign keys off for the transaction, so the rows
//! keyed by a deleted hash stay behind as orphans instead of cascading away: when the same
//! content shows up again later in the same indexing run (a function moved to a file indexed
//! after its old one), its enrichment is attached again for free. [`Db::remove_orphans`] then
//! deletes what is still orphaned at the end of the run, as the cascade would have.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, ToSql, Transaction, params, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::open::Db;

const FILE_BY_PATH_SQL: &str = "SELECT id FROM files WHERE path = ?1";
const FILE_ROW_BY_PATH_SQL: &str = "SELECT id, file_hash FROM files WHERE path = ?1";
const INSERT_FILE_SQL: &str =
    "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, ?3, ?4, ?5)";
const UPDATE_FILE_SQL: &str =
    "UPDATE files SET lang = ?2, file_hash = ?3, size = ?4, mtime = ?5 WHERE id = ?1";
const SPANS_OF_FILE_SQL: &str = "SELECT id, span_hash FROM spans WHERE file_id = ?1";
/// The span holding a hash and its file's path (none for a span LLMC left without a file).
const SPAN_BY_HASH_SQL: &str = "SELECT s.id, f.path FROM spans AS s LEFT JOIN files AS f
     ON f.id = s.file_id WHERE s.span_hash = ?1";
/// The statements that write a span's columns bind them after their keys, in the order of
/// `execute_span`.
const INSERT_SPAN_SQL: &str = "
INSERT INTO spans (
    file_id, span_hash, symbol, kind, start_line, end_line, byte_start, byte_end, doc_hint,
    slice_type, slice_language, classifier_confidence, classifier_version
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
/// Everything but the identity (`id`, `span_hash`) and `created_at`.
const UPDATE_SPAN_SQL: &str = "
UPDATE spans SET
    file_id = ?2, symbol = ?3, kind = ?4, start_line = ?5, end_line = ?6, byte_start = ?7,
    byte_end = ?8, doc_hint = ?9, slice_type = ?10, slice_language = ?11,
    classifier_confidence = ?12, classifier_version = ?13
WHERE id = ?1";
const DELETE_SPAN_SQL: &str = "DELETE FROM spans WHERE id = ?1";
const SPAN_HASHES_OF_FILE_SQL: &str =
    "SELECT id, span_hash FROM spans WHERE file_id = ?1 ORDER BY id";
const DELETE_SHARED_OF_PATH_SQL: &str = "DELETE FROM enrich_shared_spans WHERE path = ?1";
const DELETE_SHARED_SQL: &str =
    "DELETE FROM enrich_shared_spans WHERE span_hash = ?1 AND path = ?2";
/// Records that the file at `?2` (content hash `?3`) holds the span `?1` another file owns.
const INSERT_SHARED_SQL: &str = "
INSERT OR REPLACE INTO enrich_shared_spans (
    span_hash, path, file_hash, symbol, kind, start_line, end_line, byte_start, byte_end,
    doc_hint, slice_type, slice_language, classifier_confidence, classifier_version
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
/// Records the file of the span `?1` as sharing it, with the span's columns, before the row
/// moves to another file.
const SHARE_FROM_SPAN_SQL: &str = "
INSERT OR REPLACE INTO enrich_shared_spans (
    span_hash, path, file_hash, symbol, kind, start_line, end_line, byte_start, byte_end,
    doc_hint, slice_type, slice_language, classifier_confidence, classifier_version
) SELECT s.span_hash, f.path, f.file_hash, s.symbol, s.kind, s.start_line, s.end_line,
         s.byte_start, s.byte_end, s.doc_hint, s.slice_type, s.slice_language,
         s.classifier_confidence, s.classifier_version
  FROM spans AS s JOIN files AS f ON f.id = s.file_id WHERE s.id = ?1";
/// The files recorded as sharing a span, in path order, with their `files` id when the row
/// still has the content hash they were recorded with (none: LLMC changed or removed the file).
const SHARERS_SQL: &str = "
SELECT sh.path, f.id, sh.symbol, sh.kind, sh.start_line, sh.end_line, sh.byte_start,
       sh.byte_end, sh.doc_hint, sh.slice_type, sh.slice_language, sh.classifier_confidence,
       sh.classifier_version
FROM enrich_shared_spans AS sh
LEFT JOIN files AS f ON f.path = sh.path AND f.file_hash = sh.file_hash
WHERE sh.span_hash = ?1 ORDER BY sh.path";
const DELETE_FILE_DESCRIPTIONS_SQL: &str = "DELETE FROM file_descriptions WHERE file_id = ?1";
const DELETE_FILE_SQL: &str = "DELETE FROM files WHERE id = ?1";

/// The tables whose rows are keyed by a span hash and outlive a deleted span as orphans.
const SPAN_KEYED_TABLES: [&str; 3] = ["enrichments", "embeddings", "emb_code"];
/// enrich's rows about an enrichment, removed with it.
const ENRICHMENT_KEYED_TABLES: [&str; 2] = ["enrich_quality", "enrich_provenance"];

/// A `files` row as the index stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedFile {
    /// The path relative to the repo root, `/`-separated.
    pub path: String,
    /// The language the file was split as (`rust`, `python`, `markdown`, …).
    pub lang: String,
    /// The hash of the file's bytes when it was indexed.
    pub file_hash: String,
    /// The file's size in bytes when it was indexed.
    pub size: u64,
    /// The file's modification time (Unix seconds) when it was indexed.
    pub mtime: f64,
}

/// A `files` row and how many spans it has, as [`Db::indexed_files`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The row.
    pub file: IndexedFile,
    /// How many spans the file has (LLMC's indexer leaves files of the languages it cannot
    /// split without any).
    pub spans: u64,
    /// How many spans of the file another file owns (identical content), as recorded when the
    /// file was last written by [`Db::write_index_batch`].
    pub shared: u64,
}

/// A file and all its spans as an indexer found them, to store with
/// [`Db::write_index_batch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The `files` row.
    pub file: IndexedFile,
    /// Every span of the file. A hash listed twice is stored once (the first one wins); a hash
    /// a file with a smaller path holds stays there (see [`Db::write_index_batch`]).
    pub spans: Vec<SpanRecord>,
}

/// One span of a [`FileRecord`]: the columns of a `spans` row that an indexer fills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The content hash, `sha256:` + hex; the span's identity.
    pub span_hash: String,
    /// The symbol the span defines (`Type::method`, a section path, …).
    pub symbol: String,
    /// The kind of span (`function`, `method`, `class`, `section`, …).
    pub kind: String,
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, inclusive.
    pub end_line: u32,
    /// First byte in the file.
    pub byte_start: u64,
    /// End byte in the file (exclusive).
    pub byte_end: u64,
    /// A short description found in the source (a docstring, a doc comment).
    pub doc_hint: Option<String>,
    /// The slice type (`code`, `docs`, `config`, …).
    pub slice_type: Option<String>,
    /// The programming language of the slice, for code.
    pub slice_language: Option<String>,
    /// How sure the classifier was, from 0.0 to 1.0.
    pub classifier_confidence: Option<f64>,
    /// Which classifier decided.
    pub classifier_version: Option<String>,
}

/// What one [`Db::write_index_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexWriteReport {
    /// Files that had no row and got one.
    pub files_added: u64,
    /// Files whose row was updated.
    pub files_updated: u64,
    /// Files written again with the content hash their row already had and whose spans all
    /// stayed as they were (a file whose every span another file owns): nothing was written.
    pub files_unchanged: u64,
    /// Files deleted with their spans.
    pub files_removed: u64,
    /// Spans inserted (new content).
    pub spans_added: u64,
    /// Spans whose hash the file already had: same row and id, position and metadata updated.
    pub spans_kept: u64,
    /// Spans whose hash another file held (one with a larger path, or one that lost it in this
    /// batch): the row moved to this file, keeping its id. Also spans a changed or removed file
    /// let go of that the next file sharing them took over, keeping the id.
    pub spans_moved: u64,
    /// Spans whose hash a file with a smaller path holds: left with that file, which owns the
    /// content for every file that has it.
    pub spans_shared: u64,
    /// Spans deleted, from changed files and from removed files, that no other file held.
    pub spans_removed: u64,
    /// Spans dropped because the same file listed their hash already.
    pub spans_duplicate: u64,
}

impl IndexWriteReport {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &IndexWriteReport) {
        self.files_added += other.files_added;
        self.files_updated += other.files_updated;
        self.files_unchanged += other.files_unchanged;
        self.files_removed += other.files_removed;
        self.spans_added += other.spans_added;
        self.spans_kept += other.spans_kept;
        self.spans_moved += other.spans_moved;
        self.spans_shared += other.spans_shared;
        self.spans_removed += other.spans_removed;
        self.spans_duplicate += other.spans_duplicate;
    }
}

/// Rows keyed by a span hash whose span no longer exists, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanCounts {
    /// `enrichments` rows.
    pub enrichments: u64,
    /// `embeddings` and `emb_code` rows together.
    pub embeddings: u64,
}

impl Db {
    /// Every `files` row with its number of spans and of shared spans, in path order.
    pub fn indexed_files(&self) -> Result<Vec<StoredFile>, DbError> {
        let action = "list the indexed files";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, lang, file_hash, size, mtime,
                        (SELECT count(*) FROM spans WHERE spans.file_id = files.id),
                        (SELECT count(*) FROM enrich_shared_spans AS sh
                         WHERE sh.path = files.path AND sh.file_hash = files.file_hash)
                 FROM files ORDER BY path",
            )
            .map_err(self.err(action))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StoredFile {
                    file: IndexedFile {
                        path: row.get(0)?,
                        lang: row.get(1)?,
                        file_hash: row.get(2)?,
                        size: row.get(3)?,
                        mtime: row.get(4)?,
                    },
                    spans: row.get(5)?,
                    shared: row.get(6)?,
                })
            })
            .map_err(self.err(action))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err(action))
    }

    /// Stores re-indexed files and removes deleted ones, in one `IMMEDIATE` transaction.
    ///
    /// For each record: the `files` row is inserted or updated by path (its id, `sidecar_path`
    /// and file description stay), then its spans are replaced: a hash the file already had
    /// keeps its row, id and enrichment and gets the new position and metadata; a hash another
    /// file holds moves to this file the same way, unless that file's path is smaller and it
    /// keeps the hash (it is not in `removed`, and its record in this batch, if any, lists the
    /// hash): then the span stays there, shared ([`IndexWriteReport::spans_shared`]), and the
    /// file's record of it is kept for a takeover (a larger-path holder that loses the row to
    /// this file gets one too); a new hash is inserted. The file's other spans leave it: each is
    /// taken over by the smallest path recorded as sharing it that keeps it through this batch
    /// (counted as moved, same id), or deleted when none does. So the smallest path owns content
    /// that several files share, in whatever order the files are written, and content stays in
    /// the index as long as one indexed file holds it. A record with the content
    /// hash its row already has, whose spans neither arrive, move nor go, leaves the row as it is
    /// and counts as [`IndexWriteReport::files_unchanged`]. Each path in `removed` loses its
    /// `files` row, shared records and file description, and its spans leave it as above.
    /// Deleted spans leave their enrichments and embeddings as orphans (see
    /// [`remove_orphans`](Self::remove_orphans)); nothing else cascades. Any error rolls the whole batch back. Writing the same batch twice leaves the
    /// same rows.
    pub fn write_index_batch(
        &mut self,
        files: &[FileRecord],
        removed: &[String],
    ) -> Result<IndexWriteReport, DbError> {
        self.ensure_writable("write the index")?;
        // Cascades would delete the enrichments of replaced spans; they are cleaned up at the end
        // of the indexing run instead. The pragma is a no-op inside a transaction, so it wraps it.
        self.set_foreign_keys(false)?;
        let written = self.write_index_tx(files, removed);
        let restored = self.set_foreign_keys(true);
        let report = written?;
        restored?;
        Ok(report)
    }

    /// Counts the rows keyed by a span hash that no span has.
    pub fn orphan_counts(&self) -> Result<OrphanCounts, DbError> {
        let action = "count orphaned enrichments and embeddings";
        let mut counts = [0u64; 3];
        for (count, table) in counts.iter_mut().zip(SPAN_KEYED_TABLES) {
            *count = self
                .conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM {table} AS t WHERE NOT EXISTS \
                         (SELECT 1 FROM spans WHERE spans.span_hash = t.span_hash)"
                    ),
                    [],
                    |row| row.get(0),
                )
                .map_err(self.err(action))?;
        }
        Ok(OrphanCounts {
            enrichments: counts[0],
            embeddings: counts[1] + counts[2],
        })
    }

    /// Deletes the enrichments and embeddings whose span no longer exists, as the foreign key
    /// cascade would have, and enrich's quality and provenance rows left without their
    /// enrichment, in one transaction. Returns how many enrichments and embeddings went. Orphans LLMC left
    /// (it deletes spans with foreign keys off by default) go too.
    pub fn remove_orphans(&mut self) -> Result<OrphanCounts, DbError> {
        let action = "remove orphaned enrichments and embeddings";
        self.ensure_writable(action)?;
        let (tx, errors) = self.immediate(action)?;
        let err = errors.on(action);
        let mut counts = [0u64; 3];
        for (count, table) in counts.iter_mut().zip(SPAN_KEYED_TABLES) {
            let deleted = tx
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE NOT EXISTS \
                         (SELECT 1 FROM spans WHERE spans.span_hash = {table}.span_hash)"
                    ),
                    [],
                )
                .map_err(err)?;
            *count = deleted as u64;
        }
        for table in ENRICHMENT_KEYED_TABLES {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE NOT EXISTS \
                     (SELECT 1 FROM enrichments AS e WHERE e.span_hash = {table}.span_hash)"
                ),
                [],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(OrphanCounts {
            enrichments: counts[0],
            embeddings: counts[1] + counts[2],
        })
    }

    fn set_foreign_keys(&self, on: bool) -> Result<(), DbError> {
        self.conn
            .pragma_update(None, "foreign_keys", on)
            .map_err(self.err("switch foreign keys for the index write"))
    }

    fn write_index_tx(
        &mut self,
        files: &[FileRecord],
        removed: &[String],
    ) -> Result<IndexWriteReport, DbError> {
        let (tx, errors) = self.immediate("lock the database for writing")?;
        let err = |action| errors.on(action);
        let mut report = IndexWriteReport::default();
        let batch = Batch {
            records: files.iter().map(|r| (r.file.path.as_str(), r)).collect(),
            removed: removed.iter().map(String::as_str).collect(),
        };
        for record in files {
            replace_file(&tx, record, &batch, &mut report).map_err(|(action, e)| err(action)(e))?;
        }
        for file in removed {
            remove_file(&tx, file, &batch, &mut report).map_err(|(action, e)| err(action)(e))?;
        }
        tx.commit().map_err(err("commit an index batch"))?;
        Ok(report)
    }
}

/// The files of one [`Db::write_index_batch`], to tell whether a file holding a span keeps it.
struct Batch<'a> {
    records: HashMap<&'a str, &'a FileRecord>,
    removed: HashSet<&'a str>,
}

impl Batch<'_> {
    /// Whether the file at `holder`, which holds the span `span_hash`, still has it after this
    /// batch: it is not removed, and its record here (if it has one) lists the hash.
    fn keeps(&self, holder: &str, span_hash: &str) -> bool {
        !self.removed.contains(holder)
            && self
                .records
                .get(holder)
                .is_none_or(|r| r.spans.iter().any(|s| s.span_hash == span_hash))
    }
}

/// An SQLite error with what was being done.
type StepError = (&'static str, rusqlite::Error);

fn step(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StepError {
    move |e| (action, e)
}

fn replace_file(
    tx: &Transaction<'_>,
    record: &FileRecord,
    batch: &Batch<'_>,
    report: &mut IndexWriteReport,
) -> Result<(), StepError> {
    let file = &record.file;
    let existing: Option<(i64, String)> = tx
        .prepare_cached(FILE_ROW_BY_PATH_SQL)
        .and_then(|mut s| {
            s.query_row([&file.path], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(step("look a file up"))?;
    let file_id = match &existing {
        Some((id, _)) => *id,
        None => {
            write_file_row(tx, INSERT_FILE_SQL, &file.path, file)
                .map_err(step("insert a file row"))?;
            report.files_added += 1;
            tx.last_insert_rowid()
        }
    };
    tx.prepare_cached(DELETE_SHARED_OF_PATH_SQL)
        .and_then(|mut s| s.execute([&file.path]))
        .map_err(step("forget a file's shared spans"))?;
    let spans = replace_spans(tx, file_id, record, batch)?;
    report.add(&spans);
    let Some((_, old_hash)) = existing else {
        return Ok(());
    };
    if old_hash == file.file_hash
        && spans.spans_added + spans.spans_moved + spans.spans_removed == 0
    {
        report.files_unchanged += 1;
        return Ok(());
    }
    write_file_row(tx, UPDATE_FILE_SQL, &file_id, file).map_err(step("update a file row"))?;
    report.files_updated += 1;
    Ok(())
}

/// Runs `sql`, the insert (`key`: the path) or the update (`key`: the id) of a `files` row,
/// with the file's other columns.
fn write_file_row(
    tx: &Transaction<'_>,
    sql: &str,
    key: &dyn rusqlite::ToSql,
    file: &IndexedFile,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql).and_then(|mut s| {
        s.execute(params![
            key,
            file.lang,
            file.file_hash,
            file.size,
            file.mtime
        ])
    })
}

/// Replaces the spans of the file `file_id` with those of `record`; returns the span counts
/// (the file counts stay 0).
fn replace_spans(
    tx: &Transaction<'_>,
    file_id: i64,
    record: &FileRecord,
    batch: &Batch<'_>,
) -> Result<IndexWriteReport, StepError> {
    let mut report = IndexWriteReport::default();
    let mut old: HashMap<String, i64> = tx
        .prepare_cached(SPANS_OF_FILE_SQL)
        .and_then(|mut s| {
            s.query_map([file_id], |row| Ok((row.get(1)?, row.get(0)?)))?
                .collect()
        })
        .map_err(step("read a file's spans"))?;
    let mut seen = HashSet::with_capacity(record.spans.len());
    for span in &record.spans {
        if !seen.insert(span.span_hash.as_str()) {
            report.spans_duplicate += 1;
            continue;
        }
        if let Some(id) = old.remove(&span.span_hash) {
            update_span(tx, id, file_id, span)?;
            report.spans_kept += 1;
            continue;
        }
        let elsewhere: Option<(i64, Option<String>)> = tx
            .prepare_cached(SPAN_BY_HASH_SQL)
            .and_then(|mut s| {
                s.query_row([&span.span_hash], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(step("look a span up"))?;
        match elsewhere {
            // The smaller path keeps it, unless that file is losing it in this batch.
            Some((_, Some(holder)))
                if holder.as_str() < record.file.path.as_str()
                    && batch.keeps(&holder, &span.span_hash) =>
            {
                share(tx, &record.file, span)?;
                report.spans_shared += 1;
            }
            Some((id, holder)) => {
                // A holder that keeps the content (a larger path) shares it from now on.
                if holder.is_some_and(|h| batch.keeps(&h, &span.span_hash)) {
                    tx.prepare_cached(SHARE_FROM_SPAN_SQL)
                        .and_then(|mut s| s.execute([id]))
                        .map_err(step("record a shared span"))?;
                }
                update_span(tx, id, file_id, span)?;
                report.spans_moved += 1;
            }
            None => {
                execute_span(tx, INSERT_SPAN_SQL, &[&file_id, &span.span_hash], span)
                    .map_err(step("insert a span"))?;
                report.spans_added += 1;
            }
        }
    }
    for (span_hash, id) in old {
        let_go(tx, id, &span_hash, batch, &mut report)?;
    }
    Ok(report)
}

/// Records that `file` holds `span`, which another file owns.
fn share(tx: &Transaction<'_>, file: &IndexedFile, span: &SpanRecord) -> Result<(), StepError> {
    execute_span(
        tx,
        INSERT_SHARED_SQL,
        &[&span.span_hash, &file.path, &file.file_hash],
        span,
    )
    .map_err(step("record a shared span"))?;
    Ok(())
}

/// The span `id` (hash `span_hash`) leaves its file. The file with the smallest path that
/// shares it and keeps it through this batch takes the row over, with its id and so its
/// enrichment, as its split recorded it (counted as moved); without one the row is deleted.
/// Records of files whose row LLMC changed or removed since are dropped on the way.
fn let_go(
    tx: &Transaction<'_>,
    id: i64,
    span_hash: &str,
    batch: &Batch<'_>,
    report: &mut IndexWriteReport,
) -> Result<(), StepError> {
    let sharers: Vec<(String, Option<i64>, SpanRecord)> = tx
        .prepare_cached(SHARERS_SQL)
        .and_then(|mut s| {
            s.query_map([span_hash], |row| {
                let span = SpanRecord {
                    span_hash: span_hash.to_owned(),
                    symbol: row.get(2)?,
                    kind: row.get(3)?,
                    start_line: row.get(4)?,
                    end_line: row.get(5)?,
                    byte_start: row.get(6)?,
                    byte_end: row.get(7)?,
                    doc_hint: row.get(8)?,
                    slice_type: row.get(9)?,
                    slice_language: row.get(10)?,
                    classifier_confidence: row.get(11)?,
                    classifier_version: row.get(12)?,
                };
                Ok((row.get(0)?, row.get(1)?, span))
            })?
            .collect()
        })
        .map_err(step("look up the files sharing a span"))?;
    for (path, file_id, span) in sharers {
        let forget = |tx: &Transaction<'_>| {
            tx.prepare_cached(DELETE_SHARED_SQL)
                .and_then(|mut s| s.execute([span_hash, path.as_str()]))
                .map_err(step("forget a shared span"))
        };
        let Some(file_id) = file_id else {
            forget(tx)?;
            continue;
        };
        if batch.keeps(&path, span_hash) {
            update_span(tx, id, file_id, &span)?;
            forget(tx)?;
            report.spans_moved += 1;
            return Ok(());
        }
    }
    tx.prepare_cached(DELETE_SPAN_SQL)
        .and_then(|mut s| s.execute([id]))
        .map_err(step("delete a span"))?;
    report.spans_removed += 1;
    Ok(())
}

/// Runs `sql` with `keys` bound first (`?1`, …) and then the columns of `span` every span
/// statement writes, `symbol` to `classifier_version` in table order.
fn execute_span(
    tx: &Transaction<'_>,
    sql: &str,
    keys: &[&dyn ToSql],
    span: &SpanRecord,
) -> rusqlite::Result<usize> {
    let columns: [&dyn ToSql; 11] = [
        &span.symbol,
        &span.kind,
        &span.start_line,
        &span.end_line,
        &span.byte_start,
        &span.byte_end,
        &span.doc_hint,
        &span.slice_type,
        &span.slice_language,
        &span.classifier_confidence,
        &span.classifier_version,
    ];
    tx.prepare_cached(sql)
        .and_then(|mut s| s.execute(params_from_iter(keys.iter().chain(&columns))))
}

fn update_span(
    tx: &Transaction<'_>,
    id: i64,
    file_id: i64,
    span: &SpanRecord,
) -> Result<(), StepError> {
    execute_span(tx, UPDATE_SPAN_SQL, &[&id, &file_id], span).map_err(step("update a span"))?;
    Ok(())
}

fn remove_file(
    tx: &Transaction<'_>,
    path: &str,
    batch: &Batch<'_>,
    report: &mut IndexWriteReport,
) -> Result<(), StepError> {
    tx.prepare_cached(DELETE_SHARED_OF_PATH_SQL)
        .and_then(|mut s| s.execute([path]))
        .map_err(step("forget a file's shared spans"))?;
    let Some(file_id) = tx
        .prepare_cached(FILE_BY_PATH_SQL)
        .and_then(|mut s| s.query_row([path], |row| row.get::<_, i64>(0)).optional())
        .map_err(step("look a file up"))?
    else {
        return Ok(());
    };
    let spans: Vec<(i64, String)> = tx
        .prepare_cached(SPAN_HASHES_OF_FILE_SQL)
        .and_then(|mut s| {
            s.query_map([file_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(step("read a file's spans"))?;
    for (id, span_hash) in spans {
        let_go(tx, id, &span_hash, batch, report)?;
    }
    tx.prepare_cached(DELETE_FILE_DESCRIPTIONS_SQL)
        .and_then(|mut s| s.execute([file_id]))
        .map_err(step("delete a file's description"))?;
    tx.prepare_cached(DELETE_FILE_SQL)
        .and_then(|mut s| s.execute([file_id]))
        .map_err(step("delete a file row"))?;
    report.files_removed += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_are_on_again_after_an_index_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Db::open_or_create(dir.path().join("index_v2.db")).expect("open");
        db.write_index_batch(&[], &["gone.py".to_owned()])
            .expect("write");
        let on: bool = db
            .conn
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .expect("pragma");
        assert!(on);
    }
}
