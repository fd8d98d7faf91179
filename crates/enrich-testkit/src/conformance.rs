//! The adapter conformance suite: [`run_conformance`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, BackendError, FailureKind, GenerateRequest, Generation, SpanIdentity,
    ValidationContext, enrichment_v1_schema, parse_and_validate,
};
use enrich_config::{BackendSpec, DEFAULT_CHAIN, Options};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::answer::{FakeMetrics, GARBAGE_TEXT};
use crate::fake_ollama::{FakeOllama, FakeOllamaConfig, Fault, RecordedRequest};

/// The wire API an adapter speaks, which decides where the suite points it and what it
/// expects in the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Ollama's native API (`/api/generate` or `/api/chat`). The spec's `url` is the server's
    /// base URL (`http://127.0.0.1:PORT`), its provider `ollama`.
    Ollama,
    /// The OpenAI-compatible API (`/chat/completions` under the base URL). The spec's `url` is
    /// the base URL including `/v1` (`http://127.0.0.1:PORT/v1`), as OpenAI clients take it;
    /// its provider `openai`.
    OpenAiCompatible,
}

impl Api {
    fn provider(self) -> &'static str {
        match self {
            Api::Ollama => "ollama",
            Api::OpenAiCompatible => "openai",
        }
    }

    fn base_url(self, server_url: &str) -> String {
        match self {
            Api::Ollama => server_url.to_owned(),
            Api::OpenAiCompatible => format!("{server_url}/v1"),
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Ollama => "ollama",
            Api::OpenAiCompatible => "openai-compatible",
        })
    }
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The adapter behaves as required.
    Passed,
    /// The adapter broke the rule; the text says what was expected and what happened.
    Failed(String),
    /// The check does not apply to this API or to what the adapter claims; the text says why.
    NotApplicable(String),
}

/// One named behaviour and its [`Verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The behaviour's stable name (see [`run_conformance`] for the list).
    pub name: &'static str,
    /// How it went.
    pub verdict: Verdict,
}

/// The result of [`run_conformance`]: every check, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceReport {
    /// The API the adapter was tested as.
    pub api: Api,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl ConformanceReport {
    /// True when no check failed.
    pub fn is_conformant(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Failed(_)))
    }

    /// The check named `name`, if the suite ran it.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Panics with the list of failed checks unless the adapter conforms: the one-line
    /// assertion for an adapter crate's test.
    ///
    /// # Panics
    ///
    /// When any check failed; the message is this report.
    #[track_caller]
    pub fn assert_conformant(&self) {
        assert!(self.is_conformant(), "{self}");
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |p: fn(&Verdict) -> bool| self.checks.iter().filter(|c| p(&c.verdict)).count();
        writeln!(
            f,
            "adapter conformance ({}): {} passed, {} failed, {} not applicable",
            self.api,
            count(|v| matches!(v, Verdict::Passed)),
            count(|v| matches!(v, Verdict::Failed(_))),
            count(|v| matches!(v, Verdict::NotApplicable(_))),
        )?;
        for check in &self.checks {
            match &check.verdict {
                Verdict::Passed => writeln!(f, "  ok    {}", check.name)?,
                Verdict::Failed(why) => writeln!(f, "  FAIL  {}: {why}", check.name)?,
                Verdict::NotApplicable(why) => writeln!(f, "  n/a   {}: {why}", check.name)?,
            }
        }
        Ok(())
    }
}

/// The model every conformance server serves.
const MODEL: &str = "conformance-model:7b";
/// A model no conformance server serves.
const ABSENT_MODEL: &str = "absent-model:1b";
/// The timeout of specs that expect an answer.
const TIMEOUT_SECONDS: f64 = 10.0;
/// The password in the URL of the credentials check.
const URL_PASSWORD: &str = "conformance-url-password";
/// `max_response_bytes` of the oversized check.
const RESPONSE_CAP: u64 = 64 * 1024;
/// The oversized answer of that check: a thousand times the cap.
const OVERSIZED_BYTES: u64 = 64 * 1024 * 1024;
/// The timeout of the spec in the hang check.
const HANG_TIMEOUT_SECONDS: f64 = 0.3;
/// How long past its timeout the hang check waits for the adapter.
const HANG_GRACE: Duration = Duration::from_millis(500);
/// How long any other call may take before the suite gives up on it.
const CALL_LIMIT: Duration = Duration::from_secs(15);
/// What the request asks for at most.
const MAX_OUTPUT_TOKENS: u32 = 256;
/// The `Retry-After` of the 429 check.
const RETRY_AFTER_SECS: u64 = 7;
/// The context length the fake reports.
const CONTEXT_LENGTH: u64 = 32_768;
const PROMPT: &str = "Summarise the code of src/conformance.rs lines 10-24 as one enrichment.v1 \
                      JSON object.\n\nfn conformance() -> u32 {\n    42\n}\n";
