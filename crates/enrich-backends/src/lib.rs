//! The shared contract between enrich's pipeline and its LLM providers.
//!
//! - [`BackendAdapter`]: the trait a provider crate (`enrich-adapter-<name>`) implements. Three
//!   required methods (`spec`, `describe_host`, `generate`), two provided (`health`,
//!   `capabilities`); object safe, used as `Arc<dyn BackendAdapter>`. With the `mock` feature,
//!   mockall's `MockBackendAdapter` is available to other crates' unit tests.
//! - [`GenerateRequest`] in, [`Generation`] (text + [`UsageMetrics`]) out; failures are a
//!   [`BackendError`] carrying a [`FailureKind`].
//! - [`parse_and_validate`] and [`enrichment_v1_schema`]: the enrichment.v1 output, extracted
//!   from chatty replies, normalised and validated into an [`Enrichment`].
//! - [`Cascade`]: tries a chain's backends for one span under a [`CascadePolicy`], recording
//!   every attempt as an [`AttemptRecord`].
//! - [`AdapterRegistry`]: provider name → [`AdapterFactory`].
//!
//! # Who decides what
//!
//! Adapters translate and classify; they never retry, never fall back, and need no timeout of
//! their own. The cascade owns retries, backoff, deadlines (each backend's `timeout_seconds`),
//! fallback and cancellation, and decides from the [`FailureKind`] alone, through a policy table
//! that is plain data ([`KindTable`]). Deciding ([`CascadePolicy::decide`], a pure function) is
//! kept apart from doing ([`Cascade::run`]), so each is tested on its own.
//!
//! The default policy ([`CascadePolicy::default`]):
//!
//! | [`FailureKind`] (stored name) | typical cause | retries | then |
//! |---|---|---|---|
//! | `connect` | refused, DNS, reset | 0 | next backend; trips the circuit |
//! | `timeout` | no answer within `timeout_seconds` | 1 | next backend |
//! | `overloaded` | Ollama 503 "server busy", 429 | 2, honouring `retry_after` | next backend |
//! | `server_error` | other 5xx | 1 | next backend |
//! | `model_not_found` | Ollama 404 | 0 | next backend; skipped for the rest of the run |
//! | `context_exceeded` | 400 "input length exceeds the context length" | 0 | next backend |
//! | `auth` | 401, 403 | 0 | next backend; skipped for the rest of the run |
//! | `truncated` | `done_reason == "length"` | 0 | next backend |
//! | `malformed_output` | no JSON object in the reply | 0 | next backend |
//! | `schema_invalid` | JSON that fails enrichment.v1 validation | 0 | next backend |
//! | `cancelled` | shutdown | 0 | stop; write nothing for the span |
//! | `invalid_request` | other 4xx | 0 | next backend |
//!
//! Retries wait an exponential [`Backoff`] (0.5 s doubling to at most 30 s, with jitter) or the
//! backend's `retry_after`, whichever is longer; a `retry_after` beyond the cap is not waited
//! for: the cascade moves to the next backend instead. A span gets at most 6 attempts in all
//! ([`CascadePolicy::max_attempts_per_span`]). Three consecutive `connect` failures of a backend,
//! across spans, open its circuit for 30 s ([`CircuitPolicy`]): spans pass over it meanwhile.
//!
//! # What this crate does not know
//!
//! No SQLite, no HTTP client, no concrete provider and no prompt: it depends on the config types
//! alone. Storing attempts and enrichments is the pipeline's job, speaking HTTP the adapters'.
//! The cost of this split is that the cascade cannot look inside a provider's error: anything
//! it needs to act on must be said through [`FailureKind`] and [`BackendError::retry_after`].

mod adapter;
mod attempt;
mod cascade;
mod error;
mod failure;
mod output;
mod policy;
mod registry;

#[cfg(any(test, feature = "mock"))]
pub use adapter::MockBackendAdapter;
pub use adapter::{
    BackendAdapter, Capabilities, GenerateRequest, Generation, HealthReport, SpanContext,
    UsageMetrics,
};
pub use attempt::{AttemptOutcome, AttemptRecord};
pub use cascade::{AttemptObserver, Cascade, CascadeFailure, CascadeSuccess, GiveUpReason};
pub use error::BackendsError;
pub use failure::{BackendError, FailureKind};
pub use output::{
    ENRICHMENT_SCHEMA_VERSION, Enrichment, Evidence, SUMMARY_MAX_WORDS, USAGE_SNIPPET_MAX_LINES,
    ValidationContext, enrichment_v1_schema, enrichment_v1_schema_for_lines, parse_and_validate,
};
pub use policy::{
    Backoff, CascadePolicy, CircuitPolicy, Decision, FailureAction, KindPolicy, KindTable,
    SpanProgress,
};
pub use registry::{AdapterFactory, AdapterRegistry};
