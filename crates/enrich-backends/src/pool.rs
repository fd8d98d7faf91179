//! [`HostPool`]: one backend served by several hosts (the same model on several machines).

use std::fmt;
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
use crate::circuit::{
    CallOutcome, CircuitBreaker, CircuitPolicy, CircuitSnapshot, CircuitState, CircuitTicket,
    CircuitTransition,
};
use crate::deadline::{self, Deadline};
use crate::error::BackendsError;
use enrich_types::FailureKind;

use crate::failure::BackendError;
use crate::gate::{HostGate, LimitChange, LimitSnapshot, Ticket, outcome_of};
use crate::policy::CascadePolicy;

/// How a [`HostPool`] shares requests among its hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPoolPolicy {
    /// Requests one host serves at once (Ollama's `OLLAMA_NUM_PARALLEL`); 0 counts as 1. With
    /// [`Self::adaptive`] each host's limit is found as the run goes instead, under that
    /// policy's ceiling.
    pub max_in_flight_per_host: usize,
    /// An adaptive limit per host ([`AdaptiveLimit`](crate::AdaptiveLimit)); `None`: the fixed
    /// `max_in_flight_per_host`.
    pub adaptive: Option<AdaptivePolicy>,
    /// Each host's circuit breaker; `None`: a failing host is still passed over for the request
    /// that saw it fail, but never skipped for later ones.
    pub circuit: Option<CircuitPolicy>,
    /// The failures that move a request to another host and count toward the host's circuit.
    pub failover_kinds: Vec<FailureKind>,
}

impl Default for HostPoolPolicy {
    /// One request per host; the default circuit; fail over on connect, timeout and server
    /// errors.
    fn default() -> Self {
        Self {
            max_in_flight_per_host: 1,
            adaptive: None,
            circuit: Some(CircuitPolicy::default()),
            failover_kinds: vec![
                FailureKind::Connect,
                FailureKind::Timeout,
                FailureKind::ServerError,
            ],
        }
    }
}

impl HostPoolPolicy {
    /// The cascade's circuit and tripping kinds ([`KindPolicy::trips_circuit`](crate::KindPolicy::trips_circuit)),
    /// with `max_in_flight_per_host`.
    pub fn from_cascade(policy: &CascadePolicy, max_in_flight_per_host: usize) -> Self {
        Self {
            max_in_flight_per_host,
            adaptive: None,
            circuit: policy.circuit,
            failover_kinds: policy
                .per_kind
                .iter()
                .filter(|(_, kind)| kind.trips_circuit)
                .map(|(kind, _)| kind)
                .collect(),
        }
    }
}

/// One backend served by several hosts: a [`BackendAdapter`] over one adapter per host (same
/// spec, different URL).
///
/// Each request goes to the least-loaded host whose circuit lets it through (ties in turn), under
/// that host's in-flight limit (fixed, or adaptive with [`HostPoolPolicy::adaptive`]); when
/// every usable host is at its limit (or paused by a `Retry-After`) the request waits for a
/// slot.
/// A host failing with a fail-over kind ([`HostPoolPolicy::failover_kinds`]: connect, timeout,
/// server error by default) counts toward its circuit, and the same request goes at once to
/// another host it has not tried: one host going down moves its load to the others without
/// failing spans. Only when every host has failed this request or is behind an open circuit
/// does the pool fail, with [`FailureKind::Connect`] and a message naming every host. Other
/// failures (a missing model, a busy server, …) are the cascade's to decide and are returned
/// as they are.
///
/// The backend's `timeout_seconds` applies to each host call from the moment its slot is taken,
/// so queueing for a slot never times a request out ([`Deadline::Adapter`]: the cascade sets no
/// timer of its own). A request that times out on every host therefore takes up to one timeout
/// per host, and that is the pool's request timeout.
pub struct HostPool {
    spec: BackendSpec,
    deadline: Duration,
    hosts: Vec<Host>,
    description: String,
    failover: [bool; FailureKind::ALL.len()],
    state: Mutex<PoolState>,
    released: Notify,
    observer: Mutex<Option<Arc<dyn AttemptObserver>>>,
}

struct Host {
    adapter: Arc<dyn BackendAdapter>,
    name: String,
}

struct PoolState {
    hosts: Vec<HostState>,
    /// Where the next search starts, so equally loaded hosts take turns.
    cursor: usize,
}

#[derive(Debug)]
struct HostState {
    gate: HostGate,
    breaker: Option<CircuitBreaker>,
    /// The last fail-over failure, for error messages.
    last_failure: Option<String>,
}

impl fmt::Debug for HostPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostPool")
            .field("backend", &self.spec.name)
            .field("hosts", &self.description)
            .field("limits", &self.limits())
            .field("circuits", &self.circuits())
            .finish()
    }
}

