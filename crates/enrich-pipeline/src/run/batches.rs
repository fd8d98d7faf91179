//! Batches and the run's counts. Spans are handed out in numbered batches: `batch_size` spans of
//! one lane of the work queue in a row, then, in later by-tier passes, `batch_size` of the spans
//! the pass before deferred. A batch is finished once it is closed (no span of it is left to
//! hand out) and none of its spans is in flight; it is then announced in an
//! [`Event::BatchFinished`]. [`Batches`] is the one place that numbers batches and counts how
//! spans ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use enrich_db::RunId;

use crate::events::{Event, EventSink, now_ms};
use crate::result::{SpanCounts, SpanStatus};

/// One batch: whether spans of it are still to be handed out, how many are in flight, and how
/// those that ended did.
#[derive(Default)]
struct BatchProgress {
    /// Spans of the batch are still to be handed out.
    open: bool,
    /// Spans handed out and not finished.
    outstanding: u64,
    counts: SpanCounts,
}

impl BatchProgress {
    fn spans(&self) -> u64 {
        self.counts.attempted() + self.counts.skipped + self.counts.cancelled
    }
}

/// The run's batches and counts.
pub(super) struct Batches {
    sink: Arc<dyn EventSink>,
    run_id: RunId,
    /// The batches not finished yet, by number.
    unfinished: BTreeMap<u64, BatchProgress>,
    /// The batch each lane of the work queue is handing out, by lane.
    lanes: HashMap<usize, u64>,
    /// The highest batch number given so far.
    last: u64,
    /// Batches finished with at least one span.
    finished: u64,
    /// How the run's spans ended.
    counts: SpanCounts,
}

impl Batches {
    pub(super) fn new(sink: Arc<dyn EventSink>, run_id: RunId) -> Self {
        Self {
            sink,
            run_id,
            unfinished: BTreeMap::new(),
            lanes: HashMap::new(),
            last: 0,
            finished: 0,
            counts: SpanCounts::default(),
        }
    }

    /// Numbers a new batch, open for spans.
    pub(super) fn open(&mut self) -> u64 {
        self.last += 1;
        self.unfinished.insert(
            self.last,
            BatchProgress {
                open: true,
                ..BatchProgress::default()
            },
        );
        self.last
    }

    /// The batch of a span the work queue handed out from `lane`; a new one when the span
    /// starts its batch (`opened`).
    pub(super) fn of_queued(&mut self, lane: usize, opened: bool) -> u64 {
        match self.lanes.get(&lane) {
            Some(&batch) if !opened => batch,
            _ => {
                let batch = self.open();
                self.lanes.insert(lane, batch);
                batch
            }
        }
    }

    /// Closes the batches of queued spans that will not be handed out: `in_hand` (lane, and
    /// whether the span starts a batch, in the order taken) and the lanes whose batch the queue
    /// dropped. A batch none of whose spans was handed out was never numbered.
    pub(super) fn drop_queued(
        &mut self,
        in_hand: impl IntoIterator<Item = (usize, bool)>,
        lanes: &[usize],
    ) {
        for (lane, opened) in in_hand {
            if opened {
                self.lanes.remove(&lane);
            } else if let Some(&batch) = self.lanes.get(&lane) {
                self.close(batch);
            }
        }
        for lane in lanes {
            if let Some(batch) = self.lanes.remove(lane) {
                self.close(batch);
            }
        }
    }

    /// A span of `batch` is sent to a task (or waits for a backend on its behalf).
    pub(super) fn dispatched(&mut self, batch: u64) {
        if let Some(progress) = self.unfinished.get_mut(&batch) {
            progress.outstanding += 1;
        }
    }

    /// A span of `batch` was handed out or skipped: the batch is closed when it was the last
    /// one (`used_up`).
    pub(super) fn handed_out(&mut self, batch: u64, used_up: bool) {
        if used_up {
            self.close(batch);
        }
    }

    /// No more spans of `batch` will be handed out.
    pub(super) fn close(&mut self, batch: u64) {
        if let Some(progress) = self.unfinished.get_mut(&batch) {
            progress.open = false;
        }
        self.finish_if_done(batch);
    }

