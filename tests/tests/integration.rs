//! Cross-crate integration tests of enrich.
//!
//! - Here: a configuration file loaded by enrich-config, routed by enrich-router, its backends
//!   built through the enrich-backends registry and run by the cascade. Backends are mockall
//!   mocks (the `mock` feature): these tests are about the seams between the layers, not about
//!   any provider.
//! - `cli`: the `enrich` binary end to end, against the testkit's fake Ollama server and real
//!   SQLite files.

mod cli;

use std::path::Path;
use std::sync::Arc;

use enrich_backends::{
    AdapterRegistry, BackendAdapter, BackendError, Cascade, CascadePolicy, Deadline, FailureKind,
    GenerateRequest, Generation, MockBackendAdapter, SpanIdentity, UsageMetrics, ValidationContext,
    enrichment_v1_schema,
};
use enrich_config::{BackendSpec, load};
use enrich_router::{Router, SliceView};
use tokio_util::sync::CancellationToken;

/// An LLMC `llmc.toml` as LLMC users have it: other tables next to `[enrichment]`, two chains,
/// a route for docs.
const LLMC_TOML: &str = r#"
[embeddings]
default_profile = "docs"

[enrichment]
default_chain = "local"
enable_routing = true
batch_size = 5

[enrichment.routes]
docs = "writer"

[[enrichment.chain]]
name = "dead-gpu"
chain = "local"
provider = "scripted"
model = "qwen2.5:7b-instruct"
url = "http://10.0.0.9:11434"

[[enrichment.chain]]
name = "laptop"
chain = "local"
provider = "scripted"
model = "qwen2.5:3b-instruct"

[[enrichment.chain]]
name = "writer-model"
chain = "writer"
provider = "scripted"
model = "llama3.1:8b"
"#;

fn valid_answer(span: &SpanIdentity) -> String {
    serde_json::json!({
        "summary_120w": format!("Parses the config at {}.", span.path),
        "inputs": ["path"],
        "outputs": ["Config"],
        "side_effects": [],
        "pitfalls": ["panics on a missing file"],
        "usage_snippet": "let cfg = parse(path)?;",
        "evidence": [{"field": "summary_120w", "lines": [span.line_start, span.line_end]}],
    })
    .to_string()
}

/// A registry whose "scripted" provider refuses connections for `dead-gpu` and answers
/// correctly for every other backend.
fn scripted_registry() -> AdapterRegistry {
    let mut registry = AdapterRegistry::new();
    registry.register(
        "scripted",
        |spec: &BackendSpec| -> Result<Arc<dyn BackendAdapter>, BackendError> {
            let mut mock = MockBackendAdapter::new();
            mock.expect_spec().return_const(spec.clone());
            mock.expect_deadline().return_const(Deadline::of(spec));
            let host = spec.url.clone().unwrap_or_else(|| "scripted://".into());
            mock.expect_describe_host().return_const(host.clone());
            let dead = spec.name == "dead-gpu";
            let model = spec.model.clone();
            mock.expect_generate().returning(move |request| {
                if dead {
                    return Err(BackendError::new(
                        FailureKind::Connect,
                        format!("connection refused by {host}"),
                    ));
                }
                assert!(
                    request.schema.is_some(),
                    "the schema is sent to the backend"
                );
                Ok(Generation {
                    text: valid_answer(&request.span),
                    metrics: UsageMetrics::new(model.clone(), host.clone()),
                })
            });
            Ok(Arc::new(mock))
        },
    );
    registry
}

fn write_repo(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("llmc.toml"), toml).expect("write llmc.toml");
    dir
}

fn slice<'a>(span: &'a SpanIdentity, slice_type: &'a str) -> SliceView<'a> {
    SliceView {
        span: Some(span),
        slice_type: Some(slice_type),
        ..SliceView::default()
    }
}

