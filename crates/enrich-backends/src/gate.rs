//! [`HostGate`]: the requests in flight to one host under its limit, fixed or adaptive
//! ([`AdaptiveLimit`]); shared by [`InFlightLimit`](crate::InFlightLimit) (one host) and
//! [`HostPool`](crate::HostPool) (one gate per host). Synchronous: its owner keeps it under a
//! mutex and does the waiting.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::adaptive::{
    AdaptiveLimit, AdaptivePolicy, LimitReason, LimitStep, Sample, SampleOutcome,
};
use crate::failure::BackendError;
use enrich_types::FailureKind;

/// A host's limit changed; reported to
/// [`AttemptObserver::on_limit`](crate::AttemptObserver::on_limit) and logged as the run's
/// `limit_changed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitChange {
    /// The backend's configured name.
    pub backend: String,
    /// The host (a pool's host URL, or the backend's
    /// [`describe_host`](crate::BackendAdapter::describe_host)).
    pub host: String,
    /// The limit before.
    pub from: usize,
    /// The limit after.
    pub to: usize,
    /// Requests in flight to the host when it changed.
    pub in_flight: usize,
    /// Why.
    pub reason: LimitReason,
    /// The latency that decided it (a round's mean, or the failed request's), in milliseconds.
    pub latency_ms: u64,
    /// The no-load latency it was compared with, in milliseconds, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ms: Option<u64>,
    /// How long new requests to the host wait because the server sent `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl LimitChange {
    /// Why, for people: `latency inflated 2.5×`, `server overloaded, retry after 2 s`.
    pub fn why(&self) -> String {
        let mut why = self.reason.describe().to_owned();
        if let (LimitReason::LatencyInflated, Some(base)) = (self.reason, self.baseline_ms)
            && base > 0
        {
            why.push_str(&format!(" {:.1}×", self.latency_ms as f64 / base as f64));
        }
        if let Some(ms) = self.retry_after_ms {
            why.push_str(&format!(", retry after {} s", ms.div_ceil(1000)));
        }
        why
    }
}

impl std::fmt::Display for LimitChange {
    /// `smollm2 @ http://gpu:11434: 3 in flight, limit 4`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} @ {}: {} in flight, limit {}",
            self.backend, self.host, self.in_flight, self.to
        )
    }
}

/// A host's limit at one moment, for the run summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSnapshot {
    /// The backend's configured name.
    pub backend: String,
    /// The host.
    pub host: String,
    /// Whether the limit adapts (`adaptive = true`, the default), or is the fixed
    /// `max_in_flight`.
    pub adaptive: bool,
    /// The limit now.
    pub limit: usize,
    /// The highest the limit has been.
    pub peak_limit: usize,
    /// The ceiling it never passes: `max_in_flight`, else the adaptive default.
    pub ceiling: usize,
    /// Requests in flight now.
    pub in_flight: usize,
    /// The most requests that were in flight at once.
    pub peak_in_flight: usize,
    /// How often the limit was cut after a 429, 503, full queue or timeout.
    pub backoffs: u64,
}

/// A request's place under a gate, taken by [`HostGate::try_admit`] and given back to
/// [`HostGate::release`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u64,
    in_flight: usize,
    sent: Instant,
}

#[derive(Debug)]
enum Cap {
    Fixed(usize),
    Adaptive(AdaptiveLimit),
}

/// The requests in flight to one host and its limit.
#[derive(Debug)]
pub(crate) struct HostGate {
    cap: Cap,
    in_flight: usize,
    peak_in_flight: usize,
    peak_limit: usize,
    backoffs: u64,
}

