//! One span's work: route it, read and guard its source, build the prompt, run the cascade,
//! and turn what the backends did into the result the writer stores.

use enrich_backends::{
    CascadeFailure, CascadeSuccess, Disposition, GATE_VERSION, GenerateRequest, GiveUpReason,
    QualityReport, ValidationContext, enrichment_v1_output_tokens, enrichment_v1_schema_for_span,
};
use enrich_config::OnFailure;
use enrich_db::{self as db, PendingSpan, RunId};
use enrich_router::{RouteDecision, SliceView};
use enrich_types::{AttemptRecord, ENRICHMENT_SCHEMA_VERSION, LedgerKind, SpanIdentity};
use tokio::time::Instant;

use crate::events::{Event, now_ms};
use crate::prompt::Prompt;
use crate::result::{SpanResult, SpanStatus};
use crate::secrets::{Guarded, withheld_message};
use crate::shared::Inner;

use super::{Processed, Resume, RunCtx};

pub(super) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The result of a span left alone because its file changed within the cooldown.
pub(super) fn skipped(span: &PendingSpan, age: f64, cooldown_secs: u64) -> SpanResult {
    SpanResult::new(span.identity(), SpanStatus::Skipped, Vec::new()).with_error(format!(
        "its file changed {:.0}s ago, within the cooldown of {cooldown_secs}s; left for a later \
         run",
        age.max(0.0)
    ))
}

pub(super) fn emit_finished(inner: &Inner, run_id: RunId, batch: u64, result: &SpanResult) {
    let stored = result.attempts.iter().rev().find(|a| a.succeeded());
    inner.events.on_event(&Event::SpanFinished {
        at_ms: now_ms(),
        run_id,
        batch,
        span_hash: result.span.span_hash.to_string(),
        path: result.span.path.to_string(),
        status: result.status,
        backend: stored.map(|a| a.backend.clone()),
        model: stored.map(|a| a.model.clone()),
        attempts: u32::try_from(result.attempts.len()).unwrap_or(u32::MAX),
        duration_ms: millis(result.duration),
        message: result.error.clone(),
    });
}

/// Routes, prompts, runs the cascade for, and queues the outcome of one span.
pub(super) async fn process_span(
    run: &RunCtx,
    span: PendingSpan,
    batch: u64,
    resume: Resume,
) -> Processed {
    let started = Instant::now();
    let ctx = &SpanCtx {
        run,
        renewal: span.renewal,
    };
    let inner = &ctx.inner;
    let settings = &inner.settings;
    let identity = span.identity();
    let view = SliceView {
        span: Some(&identity),
        ..Inner::slice_view(&span)
    };
    let route = inner
        .router
        .choose_chain(&view, settings.chain_override.as_deref());
    let source = inner.read_source(&span);
    // Scanned before the prompt is built: a secret is redacted from it, or the span withheld.
    let guarded = source
        .as_ref()
        .ok()
        .map(|read| (inner.secrets.guard(&read.text), read.span_bytes));
    let (prompt, withheld) = match &guarded {
        Some((Guarded::Send { source, redacted }, span_bytes)) => {
            if !redacted.is_empty() {
                tracing::info!(
                    span = %span.span_hash,
                    path = %span.file_path,
                    rules = %redacted.join(","),
                    "secrets redacted from the span's prompt"
                );
            }
            let prompt = inner.prompt(&span, &identity, source, *span_bytes);
            (Some(prompt), None)
        }
        Some((Guarded::Withheld { rules }, _)) => (None, Some(withheld_message(rules))),
        None => (None, None),
    };
    // The source the prompt was built from: what the quality gate grounds names in.
    let sent_source = match &guarded {
        Some((Guarded::Send { source, .. }, _)) => source.as_ref(),
        _ => "",
    };

    let (chain, backends): (String, Vec<String>) = match &route {
        Ok(decision) => (
            decision.chain_name.to_string(),
            decision.backends.iter().map(|b| b.name.clone()).collect(),
        ),
        Err(_) => (String::new(), Vec::new()),
    };
    inner.events.on_event(&Event::SpanStarted {
        at_ms: now_ms(),
        run_id: ctx.run_id,
        batch,
        span_hash: span.span_hash.clone(),
        path: span.file_path.clone(),
        line_start: span.start_line,
        line_end: span.end_line,
        chain: chain.clone(),
        backends,
        estimated_tokens: prompt.as_ref().map(|p| p.estimated_tokens),
    });

    let result = match (&route, &source, prompt) {
        (Err(error), _, _) => {
            failed_before_sending(ctx, identity, LedgerKind::NoRoute, error.to_string()).await
        }
        (Ok(_), Err(error), _) => {
            let kind = LedgerKind::SourceUnreadable;
            failed_before_sending(ctx, identity, kind, error.to_string()).await
        }
        (Ok(decision), Ok(_), Some(prompt)) => {
            let gate = Gate {
                source: sent_source,
                symbol: &span.symbol,
            };
            enrich(ctx, identity, decision, prompt, gate, resume).await
        }
        (Ok(_), Ok(_), None) => match withheld {
            Some(message) => {
                failed_before_sending(ctx, identity, LedgerKind::SecretDetected, message).await
            }
            // A prompt is built whenever the source was read and not withheld.
            None => {
                let message = "no prompt could be built for the span".to_owned();
                let kind = LedgerKind::SourceUnreadable;
                failed_before_sending(ctx, identity, kind, message).await
            }
        },
    };
    let result = SpanResult {
        route: route.ok(),
        duration: started.elapsed(),
        ..result
    };
    emit_finished(inner, ctx.run_id, batch, &result);
    Processed { result, chain }
}

