//! HTTP/1.1 to one OpenAI-compatible server: hyper-util's pooled client (keep-alive) over a
//! connector that resolves and connects (directly, or through the proxy the environment names),
//! and speaks TLS through rustls with the ring provider for `https://`.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enrich_backends::{BackendError, ResponseLimit};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, PROXY_AUTHORIZATION, USER_AGENT,
};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::{self, Client};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use rustls_native_certs::CertificateResult;
use tokio_rustls::TlsConnector;
use tower_service::Service;
use url::Url;

use crate::error::OpenAiConfigError;
use crate::settings::Settings;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an idle keep-alive connection is kept for the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The endpoints the adapter calls.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    /// `POST {url}/chat/completions`.
    Chat,
    /// `GET {url}/models`.
    Models,
}

/// One backend's HTTP client: its two endpoints, the headers every request carries, and a
/// connection pool shared by every request of the run.
pub(crate) struct Transport {
    client: Client<Connector, Full<Bytes>>,
    chat: Uri,
    models: Uri,
    headers: HeaderMap,
    /// The proxy requests go through, if the environment names one for the base URL.
    proxy: Option<Uri>,
}

/// Why an exchange failed before a whole answer was read.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// No connection: DNS, TCP, the proxy, the TLS handshake, or the connect timeout.
    Connect(legacy::Error),
    /// The request could not be sent, or no answer's head came back on the connection.
    Send(legacy::Error),
    /// The answer's body could not be read to its end.
    Body(hyper::Error),
}

/// An answer whose head has arrived; its body is read with [`Reply::bytes`].
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    body: Incoming,
}

/// Why [`Reply::bytes`] stopped.
pub(crate) enum BodyError {
    /// The body passed the backend's `max_response_bytes`.
    TooLarge(BackendError),
    /// The body could not be read to its end.
    Transport(TransportError),
}

impl Reply {
    /// Reads the whole body under `limit`: a declared length over it fails before reading, and
    /// reading stops at the frame that passes it.
    pub(crate) async fn bytes(mut self, mut limit: ResponseLimit) -> Result<Vec<u8>, BodyError> {
        let declared = self.body.size_hint().exact();
        limit
            .check_declared(declared)
            .map_err(BodyError::TooLarge)?;
        let mut body = Vec::with_capacity(limit.initial_capacity(declared));
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|err| BodyError::Transport(TransportError::Body(err)))?;
            if let Ok(data) = frame.into_data() {
                limit
                    .append(&mut body, &data)
                    .map_err(BodyError::TooLarge)?;
            }
        }
        Ok(body)
    }

    /// The first `max` bytes of the body, or fewer when it ends or breaks first; the rest is not
    /// read. For error answers, which are only quoted.
    pub(crate) async fn prefix(mut self, max: usize) -> Vec<u8> {
        let mut body = Vec::new();
        while body.len() < max {
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        body.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        body
    }
}

impl Transport {
    /// A client for `settings`' base URL. `https://` loads the system's root certificates now;
    /// the proxy comes from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY`, as curl
    /// reads them.
    pub(crate) fn new(settings: &Settings) -> Result<Self, OpenAiConfigError> {
        Self::with(settings, &Matcher::from_env(), || {
            root_store(rustls_native_certs::load_native_certs(), &settings.host)
        })
    }

    /// A client for `settings`, with `proxies` and `roots` (called only for `https://`).
    pub(crate) fn with(
        settings: &Settings,
        proxies: &Matcher,
        roots: impl FnOnce() -> Result<RootCertStore, OpenAiConfigError>,
    ) -> Result<Self, OpenAiConfigError> {
        let chat = to_uri(&settings.chat_url)?;
        let models = to_uri(&settings.models_url)?;
        let https = settings.chat_url.scheme() == "https";

        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("enrich/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // Credentials written into `url` are the more specific choice: they win over the key.
        let authorization = match (basic_auth(&settings.chat_url), &settings.api_key) {
            (Some(basic), _) => Some(basic),
            (None, Some(key)) => Some(
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    OpenAiConfigError::InvalidApiKey {
                        var: settings.api_key_var.clone(),
                    }
                })?,
            ),
            (None, None) => None,
        };
        if let Some(mut value) = authorization {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let intercept = proxies.intercept(&chat);
        let route = match &intercept {
            None => Route::Direct,
            Some(proxy) => {
                if proxy.uri().scheme_str() != Some("http") {
                    return Err(OpenAiConfigError::UnsupportedProxy {
                        proxy: proxy.uri().to_string(),
                    });
                }
                if https {
                    let tunnel = Tunnel::new(proxy.uri().clone(), tcp.clone());
                    Route::Tunnel(match proxy.basic_auth() {
                        Some(auth) => tunnel.with_auth(auth.clone()),
                        None => tunnel,
                    })
                } else {
                    if let Some(auth) = proxy.basic_auth() {
                        headers.insert(PROXY_AUTHORIZATION, auth.clone());
                    }
                    Route::Forward(proxy.uri().clone())
                }
            }
        };
        let tls = if https {
            Some(tls_connector(roots()?)?)
        } else {
            None
        };
        let connector = Connector {
            tcp,
            route,
            tls,
            timeout: settings.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            client,
            chat,
            models,
            headers,
            proxy: intercept.map(|proxy| proxy.uri().clone()),
        })
    }

    /// The proxy every request goes through, if any.
    pub(crate) fn proxy(&self) -> Option<&Uri> {
        self.proxy.as_ref()
    }

    /// Sends one request to `endpoint` (`POST` with `json` as the body, `GET` without) and waits
    /// for the answer's head. No timeout: the caller bounds the whole exchange.
    pub(crate) async fn send(
        &self,
        endpoint: Endpoint,
        json: Option<Vec<u8>>,
    ) -> Result<Reply, TransportError> {
        let (method, uri) = match endpoint {
            Endpoint::Chat => (Method::POST, &self.chat),
            Endpoint::Models => (Method::GET, &self.models),
        };
        let has_body = json.is_some();
        let mut request = Request::new(Full::new(Bytes::from(json.unwrap_or_default())));
        *request.method_mut() = method;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.clone_from(&self.headers);
        if has_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = self.client.request(request).await.map_err(|err| {
            if err.is_connect() {
                TransportError::Connect(err)
            } else {
                TransportError::Send(err)
            }
        })?;
        let (head, body) = response.into_parts();
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
}

