//! Shared helpers: specs, requests, chat completions, and what the server received.

use std::net::TcpListener;

use enrich_adapter_openai::OpenAiAdapter;
use enrich_backends::{BackendError, FailureKind, GenerateRequest, SpanIdentity};
use enrich_config::BackendSpec;
use serde_json::{Value, json};
use wiremock::MockServer;

/// The model every test backend names.
pub(crate) const MODEL: &str = "gpt-4o-mini";

/// A backend entry for an OpenAI-compatible server at `url` with these `options` (a JSON
/// object). `api_key_env` names CARGO_MANIFEST_DIR, which cargo always sets, so the tests never
/// depend on the machine's OPENAI_API_KEY.
pub(crate) fn spec(url: &str, options: Value) -> BackendSpec {
    let Value::Object(options) = options else {
        panic!("options must be a JSON object, got {options}");
    };
    BackendSpec {
        url: Some(url.to_owned()),
        api_key_env: Some(KEY_VAR.to_owned()),
        options,
        ..BackendSpec::new("cloud", "default", "openai", MODEL)
    }
}

/// The variable the test backends read their API key from.
pub(crate) const KEY_VAR: &str = "CARGO_MANIFEST_DIR";

/// The API key the test backends send.
pub(crate) fn key() -> String {
    std::env::var(KEY_VAR).expect("cargo sets CARGO_MANIFEST_DIR")
}

/// An adapter for `spec(url, options)`.
pub(crate) fn adapter(url: &str, options: Value) -> OpenAiAdapter {
    OpenAiAdapter::new(spec(url, options)).expect("the test spec is valid")
}

/// A request for a small span, without schema or limits.
pub(crate) fn request() -> GenerateRequest {
    GenerateRequest::new(
        "Describe this code.",
        SpanIdentity::new("sha256:00", "src/lib.rs", 1, 3),
    )
}

/// A chat completion answering `text`, as OpenAI sends it.
pub(crate) fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 140, "completion_tokens": 60, "total_tokens": 200},
        "system_fingerprint": "fp_1",
    })
}

/// `completion(text)` with the fields of its first choice's message and the choice itself
/// changed by `message` and `choice` (JSON objects).
pub(crate) fn completion_with(text: &str, message: Value, choice: Value) -> Value {
    let mut body = completion(text);
    for (key, value) in message.as_object().expect("message patch is an object") {
        body["choices"][0]["message"][key] = value.clone();
    }
    for (key, value) in choice.as_object().expect("choice patch is an object") {
        body["choices"][0][key] = value.clone();
    }
    body
}

/// The JSON bodies of every request the server received, in order.
pub(crate) async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .map(|r| r.body_json().expect("the adapter sends JSON"))
        .collect()
}

/// A port on loopback where nothing listens.
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Asserts that `result` (of the case `what`) failed with `kind` and a message holding every
/// `needle`.
pub(crate) fn assert_failure<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, BackendError>,
    kind: FailureKind,
    needles: &[&str],
) -> BackendError {
    let err = result.unwrap_err();
    assert_eq!(err.kind, kind, "{what}: {err}");
    for needle in needles {
        assert!(
            err.message.contains(needle),
            "{what}: {needle:?} not in {:?}",
            err.message
        );
    }
    err
}
