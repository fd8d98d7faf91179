//! Every failure is classified into the `FailureKind` the cascade acts on, with a message that
//! says what to do.

use std::time::{Duration, SystemTime};

use enrich_backends::{BackendAdapter, FailureKind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    KEY_VAR, adapter, assert_failure, closed_port, completion_with, key, request,
};

/// One way a server answers `POST /chat/completions`, and what the adapter must make of it.
struct Case {
    what: &'static str,
    options: Value,
    answer: ResponseTemplate,
    kind: FailureKind,
    needles: &'static [&'static str],
    /// The expected `retry_after`, as a range of whole seconds.
    retry_after: Option<(u64, u64)>,
}

impl Case {
    fn new(what: &'static str, answer: ResponseTemplate, kind: FailureKind) -> Self {
        Self {
            what,
            options: json!({}),
            answer,
            kind,
            needles: &[],
            retry_after: None,
        }
    }

    fn needles(mut self, needles: &'static [&'static str]) -> Self {
        self.needles = needles;
        self
    }

    fn options(mut self, options: Value) -> Self {
        self.options = options;
        self
    }

    fn retry_after(mut self, low: u64, high: u64) -> Self {
        self.retry_after = Some((low, high));
        self
    }
}

async fn check(case: Case) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(case.answer)
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let result = adapter(&base, case.options)
        .generate(&request().with_max_output_tokens(42))
        .await;
    let err = assert_failure(case.what, result, case.kind, case.needles);
    assert!(
        err.message.contains(&base),
        "{}: the host is named",
        case.what
    );
    assert!(
        !err.to_string().contains(&key()),
        "{}: the key is never shown",
        case.what
    );
    let retry_after = err.retry_after.map(|wait| wait.as_secs_f64());
    match case.retry_after {
        Some((low, high)) => {
            let wait = retry_after.unwrap_or_else(|| panic!("{}: no retry_after", case.what));
            assert!(
                (low as f64..=high as f64).contains(&wait),
                "{}: {wait}",
                case.what
            );
        }
        None => assert_eq!(retry_after, None, "{}", case.what),
    }
}

/// OpenAI's error body.
fn error(status: u16, message: &str, kind: &str, code: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"message": message, "type": kind, "param": null, "code": code},
    }))
}

