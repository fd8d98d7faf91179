//! The Batch API side of `enrich batch`: `submit` (upload and create), `status`, `collect`
//! (poll with backoff, honouring Retry-After; download; ingest) and `cancel`.

use std::io::{BufReader, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use enrich_adapter_openai::{BatchApi, BatchInfo, BatchStatus};
use enrich_backends::{BackendError, FailureKind};
use enrich_db::{BatchProgress, BatchRow, Db, RunStatus};
use enrich_pipeline::Pipeline;
use serde::Serialize;

use super::build::{self, Engine};
use super::ingest::{self, Apis, Ingested};
use super::{BuildArgs, CollectArgs, file_reports};
use crate::context::Repo;
use crate::exit::Exit;
use crate::output;

/// The longest wait between two polls of `collect --wait`.
const MAX_POLL: Duration = Duration::from_secs(300);

/// Tries of one Batch API call that fails for the service's own reasons (busy, 5xx, a broken
/// connection) before giving up.
const CALL_TRIES: u32 = 5;

/// Where a repository's batch files are kept.
fn batch_dir(repo: &Repo) -> PathBuf {
    repo.db_path
        .parent()
        .map_or_else(|| repo.root.join(".llmc/rag"), std::path::Path::to_path_buf)
        .join("batches")
}

/// Calls the Batch API through `call`, again after the wait a `Retry-After` asks for (or a
/// doubling backoff) while it fails for the service's own reasons.
async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut backoff = Duration::from_secs(1);
    let mut tries = 0;
    loop {
        tries += 1;
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) if tries < CALL_TRIES && is_transient(err.kind) => {
                let wait = err.retry_after.unwrap_or(backoff);
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "the Batch API is busy or failed ({}); trying again",
                    err.message
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            Err(err) => return Err(err),
        }
    }
}

fn is_transient(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::Overloaded
            | FailureKind::ServerError
            | FailureKind::Connect
            | FailureKind::Timeout
    )
}

