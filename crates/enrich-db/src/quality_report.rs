//! What `enrich quality` and `enrich compare` read: the attempt log, the runs' prompt
//! fingerprints and the quality gate's scores, grouped by model, chain, backend and prompt
//! fingerprint.
//!
//! Every figure is attributed to the attempt that produced it: an attempt's tokens, first-try
//! outcome and gate rejection count for its own model and backend, so a cascade that falls
//! from one model to the next charges each model with what it did. A stored enrichment's score
//! and summary belong to the successful attempt that wrote it: the latest success of its span
//! (the index keeps one enrichment per span, so the text and score of an earlier success that
//! a later one replaced are gone). Each attempt records the chain its span was routed to;
//! attempts logged before enrich recorded it report [`UNKNOWN_CHAIN`].
//!
//! The message format of a gate rejection belongs to the gate, not to this crate: the caller
//! passes the function that names the checks a rejection message reports.

use rusqlite::types::Value;
use rusqlite::{Row, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::open::Db;
use enrich_types::{FailureKind, RunId};

/// The prompt fingerprint of attempts whose run recorded none (runs started before enrich
/// recorded it, or without a prompt).
pub const UNKNOWN_PROMPT_FINGERPRINT: &str = "unknown";

/// The chain of attempts logged before enrich recorded each attempt's chain.
pub const UNKNOWN_CHAIN: &str = "unknown";

/// Which attempts a report covers. Every condition given must hold; an empty filter covers
/// the whole attempt log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFilter {
    /// Only attempts of these models (as the attempt log names them); empty: every model.
    pub models: Vec<String>,
    /// Only attempts of these runs; empty: every run.
    pub runs: Vec<RunId>,
    /// Only attempts of runs started at or after this time (milliseconds since the Unix
    /// epoch).
    pub since_ms: Option<u64>,
    /// Only attempts of this span.
    pub span_hash: Option<String>,
    /// Only spans that an attempt of this filter enriched (a successful attempt) and that an
    /// attempt of the other filter enriched too: the spans two sides of a comparison share.
    pub also_enriched_by: Option<Box<ReportFilter>>,
}

/// What a group of the report is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReportKey {
    /// The model, as the attempt log names it (reported by the backend, else configured).
    pub model: String,
    /// The chain the attempt's span was routed to, [`UNKNOWN_CHAIN`] when the attempt log
    /// did not record it.
    pub chain: String,
    /// The backend's configured name.
    pub backend: String,
    /// The run's prompt fingerprint, [`UNKNOWN_PROMPT_FINGERPRINT`] when it recorded none.
    pub prompt_fingerprint: String,
}

/// How many times a check was named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCount {
    /// The check's name.
    pub check: String,
    /// How many attempts (or stored enrichments) it was named for.
    pub count: u64,
}

/// One group's figures as the records give them; the caller derives rates and spreads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityGroup {
    /// The group.
    pub key: ReportKey,
    /// Attempts made, failed ones included.
    pub attempts: u64,
    /// Spans tried: distinct span and run pairs with an attempt of the group.
    pub spans_tried: u64,
    /// Attempts that were their span's first in a run.
    pub first_attempts: u64,
    /// Of those, the ones that succeeded (passed the schema and the gate).
    pub first_try_valid: u64,
    /// Successful attempts: enrichments the group produced.
    pub enriched: u64,
    /// Attempts the quality gate rejected (`quality_rejected`).
    pub rejected: u64,
    /// The checks named by those rejections, most named first.
    pub rejections: Vec<CheckCount>,
    /// Prompt tokens of every attempt, as the backends reported them.
    pub prompt_tokens: u64,
    /// Output tokens of every attempt, as the backends reported them.
    pub output_tokens: u64,
    /// Enrichments of the group the index still holds (no later success replaced them).
    pub stored: u64,
    /// The quality scores of those with one, lowest first (enrichments stored before the gate,
    /// or by the fallback policy, have none).
    pub scores: Vec<f64>,
    /// The checks those failed without being rejected (above the gate's level), most first.
    pub let_through: Vec<CheckCount>,
    /// Words of the stored summaries, summed (divide by `stored` for the mean).
    pub summary_words: u64,
}

