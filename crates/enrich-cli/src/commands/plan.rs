//! `enrich plan`: what the next run would do, calling no backend and writing nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use enrich_config::SecretsAction;
use enrich_index::SkipReason;
use enrich_pipeline::{Pipeline, Plan};
use serde::Serialize;

use crate::adapters::registry;
use crate::cli::PlanArgs;
use crate::commands::index::rule_options;
use crate::commands::run::{RunOptions, apply_flags, check_chain};
use crate::context::Repo;
use crate::exit::Exit;
use crate::output;

/// The `--json` document.
#[derive(Serialize)]
struct PlanReport<'a> {
    /// Spans pending now.
    total_pending: u64,
    /// The `--refresh` selectors, each flag quoted, joined by `or` (`null`: no refresh).
    refresh: Option<String>,
    /// Stored enrichments the refresh selects now (`null`: no refresh).
    refresh_selected: Option<u64>,
    /// Planned spans that are renewals of stored enrichments.
    planned_renewals: usize,
    /// The order spans are taken in.
    work_order: WorkOrderReport,
    /// Spans planned (at most `--limit`).
    planned: usize,
    /// The planned spans' estimated prompt tokens, summed.
    estimated_tokens: u64,
    /// Tokens and cost of the planned spans and of every pending span (see
    /// [`enrich_pipeline::CostEstimate`]).
    estimate: enrich_pipeline::CostEstimate,
    /// `[enrichment.budget] batch_discount`: the share taken off the price for a batch.
    batch_discount: f64,
    /// Planned spans per chain.
    by_chain: BTreeMap<&'a str, u64>,
    /// Planned spans per priority class (`high`, `medium`, `low`).
    by_priority: BTreeMap<&'static str, u64>,
    /// Each planned span, in the order a run takes them: its place (`order`), weight, priority
    /// class and the glob that decided the weight, its route (chain, backends in order, tier,
    /// reasons), estimated prompt tokens, cut, cooldown, unreadable source, the secret rules
    /// that fire in it and whether a run withholds it.
    spans: &'a [enrich_pipeline::PlannedSpan],
    /// What is kept from the model.
    secrets: SecretsReport<'a>,
}

/// The secrets part of the plan: never a secret, only where they are.
#[derive(Serialize)]
struct SecretsReport<'a> {
    /// `[enrichment.secrets] action`: `redact` or `skip`.
    action: &'static str,
    /// Files `enrich index` leaves out because they hold secrets (keys, `.env`, ...).
    files_excluded: usize,
    /// Their paths.
    excluded_files: Vec<&'a str>,
    /// Planned spans in which a secret is found.
    spans_with_secrets: usize,
    /// Those spans: where, and by which rules.
    spans: Vec<SecretSpan<'a>>,
}

/// A planned span that holds secrets.
#[derive(Serialize)]
struct SecretSpan<'a> {
    path: &'a str,
    line_start: u32,
    line_end: u32,
    span_hash: &'a str,
    rules: &'a [&'static str],
    /// True: a run does not send it (action = skip); false: it is sent redacted.
    withheld: bool,
}

/// How the plan orders spans.
#[derive(Serialize)]
struct WorkOrderReport {
    /// By weight with the starvation ratio (true), or by span id.
    code_first: bool,
    /// First-queue (high and medium) spans taken before low ones are let in.
    starvation_ratio_high: u32,
    /// Low spans let in each time.
    starvation_ratio_low: u32,
}

