//! The scheduler: hands spans out to tasks while slots are free and the run may go on, and
//! books each task's end. Its state is split by owner: the work queue's side ([`Intake`]),
//! batches and counts ([`Batches`]), by-tier passes ([`Passes`]), outages ([`Outages`]) and the
//! lease clock ([`LeaseClock`]), each in its own module.

use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{Cascade, SpanStart};
use enrich_db::{PendingSpan, RunId};
use tokio::time::Instant;

use super::batches::Batches;
use super::claimer::{Claimer, OffRuntime};
use super::flights::{Flights, InFlight, Joined, Panicked};
use super::intake::Intake;
use super::leases::LeaseClock;
use super::observer::AttemptEvents;
use super::outage::{Outages, Parked};
use super::passes::Passes;
use super::span::{emit_finished, skipped};
use super::{Next, Processed, RunCtx, ToSend};
use crate::budget::BudgetStop;
use crate::control::{RunControl, StopLevel};
use crate::error::PipelineError;
use crate::result::{RunEnd, SpanResult, SpanStatus};
use crate::shared::Inner;
use crate::writer::Writer;

/// The scheduler's state.
pub(super) struct Scheduler<'a> {
    pub(super) inner: &'a Arc<Inner>,
    pub(super) run_id: RunId,
    /// The claiming connection (a read-write one: claiming writes leases) and the work queue
    /// that pages through it, used off the runtime's threads only (see [`super::claimer`]).
    pub(super) claimer: OffRuntime<Claimer>,
    pub(super) intake: Intake,
    pub(super) leases: LeaseClock,
    pub(super) batches: Batches,
    pub(super) passes: Passes,
    pub(super) outages: Outages,
    /// The run's observer: its budget tracker and whether circuits changed.
    pub(super) observer: Arc<AttemptEvents>,
    /// The budget that stopped the run from taking spans, once one did.
    pub(super) budget_stop: Option<BudgetStop>,
}

/// What the next hand-out from the queue or a later pass gave.
enum Handout {
    /// A span to send.
    Send(Box<ToSend>),
    /// A span was dealt with without a task (skipped, or set aside): look again.
    Again,
    /// Nothing more to hand out now.
    Done,
}

/// Why the scheduler woke.
enum Woken {
    /// A timer (lease renewal, a parked span's backend) or a stop, before any task ended.
    Early,
    /// Nothing is in flight and nothing is left in this pass.
    Idle,
    /// A task ended.
    Joined(Box<Joined>),
}

