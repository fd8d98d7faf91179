//! What the adapter sends, and what it makes of successful answers.

use std::sync::Arc;

use enrich_backends::{BackendAdapter, GenerateRequest, enrichment_v1_schema};
use enrich_testkit::{Endpoint, FakeOllama, FakeOllamaConfig};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{MODEL, adapter, bodies, completion, completion_with, request};

/// Sends `request` through a backend with `options` and compares the whole body the server got.
async fn check_body(options: Value, request: GenerateRequest, expected: Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("{}")))
        .mount(&server)
        .await;
    adapter(&format!("{}/v1", server.uri()), options.clone())
        .generate(&request)
        .await
        .unwrap();
    assert_eq!(bodies(&server).await, [expected], "options {options}");
}

#[tokio::test]
async fn the_body_carries_messages_schema_limit_and_options_but_not_enrichs_own_keys() {
    let schema = Arc::clone(enrichment_v1_schema());
    let with_all = request()
        .with_system("You write JSON.")
        .with_schema(Arc::clone(&schema))
        .with_max_output_tokens(512);
    let messages = json!([
        {"role": "system", "content": "You write JSON."},
        {"role": "user", "content": "Describe this code."},
    ]);

    // Defaults: the schema as json_schema (named after its title), the limit as max_tokens.
    check_body(
        json!({}),
        with_all.clone(),
        json!({
            "model": MODEL,
            "messages": messages,
            "stream": false,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "enrichment_v1", "schema": *schema},
            },
            "max_tokens": 512,
        }),
    )
    .await;

    // Provider options become top-level fields; enrich's own keys do not; `strict` is sent.
    check_body(
        json!({
            "temperature": 0, "seed": 7, "top_p": 0.9, "stop": ["\n\n"], "user": "enrich",
            "strict": true, "stream": false,
        }),
        with_all.clone(),
        json!({
            "model": MODEL,
            "messages": messages,
            "stream": false,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "enrichment_v1", "schema": *schema, "strict": true},
            },
            "max_tokens": 512,
            "temperature": 0, "seed": 7, "top_p": 0.9, "stop": ["\n\n"], "user": "enrich",
        }),
    )
    .await;

    // A configured limit wins over the request's, under either name.
    for limit in ["max_tokens", "max_completion_tokens"] {
        check_body(
            json!({limit: 64, "response_format": "json_object"}),
            with_all.clone(),
            json!({
                "model": MODEL,
                "messages": messages,
                "stream": false,
                "response_format": {"type": "json_object"},
                limit: 64,
            }),
        )
        .await;
    }

    // `none` sends no response_format; no system prompt, no system message.
    check_body(
        json!({"response_format": "none"}),
        request().with_schema(Arc::clone(&schema)),
        json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": "Describe this code."}],
            "stream": false,
        }),
    )
    .await;

    // A request without a schema asks for any JSON object.
    check_body(
        json!({}),
        request(),
        json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": "Describe this code."}],
            "stream": false,
            "response_format": {"type": "json_object"},
        }),
    )
    .await;
}

#[tokio::test]
async fn an_answer_becomes_text_and_usage_metrics() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion(r#"{"summary_120w": "adds"}"#)),
        )
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let adapter = adapter(&base, json!({}));
    let generation = adapter.generate(&request()).await.unwrap();

    assert_eq!(generation.text, r#"{"summary_120w": "adds"}"#);
    let m = &generation.metrics;
    assert_eq!(m.model, "gpt-4o-mini-2024-07-18", "the model that answered");
    assert_eq!(m.host, base);
    assert_eq!(adapter.describe_host(), base);
    assert_eq!((m.prompt_eval_count, m.eval_count), (Some(140), Some(60)));
    assert!(
        m.total_duration_ns.is_some_and(|ns| ns > 0),
        "measured: {m:?}"
    );
    assert_eq!(
        (
            m.load_duration_ns,
            m.prompt_eval_duration_ns,
            m.eval_duration_ns
        ),
        (None, None, None),
        "OpenAI reports no durations"
    );
    assert_eq!(m.tokens_per_second, None);
    assert_eq!(m.done_reason.as_deref(), Some("stop"));
}

