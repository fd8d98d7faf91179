//! Reading: spans, enrichments (decoded the way LLMC stores them), the attempt log, the ledger,
//! runs and stats.

use std::collections::HashMap;

use rusqlite::types::{Type, ValueRef};
use rusqlite::{OptionalExtension, Row};
use serde_json::Value;

use crate::error::DbError;
use crate::open::Db;
use crate::pending::{COUNT_DEAD_SQL, COUNT_SPANS_SQL, span_columns, span_from_row};
use crate::provenance::Provenance;
use enrich_types::{
    AttemptOutcome, AttemptRecord, Enrichment, Evidence, FailureKind, LedgerKind, RunId,
};

use crate::types::{
    AttemptLogEntry, EnrichmentMetrics, EnrichmentRow, FailureEntry, GroupCount, PendingSpan,
    QualityRow, Run, RunCounts, RunStatus, Stats, StoredEnrichment,
};

const SPAN_BY_HASH_SQL: &str = concat!(
    "SELECT ",
    span_columns!(),
    " FROM spans AS s JOIN files AS f ON f.id = s.file_id WHERE s.span_hash = ?1"
);

const SPAN_BY_ID_SQL: &str = concat!(
    "SELECT ",
    span_columns!(),
    ", EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = s.span_hash)",
    " FROM spans AS s JOIN files AS f ON f.id = s.file_id WHERE s.id = ?1"
);

/// The enrichment columns, for `e` = enrichments and `s` = spans ([`raw_enrichment_at`] reads
/// them).
macro_rules! enrichment_columns {
    () => {
        "e.span_hash, s.symbol, e.created_at, e.summary, e.tags, e.evidence, e.model, \
         e.schema_ver, e.inputs, e.outputs, e.side_effects, e.pitfalls, e.usage_snippet, \
         e.content_type, e.content_language, e.content_type_confidence, e.content_type_source, \
         e.tokens_per_second, e.eval_count, e.eval_duration_ns, e.prompt_eval_count, \
         e.total_duration_ns, e.backend_host"
    };
}
pub(crate) use enrichment_columns;

const ENRICHMENT_BY_HASH_SQL: &str = concat!(
    "SELECT ",
    enrichment_columns!(),
    " FROM enrichments AS e LEFT JOIN spans AS s ON s.span_hash = e.span_hash \
     WHERE e.span_hash = ?1"
);

/// `spans.symbol` has no index in LLMC's schema, so this reads the spans table once; it serves
/// interactive lookups, not the pipeline.
const ENRICHMENTS_BY_SYMBOL_SQL: &str = concat!(
    "SELECT ",
    enrichment_columns!(),
    " FROM spans AS s JOIN enrichments AS e ON e.span_hash = s.span_hash \
     WHERE s.symbol = ?1 ORDER BY s.id"
);

/// An `enrich_quality` row as read: score, level, failed checks and repairs (JSON lists), gate
/// version.
pub(crate) type RawQuality = (f64, String, String, String, String);

const QUALITY_SQL: &str = "SELECT score, level, failed_checks, repairs, gate_version \
                           FROM enrich_quality WHERE span_hash = ?1";
const ATTEMPTS_SQL: &str = "
SELECT run_id, span_hash, attempt, backend, provider, model, host, outcome, failure_kind,
       message, started_at_ms, duration_ms, prompt_eval_count, eval_count, tokens_per_second,
       chain
FROM enrich_attempts WHERE span_hash = ?1 ORDER BY run_id, attempt";

macro_rules! ledger_select {
    () => {
        "SELECT d.span_hash, d.consecutive_failures, d.last_run_id, d.last_failure_kind, \
         d.last_message, d.dead_lettered, d.dead_lettered_at_ms, d.updated_at_ms, f.path, s.symbol \
         FROM enrich_failures AS d \
         LEFT JOIN spans AS s ON s.span_hash = d.span_hash \
         LEFT JOIN files AS f ON f.id = s.file_id "
    };
}

const FAILURE_ENTRY_SQL: &str = concat!(ledger_select!(), "WHERE d.span_hash = ?1");
const DEAD_LETTERS_SQL: &str = concat!(
    ledger_select!(),
    "WHERE d.dead_lettered = 1 ORDER BY d.dead_lettered_at_ms, d.span_hash"
);