/// `url` as hyper takes it: without credentials, which go into `Authorization` instead.
fn to_uri(url: &Url) -> Result<Uri, OpenAiConfigError> {
    let mut bare = url.clone();
    // Cannot fail for an http(s) URL with a host, which the settings guarantee.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare.set_fragment(None);
    bare.as_str()
        .parse()
        .map_err(
            |err: hyper::http::uri::InvalidUri| OpenAiConfigError::InvalidUrl {
                url: bare.to_string(),
                reason: err.to_string(),
            },
        )
}

/// `Basic …` for a URL's `user:password@`, percent-decoded, as curl sends it.
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |part: &str| percent_decode_str(part).decode_utf8_lossy().into_owned();
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    HeaderValue::from_str(&format!("Basic {}", BASE64.encode(pair))).ok()
}

/// The trusted roots from what the system store gave: refused when none is usable, naming what
/// went wrong.
fn root_store(found: CertificateResult, host: &str) -> Result<RootCertStore, OpenAiConfigError> {
    let mut roots = RootCertStore::empty();
    let (_, unparsable) = roots.add_parsable_certificates(found.certs);
    if !roots.is_empty() {
        return Ok(roots);
    }
    let mut problems: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    if unparsable > 0 {
        problems.push(format!("{unparsable} certificates could not be parsed"));
    }
    if problems.is_empty() {
        problems.push("the store holds no certificate".to_owned());
    }
    Err(OpenAiConfigError::NoRootCertificates {
        url: host.to_owned(),
        problems: problems.join("; "),
    })
}

/// rustls with the ring provider, passed explicitly, trusting `roots`, speaking HTTP/1.1.
fn tls_connector(roots: RootCertStore) -> Result<TlsConnector, OpenAiConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| OpenAiConfigError::Tls { source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// How connections reach the server.
#[derive(Clone)]
enum Route {
    /// Straight to the server.
    Direct,
    /// `http://` through a proxy: the connection goes to the proxy, which gets each request
    /// with its absolute URL.
    Forward(Uri),
    /// `https://` through a proxy: an HTTP CONNECT tunnel, then TLS with the server inside it.
    Tunnel(Tunnel<HttpConnector>),
}

/// The connector under the pooled client: DNS and TCP, the route, and TLS, all within the
/// connect timeout.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    route: Route,
    /// For an `https://` base URL.
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Connector {
    async fn connect(self, dst: Uri) -> Result<Conn, BoxError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.establish(dst)).await {
            Ok(conn) => conn,
            Err(_) => Err(Box::new(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {} s", timeout.as_secs_f64()),
            ))),
        }
    }

    async fn establish(self, dst: Uri) -> Result<Conn, BoxError> {
        let (tcp, proxied) = match self.route {
            Route::Direct => (call(self.tcp, dst.clone()).await?, false),
            Route::Forward(proxy) => (call(self.tcp, proxy).await?, true),
            Route::Tunnel(tunnel) => (call(tunnel, dst.clone()).await?, false),
        };
        let Some(tls) = self.tls else {
            return Ok(Conn {
                io: Box::new(tcp),
                proxied,
            });
        };
        let host = dst.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())?;
        let stream = tls.connect(name, tcp.into_inner()).await?;
        Ok(Conn {
            io: Box::new(TokioIo::new(stream)),
            proxied: false,
        })
    }
}

/// Waits until `service` is ready, then calls it.
async fn call<S>(mut service: S, uri: Uri) -> Result<S::Response, BoxError>
where
    S: Service<Uri>,
    S::Error: Into<BoxError>,
{
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    service.call(uri).await.map_err(Into::into)
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(self.clone().connect(dst))
    }
}

/// What a connection is made of: TCP, or TLS over TCP.
trait Io: Read + Write + Send + Unpin {}

impl<T: Read + Write + Send + Unpin> Io for T {}

/// One connection, plain or TLS, and whether it goes to a forwarding proxy (then requests carry
/// absolute URLs).
struct Conn {
    io: Box<dyn Io>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied)
    }
}

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests;
