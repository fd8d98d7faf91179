//! Taking spans from the work queue: up to `concurrency` at a time in one call off the runtime,
//! within the run's limit, and dropping what was read once the run takes no more.

use std::collections::VecDeque;

use super::claimer::Claimer;
use super::queue::Taken;
use super::{Next, Scheduler};
use crate::error::PipelineError;

/// The scheduler's side of the work queue.
pub(super) struct Intake {
    /// Spans taken from the work queue and not handed out yet, in order.
    ready: VecDeque<Taken>,
    /// The work queue has no span left for this run.
    dry: bool,
    /// The pages read were dropped (the run takes no more spans).
    dropped: bool,
    /// The most spans the run takes from the queue.
    limit: Option<u64>,
    /// Spans taken from the queue and handed out so far.
    taken: u64,
    /// Spans read were left pending when the run stopped taking spans.
    left_behind: bool,
}

impl Intake {
    pub(super) fn new(limit: Option<u64>) -> Self {
        Self {
            ready: VecDeque::new(),
            dry: false,
            dropped: false,
            limit,
            taken: 0,
            left_behind: false,
        }
    }

    /// The run took as many spans from the queue as its limit allows.
    pub(super) fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|limit| self.taken >= limit)
    }

    /// A span taken from the queue is handed out.
    pub(super) fn count_taken(&mut self) {
        self.taken += 1;
    }

    /// Spans the run read or took are left pending.
    pub(super) fn leave_behind(&mut self) {
        self.left_behind = true;
    }

    /// Whether spans the run read or took were left pending.
    pub(super) fn left_behind(&self) -> bool {
        self.left_behind
    }
}

impl Scheduler<'_> {
    /// The next span of the work queue; when none is left in hand, takes up to `concurrency`
    /// more (claiming pages as needed) in one call off the runtime. `None` when nothing is
    /// pending behind the cursors.
    pub(super) async fn next_queued(&mut self) -> Result<Option<Next>, PipelineError> {
        let intake = &mut self.intake;
        if intake.ready.is_empty() && !intake.dry {
            let mut want = self.inner.settings.concurrency.max(1);
            if let Some(limit) = intake.limit {
                let left =
                    usize::try_from(limit.saturating_sub(intake.taken)).unwrap_or(usize::MAX);
                want = want.min(left.max(1));
            }
            let taken = self
                .claimer
                .call(move |claimer| claimer.take(want))
                .await
                .map_err(PipelineError::db("claim pending spans"))?;
            self.intake.dry = taken.len() < want;
            self.intake.ready.extend(taken);
        }
        let Some(taken) = self.intake.ready.pop_front() else {
            return Ok(None);
        };
        Ok(Some(Next {
            batch: self.batches.of_queued(taken.lane, taken.opened),
            span: taken.span,
            prior: enrich_backends::SpanStart::default(),
            used_up: taken.used_up,
        }))
    }

    /// Drops the rest of the pages read and the spans in hand (the run takes no more spans from
    /// the queue); their leases end with the run.
    pub(super) async fn drop_page(&mut self) {
        if self.intake.dropped {
            return;
        }
        self.intake.dropped = true;
        let in_hand = std::mem::take(&mut self.intake.ready);
        let dropped = self.claimer.call(Claimer::drop_pages).await;
        if dropped.spans > 0 || !in_hand.is_empty() {
            self.intake.left_behind = true;
        }
        self.batches.drop_queued(
            in_hand.iter().map(|taken| (taken.lane, taken.opened)),
            &dropped.lanes,
        );
    }

    /// Whether the work queue was read to its end and every span read was handed out.
    pub(super) async fn queue_exhausted(&mut self) -> bool {
        self.intake.ready.is_empty()
            && self
                .claimer
                .call(|claimer| claimer.queue.is_exhausted())
                .await
    }

    /// Whether spans remain pending that this run did not take.
    pub(super) async fn more_pending(&mut self) -> Result<bool, PipelineError> {
        if self.intake.left_behind || !self.intake.ready.is_empty() {
            return Ok(true);
        }
        self.claimer
            .call(|claimer| claimer.queue.more_pending(&mut claimer.db))
            .await
            .map_err(PipelineError::db("read pending spans"))
    }
}
