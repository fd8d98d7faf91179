//! By-tier passes ([`Schedule::ByTier`]): pass 0 takes pending spans from the work queue on
//! their chain's first backend; pass `n` retries the spans pass `n - 1` deferred on their
//! chain's backend `n`, in batches of `batch_size`. Under [`Schedule::PerSpan`] there is one
//! pass, and each span's cascade walks its whole chain.

use std::collections::VecDeque;

use enrich_backends::SpanStart;
use enrich_config::Schedule;

use super::{Next, Resume, Scheduler};
use crate::error::PipelineError;

/// A span a by-tier pass could not enrich on its backend and left for the next pass: its id
/// and the attempts it already had (16 bytes, so deferring a whole index stays small).
#[derive(Debug, Clone, Copy)]
struct Deferred {
    span_id: i64,
    prior: SpanStart,
}

/// The batch of a later pass being handed out, and how many spans it still takes.
#[derive(Debug, Clone, Copy)]
struct RetryBatch {
    number: u64,
    left: usize,
}

/// The run's passes.
pub(super) struct Passes {
    by_tier: bool,
    /// The current pass: 0 takes spans from the work queue.
    pass: usize,
    /// Spans this pass deferred to the next one.
    deferred: Vec<Deferred>,
    /// Spans the current pass (1 and later) still has to hand out, in the order they were
    /// deferred.
    retry: VecDeque<Deferred>,
    /// The batch of the current pass (1 and later) being handed out.
    retry_batch: Option<RetryBatch>,
}

impl Passes {
    pub(super) fn new(schedule: Schedule) -> Self {
        Self {
            by_tier: schedule == Schedule::ByTier,
            pass: 0,
            deferred: Vec::new(),
            retry: VecDeque::new(),
            retry_batch: None,
        }
    }

    /// The run is in its first pass, which takes spans from the work queue.
    pub(super) fn first(&self) -> bool {
        self.pass == 0
    }

    /// Where the cascade of a span handed out in this pass starts, after `prior` attempts.
    pub(super) fn resume(&self, prior: SpanStart) -> Resume {
        Resume {
            tier: self.by_tier.then_some(self.pass),
            start: if self.by_tier { self.pass } else { 0 },
            prior,
            waits: 0,
        }
    }

    /// Leaves a span for the next pass.
    pub(super) fn defer(&mut self, span_id: i64, prior: SpanStart) {
        self.deferred.push(Deferred { span_id, prior });
    }
}

impl Scheduler<'_> {
    /// The next span to hand out: from the work queue in the first pass, from the deferred
    /// spans in later by-tier passes; `None` when the pass has nothing left.
    pub(super) async fn next_span(&mut self) -> Result<Option<Next>, PipelineError> {
        if self.passes.first() {
            self.next_queued().await
        } else {
            self.next_deferred().await
        }
    }

    /// The next deferred span of a later pass, in batches of `batch_size`; spans re-indexed
    /// away meanwhile are left out.
    async fn next_deferred(&mut self) -> Result<Option<Next>, PipelineError> {
        while let Some(next) = self.passes.retry.pop_front() {
            let Some(span) = self
                .span_by_id(next.span_id, "read a deferred span")
                .await?
            else {
                continue;
            };
            let batch = match &mut self.passes.retry_batch {
                Some(batch) if batch.left > 0 => batch,
                open => open.insert(RetryBatch {
                    number: self.batches.open(),
                    left: self.inner.settings.batch_size,
                }),
            };
            batch.left -= 1;
            let (number, used_up) = (batch.number, batch.left == 0);
            return Ok(Some(Next {
                span,
                batch: number,
                prior: next.prior,
                used_up: used_up || self.passes.retry.is_empty(),
            }));
        }
        Ok(None)
    }

    /// Starts the next by-tier pass over the spans this one deferred; false when there is none.
    pub(super) fn next_pass(&mut self) -> bool {
        let passes = &mut self.passes;
        if !passes.by_tier || passes.deferred.is_empty() {
            return false;
        }
        passes.pass += 1;
        passes.retry = std::mem::take(&mut passes.deferred).into();
        passes.retry_batch = None;
        tracing::info!(
            run = self.run_id.0,
            pass = passes.pass,
            spans = passes.retry.len(),
            "by-tier pass {}: the spans the last pass left go to their chain's backend {}",
            passes.pass,
            passes.pass + 1
        );
        true
    }

    /// Drops the deferred spans not handed out (the run stops: they stay pending, and their
    /// leases end with the run).
    pub(super) fn abandon_deferred(&mut self) {
        let passes = &mut self.passes;
        if !passes.retry.is_empty() || !passes.deferred.is_empty() {
            self.intake.leave_behind();
            passes.retry.clear();
            passes.deferred.clear();
        }
        if let Some(batch) = passes.retry_batch.take() {
            self.batches.close(batch.number);
        }
    }
}