/// What a request found when it looked for a host.
enum Pick<'a> {
    Slot(Slot<'a>),
    /// Every usable host is at its limit; `Some`: the earliest end of a `Retry-After` pause.
    Wait(Option<Instant>),
    Exhausted,
}

/// A taken host slot; gives it back (and settles the host's circuit) when dropped.
struct Slot<'a> {
    pool: &'a HostPool,
    index: usize,
    ticket: Option<CircuitTicket>,
    outcome: CallOutcome,
    place: Ticket,
    sample: Option<SampleOutcome>,
}

impl Slot<'_> {
    fn finish(mut self, outcome: CallOutcome, failure: Option<&BackendError>) {
        self.outcome = outcome;
        if let Some(error) = failure {
            self.pool.lock().hosts[self.index].last_failure = Some(error.to_string());
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let (transition, change) = {
            let mut state = self.pool.lock();
            let host = &mut state.hosts[self.index];
            let name = &self.pool.hosts[self.index].name;
            let change = host
                .gate
                .release(self.place, self.sample, Instant::now())
                .map(|step| host.gate.change(&self.pool.spec.name, name, &step));
            let transition = match (host.breaker.as_mut(), self.ticket.take()) {
                (Some(breaker), Some(ticket)) => breaker
                    .settle(ticket, self.outcome, Instant::now())
                    .map(|(from, to)| self.pool.transition(self.index, host, from, to)),
                _ => None,
            };
            (transition, change)
        };
        self.pool.released.notify_waiters();
        if let Some(transition) = transition {
            self.pool.report(&transition);
        }
        if let Some(change) = change {
            self.pool.report_limit(&change);
        }
    }
}

impl HostPool {
    /// A pool serving `spec` (the backend entry with every host) through `hosts`, one adapter
    /// per host.
    ///
    /// # Errors
    ///
    /// [`BackendsError::Build`] when `hosts` is empty.
    pub fn new(
        spec: BackendSpec,
        hosts: Vec<Arc<dyn BackendAdapter>>,
        policy: HostPoolPolicy,
    ) -> Result<Self, BackendsError> {
        if hosts.is_empty() {
            return Err(BackendsError::Build {
                backend: spec.name.clone(),
                chain: spec.chain.clone(),
                provider: spec.provider.clone(),
                source: Box::new(BackendError::new(
                    FailureKind::InvalidRequest,
                    "a host pool needs at least one host; list them in `urls`",
                )),
            });
        }
        let deadline = deadline::timeout_of(&spec);
        let hosts: Vec<Host> = hosts
            .into_iter()
            .map(|adapter| Host {
                name: adapter.describe_host(),
                adapter,
            })
            .collect();
        let description = hosts
            .iter()
            .map(|host| host.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let state = hosts
            .iter()
            .map(|_| HostState {
                gate: HostGate::new(policy.max_in_flight_per_host, policy.adaptive),
                breaker: policy.circuit.map(CircuitBreaker::new),
                last_failure: None,
            })
            .collect();
        let mut failover = [false; FailureKind::ALL.len()];
        for kind in &policy.failover_kinds {
            failover[kind.index()] = true;
        }
        Ok(Self {
            spec,
            deadline,
            hosts,
            description,
            failover,
            state: Mutex::new(PoolState {
                hosts: state,
                cursor: 0,
            }),
            released: Notify::new(),
            observer: Mutex::new(None),
        })
    }

    /// Reports every host circuit transition and every change of a host's adaptive limit to
    /// `observer` from now on (`None`: to nobody).
    pub fn set_observer(&self, observer: Option<Arc<dyn AttemptObserver>>) {
        *self.observer.lock().unwrap_or_else(PoisonError::into_inner) = observer;
    }

    /// The hosts, as their adapters describe them, in configuration order.
    pub fn hosts(&self) -> Vec<&str> {
        self.hosts.iter().map(|host| host.name.as_str()).collect()
    }

    /// Each host's circuit, in configuration order; empty without a circuit policy.
    pub fn circuits(&self) -> Vec<CircuitSnapshot> {
        let now = Instant::now();
        self.lock()
            .hosts
            .iter()
            .zip(&self.hosts)
            .filter_map(|(state, host)| {
                let breaker = state.breaker.as_ref()?;
                Some(breaker.snapshot(&self.spec.name, &host.name, now))
            })
            .collect()
    }

    /// Requests in flight on each host, in configuration order.
    pub fn in_flight(&self) -> Vec<usize> {
        self.lock()
            .hosts
            .iter()
            .map(|host| host.gate.in_flight())
            .collect()
    }

    /// Each host's in-flight limit, in configuration order.
    pub fn limits(&self) -> Vec<LimitSnapshot> {
        self.lock()
            .hosts
            .iter()
            .zip(&self.hosts)
            .map(|(state, host)| state.gate.snapshot(&self.spec.name, &host.name))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Every update is a few field writes: the state stays consistent after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot on the least-loaded usable host not in `tried`.
    fn pick(&self, tried: &[bool]) -> Pick<'_> {
        let now = Instant::now();
        let mut state = self.lock();
        let n = self.hosts.len();
        let mut best: Option<usize> = None;
        let mut full = false;
        let mut paused_until: Option<Instant> = None;
        for offset in 0..n {
            let index = (state.cursor + offset) % n;
            let host = &state.hosts[index];
            if tried[index] || !host.breaker.as_ref().is_none_or(|b| b.allows(now)) {
                continue;
            }
            match host.gate.room(now) {
                Err(pause) => {
                    full = true;
                    if let Some(until) = pause {
                        paused_until = Some(paused_until.map_or(until, |p| p.min(until)));
                    }
                }
                Ok(()) => {
                    let load = host.gate.in_flight();
                    if best.is_none_or(|b| load < state.hosts[b].gate.in_flight()) {
                        best = Some(index);
                    }
                }
            }
        }
        let Some(index) = best else {
            return if full {
                Pick::Wait(paused_until)
            } else {
                Pick::Exhausted
            };
        };
        state.cursor = (index + 1) % n;
        let host = &mut state.hosts[index];
        let mut transition = None;
        let ticket = match host.breaker.as_mut() {
            Some(breaker) => match breaker.admit(now) {
                Ok((ticket, admitted)) => {
                    transition = admitted;
                    Some(ticket)
                }
                // `allows` said yes under the same lock.
                Err(_) => return Pick::Exhausted,
            },
            None => None,
        };
        let Ok(place) = host.gate.try_admit(now) else {
            // `room` said yes under the same lock.
            return Pick::Exhausted;
        };
        let transition = transition.map(|(from, to)| self.transition(index, host, from, to));
        drop(state);
        if let Some(transition) = transition {
            self.report(&transition);
        }
        Pick::Slot(Slot {
            pool: self,
            index,
            ticket,
            outcome: CallOutcome::Abandoned,
            place,
            sample: None,
        })
    }

    /// Waits until a usable host has a free slot, or says that none is usable.
    async fn slot(&self, tried: &[bool]) -> Option<Slot<'_>> {
        loop {
            // Registered before looking, so a slot freed in between is not missed.
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            match self.pick(tried) {
                Pick::Slot(slot) => return Some(slot),
                Pick::Exhausted => return None,
                Pick::Wait(None) => released.await,
                Pick::Wait(Some(until)) => {
                    // Woken by a freed slot or the pause's end, whichever comes first.
                    let _ = tokio::time::timeout_at(until, released).await;
                }
            }
        }
    }

