//! The plain row types this crate reads and writes. The domain's data they carry (enrichments,
//! attempt records, failure kinds, run ids) is enrich-types'.

use enrich_types::{
    AttemptRecord, ENRICHMENT_SCHEMA_VERSION, Enrichment, LedgerKind, RunId, SpanIdentity,
};
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;

/// The `content_type_source` value that marks an enrichment written by the `fallback_to_empty`
/// failure policy: an empty enrichment stored so the span stops being pending. LLMC only passes
/// this column through, so the marker is harmless to it.
pub const FALLBACK_CONTENT_TYPE_SOURCE: &str = "enrich:fallback_to_empty";

/// A span as the pipeline needs it: where its bytes are, and what the router looks at.
///
/// Returned by pending selection and by [`Db::span_by_hash`](crate::Db::span_by_hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSpan {
    /// `spans.id`, the keyset cursor of pending selection.
    pub id: i64,
    /// The span's content hash (`sha256:…`), its identity.
    pub span_hash: String,
    /// The file's path relative to the repo root, as LLMC stored it.
    pub file_path: String,
    /// The file's language (`files.lang`).
    pub lang: String,
    /// The symbol the span defines.
    pub symbol: String,
    /// The kind of span (`function`, `class`, `section`, …).
    pub kind: String,
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, inclusive.
    pub end_line: u32,
    /// First byte in the file.
    pub byte_start: u64,
    /// End byte in the file (exclusive).
    pub byte_end: u64,
    /// LLMC's slice classification (`code`, `docs`, …), if classified.
    pub slice_type: Option<String>,
    /// The classifier's language guess.
    pub slice_language: Option<String>,
    /// The classifier's confidence.
    pub classifier_confidence: Option<f64>,
    /// The file's modification time (Unix seconds) when it was indexed.
    pub file_mtime: f64,
    /// True when the span already has a stored enrichment that this work renews (selected by
    /// a refresh): what the writer stores for it is then a [`Stored::Refreshed`] or a
    /// [`Stored::RefreshFailed`], never a failed run in the ledger.
    #[serde(default)]
    pub renewal: bool,
}

impl PendingSpan {
    /// Which span this row is: its hash, file and lines, as every layer above passes them.
    pub fn identity(&self) -> SpanIdentity {
        SpanIdentity::new(
            self.span_hash.as_str(),
            self.file_path.as_str(),
            self.start_line,
            self.end_line,
        )
    }
}

/// Backend metrics stored with an enrichment (LLMC's performance columns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentMetrics {
    /// Generation speed.
    pub tokens_per_second: Option<f64>,
    /// Tokens generated.
    pub eval_count: Option<u64>,
    /// Time spent generating, in nanoseconds.
    pub eval_duration_ns: Option<u64>,
    /// Prompt tokens evaluated.
    pub prompt_eval_count: Option<u64>,
    /// Whole request time, in nanoseconds.
    pub total_duration_ns: Option<u64>,
    /// The backend host that answered.
    pub backend_host: Option<String>,
}

/// The content of an `enrichments` row: the enrichment and what LLMC stores beside it.
///
/// Column mapping (LLMC's): `summary` ← `enrichment.summary` (`NULL` when empty, so LLMC shows
/// the span's doc hint instead), the four lists and `evidence` as JSON arrays, `tags`
/// comma-joined (`NULL` when empty; a comma inside a tag becomes a space so the column splits
/// back into the same tags), `created_at` stamped by the database in Unix seconds. Reading an
/// LLMC row maps `NULL` text to an empty string and `NULL` lists to empty lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentRow {
    /// The enrichment itself (serialized inline, next to the other columns).
    #[serde(flatten)]
    pub enrichment: Enrichment,
    /// Tags.
    pub tags: Vec<String>,
    /// The model that wrote it.
    pub model: String,
    /// The output schema version, normally [`ENRICHMENT_SCHEMA_VERSION`].
    pub schema_ver: String,
    /// LLMC's content type column.
    pub content_type: Option<String>,
    /// LLMC's content language column.
    pub content_language: Option<String>,
    /// LLMC's content type confidence column.
    pub content_type_confidence: Option<f64>,
    /// Where the content type came from; [`FALLBACK_CONTENT_TYPE_SOURCE`] marks a fallback.
    pub content_type_source: Option<String>,
    /// Backend metrics.
    pub metrics: EnrichmentMetrics,
    /// The quality gate's verdict, kept in enrich's own `enrich_quality` table (never in
    /// LLMC's columns); `None` for an enrichment the gate did not judge (a fallback, one
    /// LLMC wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityRow>,
    /// How it was made, kept in enrich's own `enrich_provenance` table; `None` is unknown (an
    /// enrichment LLMC wrote, one stored before provenance was recorded, a fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// The quality gate's verdict on a stored enrichment: a row of `enrich_quality`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityRow {
    /// From 0 to 1: the weighted share of the gate's checks the enrichment passed.
    pub score: f64,
    /// The gate's level when it was judged (`off`, `basic`, `strict`).
    pub level: String,
    /// The checks it failed without being rejected (above the level), by name.
    pub failed_checks: Vec<String>,
    /// The repairs made to it while validating, by name.
    pub repairs: Vec<String>,
    /// The version of the gate's rules.
    pub gate_version: String,
}

