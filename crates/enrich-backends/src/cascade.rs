//! The cascade: tries a chain's backends for one span, carrying out the policy's decisions.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enrich_config::{BackendSpec, DEFAULT_TIMEOUT_SECONDS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapter::{BackendAdapter, GenerateRequest, Generation, SpanContext};
use crate::attempt::{AttemptOutcome, AttemptRecord};
use crate::failure::{BackendError, FailureKind};
use crate::output::{Enrichment, ValidationContext, parse_and_validate};
use crate::policy::{CascadePolicy, Decision, SpanProgress};

/// Hears about every attempt as it ends, e.g. to emit progress events or write attempt rows.
///
/// Called on the span's task, so it must be quick. Closures
/// `Fn(&SpanContext, &AttemptRecord, Option<Decision>)` implement it.
pub trait AttemptObserver: Send + Sync {
    /// One attempt ended; `next` is what the cascade does about a failure (`None` on success).
    fn on_attempt(&self, span: &SpanContext, record: &AttemptRecord, next: Option<Decision>);
}

impl<F> AttemptObserver for F
where
    F: Fn(&SpanContext, &AttemptRecord, Option<Decision>) + Send + Sync,
{
    fn on_attempt(&self, span: &SpanContext, record: &AttemptRecord, next: Option<Decision>) {
        self(span, record, next);
    }
}

