//! [`OpenAiAdapter`]: one OpenAI-compatible backend, its HTTP client, and
//! `POST {url}/chat/completions`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use enrich_backends::http::{body_excerpt, error_chain, excerpt, is_connection_lost};
use enrich_backends::tls::{is_untrusted_certificate, tls_fix};
use enrich_backends::{
    AdapterRegistry, BackendAdapter, BackendError, Capabilities, ERROR_BODY_BYTES, FailureKind,
    GenerateRequest, Generation, HealthReport, ResponseLimit, UsageMetrics,
};
use enrich_config::BackendSpec;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

use crate::classify::{error_kind, is_quota_exhausted, retry_wait, status_kind};
use crate::error::OpenAiConfigError;
use crate::settings::{FormatMode, Settings};
use crate::transport::{BodyError, Endpoint, Reply, Transport};
use crate::wire::{ChatBody, ChatReply, ErrorInfo, JsonSchema, Message, ResponseFormat};

/// The provider name this crate serves (`provider = "openai"`).
pub const PROVIDER: &str = "openai";

/// The name sent as `json_schema.name` when the schema has no usable `title`.
const FALLBACK_SCHEMA_NAME: &str = "output";

/// Registers the OpenAI-compatible adapter's factory for provider `"openai"`.
///
/// A backend entry the adapter cannot serve (see [`OpenAiConfigError`]) is refused with a
/// [`FailureKind::InvalidRequest`] error whose source is the [`OpenAiConfigError`].
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(PROVIDER, |spec: &BackendSpec| {
        OpenAiAdapter::new(spec.clone())
            .map(|adapter| Arc::new(adapter) as Arc<dyn BackendAdapter>)
            .map_err(|err| {
                BackendError::new(FailureKind::InvalidRequest, err.to_string()).with_source(err)
            })
    });
}

/// One OpenAI-compatible backend: a model behind a base URL (`https://api.openai.com/v1`, a
/// vLLM, llama.cpp, LM Studio or Ollama `/v1`, Groq, Together, …), spoken to through
/// `POST {url}/chat/completions` with one keep-alive HTTP client for the whole run.
///
/// Built once per run from its [`BackendSpec`]; see the [crate documentation](crate) for the
/// request it sends, its options and how failures are classified. Its `Debug` output names the
/// variable the API key came from, never the key.
pub struct OpenAiAdapter {
    spec: BackendSpec,
    settings: Settings,
    transport: Transport,
}

impl fmt::Debug for OpenAiAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiAdapter")
            .field("backend", &self.spec.name)
            .field("model", &self.spec.model)
            .field("host", &self.settings.host)
            .field("timeout", &self.settings.timeout)
            .field("response_format", &self.settings.format)
            .field("api_key_env", &self.settings.api_key_var)
            .field("api_key", &self.settings.api_key)
            .finish_non_exhaustive()
    }
}

impl OpenAiAdapter {
    /// An adapter for `spec`, with its HTTP client built.
    ///
    /// The base URL is `spec.url`, else `https://api.openai.com/v1`; it must be an `http` or
    /// `https` URL and may carry a path (`/v1`, `/openai/v1`), a query (kept on every request)
    /// and `user:password@` (sent as basic auth). The API key is read now from the variable
    /// `api_key_env` names, else from `OPENAI_API_KEY`, and sent as a bearer token; without
    /// `api_key_env`, an unset `OPENAI_API_KEY` sends no `Authorization` header (local servers).
    ///
    /// # Errors
    ///
    /// [`OpenAiConfigError`] naming the key that is wrong: an unparseable or non-http(s) `url`,
    /// a `timeout_seconds` that is not positive, a mistyped `response_format`, `strict` or
    /// `stream` option, an option naming `model` or `messages`, an unset `api_key_env`
    /// variable, a key that cannot be a header, an `https://` URL when the system's root
    /// certificates cannot be loaded, or an HTTP client that cannot be built.
    pub fn new(spec: BackendSpec) -> Result<Self, OpenAiConfigError> {
        let settings = Settings::from_spec(&spec)?;
        Self::with_settings(spec, settings)
    }

