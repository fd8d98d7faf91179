//! `enrich run`: enrich the pending spans, with progress, an event log and a summary. Also the
//! pipeline assembly that `plan` and `watch` share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use enrich_backends::{BackendOutage, LimitSnapshot};
use enrich_config::{EnrichmentConfig, Schedule, select_chain};
use enrich_db::{HeldLeases, RefreshFilter};
use enrich_pipeline::{
    BudgetStop, EventSink, JsonlSink, Pipeline, PipelineSettings, RunEnd, RunSummary, TracingSink,
};
use serde::Serialize;

use crate::adapters::registry;
use crate::cli::{RefreshArgs, RunArgs};
use crate::context::Repo;
use crate::exit::{BackendUnusable, Exit};
use crate::health::{BackendCheck, Verdict, check_all};
use crate::output;
use crate::progress::{BackendCounts, Progress, ProgressMode, Tally, format_duration, format_rate};
use crate::signals::Shutdown;
use crate::time::format_ms;

/// Where LLMC writes its enrichment events, relative to the repository root.
pub(crate) const DEFAULT_EVENTS_LOG: &str = "logs/enrichment_events.jsonl";

/// The run flags that change the pipeline's settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    pub(crate) limit: Option<u64>,
    pub(crate) chain: Option<String>,
    pub(crate) concurrency: Option<u16>,
    pub(crate) batch_size: Option<u16>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) max_cost: Option<f64>,
    pub(crate) max_wall_seconds: Option<f64>,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) refresh: Option<RefreshFilter>,
    pub(crate) refresh_first: bool,
}

impl RunOptions {
    /// These options with the refresh flags; `stale` selectors are judged against `config` as
    /// `enrich status` judges them (read from the index at `repo`).
    pub(crate) fn with_refresh(
        self,
        repo: &Repo,
        config: &EnrichmentConfig,
        args: &RefreshArgs,
    ) -> Result<Self> {
        let mut refresh = RefreshFilter::new(args.refresh.clone());
        if let Some(filter) = refresh.take() {
            refresh = Some(if filter.uses_stale() {
                let db = repo.open_read_only()?;
                let expected =
                    crate::commands::status::expectations(config, self.chain.as_deref(), &db)
                        .context("cannot judge which enrichments are stale")?;
                filter.with_expectations(expected)
            } else {
                filter
            });
        }
        Ok(Self {
            refresh,
            refresh_first: args.refresh_first,
            ..self
        })
    }
}

impl From<&RunArgs> for RunOptions {
    fn from(args: &RunArgs) -> Self {
        Self {
            limit: args.limit,
            chain: args.chain.clone(),
            concurrency: args.concurrency,
            batch_size: args.batch_size,
            max_tokens: args.max_tokens,
            max_cost: args.max_cost,
            max_wall_seconds: args.max_wall_seconds,
            schedule: args.schedule,
            ..Self::default()
        }
    }
}

/// Checks `--chain` before anything is opened or created: an unknown or disabled chain is a
/// usage error listing the chains there are.
pub(crate) fn check_chain(config: &EnrichmentConfig, chain: Option<&str>) -> Result<()> {
    if let Some(chain) = chain {
        select_chain(config, chain).context("--chain names a chain that cannot be used")?;
    }
    Ok(())
}

/// Applies the repository's index path and the flags to the pipeline's settings (the config's).
pub(crate) fn apply_flags(repo: &Repo, options: &RunOptions, settings: &mut PipelineSettings) {
    settings.db_path = repo.db_path.clone();
    settings.limit = options.limit;
    settings.chain_override = options.chain.clone();
    if let Some(concurrency) = options.concurrency {
        settings.concurrency = usize::from(concurrency);
    }
    if let Some(batch_size) = options.batch_size {
        settings.batch_size = usize::from(batch_size);
    }
    if let Some(schedule) = options.schedule {
        settings.schedule = schedule;
    }
    settings.refresh.clone_from(&options.refresh);
    settings.refresh_first = options.refresh_first;
    let budget = &mut settings.budget;
    budget.max_tokens_per_run = options.max_tokens.or(budget.max_tokens_per_run);
    budget.max_cost_per_run = options.max_cost.or(budget.max_cost_per_run);
    budget.max_wall_seconds = options.max_wall_seconds.or(budget.max_wall_seconds);
}

