//! The cascade's policies as data, and the pure decision "what happens after this failure".
//!
//! Nothing here sleeps, locks or calls a backend: [`CascadePolicy::decide`] maps a failure and
//! the span's progress to a [`Decision`], and [`Backoff::delay`] computes a wait. The
//! [`Cascade`](crate::Cascade) is the mechanism that carries decisions out.

use std::ops::{Index, IndexMut};
use std::time::Duration;

use crate::circuit::CircuitPolicy;
use enrich_types::FailureKind;

use crate::failure::BackendError;

/// What the cascade does once a failure kind's retries on a backend are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureAction {
    /// Try the next backend of the chain.
    Next,
    /// Try the next backend, and skip this one for every later span of the run.
    SkipBackendForRun,
    /// Give up on the span at once.
    Stop,
}

/// How the cascade treats one [`FailureKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindPolicy {
    /// Retries on the same backend (after the first attempt) before `action_after`.
    pub retries: u32,
    /// What to do when the retries are used up.
    pub action_after: FailureAction,
    /// Whether this failure counts toward opening the backend's circuit (see [`CircuitPolicy`]).
    /// A failure that does not trip counts as an answer: the backend is reachable.
    pub trips_circuit: bool,
    /// Whether this failure is the backend's state rather than the span's (unreachable,
    /// refusing its key, missing the model, failing with 5xx, too busy): a span that gives up
    /// on such a failure counts as *unavailable*, not failed (see
    /// [`CascadeFailure::disposition`](crate::CascadeFailure::disposition)).
    pub outage: bool,
}

impl KindPolicy {
    /// `retries` retries, then `action_after`; does not trip the circuit and is the span's own
    /// failure.
    pub const fn new(retries: u32, action_after: FailureAction) -> Self {
        Self {
            retries,
            action_after,
            trips_circuit: false,
            outage: false,
        }
    }

    /// Sets whether the failure is an outage of the backend rather than the span's own.
    #[must_use]
    pub const fn outage(mut self, outage: bool) -> Self {
        self.outage = outage;
        self
    }

    /// Sets whether the failure counts toward opening the circuit.
    #[must_use]
    pub const fn tripping_circuit(mut self, trips: bool) -> Self {
        self.trips_circuit = trips;
        self
    }
}

/// A [`KindPolicy`] for every [`FailureKind`], indexed by kind: `table[FailureKind::Timeout]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTable([KindPolicy; FailureKind::ALL.len()]);

impl KindTable {
    /// The same policy for every kind.
    pub const fn uniform(policy: KindPolicy) -> Self {
        Self([policy; FailureKind::ALL.len()])
    }

    /// Each kind with its policy, in [`FailureKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FailureKind, &KindPolicy)> {
        FailureKind::ALL.into_iter().zip(self.0.iter())
    }
}

impl Index<FailureKind> for KindTable {
    type Output = KindPolicy;
    fn index(&self, kind: FailureKind) -> &KindPolicy {
        &self.0[kind.index()]
    }
}

impl IndexMut<FailureKind> for KindTable {
    fn index_mut(&mut self, kind: FailureKind) -> &mut KindPolicy {
        &mut self.0[kind.index()]
    }
}

impl Default for KindTable {
    /// The design's table; see the crate documentation.
    fn default() -> Self {
        use FailureAction::{Next, SkipBackendForRun, Stop};
        let mut table = Self::uniform(KindPolicy::new(0, Next));
        table[FailureKind::Connect] = KindPolicy::new(0, Next).tripping_circuit(true).outage(true);
        table[FailureKind::Timeout] = KindPolicy::new(1, Next).tripping_circuit(true);
        table[FailureKind::Overloaded] = KindPolicy::new(2, Next).outage(true);
        table[FailureKind::ServerError] =
            KindPolicy::new(1, Next).tripping_circuit(true).outage(true);
        table[FailureKind::ModelNotFound] = KindPolicy::new(0, SkipBackendForRun).outage(true);
        table[FailureKind::Auth] = KindPolicy::new(0, SkipBackendForRun).outage(true);
        table[FailureKind::Cancelled] = KindPolicy::new(0, Stop);
        table
    }
}

