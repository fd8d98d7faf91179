//! Every failure is classified into the `FailureKind` the cascade acts on, with a message that
//! says what to do.

use std::time::{Duration, SystemTime};

use enrich_backends::{BackendAdapter, FailureKind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use enrich_adapter_ollama::OllamaAdapter;
use enrich_testkit::{FakeOllama, FakeOllamaConfig, TlsFront, test_ca_roots};

use crate::support::{MODEL, adapter, assert_failure, closed_port, done_with, request, spec};

/// One way Ollama answers `POST /api/generate`, and what the adapter must make of it.
struct Case {
    what: &'static str,
    options: Value,
    answer: ResponseTemplate,
    kind: FailureKind,
    needles: &'static [&'static str],
    /// The expected `retry_after`, as a range of whole seconds.
    retry_after: Option<(u64, u64)>,
}

async fn check(case: Case) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(case.answer)
        .mount(&server)
        .await;
    let result = adapter(&server.uri(), case.options)
        .generate(&request().with_max_output_tokens(42))
        .await;
    let err = assert_failure(case.what, result, case.kind, case.needles);
    assert!(
        err.message.contains(&server.uri()),
        "{}: the host is named",
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

fn error(status: u16, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": text}))
}

fn ndjson(lines: &[Value]) -> ResponseTemplate {
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    ResponseTemplate::new(200).set_body_raw(body, "application/x-ndjson")
}

fn piece(text: &str) -> Value {
    json!({"model": MODEL, "response": text, "done": false})
}

#[tokio::test]
async fn http_answers_are_classified() {
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let cases = [
        Case {
            what: "503 server busy with Retry-After seconds",
            options: json!({}),
            answer: error(
                503,
                "server busy, please try again.  maximum pending requests exceeded",
            )
            .insert_header("Retry-After", "7"),
            kind: FailureKind::Overloaded,
            needles: &[
                "HTTP 503",
                "server busy, please try again. maximum pending requests",
            ],
            retry_after: Some((7, 7)),
        },
        Case {
            what: "429 with an HTTP-date Retry-After",
            options: json!({}),
            answer: error(429, "slow down").insert_header("Retry-After", in_an_hour.as_str()),
            kind: FailureKind::Overloaded,
            needles: &["HTTP 429", "slow down"],
            retry_after: Some((3590, 3600)),
        },
        Case {
            what: "404 model not found",
            options: json!({}),
            answer: error(
                404,
                "model 'qwen2.5:7b-instruct' not found, try pulling it first",
            ),
            kind: FailureKind::ModelNotFound,
            needles: &["try pulling it first", "`ollama pull qwen2.5:7b-instruct`"],
            retry_after: None,
        },
        Case {
            what: "404 from something that is not Ollama",
            options: json!({}),
            answer: ResponseTemplate::new(404).set_body_string("404 page not found"),
            kind: FailureKind::ModelNotFound,
            needles: &["\"404 page not found\"", "`ollama pull", "`url`"],
            retry_after: None,
        },
        Case {
            what: "400 context exceeded",
            options: json!({}),
            answer: error(400, "the input length exceeds the context length"),
            kind: FailureKind::ContextExceeded,
            needles: &["exceeds the context length", "`num_ctx`"],
            retry_after: None,
        },
        Case {
            what: "other 400",
            options: json!({}),
            answer: error(400, "option \"num_ctx\" must be of type integer"),
            kind: FailureKind::InvalidRequest,
            needles: &["must be of type integer", "HTTP 400", "`options`"],
            retry_after: None,
        },
        Case {
            what: "401",
            options: json!({}),
            answer: error(401, "unauthorized"),
            kind: FailureKind::Auth,
            needles: &["HTTP 401", "unauthorized", "`api_key_env`"],
            retry_after: None,
        },
        Case {
            what: "403",
            options: json!({}),
            answer: error(403, "forbidden"),
            kind: FailureKind::Auth,
            needles: &["HTTP 403", "forbidden"],
            retry_after: None,
        },
        Case {
            what: "499 cancelled by the server",
            options: json!({}),
            answer: error(499, "client disconnected"),
            kind: FailureKind::ServerError,
            needles: &["HTTP 499", "client disconnected"],
            retry_after: None,
        },
        Case {
            what: "500",
            options: json!({}),
            answer: error(500, "llama runner process has terminated"),
            kind: FailureKind::ServerError,
            needles: &["HTTP 500", "llama runner process has terminated"],
            retry_after: None,
        },
        Case {
            what: "a long error is cut",
            options: json!({}),
            answer: error(500, &"x".repeat(5000)),
            kind: FailureKind::ServerError,
            needles: &["x…\""],
            retry_after: None,
        },
        Case {
            what: "a 200 that is not Ollama's JSON",
            options: json!({}),
            answer: ResponseTemplate::new(200).set_body_string("<html>proxy login</html>"),
            kind: FailureKind::ServerError,
            needles: &[
                "not Ollama's generate response",
                "<html>proxy login</html>",
                "`url`",
            ],
            retry_after: None,
        },
        Case {
            what: "a 200 JSON without done",
            options: json!({}),
            answer: ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})),
            kind: FailureKind::ServerError,
            needles: &["no `done: true`"],
            retry_after: None,
        },
        Case {
            what: "a 200 holding an error",
            options: json!({}),
            answer: ResponseTemplate::new(200).set_body_json(json!({"error": "runner crashed"})),
            kind: FailureKind::ServerError,
            needles: &["runner crashed"],
            retry_after: None,
        },
        Case {
            what: "done_reason length",
            options: json!({}),
            answer: ResponseTemplate::new(200).set_body_json(done_with(
                "{\"summary_120w\": \"cut",
                json!({"done_reason": "length", "eval_count": 42}),
            )),
            kind: FailureKind::Truncated,
            needles: &[
                "after 42 tokens",
                "output limit is 42",
                "`num_predict`",
                "`num_ctx`",
            ],
            retry_after: None,
        },
        Case {
            what: "done_reason length with num_predict configured",
            options: json!({"num_predict": 16}),
            answer: ResponseTemplate::new(200).set_body_json(done_with(
                "{",
                json!({"done_reason": "length", "eval_count": 16}),
            )),
            kind: FailureKind::Truncated,
            needles: &["after 16 tokens", "`num_predict` is 16"],
            retry_after: None,
        },
        Case {
            what: "an error line after a streamed 200",
            options: json!({"stream": true}),
            answer: ndjson(&[
                piece("{\"sum"),
                json!({"error": "an error was encountered while running the model"}),
            ]),
            kind: FailureKind::ServerError,
            needles: &["an error was encountered while running the model"],
            retry_after: None,
        },
        Case {
            what: "a context error line after a streamed 200",
            options: json!({"stream": true}),
            answer: ndjson(&[json!({"error": "the input length exceeds the context length"})]),
            kind: FailureKind::ContextExceeded,
            needles: &["exceeds the context length"],
            retry_after: None,
        },
        Case {
            what: "a stream that ends without done",
            options: json!({"stream": true}),
            answer: ndjson(&[piece("{\"sum"), piece("mary")]),
            kind: FailureKind::ServerError,
            needles: &["without its final `done: true` line after 9 characters"],
            retry_after: None,
        },
        Case {
            what: "a stream line that is not JSON",
            options: json!({"stream": true}),
            answer: ResponseTemplate::new(200).set_body_raw("event: data\n", "text/event-stream"),
            kind: FailureKind::ServerError,
            needles: &["not Ollama's generate response", "event: data"],
            retry_after: None,
        },
        Case {
            what: "a truncated stream",
            options: json!({"stream": true}),
            answer: ndjson(&[
                piece("{"),
                done_with("", json!({"done_reason": "length", "eval_count": 1})),
            ]),
            kind: FailureKind::Truncated,
            needles: &["after 1 tokens"],
            retry_after: None,
        },
    ];
    for case in cases {
        check(case).await;
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_naming_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(done_with("{}", json!({})))
                .set_delay(Duration::from_secs(1)),
        )
        .mount(&server)
        .await;
    let spec = enrich_config::BackendSpec {
        timeout_seconds: Some(0.3),
        ..crate::support::spec(&server.uri(), json!({}))
    };
    let adapter = enrich_adapter_ollama::OllamaAdapter::new(spec).unwrap();
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
    let adapter = adapter(&format!("http://me:s3cret@127.0.0.1:{port}"), json!({}));
    let err = assert_failure(
        "refused",
        adapter.generate(&request()).await,
        FailureKind::Connect,
        &[
            &format!("cannot connect to Ollama at http://127.0.0.1:{port}"),
            "`ollama serve`",
            "OLLAMA_HOST",
        ],
    );
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let source = std::error::Error::source(&err).expect("the HTTP error is kept");
    assert!(!format!("{source:?}").contains("s3cret"), "{source:?}");
}

