//! The fake server's HTTP side: accepting connections and answering each route.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::config::{FakeOllamaConfig, Fault};
use super::stats::{Counters, Endpoint, Outcome, RecordedRequest};
use super::wire::{
    self, ApiError, ChatCompletion, ChatMessage, Choice, Dialect, OllamaError, OllamaLine, Reply,
    Usage,
};
use crate::answer::{FakeMetrics, GARBAGE_TEXT, cited_lines, enrichment_json, fingerprint};

/// Ollama's answer when its queue is full.
pub(crate) const BUSY_MESSAGE: &str =
    "server busy, please try again.  maximum pending requests exceeded";
/// Ollama's answer when the prompt does not fit the context.
pub(crate) const CONTEXT_MESSAGE: &str = "the input length exceeds the context length";
/// How long the accept loop pauses after an accept error (out of file descriptors, …).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// Stream chunks an answer is split into.
const STREAM_CHUNKS: usize = 4;

/// A served model.
#[derive(Debug)]
struct Model {
    name: String,
    /// The name as matched: lowercase, with a tag.
    key: String,
    /// Used at least once (listed by `/api/ps`).
    loaded: AtomicBool,
}

/// Everything the connections share. No lock in here is held across an await.
#[derive(Debug)]
pub(crate) struct Shared {
    models: Vec<Model>,
    latency: Duration,
    /// Slots plus queue places: generations admitted beyond this get a 503.
    capacity: usize,
    slots: Semaphore,
    context_length: u64,
    record: bool,
    version: String,
    /// `Bearer <key>`, when requests must carry it.
    authorization: Option<String>,
    fault_rates: Vec<(Fault, f64)>,
    pub(crate) counters: Counters,
    faults: Mutex<VecDeque<Fault>>,
    rng: Mutex<fastrand::Rng>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// The body size of an `oversized` answer.
    oversized_bytes: u64,
    /// Woken on every arrival and every change of the slot and queue counts.
    pub(crate) changed: Notify,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not make the server unusable for the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ollama's model matching: case-insensitive, a missing tag means `:latest`.
fn model_key(name: &str) -> String {
    let mut key = name.trim().to_ascii_lowercase();
    let last = key.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') {
        key.push_str(":latest");
    }
    key
}

impl Shared {
    pub(crate) fn new(config: FakeOllamaConfig) -> Self {
        let slots = config.slots.max(1);
        Self {
            models: config
                .models
                .into_iter()
                .map(|name| Model {
                    key: model_key(&name),
                    name,
                    loaded: AtomicBool::new(false),
                })
                .collect(),
            latency: config.latency,
            capacity: slots + config.max_queue,
            slots: Semaphore::new(slots),
            context_length: config.context_length,
            record: config.record_requests,
            version: config.version,
            authorization: config.api_key.map(|key| format!("Bearer {key}")),
            fault_rates: config.fault_rates,
            counters: Counters::default(),
            faults: Mutex::new(config.faults.into()),
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            requests: Mutex::new(Vec::new()),
            oversized_bytes: config.oversized_bytes,
            changed: Notify::new(),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        lock(&self.faults).push_back(fault);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    /// Whether `request` may be served: no key is required, it carries the right one, or it
    /// asks for one of the fake's own routes (counters, recorded requests).
    fn authorized(&self, endpoint: Endpoint, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.authorization else {
            return true;
        };
        matches!(endpoint, Endpoint::Stats | Endpoint::Requests)
            || request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .is_some_and(|sent| sent.as_bytes() == expected.as_bytes())
    }

    fn find_model(&self, name: &str) -> Option<&Model> {
        let key = model_key(name);
        self.models.iter().find(|m| m.key == key)
    }

    /// The next scripted fault, else a drawn one.
    fn next_fault(&self) -> Option<Fault> {
        if let Some(fault) = lock(&self.faults).pop_front() {
            return Some(fault);
        }
        if self.fault_rates.is_empty() {
            return None;
        }
        let x = lock(&self.rng).f64();
        let mut sum = 0.0;
        self.fault_rates.iter().find_map(|&(fault, p)| {
            sum += p;
            (x < sum).then_some(fault)
        })
    }

    fn admit(&self) -> Option<Admitted<'_>> {
        let before = self.counters.admitted.fetch_add(1, Ordering::SeqCst);
        if before >= self.capacity {
            self.counters.admitted.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        self.changed.notify_waiters();
        Some(Admitted(self))
    }
}

/// Counts a request's outcome exactly once: when it is answered, when it starts to hang, or,
/// when the client goes away first (the handler is dropped unanswered), as
/// [`Outcome::Abandoned`].
struct Tally<'a> {
    shared: &'a Shared,
    endpoint: Endpoint,
    counted: AtomicBool,
}

impl<'a> Tally<'a> {
    fn new(shared: &'a Shared, endpoint: Endpoint) -> Self {
        Self {
            shared,
            endpoint,
            counted: AtomicBool::new(false),
        }
    }

