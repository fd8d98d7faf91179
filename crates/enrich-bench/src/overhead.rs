//! `overhead`: the whole pipeline over every pending span, with the instant backend.
//!
//! Everything `enrich run` does per span happens — routing, reading the source, building the
//! prompt, the per-span output schema, the cascade with its attempt records, parsing and
//! validating the answer, queueing the outcome for the batched writer, the events (to a JSONL
//! log with `--events`, as `enrich run` writes one) — except waiting for a model.

use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use enrich_backends::AdapterRegistry;
use enrich_config::{BackendSpec, EnrichmentConfig};
use enrich_db::Db;
use enrich_pipeline::{JsonlSink, Pipeline, RunControl};
use serde_json::{Value, json};

use crate::args::OverheadArgs;
use crate::instant::{self, InstantAdapter};

/// The chain (and backend) name of the benchmark's configuration.
const CHAIN: &str = "bench";

/// The configuration of an overhead run: LLMC's defaults, one chain with the instant backend
/// allowed `concurrency` requests at once, no cooldown (generated files are brand new).
pub(crate) fn config(concurrency: usize, batch_size: Option<usize>) -> EnrichmentConfig {
    let mut backend = BackendSpec::new("instant", CHAIN, instant::PROVIDER, "instant:latest");
    backend.max_in_flight = NonZeroUsize::new(concurrency);
    let mut config = EnrichmentConfig {
        default_chain: CHAIN.to_owned(),
        concurrency,
        cooldown_seconds: 0,
        backends: vec![backend],
        ..EnrichmentConfig::default()
    };
    if let Some(batch_size) = batch_size {
        config.batch_size = batch_size;
    }
    config
}

/// `enrich-bench overhead`.
pub(crate) fn run(args: &OverheadArgs) -> Result<Value> {
    let repo = args.repo.clone();
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| enrich_db::default_db_path(&repo));
    let (concurrency, batch_size) = (args.concurrency, args.batch_size);
    let (events, commit_every) = (args.events.clone(), args.commit_every);
    if !db.is_file() {
        bail!(
            "{} does not exist: write a synthetic index with `enrich-bench gen-db` first",
            db.display()
        );
    }

    let config = config(concurrency, batch_size);
    let mut registry = AdapterRegistry::new();
    InstantAdapter::register(&mut registry);
    let mut builder = Pipeline::builder(&config, &repo).configure(|settings| {
        settings.db_path = db.clone();
        if let Some(commit_every) = commit_every {
            settings.commit_every = commit_every;
        }
    });
    if let Some(path) = &events {
        builder = builder.event_sink(Arc::new(JsonlSink::create(path)?));
    }
    let pipeline = builder
        .build(&registry)
        .context("could not build the pipeline")?;
    let (batch_size, commit_every) = (
        pipeline.settings().batch_size,
        pipeline.settings().commit_every,
    );

    // The runtime `enrich run` builds.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(enrich_pipeline::run_worker_threads())
        .enable_all()
        .build()
        .context("could not start the tokio runtime")?;
    let cpu_before = cpu_seconds()?;
    let summary = runtime
        .block_on(pipeline.run(&RunControl::new()))
        .context("the run failed")?;
    let cpu = cpu_seconds()? - cpu_before;
    let seconds = summary.duration.as_secs_f64();
    let pending_after = Db::open_read_only(&db)?.pending_count()?;
    Ok(json!({
        "command": "overhead",
        "spans": summary.attempted,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "seconds": seconds,
        "spans_per_sec": if seconds > 0.0 { summary.attempted as f64 / seconds } else { 0.0 },
        "cpu_seconds": cpu,
        "cpu_us_per_span": if summary.attempted > 0 { cpu * 1e6 / summary.attempted as f64 } else { 0.0 },
        "concurrency": concurrency,
        "batch_size": batch_size,
        "commit_every": commit_every,
        "pending_after": pending_after,
    }))
}

/// The CPU time (user and system, every thread) this process has used, in seconds, from
/// `/proc/self/stat` (clock ticks of Linux's fixed 100 Hz `USER_HZ`).
fn cpu_seconds() -> Result<f64> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").context("could not read /proc/self/stat")?;
    cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / 100.0)
        .context("/proc/self/stat is not understood")
}

/// `utime + stime` of a `/proc/<pid>/stat` text; fields count from the `)` that ends the
/// command name (which may hold spaces).
pub(crate) fn cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_the_command_name() {
        let stat = "42 (tokio rt worker) S 1 42 42 0 -1 4194304 100 0 0 0 150 25 7 3 20 0 4 0";
        assert_eq!(cpu_ticks(stat), Some(175));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
    }
}
