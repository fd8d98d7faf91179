//! One run: its start ([`start()`]), the scheduler that pages through pending spans and hands them
//! to tasks ([`scheduler`]), each span's work ([`span`]), and its end (the writer's totals, the
//! run's row, the summary).
//!
//! Module map: [`claimer`] (the claiming connection, off the runtime) and [`queue`] (the work
//! order) feed [`intake`]; [`batches`] numbers batches and counts how spans ended; [`passes`]
//! holds the by-tier passes; [`outage`] the spans waiting for a backend; [`leases`] the lease
//! clock; [`observer`] hears attempts and circuits; [`flights`] the span tasks in flight.

use std::sync::Arc;

use enrich_backends::{AttemptObserver, BackendOutage, Cascade, SpanStart};
use enrich_db::{PendingSpan, RunId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::RunControl;
use crate::error::PipelineError;
use crate::events::{Event, now_ms};
use crate::provenance::{RunProvenance, model_digests};
use crate::result::{RunEnd, RunOutcome, RunSummary, SpanResult};
use crate::shared::Inner;
use crate::writer::{WriteGate, WriteTotals, Writer, WriterHandle};

mod batches;
mod claimer;
mod flights;
mod intake;
mod leases;
mod observer;
mod outage;
mod passes;
pub(crate) mod queue;
mod scheduler;
pub(crate) mod span;
pub(crate) mod start;

use claimer::{Claimer, off_runtime};
use observer::AttemptEvents;
use queue::WorkQueue;
use scheduler::Scheduler;
use span::millis;
use start::{Pending, Started, record_end, start};

/// What every span task of one run shares.
struct RunCtx {
    inner: Arc<Inner>,
    run_id: RunId,
    cascade: Cascade,
    abort: CancellationToken,
    writer: WriterHandle,
    /// What every enrichment of the run records about how it was made.
    provenance: RunProvenance,
}

/// Where a span's cascade starts: the backend of its by-tier pass, if any (the last one it may
/// reach), the first backend it tries, the attempts it already had in this run, and how often
/// it came back unavailable.
#[derive(Debug, Clone, Copy, Default)]
struct Resume {
    tier: Option<usize>,
    start: usize,
    prior: SpanStart,
    waits: u32,
}

/// A span to hand out, with the attempts it already had in this run and whether its batch has
/// no span left after it.
struct Next {
    span: PendingSpan,
    batch: u64,
    prior: SpanStart,
    used_up: bool,
}

/// A span to send to a task: its batch and where its cascade starts.
struct ToSend {
    span: PendingSpan,
    batch: u64,
    resume: Resume,
}

/// What one span's task hands back: its result and the chain that served it.
struct Processed {
    result: SpanResult,
    chain: String,
}

/// A run under way: what its tasks share, its writer and its scheduler.
struct Running<'a> {
    ctx: Arc<RunCtx>,
    writer: Writer,
    sched: Scheduler<'a>,
    observer: Arc<AttemptEvents>,
    pending: Pending,
}

/// A run that ended: what its summary is made of.
struct Ended {
    run_id: RunId,
    end: RunEnd,
    pending: Pending,
    totals: WriteTotals,
    outages: Vec<BackendOutage>,
    failure: Option<PipelineError>,
}

/// One run; `on_result` sees every span's result as it finishes.
pub(crate) async fn execute(
    inner: &Arc<Inner>,
    limit: Option<u64>,
    control: &RunControl,
    mut on_result: impl FnMut(SpanResult),
) -> RunOutcome {
    let started = Instant::now();
    let mut run = match begin(inner, limit, control).await {
        Ok(run) => run,
        Err(error) => {
            return RunOutcome {
                summary: None,
                error: Some(error),
            };
        }
    };
    let failure = run
        .sched
        .drive(&run.ctx, &run.writer, control, &mut on_result)
        .await;
    let sched = &mut run.sched;
    sched.publish_circuits(&run.ctx.cascade).await;
    let (budget_stop, unsent) = (sched.budget_stop, sched.outages.unsent());
    let (counts, batches) = (sched.batches.counts(), sched.batches.finished());
    let (tokens, cost) = run.observer.budget.used();
    let ended = wind_down(inner, run, control, failure).await;
    let summary = RunSummary {
        run_id: ended.run_id,
        end: ended.end,
        total_pending: ended.pending.total,
        held_elsewhere: ended.pending.held_elsewhere,
        refresh_selected: ended.pending.refresh,
        attempted: ended.totals.succeeded + ended.totals.fell_back + ended.totals.failed,
        succeeded: ended.totals.succeeded,
        refreshed: ended.totals.refreshed,
        fell_back: ended.totals.fell_back,
        failed: ended.totals.failed,
        refresh_failed: ended.totals.refresh_failed,
        skipped: counts.skipped,
        cancelled: counts.cancelled,
        unsent,
        outages: ended.outages,
        dead_lettered: ended.totals.dead_lettered,
        vanished: ended.totals.vanished,
        batches,
        duration: started.elapsed(),
        budget_stop,
        tokens,
        cost,
        limits: inner.limits(),
    };
    announce_end(inner, &summary);
    RunOutcome {
        summary: Some(summary),
        error: ended.failure,
    }
}

