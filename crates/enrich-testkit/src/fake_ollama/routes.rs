//! The routes that are not generations: `/api/show`, `/api/tags`, `/api/ps`, `/v1/models`, the
//! recorded requests, and reading a request's JSON body with the refusals every route shares.

use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use super::server::{Shared, lock};
use super::stats::{Endpoint, Outcome, RecordedRequest};
use super::wire::{self, ApiError, Dialect, Reply};
use crate::answer::fingerprint;

/// `GET /_fake/requests`: every recorded request as `{"endpoint": "POST /api/generate",
/// "body": {…}}`, oldest first; 409 when the server does not record.
pub(super) fn recorded(shared: &Shared) -> Reply {
    if !shared.record {
        return wire::text(
            StatusCode::CONFLICT,
            "request bodies are not recorded: start the fake server with --record",
        );
    }
    let requests: Vec<Value> = lock(&shared.requests)
        .iter()
        .map(|r| json!({ "endpoint": r.endpoint.as_str(), "body": r.body }))
        .collect();
    wire::json(StatusCode::OK, &Value::Array(requests))
}

/// A refused request: the error to answer and the outcome to count.
pub(super) type Refusal = (ApiError, Outcome);

pub(super) fn invalid(message: impl Into<String>) -> Refusal {
    (
        ApiError::new(StatusCode::BAD_REQUEST, message),
        Outcome::InvalidRequest,
    )
}

pub(super) fn model_not_found(model: &str) -> Refusal {
    (
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{model}' not found, try pulling it first"),
        )
        .with_code("model_not_found"),
        Outcome::ModelNotFound,
    )
}

/// Reads and parses a JSON body, recording it.
pub(super) async fn read_body(
    shared: &Shared,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<Value, Refusal> {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map_err(|err| invalid(format!("could not read the request body: {err}")))?
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|err| invalid(format!("invalid JSON in the request body: {err}")))?;
    if shared.record {
        lock(&shared.requests).push(RecordedRequest {
            endpoint,
            body: body.clone(),
        });
    }
    Ok(body)
}

/// `POST /api/show`.
pub(super) async fn show(shared: &Shared, request: Request<Incoming>) -> (Reply, Outcome) {
    let result = async {
        let body = read_body(shared, Endpoint::Show, request).await?;
        let name = ["model", "name"]
            .iter()
            .find_map(|key| body.get(*key)?.as_str())
            .ok_or_else(|| invalid("model is required"))?;
        let model = shared
            .find_model(name)
            .ok_or_else(|| model_not_found(name))?;
        Ok::<_, Refusal>(json!({
            "license": "",
            "modelfile": format!("# Modelfile of fake model {}\nFROM fake\n", model.name),
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(),
            "model_info": {
                "general.architecture": "llama",
                "general.parameter_count": 135_000_000,
                "llama.context_length": shared.context_length,
            },
            "capabilities": ["completion"],
            "modified_at": "2025-01-01T00:00:00Z",
        }))
    }
    .await;
    match result {
        Ok(value) => (wire::json(StatusCode::OK, &value), Outcome::Ok),
        Err((err, outcome)) => (err.into_reply(Dialect::Ollama), outcome),
    }
}

fn details() -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "135M",
        "quantization_level": "Q4_1",
    })
}

/// `GET /api/tags`, or `GET /api/ps` (`loaded_only`: models used since the start).
pub(super) fn tags(shared: &Shared, loaded_only: bool) -> Reply {
    let models: Vec<Value> = shared
        .models
        .iter()
        .filter(|m| !loaded_only || m.loaded.load(Ordering::Relaxed))
        .map(|m| {
            let digest = format!("{:016x}", fingerprint(&m.key)).repeat(4);
            let mut entry = json!({
                "name": m.name,
                "model": m.name,
                "size": 98_362_432,
                "digest": digest,
                "details": details(),
            });
            if loaded_only {
                entry["expires_at"] = json!("2100-01-01T00:00:00Z");
                entry["size_vram"] = json!(0);
                entry["context_length"] = json!(shared.context_length);
            } else {
                entry["modified_at"] = json!("2025-01-01T00:00:00Z");
            }
            entry
        })
        .collect();
    wire::json(StatusCode::OK, &json!({ "models": models }))
}

/// `GET /v1/models`.
pub(super) fn openai_models(shared: &Shared) -> Reply {
    let data: Vec<Value> = shared
        .models
        .iter()
        .map(|m| json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "library" }))
        .collect();
    wire::json(StatusCode::OK, &json!({ "object": "list", "data": data }))
}
