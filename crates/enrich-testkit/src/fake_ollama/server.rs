//! The fake server's HTTP side: the state the connections share, accepting connections, and
//! sending each request to its route ([`super::routes`] for the model listings and the fake's
//! own routes, [`super::generation`] for generations).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::admission::Tally;
use super::config::{FakeOllamaConfig, Fault};
use super::generation::generation;
use super::routes::{openai_models, recorded, show, tags};
use super::stats::{Counters, Endpoint, Outcome, RecordedRequest};
use super::wire::{self, ApiError, Dialect, Reply};

/// How long the accept loop pauses after an accept error (out of file descriptors, …).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A served model.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) name: String,
    /// The name as matched: lowercase, with a tag.
    pub(super) key: String,
    /// Used at least once (listed by `/api/ps`).
    pub(super) loaded: AtomicBool,
}

/// Everything the connections share. No lock in here is held across an await.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(super) models: Vec<Model>,
    pub(super) latency: Duration,
    /// Slots plus queue places: generations admitted beyond this get a 503.
    pub(super) capacity: usize,
    pub(super) slots: Semaphore,
    /// The slots the semaphore stands for now ([`Shared::set_slots`]).
    slot_count: Mutex<usize>,
    pub(super) context_length: u64,
    pub(super) record: bool,
    pub(super) version: String,
    /// `Bearer <key>`, when requests must carry it.
    pub(super) authorization: Option<String>,
    pub(super) fault_rates: Vec<(Fault, f64)>,
    pub(crate) counters: Counters,
    pub(super) faults: Mutex<VecDeque<Fault>>,
    pub(super) rng: Mutex<fastrand::Rng>,
    pub(super) requests: Mutex<Vec<RecordedRequest>>,
    /// The body size of an `oversized` answer.
    pub(super) oversized_bytes: u64,
    /// Woken on every arrival and every change of the slot and queue counts.
    pub(crate) changed: Notify,
    pub(super) next_id: AtomicU64,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not make the server unusable for the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ollama's model matching: case-insensitive, a missing tag means `:latest`.
pub(super) fn model_key(name: &str) -> String {
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
            slot_count: Mutex::new(slots),
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

    /// Runs `slots` generations at once from now on (0 counts as 1). More slots are free at
    /// once; fewer are taken out as running generations give theirs back, ahead of requests
    /// that arrive later (the semaphore is first come, first served).
    pub(crate) fn set_slots(self: &Arc<Self>, slots: usize) {
        let slots = slots.max(1);
        let mut count = lock(&self.slot_count);
        if slots > *count {
            self.slots.add_permits(slots - *count);
        } else if slots < *count {
            let excess = u32::try_from(*count - slots).unwrap_or(u32::MAX);
            let shared = Arc::clone(self);
            tokio::spawn(async move {
                // The semaphore is never closed.
                if let Ok(taken) = shared.slots.acquire_many(excess).await {
                    taken.forget();
                }
            });
        }
        *count = slots;
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        lock(&self.faults).push_back(fault);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    /// Whether `request` may be served: no key is required, it carries the right one, or it
    /// asks for one of the fake's own routes (counters, recorded requests).
    pub(super) fn authorized(&self, endpoint: Endpoint, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.authorization else {
            return true;
        };
        matches!(endpoint, Endpoint::Stats | Endpoint::Requests)
            || request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .is_some_and(|sent| sent.as_bytes() == expected.as_bytes())
    }

    pub(super) fn find_model(&self, name: &str) -> Option<&Model> {
        let key = model_key(name);
        self.models.iter().find(|m| m.key == key)
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

pub(super) fn dialect(endpoint: Endpoint) -> Dialect {
    if endpoint == Endpoint::ChatCompletions {
        Dialect::OpenAi
    } else {
        Dialect::Ollama
    }
}

#[cfg(test)]
mod tests {
    use enrich_config::DEFAULT_MODEL;
    use serde_json::Value;

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
}
