//! The cascade under the default policy and configured ones, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    AttemptOutcome, AttemptRecord, Availability, BackendAdapter, Backoff, Cascade, CascadeFailure,
    CascadePolicy, CascadeSuccess, CircuitPolicy, Decision, Disposition, FailureAction,
    FailureKind, GiveUpReason, KindPolicy, SpanIdentity, SpanStart,
};
use enrich_config::BackendSpec;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{Scripted, Step, chain, request, valid_reply, validation};

async fn run(
    cascade: &Cascade,
    backends: &[Arc<dyn BackendAdapter>],
    start: usize,
) -> Result<CascadeSuccess, CascadeFailure> {
    cascade
        .run(
            backends,
            start,
            &request(),
            &validation(),
            &CancellationToken::new(),
        )
        .await
}

/// `(backend, attempt number, failure kind)` of each attempt.
fn summary(attempts: &[AttemptRecord]) -> Vec<(String, u32, Option<FailureKind>)> {
    attempts
        .iter()
        .map(|a| (a.backend.clone(), a.attempt, a.failure_kind))
        .collect()
}

fn attempt(backend: &str, n: u32, kind: Option<FailureKind>) -> (String, u32, Option<FailureKind>) {
    (backend.to_owned(), n, kind)
}

fn ok() -> Step {
    Step::Reply(valid_reply())
}