/// `enrich batch submit`.
pub(super) async fn submit(
    repo: &Repo,
    pipeline: &Pipeline,
    args: &BuildArgs,
    json: bool,
) -> Result<Exit> {
    let dir = batch_dir(repo);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the batch directory {}", dir.display()))?;
    let stamp = build::now_ms();
    let path_of = |chain: &str, n: usize| -> PathBuf {
        let safe: String = chain
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        dir.join(format!("input-{stamp}-{safe}-{n}.jsonl"))
    };
    let report = build::build(
        pipeline,
        Engine::Service,
        args.limit,
        args.limits(),
        &path_of,
    )?;
    let mut db = pipeline.open_writer()?;
    let mut submitted = Vec::new();
    let mut failures = Vec::new();
    for batch in &report.batches {
        let api = build::batch_api(batch.backend.clone())?;
        match upload(&api, batch).await {
            Ok(info) => {
                db.set_batch_remote(
                    batch.id,
                    &info.id,
                    &info.input_file_id,
                    info.status.as_str(),
                )
                .context("cannot record a batch's ids")?;
                let _ = std::fs::remove_file(&batch.path);
                submitted.push((batch.id, info));
            }
            Err(err) => {
                // Nothing reached the service: the spans go back to pending at once.
                db.close_batch(batch.id, "failed", RunStatus::Failed)
                    .context("cannot close a batch that was not sent")?;
                failures.push(format!("batch {}: {err}", batch.id));
            }
        }
    }
    let files = file_reports(&report);
    if json {
        let batches: Vec<_> = submitted
            .iter()
            .map(|(id, info)| {
                serde_json::json!({
                    "batch": id, "remote_id": info.id, "input_file_id": info.input_file_id,
                    "status": info.status,
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "files": files, "submitted": batches, "errors": failures,
            "not_sent": report.not_sent, "cooling": report.cooling,
            "budget_reached": report.budget_reached,
        }))?;
    } else {
        let mut text = String::new();
        for (id, info) in &submitted {
            let file = files.iter().find(|f| f.batch == *id);
            text.push_str(&format!(
                "batch {id} ({}): {} requests for {} ({}), {}{}\n",
                info.id,
                file.map_or(0, |f| f.requests),
                file.map_or("", |f| f.backend.as_str()),
                file.map_or("", |f| f.model.as_str()),
                info.status.as_str(),
                file.and_then(|f| f.estimated_cost)
                    .map(|c| format!(", estimated cost {c:.4}"))
                    .unwrap_or_default()
            ));
        }
        if submitted.is_empty() && failures.is_empty() {
            text.push_str("no pending span to submit\n");
        }
        if report.not_sent > 0 {
            text.push_str(&format!(
                "{} spans could not be sent (see `enrich failures`)\n",
                report.not_sent
            ));
        }
        text.push_str(super::budget_note(&report));
        output::text(&text)?;
    }
    for failure in &failures {
        output::note(&format!("error: {failure}\n"));
    }
    Ok(if failures.is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}

/// Uploads a batch's file and creates the batch.
async fn upload(api: &BatchApi, batch: &build::Built) -> Result<BatchInfo, BackendError> {
    let bytes = std::fs::read(&batch.path).map_err(|err| {
        BackendError::new(
            FailureKind::InvalidRequest,
            format!(
                "cannot read the batch file {} ({err})",
                batch.path.display()
            ),
        )
    })?;
    let name = batch.path.file_name().map_or_else(
        || "batch.jsonl".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let file_id = with_retries(|| api.upload(&name, &bytes)).await?;
    let local = batch.id.to_string();
    let metadata = [("enrich_batch", local.as_str())];
    with_retries(|| api.create(&file_id, &metadata)).await
}

/// A batch as `status` shows it.
#[derive(Debug, Serialize)]
struct StatusRow<'a> {
    #[serde(flatten)]
    batch: &'a BatchRow,
    /// `request_counts` as the service last reported them.
    request_counts: enrich_adapter_openai::RequestCounts,
    /// Why it could not be asked about now.
    #[serde(skip_serializing_if = "Option::is_none")]
    unreachable: Option<String>,
}

/// `enrich batch status`.
pub(super) async fn status(pipeline: &Pipeline, json: bool) -> Result<Exit> {
    let mut db = pipeline.open_writer()?;
    let mut unreachable = std::collections::BTreeMap::new();
    let mut apis: std::collections::BTreeMap<String, BatchApi> = std::collections::BTreeMap::new();
    for batch in open_service_batches(&db)? {
        let Some(remote) = batch.remote_id.clone() else {
            continue;
        };
        match refresh(pipeline, &mut apis, &mut db, &batch, &remote).await {
            Ok(_) => {}
            Err(err) => {
                unreachable.insert(batch.id, err.to_string());
            }
        }
    }
    let batches = db.batches().context("cannot read the batches")?;
    let rows: Vec<StatusRow<'_>> = batches
        .iter()
        .map(|batch| StatusRow {
            batch,
            request_counts: enrich_adapter_openai::RequestCounts {
                total: batch.requests,
                completed: batch.completed,
                failed: batch.failed,
            },
            unreachable: unreachable.get(&batch.id).cloned(),
        })
        .collect();
    if json {
        output::json(&serde_json::json!({ "batches": rows }))?;
        return Ok(Exit::Success);
    }
    let mut text = String::new();
    if rows.is_empty() {
        text.push_str("no batch yet (`enrich batch submit` or `enrich batch export`)\n");
    }
    for row in &rows {
        let b = row.batch;
        text.push_str(&format!(
            "batch {} {} {} ({}/{}): {} requests, {} completed, {} failed; {} stored, {} back \
             to pending{}{}\n",
            b.id,
            b.remote_id.as_deref().unwrap_or(b.engine.as_str()),
            b.status,
            b.backend,
            b.model,
            b.requests,
            b.completed,
            b.failed,
            b.ingested,
            b.returned,
            if b.collected_at_ms.is_some() {
                ", collected"
            } else {
                ""
            },
            row.unreachable
                .as_deref()
                .map(|e| format!(" (cannot ask the service now: {e})"))
                .unwrap_or_default()
        ));
    }
    output::text(&text)?;
    Ok(Exit::Success)
}

fn open_service_batches(db: &Db) -> Result<Vec<BatchRow>> {
    Ok(db
        .batches()
        .context("cannot read the batches")?
        .into_iter()
        .filter(|b| b.engine == Engine::Service.as_str() && b.collected_at_ms.is_none())
        .collect())
}

/// The API of a batch's backend, built once.
fn api_of<'a>(
    pipeline: &Pipeline,
    apis: &'a mut std::collections::BTreeMap<String, BatchApi>,
    batch: &BatchRow,
) -> Result<&'a BatchApi> {
    let key = format!("{}\u{0}{}", batch.chain, batch.backend);
    if !apis.contains_key(&key) {
        let spec = pipeline
            .chain_backends(&batch.chain)
            .and_then(|specs| specs.into_iter().find(|s| s.name == batch.backend))
            .ok_or_else(|| {
                crate::exit::usage(format!(
                    "batch {} was sent to backend '{}' of chain '{}', which the configuration \
                     no longer has; restore it",
                    batch.id, batch.backend, batch.chain
                ))
            })?;
        apis.insert(key.clone(), build::batch_api(spec)?);
    }
    Ok(&apis[&key])
}

