//! The single database writer: a thread that owns the write connection and commits span
//! outcomes in batches.
//!
//! Spans finish on many tasks; their outcomes go through a bounded queue to this one thread,
//! which commits every `commit_every` outcomes, when its oldest uncommitted outcome is
//! `commit_interval` old, and at the end: one `IMMEDIATE` transaction per batch of outcomes
//! rather than per span. The queue is
//! bounded by a semaphore whose slots are released only once an outcome is committed, so a slow
//! disk slows the spans down instead of piling outcomes up in memory.
//!
//! The run's scheduler writes too (it claims spans, renews their leases, publishes the
//! circuits), on its own connection. The two take turns through a [`WriteGate`] held around
//! each write transaction: SQLite would make the loser of a race for its write lock poll with
//! sleeps of 1, 2, 5, 10, 15, 20 ms and more, and the writer, busy with batch after batch,
//! would win nearly every race while the scheduler slept and the backend slots ran dry.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use enrich_db::{Db, DbError, SpanOutcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::PipelineError;

enum Msg {
    Outcome(Box<SpanOutcome>, OwnedSemaphorePermit),
    Finish,
}

/// Taken around every write transaction of a run's connections, so they wait for each other
/// in turn instead of in SQLite's busy handler (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteGate(Arc<Mutex<()>>);

impl WriteGate {
    /// Waits for the gate; the write transaction goes while the guard lives.
    pub(crate) fn enter(&self) -> MutexGuard<'_, ()> {
        // The mutex guards nothing but the turn: a panic while it was held changes no data.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gate if no one holds it now, without waiting.
    pub(crate) fn try_enter(&self) -> Option<MutexGuard<'_, ()>> {
        match self.0.try_lock() {
            Ok(turn) => Some(turn),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// What the writer stored over a run: counts of committed outcomes only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriteTotals {
    /// Enrichments stored, fallbacks not included.
    pub(crate) succeeded: u64,
    /// Empty fallback enrichments stored.
    pub(crate) fell_back: u64,
    /// Spans that failed: failed runs recorded in the ledger, and failed renewals.
    pub(crate) failed: u64,
    /// Of the enrichments stored, renewals of stored ones.
    pub(crate) refreshed: u64,
    /// Of the spans that failed, renewals (their old enrichment stays).
    pub(crate) refresh_failed: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) vanished: u64,
}

/// What the writer thread hands back when it ends.
pub(crate) struct WriterOutput {
    pub(crate) db: Db,
    pub(crate) totals: WriteTotals,
    pub(crate) error: Option<DbError>,
}

/// The writer thread, owned by the run.
pub(crate) struct Writer {
    handle: WriterHandle,
    failed: Arc<AtomicBool>,
    thread: JoinHandle<WriterOutput>,
}

/// What a span's task uses to queue its outcome.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: Sender<Msg>,
    slots: Arc<Semaphore>,
}

impl WriterHandle {
    /// Queues one outcome, waiting for a slot when the queue is full. Returns false when the
    /// writer is gone (it failed or panicked); the outcome is then dropped.
    pub(crate) async fn send(&self, outcome: SpanOutcome) -> bool {
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return false;
        };
        self.tx.send(Msg::Outcome(Box::new(outcome), slot)).is_ok()
    }
}

/// The writer connection's page cache: the index pages a run's enrichments and attempts land on
/// are all over their tables, and SQLite's default 2 MiB rereads many of them for each commit.
const WRITER_PAGE_CACHE_BYTES: u64 = 32 << 20;

impl Writer {
    /// Starts the writer thread on `db`; it enters `gate` for each commit.
    pub(crate) fn spawn(
        mut db: Db,
        commit_every: usize,
        commit_interval: Duration,
        gate: WriteGate,
    ) -> Result<Self, PipelineError> {
        db.set_page_cache(WRITER_PAGE_CACHE_BYTES)
            .map_err(PipelineError::db("size the writer's page cache"))?;
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("enrich-db-writer".to_owned())
            .spawn(move || write_loop(db, &rx, commit_every, commit_interval, &gate, &flag))
            .map_err(|source| PipelineError::WriterThread { source })?;
        Ok(Self {
            handle: WriterHandle {
                tx,
                slots: Arc::new(Semaphore::new(
                    commit_every.saturating_mul(2).min(Semaphore::MAX_PERMITS),
                )),
            },
            failed,
            thread,
        })
    }

