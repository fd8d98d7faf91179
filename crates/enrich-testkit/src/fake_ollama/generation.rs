//! Generations (`/api/generate`, `/api/chat`, `/v1/chat/completions`): the request checked
//! (model, `stream`, `format`, the prompt against the context length), admitted
//! ([`super::admission`]), held for the latency, then answered ([`super::reply`]).

use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::Value;

use super::admission::{self, Tally};
use super::config::Fault;
use super::reply::Answer;
use super::routes::{Refusal, invalid, model_not_found, read_body};
use super::server::{Model, Shared};
use super::stats::{Endpoint, Outcome};
use super::wire::{self, ApiError, OllamaLine, Reply};
use crate::answer::{cited_lines, enrichment_json, fingerprint, nonsense_json};

/// Ollama's answer when the prompt does not fit the context.
pub(crate) const CONTEXT_MESSAGE: &str = "the input length exceeds the context length";

/// The text a generation request asks about, in citation priority order.
pub(super) struct Prompt<'a> {
    parts: Vec<&'a str>,
    pub(super) bytes: usize,
}

impl<'a> Prompt<'a> {
    /// `/api/generate`: the prompt, then the system prompt. Chats: the last user message, then
    /// every other message in order. OpenAI content may be a list of `{"type":"text"}` parts.
    fn read(endpoint: Endpoint, body: &'a Value) -> Result<Self, Refusal> {
        let mut parts = Vec::new();
        if endpoint == Endpoint::Generate {
            for key in ["prompt", "system"] {
                match body.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => parts.push(s.as_str()),
                    Some(_) => return Err(invalid(format!("`{key}` must be a string"))),
                }
            }
        } else {
            let messages = match body.get("messages") {
                None | Some(Value::Null) => &[][..],
                Some(Value::Array(messages)) => messages.as_slice(),
                Some(_) => return Err(invalid("`messages` must be a list")),
            };
            let last_user = messages
                .iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
            let order = last_user
                .into_iter()
                .chain((0..messages.len()).filter(|&i| Some(i) != last_user));
            for i in order {
                content_parts(&messages[i], &mut parts)?;
            }
        }
        let bytes = parts.iter().map(|p| p.len()).sum();
        Ok(Self { parts, bytes })
    }

    fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The enrichment answer: for the first cited line range, else lines 1-1.
    pub(super) fn enrichment(&self) -> String {
        let ((start, end), source) = self.cited();
        enrichment_json(start, end, fingerprint(source))
    }

    /// The nonsense answer ([`Fault::Nonsense`](super::Fault::Nonsense)) for the lines the
    /// prompt cites.
    pub(super) fn nonsense(&self) -> String {
        let ((start, end), _) = self.cited();
        nonsense_json(start, end)
    }

    /// The line range the prompt cites (`1-1` when none) and the part that cites it.
    fn cited(&self) -> ((u32, u32), &str) {
        let cited = self
            .parts
            .iter()
            .find_map(|part| cited_lines(part).map(|range| (range, *part)));
        cited.unwrap_or(((1, 1), self.parts.first().copied().unwrap_or_default()))
    }
}

/// The prompt size the fake counts tokens of, for a recorded generation request body.
pub(crate) fn prompt_bytes(endpoint: Endpoint, body: &Value) -> Option<usize> {
    Prompt::read(endpoint, body).ok().map(|prompt| prompt.bytes)
}

fn content_parts<'a>(message: &'a Value, parts: &mut Vec<&'a str>) -> Result<(), Refusal> {
    match message.get("content") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            parts.push(s);
            Ok(())
        }
        Some(Value::Array(items)) => {
            parts.extend(items.iter().filter_map(|i| i.get("text")?.as_str()));
            Ok(())
        }
        Some(_) => Err(invalid(
            "a message's `content` must be a string or a list of parts",
        )),
    }
}

/// `/api/generate`, `/api/chat` and `/v1/chat/completions`.
pub(super) async fn generation(
    shared: &Shared,
    tally: &Tally<'_>,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<(Reply, Outcome), Refusal> {
    let body = read_body(shared, endpoint, request).await?;
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return Err(invalid("model is required"));
    };
    let Some(served) = shared.find_model(model) else {
        return Err(model_not_found(model));
    };
    let openai = endpoint == Endpoint::ChatCompletions;
    let stream = wants_stream(&body, openai)?;
    if openai {
        check_response_format(&body)?;
    } else {
        check_format(&body)?;
    }
    let prompt = Prompt::read(endpoint, &body)?;
    if prompt.is_empty() {
        return empty_prompt(served, endpoint, model);
    }
    check_context(shared, &body, &prompt)?;

    let fault = shared.next_fault();
    let _held = admission::enter(shared, fault).await?;
    served.loaded.store(true, Ordering::Relaxed);
    if fault == Some(Fault::Hang) {
        tally.count(Outcome::Hang);
        return std::future::pending().await;
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    answer(shared, endpoint, model, &prompt, fault, stream)
}

