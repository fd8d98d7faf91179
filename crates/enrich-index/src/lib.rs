//! The enrich indexer: builds and refreshes LLMC's index of a repository (`files` and `spans`
//! in `.llmc/rag/index_v2.db`) so that `enrich` can enrich a repository LLMC never indexed, and
//! so that an index refreshed by enrich and one refreshed by LLMC agree.
//!
//! [`index_repo`] walks the repository with ripgrep's walker (`.gitignore`, `.ignore` and
//! `.ragignore` honoured; `.git/`, `.llmc/`, `.rag/`, hidden files, symbolic links, binary
//! files, files over a size limit, lock files and minified bundles skipped), leaves out the
//! files that hold secrets by their nature (`enrich_secrets::SECRET_FILES`: keys, certificates,
//! `.env`, credential stores; `IndexOptions::include` and `exclude` change the list) and every
//! file enrich or LLMC writes (config files, the event log, the index database), and reports
//! each file it left out with the reason ([`IndexReport::skipped`]). It splits every changed
//! file into spans, scans each span for secrets as a run will (reporting the ones that carry
//! one in [`IndexReport::secret_spans`], and redacting them from stored doc hints):
//!
//! - code, with the tree-sitter grammars of Rust, Python, JavaScript, TypeScript, TSX, Go, Java,
//!   C and C++: functions, methods, classes, structs, enums, unions, traits, impls, interfaces,
//!   records, type declarations and `macro_rules!`; members are their own spans after their
//!   type, named `Type::method` (Rust, C++) or `Type.method` (the others);
//! - Markdown, by heading section, named by heading path (`Install > From source`);
//! - any other text (and code in which no definition is found), in windows of about 60 lines
//!   cut at blank lines.
//!
//! Compatibility with LLMC decides the details. Language names are LLMC's, and a span's hash
//! is LLMC's ([`span_hash`]: `sha256:` + hex(sha256(lang + `"\0"` + bytes))) over the same syntax
//! node LLMC takes, so a definition LLMC also finds gets the same hash and keeps its
//! enrichment whichever tool refreshed the index last. The file hash is LLMC's too
//! ([`file_hash`]), so a file LLMC indexed and that did not change is left as LLMC split it
//! (unless LLMC stored it without spans, as it does for the languages it cannot split). Markdown
//! sections and text windows are enrich's own: LLMC's Markdown chunks carry approximate offsets
//! that cannot be reproduced. Slice types follow LLMC's classifier (`code`, `docs`, `config`,
//! `data`, `other`).
//!
//! Incremental by content: a file whose hash did not change is read but not parsed or written;
//! a changed file keeps the row and enrichment of every span whose bytes did not change (a span
//! that moved keeps them too, even to another file); a file that went is removed with its
//! spans; enrichments left without a span are removed at the end of the run (or kept and
//! counted). Content that several files share (identical files, copied code) is one span, owned
//! by the file whose path sorts first, so which thread read which file first never matters and
//! re-indexing an unchanged tree writes nothing; when that file goes or drops the content, the
//! next path holding it takes the span over in the same run, from what the index recorded of it
//! (`enrich-db` keeps a record of every shared span), without reading it. Files are read and parsed on several threads
//! and written in path order by the calling thread, many per transaction, through `enrich-db`.
//! [`index_paths`] does the same for a given set of paths only (what a file watcher reports),
//! by the same walk restricted to them, so an ignored path stays out of the index whichever way
//! it arrives.
//!
//! Deliberately NOT known here: HTTP, backends, tokio, configuration files, the router and the
//! pipeline. The crate is synchronous; the crates of the workspace it uses are `enrich-db`,
//! which owns every SQL statement, and `enrich-secrets`, which owns the secret-file list and
//! the secret patterns (the CLI passes `[enrichment.index]` in as [`IndexOptions`]).

mod error;
mod indexer;
mod lang;
mod report;
mod scope;
mod split;
mod walk;

/// LLMC's content hashes (enrich-types' definitions), which the indexer writes.
pub use enrich_types::{file_hash, span_hash};
pub use error::IndexError;
pub use indexer::{
    DEFAULT_BATCH_FILES, DEFAULT_MAX_FILE_BYTES, DEFAULT_WINDOW_LINES, IndexOptions, index_paths,
    index_repo,
};
pub use report::{
    FileCounts, FileOutcome, FileProblem, IndexEvent, IndexReport, OrphanReport, SecretSpan,
    SkipReason, SkippedFile, SpanCounts,
};
pub use walk::skipped_files;
