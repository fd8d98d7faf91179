//! `enrich export`: every enriched span as one record, JSON lines or CSV, streamed from the
//! index to a buffered writer (enrich-db's [`Db::for_each_export_row`] hands over one row at a
//! time; nothing is collected), to stdout or atomically into `--out`.
//!
//! The record schema is versioned by [`EXPORT_VERSION`] and documented in
//! docs/user-guide.md ("Export the enrichments"); a change that renames or removes a field, or
//! changes its meaning, bumps it. Fields are only ever added within a version.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use enrich_db::{Db, ExportFilter, ExportRow, SourceReader};
use enrich_types::Evidence;
use serde::Serialize;

use crate::cli::{ExportArgs, ExportFormat};
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;
use crate::time::rfc3339_secs;

/// The version of the record schema, every record's `export_version`.
pub(crate) const EXPORT_VERSION: u32 = 1;

/// The CSV columns, in order: the JSON record's fields with `provenance` flattened, list fields
/// as JSON arrays.
const CSV_COLUMNS: [&str; 35] = [
    "export_version",
    "span_hash",
    "path",
    "start_line",
    "end_line",
    "symbol",
    "kind",
    "language",
    "summary",
    "inputs",
    "outputs",
    "side_effects",
    "pitfalls",
    "usage_snippet",
    "evidence",
    "tags",
    "schema_version",
    "content_type",
    "content_language",
    "model",
    "created_at",
    "created_at_unix",
    "quality_score",
    "backend",
    "provider",
    "model_digest",
    "chain",
    "prompt_fingerprint",
    "output_schema_version",
    "options_fingerprint",
    "enrich_version",
    "run_id",
    "prompt_tokens",
    "output_tokens",
    "source",
];

/// One exported record (JSON lines).
#[derive(Serialize)]
struct Record<'a> {
    export_version: u32,
    span_hash: &'a str,
    path: &'a str,
    start_line: u32,
    end_line: u32,
    symbol: &'a str,
    kind: &'a str,
    language: &'a str,
    summary: &'a str,
    inputs: &'a [String],
    outputs: &'a [String],
    side_effects: &'a [String],
    pitfalls: &'a [String],
    usage_snippet: Option<&'a str>,
    evidence: &'a [Evidence],
    tags: &'a [String],
    schema_version: &'a str,
    content_type: Option<&'a str>,
    content_language: Option<&'a str>,
    provenance: Provenance<'a>,
    /// Present with `--include-source` only: the text, or `null` when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Option<&'a str>>,
}

