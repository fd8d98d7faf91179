//! [`FakeAdapter`]: an in-process [`BackendAdapter`] that follows a script.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use enrich_backends::{
    BackendAdapter, BackendError, Capabilities, FailureKind, GenerateRequest, Generation,
    HealthReport, UsageMetrics,
};
use enrich_config::{BackendSpec, DEFAULT_CHAIN};

use crate::answer::{FakeMetrics, valid_enrichment_json};

/// One scripted outcome of [`FakeAdapter::generate`]: what to answer, after an optional delay.
///
/// ```
/// use std::time::Duration;
/// use enrich_backends::FailureKind;
/// use enrich_testkit::Script;
///
/// let script = [
///     Script::err(FailureKind::Overloaded, "busy").with_retry_after(Duration::from_secs(2)),
///     Script::valid().after(Duration::from_millis(300)),
///     Script::ok("not json"),
///     Script::hang(),
/// ];
/// # let _ = script;
/// ```
#[derive(Debug, Clone)]
pub struct Script {
    delay: Duration,
    step: Step,
}

#[derive(Debug, Clone)]
enum Step {
    /// Text with default or given metrics.
    Text {
        text: String,
        metrics: Option<UsageMetrics>,
        done_reason: Option<String>,
    },
    /// [`valid_enrichment_json`] for the request's span.
    Valid,
    Fail {
        kind: FailureKind,
        message: String,
        retry_after: Option<Duration>,
    },
    Hang,
}

impl Script {
    fn step(step: Step) -> Self {
        Self {
            delay: Duration::ZERO,
            step,
        }
    }

    /// Answers `text` with the fake's default metrics (`done_reason` `stop`).
    pub fn ok(text: impl Into<String>) -> Self {
        Self::step(Step::Text {
            text: text.into(),
            metrics: None,
            done_reason: None,
        })
    }

    /// Answers `text` with exactly these metrics (model, host and all).
    pub fn ok_with_metrics(text: impl Into<String>, metrics: UsageMetrics) -> Self {
        Self::step(Step::Text {
            text: text.into(),
            metrics: Some(metrics),
            done_reason: None,
        })
    }

    /// Answers `text` cut at the token limit: default metrics with `done_reason` `length`.
    pub fn truncated(text: impl Into<String>) -> Self {
        Self::ok(text).with_done_reason("length")
    }

    /// Answers a valid enrichment for the request's span ([`valid_enrichment_json`]).
    pub fn valid() -> Self {
        Self::step(Step::Valid)
    }

    /// Fails with `kind` and `message`.
    pub fn err(kind: FailureKind, message: impl Into<String>) -> Self {
        Self::step(Step::Fail {
            kind,
            message: message.into(),
            retry_after: None,
        })
    }

    /// Never answers: the call stays pending until its future is dropped (a timeout or
    /// cancellation around it).
    pub fn hang() -> Self {
        Self::step(Step::Hang)
    }

    /// Waits `delay` (with `tokio::time::sleep`, so a paused test clock skips it) before
    /// answering.
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the `done_reason` of a text answer; no effect on other steps. For answers with
    /// [`Script::ok_with_metrics`] it replaces the given metrics' reason.
    #[must_use]
    pub fn with_done_reason(mut self, reason: impl Into<String>) -> Self {
        if let Step::Text { done_reason, .. } = &mut self.step {
            *done_reason = Some(reason.into());
        }
        self
    }

    /// Sets the `retry_after` of a failure; no effect on other steps.
    #[must_use]
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        if let Step::Fail { retry_after, .. } = &mut self.step {
            *retry_after = Some(wait);
        }
        self
    }
}

/// What a [`FakeAdapter`] answers once its script is used up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fallback {
    /// A valid enrichment for the request's span ([`Script::valid`]). The default.
    #[default]
    ValidEnrichment,
    /// The script's last step again (a valid enrichment if the script was empty).
    RepeatLast,
}

/// An in-process [`BackendAdapter`] that answers from a script and records every request.
///
/// Each call to [`generate`](BackendAdapter::generate) records the request, takes the next
/// [`Script`] step (or the [`Fallback`] when none is left), waits the step's delay and answers.
/// Delays use tokio's clock, so tests with `start_paused = true` run instantly; a
/// [`Script::hang`] stays pending until the caller drops the future. The lock guarding the
/// script is never held across an await, so concurrent calls proceed independently; the
/// adapter counts calls in flight ([`FakeAdapter::in_flight`], [`FakeAdapter::max_in_flight`])
/// so concurrency limits can be asserted.
///
/// Default metrics are deterministic: one token per four bytes of prompt (plus system) and of
/// answer, 1,000 prompt tokens/s, 100 generated tokens/s, a 2 ms load, the spec's model and
/// [`describe_host`](BackendAdapter::describe_host) as host.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use enrich_backends::{BackendAdapter, FailureKind, GenerateRequest, SpanIdentity};
/// use enrich_testkit::{FakeAdapter, Script};
///
/// let fake = FakeAdapter::named("primary")
///     .with_script([Script::err(FailureKind::Timeout, "slow"), Script::valid()]);
/// let request = GenerateRequest::new("describe lines 3-9", SpanIdentity::new("sha256:1", "a.rs", 3, 9));
/// assert_eq!(fake.generate(&request).await.unwrap_err().kind, FailureKind::Timeout);
/// assert!(fake.generate(&request).await.is_ok());
/// assert_eq!(fake.calls(), 2);
/// # }
/// ```
#[derive(Debug)]
pub struct FakeAdapter {
    spec: BackendSpec,
    host: String,
    fallback: Fallback,
    health: HealthReport,
    capabilities: Capabilities,
    state: Mutex<State>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Script>,
    last: Option<Script>,
    requests: Vec<GenerateRequest>,
}

