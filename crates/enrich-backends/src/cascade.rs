//! The cascade: tries a chain's backends for one span, carrying out the policy's decisions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enrich_types::{AttemptOutcome, AttemptRecord, Enrichment, FailureKind, SpanIdentity};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapter::{BackendAdapter, GenerateRequest, Generation};
use crate::circuit::{
    CallOutcome, CircuitBreaker, CircuitSnapshot, CircuitState, CircuitTicket, CircuitTransition,
};
use crate::deadline::within;
use crate::failure::BackendError;
use crate::gate::LimitChange;
use crate::output::{QualityReport, Validated, ValidationContext, judge_reply};
use crate::policy::{CascadePolicy, Decision, SpanProgress};

/// The most bytes of a rejected answer quoted in a corrective re-ask.
const REJECTED_ANSWER_MAX_BYTES: usize = 4000;

/// Hears about every attempt as it ends, e.g. to emit progress events or write attempt rows,
/// and about every circuit that changes state.
///
/// Called on the span's task, so it must be quick. Closures
/// `Fn(&SpanIdentity, &AttemptRecord, Option<Decision>)` implement it (and ignore circuits).
pub trait AttemptObserver: Send + Sync {
    /// One attempt ended; `next` is what the cascade does about a failure (`None` on success).
    fn on_attempt(&self, span: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>);

    /// A circuit breaker changed state: a backend's in the [`Cascade`], or a host's in a
    /// [`HostPool`](crate::HostPool). The default ignores it.
    fn on_circuit(&self, transition: &CircuitTransition) {
        let _ = transition;
    }

    /// A host's adaptive in-flight limit changed: an [`InFlightLimit`](crate::InFlightLimit)'s
    /// or one host's of a [`HostPool`](crate::HostPool). The default ignores it.
    fn on_limit(&self, change: &LimitChange) {
        let _ = change;
    }
}

impl<F> AttemptObserver for F
where
    F: Fn(&SpanIdentity, &AttemptRecord, Option<Decision>) + Send + Sync,
{
    fn on_attempt(&self, span: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>) {
        self(span, record, next);
    }
}

/// A span the cascade enriched.
#[derive(Debug, Clone)]
pub struct CascadeSuccess {
    /// The validated output.
    pub enrichment: Enrichment,
    /// What the quality gate made of it (score, checks failed above the level, repairs).
    pub quality: QualityReport,
    /// The raw answer it came from, with usage metrics.
    pub generation: Generation,
    /// The index, in the backends given to [`Cascade::run`], of the backend that answered.
    pub backend_index: usize,
    /// Every attempt for the span, the successful one last.
    pub attempts: Vec<AttemptRecord>,
}

/// Why the cascade gave up on a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// Every backend from the start index failed or was skipped.
    Exhausted,
    /// The span used up [`CascadePolicy::max_attempts_per_span`].
    AttemptLimit,
    /// A failure whose policy is [`FailureAction::Stop`](crate::FailureAction::Stop).
    Stopped,
    /// The cancellation token fired: write nothing for this span.
    Cancelled,
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GiveUpReason::Exhausted => "every backend failed or was skipped",
            GiveUpReason::AttemptLimit => "the attempt limit per span was reached",
            GiveUpReason::Stopped => "a failure stopped the cascade",
            GiveUpReason::Cancelled => "the run was cancelled",
        })
    }
}

/// What a span the cascade gave up on is, for what the caller stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Every backend the cascade reached answered the span, and the answers (or their absence
    /// within the timeout) were the span's own failures: record it as failed.
    Failed,
    /// At least one backend of the chain was unavailable for the span (passed over behind an
    /// open circuit, skipped for the run, or its last failure an outage such as a refused
    /// connection, a 5xx, a refused key): the span is not at fault; leave it pending and try it
    /// again when a backend is usable.
    Unavailable,
    /// The run was cancelled: write nothing for the span.
    Cancelled,
}

/// A span the cascade could not enrich.
#[derive(Debug)]
pub struct CascadeFailure {
    /// Every attempt for the span (possibly none, when every backend was skipped).
    pub attempts: Vec<AttemptRecord>,
    /// The last attempt's error; when no attempt was made, why the first backend was skipped.
    pub last_error: BackendError,
    /// Why the cascade stopped.
    pub reason: GiveUpReason,
    /// The indexes (in the backends given to [`Cascade::run`]) of the backends that were
    /// unavailable for this span, in order: passed over without an attempt, or left after an
    /// outage ([`KindPolicy::outage`](crate::KindPolicy::outage)).
    pub unavailable: Vec<usize>,
}

impl CascadeFailure {
    /// The kind of the last error, as stored in the failure ledger.
    pub fn kind(&self) -> FailureKind {
        self.last_error.kind
    }

    /// True when the span was cancelled and nothing should be written for it.
    pub fn is_cancelled(&self) -> bool {
        self.reason == GiveUpReason::Cancelled || self.last_error.kind == FailureKind::Cancelled
    }

