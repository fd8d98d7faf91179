//! End to end against the real local model server (SmolLM2-135M) through its OpenAI-compatible
//! `/v1/chat/completions`.
//!
//! Needs `cargo xtask model-server provision` and its ENRICH_MODEL_SERVER_* variables; without
//! them the test fails, naming the missing variable.

use std::sync::Arc;
use std::time::Instant;

use enrich_adapter_openai::OpenAiAdapter;
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

/// An `openai` backend for the server's `/v1`, with `model` and `options`.
fn adapter(server: &ModelServerProcess, model: &str, options: Value) -> OpenAiAdapter {
    let Value::Object(options) = options else {
        panic!("options must be an object")
    };
    OpenAiAdapter::new(BackendSpec {
        provider: "openai".to_owned(),
        model: model.to_owned(),
        url: Some(format!("{}/v1", server.url())),
        options,
        ..server.backend_spec("real-openai")
    })
    .unwrap()
}

#[tokio::test]
async fn the_real_model_enriches_truncates_and_reports_health_over_v1() {
    let started = Instant::now();
    let server = ModelServerProcess::start().unwrap_or_else(|err| panic!("{err}"));
    let model = server.model_name();
    let deterministic = json!({"temperature": 0, "seed": 42});
    let base = format!("{}/v1", server.url());

    let health = adapter(&server, model, json!({})).health().await;
    assert!(health.is_healthy(), "{health:?}");
    assert_eq!(health.model_present, Some(true), "{health:?}");

    let real = adapter(&server, model, deterministic.clone());
    let generation = real.generate(&request()).await.unwrap();
    let span = &request().span;
    let enrichment =
        parse_and_validate(&generation.text, &ValidationContext::for_span(span, false))
            .unwrap_or_else(|err| panic!("{err}\nthe model wrote: {}", generation.text));
    assert!(!enrichment.summary.is_empty(), "{enrichment:?}");
    let metrics = &generation.metrics;
    assert_eq!(metrics.host, base);
    assert_eq!(metrics.model, model);
    assert_eq!(metrics.done_reason.as_deref(), Some("stop"));
    assert!(metrics.eval_count.is_some_and(|n| n > 10), "{metrics:?}");
    assert!(
        metrics.prompt_eval_count.is_some_and(|n| n > 10),
        "{metrics:?}"
    );
    assert!(
        metrics.total_duration_ns.is_some_and(|ns| ns > 0),
        "{metrics:?}"
    );

    // The same model, asked for any JSON object, still answers JSON.
    let json_object = adapter(
        &server,
        model,
        json!({"temperature": 0, "seed": 42, "response_format": "json_object"}),
    );
    let generation = json_object.generate(&request()).await.unwrap();
    let value: Value = serde_json::from_str(&generation.text)
        .unwrap_or_else(|err| panic!("{err}\nthe model wrote: {}", generation.text));
    assert!(value.is_object(), "{value}");

    let short = adapter(&server, model, json!({"temperature": 0, "max_tokens": 5}));
    assert_failure(
        "max_tokens 5",
        short.generate(&request()).await,
        FailureKind::Truncated,
        &["after 5 tokens", "`max_tokens` is 5"],
    );

    // The server's context is 2048 tokens; this prompt is far longer.
    let long = GenerateRequest::new(
        "word ".repeat(5000),
        SpanIdentity::new("sha256:long", "src/long.rs", 1, 1),
    );
    assert_failure(
        "a prompt beyond the context",
        real.generate(&long).await,
        FailureKind::ContextExceeded,
        &["does not fit the context", "context_length_exceeded"],
    );

    let unknown = adapter(&server, "no-such-model:1b", deterministic);
    assert_failure(
        "unknown model",
        unknown.generate(&request()).await,
        FailureKind::ModelNotFound,
        &[
            "model 'no-such-model:1b' is not available",
            "model_not_found",
        ],
    );
    let health = unknown.health().await;
    assert_eq!(
        (health.reachable, health.model_present),
        (Some(true), Some(false))
    );

    assert!(
        started.elapsed().as_secs() < 40,
        "took {:?}",
        started.elapsed()
    );
}
