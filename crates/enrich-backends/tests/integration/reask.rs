//! Corrective re-asks: invalid output earns the same backend a follow-up prompt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    AttemptRecord, BackendAdapter, Cascade, CascadeFailure, CascadePolicy, CascadeSuccess,
    Decision, FailureKind, GiveUpReason, SpanIdentity, enrichment_v1_schema,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{Scripted, Step, chain, request, valid_reply, validation};

async fn run(
    cascade: &Cascade,
    backends: &[Arc<dyn BackendAdapter>],
) -> Result<CascadeSuccess, CascadeFailure> {
    cascade
        .run(
            backends,
            0,
            &request(),
            &validation(),
            &CancellationToken::new(),
        )
        .await
}

/// `(backend, failure kind)` of each attempt.
fn summary(attempts: &[AttemptRecord]) -> Vec<(String, Option<FailureKind>)> {
    attempts
        .iter()
        .map(|a| (a.backend.clone(), a.failure_kind))
        .collect()
}

fn at(backend: &str, kind: Option<FailureKind>) -> (String, Option<FailureKind>) {
    (backend.to_owned(), kind)
}

const GARBAGE: &str = "Sure! Here is what the code does: it adds numbers.";
/// Valid JSON that breaks enrichment.v1: evidence for a field it does not have.
const UNKNOWN_FIELD: &str =
    r#"{"summary_120w": "Adds.", "evidence": [{"field": "tags", "lines": [10, 11]}]}"#;

#[tokio::test(start_paused = true)]
async fn invalid_output_then_a_valid_answer_succeeds_on_the_same_backend() {
    for (bad, kind) in [
        (GARBAGE, FailureKind::MalformedOutput),
        (UNKNOWN_FIELD, FailureKind::SchemaInvalid),
    ] {
        let a = Scripted::new(
            "a",
            vec![Step::Reply(bad.into()), Step::Reply(valid_reply())],
        );
        let b = Scripted::always("b", Step::Reply(valid_reply()));
        let started = Instant::now();
        let success = run(&Cascade::new(CascadePolicy::default()), &chain(&[&a, &b]))
            .await
            .unwrap();
        assert_eq!(success.backend_index, 0, "{kind}");
        assert_eq!(
            summary(&success.attempts),
            [at("a", Some(kind)), at("a", None)]
        );
        assert_eq!(b.calls(), 0);
        assert_eq!(started.elapsed(), Duration::ZERO, "a re-ask does not wait");

        let prompts = a.prompts();
        let follow_up = &prompts[1];
        let message = success.attempts[0].message.as_deref().unwrap();
        assert!(follow_up.starts_with("enrich this span\n\n"), "{follow_up}");
        assert!(
            follow_up.contains(bad),
            "quotes the rejected answer: {follow_up}"
        );
        assert!(
            follow_up.contains(message),
            "quotes the validator: {follow_up}"
        );
        assert!(
            follow_up.ends_with(
                "Answer again with only the corrected JSON object: no other text, no code fence.\n"
            ),
            "{follow_up}"
        );
    }
}

/// Valid enrichment.v1 that says nothing: what a small model answers when it copies the prompt.
const NONSENSE: &str = r#"{"summary_120w": "60", "inputs": ["field", "lines", "60,61"]}"#;

#[tokio::test(start_paused = true)]
async fn invalid_or_rejected_output_twice_moves_to_the_next_backend() {
    for (bad, kind) in [
        (GARBAGE, FailureKind::MalformedOutput),
        (NONSENSE, FailureKind::QualityRejected),
    ] {
        let a = Scripted::always("a", Step::Reply(bad.into()));
        let b = Scripted::always("b", Step::Reply(valid_reply()));
        let success = run(&Cascade::new(CascadePolicy::default()), &chain(&[&a, &b]))
            .await
            .unwrap();
        assert_eq!(
            summary(&success.attempts),
            [at("a", Some(kind)), at("a", Some(kind)), at("b", None)]
        );
        // The next backend gets the original prompt, not the follow-up.
        assert_eq!(b.prompts(), ["enrich this span"]);
    }
}

#[tokio::test(start_paused = true)]
async fn the_reask_after_a_rejected_answer_carries_each_checks_reason() {
    let a = Scripted::new(
        "a",
        vec![Step::Reply(NONSENSE.into()), Step::Reply(valid_reply())],
    );
    let success = run(&Cascade::new(CascadePolicy::default()), &chain(&[&a]))
        .await
        .unwrap();
    assert_eq!(
        summary(&success.attempts),
        [at("a", Some(FailureKind::QualityRejected)), at("a", None)]
    );
    let prompts = a.prompts();
    let follow_up = &prompts[1];
    for reason in [
        "quality check `summary_short` failed: the summary \"60\" is too short",
        "quality check `summary_bare_value` failed",
        "quality check `list_item_placeholder` failed: `inputs` item \"field\" is a word of the \
         prompt",
        "`inputs` item \"60,61\" is a bare number",
    ] {
        assert!(
            follow_up.contains(reason),
            "{reason:?} missing: {follow_up}"
        );
    }
    assert!(follow_up.contains(NONSENSE), "quotes the rejected answer");
}

