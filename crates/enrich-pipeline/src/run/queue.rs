//! The work queue: pending spans in the order a run takes them, read page by page.
//!
//! Without code-first, one lane in `spans.id` order. With code-first, two lanes read in work
//! order (weight, then span id) from the database's `enrich_span_order`: the first holds the
//! high and medium weights (1–6), the second the low ones (7–10). The queue takes
//! `starvation_ratio_high` spans from the first lane, then `starvation_ratio_low` from the
//! second, and so on; when one lane runs dry the other goes on alone. Each page read is a batch
//! (its number goes with every span of the page, for the batch events).
//!
//! A run reads its pages by claiming them ([`Lease`]): only spans no other run holds, leased to
//! this run in the same transaction, so runs in several processes never take the same span. A
//! plan reads without claiming.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use enrich_config::{FIRST_QUEUE_WEIGHTS, LOW_QUEUE_WEIGHTS, WorkOrder};
use enrich_db::{Db, DbError, Lease, PendingSpan, WorkOrderKey};

use crate::error::PipelineError;

/// Brings the database's work order up to date with the index and the path weights, when the
/// run goes in code-first order.
pub(crate) fn refresh_work_order(order: &WorkOrder, db: &mut Db) -> Result<(), PipelineError> {
    if !order.code_first {
        return Ok(());
    }
    let weights = &order.path_weights;
    let report = db
        .refresh_work_order(&weights.fingerprint(), |path| weights.weigh(path).weight)
        .map_err(PipelineError::db("refresh the work order"))?;
    tracing::debug!(
        rules_changed = report.rules_changed,
        files_weighed = report.files_weighed,
        files_changed = report.files_changed,
        spans_placed = report.spans_placed,
        spans_removed = report.spans_removed,
        "work order refreshed"
    );
    Ok(())
}

/// Where a lane reads from.
#[derive(Debug, Clone)]
enum Source {
    /// `spans.id` order, after this id.
    SpanId(i64),
    /// Work order within these weights, after this key.
    Weights(RangeInclusive<u8>, WorkOrderKey),
}

impl Source {
    /// Moves the cursor past the span `span_id` of weight `weight` (`None` in span id order).
    fn advance(&mut self, weight: Option<u8>, span_id: i64) {
        match self {
            Source::SpanId(after) => *after = span_id,
            Source::Weights(_, after) => {
                *after = WorkOrderKey {
                    weight: weight.unwrap_or(after.weight),
                    span_id,
                }
            }
        }
    }
}

/// One lane: its cursor, its current page and that page's batch number.
#[derive(Debug)]
struct Lane {
    source: Source,
    /// Spans taken from this lane in a row before the other lane's turn.
    quota: u32,
    page: VecDeque<(Option<u8>, PendingSpan)>,
    batch: u64,
    exhausted: bool,
}

impl Lane {
    fn new(source: Source, quota: u32) -> Self {
        Self {
            source,
            quota: quota.max(1),
            page: VecDeque::new(),
            batch: 0,
            exhausted: false,
        }
    }

    /// Reads up to `limit` spans after the cursor, without moving it, each with its weight in
    /// work order; with a lease, claims them (spans other runs hold are passed over).
    fn read(
        &self,
        db: &mut Db,
        lease: Option<&Lease>,
        limit: usize,
    ) -> Result<Vec<(Option<u8>, PendingSpan)>, DbError> {
        Ok(match (&self.source, lease) {
            (Source::SpanId(after), None) => db
                .pending_spans(*after, limit)?
                .into_iter()
                .map(|span| (None, span))
                .collect(),
            (Source::SpanId(after), Some(lease)) => db
                .claim_pending_spans(lease, *after, limit)?
                .into_iter()
                .map(|span| (None, span))
                .collect(),
            (Source::Weights(weights, after), None) => db
                .pending_by_weight(weights.clone(), *after, limit)?
                .into_iter()
                .map(|weighted| (Some(weighted.weight), weighted.span))
                .collect(),
            (Source::Weights(weights, after), Some(lease)) => db
                .claim_pending_by_weight(lease, weights.clone(), *after, limit)?
                .into_iter()
                .map(|weighted| (Some(weighted.weight), weighted.span))
                .collect(),
        })
    }
}

