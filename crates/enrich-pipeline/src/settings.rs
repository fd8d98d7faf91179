//! [`PipelineSettings`]: how a run behaves, mostly read from `[enrichment]`.

use std::path::PathBuf;
use std::time::Duration;

use enrich_backends::{CascadePolicy, CircuitPolicy};
use enrich_config::{
    BudgetConfig, EnrichmentConfig, OnFailure, QualityLevel, Schedule, SecretsAction, WorkOrder,
    redacted_options,
};
use enrich_db::RefreshFilter;

use crate::error::PipelineError;

/// Everything a run needs to know besides the router, the adapters and the prompt.
///
/// [`PipelineSettings::from_config`] fills it from `[enrichment]`; the CLI then applies its flags
/// (`--limit`, `--chain`, …) by setting fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    /// The repository root: span paths are relative to it, and source is never read outside it.
    pub repo_root: PathBuf,
    /// The index database (default: LLMC's `<repo>/.llmc/rag/index_v2.db`).
    pub db_path: PathBuf,
    /// Spans in flight at once (`concurrency`, at least 1).
    pub concurrency: usize,
    /// Spans reported per [`Event::BatchFinished`], and the size of a run's first page read
    /// from the index (`batch_size`, at least 1); later pages grow while the run takes spans
    /// fast. Pages are read as slots free up, so this is not a barrier.
    ///
    /// [`Event::BatchFinished`]: crate::Event::BatchFinished
    pub batch_size: usize,
    /// The most spans one run takes on (skipped spans do not count); `None` takes all.
    pub limit: Option<u64>,
    /// Send every span to this chain (`--chain`), whatever the routes say.
    pub chain_override: Option<String>,
    /// Spans of files modified (per the index's `files.mtime`) less than this long ago are left
    /// for a later run and counted as skipped (`cooldown_seconds`, LLMC's rule).
    pub cooldown: Duration,
    /// Failed runs after which a span is dead-lettered (`max_failures_per_span`; 0 never).
    pub max_failures_per_span: u32,
    /// How long the run's connections wait for a write lock another process holds before the
    /// run stops as locked out (`busy_timeout_seconds`).
    pub busy_timeout: Duration,
    /// Reject enrichments with characters outside Latin-1 (`enforce_latin1_enrichment`).
    pub enforce_latin1: bool,
    /// Which of the quality gate's checks reject an answer (`[enrichment.quality] level`).
    pub quality: QualityLevel,
    /// What to store when every backend failed for a span (`on_failure`).
    pub on_failure: OnFailure,
    /// Retries, backoff, circuit breaker and the attempt cap per span. [`from_config`] sets
    /// `max_attempts_per_span` from `max_retries_per_span` (see there).
    ///
    /// [`from_config`]: Self::from_config
    pub cascade: CascadePolicy,
    /// The writer commits after this many span outcomes…
    pub commit_every: usize,
    /// …or when its oldest uncommitted outcome is this old, and always at the end of a run.
    pub commit_interval: Duration,
    /// Identifies the configuration in the `runs` table (see [`config_fingerprint`]).
    pub config_fingerprint: String,
    /// The order pending spans are taken in (`code_first`, `path_weights`, the starvation
    /// ratios). Code-first runs first bring the database's copy of the weights up to date.
    pub work_order: WorkOrder,
    /// The budgets that stop a run from taking spans (`[enrichment.budget]`).
    pub budget: BudgetConfig,
    /// Per span (each span runs its whole chain) or by tier (each backend of the chains in
    /// turn, over every span) (`schedule`).
    pub schedule: Schedule,
    /// How long a run whose spans no backend can serve waits without an answer from any
    /// backend before it stops with [`RunEnd::BackendsUnavailable`], leaving them pending
    /// (`outage_grace_seconds`; zero stops at once).
    ///
    /// [`RunEnd::BackendsUnavailable`]: crate::RunEnd::BackendsUnavailable
    pub outage_grace: Duration,
    /// What a run does with a span holding a secret (`[enrichment.secrets] action`): send it
    /// redacted, or not at all.
    pub secrets: SecretsAction,
    /// The stored enrichments a run renews besides the pending spans (`--refresh`); `None`
    /// renews none. A renewal goes through the same cascade, gate, writer, budgets, work order
    /// and leases as a pending span; see [`RefreshFilter`].
    pub refresh: Option<RefreshFilter>,
    /// Renew the refresh's spans before the pending ones (`--refresh-first`); by default the
    /// pending spans come first.
    pub refresh_first: bool,
}

