//! What a run returns: per-span results, batch and run summaries, and dry-run plans.

use std::time::Duration;

use enrich_backends::{BackendOutage, LimitSnapshot};
use enrich_config::PriorityClass;
use enrich_db::{HeldLeases, RunId, RunStatus};
use enrich_router::RouteDecision;
use enrich_types::{AttemptRecord, Enrichment, SpanIdentity};
use serde::{Deserialize, Serialize};

use crate::budget::BudgetStop;
use crate::error::PipelineError;
use crate::prompt::SnippetCut;

/// How one span ended in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    /// A backend produced a valid enrichment; it is stored.
    Enriched,
    /// Every backend failed and `on_failure = "fallback_to_empty"`: an empty enrichment, marked
    /// as a fallback, is stored so the span stops being pending.
    FellBack,
    /// Every backend failed, or the source could not be read: the failure ledger records a
    /// failed run; the span is retried by a later run until it is dead-lettered.
    Failed,
    /// Left for a later run (its file changed within the cooldown); nothing written.
    Skipped,
    /// The run was aborted while the span was in flight; nothing written, not even its attempts.
    Cancelled,
    /// `schedule = "by-tier"`: the span's backend of this pass failed; its attempts are logged
    /// and a later pass of the same run tries its next backend.
    Deferred,
    /// A backend of its chain was unavailable (unreachable, circuit open, refusing its key,
    /// missing the model, 5xx): not the span's fault. Its attempts are logged, the failure
    /// ledger is untouched, and the run hands it out again once a backend is usable, or leaves
    /// it pending when it stops.
    Unavailable,
}

impl SpanStatus {
    /// The snake_case name used in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Enriched => "enriched",
            SpanStatus::FellBack => "fell_back",
            SpanStatus::Failed => "failed",
            SpanStatus::Skipped => "skipped",
            SpanStatus::Cancelled => "cancelled",
            SpanStatus::Deferred => "deferred",
            SpanStatus::Unavailable => "unavailable",
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// Every span pending at the start was taken on (failed ones stay pending for a later run).
    Exhausted,
    /// The limit of spans per run was reached with spans still pending.
    LimitReached,
    /// [`RunControl::stop`](crate::RunControl::stop): no new span was taken; spans in flight
    /// finished and were written.
    Stopped,
    /// [`RunControl::abort`](crate::RunControl::abort): spans in flight were cancelled and
    /// nothing was written for them.
    Aborted,
    /// A budget of `[enrichment.budget]` was reached: no new span was taken; spans in flight
    /// finished and were written ([`RunSummary::budget_stop`] says which budget).
    BudgetReached,
    /// No backend could serve the spans left: every backend they need is skipped for the run,
    /// or none answered for `outage_grace_seconds`. Spans not enriched stay pending, with no
    /// ledger row ([`RunSummary::unsent`], [`RunSummary::outages`]).
    BackendsUnavailable,
    /// An error stopped the run (the writer failed, a span's task panicked).
    Failed,
}

impl RunEnd {
    /// The status stored in the `runs` table for a run that ended this way.
    pub const fn status(self) -> RunStatus {
        match self {
            RunEnd::Exhausted => RunStatus::Completed,
            RunEnd::LimitReached
            | RunEnd::Stopped
            | RunEnd::Aborted
            | RunEnd::BudgetReached
            | RunEnd::BackendsUnavailable => RunStatus::Interrupted,
            RunEnd::Failed => RunStatus::Failed,
        }
    }
}

/// What happened to one span in a run: the one result type of a span above the database (what
/// the writer stores of it is enrich-db's `SpanOutcome`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanResult {
    /// The span (serialised inline: `span_hash`, `path`, `line_start`, `line_end`).
    #[serde(flatten)]
    pub span: SpanIdentity,
    /// How it ended.
    pub status: SpanStatus,
    /// The validated enrichment, when a backend produced one.
    pub enrichment: Option<Enrichment>,
    /// Every backend attempt, in order (also for a cancelled span, though none is stored).
    pub attempts: Vec<AttemptRecord>,
    /// The routing decision; `None` for a skipped span, which is not routed.
    pub route: Option<RouteDecision>,
    /// How long the span took.
    pub duration: Duration,
    /// Why it failed, fell back, was skipped or cancelled.
    pub error: Option<String>,
    /// For an [`Unavailable`](SpanStatus::Unavailable) span, the backends of its chain that
    /// could not serve it, as indexes into the route's backends (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<usize>,
}