impl<'a> Scheduler<'a> {
    pub(super) fn new(
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
            intake: Intake::new(limit),
            leases: LeaseClock::new(lease_ttl),
            batches: Batches::new(Arc::clone(&inner.events), run_id),
            passes: Passes::new(inner.settings.schedule),
            outages: Outages::default(),
            observer,
            budget_stop: None,
        }
    }

    /// Hands spans out to tasks while slots are free and the run may go on, and collects their
    /// results, until nothing is in flight and nothing more may be taken. Returns what stopped
    /// the run early, if anything did.
    pub(super) async fn drive(
        &mut self,
        ctx: &Arc<RunCtx>,
        writer: &Writer,
        control: &RunControl,
        on_result: &mut impl FnMut(SpanResult),
    ) -> Option<PipelineError> {
        let mut flights = Flights::new();
        let mut failure: Option<PipelineError> = None;
        loop {
            self.check_grace(&ctx.cascade);
            let failed = failure.is_some();
            if let Err(error) = self
                .hand_out(ctx, &mut flights, failed, control, writer, on_result)
                .await
            {
                failure = Some(error);
            }
            // Spans wait for a backend and a slot is free: the run also wakes to look at them
            // again (a circuit lets a probe through, the grace ends) and on a stop.
            let waiting = self.outages.waiting() > 0
                && flights.len() < self.inner.settings.concurrency
                && failure.is_none()
                && !control.is_stopping()
                && !self.outages.stopped();
            match self
                .wait(&ctx.cascade, &mut flights, control, waiting)
                .await
            {
                Woken::Early => {
                    if let Err(error) = self.renew_leases_if_due().await {
                        failure.get_or_insert(error);
                    }
                }
                // The next by-tier pass, if any, unless the run is stopping.
                Woken::Idle => {
                    if !self.may_take(failure.is_some(), control, writer) {
                        self.abandon_deferred();
                        self.abandon_parked();
                    } else if self.next_pass() {
                        continue;
                    }
                    return failure;
                }
                Woken::Joined(joined) => {
                    self.publish_circuits(&ctx.cascade).await;
                    if let Err(error) = self.joined(*joined, &ctx.cascade, on_result) {
                        failure.get_or_insert(error);
                    }
                }
            }
        }
    }

    /// Whether the run may take another span: nothing failed, no stop, the writer is well, no
    /// outage stopped the run and no budget is reached.
    fn may_take(&mut self, failed: bool, control: &RunControl, writer: &Writer) -> bool {
        !failed
            && !control.is_stopping()
            && !writer.has_failed()
            && !self.outages.stopped()
            && !self.over_budget()
    }

    /// Starts tasks while slots are free and the run may take spans. A span that waited for a
    /// backend goes first once one of its backends is usable again.
    async fn hand_out(
        &mut self,
        ctx: &Arc<RunCtx>,
        flights: &mut Flights,
        failed: bool,
        control: &RunControl,
        writer: &Writer,
        on_result: &mut impl FnMut(SpanResult),
    ) -> Result<(), PipelineError> {
        while flights.len() < self.inner.settings.concurrency {
            if !self.may_take(failed, control, writer) {
                self.drop_page().await;
                self.abandon_parked();
                return Ok(());
            }
            let send = match self.next_parked(&ctx.cascade).await? {
                Some(parked) => parked,
                None => match self.take_next(&ctx.cascade, on_result).await? {
                    Handout::Send(send) => *send,
                    Handout::Again => continue,
                    Handout::Done => return Ok(()),
                },
            };
            flights.spawn(ctx, send);
        }
        Ok(())
    }

    /// The next span of the queue or of a later pass: skipped when its file is in its cooldown,
    /// set aside when no backend could take it now, else to send.
    async fn take_next(
        &mut self,
        cascade: &Cascade,
        on_result: &mut impl FnMut(SpanResult),
    ) -> Result<Handout, PipelineError> {
        // The limit counts the spans taken from the queue; later by-tier passes and spans
        // waiting for a backend only finish those.
        let limit_reached = self.passes.first() && self.intake.limit_reached();
        if limit_reached || self.outages.backends_gone() {
            // The run takes no more spans from the queue.
            self.drop_page().await;
            return Ok(Handout::Done);
        }
        if self.outages.waiting() >= self.park_limit() {
            return Ok(Handout::Done);
        }
        let Some(Next {
            span,
            batch,
            prior,
            used_up,
        }) = self.next_span().await?
        else {
            return Ok(Handout::Done);
        };
        let inner = self.inner;
        if let Some(age) = inner.in_cooldown(&span) {
            let result = skipped(&span, age, inner.settings.cooldown.as_secs());
            emit_finished(inner, self.run_id, batch, &result);
            self.batches.record(batch, SpanStatus::Skipped, false);
            self.batches.handed_out(batch, used_up);
            on_result(result);
            return Ok(Handout::Again);
        }
        if self.passes.first() {
            self.intake.count_taken();
        }
        self.batches.dispatched(batch);
        self.batches.handed_out(batch, used_up);
        let resume = self.passes.resume(prior);
        // No request for a span whose backends are all unavailable: it waits.
        if self.hold_if_unavailable(cascade, &span, batch, resume) {
            return Ok(Handout::Again);
        }
        Ok(Handout::Send(Box::new(ToSend {
            span,
            batch,
            resume,
        })))
    }

    /// Waits for a task to end, no later than the next lease renewal, and, while spans wait for
    /// a backend (`waiting`), no later than the time to look at them again or a stop.
    async fn wait(
        &mut self,
        cascade: &Cascade,
        flights: &mut Flights,
        control: &RunControl,
        waiting: bool,
    ) -> Woken {
        let renew_at = self.renew_at();
        let wake = if waiting {
            self.wake_at(cascade).min(renew_at)
        } else {
            renew_at
        };
        let joined = if waiting && flights.is_empty() {
            // Nothing in flight to wait for: a timeout, as if a task were still running.
            control
                .stop_token()
                .run_until_cancelled(tokio::time::sleep_until(wake))
                .await;
            None
        } else {
            let next = tokio::time::timeout_at(wake, flights.join_next());
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
        match joined {
            None => Woken::Early,
            Some(None) => Woken::Idle,
            Some(Some(joined)) => Woken::Joined(Box::new(joined)),
        }
    }

    /// Books a task that ended; a panic is the run's failure.
    fn joined(
        &mut self,
        joined: Joined,
        cascade: &Cascade,
        on_result: &mut impl FnMut(SpanResult),
    ) -> Result<(), PipelineError> {
        match joined {
            Ok((flight, processed)) => {
                self.finished(flight, processed, cascade, on_result);
                Ok(())
            }
            Err(Panicked {
                span_hash,
                batch,
                message,
            }) => {
                tracing::error!(span = %span_hash, "processing a span panicked: {message}");
                // Nothing was written for it; it stays pending.
                self.batches.release(batch);
                Err(PipelineError::SpanPanicked { span_hash, message })
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
                self.passes.defer(
                    flight.span_id,
                    SpanStart {
                        numbered: prior.numbered.saturating_add(made),
                        counted: prior.counted.saturating_add(made),
                    },
                );
            }
            SpanStatus::Enriched | SpanStatus::FellBack | SpanStatus::Failed => self.progressed(),
            SpanStatus::Skipped | SpanStatus::Cancelled => {}
        }
        self.batches.record(flight.batch, result.status, true);
        on_result(result);
    }

    /// The span with this id, read again from the index off the runtime; `None` when it was
    /// re-indexed away. `action` names the read in an error.
    pub(super) async fn span_by_id(
        &mut self,
        id: i64,
        action: &'static str,
    ) -> Result<Option<PendingSpan>, PipelineError> {
        self.claimer
            .call(move |claimer| claimer.db.span_by_id(id))
            .await
            .map_err(PipelineError::db(action))
    }

    /// Starts each lane of the work queue after its pending frontier, when there is one.
    pub(super) async fn start_at_frontiers(&mut self) {
        let frontiers = self
            .claimer
            .call(|claimer| claimer.queue.start_at_frontiers(&claimer.db))
            .await;
        if let Err(error) = frontiers {
            // A frontier is a shortcut: without one the run reads from the first span.
            tracing::warn!(
                run = self.run_id.0,
                "cannot read where pending spans begin: {error}"
            );
        }
    }

    /// Records where the pending spans of each lane now begin (see
    /// [`Claimer::advance_frontiers`]).
    pub(super) async fn advance_frontiers(&mut self) {
        let run = self.run_id;
        self.claimer
            .call(move |claimer| claimer.advance_frontiers(run))
            .await;
    }

    /// Why the run ended, once nothing is in flight (for a run no error stopped).
    pub(super) async fn end(&mut self, control: &RunControl) -> Result<RunEnd, PipelineError> {
        let exhausted = self.queue_exhausted().await;
        let counts = self.batches.counts();
        Ok(
            if exhausted && !self.intake.left_behind() && counts.cancelled == 0 {
                RunEnd::Exhausted
            } else if control.level() == StopLevel::Abort {
                RunEnd::Aborted
            } else if control.level() == StopLevel::Stop {
                RunEnd::Stopped
            } else if self.budget_stop.is_some() {
                RunEnd::BudgetReached
            } else if self.outages.ended_the_run() {
                RunEnd::BackendsUnavailable
            } else if self.more_pending().await? {
                RunEnd::LimitReached
            } else {
                RunEnd::Exhausted
            },
        )
    }
}