/// Where the enrichment came from. After the quality score, what enrich recorded when it
/// stored the enrichment (`enrich_provenance`, as `enrich show` prints it), each `null` when
/// unknown: an enrichment LLMC or an older enrich wrote, or one written over since.
#[derive(Serialize)]
struct Provenance<'a> {
    model: Option<String>,
    created_at: Option<String>,
    created_at_unix: Option<i64>,
    quality_score: Option<f64>,
    backend: Option<&'a str>,
    provider: Option<&'a str>,
    model_digest: Option<&'a str>,
    chain: Option<&'a str>,
    prompt_fingerprint: Option<&'a str>,
    /// The output schema the answer was validated against (`enrichment.v1`); the record's
    /// `schema_version` is LLMC's column.
    output_schema_version: Option<&'a str>,
    options_fingerprint: Option<&'a str>,
    enrich_version: Option<&'a str>,
    run_id: Option<i64>,
    prompt_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl<'a> Record<'a> {
    fn of(row: &'a ExportRow, source: Option<Option<&'a str>>) -> Self {
        let stored = &row.stored.enrichment;
        let content = &stored.enrichment;
        let provenance = &row.provenance;
        let made = stored.provenance.as_ref();
        let text = |field: fn(&'a enrich_db::Provenance) -> &'a str| {
            made.map(field).filter(|t| !t.is_empty())
        };
        Self {
            export_version: EXPORT_VERSION,
            span_hash: &row.span.span_hash,
            path: &row.span.file_path,
            start_line: row.span.start_line,
            end_line: row.span.end_line,
            symbol: &row.span.symbol,
            kind: &row.span.kind,
            language: &row.span.lang,
            summary: &content.summary,
            inputs: &content.inputs,
            outputs: &content.outputs,
            side_effects: &content.side_effects,
            pitfalls: &content.pitfalls,
            usage_snippet: content.usage_snippet.as_deref(),
            evidence: &content.evidence,
            tags: &stored.tags,
            schema_version: &stored.schema_ver,
            content_type: stored.content_type.as_deref(),
            content_language: stored.content_language.as_deref(),
            provenance: Provenance {
                model: Some(provenance.model.clone()).filter(|m| !m.is_empty()),
                created_at: provenance.created_at.map(rfc3339_secs),
                created_at_unix: provenance.created_at,
                quality_score: provenance.quality_score,
                backend: text(|p| &p.backend),
                provider: text(|p| &p.provider),
                model_digest: made.and_then(|p| p.model_digest.as_deref()),
                chain: text(|p| &p.chain),
                prompt_fingerprint: text(|p| &p.prompt_fingerprint),
                output_schema_version: text(|p| &p.schema_version),
                options_fingerprint: text(|p| &p.options_fingerprint),
                enrich_version: text(|p| &p.enrich_version),
                run_id: made.map(|p| p.run_id.0),
                prompt_tokens: made.and_then(|p| p.prompt_tokens),
                output_tokens: made.and_then(|p| p.output_tokens),
            },
            source,
        }
    }

    /// The CSV row: [`CSV_COLUMNS`] in order, absent values empty.
    fn csv_fields(&self) -> Result<Vec<String>> {
        let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
        let number = |value: Option<u64>| value.map(|n| n.to_string()).unwrap_or_default();
        let p = &self.provenance;
        Ok(vec![
            self.export_version.to_string(),
            self.span_hash.to_owned(),
            self.path.to_owned(),
            self.start_line.to_string(),
            self.end_line.to_string(),
            self.symbol.to_owned(),
            self.kind.to_owned(),
            self.language.to_owned(),
            self.summary.to_owned(),
            json_text(&self.inputs)?,
            json_text(&self.outputs)?,
            json_text(&self.side_effects)?,
            json_text(&self.pitfalls)?,
            text(self.usage_snippet),
            json_text(&self.evidence)?,
            json_text(&self.tags)?,
            self.schema_version.to_owned(),
            text(self.content_type),
            text(self.content_language),
            text(self.provenance.model.as_deref()),
            text(self.provenance.created_at.as_deref()),
            self.provenance
                .created_at_unix
                .map(|t| t.to_string())
                .unwrap_or_default(),
            // As JSON writes it (`1.0`, not `1`), so both formats read the same.
            match self.provenance.quality_score {
                Some(score) => json_text(&score)?,
                None => String::new(),
            },
            text(p.backend),
            text(p.provider),
            text(p.model_digest),
            text(p.chain),
            text(p.prompt_fingerprint),
            text(p.output_schema_version),
            text(p.options_fingerprint),
            text(p.enrich_version),
            p.run_id.map(|id| id.to_string()).unwrap_or_default(),
            number(p.prompt_tokens),
            number(p.output_tokens),
            text(self.source.flatten()),
        ])
    }
}

/// A list column's JSON text, for a CSV cell.
fn json_text(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).context("cannot write a list as JSON")
}

/// The writer of one export's records.
enum Records<W: Write> {
    Jsonl(W),
    /// Boxed: the CSV writer carries its own state and buffer.
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Records<W> {
    fn new(format: ExportFormat, out: W, include_source: bool) -> Result<Self> {
        Ok(match format {
            ExportFormat::Jsonl => Self::Jsonl(out),
            ExportFormat::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                let columns = if include_source {
                    &CSV_COLUMNS[..]
                } else {
                    &CSV_COLUMNS[..CSV_COLUMNS.len() - 1]
                };
                csv.write_record(columns)
                    .context("cannot write the CSV header")?;
                Self::Csv(Box::new(csv))
            }
        })
    }

    fn write(&mut self, record: &Record<'_>) -> Result<()> {
        match self {
            Self::Jsonl(out) => {
                serde_json::to_writer(&mut *out, record).context("cannot write a record")?;
                out.write_all(b"\n").context("cannot write a record")
            }
            Self::Csv(csv) => {
                let mut fields = record.csv_fields()?;
                if record.source.is_none() {
                    fields.pop();
                }
                csv.write_record(&fields).context("cannot write a record")
            }
        }
    }

