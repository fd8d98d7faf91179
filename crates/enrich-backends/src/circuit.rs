//! The circuit breaker: a pure state machine ([`CircuitBreaker`]) and the serialisable views of
//! it ([`CircuitSnapshot`], [`CircuitTransition`]).
//!
//! Nothing here locks, sleeps or reads the clock: every method takes `now`. The
//! [`Cascade`](crate::Cascade) keeps one breaker per backend and the
//! [`HostPool`](crate::HostPool) one per host, each behind its own lock.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// When to stop sending requests to a backend (or a pool's host) that keeps failing to answer.
///
/// After `failures_to_open` consecutive failures of kinds that trip the circuit
/// ([`KindPolicy::trips_circuit`](crate::KindPolicy::trips_circuit): `connect`, `timeout` and
/// `server_error` by default), counted across all spans, the circuit opens: requests are refused
/// at once, without a call, for `cooldown`. Then it is half-open: exactly one probe request goes
/// through while every other request is still refused. An answer to the probe closes the circuit
/// and resets the cooldown; another tripping failure opens it again for the last cooldown times
/// `growth`, at most `max_cooldown`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitPolicy {
    /// Consecutive tripping failures that open the circuit (values below 1 count as 1).
    pub failures_to_open: u32,
    /// How long the circuit stays open after it first opens.
    pub cooldown: Duration,
    /// The longest cooldown, however often a probe fails.
    pub max_cooldown: Duration,
    /// How much the cooldown grows after each failed probe (values below 1 count as 1).
    pub growth: f64,
}

impl Default for CircuitPolicy {
    /// Three failures open the circuit for 30 s, doubling after each failed probe up to 10 min.
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
            growth: 2.0,
        }
    }
}

impl CircuitPolicy {
    /// The cooldown that follows a failed probe after `current`.
    fn grown(&self, current: Duration) -> Duration {
        let growth = if self.growth.is_finite() {
            self.growth.max(1.0)
        } else {
            1.0
        };
        let max = self.max_cooldown.max(self.cooldown);
        Duration::try_from_secs_f64(current.as_secs_f64() * growth)
            .unwrap_or(max)
            .min(max)
    }
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum CircuitState {
    /// Requests go through; failures are counted.
    Closed,
    /// Requests are refused without a call.
    Open {
        /// How long until a probe may go through, in milliseconds.
        remaining_ms: u64,
    },
    /// The cooldown is over: one probe request decides.
    HalfOpen {
        /// Whether the probe is under way (every other request is refused meanwhile).
        probe_in_flight: bool,
    },
}

/// A circuit at one moment, for `enrich status` and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitSnapshot {
    /// The backend's configured name.
    pub backend: String,
    /// The host the circuit guards: a pool's host URL, or the backend's
    /// [`describe_host`](crate::BackendAdapter::describe_host).
    pub host: String,
    /// Closed, open or half-open.
    pub state: CircuitState,
    /// Tripping failures since the last answer.
    pub consecutive_failures: u32,
    /// How often the circuit has opened.
    pub trips: u32,
}

/// A circuit changed state; reported to
/// [`AttemptObserver::on_circuit`](crate::AttemptObserver::on_circuit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitTransition {
    /// The backend's configured name.
    pub backend: String,
    /// The host the circuit guards (see [`CircuitSnapshot::host`]).
    pub host: String,
    /// The state before.
    pub from: CircuitState,
    /// The state after (an opening carries its whole cooldown).
    pub to: CircuitState,
    /// Tripping failures since the last answer.
    pub consecutive_failures: u32,
    /// How often the circuit has opened, this time included.
    pub trips: u32,
    /// The failure that opened the circuit, when it opened.
    pub reason: Option<String>,
}

/// How a request let through by [`CircuitBreaker::admit`] ended, as far as the circuit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The backend answered: a success, or a failure that does not trip the circuit.
    Answered,
    /// A failure that trips the circuit (connect, timeout, server error by default).
    Tripped,
    /// No verdict: the request was cancelled or dropped. A probe's place is given back.
    Abandoned,
}

