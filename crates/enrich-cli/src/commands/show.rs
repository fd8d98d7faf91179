//! `enrich show`: one span's enrichment, ledger row and attempt history.

use std::fmt::Write as _;
use std::path::{Component, Path};

use anyhow::{Context, Result};
use enrich_db::{
    AttemptLogEntry, Db, FailureEntry, PendingSpan, Provenance, SpanAt, StoredEnrichment,
};
use enrich_types::AttemptOutcome;
use serde::Serialize;

use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;
use crate::time::{format_ms, format_secs};

/// The `--json` document (and what `enrich mcp`'s `show` tool renders).
#[derive(Serialize)]
pub(crate) struct SpanReport {
    pub(crate) span: PendingSpan,
    /// The file asked for (`PATH:LINE`) when it has the same content as the span's file, which
    /// holds the span for both: the index stores shared content once, at the first path.
    #[serde(skip_serializing_if = "Option::is_none")]
    same_content_as: Option<SameContent>,
    enrichment: Option<StoredEnrichment>,
    failure: Option<FailureEntry>,
    pub(crate) attempts: Vec<AttemptLogEntry>,
}

/// A file asked for that holds no span of its own there, because another file with the same
/// content holds it.
#[derive(Serialize)]
struct SameContent {
    /// The file asked for.
    path: String,
    /// The file that holds the span.
    owner: String,
}

/// Shows the span named by `target`: a span hash, or `PATH:LINE`.
pub(crate) fn show(repo: &Repo, target: &str, json: bool) -> Result<Exit> {
    let db = repo.open_read_only()?;
    let report = report(repo, &db, target)?;
    if json {
        output::json(&report)?;
    } else {
        output::text(&render(&report)?)?;
    }
    Ok(Exit::Success)
}

/// What the index holds of the span named by `target` (a span hash, or `PATH:LINE`); a target
/// that names no span is a usage error saying why.
pub(crate) fn report(repo: &Repo, db: &Db, target: &str) -> Result<SpanReport> {
    let (span, same_content_as) = match db.span_by_hash(target)? {
        Some(span) => (span, None),
        None => {
            let (hash, same_content_as) = find_by_location(repo, db, target)?;
            let span = db.span_by_hash(&hash)?.with_context(|| {
                format!(
                    "span {hash} vanished from the index while it was read; run the command again"
                )
            })?;
            (span, same_content_as)
        }
    };
    Ok(SpanReport {
        same_content_as,
        enrichment: db.enrichment_by_hash(&span.span_hash)?,
        failure: db.failure_entry(&span.span_hash)?,
        attempts: db.attempts_for_span(&span.span_hash)?,
        span,
    })
}

/// The hash of the innermost span of `PATH:LINE` (and, when a file with the same content holds
/// it, which), or a usage error saying what is wrong.
fn find_by_location(repo: &Repo, db: &Db, target: &str) -> Result<(String, Option<SameContent>)> {
    let Some((path, line)) = target
        .rsplit_once(':')
        .and_then(|(path, line)| Some((path, line.parse::<u32>().ok()?)))
        .filter(|(path, _)| !path.is_empty())
    else {
        return Err(usage(format!(
            "no span has the hash {target:?}; give a span hash as `enrich plan`, `enrich failures` or the event log show it, or PATH:LINE (such as src/lib.rs:42)"
        )));
    };
    // A relative path is read from the current directory when that is inside the repository
    // and the index has the file there, else from the repository root.
    let from_cwd = std::env::current_dir()
        .ok()
        .filter(|_| Path::new(path).is_relative())
        .and_then(|cwd| index_path(&repo.root, &cwd.join(path)));
    let Some(relative) = index_path(&repo.root, Path::new(path)) else {
        return Err(usage(format!(
            "{path} is outside the repository {}; pass --repo with the repository that holds it",
            repo.root.display()
        )));
    };
    let look_up = |relative: &str| {
        db.span_at(relative, line)
            .with_context(|| format!("cannot look up {target} in {}", db.path().display()))
    };
    let (relative, found) = match from_cwd.filter(|p| *p != relative) {
        Some(from_cwd) => match look_up(&from_cwd)? {
            SpanAt::NoFile => (relative.clone(), look_up(&relative)?),
            found => (from_cwd, found),
        },
        None => (relative.clone(), look_up(&relative)?),
    };
    match found {
        SpanAt::Found(hash) => Ok((hash, None)),
        SpanAt::SameContent { span_hash, owner } => Ok((
            span_hash,
            Some(SameContent {
                path: relative,
                owner,
            }),
        )),
        SpanAt::NoSpans => Err(usage(format!(
            "{relative} is in the index without any span: it is blank, or LLMC indexed it without splitting its language (`enrich index` splits it)"
        ))),
        SpanAt::NoFile => Err(usage(format!(
            "{relative} is not in the index {}; give the path relative to the repository root ({}), as LLMC indexed it",
            db.path().display(),
            repo.root.display()
        ))),
        SpanAt::NoSpan { first, last } => Err(usage(format!(
            "no span of {relative} contains line {line}; its spans cover lines {first} to {last}"
        ))),
    }
}

