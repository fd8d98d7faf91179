//! A run's span work for batch engines: the spans a batch takes (claimed in work order with
//! leases that outlive the command), each span's request exactly as a live run builds it, and
//! each answer judged and turned into what the writer stores exactly as a live attempt is.
//!
//! The pipeline knows no batch service and no wire format: the caller turns each
//! [`BatchSpan::request`] into a line of its engine's file, reads each answer back into a
//! [`Generation`] (or the [`BackendError`] it amounts to) and hands it to
//! [`Pipeline::batch_outcome`], whose [`SpanOutcome`] goes to [`Db::write_batch`].

use std::time::Duration;

use enrich_backends::{
    Answered, BackendError, CascadeSuccess, GenerateRequest, Generation, judge_answer,
};
use enrich_config::{BackendSpec, OnFailure};
use enrich_db::{self as db, Db, Lease, LeaseHolder, PendingSpan, RunId, SpanOutcome};
use enrich_types::{LedgerKind, SpanIdentity};

use crate::error::PipelineError;
use crate::pipeline::Pipeline;
use crate::provenance::RunProvenance;
use crate::result::{CostEstimate, SpanStatus};
use crate::run::queue::{WorkQueue, refresh_work_order};
use crate::run::span::{Gate, enrichment_row, span_request, validation};
use crate::run::start::budget_tracker;
use crate::secrets::{Guarded, withheld_message};
use crate::shared::Inner;
use crate::writer::WriteGate;

/// A span prepared for a batch: its request as the cascade would send it to its chain's
/// backends, and what its answer is judged by.
#[derive(Debug, Clone)]
pub struct BatchSpan {
    /// The span.
    pub span: PendingSpan,
    /// The chain it is routed to.
    pub chain: String,
    /// Its request: prompt, system prompt, schema and output budget.
    pub request: GenerateRequest,
    /// Its prompt's estimated tokens.
    pub estimated_tokens: u32,
    /// The source its prompt showed, after the secrets guard.
    source: String,
}

/// What a new batch may still use before a budget of `[enrichment.budget]` is reached: the run
/// budgets whole, the day budgets less today's usage and the open batches' estimates. `None`:
/// no such budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchAllowance {
    /// Tokens (prompts and answers).
    pub tokens: Option<u64>,
    /// Cost, at the batch price.
    pub cost: Option<f64>,
}

impl BatchAllowance {
    /// Whether a span estimated at `tokens` and `cost` still fits after `used` was taken.
    pub fn fits(&self, used: (u64, f64), tokens: u64, cost: f64) -> bool {
        self.tokens.is_none_or(|limit| used.0 + tokens <= limit)
            && self.cost.is_none_or(|limit| used.1 + cost <= limit)
    }
}

/// What becomes of a span a batch takes.
#[derive(Debug, Clone)]
pub enum BatchPrep {
    /// Its request goes into the batch.
    Ready(Box<BatchSpan>),
    /// It cannot be sent (no route, unreadable source, a secret withheld): a failed run in the
    /// ledger, as a live run records it ([`Pipeline::not_sent_outcome`]).
    NotSent {
        /// The span.
        span: SpanIdentity,
        /// Why.
        kind: LedgerKind,
        /// What happened.
        message: String,
    },
}

impl Pipeline {
    /// The fingerprint of the prompts this pipeline builds (recorded on each run).
    pub fn prompt_fingerprint(&self) -> String {
        self.inner.prompts.fingerprint()
    }

    /// The fingerprint of the configuration (recorded on each run).
    pub fn config_fingerprint(&self) -> &str {
        &self.inner.settings.config_fingerprint
    }

    /// A write connection to the index, opened as a run's writer opens its own (the
    /// dead-letter threshold and busy timeout set).
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when the index cannot be opened.
    pub fn open_writer(&self) -> Result<Db, PipelineError> {
        self.inner.open_writer()
    }

