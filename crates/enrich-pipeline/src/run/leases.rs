//! The run's span leases: how long they live, and renewing them on time. A run holds a lease on
//! every span it claimed until the span's outcome is stored; the scheduler renews them every
//! quarter of their life, so a lease only runs out when its run is gone or hung.

use std::time::Duration;

use enrich_config::DEFAULT_TIMEOUT_SECONDS;
use tokio::time::Instant;

use super::Scheduler;
use super::claimer::Claimer;
use crate::error::PipelineError;
use crate::shared::Inner;

/// The shortest a span lease lives between renewals.
const MIN_LEASE_TTL: Duration = Duration::from_secs(600);

/// How long the run's span leases live between renewals: twice the longest one span can spend
/// in the cascade (every attempt it may make at the slowest backend's request timeout, each
/// followed by the longest backoff), at least [`MIN_LEASE_TTL`]. The request timeout is the
/// configured one whoever applies it ([`enrich_backends::Deadline`]): a queueing decorator's
/// wait has no deadline and must not count as one. The scheduler renews the leases every
/// quarter of that on a timer, so a lease only runs out when its run is gone or hung; a run
/// killed on this host loses its leases at once anyway (see [`enrich_db::LeaseHolder`]).
pub(super) fn lease_ttl(inner: &Inner) -> Duration {
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

/// When the run's leases were renewed, and how long they live.
pub(super) struct LeaseClock {
    ttl: Duration,
    renewed_at: Instant,
}

impl LeaseClock {
    /// Leases of `ttl`, just taken.
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            renewed_at: Instant::now(),
        }
    }
}

impl Scheduler<'_> {
    /// When the run's leases are renewed next: every quarter of their life.
    pub(super) fn renew_at(&self) -> Instant {
        self.leases.renewed_at + self.leases.ttl / 4
    }

    /// Extends the run's leases (see [`enrich_db::Db::renew_leases`]). The next renewal is due
    /// a quarter of their life later, also after a failure (which stops the run).
    pub(super) async fn renew_leases(&mut self) -> Result<(), PipelineError> {
        let renewed = self.claimer.call(Claimer::renew_leases).await;
        self.leases.renewed_at = Instant::now();
        renewed
            .map(drop)
            .map_err(PipelineError::db("renew the run's span leases"))
    }

    /// Renews the run's leases when they are due.
    pub(super) async fn renew_leases_if_due(&mut self) -> Result<(), PipelineError> {
        if Instant::now() >= self.renew_at() {
            self.renew_leases().await?;
        }
        Ok(())
    }
}
