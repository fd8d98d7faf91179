//! The provider contract: [`BackendAdapter`] and the normalised request and response that cross
//! it.

use std::sync::Arc;

use enrich_config::BackendSpec;
use enrich_types::SpanIdentity;
use serde::{Deserialize, Serialize};

use crate::deadline::Deadline;
use crate::failure::BackendError;
use crate::output::OutputSchema;

/// One backend as the cascade sees it: a configured model behind some provider's API.
///
/// Implementations live in provider crates (`enrich-adapter-<name>`); they are built once per run
/// by the [`AdapterRegistry`](crate::AdapterRegistry) and shared as `Arc<dyn BackendAdapter>`.
/// An adapter translates [`GenerateRequest`] into its provider's wire format and the answer back
/// into a [`Generation`], and classifies every failure into a [`BackendError`]. It never
/// retries, never falls back and needs no timeout of its own: the [`Cascade`](crate::Cascade)
/// does all that, enforcing [`BackendSpec::timeout`] around [`generate`](Self::generate).
///
/// Three methods are required; [`health`](Self::health), [`capabilities`](Self::capabilities),
/// [`deadline`](Self::deadline) and [`model_digest`](Self::model_digest) have conservative
/// defaults.
///
/// With the `mock` feature (or in this crate's unit tests) mockall generates
/// `MockBackendAdapter` for consumers' unit tests.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait BackendAdapter: Send + Sync {
    /// The configuration entry this adapter serves.
    fn spec(&self) -> &BackendSpec;

    /// Where requests go, for logs and the attempt log (e.g. `http://127.0.0.1:11434`). Never
    /// includes credentials.
    fn describe_host(&self) -> String;

    /// Sends one request and returns the model's raw text with its usage metrics.
    ///
    /// Output validation is not the adapter's job: a well-formed answer holding bad JSON is an
    /// `Ok`. A `done_reason` of `"length"` may be returned as `Ok` too; the cascade classifies
    /// unparseable truncated output as [`FailureKind::Truncated`](crate::FailureKind::Truncated).
    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError>;

    /// Checks the backend for `enrich doctor`: reachable, version, model present, context length.
    ///
    /// The default reports that nothing is known.
    async fn health(&self) -> HealthReport {
        HealthReport::unknown(format!(
            "no health check implemented for provider '{}' (backend '{}')",
            self.spec().provider,
            self.spec().name
        ))
    }

    /// The identity of the exact model weights behind [`BackendSpec::model`], as the server
    /// reports it (Ollama's digest of a pulled model), so a stored enrichment can say which
    /// weights wrote it. `None` is "unknown": the server reports no such thing, the model is
    /// not listed, or the question failed. Asked once per backend per run, never per span; it
    /// must never fail a run, so an implementation bounds its wait like a health check.
    ///
    /// The default knows nothing.
    async fn model_digest(&self) -> Option<String> {
        None
    }

    /// What the backend supports. The default claims nothing ([`Capabilities::default`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// How long one request may take once it is sent, and who enforces it. The default: the
    /// cascade bounds each call by the spec's `timeout_seconds`. Decorators that queue apply
    /// the timeout themselves after their wait ([`Deadline::Adapter`]).
    fn deadline(&self) -> Deadline {
        Deadline::of(self.spec())
    }
}

/// What to ask a backend for one span. Cloning copies no text.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The span's part of the prompt (the built-in prompt's span and source), or the whole
    /// prompt when there is no [`system`](Self::system) part (an `[enrichment.prompt]`
    /// template, filled with the span's source).
    pub prompt: Arc<str>,
    /// The part of the prompt that is byte-identical for every span (the built-in prompt's
    /// instructions), to be placed before [`prompt`](Self::prompt), if the pipeline splits
    /// its prompt. An adapter sends it where its API takes a system prompt (Ollama's `system`,
    /// a first chat message of role `system`), else as the prompt's prefix; either way it comes
    /// first, so that a server with prefix caching evaluates only `prompt` for each span.
    pub system: Option<Arc<str>>,
    /// The JSON schema the output must follow (usually
    /// [`enrichment_v1_schema`](crate::enrichment_v1_schema)); adapters whose provider supports
    /// structured output send it (Ollama's `format`), serialized as it is.
    pub schema: Option<OutputSchema>,
    /// The span this request is about.
    pub span: SpanIdentity,
    /// The most tokens the model may generate, if limited.
    pub max_output_tokens: Option<u32>,
}

impl GenerateRequest {
    /// A request with just a prompt for a span.
    pub fn new(prompt: impl Into<Arc<str>>, span: SpanIdentity) -> Self {
        Self {
            prompt: prompt.into(),
            system: None,
            schema: None,
            span,
            max_output_tokens: None,
        }
    }

    /// Sets the system prompt.
    #[must_use]
    pub fn with_system(mut self, system: impl Into<Arc<str>>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Sets the output schema to enforce.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<OutputSchema>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Limits the number of generated tokens.
    #[must_use]
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = Some(max);
        self
    }

