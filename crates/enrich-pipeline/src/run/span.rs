//! One span's work: route it, read and guard its source, build the prompt, run the cascade,
//! and turn what the backends did into the result the writer stores.

use enrich_backends::{
    CascadeSuccess, Disposition, GenerateRequest, GiveUpReason, ValidationContext,
    enrichment_v1_schema_for_span,
};
use enrich_config::OnFailure;
use enrich_db::{self as db, PendingSpan, RunId};
use enrich_router::RouteDecision;
use enrich_types::{
    AttemptRecord, ENRICHMENT_SCHEMA_VERSION, Enrichment, LedgerKind, SpanIdentity,
};
use tokio::time::Instant;

use crate::events::{Event, now_ms};
use crate::pipeline::Inner;
use crate::result::{SpanResult, SpanStatus};
use crate::secrets::{Guarded, withheld_message};

use super::{Processed, Resume, RunCtx};
pub(super) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The result of a span left alone because its file changed within the cooldown.
pub(super) fn skipped(span: &PendingSpan, age: f64, cooldown_secs: u64) -> SpanResult {
    SpanResult {
        span_hash: span.span_hash.clone(),
        path: span.file_path.clone(),
        line_start: span.start_line,
        line_end: span.end_line,
        status: SpanStatus::Skipped,
        enrichment: None,
        attempts: Vec::new(),
        route: None,
        duration: std::time::Duration::ZERO,
        error: Some(format!(
            "its file changed {:.0}s ago, within the cooldown of {cooldown_secs}s; left for a \
             later run",
            age.max(0.0)
        )),
    }
}

pub(super) fn emit_finished(inner: &Inner, run_id: RunId, batch: u64, result: &SpanResult) {
    let stored = result.attempts.iter().rev().find(|a| a.succeeded());
    inner.events.on_event(&Event::SpanFinished {
        at_ms: now_ms(),
        run_id,
        batch,
        span_hash: result.span_hash.clone(),
        path: result.path.clone(),
        status: result.status,
        backend: stored.map(|a| a.backend.clone()),
        model: stored.map(|a| a.model.clone()),
        attempts: u32::try_from(result.attempts.len()).unwrap_or(u32::MAX),
        duration_ms: millis(result.duration),
        message: result.error.clone(),
    });
}

/// What becomes of a span once its backends are done with it.
struct Ending {
    status: SpanStatus,
    enrichment: Option<Enrichment>,
    attempts: Vec<AttemptRecord>,
    error: Option<String>,
    /// What to store; `None` writes nothing (a cancelled span).
    stored: Option<db::SpanResult>,
    /// The chain's backends that were unavailable for an unavailable span, by index.
    unavailable: Vec<usize>,
}

impl Ending {
    fn failed(kind: LedgerKind, message: String, attempts: Vec<AttemptRecord>) -> Self {
        Self {
            status: SpanStatus::Failed,
            enrichment: None,
            attempts,
            stored: Some(db::SpanResult::Failed {
                failure_kind: kind,
                message: message.clone(),
            }),
            error: Some(message),
            unavailable: Vec::new(),
        }
    }
}

/// Routes, prompts, runs the cascade for, and queues the outcome of one span.
pub(super) async fn process_span(
    ctx: &RunCtx,
    span: PendingSpan,
    batch: u64,
    resume: Resume,
) -> Processed {
    let started = Instant::now();
    let inner = &ctx.inner;
    let settings = &inner.settings;
    let view = Inner::slice_view(&span);
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
            let prompt = inner.prompt(&span, source, *span_bytes);
            (Some(prompt), None)
        }
        Some((Guarded::Withheld { rules }, _)) => (None, Some(withheld_message(rules))),
        None => (None, None),
    };
    drop(guarded);

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

    let ending = match (&route, source, prompt) {
        (Err(error), _, _) => Ending::failed(LedgerKind::NoRoute, error.to_string(), Vec::new()),
        (Ok(_), Err(error), _) => {
            Ending::failed(LedgerKind::SourceUnreadable, error.to_string(), Vec::new())
        }
        (Ok(decision), Ok(_), Some(prompt)) => {
            enrich(ctx, &span, decision, prompt.text, resume).await
        }
        (Ok(_), Ok(_), None) => match withheld {
            Some(message) => Ending::failed(LedgerKind::SecretDetected, message, Vec::new()),
            // A prompt is built whenever the source was read and not withheld.
            None => Ending::failed(
                LedgerKind::SourceUnreadable,
                "no prompt could be built for the span".to_owned(),
                Vec::new(),
            ),
        },
    };

    let mut error = ending.error;
    if let Some(result) = ending.stored {
        let outcome = db::SpanOutcome {
            span_hash: span.span_hash.clone(),
            run_id: ctx.run_id,
            attempts: ending.attempts.clone(),
            result,
        };
        if !ctx.writer.send(outcome).await {
            let note = "not stored: the database writer stopped";
            error = Some(match error {
                Some(e) => format!("{e}; {note}"),
                None => note.to_owned(),
            });
        }
    }

    let result = SpanResult {
        span_hash: span.span_hash,
        path: span.file_path,
        line_start: span.start_line,
        line_end: span.end_line,
        status: ending.status,
        enrichment: ending.enrichment,
        attempts: ending.attempts,
        route: route.ok(),
        duration: started.elapsed(),
        error,
    };
    emit_finished(inner, ctx.run_id, batch, &result);
    Processed {
        result,
        chain,
        unavailable: ending.unavailable,
    }
}

