//! Building adapters: the registry, defaults, bad backend entries and credentials.

use enrich_adapter_ollama::{OllamaAdapter, OllamaConfigError, PROVIDER, register};
use enrich_backends::{AdapterRegistry, BackendAdapter, BackendsError, Capabilities};
use enrich_config::BackendSpec;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{MODEL, adapter, done, request, spec};

#[test]
fn the_registry_builds_ollama_backends() {
    let mut registry = AdapterRegistry::new();
    register(&mut registry);
    assert_eq!(registry.providers(), [PROVIDER]);

    let entry = spec("http://gpu-box:8080/", json!({"num_ctx": 4096}));
    let adapter = registry.build(&entry).unwrap();
    assert_eq!(adapter.spec(), &entry);
    assert_eq!(adapter.describe_host(), "http://gpu-box:8080");
    assert_eq!(
        adapter.capabilities(),
        Capabilities {
            structured_output: true,
            streaming: true,
            usage_metrics: true,
            output_token_limit: true,
        }
    );

    let bad = BackendSpec {
        url: Some("ftp://ollama.example.com".into()),
        ..BackendSpec::new("cloud", "docs", "Ollama", MODEL)
    };
    let err = registry.build(&bad).err().unwrap();
    assert!(matches!(err, BackendsError::Build { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "cannot set up backend 'cloud' in chain 'docs' (provider 'Ollama'): invalid_request: \
             `url` 'ftp://ollama.example.com' uses the scheme 'ftp'"
        ),
        "{err}"
    );
}

#[test]
fn without_a_url_the_adapter_talks_to_the_local_default() {
    let adapter =
        OllamaAdapter::new(BackendSpec::new("local", "default", "ollama", MODEL)).unwrap();
    assert_eq!(adapter.describe_host(), "http://localhost:11434");
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
        let err = OllamaAdapter::new(entry).unwrap_err();
        assert_eq!(err.to_string(), expected);
    };
    check(
        "ftp://files.example.com",
        None,
        json!({}),
        None,
        "`url` 'ftp://files.example.com' uses the scheme 'ftp'; use an http:// or https:// URL",
    );
    check(
        "http://me:pw@bad host:11434",
        None,
        json!({}),
        None,
        "`url` 'http://[redacted]@bad host:11434' is not a valid URL (invalid international domain \
         name); write it like http://localhost:11434",
    );
    check(
        "socks5://me:pw@ollama.example.com",
        None,
        json!({}),
        None,
        "`url` 'socks5://[redacted]@ollama.example.com' uses the scheme 'socks5'; use an http:// \
         or https:// URL",
    );
    for seconds in [0.0, -1.0, f64::NAN] {
        let err = OllamaAdapter::new(BackendSpec {
            timeout_seconds: Some(seconds),
            ..spec("http://localhost:11434", json!({}))
        })
        .unwrap_err();
        assert!(
            matches!(err, OllamaConfigError::InvalidTimeout { .. }),
            "{seconds}"
        );
        assert!(
            err.to_string()
                .contains("must be a positive number of seconds"),
            "{err}"
        );
    }
    let ok = "http://localhost:11434";
    check(
        ok,
        None,
        json!({"stream": "yes"}),
        None,
        "option `stream` must be true or false, not \"yes\"; fix it in the backend's `options`",
    );
    check(
        ok,
        None,
        json!({"keep_alive": [5]}),
        None,
        "option `keep_alive` must be a duration such as \"10m\" or \"-1\", or a number of \
         seconds, not [5]; fix it in the backend's `options`",
    );
    check(
        ok,
        None,
        json!({"think": 1}),
        None,
        "option `think` must be true, false, or a level such as \"low\", not 1; fix it in the \
         backend's `options`",
    );
    check(
        ok,
        Some(30.0),
        json!({}),
        Some("ENRICH_TEST_UNSET_OLLAMA_KEY_4711"),
        "`api_key_env` names the variable ENRICH_TEST_UNSET_OLLAMA_KEY_4711, which is not set or \
         empty; export ENRICH_TEST_UNSET_OLLAMA_KEY_4711 with the API key, or remove \
         `api_key_env`",
    );
}

#[tokio::test]
async fn credentials_are_sent_and_never_shown() {
    // An API key from the variable `api_key_env` names (cargo sets CARGO_MANIFEST_DIR for tests).
    let key = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(done("{}")))
        .mount(&server)
        .await;
    let with_key = OllamaAdapter::new(BackendSpec {
        api_key_env: Some("CARGO_MANIFEST_DIR".into()),
        ..spec(&server.uri(), json!({}))
    })
    .unwrap();
    with_key.generate(&request()).await.unwrap();
    assert!(!format!("{with_key:?}").contains(&key), "{with_key:?}");

    // `user:password@` in the URL is basic auth, and is left out of the host.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/generate"))
        .and(header("authorization", "Basic bWU6czNjcmV0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done("{}")))
        .mount(&server)
        .await;
    let address = server.address();
    let with_user = adapter(&format!("http://me:s3cret@{address}"), json!({}));
    let generation = with_user.generate(&request()).await.unwrap();
    assert_eq!(generation.metrics.host, format!("http://{address}"));
    assert!(
        !format!("{with_user:?}").contains("s3cret"),
        "{with_user:?}"
    );
}
