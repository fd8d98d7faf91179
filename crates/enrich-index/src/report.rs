//! What an indexing run reports: progress events while it runs, the [`IndexReport`] at the end.

use serde::Serialize;

/// What an indexing run did; serialises to the JSON of `enrich index --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IndexReport {
    /// File counts.
    pub files: FileCounts,
    /// Span counts.
    pub spans: SpanCounts,
    /// Enrichments and embeddings whose span is gone.
    pub orphans: OrphanReport,
    /// Files that could not be read or walked; the index keeps their previous rows.
    pub problems: Vec<FileProblem>,
    /// Every file left out, with the reason, in path order (files the ignore files and the
    /// hidden-file rule leave out are not walked, so not listed).
    pub skipped: Vec<SkippedFile>,
    /// The spans of the files split by this run in which a secret was found: a run redacts
    /// the secrets from their prompts (or skips the spans, `[enrichment.secrets] action`).
    pub secret_spans: Vec<SecretSpan>,
    /// Wall-clock time of the whole run, in milliseconds.
    pub elapsed_ms: u64,
}

/// How many files went which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    /// Files the walk yielded after the ignore rules, over the size limit included.
    pub seen: u64,
    /// Files whose content hash matched the index: not written (a file without spans of its
    /// own, such as a copy of another file, is split again to be sure, but nothing changes).
    pub unchanged: u64,
    /// Files indexed for the first time.
    pub added: u64,
    /// Indexed files whose content changed: their spans were replaced.
    pub changed: u64,
    /// Files removed from the index: deleted, newly ignored, now binary or too large.
    pub removed: u64,
    /// Files skipped because they look binary (a NUL byte in the first 8000, as git decides).
    pub binary: u64,
    /// Files skipped because they are larger than the size limit.
    pub too_large: u64,
    /// Files skipped because they hold secrets by their nature (keys, certificates, `.env`,
    /// credential stores; see `enrich_secrets::SECRET_FILES`).
    pub secret: u64,
    /// Files skipped by `[enrichment.index] exclude`.
    pub excluded: u64,
    /// Files skipped as generated: dependency lock files, minified bundles.
    pub generated: u64,
    /// Files enrich or LLMC write (config files, the event log, the index database).
    pub own: u64,
}

/// How many spans went which way, in the files that were written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpanCounts {
    /// Spans with new content, inserted.
    pub added: u64,
    /// Spans of changed files whose content did not change: same row, same enrichment.
    pub kept: u64,
    /// Spans whose content another file held: the row and its enrichment now belong to this
    /// file. Code moved between files, or identical code whose owner changed (see `shared`).
    pub moved: u64,
    /// Spans whose content a file with a smaller path holds. Identical content in several files
    /// (copies of a licence, vendored duplicates) has one span hash, which the index keeps
    /// unique: the file whose path sorts first (byte order) owns the span and its enrichment,
    /// and the others share it. Counted in every file that was split, so an unchanged tree with
    /// copies reports the same number each run.
    pub shared: u64,
    /// Spans deleted (changed content, or their file went).
    pub removed: u64,
    /// Spans dropped because their file already had one with the same content (and so the same
    /// hash, which the index keeps unique).
    pub duplicate: u64,
    /// Spans of the files split by this run in which a secret was found (listed in
    /// [`IndexReport::secret_spans`]).
    pub with_secrets: u64,
}

/// Enrichments and embeddings left without a span at the end of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OrphanReport {
    /// Orphaned enrichments deleted.
    pub enrichments_removed: u64,
    /// Orphaned embeddings deleted (`embeddings` and `emb_code`).
    pub embeddings_removed: u64,
    /// Orphaned enrichments left in place ([`IndexOptions::keep_orphans`](crate::IndexOptions)).
    pub enrichments_kept: u64,
    /// Orphaned embeddings left in place.
    pub embeddings_kept: u64,
}

/// A file the run could not handle, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    /// The path relative to the repo root (empty when the walk could not tell).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Why a file was left out of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// Larger than the size limit.
    TooLarge,
    /// Looks binary.
    Binary,
    /// Holds secrets by its nature (see `enrich_secrets::SECRET_FILES`).
    Secret,
    /// Named by `[enrichment.index] exclude`.
    Excluded,
    /// A dependency lock file or a minified bundle.
    Generated,
    /// Written by enrich or LLMC.
    Own,
}

impl SkipReason {
    /// How `enrich index` names the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too large",
            SkipReason::Binary => "binary",
            SkipReason::Secret => "secret",
            SkipReason::Excluded => "excluded",
            SkipReason::Generated => "generated",
            SkipReason::Own => "enrich's own",
        }
    }
}

/// A file left out of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    /// Its path relative to the repo root.
    pub path: String,
    /// Why.
    pub reason: SkipReason,
}

/// A span in which a secret was found. Where, and by which rules: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSpan {
    /// Its file, relative to the repo root.
    pub path: String,
    /// Its first line.
    pub start_line: u32,
    /// Its last line.
    pub end_line: u32,
    /// The ids of the rules that found secrets in it (`aws-access-key`, `private-key`, …).
    pub rules: Vec<&'static str>,
}

/// A progress event, given to the callback of [`index_repo`](crate::index_repo) on the calling
/// thread, in path order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexEvent<'a> {
    /// The walk is done: `files` files will be gone through (those over the size limit
    /// included, as [`FileCounts::seen`] counts them).
    Walked {
        /// How many files the run will go through.
        files: u64,
    },
    /// One file was handled.
    File {
        /// Its path relative to the repo root.
        path: &'a str,
        /// What happened to it.
        outcome: FileOutcome,
        /// How many files are done, this one included.
        done: u64,
        /// How many files the run goes through.
        total: u64,
    },
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileOutcome {
    /// Same content hash as in the index.
    Unchanged,
    /// Split and queued for writing, first time in the index.
    Added,
    /// Split and queued for writing, replacing its spans (a file without spans of its own is
    /// split again even when its content did not change; the summary then counts it as
    /// unchanged).
    Changed,
    /// Looks binary: skipped (and removed from the index if it was there).
    Binary,
    /// Larger than the size limit: skipped (and removed from the index if it was there).
    TooLarge,
    /// Holds enrich's events (an event log at a path of its own): skipped (and removed if it
    /// was there).
    Own,
    /// Deleted since the walk: removed from the index if it was there.
    Vanished,
    /// Could not be read: listed in [`IndexReport::problems`], its rows left as they were.
    Failed,
}
