//! [`AttemptRecord`]: one row of the attempt log.

use serde::{Deserialize, Serialize};

use crate::failure::FailureKind;

/// Whether an attempt produced a valid enrichment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The backend answered and the output passed validation.
    Success,
    /// See the record's `failure_kind`.
    Failure,
}

impl AttemptOutcome {
    /// The stable snake_case name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Failure => "failure",
        }
    }
}

/// One call to one backend for one span, successful or not. The cascade records every attempt,
/// including the one a cancellation interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The backend's configured name.
    pub backend: String,
    /// The backend's provider (`ollama`, …).
    pub provider: String,
    /// The model that answered, as reported, else the configured one.
    pub model: String,
    /// Where the request went ([`BackendAdapter::describe_host`](crate::BackendAdapter::describe_host)).
    pub host: String,
    /// 1-based number of this attempt within its span's cascade.
    pub attempt: u32,
    /// When the attempt started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// How long the attempt took, in milliseconds (the cascade's clock, so tokio's paused clock
    /// in tests).
    pub duration_ms: u64,
    /// Success or failure.
    pub outcome: AttemptOutcome,
    /// Why it failed; `None` on success.
    pub failure_kind: Option<FailureKind>,
    /// The failure message; `None` on success.
    pub message: Option<String>,
    /// Prompt tokens evaluated, when the backend answered and reported them.
    pub prompt_eval_count: Option<u64>,
    /// Tokens generated, when the backend answered and reported them.
    pub eval_count: Option<u64>,
    /// Generation speed, reported or derived.
    pub tokens_per_second: Option<f64>,
}

impl AttemptRecord {
    /// True when the attempt produced a valid enrichment.
    pub fn succeeded(&self) -> bool {
        self.outcome == AttemptOutcome::Success
    }
}
