//! The health check behind `enrich doctor`: `/api/version`, `/api/tags`, `/api/show`; and the
//! model's digest from `/api/tags`.

use enrich_backends::http::{error_chain, excerpt};
use enrich_backends::tls::tls_fix;
use enrich_backends::{BackendAdapter, HealthReport, ResponseLimit};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::adapter::{BodyError, OllamaAdapter, health_timeout, read_body};
use crate::classify::error_text;
use crate::wire::{ShowBody, ShowReply, TagsReply, VersionReply};

/// Why one health probe failed.
enum ProbeError {
    /// No HTTP answer at all (refused, DNS, timeout, a failed TLS handshake), and the fix when
    /// it is particular (TLS).
    Unreachable(String, Option<&'static str>),
    /// The server refused the credentials (HTTP 401 or 403).
    Refused(String),
    /// HTTP 404 on a route every Ollama server has: something else answers at the URL.
    NotOllama(String),
    /// An answer, but not the expected one.
    Answer(String),
}

impl ProbeError {
    fn into_message(self) -> String {
        match self {
            ProbeError::Unreachable(message, _)
            | ProbeError::Refused(message)
            | ProbeError::NotOllama(message)
            | ProbeError::Answer(message) => message,
        }
    }
}

/// Checks the server, the model and its context length; never fails, it reports.
pub(crate) async fn check(adapter: &OllamaAdapter) -> HealthReport {
    let settings = adapter.settings();
    let host = &settings.host;
    let model = &adapter.spec().model;
    let mut report = HealthReport::default();

    let version = adapter.client().get(settings.version_url.clone());
    match probe::<VersionReply>(adapter, version, "GET /api/version").await {
        Ok(reply) => {
            report.reachable = Some(true);
            report
                .messages
                .push(format!("Ollama {} answers at {host}", reply.version));
            report.version = Some(reply.version);
        }
        Err(ProbeError::Unreachable(message, fix)) => {
            report.reachable = Some(false);
            report.messages.push(message);
            report.fixes.push(fix.map_or_else(
                || {
                    format!(
                        "start Ollama (`ollama serve`) so that it listens at {host}, or fix the \
                         backend's `url` (or OLLAMA_HOST)"
                    )
                },
                str::to_owned,
            ));
            return report;
        }
        Err(ProbeError::Refused(message)) => {
            report.reachable = Some(true);
            report.credentials_accepted = Some(false);
            report.messages.push(message);
            report.fixes.push(match &adapter.spec().api_key_env {
                Some(var) => format!(
                    "check the key in {var}: {host} refuses it (or remove `api_key_env` if the \
                     server needs no key)"
                ),
                None => format!(
                    "{host} wants credentials: set `api_key_env` on the backend to the name of \
                     the variable holding its key"
                ),
            });
            return report;
        }
        Err(ProbeError::NotOllama(message)) => {
            report.reachable = Some(true);
            report.api_recognised = Some(false);
            report.messages.push(message);
            report.fixes.push(not_ollama_fix(host));
            return report;
        }
        Err(ProbeError::Answer(message)) => {
            report.reachable = Some(true);
            report.messages.push(message);
            report.fixes.push(format!(
                "check that {host} is an Ollama server, or fix the backend's `url` (or \
                 OLLAMA_HOST)"
            ));
            return report;
        }
    }

    let tags = adapter.client().get(settings.tags_url.clone());
    match probe::<TagsReply>(adapter, tags, "GET /api/tags").await {
        Ok(reply) => {
            let present = reply
                .models
                .iter()
                .any(|entry| same_model(&entry.name, model) || same_model(&entry.model, model));
            report.model_present = Some(present);
            if present {
                report.messages.push(format!("model '{model}' is pulled"));
            } else {
                let pulled: Vec<&str> = reply.models.iter().map(|m| m.name.as_str()).collect();
                let pulled = if pulled.is_empty() {
                    "none".to_owned()
                } else {
                    pulled.join(", ")
                };
                report.messages.push(format!(
                    "model '{model}' is not pulled at {host} (pulled models: {pulled})"
                ));
                report.fixes.push(format!(
                    "run `ollama pull {model}` on the server at {host}, or fix the backend's \
                     `model`"
                ));
            }
        }
        Err(ProbeError::NotOllama(message)) => {
            report.api_recognised = Some(false);
            report.messages.push(message);
            report.fixes.push(not_ollama_fix(host));
            return report;
        }
        Err(err) => report.messages.push(format!(
            "cannot list the pulled models: {}",
            err.into_message()
        )),
    }

    if report.model_present == Some(true) {
        let show = adapter
            .client()
            .post(settings.show_url.clone())
            .json(&ShowBody { model });
        match probe::<ShowReply>(adapter, show, "POST /api/show").await {
            Ok(reply) => match reply.context_length() {
                Some(length) => {
                    report.context_length = Some(length);
                    report.messages.push(format!(
                        "model '{model}' has a context length of {length} tokens"
                    ));
                    let num_ctx = settings.options.get("num_ctx").and_then(Value::as_u64);
                    if let Some(num_ctx) = num_ctx.filter(|&n| n > length) {
                        report.messages.push(format!(
                            "the backend's `num_ctx` ({num_ctx}) exceeds what model '{model}' \
                             was trained for ({length})"
                        ));
                        report
                            .fixes
                            .push(format!("lower `num_ctx` to at most {length}"));
                    }
                }
                None => report.messages.push(format!(
                    "Ollama does not report the context length of model '{model}'"
                )),
            },
            Err(err) => report.messages.push(format!(
                "cannot read the details of model '{model}': {}",
                err.into_message()
            )),
        }
    }
    report
}

/// The digest `/api/tags` lists for the configured model; `None` when the server does not
/// answer in a health check's time, lists no such model, or gives no digest (never an error).
pub(crate) async fn model_digest(adapter: &OllamaAdapter) -> Option<String> {
    let model = &adapter.spec().model;
    let tags = adapter.client().get(adapter.settings().tags_url.clone());
    let reply = probe::<TagsReply>(adapter, tags, "GET /api/tags")
        .await
        .ok()?;
    reply
        .models
        .into_iter()
        .find(|entry| same_model(&entry.name, model) || same_model(&entry.model, model))?
        .digest
        .map(|digest| digest.trim().to_owned())
        .filter(|digest| !digest.is_empty())
}

/// Sends one probe and reads its JSON answer.
async fn probe<T: DeserializeOwned>(
    adapter: &OllamaAdapter,
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, ProbeError> {
    let settings = adapter.settings();
    let host = &settings.host;
    let timeout = health_timeout(settings);
    let unreachable = |err: reqwest::Error| {
        let err = err.without_url();
        let why = if err.is_timeout() && !err.is_connect() {
            format!("no answer within {} s", timeout.as_secs_f64())
        } else {
            error_chain(&err)
        };
        ProbeError::Unreachable(
            format!("cannot reach Ollama at {host}: {what} failed ({why})"),
            tls_fix(&err),
        )
    };
    let mut response = request.timeout(timeout).send().await.map_err(unreachable)?;
    let status = response.status();
    let limit = ResponseLimit::new(host, settings.max_response_bytes);
    let body = read_body(&mut response, limit)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge(err) => ProbeError::Answer(err.message),
            BodyError::Transport(err) => unreachable(err),
        })?;
    if matches!(status.as_u16(), 401 | 403) {
        return Err(ProbeError::Refused(format!(
            "{host} refused the credentials for {what} with HTTP {}: \"{}\"",
            status.as_u16(),
            error_text(&body)
        )));
    }
    if status.as_u16() == 404 && what.starts_with("GET ") {
        // Every Ollama server answers its GET routes; a 404 there is another server.
        return Err(ProbeError::NotOllama(format!(
            "this is not an Ollama server: {host} answered {what} with HTTP 404: \"{}\"",
            error_text(&body)
        )));
    }
    if !status.is_success() {
        return Err(ProbeError::Answer(format!(
            "{host} answered {what} with HTTP {}: \"{}\"",
            status.as_u16(),
            error_text(&body)
        )));
    }
    serde_json::from_slice(&body).map_err(|err| {
        ProbeError::Answer(format!(
            "{host} answered {what} with something other than Ollama's JSON ({err}): \"{}\"",
            excerpt(&String::from_utf8_lossy(&body))
        ))
    })
}

