//! The shared contract between enrich's pipeline and its LLM providers, and the reliability
//! machinery around it.
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
//!   every attempt as an [`AttemptRecord`], with a [`CircuitBreaker`] per backend.
//! - Decorators that are themselves adapters: [`InFlightLimit`] (requests in flight to one
//!   host), [`HostPool`] (one backend on several hosts) and [`RateLimited`] (requests and tokens
//!   per minute). The in-flight limit of a host is fixed or adaptive ([`AdaptiveLimit`], a pure
//!   state machine fed each request's latency and outcome).
//! - [`AdapterRegistry`]: provider name → [`AdapterFactory`]; builds adapters and host pools.
//! - For adapter authors: [`http`] (status codes, `Retry-After`, excerpts, error chains, lost
//!   connections and timeouts, over plain values: no HTTP library), [`ResponseLimit`], and with
//!   the `tls` feature `tls` (the rustls configuration, ring and the system's roots, every
//!   adapter hands its HTTP client).
//!
//! # Who decides what
//!
//! Adapters translate and classify; they never retry, never fall back, and need no timeout of
//! their own. The cascade owns retries, corrective re-asks, backoff, deadlines (each backend's
//! `timeout_seconds`), fallback, circuit breaking and cancellation, and decides from the
//! [`FailureKind`] alone, through a policy table that is plain data ([`KindTable`]). Deciding
//! ([`CascadePolicy::decide`], [`CircuitBreaker`], both pure) is kept apart from doing
//! ([`Cascade::run`]), so each is tested on its own.
//!
//! The default policy ([`CascadePolicy::default`]):
//!
//! | [`FailureKind`] (stored name) | typical cause | retries | then |
//! |---|---|---|---|
//! | `connect` | refused, DNS, reset | 0 | next backend; trips the circuit; outage |
//! | `timeout` | no answer within `timeout_seconds` | 1 | next backend; trips the circuit |
//! | `overloaded` | Ollama 503 "server busy", 429 | 2, honouring `retry_after` | next backend; outage |
//! | `server_error` | other 5xx | 1 | next backend; trips the circuit; outage |
//! | `model_not_found` | Ollama 404 | 0 | next backend; skipped for the rest of the run; outage |
//! | `context_exceeded` | 400 "input length exceeds the context length" | 0 | next backend |
//! | `auth` | 401, 403 | 0 | next backend; skipped for the rest of the run; outage |
//! | `truncated` | `done_reason == "length"` | 1 corrective re-ask (for a shorter answer) | next backend |
//! | `malformed_output` | no JSON object in the reply | 1 corrective re-ask | next backend |
//! | `schema_invalid` | JSON that fails enrichment.v1 validation | 1 corrective re-ask | next backend |
//! | `cancelled` | shutdown | 0 | stop; write nothing for the span |
//! | `invalid_request` | other 4xx | 0 | next backend |
//! | `response_too_large` | an answer over the backend's `max_response_bytes` ([`ResponseLimit`]) | 0 | next backend |
//!
//! Retries wait an exponential [`Backoff`] (0.5 s doubling to at most 30 s, with jitter) or the
//! backend's `retry_after`, whichever is longer; a `retry_after` beyond the cap is not waited
//! for: the cascade moves to the next backend instead. A span gets at most 6 attempts in all
//! ([`CascadePolicy::max_attempts_per_span`]); re-asks and retries count like first tries.
//!
//! An *outage* ([`KindPolicy::outage`]) is the backend's state, not the span's: a span that
//! gives up with a backend of its chain unavailable (an outage as its last failure there, or
//! passed over behind an open circuit or a skip) is [`Disposition::Unavailable`], not
//! [`Disposition::Failed`] ([`CascadeFailure::disposition`]); the pipeline keeps such a span
//! pending and tries it again when [`Cascade::availability`] says a backend is usable.
//!
//! # Corrective re-asks
//!
//! After `malformed_output`, `schema_invalid` or `truncated`, the same backend is asked again at once
//! ([`CascadePolicy::corrective_reasks`], default 1, 0 disables): the follow-up prompt is the
//! original one, then the rejected answer (at most 4000 bytes of it), the validator's message
//! and an instruction to answer with only the corrected JSON object. System prompt, schema and
//! output cap are unchanged, so adapters read the request as always. After `truncated` the
//! follow-up asks for a shorter answer instead of quoting the cut one. Observers see the re-ask
//! as a [`Decision::Retry`] without delay. Only then does the kind's own policy apply.
//!
//! # Circuit breaker
//!
//! Each backend (keyed by name, model and host) has a [`CircuitBreaker`] under
//! [`CircuitPolicy`]: after 3 consecutive tripping failures ([`KindPolicy::trips_circuit`]:
//! connect, timeout, server error), counted across spans, the circuit opens and every span
//! passes over the backend at once, with no attempt and no delay, for a 30 s cooldown. Then the
//! circuit is half-open: exactly one span's request is the probe while the others keep passing
//! over. An answer (a success, or any failure that does not trip) closes it and resets the
//! cooldown; a tripping failure opens it again for twice the last cooldown, at most 10 minutes.
//! A probe that is cancelled or dropped gives its place back. A dead first backend thus costs a
//! chain 3 failed attempts, then one probe per cooldown. [`Cascade::circuits`] gives a
//! serialisable [`CircuitSnapshot`] per backend, and [`AttemptObserver::on_circuit`] hears
//! every [`CircuitTransition`].
//!
//! # Host pools and rate limits
//!
//! A [`HostPool`] ([`AdapterRegistry::build_pool`] builds one from a backend entry's `urls`)
//! sends each request to the least-loaded host whose own circuit allows it, under that host's
//! in-flight cap, waiting for a slot when all are busy. A host failing with connect, timeout or
//! server error is counted against its circuit and the same request goes at once to another
//! host; only when every host has failed or is open does the pool fail, with `connect` and a
//! message naming every host. [`RateLimited`] keeps a backend under its requests and tokens per
//! minute ([`RateLimit`]; tokens estimated before the call by
//! [`GenerateRequest::estimated_tokens`]) with governor's GCRA on tokio's clock, first come
//! first served; a request larger than the whole minute's budget spends the whole budget
//! instead of waiting forever. Waiting for a host slot or the limiter never eats into a
//! backend's timeout: such decorators apply the backend's timeout themselves from the moment
//! the request is sent, and say so with [`Deadline::Adapter`], so the cascade sets no timer.
//! Compose them as `RateLimited(HostPool(hosts))`.
//!
//! # Adaptive in-flight limits
//!
//! Each host (an [`InFlightLimit`]'s one, every host of a [`HostPool`]) may have an
//! [`AdaptiveLimit`] instead of a fixed cap ([`AdaptivePolicy`]: start at 1, ceiling the
//! backend's `max_in_flight` or [`DEFAULT_ADAPTIVE_CEILING`], keep clear of its timeout). Each
//! answer is a latency sample; a [`FailureKind::Overloaded`] is a backoff that also holds new
//! requests while its `retry_after` lasts; a [`FailureKind::Timeout`] is a backoff; other
//! failures teach it nothing. The limit grows while the latency stays flat, shrinks to the
//! server's capacity when it inflates, and halves on backoffs (see [`AdaptiveLimit`] for
//! the algorithm and where it comes from). Changes reach
//! [`AttemptObserver::on_limit`] as [`LimitChange`]s; [`InFlightLimit::snapshot`] and
//! [`HostPool::limits`] give [`LimitSnapshot`]s.
//!
//! # What this crate does not know
//!
//! No SQLite, no HTTP client, no concrete provider and no prompt template: it depends on the
//! config types alone. Storing attempts and enrichments is the pipeline's job, speaking HTTP the
//! adapters', turning `[enrichment]` settings into policies the pipeline's too. The cost of this
//! split is that the cascade cannot look inside a provider's error: anything it needs to act on
//! must be said through [`FailureKind`] and [`BackendError::retry_after`].