impl SpanResult {
    /// A span that ended with `status` after `attempts`; no enrichment, route, duration or
    /// error yet.
    pub(crate) fn new(
        span: SpanIdentity,
        status: SpanStatus,
        attempts: Vec<AttemptRecord>,
    ) -> Self {
        Self {
            span,
            status,
            enrichment: None,
            attempts,
            route: None,
            duration: Duration::ZERO,
            error: None,
            unavailable: Vec::new(),
        }
    }

    /// The same result, with why it did not succeed.
    #[must_use]
    pub(crate) fn with_error(mut self, error: String) -> Self {
        self.error = Some(error);
        self
    }

    /// True when a backend's enrichment was stored for the span.
    pub fn success(&self) -> bool {
        self.status == SpanStatus::Enriched
    }
}

/// Span counts of a run, by how each span ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpanCounts {
    /// Enriched.
    pub succeeded: u64,
    /// Stored empty by the fallback policy.
    pub fell_back: u64,
    /// Failed (ledgered).
    pub failed: u64,
    /// Skipped (cooldown).
    pub skipped: u64,
    /// Cancelled in flight.
    pub cancelled: u64,
}

impl SpanCounts {
    /// Spans taken on and finished: enriched, fell back or failed.
    pub(crate) fn attempted(&self) -> u64 {
        self.succeeded + self.fell_back + self.failed
    }

    /// Counts one span.
    pub(crate) fn add(&mut self, status: SpanStatus) {
        match status {
            SpanStatus::Enriched => self.succeeded += 1,
            SpanStatus::FellBack => self.fell_back += 1,
            SpanStatus::Failed => self.failed += 1,
            SpanStatus::Skipped => self.skipped += 1,
            SpanStatus::Cancelled => self.cancelled += 1,
            // Counted when a later pass or hand-out ends it, or as unsent when the run stops.
            SpanStatus::Deferred | SpanStatus::Unavailable => {}
        }
    }

    /// The spans left alone with nothing stored, as the `runs` table counts them: skipped and
    /// cancelled ones.
    pub(crate) fn left_alone(self) -> u64 {
        self.skipped + self.cancelled
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run's id in the `runs` table.
    pub run_id: RunId,
    /// Why it ended.
    pub end: RunEnd,
    /// Spans pending when it started, less those other runs held.
    pub total_pending: u64,
    /// Pending spans other runs held leases on when it started, by run; it did not take them.
    pub held_elsewhere: Vec<HeldLeases>,
    /// Stored enrichments the run's refresh selected when it started (`None`: no refresh).
    pub refresh_selected: Option<u64>,
    /// Spans taken on: `succeeded + fell_back + failed`.
    pub attempted: u64,
    /// Spans enriched, renewals included.
    pub succeeded: u64,
    /// Of those, stored enrichments renewed (the new enrichment replaced the old one).
    pub refreshed: u64,
    /// Spans stored empty by `on_failure = "fallback_to_empty"`.
    pub fell_back: u64,
    /// Spans that failed: pending spans recorded in the failure ledger, and renewals.
    pub failed: u64,
    /// Of those, renewals that failed: their old enrichment stays, and the ledger is untouched.
    pub refresh_failed: u64,
    /// Spans left for a later run (cooldown).
    pub skipped: u64,
    /// Spans cancelled in flight by an abort (nothing written).
    pub cancelled: u64,
    /// Spans the run took but left pending because no backend could serve them: their
    /// attempts (if any) are logged, and they have no ledger row.
    pub unsent: u64,
    /// The backends that could not serve when the run ended, with their last errors (empty
    /// unless something was unavailable).
    pub outages: Vec<BackendOutage>,
    /// Spans this run dead-lettered (they reached `max_failures_per_span` failed runs).
    pub dead_lettered: u64,
    /// Outcomes whose span disappeared from the index during the run (re-indexed): their
    /// attempts are logged, nothing else is written.
    pub vanished: u64,
    /// Batches (pages of pending spans) handled.
    pub batches: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// The budget that stopped the run, when one did.
    pub budget_stop: Option<BudgetStop>,
    /// Tokens (prompt and output) every attempt of the run used, as the backends reported them.
    pub tokens: u64,
    /// What those tokens cost, by the backends' prices (0 without prices).
    pub cost: f64,
    /// Each backend host's in-flight limit at the end: final and peak limit, peak in flight,
    /// backoffs (counted over the pipeline's life, which for `enrich run` is the run).
    pub limits: Vec<LimitSnapshot>,
}

impl RunSummary {
    /// The status stored in the `runs` table.
    pub fn status(&self) -> RunStatus {
        self.end.status()
    }

