//! Building batches from pending spans, for `enrich batch submit` and `enrich batch export`:
//! spans claimed in work order, each span's request as a live run builds it, written as
//! Batch-API lines into files cut at the limits, one batch (with a run of its own, whose
//! leases hold its spans) per file and chain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use enrich_adapter_openai::BatchApi;
use enrich_backends::BackendAdapter as _;
use enrich_config::BackendSpec;
use enrich_db::{BatchRequest, Db, NewBatch, RunId, RunStatus, SpanOutcome};
use enrich_pipeline::{BatchPrep, Pipeline};

use super::lines::{FileSplitter, Limits, custom_id, request_line};

/// How long a batch holds its spans unless it ends first: the 24 h completion window, plus an
/// hour for the service's finalizing and for collecting.
pub(crate) const BATCH_LEASE: Duration = Duration::from_secs(25 * 3600);

/// Where a batch's file goes: a Batch API's (`service`) or an offline engine's (`file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Uploaded to the backend's Batch API.
    Service,
    /// Written for an offline engine (`vllm run-batch`).
    File,
}

impl Engine {
    /// The name stored in `enrich_batches.engine`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::File => "file",
        }
    }
}

/// One batch built: its file, its spans' run, and the backend its lines are for.
pub(crate) struct Built {
    /// enrich's id of the batch.
    pub(crate) id: i64,
    /// Its file.
    pub(crate) path: PathBuf,
    /// Requests in it.
    pub(crate) requests: usize,
    /// Its size.
    pub(crate) bytes: u64,
    /// The chain its spans were routed to.
    pub(crate) chain: String,
    /// The backend its lines are for.
    pub(crate) backend: BackendSpec,
    /// Its estimated cost at the batch price.
    pub(crate) estimated_cost: Option<f64>,
}

/// What building batches did.
pub(crate) struct BuildReport {
    /// The batches, one per file.
    pub(crate) batches: Vec<Built>,
    /// Spans that could not be sent (no route, unreadable, a secret withheld): ledgered.
    pub(crate) not_sent: usize,
    /// Spans left for later: their file changed within the cooldown.
    pub(crate) cooling: u64,
    /// The budget that stopped the batch from taking more spans, if one did.
    pub(crate) budget_reached: bool,
}

/// The spans of one chain being written.
struct Group<'a> {
    api: BatchApi,
    splitter: FileSplitter<'a>,
    /// Each request's estimated (tokens, cost), in the order they were written.
    estimates: Vec<(u64, f64)>,
}

/// The first backend of `chain` that speaks the Batch-API format (`provider = "openai"`).
pub(crate) fn batch_backend(pipeline: &Pipeline, chain: &str) -> Result<BackendSpec> {
    let backends = pipeline
        .chain_backends(chain)
        .ok_or_else(|| anyhow!("no adapters were built for chain '{chain}'"))?;
    backends
        .into_iter()
        .find(|spec| spec.provider == enrich_adapter_openai::PROVIDER)
        .ok_or_else(|| {
            crate::exit::usage(format!(
                "chain '{chain}' has no backend with provider = \"openai\", and batch lines are \
                 OpenAI chat completion requests; add one to the chain (its `model` and \
                 `options` are what the batch sends), or pick a chain with --chain"
            ))
        })
}

/// The Batch API of `chain`'s batch backend.
pub(crate) fn batch_api(spec: BackendSpec) -> Result<BatchApi> {
    let name = spec.name.clone();
    BatchApi::new(spec).with_context(|| format!("cannot set up backend '{name}' for a batch"))
}