/// Prints the plan of the first `--limit` pending spans (all by default), in the order a run
/// takes them.
pub(crate) fn plan(repo: &Repo, args: &PlanArgs, json: bool, verbose: bool) -> Result<Exit> {
    let mut loaded = repo.load_config()?;
    if args.no_code_first {
        loaded.config.work_order.code_first = false;
    }
    let config = &loaded.config;
    let options = RunOptions {
        chain: args.chain.clone(),
        ..RunOptions::default()
    };
    check_chain(config, options.chain.as_deref())?;
    let options = options.with_refresh(repo, config, &args.refresh)?;
    // Adapters are built (so a bad backend entry shows here too) but never called; the index is
    // only read.
    let pipeline = Pipeline::builder(config, &repo.root)
        .configure(|settings| apply_flags(repo, &options, settings))
        .build(&registry())
        .context("cannot set up the enrichment pipeline")?;
    let limit = args
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let plan = pipeline.plan(limit).context("cannot plan the run")?;

    let mut by_chain = BTreeMap::new();
    let mut by_priority = BTreeMap::new();
    for span in &plan.spans {
        *by_chain.entry(&*span.route.chain_name).or_insert(0) += 1;
        *by_priority.entry(span.priority.as_str()).or_insert(0) += 1;
    }
    let skipped = enrich_index::skipped_files(&repo.root, &rule_options(repo, &config.index))
        .context("cannot list the files the index leaves out")?;
    let excluded_files: Vec<&str> = skipped
        .iter()
        .filter(|f| f.reason == SkipReason::Secret)
        .map(|f| f.path.as_str())
        .collect();
    let secret_spans: Vec<SecretSpan<'_>> = plan
        .spans
        .iter()
        .filter(|s| !s.secrets.is_empty())
        .map(|s| SecretSpan {
            path: &s.span.path,
            line_start: s.span.line_start,
            line_end: s.span.line_end,
            span_hash: &s.span.span_hash,
            rules: &s.secrets,
            withheld: s.withheld,
        })
        .collect();
    let secrets = SecretsReport {
        action: config.secrets.action.as_str(),
        files_excluded: excluded_files.len(),
        excluded_files,
        spans_with_secrets: secret_spans.len(),
        spans: secret_spans,
    };
    let order = &config.work_order;
    let report = PlanReport {
        total_pending: plan.total_pending,
        refresh: options.refresh.as_ref().map(ToString::to_string),
        refresh_selected: plan.refresh_selected,
        planned_renewals: plan.spans.iter().filter(|s| s.renewal).count(),
        work_order: WorkOrderReport {
            code_first: plan.code_first,
            starvation_ratio_high: order.starvation_ratio_high,
            starvation_ratio_low: order.starvation_ratio_low,
        },
        planned: plan.spans.len(),
        estimated_tokens: plan.estimated_tokens(),
        estimate: plan.estimate,
        batch_discount: config.budget.batch_discount,
        by_chain,
        by_priority,
        spans: &plan.spans,
        secrets,
    };
    if json {
        output::json(&report)?;
    } else {
        output::text(&render(&plan, &report, config.secrets.action, verbose)?)?;
    }
    Ok(Exit::Success)
}

/// The plan as text: each planned span, then the work order, the totals, the secrets and the
/// estimate.
fn render(
    plan: &Plan,
    report: &PlanReport<'_>,
    action: SecretsAction,
    verbose: bool,
) -> Result<String> {
    let mut text = String::new();
    for span in &plan.spans {
        render_span(&mut text, span)?;
    }
    render_summary(&mut text, report, action, verbose)?;
    render_estimate(&mut text, report)?;
    Ok(text)
}

/// One planned span: where it is, its weight, its route and what a run would do with it.
fn render_span(text: &mut String, span: &enrich_pipeline::PlannedSpan) -> std::fmt::Result {
    let route = &span.route;
    let backends: Vec<&str> = route.backends.iter().map(|b| b.name.as_str()).collect();
    let tier = route
        .routing_tier
        .as_deref()
        .map(|t| format!(" tier {t}"))
        .unwrap_or_default();
    let tokens = span
        .estimated_tokens
        .map_or_else(|| "? tokens".to_owned(), |t| format!("~{t} tokens"));
    let glob = span
        .weight_glob
        .as_deref()
        .map_or_else(|| "no glob".to_owned(), |g| format!("\"{g}\""));
    writeln!(
        text,
        "#{} {}{}:{}-{} {}  weight {} ({}, {glob})  {}",
        span.order,
        if span.renewal { "renew " } else { "" },
        span.span.path,
        span.span.line_start,
        span.span.line_end,
        span.symbol,
        span.weight,
        span.priority.as_str(),
        span.span.span_hash
    )?;
    writeln!(
        text,
        "    {} -> chain {} [{}]{tier}, {tokens}; {}",
        route.slice_type,
        route.chain_name,
        backends.join(" > "),
        route.reasons.join("; ")
    )?;
    if let Some(cut) = &span.cut {
        writeln!(
            text,
            "    source cut to {} of {} bytes (enrichment.prompt.max_snippet_bytes)",
            cut.shown_bytes, cut.total_bytes
        )?;
    }
    if span.in_cooldown {
        writeln!(
            text,
            "    in cooldown: a run now skips it (its file changed recently)"
        )?;
    }
    if let Some(error) = &span.source_error {
        writeln!(text, "    source unreadable, a run would fail it: {error}")?;
    }
    if !span.secrets.is_empty() {
        let fate = if span.withheld {
            "a run does not send it (ledgered as secret_detected)"
        } else {
            "a run sends it with them redacted"
        };
        writeln!(
            text,
            "    holds secrets ({}): {fate}",
            span.secrets.join(", ")
        )?;
    }
    Ok(())
}