impl FakeAdapter {
    /// A fake serving `spec`, with an empty script and the [`Fallback::ValidEnrichment`]
    /// fallback; its host is `fake://<name>`, its health report healthy, and it claims
    /// structured output and usage metrics.
    pub fn new(spec: BackendSpec) -> Self {
        let host = format!("fake://{}", spec.name);
        let health = HealthReport {
            reachable: Some(true),
            version: Some("fake".to_owned()),
            credentials_accepted: None,
            api_recognised: Some(true),
            model_present: Some(true),
            context_length: None,
            messages: vec![format!("fake backend '{}' always answers", spec.name)],
            fixes: Vec::new(),
        };
        Self {
            spec,
            host,
            fallback: Fallback::default(),
            health,
            capabilities: Capabilities {
                structured_output: true,
                streaming: false,
                usage_metrics: true,
                output_token_limit: false,
            },
            state: Mutex::new(State::default()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// A fake for a backend named `name` in the default chain, provider `fake`, model
    /// `fake-model`.
    pub fn named(name: impl Into<String>) -> Self {
        Self::new(BackendSpec::new(name, DEFAULT_CHAIN, "fake", "fake-model"))
    }

    /// Appends `steps` to the script.
    #[must_use]
    pub fn with_script(self, steps: impl IntoIterator<Item = Script>) -> Self {
        self.lock().script.extend(steps);
        self
    }

    /// Sets what to answer once the script is used up.
    #[must_use]
    pub fn with_fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Sets the host reported by [`describe_host`](BackendAdapter::describe_host) and in
    /// default metrics.
    #[must_use]
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the report [`health`](BackendAdapter::health) returns.
    #[must_use]
    pub fn with_health(mut self, health: HealthReport) -> Self {
        self.health = health;
        self
    }

    /// Sets what [`capabilities`](BackendAdapter::capabilities) claims.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Appends one step to the script, also while calls are running.
    pub fn push(&self, step: Script) {
        self.lock().script.push_back(step);
    }

    /// Every request received so far, in order (cheap: requests share their text).
    pub fn requests(&self) -> Vec<GenerateRequest> {
        self.lock().requests.clone()
    }

    /// How many times [`generate`](BackendAdapter::generate) was called.
    pub fn calls(&self) -> usize {
        self.lock().requests.len()
    }

    /// Script steps not used yet.
    pub fn remaining(&self) -> usize {
        self.lock().script.len()
    }

    /// Calls running right now (started and neither answered nor dropped).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that ran at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the recorded requests from the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the request and picks its step.
    fn next_step(&self, request: &GenerateRequest) -> Script {
        let mut state = self.lock();
        state.requests.push(request.clone());
        if let Some(step) = state.script.pop_front() {
            state.last = Some(step.clone());
            return step;
        }
        match (self.fallback, &state.last) {
            (Fallback::RepeatLast, Some(last)) => last.clone(),
            _ => Script::valid(),
        }
    }

    fn default_metrics(&self, request: &GenerateRequest, text: &str) -> UsageMetrics {
        let prompt_bytes = request.prompt.len() + request.system.as_deref().map_or(0, str::len);
        let fake = FakeMetrics::for_sizes(prompt_bytes, text.len());
        UsageMetrics {
            model: self.spec.model.clone(),
            host: self.host.clone(),
            prompt_eval_count: Some(fake.prompt_eval_count),
            eval_count: Some(fake.eval_count),
            total_duration_ns: Some(fake.total_duration),
            load_duration_ns: Some(fake.load_duration),
            prompt_eval_duration_ns: Some(fake.prompt_eval_duration),
            eval_duration_ns: Some(fake.eval_duration),
            tokens_per_second: None,
            done_reason: Some("stop".to_owned()),
        }
    }
}

/// Counts a call in flight for as long as it lives (also when its future is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl BackendAdapter for FakeAdapter {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.host.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);

        let Script { delay, step } = self.next_step(request);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match step {
            Step::Text {
                text,
                metrics,
                done_reason,
            } => {
                let mut metrics = metrics.unwrap_or_else(|| self.default_metrics(request, &text));
                if done_reason.is_some() {
                    metrics.done_reason = done_reason;
                }
                Ok(Generation { text, metrics })
            }
            Step::Valid => {
                let text = valid_enrichment_json(&request.span);
                let metrics = self.default_metrics(request, &text);
                Ok(Generation { text, metrics })
            }
            Step::Fail {
                kind,
                message,
                retry_after,
            } => {
                let mut err = BackendError::new(kind, message);
                err.retry_after = retry_after;
                Err(err)
            }
            Step::Hang => std::future::pending().await,
        }
    }

    async fn health(&self) -> HealthReport {
        self.health.clone()
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
}
