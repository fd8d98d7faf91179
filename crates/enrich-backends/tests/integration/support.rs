//! Scripted adapters and shared fixtures.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, BackendError, FailureKind, GenerateRequest, Generation, HealthReport,
    SpanIdentity, UsageMetrics, ValidationContext,
};
use enrich_config::BackendSpec;
use tokio::time::Instant;

/// The span every test request is about: lines 10 to 20.
pub(crate) fn span() -> SpanIdentity {
    SpanIdentity::new("sha256:feed", "src/math.rs", 10, 20)
}

pub(crate) fn request() -> GenerateRequest {
    GenerateRequest::new("enrich this span", span())
}

pub(crate) fn validation() -> ValidationContext<'static> {
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
    /// Wait this long (tokio's clock), then do the step.
    After(Duration, Box<Step>),
}

/// An adapter that plays a script, one step per call; the last step repeats.
pub(crate) struct Scripted {
    spec: BackendSpec,
    steps: Vec<Step>,
    calls: AtomicU32,
    call_times: Mutex<Vec<Instant>>,
    requests: Mutex<Vec<GenerateRequest>>,
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
            requests: Mutex::new(Vec::new()),
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

    /// The request of each call.
    pub(crate) fn requests(&self) -> Vec<GenerateRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The prompt of each call.
    pub(crate) fn prompts(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.prompt.to_string())
            .collect()
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

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        self.call_times.lock().unwrap().push(Instant::now());
        self.requests.lock().unwrap().push(request.clone());
        let mut step = self.steps[call.min(self.steps.len() - 1)].clone();
        while let Step::After(wait, then) = step {
            tokio::time::sleep(wait).await;
            step = *then;
        }
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
            Step::After(..) => unreachable!("unwrapped above"),
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

/// One machine of a host pool: answers validly after `latency` while alive, refuses connections
/// once killed (a request under way when it dies is reset). Counts calls and the most requests
/// it served at once.
pub(crate) struct FakeHost {
    spec: BackendSpec,
    url: String,
    latency: Duration,
    alive: AtomicBool,
    calls: AtomicU32,
    answered: AtomicU32,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    digest: Mutex<Option<String>>,
}

impl FakeHost {
    pub(crate) fn new(spec: &BackendSpec, url: &str, latency: Duration) -> Arc<Self> {
        Arc::new(Self {
            spec: spec.for_host(url),
            url: url.to_owned(),
            latency,
            alive: AtomicBool::new(true),
            calls: AtomicU32::new(0),
            answered: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            digest: Mutex::new(None),
        })
    }

    /// The model digest the host reports while alive (`None`: it reports none).
    pub(crate) fn set_digest(&self, digest: Option<&str>) {
        *self.digest.lock().unwrap() = digest.map(str::to_owned);
    }

    pub(crate) fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    pub(crate) fn revive(&self) {
        self.alive.store(true, Ordering::SeqCst);
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn answered(&self) -> u32 {
        self.answered.load(Ordering::SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn refused(&self, what: &str) -> BackendError {
        BackendError::new(FailureKind::Connect, format!("{what} by {}", self.url))
    }
}

/// Decrements a counter when dropped (a request ends or is dropped mid-way).
pub(crate) struct Leave<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl BackendAdapter for FakeHost {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.url.clone()
    }

    /// The digest set by [`FakeHost::set_digest`] while alive; unknown once killed.
    async fn model_digest(&self) -> Option<String> {
        if self.alive.load(Ordering::SeqCst) {
            self.digest.lock().unwrap().clone()
        } else {
            None
        }
    }

    /// Reachable with the model while alive; unreachable once killed.
    async fn health(&self) -> HealthReport {
        if self.alive.load(Ordering::SeqCst) {
            HealthReport {
                reachable: Some(true),
                version: Some("0.12.0".into()),
                model_present: Some(true),
                context_length: Some(if self.url.contains("gpu1") {
                    8192
                } else {
                    4096
                }),
                messages: vec!["ollama 0.12.0 serves the model".into()],
                ..HealthReport::default()
            }
        } else {
            HealthReport {
                reachable: Some(false),
                messages: vec!["connection refused".into()],
                fixes: vec!["start ollama there".into()],
                ..HealthReport::default()
            }
        }
    }

    async fn generate(&self, _request: &GenerateRequest) -> Result<Generation, BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.alive.load(Ordering::SeqCst) {
            return Err(self.refused("connection refused"));
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _leave = Leave(&self.in_flight);
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        if !self.alive.load(Ordering::SeqCst) {
            return Err(self.refused("connection reset"));
        }
        self.answered.fetch_add(1, Ordering::SeqCst);
        Ok(Generation {
            text: valid_reply(),
            metrics: UsageMetrics::new(self.spec.model.clone(), self.url.clone()),
        })
    }
}
