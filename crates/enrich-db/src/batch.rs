//! Batches handed to batch engines (a Batch API, or a file run offline): the batch, the run
//! whose leases hold its spans, and its requests by `custom_id` (`enrich_batches`,
//! `enrich_batch_requests`, migration 13).
//!
//! A batch's spans are held by leases of its own run, whose holder is no process
//! ([`LeaseHolder::batch`]): they outlive the command that submitted the batch, and only the
//! batch's end ([`Db::close_batch`]) or their expiry frees them. A request is `sent` until its
//! answer is stored, which marks it `ingested` in the writer's transaction
//! ([`settle_request`]), or until it goes back to pending (`returned`). So collecting twice
//! stores nothing twice, and a collect that dies half-way resumes with the requests still
//! `sent`.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::DbError;
use crate::lease::{LeaseHolder, RELEASE_LEASE_SQL};
use crate::open::Db;
use crate::types::{RunCounts, RunStatus};
use crate::write::now_ms;
use enrich_types::RunId;

/// Marks a span's request of its run's batch `ingested` once its outcome is stored.
const SETTLE_REQUEST_SQL: &str = "UPDATE enrich_batch_requests SET state = 'ingested', \
     settled_at_ms = ?3 WHERE run_id = ?1 AND span_hash = ?2 AND state = 'sent'";

const BATCH_COLUMNS_SQL: &str = "SELECT b.id, b.run_id, b.engine, b.chain, b.backend, b.model,
    b.prompt_fingerprint, b.remote_id, b.input_file_id, b.output_file_id, b.error_file_id,
    b.status, b.requests, b.completed, b.failed, b.estimated_cost, b.created_at_ms,
    b.expires_at_ms, b.updated_at_ms, b.collected_at_ms, b.estimated_tokens,
    (SELECT COUNT(*) FROM enrich_batch_requests AS r WHERE r.batch_id = b.id
        AND r.state = 'ingested'),
    (SELECT COUNT(*) FROM enrich_batch_requests AS r WHERE r.batch_id = b.id
        AND r.state = 'returned')
FROM enrich_batches AS b";

/// The state of one request of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for its answer.
    Sent,
    /// Its answer is stored (an enrichment, a failed attempt, a ledger entry).
    Ingested,
    /// Back to pending without an answer (expired, cancelled, the batch failed).
    Returned,
}