    /// A span of `batch` ended with `status`; `dispatched` when it was in flight.
    pub(super) fn record(&mut self, batch: u64, status: SpanStatus, dispatched: bool) {
        self.counts.add(status);
        if let Some(progress) = self.unfinished.get_mut(&batch) {
            progress.counts.add(status);
            if dispatched {
                progress.outstanding -= 1;
            }
        }
        self.finish_if_done(batch);
    }

    /// A dispatched span of `batch` ended without a count: it stays pending (no backend could
    /// serve it, it vanished, its task panicked).
    pub(super) fn release(&mut self, batch: u64) {
        if let Some(progress) = self.unfinished.get_mut(&batch) {
            progress.outstanding -= 1;
        }
        self.finish_if_done(batch);
    }

    /// Batches finished with at least one span.
    pub(super) fn finished(&self) -> u64 {
        self.finished
    }

    /// How the run's spans ended.
    pub(super) fn counts(&self) -> SpanCounts {
        self.counts
    }

    fn finish_if_done(&mut self, batch: u64) {
        let done = self
            .unfinished
            .get(&batch)
            .is_some_and(|p| !p.open && p.outstanding == 0);
        if !done {
            return;
        }
        let Some(progress) = self.unfinished.remove(&batch) else {
            return;
        };
        if progress.spans() == 0 {
            return;
        }
        self.finished += 1;
        let c = progress.counts;
        self.sink.on_event(&Event::BatchFinished {
            at_ms: now_ms(),
            run_id: self.run_id,
            batch,
            spans: progress.spans(),
            succeeded: c.succeeded,
            fell_back: c.fell_back,
            failed: c.failed,
            skipped: c.skipped,
            cancelled: c.cancelled,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What a [`Event::BatchFinished`] said: batch, spans, succeeded, failed.
    type Finished = Arc<Mutex<Vec<(u64, u64, u64, u64)>>>;

    /// Batches whose events land in the returned list.
    fn batches() -> (Batches, Finished) {
        let finished = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&finished);
        let sink = move |event: &Event| {
            if let Event::BatchFinished {
                batch,
                spans,
                succeeded,
                failed,
                ..
            } = event
            {
                let mut seen = seen.lock().expect("events");
                seen.push((*batch, *spans, *succeeded, *failed));
            }
        };
        (Batches::new(Arc::new(sink), RunId(1)), finished)
    }

    #[test]
    fn the_queue_s_batches_and_a_later_pass_s_are_numbered_in_one_sequence() {
        let (mut batches, _) = batches();
        let first = batches.of_queued(0, true);
        assert_eq!(batches.of_queued(0, false), first, "same lane, same batch");
        let other_lane = batches.of_queued(1, true);
        let next_on_first_lane = batches.of_queued(0, true);
        let later_pass = batches.open();
        assert_eq!(
            [first, other_lane, next_on_first_lane, later_pass],
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn a_batch_finishes_once_closed_and_its_last_span_in_flight_ended() {
        let (mut batches, finished) = batches();
        let batch = batches.of_queued(0, true);
        for used_up in [false, true] {
            batches.dispatched(batch);
            batches.handed_out(batch, used_up);
        }
        batches.record(batch, SpanStatus::Enriched, true);
        assert!(
            finished.lock().unwrap().is_empty(),
            "a span still in flight"
        );
        batches.record(batch, SpanStatus::Failed, true);
        assert_eq!(*finished.lock().unwrap(), [(1, 2, 1, 1)]);
        assert_eq!(batches.finished(), 1);
        assert_eq!(batches.counts().attempted(), 2);
    }

    #[test]
    fn dropping_queued_spans_closes_their_batches_and_numbers_none_not_handed_out() {
        let (mut batches, finished) = batches();
        let first = batches.of_queued(0, true);
        batches.dispatched(first);
        batches.handed_out(first, false);
        // In hand when the run stopped: the rest of batch 1, then the start of lane 0's next
        // batch, which the queue then dropped too.
        batches.drop_queued([(0, false), (0, true)], &[0]);
        batches.record(first, SpanStatus::Enriched, true);
        assert_eq!(*finished.lock().unwrap(), [(1, 1, 1, 0)]);
        assert_eq!(batches.open(), 2, "the dropped batch took no number");
    }
}
