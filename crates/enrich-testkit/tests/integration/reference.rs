//! Small reference adapters over reqwest, one per API, written from the wire formats alone:
//! the conformance suite must pass them, and must fail them when a [`Quirk`] breaks a rule.

use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, BackendError, Capabilities, FailureKind, GenerateRequest, Generation,
    HealthReport, ResponseLimit, UsageMetrics,
};
use enrich_config::{BackendSpec, redact_url};
use enrich_testkit::Api;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

/// A deliberate deviation from the rules, to prove the suite notices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quirk {
    /// None: a correct adapter.
    None,
    /// No client timeout: leaves timeouts to the cascade (allowed).
    NoClientTimeout,
    /// Classifies 5xx as overloaded.
    ServerErrorAsOverloaded,
    /// Does not send the schema.
    NoSchema,
    /// Builds a new HTTP client for every call.
    ClientPerCall,
    /// Ignores `Retry-After`.
    IgnoresRetryAfter,
    /// Passes a truncated answer on as an ordinary one.
    HidesTruncation,
    /// Reads whole answers, whatever their size.
    ReadsWholeAnswers,
    /// Shows its URL with the credentials in it.
    ShowsCredentials,
    /// Sends the system prompt after the prompt (Ollama: appended to `prompt`; chat: a second
    /// message), so no two spans' requests share a prefix.
    SystemLast,
}

pub(crate) struct Reference {
    api: Api,
    spec: BackendSpec,
    base: String,
    client: reqwest::Client,
    quirk: Quirk,
}

/// The factory `run_conformance` takes.
pub(crate) fn factory(
    api: Api,
    quirk: Quirk,
) -> impl Fn(&BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError> {
    move |spec| Ok(Arc::new(Reference::new(api, spec, quirk)?))
}

impl Reference {
    fn new(api: Api, spec: &BackendSpec, quirk: Quirk) -> Result<Self, BackendError> {
        let base = spec
            .url
            .clone()
            .ok_or_else(|| BackendError::new(FailureKind::InvalidRequest, "no url"))?;
        Ok(Self {
            api,
            spec: spec.clone(),
            base: base.trim_end_matches('/').to_owned(),
            client: client(spec, quirk)?,
            quirk,
        })
    }

    fn client(&self) -> Result<reqwest::Client, BackendError> {
        if self.quirk == Quirk::ClientPerCall {
            client(&self.spec, self.quirk)
        } else {
            Ok(self.client.clone())
        }
    }

    fn body(&self, request: &GenerateRequest) -> Value {
        let schema = request
            .schema
            .as_ref()
            .filter(|_| self.quirk != Quirk::NoSchema);
        let system = request.system.as_deref().unwrap_or_default();
        match self.api {
            Api::Ollama if self.quirk == Quirk::SystemLast => json!({
                "model": self.spec.model,
                "prompt": format!("{}\n{system}", request.prompt),
                "stream": false,
                "format": schema,
                "options": self.spec.options,
            }),
            Api::Ollama => {
                let mut options = self.spec.options.clone();
                if let Some(max) = request.max_output_tokens {
                    options.insert("num_predict".to_owned(), json!(max));
                }
                json!({
                    "model": self.spec.model,
                    "prompt": &*request.prompt,
                    "system": system,
                    "stream": false,
                    "format": schema,
                    "options": options,
                })
            }
            Api::OpenAiCompatible => {
                let mut body = json!({
                    "model": self.spec.model,
                    "messages": if self.quirk == Quirk::SystemLast {
                        json!([
                            { "role": "user", "content": &*request.prompt },
                            { "role": "system", "content": system },
                        ])
                    } else {
                        json!([
                            { "role": "system", "content": system },
                            { "role": "user", "content": &*request.prompt },
                        ])
                    },
                    "max_tokens": request.max_output_tokens,
                });
                if let Some(schema) = schema {
                    body["response_format"] = json!({
                        "type": "json_schema",
                        "json_schema": { "name": "enrichment", "schema": schema },
                    });
                }
                for (key, value) in &self.spec.options {
                    body[key] = value.clone();
                }
                body
            }
        }
    }

    fn path(&self) -> &'static str {
        match self.api {
            Api::Ollama => "/api/generate",
            Api::OpenAiCompatible => "/chat/completions",
        }
    }

    fn classify_status(
        &self,
        status: StatusCode,
        retry_after: Option<u64>,
        message: String,
    ) -> BackendError {
        let kind = match status.as_u16() {
            503 | 429 => FailureKind::Overloaded,
            404 => FailureKind::ModelNotFound,
            401 | 403 => FailureKind::Auth,
            400 if message.contains("context length") => FailureKind::ContextExceeded,
            400..=499 => FailureKind::InvalidRequest,
            _ if self.quirk == Quirk::ServerErrorAsOverloaded => FailureKind::Overloaded,
            _ => FailureKind::ServerError,
        };
        let mut err = BackendError::new(
            kind,
            format!("{} answered {status}: {message}", self.shown()),
        );
        if self.quirk != Quirk::IgnoresRetryAfter {
            err.retry_after = retry_after.map(Duration::from_secs);
        }
        err
    }

    /// The base URL as shown to people.
    fn shown(&self) -> String {
        if self.quirk == Quirk::ShowsCredentials {
            self.base.clone()
        } else {
            redact_url(&self.base)
        }
    }

    fn read(&self, body: &Value) -> Generation {
        let str_at = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
        let u64_at = |pointer: &str| body.pointer(pointer).and_then(Value::as_u64);
        let mut metrics =
            UsageMetrics::new(str_at("/model").unwrap_or_default(), self.describe_host());
        let text = match self.api {
            Api::Ollama => {
                metrics.prompt_eval_count = u64_at("/prompt_eval_count");
                metrics.eval_count = u64_at("/eval_count");
                metrics.total_duration_ns = u64_at("/total_duration");
                metrics.load_duration_ns = u64_at("/load_duration");
                metrics.prompt_eval_duration_ns = u64_at("/prompt_eval_duration");
                metrics.eval_duration_ns = u64_at("/eval_duration");
                metrics.done_reason = str_at("/done_reason").map(str::to_owned);
                match str_at("/response").unwrap_or_default() {
                    "" => str_at("/thinking").unwrap_or_default(),
                    text => text,
                }
            }
            Api::OpenAiCompatible => {
                metrics.prompt_eval_count = u64_at("/usage/prompt_tokens");
                metrics.eval_count = u64_at("/usage/completion_tokens");
                metrics.done_reason = str_at("/choices/0/finish_reason").map(str::to_owned);
                str_at("/choices/0/message/content").unwrap_or_default()
            }
        };
        Generation {
            text: text.to_owned(),
            metrics,
        }
    }
}

