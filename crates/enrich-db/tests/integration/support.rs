//! Shared fixtures: an LLMC index built with raw SQL the way LLMC builds it, a repository with
//! source files, and outcome builders.

use std::fs;
use std::path::{Path, PathBuf};

use enrich_db::{
    Db, EnrichmentMetrics, EnrichmentRow, FileRecord, IndexedFile, OpenMode, OpenOptions,
    Provenance, QualityRow, RunId, SpanOutcome, SpanRecord, Stored, default_db_path,
};
use enrich_types::{
    AttemptOutcome, AttemptRecord, ENRICHMENT_SCHEMA_VERSION, Enrichment, Evidence, FailureKind,
    LedgerKind, span_hash,
};
use rusqlite::Connection;
use tempfile::TempDir;

/// LLMC's schema script at version 8, written here independently of the crate: the tables and
/// indexes of LLMC's `database.py`, the `llmc_meta` table, and the FTS5 table LLMC adds on open.
pub(crate) const LLMC_DDL: &str = "
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, lang TEXT NOT NULL,
    file_hash TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, sidecar_path TEXT
);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    symbol TEXT NOT NULL, kind TEXT NOT NULL, start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL, byte_start INTEGER NOT NULL, byte_end INTEGER NOT NULL,
    span_hash TEXT NOT NULL UNIQUE, doc_hint TEXT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP, slice_type TEXT, slice_language TEXT,
    classifier_confidence REAL, classifier_version TEXT, imports TEXT
);
CREATE TABLE IF NOT EXISTS embeddings_meta (
    profile TEXT NOT NULL DEFAULT 'default', model TEXT NOT NULL, dim INTEGER NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (profile, model)
);
CREATE TABLE IF NOT EXISTS embeddings (
    span_hash TEXT PRIMARY KEY, vec BLOB NOT NULL, route_name TEXT, profile_name TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS emb_code (
    span_hash TEXT PRIMARY KEY, vec BLOB NOT NULL, route_name TEXT, profile_name TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS enrichments (
    span_hash TEXT PRIMARY KEY, summary TEXT, tags TEXT, evidence TEXT, model TEXT,
    created_at DATETIME, schema_ver TEXT, inputs TEXT, outputs TEXT, side_effects TEXT,
    pitfalls TEXT, usage_snippet TEXT, content_type TEXT, content_language TEXT,
    content_type_confidence REAL, content_type_source TEXT, tokens_per_second REAL,
    eval_count INTEGER, eval_duration_ns INTEGER, prompt_eval_count INTEGER,
    total_duration_ns INTEGER, backend_host TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_files_path ON files(path);
CREATE INDEX IF NOT EXISTS idx_spans_file_id ON spans(file_id);
CREATE INDEX IF NOT EXISTS idx_spans_span_hash ON spans(span_hash);
CREATE TABLE IF NOT EXISTS file_descriptions (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    file_path TEXT UNIQUE NOT NULL, description TEXT, source TEXT, updated_at DATETIME,
    content_hash TEXT, input_hash TEXT
);
CREATE INDEX IF NOT EXISTS idx_file_descriptions_file_path ON file_descriptions(file_path);
CREATE INDEX IF NOT EXISTS idx_file_descriptions_input_hash ON file_descriptions(input_hash);
CREATE TABLE IF NOT EXISTS llmc_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS enrichments_fts USING fts5(
    symbol, summary, path, start_line, end_line, tokenize='unicode61'
);
PRAGMA user_version = 8;
";

/// A temporary repository with an LLMC index at the default location.
pub(crate) struct Fixture {
    /// Keeps the directory alive.
    pub(crate) _dir: TempDir,
    /// The repository root.
    pub(crate) repo: PathBuf,
    /// `<repo>/.llmc/rag/index_v2.db`.
    pub(crate) db_path: PathBuf,
}

impl Fixture {
    /// A repository whose index was built by "LLMC" (raw SQL) with no spans yet.
    pub(crate) fn llmc() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let db_path = default_db_path(&repo);
        fs::create_dir_all(db_path.parent().expect("parent")).expect("mkdir");
        raw(&db_path).execute_batch(LLMC_DDL).expect("LLMC schema");
        Self {
            _dir: dir,
            repo,
            db_path,
        }
    }

    /// A plain connection, as LLMC (or a test acting as LLMC) has.
    pub(crate) fn raw(&self) -> Connection {
        raw(&self.db_path)
    }

    /// enrich's read-write connection.
    pub(crate) fn db(&self) -> Db {
        Db::open(&self.db_path).expect("open index")
    }

    /// enrich's connection with a dead-letter threshold.
    pub(crate) fn db_with_max_failures(&self, max_failures_per_span: u32) -> Db {
        let options = OpenOptions {
            mode: OpenMode::Existing,
            max_failures_per_span,
            ..OpenOptions::default()
        };
        Db::open_with(&self.db_path, &options).expect("open index")
    }

    /// Writes `source` to `repo/path` and indexes it as LLMC does: one `files` row and one
    /// span per line (symbol `name_<line>`), with LLMC's span hash. Returns the span hashes.
    pub(crate) fn index_file(&self, path: &str, lang: &str, source: &str) -> Vec<String> {
        let full = self.repo.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, source).expect("write source");
        let conn = self.raw();
        conn.execute(
            "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, 'h', ?3, 1700000000.5)",
            (path, lang, source.len()),
        )
        .expect("insert file");
        let file_id = conn.last_insert_rowid();
        let mut hashes = Vec::new();
        let mut offset = 0usize;
        for (i, line) in source.split_inclusive('\n').enumerate() {
            let (start, end) = (offset, offset + line.len());
            offset = end;
            let hash = span_hash(lang, &source.as_bytes()[start..end]);
            conn.execute(
                "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start,
                    byte_end, span_hash, slice_type, slice_language, classifier_confidence)
                 VALUES (?1, ?2, 'function', ?3, ?3, ?4, ?5, ?6, 'code', ?7, 0.9)",
                (
                    file_id,
                    format!("name_{}", i + 1),
                    i + 1,
                    start,
                    end,
                    &hash,
                    lang,
                ),
            )
            .expect("insert span");
            hashes.push(hash);
        }
        hashes
    }

    /// The file's bytes, to compare before and after.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        fs::read(&self.db_path).expect("read db file")
    }
}

