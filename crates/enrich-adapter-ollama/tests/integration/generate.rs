//! What the adapter sends, and what it makes of Ollama's successful answers.

use std::sync::Arc;

use enrich_backends::{BackendAdapter, GenerateRequest, enrichment_v1_schema};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{MODEL, RawServer, adapter, bodies, chunked, done, done_with, request};

/// Sends `request` through a backend with `options` and compares the whole body Ollama got.
async fn check_body(options: Value, request: GenerateRequest, expected: Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done("{}")))
        .mount(&server)
        .await;
    adapter(&server.uri(), options.clone())
        .generate(&request)
        .await
        .unwrap();
    assert_eq!(bodies(&server).await, [expected], "options {options}");
}

#[tokio::test]
async fn the_body_carries_model_prompt_schema_and_options_but_not_enrichs_own_keys() {
    let schema = Arc::clone(enrichment_v1_schema());
    let with_all = request()
        .with_system("You write JSON.")
        .with_schema(Arc::clone(&schema))
        .with_max_output_tokens(512);

    // Defaults: no stream, no keep_alive, no think; the output limit becomes num_predict.
    check_body(
        json!({}),
        with_all.clone(),
        json!({
            "model": MODEL,
            "prompt": "Describe this code.",
            "system": "You write JSON.",
            "stream": false,
            "format": *schema,
            "options": {"num_predict": 512},
        }),
    )
    .await;

    // Provider options pass through; enrich's own keys do not go into `options`, and
    // keep_alive / think become top-level fields only because they are configured.
    check_body(
        json!({
            "temperature": 0, "seed": 7, "num_ctx": 8192, "top_p": 0.9, "stop": ["\n\n"],
            "stream": false, "keep_alive": "10m", "think": false,
        }),
        with_all.clone(),
        json!({
            "model": MODEL,
            "prompt": "Describe this code.",
            "system": "You write JSON.",
            "stream": false,
            "format": *schema,
            "options": {
                "temperature": 0, "seed": 7, "num_ctx": 8192, "top_p": 0.9, "stop": ["\n\n"],
                "num_predict": 512,
            },
            "keep_alive": "10m",
            "think": false,
        }),
    )
    .await;

    // A configured num_predict wins over the request's limit; keep_alive may be seconds.
    check_body(
        json!({"num_predict": 64, "keep_alive": -1}),
        with_all,
        json!({
            "model": MODEL,
            "prompt": "Describe this code.",
            "system": "You write JSON.",
            "stream": false,
            "format": *schema,
            "options": {"num_predict": 64},
            "keep_alive": -1,
        }),
    )
    .await;

    // No schema asks for any JSON; no options at all sends no `options` object.
    check_body(
        json!({}),
        request(),
        json!({
            "model": MODEL,
            "prompt": "Describe this code.",
            "stream": false,
            "format": "json",
        }),
    )
    .await;
}

