//! End to end against the real local model server (SmolLM2-135M behind Ollama's API).
//!
//! Needs `cargo xtask model-server provision` and its ENRICH_MODEL_SERVER_* variables; without
//! them the test fails, naming the missing variable.

use std::sync::Arc;
use std::time::Instant;

use enrich_adapter_ollama::OllamaAdapter;
use enrich_backends::{
    BackendAdapter, FailureKind, GenerateRequest, SpanIdentity, ValidationContext,
    enrichment_v1_schema, parse_and_validate,
};
use enrich_config::BackendSpec;
use enrich_testkit::ModelServerProcess;
use serde_json::{Value, json};

use crate::support::assert_failure;

/// A prompt this 135M model answers with valid enrichment.v1 under temperature 0 and a fixed
/// seed: it needs an example of the format (left to itself, it cites negative line numbers).
const PROMPT: &str = r#"Describe this Rust function from src/math.rs (lines 1-3) as one JSON object.

1 fn add(a: i32, b: i32) -> i32 {
2     a + b
3 }

Example answer:
{"evidence": [{"field": "summary_120w", "lines": [1, 3]}], "inputs": ["a", "b"], "outputs": ["the sum"], "pitfalls": [], "side_effects": [], "summary_120w": "Adds two numbers.", "usage_snippet": null}
"#;

fn request() -> GenerateRequest {
    GenerateRequest::new(PROMPT, SpanIdentity::new("sha256:add", "src/math.rs", 1, 3))
        .with_system("You document code. Reply with one JSON object.")
        .with_schema(Arc::clone(enrichment_v1_schema()))
        .with_max_output_tokens(400)
}

fn adapter(base: &BackendSpec, model: &str, options: Value) -> OllamaAdapter {
    let Value::Object(options) = options else {
        panic!("options must be an object")
    };
    OllamaAdapter::new(BackendSpec {
        model: model.to_owned(),
        options,
        ..base.clone()
    })
    .unwrap()
}

#[tokio::test]
async fn the_real_model_enriches_truncates_and_reports_health() {
    let started = Instant::now();
    let server = ModelServerProcess::start().unwrap_or_else(|err| panic!("{err}"));
    let base = server.backend_spec("real");
    let model = server.model_name();
    let deterministic = json!({"temperature": 0, "seed": 42});

    let health = adapter(&base, model, json!({})).health().await;
    assert!(health.is_healthy(), "{health:?}");
    assert_eq!(health.model_present, Some(true), "{health:?}");
    assert_eq!(
        health.context_length,
        Some(8192),
        "SmolLM2's trained context: {health:?}"
    );

    let real = adapter(&base, model, deterministic.clone());
    let generation = real.generate(&request()).await.unwrap();
    let span = &request().span;
    let enrichment =
        parse_and_validate(&generation.text, &ValidationContext::for_span(span, false))
            .unwrap_or_else(|err| panic!("{err}\nthe model wrote: {}", generation.text));
    assert!(!enrichment.summary.is_empty(), "{enrichment:?}");
    let metrics = &generation.metrics;
    assert_eq!(metrics.host, server.url());
    assert_eq!(metrics.done_reason.as_deref(), Some("stop"));
    assert!(metrics.eval_count.is_some_and(|n| n > 10), "{metrics:?}");
    assert!(
        metrics.prompt_eval_count.is_some_and(|n| n > 10),
        "{metrics:?}"
    );
    assert!(
        metrics.tokens_per_second.is_some_and(|tps| tps > 0.0),
        "{metrics:?}"
    );

    for stream in [false, true] {
        let options = json!({"temperature": 0, "seed": 42, "num_predict": 5, "stream": stream});
        let result = adapter(&base, model, options).generate(&request()).await;
        assert_failure(
            "num_predict 5",
            result,
            FailureKind::Truncated,
            &["after 5 tokens"],
        );
    }

    let tiny_context = adapter(&base, model, json!({"num_ctx": 32}));
    assert_failure(
        "num_ctx 32",
        tiny_context.generate(&request()).await,
        FailureKind::ContextExceeded,
        &["exceeds the context length", "`num_ctx`"],
    );

    let unknown = adapter(&base, "no-such-model:1b", deterministic);
    assert_failure(
        "unknown model",
        unknown.generate(&request()).await,
        FailureKind::ModelNotFound,
        &["`ollama pull no-such-model:1b`"],
    );
    let health = unknown.health().await;
    assert_eq!(
        (health.reachable, health.model_present),
        (Some(true), Some(false))
    );

    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
}