    /// Whether the span failed by its own answers, or its backends were unavailable, or the
    /// run was cancelled. A pure function of the failure: cancelled first, then unavailable
    /// when any backend was.
    pub fn disposition(&self) -> Disposition {
        if self.is_cancelled() {
            Disposition::Cancelled
        } else if self.unavailable.is_empty() {
            Disposition::Failed
        } else {
            Disposition::Unavailable
        }
    }
}

impl fmt::Display for CascadeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts.len();
        let plural = if n == 1 { "" } else { "s" };
        write!(
            f,
            "no enrichment after {n} attempt{plural}: {}",
            self.reason
        )?;
        match self.attempts.last() {
            Some(last) => write!(
                f,
                "; last error (backend '{}', attempt {}): {}",
                last.backend, last.attempt, self.last_error
            ),
            None => write!(f, "; {}", self.last_error),
        }
    }
}

impl std::error::Error for CascadeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.last_error)
    }
}

/// Where a span resumed in the same run starts ([`Cascade::run_resumed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpanStart {
    /// Attempts already made for the span in this run: the next one is numbered after them.
    pub numbered: u32,
    /// Of those, the attempts that count toward
    /// [`CascadePolicy::max_attempts_per_span`].
    pub counted: u32,
}

/// Runs spans through chains of backends under one [`CascadePolicy`].
///
/// Build one per run (or keep one across the runs of `enrich watch`) and share it (`&self`)
/// between concurrent spans: it holds the backends skipped for the rest of the run and one
/// [`CircuitBreaker`] per backend, keyed by backend name, model and host (so an identical entry
/// in two chains shares its state, and two different backends that happen to share a name do
/// not).
pub struct Cascade {
    policy: CascadePolicy,
    backends: Mutex<HashMap<BackendKey, BackendState>>,
    observer: Option<Arc<dyn AttemptObserver>>,
}

impl fmt::Debug for Cascade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cascade")
            .field("policy", &self.policy)
            .field("skipped_backends", &self.skipped_backends())
            .field("circuits", &self.circuits())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BackendKey {
    name: String,
    model: String,
    host: String,
}

impl BackendKey {
    fn of(adapter: &dyn BackendAdapter) -> Self {
        let spec = adapter.spec();
        Self {
            name: spec.name.clone(),
            model: spec.model.clone(),
            host: adapter.describe_host(),
        }
    }
}

/// Run-scoped facts about one backend.
#[derive(Debug, Default)]
struct BackendState {
    /// Why it is skipped for the rest of the run, if it is.
    skipped: Option<(FailureKind, String)>,
    /// Its circuit, when the policy has one.
    breaker: Option<CircuitBreaker>,
    /// The last failure that tripped the circuit, for skip messages.
    last_trip: Option<(FailureKind, String)>,
    /// The last outage ([`KindPolicy::outage`](crate::KindPolicy::outage)) it answered with,
    /// for the message of a run that stops waiting for it.
    last_outage: Option<(FailureKind, String)>,
}

/// Whether any of some backends would be tried now ([`Cascade::availability`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// At least one of them would get a request now.
    Usable,
    /// None now, but a circuit will let a probe through: after `retry_in` (the earliest
    /// cooldown's end), or, with `retry_in` `None`, when another span's probe request settles.
    Waiting {
        /// The backend whose circuit lets a request through first.
        backend: String,
        /// How long until its cooldown ends; `None` while a probe is under way.
        retry_in: Option<Duration>,
    },
    /// Every one of them is skipped for the rest of the run (refused credentials, missing
    /// model): none will come back in this run.
    Gone,
}

/// A backend that cannot serve now, and why ([`Cascade::outages`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendOutage {
    /// The backend's configured name.
    pub backend: String,
    /// Its host ([`BackendAdapter::describe_host`]).
    pub host: String,
    /// `skipped for the run`, `circuit open, retry in 12 s`, `circuit half-open` or `answering
    /// with outages`.
    pub state: String,
    /// The failure that made it unusable, `kind: message`.
    pub last_error: String,
}

impl fmt::Display for BackendOutage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backend '{}' ({}): {}; last error: {}",
            self.backend, self.host, self.state, self.last_error
        )
    }
}

/// A request the backend's circuit let through; settles the circuit when dropped unsettled
/// (a span future dropped mid-request gives a probe's place back).
struct Admission<'a> {
    cascade: &'a Cascade,
    key: BackendKey,
    ticket: Option<CircuitTicket>,
}

impl Admission<'_> {
    fn settle(mut self, outcome: CallOutcome, trip: Option<&BackendError>) {
        if let Some(ticket) = self.ticket.take() {
            self.cascade.settle(&self.key, ticket, outcome, trip);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.cascade
                .settle(&self.key, ticket, CallOutcome::Abandoned, None);
        }
    }
}

/// What one span asks of every backend of its chain.
struct SpanCall<'a> {
    request: &'a GenerateRequest,
    validation: &'a ValidationContext<'a>,
    cancel: &'a CancellationToken,
}

