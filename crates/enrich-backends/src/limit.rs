//! [`InFlightLimit`]: at most N requests in flight to one backend, N fixed or adaptive.

use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use enrich_config::BackendSpec;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::adapter::{BackendAdapter, Capabilities, GenerateRequest, Generation, HealthReport};
use crate::adaptive::{AdaptivePolicy, SampleOutcome};
use crate::cascade::AttemptObserver;
use crate::deadline::{self, Deadline};
use crate::failure::BackendError;
use crate::gate::{HostGate, LimitSnapshot, Ticket, outcome_of};

/// A [`BackendAdapter`] that lets at most its limit of requests through to its inner adapter at
/// once (Ollama serves `OLLAMA_NUM_PARALLEL` per model and queues the rest); the others wait
/// for a place. The limit is either fixed ([`InFlightLimit::new`], the backend's
/// `max_in_flight` with `adaptive = false`) or found as the run goes
/// ([`InFlightLimit::adaptive`], an [`AdaptiveLimit`](crate::AdaptiveLimit) under the
/// backend's `max_in_flight` as its ceiling), which also pauses new requests while a server's
/// `Retry-After` lasts.
///
/// Waiting for a place must not eat into the backend's `timeout_seconds` (with one slot and four
/// spans in flight, the fourth would time out while queueing): the backend's timeout is applied
/// around the inner call once the place is taken, with the cascade's wording and
/// [`FailureKind::Timeout`](crate::FailureKind::Timeout), and
/// [`deadline`](BackendAdapter::deadline) tells the cascade so ([`Deadline::Adapter`]).
/// Cancellation still interrupts both the wait and the call (the cascade races the whole
/// `generate` against its token). [`HostPool`](crate::HostPool) limits each of its hosts
/// itself; this is the limit of a single-host backend.
pub struct InFlightLimit {
    inner: Arc<dyn BackendAdapter>,
    deadline: Option<Duration>,
    host: String,
    gate: Mutex<HostGate>,
    released: Notify,
    observer: Mutex<Option<Arc<dyn AttemptObserver>>>,
}

impl std::fmt::Debug for InFlightLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightLimit")
            .field("limit", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// A taken place; gives it back (teaching the limiter what the request showed) when dropped.
struct Place<'a> {
    limit: &'a InFlightLimit,
    ticket: Ticket,
    outcome: Option<SampleOutcome>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let change = {
            let mut gate = self.limit.lock();
            gate.release(self.ticket, self.outcome, Instant::now())
                .map(|step| gate.change(&self.limit.inner.spec().name, &self.limit.host, &step))
        };
        self.limit.released.notify_waiters();
        if let Some(change) = change {
            let observer = self
                .limit
                .observer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(observer) = observer {
                observer.on_limit(&change);
            }
        }
    }
}

impl InFlightLimit {
    /// `inner` with at most `max_in_flight` requests at once (0 counts as 1).
    pub fn new(inner: Arc<dyn BackendAdapter>, max_in_flight: usize) -> Self {
        Self::with_gate(inner, HostGate::new(max_in_flight, None))
    }

    /// `inner` with an adaptive limit under `policy`.
    pub fn adaptive(inner: Arc<dyn BackendAdapter>, policy: AdaptivePolicy) -> Self {
        Self::with_gate(inner, HostGate::new(policy.ceiling, Some(policy)))
    }

    fn with_gate(inner: Arc<dyn BackendAdapter>, gate: HostGate) -> Self {
        Self {
            deadline: inner.deadline().caller_timeout(),
            host: inner.describe_host(),
            inner,
            gate: Mutex::new(gate),
            released: Notify::new(),
            observer: Mutex::new(None),
        }
    }

    /// Reports every change of the limit to `observer` from now on (`None`: to nobody).
    pub fn set_observer(&self, observer: Option<Arc<dyn AttemptObserver>>) {
        *self.observer.lock().unwrap_or_else(PoisonError::into_inner) = observer;
    }

    /// The limit, the requests in flight and their peaks now.
    pub fn snapshot(&self) -> LimitSnapshot {
        self.lock().snapshot(&self.inner.spec().name, &self.host)
    }

    fn lock(&self) -> MutexGuard<'_, HostGate> {
        // Every update is a few field writes: the state stays consistent after a panic.
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a place under the limit (and for a `Retry-After` pause to end).
    async fn place(&self) -> Place<'_> {
        loop {
            // Registered before looking, so a place freed in between is not missed.
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            let admitted = self.lock().try_admit(Instant::now());
            match admitted {
                Ok(ticket) => {
                    return Place {
                        limit: self,
                        ticket,
                        outcome: None,
                    };
                }
                Err(Some(until)) => {
                    // Woken by a freed place or the pause's end, whichever comes first.
                    let _ = tokio::time::timeout_at(until, released).await;
                }
                Err(None) => released.await,
            }
        }
    }
}

#[async_trait]
impl BackendAdapter for InFlightLimit {
    fn spec(&self) -> &BackendSpec {
        self.inner.spec()
    }

    fn deadline(&self) -> Deadline {
        Deadline::Adapter(self.inner.deadline().request_timeout())
    }

    fn describe_host(&self) -> String {
        self.inner.describe_host()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let mut place = self.place().await;
        let call = self.inner.generate(request);
        let result =
            deadline::within(self.deadline, &self.inner.spec().name, &self.host, call).await;
        place.outcome = outcome_of(&result);
        drop(place);
        result
    }

    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }

    async fn model_digest(&self) -> Option<String> {
        self.inner.model_digest().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
