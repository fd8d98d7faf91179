//! The single-writer path: enrichments with their attempt rows and ledger updates, many spans
//! per `IMMEDIATE` transaction; ledger operations; runs.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::DbError;
use crate::lease::RELEASE_LEASE_SQL;
use crate::open::Db;
use enrich_types::{AttemptRecord, LedgerKind, RunId};

use crate::types::{
    EnrichmentRow, FailureEntry, QualityRow, RunCounts, RunStatus, SpanOutcome, Stored, WriteReport,
};

const INSERT_ATTEMPT_SQL: &str = "
INSERT INTO enrich_attempts (
    span_hash, run_id, attempt, backend, provider, model, host, outcome, failure_kind, message,
    started_at_ms, duration_ms, prompt_eval_count, eval_count, tokens_per_second, chain
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
ON CONFLICT (span_hash, run_id, attempt) DO NOTHING";

/// Stores an enrichment if its span exists (no row changes when it does not), in one statement
/// instead of a lookup and an upsert. LLMC stamps `created_at` with `strftime('%s','now')`; the
/// cast stores the same number as an integer rather than text. (`WHERE` also keeps SQLite from
/// reading `ON CONFLICT` as part of the `SELECT`.)
const UPSERT_QUALITY_SQL: &str = "
INSERT INTO enrich_quality (span_hash, score, level, failed_checks, repairs, gate_version,
                            scored_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT(span_hash) DO UPDATE SET
    score = excluded.score, level = excluded.level, failed_checks = excluded.failed_checks,
    repairs = excluded.repairs, gate_version = excluded.gate_version,
    scored_at_ms = excluded.scored_at_ms";

const UPSERT_ENRICHMENT_SQL: &str = "
INSERT INTO enrichments (
    span_hash, summary, tags, evidence, model, created_at, schema_ver,
    inputs, outputs, side_effects, pitfalls, usage_snippet,
    content_type, content_language, content_type_confidence, content_type_source,
    tokens_per_second, eval_count, eval_duration_ns, prompt_eval_count, total_duration_ns,
    backend_host
)
SELECT
    ?1, ?2, ?3, ?4, ?5, CAST(strftime('%s', 'now') AS INTEGER), ?6,
    ?7, ?8, ?9, ?10, ?11,
    ?12, ?13, ?14, ?15,
    ?16, ?17, ?18, ?19, ?20,
    ?21
WHERE EXISTS (SELECT 1 FROM spans WHERE span_hash = ?1)
ON CONFLICT (span_hash) DO UPDATE SET
    summary = excluded.summary,
    tags = excluded.tags,
    evidence = excluded.evidence,
    model = excluded.model,
    created_at = excluded.created_at,
    schema_ver = excluded.schema_ver,
    inputs = excluded.inputs,
    outputs = excluded.outputs,
    side_effects = excluded.side_effects,
    pitfalls = excluded.pitfalls,
    usage_snippet = excluded.usage_snippet,
    content_type = excluded.content_type,
    content_language = excluded.content_language,
    content_type_confidence = excluded.content_type_confidence,
    content_type_source = excluded.content_type_source,
    tokens_per_second = excluded.tokens_per_second,
    eval_count = excluded.eval_count,
    eval_duration_ns = excluded.eval_duration_ns,
    prompt_eval_count = excluded.prompt_eval_count,
    total_duration_ns = excluded.total_duration_ns,
    backend_host = excluded.backend_host";

const SPAN_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM spans WHERE span_hash = ?1)";
const RUN_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM enrich_runs WHERE id = ?1)";
const LEDGER_NOT_EMPTY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM enrich_failures)";
const CLEAR_LEDGER_SQL: &str = "DELETE FROM enrich_failures WHERE span_hash = ?1";
const LEDGER_ROW_SQL: &str = "SELECT consecutive_failures, last_run_id, dead_lettered \
     FROM enrich_failures WHERE span_hash = ?1";
