//! Budgets: the tokens, cost and wall time a run (and a UTC day of runs) may use.
//!
//! A [`BudgetTracker`] is fed every attempt the cascade makes (failed ones too: a backend that
//! answered with garbage still billed its tokens) and answers one question before each span is
//! taken: may the run go on? When a budget is reached the run takes no more spans, finishes the
//! ones in flight, and its summary names the budget ([`BudgetStop`]).

use std::fmt;
use std::sync::{Mutex, PoisonError};

use enrich_backends::AttemptRecord;
use enrich_config::{BackendSpec, BudgetConfig, Price};
use enrich_db::BackendUsage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A budget of `[enrichment.budget]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// `max_tokens_per_run`.
    TokensPerRun,
    /// `max_cost_per_run`.
    CostPerRun,
    /// `max_wall_seconds`.
    WallTime,
    /// `max_tokens_per_day`.
    TokensPerDay,
    /// `max_cost_per_day`.
    CostPerDay,
}

impl BudgetKind {
    /// The config key that sets this budget.
    pub const fn key(self) -> &'static str {
        match self {
            BudgetKind::TokensPerRun => "max_tokens_per_run",
            BudgetKind::CostPerRun => "max_cost_per_run",
            BudgetKind::WallTime => "max_wall_seconds",
            BudgetKind::TokensPerDay => "max_tokens_per_day",
            BudgetKind::CostPerDay => "max_cost_per_day",
        }
    }
}

/// The budget that stopped a run, with its limit and what was used when it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetStop {
    /// Which budget.
    pub kind: BudgetKind,
    /// Its limit (tokens, cost, or seconds).
    pub limit: f64,
    /// What had been used (same unit).
    pub used: f64,
}

impl fmt::Display for BudgetStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, used, limit) = match self.kind {
            BudgetKind::TokensPerRun | BudgetKind::TokensPerDay => (
                "tokens",
                format!("{}", self.used.round()),
                format!("{}", self.limit.round()),
            ),
            BudgetKind::CostPerRun | BudgetKind::CostPerDay => (
                "cost",
                format!("{:.4}", self.used),
                format!("{:.4}", self.limit),
            ),
            BudgetKind::WallTime => (
                "seconds",
                format!("{:.1}", self.used),
                format!("{:.1}", self.limit),
            ),
        };
        let scope = match self.kind {
            BudgetKind::TokensPerDay | BudgetKind::CostPerDay => "today's runs",
            _ => "this run",
        };
        write!(
            f,
            "budget {} reached: {scope} used {used} {what} of {limit} \
             (raise [enrichment.budget] {} or wait)",
            self.kind.key(),
            self.kind.key()
        )
    }
}

/// Tokens and cost used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Used {
    tokens: u64,
    cost: f64,
}

/// Counts what a run uses against its budgets. Shared by the run's span tasks.
#[derive(Debug)]
pub(crate) struct BudgetTracker {
    config: BudgetConfig,
    started: Instant,
    /// Price by (backend name, model); a backend without a price costs nothing.
    prices: Vec<((String, String), Price)>,
    /// What today's earlier runs used.
    today_before: Used,
    run: Mutex<Used>,
}

impl BudgetTracker {
    /// A tracker for a run starting now, with `backends` for prices and `today` = the attempt
    /// log's usage since the start of the UTC day (ignored when no day budget is set).
    pub(crate) fn new(
        config: BudgetConfig,
        backends: &[BackendSpec],
        today: &[BackendUsage],
    ) -> Self {
        let mut prices: Vec<((String, String), Price)> = backends
            .iter()
            .filter_map(|b| Some(((b.name.clone(), b.model.clone()), b.price?)))
            .collect();
        // The same backend is listed once per chain that uses it.
        prices.sort_by(|a, b| a.0.cmp(&b.0));
        prices.dedup_by(|a, b| a.0 == b.0);
        let today_before = today.iter().fold(Used::default(), |used, usage| {
            let live = price_of(&prices, &usage.backend, &usage.model)
                .map_or(0.0, |p| p.cost(usage.prompt_tokens, usage.output_tokens));
            // A batch's answers cost the batch price.
            let cost = if usage.batch {
                config.batch_cost(live)
            } else {
                live
            };
            Used {
                tokens: used.tokens + usage.prompt_tokens + usage.output_tokens,
                cost: used.cost + cost,
            }
        });
        Self {
            config,
            started: Instant::now(),
            prices,
            today_before,
            run: Mutex::new(Used::default()),
        }
    }

    /// Adds what the batches not collected yet are estimated to use (`tokens`, `cost`) to
    /// today's usage: a day budget counts a batch's estimate from its submit until its real
    /// usage is stored.
    pub(crate) fn with_reserved(mut self, (tokens, cost): (u64, f64)) -> Self {
        self.today_before.tokens += tokens;
        self.today_before.cost += cost;
        self
    }

    /// What may still be used before a run or day budget is reached: (tokens, cost); `None`
    /// where no such budget is set.
    pub(crate) fn headroom(&self) -> (Option<u64>, Option<f64>) {
        let run = *self.run.lock().unwrap_or_else(PoisonError::into_inner);
        let c = &self.config;
        let day_tokens = self.today_before.tokens + run.tokens;
        let day_cost = self.today_before.cost + run.cost;
        let tokens = [
            c.max_tokens_per_run.map(|l| l.saturating_sub(run.tokens)),
            c.max_tokens_per_day.map(|l| l.saturating_sub(day_tokens)),
        ]
        .into_iter()
        .flatten()
        .min();
        let cost = [
            c.max_cost_per_run.map(|l| (l - run.cost).max(0.0)),
            c.max_cost_per_day.map(|l| (l - day_cost).max(0.0)),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min);
        (tokens, cost)
    }

    fn price_of(&self, backend: &str, model: &str) -> Option<Price> {
        price_of(&self.prices, backend, model)
    }

    /// Counts one attempt's tokens and cost.
    pub(crate) fn record(&self, attempt: &AttemptRecord) {
        let input = attempt.prompt_eval_count.unwrap_or(0);
        let output = attempt.eval_count.unwrap_or(0);
        if input == 0 && output == 0 {
            return;
        }
        let cost = self
            .price_of(&attempt.backend, &attempt.model)
            .map_or(0.0, |p| p.cost(input, output));
        let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        run.tokens += input + output;
        run.cost += cost;
    }

    /// The first budget reached, if any.
    pub(crate) fn reached(&self) -> Option<BudgetStop> {
        let run = *self.run.lock().unwrap_or_else(PoisonError::into_inner);
        let day = Used {
            tokens: self.today_before.tokens + run.tokens,
            cost: self.today_before.cost + run.cost,
        };
        let c = &self.config;
        let elapsed = self.started.elapsed().as_secs_f64();
        let checks = [
            (
                BudgetKind::TokensPerRun,
                c.max_tokens_per_run.map(|v| v as f64),
                run.tokens as f64,
            ),
            (BudgetKind::CostPerRun, c.max_cost_per_run, run.cost),
            (BudgetKind::WallTime, c.max_wall_seconds, elapsed),
            (
                BudgetKind::TokensPerDay,
                c.max_tokens_per_day.map(|v| v as f64),
                day.tokens as f64,
            ),
            (BudgetKind::CostPerDay, c.max_cost_per_day, day.cost),
        ];
        checks.into_iter().find_map(|(kind, limit, used)| {
            let limit = limit?;
            (used >= limit).then_some(BudgetStop { kind, limit, used })
        })
    }

    /// Tokens and cost this run used so far.
    pub(crate) fn used(&self) -> (u64, f64) {
        let run = *self.run.lock().unwrap_or_else(PoisonError::into_inner);
        (run.tokens, run.cost)
    }
}

/// The price of `backend` serving `model`. A run has a handful of priced backends: a scan costs
/// less than building an owned key for a map lookup on every attempt.
fn price_of(prices: &[((String, String), Price)], backend: &str, model: &str) -> Option<Price> {
    prices
        .iter()
        .find(|((b, m), _)| b == backend && m == model)
        .map(|(_, price)| *price)
}

/// Unix milliseconds of the start of the current UTC day.
pub(crate) fn start_of_utc_day_ms(now_ms: u64) -> i64 {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    i64::try_from(now_ms - now_ms % DAY_MS).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use enrich_backends::{AttemptOutcome, AttemptRecord};

    use super::*;

    fn backend(name: &str, price: Option<Price>) -> BackendSpec {
        let mut spec = BackendSpec::new(name, "default", "openai", "m");
        spec.price = price;
        spec
    }

    fn attempt(backend: &str, input: u64, output: u64) -> AttemptRecord {
        AttemptRecord {
            backend: backend.to_owned(),
            provider: "openai".to_owned(),
            model: "m".to_owned(),
            host: "h".to_owned(),
            attempt: 1,
            started_at_ms: 0,
            duration_ms: 1,
            outcome: AttemptOutcome::Failure,
            failure_kind: None,
            message: None,
            prompt_eval_count: Some(input),
            eval_count: Some(output),
            tokens_per_second: None,
        }
    }

    const PRICE: Price = Price {
        input_per_1m: 1.0,
        output_per_1m: 4.0,
    };

    #[test]
    fn no_budget_never_stops() {
        let tracker = BudgetTracker::new(BudgetConfig::default(), &[backend("a", None)], &[]);
        tracker.record(&attempt("a", 1_000_000, 1_000_000));
        assert_eq!(tracker.reached(), None);
    }

    #[test]
    fn run_budgets_count_every_attempt_with_its_backends_price() {
        let config = BudgetConfig {
            max_tokens_per_run: Some(1000),
            max_cost_per_run: Some(0.002),
            ..BudgetConfig::default()
        };
        let backends = [backend("paid", Some(PRICE)), backend("free", None)];
        let tracker = BudgetTracker::new(config, &backends, &[]);
        tracker.record(&attempt("free", 400, 100));
        assert_eq!(tracker.reached(), None, "500 tokens, free");
        // 300 input * 1/1M + 100 output * 4/1M = 0.0007
        tracker.record(&attempt("paid", 300, 100));
        assert_eq!(tracker.reached(), None);
        assert_eq!(tracker.used().0, 900);
        tracker.record(&attempt("paid", 100, 0));
        let stop = tracker.reached().expect("1000 tokens");
        assert_eq!(stop.kind, BudgetKind::TokensPerRun);
        assert_eq!((stop.limit, stop.used), (1000.0, 1000.0));
        assert_eq!(
            stop.to_string(),
            "budget max_tokens_per_run reached: this run used 1000 tokens of 1000 \
             (raise [enrichment.budget] max_tokens_per_run or wait)"
        );
    }

    #[test]
    fn a_cost_budget_stops_on_cost_before_tokens() {
        let config = BudgetConfig {
            max_tokens_per_run: Some(1_000_000),
            max_cost_per_run: Some(0.001),
            ..BudgetConfig::default()
        };
        let tracker = BudgetTracker::new(config, &[backend("paid", Some(PRICE))], &[]);
        tracker.record(&attempt("paid", 200, 200)); // 0.0002 + 0.0008
        let stop = tracker.reached().expect("cost reached");
        assert_eq!(stop.kind, BudgetKind::CostPerRun);
        assert!(
            stop.to_string()
                .contains("this run used 0.0010 cost of 0.0010")
        );
    }

    #[test]
    fn day_budgets_include_todays_earlier_runs() {
        let config = BudgetConfig {
            max_tokens_per_day: Some(10_000),
            max_cost_per_day: Some(1.0),
            ..BudgetConfig::default()
        };
        let earlier = BackendUsage {
            backend: "paid".to_owned(),
            model: "m".to_owned(),
            attempts: 20,
            prompt_tokens: 8000,
            output_tokens: 1500,
            batch: false,
        };
        let tracker = BudgetTracker::new(config, &[backend("paid", Some(PRICE))], &[earlier]);
        assert_eq!(tracker.reached(), None);
        tracker.record(&attempt("paid", 400, 100));
        let stop = tracker.reached().expect("day tokens");
        assert_eq!(stop.kind, BudgetKind::TokensPerDay);
        assert!(
            stop.to_string()
                .contains("today's runs used 10000 tokens of 10000")
        );
    }

    #[test]
    fn batch_answers_count_at_the_batch_price_and_open_batches_by_their_estimates() {
        let config = BudgetConfig {
            max_cost_per_day: Some(1.0),
            max_tokens_per_day: Some(2_000_000),
            batch_discount: 0.5,
            ..BudgetConfig::default()
        };
        // 0.8 at the live price: 0.4 at the batch price.
        let batch = BackendUsage {
            backend: "paid".to_owned(),
            model: "m".to_owned(),
            attempts: 1,
            prompt_tokens: 400_000,
            output_tokens: 100_000,
            batch: true,
        };
        let backends = [backend("paid", Some(PRICE))];
        let tracker = BudgetTracker::new(config, &backends, std::slice::from_ref(&batch));
        assert_eq!(tracker.reached(), None);
        assert_eq!(tracker.headroom().0, Some(1_500_000));
        assert!((tracker.headroom().1.unwrap() - 0.6).abs() < 1e-9);
        let live = BackendUsage {
            batch: false,
            ..batch.clone()
        };
        let tracker = BudgetTracker::new(config, &backends, &[batch, live]);
        assert_eq!(
            tracker.reached().map(|s| s.kind),
            Some(BudgetKind::CostPerDay)
        );
        // An open batch's estimate counts until its answers are stored.
        let tracker = BudgetTracker::new(config, &backends, &[]).with_reserved((10, 1.0));
        assert_eq!(
            tracker.reached().map(|s| s.kind),
            Some(BudgetKind::CostPerDay)
        );
        assert_eq!(tracker.headroom(), (Some(1_999_990), Some(0.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wall_time_budget_counts_from_the_start_of_the_run() {
        let config = BudgetConfig {
            max_wall_seconds: Some(60.0),
            ..BudgetConfig::default()
        };
        let tracker = BudgetTracker::new(config, &[], &[]);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(tracker.reached(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            tracker.reached().map(|s| s.kind),
            Some(BudgetKind::WallTime)
        );
    }

    #[test]
    fn the_utc_day_starts_at_midnight() {
        // 2026-11-29T12:30:00Z -> 2026-11-29T00:00:00Z
        assert_eq!(start_of_utc_day_ms(1_795_955_400_000), 1_795_910_400_000);
    }
}