    fn count(&self, outcome: Outcome) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            self.shared.counters.answered(self.endpoint, outcome);
            self.shared.changed.notify_waiters();
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.count(Outcome::Abandoned);
    }
}

/// A generation admitted to the queue or a slot; leaves on drop (also when the client goes).
struct Admitted<'a>(&'a Shared);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.counters.admitted.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A generation holding a slot.
struct Running<'a>(&'a Shared);

impl<'a> Running<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.counters.start_running();
        shared.changed.notify_waiters();
        Self(shared)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.counters.running.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Accepts connections until the task is aborted; aborting it drops every connection.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small answers must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    shared.counters.connected();
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one keep-alive connection.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    // A client that goes away mid-request is not the server's problem.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Reply {
    let (endpoint, wrong_method) = Endpoint::route(request.method(), request.uri().path());
    shared.counters.arrived(endpoint);
    shared.changed.notify_waiters();
    let tally = Tally::new(shared, endpoint);
    if !shared.authorized(endpoint, &request) {
        let refused = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")
            .with_code("invalid_api_key")
            .into_reply(dialect(endpoint));
        tally.count(Outcome::Unauthorized);
        return refused;
    }
    let (reply, outcome) = match endpoint {
        Endpoint::Root => (wire::text(StatusCode::OK, "Ollama is running"), Outcome::Ok),
        Endpoint::Version => (
            wire::json(StatusCode::OK, &json!({ "version": shared.version })),
            Outcome::Ok,
        ),
        Endpoint::Tags => (tags(shared, false), Outcome::Ok),
        Endpoint::Ps => (tags(shared, true), Outcome::Ok),
        Endpoint::Models => (openai_models(shared), Outcome::Ok),
        Endpoint::Stats => (
            wire::json(StatusCode::OK, &shared.counters.snapshot().to_json()),
            Outcome::Ok,
        ),
        Endpoint::Requests => (recorded(shared), Outcome::Ok),
        Endpoint::Show => show(shared, request).await,
        Endpoint::Generate | Endpoint::Chat | Endpoint::ChatCompletions => {
            match generation(shared, &tally, endpoint, request).await {
                Ok(answer) => answer,
                Err((err, outcome)) => (err.into_reply(dialect(endpoint)), outcome),
            }
        }
        Endpoint::Unknown if wrong_method => (
            wire::text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed"),
            Outcome::NoRoute,
        ),
        Endpoint::Unknown => (
            wire::text(StatusCode::NOT_FOUND, "404 page not found"),
            Outcome::NoRoute,
        ),
    };
    tally.count(outcome);
    reply
}

fn dialect(endpoint: Endpoint) -> Dialect {
    if endpoint == Endpoint::ChatCompletions {
        Dialect::OpenAi
    } else {
        Dialect::Ollama
    }
}

/// `GET /_fake/requests`: every recorded request as `{"endpoint": "POST /api/generate",
/// "body": {…}}`, oldest first; 409 when the server does not record.
fn recorded(shared: &Shared) -> Reply {
    if !shared.record {
        return wire::text(
            StatusCode::CONFLICT,
            "request bodies are not recorded: start the fake server with --record",
        );
    }
    let requests: Vec<Value> = lock(&shared.requests)
        .iter()
        .map(|r| json!({ "endpoint": r.endpoint.as_str(), "body": r.body }))
        .collect();
    wire::json(StatusCode::OK, &Value::Array(requests))
}

type Refusal = (ApiError, Outcome);

fn invalid(message: impl Into<String>) -> Refusal {
    (
        ApiError::new(StatusCode::BAD_REQUEST, message),
        Outcome::InvalidRequest,
    )
}

fn model_not_found(model: &str) -> Refusal {
    (
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{model}' not found, try pulling it first"),
        )
        .with_code("model_not_found"),
        Outcome::ModelNotFound,
    )
}

