//! enrich's backend adapter for [Ollama](https://ollama.com)'s HTTP API.
//!
//! [`OllamaAdapter`] implements [`BackendAdapter`](enrich_backends::BackendAdapter) for one
//! backend entry (`provider = "ollama"`); [`register`] adds its factory to an
//! [`AdapterRegistry`](enrich_backends::AdapterRegistry). The adapter translates a
//! [`GenerateRequest`](enrich_backends::GenerateRequest) into one `POST /api/generate`, the
//! answer into a [`Generation`](enrich_backends::Generation) with Ollama's usage metrics, and
//! every failure into a [`BackendError`](enrich_backends::BackendError) whose
//! [`FailureKind`](enrich_backends::FailureKind) the cascade acts on. It never retries and never
//! falls back. Each adapter owns one HTTP client, so every span of a run reuses its keep-alive
//! connections.
//!
//! # The request
//!
//! `POST <url>/api/generate` rather than `/api/chat`: a request is one prompt and an optional
//! system prompt, which is exactly `/api/generate`'s `prompt` and `system` (Ollama applies the
//! model's chat template to both, as `/api/chat` would), and the answer's text and `thinking`
//! sit at the top level. `/api/chat` would add a message list for no gain: the options, `format`,
//! metrics and errors are the same.
//!
//! - `model`, `prompt`, `system` (when set), `stream: false` unless `options.stream = true`;
//! - `format`: the request's JSON Schema (enrichment.v1, bounded by `maxLength`/`maxItems`, so
//!   Ollama's grammar cannot run away), or `"json"` when the request has none;
//! - `options`: the backend's options table as it is, minus enrich's own keys (`stream`,
//!   `keep_alive`, `think`; `max_in_flight` never gets here, the config layer takes it out of
//!   the table into the spec), plus `num_predict` from
//!   `max_output_tokens` unless the table sets `num_predict` itself;
//! - `keep_alive` and `think` only when the options table sets them: Ollama's own default keeps
//!   the model loaded for 5 minutes, and a `keep_alive: 0` would reload it for every span.
//!
//! With `stream = true` the answer is read as NDJSON: the `response` pieces are joined, the
//! metrics come from the final `done: true` line, an `{"error": …}` line after the 200 is a
//! failure classified by its text, and a stream that ends without `done: true` is a
//! `server_error` (the server or the connection died; nothing says the model hit a limit, so it
//! is not `truncated`).
//!
//! Timeouts: connecting may take the backend's `timeout_seconds` (default 120 s) but at most
//! 10 s; the whole request, answer included, may take `timeout_seconds`.
//!
//! `url` is `http://` or `https://`. HTTPS is TLS 1.3 or 1.2 through rustls with the ring
//! provider and the system's root certificates ([`enrich_backends::tls`]; `SSL_CERT_FILE`
//! names another bundle, and [`OllamaAdapter::with_tls`] takes a configuration of one's own), as
//! for the OpenAI-compatible adapter. Proxies come from the
//! environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
//!
//! # Classification
//!
//! | what happened | [`FailureKind`](enrich_backends::FailureKind) | notes |
//! |---|---|---|
//! | connection refused, DNS failure, connect timeout | `connect` | the message names the URL and says to start Ollama or fix `url` / `OLLAMA_HOST` |
//! | a failed TLS handshake (`https://` to a plain-HTTP server, a certificate no trusted root vouches for) | `connect` | the message says which, and how to trust a private certificate authority |
//! | connection reset or closed mid-request | `connect` | Ollama stopped or crashed |
//! | no complete answer within `timeout_seconds` | `timeout` | the message names the timeout and says to raise `timeout_seconds` |
//! | HTTP 503 (Ollama's "server busy"), 429 | `overloaded` | `Retry-After` (seconds or an HTTP date) becomes `retry_after` |
//! | HTTP 404 | `model_not_found` | the message says `ollama pull <model>` |
//! | HTTP 400 mentioning the context length (or window, or size) | `context_exceeded` | raise `num_ctx` or shorten the span |
//! | HTTP 401, 403 | `auth` | |
//! | HTTP 408 | `timeout` | the server timed the request out |
//! | HTTP 499 | `server_error` | Ollama's "client closed the request": enrich did not cancel, so the server failed; `cancelled` would stop the span |
//! | any other 4xx | `invalid_request` | usually a bad option |
//! | any other 5xx (or other non-2xx) | `server_error` | |
//! | `{"error": …}` after a 200 (streamed, or as the body) | by its text: context length → `context_exceeded`, "server busy" → `overloaded`, model not found → `model_not_found`, else `server_error` | |
//! | a 200 whose body (or a stream line) is not Ollama's JSON, or lacks `done: true` | `server_error` | a proxy or another server answered; `malformed_output` is kept for the model's own text, which the cascade judges |
//! | a stream that ends without `done: true` | `server_error` | |
//! | an answer over the backend's `max_response_bytes` (default 4 MiB): a `Content-Length` above it, or more bytes than that arriving (whole or streamed) | `response_too_large` | the body is not read further; the next backend gets the span |
//! | `done_reason == "length"` | `truncated` | the message gives `eval_count` and says to raise `num_predict` or `num_ctx` |
//!
//! Every message quotes Ollama's `{"error": …}` text (cut to 300 characters) and names the
//! host without credentials. An empty `response` with a non-empty `thinking` (a thinking model
//! that put its answer there) yields the `thinking` text.
//!
//! # Health
//!
//! [`health`](enrich_backends::BackendAdapter::health) asks `GET /api/version` (reachable,
//! version), `GET /api/tags` (is the model pulled? `qwen2.5` matches `qwen2.5:latest`; if not,
//! the fix is `ollama pull <model>`) and `POST /api/show` (the context length from
//! `model_info["<arch>.context_length"]`).
//!
//! # What this crate does not know
//!
//! No SQLite, no router, no pipeline, no prompt: it depends on `enrich-backends` and the config
//! types alone. Ollama's wire types stay private; only the normalised request and answer cross
//! the trait.

mod adapter;
mod classify;
mod error;
mod health;
mod settings;
mod wire;

pub use adapter::{OllamaAdapter, PROVIDER, register};
pub use error::OllamaConfigError;
