//! Building adapters: the registry, defaults, bad backend entries and credentials.

use enrich_adapter_openai::{DEFAULT_URL, OpenAiAdapter, OpenAiConfigError, PROVIDER, register};
use enrich_backends::{AdapterRegistry, BackendAdapter, BackendsError, Capabilities, FailureKind};
use enrich_config::BackendSpec;
use enrich_testkit::{FakeOllama, FakeOllamaConfig};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{KEY_VAR, MODEL, adapter, assert_failure, completion, key, request, spec};

#[test]
fn the_registry_builds_openai_backends() {
    let mut registry = AdapterRegistry::new();
    register(&mut registry);
    assert_eq!(registry.providers(), [PROVIDER]);

    let entry = spec("http://vllm-box:8000/v1/", json!({"temperature": 0}));
    let adapter = registry.build(&entry).unwrap();
    assert_eq!(adapter.spec(), &entry);
    assert_eq!(adapter.describe_host(), "http://vllm-box:8000/v1");
    assert_eq!(
        adapter.capabilities(),
        Capabilities {
            structured_output: true,
            streaming: false,
            usage_metrics: true,
            output_token_limit: true,
        }
    );
    let json_object = registry
        .build(&spec(
            DEFAULT_URL,
            json!({"response_format": "json_object"}),
        ))
        .unwrap();
    assert!(
        !json_object.capabilities().structured_output,
        "json_object does not enforce the schema"
    );

    let bad = BackendSpec {
        url: Some("ftp://files.example.com".into()),
        ..BackendSpec::new("cloud", "docs", "OpenAI", MODEL)
    };
    let err = registry.build(&bad).err().unwrap();
    assert!(matches!(err, BackendsError::Build { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot set up backend 'cloud' in chain 'docs' (provider 'OpenAI'): invalid_request: \
         `url` 'ftp://files.example.com' uses the scheme 'ftp'; use an https:// or http:// URL"
    );
}

#[test]
fn without_a_url_the_adapter_talks_to_openai() {
    let adapter = OpenAiAdapter::new(BackendSpec {
        api_key_env: Some(KEY_VAR.to_owned()),
        ..BackendSpec::new("cloud", "default", "openai", MODEL)
    })
    .unwrap();
    assert_eq!(adapter.describe_host(), "https://api.openai.com/v1");
    assert_eq!(DEFAULT_URL, "https://api.openai.com/v1");
}

#[test]
fn bad_backend_entries_are_refused_with_the_key_to_fix() {
    let check = |url: &str,
                 timeout: Option<f64>,
                 options: Value,
                 api_key_env: Option<&str>,
                 expected: &str| {
        let entry = BackendSpec {
            timeout_seconds: timeout,
            api_key_env: api_key_env.map(str::to_owned),
            ..spec(url, options)
        };
        let err = OpenAiAdapter::new(entry).unwrap_err();
        assert_eq!(err.to_string(), expected);
    };
    let ok = "http://localhost:8000/v1";
    check(
        "localhost:8000/v1",
        None,
        json!({}),
        Some(KEY_VAR),
        "`url` 'localhost:8000/v1' is not a valid URL (it has no scheme); write it like \
         https://api.openai.com/v1 or http://localhost:8000/v1",
    );
    check(
        "https://me:pw@bad host/v1",
        None,
        json!({}),
        Some(KEY_VAR),
        "`url` 'https://[redacted]@bad host/v1' is not a valid URL (invalid international domain \
         name); write it like https://api.openai.com/v1 or http://localhost:8000/v1",
    );
    check(
        ok,
        None,
        json!({"response_format": "json"}),
        Some(KEY_VAR),
        "option `response_format` must be \"json_schema\", \"json_object\" or \"none\", not \
         \"json\"; fix it in the backend's `options`",
    );
    check(
        ok,
        None,
        json!({"strict": "yes"}),
        Some(KEY_VAR),
        "option `strict` must be true or false, not \"yes\"; fix it in the backend's `options`",
    );
    check(
        ok,
        None,
        json!({"stream": true}),
        Some(KEY_VAR),
        "option `stream` must be false (this adapter reads whole answers, never streams), not \
         true; fix it in the backend's `options`",
    );
    check(
        ok,
        None,
        json!({"messages": []}),
        Some(KEY_VAR),
        "option `messages` cannot be set: enrich sends `messages` itself; remove it from the \
         backend's `options`",
    );
    check(
        ok,
        Some(30.0),
        json!({}),
        Some("ENRICH_TEST_UNSET_OPENAI_KEY_4711"),
        "`api_key_env` names the variable ENRICH_TEST_UNSET_OPENAI_KEY_4711, which is not set or \
         empty; export ENRICH_TEST_UNSET_OPENAI_KEY_4711 with the API key, or remove \
         `api_key_env` for a server that needs no key",
    );
    for seconds in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = OpenAiAdapter::new(BackendSpec {
            timeout_seconds: Some(seconds),
            ..spec(ok, json!({}))
        })
        .unwrap_err();
        assert!(
            matches!(err, OpenAiConfigError::InvalidTimeout { .. }),
            "{seconds}"
        );
        assert!(
            err.to_string()
                .contains("must be a positive number of seconds"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_token_and_never_shown() {
    let key = key();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("{}")))
        .mount(&server)
        .await;
    let with_key = adapter(&format!("{}/v1", server.uri()), json!({}));
    with_key.generate(&request()).await.unwrap();
    let shown = format!("{with_key:?}");
    assert!(!shown.contains(&key), "{shown}");
    assert!(
        shown.contains("api_key_env: \"CARGO_MANIFEST_DIR\"") && shown.contains("[redacted]"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_server_that_requires_the_key_gets_it_and_refuses_another() {
    let server = FakeOllama::start(
        FakeOllamaConfig::default()
            .with_models([MODEL])
            .with_api_key(key()),
    )
    .await
    .unwrap();
    let base = format!("{}/v1", server.url());
    let generation = adapter(&base, json!({}))
        .generate(&request())
        .await
        .unwrap();
    assert_eq!(generation.metrics.model, MODEL);
    assert_eq!(
        adapter(&base, json!({})).health().await.model_present,
        Some(true)
    );

    // Another variable holds another key: refused, and the message names the variable.
    let other = OpenAiAdapter::new(BackendSpec {
        api_key_env: Some("CARGO_PKG_NAME".to_owned()),
        ..spec(&base, json!({}))
    })
    .unwrap();
    let err = assert_failure(
        "wrong key",
        other.generate(&request()).await,
        FailureKind::Auth,
        &[
            "refused the API key in CARGO_PKG_NAME",
            "HTTP 401 invalid_api_key",
        ],
    );
    assert!(!err.to_string().contains("enrich-adapter-openai"), "{err}");
    let health = other.health().await;
    assert_eq!(health.credentials_accepted, Some(false));
}

#[tokio::test]
async fn credentials_in_the_url_are_basic_auth_and_left_out_of_the_host() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Basic bWU6czNjcmV0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("{}")))
        .mount(&server)
        .await;
    let address = server.address();
    let with_user = OpenAiAdapter::new(BackendSpec {
        api_key_env: None,
        ..spec(&format!("http://me:s3cret@{address}/v1"), json!({}))
    })
    .unwrap();
    let generation = with_user.generate(&request()).await.unwrap();
    assert_eq!(generation.metrics.host, format!("http://{address}/v1"));
    assert!(
        !format!("{with_user:?}").contains("s3cret"),
        "{with_user:?}"
    );
}