/// Starts a run: records it, spawns its writer, sets up its cascade and observer, announces it
/// and places its work queue at the pending frontiers.
async fn begin<'a>(
    inner: &'a Arc<Inner>,
    limit: Option<u64>,
    control: &RunControl,
) -> Result<Running<'a>, PipelineError> {
    let settings = &inner.settings;
    let Started {
        writer_db,
        run_id,
        claiming_db,
        lease,
        pending,
        budget,
    } = {
        let inner = Arc::clone(inner);
        off_runtime(move || start(&inner)).await?
    };
    let gate = WriteGate::default();
    let writer = Writer::spawn(
        writer_db,
        settings.commit_every,
        settings.commit_interval,
        gate.clone(),
    )?;
    let observer = Arc::new(AttemptEvents::new(
        Arc::clone(&inner.events),
        run_id,
        budget,
    ));
    for pool in &inner.pools {
        pool.set_observer(Some(Arc::clone(&observer) as Arc<dyn AttemptObserver>));
    }
    for limit in &inner.limits {
        limit.set_observer(Some(Arc::clone(&observer) as Arc<dyn AttemptObserver>));
    }
    let cascade = Cascade::new(settings.cascade.clone())
        .with_observer(Arc::clone(&observer) as Arc<dyn AttemptObserver>);
    // Each backend's model digest, asked once for the run.
    let provenance = RunProvenance {
        run_id,
        prompt_fingerprint: inner.prompts.fingerprint(),
        digests: model_digests(inner.chains.values().flat_map(|chain| chain.iter())).await,
    };
    let ctx = Arc::new(RunCtx {
        inner: Arc::clone(inner),
        run_id,
        cascade,
        abort: control.abort_token().clone(),
        writer: writer.handle(),
        provenance,
    });
    inner.events.on_event(&Event::RunStarted {
        at_ms: now_ms(),
        run_id,
        total_pending: pending.total,
        held_elsewhere: pending.held_elsewhere.clone(),
        refresh_selected: pending.refresh,
        concurrency: settings.concurrency,
        batch_size: settings.batch_size,
        limit,
        config_fingerprint: settings.config_fingerprint.clone(),
    });
    let lease_ttl = lease.ttl;
    let mut queue = WorkQueue::new(&settings.work_order, settings.batch_size, limit);
    if let Some(filter) = &settings.refresh {
        queue = queue.with_refresh(&settings.work_order, filter.clone(), settings.refresh_first);
    }
    let claimer = Claimer {
        db: claiming_db,
        queue,
        lease,
        gate,
    };
    let observed = Arc::clone(&observer);
    let mut sched = Scheduler::new(inner, run_id, claimer, lease_ttl, observed, limit);
    sched.start_at_frontiers().await;
    Ok(Running {
        ctx,
        writer,
        sched,
        observer,
        pending,
    })
}

/// Ends a run once nothing is in flight: the writer commits everything, the frontiers advance,
/// and the run's end is recorded.
async fn wind_down(
    inner: &Arc<Inner>,
    run: Running<'_>,
    control: &RunControl,
    mut failure: Option<PipelineError>,
) -> Ended {
    let Running {
        ctx,
        writer,
        mut sched,
        pending,
        ..
    } = run;
    for pool in &inner.pools {
        pool.set_observer(None);
    }
    for limit in &inner.limits {
        limit.set_observer(None);
    }
    let outages = if sched.outages.ended_the_run() {
        ctx.cascade.outages()
    } else {
        Vec::new()
    };
    let run_id = ctx.run_id;
    drop(ctx);

    // Everything queued is committed before the run is recorded as over.
    let (db, totals) = match writer.finish().await {
        Ok(output) => {
            if let Some(error) = output.error {
                failure = Some(PipelineError::write(error));
            }
            (Some(output.db), output.totals)
        }
        Err(panicked) => {
            failure.get_or_insert(panicked);
            (None, WriteTotals::default())
        }
    };
    inner.sources.close_files();
    sched.advance_frontiers().await;
    let end = match (&failure, sched.end(control).await) {
        (Some(_), _) => RunEnd::Failed,
        (None, Ok(end)) => end,
        (None, Err(error)) => {
            failure = Some(error);
            RunEnd::Failed
        }
    };
    let left_alone = sched.batches.counts().left_alone();
    let recorded = {
        let inner = Arc::clone(inner);
        off_runtime(move || record_end(&inner, db, run_id, left_alone, end)).await
    };
    if let Err(error) = recorded {
        tracing::error!(run = run_id.0, "cannot record the end of the run: {error}");
        failure.get_or_insert(PipelineError::db("record the end of the run")(error));
    }
    Ended {
        run_id,
        end,
        pending,
        totals,
        outages,
        failure,
    }
}

/// Announces the run's end in a [`Event::RunFinished`]: the counts of what was committed (a
/// span whose outcome did not reach the database, because the writer failed or its span
/// vanished, is not counted as enriched or failed).
fn announce_end(inner: &Inner, summary: &RunSummary) {
    inner.events.on_event(&Event::RunFinished {
        at_ms: now_ms(),
        run_id: summary.run_id,
        status: summary.end.status(),
        end: summary.end,
        total_pending: summary.total_pending,
        attempted: summary.attempted,
        succeeded: summary.succeeded,
        fell_back: summary.fell_back,
        failed: summary.failed,
        skipped: summary.skipped,
        cancelled: summary.cancelled,
        unsent: summary.unsent,
        dead_lettered: summary.dead_lettered,
        duration_ms: millis(summary.duration),
    });
}