const SYSTEM: &str = "You describe code. Reply with one JSON object and nothing else.";

/// Runs every conformance check against adapters built by `make` and reports each by name.
///
/// For each check the suite starts its own [`FakeOllama`], builds a [`BackendSpec`] pointing
/// at it (name `conformance`, provider `ollama` or `openai`, model `conformance-model:7b`, the
/// URL described at [`Api`], `timeout_seconds` 10 — 0.3 for the hang — and options
/// `temperature: 0, seed: 42`, plus `num_ctx: 8192` for Ollama), asks `make` for an adapter,
/// and sends one [`GenerateRequest`] with a prompt citing lines 10-24, a system prompt, the
/// enrichment.v1 schema and `max_output_tokens` 256 for a span of lines 10-24.
///
/// | check | requirement |
/// |---|---|
/// | `valid_generation` | the answer is `Ok` and its text passes [`parse_and_validate`] |
/// | `request_carries_prompt_and_system` | both texts are in the request body, the system prompt first: Ollama's `system` (or the start of `prompt`), a chat message before the prompt's (or earlier in the same message), so every span's request starts with the same bytes |
/// | `request_carries_schema` | Ollama: `format` is the schema; OpenAI: `response_format` is `{"type":"json_schema","json_schema":{"schema":…}}` |
/// | `request_carries_options` | Ollama: each spec option is in `options`; OpenAI: each is a top-level field |
/// | `request_carries_max_output_tokens` | when [`Capabilities::output_token_limit`](enrich_backends::Capabilities) is claimed: `options.num_predict` (Ollama), `max_tokens` or `max_completion_tokens` (OpenAI) |
/// | `metrics_are_reported` | model, host = `describe_host()`, token counts as the server sent them, `done_reason` `stop`; Ollama also the four durations and a derivable 100 tokens/s |
/// | `describe_host_names_the_server` | `describe_host()` contains `127.0.0.1:PORT` |
/// | `connections_are_reused` | three calls on one adapter use one TCP connection (keep-alive) |
/// | `garbage_is_returned_as_text` | a 200 with non-JSON text is `Ok` with that text: validating is the cascade's job |
/// | `thinking_only_is_read` | Ollama: an empty `response` with the answer in `thinking` gives that answer |
/// | `truncation_is_flagged` | `done_reason`/`finish_reason` `length`: `Err(Truncated)`, or `Ok` with `done_reason` `length` |
/// | `refused_connection_is_connect` | nothing listening: `Connect` |
/// | `hang_is_timeout` | no answer: `Timeout` no earlier than `timeout_seconds`, or still pending 0.5 s after it (the cascade's deadline then applies); either way the connection is closed once the call is dropped |
/// | `busy_503_is_overloaded` | 503 "server busy": `Overloaded` |
/// | `rate_limit_429_is_overloaded_with_retry_after` | 429 with `Retry-After: 7`: `Overloaded`, `retry_after` 7 s |
/// | `server_error_500_is_server_error` | 500: `ServerError` |
/// | `stream_error_is_server_error` | Ollama: an `{"error"}` line after a 200 (a 500 when not streaming): `ServerError` |
/// | `oversized_answer_is_response_too_large` | with `max_response_bytes` 64 KiB, a 200 of 64 MiB sent in chunks without a length: `ResponseTooLarge` (read through [`ResponseLimit`](enrich_backends::ResponseLimit), never whole) |
/// | `credentials_in_the_url_are_never_shown` | with `user:PASSWORD@` in the URL: a 500, an answer and a health check, and the password is in no message, fix, `describe_host()` or `metrics.host` |
/// | `unknown_model_404_is_model_not_found` | 404: `ModelNotFound`, the message names the model |
/// | `context_400_is_context_exceeded` | 400 "the input length exceeds the context length": `ContextExceeded` |
/// | `bad_request_400_is_invalid_request` | another 400: `InvalidRequest` |
/// | `unauthorized_401_is_auth` | 401: `Auth` |
/// | `health_reports_model_present` | `reachable` and `model_present` true (and `context_length`, if given, 32768) |
/// | `health_reports_missing_model` | for an unknown model: reachable, `model_present` false, a fix naming the model |
/// | `health_reports_unreachable` | nothing listening: `reachable` false |
///
/// Only the hang check uses real time (under a second); the whole suite takes about one
/// second. Call it from a `#[tokio::test]` whose clock is **not** paused. A call that takes
/// longer than 15 s fails its check instead of blocking the suite.
///
/// ```no_run
/// # async fn example() {
/// use std::sync::Arc;
/// use enrich_backends::BackendAdapter;
/// use enrich_testkit::{Api, run_conformance};
/// # struct MyAdapter;
/// # impl MyAdapter { fn new(_: &enrich_config::BackendSpec) -> Result<Self, enrich_backends::BackendError> { Ok(MyAdapter) } }
/// # #[async_trait::async_trait] impl BackendAdapter for MyAdapter {
/// #   fn spec(&self) -> &enrich_config::BackendSpec { unimplemented!() }
/// #   fn describe_host(&self) -> String { String::new() }
/// #   async fn generate(&self, _: &enrich_backends::GenerateRequest) -> Result<enrich_backends::Generation, enrich_backends::BackendError> { unimplemented!() }
/// # }
///
/// run_conformance(Api::Ollama, |spec| Ok(Arc::new(MyAdapter::new(spec)?)))
///     .await
///     .assert_conformant();
/// # }
/// ```
pub async fn run_conformance<F>(api: Api, make: F) -> ConformanceReport
where
    F: Fn(&BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError>,
{
    let suite = Suite { api, make };
    let mut checks = Vec::new();

    let normal = suite.normal_generation().await;
    for (name, verdict) in normal.verdicts(&suite) {
        checks.push(Check { name, verdict });
    }

    let mut record = |name: &'static str, verdict: Verdict| checks.push(Check { name, verdict });
    record(
        "connections_are_reused",
        verdict(suite.connections_are_reused().await),
    );
    record(
        "garbage_is_returned_as_text",
        verdict(suite.garbage().await),
    );
    record(
        "thinking_only_is_read",
        verdict(suite.thinking_only().await),
    );
    record("truncation_is_flagged", verdict(suite.truncation().await));
    record(
        "refused_connection_is_connect",
        verdict(suite.refused().await),
    );
    record("hang_is_timeout", verdict(suite.hang().await));
    let status_checks: [(&'static str, Fault, FailureKind); 7] = [
        (
            "busy_503_is_overloaded",
            Fault::Busy,
            FailureKind::Overloaded,
        ),
        (
            "rate_limit_429_is_overloaded_with_retry_after",
            Fault::RateLimited {
                retry_after_secs: RETRY_AFTER_SECS,
            },
            FailureKind::Overloaded,
        ),
        (
            "server_error_500_is_server_error",
            Fault::ServerError,
            FailureKind::ServerError,
        ),
        (
            "stream_error_is_server_error",
            Fault::StreamError,
            FailureKind::ServerError,
        ),
        (
            "context_400_is_context_exceeded",
            Fault::ContextExceeded,
            FailureKind::ContextExceeded,
        ),
        (
            "bad_request_400_is_invalid_request",
            Fault::BadRequest,
            FailureKind::InvalidRequest,
        ),
        (
            "unauthorized_401_is_auth",
            Fault::Unauthorized,
            FailureKind::Auth,
        ),
    ];
    for (name, fault, kind) in status_checks {
        let verdict = if fault == Fault::StreamError && api == Api::OpenAiCompatible {
            Verdict::NotApplicable("the OpenAI-compatible endpoint is not streamed".to_owned())
        } else {
            verdict(suite.classified(fault, kind).await)
        };
        record(name, verdict);
    }
    record(
        "oversized_answer_is_response_too_large",
        verdict(suite.oversized().await),
    );
    record(
        "credentials_in_the_url_are_never_shown",
        verdict(suite.credentials_hidden().await),
    );
    record(
        "unknown_model_404_is_model_not_found",
        verdict(suite.unknown_model().await),
    );
    record(
        "health_reports_model_present",
        verdict(suite.health_present().await),
    );
    record(
        "health_reports_missing_model",
        verdict(suite.health_missing().await),
    );
    record(
        "health_reports_unreachable",
        verdict(suite.health_unreachable().await),
    );

    ConformanceReport { api, checks }
}

type Outcome = Result<Verdict, String>;

fn verdict(outcome: Outcome) -> Verdict {
    outcome.unwrap_or_else(Verdict::Failed)
}

struct Suite<F> {
    api: Api,
    make: F,
}

/// A server, an adapter pointed at it, and what a call returned.
struct Run {
    server: FakeOllama,
    adapter: Arc<dyn BackendAdapter>,
    result: Result<Generation, BackendError>,
}

impl Run {
    /// The generation request the server recorded.
    fn body(&self) -> Result<RecordedRequest, String> {
        self.server
            .requests()
            .into_iter()
            .find(|r| r.endpoint.is_generation())
            .ok_or_else(|| {
                "the server received no generation request (expected POST /api/generate, \
                 /api/chat or /v1/chat/completions)"
                    .to_owned()
            })
    }
}

fn span() -> SpanIdentity {
    SpanIdentity::new("sha256:conformance", "src/conformance.rs", 10, 24)
}

fn request() -> GenerateRequest {
    GenerateRequest::new(PROMPT, span())
        .with_system(SYSTEM)
        .with_schema(Arc::clone(enrichment_v1_schema()))
        .with_max_output_tokens(MAX_OUTPUT_TOKENS)
}

fn describe(result: &Result<Generation, BackendError>) -> String {
    match result {
        Ok(generation) => format!("Ok with text {:?}", clip(&generation.text)),
        Err(err) => format!("Err({}): {}", err.kind, err.message),
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A URL where nothing listens: a port just bound and released.
fn refused_url() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|err| format!("could not reserve a loopback port: {err}"))?;
    let addr = listener
        .local_addr()
        .map_err(|err| format!("could not read the reserved port: {err}"))?;
    Ok(format!("http://{addr}"))
}

async fn limited<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CALL_LIMIT, future)
        .await
        .map_err(|_| format!("{what} did not finish within {} s", CALL_LIMIT.as_secs()))
}