    fn transition(
        &self,
        index: usize,
        host: &HostState,
        from: CircuitState,
        to: CircuitState,
    ) -> CircuitTransition {
        let breaker = host.breaker.as_ref();
        CircuitTransition {
            backend: self.spec.name.clone(),
            host: self.hosts[index].name.clone(),
            from,
            to,
            consecutive_failures: breaker.map_or(0, CircuitBreaker::consecutive_failures),
            trips: breaker.map_or(0, CircuitBreaker::trips),
            reason: matches!(to, CircuitState::Open { .. })
                .then(|| host.last_failure.clone())
                .flatten(),
        }
    }

    fn report(&self, transition: &CircuitTransition) {
        match transition.to {
            CircuitState::Open { remaining_ms } => tracing::warn!(
                backend = %transition.backend,
                host = %transition.host,
                "host circuit opened for {:.1}s: {}",
                remaining_ms as f64 / 1000.0,
                transition.reason.as_deref().unwrap_or("unknown failure")
            ),
            CircuitState::Closed => tracing::info!(
                backend = %transition.backend,
                host = %transition.host,
                "host circuit closed: the probe request was answered"
            ),
            CircuitState::HalfOpen { .. } => tracing::debug!(
                backend = %transition.backend,
                host = %transition.host,
                "host circuit half-open: sending one probe request"
            ),
        }
        if let Some(observer) = self.observer() {
            observer.on_circuit(transition);
        }
    }

    fn report_limit(&self, change: &LimitChange) {
        if let Some(observer) = self.observer() {
            observer.on_limit(change);
        }
    }