/// The backend a span's cascade is at, with the retries and corrective re-asks it made there.
struct OnBackend<'a> {
    index: usize,
    backend: &'a dyn BackendAdapter,
    retries: u32,
    reasks: u32,
}

/// A failed attempt: its error, the answer validation rejected (if any), what the policy
/// decided and how far the span had got.
struct Failed {
    error: BackendError,
    rejected: Option<String>,
    decision: Decision,
    progress: SpanProgress,
}

/// What the span's cascade does after a failed attempt.
enum Followed {
    /// Another attempt at the same backend.
    Again,
    /// On to the next backend of the chain.
    NextBackend,
    /// The span's cascade ends.
    End(CascadeFailure),
}

/// The state of one span's cascade.
#[derive(Default)]
struct SpanRun {
    /// Attempts made for the span earlier in the run, for numbering the new ones.
    numbered: usize,
    /// Earlier attempts that count toward [`CascadePolicy::max_attempts_per_span`].
    counted: usize,
    attempts: Vec<AttemptRecord>,
    last_error: Option<BackendError>,
    skip_error: Option<BackendError>,
    unavailable: Vec<usize>,
}

impl SpanRun {
    /// A span's cascade that continues after `prior`'s attempts.
    fn resumed(prior: SpanStart) -> Self {
        Self {
            numbered: prior.numbered as usize,
            counted: prior.counted as usize,
            ..Self::default()
        }
    }

    /// Notes that backend `index` was unavailable for the span.
    fn unavailable(&mut self, index: usize) {
        if self.unavailable.last() != Some(&index) {
            self.unavailable.push(index);
        }
    }

    /// Ends the span's cascade: what it did, and why it ended.
    fn give_up(&mut self, reason: GiveUpReason, error: Option<BackendError>) -> CascadeFailure {
        let Self {
            attempts,
            last_error,
            skip_error,
            unavailable,
            ..
        } = std::mem::take(self);
        let last_error = error.or(last_error).or(skip_error).unwrap_or_else(|| {
            BackendError::new(
                FailureKind::InvalidRequest,
                "no backend was tried for this span",
            )
        });
        CascadeFailure {
            attempts,
            last_error,
            reason,
            unavailable,
        }
    }
}

impl Cascade {
    /// A cascade with fresh run state.
    pub fn new(policy: CascadePolicy) -> Self {
        Self {
            policy,
            backends: Mutex::new(HashMap::new()),
            observer: None,
        }
    }

