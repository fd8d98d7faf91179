//! The single database writer: a thread that owns the write connection and commits span
//! outcomes in batches.
//!
//! Spans finish on many tasks; their outcomes go through a bounded queue to this one thread,
//! which commits every `commit_every` outcomes, when its oldest uncommitted outcome is
//! `commit_interval` old, and at the end. One writer means no lock contention between our own
//! connections and one `IMMEDIATE` transaction per batch rather than per span. The queue is
//! bounded by a semaphore whose slots are released only once an outcome is committed, so a slow
//! disk slows the spans down instead of piling outcomes up in memory.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use enrich_db::{Db, DbError, SpanOutcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::PipelineError;

enum Msg {
    Outcome(Box<SpanOutcome>, OwnedSemaphorePermit),
    Finish,
}

/// What the writer stored over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriteTotals {
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

impl Writer {
    /// Starts the writer thread on `db`.
    pub(crate) fn spawn(
        db: Db,
        commit_every: usize,
        commit_interval: Duration,
    ) -> Result<Self, PipelineError> {
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("enrich-db-writer".to_owned())
            .spawn(move || write_loop(db, &rx, commit_every, commit_interval, &flag))
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

fn write_loop(
    mut db: Db,
    rx: &Receiver<Msg>,
    commit_every: usize,
    commit_interval: Duration,
    failed: &AtomicBool,
) -> WriterOutput {
    let mut pending: Vec<SpanOutcome> = Vec::with_capacity(commit_every);
    // Released after the commit, so the queue's bound covers uncommitted outcomes too.
    let mut slots: Vec<OwnedSemaphorePermit> = Vec::with_capacity(commit_every);
    let mut oldest: Option<Instant> = None;
    let mut totals = WriteTotals::default();
    let mut error: Option<DbError> = None;
    loop {
        let received = match oldest {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => {
                rx.recv_timeout((since + commit_interval).saturating_duration_since(Instant::now()))
            }
        };
        let finish = match received {
            Ok(Msg::Outcome(outcome, slot)) => {
                // After a failed commit, outcomes are dropped: the run is stopping.
                if error.is_none() {
                    pending.push(*outcome);
                }
                slots.push(slot);
                let since = *oldest.get_or_insert_with(Instant::now);
                if pending.len() < commit_every && since.elapsed() < commit_interval {
                    continue;
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => true,
        };
        if !pending.is_empty() {
            match db.write_batch(&pending) {
                Ok(report) => {
                    totals.dead_lettered += report.dead_lettered.len() as u64;
                    totals.vanished += report.missing_spans.len() as u64;
                    tracing::debug!(
                        outcomes = pending.len(),
                        enriched = report.enriched,
                        failed = report.failed,
                        "committed a batch"
                    );
                }
                Err(e) => {
                    tracing::error!(outcomes = pending.len(), "cannot store results: {e}");
                    failed.store(true, Ordering::Release);
                    error = Some(e);
                }
            }
            pending.clear();
        }
        slots.clear();
        oldest = None;
        if finish {
            return WriterOutput { db, totals, error };
        }
    }
}
