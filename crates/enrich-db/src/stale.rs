//! Stale enrichments: stored enrichments the current configuration would write differently,
//! by reason, counted ([`Db::stale_counts`]) and selected by keyset pages
//! ([`Db::stale_spans`]).
//!
//! What "current" means is the caller's: this crate knows no configuration, router or
//! provider. The caller describes what the configuration would produce in [`Expectations`]:
//! which chain each slice type routes to, each chain's backends with their model, digest and
//! options fingerprint, the prompt fingerprint, the schema version and the quality minimum.
//! An enrichment is judged against the chain its span routes to *now*, and only through its
//! provenance row (a row another program wrote over is unknown, see `provenance.rs`); the rules
//! of each reason are [`StaleReason`]'s.
//!
//! A span may be stale for several reasons. The expectations go into two small `TEMP` tables of
//! the connection for each call (so a read-only connection can ask too), and each query is one
//! pass over `spans` in id order with primary-key lookups into the other tables: a page never
//! reads more than the spans up to its last one.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::open::Db;
use crate::provenance::VALID_JOIN;

/// Why a stored enrichment is stale, judged against the chain its span routes to now:
///
/// | reason | stale when |
/// |---|---|
/// | `prompt` | its prompt fingerprint differs from the current one |
/// | `model` | no backend of the span's chain is configured with its model |
/// | `digest` | its digest is known, and every backend of the span's chain with its model reports another, known digest |
/// | `schema` | its output schema version differs from the one this build writes |
/// | `options` | backends of the span's chain have its model, and none has its options fingerprint |
/// | `quality` | a minimum is set and its quality score is below it (with or without provenance) |
/// | `unknown` | it has no provenance (LLMC wrote it, it predates provenance, an empty fallback): not out of date, but not known to be current; counted apart, selected only when asked |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleReason {
    /// The prompt changed.
    Prompt,
    /// The model is no longer in the span's chain.
    Model,
    /// The model's digest changed (the same name now stands for other weights).
    Digest,
    /// The output schema version changed.
    Schema,
    /// The backend's generation options changed.
    Options,
    /// The quality score is below `[enrichment.quality] min_score`.
    Quality,
    /// No provenance: how it was made is unknown.
    Unknown,
}

impl StaleReason {
    /// Every reason: [`OUTDATED`](Self::OUTDATED), then [`Unknown`](Self::Unknown).
    pub const ALL: [StaleReason; 7] = [
        StaleReason::Prompt,
        StaleReason::Model,
        StaleReason::Digest,
        StaleReason::Schema,
        StaleReason::Options,
        StaleReason::Quality,
        StaleReason::Unknown,
    ];

    /// The reasons that say an enrichment is out of date, in the order they are shown: every
    /// reason but [`Unknown`](Self::Unknown).
    pub const OUTDATED: &'static [StaleReason] = Self::ALL.split_at(6).0;

    /// Its name, as `enrich status` shows it and selectors spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            StaleReason::Prompt => "prompt",
            StaleReason::Model => "model",
            StaleReason::Digest => "digest",
            StaleReason::Schema => "schema",
            StaleReason::Options => "options",
            StaleReason::Quality => "quality",
            StaleReason::Unknown => "unknown",
        }
    }

    /// The reason named `name` (the inverse of [`as_str`](Self::as_str)).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    /// Its column in the stale query: 1 when the row is stale for this reason.
    fn column(self) -> &'static str {
        match self {
            StaleReason::Prompt => "r_prompt",
            StaleReason::Model => "r_model",
            StaleReason::Digest => "r_digest",
            StaleReason::Schema => "r_schema",
            StaleReason::Options => "r_options",
            StaleReason::Quality => "r_quality",
            StaleReason::Unknown => "r_unknown",
        }
    }
}

