//! The enrich index database: LLMC's `index_v2.db`, opened in place, plus enrich's own tables.
//!
//! LLMC (the Python project whose index enrich works on) keeps files, spans and enrichments in
//! `<repo>/.llmc/rag/index_v2.db`, schema version 8 in `PRAGMA user_version`, WAL journal. This
//! crate opens such a file and leaves it readable by LLMC, or creates one with exactly LLMC's
//! version 8 tables. Next to LLMC's tables it keeps its own, `enrich_runs`, `enrich_attempts`
//! (one row per backend attempt), `enrich_failures` (the failure ledger and dead letters), the
//! work order's cache (`enrich_file_weights`, `enrich_span_order`) and the leases of concurrent
//! runs (`enrich_leases`) and the pending frontiers (`enrich_frontiers`, see [`Db::frontier`]), versioned under `enrich_schema_version` in `llmc_meta` by an
//! append-only list of [`migrations`]; LLMC's `user_version` is never touched.
//!
//! What it offers: pending spans in `spans.id` order by keyset pages that only walk indexes
//! ([`Db::pending_spans`]), or in work order (weight, then span id) once
//! [`Db::refresh_work_order`] has weighed the files with a function the caller gives
//! ([`Db::pending_by_weight`]), claimed under a [`Lease`] when several runs share the index
//! ([`Db::claim_pending_spans`]), and an exact pending count; one-transaction batch writes of
//! enrichments with their attempt rows and ledger updates ([`Db::write_batch`]), idempotent by
//! span hash, which also keeps LLMC's `file_descriptions` of the files it enriched (LLMC's cheap
//! tier, `v1.1`); reading spans, their source bytes ([`PendingSpan::read_source`], which refuses paths
//! leaving the repo), enrichments, attempts, dead letters, runs and [`Stats`]; the quality
//! report's figures per model, chain, backend and prompt fingerprint ([`Db::quality_groups`],
//! [`Db::scored_spans`], [`Db::spans_enriched_by_both`]); every enriched span streamed for an
//! export ([`Db::for_each_export_row`]); the rankings of a retrieval evaluation
//! ([`Db::retrieval_corpus`]); full-text search of the stored enrichments, ranked by BM25 ([`Db::search`] with a [`SearchQuery`], answering
//! [`SearchHit`]s) over enrich's FTS5 table `enrich_search`, which every read-write connection
//! keeps in step with what it writes, as it keeps LLMC's `enrichments_fts` when the index has it
//! (TEMP triggers: nothing is stored in the file that LLMC's own writes would run).
//!
//! For an indexer (enrich-index): the indexed files ([`Db::indexed_files`]), batched replacement
//! of files' spans that keeps the row and enrichment of every span whose content did not change
//! and hands a span its owner lets go of to the next file sharing it
//! ([`Db::write_index_batch`]), and removal of enrichments left without a span
//! ([`Db::remove_orphans`]).
//!
//! Upgrades: a read-write open migrates enrich's tables; a reading open
//! ([`OpenMode::ReadUpgrading`]) migrates them too when the file can be written, and otherwise,
//! like [`OpenMode::ReadOnly`], reads the file as it is, with the tables and columns of the
//! current schema that it lacks shadowed for that connection.
//!
//! Safety, decided once here: a file that is not a SQLite database, is damaged, or is not a
//! version 8 LLMC index is reported with its path and never written, truncated or moved (LLMC
//! itself moves a damaged index aside; enrich does not). Every connection sets a busy timeout
//! (30 s by default) so a second process waits for the lock instead of failing, and enables
//! foreign keys. [`Db`] is `Send`, so a writer thread can own it; the crate is synchronous.
//!
//! Deliberately NOT known here: HTTP, providers, tokio, config files, the router and the
//! cascade. Its row types ([`SpanOutcome`], [`EnrichmentRow`], …) carry the domain's data as
//! enrich-types defines it (`Enrichment`, `AttemptRecord`, `LedgerKind`, [`RunId`]), so what
//! the pipeline hands over is stored as it is, with no conversion.

mod age;
mod batch;
mod error;
mod export;
mod file_descriptions;
mod frontier;
mod fts;
mod index;
mod lease;
mod locate;
mod meta;
mod open;
mod path_glob;
mod pending;
mod provenance;
mod quality_report;
mod read;
mod refresh;
mod retrieval;
mod schema;
mod search;
mod source;
mod stale;
mod types;
mod usage;
mod work_order;
mod write;

pub use age::parse_age;
pub use batch::{BatchProgress, BatchRequest, BatchRow, NewBatch, RequestState, SentRequest};
/// The id of a run, as [`Db::start_run`] returns it (enrich-types' definition).
pub use enrich_types::RunId;
pub use error::DbError;
pub use export::{ExportFilter, ExportProvenance, ExportRow};
pub use frontier::{FrontierLane, PENDING_EPOCH_KEY, SPAN_ID_FRONTIER_KEY};
pub use index::{FileRecord, IndexWriteReport, IndexedFile, OrphanCounts, SpanRecord, StoredFile};
pub use lease::{HeldLeases, Lease, LeaseHolder};
pub use locate::SpanAt;
pub use meta::CIRCUITS_META_KEY;
pub use open::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_FAILURES_PER_SPAN, Db, OpenMode, OpenOptions, default_db_path,
};
pub use path_glob::PathGlob;
pub use provenance::{Provenance, SeenDigest};
pub use quality_report::{
    CheckCount, QualityGroup, ReportFilter, ReportKey, ScoredSpan, UNKNOWN_CHAIN,
    UNKNOWN_PROMPT_FINGERPRINT,
};
pub use refresh::{RefreshClause, RefreshFilter, RefreshSelector};
pub use retrieval::{CorpusSpan, Ranking, RetrievalCorpus, plain_words_query};
pub use schema::{
    ENRICH_SCHEMA_VERSION, ENRICH_SCHEMA_VERSION_KEY, LLMC_SCHEMA_VERSION, Migration, migrations,
};
pub use search::{
    DEFAULT_SEARCH_LIMIT, MAX_SEARCH_WORDS, QuerySyntax, SEARCH_WEIGHTS, SearchHit, SearchQuery,
    SearchSync,
};
pub use source::{SourceReader, SpanSource};
pub use stale::{Expectations, ExpectedBackend, SliceRoute, StaleCounts, StaleReason, StaleSpan};
pub use types::{
    AttemptLogEntry, EnrichmentMetrics, EnrichmentRow, FALLBACK_CONTENT_TYPE_SOURCE, FailureEntry,
    GroupCount, PendingSpan, QualityRow, Run, RunCounts, RunStatus, SpanOutcome, Stats, Stored,
    StoredEnrichment, WriteReport,
};
pub use usage::BackendUsage;
pub use work_order::{WORK_ORDER_RULES_KEY, WeightedSpan, WorkOrderKey, WorkOrderRefresh};
