//! [`OllamaAdapter`]: one Ollama backend, its HTTP client, and `POST /api/generate`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use enrich_backends::http::{body_excerpt, error_chain, excerpt, is_connection_lost};
use enrich_backends::tls::{self, is_untrusted_certificate, tls_fix};
use enrich_backends::{
    AdapterRegistry, BackendAdapter, BackendError, Capabilities, ERROR_BODY_BYTES, FailureKind,
    GenerateRequest, Generation, HealthReport, ResponseLimit, UsageMetrics,
};
use enrich_config::BackendSpec;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::classify::{error_text, retry_after, status_kind, text_kind};
use crate::error::OllamaConfigError;
use crate::settings::Settings;
use crate::wire::{Format, GenerateBody, GenerateReply};

/// The provider name this crate serves (`provider = "ollama"`).
pub const PROVIDER: &str = "ollama";

/// Registers the Ollama adapter's factory for provider `"ollama"`.
///
/// A backend entry the adapter cannot serve (see [`OllamaConfigError`]) is refused with a
/// [`FailureKind::InvalidRequest`] error whose source is the [`OllamaConfigError`].
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(PROVIDER, |spec: &BackendSpec| {
        OllamaAdapter::new(spec.clone())
            .map(|adapter| Arc::new(adapter) as Arc<dyn BackendAdapter>)
            .map_err(|err| {
                BackendError::new(FailureKind::InvalidRequest, err.to_string()).with_source(err)
            })
    });
}

/// One Ollama backend: a model at a base URL, spoken to through `POST /api/generate` with one
/// keep-alive HTTP client for the whole run.
///
/// Built once per run from its [`BackendSpec`]; see the [crate documentation](crate) for the
/// request it sends and how failures are classified.
pub struct OllamaAdapter {
    spec: BackendSpec,
    settings: Settings,
    client: reqwest::Client,
}

impl fmt::Debug for OllamaAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaAdapter")
            .field("backend", &self.spec.name)
            .field("model", &self.spec.model)
            .field("host", &self.settings.host)
            .field("timeout", &self.settings.timeout)
            .field("stream", &self.settings.stream)
            .finish_non_exhaustive()
    }
}

impl OllamaAdapter {
    /// An adapter for `spec`, with its HTTP client built.
    ///
    /// The base URL is `spec.url`, else `http://localhost:11434` (the config layer has already
    /// applied `OLLAMA_HOST`); it must be an `http` or `https` URL, and may carry a path prefix
    /// and `user:password@` (sent as basic auth). `https://` speaks TLS through rustls (ring)
    /// with the system's root certificates ([`enrich_backends::tls`]). A backend with
    /// `api_key_env` sends that variable's value as a bearer token.
    ///
    /// # Errors
    ///
    /// [`OllamaConfigError`] naming the key that is wrong: an unparseable or non-http(s) `url`,
    /// a `timeout_seconds` that is not positive, a mistyped `stream`, `keep_alive` or `think`
    /// option, an unset API key variable, an `https://` URL when the system's root certificates
    /// cannot be loaded, or an HTTP client that cannot be built.
    pub fn new(spec: BackendSpec) -> Result<Self, OllamaConfigError> {
        let settings = Settings::from_spec(&spec)?;
        let tls = tls::client_config_for(settings.generate_url.as_str()).map_err(|source| {
            OllamaConfigError::NoRootCertificates {
                url: settings.host.clone(),
                source,
            }
        })?;
        Self::with_settings(spec, settings, tls)
    }

    /// An adapter for `spec` whose HTTPS speaks as `tls` says, instead of trusting the system's
    /// root certificates: for a server certified by a private authority the system store does
    /// not hold (build `tls` with [`enrich_backends::tls::client_config`]).
    ///
    /// # Errors
    ///
    /// As [`OllamaAdapter::new`], but for the system's store.
    pub fn with_tls(spec: BackendSpec, tls: tls::ClientConfig) -> Result<Self, OllamaConfigError> {
        let settings = Settings::from_spec(&spec)?;
        Self::with_settings(spec, settings, tls)
    }