    /// A handle for a span's task.
    pub(crate) fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Whether writing failed (or the thread died): the run must stop taking spans.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire) || self.thread.is_finished()
    }

    /// Commits what is queued, stops the thread and returns the connection.
    pub(crate) async fn finish(self) -> Result<WriterOutput, PipelineError> {
        // A send fails only when the thread already ended; joining tells why.
        let _ = self.handle.tx.send(Msg::Finish);
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(panic)) => Err(PipelineError::WriterPanicked {
                message: panic_message(&*panic),
            }),
            Err(join_error) => Err(PipelineError::WriterPanicked {
                message: join_error.to_string(),
            }),
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_owned()
    }
}

/// How long the writer naps while outcomes keep arriving, before taking what has queued up.
///
/// A writer blocked on the queue is woken by every outcome sent, a futex wake and a context
/// switch each. While outcomes arrive faster than that, the writer instead sleeps this long and
/// takes them all at once; when a nap brings nothing it blocks on the queue again, so a slow run
/// costs no wake-ups. The outcomes waiting meanwhile are bounded by the queue's slots.
const GATHER_NAP: Duration = Duration::from_millis(1);

/// One outcome (with its queue slot) or the end of the run.
enum Received {
    Outcome(Box<SpanOutcome>, OwnedSemaphorePermit),
    Finish,
    /// Nothing came in time.
    Nothing,
}

/// The batch being gathered, and what to do with it.
struct Batch {
    outcomes: Vec<SpanOutcome>,
    /// Released after the commit, so the queue's bound covers uncommitted outcomes too.
    slots: Vec<OwnedSemaphorePermit>,
    /// After a failed commit, outcomes are dropped: the run is stopping.
    keep: bool,
}