/// The metrics of an answer whose body is `body`.
async fn metrics_of(body: Value) -> enrich_backends::UsageMetrics {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let generation = adapter(&server.uri(), json!({}))
        .generate(&request())
        .await
        .unwrap();
    generation.metrics
}

#[tokio::test]
async fn llama_cpp_timings_give_durations_and_speed() {
    let mut body = completion("{}");
    body["timings"] = json!({
        "prompt_n": 140, "prompt_ms": 700.0, "predicted_n": 60, "predicted_ms": 1500.0,
        "predicted_per_second": 40.0,
    });
    let m = &metrics_of(body).await;
    assert_eq!(m.prompt_eval_duration_ns, Some(700_000_000));
    assert_eq!(m.eval_duration_ns, Some(1_500_000_000));
    assert_eq!(m.tokens_per_second, Some(40.0), "60 tokens in 1.5 s");
}

#[tokio::test]
async fn the_prompt_tokens_evaluated_leave_out_those_the_server_says_were_cached() {
    let check = |usage: Value, timings: Option<Value>, expected: Option<u64>| async move {
        let mut body = completion("{}");
        body["usage"] = usage.clone();
        if let Some(timings) = &timings {
            body["timings"] = timings.clone();
        }
        assert_eq!(
            metrics_of(body).await.prompt_eval_count,
            expected,
            "usage {usage}, timings {timings:?}"
        );
    };
    // OpenAI's prompt caching (and vLLM's): the cached tokens are part of prompt_tokens.
    let cached = json!({"prompt_tokens": 2006, "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1920}});
    check(cached.clone(), None, Some(86)).await;
    check(
        json!({"prompt_tokens": 140, "prompt_tokens_details": {"cached_tokens": 0}}),
        None,
        Some(140),
    )
    .await;
    // llama.cpp's server: `timings.prompt_n` is what it evaluated, `cache_n` what it reused.
    let timings = json!({"cache_n": 1990, "prompt_n": 16, "prompt_ms": 20.0});
    check(cached, Some(timings), Some(16)).await;
    check(json!({"prompt_tokens": 140}), None, Some(140)).await;
}

#[tokio::test]
async fn reasoning_is_the_answer_only_when_content_is_empty() {
    let check = |content: Value,
                 field: &'static str,
                 reasoning: &'static str,
                 expected: &'static str| async move {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion_with(
                "",
                json!({"content": content, field: reasoning}),
                json!({}),
            )))
            .mount(&server)
            .await;
        let generation = adapter(&server.uri(), json!({}))
            .generate(&request())
            .await
            .unwrap();
        assert_eq!(
            generation.text, expected,
            "content {content}, {field} {reasoning:?}"
        );
    };
    check(json!(""), "reasoning_content", r#"{"a": 1}"#, r#"{"a": 1}"#).await;
    check(json!(null), "reasoning", r#"{"b": 2}"#, r#"{"b": 2}"#).await;
    check(json!(" \n"), "reasoning", r#"{"c": 3}"#, r#"{"c": 3}"#).await;
    check(
        json!(r#"{"d": 4}"#),
        "reasoning_content",
        "let me think",
        r#"{"d": 4}"#,
    )
    .await;
    check(json!(null), "reasoning", "", "").await;
}

#[tokio::test]
async fn every_span_reuses_one_connection_to_the_fake_v1() {
    let server = FakeOllama::start(FakeOllamaConfig::default().with_models([MODEL]))
        .await
        .unwrap();
    let adapter = adapter(&format!("{}/v1", server.url()), json!({"seed": 1}));
    for _ in 0..3 {
        let generation = adapter.generate(&request()).await.unwrap();
        assert_eq!(generation.metrics.model, MODEL);
    }
    let stats = server.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.endpoint(Endpoint::ChatCompletions), 3);
    let sent = server.last_body(Endpoint::ChatCompletions).unwrap();
    assert_eq!(sent["seed"], json!(1));
}