impl RequestState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Ingested => "ingested",
            Self::Returned => "returned",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Sent, Self::Ingested, Self::Returned]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A batch about to be recorded ([`Db::record_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    /// The run whose leases hold its spans ([`Db::start_batch_run`]).
    pub run_id: RunId,
    /// `service` (a Batch API) or `file` (exported for an offline engine).
    pub engine: String,
    /// The chain its spans were routed to.
    pub chain: String,
    /// The backend whose requests its lines carry.
    pub backend: String,
    /// That backend's model.
    pub model: String,
    /// The prompt fingerprint of its requests.
    pub prompt_fingerprint: String,
    /// Its state (the service's name of it, or `exported`).
    pub status: String,
    /// Its estimated tokens (prompts and answers).
    pub estimated_tokens: u64,
    /// Its estimated cost at the batch price, when the backend has a price.
    pub estimated_cost: Option<f64>,
    /// When its spans' leases end unless it ends first, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// One request of a batch: its `custom_id` and the span it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// The line's `custom_id`.
    pub custom_id: String,
    /// The span.
    pub span_hash: String,
}

/// A recorded batch ([`Db::batches`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchRow {
    /// enrich's id of the batch.
    pub id: i64,
    /// The run whose leases hold its spans.
    pub run_id: RunId,
    /// `service` or `file`.
    pub engine: String,
    /// The chain its spans were routed to.
    pub chain: String,
    /// The backend whose requests its lines carry.
    pub backend: String,
    /// That backend's model.
    pub model: String,
    /// The prompt fingerprint of its requests.
    pub prompt_fingerprint: String,
    /// The service's id of the batch.
    pub remote_id: Option<String>,
    /// The uploaded input file.
    pub input_file_id: Option<String>,
    /// The output file, once the service has one.
    pub output_file_id: Option<String>,
    /// The error file, once the service has one.
    pub error_file_id: Option<String>,
    /// Its state, as last seen.
    pub status: String,
    /// Requests it holds.
    pub requests: u64,
    /// Requests the service reports answered.
    pub completed: u64,
    /// Requests the service reports failed.
    pub failed: u64,
    /// Requests whose answers are stored.
    pub ingested: u64,
    /// Requests back to pending without an answer.
    pub returned: u64,
    /// Its estimated tokens (prompts and answers), at submit.
    pub estimated_tokens: Option<u64>,
    /// Its estimated cost at submit, at the batch price.
    pub estimated_cost: Option<f64>,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When its leases end unless it ends first.
    pub expires_at_ms: Option<u64>,
    /// When its state was last seen.
    pub updated_at_ms: u64,
    /// When it was collected and closed; `None` while it is open.
    pub collected_at_ms: Option<u64>,
}

/// What the service says of a batch now ([`Db::update_batch`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchProgress {
    /// Its state.
    pub status: String,
    /// The output file, when there is one.
    pub output_file_id: Option<String>,
    /// The error file, when there is one.
    pub error_file_id: Option<String>,
    /// Requests answered.
    pub completed: u64,
    /// Requests failed.
    pub failed: u64,
}

/// A request of an open batch waiting for its answer ([`Db::sent_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// Its batch.
    pub batch_id: i64,
    /// The batch's run.
    pub run_id: RunId,
    /// The span.
    pub span_hash: String,
    /// The chain of the batch.
    pub chain: String,
    /// The backend of the batch.
    pub backend: String,
}

impl LeaseHolder {
    /// The holder of a batch's leases: no process (pid 0) on no host, so no run reclaims them
    /// for a dead process; they end with the batch's run or at their expiry.
    pub fn batch() -> Self {
        Self {
            host: "batch engine".to_owned(),
            pid: 0,
            process_start: 0,
        }
    }
}

/// Marks the request of `span_hash` in the batch of `run` ingested, inside the writer's
/// transaction that stores its outcome (nothing for a run that is no batch's).
pub(crate) fn settle_request(
    tx: &Transaction<'_>,
    span_hash: &str,
    run: RunId,
    now_ms: u64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(SETTLE_REQUEST_SQL)?
        .execute(params![run.0, span_hash, now_ms])?;
    Ok(())
}

fn batch_row(row: &Row<'_>) -> rusqlite::Result<BatchRow> {
    Ok(BatchRow {
        id: row.get(0)?,
        run_id: RunId(row.get(1)?),
        engine: row.get(2)?,
        chain: row.get(3)?,
        backend: row.get(4)?,
        model: row.get(5)?,
        prompt_fingerprint: row.get(6)?,
        remote_id: row.get(7)?,
        input_file_id: row.get(8)?,
        output_file_id: row.get(9)?,
        error_file_id: row.get(10)?,
        status: row.get(11)?,
        requests: row.get(12)?,
        completed: row.get(13)?,
        failed: row.get(14)?,
        estimated_cost: row.get(15)?,
        created_at_ms: row.get(16)?,
        expires_at_ms: row.get(17)?,
        updated_at_ms: row.get(18)?,
        collected_at_ms: row.get(19)?,
        estimated_tokens: row.get(20)?,
        ingested: row.get(21)?,
        returned: row.get(22)?,
    })
}

impl Db {
    /// Records the start of a batch's run: a run like any other (its attempts, counts and
    /// prompt fingerprint), held by no process, so it stays `running` after the command that
    /// started it exits and until [`close_batch`](Self::close_batch) ends it.
    pub fn start_batch_run(
        &mut self,
        config_fingerprint: &str,
        prompt_fingerprint: &str,
    ) -> Result<RunId, DbError> {
        self.ensure_writable("start a batch's run")?;
        self.conn
            .execute(
                "INSERT INTO enrich_runs (started_at_ms, status, config_fingerprint,
                     prompt_fingerprint)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    now_ms(),
                    RunStatus::Running.as_str(),
                    config_fingerprint,
                    prompt_fingerprint
                ],
            )
            .map_err(self.err("start a batch's run"))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Records a batch and its requests in one transaction, and hands the leases run
    /// `claimed_by` took on their spans to the batch's run, to live until the batch's
    /// `expires_at_ms`. Returns the batch's id.
    pub fn record_batch(
        &mut self,
        batch: &NewBatch,
        requests: &[BatchRequest],
        claimed_by: RunId,
    ) -> Result<i64, DbError> {
        self.ensure_writable("record a batch")?;
        let (tx, errors) = self.immediate("lock the database to record a batch")?;
        let err = |action| errors.on(action);
        let now = now_ms();
        tx.execute(
            "INSERT INTO enrich_batches (run_id, engine, chain, backend, model,
                 prompt_fingerprint, status, requests, estimated_cost, created_at_ms,
                 expires_at_ms, updated_at_ms, estimated_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?12)",
            params![
                batch.run_id.0,
                batch.engine,
                batch.chain,
                batch.backend,
                batch.model,
                batch.prompt_fingerprint,
                batch.status,
                requests.len() as u64,
                batch.estimated_cost,
                now,
                batch.expires_at_ms,
                batch.estimated_tokens,
            ],
        )
        .map_err(err("record a batch"))?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO enrich_batch_requests (batch_id, custom_id, span_hash, run_id,
                         state) VALUES (?1, ?2, ?3, ?4, 'sent')",
                )
                .map_err(err("record a batch's requests"))?;
            for request in requests {
                insert
                    .execute(params![
                        id,
                        request.custom_id,
                        request.span_hash,
                        batch.run_id.0
                    ])
                    .map_err(err("record a batch's request"))?;
            }
        }
        tx.execute(
            "UPDATE enrich_leases SET run_id = ?1, expires_at_ms = ?4 WHERE run_id = ?2
                 AND span_hash IN (SELECT span_hash FROM enrich_batch_requests
                                   WHERE batch_id = ?3)",
            params![batch.run_id.0, claimed_by.0, id, batch.expires_at_ms],
        )
        .map_err(err("hand a batch's span leases to its run"))?;
        tx.commit().map_err(err("commit a batch"))?;
        Ok(id)
    }

    /// Records the service's ids of a batch: the batch and its uploaded input file.
    pub fn set_batch_remote(
        &mut self,
        id: i64,
        remote_id: &str,
        input_file_id: &str,
        status: &str,
    ) -> Result<(), DbError> {
        self.ensure_writable("record a batch's ids")?;
        self.conn
            .execute(
                "UPDATE enrich_batches SET remote_id = ?2, input_file_id = ?3, status = ?4,
                     updated_at_ms = ?5 WHERE id = ?1",
                params![id, remote_id, input_file_id, status, now_ms()],
            )
            .map_err(self.err("record a batch's ids"))?;
        Ok(())
    }

    /// Records what the service says of a batch now.
    pub fn update_batch(&mut self, id: i64, progress: &BatchProgress) -> Result<(), DbError> {
        self.ensure_writable("record a batch's state")?;
        self.conn
            .execute(
                "UPDATE enrich_batches SET status = ?2,
                     output_file_id = COALESCE(?3, output_file_id),
                     error_file_id = COALESCE(?4, error_file_id),
                     completed = ?5, failed = ?6, updated_at_ms = ?7 WHERE id = ?1",
                params![
                    id,
                    progress.status,
                    progress.output_file_id,
                    progress.error_file_id,
                    progress.completed,
                    progress.failed,
                    now_ms()
                ],
            )
            .map_err(self.err("record a batch's state"))?;
        Ok(())
    }

    /// The estimated tokens and cost of the batches not collected yet: what day budgets
    /// count for them until their real usage is stored.
    pub fn open_batch_estimates(&self) -> Result<(u64, f64), DbError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(estimated_tokens), 0), COALESCE(SUM(estimated_cost), 0.0)
                 FROM enrich_batches WHERE collected_at_ms IS NULL",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(self.err("read the estimates of open batches"))
    }

    /// Every recorded batch, oldest first.
    pub fn batches(&self) -> Result<Vec<BatchRow>, DbError> {
        self.conn
            .prepare_cached(&format!("{BATCH_COLUMNS_SQL} ORDER BY b.id"))
            .and_then(|mut stmt| stmt.query_map([], batch_row)?.collect())
            .map_err(self.err("read the batches"))
    }

    /// The batch with enrich's id `id`, or with the service's id `id`.
    pub fn find_batch(&self, id: &str) -> Result<Option<BatchRow>, DbError> {
        let local: Option<i64> = id.parse().ok();
        self.conn
            .prepare_cached(&format!(
                "{BATCH_COLUMNS_SQL} WHERE b.id = ?1 OR b.remote_id = ?2 ORDER BY b.id LIMIT 1"
            ))
            .and_then(|mut stmt| stmt.query_row(params![local, id], batch_row).optional())
            .map_err(self.err("read a batch"))
    }

    /// The request `custom_id` still waiting for its answer, in the batch `batch_id` or (with
    /// `None`) in any open batch of the `engine`; `None` when there is none (unknown, or
    /// already ingested or returned).
    pub fn sent_request(
        &self,
        custom_id: &str,
        batch_id: Option<i64>,
        engine: &str,
    ) -> Result<Option<SentRequest>, DbError> {
        self.conn
            .prepare_cached(
                "SELECT r.batch_id, r.run_id, r.span_hash, b.chain, b.backend
                 FROM enrich_batch_requests AS r JOIN enrich_batches AS b ON b.id = r.batch_id
                 WHERE r.custom_id = ?1 AND r.state = 'sent' AND b.engine = ?3
                   AND (?2 IS NULL OR r.batch_id = ?2)
                 ORDER BY r.batch_id DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![custom_id, batch_id, engine], |row| {
                    Ok(SentRequest {
                        batch_id: row.get(0)?,
                        run_id: RunId(row.get(1)?),
                        span_hash: row.get(2)?,
                        chain: row.get(3)?,
                        backend: row.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(self.err("look a batch request up"))
    }

    /// The state of the request `custom_id` of batch `batch_id`.
    pub fn request_state(
        &self,
        batch_id: i64,
        custom_id: &str,
    ) -> Result<Option<RequestState>, DbError> {
        let state: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT state FROM enrich_batch_requests WHERE batch_id = ?1 AND custom_id = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![batch_id, custom_id], |row| row.get(0))
                    .optional()
            })
            .map_err(self.err("read a batch request's state"))?;
        Ok(state.as_deref().and_then(RequestState::parse))
    }

    /// Puts requests of batch `batch_id` still waiting back to pending (`returned`: expired,
    /// cancelled), releasing their spans' leases, in one transaction. Returns how many.
    pub fn return_requests<S: AsRef<str>>(
        &mut self,
        batch_id: i64,
        custom_ids: &[S],
    ) -> Result<usize, DbError> {
        self.ensure_writable("return batch requests to pending")?;
        let (tx, errors) = self.immediate("return batch requests to pending")?;
        let err = errors.on("return batch requests to pending");
        let now = now_ms();
        let mut returned = 0;
        {
            let mut find = tx
                .prepare_cached(
                    "SELECT span_hash, run_id FROM enrich_batch_requests
                     WHERE batch_id = ?1 AND custom_id = ?2 AND state = 'sent'",
                )
                .map_err(err)?;
            let mut mark = tx
                .prepare_cached(
                    "UPDATE enrich_batch_requests SET state = 'returned', settled_at_ms = ?3
                     WHERE batch_id = ?1 AND custom_id = ?2",
                )
                .map_err(err)?;
            let mut release = tx.prepare_cached(RELEASE_LEASE_SQL).map_err(err)?;
            for custom_id in custom_ids {
                let custom_id = custom_id.as_ref();
                let found: Option<(String, i64)> = find
                    .query_row(params![batch_id, custom_id], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
                    .map_err(err)?;
                if let Some((span_hash, run)) = found {
                    mark.execute(params![batch_id, custom_id, now])
                        .map_err(err)?;
                    release.execute(params![span_hash, run]).map_err(err)?;
                    returned += 1;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(returned)
    }

    /// Ends a batch: requests still waiting go back to pending, the batch is marked collected
    /// with its final `status`, and its run ends as `run_status` (which releases the leases it
    /// still holds). Returns the run's counts. Closing a closed batch changes nothing.
    pub fn close_batch(
        &mut self,
        id: i64,
        status: &str,
        run_status: RunStatus,
    ) -> Result<RunCounts, DbError> {
        self.ensure_writable("close a batch")?;
        let run: i64 = self
            .conn
            .query_row(
                "SELECT run_id FROM enrich_batches WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(self.err("read a batch's run"))?;
        let now = now_ms();
        self.conn
            .execute(
                "UPDATE enrich_batch_requests SET state = 'returned', settled_at_ms = ?2
                 WHERE batch_id = ?1 AND state = 'sent'",
                params![id, now],
            )
            .map_err(self.err("return a batch's unanswered requests to pending"))?;
        self.conn
            .execute(
                "UPDATE enrich_batches SET status = ?2, updated_at_ms = ?3,
                     collected_at_ms = COALESCE(collected_at_ms, ?3) WHERE id = ?1",
                params![id, status, now],
            )
            .map_err(self.err("close a batch"))?;
        let finished: bool = self
            .conn
            .query_row(
                "SELECT status != 'running' FROM enrich_runs WHERE id = ?1",
                [run],
                |r| r.get(0),
            )
            .map_err(self.err("read a batch's run"))?;
        if finished {
            return Ok(self.run(RunId(run))?.map(|r| r.counts).unwrap_or_default());
        }
        self.finish_run(RunId(run), 0, run_status)
    }
}