#[tokio::test]
async fn http_answers_are_classified() {
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let cases = [
        Case::new(
            "401 with a key",
            error(401, "Incorrect API key provided: sk-abc***xyz.", "invalid_request_error", Some("invalid_api_key")),
            FailureKind::Auth,
        )
        .needles(&["refused the API key in CARGO_MANIFEST_DIR", "HTTP 401 invalid_api_key", "Incorrect API key provided"]),
        Case::new(
            "403",
            error(403, "Project does not have access to model", "invalid_request_error", None),
            FailureKind::Auth,
        )
        .needles(&["HTTP 403", "does not have access"]),
        Case::new(
            "404 model not found",
            error(404, "The model `gpt-4o-mini` does not exist or you do not have access to it.", "invalid_request_error", Some("model_not_found")),
            FailureKind::ModelNotFound,
        )
        .needles(&["model 'gpt-4o-mini' is not available", "does not exist", "`model`", "/models"]),
        Case::new(
            "404 from a wrong path",
            ResponseTemplate::new(404).set_body_string("404 page not found"),
            FailureKind::ModelNotFound,
        )
        .needles(&["\"404 page not found\"", "`url`", "/v1"]),
        Case::new(
            "429 with Retry-After seconds",
            error(429, "Rate limit reached for gpt-4o-mini", "requests", Some("rate_limit_exceeded"))
                .insert_header("Retry-After", "7"),
            FailureKind::Overloaded,
        )
        .needles(&["HTTP 429 rate_limit_exceeded", "Rate limit reached", "`requests_per_minute`"])
        .retry_after(7, 7),
        Case::new(
            "429 with an HTTP-date Retry-After",
            error(429, "slow down", "requests", None).insert_header("Retry-After", in_an_hour.as_str()),
            FailureKind::Overloaded,
        )
        .needles(&["slow down"])
        .retry_after(3590, 3600),
        Case::new(
            "429 whose token limit is exhausted",
            error(429, "Rate limit reached for tokens per min (TPM)", "tokens", Some("rate_limit_exceeded"))
                .insert_header("x-ratelimit-remaining-requests", "499")
                .insert_header("x-ratelimit-reset-requests", "120ms")
                .insert_header("x-ratelimit-remaining-tokens", "0")
                .insert_header("x-ratelimit-reset-tokens", "6m0s")
                .insert_header("Retry-After", "2"),
            FailureKind::Overloaded,
        )
        .needles(&["tokens per min"])
        .retry_after(360, 360),
        Case::new(
            "429 insufficient_quota is not retried",
            error(429, "You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", Some("insufficient_quota"))
                .insert_header("Retry-After", "1"),
            FailureKind::Auth,
        )
        .needles(&["has no quota left", "CARGO_MANIFEST_DIR", "add credit", "HTTP 429 insufficient_quota"])
        .retry_after(1, 1),
        Case::new(
            "503",
            error(503, "The engine is currently overloaded, please try again later", "server_error", None),
            FailureKind::Overloaded,
        )
        .needles(&["HTTP 503", "overloaded"]),
        Case::new(
            "400 context length exceeded",
            error(400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.", "invalid_request_error", Some("context_length_exceeded")),
            FailureKind::ContextExceeded,
        )
        .needles(&["does not fit the context", "maximum context length is 128000"]),
        Case::new(
            "400 context from llama.cpp's server",
            error(400, "the request exceeds the available context size, try increasing it", "exceed_context_size_error", None),
            FailureKind::ContextExceeded,
        )
        .needles(&["available context size"]),
        Case::new(
            "400 schema refused",
            error(400, "Invalid schema for response_format 'enrichment_v1': 'maxLength' is not permitted.", "invalid_request_error", Some("invalid_json_schema")),
            FailureKind::InvalidRequest,
        )
        .needles(&["`options`", "response_format = \"json_object\"", "'maxLength' is not permitted"]),
        Case::new(
            "other 400",
            error(400, "Unrecognized request argument supplied: num_ctx", "invalid_request_error", None),
            FailureKind::InvalidRequest,
        )
        .needles(&["HTTP 400", "num_ctx", "`options`"]),
        Case::new(
            "408",
            error(408, "request timed out", "server_error", None),
            FailureKind::Timeout,
        )
        .needles(&["gave up waiting", "HTTP 408"]),
        Case::new(
            "500",
            error(500, "The server had an error while processing your request.", "server_error", None),
            FailureKind::ServerError,
        )
        .needles(&["HTTP 500", "had an error"]),
        Case::new(
            "a long error is cut",
            error(500, &"x".repeat(5000), "server_error", None),
            FailureKind::ServerError,
        )
        .needles(&["x…\""]),
        Case::new(
            "a 200 that is not JSON",
            ResponseTemplate::new(200).set_body_string("<html>proxy login</html>"),
            FailureKind::ServerError,
        )
        .needles(&["not an OpenAI chat completion", "<html>proxy login</html>", "`url`"]),
        Case::new(
            "a 200 without choices",
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
            FailureKind::ServerError,
        )
        .needles(&["it has no `choices`"]),
        Case::new(
            "a 200 carrying an error object",
            ResponseTemplate::new(200).set_body_json(json!({
                "error": {"message": "Provider returned error", "code": 502},
            })),
            FailureKind::ServerError,
        )
        .needles(&["failed while answering", "Provider returned error"]),
        Case::new(
            "a 200 carrying a context error",
            ResponseTemplate::new(200).set_body_json(json!({
                "error": {"message": "too long", "code": "context_length_exceeded"},
            })),
            FailureKind::ContextExceeded,
        )
        .needles(&["too long"]),
        Case::new(
            "finish_reason length",
            ResponseTemplate::new(200).set_body_json(completion_with(
                "{\"summary",
                json!({}),
                json!({"finish_reason": "length"}),
            )),
            FailureKind::Truncated,
        )
        .needles(&["after 60 tokens", "the request's output limit is 42", "raise `max_tokens`"]),
        Case::new(
            "finish_reason length under a configured limit",
            ResponseTemplate::new(200).set_body_json(completion_with(
                "{",
                json!({}),
                json!({"finish_reason": "length"}),
            )),
            FailureKind::Truncated,
        )
        .options(json!({"max_completion_tokens": 16}))
        .needles(&["`max_completion_tokens` is 16"]),
        Case::new(
            "a refusal",
            ResponseTemplate::new(200).set_body_json(completion_with(
                "",
                json!({"content": null, "refusal": "I can't help with that."}),
                json!({}),
            )),
            FailureKind::MalformedOutput,
        )
        .needles(&["refused to answer", "I can't help with that."]),
    ];
    for case in cases {
        check(case).await;
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_naming_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion_with("{}", json!({}), json!({})))
                .set_delay(Duration::from_secs(1)),
        )
        .mount(&server)
        .await;
    let spec = enrich_config::BackendSpec {
        timeout_seconds: Some(0.3),
        ..crate::support::spec(&server.uri(), json!({}))
    };
    let adapter = enrich_adapter_openai::OpenAiAdapter::new(spec).unwrap();
    let started = std::time::Instant::now();
    let result = adapter.generate(&request()).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_failure(
        "slow answer",
        result,
        FailureKind::Timeout,
        &["within the backend's timeout of 0.3 s", "`timeout_seconds`"],
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_url_without_credentials() {
    let port = closed_port();
    let adapter = adapter(&format!("http://me:s3cret@127.0.0.1:{port}/v1"), json!({}));
    let err = assert_failure(
        "refused",
        adapter.generate(&request()).await,
        FailureKind::Connect,
        &[
            &format!(
                "cannot connect to the OpenAI-compatible server at http://127.0.0.1:{port}/v1"
            ),
            "`url`",
        ],
    );
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let source = std::error::Error::source(&err).expect("the HTTP error is kept");
    assert!(!format!("{source:?}").contains("s3cret"), "{source:?}");
}

#[tokio::test]
async fn an_unknown_host_is_a_connect_failure() {
    let adapter = adapter("https://no-such-host.invalid/v1", json!({}));
    assert_failure(
        "unknown host",
        adapter.generate(&request()).await,
        FailureKind::Connect,
        &["https://no-such-host.invalid/v1"],
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_connect_failure() {
    // The TLS handshake fails: the server answers in plain HTTP.
    let server = MockServer::start().await;
    let base = server.uri().replace("http://", "https://");
    let adapter = adapter(&base, json!({}));
    let err = assert_failure(
        "TLS to plain HTTP",
        adapter.generate(&request()).await,
        FailureKind::Connect,
        &[&base],
    );
    assert!(
        !err.to_string().contains(&key()),
        "{err} must not show the key in {KEY_VAR}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_names_where_it_goes() {
    let check = |status: u16, location: &'static str| async move {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).insert_header("Location", location))
            .mount(&server)
            .await;
        let base = format!("{}/v1", server.uri());
        let err = assert_failure(
            "redirect",
            adapter(&base, json!({})).generate(&request()).await,
            FailureKind::InvalidRequest,
            &[
                &format!("{base} redirects the request (HTTP {status}) to {location}"),
                "set the backend's `url`",
            ],
        );
        assert!(!err.to_string().contains(&key()), "{err}");
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1, "HTTP {status} is not followed");
    };
    check(301, "https://api.example.com/v1/chat/completions").await;
    check(308, "/v2/chat/completions").await;
}
