//! One call to one backend for one span ([`AttemptRecord`]), and the run it belongs to
//! ([`RunId`]).

use std::fmt;

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
    /// The stable snake_case name stored in the attempt log's `outcome` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Failure => "failure",
        }
    }

    /// The outcome with this stored name, if any (the inverse of [`AttemptOutcome::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [AttemptOutcome::Success, AttemptOutcome::Failure]
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

/// One call to one backend for one span, successful or not: what the cascade records for every
/// attempt (including the one a cancellation interrupted) and a row of the attempt log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The backend's configured name.
    pub backend: String,
    /// The backend's provider (`ollama`, …).
    pub provider: String,
    /// The model that answered, as reported, else the configured one.
    pub model: String,
    /// Where the request went (the adapter's `describe_host`; never credentials).
    pub host: String,
    /// 1-based number of this attempt within its span's cascade; with the span hash and the run
    /// it is the attempt log row's identity, so writing the same outcome twice stores it once.
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
    /// Prompt tokens the backend evaluated (those it says it read from its prompt cache not
    /// counted), when it answered and reported them.
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

/// The id of a run in the `runs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_records_serialise_with_stable_field_names() {
        let record = AttemptRecord {
            backend: "local".into(),
            provider: "ollama".into(),
            model: "qwen2.5:7b-instruct".into(),
            host: "http://127.0.0.1:11434".into(),
            attempt: 2,
            started_at_ms: 1_700_000_000_000,
            duration_ms: 1234,
            outcome: AttemptOutcome::Failure,
            failure_kind: Some(FailureKind::Overloaded),
            message: Some("server busy".into()),
            prompt_eval_count: Some(10),
            eval_count: None,
            tokens_per_second: None,
        };
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value["outcome"], "failure");
        assert_eq!(value["failure_kind"], "overloaded");
        assert_eq!(value["started_at_ms"], 1_700_000_000_000_u64);
        assert!(!record.succeeded());
        assert_eq!(
            serde_json::from_value::<AttemptRecord>(value).unwrap(),
            record
        );
    }

    #[test]
    fn outcome_names_round_trip() {
        for outcome in [AttemptOutcome::Success, AttemptOutcome::Failure] {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
            assert_eq!(AttemptOutcome::from_name(outcome.as_str()), Some(outcome));
        }
        assert_eq!(AttemptOutcome::from_name("ok"), None);
    }
}