/// A span the cascade enriched.
#[derive(Debug, Clone)]
pub struct CascadeSuccess {
    /// The validated output.
    pub enrichment: Enrichment,
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

/// A span the cascade could not enrich.
#[derive(Debug)]
pub struct CascadeFailure {
    /// Every attempt for the span (possibly none, when every backend was skipped).
    pub attempts: Vec<AttemptRecord>,
    /// The last attempt's error; when no attempt was made, why the first backend was skipped.
    pub last_error: BackendError,
    /// Why the cascade stopped.
    pub reason: GiveUpReason,
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

/// Runs spans through chains of backends under one [`CascadePolicy`].
///
/// Build one per run and share it (`&self`) between concurrent spans: it holds the run's state,
/// the backends skipped for the rest of the run and the circuit breakers, keyed by backend name,
/// model and host (so an identical entry in two chains shares its state, and two different
/// backends that happen to share a name do not).
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
    /// Consecutive failures that trip the circuit.
    consecutive_trips: u32,
    /// The circuit is open until then.
    open_until: Option<Instant>,
    /// The last tripping failure, for the skip message.
    last_trip: Option<(FailureKind, String)>,
}

/// The state of one span's cascade.
struct SpanRun {
    attempts: Vec<AttemptRecord>,
    last_error: Option<BackendError>,
    skip_error: Option<BackendError>,
}

impl SpanRun {
    fn give_up(self, reason: GiveUpReason, error: Option<BackendError>) -> CascadeFailure {
        let last_error = error
            .or(self.last_error)
            .or(self.skip_error)
            .unwrap_or_else(|| {
                BackendError::new(
                    FailureKind::InvalidRequest,
                    "no backend was tried for this span",
                )
            });
        CascadeFailure {
            attempts: self.attempts,
            last_error,
            reason,
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

    /// Reports every attempt to `observer`.
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

    /// Enriches one span: tries `backends[start..]` in order until one returns output that
    /// passes [`parse_and_validate`].
    ///
    /// Each backend is tried, retried or left according to the policy (see the crate docs);
    /// backends skipped for the run or behind an open circuit are passed over without an
    /// attempt. Each call to `generate` is bounded by the backend's `timeout_seconds` (a
    /// [`FailureKind::Timeout`] when it elapses). Output that fails validation is a failed
    /// attempt ([`FailureKind::MalformedOutput`] or [`FailureKind::SchemaInvalid`], or
    /// [`FailureKind::Truncated`] when the backend reports `done_reason == "length"`).
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
        validation: &ValidationContext,
        cancel: &CancellationToken,
    ) -> Result<CascadeSuccess, CascadeFailure> {
        let mut span = SpanRun {
            attempts: Vec::new(),
            last_error: None,
            skip_error: None,
        };
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

        for (index, backend) in backends.iter().enumerate().skip(start) {
            let backend = backend.as_ref();
            let mut retries_on_backend = 0;
            loop {
                if cancel.is_cancelled() {
                    let error = cancelled_error(backend, "before the next attempt");
                    return Err(span.give_up(GiveUpReason::Cancelled, Some(error)));
                }
                if span.attempts.len() >= self.policy.max_attempts_per_span as usize {
                    return Err(span.give_up(GiveUpReason::AttemptLimit, None));
                }
                if let Some(skip) = self.unavailable(backend) {
                    tracing::debug!(backend = %backend.spec().name, reason = %skip, "backend passed over");
                    span.skip_error.get_or_insert(skip);
                    break;
                }

                let number = u32::try_from(span.attempts.len() + 1).unwrap_or(u32::MAX);
                let (record, result) = attempt(backend, request, validation, cancel, number).await;
                let error = match result {
                    Ok((enrichment, generation)) => {
                        self.on_success(backend);
                        self.observe(&request.span, &record, None);
                        span.attempts.push(record);
                        return Ok(CascadeSuccess {
                            enrichment,
                            generation,
                            backend_index: index,
                            attempts: span.attempts,
                        });
                    }
                    Err(error) => error,
                };

                let progress = SpanProgress {
                    retries_on_backend,
                    attempts_made: number,
                };
                let decision = if cancel.is_cancelled() {
                    Decision::Stop
                } else {
                    self.policy.decide(&error, progress, fastrand::f64())
                };
                self.on_failure(backend, &error, decision);
                self.observe(&request.span, &record, Some(decision));
                tracing::debug!(
                    backend = %record.backend,
                    attempt = record.attempt,
                    kind = %error.kind,
                    ?decision,
                    "attempt failed: {}",
                    error.message
                );
                span.attempts.push(record);

                match decision {
                    Decision::Retry { delay } => {
                        span.last_error = Some(error);
                        let waited = cancel.run_until_cancelled(tokio::time::sleep(delay)).await;
                        if waited.is_none() {
                            let error = cancelled_error(backend, "while waiting to retry");
                            return Err(span.give_up(GiveUpReason::Cancelled, Some(error)));
                        }
                        retries_on_backend += 1;
                    }
                    Decision::Next { .. } => {
                        span.last_error = Some(error);
                        break;
                    }
                    Decision::Stop => {
                        let reason = if cancel.is_cancelled() {
                            GiveUpReason::Cancelled
                        } else {
                            GiveUpReason::Stopped
                        };
                        return Err(span.give_up(reason, Some(error)));
                    }
                }
            }
        }
        Err(span.give_up(GiveUpReason::Exhausted, None))
    }

    fn state(&self) -> MutexGuard<'_, HashMap<BackendKey, BackendState>> {
        // The map stays consistent even if a holder panicked: every update is a single write.
        self.backends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why `backend` must not be tried now, if it must not.
    fn unavailable(&self, backend: &dyn BackendAdapter) -> Option<BackendError> {
        let state = self.state();
        if state.is_empty() {
            // The common case, with every backend healthy: no key to build.
            return None;
        }
        let entry = state.get(&BackendKey::of(backend))?;
        let name = &backend.spec().name;
        if let Some((kind, message)) = &entry.skipped {
            return Some(BackendError::new(
                *kind,
                format!(
                    "backend '{name}' is skipped for the rest of this run after {kind}: {message}"
                ),
            ));
        }
        let open_until = entry.open_until?;
        let now = Instant::now();
        if open_until <= now {
            return None;
        }
        let (kind, message) = entry
            .last_trip
            .clone()
            .unwrap_or((FailureKind::Connect, String::new()));
        Some(BackendError::new(
            kind,
            format!(
                "backend '{name}' is skipped for {:.1}s more: its circuit opened after {} \
                 consecutive failures (last: {kind}: {message})",
                (open_until - now).as_secs_f64(),
                entry.consecutive_trips
            ),
        ))
    }

    fn on_success(&self, backend: &dyn BackendAdapter) {
        let mut state = self.state();
        if state.is_empty() {
            return;
        }
        if let Some(entry) = state.get_mut(&BackendKey::of(backend)) {
            entry.consecutive_trips = 0;
            entry.open_until = None;
        }
    }

    fn on_failure(&self, backend: &dyn BackendAdapter, error: &BackendError, decision: Decision) {
        let skip = matches!(
            decision,
            Decision::Next {
                skip_backend_for_run: true
            }
        );
        let trips = self.policy.per_kind[error.kind].trips_circuit;
        let answered = !trips && error.kind != FailureKind::Cancelled;
        let mut state = self.state();
        if !skip && !trips && state.is_empty() {
            return;
        }
        let key = BackendKey::of(backend);
        if !skip && !trips && !state.contains_key(&key) {
            return;
        }
        let entry = state.entry(key).or_default();
        if skip && entry.skipped.is_none() {
            tracing::warn!(
                backend = %backend.spec().name,
                kind = %error.kind,
                "backend skipped for the rest of the run: {}",
                error.message
            );
            entry.skipped = Some((error.kind, error.message.clone()));
        }
        match self.policy.circuit {
            Some(circuit) if trips => {
                entry.consecutive_trips += 1;
                entry.last_trip = Some((error.kind, error.message.clone()));
                if entry.consecutive_trips >= circuit.failures_to_open {
                    entry.open_until = Some(Instant::now() + circuit.open_for);
                }
            }
            _ if answered => {
                entry.consecutive_trips = 0;
                entry.open_until = None;
            }
            _ => {}
        }
    }

    fn observe(&self, span: &SpanContext, record: &AttemptRecord, next: Option<Decision>) {
        if let Some(observer) = &self.observer {
            observer.on_attempt(span, record, next);
        }
    }
}

type AttemptResult = Result<(Enrichment, Generation), BackendError>;

/// One call to one backend, validated and recorded.
async fn attempt(
    backend: &dyn BackendAdapter,
    request: &GenerateRequest,
    validation: &ValidationContext,
    cancel: &CancellationToken,
    number: u32,
) -> (AttemptRecord, AttemptResult) {
    let spec = backend.spec();
    let host = backend.describe_host();
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let clock = Instant::now();

    let timeout = timeout_of(spec);
    let call = tokio::time::timeout(timeout, backend.generate(request));
    let generated = match cancel.run_until_cancelled(call).await {
        Some(Ok(result)) => result,
        Some(Err(_elapsed)) => Err(BackendError::new(
            FailureKind::Timeout,
            format!(
                "backend '{}' at {host} gave no answer within {}s; raise its timeout_seconds or \
                 use a smaller model",
                spec.name,
                timeout.as_secs_f64()
            ),
        )),
        None => Err(cancelled_error(backend, "during the request")),
    };
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);