impl<F> Suite<F>
where
    F: Fn(&BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError>,
{
    fn spec(&self, base_url: String, model: &str, timeout_seconds: f64) -> BackendSpec {
        let mut spec = BackendSpec::new("conformance", DEFAULT_CHAIN, self.api.provider(), model);
        spec.url = Some(base_url);
        spec.timeout_seconds = Some(timeout_seconds);
        spec.options = self.options();
        spec
    }

    fn options(&self) -> Options {
        let mut options = Options::new();
        options.insert("temperature".to_owned(), json!(0));
        options.insert("seed".to_owned(), json!(42));
        if self.api == Api::Ollama {
            options.insert("num_ctx".to_owned(), json!(8192));
        }
        options
    }

    fn adapter(&self, spec: &BackendSpec) -> Result<Arc<dyn BackendAdapter>, String> {
        (self.make)(spec).map_err(|err| {
            format!(
                "the adapter factory refused the spec (url {:?}): {err}",
                spec.url.as_deref().unwrap_or_default()
            )
        })
    }

    async fn server(&self, faults: &[Fault]) -> Result<FakeOllama, String> {
        let config = FakeOllamaConfig::default()
            .with_models([MODEL])
            .with_capacity(4, 16)
            .with_context_length(CONTEXT_LENGTH)
            .with_faults(faults.iter().copied());
        FakeOllama::start(config)
            .await
            .map_err(|err| format!("could not start the fake server: {err}"))
    }

    /// One call against a fresh server that injects `faults`.
    async fn run(&self, faults: &[Fault], model: &str) -> Result<Run, String> {
        let server = self.server(faults).await?;
        let spec = self.spec(self.api.base_url(server.url()), model, TIMEOUT_SECONDS);
        let adapter = self.adapter(&spec)?;
        let result = limited("generate()", adapter.generate(&request())).await?;
        Ok(Run {
            server,
            adapter,
            result,
        })
    }

    async fn normal_generation(&self) -> NormalRun {
        NormalRun(self.run(&[], MODEL).await)
    }

    async fn connections_are_reused(&self) -> Outcome {
        let server = self.server(&[]).await?;
        let spec = self.spec(self.api.base_url(server.url()), MODEL, TIMEOUT_SECONDS);
        let adapter = self.adapter(&spec)?;
        for call in 1..=3 {
            let result = limited("generate()", adapter.generate(&request())).await?;
            if let Err(err) = result {
                return Err(format!("call {call} failed: {}: {}", err.kind, err.message));
            }
        }
        match server.stats().connections {
            1 => Ok(Verdict::Passed),
            n => Err(format!(
                "three calls opened {n} connections: build one HTTP client per adapter and keep \
                 connections alive"
            )),
        }
    }

    async fn garbage(&self) -> Outcome {
        let run = self.run(&[Fault::Garbage], MODEL).await?;
        match &run.result {
            Ok(generation) if generation.text.contains(GARBAGE_TEXT) => Ok(Verdict::Passed),
            other => Err(format!(
                "expected Ok with the server's text {GARBAGE_TEXT:?} (output validation is the \
                 cascade's job), got {}",
                describe(other)
            )),
        }
    }

    async fn thinking_only(&self) -> Outcome {
        if self.api != Api::Ollama {
            return Ok(Verdict::NotApplicable(
                "thinking replies are an Ollama-API behaviour".to_owned(),
            ));
        }
        let run = self.run(&[Fault::ThinkingOnly], MODEL).await?;
        let text = match &run.result {
            Ok(generation) => &generation.text,
            Err(_) => {
                return Err(format!(
                    "expected Ok with the answer read from `thinking`, got {}",
                    describe(&run.result)
                ));
            }
        };
        parse_and_validate(text, &ValidationContext::for_span(&span(), true))
            .map(|_| Verdict::Passed)
            .map_err(|err| {
                format!(
                    "an empty `response` with the answer in `thinking` must give that answer; \
                     got text {:?} ({err})",
                    clip(text)
                )
            })
    }

    async fn truncation(&self) -> Outcome {
        let run = self.run(&[Fault::Truncated], MODEL).await?;
        match &run.result {
            Err(err) if err.kind == FailureKind::Truncated => Ok(Verdict::Passed),
            Ok(generation) if generation.metrics.is_truncated() => Ok(Verdict::Passed),
            Ok(generation) => Err(format!(
                "the server said done_reason \"length\"; expected Err(truncated) or Ok with \
                 metrics.done_reason \"length\", got Ok with done_reason {:?}",
                generation.metrics.done_reason
            )),
            Err(err) => Err(format!(
                "expected Err(truncated) or Ok with metrics.done_reason \"length\", got \
                 Err({}): {}",
                err.kind, err.message
            )),
        }
    }

    async fn refused(&self) -> Outcome {
        let url = refused_url()?;
        let spec = self.spec(self.api.base_url(&url), MODEL, TIMEOUT_SECONDS);
        let adapter = self.adapter(&spec)?;
        let result = limited("generate()", adapter.generate(&request())).await?;
        expect_kind(&result, FailureKind::Connect)
    }

    async fn hang(&self) -> Outcome {
        let server = self.server(&[Fault::Hang]).await?;
        let spec = self.spec(self.api.base_url(server.url()), MODEL, HANG_TIMEOUT_SECONDS);
        let adapter = self.adapter(&spec)?;
        let timeout = spec.timeout();
        let started = Instant::now();
        let waited = tokio::time::timeout(timeout + HANG_GRACE, adapter.generate(&request())).await;
        let elapsed = started.elapsed();
        match waited {
            // Still pending: the cascade's deadline turns this into a timeout.
            Err(_) => {}
            Ok(Err(err)) if err.kind == FailureKind::Timeout => {
                if elapsed < timeout.mul_f64(0.9) {
                    return Err(format!(
                        "returned Err(timeout) after {} ms, before the spec's timeout_seconds \
                         ({} ms)",
                        elapsed.as_millis(),
                        timeout.as_millis()
                    ));
                }
            }
            Ok(other) => {
                return Err(format!(
                    "the server never answered; expected Err(timeout) or a call still pending \
                     at the deadline, got {} after {} ms",
                    describe(&other),
                    elapsed.as_millis()
                ));
            }
        }
        let released = tokio::time::timeout(
            Duration::from_secs(2),
            server.wait_until(|s| s.running == 0),
        )
        .await
        .is_ok();
        if released {
            Ok(Verdict::Passed)
        } else {
            Err(
                "the server still holds the request after the call was dropped: the adapter \
                 must close the connection when its future is dropped"
                    .to_owned(),
            )
        }
    }

    async fn classified(&self, fault: Fault, kind: FailureKind) -> Outcome {
        let run = self.run(&[fault], MODEL).await?;
        expect_kind(&run.result, kind)?;
        if let (Fault::RateLimited { retry_after_secs }, Err(err)) = (fault, &run.result) {
            let expected = Duration::from_secs(retry_after_secs);
            if err.retry_after != Some(expected) {
                return Err(format!(
                    "the 429 carried `Retry-After: {retry_after_secs}`; expected retry_after \
                     {expected:?}, got {:?}",
                    err.retry_after
                ));
            }
        }
        Ok(Verdict::Passed)
    }

    async fn oversized(&self) -> Outcome {
        let config = FakeOllamaConfig::default()
            .with_models([MODEL])
            .with_faults([Fault::Oversized])
            .with_oversized_bytes(OVERSIZED_BYTES);
        let server = FakeOllama::start(config)
            .await
            .map_err(|err| format!("could not start the fake server: {err}"))?;
        let mut spec = self.spec(self.api.base_url(server.url()), MODEL, TIMEOUT_SECONDS);
        spec.max_response_bytes = Some(RESPONSE_CAP);
        let adapter = self.adapter(&spec)?;
        let result = limited("generate()", adapter.generate(&request())).await?;
        expect_kind(&result, FailureKind::ResponseTooLarge).map_err(|err| {
            format!(
                "{err}; read answers through enrich_backends::ResponseLimit with the spec's \
                 max_response_bytes()"
            )
        })?;
        Ok(Verdict::Passed)
    }

    async fn credentials_hidden(&self) -> Outcome {
        let server = self.server(&[Fault::ServerError]).await?;
        let url = self.api.base_url(server.url()).replacen(
            "http://",
            &format!("http://conformance:{URL_PASSWORD}@"),
            1,
        );
        let spec = self.spec(url, MODEL, TIMEOUT_SECONDS);
        let adapter = self.adapter(&spec)?;
        let mut shown = vec![format!("describe_host(): {}", adapter.describe_host())];
        for call in 1..=2 {
            match limited("generate()", adapter.generate(&request())).await? {
                Ok(generation) => shown.push(format!("metrics.host: {}", generation.metrics.host)),
                Err(err) => shown.push(format!("call {call}'s error: {err}")),
            }
        }
        let health = limited("health()", adapter.health()).await?;
        shown.extend(
            health
                .messages
                .iter()
                .map(|m| format!("health message: {m}")),
        );
        shown.extend(health.fixes.iter().map(|m| format!("health fix: {m}")));
        match shown.iter().find(|text| text.contains(URL_PASSWORD)) {
            Some(leak) => Err(format!(
                "the URL's password is shown in {leak:?}; show URLs through \
                 enrich_config::redact_url"
            )),
            None => Ok(Verdict::Passed),
        }
    }

    async fn unknown_model(&self) -> Outcome {
        let run = self.run(&[], ABSENT_MODEL).await?;
        expect_kind(&run.result, FailureKind::ModelNotFound)?;
        match &run.result {
            Err(err) if !err.message.contains(ABSENT_MODEL) => Err(format!(
                "the message must name the model {ABSENT_MODEL:?}: {:?}",
                err.message
            )),
            _ => Ok(Verdict::Passed),
        }
    }

    async fn health_present(&self) -> Outcome {
        let server = self.server(&[]).await?;
        let spec = self.spec(self.api.base_url(server.url()), MODEL, TIMEOUT_SECONDS);
        let report = limited("health()", self.adapter(&spec)?.health()).await?;
        if report.reachable != Some(true) || report.model_present != Some(true) {
            return Err(format!(
                "expected reachable and model_present true, got reachable {:?}, model_present \
                 {:?} (messages: {:?})",
                report.reachable, report.model_present, report.messages
            ));
        }
        match report.context_length {
            Some(n) if n != CONTEXT_LENGTH => Err(format!(
                "the server reports a context length of {CONTEXT_LENGTH}, health says {n}"
            )),
            _ => Ok(Verdict::Passed),
        }
    }

    async fn health_missing(&self) -> Outcome {
        let server = self.server(&[]).await?;
        let spec = self.spec(
            self.api.base_url(server.url()),
            ABSENT_MODEL,
            TIMEOUT_SECONDS,
        );
        let report = limited("health()", self.adapter(&spec)?.health()).await?;
        if report.reachable != Some(true) || report.model_present != Some(false) {
            return Err(format!(
                "for a model the server lacks, expected reachable true and model_present false, \
                 got reachable {:?}, model_present {:?}",
                report.reachable, report.model_present
            ));
        }
        if !report.fixes.iter().any(|fix| fix.contains(ABSENT_MODEL)) {
            return Err(format!(
                "expected a fix naming the model {ABSENT_MODEL:?} (e.g. `ollama pull \
                 {ABSENT_MODEL}`), got fixes {:?}",
                report.fixes
            ));
        }
        Ok(Verdict::Passed)
    }

    async fn health_unreachable(&self) -> Outcome {
        let url = refused_url()?;
        let spec = self.spec(self.api.base_url(&url), MODEL, TIMEOUT_SECONDS);
        let report = limited("health()", self.adapter(&spec)?.health()).await?;
        if report.reachable != Some(false) || report.is_healthy() {
            return Err(format!(
                "nothing listens at {url}; expected reachable false, got {:?} (messages: {:?})",
                report.reachable, report.messages
            ));
        }
        Ok(Verdict::Passed)
    }
}

fn expect_kind(result: &Result<Generation, BackendError>, kind: FailureKind) -> Outcome {
    match result {
        Err(err) if err.kind == kind => Ok(Verdict::Passed),
        other => Err(format!("expected Err({kind}), got {}", describe(other))),
    }
}

/// The normal generation, from which several checks are read.
struct NormalRun(Result<Run, String>);

impl NormalRun {
    fn verdicts<F>(&self, suite: &Suite<F>) -> Vec<(&'static str, Verdict)> {
        type Read = fn(Api, &Run, &Generation) -> Outcome;
        let reads: [(&'static str, Read); 7] = [
            ("valid_generation", valid_generation),
            (
                "request_carries_prompt_and_system",
                carries_prompt_and_system,
            ),
            ("request_carries_schema", carries_schema),
            ("request_carries_options", carries_options),
            (
                "request_carries_max_output_tokens",
                carries_max_output_tokens,
            ),
            ("metrics_are_reported", metrics_are_reported),
            (
                "describe_host_names_the_server",
                describe_host_names_the_server,
            ),
        ];
        reads
            .into_iter()
            .map(|(name, read)| {
                let outcome = match &self.0 {
                    Err(why) => Err(format!("the normal generation could not run: {why}")),
                    Ok(run) => match &run.result {
                        Ok(generation) => read(suite.api, run, generation),
                        Err(err) => Err(format!(
                            "the normal generation failed: Err({}): {}",
                            err.kind, err.message
                        )),
                    },
                };
                (name, verdict(outcome))
            })
            .collect()
    }
}

fn valid_generation(_: Api, _: &Run, generation: &Generation) -> Outcome {
    parse_and_validate(
        &generation.text,
        &ValidationContext::for_span(&span(), true),
    )
    .map(|_| Verdict::Passed)
    .map_err(|err| {
        format!(
            "the server answered a valid enrichment but the adapter returned text {:?} \
                 ({err})",
            clip(&generation.text)
        )
    })
}

/// Whether any string in `value` contains `needle`.
fn mentions(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|v| mentions(v, needle)),
        Value::Object(map) => map.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

fn carries_prompt_and_system(_: Api, run: &Run, _: &Generation) -> Outcome {
    let body = run.body()?.body;
    let missing: Vec<&str> = [("prompt", PROMPT), ("system prompt", SYSTEM)]
        .into_iter()
        .filter(|(_, text)| !mentions(&body, text))
        .map(|(what, _)| what)
        .collect();
    if missing.is_empty() {
        if system_comes_first(&body) {
            Ok(Verdict::Passed)
        } else {
            Err(format!(
                "the system prompt comes after the prompt, so no two spans' requests share a \
                 prefix a server could cache; send it as the API's system prompt or before the \
                 prompt: {body}"
            ))
        }
    } else {
        Err(format!(
            "the request body lacks the {}: {body}",
            missing.join(" and the ")
        ))
    }
}

/// Whether the request puts [`SYSTEM`] before [`PROMPT`]: Ollama's `system` field (the server
/// renders it first), a chat message before the one with the prompt, or earlier in one text.
fn system_comes_first(body: &Value) -> bool {
    let before =
        |text: &str| matches!((text.find(SYSTEM), text.find(PROMPT)), (Some(s), Some(p)) if s < p);
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        let at = |needle: &str| messages.iter().position(|m| mentions(m, needle));
        return match (at(SYSTEM), at(PROMPT)) {
            (Some(s), Some(p)) if s < p => true,
            (Some(s), Some(p)) if s == p => before(&messages[s].to_string()),
            _ => false,
        };
    }
    let field = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
    field("system").contains(SYSTEM) || before(field("prompt"))
}

fn carries_schema(api: Api, run: &Run, _: &Generation) -> Outcome {
    let body = run.body()?.body;
    let schema: &Value = enrichment_v1_schema();
    let (sent, field) = match api {
        Api::Ollama => (body.get("format"), "`format`"),
        Api::OpenAiCompatible => {
            let kind = body
                .pointer("/response_format/type")
                .and_then(Value::as_str);
            if kind != Some("json_schema") {
                return Err(format!(
                    "expected response_format.type \"json_schema\", got {:?}",
                    body.get("response_format")
                ));
            }
            (
                body.pointer("/response_format/json_schema/schema"),
                "`response_format.json_schema.schema`",
            )
        }
    };
    if sent == Some(schema) {
        Ok(Verdict::Passed)
    } else {
        Err(format!(
            "expected the request's schema (enrichment.v1) in {field}, got {}",
            sent.map_or_else(|| "nothing".to_owned(), |v| clip(&v.to_string()))
        ))
    }
}

fn carries_options(api: Api, run: &Run, _: &Generation) -> Outcome {
    let body = run.body()?.body;
    let options = run.adapter.spec().options.clone();
    let mut wrong = Vec::new();
    for (key, value) in &options {
        let sent = match api {
            Api::Ollama => body.get("options").and_then(|o| o.get(key)),
            Api::OpenAiCompatible => body.get(key),
        };
        if !sent.is_some_and(|sent| same_value(sent, value)) {
            wrong.push(format!("{key}: expected {value}, sent {sent:?}"));
        }
    }
    if wrong.is_empty() {
        Ok(Verdict::Passed)
    } else {
        let place = match api {
            Api::Ollama => "in `options`",
            Api::OpenAiCompatible => "as top-level fields",
        };
        Err(format!(
            "the spec's options must be sent {place}: {}",
            wrong.join("; ")
        ))
    }
}

/// JSON equality where numbers compare by value (`0` equals `0.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn carries_max_output_tokens(api: Api, run: &Run, _: &Generation) -> Outcome {
    if !run.adapter.capabilities().output_token_limit {
        return Ok(Verdict::NotApplicable(
            "the adapter does not claim capabilities().output_token_limit".to_owned(),
        ));
    }
    let body = run.body()?.body;
    let expected = Value::from(MAX_OUTPUT_TOKENS);
    let ok = match api {
        Api::Ollama => body.pointer("/options/num_predict") == Some(&expected),
        Api::OpenAiCompatible => {
            body.get("max_tokens") == Some(&expected)
                || body.get("max_completion_tokens") == Some(&expected)
        }
    };
    if ok {
        Ok(Verdict::Passed)
    } else {
        let field = match api {
            Api::Ollama => "options.num_predict",
            Api::OpenAiCompatible => "max_tokens or max_completion_tokens",
        };
        Err(format!(
            "the adapter claims output_token_limit; expected {field} = {MAX_OUTPUT_TOKENS}, the \
             body was {}",
            clip(&body.to_string())
        ))
    }
}

