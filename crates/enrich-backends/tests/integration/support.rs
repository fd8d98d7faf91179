//! Scripted adapters and shared fixtures.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, BackendError, FailureKind, GenerateRequest, Generation, SpanContext,
    UsageMetrics, ValidationContext,
};
use enrich_config::BackendSpec;
use tokio::time::Instant;

/// The span every test request is about: lines 10 to 20.
pub(crate) fn span() -> SpanContext {
    SpanContext::new("sha256:feed", "src/math.rs", 10, 20)
}

pub(crate) fn request() -> GenerateRequest {
    GenerateRequest::new("enrich this span", span())
}

pub(crate) fn validation() -> ValidationContext {
    ValidationContext::for_span(&span(), false)
}

/// A reply that passes validation for [`span`].
pub(crate) fn valid_reply() -> String {
    serde_json::json!({
        "summary_120w": "Adds two numbers and returns the sum.",
        "inputs": ["a: i32", "b: i32"],
        "outputs": ["the sum"],
        "side_effects": [],
        "pitfalls": ["overflows on large values"],
        "usage_snippet": "add(1, 2)",
        "evidence": [{"field": "inputs", "lines": [10, 11]}],
    })
    .to_string()
}

/// What a scripted adapter does on one call.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Answer with this text (`done_reason` "stop").
    Reply(String),
    /// Answer with this text, cut at the token limit (`done_reason` "length").
    Truncated(String),
    /// Fail with this kind.
    Fail(FailureKind),
    /// Fail with this kind and a retry-after.
    FailRetryAfter(FailureKind, Duration),
    /// Never answer.
    Hang,
}

/// An adapter that plays a script, one step per call; the last step repeats.
pub(crate) struct Scripted {
    spec: BackendSpec,
    steps: Vec<Step>,
    calls: AtomicU32,
    call_times: Mutex<Vec<Instant>>,
}

impl Scripted {
    pub(crate) fn new(name: &str, steps: Vec<Step>) -> Arc<Self> {
        Self::with_spec(
            BackendSpec::new(name, "default", "scripted", format!("model-{name}")),
            steps,
        )
    }

    pub(crate) fn with_spec(spec: BackendSpec, steps: Vec<Step>) -> Arc<Self> {
        assert!(!steps.is_empty(), "a script needs a step");
        Arc::new(Self {
            spec,
            steps,
            calls: AtomicU32::new(0),
            call_times: Mutex::new(Vec::new()),
        })
    }

    /// Always this step.
    pub(crate) fn always(name: &str, step: Step) -> Arc<Self> {
        Self::new(name, vec![step])
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// When each call started (tokio's clock).
    pub(crate) fn call_times(&self) -> Vec<Instant> {
        self.call_times.lock().unwrap().clone()
    }

    /// The waits between consecutive calls.
    pub(crate) fn gaps(&self) -> Vec<Duration> {
        self.call_times()
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect()
    }
}

#[async_trait::async_trait]
impl BackendAdapter for Scripted {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        format!("scripted://{}", self.spec.name)
    }

    async fn generate(&self, _request: &GenerateRequest) -> Result<Generation, BackendError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        self.call_times.lock().unwrap().push(Instant::now());
        let step = self.steps[call.min(self.steps.len() - 1)].clone();
        let name = &self.spec.name;
        let answer = |text: String, done_reason: &str| {
            let mut metrics =
                UsageMetrics::new(format!("{}-served", self.spec.model), self.describe_host());
            metrics.prompt_eval_count = Some(100);
            metrics.eval_count = Some(50);
            metrics.eval_duration_ns = Some(2_000_000_000);
            metrics.done_reason = Some(done_reason.to_owned());
            Ok(Generation { text, metrics })
        };
        match step {
            Step::Reply(text) => answer(text, "stop"),
            Step::Truncated(text) => answer(text, "length"),
            Step::Fail(kind) => Err(BackendError::new(
                kind,
                format!("{name} failed with {kind}"),
            )),
            Step::FailRetryAfter(kind, wait) => {
                Err(BackendError::new(kind, format!("{name} is busy")).with_retry_after(wait))
            }
            Step::Hang => std::future::pending().await,
        }
    }
}

/// Upcasts scripted adapters into a chain.
pub(crate) fn chain(adapters: &[&Arc<Scripted>]) -> Vec<Arc<dyn BackendAdapter>> {
    adapters
        .iter()
        .map(|a| Arc::clone(*a) as Arc<dyn BackendAdapter>)
        .collect()
}
