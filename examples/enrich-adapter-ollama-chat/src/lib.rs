//! An example third-party adapter for enrich: backends served through Ollama's `/api/chat`
//! endpoint (enrich's own Ollama adapter uses `/api/generate`).
//!
//! It is deliberately small, to be read and copied: one type implementing
//! [`BackendAdapter`], a [`register`] function for the composition root, and the
//! classification of every failure into the [`FailureKind`] enrich's cascade acts on. Its tests
//! run enrich's conformance suite (`enrich_testkit::run_conformance`), which is all an adapter
//! needs to be trusted. `docs/writing-an-adapter.md` in the enrich repository walks through it.
//!
//! What it does not know: SQLite, prompts, retries, fallbacks and deadlines. The adapter sends
//! one request and says what happened; the cascade decides what to do next. It does not stream.
//! What every HTTP adapter decides the same way (status codes, `Retry-After`, excerpts of what
//! the server said) comes from [`enrich_backends::http`], and its client speaks TLS through
//! [`enrich_backends::tls`]. Two rules every adapter keeps: answers are read through
//! [`ResponseLimit`] (the backend's `max_response_bytes`, so a huge answer fails as
//! `response_too_large` instead of filling memory), and the URL is only ever shown through
//! [`redact_url`] (credentials in it are sent, never shown).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use enrich_backends::http::{self, error_chain, excerpt, says_context_exceeded};
use enrich_backends::tls;
use enrich_backends::{
    AdapterRegistry, BackendAdapter, BackendError, Capabilities, ERROR_BODY_BYTES, FailureKind,
    GenerateRequest, Generation, HealthReport, OutputSchema, ResponseLimit, UsageMetrics,
};
use enrich_config::{BackendSpec, DEFAULT_OLLAMA_URL, redact_url};
use serde::Deserialize;
use serde_json::{Value, json};

/// The provider name backend entries use: `provider = "ollama-chat"`.
pub const PROVIDER: &str = "ollama-chat";

/// Makes the registry build a [`ChatAdapter`] for every `provider = "ollama-chat"` entry. The
/// binary calls this once at startup, next to the first-party adapters' `register`.
pub fn register(registry: &mut AdapterRegistry) {
    registry.register(PROVIDER, |spec: &BackendSpec| {
        Ok(Arc::new(ChatAdapter::new(spec.clone())?) as Arc<dyn BackendAdapter>)
    });
}

/// One backend: a model on an Ollama server, asked through `POST {url}/api/chat`.
pub struct ChatAdapter {
    spec: BackendSpec,
    /// The base URL without a trailing slash (with its credentials, if any: reqwest sends them
    /// as basic auth).
    base: String,
    /// The base URL as shown in messages and metrics: credentials redacted.
    shown: String,
    /// Built once and shared by every request, so connections are kept alive.
    client: reqwest::Client,
}

/// Shows the URL as [`redact_url`] does: a password in it is never printed.
impl std::fmt::Debug for ChatAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatAdapter")
            .field("spec", &self.spec)
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl ChatAdapter {
    /// An adapter for `spec`: `url` (default `http://localhost:11434`), `model`,
    /// `timeout_seconds`, and `options` sent as Ollama's model options.
    ///
    /// # Errors
    ///
    /// An `invalid_request` [`BackendError`] when `url` is not an `http://` or `https://` URL,
    /// the system's root certificates cannot be loaded for `https://`, or the HTTP client cannot
    /// be built. The registry adds which backend entry it was.
    pub fn new(spec: BackendSpec) -> Result<Self, BackendError> {
        let url = spec.url.as_deref().unwrap_or(DEFAULT_OLLAMA_URL);
        let invalid = |err: &dyn std::fmt::Display| {
            BackendError::new(FailureKind::InvalidRequest, err.to_string())
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            let why = format!(
                "`url` '{}' must be an http:// or https:// URL such as {DEFAULT_OLLAMA_URL}",
                redact_url(url)
            );
            return Err(invalid(&why));
        }
        // enrich's reqwest brings no TLS provider of its own: every client is handed this one.
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config_for(url).map_err(|err| invalid(&err))?)
            .connect_timeout(http::connect_timeout(spec.timeout()))
            .build()
            .map_err(|err| invalid(&err).with_source(err))?;
        let base = url.trim_end_matches('/').to_owned();
        Ok(Self {
            shown: redact_url(&base),
            base,
            spec,
            client,
        })
    }

    /// The request body: messages, the schema as `format`, and the options.
    fn body(&self, request: &GenerateRequest) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": &**system}));
        }
        messages.push(json!({"role": "user", "content": &*request.prompt}));
        // Everything in `options` is the provider's: enrich's own keys (`max_in_flight`) are
        // fields of the spec.
        let mut options = self.spec.options.clone();
        if let Some(max) = request.max_output_tokens {
            options.entry("num_predict").or_insert(max.into());
        }
        json!({
            "model": self.spec.model,
            "messages": messages,
            "stream": false,
            // Structured output: Ollama constrains the model to the schema.
            "format": request.schema.as_ref().map_or_else(|| "json".into(), OutputSchema::to_value),
            "options": options,
        })
    }

    /// Classifies a failure to send the request or read the answer.
    fn transport_error(&self, err: reqwest::Error) -> BackendError {
        let kind = if err.is_connect() {
            FailureKind::Connect
        } else if err.is_timeout() {
            FailureKind::Timeout
        } else {
            FailureKind::ServerError
        };
        let message = format!("{} failed: {}", self.shown, error_chain(&err.without_url()));
        BackendError::new(kind, message)
    }

    /// Classifies an HTTP error status, quoting Ollama's `{"error": "…"}`.
    fn status_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> BackendError {
        let said = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| Some(v.get("error")?.as_str()?.to_owned()))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let kind = http::status_kind(status, says_context_exceeded(&said));
        let model = &self.spec.model;
        let err = BackendError::new(
            kind,
            format!(
                "{} answered HTTP {status} for model '{model}': {}",
                self.shown,
                excerpt(&said)
            ),
        );
        match retry_after {
            Some(wait) => err.with_retry_after(wait),
            None => err,
        }
    }
}