/// Reads and parses a JSON body, recording it.
async fn read_body(
    shared: &Shared,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<Value, Refusal> {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map_err(|err| invalid(format!("could not read the request body: {err}")))?
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|err| invalid(format!("invalid JSON in the request body: {err}")))?;
    if shared.record {
        lock(&shared.requests).push(RecordedRequest {
            endpoint,
            body: body.clone(),
        });
    }
    Ok(body)
}

/// The text a generation request asks about, in citation priority order.
struct Prompt<'a> {
    parts: Vec<&'a str>,
    bytes: usize,
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
    fn enrichment(&self) -> String {
        let cited = self
            .parts
            .iter()
            .find_map(|part| cited_lines(part).map(|range| (range, *part)));
        let ((start, end), source) =
            cited.unwrap_or(((1, 1), self.parts.first().copied().unwrap_or_default()));
        enrichment_json(start, end, fingerprint(source))
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
async fn generation(
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
    let stream = body.get("stream").and_then(Value::as_bool);
    let stream = if openai {
        if stream == Some(true) {
            return Err(invalid(
                "fake ollama does not stream /v1/chat/completions; send \"stream\": false",
            ));
        }
        false
    } else {
        stream.unwrap_or(true)
    };
    if openai {
        check_response_format(&body)?;
    } else {
        check_format(&body)?;
    }
    let prompt = Prompt::read(endpoint, &body)?;
    if prompt.is_empty() {
        if openai {
            return Err(invalid(
                "`messages` must hold at least one message with content",
            ));
        }
        // Ollama loads the model and answers at once for an empty prompt.
        served.loaded.store(true, Ordering::Relaxed);
        let created_at = wire::rfc3339_now();
        let line = OllamaLine::new(endpoint == Endpoint::Chat, model, &created_at, "", None)
            .done("load", None);
        return Ok((wire::json(StatusCode::OK, &line), Outcome::Ok));
    }
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

    let fault = shared.next_fault();
    if let Some(fault) = fault.filter(|f| f.is_status()) {
        return Err(status_fault(fault));
    }
    let Some(_admitted) = shared.admit() else {
        return Err((
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
            Outcome::QueueFull,
        ));
    };
    // The semaphore is never closed.
    let Ok(_slot) = shared.slots.acquire().await else {
        return Err((
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
            Outcome::QueueFull,
        ));
    };
    let _running = Running::start(shared);
    served.loaded.store(true, Ordering::Relaxed);
    if fault == Some(Fault::Hang) {
        tally.count(Outcome::Hang);
        return std::future::pending().await;
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }

    let answer = Answer::new(&prompt, fault);
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
    let reply = if openai {
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

/// The answer of a status fault.
fn status_fault(fault: Fault) -> Refusal {
    match fault {
        Fault::Busy => (
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
            Outcome::Busy,
        ),
        Fault::RateLimited { retry_after_secs } => {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests, please retry later",
            )
            .with_code("rate_limit_exceeded");
            err.retry_after = Some(retry_after_secs);
            (err, Outcome::RateLimited)
        }
        Fault::ContextExceeded => (
            ApiError::new(StatusCode::BAD_REQUEST, CONTEXT_MESSAGE)
                .with_code("context_length_exceeded"),
            Outcome::ContextExceeded,
        ),
        Fault::BadRequest => (
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid options: json: cannot unmarshal string into Go struct field \
                 Options.num_predict of type int",
            ),
            Outcome::BadRequest,
        ),
        Fault::Unauthorized => (
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized").with_code("invalid_api_key"),
            Outcome::Unauthorized,
        ),
        _ => (
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "llama runner process has terminated: exit status 2",
            ),
            Outcome::ServerError,
        ),
    }
}

/// A generation's reply before it is put on the wire.
struct Answer {
    content: String,
    thinking: Option<String>,
    done_reason: &'static str,
    /// Stream a first chunk, then an error line.
    stream_error: bool,
    metrics: FakeMetrics,
    outcome: Outcome,
}

impl Answer {
    fn new(prompt: &Prompt<'_>, fault: Option<Fault>) -> Self {
        let mut full = prompt.enrichment();
        let mut thinking = None;
        let mut done_reason = "stop";
        let mut stream_error = false;
        let outcome = match fault {
            Some(Fault::Garbage) => {
                full = GARBAGE_TEXT.to_owned();
                Outcome::Garbage
            }
            Some(Fault::Truncated) => {
                full.truncate(full.len() / 2);
                done_reason = "length";
                Outcome::Truncated
            }
            Some(Fault::ThinkingOnly) => {
                thinking = Some(std::mem::take(&mut full));
                Outcome::ThinkingOnly
            }
            Some(Fault::StreamError) => {
                full.truncate(full.len() / 2);
                stream_error = true;
                Outcome::StreamError
            }
            Some(Fault::Oversized) => {
                full.push_str(wire::PADDING_MARK);
                Outcome::Oversized
            }
            _ => Outcome::Ok,
        };
        let answer_bytes = full.len() + thinking.as_ref().map_or(0, String::len);
        Self {
            metrics: FakeMetrics::for_sizes(prompt.bytes, answer_bytes),
            content: full,
            thinking,
            done_reason,
            stream_error,
            outcome,
        }
    }

