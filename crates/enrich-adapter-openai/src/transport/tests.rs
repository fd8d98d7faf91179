//! HTTPS through rustls with ring, proxies and root certificates, against real servers on
//! loopback: the testkit's [`TlsFront`] (certified by a test CA no system trusts) that hands
//! each connection's plaintext to wiremock, and an HTTP CONNECT proxy that tunnels to it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use enrich_backends::{BackendAdapter, FailureKind, GenerateRequest, SpanIdentity};
use enrich_config::BackendSpec;
use enrich_testkit::{TlsFront, test_ca_roots};
use reqwest::{ClientBuilder, Proxy};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::Transport;
use crate::adapter::OpenAiAdapter;
use crate::settings::Settings;

/// The key every test backend sends.
const KEY: &str = "sk-transport-test";

/// Reads a request's head, up to its blank line; `None` when the connection ends first.
async fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        client.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    Some(head)
}

/// An HTTP CONNECT proxy on loopback: it records each request head, answers 200 and tunnels to
/// `target`, whatever the request names.
async fn connect_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Some(head) = read_head(&mut client).await else {
                    return;
                };
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let mut server = TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, heads)
}

/// wiremock answering every chat completion with `{}`, for requests carrying [`KEY`].
async fn backend() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "qwen2.5",
            "choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
        })))
        .mount(&server)
        .await;
    server
}

fn spec(url: &str) -> BackendSpec {
    BackendSpec {
        url: Some(url.to_owned()),
        ..BackendSpec::new("tls", "default", "openai", "qwen2.5")
    }
}

fn settings(url: &str) -> Settings {
    Settings::from_spec_with(&spec(url), |var| {
        (var == "OPENAI_API_KEY").then(|| KEY.to_owned())
    })
    .unwrap()
}

/// An adapter for `url` that trusts the test CA alone, its client from `builder` (proxies).
fn adapter(url: &str, builder: ClientBuilder) -> OpenAiAdapter {
    let settings = settings(url);
    let tls = enrich_backends::tls::client_config(test_ca_roots());
    let transport = Transport::with(&settings, tls, builder).unwrap();
    OpenAiAdapter::with_transport(spec(url), settings, transport)
}

/// A client that ignores the environment's proxies.
fn no_proxy() -> ClientBuilder {
    reqwest::Client::builder().no_proxy()
}

/// A client that sends what `proxy` matches through it.
fn with_proxy(proxy: Proxy) -> ClientBuilder {
    reqwest::Client::builder().proxy(proxy)
}

fn request() -> GenerateRequest {
    GenerateRequest::new("Describe.", SpanIdentity::new("sha256:0", "a.rs", 1, 1))
}

#[tokio::test]
async fn https_negotiates_tls_with_ring_and_keeps_the_connection() {
    let server = backend().await;
    let front = TlsFront::start(*server.address()).await.unwrap();
    let url = format!("https://localhost:{}/v1", front.addr().port());
    let adapter = adapter(&url, no_proxy());
    for _ in 0..3 {
        let generation = adapter.generate(&request()).await.unwrap();
        assert_eq!(generation.text, "{}");
        assert_eq!(generation.metrics.host, url);
    }
    assert_eq!(
        front.handshakes(),
        [(
            Some(rustls::ProtocolVersion::TLSv1_3),
            Some(b"http/1.1".to_vec())
        )],
        "one TLS 1.3 handshake, HTTP/1.1 by ALPN, for three requests"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_naming_the_certificate_and_the_url() {
    let server = backend().await;
    let front = TlsFront::start(*server.address()).await.unwrap();
    let url = format!("https://localhost:{}/v1", front.addr().port());
    // The system's roots, which do not hold the test CA.
    let adapter = OpenAiAdapter::new(spec(&url)).unwrap();
    let err = adapter.generate(&request()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Connect, "{err}");
    for needle in [
        &format!("{url} presented a TLS certificate that is not trusted"),
        "UnknownIssuer",
        "SSL_CERT_FILE",
    ] {
        assert!(err.message.contains(needle), "{needle:?} not in {err}");
    }
    let health = adapter.health().await;
    assert_eq!(health.reachable, Some(false));
    assert!(
        health.messages[0].contains("UnknownIssuer") && health.fixes[0].contains("SSL_CERT_FILE"),
        "{health:?}"
    );
    assert!(front.handshakes().is_empty());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel_with_the_proxys_credentials() {
    let server = backend().await;
    let front = TlsFront::start(*server.address()).await.unwrap();
    let (proxy, heads) = connect_proxy(front.addr()).await;
    let url = format!("https://localhost:{}/v1", front.addr().port());
    let proxies = with_proxy(Proxy::https(format!("http://me:pw@{proxy}")).unwrap());
    let adapter = adapter(&url, proxies);
    adapter.generate(&request()).await.unwrap();
    adapter.generate(&request()).await.unwrap();
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "one tunnel for both requests: {heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with(&format!(
            "connect localhost:{} http/1.1\r\n",
            front.addr().port()
        )),
        "{head}"
    );
    // base64("me:pw")
    assert!(
        head.contains("proxy-authorization: basic bwu6chc=\r\n"),
        "{head}"
    );
    assert_eq!(front.handshakes().len(), 1);
}