/// A stored enrichment with its score, for the worst list and a comparison's examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredSpan {
    /// The group of the attempt that wrote it.
    pub key: ReportKey,
    /// The span.
    pub span_hash: String,
    /// The run that wrote it.
    pub run_id: RunId,
    /// The quality score, `None` when the gate did not score it.
    pub score: Option<f64>,
    /// The checks it failed without being rejected.
    pub failed_checks: Vec<String>,
    /// The repairs made to it.
    pub repairs: Vec<String>,
    /// Its summary.
    pub summary: String,
    /// The span's file, `None` when the span is no longer in the index.
    pub file_path: Option<String>,
    /// The span's first line.
    pub start_line: Option<u32>,
    /// The span's last line.
    pub end_line: Option<u32>,
    /// The span's symbol.
    pub symbol: Option<String>,
}

/// The group of an attempt `a` of run `r`, as four columns (the chain `NULL` when the attempt
/// recorded none, the fingerprint `NULL` when the run recorded none).
const KEY_COLUMNS: &str = "a.model, a.chain, a.backend, r.prompt_fingerprint";

/// How many columns [`KEY_COLUMNS`] is.
const KEY_LEN: usize = 4;

/// The attempts of the filter: `a`, with their run `r`.
const ATTEMPTS_FROM: &str =
    "FROM enrich_attempts AS a LEFT JOIN enrich_runs AS r ON r.id = a.run_id WHERE 1 = 1";

/// Attempts `a` with their run `r`, the span's enrichment `e` (the attempts of spans without
/// one left out) and its quality row `q`.
const STORED_FROM: &str = "FROM enrich_attempts AS a LEFT JOIN enrich_runs AS r ON r.id = a.run_id
     JOIN enrichments AS e ON e.span_hash = a.span_hash
     LEFT JOIN enrich_quality AS q ON q.span_hash = a.span_hash";

/// A successful attempt `a` (of [`STORED_FROM`]) whose enrichment is the one the index holds:
/// no later success of the span (by run, then attempt number) replaced it.
const IS_STORED: &str = "a.outcome = 'success'
    AND NOT EXISTS (SELECT 1 FROM enrich_attempts AS b
        WHERE b.span_hash = a.span_hash AND b.outcome = 'success'
          AND (b.run_id > a.run_id OR (b.run_id = a.run_id AND b.attempt > a.attempt)))";

/// Columns of a [`ScoredSpan`] after the key's four.
const SCORED_COLUMNS: &str = "a.span_hash, a.run_id, q.score, q.failed_checks, q.repairs, \
     e.summary, f.path, s.start_line, s.end_line, s.symbol";

impl ReportFilter {
    /// The filter's conditions on the attempt alias `a`, as `AND …` SQL, its values pushed.
    fn conditions(&self, a: &str, values: &mut Vec<Value>, depth: usize) -> String {
        let mut sql = String::new();
        let list = |n: usize| vec!["?"; n].join(", ");
        if !self.models.is_empty() {
            sql.push_str(&format!(" AND {a}.model IN ({})", list(self.models.len())));
            values.extend(self.models.iter().cloned().map(Value::Text));
        }
        if !self.runs.is_empty() {
            sql.push_str(&format!(" AND {a}.run_id IN ({})", list(self.runs.len())));
            values.extend(self.runs.iter().map(|r| Value::Integer(r.0)));
        }
        if let Some(since) = self.since_ms {
            sql.push_str(&format!(
                " AND {a}.run_id IN (SELECT id FROM enrich_runs WHERE started_at_ms >= ?)"
            ));
            values.push(Value::Integer(i64::try_from(since).unwrap_or(i64::MAX)));
        }
        if let Some(hash) = &self.span_hash {
            sql.push_str(&format!(" AND {a}.span_hash = ?"));
            values.push(Value::Text(hash.clone()));
        }
        if let Some(other) = &self.also_enriched_by {
            for side in [
                &Self {
                    also_enriched_by: None,
                    ..self.clone()
                },
                other.as_ref(),
            ] {
                let alias = format!("c{depth}_{}", values.len());
                let inner = side.conditions(&alias, values, depth + 1);
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM enrich_attempts AS {alias} \
                     WHERE {alias}.span_hash = {a}.span_hash AND {alias}.outcome = 'success'{inner})"
                ));
            }
        }
        sql
    }

    /// The filter as SQL conditions on `a` with their values.
    fn sql(&self) -> (String, Vec<Value>) {
        let mut values = Vec::new();
        let sql = self.conditions("a", &mut values, 0);
        (sql, values)
    }
}

