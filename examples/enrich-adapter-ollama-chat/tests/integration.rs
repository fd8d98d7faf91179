//! The adapter against enrich's conformance suite: the fake Ollama server, every failure it can
//! inject, the health check.

use enrich_adapter_ollama_chat::{PROVIDER, register};
use enrich_backends::AdapterRegistry;
use enrich_testkit::{Api, run_conformance};

/// The one test an adapter crate needs. The suite builds the adapter through the same factory
/// the binary registers, for each of its checks.
#[tokio::test]
async fn the_adapter_passes_the_conformance_suite() {
    let mut registry = AdapterRegistry::new();
    register(&mut registry);
    assert_eq!(registry.providers(), [PROVIDER]);

    let report = run_conformance(Api::Ollama, |spec| {
        // The suite names the provider `ollama`; our entries say `ollama-chat`.
        let spec = enrich_config::BackendSpec {
            provider: PROVIDER.to_owned(),
            ..spec.clone()
        };
        registry.build(&spec).map_err(|err| {
            enrich_backends::BackendError::new(
                enrich_backends::FailureKind::InvalidRequest,
                err.to_string(),
            )
        })
    })
    .await;
    // Panics with the list of failed checks, each saying what was expected.
    report.assert_conformant();
}

/// The prompt tokens a recent Ollama read from its cache are not counted as evaluated, as the
/// built-in adapter counts them.
#[tokio::test]
async fn the_prompt_tokens_read_from_the_cache_are_not_counted_as_evaluated() {
    use enrich_backends::{GenerateRequest, SpanIdentity};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let mut registry = AdapterRegistry::new();
    register(&mut registry);
    for (cached, evaluated) in [(Some(850), 50), (None, 900)] {
        let server = MockServer::start().await;
        let mut answer = serde_json::json!({
            "model": "qwen2.5:7b-instruct",
            "message": {"role": "assistant", "content": "{}"},
            "done": true,
            "done_reason": "stop",
            "prompt_eval_count": 900,
            "eval_count": 2,
        });
        if let Some(cached) = cached {
            answer["prompt_eval_cached_count"] = cached.into();
        }
        Mock::given(method("POST"))
            .and(path("/api/chat"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&server)
            .await;
        let adapter = registry
            .build(&enrich_config::BackendSpec {
                url: Some(server.uri()),
                ..enrich_config::BackendSpec::new(
                    "chat",
                    "default",
                    PROVIDER,
                    "qwen2.5:7b-instruct",
                )
            })
            .unwrap();
        let request =
            GenerateRequest::new("Describe it.", SpanIdentity::new("sha256:a", "a.py", 1, 2));
        let generation = adapter.generate(&request).await.unwrap();
        assert_eq!(
            generation.metrics.prompt_eval_count,
            Some(evaluated),
            "{cached:?} cached"
        );
    }
}