/// A pipeline over `repo` with every registered provider and these event sinks.
pub(crate) fn build_pipeline(
    repo: &Repo,
    config: &EnrichmentConfig,
    options: &RunOptions,
    sinks: Vec<Arc<dyn EventSink>>,
) -> Result<Pipeline> {
    // A missing or damaged index is refused here, before the run writes anything.
    repo.open_for_run()?;
    let mut builder = Pipeline::builder(config, &repo.root)
        .configure(|settings| apply_flags(repo, options, settings))
        .event_sink(Arc::new(TracingSink));
    for sink in sinks {
        builder = builder.event_sink(sink);
    }
    builder
        .build(&registry())
        .context("cannot set up the enrichment pipeline")
}

/// Checks every enabled backend before spans are taken. When no backend of the chain that serves
/// unrouted spans (`--chain`, else the default chain) can serve, nothing is run: every span would
/// fail and count toward its dead-lettering for an outage that is no fault of the span's.
/// Other unusable backends are warned about; the cascade passes over them.
pub(crate) async fn preflight(config: &EnrichmentConfig, chain: Option<&str>) -> Result<()> {
    match unservable(config, chain).await {
        Some(outages) => Err(unservable_error(config, chain, &outages)),
        None => Ok(()),
    }
}

/// The backends of the chain that serves unrouted spans, each with what was found, when none of
/// them can serve; `None` when one can. Warns about the other unusable backends.
async fn unservable(config: &EnrichmentConfig, chain: Option<&str>) -> Option<Vec<BackendOutage>> {
    let main_chain = chain.unwrap_or(&config.default_chain);
    let checks = check_all(config.backends.iter().filter(|b| b.enabled)).await;
    let unusable: Vec<&BackendCheck> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Unusable)
        .collect();
    let main_total = checks.iter().filter(|c| c.chain == main_chain).count();
    let main_unusable: Vec<&BackendCheck> = unusable
        .iter()
        .copied()
        .filter(|c| c.chain == main_chain)
        .collect();
    if main_total > 0 && main_unusable.len() == main_total {
        return Some(main_unusable.iter().map(|c| c.outage()).collect());
    }
    for check in unusable {
        tracing::warn!(
            "backend {}/{} cannot serve and will be passed over: {}",
            check.chain,
            check.name,
            check.describe()
        );
    }
    None
}

/// The error of a run that took no span because no backend of its chain can serve (exit 3).
fn unservable_error(
    config: &EnrichmentConfig,
    chain: Option<&str>,
    outages: &[BackendOutage],
) -> anyhow::Error {
    let main_chain = chain.unwrap_or(&config.default_chain);
    let found: Vec<String> = outages
        .iter()
        .map(|o| format!("{} at {}: {}", o.backend, o.host, o.last_error))
        .collect();
    anyhow::Error::new(BackendUnusable(format!(
        "no backend of chain {main_chain:?} can serve, so no span was taken: {}; fix it (`enrich doctor` says how) and run again",
        found.join("; ")
    )))
}

