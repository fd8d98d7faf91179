//! One run: the scheduler that pages through pending spans, the per-span work, and the
//! bookkeeping of batches and counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use enrich_backends::{
    AttemptObserver, AttemptRecord, Cascade, CircuitSnapshot, CircuitTransition, Decision,
    SpanIdentity, SpanStart,
};
use enrich_config::{DEFAULT_TIMEOUT_SECONDS, Schedule};
use enrich_db::{self as db, Lease, PendingSpan, RunId};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budget::{BudgetStop, BudgetTracker, start_of_utc_day_ms};
use crate::control::{RunControl, StopLevel};
use crate::error::PipelineError;
use crate::events::{Event, EventSink, now_ms};
use crate::pipeline::Inner;
use crate::result::{RunEnd, RunOutcome, RunSummary, SpanCounts, SpanResult, SpanStatus};
use crate::writer::{WriteGate, WriteTotals, Writer, WriterHandle, panic_message};

mod claimer;
mod outage;
pub(crate) mod queue;
mod span;

use claimer::{Claimer, OffRuntime, Ready, off_runtime};
use queue::WorkQueue;
use span::{emit_finished, millis, process_span, skipped};

/// What every span task of one run shares.
struct RunCtx {
    inner: Arc<Inner>,
    run_id: RunId,
    cascade: Cascade,
    abort: CancellationToken,
    writer: WriterHandle,
}

/// Hears every attempt and circuit change of the run (the cascade's and the host pools'):
/// emits `attempt_finished` and `circuit_changed`, counts tokens against the budgets, and marks
/// the circuits for publishing.
struct AttemptEvents {
    sink: Arc<dyn EventSink>,
    run_id: RunId,
    budget: Arc<BudgetTracker>,
    circuits_changed: AtomicBool,
}

impl AttemptObserver for AttemptEvents {
    fn on_attempt(&self, span: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>) {
        self.budget.record(record);
        self.sink.on_event(&Event::AttemptFinished {
            at_ms: now_ms(),
            run_id: self.run_id,
            span_hash: span.span_hash.to_string(),
            attempt: record.clone(),
            next: next.map(Into::into),
        });
    }

    fn on_circuit(&self, transition: &CircuitTransition) {
        self.circuits_changed.store(true, Ordering::Release);
        self.sink.on_event(&Event::CircuitChanged {
            at_ms: now_ms(),
            run_id: self.run_id,
            transition: transition.clone(),
        });
    }
}

/// The circuits of a run as `enrich status` reads them from `llmc_meta`
/// ([`db::CIRCUITS_META_KEY`]).
#[derive(serde::Serialize)]
struct PublishedCircuits<'a> {
    run_id: RunId,
    updated_at_ms: u64,
    circuits: &'a [CircuitSnapshot],
}

/// One page of pending spans and how its spans ended.
#[derive(Default)]
struct BatchProgress {
    /// Spans of the page not yet handed out.
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

/// The scheduler's state.
struct Scheduler<'a> {
    inner: &'a Arc<Inner>,
    run_id: RunId,
    /// The claiming connection (a read-write one: claiming writes leases) and the work queue
    /// that pages through it, used off the runtime's threads only (see [`claimer`]).
    claimer: OffRuntime<Claimer>,
    /// Spans taken from the work queue and not handed out yet, in order.
    ready: VecDeque<Ready>,
    /// The work queue has no span left for this run.
    queue_dry: bool,
    /// The pages read were dropped (the run takes no more spans).
    pages_dropped: bool,
    /// How long the run's leases live unless renewed.
    lease_ttl: Duration,
    /// When the run's leases were last renewed.
    renewed_at: Instant,
    /// Spans of a page were dropped when the run stopped taking spans.
    left_behind: bool,
    /// The most spans the run takes from the queue.
    limit: Option<u64>,
    taken: u64,
    counts: SpanCounts,
    batches: BTreeMap<u64, BatchProgress>,
    batches_done: u64,
    /// The run's observer: its budget tracker and whether circuits changed.
    observer: Arc<AttemptEvents>,
    /// The budget that stopped the run from taking spans, once one did.
    budget_stop: Option<BudgetStop>,
    /// By-tier passes (see [`Schedule::ByTier`]): 0 takes pending spans from the work queue on
    /// their chain's first backend; pass `n` retries the spans pass `n - 1` deferred on their
    /// chain's backend `n`.
    pass: usize,
    /// Spans this pass deferred to the next one.
    deferred: Vec<Deferred>,
    /// Spans the current pass (1 and later) still has to hand out, in the order they were
    /// deferred.
    retry: VecDeque<Deferred>,
    /// The batch of the current pass (1 and later) being handed out, and spans left in it.
    retry_batch: Option<(u64, usize)>,
    /// The highest batch number used so far.
    last_batch: u64,
    /// Spans whose backends were unavailable, waiting for one of them to be usable again (at
    /// most [`Scheduler::park_limit`] taken from the queue for it, plus the spans in flight).
    parked: VecDeque<Parked>,
    /// Since when no backend has answered a span while spans were unavailable.
    outage_since: Option<Instant>,
    /// The run stopped taking spans: no backend answered for `outage_grace`.
    outage_stop: bool,
    /// A span's whole chain is skipped for the run: the run takes no more spans.
    backends_gone: bool,
    /// Spans taken and left pending because no backend could serve them.
    unsent: u64,
    /// The last wait announced in a [`Event::BackendWaiting`]: backend and whole seconds left.
    announced: Option<(String, Option<u64>)>,
}

