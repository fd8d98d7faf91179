//! The domain's plain data, defined once and shared by every enrich crate.
//!
//! - [`SpanIdentity`]: which span a piece of work is about (its hash, file and lines), and
//!   [`span_hash`], LLMC's content hash that identifies a span in the index.
//! - [`Enrichment`] and [`Evidence`]: the validated enrichment.v1 content stored for a span,
//!   with [`ENRICHMENT_SCHEMA_VERSION`].
//! - [`AttemptRecord`] and [`AttemptOutcome`]: one call to one backend for one span, as the
//!   cascade records it and the attempt log stores it.
//! - [`FailureKind`] (why an attempt failed) and [`LedgerKind`] (why a span's run failed, as the
//!   failure ledger stores it), both with their stored names, from one table.
//! - [`RunId`]: a run's id in the `runs` table.
//!
//! Every crate may depend on this one, and it depends on no other crate of the workspace, so a
//! type that two layers share lives here instead of being copied and converted field by field.
//!
//! What this crate deliberately does not know: no I/O, no tokio, no SQLite, no HTTP, no
//! configuration. It holds data and the few pure functions that define it (the span hash, the
//! stored names); validating a model's reply, storing a row or deciding a retry belong to the
//! layers above. It depends on serde (and sha2 for the span hash) only.

mod attempt;
mod enrichment;
mod failure;
mod span;

pub use attempt::{AttemptOutcome, AttemptRecord, RunId};
pub use enrichment::{ENRICHMENT_SCHEMA_VERSION, Enrichment, Evidence};
pub use failure::{FailureKind, LedgerKind};
pub use span::{SpanIdentity, file_hash, span_hash};