    /// Flushes everything and hands the underlying writer back.
    fn finish(self) -> Result<W> {
        let mut out = match self {
            Self::Jsonl(out) => out,
            Self::Csv(csv) => csv
                .into_inner()
                .map_err(|e| e.into_error())
                .context("cannot write the records")?,
        };
        out.flush().context("cannot write the records")?;
        Ok(out)
    }
}

/// What an export wrote.
#[derive(Serialize)]
struct Summary {
    exported: u64,
    out: Option<String>,
    /// Spans whose source could not be read (`--include-source`): their `source` is null.
    unreadable_sources: u64,
}

/// Writes the records `args` selects.
pub(crate) fn export(repo: &Repo, args: &ExportArgs, json: bool) -> Result<Exit> {
    let db = repo.open_read_only()?;
    let sources = if args.include_source {
        Some(
            SourceReader::new(&repo.root)
                .with_context(|| format!("cannot read sources under {}", repo.root.display()))?,
        )
    } else {
        None
    };
    let (exported, unreadable) = match &args.out {
        None => {
            let stdout = BufWriter::new(std::io::stdout().lock());
            let (counts, out) = write_records(&db, args, sources.as_ref(), stdout)?;
            drop(out);
            counts
        }
        Some(path) => write_atomically(path, |file| {
            let (counts, out) = write_records(&db, args, sources.as_ref(), BufWriter::new(file))?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .context("cannot write the records")?;
            Ok(counts)
        })?,
    };
    if unreadable > 0 {
        output::note(&format!(
            "warning: the source of {unreadable} span(s) could not be read (file moved, deleted or changed since it was indexed); their `source` is null. Re-index with `enrich index`.\n"
        ));
    }
    if let Some(path) = &args.out {
        let summary = Summary {
            exported,
            out: Some(path.display().to_string()),
            unreadable_sources: unreadable,
        };
        if json {
            output::json(&summary)?;
        } else {
            output::note(&format!(
                "exported {exported} enriched span(s) to {}\n",
                path.display()
            ));
        }
    }
    Ok(Exit::Success)
}

/// Streams the selected rows into `out` as records; returns (records, unreadable sources) and
/// the writer, flushed.
fn write_records<W: Write>(
    db: &Db,
    args: &ExportArgs,
    sources: Option<&SourceReader>,
    out: W,
) -> Result<((u64, u64), W)> {
    let glob = args.path.as_ref();
    let accepts = |path: &str| glob.is_none_or(|g| g.matches(path));
    let filter = ExportFilter {
        since: args.since,
        path: glob.is_some().then_some(&accepts as &dyn Fn(&str) -> bool),
    };
    let mut records = Records::new(args.format, out, sources.is_some())?;
    let mut unreadable = 0;
    let exported = db.for_each_export_row(&filter, |row| -> Result<()> {
        let text = sources.map(|reader| reader.read(&row.span).ok());
        if matches!(text, Some(None)) {
            unreadable += 1;
        }
        let source = text.as_ref().map(Option::as_deref);
        records.write(&Record::of(&row, source))
    })?;
    Ok(((exported, unreadable), records.finish()?))
}

/// Runs `write` on a temporary file beside `path` and renames it over `path` once `write`
/// succeeded and the data is on disk; on any failure the temporary file is removed and `path`
/// is left as it was. The new file keeps the permissions of the file it replaces (a new file
/// gets `0644` on Unix).
fn write_atomically<T>(path: &Path, write: impl FnOnce(&File) -> Result<T>) -> Result<T> {
    if path.is_dir() {
        return Err(usage(format!(
            "--out {} is a directory; give a file name",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".enrich-export-")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a file in {} for --out; check that the directory exists and is writable",
                dir.display()
            )
        })?;
    let value = write(temp.as_file())?;
    let permissions = match std::fs::metadata(path) {
        Ok(existing) => Some(existing.permissions()),
        Err(_) => default_permissions(),
    };
    if let Some(permissions) = permissions {
        temp.as_file()
            .set_permissions(permissions)
            .with_context(|| format!("cannot set the permissions of {}", temp.path().display()))?;
    }
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {} to disk", temp.path().display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename the finished export to {}", path.display()))?;
    Ok(value)
}

/// The permissions of a new export file: readable by all, as a file a shell creates.
#[cfg(unix)]
fn default_permissions() -> Option<std::fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::Permissions::from_mode(0o644))
}

/// Elsewhere the temporary file's own permissions stay.
#[cfg(not(unix))]
fn default_permissions() -> Option<std::fs::Permissions> {
    None
}
