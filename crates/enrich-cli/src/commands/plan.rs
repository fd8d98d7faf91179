//! `enrich plan`: what the next run would do, calling no backend and writing nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use enrich_pipeline::{Pipeline, Plan};
use serde::Serialize;

use crate::adapters::registry;
use crate::cli::PlanArgs;
use crate::commands::run::{RunOptions, check_chain, settings};
use crate::context::Repo;
use crate::exit::Exit;
use crate::output;

/// The `--json` document.
#[derive(Serialize)]
struct PlanReport<'a> {
    /// Spans pending now.
    total_pending: u64,
    /// Spans planned (at most `--limit`).
    planned: usize,
    /// The planned spans' estimated prompt tokens, summed.
    estimated_tokens: u64,
    /// Planned spans per chain.
    by_chain: BTreeMap<&'a str, u64>,
    /// Each planned span: its route (chain, backends in order, tier, reasons), estimated
    /// prompt tokens, cut, cooldown, unreadable source.
    spans: &'a [enrich_pipeline::PlannedSpan],
}

/// Prints the plan of the first `--limit` pending spans (all by default).
pub(crate) fn plan(repo: &Repo, args: &PlanArgs, json: bool) -> Result<Exit> {
    let loaded = repo.load_config()?;
    let config = &loaded.config;
    let options = RunOptions {
        chain: args.chain.clone(),
        ..RunOptions::default()
    };
    check_chain(config, options.chain.as_deref())?;
    // Adapters are built (so a bad backend entry shows here too) but never called; the index is
    // only read.
    let pipeline = Pipeline::builder(config, settings(repo, config, &options))
        .build(&registry())
        .context("cannot set up the enrichment pipeline")?;
    let limit = args
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let plan = pipeline.plan(limit).context("cannot plan the run")?;

    let mut by_chain = BTreeMap::new();
    for span in &plan.spans {
        *by_chain.entry(&*span.route.chain_name).or_insert(0) += 1;
    }
    let report = PlanReport {
        total_pending: plan.total_pending,
        planned: plan.spans.len(),
        estimated_tokens: plan.estimated_tokens(),
        by_chain,
        spans: &plan.spans,
    };
    if json {
        output::json(&report)?;
    } else {
        output::text(&render(&plan, &report)?)?;
    }
    Ok(Exit::Success)
}

fn render(plan: &Plan, report: &PlanReport<'_>) -> Result<String> {
    let mut text = String::new();
    for span in &plan.spans {
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
        writeln!(
            text,
            "{}  {}:{}-{} {}",
            span.span_hash, span.path, span.line_start, span.line_end, span.symbol
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
    }
    let chains: Vec<String> = report
        .by_chain
        .iter()
        .map(|(chain, n)| format!("{chain} {n}"))
        .collect();
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
    Ok(text)
}