/// The path as the index stores it: relative to the repository root, `/`-separated, without
/// `./`. An absolute path inside the repository is made relative; one outside it is `None`.
fn index_path(root: &Path, path: &Path) -> Option<String> {
    let relative = if path.is_absolute() {
        let canonical_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        canonical.strip_prefix(&canonical_root).ok()?.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let parts: Vec<String> = relative
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// `enrich show`'s text.
pub(crate) fn render(report: &SpanReport) -> Result<String> {
    let mut text = String::new();
    let span = &report.span;
    writeln!(text, "span      {}", span.span_hash)?;
    writeln!(
        text,
        "location  {}:{}-{}  {} {}",
        span.file_path, span.start_line, span.end_line, span.kind, span.symbol
    )?;
    if let Some(same) = &report.same_content_as {
        writeln!(
            text,
            "same      {} has the same content as {}, which holds the span for both",
            same.path, same.owner
        )?;
    }
    if let Some(slice) = &span.slice_type {
        writeln!(text, "slice     {slice}")?;
    }
    match (&report.enrichment, &report.failure) {
        (Some(stored), _) => {
            let e = &stored.enrichment;
            let when = stored.created_at.map(format_secs).unwrap_or_default();
            let host = e.metrics.backend_host.as_deref().unwrap_or("unknown host");
            let state = if e.is_fallback() {
                "empty enrichment (on_failure = \"fallback_to_empty\"): every backend failed"
            } else {
                "enriched"
            };
            writeln!(text, "status    {state}")?;
            writeln!(text, "written   {when} by {} at {host}", e.model)?;
            if let Some(q) = &e.quality {
                write!(text, "quality   {:.2} ({} gate)", q.score, q.level)?;
                for (label, names) in [("failed", &q.failed_checks), ("repaired", &q.repairs)] {
                    if !names.is_empty() {
                        write!(text, "; {label} {}", names.join(", "))?;
                    }
                }
                writeln!(text)?;
            }
            if !e.is_fallback() {
                write_provenance(&mut text, e.provenance.as_ref())?;
                write_enrichment(&mut text, stored)?;
            }
        }
        (None, Some(failure)) if failure.dead_lettered => writeln!(
            text,
            "status    dead-lettered after {} failed runs; `enrich failures --requeue {}` retries it",
            failure.consecutive_failures, span.span_hash
        )?,
        (None, Some(failure)) => writeln!(
            text,
            "status    pending, failed {} run(s) in a row so far",
            failure.consecutive_failures
        )?,
        (None, None) => writeln!(text, "status    pending")?,
    }
    if let Some(failure) = &report.failure {
        writeln!(
            text,
            "last failure  {}: {}",
            failure.last_failure_kind, failure.last_message
        )?;
    }
    write_attempts(&mut text, &report.attempts)?;
    Ok(text)
}

/// How the enrichment was made, or that this is unknown.
fn write_provenance(text: &mut String, provenance: Option<&Provenance>) -> std::fmt::Result {
    let Some(p) = provenance else {
        return writeln!(
            text,
            "made      unknown (written by LLMC, or before enrich recorded how)"
        );
    };
    let digest = p.model_digest.as_deref().unwrap_or("unknown");
    writeln!(
        text,
        "made      by backend {} ({}), model {}, digest {digest}, chain {}",
        p.backend, p.provider, p.model, p.chain
    )?;
    let count = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    writeln!(
        text,
        "          run {}, enrich {}, {}; prompt {}, schema {}, options {}; tokens {} in, {} out",
        p.run_id.0,
        p.enrich_version,
        format_ms(p.created_at_ms),
        p.prompt_fingerprint,
        p.schema_version,
        p.options_fingerprint,
        count(p.prompt_tokens),
        count(p.output_tokens)
    )
}

fn write_enrichment(text: &mut String, stored: &StoredEnrichment) -> std::fmt::Result {
    let e = &stored.enrichment;
    writeln!(text, "\nsummary\n  {}", e.enrichment.summary)?;
    for (title, items) in [
        ("inputs", &e.enrichment.inputs),
        ("outputs", &e.enrichment.outputs),
        ("side effects", &e.enrichment.side_effects),
        ("pitfalls", &e.enrichment.pitfalls),
    ] {
        if !items.is_empty() {
            writeln!(text, "{title}")?;
            for item in items {
                writeln!(text, "  - {item}")?;
            }
        }
    }
    if let Some(snippet) = &e.enrichment.usage_snippet {
        writeln!(text, "usage")?;
        for line in snippet.lines() {
            writeln!(text, "  {line}")?;
        }
    }
    if !e.enrichment.evidence.is_empty() {
        writeln!(text, "evidence")?;
        for ev in &e.enrichment.evidence {
            writeln!(
                text,
                "  {}: lines {}-{}",
                ev.field, ev.lines[0], ev.lines[1]
            )?;
        }
    }
    if !e.tags.is_empty() {
        writeln!(text, "tags      {}", e.tags.join(", "))?;
    }
    Ok(())
}

fn write_attempts(text: &mut String, attempts: &[AttemptLogEntry]) -> std::fmt::Result {
    if attempts.is_empty() {
        return writeln!(
            text,
            "\nno attempts logged (LLMC wrote it, or no run reached it yet)"
        );
    }
    writeln!(text, "\nattempts")?;
    for entry in attempts {
        let a = &entry.attempt;
        let outcome = match a.outcome {
            AttemptOutcome::Success => "success".to_owned(),
            AttemptOutcome::Failure => a
                .failure_kind
                .map_or_else(|| "failure".to_owned(), |kind| kind.to_string()),
        };
        let speed = a
            .tokens_per_second
            .map(|t| format!(", {t:.1} tok/s"))
            .unwrap_or_default();
        writeln!(
            text,
            "  run {} #{}  {}  {} ({} {} at {}{})  {}  {} ms{speed}",
            entry.run_id,
            a.attempt,
            format_ms(a.started_at_ms),
            a.backend,
            a.provider,
            a.model,
            a.host,
            chain_of(entry),
            outcome,
            a.duration_ms
        )?;
        write_gate_failures(text, entry)?;
        if let Some(message) = &a.message {
            writeln!(text, "      {message}")?;
        }
    }
    Ok(())
}

/// `, chain NAME` for an attempt whose chain the log recorded.
fn chain_of(entry: &AttemptLogEntry) -> String {
    entry
        .chain
        .as_deref()
        .map(|chain| format!(", chain {chain}"))
        .unwrap_or_default()
}

/// The quality gate's failed checks of an attempt it rejected, on a line of their own.
fn write_gate_failures(text: &mut String, entry: &AttemptLogEntry) -> std::fmt::Result {
    let a = &entry.attempt;
    if a.failure_kind != Some(enrich_types::FailureKind::QualityRejected) {
        return Ok(());
    }
    let checks = enrich_backends::rejected_checks(a.message.as_deref().unwrap_or_default());
    if checks.is_empty() {
        return Ok(());
    }
    writeln!(text, "      gate failed: {}", checks.join(", "))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn locations_are_read_as_the_index_stores_paths() {
        let root = PathBuf::from("/nonexistent-repo");
        let cases = [
            ("src/lib.rs", Some("src/lib.rs")),
            ("./src/lib.rs", Some("src/lib.rs")),
            ("/nonexistent-repo/src/lib.rs", Some("src/lib.rs")),
            ("/elsewhere/x.py", None),
        ];
        for (given, expected) in cases {
            let found = index_path(&root, Path::new(given));
            assert_eq!(found.as_deref(), expected, "{given}");
        }
    }
}