/// Queues what the writer stores for the span of `result`: its attempts with the `chain` it
/// was routed to, and `stored` besides them (nothing for `None`: a cancelled span writes
/// nothing, not even its attempts), and returns the result, noting in its error when the writer
/// has stopped.
async fn finish(
    ctx: &SpanCtx<'_>,
    mut result: SpanResult,
    chain: Option<&str>,
    stored: Option<db::Stored>,
) -> SpanResult {
    let Some(stored) = stored else {
        return result;
    };
    let stored = if ctx.renewal {
        if let (db::Stored::Failed { .. }, Some(error)) = (&stored, &mut result.error) {
            error.push_str("; the stored enrichment is kept");
        }
        renewing(stored)
    } else {
        stored
    };
    let outcome = db::SpanOutcome {
        span_hash: result.span.span_hash.to_string(),
        run_id: ctx.run_id,
        attempts: result.attempts.clone(),
        chain: chain.map(str::to_owned),
        stored,
    };
    if !ctx.writer.send(outcome).await {
        let note = "not stored: the database writer stopped";
        result.error = Some(match result.error {
            Some(e) => format!("{e}; {note}"),
            None => note.to_owned(),
        });
    }
    result
}

/// One span's share of the run: the run's context, and whether the span renews a stored
/// enrichment ([`PendingSpan::renewal`]).
struct SpanCtx<'a> {
    run: &'a RunCtx,
    renewal: bool,
}

impl std::ops::Deref for SpanCtx<'_> {
    type Target = RunCtx;

    fn deref(&self) -> &RunCtx {
        self.run
    }
}

/// What the writer stores for a renewal in place of `stored`: a new enrichment replaces the old
/// one, and a failure keeps it, logging the attempts without touching the ledger.
fn renewing(stored: db::Stored) -> db::Stored {
    match stored {
        db::Stored::Enriched(row) => db::Stored::Refreshed(row),
        db::Stored::Failed {
            failure_kind,
            message,
        } => db::Stored::RefreshFailed {
            failure_kind,
            message,
        },
        other => other,
    }
}

/// A span that failed before (or without) any backend being asked: a failed run of `kind` in
/// the ledger.
async fn failed_before_sending(
    ctx: &SpanCtx<'_>,
    span: SpanIdentity,
    kind: LedgerKind,
    message: String,
) -> SpanResult {
    failed_run(ctx, span, None, kind, message, Vec::new()).await
}

