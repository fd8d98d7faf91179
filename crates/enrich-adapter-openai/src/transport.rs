//! HTTP/1.1 to one OpenAI-compatible server through reqwest: one pooled client (keep-alive) per
//! backend, TLS through rustls with the ring provider ([`enrich_backends::tls`]), proxies from
//! the environment, no redirects.

use enrich_backends::{BackendError, ResponseLimit, tls};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::{ClientBuilder, StatusCode, Url};

use crate::error::OpenAiConfigError;
use crate::settings::Settings;

/// The endpoints the adapter calls.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    /// `POST {url}/chat/completions`.
    Chat,
    /// `GET {url}/models`.
    Models,
}

/// One backend's HTTP client: its two endpoints and a connection pool shared by every request
/// of the run. The headers every request carries are the client's defaults.
pub(crate) struct Transport {
    client: reqwest::Client,
    chat: Url,
    models: Url,
}

/// An answer whose head has arrived; its body is read with [`Reply::bytes`].
pub(crate) struct Reply(reqwest::Response);

/// Why [`Reply::bytes`] stopped.
pub(crate) enum BodyError {
    /// The body passed the backend's `max_response_bytes`.
    TooLarge(BackendError),
    /// The body could not be read to its end.
    Transport(reqwest::Error),
}

impl From<reqwest::Response> for Reply {
    fn from(response: reqwest::Response) -> Self {
        Self(response)
    }
}

impl Reply {
    pub(crate) fn status(&self) -> StatusCode {
        self.0.status()
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        self.0.headers()
    }

    /// Reads the whole body under `limit`: a declared length over it fails before reading, and
    /// reading stops at the chunk that passes it.
    pub(crate) async fn bytes(mut self, mut limit: ResponseLimit) -> Result<Vec<u8>, BodyError> {
        let declared = self.0.content_length();
        limit
            .check_declared(declared)
            .map_err(BodyError::TooLarge)?;
        let mut body = Vec::with_capacity(limit.initial_capacity(declared));
        while let Some(chunk) = self.0.chunk().await.map_err(BodyError::Transport)? {
            limit
                .append(&mut body, &chunk)
                .map_err(BodyError::TooLarge)?;
        }
        Ok(body)
    }

    /// The first `max` bytes of the body, or fewer when it ends or breaks first; the rest is not
    /// read. For error answers, which are only quoted.
    pub(crate) async fn prefix(mut self, max: usize) -> Vec<u8> {
        let mut body = Vec::new();
        while body.len() < max {
            match self.0.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body
    }
}

impl Transport {
    /// A client for `settings`' base URL. `https://` loads the system's root certificates now;
    /// proxies come from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY`.
    pub(crate) fn new(settings: &Settings) -> Result<Self, OpenAiConfigError> {
        let tls = tls::client_config_for(settings.chat_url.as_str()).map_err(|source| {
            OpenAiConfigError::NoRootCertificates {
                url: settings.host.clone(),
                source,
            }
        })?;
        Self::with(settings, tls, reqwest::Client::builder())
    }

    /// A client for `settings` speaking TLS as `tls` says, from `builder` (which may name
    /// proxies).
    pub(crate) fn with(
        settings: &Settings,
        tls: tls::ClientConfig,
        builder: ClientBuilder,
    ) -> Result<Self, OpenAiConfigError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // Credentials written into `url` are sent as basic auth by reqwest, and win over the key:
        // a request's own `Authorization` is not replaced by this default.
        if let Some(key) = &settings.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    OpenAiConfigError::InvalidApiKey {
                        var: settings.api_key_var.clone(),
                    }
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = builder
            .tls_backend_preconfigured(tls)
            .connect_timeout(settings.connect_timeout)
            // The API key goes nowhere the configuration does not name.
            .redirect(Policy::none())
            .user_agent(concat!("enrich/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(|source| OpenAiConfigError::Client { source })?;
        Ok(Self {
            client,
            chat: settings.chat_url.clone(),
            models: settings.models_url.clone(),
        })
    }

    /// The pooled client, for the requests of the Batch and Files APIs
    /// ([`BatchApi`](crate::BatchApi)), which carry the same headers and TLS.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends one request to `endpoint` (`POST` with `json` as the body, `GET` without) and waits
    /// for the answer's head. No timeout: the caller bounds the whole exchange.
    pub(crate) async fn send(
        &self,
        endpoint: Endpoint,
        json: Option<Vec<u8>>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = match endpoint {
            Endpoint::Chat => self.client.post(self.chat.clone()),
            Endpoint::Models => self.client.get(self.models.clone()),
        };
        if let Some(json) = json {
            request = request.header(CONTENT_TYPE, "application/json").body(json);
        }
        request.send().await.map(Reply)
    }
}

#[cfg(test)]
mod tests;