/// Runs the cascade for a span and decides what to store.
async fn enrich(
    ctx: &RunCtx,
    span: &PendingSpan,
    decision: &RouteDecision,
    prompt: String,
    resume: Resume,
) -> Ending {
    let settings = &ctx.inner.settings;
    let Some(adapters) = ctx.inner.chains.get(&*decision.chain_name) else {
        return Ending::failed(
            LedgerKind::NoRoute,
            format!("no adapters were built for chain '{}'", decision.chain_name),
            Vec::new(),
        );
    };
    let span_context = SpanIdentity::new(
        span.span_hash.as_str(),
        span.file_path.as_str(),
        span.start_line,
        span.end_line,
    );
    let validation = ValidationContext::for_span(&span_context, settings.enforce_latin1);
    let schema = enrichment_v1_schema_for_span(&span_context);
    let request = GenerateRequest::new(prompt, span_context).with_schema(schema);
    // Per span: the whole chain. By tier: only the pass's backend of the chain.
    let backends = match resume.tier {
        None => &adapters[..],
        Some(tier) if tier < adapters.len() => &adapters[..=tier],
        Some(tier) => {
            return Ending::failed(
                LedgerKind::NoRoute,
                format!(
                    "chain '{}' has no backend {} for this pass",
                    decision.chain_name,
                    tier + 1
                ),
                Vec::new(),
            );
        }
    };
    let has_next_tier = resume.tier.is_some_and(|tier| tier + 1 < adapters.len());
    match ctx
        .cascade
        .run_resumed(
            resume.prior,
            backends,
            resume.start,
            &request,
            &validation,
            &ctx.abort,
        )
        .await
    {
        Ok(success) => {
            let stored = enrichment_row(&success);
            Ending {
                status: SpanStatus::Enriched,
                enrichment: Some(success.enrichment),
                attempts: success.attempts,
                error: None,
                stored: Some(db::SpanResult::Enriched(Box::new(stored))),
                unavailable: Vec::new(),
            }
        }
        Err(failure) => match failure.disposition() {
            // By tier, a span whose backend failed or was unavailable waits for the next pass
            // (its next backend), unless it used up its attempts or the policy stopped it.
            Disposition::Unavailable | Disposition::Failed
                if has_next_tier && failure.reason == GiveUpReason::Exhausted =>
            {
                deferred(failure)
            }
            Disposition::Cancelled => Ending {
                status: SpanStatus::Cancelled,
                enrichment: None,
                error: Some(failure.to_string()),
                attempts: failure.attempts,
                stored: None,
                unavailable: Vec::new(),
            },
            // An outage is not the span's failure: its attempts are logged, the ledger is
            // untouched, and the run keeps it until a backend it missed is usable.
            Disposition::Unavailable => Ending {
                status: SpanStatus::Unavailable,
                enrichment: None,
                error: Some(format!(
                    "{failure}; the span waits for a backend and is not counted as failed"
                )),
                attempts: failure.attempts,
                stored: Some(db::SpanResult::Deferred),
                unavailable: failure.unavailable,
            },
            Disposition::Failed => failed(settings.on_failure, failure),
        },
    }
}

/// A by-tier span left for the next pass: its attempts are logged, the ledger is untouched.
fn deferred(failure: enrich_backends::CascadeFailure) -> Ending {
    Ending {
        status: SpanStatus::Deferred,
        enrichment: None,
        error: Some(format!(
            "{failure}; the next pass tries the chain's next backend"
        )),
        attempts: failure.attempts,
        stored: Some(db::SpanResult::Deferred),
        unavailable: Vec::new(),
    }
}

/// What becomes of a span whose own answers failed on every backend the cascade reached.
fn failed(on_failure: OnFailure, failure: enrich_backends::CascadeFailure) -> Ending {
    match on_failure {
        OnFailure::FallbackToEmpty => Ending {
            status: SpanStatus::FellBack,
            enrichment: None,
            error: Some(format!(
                "{failure}; stored an empty enrichment (on_failure = fallback_to_empty)"
            )),
            attempts: failure.attempts,
            stored: Some(db::SpanResult::Enriched(Box::new(
                db::EnrichmentRow::fallback_empty(),
            ))),
            unavailable: Vec::new(),
        },
        OnFailure::Error => {
            let kind = failure.kind().into();
            let message = failure.to_string();
            Ending::failed(kind, message, failure.attempts)
        }
    }
}

/// The `enrichments` row for a validated enrichment, with the answering backend's metrics.
fn enrichment_row(success: &CascadeSuccess) -> db::EnrichmentRow {
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
        ..db::EnrichmentRow::default()
    }
}
