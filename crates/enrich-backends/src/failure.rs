//! The per-attempt [`BackendError`]: a [`FailureKind`] (enrich-types' table of kinds and their
//! stored names) plus what happened.

use std::error::Error as StdError;
use std::time::Duration;

use enrich_types::FailureKind;

/// Why one attempt against one backend failed: a [`FailureKind`] plus what happened.
///
/// Adapters build these when they classify a provider's answer; the cascade builds them for
/// timeouts, cancellation and invalid output. The message is lowercase and names the backend or
/// URL where the builder knows it; for [`FailureKind::MalformedOutput`] and
/// [`FailureKind::SchemaInvalid`] it is written so it can be sent back to the model.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct BackendError {
    /// The classification the cascade acts on.
    pub kind: FailureKind,
    /// What happened, for people and for a corrective re-ask.
    pub message: String,
    /// How long the backend asked us to wait before the next request (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    /// The underlying error (an HTTP client error, a JSON error), if any.
    #[source]
    pub source: Option<Box<dyn StdError + Send + Sync>>,
}

impl BackendError {
    /// A failure of `kind` with `message` and nothing else.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Adds the wait the backend asked for.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Adds the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_leads_with_the_kind_and_keeps_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = BackendError::new(FailureKind::Connect, "cannot reach http://127.0.0.1:9")
            .with_source(io)
            .with_retry_after(Duration::from_secs(2));
        assert_eq!(err.to_string(), "connect: cannot reach http://127.0.0.1:9");
        assert_eq!(err.source().unwrap().to_string(), "refused");
        assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    }
}
