//! `enrich status`: counts of the index, read-only.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use enrich_backends::{CircuitSnapshot, CircuitState};
use enrich_config::{BackendSpec, EnrichmentConfig};
use enrich_db::{
    CIRCUITS_META_KEY, Db, Expectations, GroupCount, Run, StaleCounts, StaleReason, Stats,
};
use serde::{Deserialize, Serialize};

use crate::context::Repo;
use crate::exit::Exit;
use crate::output;
use crate::time::format_ms;

/// The `--json` document (and `enrich mcp`'s `status` tool): the database's [`Stats`], which
/// file they are of, the circuit breakers of the last run that published them, and the stored
/// enrichments by stale reason (`null` when they could not be judged, with `stale_error` saying
/// why).
#[derive(Serialize)]
pub(crate) struct StatusReport {
    db: PathBuf,
    #[serde(flatten)]
    stats: Stats,
    circuits: Option<Circuits>,
    stale: Option<StaleCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_error: Option<String>,
}

/// The stored enrichments by stale reason against the configuration as it is now, with the
/// newest digest recorded of each backend's model (`status` asks no server).
fn stale_counts(repo: &Repo, db: &Db) -> Result<StaleCounts> {
    let loaded = repo.load_config_quietly()?;
    let expected = expectations(&loaded.config, None, db)?;
    Ok(db.stale_counts(&expected)?)
}

/// What `config` would record now (every span routed to `chain` when given), with the newest
/// digest recorded of each backend's model: what `status` counts stale enrichments against, and
/// what `run --refresh stale` and `plan --refresh stale` select them by.
pub(crate) fn expectations(
    config: &EnrichmentConfig,
    chain: Option<&str>,
    db: &Db,
) -> Result<Expectations> {
    let seen = db.latest_digests()?;
    let types = db.slice_types()?;
    let digest_of = |spec: &BackendSpec| {
        seen.iter()
            .find(|s| s.backend == spec.name && s.model == spec.model)
            .map(|s| s.digest.clone())
    };
    Ok(enrich_pipeline::stale_expectations(
        config, chain, &types, digest_of,
    )?)
}

/// The circuit breakers a run publishes in `llmc_meta` while it runs (and once at its end).
#[derive(Debug, Serialize, Deserialize)]
struct Circuits {
    run_id: i64,
    updated_at_ms: u64,
    circuits: Vec<CircuitSnapshot>,
}

/// Prints the index's counts. Opens the database read-only: safe next to a running `enrich run`
/// or `enrich watch`, whose circuit breakers it shows as they last changed.
pub(crate) fn status(repo: &Repo, json: bool) -> Result<Exit> {
    let report = report(repo)?;
    if json {
        output::json(&report)?;
    } else {
        output::text(&render(&report)?)?;
    }
    Ok(Exit::Success)
}

/// The index's status, read from a read-only connection.
pub(crate) fn report(repo: &Repo) -> Result<StatusReport> {
    let db = repo.open_read_only()?;
    let stats = db.stats()?;
    let circuits = match db.meta(CIRCUITS_META_KEY)? {
        Some(text) => match serde_json::from_str::<Circuits>(&text) {
            Ok(circuits) => Some(circuits),
            Err(err) => {
                tracing::warn!(
                    "ignoring the published circuit state ({err}); the next run rewrites it"
                );
                None
            }
        },
        None => None,
    };
    // Judging staleness needs the configuration; without one, the rest is still shown.
    let (stale, stale_error) = match stale_counts(repo, &db) {
        Ok(counts) => (Some(counts), None),
        Err(err) => (None, Some(format!("{err:#}"))),
    };
    Ok(StatusReport {
        db: repo.db_path.clone(),
        stats,
        circuits,
        stale,
        stale_error,
    })
}

