//! Outages: a span whose backends are unavailable (unreachable, circuit open, refusing its key,
//! missing the model, 5xx) is not the span's failure. It waits in the scheduler, *parked*, with
//! its lease kept and its attempts logged, and is handed out again once one of the backends it
//! missed is usable; a span whose chain is unavailable before it is sent waits the same way,
//! without a request. When nothing can be handed out, the run sleeps until the earliest circuit
//! lets a probe through and says so in a [`Event::BackendWaiting`]. After `outage_grace`
//! without an answer from any backend, or when every backend a span needs is skipped for the
//! run, the run takes no more spans and ends with
//! [`RunEnd::BackendsUnavailable`](crate::RunEnd::BackendsUnavailable); the spans it could not
//! send stay pending, with no ledger row.

use std::collections::VecDeque;
use std::time::Duration;

use enrich_backends::{Availability, BackendAdapter, Cascade, SpanStart};
use enrich_db::PendingSpan;
use tokio::time::Instant;

use super::{Resume, Scheduler, ToSend};
use crate::error::PipelineError;
use crate::events::{Event, now_ms};
use crate::shared::Inner;

/// How often a run waiting while another span's probe request decides looks again, when no
/// span of its own is in flight to wake it.
const PROBE_POLL: Duration = Duration::from_secs(1);

/// A span no backend of its chain could serve: it waits in the scheduler (its lease kept, its
/// batch open) until one of the backends it missed is usable again.
#[derive(Debug, Clone)]
pub(super) struct Parked {
    pub(super) span_id: i64,
    pub(super) batch: u64,
    /// Its chain, as routed.
    pub(super) chain: String,
    /// The chain's backends that were unavailable for it, by index, in order.
    pub(super) wanted: Vec<usize>,
    pub(super) tier: Option<usize>,
    pub(super) prior: SpanStart,
    /// How often it came back unavailable in this run.
    pub(super) waits: u32,
    /// Not handed out before this: a span that came back unavailable from a backend whose
    /// circuit did not open (a 503 storm, no circuit breaker) waits the cascade's backoff,
    /// growing with `waits`, rather than going straight back.
    pub(super) retry_at: Instant,
}

/// The run's outages: the spans waiting for a backend, and whether the run gave up on them.
#[derive(Default)]
pub(super) struct Outages {
    /// Spans whose backends were unavailable, waiting for one of them to be usable again (at
    /// most [`Scheduler::park_limit`] taken from the queue for it, plus the spans in flight).
    parked: VecDeque<Parked>,
    /// Since when no backend has answered a span while spans were unavailable.
    since: Option<Instant>,
    /// The run stopped taking spans: no backend answered for `outage_grace`.
    stopped: bool,
    /// A span's whole chain is skipped for the run: the run takes no more spans.
    backends_gone: bool,
    /// Spans taken and left pending because no backend could serve them.
    unsent: u64,
    /// The last wait announced in a [`Event::BackendWaiting`]: backend and whole seconds left.
    announced: Option<(String, Option<u64>)>,
}

impl Outages {
    /// The run stopped taking spans because no backend answered for `outage_grace`.
    pub(super) fn stopped(&self) -> bool {
        self.stopped
    }

    /// A span's whole chain is skipped for the run.
    pub(super) fn backends_gone(&self) -> bool {
        self.backends_gone
    }

    /// How many spans wait for a backend.
    pub(super) fn waiting(&self) -> usize {
        self.parked.len()
    }

    /// Spans taken and left pending because no backend could serve them.
    pub(super) fn unsent(&self) -> u64 {
        self.unsent
    }

    /// Backends being unavailable ended the run early or left spans unsent.
    pub(super) fn ended_the_run(&self) -> bool {
        self.stopped || self.backends_gone || self.unsent > 0
    }
}