/// Whether the answer is streamed: Ollama's default is yes; the fake's OpenAI route does not
/// stream and refuses a request that asks it to.
fn wants_stream(body: &Value, openai: bool) -> Result<bool, Refusal> {
    let stream = body.get("stream").and_then(Value::as_bool);
    if !openai {
        return Ok(stream.unwrap_or(true));
    }
    if stream == Some(true) {
        return Err(invalid(
            "fake ollama does not stream /v1/chat/completions; send \"stream\": false",
        ));
    }
    Ok(false)
}

/// A request without prompt text: Ollama loads the model and answers at once; OpenAI's route
/// refuses it.
fn empty_prompt(
    served: &Model,
    endpoint: Endpoint,
    model: &str,
) -> Result<(Reply, Outcome), Refusal> {
    if endpoint == Endpoint::ChatCompletions {
        return Err(invalid(
            "`messages` must hold at least one message with content",
        ));
    }
    served.loaded.store(true, Ordering::Relaxed);
    let created_at = wire::rfc3339_now();
    let line = OllamaLine::new(endpoint == Endpoint::Chat, model, &created_at, "", None)
        .done("load", None);
    Ok((wire::json(StatusCode::OK, &line), Outcome::Ok))
}

/// The prompt must fit the context: the request's `num_ctx`, at most the model's.
fn check_context(shared: &Shared, body: &Value, prompt: &Prompt<'_>) -> Result<(), Refusal> {
    let num_ctx = body
        .pointer("/options/num_ctx")
        .and_then(Value::as_u64)
        .map_or(shared.context_length, |n| n.min(shared.context_length));
    if crate::answer::estimate_tokens(prompt.bytes) > num_ctx {
        return Err((
            ApiError::new(StatusCode::BAD_REQUEST, CONTEXT_MESSAGE)
                .with_code("context_length_exceeded"),
            Outcome::ContextExceeded,
        ));
    }
    Ok(())
}

/// The answer to an admitted generation that drew `fault`, in the endpoint's dialect.
fn answer(
    shared: &Shared,
    endpoint: Endpoint,
    model: &str,
    prompt: &Prompt<'_>,
    fault: Option<Fault>,
    stream: bool,
) -> Result<(Reply, Outcome), Refusal> {
    let answer = Answer::new(prompt, fault);
    if answer.stream_error && !stream {
        // Without a stream to break, the failure is an ordinary 500.
        return Err((
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an error was encountered while running the model: unexpected EOF",
            ),
            Outcome::StreamError,
        ));
    }
    let oversized = fault == Some(Fault::Oversized);
    let reply = if endpoint == Endpoint::ChatCompletions {
        answer.openai(shared, model)
    } else {
        // Oversized and streamed: one final line, padded.
        answer.ollama(endpoint == Endpoint::Chat, model, stream && !oversized)
    };
    if oversized {
        return Ok((wire::padded(reply, shared.oversized_bytes), answer.outcome));
    }
    Ok((reply, answer.outcome))
}

/// Ollama's `format`: absent, `""`, `"json"` or a JSON Schema object.
fn check_format(body: &Value) -> Result<(), Refusal> {
    match body.get("format") {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(Value::String(s)) if s.is_empty() || s == "json" => Ok(()),
        Some(other) => Err(invalid(format!(
            "invalid format: {other}: expected \"json\" or a JSON schema"
        ))),
    }
}

/// OpenAI's `response_format`: `text`, `json_object`, or `json_schema` with a schema object.
fn check_response_format(body: &Value) -> Result<(), Refusal> {
    let Some(format) = body.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text" | "json_object") => Ok(()),
        Some("json_schema")
            if format
                .pointer("/json_schema/schema")
                .is_some_and(Value::is_object) =>
        {
            Ok(())
        }
        Some("json_schema") => Err(invalid(
            "response_format of type json_schema needs a `json_schema.schema` object",
        )),
        _ => Err(invalid(format!(
            "invalid response_format {format}: expected type text, json_object or json_schema"
        ))),
    }
}
