//! FakeAdapter: scripted outcomes, fallbacks, delays on tokio's clock, hangs, recording.

use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, Capabilities, FailureKind, GenerateRequest, Generation, HealthReport,
    SpanIdentity, UsageMetrics, ValidationContext, parse_and_validate,
};
use enrich_testkit::{FakeAdapter, Fallback, Script, valid_enrichment_json};
use tokio::time::Instant;

fn request(prompt: &str, start: u32, end: u32) -> GenerateRequest {
    let span = SpanIdentity::new(format!("sha256:{prompt}"), "src/lib.rs", start, end);
    GenerateRequest::new(prompt, span)
}

/// What one call came back with, in a comparable form.
#[derive(Debug, PartialEq)]
enum Got {
    Text(String, Option<String>),
    Err(FailureKind, String, Option<Duration>),
}

fn got(result: Result<Generation, enrich_backends::BackendError>) -> Got {
    match result {
        Ok(g) => Got::Text(g.text, g.metrics.done_reason),
        Err(e) => Got::Err(e.kind, e.message, e.retry_after),
    }
}

fn valid_for(request: &GenerateRequest) -> Got {
    Got::Text(
        valid_enrichment_json(&request.span),
        Some("stop".to_owned()),
    )
}

#[tokio::test(start_paused = true)]
async fn steps_are_answered_in_order_then_the_fallback() {
    let fake = FakeAdapter::named("primary").with_script([
        Script::ok("plain text"),
        Script::err(FailureKind::Overloaded, "busy").with_retry_after(Duration::from_secs(3)),
        Script::truncated("{\"summary_120w\": \"cut"),
        Script::valid(),
        Script::ok("stopped").with_done_reason("eos"),
    ]);
    let req = request("describe lines 4-9", 4, 9);
    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(got(fake.generate(&req).await));
    }
    assert_eq!(
        answers,
        [
            Got::Text("plain text".into(), Some("stop".into())),
            Got::Err(
                FailureKind::Overloaded,
                "busy".into(),
                Some(Duration::from_secs(3))
            ),
            Got::Text("{\"summary_120w\": \"cut".into(), Some("length".into())),
            valid_for(&req),
            Got::Text("stopped".into(), Some("eos".into())),
            // The script is used up: the default fallback answers valid enrichments.
            valid_for(&req),
            valid_for(&req),
        ]
    );
    assert_eq!(fake.calls(), 7);
    assert_eq!(fake.remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn repeat_last_repeats_the_last_step_or_answers_valid_without_a_script() {
    let failing = FakeAdapter::named("down")
        .with_script([Script::err(FailureKind::Connect, "refused")])
        .with_fallback(Fallback::RepeatLast);
    let req = request("lines 1-2", 1, 2);
    for _ in 0..3 {
        assert_eq!(
            got(failing.generate(&req).await),
            Got::Err(FailureKind::Connect, "refused".into(), None)
        );
    }
    let empty = FakeAdapter::named("empty").with_fallback(Fallback::RepeatLast);
    assert_eq!(got(empty.generate(&req).await), valid_for(&req));
}

#[tokio::test(start_paused = true)]
async fn delays_run_on_the_paused_clock() {
    let fake = FakeAdapter::named("slow").with_script([
        Script::valid().after(Duration::from_secs(30)),
        Script::err(FailureKind::Timeout, "late").after(Duration::from_secs(5)),
    ]);
    let req = request("lines 2-3", 2, 3);
    let started = Instant::now();
    assert!(fake.generate(&req).await.is_ok());
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert!(fake.generate(&req).await.is_err());
    assert_eq!(started.elapsed(), Duration::from_secs(35));
}

#[tokio::test(start_paused = true)]
async fn a_hang_stays_pending_until_dropped() {
    let fake = FakeAdapter::named("stuck").with_script([Script::hang()]);
    let req = request("lines 1-1", 1, 1);
    let waited = tokio::time::timeout(Duration::from_secs(600), fake.generate(&req)).await;
    assert!(waited.is_err(), "a hang must not answer");
    assert_eq!(
        fake.in_flight(),
        0,
        "the dropped call is no longer in flight"
    );
    assert_eq!(fake.calls(), 1);
    // The next call gets the fallback.
    assert!(fake.generate(&req).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn requests_are_recorded_and_concurrency_is_measured() {
    let fake = Arc::new(
        FakeAdapter::named("wide")
            .with_script((0..3).map(|_| Script::valid().after(Duration::from_secs(1)))),
    );
    let calls: Vec<_> = (1..=3u32)
        .map(|i| {
            let fake = Arc::clone(&fake);
            tokio::spawn(async move {
                let req = request(&format!("call {i} lines {i}-{i}"), i, i);
                fake.generate(&req).await
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(fake.max_in_flight(), 3);
    assert_eq!(fake.in_flight(), 0);
    let mut prompts: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.prompt.to_string())
        .collect();
    prompts.sort();
    assert_eq!(
        prompts,
        ["call 1 lines 1-1", "call 2 lines 2-2", "call 3 lines 3-3"]
    );

    fake.push(Script::ok("pushed later"));
    let req = request("after", 1, 1);
    assert_eq!(
        got(fake.generate(&req).await),
        Got::Text("pushed later".into(), Some("stop".into()))
    );
    assert_eq!(fake.requests().last().unwrap().prompt.as_ref(), "after");
}

#[tokio::test(start_paused = true)]
async fn default_metrics_are_deterministic_and_given_metrics_are_kept() {
    let mut given = UsageMetrics::new("other-model", "elsewhere");
    given.eval_count = Some(7);
    let fake = FakeAdapter::named("metered")
        .with_host("fake://metered:1")
        .with_script([
            Script::ok("x".repeat(400)),
            Script::ok_with_metrics("y", given.clone()),
        ]);
    let req = GenerateRequest::new("p".repeat(4000), SpanIdentity::new("h", "a.rs", 1, 1))
        .with_system("s".repeat(400));
    let metrics = fake.generate(&req).await.unwrap().metrics;
    assert_eq!(metrics.model, "fake-model");
    assert_eq!(metrics.host, "fake://metered:1");
    assert_eq!(fake.describe_host(), "fake://metered:1");
    assert_eq!(metrics.prompt_eval_count, Some(1100));
    assert_eq!(metrics.eval_count, Some(100));
    assert_eq!(metrics.eval_duration_ns, Some(1_000_000_000));
    assert_eq!(metrics.prompt_eval_duration_ns, Some(1_100_000_000));
    assert_eq!(metrics.load_duration_ns, Some(2_000_000));
    assert_eq!(metrics.total_duration_ns, Some(2_102_000_000));
    assert_eq!(metrics.derived_tokens_per_second(), Some(100.0));
    assert_eq!(fake.generate(&req).await.unwrap().metrics, given);
}

#[tokio::test]
async fn health_and_capabilities_can_be_scripted() {
    let fake = FakeAdapter::named("plain");
    assert!(fake.health().await.is_healthy());
    assert!(fake.capabilities().structured_output);

    let sick = HealthReport {
        reachable: Some(true),
        model_present: Some(false),
        fixes: vec!["ollama pull fake-model".into()],
        ..HealthReport::default()
    };
    let fake = FakeAdapter::named("sick")
        .with_health(sick.clone())
        .with_capabilities(Capabilities::default());
    assert_eq!(fake.health().await, sick);
    assert_eq!(fake.capabilities(), Capabilities::default());
    assert_eq!(fake.spec().name, "sick");
    assert_eq!(fake.spec().provider, "fake");
}

#[test]
fn valid_enrichment_json_passes_validation_for_any_span() {
    for (start, end) in [(1, 1), (10, 24), (999, 1200)] {
        let span = SpanIdentity::new(format!("sha256:{start}"), "src/x.rs", start, end);
        let json = valid_enrichment_json(&span);
        let enrichment = parse_and_validate(&json, &ValidationContext::for_span(&span, true))
            .unwrap_or_else(|err| panic!("lines {start}-{end}: {err}"));
        assert!(enrichment.evidence.iter().all(|e| e.lines == [start, end]));
        assert!(enrichment.summary.contains(&format!("lines {start}-{end}")));
    }
    let a = SpanIdentity::new("sha256:a", "x.rs", 1, 2);
    let b = SpanIdentity::new("sha256:b", "x.rs", 1, 2);
    assert_eq!(valid_enrichment_json(&a), valid_enrichment_json(&a));
    assert_ne!(valid_enrichment_json(&a), valid_enrichment_json(&b));
}