    /// `succeeded / attempted`, or 0 when nothing was attempted.
    pub fn success_rate(&self) -> f64 {
        ratio(self.succeeded, self.attempted)
    }
}

/// A run's summary together with the error that stopped it, if one did
/// ([`Pipeline::run_to_end`](crate::Pipeline::run_to_end)): a failed run is reported like any
/// other, with `end = Failed`.
#[derive(Debug)]
pub struct RunOutcome {
    /// The summary; `None` only when the run could not start (no run was recorded).
    pub summary: Option<RunSummary>,
    /// What stopped the run, if anything did.
    pub error: Option<PipelineError>,
}

impl RunOutcome {
    /// The summary, or the error that stopped the run.
    ///
    /// # Errors
    ///
    /// The error that stopped the run.
    pub fn into_result(self) -> Result<RunSummary, PipelineError> {
        match (self.summary, self.error) {
            (_, Some(error)) => Err(error),
            (Some(summary), None) => Ok(summary),
            (None, None) => unreachable!("a run without a summary ended with an error"),
        }
    }
}

/// The outcome of [`Pipeline::process_batch`](crate::Pipeline::process_batch): a run of at most
/// `limit` spans, with every span's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchResult {
    /// The counts: `total_pending`, `attempted`, `succeeded`, `failed`, `skipped`, … (serialised
    /// inline, next to `results`).
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Every span's result, in the order they finished.
    pub results: Vec<SpanResult>,
}

impl BatchResult {
    pub(crate) fn new(summary: RunSummary, results: Vec<SpanResult>) -> Self {
        Self { summary, results }
    }