    /// Reports every attempt and circuit transition to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn AttemptObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &CascadePolicy {
        &self.policy
    }

    /// The backends skipped for the rest of the run, by name, with the failure that caused it.
    pub fn skipped_backends(&self) -> Vec<(String, FailureKind)> {
        let mut skipped: Vec<_> = self
            .state()
            .iter()
            .filter_map(|(key, state)| {
                state
                    .skipped
                    .as_ref()
                    .map(|(kind, _)| (key.name.clone(), *kind))
            })
            .collect();
        skipped.sort();
        skipped
    }

    /// The circuit of every backend tried so far, sorted by backend and host; empty when the
    /// policy has no circuit breaker.
    pub fn circuits(&self) -> Vec<CircuitSnapshot> {
        let now = Instant::now();
        let mut circuits: Vec<_> = self
            .state()
            .iter()
            .filter_map(|(key, state)| {
                let breaker = state.breaker.as_ref()?;
                Some(breaker.snapshot(&key.name, &key.host, now))
            })
            .collect();
        circuits.sort_by(|a, b| (&a.backend, &a.host).cmp(&(&b.backend, &b.host)));
        circuits
    }

    /// Whether any of `backends` would be tried now: not skipped for the run and its circuit
    /// letting a request through. A backend not tried yet in the run is usable.
    pub fn availability<'b>(
        &self,
        backends: impl IntoIterator<Item = &'b dyn BackendAdapter>,
    ) -> Availability {
        let state = self.state();
        let now = Instant::now();
        let mut waiting: Option<(String, Option<Duration>)> = None;
        for backend in backends {
            let Some(entry) = state.get(&BackendKey::of(backend)) else {
                return Availability::Usable;
            };
            if entry.skipped.is_some() {
                continue;
            }
            let retry_in = match &entry.breaker {
                None => return Availability::Usable,
                Some(breaker) if breaker.allows(now) => return Availability::Usable,
                Some(breaker) => match breaker.state(now) {
                    CircuitState::Open { remaining_ms } => {
                        Some(Duration::from_millis(remaining_ms.max(1)))
                    }
                    _ => None,
                },
            };
            // The earliest retry wins; a probe under way (no time) counts as the earliest.
            let earlier = match &waiting {
                None => true,
                Some((_, current)) => match (retry_in, current) {
                    (None, _) => current.is_some(),
                    (Some(_), None) => false,
                    (Some(new), Some(old)) => new < *old,
                },
            };
            if earlier {
                waiting = Some((backend.spec().name.clone(), retry_in));
            }
        }
        match waiting {
            Some((backend, retry_in)) => Availability::Waiting { backend, retry_in },
            None => Availability::Gone,
        }
    }

    /// True when some backend tried in this run is skipped for the run or behind a circuit that
    /// is not closed: only then can [`availability`](Self::availability) say anything but
    /// [`Availability::Usable`].
    pub fn has_outage(&self) -> bool {
        self.state().values().any(|entry| {
            entry.skipped.is_some()
                || entry
                    .breaker
                    .as_ref()
                    .is_some_and(|breaker| breaker.state(Instant::now()) != CircuitState::Closed)
        })
    }

    /// Every backend that cannot serve now or last answered with an outage, with its state and
    /// last error, sorted by backend and host: what a run that stops waiting for backends
    /// reports.
    pub fn outages(&self) -> Vec<BackendOutage> {
        let now = Instant::now();
        let mut outages: Vec<BackendOutage> = self
            .state()
            .iter()
            .filter_map(|(key, entry)| {
                let circuit = entry.breaker.as_ref().map(|b| b.state(now));
                let (state, last) = if let Some(skipped) = &entry.skipped {
                    ("skipped for the rest of the run".to_owned(), Some(skipped))
                } else {
                    let last = entry.last_outage.as_ref().or(entry.last_trip.as_ref());
                    let state = match circuit {
                        Some(CircuitState::Open { remaining_ms }) => {
                            format!("circuit open, retry in {} s", remaining_ms.div_ceil(1000))
                        }
                        Some(CircuitState::HalfOpen { .. }) => "circuit half-open".to_owned(),
                        Some(CircuitState::Closed) | None => {
                            last?;
                            "answering with outages".to_owned()
                        }
                    };
                    (state, last)
                };
                Some(BackendOutage {
                    backend: key.name.clone(),
                    host: key.host.clone(),
                    state,
                    last_error: last.map_or_else(
                        || "unknown".to_owned(),
                        |(kind, message)| format!("{kind}: {message}"),
                    ),
                })
            })
            .collect();
        outages.sort_by(|a, b| (&a.backend, &a.host).cmp(&(&b.backend, &b.host)));
        outages
    }

    /// Enriches one span: tries `backends[start..]` in order until one returns output that
    /// passes [`parse_and_validate`](crate::parse_and_validate) and the quality gate.
    ///
    /// Each backend is tried, re-asked, retried or left according to the policy (see the crate
    /// docs); backends skipped for the run or behind an open circuit are passed over at once,
    /// without an attempt. Each call to `generate` is bounded by the backend's
    /// `timeout_seconds` (a [`FailureKind::Timeout`] when it elapses). Output that fails
    /// validation is a failed attempt ([`FailureKind::MalformedOutput`],
    /// [`FailureKind::SchemaInvalid`] or [`FailureKind::QualityRejected`], or [`FailureKind::Truncated`] when the backend reports
    /// `done_reason == "length"`); the first kinds get
    /// [`CascadePolicy::corrective_reasks`] follow-up requests to the same backend, whose prompt
    /// is `request`'s followed by the rejected answer, the validator's message and an
    /// instruction to answer with only the corrected JSON object.
    ///
    /// `cancel` interrupts a running `generate` or a backoff wait at once; the span then fails
    /// with [`GiveUpReason::Cancelled`] and a [`FailureKind::Cancelled`] error. Every attempt,
    /// including an interrupted one, is in the result's `attempts` and was reported to the
    /// observer.
    ///
    /// # Errors
    ///
    /// A [`CascadeFailure`] when no backend produced a valid enrichment, the attempt limit was
    /// reached, the policy stopped, or the run was cancelled.
    pub async fn run(
        &self,
        backends: &[Arc<dyn BackendAdapter>],
        start: usize,
        request: &GenerateRequest,
        validation: &ValidationContext<'_>,
        cancel: &CancellationToken,
    ) -> Result<CascadeSuccess, CascadeFailure> {
        self.run_resumed(
            SpanStart::default(),
            backends,
            start,
            request,
            validation,
            cancel,
        )
        .await
    }

    /// [`run`](Self::run) for a span taken up again in the same run: its attempts are numbered
    /// after `prior.numbered`, and [`CascadePolicy::max_attempts_per_span`] counts
    /// `prior.counted` earlier ones. A by-tier pass continues the numbering and the cap of the
    /// passes before it (both the attempts made); a span left unavailable by an outage resumes
    /// with only its own failures counted, so waiting out an outage does not use up its
    /// attempts.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_resumed(
        &self,
        prior: SpanStart,
        backends: &[Arc<dyn BackendAdapter>],
        start: usize,
        request: &GenerateRequest,
        validation: &ValidationContext<'_>,
        cancel: &CancellationToken,
    ) -> Result<CascadeSuccess, CascadeFailure> {
        let mut span = SpanRun::resumed(prior);
        if start >= backends.len() {
            let error = BackendError::new(
                FailureKind::InvalidRequest,
                format!(
                    "the cascade was asked to start at backend {start} of a chain of {}",
                    backends.len()
                ),
            );
            return Err(span.give_up(GiveUpReason::Exhausted, Some(error)));
        }
        let call = SpanCall {
            request,
            validation,
            cancel,
        };
        for (index, backend) in backends.iter().enumerate().skip(start) {
            let on = OnBackend {
                index,
                backend: backend.as_ref(),
                retries: 0,
                reasks: 0,
            };
            if let Some(ended) = self.try_backend(&mut span, on, &call).await {
                return ended;
            }
        }
        Err(span.give_up(GiveUpReason::Exhausted, None))
    }

    /// Tries one backend of the span's chain until it answers, the policy moves on (`None`: the
    /// next backend) or the span's cascade ends (`Some`).
    async fn try_backend(
        &self,
        span: &mut SpanRun,
        mut on: OnBackend<'_>,
        call: &SpanCall<'_>,
    ) -> Option<Result<CascadeSuccess, CascadeFailure>> {
        let mut current = Cow::Borrowed(call.request);
        loop {
            if let Some(ended) = self.before_attempt(span, &on, call.cancel) {
                return Some(Err(ended));
            }
            let admission = match self.admit(on.backend) {
                Ok(admission) => admission,
                Err(skip) => {
                    tracing::debug!(backend = %on.backend.spec().name, reason = %skip, "backend passed over");
                    span.skip_error.get_or_insert(skip);
                    span.unavailable(on.index);
                    return None;
                }
            };
            let number = u32::try_from(span.numbered + span.attempts.len() + 1).unwrap_or(u32::MAX);
            let (record, result) =
                attempt(on.backend, &current, call.validation, call.cancel, number).await;
            let (error, rejected) = match result {
                Ok((
                    Validated {
                        enrichment,
                        quality,
                    },
                    generation,
                )) => {
                    if let Some(admission) = admission {
                        admission.settle(CallOutcome::Answered, None);
                    }
                    self.observe(&call.request.span, &record, None);
                    span.attempts.push(record);
                    return Some(Ok(CascadeSuccess {
                        enrichment,
                        quality,
                        generation,
                        backend_index: on.index,
                        attempts: std::mem::take(&mut span.attempts),
                    }));
                }
                Err(failed) => failed,
            };
            if let Some(admission) = admission {
                admission.settle(self.circuit_outcome(&error), Some(&error));
            }
            let progress = SpanProgress {
                retries_on_backend: on.retries,
                attempts_made: u32::try_from(span.counted + span.attempts.len() + 1)
                    .unwrap_or(u32::MAX),
                reasks_on_backend: on.reasks,
            };
            let decision = self.judge(on.backend, &error, &record, progress, call);
            span.attempts.push(record);
            let failed = Failed {
                error,
                rejected,
                decision,
                progress,
            };
            match self.follow(span, &mut on, &mut current, call, failed).await {
                Followed::Again => {}
                Followed::NextBackend => return None,
                Followed::End(failure) => return Some(Err(failure)),
            }
        }
    }

    /// Does what the policy decided after a failed attempt: re-ask or retry the same backend
    /// (with `current` as the next request), move on to the next backend, or end the span's
    /// cascade.
    async fn follow<'r>(
        &self,
        span: &mut SpanRun,
        on: &mut OnBackend<'_>,
        current: &mut Cow<'r, GenerateRequest>,
        call: &SpanCall<'r>,
        failed: Failed,
    ) -> Followed {
        let Failed {
            error,
            rejected,
            decision,
            progress,
        } = failed;
        match decision {
            Decision::Retry { .. } if self.policy.corrective_reask(&error, progress) => {
                *current = Cow::Owned(corrective_request(
                    call.request,
                    rejected.as_deref().unwrap_or_default(),
                    &error,
                ));
                span.last_error = Some(error);
                on.reasks += 1;
                Followed::Again
            }
            Decision::Retry { delay } => {
                span.last_error = Some(error);
                let waited = call
                    .cancel
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await;
                if waited.is_none() {
                    let error = cancelled_error(on.backend, "while waiting to retry");
                    return Followed::End(span.give_up(GiveUpReason::Cancelled, Some(error)));
                }
                *current = Cow::Borrowed(call.request);
                on.retries += 1;
                Followed::Again
            }
            Decision::Next { .. } => {
                if self.policy.is_outage(error.kind) {
                    span.unavailable(on.index);
                }
                span.last_error = Some(error);
                Followed::NextBackend
            }
            Decision::Stop => {
                let reason = if call.cancel.is_cancelled() {
                    GiveUpReason::Cancelled
                } else {
                    if self.policy.is_outage(error.kind) {
                        span.unavailable(on.index);
                    }
                    GiveUpReason::Stopped
                };
                Followed::End(span.give_up(reason, Some(error)))
            }
        }
    }

    /// Before each attempt: the span's cascade ends when the run is cancelled or the span used
    /// up its attempts.
    fn before_attempt(
        &self,
        span: &mut SpanRun,
        on: &OnBackend<'_>,
        cancel: &CancellationToken,
    ) -> Option<CascadeFailure> {
        if cancel.is_cancelled() {
            let error = cancelled_error(on.backend, "before the next attempt");
            return Some(span.give_up(GiveUpReason::Cancelled, Some(error)));
        }
        if span.counted + span.attempts.len() < self.policy.max_attempts_per_span as usize {
            return None;
        }
        // The backend this span was retrying after an outage stays unavailable for it: the cap
        // stopped the retries, not an answer.
        let outage_here = span.attempts.last().is_some_and(|last| {
            last.backend == on.backend.spec().name
                && last.failure_kind.is_some_and(|k| self.policy.is_outage(k))
        });
        if outage_here && on.retries + on.reasks > 0 {
            span.unavailable(on.index);
        }
        Some(span.give_up(GiveUpReason::AttemptLimit, None))
    }

    /// What the policy does after a failed attempt (a stop once the run is cancelled), told to
    /// the circuits and the observer.
    fn judge(
        &self,
        backend: &dyn BackendAdapter,
        error: &BackendError,
        record: &AttemptRecord,
        progress: SpanProgress,
        call: &SpanCall<'_>,
    ) -> Decision {
        let decision = if call.cancel.is_cancelled() {
            Decision::Stop
        } else {
            self.policy.decide(error, progress, fastrand::f64())
        };
        self.on_failure(backend, error, decision);
        self.observe(&call.request.span, record, Some(decision));
        tracing::debug!(
            backend = %record.backend,
            attempt = record.attempt,
            kind = %error.kind,
            ?decision,
            "attempt failed: {}",
            error.message
        );
        decision
    }

    fn state(&self) -> MutexGuard<'_, HashMap<BackendKey, BackendState>> {
        // The map stays consistent even if a holder panicked: every update is a single write.
        self.backends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How a failure counts for the backend's circuit.
    fn circuit_outcome(&self, error: &BackendError) -> CallOutcome {
        if error.kind == FailureKind::Cancelled {
            CallOutcome::Abandoned
        } else if self.policy.per_kind[error.kind].trips_circuit {
            CallOutcome::Tripped
        } else {
            CallOutcome::Answered
        }
    }

    /// Lets a request to `backend` through (with its circuit's ticket, when there is a circuit),
    /// or says why the backend must not be tried now.
    fn admit(&self, backend: &dyn BackendAdapter) -> Result<Option<Admission<'_>>, BackendError> {
        let mut state = self.state();
        let Some(circuit) = self.policy.circuit else {
            if state.is_empty() {
                // No circuit and no backend skipped: no key to build.
                return Ok(None);
            }
            return match state.get(&BackendKey::of(backend)) {
                Some(entry) => entry.skip_error(backend).map_or(Ok(None), Err),
                None => Ok(None),
            };
        };
        let key = BackendKey::of(backend);
        let entry = state.entry(key.clone()).or_insert_with(|| BackendState {
            breaker: Some(CircuitBreaker::new(circuit)),
            ..BackendState::default()
        });
        if let Some(skip) = entry.skip_error(backend) {
            return Err(skip);
        }
        let breaker = entry
            .breaker
            .get_or_insert_with(|| CircuitBreaker::new(circuit));
        let now = Instant::now();
        match breaker.admit(now) {
            Ok((ticket, transition)) => {
                let transition = transition.map(|(from, to)| {
                    transition_of(&key, breaker, from, to, entry.last_trip.as_ref())
                });
                drop(state);
                if let Some(transition) = transition {
                    self.report(&transition);
                }
                Ok(Some(Admission {
                    cascade: self,
                    key,
                    ticket: Some(ticket),
                }))
            }
            Err(remaining) => {
                let (kind, last) = match &entry.last_trip {
                    Some((kind, message)) => (*kind, format!("{kind}: {message}")),
                    None => (FailureKind::Connect, "unknown".to_owned()),
                };
                let name = &backend.spec().name;
                let message = if remaining.is_zero() {
                    format!(
                        "backend '{name}' is skipped: its circuit is half-open and another \
                         span's probe request decides whether it closes (last failure: {last})"
                    )
                } else {
                    format!(
                        "backend '{name}' is skipped for {:.1}s more: its circuit opened after \
                         {} consecutive failures (last: {last})",
                        remaining.as_secs_f64(),
                        breaker.consecutive_failures()
                    )
                };
                Err(BackendError::new(kind, message))
            }
        }
    }

    /// Hands a circuit ticket back with the request's outcome.
    fn settle(
        &self,
        key: &BackendKey,
        ticket: CircuitTicket,
        outcome: CallOutcome,
        trip: Option<&BackendError>,
    ) {
        let mut state = self.state();
        let Some(entry) = state.get_mut(key) else {
            return;
        };
        if outcome == CallOutcome::Tripped
            && let Some(error) = trip
        {
            entry.last_trip = Some((error.kind, error.message.clone()));
        }
        let Some(breaker) = entry.breaker.as_mut() else {
            return;
        };
        let Some((from, to)) = breaker.settle(ticket, outcome, Instant::now()) else {
            return;
        };
        let transition = transition_of(key, breaker, from, to, entry.last_trip.as_ref());
        drop(state);
        self.report(&transition);
    }

    fn report(&self, transition: &CircuitTransition) {
        match transition.to {
            CircuitState::Open { remaining_ms } => tracing::warn!(
                backend = %transition.backend,
                host = %transition.host,
                trips = transition.trips,
                "circuit opened for {:.1}s: {}",
                remaining_ms as f64 / 1000.0,
                transition.reason.as_deref().unwrap_or("unknown failure")
            ),
            CircuitState::Closed => tracing::info!(
                backend = %transition.backend,
                host = %transition.host,
                "circuit closed: the probe request was answered"
            ),
            CircuitState::HalfOpen { .. } => tracing::debug!(
                backend = %transition.backend,
                host = %transition.host,
                "circuit half-open: sending one probe request"
            ),
        }
        if let Some(observer) = &self.observer {
            observer.on_circuit(transition);
        }
    }

    /// Remembers an outage, and marks `backend` skipped for the run when the decision says so.
    fn on_failure(&self, backend: &dyn BackendAdapter, error: &BackendError, decision: Decision) {
        let skip = decision
            == Decision::Next {
                skip_backend_for_run: true,
            };
        let outage = self.policy.is_outage(error.kind);
        if !skip && !outage {
            return;
        }
        let mut state = self.state();
        let entry = state.entry(BackendKey::of(backend)).or_default();
        if outage {
            entry.last_outage = Some((error.kind, error.message.clone()));
        }
        if skip && entry.skipped.is_none() {
            tracing::warn!(
                backend = %backend.spec().name,
                kind = %error.kind,
                "backend skipped for the rest of the run: {}",
                error.message
            );
            entry.skipped = Some((error.kind, error.message.clone()));
        }
    }

    fn observe(&self, span: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>) {
        if let Some(observer) = &self.observer {
            observer.on_attempt(span, record, next);
        }
    }
}