    fn ollama(&self, chat: bool, model: &str, stream: bool) -> Reply {
        let created_at = wire::rfc3339_now();
        let thinking = self.thinking.as_deref();
        if !stream {
            let line = OllamaLine::new(chat, model, &created_at, &self.content, thinking)
                .done(self.done_reason, Some(&self.metrics));
            return wire::json(StatusCode::OK, &line);
        }
        let mut lines = VecDeque::with_capacity(STREAM_CHUNKS + 2);
        if let Some(thinking) = thinking {
            lines.push_back(wire::line(&OllamaLine::new(
                chat,
                model,
                &created_at,
                "",
                Some(thinking),
            )));
        }
        for piece in pieces(&self.content, STREAM_CHUNKS) {
            lines.push_back(wire::line(&OllamaLine::new(
                chat,
                model,
                &created_at,
                piece,
                None,
            )));
        }
        if self.stream_error {
            lines.push_back(wire::line(&OllamaError {
                error: "an error was encountered while running the model: unexpected EOF",
            }));
        } else {
            let last = OllamaLine::new(chat, model, &created_at, "", None)
                .done(self.done_reason, Some(&self.metrics));
            lines.push_back(wire::line(&last));
        }
        wire::ndjson(lines)
    }

    fn openai(&self, shared: &Shared, model: &str) -> Reply {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let completion = ChatCompletion {
            id: format!("chatcmpl-{id}"),
            object: "chat.completion",
            created: wire::unix_seconds(),
            model,
            system_fingerprint: "fp_ollama",
            choices: [Choice {
                index: 0,
                message: ChatMessage {
                    role: "assistant",
                    content: &self.content,
                    thinking: None,
                    reasoning: self.thinking.as_deref(),
                },
                finish_reason: self.done_reason,
            }],
            usage: Usage {
                prompt_tokens: self.metrics.prompt_eval_count,
                completion_tokens: self.metrics.eval_count,
                total_tokens: self.metrics.prompt_eval_count + self.metrics.eval_count,
            },
        };
        wire::json(StatusCode::OK, &completion)
    }
}

/// `text` in at most `n` pieces cut at character boundaries (none for an empty text).
fn pieces(text: &str, n: usize) -> impl Iterator<Item = &str> {
    let step = text.len().div_ceil(n).max(1);
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = step.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// `POST /api/show`.
async fn show(shared: &Shared, request: Request<Incoming>) -> (Reply, Outcome) {
    let result = async {
        let body = read_body(shared, Endpoint::Show, request).await?;
        let name = ["model", "name"]
            .iter()
            .find_map(|key| body.get(*key)?.as_str())
            .ok_or_else(|| invalid("model is required"))?;
        let model = shared
            .find_model(name)
            .ok_or_else(|| model_not_found(name))?;
        Ok::<_, Refusal>(json!({
            "license": "",
            "modelfile": format!("# Modelfile of fake model {}\nFROM fake\n", model.name),
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(),
            "model_info": {
                "general.architecture": "llama",
                "general.parameter_count": 135_000_000,
                "llama.context_length": shared.context_length,
            },
            "capabilities": ["completion"],
            "modified_at": "2025-01-01T00:00:00Z",
        }))
    }
    .await;
    match result {
        Ok(value) => (wire::json(StatusCode::OK, &value), Outcome::Ok),
        Err((err, outcome)) => (err.into_reply(Dialect::Ollama), outcome),
    }
}

fn details() -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "135M",
        "quantization_level": "Q4_1",
    })
}