mod adapter;
mod adaptive;
mod body;
mod cascade;
mod circuit;
mod deadline;
mod error;
mod failure;
mod gate;
pub mod http;
mod limit;
mod output;
mod policy;
mod pool;
mod rate;
mod registry;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(any(test, feature = "mock"))]
pub use adapter::MockBackendAdapter;
pub use adapter::{
    BackendAdapter, Capabilities, GenerateRequest, Generation, HealthReport, UsageMetrics,
};
pub use adaptive::{
    AdaptiveLimit, AdaptivePolicy, DEFAULT_ADAPTIVE_CEILING, INITIAL_ADAPTIVE_LIMIT, LimitReason,
    LimitStep, MAX_RETRY_AFTER_PAUSE, Sample, SampleOutcome,
};
pub use body::{ERROR_BODY_BYTES, ResponseLimit};
pub use cascade::{
    Answered, AttemptObserver, Availability, BackendOutage, Cascade, CascadeFailure,
    CascadeSuccess, Disposition, GiveUpReason, SpanStart, judge_answer,
};
pub use circuit::{
    CallOutcome, CircuitBreaker, CircuitPolicy, CircuitSnapshot, CircuitState, CircuitTicket,
    CircuitTransition,
};
pub use deadline::Deadline;
/// The domain's shared data (enrich-types), re-exported so that an adapter crate needs only
/// this crate: the span a request is about, the attempt record, failure kinds and the
/// enrichment.
pub use enrich_types::{
    AttemptOutcome, AttemptRecord, ENRICHMENT_SCHEMA_VERSION, Enrichment, Evidence, FailureKind,
    SpanIdentity,
};
pub use error::BackendsError;
pub use failure::BackendError;
pub use gate::{LimitChange, LimitSnapshot};
pub use limit::InFlightLimit;
pub use output::{
    CHARS_PER_TOKEN, CHECKS, Check, EVIDENCE_MAX_ITEMS, GATE_VERSION, ITEM_MAX_CHARS,
    LIST_MAX_ITEMS, OutputSchema, QualityReport, REPAIR_EVIDENCE_SWAPPED, REPAIR_SUMMARY_CUT,
    REPAIRS, SNIPPET_MAX_CHARS, SUMMARY_MAX_CHARS, SUMMARY_MAX_WORDS, USAGE_SNIPPET_MAX_LINES,
    Validated, ValidationContext, enrichment_v1_output_tokens, enrichment_v1_schema,
    enrichment_v1_schema_for_span, judge_reply, parse_and_validate, rejected_checks,
    worst_case_output_tokens,
};
pub use policy::{
    Backoff, CascadePolicy, Decision, FailureAction, KindPolicy, KindTable, SpanProgress,
};
pub use pool::{HostPool, HostPoolPolicy};
pub use rate::{RateLimit, RateLimited};
pub use registry::{AdapterFactory, AdapterRegistry};