/// What the current configuration would produce, against which stored enrichments are judged.
/// Built by the caller from its configuration (enrich-pipeline's `expectations`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expectations {
    /// The prompt fingerprint a run would record now.
    pub prompt_fingerprint: String,
    /// The output schema version this build writes.
    pub schema_version: String,
    /// The lowest quality score allowed; `None`: no minimum.
    pub min_quality: Option<f64>,
    /// The chain of a span whose slice type is not in [`routes`](Self::routes).
    pub default_chain: String,
    /// The chain each slice type routes to, by the raw `spans.slice_type` value (`None` for
    /// `NULL`), as the router decides it.
    pub routes: Vec<SliceRoute>,
    /// The enabled backends of every chain.
    pub backends: Vec<ExpectedBackend>,
}

/// The chain spans of one slice type route to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceRoute {
    /// The raw `spans.slice_type` (`None` for `NULL`).
    pub slice_type: Option<String>,
    /// The chain.
    pub chain: String,
}

/// One backend of a chain as the configuration has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedBackend {
    /// The chain it belongs to.
    pub chain: String,
    /// The backend entry's name.
    pub backend: String,
    /// The model it is configured with.
    pub model: String,
    /// Its model's digest now; `None`: unknown (never counts as a change).
    pub digest: Option<String>,
    /// The fingerprint of its generation options.
    pub options_fingerprint: String,
}

/// Stored enrichments by stale reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleCounts {
    /// Enrichments of existing spans, judged.
    pub enriched: u64,
    /// Of those, stale for at least one of the [`StaleReason::OUTDATED`] reasons.
    pub stale: u64,
    /// Stale because the prompt changed.
    pub prompt: u64,
    /// Stale because the model is no longer in the span's chain.
    pub model: u64,
    /// Stale because the model's digest changed.
    pub digest: u64,
    /// Stale because the output schema version changed.
    pub schema: u64,
    /// Stale because the generation options changed.
    pub options: u64,
    /// Stale because the quality score is below the minimum.
    pub quality: u64,
    /// With unknown provenance (not counted in `stale`).
    pub unknown: u64,
}

impl StaleCounts {
    /// The count of one reason.
    pub fn of(&self, reason: StaleReason) -> u64 {
        match reason {
            StaleReason::Prompt => self.prompt,
            StaleReason::Model => self.model,
            StaleReason::Digest => self.digest,
            StaleReason::Schema => self.schema,
            StaleReason::Options => self.options,
            StaleReason::Quality => self.quality,
            StaleReason::Unknown => self.unknown,
        }
    }
}

/// A stale span, as [`Db::stale_spans`] pages them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleSpan {
    /// `spans.id`: the keyset cursor (pass the last one as `after` for the next page).
    pub span_id: i64,
    /// The span's hash.
    pub span_hash: String,
    /// Every reason it is stale for, in [`StaleReason::ALL`] order.
    pub reasons: Vec<StaleReason>,
}