    /// An adapter for `spec` read into `settings`.
    fn with_settings(spec: BackendSpec, settings: Settings) -> Result<Self, OpenAiConfigError> {
        let transport = Transport::new(&settings)?;
        Ok(Self::with_transport(spec, settings, transport))
    }

    /// An adapter for `spec` read into `settings`, over `transport`.
    pub(crate) fn with_transport(
        spec: BackendSpec,
        settings: Settings,
        transport: Transport,
    ) -> Self {
        Self {
            spec,
            settings,
            transport,
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The JSON body this adapter sends as `POST {url}/chat/completions` for `request`: the
    /// model, the messages, the `response_format`, the output limit and the backend's options.
    /// A batch line carries exactly this body, so a request sent in a batch is the request a
    /// live run sends.
    ///
    /// # Errors
    ///
    /// [`FailureKind::InvalidRequest`] when the body cannot be written as JSON (an option that
    /// JSON cannot hold).
    pub fn request_body(&self, request: &GenerateRequest) -> Result<Value, BackendError> {
        serde_json::to_value(self.body(request)).map_err(|err| self.unwritable(&err))
    }

    /// Reads an answer to `request` that arrived without this adapter sending it (a batch
    /// output line's `response`: its `status_code` and `body`) exactly as it reads a live
    /// answer: a success into the [`Generation`] (text, model, token usage, finish reason; no
    /// duration), any other status or an unusable body into the [`BackendError`] a live call
    /// would have failed with.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] a live answer with this status and body is classified as.
    pub fn read_answer(
        &self,
        status: u16,
        body: &[u8],
        request: &GenerateRequest,
    ) -> Result<Generation, BackendError> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        if !status.is_success() {
            let cut = &body[..body.len().min(ERROR_BODY_BYTES)];
            return Err(self.classify_status(status, None, None, cut));
        }
        let reply: ChatReply =
            serde_json::from_slice(body).map_err(|err| self.not_openai(body, err))?;
        self.finish(reply, body, None, request)
    }

    /// The failure for a request body that cannot be written as JSON.
    fn unwritable(&self, err: &serde_json::Error) -> BackendError {
        BackendError::new(
            FailureKind::InvalidRequest,
            format!(
                "cannot write the request for {} as JSON ({err})",
                self.settings.host
            ),
        )
    }

    /// The JSON body for `request`.
    fn body<'a>(&'a self, request: &'a GenerateRequest) -> ChatBody<'a> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = request.system.as_deref() {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        messages.push(Message {
            role: "user",
            content: &request.prompt,
        });
        let fields = &self.settings.fields;
        let configured_limit =
            fields.contains_key("max_tokens") || fields.contains_key("max_completion_tokens");
        ChatBody {
            model: &self.spec.model,
            messages,
            stream: false,
            response_format: self.response_format(request),
            max_tokens: request.max_output_tokens.filter(|_| !configured_limit),
            fields,
        }
    }

    /// The `response_format` for `request` under the configured mode.
    fn response_format<'a>(&self, request: &'a GenerateRequest) -> Option<ResponseFormat<'a>> {
        match (self.settings.format, request.schema.as_ref()) {
            (FormatMode::None, _) => None,
            (FormatMode::JsonSchema, Some(schema)) => Some(ResponseFormat::JsonSchema {
                json_schema: JsonSchema {
                    name: schema_name(schema.shared()),
                    schema,
                    strict: self.settings.strict,
                },
            }),
            (FormatMode::JsonSchema | FormatMode::JsonObject, _) => {
                Some(ResponseFormat::JsonObject)
            }
        }
    }

    /// The generation from a successful answer, or the failure it reports.
    fn finish(
        &self,
        reply: ChatReply,
        body: &[u8],
        elapsed: Option<Duration>,
        request: &GenerateRequest,
    ) -> Result<Generation, BackendError> {
        if reply.choices.is_empty()
            && let Some(error) = &reply.error
        {
            return Err(self.error_after_ok(&ErrorInfo::from_value(error)));
        }
        let Some(choice) = reply.choices.into_iter().next() else {
            return Err(self.not_openai(body, "it has no `choices`"));
        };
        let nanos = |ms: f64| Duration::try_from_secs_f64(ms / 1000.0).ok().map(as_nanos);
        let timings = reply.timings.as_ref();
        let metrics = UsageMetrics {
            model: reply.model.unwrap_or_else(|| self.spec.model.clone()),
            host: self.settings.host.clone(),
            // What the server evaluated: llama.cpp's `timings.prompt_n`, else the prompt's
            // tokens less those the usage says were cached.
            prompt_eval_count: timings.and_then(|t| t.prompt_n).or_else(|| {
                let usage = reply.usage.as_ref()?;
                let cached = usage.prompt_tokens_details.as_ref();
                UsageMetrics::prompt_tokens_evaluated(
                    usage.prompt_tokens,
                    cached.and_then(|d| d.cached_tokens),
                )
            }),
            eval_count: reply.usage.as_ref().and_then(|u| u.completion_tokens),
            total_duration_ns: elapsed.map(as_nanos),
            load_duration_ns: None,
            prompt_eval_duration_ns: timings.and_then(|t| t.prompt_ms).and_then(nanos),
            eval_duration_ns: timings.and_then(|t| t.predicted_ms).and_then(nanos),
            tokens_per_second: None,
            done_reason: choice.finish_reason,
        };
        let metrics = UsageMetrics {
            tokens_per_second: metrics.derived_tokens_per_second(),
            ..metrics
        };
        if metrics.is_truncated() {
            return Err(self.truncated(&metrics, request));
        }
        let message = choice.message;
        let content = message.content.as_deref().unwrap_or_default();
        if content.trim().is_empty() {
            if let Some(refusal) = message.refusal.as_deref().filter(|r| !r.trim().is_empty()) {
                return Err(BackendError::new(
                    FailureKind::MalformedOutput,
                    format!(
                        "model '{}' at {} refused to answer: \"{}\"",
                        self.spec.model,
                        self.settings.host,
                        excerpt(refusal)
                    ),
                ));
            }
            if let Some(reasoning) = message.reasoning() {
                return Ok(Generation {
                    text: reasoning.to_owned(),
                    metrics,
                });
            }
        }
        Ok(Generation {
            text: message.content.unwrap_or_default(),
            metrics,
        })
    }

    /// The failure for an answer cut at the token limit.
    fn truncated(&self, metrics: &UsageMetrics, request: &GenerateRequest) -> BackendError {
        let generated = metrics
            .eval_count
            .map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
        let fields = &self.settings.fields;
        let limit = match (
            fields.get("max_completion_tokens"),
            fields.get("max_tokens"),
            request.max_output_tokens,
        ) {
            (Some(n), _, _) => format!("`max_completion_tokens` is {n}"),
            (None, Some(n), _) => format!("`max_tokens` is {n}"),
            (None, None, Some(n)) => format!("the request's output limit is {n}"),
            (None, None, None) => "no `max_tokens` is set, so the context ran out".to_owned(),
        };
        BackendError::new(
            FailureKind::Truncated,
            format!(
                "model '{}' at {} stopped at the token limit after {generated} tokens \
                 (finish_reason \"length\"; {limit}); raise `max_tokens` in the backend's options \
                 or use a model with a longer context",
                self.spec.model, self.settings.host
            ),
        )
    }

    /// Classifies a failure to connect, send the request or read the answer.
    pub(crate) fn transport_error(&self, err: reqwest::Error) -> BackendError {
        let err = err.without_url();
        let explained = self.explain(&err);
        let message = match &explained.fix {
            Some(fix) => format!("{}; {fix}", explained.what),
            None => explained.what,
        };
        BackendError::new(explained.kind, message).with_source(err)
    }

    /// What a transport failure means for people, and what to do about it.
    pub(crate) fn explain(&self, err: &reqwest::Error) -> Explained {
        let host = &self.settings.host;
        let detail = error_chain(err);
        if err.is_connect() {
            let tls = tls_fix(err);
            let (what, fix) = if let Some(fix) = tls {
                let what = if is_untrusted_certificate(err) {
                    format!("{host} presented a TLS certificate that is not trusted ({detail})")
                } else {
                    format!("the TLS handshake with {host} failed ({detail})")
                };
                (what, fix.to_owned())
            } else {
                (
                    format!("cannot connect to the OpenAI-compatible server at {host} ({detail})"),
                    "start the server or fix the backend's `url` (or the proxy HTTPS_PROXY, \
                     HTTP_PROXY or ALL_PROXY names)"
                        .to_owned(),
                )
            };
            return Explained {
                kind: FailureKind::Connect,
                what,
                fix: Some(fix),
                detail,
                tls: tls.is_some(),
            };
        }
        if err.is_request() || is_connection_lost(err) {
            return Explained {
                kind: FailureKind::Connect,
                what: format!(
                    "the connection to {host} broke before the answer was complete ({detail})"
                ),
                fix: Some("check that the server is still running".to_owned()),
                detail,
                tls: false,
            };
        }
        Explained {
            kind: FailureKind::ServerError,
            what: format!("reading the answer from {host} failed ({detail})"),
            fix: None,
            detail,
            tls: false,
        }
    }

    /// A fresh limit for one answer's body (`max_response_bytes`).
    pub(crate) fn limit(&self) -> ResponseLimit {
        ResponseLimit::new(&self.settings.host, self.settings.max_response_bytes)
    }

    /// The failure for an exchange that outlived the backend's timeout.
    fn timed_out(&self) -> BackendError {
        BackendError::new(
            FailureKind::Timeout,
            format!(
                "no complete answer from {} for model '{}' within the backend's timeout of {} s; \
                 raise its `timeout_seconds` or use a faster model",
                self.settings.host,
                self.spec.model,
                self.settings.timeout.as_secs_f64()
            ),
        )
    }

    /// Classifies a non-success HTTP answer from `POST /chat/completions`.
    pub(crate) async fn status_error(&self, reply: Reply) -> BackendError {
        let status = reply.status();
        let wait = retry_wait(reply.headers(), SystemTime::now());
        let location = reply
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // The body is only read for its message, and only its start.
        let body = reply.prefix(ERROR_BODY_BYTES).await;
        self.classify_status(status, wait, location, &body)
    }

    /// Classifies a non-success HTTP answer from its status, the wait its headers ask for,
    /// where it redirects to, and (the start of) its body.
    fn classify_status(
        &self,
        status: StatusCode,
        wait: Option<Duration>,
        location: Option<String>,
        body: &[u8],
    ) -> BackendError {
        let error = ErrorInfo::from_body(body);
        let kind = status_kind(status.as_u16(), &error);
        let host = &self.settings.host;
        let model = &self.spec.model;
        let var = &self.settings.api_key_var;
        let said = match &error.code {
            Some(code) => format!(
                "HTTP {} {code}: \"{}\"",
                status.as_u16(),
                excerpt(&error.message)
            ),
            None => format!("HTTP {}: \"{}\"", status.as_u16(), excerpt(&error.message)),
        };
        let message = match kind {
            FailureKind::ModelNotFound => format!(
                "model '{model}' is not available at {host} ({said}); fix the backend's `model` \
                 (GET {host}/models lists what the server serves), or its `url` (most servers \
                 serve the API under /v1)"
            ),
            FailureKind::Overloaded => format!(
                "{host} is busy or rate-limiting ({said}); lower enrich's `concurrency` or the \
                 backend's `max_in_flight`, or set its `requests_per_minute` and \
                 `tokens_per_minute` to the account's limits"
            ),
            FailureKind::Auth if is_quota_exhausted(&error) => format!(
                "the account of the API key in {var} has no quota left at {host} ({said}); add \
                 credit to the account or use another key; retrying cannot help"
            ),
            FailureKind::Auth if self.settings.api_key.is_some() => {
                format!("{host} refused the API key in {var} ({said}); check the key in {var}")
            }
            FailureKind::Auth => format!(
                "{host} wants an API key ({said}) and {var} is not set; export {var} with the \
                 key, or set the backend's `api_key_env` to the variable holding it"
            ),
            FailureKind::ContextExceeded => format!(
                "the prompt does not fit the context of model '{model}' at {host} ({said}); use \
                 a model with a longer context or lower `max_snippet_bytes`"
            ),
            FailureKind::Timeout => {
                format!("{host} gave up waiting for the request ({said})")
            }
            FailureKind::InvalidRequest if status.is_redirection() => format!(
                "{host} redirects the request (HTTP {}) to {}; set the backend's `url` to the \
                 address it redirects to (enrich follows no redirect, so that the API key goes \
                 nowhere the configuration does not name)",
                status.as_u16(),
                location.as_deref().unwrap_or("no location")
            ),
            FailureKind::InvalidRequest => {
                let lower = error.message.to_ascii_lowercase();
                let hint = if ["response_format", "json_schema", "schema"]
                    .iter()
                    .any(|word| lower.contains(word))
                {
                    "; a server that cannot follow JSON schemas works with `response_format = \
                     \"json_object\"` (or \"none\") in the backend's options"
                } else {
                    ""
                };
                format!(
                    "{host} rejected the request for model '{model}' ({said}); check the \
                     backend's `options`{hint}"
                )
            }
            _ => format!(
                "{host} failed the request for model '{model}' ({said}); the server's log says \
                 why"
            ),
        };
        let err = BackendError::new(kind, message);
        match wait {
            Some(wait) => err.with_retry_after(wait),
            None => err,
        }
    }

    /// Classifies an error object that came with a 200.
    fn error_after_ok(&self, error: &ErrorInfo) -> BackendError {
        BackendError::new(
            error_kind(error),
            format!(
                "{} failed while answering for model '{}': \"{}\"",
                self.settings.host,
                self.spec.model,
                excerpt(&error.message)
            ),
        )
    }

    /// A 200 whose body is not a chat completion.
    fn not_openai(&self, body: &[u8], why: impl fmt::Display) -> BackendError {
        BackendError::new(
            FailureKind::ServerError,
            format!(
                "the answer from {} is not an OpenAI chat completion ({why}): \"{}\"; check that \
                 the backend's `url` is the API's base URL (usually ending in /v1)",
                self.settings.host,
                body_excerpt(body)
            ),
        )
    }
}