fn metrics_are_reported(api: Api, run: &Run, generation: &Generation) -> Outcome {
    let recorded = run.body()?;
    let prompt_bytes = crate::fake_ollama::prompt_bytes(recorded.endpoint, &recorded.body)
        .ok_or("the recorded request has no readable prompt")?;
    let sent = FakeMetrics::for_sizes(prompt_bytes, generation.text.len());
    let m = &generation.metrics;
    let mut wrong = Vec::new();
    let host = run.adapter.describe_host();
    compare(&mut wrong, "model", m.model.as_str(), MODEL);
    compare(&mut wrong, "host", m.host.as_str(), host.as_str());
    compare(
        &mut wrong,
        "prompt_eval_count",
        m.prompt_eval_count,
        Some(sent.prompt_eval_count),
    );
    compare(
        &mut wrong,
        "eval_count",
        m.eval_count,
        Some(sent.eval_count),
    );
    compare(
        &mut wrong,
        "done_reason",
        m.done_reason.as_deref(),
        Some("stop"),
    );
    if api == Api::Ollama {
        compare(
            &mut wrong,
            "total_duration_ns",
            m.total_duration_ns,
            Some(sent.total_duration),
        );
        compare(
            &mut wrong,
            "load_duration_ns",
            m.load_duration_ns,
            Some(sent.load_duration),
        );
        compare(
            &mut wrong,
            "prompt_eval_duration_ns",
            m.prompt_eval_duration_ns,
            Some(sent.prompt_eval_duration),
        );
        compare(
            &mut wrong,
            "eval_duration_ns",
            m.eval_duration_ns,
            Some(sent.eval_duration),
        );
        let tps = m.derived_tokens_per_second();
        if tps.is_none_or(|t| (t - 100.0).abs() > 0.01) {
            wrong.push(format!(
                "tokens per second: expected 100 (eval_count / eval_duration), got {tps:?}"
            ));
        }
    }
    if wrong.is_empty() {
        Ok(Verdict::Passed)
    } else {
        Err(format!(
            "usage metrics differ from what the server sent: {}",
            wrong.join("; ")
        ))
    }
}

/// Notes a difference between what the adapter reported and what the server sent.
fn compare<T: PartialEq + fmt::Debug>(wrong: &mut Vec<String>, what: &str, got: T, expected: T) {
    if got != expected {
        wrong.push(format!("{what}: expected {expected:?}, got {got:?}"));
    }
}

fn describe_host_names_the_server(_: Api, run: &Run, _: &Generation) -> Outcome {
    let host = run.adapter.describe_host();
    let addr = run.server.addr().to_string();
    if host.contains(&addr) {
        Ok(Verdict::Passed)
    } else {
        Err(format!(
            "describe_host() is {host:?}; expected it to contain {addr:?}"
        ))
    }
}