const UPSERT_LEDGER_SQL: &str = "
INSERT INTO enrich_failures (
    span_hash, consecutive_failures, last_run_id, last_failure_kind, last_message,
    dead_lettered, dead_lettered_at_ms, updated_at_ms
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (span_hash) DO UPDATE SET
    consecutive_failures = excluded.consecutive_failures,
    last_run_id = excluded.last_run_id,
    last_failure_kind = excluded.last_failure_kind,
    last_message = excluded.last_message,
    dead_lettered = excluded.dead_lettered,
    dead_lettered_at_ms = COALESCE(enrich_failures.dead_lettered_at_ms, excluded.dead_lettered_at_ms),
    updated_at_ms = excluded.updated_at_ms";

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A list column: a JSON array, as LLMC writes it.
fn json_array<T: serde::Serialize>(items: &[T]) -> String {
    // Strings, and structs of strings and numbers, always serialise.
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

/// The `tags` column: comma-joined, `NULL` when empty (as LLMC writes it). A comma inside a tag
/// would split it in two when read back, so it becomes a space.
fn tags_column(tags: &[String]) -> Option<String> {
    let cleaned: Vec<String> = tags
        .iter()
        .map(|t| t.replace(',', " ").trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    (!cleaned.is_empty()).then(|| cleaned.join(","))
}

/// Adds a batch's stored outcomes to its run's counts, in the transaction that stores them.
const COUNT_OUTCOMES_SQL: &str = "UPDATE enrich_runs SET attempted = attempted + ?2, \
     succeeded = succeeded + ?3, failed = failed + ?4 WHERE id = ?1";

/// Per-batch state: the last run id known to exist, to check each run once, whether the
/// failure ledger may hold rows (while it is empty, an enrichment has no ledger row to clear),
/// and the outcomes stored per run.
struct BatchWriter<'a> {
    tx: &'a Transaction<'a>,
    max_failures: u32,
    now_ms: u64,
    known_run: Option<RunId>,
    ledger_in_use: bool,
    stored: Vec<(RunId, RunCounts)>,
}

/// Why writing one outcome stopped the batch.
enum ItemError {
    UnknownRun(RunId),
    Sqlite(&'static str, rusqlite::Error),
}

impl BatchWriter<'_> {
    fn write(&mut self, outcome: &SpanOutcome, report: &mut WriteReport) -> Result<(), ItemError> {
        self.check_run(outcome.run_id)?;
        // The span's lease ends with the transaction that stores its outcome; a deferred span
        // stays the run's.
        if outcome.stored != Stored::Deferred {
            self.tx
                .prepare_cached(RELEASE_LEASE_SQL)
                .and_then(|mut s| s.execute((&outcome.span_hash, outcome.run_id.0)))
                .map_err(|e| ItemError::Sqlite("release the span's lease", e))?;
        }
        crate::batch::settle_request(self.tx, &outcome.span_hash, outcome.run_id, self.now_ms)
            .map_err(|e| ItemError::Sqlite("settle the span's batch request", e))?;
        for attempt in &outcome.attempts {
            self.insert_attempt(outcome, attempt)
                .map_err(|e| ItemError::Sqlite("log an attempt", e))?;
        }
        match &outcome.stored {
            Stored::Enriched(enrichment) | Stored::Refreshed(enrichment) => {
                let stored = self
                    .upsert_enrichment(&outcome.span_hash, enrichment)
                    .map_err(|e| ItemError::Sqlite("store an enrichment", e))?;
                if !stored {
                    report.missing_spans.push(outcome.span_hash.clone());
                    return Ok(());
                }
                self.store_quality(&outcome.span_hash, enrichment.quality.as_ref())
                    .map_err(|e| ItemError::Sqlite("store an enrichment's quality score", e))?;
                crate::provenance::store(self.tx, &outcome.span_hash, enrichment.provenance())
                    .map_err(|e| ItemError::Sqlite("store an enrichment's provenance", e))?;
                if self.ledger_in_use {
                    self.tx
                        .prepare_cached(CLEAR_LEDGER_SQL)
                        .and_then(|mut s| s.execute([&outcome.span_hash]))
                        .map_err(|e| ItemError::Sqlite("clear the failure ledger", e))?;
                }
                report.enriched += 1;
                if matches!(outcome.stored, Stored::Refreshed(_)) {
                    report.refreshed += 1;
                }
                let fell_back = enrichment.is_fallback();
                if fell_back {
                    report.fell_back += 1;
                }
                self.count(outcome.run_id, !fell_back);
            }
            Stored::Failed {
                failure_kind,
                message,
            } => {
                let exists: bool = self
                    .tx
                    .prepare_cached(SPAN_EXISTS_SQL)
                    .and_then(|mut s| s.query_row([&outcome.span_hash], |row| row.get(0)))
                    .map_err(|e| ItemError::Sqlite("look the span up", e))?;
                if !exists {
                    report.missing_spans.push(outcome.span_hash.clone());
                    return Ok(());
                }
                self.ledger_in_use = true;
                let newly_dead = self
                    .bump_ledger(
                        &outcome.span_hash,
                        outcome.run_id,
                        failure_kind.as_str(),
                        message,
                    )
                    .map_err(|e| ItemError::Sqlite("update the failure ledger", e))?;
                if newly_dead {
                    report.dead_lettered.push(outcome.span_hash.clone());
                }
                report.failed += 1;
                self.count(outcome.run_id, false);
            }
            Stored::RefreshFailed { .. } => {
                report.refresh_failed += 1;
                self.count(outcome.run_id, false);
            }
            Stored::Deferred => {}
        }
        Ok(())
    }

    /// Counts one stored outcome of `run`: enriched, or failed (a fallback counts as failed).
    fn count(&mut self, run: RunId, succeeded: bool) {
        let index = match self.stored.iter().position(|(r, _)| *r == run) {
            Some(index) => index,
            None => {
                self.stored.push((run, RunCounts::default()));
                self.stored.len() - 1
            }
        };
        let counts = &mut self.stored[index].1;
        counts.attempted += 1;
        if succeeded {
            counts.succeeded += 1;
        } else {
            counts.failed += 1;
        }
    }

    /// Adds the batch's stored outcomes to their runs' counts.
    fn add_counts(&self) -> rusqlite::Result<()> {
        let mut update = self.tx.prepare_cached(COUNT_OUTCOMES_SQL)?;
        for (run, counts) in &self.stored {
            update.execute(params![
                run.0,
                counts.attempted,
                counts.succeeded,
                counts.failed
            ])?;
        }
        Ok(())
    }

    fn check_run(&mut self, run: RunId) -> Result<(), ItemError> {
        if self.known_run == Some(run) {
            return Ok(());
        }
        let exists: bool = self
            .tx
            .prepare_cached(RUN_EXISTS_SQL)
            .and_then(|mut s| s.query_row([run.0], |row| row.get(0)))
            .map_err(|e| ItemError::Sqlite("look the run up", e))?;
        if !exists {
            return Err(ItemError::UnknownRun(run));
        }
        self.known_run = Some(run);
        Ok(())
    }

    /// Logs one attempt of `outcome`'s span, with the chain the span was routed to.
    fn insert_attempt(&self, outcome: &SpanOutcome, a: &AttemptRecord) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(INSERT_ATTEMPT_SQL)?
            .execute(params![
                outcome.span_hash,
                outcome.run_id.0,
                a.attempt,
                a.backend,
                a.provider,
                a.model,
                a.host,
                a.outcome.as_str(),
                a.failure_kind.map(|kind| kind.as_str()),
                a.message,
                a.started_at_ms,
                a.duration_ms,
                a.prompt_eval_count,
                a.eval_count,
                a.tokens_per_second,
                outcome.chain,
            ])?;
        Ok(())
    }

    /// Stores the enrichment; false when its span does not exist (nothing is written).
    fn upsert_enrichment(&self, span_hash: &str, row: &EnrichmentRow) -> rusqlite::Result<bool> {
        let (e, m) = (&row.enrichment, &row.metrics);
        // An empty summary is stored as NULL, so LLMC's `COALESCE(summary, doc_hint, '')` shows
        // the span's doc hint instead of nothing.
        let summary = (!e.summary.is_empty()).then_some(e.summary.as_str());
        let changed = self
            .tx
            .prepare_cached(UPSERT_ENRICHMENT_SQL)?
            .execute(params![
                span_hash,
                summary,
                tags_column(&row.tags),
                json_array(&e.evidence),
                row.model,
                row.schema_ver,
                json_array(&e.inputs),
                json_array(&e.outputs),
                json_array(&e.side_effects),
                json_array(&e.pitfalls),
                e.usage_snippet,
                row.content_type,
                row.content_language,
                row.content_type_confidence,
                row.content_type_source,
                m.tokens_per_second,
                m.eval_count,
                m.eval_duration_ns,
                m.prompt_eval_count,
                m.total_duration_ns,
                m.backend_host,
            ])?;
        Ok(changed > 0)
    }

    /// Stores the quality gate's verdict on the enrichment just stored, or removes an older
    /// one when the new enrichment has none.
    fn store_quality(&self, span_hash: &str, quality: Option<&QualityRow>) -> rusqlite::Result<()> {
        match quality {
            Some(q) => {
                self.tx
                    .prepare_cached(UPSERT_QUALITY_SQL)?
                    .execute(params![
                        span_hash,
                        q.score,
                        q.level,
                        json_array(&q.failed_checks),
                        json_array(&q.repairs),
                        q.gate_version,
                        now_ms(),
                    ])?;
            }
            None => {
                self.tx
                    .prepare_cached("DELETE FROM enrich_quality WHERE span_hash = ?1")?
                    .execute([span_hash])?;
            }
        }
        Ok(())
    }

    /// Records one failed run; returns whether this failure dead-lettered the span. A second
    /// failure in the same run updates the message but does not count again.
    fn bump_ledger(
        &self,
        span_hash: &str,
        run: RunId,
        failure_kind: &str,
        message: &str,
    ) -> rusqlite::Result<bool> {
        let previous: Option<(u32, Option<i64>, bool)> = self
            .tx
            .prepare_cached(LEDGER_ROW_SQL)?
            .query_row([span_hash], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        let (count, was_dead) = match previous {
            None => (1, false),
            Some((count, last_run, dead)) if last_run == Some(run.0) => (count.max(1), dead),
            Some((count, _, dead)) => (count.saturating_add(1), dead),
        };
        let dead = was_dead || (self.max_failures > 0 && count >= self.max_failures);
        let newly_dead = dead && !was_dead;
        self.tx.prepare_cached(UPSERT_LEDGER_SQL)?.execute(params![
            span_hash,
            count,
            run.0,
            failure_kind,
            message,
            dead,
            newly_dead.then_some(self.now_ms),
            self.now_ms,
        ])?;
        Ok(newly_dead)
    }
}

impl Db {
    /// Stores many outcomes in one `IMMEDIATE` transaction: the single-writer path.
    ///
    /// Per outcome: the run's lease on the span is released; its attempt rows (once, keyed by
    /// span, run and attempt number); then, if
    /// the span still exists, either the enrichment (upserted by span hash; the ledger row is
    /// cleared) or a failed run in the ledger (dead-lettered when the span's consecutive failed
    /// runs reach the threshold). A renewal stores its new enrichment the same way
    /// ([`Stored::Refreshed`], replacing the old row in place); a failed renewal
    /// ([`Stored::RefreshFailed`]) stores its attempts only, keeping the old enrichment and
    /// leaving the ledger alone. An outcome whose span no longer exists is reported in
    /// [`WriteReport::missing_spans`] and does not fail the batch. The outcomes stored are added
    /// to their run's counts in `enrich_runs` in the same transaction, so a run's counts are
    /// always what it committed, even when it was killed or its next batch failed. Any error
    /// rolls the whole batch back. Writing the same outcomes twice leaves the same rows.
    pub fn write_batch(&mut self, outcomes: &[SpanOutcome]) -> Result<WriteReport, DbError> {
        self.ensure_writable("write enrichments")?;
        let max_failures = self.max_failures_per_span;
        let (tx, errors) = self.immediate("lock the database for writing")?;
        let err = |action| errors.on(action);
        let ledger_in_use = tx
            .prepare_cached(LEDGER_NOT_EMPTY_SQL)
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .map_err(err("look at the failure ledger"))?;
        let mut report = WriteReport::default();
        let mut writer = BatchWriter {
            tx: &tx,
            max_failures,
            now_ms: now_ms(),
            known_run: None,
            ledger_in_use,
            stored: Vec::new(),
        };
        for outcome in outcomes {
            writer
                .write(outcome, &mut report)
                .map_err(|item| match item {
                    ItemError::UnknownRun(run) => DbError::UnknownRun {
                        path: errors.path().to_path_buf(),
                        run,
                    },
                    ItemError::Sqlite(action, e) => err(action)(e),
                })?;
        }
        writer
            .add_counts()
            .map_err(err("count the batch's outcomes in the run's row"))?;
        crate::file_descriptions::refresh_after_batch(&tx, outcomes)
            .map_err(err("refresh the descriptions of the batch's files"))?;
        drop(writer);
        tx.commit().map_err(err("commit a batch"))?;
        Ok(report)
    }

    /// Records a failed run for one span outside a batch, and returns its ledger row afterwards
    /// (`None` when the span no longer exists).
    pub fn record_failed_run(
        &mut self,
        span_hash: &str,
        run_id: RunId,
        failure_kind: LedgerKind,
        message: &str,
    ) -> Result<Option<FailureEntry>, DbError> {
        self.write_batch(&[SpanOutcome {
            span_hash: span_hash.to_owned(),
            run_id,
            attempts: Vec::new(),
            chain: None,
            stored: Stored::Failed {
                failure_kind,
                message: message.to_owned(),
            },
        }])?;
        self.failure_entry(span_hash)
    }

    /// Puts one span back in the queue: forgets its ledger row, dead-lettered or not. Returns
    /// the number of rows removed (0 or 1).
    pub fn requeue(&mut self, span_hash: &str) -> Result<usize, DbError> {
        self.ensure_writable("requeue a span")?;
        self.conn
            .execute(CLEAR_LEDGER_SQL, [span_hash])
            .map_err(self.err("requeue a span"))
    }

    /// Puts every dead-lettered span back in the queue. Returns how many.
    pub fn requeue_all_dead_letters(&mut self) -> Result<usize, DbError> {
        self.ensure_writable("requeue dead letters")?;
        self.conn
            .execute("DELETE FROM enrich_failures WHERE dead_lettered = 1", [])
            .map_err(self.err("requeue dead letters"))
    }

    /// Records the start of a run and returns its id. The run has no prompt fingerprint (the
    /// quality report groups it under `unknown`); a run that builds prompts starts with
    /// [`start_run_with_prompt`](Self::start_run_with_prompt).
    pub fn start_run(&mut self, config_fingerprint: &str) -> Result<RunId, DbError> {
        self.start_run_with_prompt(config_fingerprint, None)
    }

    /// Records the start of a run whose prompts share `prompt_fingerprint` (what is the same in
    /// every span's prompt, hashed), and returns its id.
    pub fn start_run_with_prompt(
        &mut self,
        config_fingerprint: &str,
        prompt_fingerprint: Option<&str>,
    ) -> Result<RunId, DbError> {
        self.ensure_writable("start a run")?;
        // The process, so that a later run on this host can tell this one was killed.
        let me = crate::lease::LeaseHolder::current();
        self.conn
            .execute(
                "INSERT INTO enrich_runs (started_at_ms, status, config_fingerprint,
                     holder_host, holder_pid, holder_start, prompt_fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now_ms(),
                    RunStatus::Running.as_str(),
                    config_fingerprint,
                    me.host,
                    me.pid,
                    me.process_start,
                    prompt_fingerprint
                ],
            )
            .map_err(self.err("start a run"))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Records the end of a run: its status and the spans it left alone (`skipped`: nothing of
    /// them is stored), and releases the span leases it still holds. Returns the run's counts:
    /// attempted, succeeded and failed are what its committed batches stored
    /// ([`write_batch`](Self::write_batch) counts them), never what the run meant to store.
    pub fn finish_run(
        &mut self,
        id: RunId,
        skipped: u64,
        status: RunStatus,
    ) -> Result<RunCounts, DbError> {
        self.ensure_writable("finish a run")?;
        let changed = self
            .conn
            .execute(
                "UPDATE enrich_runs SET finished_at_ms = ?2, status = ?3, skipped = ?4
                 WHERE id = ?1",
                params![id.0, now_ms(), status.as_str(), skipped],
            )
            .map_err(self.err("finish a run"))?;
        if changed == 0 {
            return Err(DbError::UnknownRun {
                path: self.path.clone(),
                run: id,
            });
        }
        // Spans the run still held (a page it did not finish, aborted spans) are free again.
        self.conn
            .execute(crate::lease::RELEASE_RUN_SQL, [id.0])
            .map_err(self.err("release the run's span leases"))?;
        let run = self.run(id)?.ok_or_else(|| DbError::UnknownRun {
            path: self.path.clone(),
            run: id,
        })?;
        Ok(run.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{FileRecord, IndexedFile, SpanRecord};

    const HASH: &str = "sha256:aa";

    fn db_with_one_span(dir: &std::path::Path) -> Db {
        let mut db = Db::open_or_create(dir.join("index_v2.db")).expect("create");
        let span = SpanRecord {
            span_hash: HASH.to_owned(),
            symbol: "f".to_owned(),
            kind: "function".to_owned(),
            start_line: 1,
            end_line: 2,
            byte_start: 0,
            byte_end: 10,
            doc_hint: None,
            slice_type: None,
            slice_language: None,
            classifier_confidence: None,
            classifier_version: None,
        };
        let file = IndexedFile {
            path: "a.py".to_owned(),
            lang: "python".to_owned(),
            file_hash: "h".to_owned(),
            size: 10,
            mtime: 0.0,
        };
        db.write_index_batch(
            &[FileRecord {
                file,
                spans: vec![span],
            }],
            &[],
        )
        .expect("index");
        db
    }

    fn outcome(run: RunId, stored: Stored) -> SpanOutcome {
        SpanOutcome {
            span_hash: HASH.to_owned(),
            run_id: run,
            attempts: Vec::new(),
            chain: None,
            stored,
        }
    }

    fn failed() -> Stored {
        Stored::Failed {
            failure_kind: LedgerKind::Attempt(enrich_types::FailureKind::Timeout),
            message: "slow".to_owned(),
        }
    }

    fn enriched() -> Stored {
        Stored::Enriched(Box::new(EnrichmentRow {
            enrichment: enrich_types::Enrichment {
                summary: "done".to_owned(),
                ..Default::default()
            },
            ..EnrichmentRow::default()
        }))
    }

    /// Starting from an empty ledger, the ledger row a batch writes is cleared by a later
    /// success of the same span in that batch, and a later failure counts again.
    #[test]
    fn the_ledger_follows_the_order_of_outcomes_within_one_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = db_with_one_span(dir.path());
        let run = db.start_run("fp").expect("run");
        let report = db
            .write_batch(&[outcome(run, failed()), outcome(run, enriched())])
            .expect("write");
        assert_eq!((report.failed, report.enriched), (1, 1));
        assert_eq!(db.failure_entry(HASH).expect("read"), None);
        assert!(db.enrichment_by_hash(HASH).expect("read").is_some());

        let run = db.start_run("fp").expect("run");
        db.write_batch(&[outcome(run, enriched()), outcome(run, failed())])
            .expect("write");
        let entry = db.failure_entry(HASH).expect("read").expect("a ledger row");
        assert_eq!(entry.consecutive_failures, 1);
    }
}
