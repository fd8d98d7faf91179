//! How each stored enrichment was made: a row of `enrich_provenance` per enrichment enrich
//! wrote, stored by the writer in the transaction that stores the enrichment.
//!
//! A row is only believed while the enrichment it describes is still the one in `enrichments`:
//! it keeps the enrichment's `created_at`, and every reader joins on it, so an enrichment that
//! another program (LLMC's own pipeline) wrote over later reads as "unknown", never as
//! enrich's. No row is "unknown" too: an enrichment LLMC wrote, one stored before provenance
//! was recorded, or an empty fallback (no model wrote it).

use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::open::Db;
use enrich_types::RunId;

/// How one stored enrichment was made: a row of `enrich_provenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The run that wrote it.
    pub run_id: RunId,
    /// The backend entry that answered (its `name`).
    pub backend: String,
    /// The backend's provider (`ollama`, `openai`, …).
    pub provider: String,
    /// The model the backend was configured with (its `model`), which is what a configuration
    /// is compared with; `enrichments.model` keeps the name the server answered with.
    pub model: String,
    /// The model's digest as the server reported it when the run started (enrich-backends'
    /// `BackendAdapter::model_digest`); `None`: unknown.
    pub model_digest: Option<String>,
    /// The chain the span was routed to.
    pub chain: String,
    /// The fingerprint of what every prompt of the run shared (the template or the built-in
    /// prompt's fixed text).
    pub prompt_fingerprint: String,
    /// The output schema's version (`enrichment.v1`).
    pub schema_version: String,
    /// The fingerprint of the backend's generation options (`BackendSpec::options_fingerprint`
    /// in enrich-config).
    pub options_fingerprint: String,
    /// The version of enrich that wrote it.
    pub enrich_version: String,
    /// When the answer was accepted, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Prompt tokens the server evaluated for the answer, if it said.
    pub prompt_tokens: Option<u64>,
    /// Tokens the model generated for the answer, if the server said.
    pub output_tokens: Option<u64>,
}

/// The columns of a provenance row believed for its enrichment, `p` joined to `enrichments e`
/// through [`valid_provenance_join!`]; [`read_row_at`] reads them. A macro, so `concat!` can
/// build a statement with them (`export_select!`).
macro_rules! provenance_columns {
    () => {
        "p.run_id, p.backend, p.provider, p.model, p.model_digest, p.chain, \
         p.prompt_fingerprint, p.schema_version, p.options_fingerprint, p.enrich_version, \
         p.created_at_ms, p.prompt_tokens, p.output_tokens"
    };
}
pub(crate) use provenance_columns;

/// The join that keeps only provenance rows still describing the stored enrichment (`e`): the
/// one definition every reader uses.
macro_rules! valid_provenance_join {
    () => {
        "enrich_provenance AS p ON p.span_hash = e.span_hash \
         AND p.enrichment_created_at IS e.created_at"
    };
}
pub(crate) use valid_provenance_join;

/// [`provenance_columns!`].
const COLUMNS: &str = provenance_columns!();

/// [`valid_provenance_join!`].
pub(crate) const VALID_JOIN: &str = valid_provenance_join!();

/// Stores the row of the enrichment just stored for `span_hash`, keeping that enrichment's
/// `created_at` with it (nothing is written when the enrichment is not there). Replaces an
/// older row; writes nothing for an empty fallback and removes the older row.
const UPSERT_SQL: &str = "
INSERT INTO enrich_provenance (
    span_hash, run_id, backend, provider, model, model_digest, chain, prompt_fingerprint,
    schema_version, options_fingerprint, enrich_version, created_at_ms, prompt_tokens,
    output_tokens, enrichment_created_at
)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, e.created_at
FROM enrichments AS e WHERE e.span_hash = ?1
ON CONFLICT (span_hash) DO UPDATE SET
    run_id = excluded.run_id, backend = excluded.backend, provider = excluded.provider,
    model = excluded.model, model_digest = excluded.model_digest, chain = excluded.chain,
    prompt_fingerprint = excluded.prompt_fingerprint,
    schema_version = excluded.schema_version,
    options_fingerprint = excluded.options_fingerprint,
    enrich_version = excluded.enrich_version, created_at_ms = excluded.created_at_ms,
    prompt_tokens = excluded.prompt_tokens, output_tokens = excluded.output_tokens,
    enrichment_created_at = excluded.enrichment_created_at";

