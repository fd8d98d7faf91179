//! The reliability settings: the circuit breaker, budgets, the corrective re-ask and the
//! schedule. The mechanisms live in `enrich-backends` and `enrich-pipeline`; these are only the
//! numbers they are given.

use serde::{Deserialize, Serialize};

/// The order in which a run tries backends (`schedule = "per-span" | "by-tier"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Each span runs its whole chain before the next span starts its first backend.
    #[default]
    PerSpan,
    /// Model affinity: every pending span is first tried on its chain's first backend only,
    /// then the failures on the second, and so on, so one GPU never swaps models per span.
    ByTier,
}

impl Schedule {
    /// The spelling used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::PerSpan => "per-span",
            Schedule::ByTier => "by-tier",
        }
    }

    /// Parses a spelling (`per-span`, `per_span`, `by-tier`, `by_tier`, any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "per-span" => Some(Schedule::PerSpan),
            "by-tier" => Some(Schedule::ByTier),
            _ => None,
        }
    }
}

/// The `[enrichment.circuit_breaker]` table: when a backend (or one host of a pool) that keeps
/// failing to answer is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreakerConfig {
    /// Consecutive connect, timeout or server failures that open the circuit; 0 turns the
    /// breaker off.
    pub failures_to_open: u32,
    /// How long the first opening skips the backend, in seconds.
    pub cooldown_seconds: f64,
    /// The longest cooldown, in seconds: each failed probe doubles the last one up to this.
    pub max_cooldown_seconds: f64,
}

impl Default for CircuitBreakerConfig {
    /// Three failures open the circuit for 30 s, growing to at most 10 minutes.
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            cooldown_seconds: 30.0,
            max_cooldown_seconds: 600.0,
        }
    }
}

/// The `[enrichment.budget]` table: limits after which a run stops taking spans. `None` is no
/// limit. Tokens count every attempt's prompt and output tokens, failed attempts included; cost
/// uses each backend's [`Price`](crate::Price) (a backend without one costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetConfig {
    /// The most tokens one run may use.
    pub max_tokens_per_run: Option<u64>,
    /// The most one run may cost.
    pub max_cost_per_run: Option<f64>,
    /// The longest a run may take spans, in seconds (in-flight spans are finished after it).
    pub max_wall_seconds: Option<f64>,
    /// The most tokens all runs of one UTC day may use together.
    pub max_tokens_per_day: Option<u64>,
    /// The most all runs of one UTC day may cost together.
    pub max_cost_per_day: Option<f64>,
    /// The share taken off a backend's price for the requests of a batch (`enrich batch`):
    /// OpenAI's Batch API costs half the live price, so 0.5 by default; 0 for an engine that
    /// charges the live price, 1 for one that costs nothing (an offline engine of your own).
    pub batch_discount: f64,
}

impl BudgetConfig {
    /// The default [`batch_discount`](Self::batch_discount): OpenAI's batch price is half its
    /// live price.
    pub const DEFAULT_BATCH_DISCOUNT: f64 = 0.5;

    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        Self {
            batch_discount: Self::DEFAULT_BATCH_DISCOUNT,
            ..*self
        } == Self::default()
    }

    /// What a batch request that would cost `live` live costs.
    pub fn batch_cost(&self, live: f64) -> f64 {
        live * (1.0 - self.batch_discount)
    }
}

impl Default for BudgetConfig {
    /// No limit, and the default batch discount.
    fn default() -> Self {
        Self {
            max_tokens_per_run: None,
            max_cost_per_run: None,
            max_wall_seconds: None,
            max_tokens_per_day: None,
            max_cost_per_day: None,
            batch_discount: Self::DEFAULT_BATCH_DISCOUNT,
        }
    }
}

/// The reliability settings resolved from their raw layers.
pub(crate) struct Resolved {
    pub(crate) corrective_reasks: u32,
    pub(crate) busy_timeout_seconds: f64,
    pub(crate) schedule: Schedule,
    pub(crate) circuit_breaker: CircuitBreakerConfig,
    pub(crate) budget: BudgetConfig,
}

