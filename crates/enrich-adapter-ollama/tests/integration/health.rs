//! `health()` as `enrich doctor` shows it.

use enrich_backends::{BackendAdapter, HealthReport};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{adapter, closed_port};

/// An Ollama 0.12.0 that has pulled `pulled`, whose `qwen2` models have a 32768-token context.
async fn ollama(pulled: &[&str], model: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/version"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "0.12.0"})))
        .mount(&server)
        .await;
    let models: Vec<Value> = pulled
        .iter()
        .map(|name| json!({"name": name, "model": name, "size": 1, "details": {}}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"models": models})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/show"))
        .and(body_json(json!({"model": model})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model_info": {
                "general.architecture": "qwen2",
                "qwen2.context_length": 32768,
                "general.context_length": 1,
            },
        })))
        .mount(&server)
        .await;
    server
}

async fn health(url: &str, model: &str, options: Value) -> HealthReport {
    let spec = enrich_config::BackendSpec {
        model: model.to_owned(),
        ..crate::support::spec(url, options)
    };
    enrich_adapter_ollama::OllamaAdapter::new(spec)
        .unwrap()
        .health()
        .await
}

#[tokio::test]
async fn a_pulled_model_reports_version_and_context_length() {
    // `qwen2.5` is pulled as `qwen2.5:latest`.
    let server = ollama(&["llama3:8b", "qwen2.5:latest"], "qwen2.5").await;
    let report = health(&server.uri(), "qwen2.5", json!({})).await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.version.as_deref(), Some("0.12.0"));
    assert_eq!(report.model_present, Some(true));
    assert_eq!(report.context_length, Some(32768));
    assert!(report.is_healthy());
    assert!(report.fixes.is_empty(), "{:?}", report.fixes);
    assert_eq!(
        report.messages,
        [
            format!("Ollama 0.12.0 answers at {}", server.uri()),
            "model 'qwen2.5' is pulled".to_owned(),
            "model 'qwen2.5' has a context length of 32768 tokens".to_owned(),
        ]
    );
}

#[tokio::test]
async fn a_num_ctx_beyond_the_models_context_is_pointed_out() {
    let server = ollama(&["qwen2.5:latest"], "qwen2.5").await;
    let report = health(&server.uri(), "qwen2.5", json!({"num_ctx": 65536})).await;
    assert_eq!(report.context_length, Some(32768));
    assert_eq!(report.fixes, ["lower `num_ctx` to at most 32768"]);
}

#[tokio::test]
async fn a_missing_model_says_to_pull_it() {
    let server = ollama(&["llama3:8b"], "qwen2.5:7b-instruct").await;
    let report = health(&server.uri(), "qwen2.5:7b-instruct", json!({})).await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.model_present, Some(false));
    assert_eq!(report.context_length, None);
    assert!(!report.is_healthy());
    assert!(
        report.messages[1].contains("model 'qwen2.5:7b-instruct' is not pulled")
            && report.messages[1].contains("pulled models: llama3:8b"),
        "{:?}",
        report.messages
    );
    assert_eq!(report.fixes.len(), 1);
    assert!(
        report.fixes[0].contains("`ollama pull qwen2.5:7b-instruct`"),
        "{:?}",
        report.fixes
    );
}

#[tokio::test]
async fn an_unreachable_server_says_to_start_ollama() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let report = health(&url, "qwen2.5", json!({})).await;
    assert_eq!(report.reachable, Some(false));
    assert_eq!((report.version, report.model_present), (None, None));
    assert!(
        report.messages[0].starts_with(&format!(
            "cannot reach Ollama at {url}: GET /api/version failed"
        )),
        "{:?}",
        report.messages
    );
    assert!(
        report.fixes[0].contains("`ollama serve`"),
        "{:?}",
        report.fixes
    );
}

#[tokio::test]
async fn a_server_that_is_not_ollama_is_unusable_with_the_fix() {
    // Nothing answers Ollama's routes (404 on /api/version), or only /api/version does (404 on
    // /api/tags): either way another server listens at the URL.
    let nothing = MockServer::start().await;
    let version_only = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/version"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "0.12.0"})))
        .mount(&version_only)
        .await;
    for (server, route) in [(&nothing, "/api/version"), (&version_only, "/api/tags")] {
        let report = adapter(&server.uri(), json!({})).health().await;
        assert_eq!(report.reachable, Some(true), "{route}");
        assert_eq!(report.api_recognised, Some(false), "{route}");
        assert!(!report.is_healthy(), "{route}");
        let said = report.messages.join("\n");
        assert!(
            said.contains("this is not an Ollama server")
                && said.contains(&format!("GET {route} with HTTP 404")),
            "{said}"
        );
        let fix = report.fixes.last().expect("a fix");
        assert!(
            fix.contains("11434") && fix.contains(r#"provider = "openai""#),
            "{fix}"
        );
    }
}

/// The digest of the configured model is read from `/api/tags`; a model that is not listed,
/// an entry without a digest, and a server that does not answer all give "unknown".
#[tokio::test]
async fn the_model_digest_comes_from_the_listing_and_is_unknown_otherwise() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"models": [
            {"name": "llama3:8b", "model": "llama3:8b", "digest": "aaaa"},
            {"name": "qwen2.5:latest", "model": "qwen2.5:latest", "digest": " bbbb "},
            {"name": "phi3:latest", "model": "phi3:latest"},
        ]})))
        .mount(&server)
        .await;
    let digest = |url: String, model: &str| {
        let spec = enrich_config::BackendSpec {
            model: model.to_owned(),
            ..crate::support::spec(&url, json!({}))
        };
        async move {
            enrich_adapter_ollama::OllamaAdapter::new(spec)
                .unwrap()
                .model_digest()
                .await
        }
    };
    assert_eq!(
        digest(server.uri(), "qwen2.5").await.as_deref(),
        Some("bbbb")
    );
    assert_eq!(
        digest(server.uri(), "llama3:8b").await.as_deref(),
        Some("aaaa")
    );
    assert_eq!(digest(server.uri(), "phi3").await, None, "no digest listed");
    assert_eq!(digest(server.uri(), "mistral").await, None, "not pulled");
    let down = format!("http://127.0.0.1:{}", closed_port());
    assert_eq!(digest(down, "qwen2.5").await, None, "no server");
}