#[tokio::test(start_paused = true)]
async fn with_reasks_disabled_invalid_output_moves_on_at_once() {
    let a = Scripted::always("a", Step::Reply(UNKNOWN_FIELD.into()));
    let b = Scripted::always("b", Step::Reply(valid_reply()));
    let cascade = Cascade::new(CascadePolicy::default().with_corrective_reasks(0));
    let success = run(&cascade, &chain(&[&a, &b])).await.unwrap();
    assert_eq!(
        summary(&success.attempts),
        [at("a", Some(FailureKind::SchemaInvalid)), at("b", None)]
    );
}

#[tokio::test(start_paused = true)]
async fn reasks_are_configurable_and_count_toward_the_attempt_limit() {
    // (re-asks, attempt limit, attempts on `a`, outcome)
    let table = [
        (2, 6, 3, Ok(1)),
        (3, 3, 3, Err(GiveUpReason::AttemptLimit)),
        (1, 2, 2, Err(GiveUpReason::AttemptLimit)),
    ];
    for (reasks, limit, on_a, expected) in table {
        let a = Scripted::always("a", Step::Reply(GARBAGE.into()));
        let b = Scripted::always("b", Step::Reply(valid_reply()));
        let cascade = Cascade::new(
            CascadePolicy::default()
                .with_corrective_reasks(reasks)
                .with_max_attempts_per_span(limit),
        );
        let outcome = run(&cascade, &chain(&[&a, &b])).await;
        assert_eq!(a.calls(), on_a, "reasks {reasks}, limit {limit}");
        match (outcome, expected) {
            (Ok(success), Ok(index)) => assert_eq!(success.backend_index, index),
            (Err(failure), Err(reason)) => assert_eq!(failure.reason, reason),
            (outcome, expected) => panic!("{:?} != {expected:?}", outcome.map(|s| s.attempts)),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_truncated_answer_is_reasked_once_for_a_shorter_one_without_quoting_it() {
    let cut_text = r#"{"summary_120w": "Adds"#;
    let cut = Scripted::always("cut", Step::Truncated(cut_text.into()));
    let b = Scripted::always("b", Step::Reply(valid_reply()));
    let success = run(&Cascade::new(CascadePolicy::default()), &chain(&[&cut, &b]))
        .await
        .unwrap();
    assert_eq!(success.backend_index, 1);
    assert_eq!(cut.calls(), 2, "one first try, one re-ask");
    let prompts = cut.prompts();
    let reask = &prompts[1];
    assert!(reask.starts_with(&prompts[0]), "{reask}");
    assert!(reask.contains("cut off at the output limit"), "{reask}");
    assert!(reask.contains("shorter"), "{reask}");
    // A cut-off answer is useless to quote: the follow-up asks for a shorter one instead.
    assert!(!reask.contains(cut_text), "{reask}");
    // Re-asks off: a truncated answer moves on at once.
    let cut = Scripted::always("cut", Step::Truncated(cut_text.into()));
    let policy = CascadePolicy::default().with_corrective_reasks(0);
    run(&Cascade::new(policy), &chain(&[&cut, &b]))
        .await
        .unwrap();
    assert_eq!(cut.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_observer_sees_a_reask_as_a_retry_without_delay() {
    type Seen = Vec<(u32, Option<Decision>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = Arc::clone(&seen);
    let observer = move |_: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>| {
        sink.lock().unwrap().push((record.attempt, next));
    };
    let a = Scripted::new(
        "a",
        vec![Step::Reply(GARBAGE.into()), Step::Reply(valid_reply())],
    );
    let cascade = Cascade::new(CascadePolicy::default()).with_observer(Arc::new(observer));
    run(&cascade, &chain(&[&a])).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (
                1,
                Some(Decision::Retry {
                    delay: Duration::ZERO
                })
            ),
            (2, None)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_rejected_answer_is_cut_and_the_rest_of_the_request_is_kept() {
    let long = format!("no json here {}", "é".repeat(5000));
    let a = Scripted::new("a", vec![Step::Reply(long), Step::Reply(valid_reply())]);
    let original = request()
        .with_system("you write JSON")
        .with_schema(Arc::clone(enrichment_v1_schema()))
        .with_max_output_tokens(300);
    Cascade::new(CascadePolicy::default())
        .run(
            &chain(&[&a]),
            0,
            &original,
            &validation(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let requests = a.requests();
    let follow_up = &requests[1];
    assert_eq!(follow_up.system, original.system);
    assert_eq!(follow_up.schema, original.schema);
    assert_eq!(follow_up.span, original.span);
    assert_eq!(follow_up.max_output_tokens, Some(300));
    let prompt = &*follow_up.prompt;
    assert!(prompt.len() < 5000, "{} bytes", prompt.len());
    // 10 013 bytes of answer, 3999 quoted: the cut falls back to a character boundary.
    assert!(prompt.contains("\n[... 6014 more bytes cut]\n"), "{prompt}");
}