/// What the service says of a batch, as recorded.
fn progress(info: &BatchInfo) -> BatchProgress {
    BatchProgress {
        status: info.status.as_str().to_owned(),
        output_file_id: info.output_file_id.clone(),
        error_file_id: info.error_file_id.clone(),
        completed: info.request_counts.completed,
        failed: info.request_counts.failed,
    }
}

/// Asks the service about a batch and records what it says.
async fn refresh(
    pipeline: &Pipeline,
    apis: &mut std::collections::BTreeMap<String, BatchApi>,
    db: &mut Db,
    batch: &BatchRow,
    remote: &str,
) -> Result<BatchInfo> {
    let api = api_of(pipeline, apis, batch)?;
    let info = with_retries(|| api.get(remote))
        .await
        .map_err(|err| anyhow!("{err}"))?;
    db.update_batch(batch.id, &progress(&info))
        .context("cannot record a batch's state")?;
    Ok(info)
}

/// One batch collected, as reported.
#[derive(Debug, Serialize)]
struct Collected {
    batch: i64,
    remote_id: Option<String>,
    status: String,
    ingested: Ingested,
}

/// `enrich batch collect [--wait]`.
pub(super) async fn collect(
    repo: &Repo,
    pipeline: &Pipeline,
    args: &CollectArgs,
    json: bool,
) -> Result<Exit> {
    let dir = batch_dir(repo);
    let mut db = pipeline.open_writer()?;
    let mut apis = std::collections::BTreeMap::new();
    let mut ingest_apis = Apis::default();
    let mut collected = Vec::new();
    let mut waiting = Vec::new();
    // Batches the service could not be asked about: left open, reported, not waited for.
    let mut errors: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    let mut poll = Duration::from_secs_f64(args.poll_seconds.max(0.0));
    loop {
        waiting.clear();
        for batch in open_service_batches(&db)? {
            if errors.contains_key(&batch.id) {
                continue;
            }
            let Some(remote) = batch.remote_id.clone() else {
                // Recorded but never created at the service (a submit that stopped half-way):
                // its spans go back to pending.
                db.close_batch(batch.id, "failed", RunStatus::Failed)
                    .context("cannot close a batch that was not sent")?;
                continue;
            };
            let info = match refresh(pipeline, &mut apis, &mut db, &batch, &remote).await {
                Ok(info) => info,
                Err(err) => {
                    errors.insert(batch.id, format!("{err:#}"));
                    continue;
                }
            };
            if !info.status.is_final() {
                waiting.push((batch.id, remote, info.status));
                continue;
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the batch directory {}", dir.display()))?;
            let api = api_of(pipeline, &mut apis, &batch)?;
            let mut ingested = Ingested::default();
            for (what, file_id) in [
                ("output", info.output_file_id.as_deref()),
                ("error", info.error_file_id.as_deref()),
            ] {
                let Some(file_id) = file_id else { continue };
                let path = dir.join(format!("{}-{what}.jsonl", batch.id));
                download(api, file_id, &path).await?;
                let file = std::fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let got = ingest::ingest(
                    pipeline,
                    &mut db,
                    &mut ingest_apis,
                    BufReader::new(file),
                    Some(batch.id),
                    Engine::Service.as_str(),
                    &path.display().to_string(),
                )?;
                ingested.add(got);
                let _ = std::fs::remove_file(&path);
            }
            let run_status = match info.status {
                BatchStatus::Completed => RunStatus::Completed,
                BatchStatus::Failed => RunStatus::Failed,
                _ => RunStatus::Interrupted,
            };
            db.close_batch(batch.id, info.status.as_str(), run_status)
                .context("cannot close a batch")?;
            if !info.errors.is_empty() {
                output::note(&format!(
                    "batch {} {}: {}\n",
                    batch.id,
                    info.status.as_str(),
                    info.errors.join("; ")
                ));
            }
            collected.push(Collected {
                batch: batch.id,
                remote_id: Some(remote),
                status: info.status.as_str().to_owned(),
                ingested,
            });
        }
        if !args.wait || waiting.is_empty() {
            break;
        }
        tracing::info!(
            open = waiting.len(),
            wait_s = poll.as_secs_f64(),
            "waiting for open batches"
        );
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(MAX_POLL).max(Duration::from_millis(1));
    }
    if json {
        let open: Vec<_> = waiting
            .iter()
            .map(|(id, remote, status)| {
                serde_json::json!({"batch": id, "remote_id": remote, "status": status})
            })
            .collect();
        let errors: Vec<_> = errors
            .iter()
            .map(|(id, message)| serde_json::json!({"batch": id, "error": message}))
            .collect();
        output::json(&serde_json::json!({
            "collected": collected, "open": open, "errors": errors,
        }))?;
    } else {
        let mut text = String::new();
        for c in &collected {
            let i = &c.ingested;
            text.push_str(&format!(
                "batch {} {}: {} enriched, {} failed, {} fell back, {} unavailable, {} back to \
                 pending\n",
                c.batch, c.status, i.enriched, i.failed, i.fell_back, i.unavailable, i.returned
            ));
        }
        for (id, remote, status) in &waiting {
            text.push_str(&format!(
                "batch {id} ({remote}) is {}; collect again later, or wait with --wait\n",
                status.as_str()
            ));
        }
        if collected.is_empty() && waiting.is_empty() && errors.is_empty() {
            text.push_str("no open batch\n");
        }
        output::text(&text)?;
    }
    for (id, message) in &errors {
        output::note(&format!(
            "error: batch {id} stays open: the Batch API cannot be asked about it ({message})\n"
        ));
    }
    Ok(if errors.is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}

/// Downloads the file `file_id` to `path`.
async fn download(api: &BatchApi, file_id: &str, path: &std::path::Path) -> Result<()> {
    let mut last = None;
    for _ in 0..CALL_TRIES {
        match try_download(api, file_id, path).await? {
            Ok(()) => return Ok(()),
            Err(err) if is_transient(err.kind) => {
                let wait = err.retry_after.unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(wait).await;
                last = Some(err);
            }
            Err(err) => return Err(anyhow!("cannot download file {file_id}: {err}")),
        }
    }
    Err(anyhow!(
        "cannot download file {file_id}: {}",
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// One try of a download: the outer error is the local file's, the inner the service's.
async fn try_download(
    api: &BatchApi,
    file_id: &str,
    path: &std::path::Path,
) -> Result<Result<(), BackendError>> {
    let mut download = match api.download(file_id).await {
        Ok(download) => download,
        Err(err) => return Ok(Err(err)),
    };
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    loop {
        match download.chunk().await {
            Ok(Some(bytes)) => out
                .write_all(&bytes)
                .with_context(|| format!("cannot write {}", path.display()))?,
            Ok(None) => break,
            Err(err) => return Ok(Err(err)),
        }
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Ok(()))
}

/// `enrich batch cancel ID`.
pub(super) async fn cancel(pipeline: &Pipeline, id: &str, json: bool) -> Result<Exit> {
    let mut db = pipeline.open_writer()?;
    let Some(batch) = db.find_batch(id).context("cannot read the batches")? else {
        return Err(crate::exit::usage(format!(
            "no batch {id}; `enrich batch status` lists them"
        )));
    };
    if batch.collected_at_ms.is_some() {
        return Err(crate::exit::usage(format!(
            "batch {} has ended ({}); there is nothing to cancel",
            batch.id, batch.status
        )));
    }
    let status = match &batch.remote_id {
        Some(remote) if batch.engine == Engine::Service.as_str() => {
            let mut apis = std::collections::BTreeMap::new();
            let api = api_of(pipeline, &mut apis, &batch)?;
            let info = with_retries(|| api.cancel(remote))
                .await
                .map_err(|err| anyhow!("cannot cancel batch {remote}: {err}"))?;
            db.update_batch(batch.id, &progress(&info))
                .context("cannot record a batch's state")?;
            info.status.as_str().to_owned()
        }
        // An exported file (or a batch never created at the service): its spans go back to
        // pending now; a later import of its answers passes them over.
        _ => {
            db.close_batch(batch.id, "cancelled", RunStatus::Interrupted)
                .context("cannot close a batch")?;
            "cancelled".to_owned()
        }
    };
    if json {
        output::json(&serde_json::json!({"batch": batch.id, "status": status}))?;
    } else {
        let then = if status == "cancelled" {
            "its unanswered spans are pending again"
        } else {
            "`enrich batch collect` stores what it answered and returns the rest to pending"
        };
        output::text(&format!("batch {} is {status}; {then}\n", batch.id))?;
    }
    Ok(Exit::Success)
}
