//! `enrich batch`: enriching pending spans through a batch engine instead of a live run.
//!
//! `submit` uploads the spans' requests to the batch backend's Batch API (OpenAI's, or a
//! server that copies it) and records the batches; `status` shows them; `collect` waits for
//! them and stores their answers; `cancel` stops one. `export` and `import` do the same with a
//! file and no API, for an offline engine (`vllm run-batch`). Every request is the one a live
//! run sends (the OpenAI-compatible adapter's body, the same prompt, schema and options), and
//! every answer goes through the same validation, quality gate and writer.

mod build;
mod ingest;
mod lines;
mod service;

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use enrich_db::RunStatus;
use enrich_pipeline::Pipeline;
use serde::Serialize;

use crate::adapters::registry;
use crate::commands::run::{RunOptions, apply_flags, check_chain};
use crate::commands::runtime;
use crate::context::Repo;
use crate::exit::Exit;
use crate::output;

use build::{BuildReport, Engine};
use ingest::{Apis, Ingested};
use lines::{Limits, part_path};

/// Arguments of `enrich batch`.
#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    #[command(subcommand)]
    pub(crate) command: BatchCommand,
}

/// The steps of a batch.
#[derive(Debug, Subcommand)]
pub(crate) enum BatchCommand {
    /// Send pending spans to the chain's Batch API (its first `provider = "openai"` backend).
    Submit(BuildArgs),
    /// Every batch with its state and request counts (open ones asked of the service).
    Status,
    /// Store the answers of finished batches; with --wait, wait for every open one.
    Collect(CollectArgs),
    /// Cancel a batch (its unanswered spans go back to pending).
    Cancel(CancelArgs),
    /// Write pending spans' requests to a JSONL file for an offline engine (`vllm run-batch`).
    Export(ExportArgs),
    /// Store the answers of an offline engine's output file.
    Import(ImportArgs),
}

/// Flags of `enrich batch submit` and `export`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Send at most this many spans.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,

    /// Send every span to this chain instead of routing it.
    #[arg(long, value_name = "NAME")]
    pub(crate) chain: Option<String>,

    /// Requests per file at most (the Batch API's limit is 50,000).
    #[arg(long, value_name = "N", hide = true, default_value_t = Limits::BATCH_API.requests)]
    pub(crate) max_requests_per_file: usize,

    /// Bytes per file at most (the Batch API's limit is 200 MB).
    #[arg(long, value_name = "BYTES", hide = true, default_value_t = Limits::BATCH_API.bytes)]
    pub(crate) max_bytes_per_file: u64,
}

impl BuildArgs {
    fn limits(&self) -> Limits {
        Limits {
            requests: self
                .max_requests_per_file
                .clamp(1, Limits::BATCH_API.requests),
            bytes: self.max_bytes_per_file.clamp(1, Limits::BATCH_API.bytes),
        }
    }
}

/// Flags of `enrich batch export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The JSONL file to write (more files beside it, `FILE-2.jsonl`, … past the limits or
    /// for a second chain).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,

    #[command(flatten)]
    pub(crate) build: BuildArgs,
}

/// Flags of `enrich batch import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The engine's output file (JSONL: `custom_id`, `response`, `error` per line).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// Flags of `enrich batch collect`.
#[derive(Debug, Args)]
pub(crate) struct CollectArgs {
    /// Wait until every open batch has ended, polling with backoff.
    #[arg(long)]
    pub(crate) wait: bool,

    /// Seconds between the first polls (doubling up to 5 minutes).
    #[arg(long, value_name = "SECONDS", hide = true, default_value_t = 30.0)]
    pub(crate) poll_seconds: f64,
}

/// Flags of `enrich batch cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The batch: enrich's id (`enrich batch status`) or the service's.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
}

/// Runs `enrich batch …`.
pub(crate) fn batch(repo: &Repo, args: &BatchArgs, json: bool) -> Result<Exit> {
    match &args.command {
        BatchCommand::Submit(build) => {
            let pipeline = pipeline(repo, build.chain.as_deref())?;
            runtime()?.block_on(service::submit(repo, &pipeline, build, json))
        }
        BatchCommand::Status => {
            let pipeline = pipeline(repo, None)?;
            runtime()?.block_on(service::status(&pipeline, json))
        }
        BatchCommand::Collect(collect) => {
            let pipeline = pipeline(repo, None)?;
            runtime()?.block_on(service::collect(repo, &pipeline, collect, json))
        }
        BatchCommand::Cancel(cancel) => {
            let pipeline = pipeline(repo, None)?;
            runtime()?.block_on(service::cancel(&pipeline, &cancel.id, json))
        }
        BatchCommand::Export(export) => {
            let pipeline = pipeline(repo, export.build.chain.as_deref())?;
            self::export(&pipeline, export, json)
        }
        BatchCommand::Import(import) => {
            let pipeline = pipeline(repo, None)?;
            self::import(&pipeline, &import.file, json)
        }
    }
}

/// The pipeline of the repository's configuration, with `--chain` applied; the index opened
/// (checked and migrated) first.
fn pipeline(repo: &Repo, chain: Option<&str>) -> Result<Pipeline> {
    let loaded = repo.load_config()?;
    let config = &loaded.config;
    check_chain(config, chain)?;
    drop(repo.open_for_run()?);
    let options = RunOptions {
        chain: chain.map(str::to_owned),
        ..RunOptions::default()
    };
    Pipeline::builder(config, &repo.root)
        .configure(|settings| apply_flags(repo, &options, settings))
        .build(&registry())
        .context("cannot set up the enrichment pipeline")
}