impl EnrichmentRow {
    /// The empty enrichment the `fallback_to_empty` policy stores for a span every backend failed
    /// on: empty fields, marked with [`FALLBACK_CONTENT_TYPE_SOURCE`], so the span is no longer
    /// pending and [`is_fallback`](Self::is_fallback) tells it from a real one.
    pub fn fallback_empty() -> Self {
        Self {
            schema_ver: ENRICHMENT_SCHEMA_VERSION.to_owned(),
            content_type_source: Some(FALLBACK_CONTENT_TYPE_SOURCE.to_owned()),
            ..Self::default()
        }
    }

    /// Whether this enrichment was stored by the `fallback_to_empty` policy.
    pub fn is_fallback(&self) -> bool {
        self.content_type_source.as_deref() == Some(FALLBACK_CONTENT_TYPE_SOURCE)
    }

    /// The provenance the writer stores with it: none for a fallback, which no model wrote.
    pub(crate) fn provenance(&self) -> Option<&Provenance> {
        self.provenance.as_ref().filter(|_| !self.is_fallback())
    }
}

/// An enrichment as read back, with the span it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEnrichment {
    /// The span hash (the row's key).
    pub span_hash: String,
    /// The span's symbol, `None` when the span no longer exists.
    pub symbol: Option<String>,
    /// When it was written, Unix seconds.
    pub created_at: Option<i64>,
    /// The content.
    pub enrichment: EnrichmentRow,
}

/// An attempt as read back from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptLogEntry {
    /// The run it belongs to.
    pub run_id: RunId,
    /// The span it was for.
    pub span_hash: String,
    /// The attempt.
    pub attempt: AttemptRecord,
    /// The chain the span was routed to (`None`: not routed, or logged before chains were).
    #[serde(default)]
    pub chain: Option<String>,
}

/// What the writer stores for a span besides its attempts: how the span ended in one run, as
/// far as the database is concerned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stored {
    /// Store this enrichment (a real one, or [`EnrichmentRow::fallback_empty`]).
    Enriched(Box<EnrichmentRow>),
    /// Every backend failed: record a failed run in the failure ledger.
    Failed {
        /// The last failure's kind.
        failure_kind: LedgerKind,
        /// The last failure's message.
        message: String,
    },
    /// The span is not finished in this run yet (a by-tier run tries its next backend in a
    /// later pass, or its backends were unavailable and the run tries it again when one is
    /// usable): log the attempts only; the ledger is untouched and the run keeps its lease.
    Deferred,
    /// A stored span's new enrichment, which passed validation and the quality gate: it
    /// replaces the old one in the same transaction (stored as [`Stored::Enriched`] is).
    Refreshed(Box<EnrichmentRow>),
    /// A renewal that did not produce an enrichment: log the attempts only. The old enrichment
    /// stays as it is and the ledger is untouched, so a refresh never moves a span toward the
    /// dead letter.
    RefreshFailed {
        /// The last failure's kind.
        failure_kind: LedgerKind,
        /// The last failure's message.
        message: String,
    },
}