/// The run summary: `--json` prints it as it is, also for a run an error stopped.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    /// `None` (`null`) only for a run that could not even be recorded.
    pub(crate) run_id: Option<i64>,
    /// `completed`, `interrupted` or `failed`, as stored in the runs table.
    pub(crate) status: &'static str,
    /// Why the run ended: `exhausted`, `limit_reached`, `stopped`, `aborted`,
    /// `budget_reached`, `backends_unavailable`, `failed`.
    pub(crate) end: RunEnd,
    /// The budget that stopped the run, when one did.
    pub(crate) budget_stop: Option<BudgetStop>,
    /// Tokens every attempt used, as the backends reported them.
    pub(crate) tokens: u64,
    /// Their cost by the backends' prices (0 without prices).
    pub(crate) cost: f64,
    pub(crate) total_pending: u64,
    /// Pending spans other runs held when this one started (it did not take them), by run.
    pub(crate) held_elsewhere: Vec<HeldLeases>,
    /// The `--refresh` selectors, each flag quoted, joined by `or` (`null`: no refresh).
    pub(crate) refresh: Option<String>,
    /// Stored enrichments the refresh selected when the run started (`null`: no refresh).
    pub(crate) refresh_selected: Option<u64>,
    pub(crate) attempted: u64,
    /// Spans enriched, renewals included.
    pub(crate) succeeded: u64,
    /// Of those, stored enrichments renewed.
    pub(crate) refreshed: u64,
    /// Spans that failed, renewals included.
    pub(crate) failed: u64,
    /// Of those, renewals: their old enrichment stays, and they count toward no dead letter.
    pub(crate) refresh_failed: u64,
    pub(crate) fell_back: u64,
    pub(crate) skipped: u64,
    pub(crate) cancelled: u64,
    /// Spans taken but left pending because no backend could serve them (no ledger row).
    pub(crate) unsent: u64,
    /// The backends that could not serve when the run ended, with their last errors.
    pub(crate) backends_unavailable: Vec<BackendOutage>,
    pub(crate) dead_lettered: u64,
    pub(crate) duration_sec: f64,
    pub(crate) spans_per_sec: f64,
    /// Attempts per backend name.
    pub(crate) backends: BTreeMap<String, BackendCounts>,
    /// Each backend host's in-flight limit: final and peak limit, ceiling, peak in flight,
    /// backoffs, whether it adapts.
    pub(crate) limits: Vec<LimitSnapshot>,
    pub(crate) events_log: PathBuf,
    /// What stopped the run (`end = "failed"`), or `null`.
    pub(crate) error: Option<String>,
}

impl RunReport {
    pub(crate) fn new(
        summary: &RunSummary,
        backends: BTreeMap<String, BackendCounts>,
        events_log: &Path,
    ) -> Self {
        let duration_sec = summary.duration.as_secs_f64();
        let spans_per_sec = if duration_sec > 0.0 {
            summary.attempted as f64 / duration_sec
        } else {
            0.0
        };
        // Milliseconds are all the precision a summary needs.
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        Self {
            run_id: Some(summary.run_id.0),
            status: summary.status().as_str(),
            end: summary.end,
            budget_stop: summary.budget_stop,
            tokens: summary.tokens,
            cost: summary.cost,
            total_pending: summary.total_pending,
            held_elsewhere: summary.held_elsewhere.clone(),
            refresh: None,
            refresh_selected: summary.refresh_selected,
            attempted: summary.attempted,
            succeeded: summary.succeeded,
            refreshed: summary.refreshed,
            failed: summary.failed,
            refresh_failed: summary.refresh_failed,
            fell_back: summary.fell_back,
            skipped: summary.skipped,
            cancelled: summary.cancelled,
            unsent: summary.unsent,
            backends_unavailable: summary.outages.clone(),
            dead_lettered: summary.dead_lettered,
            duration_sec: round(duration_sec),
            spans_per_sec: round(spans_per_sec),
            backends,
            limits: summary.limits.clone(),
            events_log: events_log.to_path_buf(),
            error: None,
        }
    }

    /// The report of a run that stopped before it could be recorded.
    pub(crate) fn not_started(events_log: &Path) -> Self {
        Self {
            run_id: None,
            status: RunEnd::Failed.status().as_str(),
            end: RunEnd::Failed,
            budget_stop: None,
            tokens: 0,
            cost: 0.0,
            total_pending: 0,
            held_elsewhere: Vec::new(),
            refresh: None,
            refresh_selected: None,
            attempted: 0,
            succeeded: 0,
            refreshed: 0,
            failed: 0,
            refresh_failed: 0,
            fell_back: 0,
            skipped: 0,
            cancelled: 0,
            unsent: 0,
            backends_unavailable: Vec::new(),
            dead_lettered: 0,
            duration_sec: 0.0,
            spans_per_sec: 0.0,
            backends: BTreeMap::new(),
            limits: Vec::new(),
            events_log: events_log.to_path_buf(),
            error: None,
        }
    }