fn no_jitter() -> CascadePolicy {
    CascadePolicy::default().with_backoff(Backoff {
        jitter: 0.0,
        ..Backoff::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_valid_first_answer_is_one_successful_attempt() {
    let a = Scripted::always("a", ok());
    let cascade = Cascade::new(CascadePolicy::default());
    let started = Instant::now();
    let success = run(&cascade, &chain(&[&a]), 0).await.unwrap();

    assert_eq!(success.backend_index, 0);
    assert_eq!(
        success.enrichment.summary,
        "Adds two numbers and returns the sum."
    );
    assert_eq!(
        success.generation.metrics.done_reason.as_deref(),
        Some("stop")
    );
    let [record] = success.attempts.as_slice() else {
        panic!("{:?}", success.attempts)
    };
    assert_eq!(record.outcome, AttemptOutcome::Success);
    assert_eq!(
        (
            record.attempt,
            record.failure_kind,
            record.message.as_deref()
        ),
        (1, None, None)
    );
    assert_eq!(
        (
            record.backend.as_str(),
            record.provider.as_str(),
            record.model.as_str(),
            record.host.as_str()
        ),
        ("a", "scripted", "model-a-served", "scripted://a")
    );
    assert_eq!(
        (record.prompt_eval_count, record.eval_count),
        (Some(100), Some(50))
    );
    assert_eq!(record.tokens_per_second, Some(25.0));
    assert!(record.started_at_ms > 0);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Backend `a` always fails with `kind`, `b` answers; then a second span runs through the same
/// cascade. Returns the attempts of both spans and how often `a` was called.
async fn fail_then_next(kind: FailureKind) -> (Vec<AttemptRecord>, Vec<AttemptRecord>, u32) {
    let a = Scripted::always("a", Step::Fail(kind));
    let b = Scripted::always("b", ok());
    let backends = chain(&[&a, &b]);
    // The kinds' own policies: no circuit opening in between, no corrective re-ask.
    let policy = CascadePolicy::default()
        .with_circuit(None)
        .with_corrective_reasks(0);
    let cascade = Cascade::new(policy);
    let first = run(&cascade, &backends, 0).await.unwrap();
    assert_eq!(first.backend_index, 1, "{kind}");
    let second = run(&cascade, &backends, 0).await.unwrap();
    (first.attempts, second.attempts, a.calls())
}

#[tokio::test(start_paused = true)]
async fn each_kind_gets_its_default_retries_then_the_next_backend() {
    use FailureKind::*;
    // (kind, attempts on `a` per span, skipped for the rest of the run)
    let table = [
        (Connect, 1, false),
        (Timeout, 2, false),
        (Overloaded, 3, false),
        (ServerError, 2, false),
        (ModelNotFound, 1, true),
        (ContextExceeded, 1, false),
        (Auth, 1, true),
        (Truncated, 1, false),
        (MalformedOutput, 1, false),
        (SchemaInvalid, 1, false),
        (InvalidRequest, 1, false),
    ];
    for (kind, tries, skipped) in table {
        let (first, second, calls) = fail_then_next(kind).await;
        let mut expected: Vec<_> = (1..=tries).map(|n| attempt("a", n, Some(kind))).collect();
        expected.push(attempt("b", tries + 1, None));
        assert_eq!(summary(&first), expected, "{kind}");
        if skipped {
            assert_eq!(
                summary(&second),
                [attempt("b", 1, None)],
                "{kind}: later span"
            );
            assert_eq!(calls, tries, "{kind}");
        } else {
            assert_eq!(summary(&second), expected, "{kind}: later span");
            assert_eq!(calls, 2 * tries, "{kind}");
        }
        assert!(first.iter().all(|r| r.host.starts_with("scripted://")));
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_answer_stops_the_span_without_trying_further() {
    let a = Scripted::always("a", Step::Fail(FailureKind::Cancelled));
    let b = Scripted::always("b", ok());
    let cascade = Cascade::new(CascadePolicy::default());
    let failure = run(&cascade, &chain(&[&a, &b]), 0).await.unwrap_err();
    assert_eq!(failure.reason, GiveUpReason::Stopped);
    assert_eq!(failure.kind(), FailureKind::Cancelled);
    assert!(failure.is_cancelled());
    assert_eq!(
        summary(&failure.attempts),
        [attempt("a", 1, Some(FailureKind::Cancelled))]
    );
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn skipped_backends_are_reported_and_a_chain_of_only_them_fails_without_attempts() {
    let a = Scripted::always("a", Step::Fail(FailureKind::ModelNotFound));
    let backends = chain(&[&a]);
    let cascade = Cascade::new(CascadePolicy::default());
    let first = run(&cascade, &backends, 0).await.unwrap_err();
    assert_eq!(first.reason, GiveUpReason::Exhausted);
    assert_eq!(first.attempts.len(), 1);
    assert_eq!(
        cascade.skipped_backends(),
        [("a".to_owned(), FailureKind::ModelNotFound)]
    );

    let second = run(&cascade, &backends, 0).await.unwrap_err();
    assert!(second.attempts.is_empty());
    assert_eq!(second.kind(), FailureKind::ModelNotFound);
    assert_eq!(
        second.last_error.message,
        "backend 'a' is skipped for the rest of this run after model_not_found: \
         a failed with model_not_found"
    );
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn skipping_is_keyed_by_name_model_and_host() {
    let a = Scripted::always("a", Step::Fail(FailureKind::Auth));
    let same_name = Scripted::with_spec(
        BackendSpec::new("a", "other", "scripted", "another-model"),
        vec![ok()],
    );
    let cascade = Cascade::new(CascadePolicy::default());
    run(&cascade, &chain(&[&a]), 0).await.unwrap_err();
    let success = run(&cascade, &chain(&[&same_name]), 0).await.unwrap();
    assert_eq!(success.attempts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let a = Scripted::new(
        "a",
        vec![
            Step::FailRetryAfter(FailureKind::Overloaded, Duration::from_secs(5)),
            ok(),
        ],
    );
    let cascade = Cascade::new(CascadePolicy::default());
    let started = Instant::now();
    let success = run(&cascade, &chain(&[&a]), 0).await.unwrap();
    assert_eq!(success.attempts.len(), 2);
    assert_eq!(a.gaps(), [Duration::from_secs(5)]);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_moves_on_at_once() {
    let a = Scripted::always(
        "a",
        Step::FailRetryAfter(FailureKind::Overloaded, Duration::from_secs(600)),
    );
    let b = Scripted::always("b", ok());
    let cascade = Cascade::new(CascadePolicy::default());
    let started = Instant::now();
    let success = run(&cascade, &chain(&[&a, &b]), 0).await.unwrap();
    assert_eq!(
        summary(&success.attempts),
        [
            attempt("a", 1, Some(FailureKind::Overloaded)),
            attempt("b", 2, None)
        ]
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_exponentially_up_to_its_cap() {
    let policy = CascadePolicy::default()
        .with_circuit(None)
        .with_kind(
            FailureKind::ServerError,
            KindPolicy::new(4, FailureAction::Next),
        )
        .with_backoff(Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3),
            factor: 2.0,
            jitter: 0.0,
        });
    let a = Scripted::always("a", Step::Fail(FailureKind::ServerError));
    let failure = run(&Cascade::new(policy), &chain(&[&a]), 0)
        .await
        .unwrap_err();
    assert_eq!(failure.attempts.len(), 5);
    let secs: Vec<u64> = a.gaps().iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 3, 3]);
}

#[tokio::test(start_paused = true)]
async fn jitter_only_shortens_the_wait() {
    let policy = CascadePolicy::default().with_backoff(Backoff {
        base: Duration::from_secs(8),
        max: Duration::from_secs(8),
        factor: 1.0,
        jitter: 0.5,
    });
    let a = Scripted::new("a", vec![Step::Fail(FailureKind::Timeout), ok()]);
    run(&Cascade::new(policy), &chain(&[&a]), 0).await.unwrap();
    let [gap] = a.gaps()[..] else { panic!() };
    assert!(
        Duration::from_secs(4) <= gap && gap <= Duration::from_secs(8),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_limit_ends_the_span() {
    let a = Scripted::always("a", Step::Fail(FailureKind::Timeout));
    let b = Scripted::always("b", Step::Fail(FailureKind::Timeout));
    let c = Scripted::always("c", ok());
    let cascade = Cascade::new(no_jitter().with_max_attempts_per_span(3));
    let failure = run(&cascade, &chain(&[&a, &b, &c]), 0).await.unwrap_err();
    assert_eq!(failure.reason, GiveUpReason::AttemptLimit);
    assert_eq!(
        summary(&failure.attempts),
        [
            attempt("a", 1, Some(FailureKind::Timeout)),
            attempt("a", 2, Some(FailureKind::Timeout)),
            attempt("b", 3, Some(FailureKind::Timeout)),
        ]
    );
    assert_eq!((b.calls(), c.calls()), (1, 0));
    assert_eq!(failure.kind(), FailureKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_times_out_after_its_timeout_seconds() {
    let spec = BackendSpec {
        timeout_seconds: Some(5.0),
        ..BackendSpec::new("slow", "default", "scripted", "m")
    };
    let slow = Scripted::with_spec(spec, vec![Step::Hang]);
    let b = Scripted::always("b", ok());
    let cascade = Cascade::new(no_jitter());
    let started = Instant::now();
    let success = run(&cascade, &chain(&[&slow, &b]), 0).await.unwrap();
    assert_eq!(
        summary(&success.attempts),
        [
            attempt("slow", 1, Some(FailureKind::Timeout)),
            attempt("slow", 2, Some(FailureKind::Timeout)),
            attempt("b", 3, None),
        ]
    );
    let durations: Vec<u64> = success.attempts.iter().map(|a| a.duration_ms).collect();
    assert_eq!(durations, [5000, 5000, 0]);
    assert_eq!(
        success.attempts[0].message.as_deref(),
        Some(
            "backend 'slow' at scripted://slow gave no answer within 5s; raise its timeout_seconds or use a smaller model"
        )
    );
    // Two timeouts and one 0.5 s backoff.
    assert_eq!(started.elapsed(), Duration::from_millis(10_500));
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_a_hanging_request_returns_promptly() {
    let a = Scripted::always("a", Step::Hang);
    let b = Scripted::always("b", ok());
    let cascade = Cascade::new(CascadePolicy::default());
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let failure = cascade
        .run(&chain(&[&a, &b]), 0, &request(), &validation(), &cancel)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(failure.reason, GiveUpReason::Cancelled);
    assert_eq!(failure.kind(), FailureKind::Cancelled);
    assert_eq!(
        summary(&failure.attempts),
        [attempt("a", 1, Some(FailureKind::Cancelled))]
    );
    assert_eq!(failure.attempts[0].duration_ms, 1000);
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_a_backoff_wait_returns_promptly() {
    let a = Scripted::always(
        "a",
        Step::FailRetryAfter(FailureKind::Overloaded, Duration::from_secs(20)),
    );
    let cascade = Cascade::new(CascadePolicy::default());
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let failure = cascade
        .run(&chain(&[&a]), 0, &request(), &validation(), &cancel)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(failure.reason, GiveUpReason::Cancelled);
    assert_eq!(failure.kind(), FailureKind::Cancelled);
    assert!(
        failure
            .last_error
            .message
            .contains("while waiting to retry"),
        "{}",
        failure.last_error
    );
    assert_eq!(
        summary(&failure.attempts),
        [attempt("a", 1, Some(FailureKind::Overloaded))]
    );
}

#[tokio::test(start_paused = true)]
async fn an_already_cancelled_run_makes_no_attempt() {
    let a = Scripted::always("a", ok());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let failure = Cascade::new(CascadePolicy::default())
        .run(&chain(&[&a]), 0, &request(), &validation(), &cancel)
        .await
        .unwrap_err();
    assert!(failure.is_cancelled());
    assert!(failure.attempts.is_empty());
    assert_eq!(a.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_start_index_is_honoured() {
    let a = Scripted::always("a", ok());
    let b = Scripted::always("b", ok());
    let backends = chain(&[&a, &b]);
    let cascade = Cascade::new(CascadePolicy::default());
    let success = run(&cascade, &backends, 1).await.unwrap();
    assert_eq!(success.backend_index, 1);
    assert_eq!(summary(&success.attempts), [attempt("b", 1, None)]);
    assert_eq!(a.calls(), 0);

    let failure = run(&cascade, &backends, 2).await.unwrap_err();
    assert_eq!(failure.kind(), FailureKind::InvalidRequest);
    assert_eq!(
        failure.last_error.message,
        "the cascade was asked to start at backend 2 of a chain of 2"
    );
    let empty = run(&cascade, &[], 0).await.unwrap_err();
    assert_eq!(empty.kind(), FailureKind::InvalidRequest);
}

#[tokio::test(start_paused = true)]
async fn invalid_output_is_a_failed_attempt_of_the_right_kind() {
    let chatter = Scripted::always(
        "chatter",
        Step::Reply("I am not sure what you mean.".into()),
    );
    let echo = Scripted::always(
        "echo",
        Step::Reply(
            serde_json::json!({"summary_120w": "The summary of the input is: {input}"}).to_string(),
        ),
    );
    let cut = Scripted::always(
        "cut",
        Step::Truncated(r#"{"summary_120w": "Adds two"#.into()),
    );
    let good = Scripted::always("good", ok());
    let cascade = Cascade::new(CascadePolicy::default().with_corrective_reasks(0));
    let success = run(&cascade, &chain(&[&chatter, &echo, &cut, &good]), 0)
        .await
        .unwrap();
    assert_eq!(success.backend_index, 3);
    assert_eq!(
        summary(&success.attempts),
        [
            attempt("chatter", 1, Some(FailureKind::MalformedOutput)),
            attempt("echo", 2, Some(FailureKind::QualityRejected)),
            attempt("cut", 3, Some(FailureKind::Truncated)),
            attempt("good", 4, None),
        ]
    );
    // Failed answers still report what they cost.
    assert!(
        success.attempts[..3]
            .iter()
            .all(|a| a.eval_count == Some(50))
    );
    let echo_message = success.attempts[1].message.as_deref().unwrap();
    assert!(
        echo_message.contains("quality check `summary_prompt_echo` failed"),
        "{echo_message}"
    );
    let cut_message = success.attempts[2].message.as_deref().unwrap();
    assert!(
        cut_message.starts_with("backend 'cut' stopped at its output token limit"),
        "{cut_message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_complete_answer_is_accepted_even_when_marked_truncated() {
    let a = Scripted::always("a", Step::Truncated(valid_reply()));
    let success = run(&Cascade::new(CascadePolicy::default()), &chain(&[&a]), 0)
        .await
        .unwrap();
    assert_eq!(
        success.generation.metrics.done_reason.as_deref(),
        Some("length")
    );
}

#[tokio::test(start_paused = true)]
async fn connect_failures_open_the_circuit_across_spans() {
    let policy = CascadePolicy::default().with_circuit(Some(CircuitPolicy {
        failures_to_open: 2,
        ..CircuitPolicy::default()
    }));
    let dead = Scripted::new(
        "dead",
        vec![
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            ok(),
        ],
    );
    let b = Scripted::always("b", ok());
    let backends = chain(&[&dead, &b]);
    let cascade = Cascade::new(policy);
    for _ in 0..2 {
        run(&cascade, &backends, 0).await.unwrap();
    }
    assert_eq!(dead.calls(), 2);

    let passed_over = run(&cascade, &backends, 0).await.unwrap();
    assert_eq!(summary(&passed_over.attempts), [attempt("b", 1, None)]);
    assert_eq!(dead.calls(), 2);

    tokio::time::advance(Duration::from_secs(30)).await;
    let recovered = run(&cascade, &backends, 0).await.unwrap();
    assert_eq!(summary(&recovered.attempts), [attempt("dead", 1, None)]);
    assert!(cascade.skipped_backends().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_says_why_when_nothing_else_is_left() {
    let policy = CascadePolicy::default().with_circuit(Some(CircuitPolicy {
        failures_to_open: 1,
        cooldown: Duration::from_secs(10),
        ..CircuitPolicy::default()
    }));
    let dead = Scripted::always("dead", Step::Fail(FailureKind::Connect));
    let cascade = Cascade::new(policy);
    run(&cascade, &chain(&[&dead]), 0).await.unwrap_err();
    let failure = run(&cascade, &chain(&[&dead]), 0).await.unwrap_err();
    assert!(failure.attempts.is_empty());
    assert_eq!(failure.kind(), FailureKind::Connect);
    assert_eq!(
        failure.to_string(),
        "no enrichment after 0 attempts: every backend failed or was skipped; connect: backend \
         'dead' is skipped for 10.0s more: its circuit opened after 1 consecutive failures \
         (last: connect: dead failed with connect)"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_closes_the_circuit_count() {
    let policy = CascadePolicy::default()
        .with_corrective_reasks(0)
        .with_circuit(Some(CircuitPolicy {
            failures_to_open: 2,
            ..CircuitPolicy::default()
        }));
    // connect, malformed output (it answered), connect: never two in a row.
    let flaky = Scripted::new(
        "flaky",
        vec![
            Step::Fail(FailureKind::Connect),
            Step::Reply("no json".into()),
            Step::Fail(FailureKind::Connect),
            ok(),
        ],
    );
    let b = Scripted::always("b", ok());
    let backends = chain(&[&flaky, &b]);
    let cascade = Cascade::new(policy);
    for _ in 0..4 {
        run(&cascade, &backends, 0).await.unwrap();
    }
    assert_eq!(flaky.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn concurrent_spans_share_the_run_state() {
    let a = Scripted::always("a", Step::Fail(FailureKind::ModelNotFound));
    let b = Scripted::always("b", ok());
    let backends = chain(&[&a, &b]);
    let cascade = Cascade::new(CascadePolicy::default());
    let (first, second) = tokio::join!(run(&cascade, &backends, 0), run(&cascade, &backends, 0));
    assert_eq!(
        (first.unwrap().backend_index, second.unwrap().backend_index),
        (1, 1)
    );
    let third = run(&cascade, &backends, 0).await.unwrap();
    assert_eq!(summary(&third.attempts), [attempt("b", 1, None)]);
    assert!(a.calls() <= 2);
}

#[tokio::test(start_paused = true)]
async fn the_observer_hears_every_attempt_with_the_decision() {
    type Seen = Vec<(String, u32, Option<Decision>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = Arc::clone(&seen);
    let observer = move |span: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>| {
        sink.lock().unwrap().push((
            format!("{}:{}", span.span_hash, record.backend),
            record.attempt,
            next,
        ));
    };
    let a = Scripted::always("a", Step::Fail(FailureKind::Timeout));
    let b = Scripted::always("b", ok());
    let cascade = Cascade::new(no_jitter()).with_observer(Arc::new(observer));
    let success = run(&cascade, &chain(&[&a, &b]), 0).await.unwrap();
    assert_eq!(success.attempts.len(), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (
                "sha256:feed:a".to_owned(),
                1,
                Some(Decision::Retry {
                    delay: Duration::from_millis(500)
                })
            ),
            (
                "sha256:feed:a".to_owned(),
                2,
                Some(Decision::Next {
                    skip_backend_for_run: false
                })
            ),
            ("sha256:feed:b".to_owned(), 3, None),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_summarises_itself() {
    let a = Scripted::always("a", Step::Fail(FailureKind::ContextExceeded));
    let b = Scripted::always("b", Step::Fail(FailureKind::InvalidRequest));
    let failure = run(
        &Cascade::new(CascadePolicy::default()),
        &chain(&[&a, &b]),
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(failure.reason, GiveUpReason::Exhausted);
    assert_eq!(
        failure.to_string(),
        "no enrichment after 2 attempts: every backend failed or was skipped; last error \
         (backend 'b', attempt 2): invalid_request: b failed with invalid_request"
    );
    let source = std::error::Error::source(&failure).unwrap();
    assert_eq!(
        source.to_string(),
        "invalid_request: b failed with invalid_request"
    );
}

#[tokio::test(start_paused = true)]
async fn a_span_can_run_on_a_spawned_task() {
    let a = Scripted::always("a", ok());
    let backends = chain(&[&a]);
    let cascade = Arc::new(Cascade::new(CascadePolicy::default()));
    let shared = Arc::clone(&cascade);
    // `tokio::spawn` requires the cascade's future to be `Send`.
    let handle =
        tokio::spawn(async move { run(&shared, &backends, 0).await.map(|s| s.backend_index) });
    assert_eq!(handle.await.unwrap().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_later_pass_numbers_its_attempts_after_the_earlier_ones_and_counts_them() {
    let a = Scripted::always("a", ok());
    let cascade = Cascade::new(no_jitter().with_max_attempts_per_span(3));
    let backends = chain(&[&a]);
    let cancel = CancellationToken::new();
    let success = cascade
        .run_resumed(
            SpanStart {
                numbered: 2,
                counted: 2,
            },
            &backends,
            0,
            &request(),
            &validation(),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(summary(&success.attempts), [attempt("a", 3, None)]);

    let spent = cascade
        .run_resumed(
            SpanStart {
                numbered: 3,
                counted: 3,
            },
            &backends,
            0,
            &request(),
            &validation(),
            &cancel,
        )
        .await
        .expect_err("the earlier passes used every attempt");
    assert_eq!(spent.reason, GiveUpReason::AttemptLimit);
    assert!(spent.attempts.is_empty());
}

/// How a span's give-up reads, with the backends unavailable for it, after a chain `a`, `b`
/// whose backends answer with these scripts.
async fn disposition_after(a: Vec<Step>, b: Vec<Step>) -> (Disposition, Vec<usize>, usize) {
    let a = Scripted::new("a", a);
    let b = Scripted::new("b", b);
    let cascade = Cascade::new(no_jitter().with_max_attempts_per_span(6));
    let failure = run(&cascade, &chain(&[&a, &b]), 0).await.unwrap_err();
    (
        failure.disposition(),
        failure.unavailable.clone(),
        failure.attempts.len(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_span_is_failed_only_by_its_own_answers_and_unavailable_after_an_outage() {
    use FailureKind::*;
    let fail = |kind| vec![Step::Fail(kind)];
    // (first backend, second backend, disposition, unavailable backends)
    let table = [
        // The span's own failures on every backend: ledgered.
        (
            fail(SchemaInvalid),
            fail(Truncated),
            Disposition::Failed,
            vec![],
        ),
        (
            fail(Timeout),
            fail(ContextExceeded),
            Disposition::Failed,
            vec![],
        ),
        (
            fail(MalformedOutput),
            fail(InvalidRequest),
            Disposition::Failed,
            vec![],
        ),
        // An outage of either backend: not the span's fault.
        (
            fail(Connect),
            fail(SchemaInvalid),
            Disposition::Unavailable,
            vec![0],
        ),
        (
            fail(SchemaInvalid),
            fail(ServerError),
            Disposition::Unavailable,
            vec![1],
        ),
        (
            fail(Auth),
            fail(ModelNotFound),
            Disposition::Unavailable,
            vec![0, 1],
        ),
        (
            fail(Overloaded),
            fail(Timeout),
            Disposition::Unavailable,
            vec![0],
        ),
        // The last answer on a backend decides for it: a 5xx after an invalid answer is an
        // outage, an invalid answer after a 5xx is the span's own.
        (
            vec![Step::Fail(SchemaInvalid), Step::Fail(ServerError)],
            fail(Truncated),
            Disposition::Unavailable,
            vec![0],
        ),
        (
            vec![Step::Fail(ServerError), Step::Fail(SchemaInvalid)],
            fail(Truncated),
            Disposition::Failed,
            vec![],
        ),
        // Cancellation is neither.
        (
            fail(Cancelled),
            fail(Connect),
            Disposition::Cancelled,
            vec![],
        ),
    ];
    for (a, b, disposition, unavailable) in table {
        let label = format!("{a:?} then {b:?}");
        let (got, missed, _) = disposition_after(a, b).await;
        assert_eq!((got, missed), (disposition, unavailable), "{label}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_span_passing_over_open_or_skipped_backends_is_unavailable_after_zero_attempts() {
    let dead = Scripted::always("dead", Step::Fail(FailureKind::Connect));
    let locked = Scripted::always("locked", Step::Fail(FailureKind::Auth));
    let cascade = Cascade::new(CascadePolicy::default());
    // Three spans open the dead backend's circuit; the first also gets the key refused.
    for _ in 0..3 {
        run(&cascade, &chain(&[&dead, &locked]), 0)
            .await
            .unwrap_err();
    }
    assert_eq!((dead.calls(), locked.calls()), (3, 1));
    let failure = run(&cascade, &chain(&[&dead, &locked]), 0)
        .await
        .unwrap_err();
    assert!(failure.attempts.is_empty());
    assert_eq!(failure.disposition(), Disposition::Unavailable);
    assert_eq!(failure.unavailable, [0, 1]);
}

#[tokio::test(start_paused = true)]
async fn availability_says_usable_waiting_with_the_earliest_retry_or_gone() {
    let circuit = CircuitPolicy {
        failures_to_open: 1,
        cooldown: Duration::from_secs(30),
        ..CircuitPolicy::default()
    };
    let cascade = Cascade::new(CascadePolicy::default().with_circuit(Some(circuit)));
    let fresh = Scripted::always("fresh", ok());
    let dead = Scripted::always("dead", Step::Fail(FailureKind::Connect));
    let later = Scripted::always("later", Step::Fail(FailureKind::Connect));
    let locked = Scripted::always("locked", Step::Fail(FailureKind::Auth));
    let of = |adapters: &[&Arc<Scripted>]| {
        let backends = chain(adapters);
        cascade.availability(
            backends
                .iter()
                .map(|b| -> &dyn BackendAdapter { b.as_ref() }),
        )
    };
    assert!(!cascade.has_outage());
    assert_eq!(
        of(&[&fresh, &dead]),
        Availability::Usable,
        "untried is usable"
    );

    run(&cascade, &chain(&[&dead]), 0).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(10)).await;
    run(&cascade, &chain(&[&later]), 0).await.unwrap_err();
    run(&cascade, &chain(&[&locked]), 0).await.unwrap_err();
    assert!(cascade.has_outage());
    // The dead backend half-opens in 20 s, the later one in 30 s: the earliest wins.
    assert_eq!(
        of(&[&locked, &later, &dead]),
        Availability::Waiting {
            backend: "dead".into(),
            retry_in: Some(Duration::from_secs(20)),
        }
    );
    assert_eq!(of(&[&locked]), Availability::Gone);
    assert_eq!(of(&[&locked, &fresh]), Availability::Usable);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(of(&[&dead, &later]), Availability::Usable, "half-open");

    // Every unusable backend with its state and last error, for the run's final message.
    let outages = cascade.outages();
    let described: Vec<(String, String)> = outages
        .iter()
        .map(|o| (o.backend.clone(), o.state.clone()))
        .collect();
    assert_eq!(
        described,
        [
            ("dead".into(), "circuit half-open".into()),
            ("later".into(), "circuit open, retry in 10 s".into()),
            ("locked".into(), "skipped for the rest of the run".into()),
        ]
    );
    assert!(
        outages[2].last_error.starts_with("auth: "),
        "{:?}",
        outages[2]
    );
    assert!(outages[2].to_string().contains("backend 'locked'"));
}

async fn resumed(
    cascade: &Cascade,
    prior: SpanStart,
    backends: &[Arc<dyn BackendAdapter>],
) -> Result<CascadeSuccess, CascadeFailure> {
    cascade
        .run_resumed(
            prior,
            backends,
            0,
            &request(),
            &validation(),
            &CancellationToken::new(),
        )
        .await
}

#[tokio::test(start_paused = true)]
async fn a_resumed_span_numbers_after_all_its_attempts_but_counts_only_its_own_failures() {
    let a = Scripted::new(
        "a",
        vec![
            Step::Fail(FailureKind::SchemaInvalid),
            Step::Reply(valid_reply()),
        ],
    );
    let cascade = Cascade::new(CascadePolicy::default().with_max_attempts_per_span(3));
    // Five attempts so far, only one of them the span's own failure (the rest outages): under
    // a cap of 3, another own failure and the answer after it still fit.
    let prior = SpanStart {
        numbered: 5,
        counted: 1,
    };
    let success = resumed(&cascade, prior, &chain(&[&a])).await.unwrap();
    assert_eq!(
        summary(&success.attempts),
        [
            attempt("a", 6, Some(FailureKind::SchemaInvalid)),
            attempt("a", 7, None)
        ]
    );
    // Counted as five, the same span would be over its cap before its first attempt.
    let b = Scripted::always("b", ok());
    let over = SpanStart {
        numbered: 5,
        counted: 3,
    };
    let failure = resumed(&cascade, over, &chain(&[&b])).await.unwrap_err();
    assert_eq!((failure.reason, b.calls()), (GiveUpReason::AttemptLimit, 0));
}