const COUNT_FAILING_SQL: &str = "SELECT COUNT(*) FROM enrich_failures AS d \
     WHERE d.dead_lettered = 0 \
       AND EXISTS (SELECT 1 FROM spans AS s WHERE s.span_hash = d.span_hash) \
       AND NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = d.span_hash)";

/// Enrichments of existing spans by model and host: one pass over the table gives the enriched
/// count and both groupings (three passes cost twice as long on a big index).
const GROUP_ENRICHMENTS_SQL: &str = "SELECT e.model, e.backend_host, COUNT(*) \
     FROM enrichments AS e \
     WHERE EXISTS (SELECT 1 FROM spans AS s WHERE s.span_hash = e.span_hash) \
     GROUP BY e.model, e.backend_host";

/// `counts` as groups, most first, then by key.
fn ranked(counts: HashMap<Option<String>, u64>) -> Vec<GroupCount> {
    let mut groups: Vec<GroupCount> = counts
        .into_iter()
        .map(|(key, count)| GroupCount { key, count })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    groups
}

const RUN_COLUMNS_SQL: &str = "SELECT id, started_at_ms, finished_at_ms, status, \
     config_fingerprint, attempted, succeeded, failed, skipped, prompt_fingerprint FROM enrich_runs";

/// An `enrichments` row before its JSON columns are decoded.
pub(crate) struct RawEnrichment {
    span_hash: String,
    symbol: Option<String>,
    created_at: Option<i64>,
    summary: Option<String>,
    tags: Option<String>,
    evidence: Option<String>,
    model: Option<String>,
    schema_ver: Option<String>,
    inputs: Option<String>,
    outputs: Option<String>,
    side_effects: Option<String>,
    pitfalls: Option<String>,
    usage_snippet: Option<String>,
    content_type: Option<String>,
    content_language: Option<String>,
    content_type_confidence: Option<f64>,
    content_type_source: Option<String>,
    metrics: EnrichmentMetrics,
}

fn raw_enrichment(row: &Row<'_>) -> rusqlite::Result<RawEnrichment> {
    raw_enrichment_at(row, 0)
}

/// The [`enrichment_columns!`] of `row`, the first of them at index `at`.
pub(crate) fn raw_enrichment_at(row: &Row<'_>, at: usize) -> rusqlite::Result<RawEnrichment> {
    Ok(RawEnrichment {
        span_hash: row.get(at)?,
        symbol: row.get(at + 1)?,
        created_at: lenient_i64(row.get_ref(at + 2)?),
        summary: text(row.get_ref(at + 3)?),
        tags: text(row.get_ref(at + 4)?),
        evidence: text(row.get_ref(at + 5)?),
        model: text(row.get_ref(at + 6)?),
        schema_ver: text(row.get_ref(at + 7)?),
        inputs: text(row.get_ref(at + 8)?),
        outputs: text(row.get_ref(at + 9)?),
        side_effects: text(row.get_ref(at + 10)?),
        pitfalls: text(row.get_ref(at + 11)?),
        usage_snippet: text(row.get_ref(at + 12)?),
        content_type: text(row.get_ref(at + 13)?),
        content_language: text(row.get_ref(at + 14)?),
        content_type_confidence: lenient_f64(row.get_ref(at + 15)?),
        content_type_source: text(row.get_ref(at + 16)?),
        metrics: EnrichmentMetrics {
            tokens_per_second: lenient_f64(row.get_ref(at + 17)?),
            eval_count: lenient_u64(row.get_ref(at + 18)?),
            eval_duration_ns: lenient_u64(row.get_ref(at + 19)?),
            prompt_eval_count: lenient_u64(row.get_ref(at + 20)?),
            total_duration_ns: lenient_u64(row.get_ref(at + 21)?),
            backend_host: text(row.get_ref(at + 22)?),
        },
    })
}

/// Text as stored by Python, which may also have put a number in a text column.
pub(crate) fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null | ValueRef::Blob(_) => None,
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
    }
}