const TEMP_TABLES_SQL: &str = "
CREATE TEMP TABLE IF NOT EXISTS enrich_stale_routes (slice_type, chain TEXT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS enrich_stale_backends (
    chain TEXT NOT NULL, backend TEXT NOT NULL, model TEXT NOT NULL, digest TEXT,
    options_fingerprint TEXT NOT NULL
);
DELETE FROM temp.enrich_stale_routes;
DELETE FROM temp.enrich_stale_backends;
";

/// Where the scalar expectations are in a query's parameters, as SQL text (`?1`, …).
pub(crate) struct StaleParams {
    /// The default chain.
    pub(crate) default_chain: String,
    /// The prompt fingerprint.
    pub(crate) prompt_fingerprint: String,
    /// The schema version.
    pub(crate) schema_version: String,
    /// The quality minimum (or NULL).
    pub(crate) min_quality: String,
}

impl StaleParams {
    /// The parameters at positions `first` to `first + 3`.
    pub(crate) fn from(first: usize) -> Self {
        Self {
            default_chain: format!("?{first}"),
            prompt_fingerprint: format!("?{}", first + 1),
            schema_version: format!("?{}", first + 2),
            min_quality: format!("?{}", first + 3),
        }
    }
}

/// The joins the reason expressions read, after spans `s` and enrichments `e`: the span's route
/// `r`, the enrichment's provenance `p` and its quality `q`.
pub(crate) fn judging_joins() -> String {
    format!(
        "LEFT JOIN temp.enrich_stale_routes AS r ON r.slice_type IS s.slice_type
         LEFT JOIN {VALID_JOIN}
         LEFT JOIN enrich_quality AS q ON q.span_hash = e.span_hash"
    )
}

impl StaleReason {
    /// The SQL expression, true when a row of [`judging_joins`] is stale for this reason (the
    /// one definition of the rules in the table above).
    pub(crate) fn expression(self, at: &StaleParams) -> String {
        // The backends of the span's chain now (its route, else the default chain) configured
        // with the stored model.
        let matching = format!(
            "FROM temp.enrich_stale_backends AS b \
             WHERE b.chain = COALESCE(r.chain, {}) AND b.model = p.model",
            at.default_chain
        );
        match self {
            StaleReason::Unknown => "p.span_hash IS NULL".to_owned(),
            StaleReason::Prompt => format!(
                "p.span_hash IS NOT NULL AND p.prompt_fingerprint IS NOT {}",
                at.prompt_fingerprint
            ),
            StaleReason::Model => {
                format!("p.span_hash IS NOT NULL AND NOT EXISTS (SELECT 1 {matching})")
            }
            StaleReason::Digest => format!(
                "p.model_digest IS NOT NULL AND EXISTS (SELECT 1 {matching})
                AND NOT EXISTS (SELECT 1 {matching}
                                AND (b.digest IS NULL OR b.digest = p.model_digest))"
            ),
            StaleReason::Schema => format!(
                "p.span_hash IS NOT NULL AND p.schema_version IS NOT {}",
                at.schema_version
            ),
            StaleReason::Options => format!(
                "EXISTS (SELECT 1 {matching})
                AND NOT EXISTS (SELECT 1 {matching}
                                AND b.options_fingerprint IS p.options_fingerprint)"
            ),
            StaleReason::Quality => {
                format!("{0} IS NOT NULL AND q.score < {0}", at.min_quality)
            }
        }
    }
}

/// The judged rows: one per enrichment of an existing span, with a 0/1 column per reason.
/// Parameters: ?1 the default chain, ?2 the prompt fingerprint, ?3 the schema version, ?4 the
/// quality minimum (or NULL). `{where}` restricts the spans (the cursor).
fn judged_sql(where_clause: &str) -> String {
    let at = StaleParams::from(1);
    let columns: Vec<String> = StaleReason::ALL
        .iter()
        .map(|reason| format!("{} AS {}", reason.expression(&at), reason.column()))
        .collect();
    format!(
        "SELECT s.id, s.span_hash,
            {}
         FROM spans AS s
         JOIN enrichments AS e ON e.span_hash = s.span_hash
         {}
         {where_clause}",
        columns.join(",\n            "),
        judging_joins()
    )
}

/// Loads `expected` into the connection's `TEMP` tables.
pub(crate) fn load(conn: &Connection, expected: &Expectations) -> rusqlite::Result<()> {
    conn.execute_batch(TEMP_TABLES_SQL)?;
    let mut route = conn.prepare_cached("INSERT INTO temp.enrich_stale_routes VALUES (?1, ?2)")?;
    // One row per slice type (the first route given wins), so the join keeps one row per span.
    let mut seen = std::collections::HashSet::new();
    for r in expected
        .routes
        .iter()
        .filter(|r| seen.insert(&r.slice_type))
    {
        route.execute(params![r.slice_type, r.chain])?;
    }
    let mut backend =
        conn.prepare_cached("INSERT INTO temp.enrich_stale_backends VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for b in &expected.backends {
        backend.execute(params![
            b.chain,
            b.backend,
            b.model,
            b.digest,
            b.options_fingerprint
        ])?;
    }
    Ok(())
}

impl Db {
    /// The distinct raw slice types of the indexed spans (`None` for `NULL`), for the caller to
    /// route into [`Expectations::routes`]. Reads the spans table once.
    pub fn slice_types(&self) -> Result<Vec<Option<String>>, DbError> {
        self.conn
            .prepare_cached("SELECT DISTINCT slice_type FROM spans ORDER BY slice_type")
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
            .map_err(self.err("list the slice types of the spans"))
    }

    /// Counts the enrichments of existing spans by stale reason against `expected`, in one
    /// pass.
    pub fn stale_counts(&self, expected: &Expectations) -> Result<StaleCounts, DbError> {
        let action = "count stale enrichments";
        load(&self.conn, expected).map_err(self.err(action))?;
        let any = StaleReason::OUTDATED
            .iter()
            .map(|reason| reason.column())
            .collect::<Vec<_>>()
            .join(" OR ");
        let sums = StaleReason::ALL
            .map(|reason| format!("COALESCE(SUM({}), 0)", reason.column()))
            .join(", ");
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM({any}), 0), {sums} FROM ({})",
            judged_sql("")
        );
        let counts = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        expected.default_chain,
                        expected.prompt_fingerprint,
                        expected.schema_version,
                        expected.min_quality
                    ],
                    |row| {
                        Ok(StaleCounts {
                            enriched: row.get(0)?,
                            stale: row.get(1)?,
                            prompt: row.get(2)?,
                            model: row.get(3)?,
                            digest: row.get(4)?,
                            schema: row.get(5)?,
                            options: row.get(6)?,
                            quality: row.get(7)?,
                            unknown: row.get(8)?,
                        })
                    },
                )
            })
            .map_err(self.err(action))?;
        Ok(counts)
    }

    /// The next page of spans stale for any of `reasons` against `expected`: at most `limit`
    /// spans with `spans.id > after`, in id order (start with `after = 0`, then pass the last
    /// [`StaleSpan::span_id`]; an empty page is the end). Each span lists every reason it is
    /// stale for, also those not asked for. No reasons select nothing.
    pub fn stale_spans(
        &self,
        expected: &Expectations,
        reasons: &[StaleReason],
        after: i64,
        limit: usize,
    ) -> Result<Vec<StaleSpan>, DbError> {
        if reasons.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let action = "select stale enrichments";
        load(&self.conn, expected).map_err(self.err(action))?;
        let wanted = reasons
            .iter()
            .map(|reason| reason.column())
            .collect::<Vec<_>>()
            .join(" OR ");
        let columns = StaleReason::ALL.map(StaleReason::column).join(", ");
        // The reasons are judged in the inner query; the outer one keeps the wanted rows.
        // SQLite flattens it, so the scan walks `spans` by id and stops at the limit.
        let sql = format!(
            "SELECT id, span_hash, {columns} FROM ({}) WHERE {wanted} ORDER BY id LIMIT ?6",
            judged_sql("WHERE s.id > ?5")
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        expected.default_chain,
                        expected.prompt_fingerprint,
                        expected.schema_version,
                        expected.min_quality,
                        after,
                        limit
                    ],
                    |row| {
                        let mut found = Vec::new();
                        for (i, reason) in StaleReason::ALL.into_iter().enumerate() {
                            if row.get::<_, Option<bool>>(2 + i)?.unwrap_or(false) {
                                found.push(reason);
                            }
                        }
                        Ok(StaleSpan {
                            span_id: row.get(0)?,
                            span_hash: row.get(1)?,
                            reasons: found,
                        })
                    },
                )?
                .collect()
            })
            .map_err(self.err(action))
    }
}
