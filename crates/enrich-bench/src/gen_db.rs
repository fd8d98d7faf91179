//! `gen-db`: a synthetic repository and its LLMC index, fast.
//!
//! The repository is `--spans` small Rust functions spread over files of `--spans-per-file`
//! (few, large files: a million spans make about 150 MB of source). The index is created by
//! `enrich-db` (so its schema is exactly the one enrich opens) and then filled by bulk inserts:
//! one transaction, prepared statements, the rollback journal instead of WAL and no fsync while
//! loading (the file is switched back to WAL, as LLMC keeps it, at the end).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use enrich_db::Db;
use enrich_types::{file_hash, span_hash};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::args::GenDbArgs;

/// The language of every generated file, as `files.lang` and in the span hash.
const LANG: &str = "rust";
/// The first lines of every generated file, before its first span.
const FILE_HEADER: &str = "//! Synthetic source written by `enrich-bench gen-db`.\n\n";
/// Lines of one generated span (its doc comment, signature, two statements, closing brace).
pub(crate) const SPAN_LINES: u32 = 5;

const INSERT_FILE_SQL: &str =
    "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_SPAN_SQL: &str = "
INSERT INTO spans (
    file_id, symbol, kind, start_line, end_line, byte_start, byte_end, span_hash, doc_hint,
    slice_type, slice_language, classifier_confidence, classifier_version
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'code', 'rust', 1.0, 'enrich-bench')";

/// One span of a generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenSpan {
    /// The span's number across the repository.
    pub(crate) number: u64,
    pub(crate) symbol: String,
    pub(crate) start_line: u32,
    pub(crate) end_line: u32,
    pub(crate) byte_start: usize,
    pub(crate) byte_end: usize,
}

/// The source of file number `file` holding spans `first..first + count` (global numbers), and
/// where each span is in it.
pub(crate) fn file_source(file: u64, first: u64, count: u64) -> (String, Vec<GenSpan>) {
    let mut text = String::with_capacity(usize::try_from(count).unwrap_or(0) * 160 + 64);
    text.push_str(FILE_HEADER);
    let mut line = 3;
    let mut spans = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for n in first..first + count {
        let byte_start = text.len();
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "/// Synthetic span {n} (file {file}).\n\
             pub fn span_{n}(x: u64) -> u64 {{\n    \
             let y = x.wrapping_mul({m}).rotate_left({r});\n    \
             y ^ 0x{n:x}\n\
             }}",
            m = n % 9973 + 3,
            r = n % 61 + 1,
        );
        spans.push(GenSpan {
            number: n,
            symbol: format!("span_{n}"),
            start_line: line,
            end_line: line + SPAN_LINES - 1,
            byte_start,
            byte_end: text.len(),
        });
        text.push_str("\n\n");
        line += SPAN_LINES + 1;
    }
    (text, spans)
}

/// `enrich-bench gen-db`.
pub(crate) fn run(args: &GenDbArgs) -> Result<Value> {
    let (spans, per_file, out) = (args.spans, args.spans_per_file, &args.out);
    let started = Instant::now();
    let report = generate(out, spans, per_file)?;
    Ok(json!({
        "command": "gen-db",
        "repo": out,
        "db": enrich_db::default_db_path(out),
        "files": report.files,
        "spans": spans,
        "source_bytes": report.bytes,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generated {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

/// Writes the repository and its index under `out`, which must not hold an index yet.
pub(crate) fn generate(out: &Path, spans: u64, per_file: u64) -> Result<Generated> {
    let db_path = enrich_db::default_db_path(out);
    if db_path.exists() {
        bail!(
            "{} already exists: gen-db writes a fresh index; remove {} or pick another --out",
            db_path.display(),
            out.display()
        );
    }
    let src = out.join("src");
    fs::create_dir_all(&src).with_context(|| format!("could not create {}", src.display()))?;
    // enrich-db writes LLMC's schema and enrich's tables; then the rows go in in bulk.
    drop(Db::open_or_create(&db_path)?);
    let mut conn = Connection::open(&db_path)
        .with_context(|| format!("could not open {}", db_path.display()))?;
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;",
    )
    .with_context(|| format!("could not set up {} for loading", db_path.display()))?;

    let tx = conn
        .transaction()
        .with_context(|| format!("could not start writing {}", db_path.display()))?;
    let mut generated = Generated { files: 0, bytes: 0 };
    {
        let mut insert_file = tx.prepare(INSERT_FILE_SQL)?;
        let mut insert_span = tx.prepare(INSERT_SPAN_SQL)?;
        let mut first = 0;
        while first < spans {
            let count = per_file.min(spans - first);
            let file = generated.files;
            let rel = format!("src/file_{file:05}.rs");
            let (text, file_spans) = file_source(file, first, count);
            let path = out.join(&rel);
            fs::write(&path, &text)
                .with_context(|| format!("could not write {}", path.display()))?;
            let mtime = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            let file_hash = file_hash(text.as_bytes());
            insert_file
                .execute(params![rel, LANG, file_hash, text.len(), mtime])
                .with_context(|| format!("could not insert the file row of {rel}"))?;
            let file_id = tx.last_insert_rowid();
            for span in &file_spans {
                let bytes = &text.as_bytes()[span.byte_start..span.byte_end];
                insert_span
                    .execute(params![
                        file_id,
                        span.symbol,
                        "function",
                        span.start_line,
                        span.end_line,
                        span.byte_start,
                        span.byte_end,
                        span_hash(LANG, bytes),
                        format!("Synthetic span {}.", span.number),
                    ])
                    .with_context(|| format!("could not insert span {} of {rel}", span.symbol))?;
            }
            generated.files += 1;
            generated.bytes += text.len() as u64;
            first += count;
        }
    }
    tx.commit()
        .with_context(|| format!("could not commit {}", db_path.display()))?;
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .with_context(|| format!("could not switch {} back to WAL", db_path.display()))?;
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_where_the_file_says_and_unique() {
        let (text, spans) = file_source(3, 10, 3);
        assert_eq!(spans.len(), 3);
        let lines: Vec<&str> = text.lines().collect();
        for span in &spans {
            let bytes = &text[span.byte_start..span.byte_end];
            let first = span.start_line as usize - 1;
            let last = span.end_line as usize;
            assert_eq!(bytes, lines[first..last].join("\n"), "{span:?}");
            assert!(bytes.contains(&format!("pub fn {}(", span.symbol)));
        }
        assert_eq!((spans[0].start_line, spans[0].end_line), (3, 7));
        assert_eq!(spans[1].start_line, 9);
        let hashes: std::collections::HashSet<String> = spans
            .iter()
            .map(|s| span_hash(LANG, &text.as_bytes()[s.byte_start..s.byte_end]))
            .collect();
        assert_eq!(hashes.len(), 3);
    }
}