/// Exponential backoff between retries on the same backend.
///
/// The n-th retry waits `base * factor^(n-1)`, capped at `max`, then shortened by up to
/// `jitter` of itself at random so concurrent spans do not retry in lockstep. `max` is a hard
/// cap: a backend asking for a longer `retry_after` is not retried but left for the next one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest wait, including a backend's `retry_after`.
    pub max: Duration,
    /// Growth per retry (values below 1 count as 1).
    pub factor: f64,
    /// The fraction of each wait that is random, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 0.5 s, doubling, at most 30 s, up to 25 % jitter.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1-based). `unit` is a random number in
    /// `0.0..=1.0` (0 = no jitter taken off, 1 = all of it).
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let capped = grown.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(capped * (1.0 - jitter)).unwrap_or(self.max)
    }
}

/// Everything the cascade decides by: a policy per failure kind, backoff, limits.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadePolicy {
    /// What to do for each failure kind.
    pub per_kind: KindTable,
    /// Waits between retries on the same backend.
    pub backoff: Backoff,
    /// The most attempts (first tries and retries, all backends) for one span.
    pub max_attempts_per_span: u32,
    /// The circuit breaker; `None` disables it.
    pub circuit: Option<CircuitPolicy>,
    /// Corrective re-asks per backend and span: after [`FailureKind::MalformedOutput`],
    /// [`FailureKind::SchemaInvalid`], [`FailureKind::QualityRejected`] or
    /// [`FailureKind::Truncated`], the same backend is asked again this many times, the
    /// follow-up prompt quoting its rejected answer and the validator's (or the gate's) message (or, after a truncated answer, asking for a shorter one), before the
    /// kind's own policy applies. 0 disables them.
    pub corrective_reasks: u32,
}

impl Default for CascadePolicy {
    /// The design's table, default backoff, 6 attempts per span, default circuit, one
    /// corrective re-ask.
    fn default() -> Self {
        Self {
            per_kind: KindTable::default(),
            backoff: Backoff::default(),
            max_attempts_per_span: 6,
            circuit: Some(CircuitPolicy::default()),
            corrective_reasks: 1,
        }
    }
}

/// Where a span stands when an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpanProgress {
    /// Retries already made on the failing backend for this span (0 after a first attempt).
    pub retries_on_backend: u32,
    /// Attempts made for this span so far, the failed one included.
    pub attempts_made: u32,
    /// Corrective re-asks already made on the failing backend for this span.
    pub reasks_on_backend: u32,
}

/// What the cascade does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait, then try the same backend again. With no delay after
    /// [`FailureKind::MalformedOutput`] or [`FailureKind::SchemaInvalid`] this may be a
    /// corrective re-ask ([`CascadePolicy::corrective_reask`]): the same backend gets the
    /// follow-up prompt.
    Retry {
        /// How long to wait.
        delay: Duration,
    },
    /// Move on to the next backend.
    Next {
        /// Also skip the failed backend for every later span of the run.
        skip_backend_for_run: bool,
    },
    /// Give up on the span.
    Stop,
}

impl CascadePolicy {
    /// Sets the policy of one failure kind.
    #[must_use]
    pub fn with_kind(mut self, kind: FailureKind, policy: KindPolicy) -> Self {
        self.per_kind[kind] = policy;
        self
    }

    /// Sets the backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the attempt limit per span.
    #[must_use]
    pub fn with_max_attempts_per_span(mut self, max: u32) -> Self {
        self.max_attempts_per_span = max;
        self
    }

    /// Sets or disables the circuit breaker.
    #[must_use]
    pub fn with_circuit(mut self, circuit: Option<CircuitPolicy>) -> Self {
        self.circuit = circuit;
        self
    }

    /// Sets the number of corrective re-asks per backend and span.
    #[must_use]
    pub fn with_corrective_reasks(mut self, reasks: u32) -> Self {
        self.corrective_reasks = reasks;
        self
    }

    /// Whether a failure is the backend's outage rather than the span's own
    /// ([`KindPolicy::outage`]).
    pub fn is_outage(&self, kind: FailureKind) -> bool {
        self.per_kind[kind].outage
    }

    /// Whether a failed attempt is followed by a corrective re-ask of the same backend: the
    /// failure is [`FailureKind::MalformedOutput`], [`FailureKind::SchemaInvalid`],
    /// [`FailureKind::QualityRejected`] or [`FailureKind::Truncated`], the backend's re-asks for this span are not used up, and
    /// neither is the span's attempt limit.
    pub fn corrective_reask(&self, error: &BackendError, progress: SpanProgress) -> bool {
        matches!(
            error.kind,
            FailureKind::MalformedOutput
                | FailureKind::SchemaInvalid
                | FailureKind::QualityRejected
                | FailureKind::Truncated
        ) && progress.reasks_on_backend < self.corrective_reasks
            && progress.attempts_made < self.max_attempts_per_span
    }

