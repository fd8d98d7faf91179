//! What [`FakeOllama`](crate::FakeOllama) counts and records.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hyper::Method;
use serde_json::{Map, Value};

/// A route of the fake server, for counters and recorded requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /` ("Ollama is running").
    Root,
    /// `POST /api/generate`.
    Generate,
    /// `POST /api/chat`.
    Chat,
    /// `GET /api/tags`.
    Tags,
    /// `GET /api/version`.
    Version,
    /// `POST /api/show`.
    Show,
    /// `GET /api/ps`.
    Ps,
    /// `POST /v1/chat/completions` (OpenAI-compatible).
    ChatCompletions,
    /// `GET /v1/models` (OpenAI-compatible).
    Models,
    /// `GET /_fake/stats`: these counters as JSON (the fake's own route).
    Stats,
    /// `GET /_fake/requests`: the recorded request bodies as JSON (the fake's own route).
    Requests,
    /// Anything else (404, or 405 for a known path with the wrong method).
    Unknown,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 12] = [
        Endpoint::Root,
        Endpoint::Generate,
        Endpoint::Chat,
        Endpoint::Tags,
        Endpoint::Version,
        Endpoint::Show,
        Endpoint::Ps,
        Endpoint::ChatCompletions,
        Endpoint::Models,
        Endpoint::Stats,
        Endpoint::Requests,
        Endpoint::Unknown,
    ];

    /// The route as `METHOD /path` (`unknown` for [`Endpoint::Unknown`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Root => "GET /",
            Endpoint::Generate => "POST /api/generate",
            Endpoint::Chat => "POST /api/chat",
            Endpoint::Tags => "GET /api/tags",
            Endpoint::Version => "GET /api/version",
            Endpoint::Show => "POST /api/show",
            Endpoint::Ps => "GET /api/ps",
            Endpoint::ChatCompletions => "POST /v1/chat/completions",
            Endpoint::Models => "GET /v1/models",
            Endpoint::Stats => "GET /_fake/stats",
            Endpoint::Requests => "GET /_fake/requests",
            Endpoint::Unknown => "unknown",
        }
    }

    /// Whether this endpoint generates text.
    pub const fn is_generation(self) -> bool {
        matches!(
            self,
            Endpoint::Generate | Endpoint::Chat | Endpoint::ChatCompletions
        )
    }

    /// The endpoint for a request line, and whether the path is known but the method is not.
    pub(crate) fn route(method: &Method, path: &str) -> (Endpoint, bool) {
        let (endpoint, post) = match path {
            "/" => (Endpoint::Root, false),
            "/api/generate" => (Endpoint::Generate, true),
            "/api/chat" => (Endpoint::Chat, true),
            "/api/tags" => (Endpoint::Tags, false),
            "/api/version" => (Endpoint::Version, false),
            "/api/show" => (Endpoint::Show, true),
            "/api/ps" => (Endpoint::Ps, false),
            "/v1/chat/completions" => (Endpoint::ChatCompletions, true),
            "/v1/models" => (Endpoint::Models, false),
            "/_fake/stats" => (Endpoint::Stats, false),
            "/_fake/requests" => (Endpoint::Requests, false),
            _ => return (Endpoint::Unknown, false),
        };
        let allowed = if post {
            method == Method::POST
        } else {
            method == Method::GET || method == Method::HEAD
        };
        if allowed {
            (endpoint, false)
        } else {
            (Endpoint::Unknown, true)
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// How the fake server answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// A normal answer (generation or information).
    Ok,
    /// The `garbage` fault.
    Garbage,
    /// The `truncated` fault.
    Truncated,
    /// The `thinking_only` fault.
    ThinkingOnly,
    /// The `stream_error` fault.
    StreamError,
    /// The `oversized` fault.
    Oversized,
    /// The `nonsense` fault.
    Nonsense,
    /// The `server_error` fault.
    ServerError,
    /// The `busy` fault.
    Busy,
    /// A real 503: every slot and queue place was taken.
    QueueFull,
    /// The `rate_limited` fault.
    RateLimited,
    /// The `context_exceeded` fault, or a prompt longer than the context.
    ContextExceeded,
    /// The `bad_request` fault.
    BadRequest,
    /// The `unauthorized` fault.
    Unauthorized,
    /// The `hang` fault (counted when the hang starts).
    Hang,
    /// 404: the model is not served.
    ModelNotFound,
    /// 400: the request itself was malformed (bad JSON, no model, unsupported field).
    InvalidRequest,
    /// 404 or 405: no such route.
    NoRoute,
    /// The client went away before it was answered (a client-side timeout while the request
    /// waited for a slot or generated, or a killed client). A hang is counted as
    /// [`Outcome::Hang`] when it starts, never again as abandoned.
    Abandoned,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 19] = [
        Outcome::Ok,
        Outcome::Garbage,
        Outcome::Truncated,
        Outcome::ThinkingOnly,
        Outcome::StreamError,
        Outcome::Oversized,
        Outcome::Nonsense,
        Outcome::ServerError,
        Outcome::Busy,
        Outcome::QueueFull,
        Outcome::RateLimited,
        Outcome::ContextExceeded,
        Outcome::BadRequest,
        Outcome::Unauthorized,
        Outcome::Hang,
        Outcome::ModelNotFound,
        Outcome::InvalidRequest,
        Outcome::NoRoute,
        Outcome::Abandoned,
    ];

    /// A snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Garbage => "garbage",
            Outcome::Truncated => "truncated",
            Outcome::ThinkingOnly => "thinking_only",
            Outcome::StreamError => "stream_error",
            Outcome::Oversized => "oversized",
            Outcome::Nonsense => "nonsense",
            Outcome::ServerError => "server_error",
            Outcome::Busy => "busy",
            Outcome::QueueFull => "queue_full",
            Outcome::RateLimited => "rate_limited",
            Outcome::ContextExceeded => "context_exceeded",
            Outcome::BadRequest => "bad_request",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Hang => "hang",
            Outcome::ModelNotFound => "model_not_found",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::NoRoute => "no_route",
            Outcome::Abandoned => "abandoned",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One request body the fake server received (POST routes only).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The route it came to.
    pub endpoint: Endpoint,
    /// Its JSON body, as sent.
    pub body: Value,
}