impl BackendState {
    /// The error that says why the backend is skipped for the run, if it is.
    fn skip_error(&self, backend: &dyn BackendAdapter) -> Option<BackendError> {
        let (kind, message) = self.skipped.as_ref()?;
        let name = &backend.spec().name;
        Some(BackendError::new(
            *kind,
            format!("backend '{name}' is skipped for the rest of this run after {kind}: {message}"),
        ))
    }
}

/// A transition of the circuit guarding `key`.
fn transition_of(
    key: &BackendKey,
    breaker: &CircuitBreaker,
    from: CircuitState,
    to: CircuitState,
    last_trip: Option<&(FailureKind, String)>,
) -> CircuitTransition {
    CircuitTransition {
        backend: key.name.clone(),
        host: key.host.clone(),
        from,
        to,
        consecutive_failures: breaker.consecutive_failures(),
        trips: breaker.trips(),
        reason: matches!(to, CircuitState::Open { .. })
            .then(|| last_trip.map(|(kind, message)| format!("{kind}: {message}")))
            .flatten(),
    }
}

/// The follow-up request of a corrective re-ask: the original prompt, the rejected answer (cut
/// to [`REJECTED_ANSWER_MAX_BYTES`]), the validator's message and what to do about it.
fn corrective_request(
    request: &GenerateRequest,
    rejected: &str,
    error: &BackendError,
) -> GenerateRequest {
    let rejected = rejected.trim();
    let mut cut = rejected.len().min(REJECTED_ANSWER_MAX_BYTES);
    while !rejected.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut prompt = String::with_capacity(request.prompt.len() + cut + error.message.len() + 400);
    prompt.push_str(&request.prompt);
    if error.kind == FailureKind::Truncated {
        // A cut-off answer is not worth quoting: ask for one that fits.
        let _ = write!(
            prompt,
            "\n\nYour previous answer was cut off at the output limit before the JSON object \
             was complete ({}).\nAnswer again with only the JSON object, shorter: a brief \
             summary and short lists, no other text, no code fence.\n",
            error.message
        );
        return GenerateRequest {
            prompt: prompt.into(),
            ..request.clone()
        };
    }
    prompt.push_str("\n\nYour previous answer was rejected. It was:\n<<<\n");
    prompt.push_str(&rejected[..cut]);
    if cut < rejected.len() {
        let _ = write!(prompt, "\n[... {} more bytes cut]", rejected.len() - cut);
    }
    let _ = write!(
        prompt,
        "\n>>>\nThe problem: {}.\nAnswer again with only the corrected JSON object: no other \
         text, no code fence.\n",
        error.message
    );
    GenerateRequest {
        prompt: prompt.into(),
        ..request.clone()
    }
}