impl PipelineSettings {
    /// Outcomes per commit by default. Only a fast run reaches it before
    /// [`DEFAULT_COMMIT_INTERVAL`](Self::DEFAULT_COMMIT_INTERVAL) passes (a model answering
    /// in 50 ms on 16 slots does 320 spans in 200 ms); each commit rewrites every index page
    /// its spans touched, so fewer, larger commits write fewer pages.
    pub const DEFAULT_COMMIT_EVERY: usize = 1024;
    /// The longest an outcome waits for its commit by default.
    pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);

    /// Settings from `[enrichment]` for the repository at `repo_root`.
    ///
    /// `max_retries_per_span` becomes the cascade's `max_attempts_per_span`: the config documents
    /// it as "backend attempts allowed per span in one run" (first tries, retries and fallbacks
    /// together), so 3 means three calls at most. 0 is refused (by the config loader, and by
    /// the pipeline for settings built in code): a span with no attempt could never be
    /// enriched. The rest of the cascade policy is the default table.
    pub fn from_config(config: &EnrichmentConfig, repo_root: impl Into<PathBuf>) -> Self {
        let repo_root = repo_root.into();
        Self {
            db_path: enrich_db::default_db_path(&repo_root),
            repo_root,
            concurrency: config.concurrency,
            batch_size: config.batch_size,
            limit: None,
            chain_override: None,
            cooldown: Duration::from_secs(config.cooldown_seconds),
            max_failures_per_span: config.max_failures_per_span,
            busy_timeout: Duration::try_from_secs_f64(config.busy_timeout_seconds)
                .unwrap_or(enrich_db::DEFAULT_BUSY_TIMEOUT),
            enforce_latin1: config.enforce_latin1_enrichment,
            quality: config.quality.level,
            on_failure: config.on_failure,
            cascade: cascade_policy(config),
            commit_every: Self::DEFAULT_COMMIT_EVERY,
            commit_interval: Self::DEFAULT_COMMIT_INTERVAL,
            config_fingerprint: config_fingerprint(config),
            work_order: config.work_order.clone(),
            budget: config.budget,
            schedule: config.schedule,
            outage_grace: Duration::from_secs(config.outage_grace_seconds),
            secrets: config.secrets.action,
            refresh: None,
            refresh_first: false,
        }
    }

    /// Checks the values a run cannot work with.
    pub(crate) fn validate(&self) -> Result<(), PipelineError> {
        let positive = |key, value: usize| {
            if value == 0 {
                Err(PipelineError::InvalidSetting {
                    key,
                    value: "0".to_owned(),
                    fix: "it must be at least 1",
                })
            } else {
                Ok(())
            }
        };
        if !self.repo_root.is_dir() {
            return Err(PipelineError::InvalidSetting {
                key: "repo_root",
                value: self.repo_root.display().to_string(),
                fix: "it is not a directory; pass the root of the indexed repository",
            });
        }
        positive("concurrency", self.concurrency)?;
        positive("batch_size", self.batch_size)?;
        positive("commit_every", self.commit_every)?;
        if self.cascade.max_attempts_per_span == 0 {
            return Err(PipelineError::InvalidSetting {
                key: "max_retries_per_span",
                value: "0".to_owned(),
                fix: "it counts every backend attempt of a span in one run, the first one \
                      included; 1 is a single attempt with no retry, re-ask or fallback",
            });
        }
        Ok(())
    }
}

/// The environment variable that sets the runtime's worker threads: tokio's own.
pub const WORKER_THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