fn render(report: &StatusReport) -> Result<String> {
    let StatusReport {
        db,
        stats,
        circuits,
        stale,
        stale_error,
    } = report;
    let mut text = String::new();
    writeln!(text, "index          {}", db.display())?;
    writeln!(text, "files          {}", stats.files)?;
    writeln!(text, "spans          {}", stats.spans)?;
    writeln!(text, "enriched       {}", stats.enriched)?;
    writeln!(text, "pending        {}", stats.pending)?;
    writeln!(text, "  failing      {}", stats.failing)?;
    writeln!(text, "dead-lettered  {}", stats.dead_lettered)?;
    write_groups(&mut text, "by model", &stats.by_model)?;
    write_groups(&mut text, "by backend host", &stats.by_backend_host)?;
    match (stale, stale_error) {
        (Some(counts), _) => write_stale(&mut text, counts)?,
        (None, why) => writeln!(
            text,
            "stale          not judged: {}",
            why.as_deref().unwrap_or("unknown")
        )?,
    }
    match &stats.last_run {
        Some(run) => write_run(&mut text, run)?,
        None => writeln!(text, "last run       none")?,
    }
    if let Some(circuits) = circuits {
        write_circuits(&mut text, circuits)?;
    }
    if stats.dead_lettered > 0 {
        writeln!(
            text,
            "\n{} span(s) are dead-lettered: `enrich failures` lists them, `enrich failures --requeue-all` retries them",
            stats.dead_lettered
        )?;
    }
    Ok(text)
}

/// The stale enrichments by reason (a span may count under several), and those whose
/// provenance is unknown.
fn write_stale(text: &mut String, counts: &StaleCounts) -> std::fmt::Result {
    writeln!(
        text,
        "stale          {} of {} enrichment(s)",
        counts.stale, counts.enriched
    )?;
    for &reason in StaleReason::OUTDATED {
        let count = counts.of(reason);
        if count > 0 {
            writeln!(text, "  {:<12} {count}", reason.as_str())?;
        }
    }
    writeln!(
        text,
        "  {:<12} {} (provenance not recorded)",
        "unknown", counts.unknown
    )
}

fn write_groups(text: &mut String, title: &str, groups: &[GroupCount]) -> std::fmt::Result {
    if groups.is_empty() {
        return Ok(());
    }
    writeln!(text, "{title}")?;
    for group in groups {
        let key = group.key.as_deref().unwrap_or("(unknown)");
        writeln!(text, "  {key:<40} {}", group.count)?;
    }
    Ok(())
}

/// The circuits that are not closed, as the run last published them.
fn write_circuits(text: &mut String, circuits: &Circuits) -> std::fmt::Result {
    let troubled: Vec<&CircuitSnapshot> = circuits
        .circuits
        .iter()
        .filter(|c| c.state != CircuitState::Closed)
        .collect();
    if troubled.is_empty() {
        return Ok(());
    }
    writeln!(
        text,
        "circuits       run #{} as of {}",
        circuits.run_id,
        format_ms(circuits.updated_at_ms)
    )?;
    for circuit in troubled {
        let state = match circuit.state {
            CircuitState::Open { remaining_ms } => format!(
                "open until {}",
                format_ms(circuits.updated_at_ms.saturating_add(remaining_ms))
            ),
            CircuitState::HalfOpen { .. } => "half-open (probing)".to_owned(),
            CircuitState::Closed => "closed".to_owned(),
        };
        writeln!(
            text,
            "  {} at {}: {state}, opened {} time(s)",
            circuit.backend, circuit.host, circuit.trips
        )?;
    }
    Ok(())
}

fn write_run(text: &mut String, run: &Run) -> std::fmt::Result {
    let ended = match run.finished_at_ms {
        Some(ms) => format!(", ended {}", format_ms(ms)),
        None => String::new(),
    };
    writeln!(
        text,
        "last run       #{} {}, started {}{ended}",
        run.id,
        run.status.as_str(),
        format_ms(run.started_at_ms)
    )?;
    let c = &run.counts;
    writeln!(
        text,
        "               {} attempted, {} succeeded, {} failed, {} skipped",
        c.attempted, c.succeeded, c.failed, c.skipped
    )
}