/// A span a by-tier pass could not enrich on its backend and left for the next pass: its id
/// and the attempts it already had (16 bytes, so deferring a whole index stays small).
#[derive(Debug, Clone, Copy)]
struct Deferred {
    span_id: i64,
    prior: SpanStart,
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

/// A span no backend of its chain could serve: it waits in the scheduler (its lease kept, its
/// batch open) until one of the backends it missed is usable again.
#[derive(Debug, Clone)]
struct Parked {
    span_id: i64,
    batch: u64,
    /// Its chain, as routed.
    chain: String,
    /// The chain's backends that were unavailable for it, by index, in order.
    wanted: Vec<usize>,
    tier: Option<usize>,
    prior: SpanStart,
    /// How often it came back unavailable in this run.
    waits: u32,
    /// Not handed out before this: a span that came back unavailable from a backend whose
    /// circuit did not open (a 503 storm, no circuit breaker) waits the cascade's backoff,
    /// growing with `waits`, rather than going straight back.
    retry_at: Instant,
}

/// What the scheduler knows of a span in flight.
struct InFlight {
    span_hash: String,
    batch: u64,
    span_id: i64,
    resume: Resume,
}

/// What one span's task hands back: its result and the chain that served it.
struct Processed {
    result: SpanResult,
    chain: String,
}

impl Scheduler<'_> {
    /// Whether a budget forbids taking another span; says so once, in an event.
    fn over_budget(&mut self) -> bool {
        if self.budget_stop.is_some() {
            return true;
        }
        let Some(stop) = self.observer.budget.reached() else {
            return false;
        };
        tracing::warn!(run = self.run_id.0, "{stop}; taking no more spans");
        self.inner.events.on_event(&Event::BudgetReached {
            at_ms: now_ms(),
            run_id: self.run_id,
            budget: stop,
        });
        self.budget_stop = Some(stop);
        true
    }

