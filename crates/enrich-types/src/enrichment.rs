//! What is stored for a span: the validated enrichment.v1 content.

use serde::{Deserialize, Serialize};

/// The name of the output schema, stored with every enrichment (`enrichments.schema_ver`), as
/// LLMC does.
pub const ENRICHMENT_SCHEMA_VERSION: &str = "enrichment.v1";

/// An enrichment's content: what a backend's validated enrichment.v1 reply says about a span,
/// and what the `enrichments` row stores of it.
///
/// The output validator (enrich-backends) guarantees, for what it returns, that every string is
/// trimmed, no list holds an empty item, `summary` is non-empty and at most 120 words,
/// `usage_snippet` is `None` or at most 12 lines, and every filled field has at least one
/// evidence entry, all inside the span. A row LLMC wrote may hold anything.
///
/// Adding a field means this type, the enrichment.v1 reading and schema in enrich-backends
/// (`output/`), and the SQL that writes and reads the row in enrich-db.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrichment {
    /// What the code does, at most 120 words (enrichment.v1's `summary_120w`, the row's
    /// `summary`).
    pub summary: String,
    /// Parameters, arguments and data the code reads.
    pub inputs: Vec<String>,
    /// Return values and data the code produces.
    pub outputs: Vec<String>,
    /// I/O, mutation of shared state, network, logging.
    pub side_effects: Vec<String>,
    /// Edge cases, error conditions and misuse to watch for.
    pub pitfalls: Vec<String>,
    /// A short example call.
    pub usage_snippet: Option<String>,
    /// The source lines that support each field.
    pub evidence: Vec<Evidence>,
}

/// The lines of the span that support one field of an [`Enrichment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The enrichment.v1 key this entry supports (`summary_120w`, `inputs`, …).
    pub field: String,
    /// First and last line, inclusive, inside the span.
    pub lines: [u32; 2],
}