fn client(spec: &BackendSpec, quirk: Quirk) -> Result<reqwest::Client, BackendError> {
    let mut builder = enrich_testkit::http_client_builder();
    if quirk != Quirk::NoClientTimeout {
        builder = builder.timeout(spec.timeout());
    }
    builder
        .build()
        .map_err(|err| BackendError::new(FailureKind::InvalidRequest, err.to_string()))
}

fn transport(err: reqwest::Error) -> BackendError {
    let kind = if err.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Connect
    };
    BackendError::new(kind, err.to_string())
}

/// The `error` of an error body, in either API's shape.
fn error_message(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    value
        .pointer("/error/message")
        .or_else(|| value.get("error"))
        .and_then(Value::as_str)
        .unwrap_or(body)
        .to_owned()
}

#[async_trait::async_trait]
impl BackendAdapter for Reference {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.shown()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let url = format!("{}{}", self.base, self.path());
        let response = self
            .client()?
            .post(url)
            .json(&self.body(request))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let text = if self.quirk == Quirk::ReadsWholeAnswers {
            response.text().await.map_err(transport)?
        } else {
            let mut limit =
                ResponseLimit::new(self.describe_host(), self.spec.max_response_bytes());
            let mut response = response;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                limit.append(&mut body, &chunk)?;
            }
            String::from_utf8_lossy(&body).into_owned()
        };
        if !status.is_success() {
            return Err(self.classify_status(status, retry_after, error_message(&text)));
        }
        let body: Value = serde_json::from_str(&text)
            .map_err(|err| BackendError::new(FailureKind::ServerError, err.to_string()))?;
        let generation = self.read(&body);
        if generation.metrics.is_truncated() && self.quirk != Quirk::HidesTruncation {
            return Err(BackendError::new(
                FailureKind::Truncated,
                "cut at the token limit",
            ));
        }
        let mut generation = generation;
        if self.quirk == Quirk::HidesTruncation {
            generation.metrics.done_reason = Some("stop".to_owned());
        }
        Ok(generation)
    }

    async fn health(&self) -> HealthReport {
        let path = match self.api {
            Api::Ollama => "/api/tags",
            Api::OpenAiCompatible => "/models",
        };
        let mut report = HealthReport::default();
        let listed = async {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .send()
                .await?;
            response.json::<Value>().await
        }
        .await;
        let Ok(listed) = listed else {
            report.reachable = Some(false);
            report
                .messages
                .push(format!("{} is unreachable", self.shown()));
            return report;
        };
        report.reachable = Some(true);
        let names = listed
            .get("models")
            .or_else(|| listed.get("data"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("name").or_else(|| m.get("id"))?.as_str());
        let present = names.into_iter().any(|name| name == self.spec.model);
        report.model_present = Some(present);
        if !present {
            report
                .fixes
                .push(format!("ollama pull {}", self.spec.model));
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
