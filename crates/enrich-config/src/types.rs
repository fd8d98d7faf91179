//! The settings types: what a loaded configuration looks like.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

/// Provider-specific options of a backend entry (`options = { temperature = 0.1, num_ctx = 8192 }`).
///
/// Kept as JSON values so the config layer knows no provider's wire format; each adapter reads the
/// keys it understands.
pub type Options = serde_json::Map<String, serde_json::Value>;

/// The name of the chain used when nothing else is configured.
pub const DEFAULT_CHAIN: &str = "default";
/// The provider a backend entry uses when it names none.
pub const DEFAULT_PROVIDER: &str = "ollama";
/// The model a backend entry uses when it names none (LLMC's default enrichment model).
pub const DEFAULT_MODEL: &str = "qwen2.5:7b-instruct";
/// The Ollama URL used when neither the config nor `OLLAMA_HOST` names one.
pub const DEFAULT_OLLAMA_URL: &str = "http://localhost:11434";
/// The per-request timeout of a backend that sets none, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 120.0;
/// The largest answer body read from a backend that sets no `max_response_bytes`: 4 MiB, far
/// above any enrichment (the output schema bounds every field) and far below what would strain
/// memory with many requests in flight.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// The routing tier an untiered backend counts as (LLMC's rule).
pub const DEFAULT_TIER: &str = "7b";

/// What to do with a span whose every backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Record the failure in the ledger; the span stays pending until it is dead-lettered.
    #[default]
    Error,
    /// Store an empty enrichment, marked as such, so the span is not retried.
    FallbackToEmpty,
}

impl OnFailure {
    /// The spelling used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Error => "error",
            OnFailure::FallbackToEmpty => "fallback_to_empty",
        }
    }
}

/// How strictly the quality gate judges an answer that passed the enrichment.v1 schema
/// (`[enrichment.quality] level`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum QualityLevel {
    /// No quality check rejects an answer (repairs still apply and the score is still kept).
    Off,
    /// The checks every answer must pass: a summary that says something (LLMC's floor: not
    /// empty, no placeholder, not too short), is not a bare number, path or name and does not
    /// echo the prompt; list items that are not placeholders or prompt fragments.
    #[default]
    Basic,
    /// The basic checks, and names claimed as inputs or outputs must occur in the span's
    /// source, and a usage snippet must mention the span's symbol.
    Strict,
}

impl QualityLevel {
    /// Every level, from the most lenient (the order of the variants: a check of a level
    /// rejects at that level and every stricter one).
    pub const ALL: [QualityLevel; 3] =
        [QualityLevel::Off, QualityLevel::Basic, QualityLevel::Strict];

    /// The spelling used in config files and stored with each quality score.
    pub const fn as_str(self) -> &'static str {
        match self {
            QualityLevel::Off => "off",
            QualityLevel::Basic => "basic",
            QualityLevel::Strict => "strict",
        }
    }

    /// The level spelled `name`, if any (the inverse of [`QualityLevel::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == name)
    }
}

/// The `[enrichment.quality]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityConfig {
    /// How strictly answers are judged.
    pub level: QualityLevel,
    /// The lowest quality score (0 to 1) a stored enrichment may have before `enrich status`
    /// counts it as stale (reason `quality`); `None`, the default, sets no minimum.
    #[serde(default)]
    pub min_score: Option<f64>,
}

/// The `[enrichment.prompt]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptConfig {
    /// A template with `{path} {line_start} {line_end} {snippet}` placeholders; `None` uses the
    /// built-in prompt.
    pub template: Option<String>,
    /// The most bytes of span source put into one prompt; longer spans are cut at a line boundary.
    pub max_snippet_bytes: usize,
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self {
            template: None,
            max_snippet_bytes: 24 * 1024,
        }
    }
}

/// One backend entry of a chain (`[[enrichment.chain]]` in the file).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSpec {
    /// A name unique within its chain, used in logs, the attempt log and `--chain` errors.
    pub name: String,
    /// The chain this entry belongs to.
    pub chain: String,
    /// The adapter that serves it (`ollama`, `openai`, …); resolved against the adapter registry.
    pub provider: String,
    /// The model tag sent to the provider.
    pub model: String,
    /// The provider's base URL; `None` lets the adapter pick its default. With a host pool
    /// this is the first of [`Self::urls`].
    pub url: Option<String>,
    /// Every host serving this backend, when the entry lists several (`urls = [...]`, a host
    /// pool: the same model on several machines); empty for a single host. The first equals
    /// [`Self::url`].
    pub urls: Vec<String>,
    /// The size class used by `max_tier` routing (`7b`, `14b`, …); `None` counts as `7b`.
    pub routing_tier: Option<String>,
    /// The per-request timeout in seconds; `None` means [`DEFAULT_TIMEOUT_SECONDS`].
    pub timeout_seconds: Option<f64>,
    /// The name of the environment variable holding this backend's API key. The key itself is
    /// never part of the configuration.
    pub api_key_env: Option<String>,
    /// The largest answer body read from this backend, in bytes; `None` means
    /// [`DEFAULT_MAX_RESPONSE_BYTES`]. A larger answer fails the attempt unread.
    pub max_response_bytes: Option<u64>,
    /// Requests per minute this backend may receive (all hosts together); `None` is unlimited.
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt and output, estimated before the call) per minute; `None` is unlimited.
    pub tokens_per_minute: Option<u32>,
    /// What this backend's tokens cost, for cost budgets and `enrich plan`; `None` is free.
    pub price: Option<Price>,
    /// The most requests in flight to this backend at once (per host of a host pool); `None`
    /// is 1. Written `max_in_flight` (alias `parallel`) in the entry's `options`, as LLMC's
    /// configs have it, and taken out of them when the entry is loaded.
    pub max_in_flight: Option<NonZeroUsize>,
    /// Whether the limit on requests in flight adapts to the server (the default): it starts
    /// at 1 and follows the answers' latency and overload signals, never above
    /// [`Self::max_in_flight`] when that is set. `false` keeps the fixed `max_in_flight`.
    pub adaptive: bool,
    /// Provider-specific options, passed to the adapter as they are.
    pub options: Options,
    /// Disabled entries stay in the config but are never selected.
    pub enabled: bool,
}