/// The part of `/api/chat`'s answer this adapter reads.
#[derive(Deserialize)]
struct ChatReply {
    model: Option<String>,
    #[serde(default)]
    message: ReplyMessage,
    done_reason: Option<String>,
    /// The prompt's tokens, those read from the prompt cache included when
    /// `prompt_eval_cached_count` is reported.
    prompt_eval_count: Option<u64>,
    /// The prompt tokens read from the prompt cache (recent Ollama versions).
    prompt_eval_cached_count: Option<u64>,
    eval_count: Option<u64>,
    total_duration: Option<u64>,
    load_duration: Option<u64>,
    prompt_eval_duration: Option<u64>,
    eval_duration: Option<u64>,
}

#[derive(Default, Deserialize)]
struct ReplyMessage {
    #[serde(default)]
    content: String,
    /// A thinking model may put its whole answer here and leave `content` empty.
    #[serde(default)]
    thinking: String,
}

#[async_trait::async_trait]
impl BackendAdapter for ChatAdapter {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.shown.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let response = self
            .client
            .post(format!("{}/api/chat", self.base))
            .timeout(self.spec.timeout())
            .json(&self.body(request))
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| http::retry_after(v.to_str().ok()?, SystemTime::now()));
        let mut response = response;
        if !(200..300).contains(&status) {
            // An error body is only quoted: read its start, never all of it.
            let mut body = Vec::new();
            while body.len() < ERROR_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
            return Err(self.status_error(status, retry_after, &body));
        }
        // Every answer is read under the backend's `max_response_bytes`: a larger one fails as
        // `response_too_large` without being read whole.
        let mut limit = ResponseLimit::new(self.describe_host(), self.spec.max_response_bytes());
        limit.check_declared(response.content_length())?;
        let mut body = Vec::with_capacity(limit.initial_capacity(response.content_length()));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport_error(err))?
        {
            limit.append(&mut body, &chunk)?;
        }
        let reply: ChatReply = serde_json::from_slice(&body).map_err(|err| {
            let message = format!(
                "{} sent something other than a chat answer: {err}",
                self.shown
            );
            BackendError::new(FailureKind::ServerError, message)
        })?;

        let metrics = UsageMetrics {
            model: reply.model.unwrap_or_else(|| self.spec.model.clone()),
            host: self.describe_host(),
            // What the server evaluated: the tokens it read from its prompt cache cost nothing.
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
            // `length` means truncated; returning it as `Ok` lets the cascade judge the text.
            done_reason: reply.done_reason,
        };
        let metrics = UsageMetrics {
            tokens_per_second: metrics.derived_tokens_per_second(),
            ..metrics
        };
        let ReplyMessage { content, thinking } = reply.message;
        let text = if content.trim().is_empty() {
            thinking
        } else {
            content
        };
        // Validating the text is the cascade's job, not the adapter's.
        Ok(Generation { text, metrics })
    }

    /// `GET /api/tags`: is the server up, and has it pulled the model?
    async fn health(&self) -> HealthReport {
        #[derive(Deserialize)]
        struct Tags {
            models: Vec<Tag>,
        }
        #[derive(Deserialize)]
        struct Tag {
            name: String,
        }
        let tags = self
            .client
            .get(format!("{}/api/tags", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let tags = match tags {
            Ok(response) => response.json::<Tags>().await,
            Err(err) => {
                let mut report = HealthReport::unknown(format!(
                    "cannot reach {}: {}",
                    self.shown,
                    err.without_url()
                ));
                report.reachable = Some(false);
                report.fixes.push(format!("start Ollama at {}", self.shown));
                return report;
            }
        };
        let mut report = HealthReport {
            reachable: Some(true),
            ..HealthReport::default()
        };
        match tags {
            Ok(tags) => {
                let model = &self.spec.model;
                let present = tags.models.iter().any(|tag| &tag.name == model);
                report.model_present = Some(present);
                if !present {
                    report
                        .messages
                        .push(format!("model '{model}' is not pulled"));
                    report.fixes.push(format!("ollama pull {model}"));
                }
            }
            Err(err) => report
                .messages
                .push(format!("cannot read /api/tags: {}", err.without_url())),
        }
        report
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            structured_output: true,
            streaming: false,
            usage_metrics: true,
            output_token_limit: true,
        }
    }
}
