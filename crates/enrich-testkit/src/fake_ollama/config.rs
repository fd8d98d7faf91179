//! [`FakeOllamaConfig`] and the [`Fault`]s the fake server can inject.

use std::time::Duration;

use enrich_config::DEFAULT_MODEL;

use crate::error::TestkitError;

/// A misbehaviour [`FakeOllama`](crate::FakeOllama) can inject into a generation request
/// (`/api/generate`, `/api/chat`, `/v1/chat/completions`).
///
/// A fault replaces the answer a well-formed request for a served model would have got: bad
/// requests and unknown models are refused before any fault is drawn. Status faults answer at
/// once, without waiting for a slot; reply faults (`garbage`, `truncated`, `thinking_only`,
/// `stream_error`, `hang`) go through the slots and the latency like a normal answer.
///
/// | fault | Ollama endpoints | `/v1/chat/completions` |
/// |---|---|---|
/// | `server_error` | 500 `{"error":"llama runner process has terminated: exit status 2"}` | 500, OpenAI error body |
/// | `garbage` | 200, text without any JSON | same |
/// | `truncated` | 200, half a JSON object, `done_reason: "length"` | `finish_reason: "length"` |
/// | `hang` | never answers; holds its slot until the client disconnects | same |
/// | `busy` | 503 `server busy, please try again.  maximum pending requests exceeded` | same, OpenAI body |
/// | `rate_limited` | 429 with `Retry-After` | same, OpenAI body |
/// | `context_exceeded` | 400 `the input length exceeds the context length` | same, code `context_length_exceeded` |
/// | `bad_request` | 400 about an invalid option | same |
/// | `unauthorized` | 401 `unauthorized` | same, code `invalid_api_key` |
/// | `stream_error` | streaming: 200, a first chunk, then an `{"error":…}` line; else 500 | 500 |
/// | `thinking_only` | 200, empty `response`/`content`, the answer in `thinking` | the answer in `message.reasoning` |
/// | `oversized` | 200, chunked without a length: a valid answer whose text is padded with spaces to [`FakeOllamaConfig::oversized_bytes`] in all (one `done: true` line when streaming) | same, as a chat completion |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// HTTP 500.
    ServerError,
    /// A 200 whose text holds no JSON.
    Garbage,
    /// A 200 with the first half of the answer and `done_reason` `length`.
    Truncated,
    /// No answer at all, until the client gives up.
    Hang,
    /// HTTP 503 "server busy", as when Ollama's queue is full.
    Busy,
    /// HTTP 429 with a `Retry-After` header.
    RateLimited {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// HTTP 400 "the input length exceeds the context length".
    ContextExceeded,
    /// HTTP 400 for another reason (an invalid option).
    BadRequest,
    /// HTTP 401.
    Unauthorized,
    /// An `{"error": …}` NDJSON line after a 200 when streaming; a 500 otherwise.
    StreamError,
    /// A reply whose answer is in `thinking` and whose `response` is empty.
    ThinkingOnly,
    /// A 200 whose body is [`FakeOllamaConfig::oversized_bytes`] long: a valid answer padded
    /// with spaces, sent in chunks without a `Content-Length` and never held in memory whole.
    Oversized,
    /// A 200 whose answer is valid enrichment.v1 that says nothing, as a small model answers
    /// when it copies the prompt (summary `60`, inputs `["field", "lines", "60,61"]`): what the
    /// quality gate rejects as `quality_rejected`.
    Nonsense,
}

impl Fault {
    /// Every fault, with `rate_limited` at its default `Retry-After` of 1 s.
    pub const ALL: [Fault; 13] = [
        Fault::ServerError,
        Fault::Garbage,
        Fault::Truncated,
        Fault::Hang,
        Fault::Busy,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        Fault::ContextExceeded,
        Fault::BadRequest,
        Fault::Unauthorized,
        Fault::StreamError,
        Fault::ThinkingOnly,
        Fault::Oversized,
        Fault::Nonsense,
    ];

