//! [`InFlightLimit`]: at most N requests in flight to one backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use enrich_config::BackendSpec;
use tokio::sync::Semaphore;

use crate::adapter::{BackendAdapter, Capabilities, GenerateRequest, Generation, HealthReport};
use crate::deadline::{self, Deadline};
use enrich_types::FailureKind;

use crate::failure::BackendError;

/// A [`BackendAdapter`] that lets at most `max_in_flight` requests through to its inner adapter
/// at once (Ollama serves `OLLAMA_NUM_PARALLEL` per model and queues the rest); the others wait
/// for a slot, first come first served.
///
/// Waiting for a slot must not eat into the backend's `timeout_seconds` (with one slot and four
/// spans in flight, the fourth would time out while queueing): the backend's timeout is applied
/// around the inner call once the slot is taken, with the cascade's wording and
/// [`FailureKind::Timeout`], and [`deadline`](BackendAdapter::deadline) tells the cascade so
/// ([`Deadline::Adapter`]). Cancellation still interrupts both the wait and the call (the
/// cascade races the whole `generate` against its token). [`HostPool`](crate::HostPool) caps
/// each of its hosts itself; this is the cap of a single-host backend.
pub struct InFlightLimit {
    inner: Arc<dyn BackendAdapter>,
    deadline: Option<Duration>,
    slots: Semaphore,
}

impl InFlightLimit {
    /// `inner` with at most `max_in_flight` requests at once (0 counts as 1).
    pub fn new(inner: Arc<dyn BackendAdapter>, max_in_flight: usize) -> Self {
        Self {
            deadline: inner.deadline().caller_timeout(),
            inner,
            slots: Semaphore::new(max_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
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
        let _slot = self.slots.acquire().await.map_err(|_| {
            // The semaphore is never closed; this only guards against a future change.
            BackendError::new(
                FailureKind::Cancelled,
                format!("backend '{}' is shutting down", self.inner.spec().name),
            )
        })?;
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