/// A request with a long system prompt shared by every span and a short part of its own,
/// answered under a grammar that lets the model say little (`{"ok": true}` or `false`).
fn shared_prefix_request(system: &str, question: &str) -> GenerateRequest {
    GenerateRequest::new(
        question,
        SpanIdentity::new("sha256:prefix", "src/math.rs", 1, 3),
    )
    .with_system(system)
    .with_schema(json!({
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
    }))
    .with_max_output_tokens(20)
}

/// The `prompt_eval_count` the server reports for one [`shared_prefix_request`].
async fn prompt_tokens_evaluated(real: &OllamaAdapter, system: &str, question: &str) -> u64 {
    let request = shared_prefix_request(system, question);
    let generation = real
        .generate(&request)
        .await
        .unwrap_or_else(|err| panic!("{question}: {err}"));
    generation
        .metrics
        .prompt_eval_count
        .expect("the server reports prompt_eval_count")
}

#[tokio::test]
async fn the_real_model_server_evaluates_only_what_follows_a_prefix_it_already_holds() {
    let server = ModelServerProcess::start().unwrap_or_else(|err| panic!("{err}"));
    let real = adapter(
        &server.backend_spec("real"),
        server.model_name(),
        json!({"temperature": 0, "seed": 42}),
    );
    let rules: String = (1..=40)
        .map(|i| format!("Rule {i}: describe the code precisely and cite the lines you use. "))
        .collect();
    let system = format!("You document code for a search index. {rules}");
    let first = prompt_tokens_evaluated(&real, &system, "Is `fn add(a, b)` pure?").await;
    let second = prompt_tokens_evaluated(&real, &system, "Is `fn sub(a, b)` pure?").await;
    // The system prompt alone is about 650 tokens; the second request shares all of it and
    // the start of the question, so llama.cpp evaluates only the few tokens after.
    assert!(
        first > 500,
        "the first request evaluates the whole prompt: {first}"
    );
    assert!(
        second < 30,
        "the second request evaluates only what differs: {second} (first {first})"
    );
    // What differs is at most the question: the server's /tokenize (llama-server's) sizes it in
    // the model's tokens, and what was evaluated is no more than that and the chat template's
    // few tokens.
    let question = tokenize(&server, json!({"content": "Is `fn sub(a, b)` pure?"})).await;
    let question = question["tokens"].as_array().map_or(0, Vec::len) as u64;
    assert!(
        (5..=20).contains(&question),
        "the question is a few tokens: {question}"
    );
    assert!(
        second <= question + 10,
        "evaluated {second} for a question of {question} tokens"
    );

    // A system prompt that differs early shares only the chat template's first tokens: all
    // the rest is evaluated again, so the small figure above is what llama.cpp evaluated.
    let other = format!("You review code for a changelog. {rules}");
    let third = prompt_tokens_evaluated(&real, &other, "Is `fn sub(a, b)` pure?").await;
    assert!(
        third > 500,
        "a different system prompt is evaluated in full: {third}"
    );
}

/// `POST /tokenize` on the model server: its status and JSON answer.
async fn tokenize(server: &ModelServerProcess, body: Value) -> Value {
    // reqwest is built without a default crypto provider: install enrich's, as every client of
    // enrich does (plain HTTP here, but the builder asks for one).
    enrich_backends::tls::install_default_provider();
    let answer = reqwest::Client::new()
        .post(format!("{}/tokenize", server.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let mut json: Value = answer.json().await.unwrap();
    json["status"] = json!(status);
    json
}

#[tokio::test]
async fn the_real_model_server_tokenizes_text_as_llama_server_does() {
    let server = ModelServerProcess::start().unwrap_or_else(|err| panic!("{err}"));
    let one = tokenize(&server, json!({"content": "def add(a, b):"})).await;
    let tokens = one["tokens"].as_array().expect("a token list");
    assert_eq!(one["status"], 200, "{one}");
    assert!(
        (3..=14).contains(&tokens.len()) && tokens.iter().all(Value::is_u64),
        "{one}"
    );
    let again = tokenize(
        &server,
        json!({"content": "def add(a, b):", "model": server.model_name()}),
    )
    .await;
    assert_eq!(
        again["tokens"], one["tokens"],
        "the same text, the same tokens"
    );
    let longer = tokenize(
        &server,
        json!({"content": "def add(a, b):\n    return a + b"}),
    )
    .await;
    assert!(longer["tokens"].as_array().unwrap().len() > tokens.len());

    let empty = tokenize(&server, json!({"content": ""})).await;
    assert_eq!(empty["tokens"], json!([]));
    let missing = tokenize(&server, json!({"text": "x"})).await;
    assert_eq!(
        (&missing["status"], &missing["error"]),
        (&json!(400), &json!("content must be a string"))
    );
    let unknown = tokenize(&server, json!({"content": "x", "model": "other:1b"})).await;
    assert_eq!(unknown["status"], 404, "{unknown}");
}
