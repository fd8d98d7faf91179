//! Answers are read under the backend's `max_response_bytes`: a larger one fails the attempt as
//! `response_too_large` without being read whole, streamed or not.

use enrich_adapter_ollama::OllamaAdapter;
use enrich_backends::{BackendAdapter, FailureKind};
use enrich_config::BackendSpec;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{assert_failure, done, endless_server, request, spec};

/// A cap of 64 KiB.
const CAP: u64 = 64 * 1024;

fn capped(url: &str, options: Value) -> OllamaAdapter {
    let spec = BackendSpec {
        max_response_bytes: Some(CAP),
        timeout_seconds: Some(30.0),
        ..spec(url, options)
    };
    OllamaAdapter::new(spec).unwrap()
}

const JSON_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
const NDJSON_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
const ERROR_HEAD: &str = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                          Transfer-Encoding: chunked\r\n\r\n";

#[tokio::test]
async fn a_declared_length_over_the_cap_is_response_too_large() {
    let server = MockServer::start().await;
    let big = done(&" ".repeat(2 * CAP as usize)).to_string();
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
        .mount(&server)
        .await;
    let err = assert_failure(
        "Content-Length over the cap",
        capped(&server.uri(), json!({})).generate(&request()).await,
        FailureKind::ResponseTooLarge,
        &["max_response_bytes", "65536 bytes", "declares"],
    );
    assert!(err.message.contains(&server.uri()), "{}", err.message);
    // Under the cap the same adapter reads the answer.
    let small = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done("{}")))
        .mount(&small)
        .await;
    let generation = capped(&small.uri(), json!({}))
        .generate(&request())
        .await
        .unwrap();
    assert_eq!(generation.text, "{}");
}

#[tokio::test]
async fn an_endless_chunked_answer_stops_at_the_cap() {
    let url = endless_server(JSON_HEAD, "{\"model\":\"m\",\"response\":\"", b' ');
    assert_failure(
        "endless chunked JSON",
        capped(&url, json!({})).generate(&request()).await,
        FailureKind::ResponseTooLarge,
        &["max_response_bytes", "more than 65536 bytes arrived"],
    );
}

#[tokio::test]
async fn an_endless_stream_line_stops_at_the_cap() {
    let url = endless_server(NDJSON_HEAD, "{\"model\":\"m\",\"response\":\"", b' ');
    assert_failure(
        "endless NDJSON line",
        capped(&url, json!({"stream": true}))
            .generate(&request())
            .await,
        FailureKind::ResponseTooLarge,
        &["max_response_bytes", "more than 65536 bytes arrived"],
    );
    // Endless lines, each complete: the stream's total counts, not one line's.
    let url = endless_server(NDJSON_HEAD, "\n", b'\n');
    assert_failure(
        "endless NDJSON stream of blank lines",
        capped(&url, json!({"stream": true}))
            .generate(&request())
            .await,
        FailureKind::ResponseTooLarge,
        &["more than 65536 bytes arrived"],
    );
}

#[tokio::test]
async fn an_endless_error_body_is_quoted_from_its_start_and_classified_by_status() {
    let url = endless_server(ERROR_HEAD, "{\"error\":\"boom", b'!');
    assert_failure(
        "500 with an endless body",
        capped(&url, json!({})).generate(&request()).await,
        FailureKind::ServerError,
        &["HTTP 500", "boom"],
    );
}