impl BackendSpec {
    /// A spec with LLMC's defaults for everything but the name, chain, provider and model.
    pub fn new(
        name: impl Into<String>,
        chain: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            chain: chain.into(),
            provider: provider.into(),
            model: model.into(),
            url: None,
            urls: Vec::new(),
            routing_tier: None,
            timeout_seconds: None,
            api_key_env: None,
            max_response_bytes: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            price: None,
            max_in_flight: None,
            adaptive: true,
            options: Options::new(),
            enabled: true,
        }
    }

    /// The routing tier, with LLMC's rule that an untiered backend counts as `7b`.
    pub fn tier(&self) -> &str {
        self.routing_tier.as_deref().unwrap_or(DEFAULT_TIER)
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The largest answer body read from this backend, in bytes.
    pub fn max_response_bytes(&self) -> u64 {
        self.max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
    }

    /// The fixed limit on requests in flight to this backend (with `adaptive = false`):
    /// [`Self::max_in_flight`], else 1. Set it to the server's `OLLAMA_NUM_PARALLEL`: more
    /// requests would only queue in the server, where they count against their timeout.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.map_or(1, NonZeroUsize::get)
    }

    /// The hosts serving this backend: [`Self::urls`] for a host pool, else [`Self::url`] alone
    /// (nothing when the adapter picks its default).
    pub fn hosts(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            self.url.as_deref().into_iter().collect()
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    /// This spec for one host of its pool: `url` set to `host`, `urls` empty.
    pub fn for_host(&self, host: &str) -> Self {
        let mut spec = self.clone();
        spec.url = Some(host.to_owned());
        spec.urls = Vec::new();
        spec
    }

    /// The fingerprint of this backend's generation options, stored with each enrichment it
    /// writes so a later change of them can be seen: the first 12 hex digits of the SHA-256 of
    /// the `options` table as JSON, keys sorted at every level, secret-looking values redacted
    /// (so it never depends on, or reveals, a secret). Any change of the table changes it,
    /// whatever the provider makes of the key; the order keys are written in does not.
    pub fn options_fingerprint(&self) -> String {
        fn sorted(value: &serde_json::Value) -> serde_json::Value {
            match value {
                serde_json::Value::Object(map) => {
                    let sorted_map: std::collections::BTreeMap<&String, serde_json::Value> =
                        map.iter().map(|(k, v)| (k, sorted(v))).collect();
                    serde_json::json!(sorted_map)
                }
                serde_json::Value::Array(items) => items.iter().map(sorted).collect(),
                other => other.clone(),
            }
        }
        let options = serde_json::Value::Object(redacted_options(&self.options));
        // A `Value` always serialises.
        let text = serde_json::to_string(&sorted(&options)).unwrap_or_default();
        let mut digest = enrich_types::file_hash(text.as_bytes());
        digest.truncate(12);
        digest
    }

    /// Reads the API key from the variable named by `api_key_env`, if any.
    pub fn api_key(&self) -> Option<Secret> {
        let var = self.api_key_env.as_deref()?;
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    }
}

/// Names of option keys whose values are redacted in `Debug` output and `enrich config`.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "token", "secret", "password", "authorization"]
        .iter()
        .any(|needle| key.contains(needle))
}

/// A copy of `options` with secret-looking values replaced by `"[redacted]"`.
pub fn redacted_options(options: &Options) -> Options {
    options
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                serde_json::Value::String(Secret::REDACTED.to_owned())
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendSpec")
            .field("name", &self.name)
            .field("chain", &self.chain)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("url", &self.url.as_deref().map(crate::redact_url))
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|url| crate::redact_url(url))
                    .collect::<Vec<_>>(),
            )
            .field("routing_tier", &self.routing_tier)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("api_key_env", &self.api_key_env)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("price", &self.price)
            .field("max_in_flight", &self.max_in_flight)
            .field("adaptive", &self.adaptive)
            .field("options", &redacted_options(&self.options))
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// The price of a backend's tokens, in any currency (the budgets use the same one), per million.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// The price of one million prompt (input) tokens.
    pub input_per_1m: f64,
    /// The price of one million output tokens.
    pub output_per_1m: f64,
}