/// How to fix a backend whose URL answers but is not an Ollama server.
fn not_ollama_fix(host: &str) -> String {
    format!(
        "check the backend's `url` (or OLLAMA_HOST): {host} is some other server; Ollama listens \
         on port 11434 by default. For an OpenAI-compatible server (vLLM, llama.cpp, LM Studio) \
         set provider = \"openai\" and its base URL (usually ending in /v1)"
    )
}

/// Whether two model names mean the same model, as Ollama matches them: case-insensitive, a
/// missing tag means `:latest`, and the default registry and namespace may be left out.
pub(crate) fn same_model(a: &str, b: &str) -> bool {
    !a.trim().is_empty() && normalise_model(a) == normalise_model(b)
}

fn normalise_model(name: &str) -> String {
    let mut name = name.trim().to_ascii_lowercase();
    for prefix in ["registry.ollama.ai/", "library/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest.to_owned();
        }
    }
    if !name.rsplit('/').next().unwrap_or_default().contains(':') {
        name.push_str(":latest");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_match_as_ollama_matches_them() {
        let check = |a: &str, b: &str, same: bool| assert_eq!(same_model(a, b), same, "{a} {b}");
        check("qwen2.5", "qwen2.5:latest", true);
        check("Qwen2.5:7B-Instruct", "qwen2.5:7b-instruct", true);
        check("registry.ollama.ai/library/qwen2.5:latest", "qwen2.5", true);
        check("library/qwen2.5", "qwen2.5", true);
        check("me/qwen2.5", "qwen2.5", false);
        check("qwen2.5:7b", "qwen2.5", false);
        check("localhost:5000/m", "localhost:5000/m:latest", true);
        check("", "", false);
    }
}