pub(crate) fn lenient_i64(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(i) => Some(i),
        // Whole seconds as a float: truncation is the intent.
        ValueRef::Real(r) if r.is_finite() => Some(r as i64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_u64(value: ValueRef<'_>) -> Option<u64> {
    lenient_i64(value).and_then(|i| u64::try_from(i).ok())
}

fn lenient_f64(value: ValueRef<'_>) -> Option<f64> {
    match value {
        ValueRef::Real(r) => Some(r),
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A list column: a JSON array (items that are not strings keep their JSON text); `NULL`,
/// empty text and JSON `null` are an empty list.
pub(crate) fn decode_list(column: Option<&str>) -> Result<Vec<String>, String> {
    let Some(text) = column.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect()),
        Ok(Value::Null) => Ok(Vec::new()),
        Ok(other) => Err(format!("expected a JSON array, found {other}")),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn decode_evidence(column: Option<&str>) -> Result<Vec<Evidence>, String> {
    match column.map(str::trim).filter(|t| !t.is_empty()) {
        None | Some("null") => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| format!("expected [{{\"field\": …, \"lines\": [start, end]}}]: {e}")),
    }
}

/// The `tags` column: comma-joined.
fn decode_tags(column: Option<&str>) -> Vec<String> {
    column
        .into_iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn conversion_error(index: usize, detail: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, detail.into())
}

fn attempt_entry(row: &Row<'_>) -> rusqlite::Result<AttemptLogEntry> {
    let outcome: String = row.get(7)?;
    let outcome = AttemptOutcome::from_name(&outcome)
        .ok_or_else(|| conversion_error(7, format!("unknown attempt outcome {outcome:?}")))?;
    let failure_kind = match row.get::<_, Option<String>>(8)? {
        None => None,
        Some(name) => Some(
            FailureKind::from_name(&name)
                .ok_or_else(|| conversion_error(8, format!("unknown failure kind {name:?}")))?,
        ),
    };
    Ok(AttemptLogEntry {
        run_id: RunId(row.get(0)?),
        span_hash: row.get(1)?,
        attempt: AttemptRecord {
            attempt: row.get(2)?,
            backend: row.get(3)?,
            provider: row.get(4)?,
            model: row.get(5)?,
            host: row.get(6)?,
            outcome,
            failure_kind,
            message: row.get(9)?,
            started_at_ms: row.get(10)?,
            duration_ms: row.get(11)?,
            prompt_eval_count: row.get(12)?,
            eval_count: row.get(13)?,
            tokens_per_second: row.get(14)?,
        },
        chain: row.get(15)?,
    })
}

fn failure_entry(row: &Row<'_>) -> rusqlite::Result<FailureEntry> {
    let kind: String = row.get(3)?;
    let last_failure_kind = LedgerKind::from_name(&kind)
        .ok_or_else(|| conversion_error(3, format!("unknown failure kind {kind:?}")))?;
    Ok(FailureEntry {
        span_hash: row.get(0)?,
        consecutive_failures: row.get(1)?,
        last_run_id: row.get::<_, Option<i64>>(2)?.map(RunId),
        last_failure_kind,
        last_message: row.get(4)?,
        dead_lettered: row.get(5)?,
        dead_lettered_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
        file_path: row.get(8)?,
        symbol: row.get(9)?,
    })
}

fn run(row: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(3)?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| conversion_error(3, format!("unknown run status {status:?}")))?;
    Ok(Run {
        id: RunId(row.get(0)?),
        started_at_ms: row.get(1)?,
        finished_at_ms: row.get(2)?,
        status,
        config_fingerprint: row.get(4)?,
        prompt_fingerprint: row.get(9)?,
        counts: RunCounts {
            attempted: row.get(5)?,
            succeeded: row.get(6)?,
            failed: row.get(7)?,
            skipped: row.get(8)?,
        },
    })
}

impl Db {
    /// The span with this hash, with its file's path and language.
    pub fn span_by_hash(&self, span_hash: &str) -> Result<Option<PendingSpan>, DbError> {
        self.conn
            .prepare_cached(SPAN_BY_HASH_SQL)
            .and_then(|mut stmt| stmt.query_row([span_hash], span_from_row).optional())
            .map_err(self.err("read a span"))
    }

    /// The span with this `spans.id` (as [`PendingSpan::id`] gives it), with its file's path and
    /// language, a [renewal](PendingSpan::renewal) when it has an enrichment; `None` when it is
    /// gone (re-indexed).
    pub fn span_by_id(&self, id: i64) -> Result<Option<PendingSpan>, DbError> {
        let read = |row: &rusqlite::Row<'_>| {
            Ok(PendingSpan {
                renewal: row.get(14)?,
                ..span_from_row(row)?
            })
        };
        self.conn
            .prepare_cached(SPAN_BY_ID_SQL)
            .and_then(|mut stmt| stmt.query_row([id], read).optional())
            .map_err(self.err("read a span"))
    }

    /// The enrichment of this span hash, decoded the way LLMC stores it.
    pub fn enrichment_by_hash(&self, span_hash: &str) -> Result<Option<StoredEnrichment>, DbError> {
        let raw = self
            .conn
            .prepare_cached(ENRICHMENT_BY_HASH_SQL)
            .and_then(|mut stmt| stmt.query_row([span_hash], raw_enrichment).optional())
            .map_err(self.err("read an enrichment"))?;
        raw.map(|raw| self.decode_enrichment(raw)).transpose()
    }

    /// The enrichments of every span defining `symbol` (a symbol may have several spans), in
    /// span order. Reads the whole spans table: LLMC's schema has no index on `symbol`.
    pub fn enrichments_by_symbol(&self, symbol: &str) -> Result<Vec<StoredEnrichment>, DbError> {
        let raws = self
            .conn
            .prepare_cached(ENRICHMENTS_BY_SYMBOL_SQL)
            .and_then(|mut stmt| {
                stmt.query_map([symbol], raw_enrichment)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(self.err("read enrichments"))?;
        raws.into_iter()
            .map(|raw| self.decode_enrichment(raw))
            .collect()
    }

    /// The quality gate's verdict on the enrichment of this span (`enrich_quality`), if it was
    /// judged.
    pub fn quality_of(&self, span_hash: &str) -> Result<Option<QualityRow>, DbError> {
        let raw = self
            .conn
            .prepare_cached(QUALITY_SQL)
            .and_then(|mut stmt| {
                stmt.query_row([span_hash], |row| {
                    Ok((
                        row.get::<_, f64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .optional()
            })
            .map_err(self.err("read an enrichment's quality score"))?;
        raw.map(|raw| self.decode_quality(span_hash, raw))
            .transpose()
    }

    /// An `enrich_quality` row's columns (score, level, failed checks, repairs, gate version)
    /// decoded.
    pub(crate) fn decode_quality(
        &self,
        span_hash: &str,
        (score, level, failed, repairs, gate_version): RawQuality,
    ) -> Result<QualityRow, DbError> {
        let bad = |column: &'static str| {
            move |detail: String| DbError::BadRow {
                path: self.path.clone(),
                span_hash: span_hash.to_owned(),
                column,
                detail,
            }
        };
        Ok(QualityRow {
            score,
            level,
            failed_checks: decode_list(Some(&failed)).map_err(bad("failed_checks"))?,
            repairs: decode_list(Some(&repairs)).map_err(bad("repairs"))?,
            gate_version,
        })
    }

    /// Every logged attempt for this span, by run then attempt number.
    pub fn attempts_for_span(&self, span_hash: &str) -> Result<Vec<AttemptLogEntry>, DbError> {
        self.conn
            .prepare_cached(ATTEMPTS_SQL)
            .and_then(|mut stmt| {
                stmt.query_map([span_hash], attempt_entry)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(self.err("read the attempt log"))
    }

    /// The ledger row of this span, if it ever failed since its last success or requeue.
    pub fn failure_entry(&self, span_hash: &str) -> Result<Option<FailureEntry>, DbError> {
        self.conn
            .prepare_cached(FAILURE_ENTRY_SQL)
            .and_then(|mut stmt| stmt.query_row([span_hash], failure_entry).optional())
            .map_err(self.err("read the failure ledger"))
    }

    /// Every dead-lettered span, oldest dead letter first.
    pub fn dead_letters(&self) -> Result<Vec<FailureEntry>, DbError> {
        self.conn
            .prepare_cached(DEAD_LETTERS_SQL)
            .and_then(|mut stmt| {
                stmt.query_map([], failure_entry)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(self.err("read the dead letters"))
    }

    /// The run with this id.
    pub fn run(&self, id: RunId) -> Result<Option<Run>, DbError> {
        self.conn
            .prepare_cached(&format!("{RUN_COLUMNS_SQL} WHERE id = ?1"))
            .and_then(|mut stmt| stmt.query_row([id.0], run).optional())
            .map_err(self.err("read a run"))
    }

    /// The most recently started run.
    pub fn last_run(&self) -> Result<Option<Run>, DbError> {
        self.conn
            .prepare_cached(&format!("{RUN_COLUMNS_SQL} ORDER BY id DESC LIMIT 1"))
            .and_then(|mut stmt| stmt.query_row([], run).optional())
            .map_err(self.err("read the last run"))
    }

    /// Counts of files, spans, enriched, pending, failing and dead-lettered spans, enrichments
    /// by model and by backend host, and the last run, from one consistent snapshot.
    pub fn stats(&self) -> Result<Stats, DbError> {
        // A read transaction, so every count sees the same state.
        let snapshot = self
            .conn
            .unchecked_transaction()
            .map_err(self.err("start a read transaction"))?;
        let files = self.count("SELECT COUNT(*) FROM files")?;
        let spans = self.count(COUNT_SPANS_SQL)?;
        let dead_lettered = self.count(COUNT_DEAD_SQL)?;
        let failing = self.count(COUNT_FAILING_SQL)?;
        let (enriched, by_model, by_backend_host) = self.group_enrichments()?;
        let last_run = self.last_run()?;
        snapshot
            .finish()
            .map_err(self.err("end a read transaction"))?;
        Ok(Stats {
            files,
            spans,
            enriched,
            pending: spans.saturating_sub(enriched).saturating_sub(dead_lettered),
            failing,
            dead_lettered,
            by_model,
            by_backend_host,
            last_run,
        })
    }

    /// The enriched count, and the enrichments by model and by backend host.
    fn group_enrichments(&self) -> Result<(u64, Vec<GroupCount>, Vec<GroupCount>), DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(GROUP_ENRICHMENTS_SQL)
            .map_err(self.err("count enrichments"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    text(row.get_ref(0)?),
                    text(row.get_ref(1)?),
                    row.get::<_, u64>(2)?,
                ))
            })
            .map_err(self.err("count enrichments"))?;
        let (mut total, mut by_model, mut by_host) = (0, HashMap::new(), HashMap::new());
        for row in rows {
            let (model, host, n) = row.map_err(self.err("count enrichments"))?;
            total += n;
            *by_model.entry(model).or_insert(0) += n;
            *by_host.entry(host).or_insert(0) += n;
        }
        Ok((total, ranked(by_model), ranked(by_host)))
    }

    fn decode_enrichment(&self, raw: RawEnrichment) -> Result<StoredEnrichment, DbError> {
        let quality = self.quality_of(&raw.span_hash)?;
        let provenance = self.provenance_of(&raw.span_hash)?;
        self.decode_enrichment_with(raw, quality, provenance)
    }

    /// `raw` decoded the way LLMC stores it, with the quality verdict and the provenance read
    /// beside it.
    pub(crate) fn decode_enrichment_with(
        &self,
        raw: RawEnrichment,
        quality: Option<QualityRow>,
        provenance: Option<Provenance>,
    ) -> Result<StoredEnrichment, DbError> {
        let bad = |column: &'static str| {
            let span_hash = raw.span_hash.clone();
            move |detail: String| DbError::BadRow {
                path: self.path.clone(),
                span_hash,
                column,
                detail,
            }
        };
        let enrichment = EnrichmentRow {
            enrichment: Enrichment {
                summary: raw.summary.unwrap_or_default(),
                inputs: decode_list(raw.inputs.as_deref()).map_err(bad("inputs"))?,
                outputs: decode_list(raw.outputs.as_deref()).map_err(bad("outputs"))?,
                side_effects: decode_list(raw.side_effects.as_deref())
                    .map_err(bad("side_effects"))?,
                pitfalls: decode_list(raw.pitfalls.as_deref()).map_err(bad("pitfalls"))?,
                usage_snippet: raw.usage_snippet,
                evidence: decode_evidence(raw.evidence.as_deref()).map_err(bad("evidence"))?,
            },
            tags: decode_tags(raw.tags.as_deref()),
            model: raw.model.unwrap_or_default(),
            schema_ver: raw.schema_ver.unwrap_or_default(),
            content_type: raw.content_type,
            content_language: raw.content_language,
            content_type_confidence: raw.content_type_confidence,
            content_type_source: raw.content_type_source,
            metrics: raw.metrics,
            quality,
            provenance,
        };
        Ok(StoredEnrichment {
            span_hash: raw.span_hash,
            symbol: raw.symbol,
            created_at: raw.created_at,
            enrichment,
        })
    }
}