impl Price {
    /// The cost of one call with `input` prompt tokens and `output` output tokens.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_1m + output as f64 * self.output_per_1m) / 1_000_000.0
    }
}

/// A secret value (an API key): shown as `[redacted]` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// What is printed in place of a secret.
    pub const REDACTED: &'static str = "[redacted]";

    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

/// How large the JSONL event log may grow before it is rotated, and how many rotated files are
/// kept (`event_log_max_bytes`, `event_log_keep`).
///
/// When the next lines would take the log past `max_bytes`, it is renamed to `PATH.1` (an
/// older `PATH.1` to `PATH.2`, and so on; the oldest beyond `keep` is dropped) and a new log is
/// started at `PATH`. Every file holds whole lines, at most `max_bytes` of them (a single line
/// longer than that gets a file of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogLimit {
    /// The most bytes one file holds; 0 lets the log grow without bound.
    pub max_bytes: u64,
    /// How many rotated files (`PATH.1` … `PATH.keep`) are kept; 0 keeps none (the full log is
    /// deleted and started again).
    pub keep: u32,
}

impl EventLogLimit {
    /// The default bound: 16 MiB per file, about 15,000 spans of events.
    pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
    /// The default number of rotated files kept, so the log takes at most 64 MiB.
    pub const DEFAULT_KEEP: u32 = 3;
}

impl Default for EventLogLimit {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            keep: Self::DEFAULT_KEEP,
        }
    }
}

/// The resolved `[enrichment]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentConfig {
    /// The chain used when no route and no override applies.
    pub default_chain: String,
    /// Spans taken from the database per batch (LLMC default 5).
    pub batch_size: usize,
    /// Spans in flight at once.
    pub concurrency: usize,
    /// Spans of files modified within this many seconds are left for a later run.
    pub cooldown_seconds: u64,
    /// Backend attempts allowed per span in one run.
    pub max_retries_per_span: u32,
    /// Failed runs after which a span is dead-lettered.
    pub max_failures_per_span: u32,
    /// How long, in seconds, a run waits for a backend to answer again when none can serve
    /// its spans, before it stops and leaves them pending (0: stop at once).
    pub outage_grace_seconds: u64,
    /// Reject enrichments containing characters outside Latin-1.
    pub enforce_latin1_enrichment: bool,
    /// Route spans by slice type through `routes`.
    pub enable_routing: bool,
    /// Slice type → chain name.
    pub routes: BTreeMap<String, String>,
    /// Keep only backends of this routing tier (see [`BackendSpec::tier`]).
    pub max_tier: Option<String>,
    /// What to do when every backend failed for a span.
    pub on_failure: OnFailure,
    /// The prompt settings.
    pub prompt: PromptConfig,
    /// Follow-up prompts per backend after an answer that is not valid enrichment JSON, each
    /// quoting the validator's message (0 moves to the next backend at once).
    pub corrective_reasks: u32,
    /// How long a run waits for the index's write lock while another process (an LLMC
    /// indexer, another run) holds it, before it stops with a "locked by another process" error.
    pub busy_timeout_seconds: f64,
    /// The order in which spans meet backends.
    pub schedule: crate::Schedule,
    /// When a failing backend or host is skipped.
    pub circuit_breaker: crate::CircuitBreakerConfig,
    /// When a run stops taking spans.
    pub budget: crate::BudgetConfig,
    /// Which pending spans a run takes first (`code_first`, `path_weights`, starvation ratios).
    pub work_order: crate::WorkOrder,
    /// Which files `enrich index` leaves out beyond the ignore files (`[enrichment.index]`).
    pub index: crate::IndexConfig,
    /// What a run does with a span holding a secret (`[enrichment.secrets]`).
    pub secrets: crate::SecretsConfig,
    /// How strictly the quality gate judges answers (`[enrichment.quality]`).
    pub quality: QualityConfig,
    /// The size bound of the JSONL event log.
    pub event_log: EventLogLimit,
    /// Every backend entry, in file order, each tagged with its chain.
    pub backends: Vec<BackendSpec>,
}

impl EnrichmentConfig {
    /// The names of all chains, in order of first appearance.
    pub fn chain_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for b in &self.backends {
            if !names.contains(&b.chain.as_str()) {
                names.push(&b.chain);
            }
        }
        names
    }

    /// All entries of a chain (enabled or not), in file order.
    pub fn chain(&self, name: &str) -> impl Iterator<Item = &BackendSpec> {
        self.backends.iter().filter(move |b| b.chain == name)
    }

    /// The enabled entries of a chain, in order; `None` when the chain does not exist or has no
    /// enabled entry. See [`crate::select_chain`] for the error-returning form.
    pub fn enabled_chain(&self, name: &str) -> Option<Vec<&BackendSpec>> {
        let enabled: Vec<&BackendSpec> = self.chain(name).filter(|b| b.enabled).collect();
        (!enabled.is_empty()).then_some(enabled)
    }
}