    /// The tokens this request may cost, estimated before it is sent: the prompt's and system
    /// prompt's bytes / 4 (rounded up) plus [`max_output_tokens`](Self::max_output_tokens)
    /// when set; at least 1. What [`RateLimited`](crate::RateLimited) counts against a
    /// backend's tokens per minute.
    pub fn estimated_tokens(&self) -> u32 {
        let bytes = self.prompt.len() + self.system.as_deref().map_or(0, str::len);
        let prompt = u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX);
        prompt
            .saturating_add(self.max_output_tokens.unwrap_or(0))
            .max(1)
    }
}

/// A backend's answer: the raw text and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The model's output, unvalidated.
    pub text: String,
    /// Token counts and timings as the provider reported them.
    pub metrics: UsageMetrics,
}

/// Usage metrics of one generation; every count and duration is optional because not every
/// provider reports it. Durations are in nanoseconds, as Ollama reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageMetrics {
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Where the answer came from ([`BackendAdapter::describe_host`]).
    pub host: String,
    /// Prompt tokens the server evaluated for this request: where it says how many it took from
    /// its prompt cache, those are not counted (see
    /// [`prompt_tokens_evaluated`](Self::prompt_tokens_evaluated)); else the prompt tokens it
    /// reports.
    pub prompt_eval_count: Option<u64>,
    /// Tokens generated.
    pub eval_count: Option<u64>,
    /// Wall time of the whole request.
    pub total_duration_ns: Option<u64>,
    /// Time spent loading the model.
    pub load_duration_ns: Option<u64>,
    /// Time spent evaluating the prompt.
    pub prompt_eval_duration_ns: Option<u64>,
    /// Time spent generating.
    pub eval_duration_ns: Option<u64>,
    /// Generation speed as reported; see [`UsageMetrics::derived_tokens_per_second`].
    pub tokens_per_second: Option<f64>,
    /// Why generation stopped (`stop`, `length` = truncated, …).
    pub done_reason: Option<String>,
}

impl UsageMetrics {
    /// Empty metrics naming the model and host.
    pub fn new(model: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            host: host.into(),
            ..Self::default()
        }
    }

    /// The prompt tokens a server evaluated, from what it reports: its `total` prompt tokens
    /// less the `cached` ones it read from its prompt cache when it reports both (Ollama's
    /// `prompt_eval_count` and `prompt_eval_cached_count`, OpenAI's `usage.prompt_tokens` and
    /// `usage.prompt_tokens_details.cached_tokens`), else `total` as it is.
    pub fn prompt_tokens_evaluated(total: Option<u64>, cached: Option<u64>) -> Option<u64> {
        match (total, cached) {
            (Some(total), Some(cached)) => Some(total.saturating_sub(cached)),
            (total, _) => total,
        }
    }

    /// The reported tokens per second, else `eval_count / eval_duration` when both are known
    /// and the duration is not zero.
    pub fn derived_tokens_per_second(&self) -> Option<f64> {
        self.tokens_per_second.or_else(|| {
            let count = self.eval_count?;
            let ns = self.eval_duration_ns.filter(|&ns| ns > 0)?;
            Some(count as f64 * 1e9 / ns as f64)
        })
    }

    /// Whether the provider says the output was cut at the token limit.
    pub fn is_truncated(&self) -> bool {
        self.done_reason.as_deref() == Some("length")
    }
}

/// What a health check found out. `None` means "not checked" or "unknown".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Whether the backend answered at all.
    pub reachable: Option<bool>,
    /// The server's version, if it reports one.
    pub version: Option<String>,
    /// Whether the server accepted the credentials (`Some(false)` after a 401/403): a backend
    /// that refuses its key is as unusable as one that is down.
    pub credentials_accepted: Option<bool>,
    /// Whether what answers at the URL speaks the provider's API (`Some(false)` when it
    /// answers but is something else, such as a 404 on Ollama's `/api/version`): as unusable
    /// as a server that is down.
    pub api_recognised: Option<bool>,
    /// Whether the configured model is available there.
    pub model_present: Option<bool>,
    /// The model's context length in tokens.
    pub context_length: Option<u64>,
    /// What was found, one line each, for people.
    pub messages: Vec<String>,
    /// How to fix each problem found (`ollama pull qwen2.5:7b-instruct`, …).
    pub fixes: Vec<String>,
}

impl HealthReport {
    /// A report that knows nothing but says why.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self {
            messages: vec![message.into()],
            ..Self::default()
        }
    }

    /// True when the backend is known to be reachable, accepts its credentials, speaks the
    /// provider's API as far as is known, and the model is not known to be missing.
    pub fn is_healthy(&self) -> bool {
        self.reachable == Some(true)
            && self.credentials_accepted != Some(false)
            && self.api_recognised != Some(false)
            && self.model_present != Some(false)
    }
}