/// The writer's step: stores `provenance` for the enrichment just stored for `span_hash`, in
/// the batch's transaction, or removes the older row when the new enrichment has none.
pub(crate) fn store(
    tx: &Transaction<'_>,
    span_hash: &str,
    provenance: Option<&Provenance>,
) -> rusqlite::Result<()> {
    let Some(p) = provenance else {
        tx.prepare_cached("DELETE FROM enrich_provenance WHERE span_hash = ?1")?
            .execute([span_hash])?;
        return Ok(());
    };
    tx.prepare_cached(UPSERT_SQL)?.execute(params![
        span_hash,
        p.run_id.0,
        p.backend,
        p.provider,
        p.model,
        p.model_digest,
        p.chain,
        p.prompt_fingerprint,
        p.schema_version,
        p.options_fingerprint,
        p.enrich_version,
        p.created_at_ms,
        p.prompt_tokens,
        p.output_tokens,
    ])?;
    Ok(())
}

/// Reads a row selected with [`COLUMNS`] from its first column on.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Provenance> {
    read_row_at(row, 0)
}

/// Reads the [`provenance_columns!`] of `row`, the first at index `first`.
pub(crate) fn read_row_at(row: &Row<'_>, first: usize) -> rusqlite::Result<Provenance> {
    let text = |i: usize| -> rusqlite::Result<String> {
        Ok(row.get::<_, Option<String>>(first + i)?.unwrap_or_default())
    };
    Ok(Provenance {
        run_id: RunId(row.get::<_, Option<i64>>(first)?.unwrap_or_default()),
        backend: text(1)?,
        provider: text(2)?,
        model: text(3)?,
        model_digest: row.get(first + 4)?,
        chain: text(5)?,
        prompt_fingerprint: text(6)?,
        schema_version: text(7)?,
        options_fingerprint: text(8)?,
        enrich_version: text(9)?,
        created_at_ms: row.get::<_, Option<u64>>(first + 10)?.unwrap_or_default(),
        prompt_tokens: row.get(first + 11)?,
        output_tokens: row.get(first + 12)?,
    })
}

/// The newest digest seen of one backend's model: what `enrich status` compares stored digests
/// with when it asks no server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenDigest {
    /// The backend entry's name.
    pub backend: String,
    /// The model it was configured with.
    pub model: String,
    /// The digest its newest stored enrichment recorded.
    pub digest: String,
}

impl Db {
    /// How the stored enrichment of `span_hash` was made; `None` when that is unknown (no
    /// enrichment, one enrich did not write, or one written before provenance was recorded).
    pub fn provenance_of(&self, span_hash: &str) -> Result<Option<Provenance>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM enrichments AS e JOIN {VALID_JOIN} WHERE e.span_hash = ?1"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row([span_hash], read_row).optional())
            .map_err(self.err("read an enrichment's provenance"))
    }

    /// For each backend and model, the digest recorded by its newest stored enrichment that
    /// has one: the latest identity of the weights enrich has seen, without asking a server.
    /// Reads `enrich_provenance` once.
    pub fn latest_digests(&self) -> Result<Vec<SeenDigest>, DbError> {
        // SQLite's bare columns take their values from the row holding the MAX.
        let sql = "SELECT backend, model, model_digest, MAX(created_at_ms) \
                   FROM enrich_provenance WHERE model_digest IS NOT NULL \
                   GROUP BY backend, model ORDER BY backend, model";
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                stmt.query_map([], |row| {
                    Ok(SeenDigest {
                        backend: row.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        model: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        digest: row.get(2)?,
                    })
                })?
                .collect()
            })
            .map_err(self.err("read the latest model digests"))
    }
}
