//! The enrichment pipeline: pending spans in, validated enrichments (or ledgered failures) out.
//!
//! For each pending span of the index: a [`SliceView`](enrich_router::SliceView) goes to the
//! router, which picks a chain; the span's source is read from the repository (never outside
//! it) and put into a prompt ([`PromptBuilder`]: the `[enrichment.prompt]` template or a
//! built-in enrichment.v1 prompt, cut to `max_snippet_bytes`); the backends' cascade tries the
//! chain's adapters until one returns valid enrichment.v1 output; the outcome — the enrichment
//! with its attempt rows, or a failed run in the failure ledger (dead-lettered after
//! `max_failures_per_span` failed runs), or an empty enrichment under `on_failure =
//! "fallback_to_empty"` — goes to the single database writer. Spans whose file changed within
//! `cooldown_seconds` are skipped; a span whose source cannot be read fails with
//! `source_unreadable` in the ledger. Every span's source is scanned for secrets
//! (`enrich-secrets`) before its prompt is built: the prompt carries `[REDACTED:<rule id>]` in
//! place of each one, or, with `[enrichment.secrets] action = "skip"`, the span is not sent and
//! is ledgered as `secret_detected` (enrich-types' `LedgerKind` names every kind the ledger
//! stores).
//!
//! ```text
//! Pipeline::builder(&config, repo_root).configure(|s| ..).event_sink(..).build(&registry)?
//!     .run(&control).await?        -> RunSummary   (until nothing is pending, a limit, or stop)
//!     .process_batch(n, &control)  -> BatchResult  (one run of at most n spans, every result)
//!     .plan(n)                     -> Plan         (dry run: routes and prompt sizes, no backend)
//! ```
//!
//! # Design
//!
//! - **Streaming, flat memory.** Pending spans are read by keyset pages as slots free up, in
//!   work order (code first: by path weight with the starvation ratio, else by span id), from
//!   each lane's pending frontier; a page is `batch_size` spans at first and grows (up to 2048)
//!   while it lasts under half a second, and the next one is claimed ahead while the writer is
//!   not committing, so a run never holds more than two pages per queue plus the spans in
//!   flight. The cursors only move forward, so a span is taken at most once per
//!   run; a failed span waits for a later run.
//! - **Runs side by side.** A run claims each page: it leases the spans in one transaction, and
//!   skips spans another run holds; storing an outcome releases its lease, and a dead run's
//!   leases are reclaimed at once (same host) or when they expire.
//! - **Concurrency.** Up to `concurrency` spans in flight (a tokio `JoinSet`), and at most
//!   `max_in_flight` (alias `parallel`, default 1) requests per backend (per host of a host
//!   pool), through enrich-backends' decorators around each adapter (`InFlightLimit` or
//!   `HostPool`, then `RateLimited` when the backend sets rates) — the cascade is unchanged.
//!   Waiting for a slot or the limiter does not count against the backend's timeout. Adapters
//!   are built once per pipeline and shared.
//! - **One writer.** Each run opens one write connection (with the dead-letter threshold) and
//!   moves it into a dedicated thread, which commits outcomes in batches (every `commit_every`
//!   outcomes or `commit_interval`, and at the end), fed through a bounded queue, and hands it
//!   back when the run ends to record the end; `run` returns only after everything is
//!   committed. A run is a row of the `runs` table with its counts, status and
//!   [`config_fingerprint`].
//! - **Cancellation** ([`RunControl`]): *stop* takes no new span and lets those in flight finish
//!   and be written; *abort* also cancels them through the cascade's token, and a cancelled
//!   span writes nothing, not even its attempts.
//! - **Events** ([`Event`], [`EventSink`]): typed, serialisable with a `type` tag and a
//!   timestamp; [`JsonlSink`] appends them to a file, [`TracingSink`] logs them, [`FanOut`]
//!   combines sinks. The cost of typed events is that a new field is an API change; the gain is
//!   that the CLI's progress bar and the JSONL log cannot drift apart.
//!
//! # What this crate does not know
//!
//! No provider: adapters come from the [`AdapterRegistry`](enrich_backends::AdapterRegistry)
//! the caller fills. No HTTP, no figment, no config files (it takes a loaded
//! [`EnrichmentConfig`](enrich_config::EnrichmentConfig)), no terminal: the CLI turns events
//! into a progress bar and Ctrl-C into [`RunControl::escalate`].

mod batch;
mod budget;
mod control;
mod error;
mod events;
mod pipeline;
mod plan;
mod prompt;
mod provenance;
mod result;
mod run;
mod secrets;
mod settings;
mod shared;
mod writer;

pub use batch::{BatchAllowance, BatchPrep, BatchSpan};
pub use budget::{BudgetKind, BudgetStop};
pub use control::{RunControl, StopLevel};
pub use error::PipelineError;
pub use events::{Event, EventSink, FanOut, JsonlSink, NextStep, TracingSink, waiting_message};
pub use pipeline::{Pipeline, PipelineBuilder};
pub use prompt::{Prompt, PromptBuilder, PromptSpan, SnippetCut, estimate_tokens};
pub use provenance::{ENRICH_VERSION, model_digests, stale_expectations};
pub use result::{
    BatchResult, CostEstimate, Plan, PlannedSpan, RunEnd, RunOutcome, RunSummary, SpanResult,
    SpanStatus,
};
pub use settings::{
    PipelineSettings, WORKER_THREADS_ENV, cascade_policy, config_fingerprint, run_worker_threads,
};