    /// What the refresh `refresh` (the selectors as written) selected and renewed.
    fn refresh_line(&self, refresh: &str) -> String {
        match self.refresh_selected {
            Some(0) | None => format!(
                "--refresh {refresh} selects no stored enrichment (dead letters are left out); nothing was renewed"
            ),
            Some(selected) => format!(
                "--refresh {refresh}: {selected} stored enrichment(s) selected, {} renewed, {} failed and keep their old enrichment",
                self.refreshed, self.refresh_failed
            ),
        }
    }

    /// Each backend that could not serve, with its state and last error, `; `-separated.
    pub(crate) fn unavailable_backends(&self) -> String {
        if self.backends_unavailable.is_empty() {
            return "no backend answered".to_owned();
        }
        let backends: Vec<String> = self
            .backends_unavailable
            .iter()
            .map(ToString::to_string)
            .collect();
        backends.join("; ")
    }

    /// The summary for people.
    pub(crate) fn render(&self) -> Result<String> {
        let mut text = String::new();
        let duration = format_duration(std::time::Duration::from_secs_f64(self.duration_sec));
        let run = self
            .run_id
            .map_or_else(|| "(not recorded)".to_owned(), |id| id.to_string());
        writeln!(
            text,
            "run {run} {} ({}): {} enriched, {} failed, {} skipped of {} pending, in {duration} ({} spans/s)",
            self.status,
            serde_json::to_value(self.end)?.as_str().unwrap_or("?"),
            self.succeeded,
            self.failed + self.fell_back,
            self.skipped,
            self.total_pending,
            format_rate(self.spans_per_sec)
        )?;
        for held in &self.held_elsewhere {
            writeln!(
                text,
                "  {} more pending span(s) are held by run {} on host {} (pid {}) until {}: a \
                 later run takes them once that run ends or its leases expire",
                held.spans,
                held.run_id.0,
                held.host,
                held.pid,
                format_ms(held.until_ms)
            )?;
        }
        if let Some(refresh) = &self.refresh {
            writeln!(text, "  {}", self.refresh_line(refresh))?;
        }
        if let Some(stop) = &self.budget_stop {
            writeln!(
                text,
                "  stopped taking spans: {stop}; the rest stays pending"
            )?;
        }
        if self.tokens > 0 {
            let cost = if self.cost > 0.0 {
                format!(", cost {:.4}", self.cost)
            } else {
                String::new()
            };
            writeln!(text, "  tokens used: {}{cost}", self.tokens)?;
        }
        if self.fell_back > 0 {
            writeln!(
                text,
                "  {} of the failed spans were stored empty (on_failure = \"fallback_to_empty\")",
                self.fell_back
            )?;
        }
        if self.cancelled > 0 {
            writeln!(
                text,
                "  {} span(s) in flight were aborted and stay pending",
                self.cancelled
            )?;
        }
        if self.unsent > 0 {
            writeln!(
                text,
                "  {} span(s) could not be sent to a backend and stay pending (not counted as failed)",
                self.unsent
            )?;
        }
        for (name, b) in &self.backends {
            let failures: Vec<String> = b
                .failures
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            let failures = if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", failures.join(", "))
            };
            writeln!(
                text,
                "  backend {name}: {} attempts, {} ok, {} failed{failures}",
                b.attempts, b.succeeded, b.failed
            )?;
        }
        for limit in self.limits.iter().filter(|limit| limit.adaptive) {
            writeln!(
                text,
                "  {} @ {}: limit {} (peak {}, ceiling {}), {} backoff(s), at most {} in flight",
                limit.backend,
                limit.host,
                limit.limit,
                limit.peak_limit,
                limit.ceiling,
                limit.backoffs,
                limit.peak_in_flight
            )?;
        }
        if self.dead_lettered > 0 {
            writeln!(
                text,
                "  {} span(s) were dead-lettered: `enrich failures` lists them, `enrich failures --requeue-all` retries them",
                self.dead_lettered
            )?;
        }
        if self.failed > self.refresh_failed {
            writeln!(
                text,
                "  failed spans stay pending for the next run; `enrich show SPAN_HASH` shows their attempts"
            )?;
        }
        writeln!(text, "  events: {}", self.events_log.display())?;
        Ok(text)
    }

    /// The exit code: interrupted by a signal, stopped because no backend could serve (an
    /// error naming each backend and its last error: exit code 3), some spans failed, or
    /// success.
    pub(crate) fn exit(&self, signal: Option<u8>) -> Result<Exit> {
        if let Some(signal) = signal {
            return Ok(Exit::Interrupted(signal));
        }
        if self.end == RunEnd::Failed {
            return Ok(Exit::Failed);
        }
        if self.end == RunEnd::BackendsUnavailable {
            return Err(anyhow::Error::new(BackendUnusable(format!(
                "the run stopped because no backend could serve its spans ({}); the {} span(s) it could not send stay pending and were not counted as failed; fix the backends (`enrich doctor` says how) and run again",
                self.unavailable_backends(),
                self.unsent
            ))));
        }
        Ok(if self.failed + self.fell_back > 0 {
            Exit::Failed
        } else {
            Exit::Success
        })
    }
}

