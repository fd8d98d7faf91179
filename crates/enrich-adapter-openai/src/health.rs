//! The health check behind `enrich doctor`: `GET {url}/models`; and the model's digest from the
//! same listing, when the server gives one.

use enrich_backends::{BackendAdapter, HealthReport};

use enrich_backends::http::{body_excerpt, excerpt};

use crate::adapter::{OpenAiAdapter, health_timeout};
use crate::transport::{BodyError, Endpoint};
use crate::wire::{ErrorInfo, ModelsReply};

/// The most listed models named in a message.
const LISTED_IN_MESSAGE: usize = 10;

/// Checks that the server answers, accepts the key and lists the model; never fails, it
/// reports.
pub(crate) async fn check(adapter: &OpenAiAdapter) -> HealthReport {
    let settings = adapter.settings();
    let host = &settings.host;
    let model = &adapter.spec().model;
    let var = &settings.api_key_var;
    let timeout = health_timeout(settings);
    let mut report = HealthReport::default();

    let exchange = async {
        let reply = adapter.transport().send(Endpoint::Models, None).await?;
        let status = reply.status();
        match reply.bytes(adapter.limit()).await {
            Ok(body) => Ok((status, Ok(body))),
            Err(BodyError::TooLarge(err)) => Ok((status, Err(err))),
            Err(BodyError::Transport(err)) => Err(err),
        }
    };
    let start_it =
        || format!("start the server so that it answers at {host}, or fix the backend's `url`");
    let (status, body) = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => {
            let explained = adapter.explain(&err);
            let fix = match (explained.tls, explained.fix) {
                (true, Some(fix)) => fix,
                _ => start_it(),
            };
            return unreachable(report, host, &explained.detail, fix);
        }
        Err(_) => {
            let why = format!("no answer within {} s", timeout.as_secs_f64());
            return unreachable(report, host, &why, start_it());
        }
    };
    report.reachable = Some(true);
    let body = match body {
        Ok(body) => body,
        Err(too_large) => {
            report
                .messages
                .push(format!("GET /models: {}", too_large.message));
            return report;
        }
    };

    if matches!(status.as_u16(), 401 | 403) {
        report.credentials_accepted = Some(false);
        report.messages.push(format!(
            "{host} refused the credentials for GET /models with HTTP {}: \"{}\"",
            status.as_u16(),
            excerpt(&ErrorInfo::from_body(&body).message)
        ));
        report.fixes.push(if settings.api_key.is_some() {
            format!("check the API key in {var}: {host} refuses it")
        } else {
            format!(
                "{host} wants an API key: export {var} with it, or set the backend's \
                 `api_key_env` to the variable holding it"
            )
        });
        return report;
    }
    let listed = if status.is_success() {
        serde_json::from_slice::<ModelsReply>(&body).map_err(|err| err.to_string())
    } else {
        Err(format!(
            "HTTP {}: \"{}\"",
            status.as_u16(),
            excerpt(&ErrorInfo::from_body(&body).message)
        ))
    };
    let listed = match listed {
        Ok(listed) => listed,
        // A 404 without an API's JSON error: no API answers here at all.
        Err(why) if status.as_u16() == 404 && !is_json_object(&body) => {
            report.api_recognised = Some(false);
            report.messages.push(format!(
                "this is not an OpenAI-compatible API: {host} answered GET /models with {why}"
            ));
            report.fixes.push(format!(
                "check the backend's `url`: {host} must be the API's base URL (usually ending in \
                 /v1, e.g. http://localhost:8000/v1); for Ollama's own API set provider = \
                 \"ollama\" instead"
            ));
            return report;
        }
        Err(why) => {
            report.messages.push(format!(
                "{host} answers, but GET /models did not list models ({why}): \"{}\"",
                body_excerpt(&body)
            ));
            report.fixes.push(format!(
                "check that {host} is the API's base URL (usually ending in /v1)"
            ));
            return report;
        }
    };

    let found = listed
        .data
        .iter()
        .find(|entry| same_model(&entry.id, model));
    report.model_present = Some(found.is_some());
    match found {
        Some(entry) => {
            report
                .messages
                .push(format!("{host} answers and lists model '{model}'"));
            if let Some(length) = entry.max_model_len.or(entry.context_length) {
                report.context_length = Some(length);
                report.messages.push(format!(
                    "model '{model}' has a context length of {length} tokens"
                ));
            }
        }
        None => {
            let mut names: Vec<&str> = listed
                .data
                .iter()
                .take(LISTED_IN_MESSAGE)
                .map(|entry| entry.id.as_str())
                .collect();
            if listed.data.len() > LISTED_IN_MESSAGE {
                names.push("…");
            }
            let names = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            };
            report.messages.push(format!(
                "model '{model}' is not listed at {host} (listed: {names})"
            ));
            report.fixes.push(format!(
                "set the backend's `model` to one that {host} lists, or make the server serve \
                 '{model}'"
            ));
        }
    }
    report
}

/// The `digest` the server's `GET /models` lists for the configured model. OpenAI's own listing
/// has none; some compatible servers add one. `None` when there is none, the model is not
/// listed, or the server does not answer in a health check's time (never an error).
pub(crate) async fn model_digest(adapter: &OpenAiAdapter) -> Option<String> {
    let model = &adapter.spec().model;
    let exchange = async {
        let reply = adapter
            .transport()
            .send(Endpoint::Models, None)
            .await
            .ok()?;
        if !reply.status().is_success() {
            return None;
        }
        reply.bytes(adapter.limit()).await.ok()
    };
    let body = tokio::time::timeout(health_timeout(adapter.settings()), exchange)
        .await
        .ok()??;
    serde_json::from_slice::<ModelsReply>(&body)
        .ok()?
        .data
        .into_iter()
        .find(|entry| same_model(&entry.id, model))?
        .digest
        .map(|digest| digest.trim().to_owned())
        .filter(|digest| !digest.is_empty())
}

/// Whether `body` is a JSON object, as every API's error body is.
fn is_json_object(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|value| value.is_object())
}

/// The report for a server that did not answer `GET /models`: `why`, and the `fix`.
fn unreachable(mut report: HealthReport, host: &str, why: &str, fix: String) -> HealthReport {
    report.reachable = Some(false);
    report
        .messages
        .push(format!("cannot reach {host}: GET /models failed ({why})"));
    report.fixes.push(fix);
    report
}

/// Whether a listed model id names the configured model: equal ignoring ASCII case, or equal
/// once a missing tag is read as `:latest` (Ollama's `/v1/models` lists `qwen2.5:latest`).
pub(crate) fn same_model(listed: &str, configured: &str) -> bool {
    let normalise = |name: &str| {
        let name = name.trim().to_ascii_lowercase();
        if name.rsplit('/').next().unwrap_or_default().contains(':') {
            name
        } else {
            format!("{name}:latest")
        }
    };
    !listed.trim().is_empty() && normalise(listed) == normalise(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_models_match_the_configured_one() {
        let check = |listed: &str, configured: &str, same: bool| {
            assert_eq!(
                same_model(listed, configured),
                same,
                "{listed} {configured}"
            );
        };
        check("gpt-4o-mini", "gpt-4o-mini", true);
        check("GPT-4o-mini", "gpt-4o-mini", true);
        check("qwen2.5:latest", "qwen2.5", true);
        check("Qwen/Qwen2.5-7B-Instruct", "qwen/qwen2.5-7b-instruct", true);
        check("gpt-4o", "gpt-4o-mini", false);
        check("qwen2.5:7b", "qwen2.5", false);
        check("", "", false);
    }
}