    /// The snake_case name used by `--fault-rate` and [`Fault::from_name`].
    pub const fn name(self) -> &'static str {
        match self {
            Fault::ServerError => "server_error",
            Fault::Garbage => "garbage",
            Fault::Truncated => "truncated",
            Fault::Hang => "hang",
            Fault::Busy => "busy",
            Fault::RateLimited { .. } => "rate_limited",
            Fault::ContextExceeded => "context_exceeded",
            Fault::BadRequest => "bad_request",
            Fault::Unauthorized => "unauthorized",
            Fault::StreamError => "stream_error",
            Fault::ThinkingOnly => "thinking_only",
            Fault::Oversized => "oversized",
            Fault::Nonsense => "nonsense",
        }
    }

    /// The fault named `name` (see [`Fault::name`]).
    ///
    /// # Errors
    ///
    /// [`TestkitError::UnknownFault`] listing the known names.
    pub fn from_name(name: &str) -> Result<Self, TestkitError> {
        Self::ALL
            .into_iter()
            .find(|fault| fault.name() == name)
            .ok_or_else(|| TestkitError::UnknownFault {
                name: name.to_owned(),
                known: Self::ALL.map(Fault::name).join(", "),
            })
    }

    /// Parses `kind=p` (`garbage=0.05`), as `fake-ollama --fault-rate` takes it.
    ///
    /// # Errors
    ///
    /// [`TestkitError::UnknownFault`] or [`TestkitError::InvalidFaultRate`].
    pub fn parse_rate(spec: &str) -> Result<(Fault, f64), TestkitError> {
        let invalid = || TestkitError::InvalidFaultRate {
            spec: spec.to_owned(),
        };
        let (name, p) = spec.split_once('=').ok_or_else(invalid)?;
        let fault = Self::from_name(name.trim())?;
        let p: f64 = p.trim().parse().map_err(|_| invalid())?;
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid());
        }
        Ok((fault, p))
    }

    /// Whether this fault answers with an error status at once, without a slot.
    pub(crate) const fn is_status(self) -> bool {
        matches!(
            self,
            Fault::ServerError
                | Fault::Busy
                | Fault::RateLimited { .. }
                | Fault::ContextExceeded
                | Fault::BadRequest
                | Fault::Unauthorized
        )
    }
}

/// How a [`FakeOllama`](crate::FakeOllama) behaves. Start from [`Default`] and change what the
/// test needs with the `with_` methods or the fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FakeOllamaConfig {
    /// The loopback port to listen on; 0 (the default) picks a free one.
    pub port: u16,
    /// The models served, matched as Ollama does (case-insensitive, a missing tag means
    /// `:latest`). Default: enrich's default model, `qwen2.5:7b-instruct`.
    pub models: Vec<String>,
    /// How long each generation takes once it holds a slot (tokio's clock). Default: zero.
    pub latency: Duration,
    /// Generations that run at once (`OLLAMA_NUM_PARALLEL`). Default: 1, as Ollama; 0 counts
    /// as 1.
    pub slots: usize,
    /// Generations that may wait for a slot (`OLLAMA_MAX_QUEUE`); beyond it the server answers
    /// 503 "server busy". Default: 512, as Ollama.
    pub max_queue: usize,
    /// Changes of [`Self::slots`] while the server runs: after each duration (from the start,
    /// tokio's clock) the slots become that many, as a server that loses or gains capacity
    /// (another client taking the GPU, a restart with another `OLLAMA_NUM_PARALLEL`). Fewer
    /// slots take effect as running generations finish. Default: none.
    pub slot_changes: Vec<(Duration, usize)>,
    /// Faults for the next generation requests, in arrival order; a request finding it empty
    /// draws from [`FakeOllamaConfig::fault_rates`].
    pub faults: Vec<Fault>,
    /// Each fault's probability per generation request (drawn once per request, the
    /// probabilities add up to at most 1).
    pub fault_rates: Vec<(Fault, f64)>,
    /// The seed of the fault draws, so a run can be replayed.
    pub seed: u64,
    /// The context length reported by `/api/show` and enforced: a prompt estimated at more
    /// tokens (one per four bytes) than `min(options.num_ctx, context_length)` gets a 400
    /// "the input length exceeds the context length". Default: 32768.
    pub context_length: u64,
    /// Keep every request body for [`FakeOllama::requests`](crate::FakeOllama::requests).
    /// Default: true; turn it off for long benchmarks.
    pub record_requests: bool,
    /// What `/api/version` reports. Default: `0.12.0`.
    pub version: String,
    /// The key every request must carry as `Authorization: Bearer <key>`, as a proxy in front of
    /// Ollama or a hosted OpenAI-compatible server checks it; a request without it, or with
    /// another, gets 401 ([`Outcome::Unauthorized`](crate::Outcome::Unauthorized)) on every
    /// route but `/_fake/stats`. Default: `None`, no check.
    pub api_key: Option<String>,
    /// The body size of an [`Fault::Oversized`] answer, in bytes. Default: 8 MiB, twice
    /// enrich's default `max_response_bytes`.
    pub oversized_bytes: u64,
}