#[tokio::test]
async fn http_goes_to_a_forwarding_proxy_with_absolute_urls_unless_no_proxy_names_the_host() {
    // The proxy is a wiremock that answers whatever it is asked.
    let proxy = backend().await;
    let proxies = || {
        let proxy = Proxy::http(format!("http://me:pw@{}", proxy.address())).unwrap();
        with_proxy(proxy.no_proxy(reqwest::NoProxy::from_string("127.0.0.1")))
    };
    let proxied = adapter("http://backend.invalid:8000/v1", proxies());
    proxied.generate(&request()).await.unwrap();
    let received = proxy.received_requests().await.unwrap();
    assert_eq!(
        received[0].url.as_str(),
        "http://backend.invalid:8000/v1/chat/completions"
    );
    assert_eq!(received[0].headers["proxy-authorization"], "Basic bWU6cHc=");

    // NO_PROXY: straight to the server.
    let direct = backend().await;
    let url = format!("{}/v1", direct.uri());
    adapter(&url, proxies()).generate(&request()).await.unwrap();
    assert_eq!(direct.received_requests().await.unwrap().len(), 1);
    assert_eq!(proxy.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_connect_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxies = with_proxy(Proxy::all(format!("http://{closed}")).unwrap());
    let err = adapter("https://api.example.invalid/v1", proxies)
        .generate(&request())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Connect, "{err}");
    assert!(
        err.message.contains(
            "cannot connect to the OpenAI-compatible server at https://api.example.invalid/v1"
        ) && err.message.contains("HTTPS_PROXY"),
        "{err}"
    );
}

/// The failure of a request to `url` (no proxy, the test CA trusted), checked to be `connect`.
async fn connect_failure(url: &str) -> enrich_backends::BackendError {
    let err = adapter(url, no_proxy())
        .generate(&request())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Connect, "{err}");
    err
}

#[tokio::test]
async fn a_tls_handshake_with_a_plain_http_server_is_a_connect_failure() {
    let server = backend().await;
    let url = format!("https://127.0.0.1:{}/v1", server.address().port());
    let err = connect_failure(&url).await;
    assert!(
        err.message
            .contains(&format!("the TLS handshake with {url} failed")),
        "{err}"
    );
    assert!(err.message.contains("a plain-HTTP server"), "{err}");
}

#[tokio::test]
async fn an_answer_cut_mid_body_is_a_broken_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if read_head(&mut client).await.is_none() {
                return;
            }
            let _ = client
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"choices\": [")
                .await;
            // Dropped: the connection closes 987 bytes short.
        }
    });
    let url = format!("http://{addr}/v1");
    let err = connect_failure(&url).await;
    assert!(
        err.message.contains(&format!(
            "the connection to {url} broke before the answer was complete"
        )),
        "{err}"
    );
}