/// A span the queue handed out.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The span.
    pub(crate) span: PendingSpan,
    /// The batch (page) it came in.
    pub(crate) batch: u64,
    /// True when this span's page was read for it: its batch starts here.
    pub(crate) opened: bool,
}

/// Pending spans in the order a run takes them; see the module documentation.
#[derive(Debug)]
pub(crate) struct WorkQueue {
    lanes: Vec<Lane>,
    page_size: usize,
    turn: usize,
    taken_in_turn: u32,
    batches: u64,
}

impl WorkQueue {
    /// The queue for `order`, reading pages of `page_size` spans.
    pub(crate) fn new(order: &WorkOrder, page_size: usize) -> Self {
        let lanes = if order.code_first {
            vec![
                Lane::new(
                    Source::Weights(FIRST_QUEUE_WEIGHTS, WorkOrderKey::START),
                    order.starvation_ratio_high,
                ),
                Lane::new(
                    Source::Weights(LOW_QUEUE_WEIGHTS, WorkOrderKey::START),
                    order.starvation_ratio_low,
                ),
            ]
        } else {
            vec![Lane::new(Source::SpanId(0), 1)]
        };
        Self {
            lanes,
            page_size: page_size.max(1),
            turn: 0,
            taken_in_turn: 0,
            batches: 0,
        }
    }

    /// The next span, reading (with a lease: claiming) a page when its lane's page is used up;
    /// `None` when every lane is exhausted.
    pub(crate) fn next(
        &mut self,
        db: &mut Db,
        lease: Option<&Lease>,
    ) -> Result<Option<Taken>, DbError> {
        for _ in 0..=self.lanes.len() {
            let index = self.turn;
            let opened = self.fill(index, db, lease)?;
            let lane = &mut self.lanes[index];
            if let Some((_, span)) = lane.page.pop_front() {
                let batch = lane.batch;
                self.taken_in_turn += 1;
                if self.taken_in_turn >= lane.quota {
                    self.next_turn();
                }
                return Ok(Some(Taken {
                    span,
                    batch,
                    opened,
                }));
            }
            self.next_turn();
        }
        Ok(None)
    }

    fn next_turn(&mut self) {
        self.turn = (self.turn + 1) % self.lanes.len();
        self.taken_in_turn = 0;
    }

    /// Reads the lane's next page when its page is empty; true when a page was read.
    fn fill(&mut self, index: usize, db: &mut Db, lease: Option<&Lease>) -> Result<bool, DbError> {
        let page_size = self.page_size;
        let lane = &mut self.lanes[index];
        if !lane.page.is_empty() || lane.exhausted {
            return Ok(false);
        }
        let page = lane.read(db, lease, page_size)?;
        let Some((last_weight, last)) = page.last() else {
            lane.exhausted = true;
            return Ok(false);
        };
        lane.source.advance(*last_weight, last.id);
        self.batches += 1;
        lane.batch = self.batches;
        lane.page = page.into();
        Ok(true)
    }

    /// Whether the page of `batch` has been handed out whole.
    pub(crate) fn batch_used_up(&self, batch: u64) -> bool {
        !self
            .lanes
            .iter()
            .any(|lane| lane.batch == batch && !lane.page.is_empty())
    }

    /// Drops every page read and not handed out (the run stops taking spans); returns their
    /// batches.
    pub(crate) fn drop_pages(&mut self) -> Vec<u64> {
        self.lanes
            .iter_mut()
            .filter(|lane| !lane.page.is_empty())
            .map(|lane| {
                lane.page.clear();
                lane.batch
            })
            .collect()
    }

    /// True once every lane has been read to its end and handed out.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.lanes
            .iter()
            .all(|lane| lane.exhausted && lane.page.is_empty())
    }

    /// Whether spans remain that the queue has not handed out: a page not used up, or a lane
    /// with spans after its cursor (one row read to know, leases not considered).
    pub(crate) fn more_pending(&self, db: &mut Db) -> Result<bool, DbError> {
        for lane in &self.lanes {
            if !lane.page.is_empty() {
                return Ok(true);
            }
            if !lane.exhausted && !lane.read(db, None, 1)?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