    /// Decides what follows a failed attempt: a pure function of the policy, the error's kind
    /// and `retry_after`, the span's progress and a random `jitter_unit` in `0.0..=1.0`.
    ///
    /// A [`corrective_reask`](Self::corrective_reask) comes first, as a retry without delay.
    /// Otherwise a retry happens while the kind's retries are not used up, the span's attempt limit is not
    /// reached, and the backend's `retry_after` (if any) fits under `backoff.max`; it waits the
    /// backoff delay or the `retry_after`, whichever is longer. Otherwise the kind's
    /// [`FailureAction`] applies.
    pub fn decide(
        &self,
        error: &BackendError,
        progress: SpanProgress,
        jitter_unit: f64,
    ) -> Decision {
        if self.corrective_reask(error, progress) {
            return Decision::Retry {
                delay: Duration::ZERO,
            };
        }
        let policy = self.per_kind[error.kind];
        let retry_after_fits = error
            .retry_after
            .is_none_or(|wait| wait <= self.backoff.max);
        let may_retry = progress.retries_on_backend < policy.retries
            && progress.attempts_made < self.max_attempts_per_span
            && retry_after_fits;
        if may_retry {
            let backoff = self
                .backoff
                .delay(progress.retries_on_backend + 1, jitter_unit);
            let delay = error.retry_after.map_or(backoff, |wait| wait.max(backoff));
            return Decision::Retry { delay };
        }
        match policy.action_after {
            FailureAction::Next => Decision::Next {
                skip_backend_for_run: false,
            },
            FailureAction::SkipBackendForRun => Decision::Next {
                skip_backend_for_run: true,
            },
            FailureAction::Stop => Decision::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(retries_on_backend: u32, attempts_made: u32) -> SpanProgress {
        SpanProgress {
            retries_on_backend,
            attempts_made,
            reasks_on_backend: 0,
        }
    }

    fn reasked(progress: SpanProgress, reasks_on_backend: u32) -> SpanProgress {
        SpanProgress {
            reasks_on_backend,
            ..progress
        }
    }

    #[track_caller]
    fn check(
        policy: &CascadePolicy,
        error: BackendError,
        progress: SpanProgress,
        expected: Decision,
    ) {
        assert_eq!(policy.decide(&error, progress, 0.0), expected, "{error}");
    }

    const NEXT: Decision = Decision::Next {
        skip_backend_for_run: false,
    };
    const SKIP: Decision = Decision::Next {
        skip_backend_for_run: true,
    };
    fn retry_ms(ms: u64) -> Decision {
        Decision::Retry {
            delay: Duration::from_millis(ms),
        }
    }

    #[test]
    fn default_table_matches_the_design() {
        use FailureKind::*;
        let policy = CascadePolicy::default().with_corrective_reasks(0);
        let fail = |kind| BackendError::new(kind, "x");
        // (kind, decision after the first attempt, decision after the first retry)
        let table = [
            (Connect, NEXT, NEXT),
            (Timeout, retry_ms(500), NEXT),
            (Overloaded, retry_ms(500), retry_ms(1000)),
            (ServerError, retry_ms(500), NEXT),
            (ModelNotFound, SKIP, SKIP),
            (ContextExceeded, NEXT, NEXT),
            (Auth, SKIP, SKIP),
            (Truncated, NEXT, NEXT),
            (MalformedOutput, NEXT, NEXT),
            (SchemaInvalid, NEXT, NEXT),
            (Cancelled, Decision::Stop, Decision::Stop),
            (InvalidRequest, NEXT, NEXT),
            (ResponseTooLarge, NEXT, NEXT),
            (QualityRejected, NEXT, NEXT),
        ];
        assert_eq!(table.len(), FailureKind::ALL.len());
        for (kind, first, second) in table {
            check(&policy, fail(kind), progress(0, 1), first);
            check(&policy, fail(kind), progress(1, 2), second);
        }
        check(&policy, fail(Overloaded), progress(2, 3), NEXT);
        let tripping: Vec<_> = policy
            .per_kind
            .iter()
            .filter(|(_, p)| p.trips_circuit)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(tripping, [Connect, Timeout, ServerError]);
        // Outages are the backend's state: a span giving up on one is left pending, not
        // ledgered. Timeouts, oversized answers and every kind of bad answer are the span's own.
        let outages: Vec<_> = FailureKind::ALL
            .into_iter()
            .filter(|&kind| policy.is_outage(kind))
            .collect();
        assert_eq!(
            outages,
            [Connect, Overloaded, ServerError, ModelNotFound, Auth]
        );
        assert_eq!(CascadePolicy::default().corrective_reasks, 1);
    }

    #[test]
    fn invalid_output_gets_corrective_reasks_first() {
        use FailureKind::*;
        let policy = CascadePolicy::default();
        let reask = Decision::Retry {
            delay: Duration::ZERO,
        };
        // (kind, reasks already made on the backend, attempts made, decision)
        let table = [
            (MalformedOutput, 0, 1, reask),
            (SchemaInvalid, 0, 1, reask),
            (MalformedOutput, 1, 2, NEXT),
            (SchemaInvalid, 1, 2, NEXT),
            (QualityRejected, 0, 1, reask),
            (QualityRejected, 1, 2, NEXT),
            // The attempt limit wins over a re-ask.
            (SchemaInvalid, 0, 6, NEXT),
            // A truncated answer is re-asked too (for a shorter one).
            (Truncated, 0, 1, reask),
            (Truncated, 1, 2, NEXT),
            // Other kinds are never re-asked.
            (ContextExceeded, 0, 1, NEXT),
            (Timeout, 0, 1, retry_ms(500)),
        ];
        for (kind, reasks, attempts, expected) in table {
            let at = reasked(progress(0, attempts), reasks);
            check(&policy, BackendError::new(kind, "bad"), at, expected);
            assert_eq!(
                policy.corrective_reask(&BackendError::new(kind, "bad"), at),
                expected == reask,
                "{kind}"
            );
        }
        let twice = policy.clone().with_corrective_reasks(2);
        let bad = || BackendError::new(SchemaInvalid, "bad");
        check(&twice, bad(), reasked(progress(0, 2), 1), reask);
        check(&twice, bad(), reasked(progress(0, 3), 2), NEXT);
        // Re-asks come before the kind's own retries, which still apply afterwards.
        let retrying = policy.with_kind(SchemaInvalid, KindPolicy::new(1, FailureAction::Next));
        check(&retrying, bad(), reasked(progress(0, 1), 0), reask);
        check(&retrying, bad(), reasked(progress(0, 2), 1), retry_ms(500));
        check(&retrying, bad(), reasked(progress(1, 3), 1), NEXT);
    }

    #[test]
    fn retry_after_lengthens_the_wait_or_moves_on_when_over_the_cap() {
        let policy = CascadePolicy::default();
        let busy = |secs| {
            BackendError::new(FailureKind::Overloaded, "busy")
                .with_retry_after(Duration::from_secs(secs))
        };
        check(&policy, busy(7), progress(0, 1), retry_ms(7000));
        check(&policy, busy(30), progress(0, 1), retry_ms(30_000));
        check(&policy, busy(31), progress(0, 1), NEXT);
    }

    #[test]
    fn the_attempt_limit_turns_a_retry_into_the_kinds_action() {
        let policy = CascadePolicy::default().with_max_attempts_per_span(2);
        let timeout = || BackendError::new(FailureKind::Timeout, "slow");
        check(&policy, timeout(), progress(0, 1), retry_ms(500));
        check(&policy, timeout(), progress(0, 2), NEXT);
    }

    #[test]
    fn kinds_are_configurable() {
        let policy = CascadePolicy::default()
            .with_corrective_reasks(0)
            .with_kind(
                FailureKind::SchemaInvalid,
                KindPolicy::new(1, FailureAction::Stop),
            );
        let invalid = || BackendError::new(FailureKind::SchemaInvalid, "bad");
        check(&policy, invalid(), progress(0, 1), retry_ms(500));
        check(&policy, invalid(), progress(1, 2), Decision::Stop);
    }

    #[test]
    fn backoff_grows_caps_and_jitters_downward() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
            factor: 2.0,
            jitter: 0.5,
        };
        let delays: Vec<_> = (1..=5)
            .map(|n| backoff.delay(n, 0.0).as_secs_f64())
            .collect();
        assert_eq!(delays, [1.0, 2.0, 4.0, 5.0, 5.0]);
        assert_eq!(backoff.delay(2, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(2, 0.5), Duration::from_millis(1500));
        assert_eq!(backoff.delay(u32::MAX, 0.0), Duration::from_secs(5));
        let odd = Backoff {
            factor: f64::NAN,
            jitter: 7.0,
            ..backoff
        };
        assert_eq!(odd.delay(3, 0.0), Duration::from_secs(1));
        assert_eq!(odd.delay(3, 1.0), Duration::ZERO);
    }
}