    let mut record = AttemptRecord {
        backend: spec.name.clone(),
        provider: spec.provider.clone(),
        model: spec.model.clone(),
        host,
        attempt: number,
        started_at_ms,
        duration_ms,
        outcome: AttemptOutcome::Failure,
        failure_kind: None,
        message: None,
        prompt_eval_count: None,
        eval_count: None,
        tokens_per_second: None,
    };
    let result = generated.and_then(|generation| {
        let metrics = &generation.metrics;
        if !metrics.model.is_empty() {
            record.model.clone_from(&metrics.model);
        }
        record.prompt_eval_count = metrics.prompt_eval_count;
        record.eval_count = metrics.eval_count;
        record.tokens_per_second = metrics.derived_tokens_per_second();
        match parse_and_validate(&generation.text, validation) {
            Ok(enrichment) => Ok((enrichment, generation)),
            Err(error) if generation.metrics.is_truncated() => Err(BackendError::new(
                FailureKind::Truncated,
                format!(
                    "backend '{}' stopped at its output token limit (done_reason \"length\") \
                     before the answer was complete: {}",
                    spec.name, error.message
                ),
            )
            .with_source(error)),
            Err(error) => Err(error),
        }
    });
    match &result {
        Ok(_) => record.outcome = AttemptOutcome::Success,
        Err(error) => {
            record.failure_kind = Some(error.kind);
            record.message = Some(error.message.clone());
        }
    }
    (record, result)
}

/// The backend's per-request timeout; an unusable value (negative, NaN, zero) means the default.
fn timeout_of(spec: &BackendSpec) -> Duration {
    spec.timeout_seconds
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|timeout| !timeout.is_zero())
        .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECONDS))
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