/// A snapshot of the fake server's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOllamaStats {
    /// Requests received, on every route.
    pub total: u64,
    /// TCP connections accepted (a client that keeps connections alive opens few).
    pub connections: u64,
    /// Generations holding a slot right now.
    pub running: usize,
    /// Generations waiting for a slot right now.
    pub waiting: usize,
    /// The most generations that held a slot at the same time.
    pub max_running: usize,
    endpoints: [u64; Endpoint::ALL.len()],
    outcomes: [u64; Outcome::ALL.len()],
    generation_outcomes: [u64; Outcome::ALL.len()],
}

impl FakeOllamaStats {
    /// Requests received on `endpoint`.
    pub fn endpoint(&self, endpoint: Endpoint) -> u64 {
        self.endpoints[endpoint.index()]
    }

    /// Requests answered with `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()]
    }

    /// Generation requests (see [`FakeOllamaStats::generations`]) that ended with `outcome`.
    ///
    /// Each generation request is counted under exactly one outcome (a hang when it starts, an
    /// abandoned request when its client leaves), so once no request is in flight these add up
    /// to [`FakeOllamaStats::generations`]: what a client recorded about its calls can be
    /// reconciled with them one to one.
    pub fn generation_outcome(&self, outcome: Outcome) -> u64 {
        self.generation_outcomes[outcome.index()]
    }

    /// Generation requests received (`/api/generate`, `/api/chat`, `/v1/chat/completions`).
    pub fn generations(&self) -> u64 {
        Endpoint::ALL
            .into_iter()
            .filter(|e| e.is_generation())
            .map(|e| self.endpoint(e))
            .sum()
    }

    /// The counters as JSON, as `GET /_fake/stats` serves them: `total`, `connections`, `running`, `waiting`,
    /// `max_running`, and `endpoints`, `outcomes` and `generation_outcomes` maps without the
    /// zero entries.
    pub fn to_json(&self) -> Value {
        let nonzero = |pairs: &mut dyn Iterator<Item = (&str, u64)>| {
            pairs
                .filter(|&(_, n)| n > 0)
                .map(|(k, n)| (k.to_owned(), Value::from(n)))
                .collect::<Map<String, Value>>()
        };
        let endpoints = nonzero(
            &mut Endpoint::ALL
                .iter()
                .map(|&e| (e.as_str(), self.endpoint(e))),
        );
        let outcomes = nonzero(&mut Outcome::ALL.iter().map(|&o| (o.as_str(), self.outcome(o))));
        let generation_outcomes = nonzero(
            &mut Outcome::ALL
                .iter()
                .map(|&o| (o.as_str(), self.generation_outcome(o))),
        );
        serde_json::json!({
            "total": self.total,
            "connections": self.connections,
            "running": self.running,
            "waiting": self.waiting,
            "max_running": self.max_running,
            "endpoints": endpoints,
            "outcomes": outcomes,
            "generation_outcomes": generation_outcomes,
        })
    }
}

/// The live counters behind [`FakeOllamaStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    total: AtomicU64,
    connections: AtomicU64,
    endpoints: [AtomicU64; Endpoint::ALL.len()],
    outcomes: [AtomicU64; Outcome::ALL.len()],
    generation_outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Generations admitted: waiting for a slot or holding one.
    pub(crate) admitted: AtomicUsize,
    pub(crate) running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Counters {
    pub(crate) fn arrived(&self, endpoint: Endpoint) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.endpoints[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self, endpoint: Endpoint, outcome: Outcome) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if endpoint.is_generation() {
            self.generation_outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn start_running(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn snapshot(&self) -> FakeOllamaStats {
        let running = self.running.load(Ordering::SeqCst);
        let admitted = self.admitted.load(Ordering::SeqCst);
        FakeOllamaStats {
            total: self.total.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            running,
            waiting: admitted.saturating_sub(running),
            max_running: self.max_running.load(Ordering::SeqCst),
            endpoints: self.endpoints.each_ref().map(|n| n.load(Ordering::Relaxed)),
            outcomes: self.outcomes.each_ref().map(|n| n.load(Ordering::Relaxed)),
            generation_outcomes: self
                .generation_outcomes
                .each_ref()
                .map(|n| n.load(Ordering::Relaxed)),
        }
    }
}
