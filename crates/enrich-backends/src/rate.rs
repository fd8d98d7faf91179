//! [`RateLimited`]: requests and tokens per minute for one backend, with governor's GCRA.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use enrich_config::BackendSpec;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::adapter::{BackendAdapter, Capabilities, GenerateRequest, Generation, HealthReport};
use crate::deadline::{self, Deadline};
use crate::failure::BackendError;

/// How much one backend may be sent per minute. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute.
    pub requests_per_minute: Option<NonZeroU32>,
    /// Tokens per minute, prompt and output, as estimated before each request
    /// ([`GenerateRequest::estimated_tokens`]).
    pub tokens_per_minute: Option<NonZeroU32>,
}

impl RateLimit {
    /// The limits of a backend entry (`requests_per_minute`, `tokens_per_minute`); 0 is
    /// unlimited.
    pub fn of(spec: &BackendSpec) -> Self {
        Self {
            requests_per_minute: spec.requests_per_minute.and_then(NonZeroU32::new),
            tokens_per_minute: spec.tokens_per_minute.and_then(NonZeroU32::new),
        }
    }

    /// True when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }
}

/// governor's clock on tokio's time, so the paused test clock drives the limiter too.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// One per-minute budget: a GCRA limiter that refills continuously, bursting to the whole
/// minute's budget.
struct Budget {
    limiter: Limiter,
    per_minute: NonZeroU32,
}

impl Budget {
    fn new(per_minute: NonZeroU32, clock: &TokioClock) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(Quota::per_minute(per_minute), clock.clone()),
            per_minute,
        }
    }

    /// How long to wait before `cells` more fit; `Duration::ZERO` once they are taken. A
    /// request larger than the whole budget takes the whole budget.
    fn take(&self, cells: u32) -> Duration {
        let cells = NonZeroU32::new(cells.min(self.per_minute.get())).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_n(cells) {
            Ok(Ok(())) => Duration::ZERO,
            Ok(Err(not_until)) => not_until
                .wait_time_from(self.limiter.clock().now())
                // A wait that rounds to nothing must still let the clock move.
                .max(Duration::from_micros(1)),
            // Cannot happen: `cells` is at most the burst size.
            Err(_) => Duration::ZERO,
        }
    }

    async fn wait_for(&self, cells: u32) {
        loop {
            let wait = self.take(cells);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// A [`BackendAdapter`] that keeps a backend under its [`RateLimit`].
///
/// Each request first waits its turn (first come, first served), then until the request-per-
/// minute budget has a request and the token budget has the request's estimated tokens
/// ([`GenerateRequest::estimated_tokens`]); the budgets refill continuously and may be spent in
/// one burst. A request estimated at more tokens than the whole per-minute budget is clamped to
/// it: it waits for a full budget and spends it, instead of waiting forever. Tokens are counted
/// before the call from the estimate, never corrected afterwards.
///
/// The backend's `timeout_seconds` starts once the limiter lets the request go
/// ([`Deadline::Adapter`]: the cascade sets no timer of its own). Wrap it
/// outermost, around a [`HostPool`](crate::HostPool) or an in-flight cap: a limit covers every
/// host of the backend, and waiting for the limiter never holds a host slot.
pub struct RateLimited {
    inner: Arc<dyn BackendAdapter>,
    deadline: Option<Duration>,
    limit: RateLimit,
    requests: Option<Budget>,
    tokens: Option<Budget>,
    queue: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("backend", &self.inner.spec().name)
            .field("limit", &self.limit)
            .finish()
    }
}

impl RateLimited {
    /// `inner` under `limit`.
    pub fn new(inner: Arc<dyn BackendAdapter>, limit: RateLimit) -> Self {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Self {
            deadline: inner.deadline().caller_timeout(),
            requests: limit
                .requests_per_minute
                .map(|rpm| Budget::new(rpm, &clock)),
            tokens: limit.tokens_per_minute.map(|tpm| Budget::new(tpm, &clock)),
            inner,
            limit,
            queue: tokio::sync::Mutex::new(()),
        }
    }

    /// The limits in force.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }
}

#[async_trait]
impl BackendAdapter for RateLimited {
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
        {
            let _turn = self.queue.lock().await;
            if let Some(requests) = &self.requests {
                requests.wait_for(1).await;
            }
            if let Some(tokens) = &self.tokens {
                tokens.wait_for(request.estimated_tokens()).await;
            }
        }
        let host = self.inner.describe_host();
        let call = self.inner.generate(request);
        deadline::within(self.deadline, &self.inner.spec().name, &host, call).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_minute: u32) -> Budget {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Budget::new(NonZeroU32::new(per_minute).unwrap(), &clock)
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_bursts_then_refills_continuously() {
        let budget = budget(60);
        for _ in 0..60 {
            assert_eq!(budget.take(1), Duration::ZERO);
        }
        assert_eq!(budget.take(1), Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(budget.take(1), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(budget.take(1), Duration::ZERO);
        assert_eq!(budget.take(3), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_budget_takes_the_whole_budget() {
        let budget = budget(1000);
        assert_eq!(budget.take(5000), Duration::ZERO);
        assert_eq!(budget.take(1), Duration::from_millis(60));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(budget.take(5000), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(budget.take(5000), Duration::ZERO);
    }
}