/// A file record for the indexer ([`Db::write_index_batch`]): `spans` as (symbol, content) in
/// `lang`, one line each; its content hash changes with its spans.
pub(crate) fn file_record(path: &str, lang: &str, spans: &[(&str, &str)]) -> FileRecord {
    let mut offset = 0u64;
    let file_hash = format!("hash of {spans:?}");
    let spans = spans
        .iter()
        .zip(1u32..)
        .map(|((symbol, content), line)| {
            let start = offset;
            offset += content.len() as u64 + 1;
            SpanRecord {
                span_hash: span_hash(lang, content.as_bytes()),
                symbol: (*symbol).to_owned(),
                kind: "function".to_owned(),
                start_line: line,
                end_line: line,
                byte_start: start,
                byte_end: start + content.len() as u64,
                doc_hint: None,
                slice_type: Some("code".to_owned()),
                slice_language: Some(lang.to_owned()),
                classifier_confidence: Some(1.0),
                classifier_version: Some("test".to_owned()),
            }
        })
        .collect();
    FileRecord {
        file: IndexedFile {
            path: path.to_owned(),
            lang: lang.to_owned(),
            file_hash,
            size: offset,
            mtime: 1_700_000_000.5,
        },
        spans,
    }
}

/// A plain rusqlite connection to `path`.
pub(crate) fn raw(path: &Path) -> Connection {
    Connection::open(path).expect("raw connection")
}

/// A `count` of lines of Python source, one function per line.
pub(crate) fn python_lines(count: usize) -> String {
    (1..=count)
        .map(|i| format!("def f{i}(): return {i}\n"))
        .collect()
}

/// An attempt numbered `n`.
pub(crate) fn attempt(n: u32, outcome: AttemptOutcome) -> AttemptRecord {
    let failed = outcome == AttemptOutcome::Failure;
    AttemptRecord {
        attempt: n,
        backend: format!("backend-{n}"),
        provider: "ollama".to_owned(),
        model: "qwen3:4b".to_owned(),
        host: "http://gpu-box:11434".to_owned(),
        outcome,
        failure_kind: failed.then_some(FailureKind::Timeout),
        message: failed.then(|| "no answer within 60s".to_owned()),
        started_at_ms: 1_700_000_000_000 + u64::from(n),
        duration_ms: 1200,
        prompt_eval_count: (!failed).then_some(321),
        eval_count: (!failed).then_some(88),
        tokens_per_second: (!failed).then_some(73.5),
    }
}