type AttemptResult = Result<(Validated, Generation), (BackendError, Option<String>)>;

/// One call to one backend, validated and recorded. A failure carries the rejected answer's
/// text when the backend answered.
async fn attempt(
    backend: &dyn BackendAdapter,
    request: &GenerateRequest,
    validation: &ValidationContext<'_>,
    cancel: &CancellationToken,
    number: u32,
) -> (AttemptRecord, AttemptResult) {
    let spec = backend.spec();
    let host = backend.describe_host();
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let clock = Instant::now();

    let call = within(
        backend.deadline().caller_timeout(),
        &spec.name,
        &host,
        backend.generate(request),
    );
    let generated = match cancel.run_until_cancelled(call).await {
        Some(result) => result,
        None => Err(cancelled_error(backend, "during the request")),
    };
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let answered = Answered {
        backend: spec,
        host,
        attempt: number,
        started_at_ms,
        duration_ms,
    };
    judge_attempt(&answered, generated, validation)
}

/// Who answered an attempt, and when: what [`judge_answer`] records besides the answer.
#[derive(Debug, Clone)]
pub struct Answered<'a> {
    /// The backend's entry (its name, provider and configured model go into the record).
    pub backend: &'a enrich_config::BackendSpec,
    /// Where the request went (the adapter's `describe_host`; never credentials).
    pub host: String,
    /// 1-based number of the attempt within its span's cascade.
    pub attempt: u32,
    /// When the attempt started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// Judges one backend's answer for a span as the cascade judges every attempt: the generation