/// A request the circuit let through; hand it back with [`CircuitBreaker::settle`].
///
/// A ticket remembers the circuit's state when it was issued, so the late result of a request
/// that started before the circuit opened changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "hand the ticket back with CircuitBreaker::settle"]
pub struct CircuitTicket {
    epoch: u64,
    probe: bool,
}

impl CircuitTicket {
    /// Whether this request is the half-open circuit's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

/// One circuit: closed → open → half-open → closed (or open again, with a longer cooldown).
///
/// A pure state machine: [`admit`](Self::admit) before a request, [`settle`](Self::settle) after
/// it, both with the current time. Not thread-safe by itself; callers keep it behind a lock.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    policy: CircuitPolicy,
    phase: Phase,
    /// Bumped on every state change; tickets from an older epoch are stale.
    epoch: u64,
    consecutive_failures: u32,
    trips: u32,
    /// The cooldown of the next opening.
    cooldown: Duration,
}

impl CircuitBreaker {
    /// A closed circuit.
    pub fn new(policy: CircuitPolicy) -> Self {
        Self {
            policy,
            phase: Phase::Closed,
            epoch: 0,
            consecutive_failures: 0,
            trips: 0,
            cooldown: policy.cooldown,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &CircuitPolicy {
        &self.policy
    }

    /// Whether [`admit`](Self::admit) would let a request through now, without changing
    /// anything.
    pub fn allows(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::Open { until } => until <= now,
            Phase::HalfOpen { probe_in_flight } => !probe_in_flight,
        }
    }

    /// Lets a request through, or refuses it with how long the circuit stays open
    /// (`Duration::ZERO` while another request is the probe).
    ///
    /// The first request after the cooldown becomes the probe: the circuit turns half-open, and
    /// the transition (from `Open { remaining_ms: 0 }`) is returned with the ticket.
    ///
    /// # Errors
    ///
    /// The remaining cooldown when the circuit refuses the request.
    pub fn admit(
        &mut self,
        now: Instant,
    ) -> Result<(CircuitTicket, Option<(CircuitState, CircuitState)>), Duration> {
        match self.phase {
            Phase::Closed => Ok((self.ticket(false), None)),
            Phase::Open { until } if until > now => Err(until - now),
            Phase::Open { .. } => {
                self.enter(Phase::HalfOpen {
                    probe_in_flight: true,
                });
                let transition = (CircuitState::Open { remaining_ms: 0 }, self.state(now));
                Ok((self.ticket(true), Some(transition)))
            }
            Phase::HalfOpen {
                probe_in_flight: false,
            } => {
                // A probe was abandoned: this request probes instead, in the same half-open state.
                self.enter(Phase::HalfOpen {
                    probe_in_flight: true,
                });
                Ok((self.ticket(true), None))
            }
            Phase::HalfOpen {
                probe_in_flight: true,
            } => Err(Duration::ZERO),
        }
    }

    /// Records how a request ended; returns the transition it caused, if any (before, after).
    pub fn settle(
        &mut self,
        ticket: CircuitTicket,
        outcome: CallOutcome,
        now: Instant,
    ) -> Option<(CircuitState, CircuitState)> {
        if ticket.epoch != self.epoch {
            // The request started before the last state change: its result is stale.
            return None;
        }
        let from = self.state(now);
        match (self.phase, outcome) {
            (_, CallOutcome::Abandoned) => {
                if ticket.probe {
                    // Give the probe's place back; the next request probes instead.
                    self.phase = Phase::HalfOpen {
                        probe_in_flight: false,
                    };
                }
                None
            }
            (Phase::Closed, CallOutcome::Answered) => {
                self.consecutive_failures = 0;
                None
            }
            (Phase::Closed, CallOutcome::Tripped) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= self.policy.failures_to_open.max(1) {
                    self.open(now);
                    Some((from, self.state(now)))
                } else {
                    None
                }
            }
            (Phase::HalfOpen { .. }, CallOutcome::Answered) if ticket.probe => {
                self.consecutive_failures = 0;
                self.cooldown = self.policy.cooldown;
                self.enter(Phase::Closed);
                Some((from, CircuitState::Closed))
            }
            (Phase::HalfOpen { .. }, CallOutcome::Tripped) if ticket.probe => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.cooldown = self.policy.grown(self.cooldown);
                self.open(now);
                Some((from, self.state(now)))
            }
            // A ticket of the current epoch is a probe in every other phase.
            _ => None,
        }
    }

    /// The circuit's state at `now`. An open circuit whose cooldown is over reads as half-open
    /// with no probe under way: the next request is the probe.
    pub fn state(&self, now: Instant) -> CircuitState {
        match self.phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until } if until > now => CircuitState::Open {
                remaining_ms: millis(until - now),
            },
            Phase::Open { .. } => CircuitState::HalfOpen {
                probe_in_flight: false,
            },
            Phase::HalfOpen { probe_in_flight } => CircuitState::HalfOpen { probe_in_flight },
        }
    }

    /// Tripping failures since the last answer.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// How often the circuit has opened.
    pub fn trips(&self) -> u32 {
        self.trips
    }

    /// A snapshot naming the backend and host the circuit guards.
    pub fn snapshot(&self, backend: &str, host: &str, now: Instant) -> CircuitSnapshot {
        CircuitSnapshot {
            backend: backend.to_owned(),
            host: host.to_owned(),
            state: self.state(now),
            consecutive_failures: self.consecutive_failures,
            trips: self.trips,
        }
    }

    fn ticket(&self, probe: bool) -> CircuitTicket {
        CircuitTicket {
            epoch: self.epoch,
            probe,
        }
    }

    fn open(&mut self, now: Instant) {
        self.trips = self.trips.saturating_add(1);
        self.enter(Phase::Open {
            until: now + self.cooldown,
        });
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch += 1;
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CircuitPolicy {
        CircuitPolicy {
            failures_to_open: 2,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(35),
            growth: 2.0,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn open(ms: u64) -> CircuitState {
        CircuitState::Open { remaining_ms: ms }
    }

    const PROBING: CircuitState = CircuitState::HalfOpen {
        probe_in_flight: true,
    };

    /// Admits and settles one request at `now`; returns the transitions seen.
    fn call(
        breaker: &mut CircuitBreaker,
        now: Instant,
        outcome: CallOutcome,
    ) -> Vec<(CircuitState, CircuitState)> {
        let (ticket, admitted) = breaker
            .admit(now)
            .expect("the circuit lets the call through");
        admitted
            .into_iter()
            .chain(breaker.settle(ticket, outcome, now))
            .collect()
    }

    #[test]
    fn consecutive_tripping_failures_open_and_answers_reset_the_count() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        assert!(call(&mut breaker, t0, CallOutcome::Tripped).is_empty());
        assert!(call(&mut breaker, t0, CallOutcome::Answered).is_empty());
        assert_eq!(breaker.consecutive_failures(), 0);
        assert!(call(&mut breaker, t0, CallOutcome::Tripped).is_empty());
        assert_eq!(
            call(&mut breaker, t0, CallOutcome::Tripped),
            [(CircuitState::Closed, open(10_000))]
        );
        assert_eq!((breaker.consecutive_failures(), breaker.trips()), (2, 1));
        assert_eq!(breaker.admit(t0 + secs(4)), Err(secs(6)));
        assert!(!breaker.allows(t0 + secs(4)));
        assert!(breaker.allows(t0 + secs(10)));
    }

    #[test]
    fn after_the_cooldown_exactly_one_probe_goes_through() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        call(&mut breaker, t0, CallOutcome::Tripped);
        call(&mut breaker, t0, CallOutcome::Tripped);
        let later = t0 + secs(10);
        assert_eq!(
            breaker.state(later),
            CircuitState::HalfOpen {
                probe_in_flight: false
            }
        );
        let (probe, transition) = breaker.admit(later).unwrap();
        assert!(probe.is_probe());
        assert_eq!(transition, Some((open(0), PROBING)));
        assert_eq!(breaker.admit(later), Err(Duration::ZERO));
        assert_eq!(breaker.admit(later + secs(100)), Err(Duration::ZERO));
        assert_eq!(
            breaker.settle(probe, CallOutcome::Answered, later),
            Some((PROBING, CircuitState::Closed))
        );
        assert_eq!(breaker.consecutive_failures(), 0);
        assert!(!breaker.admit(later).unwrap().0.is_probe());
    }

    #[test]
    fn failed_probes_grow_the_cooldown_up_to_its_cap_and_an_answer_resets_it() {
        let mut now = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        call(&mut breaker, now, CallOutcome::Tripped);
        call(&mut breaker, now, CallOutcome::Tripped);
        // Each failed probe re-opens the circuit for longer: 20 s, 35 s (the cap), 35 s.
        let mut cooldowns = Vec::new();
        for expected in [10, 20, 35, 35] {
            now += secs(expected);
            let seen = call(&mut breaker, now, CallOutcome::Tripped);
            let Some((_, CircuitState::Open { remaining_ms })) = seen.last().copied() else {
                panic!("{seen:?}")
            };
            cooldowns.push(remaining_ms / 1000);
        }
        assert_eq!(cooldowns, [20, 35, 35, 35]);
        assert_eq!(breaker.trips(), 5);
        now += secs(35);
        assert_eq!(
            call(&mut breaker, now, CallOutcome::Answered).last(),
            Some(&(PROBING, CircuitState::Closed))
        );
        call(&mut breaker, now, CallOutcome::Tripped);
        call(&mut breaker, now, CallOutcome::Tripped);
        assert_eq!(breaker.state(now), open(10_000));
    }

    #[test]
    fn an_abandoned_probe_gives_its_place_back() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        call(&mut breaker, t0, CallOutcome::Tripped);
        call(&mut breaker, t0, CallOutcome::Tripped);
        let later = t0 + secs(10);
        let (probe, _) = breaker.admit(later).unwrap();
        assert_eq!(breaker.settle(probe, CallOutcome::Abandoned, later), None);
        let (next, transition) = breaker.admit(later).unwrap();
        assert!(next.is_probe());
        assert_eq!(transition, None, "still half-open: no new transition");
        assert_eq!(breaker.state(later), PROBING);
    }

    #[test]
    fn results_of_requests_started_before_a_state_change_are_ignored() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        let (early_a, _) = breaker.admit(t0).unwrap();
        let (early_b, _) = breaker.admit(t0).unwrap();
        let (early_c, _) = breaker.admit(t0).unwrap();
        breaker.settle(early_a, CallOutcome::Tripped, t0);
        assert!(breaker.settle(early_b, CallOutcome::Tripped, t0).is_some());
        // Opened: a late answer neither closes it nor counts.
        assert_eq!(breaker.settle(early_c, CallOutcome::Answered, t0), None);
        assert_eq!(breaker.state(t0), open(10_000));
        assert_eq!(breaker.consecutive_failures(), 2);
    }

    #[test]
    fn odd_policies_stay_usable() {
        let t0 = Instant::now();
        let odd = CircuitPolicy {
            failures_to_open: 0,
            cooldown: secs(10),
            max_cooldown: secs(1),
            growth: f64::NAN,
        };
        let mut breaker = CircuitBreaker::new(odd);
        assert_eq!(
            call(&mut breaker, t0, CallOutcome::Tripped),
            [(CircuitState::Closed, open(10_000))]
        );
        let seen = call(&mut breaker, t0 + secs(10), CallOutcome::Tripped);
        assert_eq!(seen.last(), Some(&(PROBING, open(10_000))));
    }

    #[test]
    fn states_serialise_with_their_phase() {
        let snapshot = CircuitSnapshot {
            backend: "gpu".into(),
            host: "http://gpu1:11434".into(),
            state: open(1500),
            consecutive_failures: 3,
            trips: 1,
        };
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "backend": "gpu",
                "host": "http://gpu1:11434",
                "state": {"phase": "open", "remaining_ms": 1500},
                "consecutive_failures": 3,
                "trips": 1,
            })
        );
        assert_eq!(
            serde_json::to_value(CircuitState::Closed).unwrap(),
            serde_json::json!({"phase": "closed"})
        );
        let back: CircuitSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, snapshot);
    }
}