/// A complete enrichment with `summary`.
pub(crate) fn enrichment(summary: &str) -> EnrichmentRow {
    EnrichmentRow {
        enrichment: Enrichment {
            summary: summary.to_owned(),
            inputs: vec!["x: int".to_owned()],
            outputs: vec!["int".to_owned(), "None on error".to_owned()],
            side_effects: Vec::new(),
            pitfalls: vec!["overflows, \"quoted\"".to_owned()],
            usage_snippet: Some("f1()".to_owned()),
            evidence: vec![Evidence {
                field: "summary_120w".to_owned(),
                lines: [1, 1],
            }],
        },
        tags: vec!["math".to_owned(), "pure".to_owned()],
        model: "qwen3:4b".to_owned(),
        schema_ver: ENRICHMENT_SCHEMA_VERSION.to_owned(),
        content_type: None,
        content_language: Some("python".to_owned()),
        content_type_confidence: None,
        content_type_source: None,
        metrics: EnrichmentMetrics {
            tokens_per_second: Some(73.5),
            eval_count: Some(88),
            eval_duration_ns: Some(1_200_000_000),
            prompt_eval_count: Some(321),
            total_duration_ns: Some(1_500_000_000),
            backend_host: Some("gpu-box:11434".to_owned()),
        },
        quality: Some(QualityRow {
            score: 0.9,
            level: "strict".to_owned(),
            failed_checks: vec!["usage_without_symbol".to_owned()],
            repairs: vec!["evidence_range_swapped".to_owned()],
            gate_version: "gate-1".to_owned(),
        }),
        provenance: None,
    }
}

/// How `run`'s backend `backend-2` (model `qwen3:4b` on chain `default`) made an enrichment;
/// tests change the field they are about.
pub(crate) fn provenance(run_id: RunId) -> Provenance {
    Provenance {
        run_id,
        backend: "backend-2".to_owned(),
        provider: "ollama".to_owned(),
        model: "qwen3:4b".to_owned(),
        model_digest: Some("d-1".to_owned()),
        chain: "default".to_owned(),
        prompt_fingerprint: "prompt-1".to_owned(),
        schema_version: ENRICHMENT_SCHEMA_VERSION.to_owned(),
        options_fingerprint: "options-1".to_owned(),
        enrich_version: "0.1.0".to_owned(),
        created_at_ms: 1_700_000_000_000,
        prompt_tokens: Some(321),
        output_tokens: Some(88),
    }
}

/// [`enriched`] with `provenance` stored beside the enrichment.
pub(crate) fn enriched_with(span_hash: &str, provenance: Provenance) -> SpanOutcome {
    let mut outcome = enriched(span_hash, provenance.run_id, "Adds one.");
    if let Stored::Enriched(row) = &mut outcome.stored {
        row.provenance = Some(provenance);
    }
    outcome
}

/// A span enriched on its second attempt after a timeout.
pub(crate) fn enriched(span_hash: &str, run_id: RunId, summary: &str) -> SpanOutcome {
    SpanOutcome {
        span_hash: span_hash.to_owned(),
        run_id,
        chain: None,
        attempts: vec![
            attempt(1, AttemptOutcome::Failure),
            attempt(2, AttemptOutcome::Success),
        ],
        stored: Stored::Enriched(Box::new(enrichment(summary))),
    }
}

/// A span every backend failed on.
pub(crate) fn failed(span_hash: &str, run_id: RunId) -> SpanOutcome {
    SpanOutcome {
        span_hash: span_hash.to_owned(),
        run_id,
        chain: None,
        attempts: vec![attempt(1, AttemptOutcome::Failure)],
        stored: Stored::Failed {
            failure_kind: LedgerKind::Attempt(FailureKind::Timeout),
            message: "no answer within 60s".to_owned(),
        },
    }
}