impl Default for FakeOllamaConfig {
    fn default() -> Self {
        Self {
            port: 0,
            models: vec![DEFAULT_MODEL.to_owned()],
            latency: Duration::ZERO,
            slots: 1,
            max_queue: 512,
            slot_changes: Vec::new(),
            faults: Vec::new(),
            fault_rates: Vec::new(),
            seed: 0,
            context_length: 32_768,
            record_requests: true,
            version: "0.12.0".to_owned(),
            api_key: None,
            oversized_bytes: 8 * 1024 * 1024,
        }
    }
}

impl FakeOllamaConfig {
    /// Serves exactly these models.
    #[must_use]
    pub fn with_models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the latency of each generation.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the parallel slots and the queue length.
    #[must_use]
    pub fn with_capacity(mut self, slots: usize, max_queue: usize) -> Self {
        self.slots = slots;
        self.max_queue = max_queue;
        self
    }

    /// After `after` from the start, the server runs `slots` generations at once (see
    /// [`FakeOllamaConfig::slot_changes`]).
    #[must_use]
    pub fn with_slot_change(mut self, after: Duration, slots: usize) -> Self {
        self.slot_changes.push((after, slots));
        self
    }

    /// Appends faults for the next generation requests.
    #[must_use]
    pub fn with_faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.faults.extend(faults);
        self
    }

    /// Injects `fault` into each generation request with probability `p`.
    #[must_use]
    pub fn with_fault_rate(mut self, fault: Fault, p: f64) -> Self {
        self.fault_rates.push((fault, p));
        self
    }

    /// Sets the seed of the fault draws.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the enforced context length.
    #[must_use]
    pub fn with_context_length(mut self, tokens: u64) -> Self {
        self.context_length = tokens;
        self
    }

    /// Requires `Authorization: Bearer <key>` on every request (see
    /// [`FakeOllamaConfig::api_key`]).
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the body size of an [`Fault::Oversized`] answer.
    #[must_use]
    pub fn with_oversized_bytes(mut self, bytes: u64) -> Self {
        self.oversized_bytes = bytes;
        self
    }

    /// Keeps (or not) every request body.
    #[must_use]
    pub fn with_recording(mut self, record: bool) -> Self {
        self.record_requests = record;
        self
    }

    /// Checks the fault rates: each between 0 and 1, at most 1 in all.
    pub(crate) fn check(&self) -> Result<(), TestkitError> {
        let mut sum = 0.0;
        for &(fault, p) in &self.fault_rates {
            sum += p;
            if !(0.0..=1.0).contains(&p) || sum > 1.0 + 1e-9 {
                return Err(TestkitError::InvalidFaultRate {
                    spec: format!("{}={p}", fault.name()),
                });
            }
        }
        Ok(())
    }
}
