//! The per-backend in-flight cap: a [`BackendAdapter`] decorator holding a semaphore, so the
//! cascade stays unaware of it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use enrich_backends::{
    BackendAdapter, BackendError, Capabilities, FailureKind, GenerateRequest, Generation,
    HealthReport,
};
use enrich_config::BackendSpec;
use tokio::sync::Semaphore;

/// The deadline the cascade sees for a limited backend: long enough never to fire. The real
/// deadline is applied inside [`Limited::generate`], once a slot is taken; a rate limiter
/// around this decorator sees the value and leaves the deadline to it.
const QUEUE_AND_CALL_DEADLINE_SECS: f64 = enrich_backends::QUEUEING_TIMEOUT_SECONDS;

/// An adapter that lets at most `max_in_flight` requests through at once.
///
/// The cascade bounds each `generate` call by the backend's `timeout_seconds`. Waiting for a
/// slot must not eat into that time (with one slot and four spans in flight, the fourth would
/// time out while queueing), so the decorator moves the deadline: the spec the cascade sees has
/// a deadline that never fires, and the backend's own timeout is applied around the inner call
/// only, after the slot is taken, with the cascade's wording and [`FailureKind::Timeout`].
/// Cancellation still interrupts both the wait and the call (the cascade races the whole
/// `generate` against its token). The wait itself is bounded: each slot holder ends within its
/// timeout.
pub(crate) struct Limited {
    inner: Arc<dyn BackendAdapter>,
    spec: BackendSpec,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl Limited {
    pub(crate) fn new(inner: Arc<dyn BackendAdapter>, max_in_flight: usize) -> Self {
        let original = inner.spec();
        // An unusable timeout (zero, negative, NaN) means the default, as in the cascade.
        let timeout = original
            .timeout_seconds
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(Duration::from_secs_f64(
                enrich_config::DEFAULT_TIMEOUT_SECONDS,
            ));
        let mut spec = original.clone();
        spec.timeout_seconds = Some(QUEUE_AND_CALL_DEADLINE_SECS);
        Self {
            inner,
            spec,
            timeout,
            slots: Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
        }
    }
}

#[async_trait]
impl BackendAdapter for Limited {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.inner.describe_host()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let _slot = self.slots.acquire().await.map_err(|_| {
            // The semaphore is never closed; this only guards against a future change.
            BackendError::new(
                FailureKind::Cancelled,
                format!("backend '{}' is shutting down", self.spec.name),
            )
        })?;
        match tokio::time::timeout(self.timeout, self.inner.generate(request)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(BackendError::new(
                FailureKind::Timeout,
                format!(
                    "backend '{}' at {} gave no answer within {}s; raise its timeout_seconds or \
                     use a smaller model",
                    self.spec.name,
                    self.inner.describe_host(),
                    self.timeout.as_secs_f64()
                ),
            )),
        }
    }

    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
