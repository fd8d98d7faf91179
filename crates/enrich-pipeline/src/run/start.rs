//! A run's first and last database steps: recording its start (with its lease, the pending
//! count and its budgets) and its end.

use std::sync::Arc;

use enrich_db::{self as db, Lease, RunId};

use super::leases::lease_ttl;
use super::queue;
use crate::budget::{BudgetTracker, start_of_utc_day_ms};
use crate::error::PipelineError;
use crate::events::now_ms;
use crate::result::RunEnd;
use crate::shared::Inner;

/// The spans pending for a run when it starts.
pub(super) struct Pending {
    /// Spans pending that no other run holds.
    pub(super) total: u64,
    /// The spans other runs hold, by run.
    pub(super) held_elsewhere: Vec<db::HeldLeases>,
    /// The stored enrichments the run's refresh selects (`None`: no refresh).
    pub(super) refresh: Option<u64>,
}

/// What [`start`] opens.
pub(super) struct Started {
    /// The write connection, for the writer thread.
    pub(super) writer_db: db::Db,
    pub(super) run_id: RunId,
    /// The claiming connection, for the scheduler's claimer.
    pub(super) claiming_db: db::Db,
    pub(super) lease: Lease,
    pub(super) pending: Pending,
    pub(super) budget: Arc<BudgetTracker>,
}

/// Records the run's start, brings the work order up to date (code-first runs) and opens the
/// claiming connection. The pending count leaves out the spans other runs hold; dead leases are
/// reaped first, so a run right after a crashed one counts, and takes, the crashed run's spans.
pub(super) fn start(inner: &Inner) -> Result<Started, PipelineError> {
    let mut db = inner.open_writer()?;
    let run_id = db
        .start_run_with_prompt(
            &inner.settings.config_fingerprint,
            Some(&inner.prompts.fingerprint()),
        )
        .map_err(PipelineError::db("record the start of the run"))?;
    let lease = Lease {
        run_id,
        holder: db::LeaseHolder::current(),
        ttl: lease_ttl(inner),
    };
    let opened = queue::refresh_work_order(&inner.settings.work_order, &mut db)
        .and_then(|()| open_claimer(inner, run_id, &lease));
    match opened {
        Ok((claiming_db, pending, budget)) => Ok(Started {
            writer_db: db,
            run_id,
            claiming_db,
            lease,
            pending,
            budget,
        }),
        Err(error) => {
            // Best effort: the run row says it failed; the error says why.
            let _ = db.finish_run(run_id, 0, db::RunStatus::Failed);
            Err(error)
        }
    }
}

/// The claiming connection (dead leases reaped through it), the spans pending for the run and
/// its budgets.
fn open_claimer(
    inner: &Inner,
    run_id: RunId,
    lease: &Lease,
) -> Result<(db::Db, Pending, Arc<BudgetTracker>), PipelineError> {
    // The claiming connection stores no outcome: the dead-letter threshold is the writer's.
    let options = db::OpenOptions {
        mode: db::OpenMode::Existing,
        ..db::OpenOptions::default()
    };
    let mut claimer = db::Db::open_with(&inner.settings.db_path, &options)
        .map_err(PipelineError::db("open the index database to claim spans"))?;
    claimer
        .set_busy_timeout(inner.settings.busy_timeout)
        .map_err(PipelineError::db("set the busy timeout"))?;
    claimer
        .reap_dead_leases(&lease.holder)
        .map_err(PipelineError::db("delete dead span leases"))?;
    let pending = claimer
        .pending_count()
        .map_err(PipelineError::db("count pending spans"))?;
    let held = claimer
        .leases_elsewhere(run_id)
        .map_err(PipelineError::db("list the spans other runs hold"))?;
    let budget = budget_tracker(inner, &claimer)?;
    let held_spans = held.iter().map(|h| h.spans).sum::<u64>();
    let refresh = inner
        .settings
        .refresh
        .as_ref()
        .map(|filter| claimer.refresh_count(filter))
        .transpose()
        .map_err(PipelineError::db("count the enrichments to refresh"))?;
    let pending = Pending {
        total: pending.saturating_sub(held_spans),
        held_elsewhere: held,
        refresh,
    };
    Ok((claimer, pending, budget))
}

/// The run's budgets, with what today's earlier runs used and the open batches' estimates when
/// a day budget is set.
pub(crate) fn budget_tracker(
    inner: &Inner,
    db: &db::Db,
) -> Result<Arc<BudgetTracker>, PipelineError> {
    let config = inner.settings.budget;
    let day_budget = config.max_tokens_per_day.is_some() || config.max_cost_per_day.is_some();
    let today = if day_budget {
        db.usage_since(start_of_utc_day_ms(now_ms()))
            .map_err(PipelineError::db("read today's token usage"))?
    } else {
        Vec::new()
    };
    let specs: Vec<_> = inner
        .chains
        .values()
        .flat_map(|adapters| adapters.iter())
        .map(|adapter| adapter.spec().clone())
        .collect();
    // Open batches count by their estimates until their real usage is stored.
    let reserved = if !day_budget {
        (0, 0.0)
    } else {
        db.open_batch_estimates()
            .map_err(PipelineError::db("read the estimates of open batches"))?
    };
    Ok(Arc::new(
        BudgetTracker::new(config, &specs, &today).with_reserved(reserved),
    ))
}

/// Stores the run's end (its status and the spans it left alone; the writer counted what it
/// stored), on the connection the writer handed back, or on a new one when the writer thread
/// took its connection down with it. The connection is closed afterwards.
pub(super) fn record_end(
    inner: &Inner,
    db: Option<db::Db>,
    run_id: RunId,
    left_alone: u64,
    end: RunEnd,
) -> Result<(), db::DbError> {
    let mut db = match db.map_or_else(|| inner.open_writer(), Ok) {
        Ok(db) => db,
        Err(error) => {
            tracing::error!(run = run_id.0, "cannot record the end of the run: {error}");
            return Ok(());
        }
    };
    db.finish_run(run_id, left_alone, end.status()).map(drop)
}