/// `GET /api/tags`, or `GET /api/ps` (`loaded_only`: models used since the start).
fn tags(shared: &Shared, loaded_only: bool) -> Reply {
    let models: Vec<Value> = shared
        .models
        .iter()
        .filter(|m| !loaded_only || m.loaded.load(Ordering::Relaxed))
        .map(|m| {
            let digest = format!("{:016x}", fingerprint(&m.key)).repeat(4);
            let mut entry = json!({
                "name": m.name,
                "model": m.name,
                "size": 98_362_432,
                "digest": digest,
                "details": details(),
            });
            if loaded_only {
                entry["expires_at"] = json!("2100-01-01T00:00:00Z");
                entry["size_vram"] = json!(0);
                entry["context_length"] = json!(shared.context_length);
            } else {
                entry["modified_at"] = json!("2025-01-01T00:00:00Z");
            }
            entry
        })
        .collect();
    wire::json(StatusCode::OK, &json!({ "models": models }))
}

/// `GET /v1/models`.
fn openai_models(shared: &Shared) -> Reply {
    let data: Vec<Value> = shared
        .models
        .iter()
        .map(|m| json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "library" }))
        .collect();
    wire::json(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

#[cfg(test)]
mod tests {
    use enrich_config::DEFAULT_MODEL;

    use super::*;

    #[test]
    fn model_names_match_as_ollama_matches_them() {
        assert_eq!(model_key("Qwen2.5:7B"), "qwen2.5:7b");
        assert_eq!(model_key("llama3"), "llama3:latest");
        assert_eq!(
            model_key("registry.io:5000/ns/llama3"),
            "registry.io:5000/ns/llama3:latest"
        );
    }

    fn generate_body() -> Value {
        json!({"model": DEFAULT_MODEL, "prompt": "Describe lines 1-2.", "stream": false})
    }

    #[tokio::test]
    async fn every_generation_gets_one_outcome_even_when_its_client_leaves() {
        let server = crate::FakeOllama::start(
            FakeOllamaConfig::default()
                .with_capacity(1, 4)
                .with_faults([Fault::Hang]),
        )
        .await
        .unwrap();
        let url = format!("{}/api/generate", server.url());
        let client = crate::http_client();
        // The first request hangs in the only slot; the second waits behind it.
        let mut calls = Vec::new();
        for _ in 0..2 {
            let (client, url) = (client.clone(), url.clone());
            calls.push(tokio::spawn(async move {
                client.post(url).json(&generate_body()).send().await
            }));
        }
        server
            .wait_until(|s| s.running == 1 && s.waiting == 1)
            .await;
        for call in calls {
            call.abort();
        }
        server
            .wait_until(|s| s.generation_outcome(Outcome::Abandoned) == 1)
            .await;
        let answered = client
            .post(&url)
            .json(&generate_body())
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 200);
        let stats = server.stats();
        let by_outcome: Vec<(&str, u64)> = Outcome::ALL
            .iter()
            .map(|&o| (o.as_str(), stats.generation_outcome(o)))
            .filter(|&(_, n)| n > 0)
            .collect();
        assert_eq!(by_outcome, [("ok", 1), ("hang", 1), ("abandoned", 1)]);
        assert_eq!(stats.generations(), 3);
        assert_eq!(
            stats.to_json()["generation_outcomes"],
            json!({"ok": 1, "hang": 1, "abandoned": 1})
        );
    }

    #[tokio::test]
    async fn a_required_key_refuses_every_route_but_the_counters_without_it() {
        let server =
            crate::FakeOllama::start(FakeOllamaConfig::default().with_api_key("sk-fake-42"))
                .await
                .unwrap();
        let client = crate::http_client();
        let get = |path: &str, key: Option<&str>| {
            let mut request = client.get(format!("{}{path}", server.url()));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            request.send()
        };
        for (path, key, status) in [
            ("/api/version", None, 401),
            ("/api/version", Some("sk-other"), 401),
            ("/api/version", Some("sk-fake-42"), 200),
            ("/api/tags", Some("sk-fake-42"), 200),
            ("/_fake/stats", None, 200),
        ] {
            let reply = get(path, key).await.unwrap();
            assert_eq!(reply.status(), status, "{path} with {key:?}");
        }
        let refused = client
            .post(format!("{}/api/generate", server.url()))
            .json(&generate_body())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body, json!({"error": "unauthorized"}));
        let stats = server.stats();
        assert_eq!(stats.outcome(Outcome::Unauthorized), 3);
        assert_eq!(stats.generation_outcome(Outcome::Unauthorized), 1);
    }

    #[test]
    fn pieces_cover_the_text_at_char_boundaries() {
        let text = "ab\u{e9}cd\u{2013}ef";
        let parts: Vec<&str> = pieces(text, 4).collect();
        assert!(parts.len() <= 4);
        assert_eq!(parts.concat(), text);
        assert_eq!(pieces("", 4).count(), 0);
    }
}