fn key(row: &Row<'_>) -> rusqlite::Result<ReportKey> {
    Ok(ReportKey {
        model: row.get(0)?,
        chain: row
            .get::<_, Option<String>>(1)?
            .unwrap_or_else(|| UNKNOWN_CHAIN.to_owned()),
        backend: row.get(2)?,
        prompt_fingerprint: row
            .get::<_, Option<String>>(3)?
            .unwrap_or_else(|| UNKNOWN_PROMPT_FINGERPRINT.to_owned()),
    })
}

fn count(row: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
}

/// A JSON array of names; anything else reads as no names.
fn names(column: Option<String>) -> Vec<String> {
    column
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Counts sorted most first, then by name.
fn ranked(counts: std::collections::BTreeMap<String, u64>) -> Vec<CheckCount> {
    let mut ranked: Vec<CheckCount> = counts
        .into_iter()
        .map(|(check, count)| CheckCount { check, count })
        .collect();
    ranked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.check.cmp(&b.check)));
    ranked
}

fn scored_span(row: &Row<'_>) -> rusqlite::Result<ScoredSpan> {
    Ok(ScoredSpan {
        key: key(row)?,
        span_hash: row.get(KEY_LEN)?,
        run_id: RunId(row.get(KEY_LEN + 1)?),
        score: row.get(KEY_LEN + 2)?,
        failed_checks: names(row.get(KEY_LEN + 3)?),
        repairs: names(row.get(KEY_LEN + 4)?),
        summary: row
            .get::<_, Option<String>>(KEY_LEN + 5)?
            .unwrap_or_default(),
        file_path: row.get(KEY_LEN + 6)?,
        start_line: row.get(KEY_LEN + 7)?,
        end_line: row.get(KEY_LEN + 8)?,
        symbol: row.get(KEY_LEN + 9)?,
    })
}