#[async_trait::async_trait]
impl BackendAdapter for OpenAiAdapter {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.settings.host.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let started = Instant::now();
        let json = serde_json::to_vec(&self.body(request))
            .map_err(|err| self.unwritable(&err).with_source(err))?;
        // The timeout bounds the whole exchange: connecting, sending, and the answer's body.
        let exchange = async {
            let reply = self
                .transport
                .send(Endpoint::Chat, Some(json))
                .await
                .map_err(|err| self.transport_error(err))?;
            if !reply.status().is_success() {
                return Err(self.status_error(reply).await);
            }
            reply.bytes(self.limit()).await.map_err(|err| match err {
                BodyError::TooLarge(err) => err,
                BodyError::Transport(err) => self.transport_error(err),
            })
        };
        let bytes = tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| self.timed_out())??;
        let elapsed = started.elapsed();
        let reply: ChatReply =
            serde_json::from_slice(&bytes).map_err(|err| self.not_openai(&bytes, err))?;
        self.finish(reply, &bytes, Some(elapsed), request)
    }

    async fn health(&self) -> HealthReport {
        crate::health::check(self).await
    }

    async fn model_digest(&self) -> Option<String> {
        crate::health::model_digest(self).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // `json_object` asks for JSON but not for the schema.
            structured_output: self.settings.format == FormatMode::JsonSchema,
            streaming: false,
            usage_metrics: true,
            output_token_limit: true,
        }
    }
}