/// The work order, the totals by chain and the secrets.
fn render_summary(
    text: &mut String,
    report: &PlanReport<'_>,
    action: SecretsAction,
    verbose: bool,
) -> std::fmt::Result {
    let chains: Vec<String> = report
        .by_chain
        .iter()
        .map(|(chain, n)| format!("{chain} {n}"))
        .collect();
    let order = &report.work_order;
    if order.code_first {
        let priorities: Vec<String> = ["high", "medium", "low"]
            .iter()
            .filter_map(|p| report.by_priority.get(p).map(|n| format!("{p} {n}")))
            .collect();
        writeln!(
            text,
            "code first: by weight, {} high or medium then {} low; planned by priority: {}",
            order.starvation_ratio_high,
            order.starvation_ratio_low,
            if priorities.is_empty() {
                "-".to_owned()
            } else {
                priorities.join(", ")
            }
        )?;
    } else {
        writeln!(text, "span id order (code first is off)")?;
    }
    writeln!(
        text,
        "{} pending; planned {}: ~{} prompt tokens; by chain: {}",
        report.total_pending,
        report.planned,
        report.estimated_tokens,
        if chains.is_empty() {
            "-".to_owned()
        } else {
            chains.join(", ")
        }
    )?;
    if let Some(refresh) = &report.refresh {
        match report.refresh_selected {
            Some(0) | None => writeln!(
                text,
                "--refresh {refresh} selects no stored enrichment (dead letters are left out)"
            )?,
            Some(selected) => writeln!(
                text,
                "--refresh {refresh}: {selected} stored enrichment(s) to renew; planned {} of them",
                report.planned_renewals
            )?,
        }
    }
    let s = &report.secrets;
    writeln!(
        text,
        "secrets: {} file(s) left out of the index as secret files{}; {} planned span(s) hold secrets, {}",
        s.files_excluded,
        if s.files_excluded > 0 && !verbose {
            " (--verbose names them)"
        } else {
            ""
        },
        s.spans_with_secrets,
        match action {
            SecretsAction::Redact =>
                "sent with them redacted ([enrichment.secrets] action = \"redact\")",
            SecretsAction::Skip => "not sent ([enrichment.secrets] action = \"skip\")",
        }
    )?;
    if verbose {
        for path in &s.excluded_files {
            writeln!(text, "  secret file {path}")?;
        }
    }
    Ok(())
}

/// The tokens and cost if every span succeeds at once, planned and all pending.
fn render_estimate(text: &mut String, report: &PlanReport<'_>) -> std::fmt::Result {
    let e = &report.estimate;
    let per_span = if e.output_from_history {
        "the attempt log's average"
    } else {
        "assumed; no run logged any yet"
    };
    let cost = |cost: Option<f64>| {
        cost.map_or_else(
            || {
                "no cost (the spans' first backends set no price_input_per_1m / price_output_per_1m)"
                    .to_owned()
            },
            |c| format!("cost ~{c:.4}"),
        )
    };
    writeln!(
        text,
        "estimate if every span succeeds at once: planned ~{} tokens ({} prompt + {} output, {} per span: {per_span}), {}; all {} {} ~{} tokens, {}",
        e.prompt_tokens + e.output_tokens,
        e.prompt_tokens,
        e.output_tokens,
        e.output_tokens_per_span,
        cost(e.cost),
        report.total_pending + report.refresh_selected.unwrap_or(0),
        if report.refresh_selected.is_some() {
            "pending and to renew"
        } else {
            "pending"
        },
        e.all_pending_tokens,
        cost(e.all_pending_cost)
    )?;
    if let (Some(planned), Some(all)) = (e.batch_cost, e.all_pending_batch_cost) {
        writeln!(
            text,
            "as a batch (`enrich batch submit`, batch_discount {}): planned cost ~{planned:.4}; all pending ~{all:.4}",
            report.batch_discount
        )?;
    }
    Ok(())
}