    /// The observer now, taken out of its lock before it is called.
    fn observer(&self) -> Option<Arc<dyn AttemptObserver>> {
        self.observer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The failure of a request no host could serve, naming every host and why.
    fn exhausted(&self, failures: &[Option<BackendError>]) -> BackendError {
        let now = Instant::now();
        let state = self.lock();
        let reasons: Vec<String> = self
            .hosts
            .iter()
            .zip(state.hosts.iter())
            .zip(failures)
            .map(|((host, state), failure)| {
                let why = match (failure, state.breaker.as_ref().map(|b| b.state(now))) {
                    (Some(error), _) => error.to_string(),
                    (None, Some(CircuitState::Open { remaining_ms })) => format!(
                        "circuit open for {:.1}s more after: {}",
                        remaining_ms as f64 / 1000.0,
                        state.last_failure.as_deref().unwrap_or("unknown failure")
                    ),
                    (None, Some(CircuitState::HalfOpen { .. })) => {
                        "circuit half-open, another request's probe decides".to_owned()
                    }
                    (None, _) => "not tried".to_owned(),
                };
                format!("{} ({why})", host.name)
            })
            .collect();
        BackendError::new(
            FailureKind::Connect,
            format!(
                "no host of backend '{}' could serve the request: {}; start the hosts or remove \
                 the dead ones from its `urls`",
                self.spec.name,
                reasons.join("; ")
            ),
        )
    }
}

#[async_trait]
impl BackendAdapter for HostPool {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn deadline(&self) -> Deadline {
        let hosts = u32::try_from(self.hosts.len()).unwrap_or(u32::MAX);
        Deadline::Adapter(self.deadline.saturating_mul(hosts))
    }

    fn describe_host(&self) -> String {
        self.description.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let mut tried = vec![false; self.hosts.len()];
        let mut failures: Vec<Option<BackendError>> = std::iter::repeat_with(|| None)
            .take(self.hosts.len())
            .collect();
        loop {
            let Some(mut slot) = self.slot(&tried).await else {
                return Err(self.exhausted(&failures));
            };
            let host = &self.hosts[slot.index];
            let call = host.adapter.generate(request);
            let result =
                deadline::within(Some(self.deadline), &self.spec.name, &host.name, call).await;
            slot.sample = outcome_of(&result);
            match result {
                Ok(generation) => {
                    slot.finish(CallOutcome::Answered, None);
                    return Ok(generation);
                }
                Err(error) if self.failover[error.kind.index()] => {
                    tracing::debug!(
                        backend = %self.spec.name,
                        host = %host.name,
                        "host failed, trying another: {error}"
                    );
                    let index = slot.index;
                    slot.finish(CallOutcome::Tripped, Some(&error));
                    tried[index] = true;
                    failures[index] = Some(error);
                }
                Err(error) if error.kind == FailureKind::Cancelled => {
                    slot.finish(CallOutcome::Abandoned, None);
                    return Err(error);
                }
                Err(error) => {
                    slot.finish(CallOutcome::Answered, None);
                    return Err(error);
                }
            }
        }
    }

    /// Every host's health, merged: reachable when any host is; a model missing or credentials
    /// refused on any reachable host show as such; the smallest context length; each message
    /// and fix prefixed with its host.
    async fn health(&self) -> HealthReport {
        let mut merged = HealthReport::default();
        let (mut reachable, mut unknown) = (0, 0);
        for host in &self.hosts {
            let report = host.adapter.health().await;
            match report.reachable {
                Some(true) => {
                    reachable += 1;
                    merged.version = merged.version.or(report.version);
                    if let Some(accepted) = report.credentials_accepted {
                        merged.credentials_accepted =
                            Some(merged.credentials_accepted.unwrap_or(true) && accepted);
                    }
                    if let Some(present) = report.model_present {
                        merged.model_present =
                            Some(merged.model_present.unwrap_or(true) && present);
                    }
                    merged.context_length = match (merged.context_length, report.context_length) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Some(false) => {}
                None => unknown += 1,
            }
            let prefix = |line: String| format!("{}: {line}", host.name);
            merged
                .messages
                .extend(report.messages.into_iter().map(prefix));
            merged.fixes.extend(report.fixes.into_iter().map(prefix));
        }
        merged.reachable = if reachable > 0 {
            Some(true)
        } else if unknown > 0 {
            None
        } else {
            Some(false)
        };
        merged
    }

    /// The digest every host that reports one agrees on; unknown when no host reports one,
    /// or when two hosts serve different weights under the model's name.
    async fn model_digest(&self) -> Option<String> {
        let mut agreed: Option<String> = None;
        for host in &self.hosts {
            let Some(digest) = host.adapter.model_digest().await else {
                continue;
            };
            match &agreed {
                Some(seen) if *seen != digest => return None,
                Some(_) => {}
                None => agreed = Some(digest),
            }
        }
        agreed
    }

    fn capabilities(&self) -> Capabilities {
        self.hosts[0].adapter.capabilities()
    }
}
