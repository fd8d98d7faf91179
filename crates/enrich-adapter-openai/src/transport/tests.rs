//! HTTPS through rustls with ring, proxies and root certificates, against real servers on
//! loopback: a TLS front (tokio-rustls's server side, ring) that hands each connection's
//! plaintext to wiremock, and an HTTP CONNECT proxy that tunnels to it.
//!
//! The certificates in `tests/fixtures/tls` (see its README) are an ECDSA P-256 test CA and a
//! certificate for `localhost` and `127.0.0.1` it signed, valid from 2000 to 2999; no system
//! trusts the CA.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use enrich_backends::{BackendAdapter, FailureKind, GenerateRequest, SpanIdentity};
use enrich_config::BackendSpec;
use hyper_util::client::proxy::matcher::Matcher;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_native_certs::CertificateResult;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Transport, root_store};
use crate::adapter::OpenAiAdapter;
use crate::error::OpenAiConfigError;
use crate::settings::Settings;

const CA: &[u8] = include_bytes!("../../tests/fixtures/tls/ca.pem");
const LEAF: &[u8] = include_bytes!("../../tests/fixtures/tls/localhost.pem");
const LEAF_KEY: &[u8] = include_bytes!("../../tests/fixtures/tls/localhost.key");

/// The key every test backend sends.
const KEY: &str = "sk-transport-test";

/// What a TLS front saw of one accepted handshake: the protocol version and the ALPN protocol.
type Handshake = (Option<rustls::ProtocolVersion>, Option<Vec<u8>>);

/// A TLS server on loopback, certified for `localhost` by the test CA, that hands each
/// connection's plaintext to `backend` and records every completed handshake.
struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsFront {
    async fn start(backend: SocketAddr) -> Self {
        let chain = CertificateDer::pem_slice_iter(LEAF)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(LEAF_KEY).unwrap();
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&handshakes);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let handshake = (
                        session.protocol_version(),
                        session.alpn_protocol().map(<[u8]>::to_vec),
                    );
                    seen.lock().unwrap().push(handshake);
                    let mut plain = TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self { addr, handshakes }
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
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
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0; 1];
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
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

/// The test CA as the only trusted root.
fn test_roots() -> rustls::RootCertStore {
    let mut found = CertificateResult::default();
    found.certs = CertificateDer::pem_slice_iter(CA)
        .collect::<Result<_, _>>()
        .unwrap();
    root_store(found, "test").unwrap()
}

/// An adapter for `url` that trusts the test CA alone and uses `proxies`.
fn adapter(url: &str, proxies: &Matcher) -> OpenAiAdapter {
    let settings = settings(url);
    let transport = Transport::with(&settings, proxies, || Ok(test_roots())).unwrap();
    OpenAiAdapter::with_transport(spec(url), settings, transport)
}

fn no_proxy() -> Matcher {
    Matcher::builder().build()
}

fn request() -> GenerateRequest {
    GenerateRequest::new("Describe.", SpanIdentity::new("sha256:0", "a.rs", 1, 1))
}

#[tokio::test]
async fn https_negotiates_tls_with_ring_and_keeps_the_connection() {
    let server = backend().await;
    let front = TlsFront::start(*server.address()).await;
    let url = format!("https://localhost:{}/v1", front.addr.port());
    let adapter = adapter(&url, &no_proxy());
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
    let front = TlsFront::start(*server.address()).await;
    let url = format!("https://localhost:{}/v1", front.addr.port());
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
    let front = TlsFront::start(*server.address()).await;
    let (proxy, heads) = connect_proxy(front.addr).await;
    let url = format!("https://localhost:{}/v1", front.addr.port());
    let proxies = Matcher::builder()
        .https(format!("http://me:pw@{proxy}"))
        .build();
    let adapter = adapter(&url, &proxies);
    adapter.generate(&request()).await.unwrap();
    adapter.generate(&request()).await.unwrap();
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "one tunnel for both requests: {heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with(&format!(
            "connect localhost:{} http/1.1\r\n",
            front.addr.port()
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
    let proxies = Matcher::builder()
        .http(format!("http://me:pw@{}", proxy.address()))
        .no("127.0.0.1")
        .build();
    let proxied = adapter("http://backend.invalid:8000/v1", &proxies);
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
    adapter(&url, &proxies).generate(&request()).await.unwrap();
    assert_eq!(direct.received_requests().await.unwrap().len(), 1);
    assert_eq!(proxy.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_connect_failure_naming_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxies = Matcher::builder().all(format!("http://{closed}")).build();
    let err = adapter("https://api.example.invalid/v1", &proxies)
        .generate(&request())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Connect, "{err}");
    assert!(
        err.message.contains(&format!(
            "cannot connect to the OpenAI-compatible server at https://api.example.invalid/v1 \
             through the proxy http://{closed}/"
        )),
        "{err}"
    );
}

#[test]
fn a_proxy_that_is_not_http_is_refused() {
    let proxies = Matcher::builder().all("socks5://127.0.0.1:1080").build();
    let settings = settings("https://api.example.invalid/v1");
    let err = Transport::with(&settings, &proxies, || Ok(test_roots()))
        .err()
        .unwrap();
    assert!(
        matches!(err, OpenAiConfigError::UnsupportedProxy { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the proxy socks5://127.0.0.1:1080/ (from HTTPS_PROXY"),
        "{err}"
    );
}

#[test]
fn the_system_store_must_give_at_least_one_root() {
    let check = |found: CertificateResult, expected: Result<usize, &str>| {
        let result = root_store(found, "https://api.openai.com/v1")
            .map(|roots| roots.len())
            .map_err(|err| err.to_string());
        match expected {
            Ok(roots) => assert_eq!(result, Ok(roots)),
            Err(needle) => {
                let err = result.unwrap_err();
                assert!(
                    err.starts_with("`url` 'https://api.openai.com/v1' needs the system's root")
                        && err.contains(needle)
                        && err.contains("SSL_CERT_FILE"),
                    "{needle:?} not in {err}"
                );
            }
        }
    };
    let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(CA)
        .collect::<Result<_, _>>()
        .unwrap();
    let unreadable = || rustls_native_certs::Error {
        context: "failed to read PEM from file",
        kind: rustls_native_certs::ErrorKind::Io {
            inner: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            path: "/etc/ssl/certs/ca-certificates.crt".into(),
        },
    };

    check(
        CertificateResult::default(),
        Err("(the store holds no certificate)"),
    );
    let mut failed = CertificateResult::default();
    failed.errors.push(unreadable());
    check(failed, Err("/etc/ssl/certs/ca-certificates.crt"));
    let mut garbage = CertificateResult::default();
    garbage.certs.push(CertificateDer::from(vec![1, 2, 3]));
    check(garbage, Err("1 certificates could not be parsed"));
    // A readable certificate is enough, whatever else failed.
    let mut partly = CertificateResult::default();
    partly.certs = ca;
    partly.errors.push(unreadable());
    check(partly, Ok(1));
}