/// Everything the writer stores for one span of one run, in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanOutcome {
    /// The span.
    pub span_hash: String,
    /// The run.
    pub run_id: RunId,
    /// Every backend attempt made for the span in this run, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The chain the span was routed to, stored on each of its attempts (`None`: not routed).
    #[serde(default)]
    pub chain: Option<String>,
    /// What is stored besides the attempts.
    pub stored: Stored,
}

/// What a [`Db::write_batch`](crate::Db::write_batch) stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReport {
    /// Enrichments stored (inserted or replaced), fallbacks included.
    pub enriched: usize,
    /// Of those, empty fallbacks ([`EnrichmentRow::is_fallback`]).
    pub fell_back: usize,
    /// Failed runs recorded in the ledger.
    pub failed: usize,
    /// Spans that reached the dead-letter threshold with this batch.
    pub dead_lettered: Vec<String>,
    /// Of the enrichments stored, renewals ([`Stored::Refreshed`]).
    pub refreshed: usize,
    /// Renewals that failed ([`Stored::RefreshFailed`]): their old enrichment stays.
    pub refresh_failed: usize,
    /// Outcomes whose span no longer exists in `spans` (re-indexed away during the run): their
    /// attempts are logged, but no enrichment or ledger row is written.
    pub missing_spans: Vec<String>,
}

/// A row of the failure ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureEntry {
    /// The span.
    pub span_hash: String,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// The run of the last failure.
    pub last_run_id: Option<RunId>,
    /// The last failure's kind.
    pub last_failure_kind: LedgerKind,
    /// The last failure's message.
    pub last_message: String,
    /// Whether the span is dead-lettered (excluded from pending until requeued).
    pub dead_lettered: bool,
    /// When it was dead-lettered, milliseconds since the Unix epoch.
    pub dead_lettered_at_ms: Option<u64>,
    /// When the row last changed, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// The span's file, `None` when the span no longer exists.
    pub file_path: Option<String>,
    /// The span's symbol, `None` when the span no longer exists.
    pub symbol: Option<String>,
}

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not finished (or killed before finishing).
    Running,
    /// Went through every pending span.
    Completed,
    /// Stopped early on request (Ctrl-C, a limit).
    Interrupted,
    /// Stopped by an error.
    Failed,
}

impl RunStatus {
    /// The name stored in the `status` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "interrupted" => Some(Self::Interrupted),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Span counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Spans whose outcome the run stored: `succeeded + failed`.
    pub attempted: u64,
    /// Spans whose enrichment the run stored.
    pub succeeded: u64,
    /// Spans the run stored as failed (a ledger row, or an empty fallback enrichment).
    pub failed: u64,
    /// Spans the run left alone, with nothing stored (cooldown, aborted in flight).
    pub skipped: u64,
}

/// A row of the runs table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The id.
    pub id: RunId,
    /// Start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// End, milliseconds since the Unix epoch; `None` while running.
    pub finished_at_ms: Option<u64>,
    /// The status.
    pub status: RunStatus,
    /// A fingerprint of the configuration the run used.
    pub config_fingerprint: String,
    /// The fingerprint of what every span's prompt of the run shared (`None` for a run
    /// started without one, or before enrich recorded it).
    #[serde(default)]
    pub prompt_fingerprint: Option<String>,
    /// The counts.
    pub counts: RunCounts,
}

/// A count of enrichments sharing one value of a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCount {
    /// The column's value (`None` for `NULL`).
    pub key: Option<String>,
    /// How many enrichments have it.
    pub count: u64,
}

/// An overview of the index and of enrich's work on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Rows in `files`.
    pub files: u64,
    /// Rows in `spans`.
    pub spans: u64,
    /// Spans with an enrichment.
    pub enriched: u64,
    /// Spans with no enrichment that are not dead-lettered.
    pub pending: u64,
    /// Pending spans that failed in earlier runs (in the ledger, not dead-lettered).
    pub failing: u64,
    /// Spans with no enrichment that are dead-lettered.
    pub dead_lettered: u64,
    /// Enrichments of existing spans by `model`, most first.
    pub by_model: Vec<GroupCount>,
    /// Enrichments of existing spans by `backend_host`, most first.
    pub by_backend_host: Vec<GroupCount>,
    /// The most recent run.
    pub last_run: Option<Run>,
}