/// goes through [`judge_reply`] (enrichment.v1, then the quality gate), an unparseable answer
/// cut at the token limit becomes [`FailureKind::Truncated`], and the attempt record carries
/// the answer's model, host and token counts. Returns the record and the validated enrichment
/// with its generation, or the failure.
///
/// The cascade calls it for every live attempt; an answer that arrived another way (a batch
/// service's output file) is judged by the same function, so both are held to one standard.
pub fn judge_answer(
    answered: &Answered<'_>,
    generated: Result<Generation, BackendError>,
    validation: &ValidationContext<'_>,
) -> (AttemptRecord, Result<(Validated, Generation), BackendError>) {
    let (record, result) = judge_attempt(answered, generated, validation);
    (record, result.map_err(|(error, _)| error))
}

/// [`judge_answer`], keeping a rejected answer's text for the corrective re-ask.
fn judge_attempt(
    answered: &Answered<'_>,
    generated: Result<Generation, BackendError>,
    validation: &ValidationContext<'_>,
) -> (AttemptRecord, AttemptResult) {
    let spec = answered.backend;
    let mut record = AttemptRecord {
        backend: spec.name.clone(),
        provider: spec.provider.clone(),
        model: spec.model.clone(),
        host: answered.host.clone(),
        attempt: answered.attempt,
        started_at_ms: answered.started_at_ms,
        duration_ms: answered.duration_ms,
        outcome: AttemptOutcome::Failure,
        failure_kind: None,
        message: None,
        prompt_eval_count: None,
        eval_count: None,
        tokens_per_second: None,
    };
    let result = match generated {
        Err(error) => Err((error, None)),
        Ok(generation) => {
            let metrics = &generation.metrics;
            if !metrics.model.is_empty() {
                record.model.clone_from(&metrics.model);
            }
            if !metrics.host.is_empty() {
                // A host pool answers from one of its hosts.
                record.host.clone_from(&metrics.host);
            }
            record.prompt_eval_count = metrics.prompt_eval_count;
            record.eval_count = metrics.eval_count;
            record.tokens_per_second = metrics.derived_tokens_per_second();
            match judge_reply(&generation.text, validation) {
                Ok(validated) => Ok((validated, generation)),
                Err(error)
                    if generation.metrics.is_truncated()
                        && error.kind != FailureKind::QualityRejected =>
                {
                    Err((
                        BackendError::new(
                            FailureKind::Truncated,
                            format!(
                                "backend '{}' stopped at its output token limit (done_reason \
                             \"length\") before the answer was complete: {}",
                                spec.name, error.message
                            ),
                        )
                        .with_source(error),
                        None,
                    ))
                }
                Err(error) => Err((error, Some(generation.text))),
            }
        }
    };
    match &result {
        Ok(_) => record.outcome = AttemptOutcome::Success,
        Err((error, _)) => {
            record.failure_kind = Some(error.kind);
            record.message = Some(error.message.clone());
        }
    }
    (record, result)
}

fn cancelled_error(backend: &dyn BackendAdapter, when: &str) -> BackendError {
    BackendError::new(
        FailureKind::Cancelled,
        format!(
            "the run was cancelled {when} (backend '{}'); nothing is written for this span",
            backend.spec().name
        ),
    )
}