/// Claims up to `limit` pending spans and writes their requests into batch files: per chain,
/// parts at `path_of(chain, n)` cut at `limits`; records one batch per file. Spans that cannot
/// be sent are ledgered as a live run ledgers them.
pub(crate) fn build(
    pipeline: &Pipeline,
    engine: Engine,
    limit: Option<u64>,
    limits: Limits,
    path_of: &dyn Fn(&str, usize) -> PathBuf,
) -> Result<BuildReport> {
    let fingerprint = pipeline.prompt_fingerprint();
    let mut db = pipeline.open_writer()?;
    let claim_run = db
        .start_run_with_prompt(pipeline.config_fingerprint(), Some(&fingerprint))
        .context("cannot record the start of the batch")?;
    let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
    let mut not_sent: Vec<SpanOutcome> = Vec::new();
    let mut cooling = 0_u64;
    let mut failure: Option<anyhow::Error> = None;
    let allowance = pipeline
        .batch_allowance(&db)
        .context("cannot read what the budgets allow")?;
    let mut used = (0_u64, 0.0_f64);
    let mut budget_reached = false;
    let claimed = pipeline.claim_for_batch(&mut db, claim_run, limit, BATCH_LEASE, |span| {
        if pipeline.in_cooldown(&span) {
            cooling += 1;
            return true;
        }
        let step = match pipeline.prepare_batch_span(span) {
            BatchPrep::Ready(prepared) => {
                let group = match groups.get_mut(&prepared.chain) {
                    Some(group) => Ok(group),
                    None => new_group(pipeline, &prepared.chain, limits, path_of)
                        .map(|group| groups.entry(prepared.chain.clone()).or_insert(group)),
                };
                group.and_then(|group| {
                    let estimate = pipeline.batch_estimate(&prepared, group.api.adapter().spec());
                    if !allowance.fits(used, estimate.0, estimate.1) {
                        budget_reached = true;
                        return Ok(());
                    }
                    let body = group
                        .api
                        .adapter()
                        .request_body(&prepared.request)
                        .map_err(|err| anyhow!("{err}"))?;
                    let id = custom_id(&fingerprint, &prepared.span.span_hash);
                    group.splitter.push(
                        &request_line(&id, &body),
                        &id,
                        &prepared.span.span_hash,
                    )?;
                    group.estimates.push(estimate);
                    used = (used.0 + estimate.0, used.1 + estimate.1);
                    Ok(())
                })
            }
            BatchPrep::NotSent {
                span,
                kind,
                message,
            } => {
                not_sent.push(Pipeline::not_sent_outcome(claim_run, &span, kind, message));
                Ok(())
            }
        };
        match step {
            Ok(()) => !budget_reached,
            Err(err) => {
                failure = Some(err);
                false
            }
        }
    });
    let result = claimed
        .map_err(anyhow::Error::from)
        .and_then(|()| failure.map_or(Ok(()), Err))
        .and_then(|()| record(&mut db, pipeline, engine, claim_run, groups, &fingerprint));
    let batches = match result {
        Ok(batches) => batches,
        Err(err) => {
            // Best effort: the claim run ends, so its leases go; the error says why.
            let _ = db.finish_run(claim_run, 0, RunStatus::Failed);
            return Err(err);
        }
    };
    if !not_sent.is_empty() {
        db.write_batch(&not_sent)
            .context("cannot store the spans that could not be sent")?;
    }
    db.finish_run(claim_run, cooling, RunStatus::Completed)
        .context("cannot record the end of the batch's claim")?;
    Ok(BuildReport {
        batches,
        not_sent: not_sent.len(),
        cooling,
        budget_reached,
    })
}

fn new_group<'a>(
    pipeline: &Pipeline,
    chain: &str,
    limits: Limits,
    path_of: &'a dyn Fn(&str, usize) -> PathBuf,
) -> Result<Group<'a>> {
    let api = batch_api(batch_backend(pipeline, chain)?)?;
    let chain = chain.to_owned();
    Ok(Group {
        api,
        splitter: FileSplitter::new(limits, move |n| path_of(&chain, n)),
        estimates: Vec::new(),
    })
}

/// Records one batch per written file, its spans' leases handed to the batch's own run.
fn record(
    db: &mut Db,
    pipeline: &Pipeline,
    engine: Engine,
    claim_run: RunId,
    groups: BTreeMap<String, Group<'_>>,
    fingerprint: &str,
) -> Result<Vec<Built>> {
    let mut built = Vec::new();
    let expires_at_ms = now_ms() + BATCH_LEASE.as_millis() as u64;
    for (chain, group) in groups {
        let spec = group.api.adapter().spec().clone();
        let parts = group.splitter.finish()?;
        let mut estimates = group.estimates.into_iter();
        for part in parts {
            let (tokens, cost) = estimates
                .by_ref()
                .take(part.requests)
                .fold((0, 0.0), |(t, c), (et, ec)| (t + et, c + ec));
            let estimated_cost = spec.price.map(|_| cost);
            let run = db
                .start_batch_run(pipeline.config_fingerprint(), fingerprint)
                .context("cannot record a batch's run")?;
            let requests: Vec<BatchRequest> = part
                .ids
                .iter()
                .map(|(custom_id, span_hash)| BatchRequest {
                    custom_id: custom_id.clone(),
                    span_hash: span_hash.clone(),
                })
                .collect();
            let new = NewBatch {
                run_id: run,
                engine: engine.as_str().to_owned(),
                chain: chain.clone(),
                backend: spec.name.clone(),
                model: spec.model.clone(),
                prompt_fingerprint: fingerprint.to_owned(),
                status: match engine {
                    Engine::Service => "unsent".to_owned(),
                    Engine::File => "exported".to_owned(),
                },
                estimated_tokens: tokens,
                estimated_cost,
                expires_at_ms,
            };
            let id = db
                .record_batch(&new, &requests, claim_run)
                .context("cannot record a batch")?;
            built.push(Built {
                id,
                path: part.path,
                requests: part.requests,
                bytes: part.bytes,
                chain: chain.clone(),
                backend: spec.clone(),
                estimated_cost,
            });
        }
    }
    Ok(built)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