/// What a backend supports, so the pipeline can ask without downcasting. The default claims
/// nothing, which is always safe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The backend enforces [`GenerateRequest::schema`] (structured output).
    pub structured_output: bool,
    /// The backend can stream its output.
    pub streaming: bool,
    /// The backend reports token counts and durations in [`UsageMetrics`].
    pub usage_metrics: bool,
    /// The backend honours [`GenerateRequest::max_output_tokens`].
    pub output_token_limit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> SpanIdentity {
        SpanIdentity::new("sha256:ab", "src/lib.rs", 3, 9)
    }

    #[tokio::test]
    async fn mock_adapter_works_behind_arc_dyn() {
        let mut mock = MockBackendAdapter::new();
        mock.expect_spec()
            .return_const(BackendSpec::new("m", "default", "mock", "tiny"));
        mock.expect_describe_host()
            .return_const("mock://local".to_owned());
        mock.expect_generate().times(1).returning(|request| {
            Ok(Generation {
                text: format!("echo: {}", request.prompt),
                metrics: UsageMetrics::new("tiny", "mock://local"),
            })
        });

        let adapter: Arc<dyn BackendAdapter> = Arc::new(mock);
        let request = GenerateRequest::new("hello", span());
        let generation = adapter.generate(&request).await.unwrap();
        assert_eq!(generation.text, "echo: hello");
        assert_eq!(adapter.spec().model, "tiny");
        assert_eq!(adapter.describe_host(), "mock://local");
    }

    /// An adapter implementing only the required methods.
    struct Minimal(BackendSpec);

    #[async_trait::async_trait]
    impl BackendAdapter for Minimal {
        fn spec(&self) -> &BackendSpec {
            &self.0
        }
        fn describe_host(&self) -> String {
            "minimal://".to_owned()
        }
        async fn generate(&self, _: &GenerateRequest) -> Result<Generation, BackendError> {
            Err(BackendError::new(
                crate::FailureKind::Connect,
                "unreachable",
            ))
        }
    }

    #[tokio::test]
    async fn provided_methods_claim_nothing() {
        let adapter: Arc<dyn BackendAdapter> =
            Arc::new(Minimal(BackendSpec::new("x", "default", "acme", "m")));
        let health = adapter.health().await;
        assert_eq!(health.reachable, None);
        assert!(!health.is_healthy());
        assert_eq!(
            health.messages,
            ["no health check implemented for provider 'acme' (backend 'x')"]
        );
        assert_eq!(adapter.capabilities(), Capabilities::default());
        assert!(!adapter.capabilities().structured_output);
        assert_eq!(adapter.model_digest().await, None);
    }

    #[test]
    fn tokens_per_second_is_derived_only_when_missing() {
        let mut metrics = UsageMetrics::new("m", "h");
        assert_eq!(metrics.derived_tokens_per_second(), None);
        metrics.eval_count = Some(30);
        metrics.eval_duration_ns = Some(0);
        assert_eq!(metrics.derived_tokens_per_second(), None);
        metrics.eval_duration_ns = Some(1_500_000_000);
        assert_eq!(metrics.derived_tokens_per_second(), Some(20.0));
        metrics.tokens_per_second = Some(42.5);
        assert_eq!(metrics.derived_tokens_per_second(), Some(42.5));
    }

    #[test]
    fn evaluated_prompt_tokens_leave_out_the_cached_ones() {
        let evaluated = UsageMetrics::prompt_tokens_evaluated;
        assert_eq!(evaluated(Some(900), Some(850)), Some(50));
        assert_eq!(evaluated(Some(900), None), Some(900));
        assert_eq!(evaluated(Some(900), Some(0)), Some(900));
        assert_eq!(evaluated(None, Some(850)), None);
        // A server that reports more cached than in all: nothing evaluated, never an underflow.
        assert_eq!(evaluated(Some(10), Some(12)), Some(0));
    }

    #[test]
    fn token_estimates_count_prompt_bytes_and_the_output_cap() {
        let check = |request: GenerateRequest, expected: u32| {
            assert_eq!(request.estimated_tokens(), expected, "{request:?}");
        };
        check(GenerateRequest::new("", span()), 1);
        check(GenerateRequest::new("abcd", span()), 1);
        check(GenerateRequest::new("abcde", span()), 2);
        check(GenerateRequest::new("x".repeat(400), span()), 100);
        check(
            GenerateRequest::new("x".repeat(400), span())
                .with_system("y".repeat(40))
                .with_max_output_tokens(512),
            622,
        );
        check(
            GenerateRequest::new("p", span()).with_max_output_tokens(u32::MAX),
            u32::MAX,
        );
    }

    #[test]
    fn requests_clone_without_copying_text() {
        let request = GenerateRequest::new("prompt", span())
            .with_system("system")
            .with_schema(Arc::clone(crate::enrichment_v1_schema()))
            .with_max_output_tokens(512);
        let copy = request.clone();
        assert!(Arc::ptr_eq(&request.prompt, &copy.prompt));
        assert!(Arc::ptr_eq(&request.span.span_hash, &copy.span.span_hash));
        assert!(Arc::ptr_eq(
            copy.schema.as_ref().unwrap().shared(),
            crate::enrichment_v1_schema()
        ));
        assert_eq!(copy.max_output_tokens, Some(512));
    }
}
