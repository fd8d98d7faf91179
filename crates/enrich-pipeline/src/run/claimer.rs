//! The run's claiming side, kept off the runtime's threads.
//!
//! SQLite calls block: a claim waits for the write lock (up to the busy timeout when another
//! process holds it), and so do lease renewals and the circuits' snapshot. On a runtime thread
//! that wait would stall every span's task with it, and a backend's answer that arrived meanwhile
//! would be read only after its deadline: a lock held elsewhere for 3 s would turn answered
//! requests into backend timeouts. So the claiming connection, with the work queue that pages
//! through it, lives in a [`Claimer`] that the scheduler only ever uses through
//! [`OffRuntime::call`]: each call moves it to tokio's blocking pool and back. A backend's
//! deadline then measures only the backend.
//!
//! Calls are few: the scheduler takes spans [`Claimer::take`] up to `concurrency` at a time
//! into a buffer of its own, so a call (a hand-over to the blocking pool and back, a few
//! microseconds) is shared by many spans, and a page claimed ahead still costs one call. The
//! blocking pool, unlike a thread of our own, also keeps tokio's paused test clock from jumping
//! ahead while a call runs.

use enrich_db::{Db, DbError, Lease, RunId};

use super::queue::{Dropped, Taken, WorkQueue};
use crate::writer::WriteGate;

/// The claiming connection, the work queue that pages through it, the run's lease and the gate
/// it shares with the writer.
pub(crate) struct Claimer {
    pub(crate) db: Db,
    pub(crate) queue: WorkQueue,
    pub(crate) lease: Lease,
    pub(crate) gate: WriteGate,
}

impl Claimer {
    /// Up to `want` spans from the work queue, claiming pages as it goes; fewer (or none) when
    /// the queue runs dry.
    pub(crate) fn take(&mut self, want: usize) -> Result<Vec<Taken>, DbError> {
        let mut ready = Vec::with_capacity(want.min(4096));
        while ready.len() < want {
            let Some(taken) = self
                .queue
                .next(&mut self.db, Some((&self.lease, &self.gate)))?
            else {
                break;
            };
            ready.push(taken);
        }
        Ok(ready)
    }

    /// Extends the run's leases (see [`Db::renew_leases`]).
    pub(crate) fn renew_leases(&mut self) -> Result<usize, DbError> {
        let _turn = self.gate.enter();
        self.db.renew_leases(&self.lease)
    }

    /// Writes one `llmc_meta` value, inside the gate.
    pub(crate) fn set_meta(&mut self, key: &str, value: &str) -> Result<(), DbError> {
        let _turn = self.gate.enter();
        self.db.set_meta(key, value)
    }

    /// Drops the pages read and not handed out (the run takes no more spans).
    pub(crate) fn drop_pages(&mut self) -> Dropped {
        self.queue.drop_pages()
    }

    /// Records where the pending spans of each lane now begin, for the next run (best effort:
    /// a frontier is a shortcut, and a failure to record one is logged). Called once the writer
    /// has committed everything and ended, so no gate is needed.
    pub(crate) fn advance_frontiers(&mut self, run: RunId) {
        for lane in self.queue.frontier_lanes() {
            match self.db.advance_frontier(&lane) {
                Ok(frontier) => tracing::debug!(
                    run = run.0,
                    ?lane,
                    weight = frontier.weight,
                    span_id = frontier.span_id,
                    "pending frontier recorded"
                ),
                Err(error) => tracing::warn!(
                    run = run.0,
                    ?lane,
                    "cannot record where pending spans begin: {error}"
                ),
            }
        }
    }
}

/// Runs `f` on tokio's blocking pool and returns what it returns; a panic in `f` goes on in
/// the caller.
pub(crate) async fn off_runtime<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // A blocking task is never cancelled; the runtime shutting down drops this future
            // before it could see that.
            Err(error) => panic!("a database call ended without a result: {error}"),
        },
    }
}

/// A value that lives on tokio's blocking pool while it is used: see the module documentation.
pub(crate) struct OffRuntime<T> {
    value: Option<T>,
}

impl<T: Send + 'static> OffRuntime<T> {
    pub(crate) fn new(value: T) -> Self {
        Self { value: Some(value) }
    }

    /// Runs `f` on the value on tokio's blocking pool, and returns what it returns. A panic in
    /// `f` goes on in the caller.
    pub(crate) async fn call<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> R {
        let mut value = self
            .value
            .take()
            .expect("a call that was dropped half-way took the value with it");
        let (value, result) = off_runtime(move || {
            let result = f(&mut value);
            (value, result)
        })
        .await;
        self.value = Some(value);
        result
    }
}
