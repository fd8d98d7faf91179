//! [`FakeOllama`]: a fake Ollama HTTP server on a loopback port.

mod admission;
mod config;
mod generation;
mod reply;
mod routes;
mod server;
mod stats;
mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::TestkitError;

pub use self::config::{FakeOllamaConfig, Fault};
pub(crate) use self::generation::prompt_bytes;
use self::server::Shared;
pub use self::stats::{Endpoint, FakeOllamaStats, Outcome, RecordedRequest};

/// A fake Ollama server on `127.0.0.1`, for adapter, pipeline and CLI tests and benchmarks.
///
/// It speaks enough of Ollama's API for an adapter not to tell the difference, with canned
/// instead of generated text:
///
/// - `POST /api/generate` and `POST /api/chat`, `stream` false (one JSON object) or true (the
///   default, as in Ollama: NDJSON chunks, then a final line with `done: true`, `done_reason`
///   and the metrics); `format` (`"json"` or a schema object), `options` (`num_ctx` is
///   enforced, see [`FakeOllamaConfig::context_length`]); an empty prompt answers
///   `done_reason: "load"` at once;
/// - `GET /api/tags`, `GET /api/version`, `POST /api/show` (context length in
///   `model_info["llama.context_length"]`, `capabilities: ["completion"]`), `GET /api/ps` (the
///   models used so far), `GET /`;
/// - `POST /v1/chat/completions` (OpenAI-compatible, non-streaming: `response_format`
///   `json_schema`/`json_object`/`text`; answers `choices[0].message.content`,
///   `finish_reason`, `usage`; errors as `{"error":{"message","type","code"}}`) and
///   `GET /v1/models`;
/// - `GET /_fake/stats`: the counters as JSON ([`FakeOllamaStats::to_json`]).
///
/// **Answers** are deterministic: an enrichment.v1 object valid for the line range the prompt
/// cites ([`cited_lines`](crate::cited_lines); lines 1-1 when it cites none), the same for the
/// same prompt. **Metrics** are deterministic too: one token per four bytes of prompt (all
/// message contents, or prompt plus system) and of answer, `load_duration` 2 ms,
/// `prompt_eval_duration` 1 ms per prompt token, `eval_duration` 10 ms per answer token
/// (100 tokens/s), `total_duration` their sum. OpenAI answers carry the token counts in
/// `usage`.
///
/// **Capacity** mirrors Ollama's scheduler: [`FakeOllamaConfig::slots`] generations run at
/// once, [`FakeOllamaConfig::max_queue`] more wait in arrival order, and beyond that a request
/// gets 503 `server busy, please try again.  maximum pending requests exceeded`. Each
/// generation holds its slot for [`FakeOllamaConfig::latency`] (tokio's clock). Requests for
/// other models get 404 `model 'x' not found, try pulling it first`. Faults are injected per
/// request from a script or at random with a seed ([`Fault`]).
///
/// **Not modelled**: OpenAI streaming (refused with a 400), `/v1/completions`, embeddings,
/// pulling and other model management, images, tools, `raw`, `template`, `suffix`, `context`,
/// `keep_alive` (accepted and ignored), model load and unload times, and Ollama's silent
/// prompt truncation (an over-long prompt is always refused, as with `truncate: false`).
///
/// **Credentials**: with [`FakeOllamaConfig::api_key`] every request must carry
/// `Authorization: Bearer <key>` or gets 401, as behind an authenticating proxy.
///
/// Everything is counted ([`FakeOllama::stats`]; each generation request under exactly one
/// [`Outcome`], including [`Outcome::Abandoned`] when its client leaves unanswered) and every
/// request body recorded ([`FakeOllama::requests`]). [`FakeOllama::wait_until`] waits for a state without sleeping.
/// The server runs on the runtime that started it, keeps connections alive, holds no lock
/// across an await, and stops when dropped (open connections are closed). [`FakeOllama::go_down`]
/// and [`FakeOllama::come_back`] stop and restart it at the same address, as an Ollama that
/// restarts: meanwhile connections are refused.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use enrich_testkit::{FakeOllama, FakeOllamaConfig, Fault};
///
/// let server = FakeOllama::start(
///     FakeOllamaConfig::default()
///         .with_models(["qwen2.5:7b-instruct"])
///         .with_faults([Fault::Busy]),
/// )
/// .await
/// .unwrap();
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// // The first generation request gets a 503, the next ones valid answers.
/// # }
/// ```
#[derive(Debug)]
pub struct FakeOllama {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    /// The accept loop; `None` while the server is down ([`FakeOllama::go_down`]).
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl FakeOllama {
    /// Starts a server on `127.0.0.1` and the configured port (0: a free one), on the current
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Bind`] when the port cannot be listened on;
    /// [`TestkitError::InvalidFaultRate`] when the fault rates are out of range or add up to
    /// more than 1.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(config: FakeOllamaConfig) -> Result<Self, TestkitError> {
        config.check()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TestkitError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| TestkitError::Bind { addr, source })?;
        let changes = config.slot_changes.clone();
        let shared = Arc::new(Shared::new(config));
        for (after, slots) in changes {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                shared.set_slots(slots);
            });
        }
        let accept = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            url: format!("http://{addr}"),
            shared,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// Takes the server down as if its process stopped: the listener closes and every open
    /// connection is dropped (requests in flight get no answer), so new connections are refused
    /// until [`FakeOllama::come_back`]. Returns once nothing listens any more.
    pub async fn go_down(&self) {
        let accept = self.accept_loop().take();
        if let Some(accept) = accept {
            accept.abort();
            // Aborted: the listener and the connections are dropped once this returns.
            let _ = accept.await;
        }
    }

    /// Listens again at the same address after [`FakeOllama::go_down`]; the counters, the
    /// scripted faults and the fault draws carry on. Does nothing while the server is up.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Bind`] when the address was taken meanwhile.
    pub async fn come_back(&self) -> Result<(), TestkitError> {
        if self.accept_loop().is_some() {
            return Ok(());
        }
        let addr = self.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TestkitError::Bind { addr, source })?;
        let accept = tokio::spawn(server::accept_loop(listener, Arc::clone(&self.shared)));
        *self.accept_loop() = Some(accept);
        Ok(())
    }

    fn accept_loop(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        // The slot holds a handle only: a panic elsewhere cannot leave it inconsistent.
        self.accept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `slots` generations at once from now on, as a server that lost or gained
    /// capacity (0 counts as 1); fewer slots take effect as running generations finish.
    pub fn set_slots(&self, slots: usize) {
        self.shared.set_slots(slots);
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters right now.
    pub fn stats(&self) -> FakeOllamaStats {
        self.shared.counters.snapshot()
    }

    /// Every request body received so far (POST routes), in arrival order; empty when
    /// [`FakeOllamaConfig::record_requests`] is off.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// The body of the last request received on `endpoint`, if any.
    pub fn last_body(&self, endpoint: Endpoint) -> Option<serde_json::Value> {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.endpoint == endpoint)
            .map(|r| r.body)
    }

    /// Appends a fault for a coming generation request (after those already scripted).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.push_fault(fault);
    }

    /// Waits until `condition` holds for the counters; checked now and after every arrival and
    /// every change of the running and waiting counts. Never sleeps.
    pub async fn wait_until(&self, mut condition: impl FnMut(&FakeOllamaStats) -> bool) {
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before checking, so no change between the check and the wait is lost.
            changed.as_mut().enable();
            if condition(&self.stats()) {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        if let Some(accept) = self.accept_loop().take() {
            accept.abort();
        }
    }
}
