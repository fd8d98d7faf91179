//! The stored names and serialised shapes other crates and the database rely on.

use enrich_backends::{AttemptOutcome, AttemptRecord, FailureKind};
use serde_json::json;

#[test]
fn failure_kind_names_are_the_stored_ones() {
    let names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "connect",
            "timeout",
            "overloaded",
            "server_error",
            "model_not_found",
            "context_exceeded",
            "auth",
            "truncated",
            "malformed_output",
            "schema_invalid",
            "cancelled",
            "invalid_request",
            "response_too_large",
        ]
    );
    for kind in FailureKind::ALL {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        assert_eq!(
            serde_json::from_value::<FailureKind>(json!(kind.to_string())).unwrap(),
            kind
        );
    }
}

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
    assert_eq!(AttemptOutcome::Success.as_str(), "success");
    assert_eq!(
        serde_json::from_value::<AttemptRecord>(value).unwrap(),
        record
    );
}