/// Checks and converts the raw reliability keys; `origin` names the layer a key came from.
pub(crate) fn resolve(
    raw: &crate::raw::RawEnrichment,
    origin: &dyn Fn(&str) -> crate::Source,
) -> Result<Resolved, crate::ConfigError> {
    let invalid = |key: &str, reason: String| crate::ConfigError::Invalid {
        key: key.to_owned(),
        origin: origin(key),
        line: None,
        reason,
    };
    let schedule = Schedule::parse(&raw.schedule.0).ok_or_else(|| {
        invalid(
            "enrichment.schedule",
            format!(
                "{:?} (expected \"per-span\" or \"by-tier\")",
                raw.schedule.0
            ),
        )
    })?;
    let seconds = |value: f64, key: &str| {
        if value > 0.0 && std::time::Duration::try_from_secs_f64(value).is_ok() {
            Ok(value)
        } else {
            Err(invalid(
                key,
                format!("{value} (expected a positive number of seconds)"),
            ))
        }
    };
    let breaker = &raw.circuit_breaker;
    let cooldown_seconds = seconds(
        breaker.cooldown_seconds.0,
        "enrichment.circuit_breaker.cooldown_seconds",
    )?;
    let max_cooldown_seconds = seconds(
        breaker.max_cooldown_seconds.0,
        "enrichment.circuit_breaker.max_cooldown_seconds",
    )?;
    if max_cooldown_seconds < cooldown_seconds {
        return Err(invalid(
            "enrichment.circuit_breaker.max_cooldown_seconds",
            format!(
                "{max_cooldown_seconds} (expected at least cooldown_seconds, {cooldown_seconds})"
            ),
        ));
    }
    let mut budget = BudgetConfig::default();
    if let Some(raw) = &raw.budget {
        let positive = |value: f64, key: &str, what: &str| {
            if value > 0.0 && value.is_finite() {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    format!("{value} (expected a positive {what}; remove the key for no limit)"),
                ))
            }
        };
        let tokens = |value: u64, key: &str| {
            if value >= 1 {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    "0 (expected at least 1 token; remove the key for no limit)".to_owned(),
                ))
            }
        };
        budget = BudgetConfig {
            max_tokens_per_run: raw
                .max_tokens_per_run
                .map(|v| tokens(v.0, "enrichment.budget.max_tokens_per_run"))
                .transpose()?,
            max_cost_per_run: raw
                .max_cost_per_run
                .map(|v| positive(v.0, "enrichment.budget.max_cost_per_run", "cost"))
                .transpose()?,
            max_wall_seconds: raw
                .max_wall_seconds
                .map(|v| seconds(v.0, "enrichment.budget.max_wall_seconds"))
                .transpose()?,
            max_tokens_per_day: raw
                .max_tokens_per_day
                .map(|v| tokens(v.0, "enrichment.budget.max_tokens_per_day"))
                .transpose()?,
            max_cost_per_day: raw
                .max_cost_per_day
                .map(|v| positive(v.0, "enrichment.budget.max_cost_per_day", "cost"))
                .transpose()?,
            batch_discount: match raw.batch_discount {
                Some(v) if (0.0..=1.0).contains(&v.0) => v.0,
                Some(v) => {
                    return Err(invalid(
                        "enrichment.budget.batch_discount",
                        format!(
                            "{} (expected a share of the price from 0 to 1, e.g. 0.5 for half \
                             off)",
                            v.0
                        ),
                    ));
                }
                None => BudgetConfig::DEFAULT_BATCH_DISCOUNT,
            },
        };
    }
    Ok(Resolved {
        corrective_reasks: raw.corrective_reasks.0,
        busy_timeout_seconds: seconds(
            raw.busy_timeout_seconds.0,
            "enrichment.busy_timeout_seconds",
        )?,
        schedule,
        circuit_breaker: CircuitBreakerConfig {
            failures_to_open: breaker.failures_to_open.0,
            cooldown_seconds,
            max_cooldown_seconds,
        },
        budget,
    })
}