    /// The entries of `chain`'s backends, in cascade order; `None` for a chain the pipeline
    /// has no adapters for.
    pub fn chain_backends(&self, chain: &str) -> Option<Vec<BackendSpec>> {
        self.inner
            .chains
            .get(chain)
            .map(|adapters| adapters.iter().map(|a| a.spec().clone()).collect())
    }

    /// Claims pending spans for the batch run `run` in the order a live run takes them, with
    /// leases held by no process ([`LeaseHolder::batch`]) that live `ttl`, and hands each to
    /// `take` until it returns false or none is left; at most `limit` spans. Spans another run
    /// holds are passed over. Spans claimed in a page but not taken keep their lease until the
    /// caller releases them ([`Db::record_batch`] does).
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when the index cannot be read or written.
    pub fn claim_for_batch(
        &self,
        db: &mut Db,
        run: RunId,
        limit: Option<u64>,
        ttl: Duration,
        mut take: impl FnMut(PendingSpan) -> bool,
    ) -> Result<(), PipelineError> {
        let inner = &self.inner;
        let order = &inner.settings.work_order;
        refresh_work_order(order, db)?;
        let lease = Lease {
            run_id: run,
            holder: LeaseHolder::batch(),
            ttl,
        };
        db.reap_dead_leases(&LeaseHolder::current())
            .map_err(PipelineError::db("delete dead span leases"))?;
        let mut queue = WorkQueue::new(order, inner.settings.batch_size, limit);
        queue
            .start_at_frontiers(db)
            .map_err(PipelineError::db("read the pending frontiers"))?;
        let gate = WriteGate::default();
        let mut taken = 0_u64;
        while limit.is_none_or(|limit| taken < limit) {
            let Some(next) = queue
                .next(db, Some((&lease, &gate)))
                .map_err(PipelineError::db("claim pending spans for a batch"))?
            else {
                break;
            };
            taken += 1;
            if !take(next.span) {
                break;
            }
        }
        inner.sources.close_files();
        Ok(())
    }

    /// What a new batch may still use under the budgets ([`BatchAllowance`]).
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when today's usage cannot be read.
    pub fn batch_allowance(&self, db: &Db) -> Result<BatchAllowance, PipelineError> {
        let (tokens, cost) = budget_tracker(&self.inner, db)?.headroom();
        Ok(BatchAllowance { tokens, cost })
    }

    /// The estimated tokens (its prompt, and [`CostEstimate::ASSUMED_OUTPUT_TOKENS`] for the
    /// answer) and cost (at `backend`'s price less the batch discount; 0 without a price) of
    /// a prepared span.
    pub fn batch_estimate(&self, prepared: &BatchSpan, backend: &BackendSpec) -> (u64, f64) {
        let prompt = u64::from(prepared.estimated_tokens);
        let output = CostEstimate::ASSUMED_OUTPUT_TOKENS;
        let live = backend.price.map_or(0.0, |p| p.cost(prompt, output));
        (prompt + output, self.inner.settings.budget.batch_cost(live))
    }

    /// Whether `span`'s file changed within the cooldown (`cooldown_seconds`): a live run
    /// leaves such a span for later, and so does a batch.
    pub fn in_cooldown(&self, span: &PendingSpan) -> bool {
        self.inner.in_cooldown(span).is_some()
    }

