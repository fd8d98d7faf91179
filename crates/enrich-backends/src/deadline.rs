//! Deadlines for decorators that queue: the backend's timeout must start when the request is
//! sent, not while it waits for a host slot or the rate limiter.

use std::future::Future;
use std::time::Duration;

use enrich_config::{BackendSpec, DEFAULT_TIMEOUT_SECONDS};

use crate::failure::{BackendError, FailureKind};

/// The `timeout_seconds` a queueing decorator shows the cascade: a week, which never fires.
///
/// The [`Cascade`](crate::Cascade) bounds each `generate` call by the backend's
/// `timeout_seconds`. A decorator that makes requests wait (for a host slot, an in-flight cap, a
/// rate limiter) must not let that wait eat into the timeout, so it shows the cascade a spec with
/// this value and applies the backend's own timeout around the inner call only, once the wait is
/// over. A decorator whose inner adapter's spec carries this value (or more) leaves the deadline
/// to it: the inner one queues too. Cancellation still interrupts waits and calls: the cascade
/// races the whole `generate` against its token.
pub const QUEUEING_TIMEOUT_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// The backend's per-request timeout; an unusable value (negative, NaN, zero) means the default.
pub(crate) fn timeout_of(spec: &BackendSpec) -> Duration {
    spec.timeout_seconds
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|timeout| !timeout.is_zero())
        .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECONDS))
}

/// Whether an adapter with this spec applies its deadline itself, after its own queueing.
pub(crate) fn queues_itself(spec: &BackendSpec) -> bool {
    spec.timeout_seconds
        .is_some_and(|secs| secs >= QUEUEING_TIMEOUT_SECONDS)
}

/// The spec a queueing decorator shows the cascade, and the deadline it applies itself (`None`
/// when the inner adapter applies it).
pub(crate) fn split(inner: &BackendSpec) -> (BackendSpec, Option<Duration>) {
    let own = (!queues_itself(inner)).then(|| timeout_of(inner));
    let mut outer = inner.clone();
    outer.timeout_seconds = Some(QUEUEING_TIMEOUT_SECONDS);
    (outer, own)
}

/// `call`, bounded by `timeout` when there is one, failing with the cascade's wording.
pub(crate) async fn within<T>(
    timeout: Option<Duration>,
    backend: &str,
    host: &str,
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let Some(timeout) = timeout else {
        return call.await;
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(timeout_error(backend, host, timeout)),
    }
}

/// The failure of a request that got no answer within `timeout`.
pub(crate) fn timeout_error(backend: &str, host: &str, timeout: Duration) -> BackendError {
    BackendError::new(
        FailureKind::Timeout,
        format!(
            "backend '{backend}' at {host} gave no answer within {}s; raise its timeout_seconds \
             or use a smaller model",
            timeout.as_secs_f64()
        ),
    )
}
