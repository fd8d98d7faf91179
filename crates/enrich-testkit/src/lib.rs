//! Test doubles for enrich's backends, for our crates and third-party adapter crates alike.
//!
//! A dev-dependency only; nothing in the product links it.
//!
//! - [`FakeAdapter`]: an in-process [`BackendAdapter`](enrich_backends::BackendAdapter) that
//!   answers from a script of [`Script`] steps (text, metrics, failures, delays on tokio's
//!   clock, hangs) and records every request. For pipeline and cascade tests.
//! - [`FakeOllama`]: a fake Ollama HTTP server on a loopback port (Ollama's native API and its
//!   OpenAI-compatible `/v1/chat/completions`), with deterministic answers valid under
//!   enrichment.v1, parallel slots and a bounded queue, injected [`Fault`]s, counters and
//!   recorded request bodies. Also a binary, `fake-ollama`, for CLI tests and benchmarks, and
//!   beside it `ollama-load`, a bare HTTP client that replays recorded request bodies at a
//!   fixed concurrency to measure a server's own request rate (`cargo xtask bench`), with a
//!   bare hyper connection or through a `reqwest::Client` alone.
//! - [`run_conformance`]: the adapter conformance suite. An adapter crate calls it in its own
//!   tests; it points the adapter at fake servers and checks, by name, that requests carry the
//!   prompt, schema and options, metrics come back, and every failure is classified into the
//!   right [`FailureKind`](enrich_backends::FailureKind).
//! - [`http_client`] and [`http_client_builder`]: reqwest clients for the fakes (the
//!   workspace's reqwest needs the TLS configuration every client is built with).
//! - [`TlsFront`]: HTTPS on loopback in front of a fake, certified by a test CA that only
//!   [`test_ca_roots`] trusts, for adapters' TLS tests.
//! - [`ModelServerProcess`]: the real local model server (a small LLM behind Ollama's API, in
//!   `model-server/`) as a child process, for end-to-end tests.
//!
//! # What this crate does not know
//!
//! SQLite, the pipeline, the router and any concrete adapter: it depends on `enrich-backends`
//! and `enrich-config` alone, so every adapter crate can use it without a cycle. Its fakes
//! speak the providers' wire formats from the outside, as a server would; they share no code
//! with the adapters they test, which is the point. The cost is that the fake server's
//! fidelity is only as good as this crate's reading of Ollama's API (DESIGN.md §6): behaviours
//! it does not model are listed at [`FakeOllama`].

mod answer;
mod conformance;
mod error;
mod fake_adapter;
mod fake_batch;
mod fake_ollama;
mod http_client;
mod model_server;
mod tls_front;

pub use answer::{cited_lines, valid_enrichment_json};
pub use conformance::{Api, Check, ConformanceReport, Verdict, run_conformance};
pub use error::TestkitError;
pub use fake_adapter::{FakeAdapter, Fallback, Script};
pub use fake_batch::{BatchEnd, BatchScript, FakeBatchService};
pub use fake_ollama::{
    Endpoint, FakeOllama, FakeOllamaConfig, FakeOllamaStats, Fault, Outcome, RecordedRequest,
};
pub use http_client::{http_client, http_client_builder};
pub use model_server::{
    MODEL_SERVER_MODEL_NAME, MODEL_VAR, ModelServerConfig, ModelServerProcess, NODE_VAR, SCRIPT_VAR,
};
pub use tls_front::{Handshake, TlsFront, test_ca_roots};