impl Batch {
    fn take(&mut self, received: Received) -> bool {
        match received {
            Received::Outcome(outcome, slot) => {
                if self.keep {
                    self.outcomes.push(*outcome);
                }
                self.slots.push(slot);
                false
            }
            Received::Finish => true,
            Received::Nothing => false,
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

fn received(message: Result<Msg, RecvTimeoutError>) -> Received {
    match message {
        Ok(Msg::Outcome(outcome, slot)) => Received::Outcome(outcome, slot),
        Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => Received::Finish,
        Err(RecvTimeoutError::Timeout) => Received::Nothing,
    }
}

/// Gathers one batch: waits for its first outcome, then takes outcomes until there are
/// `commit_every`, the first is `commit_interval` old, or the run finishes (returns true).
fn gather(
    rx: &Receiver<Msg>,
    batch: &mut Batch,
    commit_every: usize,
    commit_interval: Duration,
) -> bool {
    if batch.take(received(
        rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    )) {
        return true;
    }
    let deadline = Instant::now() + commit_interval;
    loop {
        let before = batch.len();
        while batch.len() < commit_every {
            match rx.try_recv() {
                Ok(message) => {
                    if batch.take(received(Ok(message))) {
                        return true;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if batch.len() >= commit_every || left.is_zero() {
            return false;
        }
        if batch.len() > before {
            // Outcomes are flowing: let more queue up rather than be woken for each.
            std::thread::sleep(GATHER_NAP.min(left));
        } else if batch.take(received(rx.recv_timeout(left))) {
            return true;
        }
    }
}

fn write_loop(
    mut db: Db,
    rx: &Receiver<Msg>,
    commit_every: usize,
    commit_interval: Duration,
    gate: &WriteGate,
    failed: &AtomicBool,
) -> WriterOutput {
    let mut batch = Batch {
        outcomes: Vec::with_capacity(commit_every),
        slots: Vec::with_capacity(commit_every),
        keep: true,
    };
    let mut totals = WriteTotals::default();
    let mut error: Option<DbError> = None;
    loop {
        let finish = gather(rx, &mut batch, commit_every, commit_interval);
        if !batch.outcomes.is_empty() {
            let written = {
                let _turn = gate.enter();
                db.write_batch(&batch.outcomes)
            };
            match written {
                Ok(report) => {
                    totals.succeeded += (report.enriched - report.fell_back) as u64;
                    totals.fell_back += report.fell_back as u64;
                    totals.failed += (report.failed + report.refresh_failed) as u64;
                    totals.refreshed += report.refreshed as u64;
                    totals.refresh_failed += report.refresh_failed as u64;
                    totals.dead_lettered += report.dead_lettered.len() as u64;
                    totals.vanished += report.missing_spans.len() as u64;
                    tracing::debug!(
                        outcomes = batch.outcomes.len(),
                        enriched = report.enriched,
                        failed = report.failed,
                        "committed a batch"
                    );
                }
                Err(e) => {
                    tracing::error!(outcomes = batch.outcomes.len(), "cannot store results: {e}");
                    failed.store(true, Ordering::Release);
                    batch.keep = false;
                    error = Some(e);
                }
            }
            batch.outcomes.clear();
        }
        batch.slots.clear();
        if finish {
            return WriterOutput { db, totals, error };
        }
    }
}

#[cfg(test)]
mod tests {
    use enrich_db::{RunId, Stored};
    use enrich_types::{FailureKind, LedgerKind};

    use super::*;

    fn outcome(n: usize) -> SpanOutcome {
        SpanOutcome {
            span_hash: format!("sha256:{n}"),
            run_id: RunId(1),
            chain: None,
            attempts: Vec::new(),
            stored: Stored::Failed {
                failure_kind: LedgerKind::Attempt(FailureKind::Timeout),
                message: String::new(),
            },
        }
    }

    /// A queue holding `n` outcomes, then `Finish` when `finish`.
    fn queue(n: usize, finish: bool) -> (Sender<Msg>, Receiver<Msg>) {
        let slots = Arc::new(Semaphore::new(n));
        let (tx, rx) = mpsc::channel();
        for i in 0..n {
            let slot = Arc::clone(&slots).try_acquire_owned().expect("a slot");
            tx.send(Msg::Outcome(Box::new(outcome(i)), slot))
                .expect("send");
        }
        if finish {
            tx.send(Msg::Finish).expect("send");
        }
        (tx, rx)
    }

    fn empty_batch() -> Batch {
        Batch {
            outcomes: Vec::new(),
            slots: Vec::new(),
            keep: true,
        }
    }

    fn hashes(batch: &Batch) -> Vec<String> {
        batch.outcomes.iter().map(|o| o.span_hash.clone()).collect()
    }

    #[test]
    fn a_batch_takes_what_is_queued_up_to_commit_every_in_order() {
        let (_tx, rx) = queue(10, false);
        let mut batch = empty_batch();
        let interval = Duration::from_secs(3600);
        assert!(!gather(&rx, &mut batch, 4, interval));
        assert_eq!(
            hashes(&batch),
            ["sha256:0", "sha256:1", "sha256:2", "sha256:3"]
        );
        assert_eq!(batch.slots.len(), 4);

        // The next batch goes on where this one stopped; a run's end ends it early.
        let (tx, rx) = queue(3, true);
        drop(tx);
        let mut batch = empty_batch();
        assert!(gather(&rx, &mut batch, 4, interval));
        assert_eq!(hashes(&batch), ["sha256:0", "sha256:1", "sha256:2"]);
    }

    #[test]
    fn an_old_enough_batch_is_committed_with_what_came() {
        let (_tx, rx) = queue(2, false);
        let mut batch = empty_batch();
        // With no time to wait, the batch is what was queued.
        assert!(!gather(&rx, &mut batch, 64, Duration::ZERO));
        assert_eq!(hashes(&batch), ["sha256:0", "sha256:1"]);
    }

    #[test]
    fn after_a_failed_commit_outcomes_are_dropped_but_their_slots_freed() {
        let (_tx, rx) = queue(3, false);
        let mut batch = empty_batch();
        batch.keep = false;
        assert!(!gather(&rx, &mut batch, 3, Duration::from_secs(3600)));
        assert!(batch.outcomes.is_empty());
        assert_eq!(batch.slots.len(), 3);
    }
}