#[tokio::test]
async fn an_unknown_host_is_a_connect_failure() {
    let adapter = adapter("http://no-such-host.invalid:11434", json!({}));
    assert_failure(
        "unknown host",
        adapter.generate(&request()).await,
        FailureKind::Connect,
        &["http://no-such-host.invalid:11434"],
    );
}

#[tokio::test]
async fn an_https_url_speaks_tls_and_a_failed_handshake_is_a_connect_failure() {
    // A plain-HTTP server: the adapter is built for https://, and its TLS handshake fails.
    let server = MockServer::start().await;
    let port = server.address().port();
    let adapter = adapter(&format!("https://me:s3cret@127.0.0.1:{port}"), json!({}));
    assert_eq!(adapter.describe_host(), format!("https://127.0.0.1:{port}"));
    let err = assert_failure(
        "TLS to a plain-HTTP server",
        adapter.generate(&request()).await,
        FailureKind::Connect,
        &[
            &format!("the TLS handshake with Ollama at https://127.0.0.1:{port} failed"),
            "a plain-HTTP server needs an http:// `url`",
        ],
    );
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let health = adapter.health().await;
    assert_eq!(health.reachable, Some(false), "{health:?}");
    assert!(
        health.fixes[0].contains("a plain-HTTP server needs an http:// `url`"),
        "{health:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_https_url_is_served_over_tls_and_an_untrusted_certificate_is_named() {
    let server = FakeOllama::start(FakeOllamaConfig::default())
        .await
        .unwrap();
    let front = TlsFront::start(server.addr()).await.unwrap();
    let url = format!("https://localhost:{}", front.addr().port());
    let trusting = OllamaAdapter::with_tls(
        spec(&url, json!({})),
        enrich_backends::tls::client_config(test_ca_roots()),
    )
    .unwrap();
    for _ in 0..2 {
        let generation = trusting.generate(&request()).await.unwrap();
        assert_eq!(generation.metrics.host, url);
    }
    assert_eq!(
        front.handshakes().len(),
        1,
        "one TLS handshake, the connection kept for the second request"
    );
    assert_eq!(trusting.health().await.reachable, Some(true));

    // The system's roots do not hold the test CA.
    assert_failure(
        "untrusted certificate",
        adapter(&url, json!({})).generate(&request()).await,
        FailureKind::Connect,
        &[
            &format!("{url} presented a TLS certificate that is not trusted"),
            "UnknownIssuer",
            "SSL_CERT_FILE",
        ],
    );
    assert_eq!(front.handshakes().len(), 1);
}