/// A span that failed: its attempts are logged (with the `chain` they were made on) and the
/// ledger records a failed run of `kind`.
async fn failed_run(
    ctx: &SpanCtx<'_>,
    span: SpanIdentity,
    chain: Option<&str>,
    kind: LedgerKind,
    message: String,
    attempts: Vec<AttemptRecord>,
) -> SpanResult {
    let stored = db::Stored::Failed {
        failure_kind: kind,
        message: message.clone(),
    };
    let result = SpanResult::new(span, SpanStatus::Failed, attempts).with_error(message);
    finish(ctx, result, chain, Some(stored)).await
}

/// What the quality gate judges a span's answers by, borrowed from where the prompt was built.
pub(crate) struct Gate<'a> {
    /// The source the prompt showed (after the secrets guard).
    pub(crate) source: &'a str,
    /// The span's symbol; empty when it has none.
    pub(crate) symbol: &'a str,
}

/// What a span's answers are validated against: enrichment.v1 for its lines, the Latin-1
/// rule, and the quality gate at the configured level over the source its prompt showed.
pub(crate) fn validation<'a>(
    settings: &crate::settings::PipelineSettings,
    span: &SpanIdentity,
    gate: &Gate<'a>,
) -> ValidationContext<'a> {
    ValidationContext::for_span(span, settings.enforce_latin1)
        .with_quality(settings.quality)
        .with_source(gate.source, gate.symbol)
}

/// The request sent for a span: its prompt (the shared part as the system prompt), the
/// enrichment.v1 schema for its lines, and an output budget that fits the schema's longest
/// answer, so no valid answer is cut.
pub(crate) fn span_request(prompt: Prompt, span: SpanIdentity) -> GenerateRequest {
    let schema = enrichment_v1_schema_for_span(&span);
    let mut request = GenerateRequest::new(prompt.text, span)
        .with_schema(schema)
        .with_max_output_tokens(enrichment_v1_output_tokens());
    if let Some(system) = prompt.system {
        request = request.with_system(system);
    }
    request
}

/// Runs the cascade for a span and stores what it decided.
async fn enrich(
    ctx: &SpanCtx<'_>,
    span: SpanIdentity,
    decision: &RouteDecision,
    prompt: Prompt,
    gate: Gate<'_>,
    resume: Resume,
) -> SpanResult {
    let settings = &ctx.inner.settings;
    let Some(adapters) = ctx.inner.chains.get(&*decision.chain_name) else {
        let message = format!("no adapters were built for chain '{}'", decision.chain_name);
        return failed_before_sending(ctx, span, LedgerKind::NoRoute, message).await;
    };
    // Per span: the whole chain. By tier: only the pass's backend of the chain.
    let backends = match resume.tier {
        None => &adapters[..],
        Some(tier) if tier < adapters.len() => &adapters[..=tier],
        Some(tier) => {
            let message = format!(
                "chain '{}' has no backend {} for this pass",
                decision.chain_name,
                tier + 1
            );
            return failed_before_sending(ctx, span, LedgerKind::NoRoute, message).await;
        }
    };
    let validation = validation(settings, &span, &gate);
    let request = span_request(prompt, span);
    let has_next_tier = resume.tier.is_some_and(|tier| tier + 1 < adapters.len());
    let outcome = ctx
        .cascade
        .run_resumed(
            resume.prior,
            backends,
            resume.start,
            &request,
            &validation,
            &ctx.abort,
        )
        .await;
    let span = request.span;
    let chain = Some(&*decision.chain_name);
    match outcome {
        Ok(success) => {
            let mut row = enrichment_row(&success);
            let metrics = &success.generation.metrics;
            row.provenance = backends.get(success.backend_index).map(|adapter| {
                ctx.provenance.of(
                    adapter.spec(),
                    &decision.chain_name,
                    metrics.prompt_eval_count,
                    metrics.eval_count,
                )
            });
            let stored = db::Stored::Enriched(Box::new(row));
            let result = SpanResult {
                enrichment: Some(success.enrichment),
                ..SpanResult::new(span, SpanStatus::Enriched, success.attempts)
            };
            finish(ctx, result, chain, Some(stored)).await
        }
        Err(failure) => gave_up(ctx, span, chain, failure, has_next_tier).await,
    }
}

