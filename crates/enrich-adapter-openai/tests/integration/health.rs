//! `health()` as `enrich doctor` shows it: `GET {url}/models`.

use enrich_backends::{BackendAdapter, HealthReport};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{adapter, closed_port, key};

/// A server whose `GET /v1/models` answers `status` with `body`, for requests carrying the test
/// key only.
async fn models_server(status: u16, body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header(
            "authorization",
            format!("Bearer {}", key()).as_str(),
        ))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

async fn health(server: &MockServer, model: &str) -> HealthReport {
    let spec = enrich_config::BackendSpec {
        model: model.to_owned(),
        ..crate::support::spec(&format!("{}/v1", server.uri()), json!({}))
    };
    enrich_adapter_openai::OpenAiAdapter::new(spec)
        .unwrap()
        .health()
        .await
}

fn models(entries: Value) -> Value {
    json!({"object": "list", "data": entries})
}

#[tokio::test]
async fn a_listed_model_is_present_with_its_context_length_when_the_server_says_it() {
    // vLLM lists `max_model_len`.
    let server = models_server(
        200,
        models(json!([
            {"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "owned_by": "vllm", "max_model_len": 32768},
        ])),
    )
    .await;
    let report = health(&server, "Qwen/Qwen2.5-7B-Instruct").await;
    let base = format!("{}/v1", server.uri());
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.credentials_accepted, None);
    assert_eq!(report.model_present, Some(true));
    assert_eq!(report.context_length, Some(32768));
    assert!(report.is_healthy());
    assert!(report.fixes.is_empty(), "{:?}", report.fixes);
    assert_eq!(
        report.messages,
        [
            format!("{base} answers and lists model 'Qwen/Qwen2.5-7B-Instruct'"),
            "model 'Qwen/Qwen2.5-7B-Instruct' has a context length of 32768 tokens".to_owned(),
        ]
    );

    // OpenAI lists no context length; Ollama's `/v1` lists tags in full.
    let server = models_server(
        200,
        models(json!([
            {"id": "gpt-4o", "object": "model", "owned_by": "system"},
            {"id": "qwen2.5:latest", "object": "model", "owned_by": "library"},
        ])),
    )
    .await;
    let report = health(&server, "qwen2.5").await;
    assert_eq!(report.model_present, Some(true));
    assert_eq!(report.context_length, None);
}

#[tokio::test]
async fn a_missing_model_names_what_is_listed() {
    let entries: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("model-{i}"), "object": "model"}))
        .collect();
    let server = models_server(200, models(Value::Array(entries))).await;
    let report = health(&server, "gpt-4o-mini").await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.model_present, Some(false));
    assert!(!report.is_healthy());
    assert!(
        report.messages[0].contains("model 'gpt-4o-mini' is not listed")
            && report.messages[0].contains("model-0, model-1")
            && report.messages[0].contains("model-9, …)")
            && !report.messages[0].contains("model-10"),
        "{:?}",
        report.messages
    );
    assert_eq!(report.fixes.len(), 1);
    assert!(
        report.fixes[0].contains("'gpt-4o-mini'"),
        "{:?}",
        report.fixes
    );
}

#[tokio::test]
async fn a_refused_key_is_reported_as_such() {
    // The server refuses the key it gets.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"},
        })))
        .mount(&server)
        .await;
    let report = health(&server, "gpt-4o-mini").await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.credentials_accepted, Some(false));
    assert_eq!(report.model_present, None);
    assert!(!report.is_healthy());
    assert!(
        report.messages[0].contains("HTTP 401: \"Incorrect API key provided\""),
        "{:?}",
        report.messages
    );
    assert!(
        report.fixes[0].contains("check the API key in CARGO_MANIFEST_DIR"),
        "{:?}",
        report.fixes
    );
}

#[tokio::test]
async fn a_url_where_no_api_answers_is_unusable_with_the_fix() {
    // A plain 404 page: no API at all at this URL.
    let server = MockServer::start().await;
    let report = adapter(&server.uri(), json!({})).health().await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.api_recognised, Some(false));
    assert!(!report.is_healthy());
    assert_eq!(report.model_present, None);
    assert!(
        report.messages[0].contains("this is not an OpenAI-compatible API")
            && report.messages[0].contains("HTTP 404"),
        "{:?}",
        report.messages
    );
    assert!(
        report.fixes[0].contains("/v1") && report.fixes[0].contains(r#"provider = "ollama""#),
        "{:?}",
        report.fixes
    );
}

#[tokio::test]
async fn an_api_without_a_model_list_says_to_check_the_url_but_stays_usable() {
    // An API's JSON error for a route it does not have: an API answers, it just lists nothing.
    let server = models_server(
        404,
        json!({"error": {"message": "Not Found", "type": "invalid_request_error"}}),
    )
    .await;
    let report = health(&server, "m").await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.api_recognised, None);
    assert!(report.is_healthy());
    assert!(
        report.messages[0].contains("GET /models did not list models (HTTP 404"),
        "{:?}",
        report.messages
    );
    assert!(report.fixes[0].contains("/v1"), "{:?}", report.fixes);
}

#[tokio::test]
async fn an_unreachable_server_is_reported() {
    let url = format!("http://127.0.0.1:{}/v1", closed_port());
    let report = adapter(&url, json!({})).health().await;
    assert_eq!(report.reachable, Some(false));
    assert_eq!(report.model_present, None);
    assert!(
        report.messages[0].starts_with(&format!("cannot reach {url}: GET /models failed")),
        "{:?}",
        report.messages
    );
    assert!(report.fixes[0].contains("`url`"), "{:?}", report.fixes);
}

/// A listing that gives the model's digest is where the digest comes from; OpenAI's own
/// listing (no digest), a model not listed, a refusal and no server all give "unknown".
#[tokio::test]
async fn the_model_digest_comes_from_the_listing_when_the_server_gives_one() {
    let digest = |url: String, model: &str| {
        let spec = enrich_config::BackendSpec {
            model: model.to_owned(),
            ..crate::support::spec(&url, json!({}))
        };
        async move {
            enrich_adapter_openai::OpenAiAdapter::new(spec)
                .unwrap()
                .model_digest()
                .await
        }
    };
    let server = models_server(
        200,
        models(json!([
            {"id": "local-7b", "object": "model", "digest": "sha256:77"},
            {"id": "gpt-4o-mini", "object": "model", "owned_by": "openai"},
        ])),
    )
    .await;
    let base = format!("{}/v1", server.uri());
    assert_eq!(
        digest(base.clone(), "local-7b").await.as_deref(),
        Some("sha256:77")
    );
    assert_eq!(digest(base.clone(), "gpt-4o-mini").await, None, "no digest");
    assert_eq!(digest(base, "other").await, None, "not listed");
    let refused = models_server(401, json!({"error": {"message": "bad key"}})).await;
    let base = format!("{}/v1", refused.uri());
    assert_eq!(digest(base, "local-7b").await, None, "refused");
    let down = format!("http://127.0.0.1:{}/v1", closed_port());
    assert_eq!(digest(down, "local-7b").await, None, "no server");
}
