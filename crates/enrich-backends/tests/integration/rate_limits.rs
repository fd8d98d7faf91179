//! Requests and tokens per minute, on tokio's paused clock (the limiter runs on it too).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, Cascade, CascadePolicy, Deadline, FailureKind, GenerateRequest, GiveUpReason,
    HostPool, HostPoolPolicy, RateLimit, RateLimited,
};
use enrich_config::BackendSpec;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{FakeHost, Scripted, Step, span, valid_reply, validation};

fn limit(requests_per_minute: u32, tokens_per_minute: u32) -> RateLimit {
    RateLimit {
        requests_per_minute: NonZeroU32::new(requests_per_minute),
        tokens_per_minute: NonZeroU32::new(tokens_per_minute),
    }
}

/// A request estimated at `tokens` tokens (a prompt of `4 * tokens` bytes).
fn costing(tokens: usize) -> GenerateRequest {
    let request = GenerateRequest::new("x".repeat(4 * tokens), span());
    assert_eq!(request.estimated_tokens() as usize, tokens.max(1));
    request
}

/// Sends `requests` one after another through `limit`; returns when each reached the backend,
/// in seconds from the start.
async fn check(limit: RateLimit, requests: &[GenerateRequest]) -> Vec<f64> {
    let backend = Scripted::always("a", Step::Reply(valid_reply()));
    let limited = RateLimited::new(Arc::clone(&backend) as _, limit);
    let started = Instant::now();
    for request in requests {
        limited.generate(request).await.unwrap();
    }
    backend
        .call_times()
        .iter()
        .map(|t| (*t - started).as_secs_f64())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn requests_per_minute_allow_a_burst_then_refill_evenly() {
    let five = vec![costing(1); 5];
    assert_eq!(
        check(limit(2, 0), &five).await,
        [0.0, 0.0, 30.0, 60.0, 90.0]
    );
    assert_eq!(check(limit(600, 0), &five).await, [0.0; 5]);
}

#[tokio::test(start_paused = true)]
async fn tokens_per_minute_wait_for_the_estimated_tokens() {
    let three = vec![costing(600); 3];
    // 1000 tokens a minute: 600 now, 200 more refill in 12 s, then 600 in 36 s.
    assert_eq!(check(limit(0, 1000), &three).await, [0.0, 12.0, 48.0]);
    // The request limit applies too, the slower one wins.
    assert_eq!(check(limit(1, 1000), &three).await, [0.0, 60.0, 120.0]);
    assert_eq!(check(limit(60, 1000), &three).await, [0.0, 12.0, 48.0]);
    // The output cap counts: 100 prompt tokens + 500 output.
    let capped = vec![costing(100).with_max_output_tokens(500); 3];
    assert_eq!(check(limit(0, 1000), &capped).await, [0.0, 12.0, 48.0]);
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_budget_spends_the_whole_budget_instead_of_waiting_forever() {
    let huge = vec![costing(5000); 3];
    assert_eq!(check(limit(0, 1000), &huge).await, [0.0, 60.0, 120.0]);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_wait_their_turn_in_order() {
    let backend = Scripted::always("a", Step::Reply(valid_reply()));
    let limited = Arc::new(RateLimited::new(Arc::clone(&backend) as _, limit(0, 1000)));
    let started = Instant::now();
    let mut calls = JoinSet::new();
    // 500 tokens go at once; 900 must wait for 400 more (24 s); the 100 behind them would fit
    // at once but does not overtake: it waits for the 900, then for its own 100 (6 s).
    for tokens in [500, 900, 100] {
        let limited = Arc::clone(&limited);
        calls.spawn(async move {
            limited.generate(&costing(tokens)).await.unwrap();
        });
        tokio::task::yield_now().await;
    }
    calls.join_all().await;
    let at: Vec<f64> = backend
        .call_times()
        .iter()
        .map(|t| (*t - started).as_secs_f64())
        .collect();
    assert_eq!(at, [0.0, 24.0, 30.0]);
    let prompts: Vec<usize> = backend.prompts().iter().map(String::len).collect();
    assert_eq!(prompts, [2000, 3600, 400]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_starts_once_the_limiter_lets_the_request_go() {
    let spec = BackendSpec {
        timeout_seconds: Some(5.0),
        ..BackendSpec::new("slow", "default", "scripted", "m")
    };
    let backend = Scripted::with_spec(
        spec,
        vec![Step::After(
            Duration::from_secs(3),
            Box::new(Step::Reply(valid_reply())),
        )],
    );
    let limited: Arc<dyn BackendAdapter> =
        Arc::new(RateLimited::new(Arc::clone(&backend) as _, limit(1, 0)));
    assert_eq!(
        limited.spec().timeout_seconds,
        Some(5.0),
        "the configured timeout"
    );
    assert_eq!(
        limited.deadline(),
        Deadline::Adapter(Duration::from_secs(5)),
        "applied by the limiter, after the wait"
    );
    assert_eq!(limited.describe_host(), "scripted://slow");
    let cascade = Cascade::new(CascadePolicy::default());
    let started = Instant::now();
    let (first, second) = tokio::join!(
        span_through(&cascade, &limited),
        span_through(&cascade, &limited)
    );
    assert_eq!((first, second), (Ok(1), Ok(1)));
    assert_eq!(started.elapsed(), Duration::from_secs(63));

    // The backend's own timeout still holds once the request is sent.
    let hung = Scripted::with_spec(
        BackendSpec {
            timeout_seconds: Some(5.0),
            ..BackendSpec::new("hung", "default", "scripted", "m")
        },
        vec![Step::Hang],
    );
    let limited = RateLimited::new(Arc::clone(&hung) as _, limit(1, 0));
    let err = limited.generate(&costing(1)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Timeout);
    assert_eq!(
        err.message,
        "backend 'hung' at scripted://hung gave no answer within 5s; raise its timeout_seconds \
         or use a smaller model"
    );
}

/// One span through `backend` alone: its attempt count, or why it failed.
async fn span_through(
    cascade: &Cascade,
    backend: &Arc<dyn BackendAdapter>,
) -> Result<usize, GiveUpReason> {
    span_cancellable(cascade, backend, &CancellationToken::new()).await
}

async fn span_cancellable(
    cascade: &Cascade,
    backend: &Arc<dyn BackendAdapter>,
    cancel: &CancellationToken,
) -> Result<usize, GiveUpReason> {
    let request = GenerateRequest::new("enrich this span", span());
    cascade
        .run(
            std::slice::from_ref(backend),
            0,
            &request,
            &validation(),
            cancel,
        )
        .await
        .map(|success| success.attempts.len())
        .map_err(|failure| failure.reason)
}

#[tokio::test(start_paused = true)]
async fn around_a_pool_the_pools_deadline_is_the_only_one() {
    // A 10 s timeout, one host slot, 5 s per request, 60 requests a minute (a burst of 60):
    // the third request leaves the limiter at once, gets the slot at 10 s and answers at 15 s.
    // Only the pool's deadline, from the slot, applies.
    let spec = BackendSpec {
        timeout_seconds: Some(10.0),
        ..BackendSpec::new("gpus", "default", "fake", "qwen")
    };
    let host = FakeHost::new(&spec, "http://gpu1:11434", Duration::from_secs(5));
    let pool = HostPool::new(
        spec,
        vec![Arc::clone(&host) as _],
        HostPoolPolicy::default(),
    )
    .unwrap();
    let limited: Arc<dyn BackendAdapter> = Arc::new(RateLimited::new(Arc::new(pool), limit(60, 0)));
    let cascade = Cascade::new(CascadePolicy::default());
    let started = Instant::now();
    let results = tokio::join!(
        span_through(&cascade, &limited),
        span_through(&cascade, &limited),
        span_through(&cascade, &limited)
    );
    assert_eq!(results, (Ok(1), Ok(1), Ok(1)));
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert_eq!(host.answered(), 3);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_span_waiting_for_the_limiter_returns_at_once() {
    let backend = Scripted::always("a", Step::Reply(valid_reply()));
    let limited: Arc<dyn BackendAdapter> =
        Arc::new(RateLimited::new(Arc::clone(&backend) as _, limit(1, 0)));
    let cascade = Cascade::new(CascadePolicy::default());
    assert_eq!(span_through(&cascade, &limited).await, Ok(1));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let outcome = span_cancellable(&cascade, &limited, &cancel).await;
    assert_eq!(outcome, Err(GiveUpReason::Cancelled));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(backend.calls(), 1);
}

#[test]
fn limits_come_from_the_backend_entry() {
    let spec = BackendSpec {
        requests_per_minute: Some(60),
        tokens_per_minute: Some(0),
        ..BackendSpec::new("a", "default", "scripted", "m")
    };
    let from_spec = RateLimit::of(&spec);
    assert_eq!(from_spec, limit(60, 0));
    assert!(!from_spec.is_unlimited());
    assert!(RateLimit::of(&BackendSpec::new("a", "default", "scripted", "m")).is_unlimited());
    let limited = RateLimited::new(
        Scripted::always("a", Step::Fail(FailureKind::Connect)),
        from_spec,
    );
    assert_eq!(limited.limit(), from_spec);
}