/// What becomes of a span the cascade gave up on (on `chain`), by whose failure it was.
async fn gave_up(
    ctx: &SpanCtx<'_>,
    span: SpanIdentity,
    chain: Option<&str>,
    failure: CascadeFailure,
    has_next_tier: bool,
) -> SpanResult {
    match failure.disposition() {
        // By tier, a span whose backend failed or was unavailable waits for the next pass (its
        // next backend), unless it used up its attempts or the policy stopped it. Its attempts
        // are logged, the ledger is untouched.
        Disposition::Unavailable | Disposition::Failed
            if has_next_tier && failure.reason == GiveUpReason::Exhausted =>
        {
            let message = format!("{failure}; the next pass tries the chain's next backend");
            let result =
                SpanResult::new(span, SpanStatus::Deferred, failure.attempts).with_error(message);
            finish(ctx, result, chain, Some(db::Stored::Deferred)).await
        }
        Disposition::Cancelled => {
            let message = failure.to_string();
            SpanResult::new(span, SpanStatus::Cancelled, failure.attempts).with_error(message)
        }
        // An outage is not the span's failure: its attempts are logged, the ledger is
        // untouched, and the run keeps it until a backend it missed is usable.
        Disposition::Unavailable => {
            let message =
                format!("{failure}; the span waits for a backend and is not counted as failed");
            let result = SpanResult {
                unavailable: failure.unavailable,
                ..SpanResult::new(span, SpanStatus::Unavailable, failure.attempts)
                    .with_error(message)
            };
            finish(ctx, result, chain, Some(db::Stored::Deferred)).await
        }
        Disposition::Failed => match ctx.inner.settings.on_failure {
            // The span's own answers failed on every backend the cascade reached.
            // A renewal keeps its stored enrichment rather than an empty one.
            OnFailure::FallbackToEmpty if !ctx.renewal => {
                let message = format!(
                    "{failure}; stored an empty enrichment (on_failure = fallback_to_empty)"
                );
                let result = SpanResult::new(span, SpanStatus::FellBack, failure.attempts)
                    .with_error(message);
                let stored = db::Stored::Enriched(Box::new(db::EnrichmentRow::fallback_empty()));
                finish(ctx, result, chain, Some(stored)).await
            }
            OnFailure::Error | OnFailure::FallbackToEmpty => {
                let (kind, message) = (failure.kind().into(), failure.to_string());
                failed_run(ctx, span, chain, kind, message, failure.attempts).await
            }
        },
    }
}

/// The quality gate's verdict as `enrich_quality` stores it.
fn quality_row(report: &QualityReport) -> db::QualityRow {
    let names = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    db::QualityRow {
        score: report.score,
        level: report.level.as_str().to_owned(),
        failed_checks: names(&report.failed_checks),
        repairs: names(&report.repairs),
        gate_version: GATE_VERSION.to_owned(),
    }
}

/// The `enrichments` row for a validated enrichment, with the answering backend's metrics.
pub(crate) fn enrichment_row(success: &CascadeSuccess) -> db::EnrichmentRow {
    let metrics = &success.generation.metrics;
    let last = success.attempts.last();
    let model = if metrics.model.is_empty() {
        last.map(|a| a.model.clone()).unwrap_or_default()
    } else {
        metrics.model.clone()
    };
    let host = if metrics.host.is_empty() {
        last.map(|a| a.host.clone())
    } else {
        Some(metrics.host.clone())
    };
    db::EnrichmentRow {
        enrichment: success.enrichment.clone(),
        model,
        schema_ver: ENRICHMENT_SCHEMA_VERSION.to_owned(),
        metrics: db::EnrichmentMetrics {
            tokens_per_second: metrics.derived_tokens_per_second(),
            eval_count: metrics.eval_count,
            eval_duration_ns: metrics.eval_duration_ns,
            prompt_eval_count: metrics.prompt_eval_count,
            total_duration_ns: metrics.total_duration_ns,
            backend_host: host,
        },
        quality: Some(quality_row(&success.quality)),
        ..db::EnrichmentRow::default()
    }
}