async fn enrich_one(
    repo: &Path,
    path: &str,
    slice_type: &str,
) -> (
    Vec<String>,
    Result<enrich_backends::CascadeSuccess, enrich_backends::CascadeFailure>,
) {
    let loaded = load(repo, None).expect("the LLMC config loads");
    let router = Router::new(&loaded.config);
    let span = SpanIdentity::new("sha256:00", path, 10, 24);
    let decision = router
        .choose_chain(&slice(&span, slice_type), None)
        .expect("a route");
    let adapters = scripted_registry()
        .build_all(decision.backends.iter())
        .expect("every provider is registered");
    let request = GenerateRequest::new(format!("enrich {path}"), span.clone())
        .with_schema(Arc::clone(enrichment_v1_schema()));
    let validation = ValidationContext::for_span(&span, loaded.config.enforce_latin1_enrichment);
    let cascade = Cascade::new(CascadePolicy::default());
    let outcome = cascade
        .run(
            &adapters,
            0,
            &request,
            &validation,
            &CancellationToken::new(),
        )
        .await;
    let names = adapters.iter().map(|a| a.spec().name.clone()).collect();
    (names, outcome)
}

#[tokio::test(start_paused = true)]
async fn llmc_config_routes_code_through_its_chain_and_falls_through_a_dead_backend() {
    let repo = write_repo(LLMC_TOML);
    let (chain, outcome) = enrich_one(repo.path(), "src/config.rs", "rust").await;
    assert_eq!(chain, ["dead-gpu", "laptop"]);
    let success = outcome.expect("the second backend enriches the span");
    assert_eq!(success.backend_index, 1);
    assert_eq!(success.generation.metrics.model, "qwen2.5:3b-instruct");
    assert_eq!(
        success.enrichment.summary,
        "Parses the config at src/config.rs."
    );
    let attempts: Vec<(&str, Option<FailureKind>)> = success
        .attempts
        .iter()
        .map(|a| (a.backend.as_str(), a.failure_kind))
        .collect();
    assert_eq!(
        attempts,
        [("dead-gpu", Some(FailureKind::Connect)), ("laptop", None)]
    );
}

#[tokio::test(start_paused = true)]
async fn docs_spans_take_the_routed_chain() {
    let repo = write_repo(LLMC_TOML);
    let (chain, outcome) = enrich_one(repo.path(), "README.md", "markdown").await;
    assert_eq!(chain, ["writer-model"]);
    let success = outcome.expect("the writer chain enriches the span");
    assert_eq!(success.attempts.len(), 1);
    assert_eq!(success.generation.metrics.model, "llama3.1:8b");
}

#[tokio::test(start_paused = true)]
async fn a_chain_of_dead_backends_gives_up_with_every_attempt_recorded() {
    let toml = LLMC_TOML.replace("name = \"laptop\"", "name = \"laptop\"\nenabled = false");
    let repo = write_repo(&toml);
    let (chain, outcome) = enrich_one(repo.path(), "src/config.rs", "code").await;
    assert_eq!(chain, ["dead-gpu"], "disabled entries are never selected");
    let failure = outcome.expect_err("nothing can enrich the span");
    assert_eq!(failure.kind(), FailureKind::Connect);
    assert_eq!(failure.attempts.len(), 1);
    assert!(
        failure.last_error.message.contains("10.0.0.9:11434"),
        "the error names the URL: {}",
        failure.last_error.message
    );
}

#[test]
fn an_unregistered_provider_is_named_with_the_known_ones() {
    let repo = write_repo(&LLMC_TOML.replace(
        "provider = \"scripted\"\nmodel = \"llama3.1:8b\"",
        "provider = \"bedrock\"\nmodel = \"llama3.1:8b\"",
    ));
    let loaded = load(repo.path(), None).expect("config keeps unknown provider names");
    let writer: Vec<&BackendSpec> = loaded.config.chain("writer").collect();
    let err = scripted_registry()
        .build_all(writer)
        .err()
        .expect("bedrock is not registered");
    let message = err.to_string();
    assert!(message.contains("bedrock"), "{message}");
    assert!(message.contains("scripted"), "{message}");
}