    /// `succeeded / attempted`, or 0 when nothing was attempted.
    pub fn success_rate(&self) -> f64 {
        self.summary.success_rate()
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// What a run would do with one pending span ([`Pipeline::plan`](crate::Pipeline::plan)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedSpan {
    /// Its place in the order a run takes spans, from 1.
    pub order: u64,
    /// `spans.id`.
    pub span_id: i64,
    /// The span (serialised inline: `span_hash`, `path`, `line_start`, `line_end`).
    #[serde(flatten)]
    pub span: SpanIdentity,
    /// The symbol it defines.
    pub symbol: String,
    /// Its file's weight under `[enrichment.path_weights]`, 1 (most important) to 10.
    pub weight: u8,
    /// The weight's priority class (high 1–3, medium 4–6, low 7–10).
    pub priority: PriorityClass,
    /// The glob that decided the weight; `None` when no glob matched (weight 5).
    pub weight_glob: Option<String>,
    /// The chain and backends that would serve it, and why.
    pub route: RouteDecision,
    /// The prompt's estimated size in tokens; `None` when the source cannot be read.
    pub estimated_tokens: Option<u32>,
    /// Set when the source would be cut to `max_snippet_bytes`.
    pub cut: Option<SnippetCut>,
    /// True when a run now would skip it (its file changed within the cooldown).
    pub in_cooldown: bool,
    /// Why the source cannot be read (a run would record the span as failed).
    pub source_error: Option<String>,
    /// The ids of the secret rules that fire in its source (empty: none): a run sends the span
    /// with those secrets redacted, or not at all when [`Self::withheld`].
    pub secrets: Vec<&'static str>,
    /// True when a run would not send the span for its secrets (`[enrichment.secrets] action =
    /// "skip"`) but record it in the failure ledger as `secret_detected`.
    pub withheld: bool,
    /// True when the span has a stored enrichment that the run would renew (`--refresh`).
    pub renewal: bool,
}

/// A dry run: what the next run would do, without calling any backend or writing anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Spans pending now.
    pub total_pending: u64,
    /// Stored enrichments the refresh selects now (`None`: no refresh).
    pub refresh_selected: Option<u64>,
    /// Whether the order is code-first (by weight, with the starvation ratio) rather than by
    /// span id.
    pub code_first: bool,
    /// The first pending spans, in the order a run takes them.
    pub spans: Vec<PlannedSpan>,
    /// What enriching the planned spans, and all pending ones, is likely to use and cost.
    pub estimate: CostEstimate,
}

/// What a run is likely to use: prompt tokens from the planned spans' prompts, output tokens
/// from the attempt log's average (or [`CostEstimate::ASSUMED_OUTPUT_TOKENS`] before any run),
/// cost from the price of each span's first backend. It assumes every span succeeds on its first
/// attempt: failures, re-asks and fallbacks cost more.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostEstimate {
    /// Prompt tokens of the planned spans.
    pub prompt_tokens: u64,
    /// Output tokens of the planned spans.
    pub output_tokens: u64,
    /// Output tokens assumed per span.
    pub output_tokens_per_span: u64,
    /// Whether `output_tokens_per_span` is the attempt log's average (else assumed).
    pub output_from_history: bool,
    /// The planned spans' cost, when a first backend of theirs has a price.
    pub cost: Option<f64>,
    /// Every pending span (and every stored enrichment a refresh selects), extrapolated from
    /// the planned ones: tokens (prompt and output).
    pub all_pending_tokens: u64,
    /// Their cost, extrapolated, when there is a price.
    pub all_pending_cost: Option<f64>,
    /// The planned spans' cost sent as a batch (`enrich batch`): [`cost`](Self::cost) less
    /// `[enrichment.budget] batch_discount`.
    pub batch_cost: Option<f64>,
    /// Every pending span's cost sent as batches.
    pub all_pending_batch_cost: Option<f64>,
}

impl CostEstimate {
    /// Output tokens per span assumed before any run logged real ones: a typical enrichment.v1
    /// answer.
    pub const ASSUMED_OUTPUT_TOKENS: u64 = 350;
}

impl Plan {
    /// The sum of the estimated prompt tokens of the planned spans.
    pub fn estimated_tokens(&self) -> u64 {
        self.spans
            .iter()
            .filter_map(|s| s.estimated_tokens)
            .map(u64::from)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_result_serialises_its_identity_inline() {
        let span = SpanIdentity::new("sha256:ab", "src/lib.rs", 3, 9);
        let result = SpanResult::new(span, SpanStatus::Failed, Vec::new()).with_error("no".into());
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["span_hash"], "sha256:ab");
        assert_eq!(json["path"], "src/lib.rs");
        assert_eq!(
            (json["line_start"].as_u64(), json["line_end"].as_u64()),
            (Some(3), Some(9))
        );
        assert_eq!(json["status"], "failed");
        assert!(
            json.get("span").is_none() && json.get("unavailable").is_none(),
            "{json}"
        );
        let unavailable = SpanResult {
            unavailable: vec![1],
            ..result
        };
        assert_eq!(
            serde_json::to_value(&unavailable).unwrap()["unavailable"],
            serde_json::json!([1])
        );
    }
}
