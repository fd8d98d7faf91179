//! The failure taxonomy: [`FailureKind`] and the per-attempt [`BackendError`].

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why one attempt failed. The cascade decides what happens next from this alone.
///
/// The snake_case names ([`FailureKind::as_str`], also the serde form) are stored in the
/// database: they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The backend could not be reached: connection refused or reset, DNS failure.
    Connect,
    /// No answer within the backend's timeout.
    Timeout,
    /// The backend is busy (Ollama 503 "server busy", HTTP 429); may carry a retry-after.
    Overloaded,
    /// Any other 5xx answer.
    ServerError,
    /// The backend does not have the model (Ollama 404).
    ModelNotFound,
    /// The prompt does not fit the model's context (400 "input length exceeds the context
    /// length").
    ContextExceeded,
    /// The backend refused the credentials (401, 403).
    Auth,
    /// The output stopped at the token limit (`done_reason == "length"`).
    Truncated,
    /// The output holds no JSON object.
    MalformedOutput,
    /// The output's JSON object fails enrichment.v1 validation.
    SchemaInvalid,
    /// The run is shutting down (or the backend cancelled the request): write nothing.
    Cancelled,
    /// Any other 4xx answer: the request itself is wrong.
    InvalidRequest,
    /// The answer is larger than the backend's `max_response_bytes`: it was not read further
    /// (see [`ResponseLimit`](crate::ResponseLimit)). The span's own failure, not an outage.
    ResponseTooLarge,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 13] = [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::Overloaded,
        FailureKind::ServerError,
        FailureKind::ModelNotFound,
        FailureKind::ContextExceeded,
        FailureKind::Auth,
        FailureKind::Truncated,
        FailureKind::MalformedOutput,
        FailureKind::SchemaInvalid,
        FailureKind::Cancelled,
        FailureKind::InvalidRequest,
        FailureKind::ResponseTooLarge,
    ];

    /// The stable snake_case name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Overloaded => "overloaded",
            FailureKind::ServerError => "server_error",
            FailureKind::ModelNotFound => "model_not_found",
            FailureKind::ContextExceeded => "context_exceeded",
            FailureKind::Auth => "auth",
            FailureKind::Truncated => "truncated",
            FailureKind::MalformedOutput => "malformed_output",
            FailureKind::SchemaInvalid => "schema_invalid",
            FailureKind::Cancelled => "cancelled",
            FailureKind::InvalidRequest => "invalid_request",
            FailureKind::ResponseTooLarge => "response_too_large",
        }
    }

    /// The kind with this stored name, if any (the inverse of [`FailureKind::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The position of this kind in [`FailureKind::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    fn names_round_trip_through_as_str_serde_and_from_name() {
        for kind in FailureKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(FailureKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(FailureKind::ALL[kind.index()], kind);
        }
        assert_eq!(FailureKind::from_name("busy"), None);
    }

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
