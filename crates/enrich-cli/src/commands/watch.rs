//! `enrich watch`: the service loop. Each pass enriches the pending spans of every repository,
//! then sleeps; idle passes sleep longer, up to a cap. Ctrl-C or SIGTERM ends it gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use enrich_pipeline::{EventSink, JsonlSink, RunEnd};

use crate::cli::{Global, WatchArgs};
use crate::commands::run::{
    DEFAULT_EVENTS_LOG, RunOptions, RunReport, build_pipeline, check_chain, preflight,
};
use crate::context::Repo;
use crate::exit::{BackendUnusable, Exit, usage};
use crate::progress::Tally;
use crate::signals::Shutdown;

/// Idle passes double the sleep up to this many times the interval…
const IDLE_BACKOFF_FACTOR: u32 = 16;
/// …and never beyond an hour.
const IDLE_SLEEP_CAP: Duration = Duration::from_secs(3600);

/// The sleep after a pass: the interval, doubled `doublings` times, at most the cap (16 times
/// the interval, and an hour, but never less than the interval).
pub(crate) fn next_sleep(interval: Duration, doublings: u32) -> Duration {
    let cap = interval
        .saturating_mul(IDLE_BACKOFF_FACTOR)
        .min(IDLE_SLEEP_CAP)
        .max(interval);
    let factor = 2u32.saturating_pow(doublings.min(31));
    interval.saturating_mul(factor).min(cap)
}

/// Serves every repository until a signal. Errors of the first pass (a bad config, a missing
/// index) end the command, so a misconfigured service fails at once; later ones, and backends
/// that are down, are logged and the repository is tried again next pass.
pub(crate) async fn watch(global: &Global, args: &WatchArgs) -> Result<Exit> {
    let roots = if args.repos.is_empty() {
        vec![global.repo.clone()]
    } else {
        args.repos.clone()
    };
    if roots.len() > 1 && global.db.is_some() {
        return Err(usage(
            "--db names one index but watch was given several repositories; drop --db (each repository uses <repo>/.llmc/rag/index_v2.db)",
        ));
    }
    let repos = roots
        .iter()
        .map(|root| Repo::new(root, global.db.as_deref(), global.config.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    let options = RunOptions {
        limit: None,
        chain: args.run.chain.clone(),
        concurrency: args.run.concurrency,
        batch_size: args.run.batch_size,
        schedule: args.run.schedule,
        ..RunOptions::default()
    };
    let interval = Duration::from_secs(args.interval);
    let shutdown = Shutdown::install().context("cannot install the signal handlers")?;
    tracing::info!(repos = repos.len(), "watching; Ctrl-C or SIGTERM stops");

    let mut first_pass = true;
    let mut idle_passes: u32 = 0;
    while !shutdown.requested.is_cancelled() {
        let mut worked = false;
        for repo in &repos {
            if shutdown.requested.is_cancelled() {
                break;
            }
            match pass(repo, &options, &shutdown).await {
                Ok(None) => {}
                Ok(Some(report)) => {
                    worked |= report.attempted > 0;
                    if report.end == RunEnd::BackendsUnavailable {
                        tracing::warn!(
                            repo = %repo.root.display(),
                            "no backend could serve ({}); {} span(s) stay pending for the next pass",
                            report.unavailable_backends(),
                            report.unsent
                        );
                    }
                    if report.dead_lettered > 0 {
                        tracing::warn!(
                            repo = %repo.root.display(),
                            "{} span(s) dead-lettered; `enrich failures` lists them",
                            report.dead_lettered
                        );
                    }
                }
                // A backend that is down is waited for (a service may start before its model
                // server); any other error of the first pass means the service is misconfigured.
                Err(err) if first_pass && !is_backend_outage(&err) => {
                    return Err(err.context(format!("cannot serve {}", repo.root.display())));
                }
                Err(err) => {
                    tracing::error!(repo = %repo.root.display(), "{err:#}; trying again next pass");
                }
            }
        }
        first_pass = false;
        idle_passes = if worked {
            0
        } else {
            idle_passes.saturating_add(1)
        };
        // After work and after the first idle pass: the interval; then doubling.
        let sleep = next_sleep(interval, idle_passes.saturating_sub(1));
        tracing::debug!(seconds = sleep.as_secs(), "sleeping");
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.requested.cancelled() => {}
        }
    }
    tracing::info!("stopped");
    Ok(Exit::Success)
}

/// Whether `err` says the backends are down (which a later pass may find fixed).
fn is_backend_outage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<BackendUnusable>())
}

/// One run over one repository, with the config read afresh (edits apply on the next pass);
/// `None` when nothing is pending: then no run is started, and none is recorded in the index.
///
/// No progress display: a service's log is its output, and the pipeline's tracing sink logs runs
/// and batches at info and failed spans as warnings.
async fn pass(repo: &Repo, options: &RunOptions, shutdown: &Shutdown) -> Result<Option<RunReport>> {
    let loaded = repo.load_config()?;
    let config = &loaded.config;
    check_chain(config, options.chain.as_deref())?;
    // Read-write, as the run will open it: an index of an older enrich is migrated here
    // rather than refused.
    if repo
        .open_for_run(config.max_failures_per_span)?
        .pending_count()?
        == 0
    {
        return Ok(None);
    }
    preflight(config, options.chain.as_deref()).await?;
    let events_path = repo.root.join(DEFAULT_EVENTS_LOG);
    let events = Arc::new(
        JsonlSink::with_limit(&events_path, config.event_log)
            .context("cannot open the event log")?,
    );
    let tally = Arc::new(Tally::default());
    let sinks: Vec<Arc<dyn EventSink>> = vec![events.clone(), tally.clone()];
    let pipeline = build_pipeline(repo, config, options, sinks)?;
    let summary = pipeline
        .run(&shutdown.control)
        .await
        .context("the run stopped")?;
    if let Err(err) = events.check() {
        tracing::warn!("{err}");
    }
    Ok(Some(RunReport::new(
        &summary,
        tally.snapshot(),
        &events_path,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_double_up_to_the_cap() {
        let minute = Duration::from_secs(60);
        let cases = [
            (minute, 0, 60),
            (minute, 1, 120),
            (minute, 2, 240),
            (minute, 4, 960),
            (minute, 5, 960),
            (minute, 40, 960),
            (Duration::from_secs(600), 3, 3600),
            (Duration::from_secs(7200), 2, 7200),
        ];
        for (interval, doublings, expected) in cases {
            assert_eq!(
                next_sleep(interval, doublings),
                Duration::from_secs(expected),
                "interval {interval:?}, {doublings} doublings"
            );
        }
    }
}