#[tokio::test]
async fn an_answer_becomes_text_and_usage_metrics() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done_with(
            r#"{"summary_120w": "adds"}"#,
            json!({"model": "qwen2.5:7b-instruct-q4"}),
        )))
        .mount(&server)
        .await;
    let adapter = adapter(&server.uri(), json!({}));
    let generation = adapter.generate(&request()).await.unwrap();

    assert_eq!(generation.text, r#"{"summary_120w": "adds"}"#);
    let m = &generation.metrics;
    assert_eq!(m.model, "qwen2.5:7b-instruct-q4", "the model that answered");
    assert_eq!(m.host, server.uri());
    assert_eq!(adapter.describe_host(), server.uri());
    assert_eq!((m.prompt_eval_count, m.eval_count), (Some(140), Some(60)));
    assert_eq!(m.total_duration_ns, Some(5_000_000_000));
    assert_eq!(m.load_duration_ns, Some(100_000_000));
    assert_eq!(m.prompt_eval_duration_ns, Some(800_000_000));
    assert_eq!(m.eval_duration_ns, Some(4_000_000_000));
    assert_eq!(m.tokens_per_second, Some(15.0), "60 tokens in 4 s");
    assert_eq!(m.done_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn the_prompt_tokens_read_from_ollamas_cache_are_not_counted_as_evaluated() {
    // Recent Ollama: `prompt_eval_count` is the whole prompt, `prompt_eval_cached_count` the
    // part of it read from the cache; whole, then streamed.
    for stream in [false, true] {
        let server = MockServer::start().await;
        let metrics = json!({"prompt_eval_count": 900, "prompt_eval_cached_count": 850});
        let answer = done_with(r#"{"summary_120w": "adds"}"#, metrics);
        let response = if stream {
            ResponseTemplate::new(200).set_body_string(format!("{answer}\n"))
        } else {
            ResponseTemplate::new(200).set_body_json(answer)
        };
        Mock::given(method("POST"))
            .and(path("/api/generate"))
            .respond_with(response)
            .mount(&server)
            .await;
        let generation = adapter(&server.uri(), json!({"stream": stream}))
            .generate(&request())
            .await
            .unwrap();
        assert_eq!(
            generation.metrics.prompt_eval_count,
            Some(50),
            "stream {stream}"
        );
    }
}

#[tokio::test]
async fn a_thinking_model_is_read_from_thinking_only_when_response_is_empty() {
    let check = |response: &'static str, thinking: &'static str, expected: &'static str| async move {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/generate"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(done_with(response, json!({"thinking": thinking}))),
            )
            .mount(&server)
            .await;
        let generation = adapter(&server.uri(), json!({}))
            .generate(&request())
            .await
            .unwrap();
        assert_eq!(
            generation.text, expected,
            "response {response:?}, thinking {thinking:?}"
        );
    };
    check("", r#"{"summary_120w": "x"}"#, r#"{"summary_120w": "x"}"#).await;
    check(" \n", r#"{"a": 1}"#, r#"{"a": 1}"#).await;
    check(r#"{"b": 2}"#, "let me think", r#"{"b": 2}"#).await;
    check("", "", "").await;
}

/// One streamed answer: three text pieces (the second line split across two chunks), then the
/// final line with the metrics.
fn streamed_answer() -> Vec<String> {
    let line = |v: Value| format!("{v}\n");
    let first = line(json!({"model": MODEL, "response": "{\"summary", "done": false}));
    let second = line(json!({"model": MODEL, "response": "_120w\": ", "done": false}));
    let third = line(json!({"model": MODEL, "response": "\"adds\"}", "done": false}));
    let last = line(done_with(
        "",
        json!({"eval_count": 3, "eval_duration": 1_000_000_000}),
    ));
    let (head, tail) = second.split_at(10);
    let parts = [first.as_str(), head, tail, third.as_str(), last.as_str()];
    chunked(&parts)
}

const NDJSON_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
                           Transfer-Encoding: chunked\r\n\r\n";

#[tokio::test]
async fn a_streamed_answer_is_joined_and_its_metrics_come_from_the_last_line() {
    let server = RawServer::start(NDJSON_HEAD.to_owned(), streamed_answer());
    let generation = adapter(&server.url, json!({"stream": true}))
        .generate(&request())
        .await
        .unwrap();
    assert_eq!(generation.text, r#"{"summary_120w": "adds"}"#);
    assert_eq!(generation.metrics.eval_count, Some(3));
    assert_eq!(generation.metrics.tokens_per_second, Some(3.0));
    assert_eq!(generation.metrics.done_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn the_stream_flag_is_sent_as_configured() {
    let server = MockServer::start().await;
    let ndjson = format!("{}\n", done("{}"));
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(ndjson, "application/x-ndjson"))
        .mount(&server)
        .await;
    adapter(&server.uri(), json!({"stream": true}))
        .generate(&request())
        .await
        .unwrap();
    let sent = bodies(&server).await;
    assert_eq!(sent[0]["stream"], json!(true));
    assert_eq!(
        sent[0].get("options"),
        None,
        "`stream` is not an Ollama option"
    );
}

#[tokio::test]
async fn every_span_reuses_one_connection() {
    let check = |options: Value, head: String, body: Vec<String>| async move {
        let server = RawServer::start(head, body);
        let adapter = adapter(&server.url, options.clone());
        for _ in 0..3 {
            adapter.generate(&request()).await.unwrap();
        }
        assert_eq!(server.connections(), 1, "options {options}");
    };
    let whole = done("{}").to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        whole.len()
    );
    check(json!({}), head, vec![whole]).await;
    check(
        json!({"stream": true}),
        NDJSON_HEAD.to_owned(),
        streamed_answer(),
    )
    .await;
}
