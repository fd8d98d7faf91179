//! `span-prompts`: each pending span's own part of its prompt, as `enrich run` would send it.
//!
//! The real-model bench (`cargo xtask bench --real-model`) tokenizes each span's part with the
//! model it runs and checks that the server evaluated no more than that part (plus a margin) for
//! every span after the first: the shared part ([`Prompt::system`](enrich_pipeline::Prompt)) is
//! evaluated once. The prompts come from the pipeline's own [`PromptBuilder`] under the
//! repository's `[enrichment.prompt]` settings, so nothing of the prompt is written twice. The
//! secrets guard is not applied: a span holding a secret would be sent redacted (a few bytes
//! shorter) by `enrich run`.

use anyhow::{Context, Result, bail};
use enrich_db::{Db, SourceReader};
use enrich_pipeline::{PromptBuilder, PromptSpan};
use serde_json::{Value, json};

use crate::args::SpanPromptsArgs;

/// `enrich-bench span-prompts`.
pub(crate) fn run(args: &SpanPromptsArgs) -> Result<Value> {
    let db_path = args
        .db
        .clone()
        .unwrap_or_else(|| enrich_db::default_db_path(&args.repo));
    if !db_path.is_file() {
        bail!(
            "{} does not exist: index the repository with `enrich index` first",
            db_path.display()
        );
    }
    let loaded = enrich_config::load(&args.repo, None).with_context(|| {
        format!(
            "could not read the configuration of {}",
            args.repo.display()
        )
    })?;
    let builder = PromptBuilder::new(&loaded.config.prompt)?;
    let sources = SourceReader::new(&args.repo)?;
    let db = Db::open_read_only(&db_path)?;
    let spans = db.pending_spans(0, args.limit)?;
    let mut out = Vec::with_capacity(spans.len());
    for span in &spans {
        let identity = span.identity();
        let source = sources.read_prefix(span, builder.source_limit())?;
        let span_bytes = usize::try_from(source.span_bytes).unwrap_or(usize::MAX);
        let prompt =
            builder.build_from_prefix(&PromptSpan::of(&identity, span), &source.text, span_bytes);
        out.push(json!({
            "span_hash": span.span_hash,
            "text": prompt.text,
            "system_bytes": prompt.system.as_deref().map_or(0, str::len),
        }));
    }
    Ok(json!({
        "command": "span-prompts",
        "fingerprint": builder.fingerprint(),
        "spans": out,
    }))
}
