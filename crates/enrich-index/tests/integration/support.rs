//! Shared fixtures: a repository in a temporary directory with an index beside it, and plain SQL
//! reads of the rows the indexer wrote.

use std::fs;
use std::path::{Path, PathBuf};

use enrich_db::{Db, EnrichmentRow, SpanOutcome, Stored, default_db_path};
use enrich_index::{IndexEvent, IndexOptions, IndexReport, index_paths, index_repo};
use enrich_types::{ENRICHMENT_SCHEMA_VERSION, Enrichment};
use rusqlite::Connection;
use tempfile::TempDir;

/// A repository with an index at LLMC's default place.
pub(crate) struct Repo {
    _dir: TempDir,
    /// The repository root.
    pub(crate) root: PathBuf,
    /// `<root>/.llmc/rag/index_v2.db`.
    pub(crate) db_path: PathBuf,
}

/// One `spans` row joined with its file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanRow {
    pub(crate) id: i64,
    pub(crate) path: String,
    pub(crate) lang: String,
    pub(crate) symbol: String,
    pub(crate) kind: String,
    pub(crate) start_line: u32,
    pub(crate) end_line: u32,
    pub(crate) byte_start: usize,
    pub(crate) byte_end: usize,
    pub(crate) span_hash: String,
    pub(crate) doc_hint: Option<String>,
    pub(crate) slice_type: Option<String>,
    pub(crate) slice_language: Option<String>,
    pub(crate) classifier_confidence: Option<f64>,
}

impl Repo {
    /// An empty repository.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        fs::create_dir_all(&root).expect("mkdir repo");
        let db_path = default_db_path(&root);
        Self {
            _dir: dir,
            root,
            db_path,
        }
    }

    /// A repository holding `files` (path, content).
    pub(crate) fn with(files: &[(&str, &str)]) -> Self {
        let repo = Self::new();
        for (path, content) in files {
            repo.write(path, content);
        }
        repo
    }

    /// Writes `content` to `path` (relative), creating directories.
    pub(crate) fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let full = self.root.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(full, content).expect("write file");
    }

    /// Deletes `path` (relative).
    pub(crate) fn remove(&self, path: &str) {
        fs::remove_file(self.root.join(path)).expect("remove file");
    }

    /// The index, created on first use.
    pub(crate) fn db(&self) -> Db {
        Db::open_or_create(&self.db_path).expect("open index")
    }

    /// Indexes with two threads and otherwise default options.
    pub(crate) fn index(&self) -> IndexReport {
        self.index_with(&options())
    }

    /// Indexes with `options`.
    pub(crate) fn index_with(&self, options: &IndexOptions) -> IndexReport {
        index_repo(&mut self.db(), &self.root, options, |_: &IndexEvent<'_>| {}).expect("index")
    }

    /// Re-indexes `paths` only (relative to the root), with two threads.
    pub(crate) fn index_paths(&self, paths: &[&str]) -> IndexReport {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        index_paths(
            &mut self.db(),
            &self.root,
            &paths,
            &options(),
            |_: &IndexEvent<'_>| {},
        )
        .expect("index paths")
    }

    /// A plain connection, as LLMC has.
    pub(crate) fn raw(&self) -> Connection {
        Connection::open(&self.db_path).expect("raw connection")
    }

    /// Every span in id order, or those of one file.
    pub(crate) fn spans(&self, path: Option<&str>) -> Vec<SpanRow> {
        let conn = self.raw();
        let mut stmt = conn
            .prepare(
                "SELECT s.id, f.path, f.lang, s.symbol, s.kind, s.start_line, s.end_line,
                        s.byte_start, s.byte_end, s.span_hash, s.doc_hint, s.slice_type,
                        s.slice_language, s.classifier_confidence
                 FROM spans s JOIN files f ON f.id = s.file_id
                 WHERE ?1 IS NULL OR f.path = ?1
                 ORDER BY s.id",
            )
            .expect("prepare");
        stmt.query_map([path], |r| {
            Ok(SpanRow {
                id: r.get(0)?,
                path: r.get(1)?,
                lang: r.get(2)?,
                symbol: r.get(3)?,
                kind: r.get(4)?,
                start_line: r.get(5)?,
                end_line: r.get(6)?,
                byte_start: r.get(7)?,
                byte_end: r.get(8)?,
                span_hash: r.get(9)?,
                doc_hint: r.get(10)?,
                slice_type: r.get(11)?,
                slice_language: r.get(12)?,
                classifier_confidence: r.get(13)?,
            })
        })
        .expect("query spans")
        .collect::<rusqlite::Result<_>>()
        .expect("read spans")
    }

    /// The span of `path` named `symbol`.
    pub(crate) fn span(&self, path: &str, symbol: &str) -> SpanRow {
        self.spans(Some(path))
            .into_iter()
            .find(|s| s.symbol == symbol)
            .unwrap_or_else(|| panic!("no span {symbol} in {path}"))
    }

    /// Every indexed path with its language, in path order.
    pub(crate) fn files(&self) -> Vec<(String, String)> {
        let conn = self.raw();
        let mut stmt = conn
            .prepare("SELECT path, lang FROM files ORDER BY path")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query files")
            .collect::<rusqlite::Result<_>>()
            .expect("read files")
    }

    /// Stores an enrichment whose summary names the span, for every given span hash.
    pub(crate) fn enrich(&self, hashes: &[&str]) {
        let mut db = self.db();
        let run = db.start_run("test").expect("start run");
        let outcomes: Vec<SpanOutcome> = hashes
            .iter()
            .map(|hash| SpanOutcome {
                span_hash: (*hash).to_owned(),
                run_id: run,
                chain: None,
                attempts: Vec::new(),
                stored: Stored::Enriched(Box::new(EnrichmentRow {
                    enrichment: Enrichment {
                        summary: summary_of(hash),
                        ..Enrichment::default()
                    },
                    schema_ver: ENRICHMENT_SCHEMA_VERSION.to_owned(),
                    ..EnrichmentRow::default()
                })),
            })
            .collect();
        let report = db.write_batch(&outcomes).expect("write enrichments");
        assert_eq!(report.enriched, hashes.len(), "every span exists");
    }

    /// The summary stored for `hash`, `None` without an enrichment row.
    pub(crate) fn summary(&self, hash: &str) -> Option<String> {
        self.db()
            .enrichment_by_hash(hash)
            .expect("read enrichment")
            .map(|e| e.enrichment.enrichment.summary)
    }

    /// How many rows `table` has.
    pub(crate) fn count(&self, table: &str) -> i64 {
        self.raw()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    /// The repository root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

/// The summary [`Repo::enrich`] stores for `hash`.
pub(crate) fn summary_of(hash: &str) -> String {
    format!("summary of {hash}")
}

/// Default options with two threads.
pub(crate) fn options() -> IndexOptions {
    IndexOptions {
        threads: 2,
        ..IndexOptions::default()
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> u32 {
    let newlines = text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines + 1).expect("line fits")
}