    fn with_settings(
        spec: BackendSpec,
        settings: Settings,
        tls: tls::ClientConfig,
    ) -> Result<Self, OllamaConfigError> {
        let mut headers = HeaderMap::new();
        if let (Some(key), Some(var)) = (&settings.api_key, &spec.api_key_env) {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| OllamaConfigError::InvalidApiKey { var: var.clone() })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(settings.connect_timeout)
            .default_headers(headers)
            .user_agent(concat!("enrich/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| OllamaConfigError::Client { source })?;
        Ok(Self {
            spec,
            settings,
            client,
        })
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The JSON body for `request`.
    fn body<'a>(&'a self, request: &'a GenerateRequest) -> GenerateBody<'a> {
        let mut options = Cow::Borrowed(&self.settings.options);
        if let Some(max) = request.max_output_tokens
            && !options.contains_key("num_predict")
        {
            options
                .to_mut()
                .insert("num_predict".to_owned(), max.into());
        }
        GenerateBody {
            model: &self.spec.model,
            prompt: &request.prompt,
            system: request.system.as_deref(),
            stream: self.settings.stream,
            // Without a schema, any JSON object.
            format: request
                .schema
                .as_ref()
                .map_or(Format::Json("json"), Format::Schema),
            options,
            keep_alive: self.settings.keep_alive.as_ref(),
            think: self.settings.think.as_ref(),
        }
    }

    /// A fresh limit for one answer's body (`max_response_bytes`).
    fn limit(&self) -> ResponseLimit {
        ResponseLimit::new(&self.settings.host, self.settings.max_response_bytes)
    }

    /// Reads a whole (`stream: false`) answer, at most `max_response_bytes` of it.
    async fn read_whole(
        &self,
        mut response: reqwest::Response,
    ) -> Result<GenerateReply, BackendError> {
        let bytes = read_body(&mut response, self.limit())
            .await
            .map_err(|err| match err {
                BodyError::TooLarge(err) => err,
                BodyError::Transport(err) => self.transport_error(err),
            })?;
        let reply: GenerateReply =
            serde_json::from_slice(&bytes).map_err(|err| self.not_ollama(&bytes, err))?;
        if let Some(error) = &reply.error {
            return Err(self.error_after_ok(error));
        }
        if reply.done != Some(true) {
            return Err(self.not_ollama(&bytes, "it has no `done: true`"));
        }
        Ok(reply)
    }

    /// Reads a streamed answer: NDJSON chunks whose `response` pieces add up to the text, the
    /// last one (`done: true`) carrying the metrics. All the chunks together may be at most
    /// `max_response_bytes`.
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
    ) -> Result<GenerateReply, BackendError> {
        let mut limit = self.limit();
        limit.check_declared(response.content_length())?;
        let mut pending: Vec<u8> = Vec::new();
        let mut text = String::new();
        let mut thinking = String::new();
        let mut last: Option<GenerateReply> = None;
        loop {
            let chunk = match response.chunk().await {
                Ok(chunk) => chunk,
                // The answer is complete; only the connection's reuse is lost.
                Err(_) if last.is_some() => None,
                Err(err) => return Err(self.transport_error(err)),
            };
            let at_end = chunk.is_none();
            match chunk {
                Some(bytes) => limit.append(&mut pending, &bytes)?,
                // A last line without its newline.
                None => pending.push(b'\n'),
            }
            while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                if line.trim_ascii().is_empty() || last.is_some() {
                    continue;
                }
                let reply: GenerateReply =
                    serde_json::from_slice(&line).map_err(|err| self.not_ollama(&line, err))?;
                if let Some(error) = &reply.error {
                    return Err(self.error_after_ok(error));
                }
                text.push_str(&reply.response);
                thinking.push_str(reply.thinking.as_deref().unwrap_or_default());
                if reply.done == Some(true) {
                    // Keep reading to the end, so the connection goes back to the pool.
                    last = Some(reply);
                }
            }
            if at_end {
                break;
            }
        }
        let Some(mut reply) = last else {
            return Err(BackendError::new(
                FailureKind::ServerError,
                format!(
                    "the streamed answer from {} for model '{}' ended without its final \
                     `done: true` line after {} characters; the server or the connection \
                     stopped mid-answer (check Ollama's log)",
                    self.settings.host,
                    self.spec.model,
                    text.chars().count()
                ),
            ));
        };
        reply.response = text;
        reply.thinking = Some(thinking);
        Ok(reply)
    }

    /// The generation from a complete answer, or `Truncated` when it hit the token limit.
    fn finish(
        &self,
        reply: GenerateReply,
        request: &GenerateRequest,
    ) -> Result<Generation, BackendError> {
        let metrics = UsageMetrics {
            model: reply.model.unwrap_or_else(|| self.spec.model.clone()),
            host: self.settings.host.clone(),
            prompt_eval_count: UsageMetrics::prompt_tokens_evaluated(
                reply.prompt_eval_count,
                reply.prompt_eval_cached_count,
            ),
            eval_count: reply.eval_count,
            total_duration_ns: reply.total_duration,
            load_duration_ns: reply.load_duration,
            prompt_eval_duration_ns: reply.prompt_eval_duration,
            eval_duration_ns: reply.eval_duration,
            tokens_per_second: None,
            done_reason: reply.done_reason,
        };
        let metrics = UsageMetrics {
            tokens_per_second: metrics.derived_tokens_per_second(),
            ..metrics
        };
        if metrics.is_truncated() {
            let generated = metrics
                .eval_count
                .map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
            let limit = match (
                self.settings.options.get("num_predict"),
                request.max_output_tokens,
            ) {
                (Some(n), _) => format!("`num_predict` is {n}"),
                (None, Some(n)) => format!("the request's output limit is {n}"),
                (None, None) => "no `num_predict` is set, so the context ran out".to_owned(),
            };
            return Err(BackendError::new(
                FailureKind::Truncated,
                format!(
                    "model '{}' at {} stopped at the token limit after {generated} tokens \
                     (done_reason \"length\"; {limit}); raise `num_predict` or `num_ctx` in the \
                     backend's options",
                    self.spec.model, self.settings.host
                ),
            ));
        }
        let thinking = reply.thinking.unwrap_or_default();
        let text = if reply.response.trim().is_empty() && !thinking.trim().is_empty() {
            thinking
        } else {
            reply.response
        };
        Ok(Generation { text, metrics })
    }

    /// Classifies a failure to send the request or read the answer.
    pub(crate) fn transport_error(&self, err: reqwest::Error) -> BackendError {
        let err = err.without_url();
        let detail = error_chain(&err);
        let host = &self.settings.host;
        let tls = tls_fix(&err).filter(|_| err.is_connect());
        let (kind, message) = if let Some(fix) = tls {
            let what = if is_untrusted_certificate(&err) {
                format!("{host} presented a TLS certificate that is not trusted")
            } else {
                format!("the TLS handshake with Ollama at {host} failed")
            };
            (FailureKind::Connect, format!("{what} ({detail}); {fix}"))
        } else if err.is_connect() {
            (
                FailureKind::Connect,
                format!(
                    "cannot connect to Ollama at {host} ({detail}); start Ollama (`ollama \
                     serve`) or fix the backend's `url` (or OLLAMA_HOST)"
                ),
            )
        } else if err.is_timeout() {
            (
                FailureKind::Timeout,
                format!(
                    "no complete answer from {host} for model '{}' within the backend's timeout \
                     of {} s; raise its `timeout_seconds` (loading a model the first time can \
                     take long) or use a smaller model",
                    self.spec.model,
                    self.settings.timeout.as_secs_f64()
                ),
            )
        } else if err.is_request() || is_connection_lost(&err) {
            (
                FailureKind::Connect,
                format!(
                    "the connection to Ollama at {host} broke before the answer was complete \
                     ({detail}); check that Ollama is still running (its log says why it \
                     stopped)"
                ),
            )
        } else {
            (
                FailureKind::ServerError,
                format!("reading the answer from {host} failed ({detail})"),
            )
        };
        BackendError::new(kind, message).with_source(err)
    }

    /// Classifies a non-success HTTP answer from `POST /api/generate`.
    async fn status_error(&self, mut response: reqwest::Response) -> BackendError {
        let status = response.status();
        let wait = retry_after(response.headers());
        // The body is only read for its message, and only its start: a body that cannot be
        // read says nothing.
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        let said = error_text(&body);
        let kind = status_kind(status.as_u16(), &said);
        let host = &self.settings.host;
        let model = &self.spec.model;
        let code = status.as_u16();
        let message = match kind {
            FailureKind::ModelNotFound => format!(
                "model '{model}' is not available at {host} (HTTP {code}: \"{said}\"); run \
                 `ollama pull {model}` there, or fix the backend's `model` (or its `url`, if \
                 that is not an Ollama server)"
            ),
            FailureKind::Overloaded => format!(
                "Ollama at {host} is busy (HTTP {code}: \"{said}\"); lower enrich's concurrency \
                 or raise the server's OLLAMA_MAX_QUEUE / OLLAMA_NUM_PARALLEL"
            ),
            FailureKind::ContextExceeded => format!(
                "the prompt does not fit the context of model '{model}' at {host} (HTTP {code}: \
                 \"{said}\"); raise `num_ctx` in the backend's options or lower \
                 `max_snippet_bytes`"
            ),
            FailureKind::Auth => {
                let fix = match &self.spec.api_key_env {
                    Some(var) => format!("check the key in {var}"),
                    None => "set `api_key_env` to the variable holding the key, or credentials \
                             in `url`"
                        .to_owned(),
                };
                format!("Ollama at {host} refused the credentials (HTTP {code}: \"{said}\"); {fix}")
            }
            FailureKind::Timeout => format!(
                "Ollama at {host} gave up waiting for the request (HTTP {code}: \"{said}\")"
            ),
            FailureKind::InvalidRequest => format!(
                "Ollama at {host} rejected the request for model '{model}' (HTTP {code}: \
                 \"{said}\"); check the backend's `options`"
            ),
            _ => format!(
                "Ollama at {host} failed the request for model '{model}' (HTTP {code}: \
                 \"{said}\"); its log says why"
            ),
        };
        let err = BackendError::new(kind, message);
        match wait {
            Some(wait) => err.with_retry_after(wait),
            None => err,
        }
    }

    /// Classifies an `{"error": …}` that came with a 200.
    fn error_after_ok(&self, error: &str) -> BackendError {
        let kind = text_kind(error);
        BackendError::new(
            kind,
            format!(
                "Ollama at {} failed while answering for model '{}': \"{}\"",
                self.settings.host,
                self.spec.model,
                excerpt(error)
            ),
        )
    }

    /// A 200 whose body is not Ollama's answer.
    fn not_ollama(&self, body: &[u8], why: impl fmt::Display) -> BackendError {
        BackendError::new(
            FailureKind::ServerError,
            format!(
                "the answer from {} is not Ollama's generate response ({why}): \"{}\"; check \
                 that the backend's `url` points at an Ollama server",
                self.settings.host,
                body_excerpt(body)
            ),
        )
    }
}

#[async_trait::async_trait]
impl BackendAdapter for OllamaAdapter {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.settings.host.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let response = self
            .client
            .post(self.settings.generate_url.clone())
            .timeout(self.settings.timeout)
            .json(&self.body(request))
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        if !response.status().is_success() {
            return Err(self.status_error(response).await);
        }
        let reply = if self.settings.stream {
            self.read_stream(response).await?
        } else {
            self.read_whole(response).await?
        };
        self.finish(reply, request)
    }

    async fn health(&self) -> HealthReport {
        crate::health::check(self).await
    }

    async fn model_digest(&self) -> Option<String> {
        crate::health::model_digest(self).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            structured_output: true,
            streaming: true,
            usage_metrics: true,
            output_token_limit: true,
        }
    }
}

/// Why [`read_body`] stopped.
pub(crate) enum BodyError {
    /// The body passed the limit.
    TooLarge(BackendError),
    /// The body could not be read.
    Transport(reqwest::Error),
}

/// Reads `response`'s body under `limit`: a declared length over it fails before reading, and
/// reading stops at the chunk that passes it.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    mut limit: ResponseLimit,
) -> Result<Vec<u8>, BodyError> {
    limit
        .check_declared(response.content_length())
        .map_err(BodyError::TooLarge)?;
    let mut body = Vec::with_capacity(limit.initial_capacity(response.content_length()));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        limit
            .append(&mut body, &chunk)
            .map_err(BodyError::TooLarge)?;
    }
    Ok(body)
}

/// The time a health-check request may take: the backend's timeout, at most 10 s.
pub(crate) fn health_timeout(settings: &Settings) -> Duration {
    enrich_backends::http::connect_timeout(settings.timeout)
}