/// Runs the pipeline once over the repository.
pub(crate) async fn run(repo: &Repo, args: &RunArgs, json: bool, quiet: bool) -> Result<Exit> {
    let mut loaded = repo.load_config()?;
    if args.no_code_first {
        loaded.config.work_order.code_first = false;
    }
    let config = &loaded.config;
    let options = RunOptions::from(args);
    check_chain(config, options.chain.as_deref())?;
    let options = options.with_refresh(repo, config, &args.refresh)?;

    let events_path = args
        .events
        .clone()
        .unwrap_or_else(|| repo.root.join(DEFAULT_EVENTS_LOG));
    let events = Arc::new(
        JsonlSink::with_limit(&events_path, config.event_log)
            .context("cannot open the event log")?,
    );
    let progress = Arc::new(Progress::new(ProgressMode::detect(quiet)));
    let tally = Arc::new(Tally::default());
    let pipeline = build_pipeline(
        repo,
        config,
        &options,
        vec![events.clone(), progress.clone(), tally.clone()],
    )?;

    let pending = pipeline.pending_count()?;
    if (pending > 0 || options.refresh.is_some())
        && let Some(outages) = unservable(config, options.chain.as_deref()).await
    {
        let error = unservable_error(config, options.chain.as_deref(), &outages);
        if json {
            // A script reading the report learns why nothing ran, as from a run that stopped.
            let mut report = RunReport::not_started(&events_path);
            report.end = RunEnd::BackendsUnavailable;
            report.status = RunEnd::BackendsUnavailable.status().as_str();
            report.total_pending = pending;
            report.backends_unavailable = outages;
            report.error = Some(error.to_string());
            output::json(&report)?;
        }
        return Err(error);
    }

    let shutdown = Shutdown::install().context("cannot install the Ctrl-C handler")?;
    let outcome = pipeline.run_to_end(&shutdown.control).await;
    // The pipeline holds the sinks: dropping both takes the progress bar off the screen.
    drop(pipeline);
    drop(progress);
    if let Err(err) = events.check() {
        tracing::warn!("{err}; the run itself is stored");
    }

    // The report is printed whatever ended the run; an error then also goes to stderr and
    // decides the exit code.
    let mut report = match &outcome.summary {
        Some(summary) => RunReport::new(summary, tally.snapshot(), &events_path),
        None => RunReport::not_started(&events_path),
    };
    report.refresh = options.refresh.as_ref().map(ToString::to_string);
    report.error = outcome.error.as_ref().map(ToString::to_string);
    if json {
        output::json(&report)?;
    } else {
        output::text(&report.render()?)?;
    }
    if let Some(error) = outcome.error {
        return Err(anyhow::Error::new(error).context("the run stopped"));
    }
    report.exit(shutdown.signal())
}
