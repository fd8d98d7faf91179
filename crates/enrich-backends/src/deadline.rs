//! Deadlines: how long one request to a backend may take, and who enforces it. A decorator that
//! queues (for a host slot, an in-flight cap, a rate limiter) must start the backend's timeout
//! when the request is sent, not while it waits.

use std::future::Future;
use std::time::Duration;

use enrich_config::{BackendSpec, DEFAULT_TIMEOUT_SECONDS};

use enrich_types::FailureKind;

use crate::failure::BackendError;

/// Who bounds the time of one request to a backend, and by how much
/// ([`BackendAdapter::deadline`](crate::BackendAdapter::deadline)).
///
/// A plain adapter leaves its deadline to the [`Cascade`](crate::Cascade), which bounds each
/// `generate` call by the backend's `timeout_seconds`. A decorator that makes requests wait (a
/// host pool, an in-flight cap, a rate limiter) must not let that wait eat into the timeout, so
/// it applies the timeout itself around the inner call once the wait is over, and says so with
/// [`Deadline::Adapter`]: the cascade then sets no timer of its own. Cancellation still
/// interrupts waits and calls: the cascade races the whole `generate` against its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The cascade bounds each `generate` call by this.
    Cascade(Duration),
    /// The adapter bounds each request by this itself, from the moment it is sent; waiting
    /// before that (for a slot, a host, the limiter) is not bounded by a deadline.
    Adapter(Duration),
}

impl Deadline {
    /// The deadline of a plain adapter serving `spec`: the cascade applies its timeout.
    pub fn of(spec: &BackendSpec) -> Self {
        Deadline::Cascade(timeout_of(spec))
    }

    /// The longest one request may take once it is sent, whoever enforces it.
    pub fn request_timeout(self) -> Duration {
        match self {
            Deadline::Cascade(timeout) | Deadline::Adapter(timeout) => timeout,
        }
    }

    /// The timeout whoever calls an adapter with this deadline (the cascade, or a decorator
    /// around it) applies around `generate`: `None` when the adapter applies it itself.
    pub(crate) fn caller_timeout(self) -> Option<Duration> {
        match self {
            Deadline::Cascade(timeout) => Some(timeout),
            Deadline::Adapter(_) => None,
        }
    }
}

/// The backend's per-request timeout; an unusable value (negative, NaN, zero) means the default.
pub(crate) fn timeout_of(spec: &BackendSpec) -> Duration {
    spec.timeout_seconds
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|timeout| !timeout.is_zero())
        .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECONDS))
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
