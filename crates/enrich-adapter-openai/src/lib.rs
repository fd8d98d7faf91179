//! enrich's backend adapter for OpenAI's chat completions API and every server that speaks it:
//! OpenAI itself, vLLM, llama.cpp's `llama-server`, LM Studio, Ollama's `/v1`, Groq, Together
//! and the like.
//!
//! [`OpenAiAdapter`] implements [`BackendAdapter`](enrich_backends::BackendAdapter) for one
//! backend entry (`provider = "openai"`); [`register`] adds its factory to an
//! [`AdapterRegistry`](enrich_backends::AdapterRegistry). The adapter translates a
//! [`GenerateRequest`](enrich_backends::GenerateRequest) into one
//! `POST {url}/chat/completions`, the answer into a [`Generation`](enrich_backends::Generation)
//! with its token usage, and every failure into a [`BackendError`](enrich_backends::BackendError)
//! whose [`FailureKind`](enrich_backends::FailureKind) the cascade acts on. It never retries and
//! never falls back. Each adapter owns one HTTP client, so every span of a run reuses its
//! keep-alive connections.
//!
//! # Configuring a backend
//!
//! ```toml
//! [[enrichment.chain]]
//! name = "openai"
//! provider = "openai"
//! model = "gpt-4o-mini"
//! url = "https://api.openai.com/v1"      # the default; a local server: "http://localhost:8000/v1"
//! api_key_env = "OPENAI_API_KEY"         # the default
//! options = { temperature = 0, seed = 42, max_tokens = 1024 }
//! ```
//!
//! - `url`: the API's base URL, as OpenAI's own clients take it (`/chat/completions` and
//!   `/models` are appended; a query such as `?api-version=…` is kept). [`DEFAULT_URL`] when
//!   unset. `https://` goes through rustls (ring) with the system's root certificates;
//!   `http://` is for local servers (see [HTTPS, proxies and redirects](#https-proxies-and-redirects)).
//!   `user:password@` is sent as basic auth and never shown.
//! - `api_key_env`: the variable holding the API key, read once when the adapter is built and
//!   sent as `Authorization: Bearer …`. Without it, [`DEFAULT_API_KEY_ENV`] is read, and when
//!   that is unset no `Authorization` header is sent (local servers need none); a variable
//!   named by `api_key_env` must be set. `OPENAI_API_KEY` goes to whatever `url` names, so
//!   give every other hosted provider its own variable (`api_key_env = "GROQ_API_KEY"`). The
//!   key appears in no `Debug` output, error or message.
//! - `timeout_seconds`: the whole request, answer included (default 120); connecting may take
//!   at most 10 s of it.
//!
//! # Options
//!
//! enrich's own keys in `options`:
//!
//! | key | meaning |
//! |---|---|
//! | `response_format` | `"json_schema"` (default): `{"type": "json_schema", "json_schema": {"name", "schema"}}` with the request's schema (enrichment.v1), `{"type": "json_object"}` for a request without one; `"json_object"`: always `{"type": "json_object"}`, for servers that reject schemas; `"none"`: no `response_format` at all, for servers that reject the field |
//! | `strict` | sent as `json_schema.strict` when set. OpenAI then guarantees the schema, but refuses schemas that use keywords it does not support; off by default |
//! | `stream` | must be `false` or unset: this adapter reads whole answers |
//! | `max_in_flight` (or `parallel`) | the pipeline's limit on requests in flight to this backend; the config layer takes it out of `options` into the spec's own field, so it is never sent |
//!
//! Every other option is sent as a top-level request field as it is: `temperature`, `seed`,
//! `top_p`, `stop`, `presence_penalty`, `frequency_penalty`, `max_tokens`,
//! `max_completion_tokens` (what OpenAI's reasoning models take instead of `max_tokens`), or a
//! server's own extension. The request's output limit is sent as `max_tokens` unless the
//! options set `max_tokens` or `max_completion_tokens` themselves. `model` and `messages`
//! cannot be options. A mistyped `response_format`, `strict` or `stream` is refused when the
//! adapter is built, naming the key.
//!
//! # The request and the answer
//!
//! `{"model", "messages": [{"role": "system", …}?, {"role": "user", "content": prompt}],
//! "stream": false, "response_format"?, "max_tokens"?, …options}`. From the answer:
//! `choices[0].message.content` is the text (when it is empty, the reasoning text of servers
//! that split it out, `reasoning_content` or `reasoning`); `model` (else the configured model);
//! the prompt tokens the server evaluated (llama.cpp's `timings.prompt_n`, else
//! `usage.prompt_tokens` less `usage.prompt_tokens_details.cached_tokens`) and
//! `usage.completion_tokens` become `prompt_eval_count` and `eval_count`; the total duration is measured here, from sending the request to the end of
//! the answer; llama.cpp's `timings` (when present) give the prompt and generation durations
//! and so tokens per second; `finish_reason` becomes the done reason.
//!
//! # Classification
//!
//! | what happened | [`FailureKind`](enrich_backends::FailureKind) | notes |
//! |---|---|---|
//! | connection refused, DNS or TLS failure, connect timeout, unreachable proxy | `connect` | the message names the URL |
//! | a TLS certificate that no trusted root vouches for | `connect` | the message says how to trust a private certificate authority |
//! | connection reset or closed mid-request | `connect` | |
//! | no complete answer within `timeout_seconds` | `timeout` | |
//! | HTTP 401, 403 | `auth` | the message names the key's variable, and says whether it is set |
//! | HTTP 429 `insufficient_quota` | `auth` | no credit left: not retried, and the backend is skipped for the rest of the run, as for a refused key; `FailureKind` has no closer kind |
//! | HTTP 429, 503 | `overloaded` | `retry_after`: the longest of `retry-after-ms`, `Retry-After` (seconds or an HTTP date) and the `x-ratelimit-reset-requests` / `-tokens` duration (`1s`, `6m0s`, `20ms`) of each limit whose `x-ratelimit-remaining-*` is 0 |
//! | HTTP 404 | `model_not_found` | the message says to fix `model` (or `url`) |
//! | HTTP 400 about the context length (`context_length_exceeded`, llama.cpp's `exceed_context_size_error`, or the words) | `context_exceeded` | |
//! | HTTP 408 | `timeout` | |
//! | HTTP 3xx | `invalid_request` | redirects are not followed; the message names the `Location` |
//! | any other 4xx | `invalid_request` | about the schema: the message suggests `response_format = "json_object"` |
//! | any other 5xx (or other non-2xx) | `server_error` | |
//! | a 200 with an `error` object and no choices | by its code and words, else `server_error` | some proxies answer so |
//! | a 200 that is not a chat completion (no JSON, no `choices`) | `server_error` | a proxy or another server answered; `malformed_output` is kept for the model's own text |
//! | an answer over the backend's `max_response_bytes` (default 4 MiB): a `Content-Length` above it, or more bytes than that arriving (whole or streamed) | `response_too_large` | the body is not read further; the next backend gets the span |
//! | `finish_reason == "length"` | `truncated` | the message gives the tokens generated and the limit |
//! | an empty `content` with a `refusal` | `malformed_output` | the message quotes the refusal |
//!
//! Every message quotes the server's error message (cut to 300 characters) and its `code`, and
//! names the host without credentials.
//!
//! # HTTPS, proxies and redirects
//!
//! Requests go through one reqwest client per backend (HTTP/1.1, keep-alive; an idle
//! connection is kept 90 s). `https://` is TLS 1.3 or 1.2 through rustls with the **ring**
//! crypto provider, handed to the client explicitly ([`enrich_backends::tls`]): nothing depends
//! on a process-wide default provider, and aws-lc-rs (whose C build alone took 49 to 58 s of a
//! cold build on 2 cores, where ring takes 3 to 7 s) is not built.
//!
//! The trusted roots are the system's, read when an `https://` backend is built:
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the distribution's OpenSSL locations
//! (`/etc/ssl/certs`). A store that gives no usable certificate is refused with
//! [`OpenAiConfigError::NoRootCertificates`], saying what went wrong. The system store rather than a bundled
//! copy of Mozilla's roots: it is where users behind a TLS-inspecting corporate proxy, or of a
//! private certificate authority, already added the certificate their traffic is signed with.
//!
//! Proxies come from the environment, read as curl reads them: `HTTPS_PROXY` for `https://`
//! (an HTTP CONNECT tunnel, with TLS to the server inside it), `HTTP_PROXY` for `http://`
//! (requests with absolute URLs), `ALL_PROXY` for both, and `NO_PROXY` for the hosts to reach
//! directly; `user:password@` in the proxy's URL is sent as `Proxy-Authorization`. The proxy
//! itself must be an `http://` one (SOCKS is not built in); an unreachable proxy fails as
//! `connect`.
//!
//! Redirects are not followed, so the API key never goes to a host the configuration does not
//! name: a 3xx fails as `invalid_request`, naming where it points.
//!
//! # Health
//!
//! [`health`](enrich_backends::BackendAdapter::health) asks `GET {url}/models`: reachable, key
//! accepted (`credentials_accepted` false after a 401 or 403), model listed (equal ignoring
//! case; `qwen2.5` matches `qwen2.5:latest`), and the context length where the server lists
//! it (vLLM's `max_model_len`, or `context_length`).
//!
//! # Batches
//!
//! [`BatchApi`] speaks OpenAI's Batch and Files APIs for the same backend entry (its URL, key,
//! client and TLS): upload a JSONL file (`POST {url}/files`, `purpose=batch`), create a batch
//! (`POST {url}/batches`, [`BATCH_ENDPOINT`], [`COMPLETION_WINDOW`]), read and cancel it, and
//! download its output and error files chunk by chunk ([`Download`]). Each line's body is
//! [`OpenAiAdapter::request_body`], the body a live call sends, and each answer is read by
//! [`OpenAiAdapter::read_answer`] exactly as a live answer is read and classified. A failed call
//! is a [`BackendError`](enrich_backends::BackendError) with the wait a `Retry-After` asks for.
//!
//! # What this crate does not know
//!
//! No SQLite, no router, no pipeline, no prompt: it depends on `enrich-backends` and the config
//! types alone. The wire types stay private; only the normalised request and answer cross the
//! trait. It does not stream, call tools, or send images, and it knows no provider by name:
//! what differs between servers is configured through `url`, `api_key_env` and `options`.

mod adapter;
mod batch;
mod classify;
mod error;
mod health;
mod settings;
mod transport;
mod wire;

pub use adapter::{OpenAiAdapter, PROVIDER, register};
pub use batch::{
    BATCH_ENDPOINT, BatchApi, BatchInfo, BatchStatus, COMPLETION_WINDOW, Download, RequestCounts,
};
pub use error::OpenAiConfigError;
pub use settings::{DEFAULT_API_KEY_ENV, DEFAULT_URL};