impl Scheduler<'_> {
    /// The most spans that wait for a backend before the run stops taking spans from the queue:
    /// one page's worth, or the spans in flight.
    pub(super) fn park_limit(&self) -> usize {
        let settings = &self.inner.settings;
        settings.concurrency.max(settings.batch_size)
    }

    /// Whether any of `chain`'s backends at `indexes` would get a request now.
    fn availability(
        &self,
        cascade: &Cascade,
        chain: &str,
        indexes: impl IntoIterator<Item = usize>,
    ) -> Availability {
        let Some(adapters) = self.inner.chains.get(chain) else {
            // No adapters for the chain: processing the span ledgers it as unroutable.
            return Availability::Usable;
        };
        cascade.availability(
            indexes
                .into_iter()
                .filter_map(|index| adapters.get(index))
                .map(|adapter| -> &dyn BackendAdapter { adapter.as_ref() }),
        )
    }

    /// Before a span taken from the queue is sent: when no backend it could reach is usable,
    /// parks it (or, when they are all skipped for the run, leaves it pending and takes no more
    /// spans) and returns true. Routing is only consulted while some backend has an outage.
    pub(super) fn hold_if_unavailable(
        &mut self,
        cascade: &Cascade,
        span: &PendingSpan,
        batch: u64,
        resume: Resume,
    ) -> bool {
        if !cascade.has_outage() {
            return false;
        }
        let settings = &self.inner.settings;
        let Ok(decision) = self
            .inner
            .router
            .choose_chain(&Inner::slice_view(span), settings.chain_override.as_deref())
        else {
            return false;
        };
        let chain = decision.chain_name.to_string();
        let Some(count) = self.inner.chains.get(&chain).map(|adapters| adapters.len()) else {
            return false;
        };
        let reachable: Vec<usize> = match resume.tier {
            // By tier, a span whose backend of this pass is unavailable goes on to the next
            // pass; only the last backend of its chain is waited for.
            Some(tier) if tier + 1 < count => return false,
            Some(tier) => vec![tier],
            None => (resume.start..count).collect(),
        };
        match self.availability(cascade, &chain, reachable.iter().copied()) {
            Availability::Usable => false,
            Availability::Gone => {
                self.outages.backends_gone = true;
                self.strand(batch);
                true
            }
            Availability::Waiting { .. } => {
                self.park(Parked {
                    span_id: span.id,
                    batch,
                    chain,
                    wanted: reachable,
                    tier: resume.tier,
                    prior: resume.prior,
                    waits: resume.waits,
                    retry_at: Instant::now(),
                });
                true
            }
        }
    }

    /// Sets a span aside until one of its wanted backends is usable.
    pub(super) fn park(&mut self, parked: Parked) {
        self.outages.since.get_or_insert_with(Instant::now);
        self.outages.parked.push_back(parked);
    }

    /// Leaves a span of `batch` pending: no backend can serve it in this run.
    fn strand(&mut self, batch: u64) {
        self.outages.since.get_or_insert_with(Instant::now);
        self.outages.unsent += 1;
        self.intake.leave_behind();
        self.batches.release(batch);
    }

    /// The first parked span that one of its wanted backends would serve now, read again from
    /// the index, with where its cascade resumes. Parked spans whose wanted backends are all
    /// skipped for the run are left pending; spans re-indexed away meanwhile are dropped.
    pub(super) async fn next_parked(
        &mut self,
        cascade: &Cascade,
    ) -> Result<Option<ToSend>, PipelineError> {
        let now = Instant::now();
        let mut index = 0;
        while index < self.outages.parked.len() {
            let parked = &self.outages.parked[index];
            if parked.retry_at > now {
                index += 1;
                continue;
            }
            match self.availability(cascade, &parked.chain, parked.wanted.iter().copied()) {
                Availability::Waiting { .. } => index += 1,
                Availability::Gone => {
                    let parked = self
                        .outages
                        .parked
                        .remove(index)
                        .expect("index is in bounds");
                    self.strand(parked.batch);
                }
                Availability::Usable => {
                    let parked = self
                        .outages
                        .parked
                        .remove(index)
                        .expect("index is in bounds");
                    let Some(span) = self
                        .span_by_id(parked.span_id, "read a span waiting for a backend")
                        .await?
                    else {
                        self.batches.release(parked.batch);
                        continue;
                    };
                    let resume = Resume {
                        tier: parked.tier,
                        start: parked.wanted.first().copied().unwrap_or_default(),
                        prior: parked.prior,
                        waits: parked.waits,
                    };
                    return Ok(Some(ToSend {
                        span,
                        batch: parked.batch,
                        resume,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Leaves every parked span pending (the run stops taking spans).
    pub(super) fn abandon_parked(&mut self) {
        while let Some(parked) = self.outages.parked.pop_front() {
            self.strand(parked.batch);
        }
    }

    /// A backend answered a span: the outage, if there was one, is over.
    pub(super) fn progressed(&mut self) {
        self.outages.since = None;
        self.outages.announced = None;
    }

    /// Stops the run taking spans once no backend has answered for `outage_grace` while spans
    /// waited, or when a span's whole chain is skipped for the run and nothing is in flight to
    /// wait for.
    pub(super) fn check_grace(&mut self, cascade: &Cascade) {
        if self.outages.stopped {
            return;
        }
        let grace = self.inner.settings.outage_grace;
        let Some(since) = self.outages.since else {
            return;
        };
        if since.elapsed() < grace {
            return;
        }
        self.outages.stopped = true;
        let outages: Vec<String> = cascade.outages().iter().map(ToString::to_string).collect();
        tracing::warn!(
            run = self.run_id.0,
            "no backend answered for {} s; taking no more spans and leaving the rest pending: {}",
            grace.as_secs(),
            outages.join("; ")
        );
    }

    /// When to look at the parked spans again: the earliest a parked span may go (its backend's
    /// circuit lets a probe through, and its own backoff is over), and no later than the end of
    /// the grace. Says which backend the run waits for in a [`Event::BackendWaiting`] whenever
    /// that changes.
    pub(super) fn wake_at(&mut self, cascade: &Cascade) -> Instant {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let mut circuit: Option<(String, Option<Duration>)> = None;
        for parked in &self.outages.parked {
            let ready =
                match self.availability(cascade, &parked.chain, parked.wanted.iter().copied()) {
                    Availability::Waiting { backend, retry_in } => {
                        let sooner = match (&circuit, retry_in) {
                            (None, _) => true,
                            (Some((_, Some(current))), Some(new)) => new < *current,
                            (Some((_, current)), None) => current.is_some(),
                            (Some((_, None)), Some(_)) => false,
                        };
                        if sooner {
                            circuit = Some((backend, retry_in));
                        }
                        now + retry_in.unwrap_or(PROBE_POLL)
                    }
                    // Usable or gone: the next hand-out deals with it once its backoff is over.
                    Availability::Usable | Availability::Gone => now,
                };
            let at = ready.max(parked.retry_at);
            wake = Some(wake.map_or(at, |earliest| earliest.min(at)));
        }
        let since = *self.outages.since.get_or_insert(now);
        let grace_end = (since + self.inner.settings.outage_grace).max(now);
        if let Some((backend, retry_in)) = circuit {
            let seconds = retry_in.map(|d| d.as_secs_f64().ceil() as u64);
            let announce = (backend.clone(), seconds);
            if self.outages.announced.as_ref() != Some(&announce) {
                let retry_in_ms =
                    retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                self.inner.events.on_event(&Event::BackendWaiting {
                    at_ms: now_ms(),
                    run_id: self.run_id,
                    backend,
                    retry_in_ms,
                    waiting_spans: self.outages.parked.len() as u64,
                });
                self.outages.announced = Some(announce);
            }
        }
        wake.map_or(grace_end, |wake| wake.min(grace_end))
    }
}