/// One batch file written, as reported.
#[derive(Debug, Serialize)]
struct FileReport {
    /// enrich's id of the batch.
    batch: i64,
    /// The file.
    path: PathBuf,
    /// Requests in it.
    requests: usize,
    /// Its size.
    bytes: u64,
    /// The chain its spans were routed to.
    chain: String,
    /// The backend (and model) its requests are for.
    backend: String,
    /// The model.
    model: String,
    /// Its estimated cost at the batch price.
    estimated_cost: Option<f64>,
}

fn file_reports(report: &BuildReport) -> Vec<FileReport> {
    report
        .batches
        .iter()
        .map(|b| FileReport {
            batch: b.id,
            path: b.path.clone(),
            requests: b.requests,
            bytes: b.bytes,
            chain: b.chain.clone(),
            backend: b.backend.name.clone(),
            model: b.backend.model.clone(),
            estimated_cost: b.estimated_cost,
        })
        .collect()
}

/// `enrich batch export FILE`.
fn export(pipeline: &Pipeline, args: &ExportArgs, json: bool) -> Result<Exit> {
    let file = &args.file;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(crate::exit::usage(format!(
            "the directory of {} does not exist; create it or name another file",
            file.display()
        )));
    }
    let first_chain = std::cell::RefCell::new(None::<String>);
    let path_of = |chain: &str, n: usize| -> PathBuf {
        let mut first = first_chain.borrow_mut();
        let first = first.get_or_insert_with(|| chain.to_owned());
        if first == chain {
            part_path(file, n)
        } else {
            part_path(&chained(file, chain), n)
        }
    };
    let report = build::build(
        pipeline,
        Engine::File,
        args.build.limit,
        args.build.limits(),
        &path_of,
    )?;
    let files = file_reports(&report);
    if json {
        output::json(&serde_json::json!({
            "files": files,
            "not_sent": report.not_sent,
            "cooling": report.cooling,
            "budget_reached": report.budget_reached,
        }))?;
    } else {
        let mut text = String::new();
        for f in &files {
            text.push_str(&format!(
                "batch {}: {} requests for {} ({}) in {}\n",
                f.batch,
                f.requests,
                f.backend,
                f.model,
                f.path.display()
            ));
        }
        if files.is_empty() {
            text.push_str("no pending span to export\n");
        }
        if report.not_sent > 0 {
            text.push_str(&format!(
                "{} spans could not be sent (see `enrich failures`)\n",
                report.not_sent
            ));
        }
        text.push_str(budget_note(&report));
        output::text(&text)?;
    }
    Ok(Exit::Success)
}

/// What to say when a budget stopped the batch from taking more spans.
fn budget_note(report: &BuildReport) -> &'static str {
    if report.budget_reached {
        "a budget of [enrichment.budget] (its estimate at the batch price, with today's usage \
         and the open batches' estimates) stopped the batch from taking more spans\n"
    } else {
        ""
    }
}

/// `file` with `-chain` added to its stem, for a second chain's requests.
fn chained(file: &Path, chain: &str) -> PathBuf {
    let safe: String = chain
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let stem = file
        .file_stem()
        .map_or_else(|| "batch".into(), |s| s.to_string_lossy());
    let name = match file.extension() {
        Some(ext) => format!("{stem}-{safe}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{safe}"),
    };
    file.with_file_name(name)
}

/// `enrich batch import FILE`.
fn import(pipeline: &Pipeline, file: &Path, json: bool) -> Result<Exit> {
    let reader = std::fs::File::open(file).map_err(|err| {
        crate::exit::usage(format!(
            "cannot open {} ({err}); name the output file the engine wrote",
            file.display()
        ))
    })?;
    let mut db = pipeline.open_writer()?;
    let mut apis = Apis::default();
    let ingested = ingest::ingest(
        pipeline,
        &mut db,
        &mut apis,
        BufReader::new(reader),
        None,
        Engine::File.as_str(),
        &file.display().to_string(),
    )?;
    // An exported batch ends when none of its requests waits any more.
    let mut closed = Vec::new();
    for batch in db.batches().context("cannot read the batches")? {
        if batch.engine == Engine::File.as_str()
            && batch.collected_at_ms.is_none()
            && batch.ingested + batch.returned >= batch.requests
        {
            db.close_batch(batch.id, "completed", RunStatus::Completed)
                .context("cannot close a batch")?;
            closed.push(batch.id);
        }
    }
    report_ingest(&ingested, &closed, json)?;
    Ok(Exit::Success)
}

/// Prints what an ingest stored.
fn report_ingest(ingested: &Ingested, closed: &[i64], json: bool) -> Result<()> {
    if json {
        return output::json(&serde_json::json!({
            "ingested": ingested,
            "closed_batches": closed,
        }));
    }
    let mut text = format!(
        "{} enriched, {} failed, {} fell back, {} unavailable (pending again), {} returned to \
         pending, {} lines passed over\n",
        ingested.enriched,
        ingested.failed,
        ingested.fell_back,
        ingested.unavailable,
        ingested.returned,
        ingested.passed_over
    );
    for id in closed {
        text.push_str(&format!("batch {id} is complete\n"));
    }
    output::text(&text)
}