/// How many worker threads the tokio runtime driving runs should have: 1, unless
/// [`WORKER_THREADS_ENV`] (`TOKIO_WORKER_THREADS`) asks for another whole number.
///
/// A run's tasks mostly wait: for backends, and for the writer and the event log, which have
/// threads of their own. What they compute per span (prompt, output validation) takes tens of
/// microseconds, which one worker serves without handing tasks and wake-ups from thread to
/// thread; on two cores a second worker cost more CPU per span than it saved (17 % more against
/// the 0 ms fake server, docs/performance.md), CPU that a model running on the same machine
/// wants. Build the runtime with `Builder::new_multi_thread().worker_threads(run_worker_threads())`:
/// its worker then runs the tasks while the thread that blocks on the run only waits.
pub fn run_worker_threads() -> usize {
    worker_threads_from(std::env::var(WORKER_THREADS_ENV).ok().as_deref())
}

/// [`run_worker_threads`] for the variable's value.
fn worker_threads_from(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(1)
}

/// A short, stable fingerprint of a configuration, stored with each run so `enrich status` can
/// tell runs made with different settings apart: `fnv1a64:` and 16 hex digits of the FNV-1a hash
/// of the configuration's JSON form, with secret-looking options redacted first (so the
/// fingerprint never depends on, or reveals, a secret).
pub fn config_fingerprint(config: &EnrichmentConfig) -> String {
    let mut redacted = config.clone();
    for backend in &mut redacted.backends {
        backend.options = redacted_options(&backend.options);
    }
    // Plain data with string keys: serialising it cannot fail.
    let json = serde_json::to_vec(&redacted).unwrap_or_default();
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("fnv1a64:{hash:016x}")
}

/// The cascade policy `[enrichment]` asks for: the design's table, `max_retries_per_span`
/// attempts per span, `corrective_reasks`, and the circuit breaker of
/// `[enrichment.circuit_breaker]` (`failures_to_open = 0` turns it off).
pub fn cascade_policy(config: &EnrichmentConfig) -> CascadePolicy {
    let breaker = &config.circuit_breaker;
    let circuit = (breaker.failures_to_open > 0).then(|| CircuitPolicy {
        failures_to_open: breaker.failures_to_open,
        cooldown: Duration::from_secs_f64(breaker.cooldown_seconds),
        max_cooldown: Duration::from_secs_f64(breaker.max_cooldown_seconds),
        ..CircuitPolicy::default()
    });
    CascadePolicy::default()
        .with_max_attempts_per_span(config.max_retries_per_span)
        .with_corrective_reasks(config.corrective_reasks)
        .with_circuit(circuit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_change_with_settings_but_not_with_secrets() {
        let base = EnrichmentConfig::default();
        let fingerprint = config_fingerprint(&base);
        assert!(
            fingerprint.starts_with("fnv1a64:") && fingerprint.len() == 24,
            "{fingerprint}"
        );
        assert_eq!(config_fingerprint(&base.clone()), fingerprint);

        let mut other = base.clone();
        other.batch_size += 1;
        assert_ne!(config_fingerprint(&other), fingerprint);

        let with_key = |key: &str| {
            let mut config = base.clone();
            config.backends[0]
                .options
                .insert("api_key".into(), serde_json::Value::String(key.into()));
            config_fingerprint(&config)
        };
        assert_eq!(with_key("one"), with_key("two"));
    }

    #[test]
    fn from_config_maps_retries_onto_attempts() {
        let mut config = EnrichmentConfig {
            max_retries_per_span: 4,
            ..EnrichmentConfig::default()
        };
        let settings = PipelineSettings::from_config(&config, "/repo");
        assert_eq!(settings.cascade.max_attempts_per_span, 4);
        assert_eq!(
            settings.db_path,
            PathBuf::from("/repo/.llmc/rag/index_v2.db")
        );
        // 0 attempts could never enrich a span: refused, not quietly raised to 1.
        config.max_retries_per_span = 0;
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = PipelineSettings::from_config(&config, dir.path());
        let err = settings.validate().expect_err("0 attempts");
        assert!(err.to_string().contains("max_retries_per_span"), "{err}");
    }

    #[test]
    fn runs_take_one_worker_thread_unless_tokio_s_variable_says_otherwise() {
        assert_eq!(worker_threads_from(None), 1);
        assert_eq!(worker_threads_from(Some("4")), 4);
        assert_eq!(worker_threads_from(Some(" 2 ")), 2);
        for ignored in ["0", "", "many", "-1"] {
            assert_eq!(worker_threads_from(Some(ignored)), 1, "{ignored:?}");
        }
    }
}