    /// Writes the circuits of the cascade and the host pools to `llmc_meta` for `enrich
    /// status`, when they changed since the last time. Best effort: a failure is logged.
    async fn publish_circuits(&mut self, cascade: &Cascade) {
        if !self.observer.circuits_changed.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut circuits = cascade.circuits();
        for pool in &self.inner.pools {
            circuits.extend(pool.circuits());
        }
        let published = PublishedCircuits {
            run_id: self.run_id,
            updated_at_ms: now_ms(),
            circuits: &circuits,
        };
        let written = match serde_json::to_string(&published) {
            Ok(json) => {
                self.claimer
                    .call(move |claimer| {
                        claimer
                            .set_meta(db::CIRCUITS_META_KEY, &json)
                            .map_err(|e| e.to_string())
                    })
                    .await
            }
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = written {
            tracing::warn!(
                run = self.run_id.0,
                "cannot publish the circuits' state: {error}"
            );
        }
    }

    /// When the run's leases are renewed next: every quarter of their life.
    fn renew_at(&self) -> Instant {
        self.renewed_at + self.lease_ttl / 4
    }

    /// Extends the run's leases (see [`db::Db::renew_leases`]). The next renewal is due a
    /// quarter of their life later, also after a failure (which stops the run).
    async fn renew_leases(&mut self) -> Result<(), PipelineError> {
        let renewed = self.claimer.call(Claimer::renew_leases).await;
        self.renewed_at = Instant::now();
        renewed
            .map(drop)
            .map_err(PipelineError::db("renew the run's span leases"))
    }

    /// The span with this id, read again from the index off the runtime; `None` when it was
    /// re-indexed away. `action` names the read in an error.
    async fn span_by_id(
        &mut self,
        id: i64,
        action: &'static str,
    ) -> Result<Option<PendingSpan>, PipelineError> {
        self.claimer
            .call(move |claimer| claimer.db.span_by_id(id))
            .await
            .map_err(PipelineError::db(action))
    }

    /// The next span to hand out: from the work queue in the first pass, from the deferred
    /// spans in later by-tier passes; `None` when the pass has nothing left.
    async fn next_span(&mut self) -> Result<Option<Next>, PipelineError> {
        if self.pass > 0 {
            return self.next_deferred().await;
        }
        Ok(self.next_queued().await?.map(|ready| Next {
            span: ready.span,
            batch: ready.batch,
            prior: SpanStart::default(),
            used_up: ready.used_up,
        }))
    }

    /// The next deferred span of a later pass, in batches of `batch_size`; spans re-indexed
    /// away meanwhile are left out.
    async fn next_deferred(&mut self) -> Result<Option<Next>, PipelineError> {
        while let Some(next) = self.retry.pop_front() {
            let Some(span) = self
                .span_by_id(next.span_id, "read a deferred span")
                .await?
            else {
                continue;
            };
            let batch = match self.retry_batch {
                Some((batch, left)) if left > 0 => batch,
                _ => {
                    self.last_batch += 1;
                    self.batches.insert(
                        self.last_batch,
                        BatchProgress {
                            open: true,
                            ..BatchProgress::default()
                        },
                    );
                    self.retry_batch = Some((self.last_batch, self.inner.settings.batch_size));
                    self.last_batch
                }
            };
            if let Some((_, left)) = &mut self.retry_batch {
                *left -= 1;
            }
            let used_up =
                self.retry.is_empty() || self.retry_batch.is_some_and(|(_, left)| left == 0);
            return Ok(Some(Next {
                span,
                batch,
                prior: next.prior,
                used_up,
            }));
        }
        Ok(None)
    }

    /// Starts the next by-tier pass over the spans this one deferred; false when there is none.
    fn next_pass(&mut self) -> bool {
        if self.inner.settings.schedule != Schedule::ByTier || self.deferred.is_empty() {
            return false;
        }
        self.pass += 1;
        self.retry = std::mem::take(&mut self.deferred).into();
        self.retry_batch = None;
        tracing::info!(
            run = self.run_id.0,
            pass = self.pass,
            spans = self.retry.len(),
            "by-tier pass {}: the spans the last pass left go to their chain's backend {}",
            self.pass,
            self.pass + 1
        );
        true
    }

    /// The next span of the work queue; when none is left in hand, takes up to `concurrency`
    /// more (claiming pages as needed) in one call off the runtime. `None` when nothing is
    /// pending behind the cursors.
    async fn next_queued(&mut self) -> Result<Option<Ready>, PipelineError> {
        if self.ready.is_empty() && !self.queue_dry {
            let mut want = self.inner.settings.concurrency.max(1);
            if let Some(limit) = self.limit {
                let left = usize::try_from(limit.saturating_sub(self.taken)).unwrap_or(usize::MAX);
                want = want.min(left.max(1));
            }
            let taken = self
                .claimer
                .call(move |claimer| claimer.take(want))
                .await
                .map_err(PipelineError::db("claim pending spans"))?;
            self.queue_dry = taken.len() < want;
            self.ready.extend(taken);
        }
        let Some(ready) = self.ready.pop_front() else {
            return Ok(None);
        };
        self.last_batch = self.last_batch.max(ready.batch);
        if ready.opened {
            self.batches.insert(
                ready.batch,
                BatchProgress {
                    open: true,
                    ..BatchProgress::default()
                },
            );
        }
        Ok(Some(ready))
    }

    /// Called once a span of `batch` is handed out or skipped: the batch is complete once its
    /// page is used up (`used_up`) and its spans are done.
    fn handed_out(&mut self, batch: u64, used_up: bool) {
        if used_up {
            self.close_batch(batch);
        }
    }

    /// Drops the rest of the pages read and the spans in hand (the run takes no more spans from
    /// the queue); their leases end with the run.
    async fn drop_page(&mut self) {
        if self.pages_dropped {
            return;
        }
        self.pages_dropped = true;
        let in_hand = std::mem::take(&mut self.ready);
        let dropped = self.claimer.call(Claimer::drop_pages).await;
        if dropped.spans > 0 || !in_hand.is_empty() {
            self.left_behind = true;
        }
        for batch in in_hand
            .iter()
            .map(|ready| ready.batch)
            .chain(dropped.batches)
        {
            self.close_batch(batch);
        }
    }

    /// Drops the deferred spans not handed out (the run stops: they stay pending, and their
    /// leases end with the run).
    fn abandon_deferred(&mut self) {
        if !self.retry.is_empty() || !self.deferred.is_empty() {
            self.left_behind = true;
            self.retry.clear();
            self.deferred.clear();
        }
        if let Some((batch, _)) = self.retry_batch.take() {
            self.close_batch(batch);
        }
    }

    fn close_batch(&mut self, batch: u64) {
        if let Some(progress) = self.batches.get_mut(&batch) {
            progress.open = false;
        }
        self.emit_if_done(batch);
    }

    fn record(&mut self, batch: u64, status: SpanStatus, dispatched: bool) {
        self.counts.add(status);
        if let Some(progress) = self.batches.get_mut(&batch) {
            progress.counts.add(status);
            if dispatched {
                progress.outstanding -= 1;
            }
        }
        self.emit_if_done(batch);
    }

    fn emit_if_done(&mut self, batch: u64) {
        let done = self
            .batches
            .get(&batch)
            .is_some_and(|p| !p.open && p.outstanding == 0);
        if !done {
            return;
        }
        let Some(progress) = self.batches.remove(&batch) else {
            return;
        };
        if progress.spans() == 0 {
            return;
        }
        self.batches_done += 1;
        let c = progress.counts;
        self.inner.events.on_event(&Event::BatchFinished {
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

    /// Records where the pending spans of each lane now begin (see
    /// [`Claimer::advance_frontiers`]).
    async fn advance_frontiers(&mut self) {
        let run = self.run_id;
        self.claimer
            .call(move |claimer| claimer.advance_frontiers(run))
            .await;
    }

    /// Whether spans remain pending that this run did not take.
    async fn more_pending(&mut self) -> Result<bool, PipelineError> {
        if self.left_behind || !self.ready.is_empty() {
            return Ok(true);
        }
        self.claimer
            .call(|claimer| claimer.queue.more_pending(&mut claimer.db))
            .await
            .map_err(PipelineError::db("read pending spans"))
    }
}

/// A span to hand out, with the attempts it already had in this run and whether its batch has
/// no span left after it.
struct Next {
    span: PendingSpan,
    batch: u64,
    prior: SpanStart,
    used_up: bool,
}

/// One run; `on_result` sees every span's result as it finishes.
pub(crate) async fn execute(
    inner: &Arc<Inner>,
    limit: Option<u64>,
    control: &RunControl,
    mut on_result: impl FnMut(SpanResult),
) -> RunOutcome {
    let started = Instant::now();
    let settings = &inner.settings;
    let started_run = {
        let inner = Arc::clone(inner);
        off_runtime(move || start(&inner)).await
    };
    let not_started = |error| RunOutcome {
        summary: None,
        error: Some(error),
    };
    let (db, run_id, claimer, lease, (total_pending, held_elsewhere), budget) = match started_run {
        Ok(started) => started,
        Err(error) => return not_started(error),
    };
    let gate = WriteGate::default();
    let writer = match Writer::spawn(
        db,
        settings.commit_every,
        settings.commit_interval,
        gate.clone(),
    ) {
        Ok(writer) => writer,
        Err(error) => return not_started(error),
    };
    let observer = Arc::new(AttemptEvents {
        sink: Arc::clone(&inner.events),
        run_id,
        budget,
        circuits_changed: AtomicBool::new(false),
    });
    for pool in &inner.pools {
        pool.set_observer(Some(Arc::clone(&observer) as Arc<dyn AttemptObserver>));
    }
    let cascade = Cascade::new(settings.cascade.clone())
        .with_observer(Arc::clone(&observer) as Arc<dyn AttemptObserver>);
    let ctx = Arc::new(RunCtx {
        inner: Arc::clone(inner),
        run_id,
        cascade,
        abort: control.abort_token().clone(),
        writer: writer.handle(),
    });
    inner.events.on_event(&Event::RunStarted {
        at_ms: now_ms(),
        run_id,
        total_pending,
        held_elsewhere: held_elsewhere.clone(),
        concurrency: settings.concurrency,
        batch_size: settings.batch_size,
        limit,
        config_fingerprint: settings.config_fingerprint.clone(),
    });

    let lease_ttl = lease.ttl;
    let claimer = Claimer {
        db: claimer,
        queue: WorkQueue::new(&settings.work_order, settings.batch_size, limit),
        lease,
        gate,
    };
    let mut sched = Scheduler::new(
        inner,
        run_id,
        claimer,
        lease_ttl,
        Arc::clone(&observer),
        limit,
    );
    let frontiers = sched
        .claimer
        .call(|claimer| claimer.queue.start_at_frontiers(&claimer.db))
        .await;
    if let Err(error) = frontiers {
        // A frontier is a shortcut: without one the run reads from the first span.
        tracing::warn!(
            run = run_id.0,
            "cannot read where pending spans begin: {error}"
        );
    }
    let mut failure = sched
        .drive(&ctx, &writer, control, limit, &mut on_result)
        .await;
    sched.publish_circuits(&ctx.cascade).await;
    for pool in &inner.pools {
        pool.set_observer(None);
    }
    let outages = if sched.unsent > 0 || sched.outage_stop || sched.backends_gone {
        ctx.cascade.outages()
    } else {
        Vec::new()
    };
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
    let counts = sched.counts;
    let recorded = {
        let inner = Arc::clone(inner);
        off_runtime(move || record_end(&inner, db, run_id, counts.left_alone(), end)).await
    };
    if let Err(error) = recorded {
        tracing::error!(run = run_id.0, "cannot record the end of the run: {error}");
        failure.get_or_insert(PipelineError::db("record the end of the run")(error));
    }

    // The counts of what was committed: a span whose outcome did not reach the database (the
    // writer failed, its span vanished) is not counted as enriched or failed.
    let summary = RunSummary {
        run_id,
        end,
        total_pending,
        held_elsewhere,
        attempted: totals.succeeded + totals.fell_back + totals.failed,
        succeeded: totals.succeeded,
        fell_back: totals.fell_back,
        failed: totals.failed,
        skipped: counts.skipped,
        cancelled: counts.cancelled,
        unsent: sched.unsent,
        outages,
        dead_lettered: totals.dead_lettered,
        vanished: totals.vanished,
        batches: sched.batches_done,
        duration: started.elapsed(),
        budget_stop: sched.budget_stop,
        tokens: observer.budget.used().0,
        cost: observer.budget.used().1,
    };
    inner.events.on_event(&Event::RunFinished {
        at_ms: now_ms(),
        run_id,
        status: end.status(),
        end,
        total_pending,
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
    RunOutcome {
        summary: Some(summary),
        error: failure,
    }
}

/// The shortest a span lease lives between renewals.
const MIN_LEASE_TTL: Duration = Duration::from_secs(600);

/// How long the run's span leases live between renewals: twice the longest one span can spend
/// in the cascade (every attempt it may make at the slowest backend's request timeout, each
/// followed by the longest backoff), at least [`MIN_LEASE_TTL`]. The request timeout is the
/// configured one whoever applies it ([`enrich_backends::Deadline`]): a queueing decorator's
/// wait has no deadline and must not count as one. The scheduler renews the leases every
/// quarter of that on a timer, so a lease only runs out when its run is gone or hung; a run
/// killed on this host loses its leases at once anyway (see [`db::LeaseHolder`]).
fn lease_ttl(inner: &Inner) -> Duration {
    let slowest = inner
        .chains
        .values()
        .flat_map(|adapters| adapters.iter())
        .map(|adapter| adapter.deadline().request_timeout())
        .max()
        .unwrap_or_else(|| Duration::from_secs_f64(DEFAULT_TIMEOUT_SECONDS));
    let policy = &inner.settings.cascade;
    let per_attempt = slowest.saturating_add(policy.backoff.max);
    per_attempt
        .saturating_mul(policy.max_attempts_per_span.max(1))
        .saturating_mul(2)
        .max(MIN_LEASE_TTL)
}

/// Records the run's start, brings the work order up to date (code-first runs) and opens the
/// claiming connection: the write connection, the run's id, the claiming connection, the run's
/// lease and the number of pending spans other runs do not hold (dead leases are reaped first,
/// so a run right after a crashed one counts, and takes, the crashed run's spans).
fn start(inner: &Inner) -> Result<Started, PipelineError> {
    let mut db = inner.take_writer_db()?;
    let run_id = match db.start_run(&inner.settings.config_fingerprint) {
        Ok(id) => id,
        Err(error) => {
            inner.return_writer_db(db);
            return Err(PipelineError::db("record the start of the run")(error));
        }
    };
    let lease = Lease {
        run_id,
        holder: db::LeaseHolder::current(),
        ttl: lease_ttl(inner),
    };
    let counted = queue::refresh_work_order(&inner.settings.work_order, &mut db)
        .and_then(|()| {
            let options = db::OpenOptions {
                mode: db::OpenMode::Existing,
                max_failures_per_span: inner.settings.max_failures_per_span,
                ..db::OpenOptions::default()
            };
            db::Db::open_with(&inner.settings.db_path, &options)
                .map_err(PipelineError::db("open the index database to claim spans"))
        })
        .and_then(|mut claimer| {
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
            Ok((claimer, (pending.saturating_sub(held_spans), held), budget))
        });
    match counted {
        Ok((claimer, total, budget)) => Ok((db, run_id, claimer, lease, total, budget)),
        Err(error) => {
            // Best effort: the run row says it failed; the error says why.
            let _ = db.finish_run(run_id, 0, db::RunStatus::Failed);
            inner.return_writer_db(db);
            Err(error)
        }
    }
}

/// What [`start`] opens: the write connection, the run's id, the claiming connection, the
/// run's lease, the spans pending for it (and those other runs hold), and its budget tracker.
type Started = (
    db::Db,
    RunId,
    db::Db,
    Lease,
    (u64, Vec<db::HeldLeases>),
    Arc<BudgetTracker>,
);

/// The run's budgets, with what today's earlier runs used when a day budget is set.
fn budget_tracker(inner: &Inner, db: &db::Db) -> Result<Arc<BudgetTracker>, PipelineError> {
    let config = inner.settings.budget;
    let today = if config.max_tokens_per_day.is_some() || config.max_cost_per_day.is_some() {
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
    Ok(Arc::new(BudgetTracker::new(config, &specs, &today)))
}

/// Stores the run's end (its status and the spans it left alone; the writer counted what it
/// stored), on the writer's connection, or on a new one when the writer thread took its
/// connection down with it.
fn record_end(
    inner: &Inner,
    db: Option<db::Db>,
    run_id: RunId,
    left_alone: u64,
    end: RunEnd,
) -> Result<(), db::DbError> {
    let mut db = match db {
        Some(db) => db,
        None => match inner.take_writer_db() {
            Ok(db) => db,
            Err(error) => {
                tracing::error!(run = run_id.0, "cannot record the end of the run: {error}");
                return Ok(());
            }
        },
    };
    let recorded = db.finish_run(run_id, left_alone, end.status());
    inner.return_writer_db(db);
    recorded.map(|_| ())
}

impl<'a> Scheduler<'a> {
    fn new(
        inner: &'a Arc<Inner>,
        run_id: RunId,
        claimer: Claimer,
        lease_ttl: Duration,
        observer: Arc<AttemptEvents>,
        limit: Option<u64>,
    ) -> Self {
        Self {
            inner,
            run_id,
            claimer: OffRuntime::new(claimer),
            ready: VecDeque::new(),
            queue_dry: false,
            pages_dropped: false,
            lease_ttl,
            limit,
            observer,
            budget_stop: None,
            pass: 0,
            deferred: Vec::new(),
            retry: VecDeque::new(),
            retry_batch: None,
            last_batch: 0,
            parked: VecDeque::new(),
            outage_since: None,
            outage_stop: false,
            backends_gone: false,
            unsent: 0,
            announced: None,
            renewed_at: Instant::now(),
            left_behind: false,
            taken: 0,
            counts: SpanCounts::default(),
            batches: BTreeMap::new(),
            batches_done: 0,
        }
    }

    /// Hands spans out to tasks while slots are free and the run may go on, and collects their
    /// results, until nothing is in flight and nothing more may be taken. Returns what stopped
    /// the run early, if anything did.
    async fn drive(
        &mut self,
        ctx: &Arc<RunCtx>,
        writer: &Writer,
        control: &RunControl,
        limit: Option<u64>,
        on_result: &mut impl FnMut(SpanResult),
    ) -> Option<PipelineError> {
        let inner = self.inner;
        let settings = &inner.settings;
        let mut tasks: JoinSet<Processed> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, InFlight> = HashMap::new();
        let mut failure: Option<PipelineError> = None;
        loop {
            self.check_grace(&ctx.cascade);
            while tasks.len() < settings.concurrency {
                let may_take = failure.is_none()
                    && !control.is_stopping()
                    && !writer.has_failed()
                    && !self.outage_stop
                    && !self.over_budget();
                if !may_take {
                    self.drop_page().await;
                    self.abandon_parked();
                    break;
                }
                // A span that waited for a backend goes first once one of its backends is
                // usable again.
                let (span, batch, resume) = match self.next_parked(&ctx.cascade).await {
                    Ok(Some(parked)) => parked,
                    Ok(None) => {
                        // The limit counts the spans taken from the queue; later by-tier passes
                        // and spans waiting for a backend only finish those.
                        let limit_reached =
                            self.pass == 0 && limit.is_some_and(|limit| self.taken >= limit);
                        if limit_reached || self.backends_gone {
                            // The run takes no more spans from the queue.
                            self.drop_page().await;
                            break;
                        }
                        if self.parked.len() >= self.park_limit() {
                            break;
                        }
                        let Next {
                            span,
                            batch,
                            prior,
                            used_up,
                        } = match self.next_span().await {
                            Ok(Some(next)) => next,
                            Ok(None) => break,
                            Err(error) => {
                                failure = Some(error);
                                break;
                            }
                        };
                        if let Some(age) = inner.in_cooldown(&span) {
                            let result = skipped(&span, age, settings.cooldown.as_secs());
                            emit_finished(inner, self.run_id, batch, &result);
                            self.record(batch, SpanStatus::Skipped, false);
                            self.handed_out(batch, used_up);
                            on_result(result);
                            continue;
                        }
                        if self.pass == 0 {
                            self.taken += 1;
                        }
                        if let Some(progress) = self.batches.get_mut(&batch) {
                            progress.outstanding += 1;
                        }
                        self.handed_out(batch, used_up);
                        let resume = Resume {
                            tier: (settings.schedule == Schedule::ByTier).then_some(self.pass),
                            start: if settings.schedule == Schedule::ByTier {
                                self.pass
                            } else {
                                0
                            },
                            prior,
                            waits: 0,
                        };
                        // No request for a span whose backends are all unavailable: it waits.
                        if self.hold_if_unavailable(&ctx.cascade, &span, batch, resume) {
                            continue;
                        }
                        (span, batch, resume)
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                };
                let entry = InFlight {
                    span_hash: span.span_hash.clone(),
                    batch,
                    span_id: span.id,
                    resume,
                };
                let ctx = Arc::clone(ctx);
                let task =
                    tasks.spawn(async move { process_span(&ctx, span, batch, resume).await });
                in_flight.insert(task.id(), entry);
            }

            // Spans wait for a backend and a slot is free: the run also wakes to look at them
            // again (a circuit lets a probe through, the grace ends) and on a stop.
            let waiting = !self.parked.is_empty()
                && tasks.len() < settings.concurrency
                && failure.is_none()
                && !control.is_stopping()
                && !self.outage_stop;
            // While spans are in flight or wait, the run's leases are renewed on time.
            let renew_at = self.renew_at();
            let wake = if waiting {
                self.wake_at(&ctx.cascade).min(renew_at)
            } else {
                renew_at
            };
            let joined = if waiting && tasks.is_empty() {
                // Nothing in flight to wait for: a timeout, as if a task were still running.
                control
                    .stop_token()
                    .run_until_cancelled(tokio::time::sleep_until(wake))
                    .await;
                None
            } else {
                let next = tokio::time::timeout_at(wake, tasks.join_next_with_id());
                if waiting {
                    control
                        .stop_token()
                        .run_until_cancelled(next)
                        .await
                        .and_then(Result::ok)
                } else {
                    next.await.ok()
                }
            };
            // Woken before any task ended: renew the leases when due, then look again.
            let Some(joined) = joined else {
                if Instant::now() >= self.renew_at()
                    && let Err(error) = self.renew_leases().await
                {
                    failure.get_or_insert(error);
                }
                continue;
            };
            let Some(joined) = joined else {
                // Nothing in flight and nothing left in this pass: the next by-tier pass, if
                // any, unless the run is stopping.
                let stopping = failure.is_some()
                    || control.is_stopping()
                    || writer.has_failed()
                    || self.outage_stop
                    || self.over_budget();
                if stopping {
                    self.abandon_deferred();
                    self.abandon_parked();
                } else if self.next_pass() {
                    continue;
                }
                return failure;
            };
            self.publish_circuits(&ctx.cascade).await;
            match joined {
                Ok((id, processed)) => {
                    let flight = in_flight
                        .remove(&id)
                        .expect("every task's span is in flight until it is joined");
                    self.finished(flight, processed, &ctx.cascade, on_result);
                }
                Err(join_error) => {
                    let flight = in_flight.remove(&join_error.id());
                    let (span_hash, batch) = flight.map_or_else(
                        || (String::from("(unknown)"), 0),
                        |flight| (flight.span_hash, flight.batch),
                    );
                    let message = match join_error.try_into_panic() {
                        Ok(panic) => panic_message(&*panic),
                        Err(join_error) => join_error.to_string(),
                    };
                    tracing::error!(span = %span_hash, "processing a span panicked: {message}");
                    // Nothing was written for it; it stays pending.
                    if let Some(progress) = self.batches.get_mut(&batch) {
                        progress.outstanding -= 1;
                    }
                    self.emit_if_done(batch);
                    failure.get_or_insert(PipelineError::SpanPanicked { span_hash, message });
                }
            }
        }
    }

    /// Books a span's task that ended: deferred to the next by-tier pass, parked to wait for a
    /// backend, or counted.
    fn finished(
        &mut self,
        flight: InFlight,
        processed: Processed,
        cascade: &Cascade,
        on_result: &mut impl FnMut(SpanResult),
    ) {
        let Processed { result, chain } = processed;
        let prior = flight.resume.prior;
        let made = u32::try_from(result.attempts.len()).unwrap_or(u32::MAX);
        match result.status {
            SpanStatus::Unavailable => {
                // Outages do not count toward the span's attempt cap.
                let own = result
                    .attempts
                    .iter()
                    .filter(|a| {
                        a.failure_kind
                            .is_none_or(|k| !cascade.policy().is_outage(k))
                    })
                    .count();
                let waits = flight.resume.waits.saturating_add(1);
                self.park(Parked {
                    span_id: flight.span_id,
                    batch: flight.batch,
                    chain,
                    wanted: result.unavailable.clone(),
                    tier: flight.resume.tier,
                    prior: SpanStart {
                        numbered: prior.numbered.saturating_add(made),
                        counted: prior
                            .counted
                            .saturating_add(u32::try_from(own).unwrap_or(u32::MAX)),
                    },
                    waits,
                    retry_at: Instant::now() + cascade.policy().backoff.delay(waits, 0.0),
                });
                return;
            }
            SpanStatus::Deferred => {
                self.deferred.push(Deferred {
                    span_id: flight.span_id,
                    prior: SpanStart {
                        numbered: prior.numbered.saturating_add(made),
                        counted: prior.counted.saturating_add(made),
                    },
                });
            }
            SpanStatus::Enriched | SpanStatus::FellBack | SpanStatus::Failed => self.progressed(),
            SpanStatus::Skipped | SpanStatus::Cancelled => {}
        }
        self.record(flight.batch, result.status, true);
        on_result(result);
    }

    /// Why the run ended, once nothing is in flight (for a run no error stopped).
    async fn end(&mut self, control: &RunControl) -> Result<RunEnd, PipelineError> {
        let exhausted = self.ready.is_empty()
            && self
                .claimer
                .call(|claimer| claimer.queue.is_exhausted())
                .await;
        Ok(
            if exhausted && !self.left_behind && self.counts.cancelled == 0 {
                RunEnd::Exhausted
            } else if control.level() == StopLevel::Abort {
                RunEnd::Aborted
            } else if control.level() == StopLevel::Stop {
                RunEnd::Stopped
            } else if self.budget_stop.is_some() {
                RunEnd::BudgetReached
            } else if self.outage_stop || self.backends_gone || self.unsent > 0 {
                RunEnd::BackendsUnavailable
            } else if self.more_pending().await? {
                RunEnd::LimitReached
            } else {
                RunEnd::Exhausted
            },
        )
    }
}