/// A transport failure explained: its kind, what happened (naming the host), the error chain
/// alone, and the fix when there is one.
pub(crate) struct Explained {
    pub(crate) kind: FailureKind,
    pub(crate) what: String,
    pub(crate) detail: String,
    pub(crate) fix: Option<String>,
    /// Whether the TLS handshake failed (rather than the server being unreachable).
    pub(crate) tls: bool,
}

/// The time a health-check request may take: the backend's timeout, at most 10 s.
pub(crate) fn health_timeout(settings: &Settings) -> Duration {
    settings.timeout.min(Duration::from_secs(10))
}

/// `json_schema.name`: the schema's `title` in the characters OpenAI allows (`enrichment.v1`
/// becomes `enrichment_v1`), at most 64 of them.
fn schema_name(schema: &Value) -> String {
    let name: String = schema
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.trim_matches('_').is_empty() {
        FALLBACK_SCHEMA_NAME.to_owned()
    } else {
        name
    }
}

fn as_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use enrich_backends::SpanIdentity;
    use reqwest::header::AUTHORIZATION;
    use serde_json::json;
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    /// An adapter for a server at `url`, as if `OPENAI_API_KEY` were unset.
    fn without_key(url: &str) -> OpenAiAdapter {
        let spec = BackendSpec {
            url: Some(url.to_owned()),
            ..BackendSpec::new("local", "default", "openai", "qwen2.5")
        };
        let settings = Settings::from_spec_with(&spec, |_| None).unwrap();
        OpenAiAdapter::with_settings(spec, settings).unwrap()
    }

    fn request() -> GenerateRequest {
        GenerateRequest::new("Describe.", SpanIdentity::new("sha256:0", "a.rs", 1, 1))
    }

    #[tokio::test]
    async fn without_a_key_no_authorization_is_sent_and_a_401_says_to_export_one() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": {"message": "Missing bearer authentication in header", "type": "invalid_request_error", "code": null},
            })))
            .mount(&server)
            .await;
        let adapter = without_key(&server.uri());
        let err = adapter.generate(&request()).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::Auth);
        assert!(
            err.message.contains(
                "wants an API key (HTTP 401: \"Missing bearer authentication in header\") and \
                 OPENAI_API_KEY is not set; export OPENAI_API_KEY"
            ),
            "{err}"
        );
        let health = adapter.health().await;
        assert_eq!(health.credentials_accepted, Some(false));
        assert!(
            health.fixes[0].contains("export OPENAI_API_KEY"),
            "{:?}",
            health.fixes
        );
        assert!(
            format!("{adapter:?}").contains("api_key: None"),
            "{adapter:?}"
        );
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 2, "generate and health");
        assert!(
            received
                .iter()
                .all(|r| !r.headers.contains_key(AUTHORIZATION))
        );
    }

    #[test]
    fn schema_names_keep_only_what_openai_allows() {
        let check = |schema: Value, name: &str| assert_eq!(schema_name(&schema), name, "{schema}");
        check(json!({"title": "enrichment.v1"}), "enrichment_v1");
        check(json!({"title": "my-schema_2"}), "my-schema_2");
        check(json!({"title": "ünï côde"}), "_n__c_de");
        check(json!({"title": "x".repeat(100)}), &"x".repeat(64));
        check(json!({"title": "..."}), "output");
        check(json!({"type": "object"}), "output");
    }
}