    /// Prepares `span` as a live run does before sending it: routes it, reads its source,
    /// runs the secrets guard and builds its prompt and request.
    pub fn prepare_batch_span(&self, span: PendingSpan) -> BatchPrep {
        let inner = &self.inner;
        let identity = span.identity();
        let route = inner.router.choose_chain(
            &Inner::slice_view(&span),
            inner.settings.chain_override.as_deref(),
        );
        let decision = match route {
            Ok(decision) => decision,
            Err(error) => {
                return BatchPrep::NotSent {
                    span: identity,
                    kind: LedgerKind::NoRoute,
                    message: error.to_string(),
                };
            }
        };
        let read = match inner.read_source(&span) {
            Ok(read) => read,
            Err(error) => {
                return BatchPrep::NotSent {
                    span: identity,
                    kind: LedgerKind::SourceUnreadable,
                    message: error.to_string(),
                };
            }
        };
        let source = match inner.secrets.guard(&read.text) {
            Guarded::Send { source, .. } => source.into_owned(),
            Guarded::Withheld { rules } => {
                return BatchPrep::NotSent {
                    span: identity,
                    kind: LedgerKind::SecretDetected,
                    message: withheld_message(&rules),
                };
            }
        };
        let prompt = inner.prompt(&span, &identity, &source, read.span_bytes);
        let estimated_tokens = prompt.estimated_tokens;
        BatchPrep::Ready(Box::new(BatchSpan {
            chain: decision.chain_name.to_string(),
            request: span_request(prompt, identity),
            estimated_tokens,
            span,
            source,
        }))
    }

    /// What the writer stores for a batch span's answer: the answer judged as the cascade
    /// judges a live attempt (enrichment.v1, the quality gate, the attempt record), then the
    /// enrichment, or for a failure what a live run stores for a span whose last backend
    /// failed so: an outage kind (the service failed the request) leaves it pending with the
    /// attempt logged; the span's own failure is a failed run in the ledger, or an empty
    /// enrichment under `on_failure = "fallback_to_empty"`.
    pub fn batch_outcome(
        &self,
        prepared: &BatchSpan,
        run: RunId,
        answered: &Answered<'_>,
        generated: Result<Generation, BackendError>,
    ) -> (SpanOutcome, SpanStatus) {
        let settings = &self.inner.settings;
        let gate = Gate {
            source: &prepared.source,
            symbol: &prepared.span.symbol,
        };
        let validation = validation(settings, &prepared.request.span, &gate);
        let (record, result) = judge_answer(answered, generated, &validation);
        let (stored, status) = match result {
            Ok((validated, generation)) => {
                let success = CascadeSuccess {
                    enrichment: validated.enrichment,
                    quality: validated.quality,
                    generation,
                    backend_index: 0,
                    attempts: vec![record.clone()],
                };
                let mut row = enrichment_row(&success);
                // A batch engine tells no model digest: unknown.
                let provenance = RunProvenance {
                    run_id: run,
                    prompt_fingerprint: self.prompt_fingerprint(),
                    digests: std::collections::HashMap::new(),
                };
                let metrics = &success.generation.metrics;
                row.provenance = Some(provenance.of(
                    answered.backend,
                    &prepared.chain,
                    metrics.prompt_eval_count,
                    metrics.eval_count,
                ));
                (db::Stored::Enriched(Box::new(row)), SpanStatus::Enriched)
            }
            Err(error) if settings.cascade.is_outage(error.kind) => {
                (db::Stored::Deferred, SpanStatus::Unavailable)
            }
            Err(error) => match settings.on_failure {
                OnFailure::FallbackToEmpty => (
                    db::Stored::Enriched(Box::new(db::EnrichmentRow::fallback_empty())),
                    SpanStatus::FellBack,
                ),
                OnFailure::Error => (
                    db::Stored::Failed {
                        failure_kind: error.kind.into(),
                        message: error.message,
                    },
                    SpanStatus::Failed,
                ),
            },
        };
        let outcome = SpanOutcome {
            span_hash: prepared.span.span_hash.clone(),
            run_id: run,
            attempts: vec![record],
            chain: Some(prepared.chain.clone()),
            stored,
        };
        (outcome, status)
    }

    /// What the writer stores for a span that could not be sent ([`BatchPrep::NotSent`]): a
    /// failed run of `kind` in the ledger, as a live run records it.
    pub fn not_sent_outcome(
        run: RunId,
        span: &SpanIdentity,
        kind: LedgerKind,
        message: String,
    ) -> SpanOutcome {
        SpanOutcome {
            span_hash: span.span_hash.to_string(),
            run_id: run,
            attempts: Vec::new(),
            chain: None,
            stored: db::Stored::Failed {
                failure_kind: kind,
                message,
            },
        }
    }
}