impl HostGate {
    /// A gate of `fixed` requests (0 counts as 1), or an adaptive one under `adaptive`.
    pub(crate) fn new(fixed: usize, adaptive: Option<AdaptivePolicy>) -> Self {
        let cap = match adaptive {
            Some(policy) => Cap::Adaptive(AdaptiveLimit::new(policy)),
            None => Cap::Fixed(fixed.max(1)),
        };
        let mut gate = Self {
            cap,
            in_flight: 0,
            peak_in_flight: 0,
            peak_limit: 0,
            backoffs: 0,
        };
        gate.peak_limit = gate.limit();
        gate
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> usize {
        match &self.cap {
            Cap::Fixed(n) => *n,
            Cap::Adaptive(limit) => limit.limit(),
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether a request may go now; `Err` with the moment a `Retry-After` pause ends, or
    /// `Err(None)` when the host is at its limit.
    pub(crate) fn room(&self, now: Instant) -> Result<(), Option<Instant>> {
        if let Cap::Adaptive(limit) = &self.cap {
            limit.admits(now).map_err(Some)?;
        }
        if self.in_flight >= self.limit() {
            return Err(None);
        }
        Ok(())
    }

    /// Takes a place when there is [`room`](Self::room).
    pub(crate) fn try_admit(&mut self, now: Instant) -> Result<Ticket, Option<Instant>> {
        self.room(now)?;
        self.in_flight += 1;
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
        let epoch = match &self.cap {
            Cap::Fixed(_) => 0,
            Cap::Adaptive(limit) => limit.epoch(),
        };
        Ok(Ticket {
            epoch,
            in_flight: self.in_flight,
            sent: now,
        })
    }

    /// Gives a place back; `outcome` is what the request taught (`None`: nothing, e.g. it was
    /// cancelled or the connection failed). Returns the limit's change, if any.
    pub(crate) fn release(
        &mut self,
        ticket: Ticket,
        outcome: Option<SampleOutcome>,
        now: Instant,
    ) -> Option<LimitStep> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let (Cap::Adaptive(limit), Some(outcome)) = (&mut self.cap, outcome) else {
            return None;
        };
        let sample = Sample {
            epoch: ticket.epoch,
            in_flight: ticket.in_flight,
            latency: now.saturating_duration_since(ticket.sent),
            outcome,
        };
        let step = limit.record(sample, now)?;
        if step.reason.is_backoff() {
            self.backoffs += 1;
        }
        self.peak_limit = self.peak_limit.max(step.to);
        Some(step)
    }

    /// The change `step` made, for observers.
    pub(crate) fn change(&self, backend: &str, host: &str, step: &LimitStep) -> LimitChange {
        LimitChange {
            backend: backend.to_owned(),
            host: host.to_owned(),
            from: step.from,
            to: step.to,
            in_flight: self.in_flight,
            reason: step.reason,
            latency_ms: millis(step.latency),
            baseline_ms: step.baseline.map(millis),
            retry_after_ms: step.retry_after.map(millis),
        }
    }

    /// The gate now.
    pub(crate) fn snapshot(&self, backend: &str, host: &str) -> LimitSnapshot {
        let (adaptive, ceiling) = match &self.cap {
            Cap::Fixed(n) => (false, *n),
            Cap::Adaptive(limit) => (true, limit.policy().ceiling),
        };
        LimitSnapshot {
            backend: backend.to_owned(),
            host: host.to_owned(),
            adaptive,
            limit: self.limit(),
            peak_limit: self.peak_limit,
            ceiling,
            in_flight: self.in_flight,
            peak_in_flight: self.peak_in_flight,
            backoffs: self.backoffs,
        }
    }
}

/// What a request's result teaches the limiter: an answer is a latency sample, a 429/503 or
/// full queue and a timeout are backoffs; anything else (a refused connection, a 4xx, a
/// cancellation) says nothing about the host's capacity.
pub(crate) fn outcome_of<T>(result: &Result<T, BackendError>) -> Option<SampleOutcome> {
    match result {
        Ok(_) => Some(SampleOutcome::Answered),
        Err(error) => match error.kind {
            FailureKind::Overloaded => Some(SampleOutcome::Overloaded {
                retry_after: error.retry_after,
            }),
            FailureKind::Timeout => Some(SampleOutcome::TimedOut),
            _ => None,
        },
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