impl Db {
    /// The report's groups for the attempts `filter` covers, ordered by model, chain, backend
    /// and prompt fingerprint. `rejected_checks` names the checks a `quality_rejected` attempt's
    /// message reports (the gate defines the message).
    pub fn quality_groups(
        &self,
        filter: &ReportFilter,
        rejected_checks: impl Fn(&str) -> Vec<String>,
    ) -> Result<Vec<QualityGroup>, DbError> {
        let (conditions, values) = filter.sql();
        let rejected = FailureKind::QualityRejected.as_str();
        let totals_sql = format!(
            "SELECT {KEY_COLUMNS}, COUNT(*), COUNT(DISTINCT a.span_hash || ' ' || a.run_id),
                SUM(a.attempt = 1), SUM(a.attempt = 1 AND a.outcome = 'success'),
                SUM(a.outcome = 'success'), SUM(a.failure_kind = '{rejected}'),
                SUM(a.prompt_eval_count), SUM(a.eval_count)
             {ATTEMPTS_FROM}{conditions} GROUP BY 1, 2, 3, 4"
        );
        let action = "read the attempt log for the quality report";
        let mut stmt = self.conn.prepare(&totals_sql).map_err(self.err(action))?;
        let mut groups = stmt
            .query_map(params_from_iter(values.iter()), |row| {
                Ok(QualityGroup {
                    key: key(row)?,
                    attempts: count(row, KEY_LEN)?,
                    spans_tried: count(row, KEY_LEN + 1)?,
                    first_attempts: count(row, KEY_LEN + 2)?,
                    first_try_valid: count(row, KEY_LEN + 3)?,
                    enriched: count(row, KEY_LEN + 4)?,
                    rejected: count(row, KEY_LEN + 5)?,
                    rejections: Vec::new(),
                    prompt_tokens: count(row, KEY_LEN + 6)?,
                    output_tokens: count(row, KEY_LEN + 7)?,
                    stored: 0,
                    scores: Vec::new(),
                    let_through: Vec::new(),
                    summary_words: 0,
                })
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(self.err(action))?;
        // Sorted in Rust, so the groups can be found by key: SQLite's collation of the key
        // columns need not be Rust's order.
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<ReportKey> = groups.iter().map(|g| g.key.clone()).collect();
        let index = |key: &ReportKey| keys.binary_search(key).ok();

        let mut by_check = vec![std::collections::BTreeMap::<String, u64>::new(); groups.len()];
        let messages_sql = format!(
            "SELECT {KEY_COLUMNS}, a.message {ATTEMPTS_FROM}{conditions} \
             AND a.failure_kind = '{rejected}'"
        );
        let mut stmt = self.conn.prepare(&messages_sql).map_err(self.err(action))?;
        let mut rows = stmt
            .query(params_from_iter(values.iter()))
            .map_err(self.err(action))?;
        while let Some(row) = rows.next().map_err(self.err(action))? {
            let key = key(row).map_err(self.err(action))?;
            let message: Option<String> = row.get(KEY_LEN).map_err(self.err(action))?;
            if let Some(i) = index(&key) {
                for check in rejected_checks(message.as_deref().unwrap_or_default()) {
                    *by_check[i].entry(check).or_default() += 1;
                }
            }
        }
        drop(rows);
        for (group, counts) in groups.iter_mut().zip(by_check) {
            group.rejections = ranked(counts);
        }

        let stored_sql = format!(
            "SELECT {KEY_COLUMNS}, q.score, q.failed_checks, e.summary {STORED_FROM}
             WHERE {IS_STORED}{conditions}"
        );
        let mut let_through = vec![std::collections::BTreeMap::<String, u64>::new(); groups.len()];
        let mut stmt = self.conn.prepare(&stored_sql).map_err(self.err(action))?;
        let mut rows = stmt
            .query(params_from_iter(values.iter()))
            .map_err(self.err(action))?;
        // Read row by row: the summaries are counted, not kept.
        while let Some(row) = rows.next().map_err(self.err(action))? {
            let read = |row: &Row<'_>| -> rusqlite::Result<_> {
                Ok((
                    key(row)?,
                    row.get::<_, Option<f64>>(KEY_LEN)?,
                    names(row.get(KEY_LEN + 1)?),
                    row.get::<_, Option<String>>(KEY_LEN + 2)?,
                ))
            };
            let (key, score, failed, summary) = read(row).map_err(self.err(action))?;
            let Some(i) = index(&key) else { continue };
            let group = &mut groups[i];
            group.stored += 1;
            group.summary_words += summary.map_or(0, |s| {
                u64::try_from(s.split_whitespace().count()).unwrap_or(u64::MAX)
            });
            if let Some(score) = score {
                group.scores.push(score);
            }
            for check in failed {
                *let_through[i].entry(check).or_default() += 1;
            }
        }
        drop(rows);
        for (group, counts) in groups.iter_mut().zip(let_through) {
            group.scores.sort_by(f64::total_cmp);
            group.let_through = ranked(counts);
        }
        Ok(groups)
    }

    /// The stored enrichments the attempts of `filter` wrote, lowest score first (unscored
    /// ones last), then by span hash; at most `limit`.
    pub fn scored_spans(
        &self,
        filter: &ReportFilter,
        limit: usize,
    ) -> Result<Vec<ScoredSpan>, DbError> {
        let (conditions, mut values) = filter.sql();
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {SCORED_COLUMNS} {STORED_FROM}
             LEFT JOIN spans AS s ON s.span_hash = a.span_hash
             LEFT JOIN files AS f ON f.id = s.file_id
             WHERE {IS_STORED}{conditions}
             ORDER BY q.score IS NULL, q.score, a.span_hash LIMIT ?"
        );
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let action = "read the stored enrichments for the quality report";
        let mut stmt = self.conn.prepare(&sql).map_err(self.err(action))?;
        stmt.query_map(params_from_iter(values.iter()), scored_span)
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(self.err(action))
    }

    /// Spans an attempt of `a` and an attempt of `b` both enriched, by span hash; at most
    /// `limit`.
    pub fn spans_enriched_by_both(
        &self,
        a: &ReportFilter,
        b: &ReportFilter,
        limit: usize,
    ) -> Result<Vec<String>, DbError> {
        let both = ReportFilter {
            also_enriched_by: Some(Box::new(b.clone())),
            ..a.clone()
        };
        let (conditions, mut values) = both.sql();
        let sql = format!(
            "SELECT DISTINCT a.span_hash {ATTEMPTS_FROM}{conditions} \
             ORDER BY a.span_hash LIMIT ?"
        );
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let action = "read the spans two sides of a comparison enriched";
        let mut stmt = self.conn.prepare(&sql).map_err(self.err(action))?;
        stmt.query_map(params_from_iter(values.iter()), |row| row.get(0))
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(self.err(action))
    }
}
