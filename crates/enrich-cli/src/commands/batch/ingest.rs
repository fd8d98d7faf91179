//! Ingesting an output or error file: every line matched to its waiting request by
//! `custom_id`, its answer read by the backend's adapter as a live answer is read, judged by
//! the cascade's own judgement and stored by the single-writer path, in chunks whose
//! transactions also mark their requests ingested. A line whose request is not waiting
//! (unknown, or stored by an earlier collect) is passed over, so ingesting twice stores
//! nothing twice and an ingest that died half-way resumes where its last commit ended.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read as _};

use anyhow::{Context, Result};
use enrich_adapter_openai::BatchApi;
use enrich_backends::{Answered, BackendAdapter as _, BackendError, FailureKind};
use enrich_db::{Db, SpanOutcome};
use enrich_pipeline::{BatchPrep, Pipeline, SpanStatus};
use serde::Serialize;

use super::build::{batch_api, now_ms};
use super::lines::OutputLine;

/// Outcomes stored per transaction.
const CHUNK: usize = 256;

/// The longest line read: an answer is a few kilobytes, and a line is held in memory whole.
const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// What an ingest stored.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Ingested {
    /// Answers stored as enrichments.
    pub(crate) enriched: u64,
    /// Answers that failed validation or the quality gate, or requests the engine failed for
    /// the span's own reasons: attempts logged, failed runs in the ledger.
    pub(crate) failed: u64,
    /// Empty fallback enrichments stored (`on_failure = "fallback_to_empty"`).
    pub(crate) fell_back: u64,
    /// Requests the engine failed for its own reasons (5xx, rate limits): attempts logged,
    /// spans pending again.
    pub(crate) unavailable: u64,
    /// Requests that never ran (expired, cancelled) or whose span is gone: pending again.
    pub(crate) returned: u64,
    /// Lines matching no waiting request: stored before, or not enrich's.
    pub(crate) passed_over: u64,
}

impl Ingested {
    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: Self) {
        self.enriched += other.enriched;
        self.failed += other.failed;
        self.fell_back += other.fell_back;
        self.unavailable += other.unavailable;
        self.returned += other.returned;
        self.passed_over += other.passed_over;
    }
}

/// The batch backends' APIs, built once per ingest.
#[derive(Default)]
pub(crate) struct Apis(BTreeMap<(String, String), BatchApi>);

impl Apis {
    fn get(&mut self, pipeline: &Pipeline, chain: &str, backend: &str) -> Result<&BatchApi> {
        let key = (chain.to_owned(), backend.to_owned());
        if !self.0.contains_key(&key) {
            let spec = pipeline
                .chain_backends(chain)
                .and_then(|specs| specs.into_iter().find(|s| s.name == backend))
                .ok_or_else(|| {
                    crate::exit::usage(format!(
                        "the batch was sent to backend '{backend}' of chain '{chain}', which the \
                         configuration no longer has; restore it to collect the batch, or \
                         cancel the batch"
                    ))
                })?;
            self.0.insert(key.clone(), batch_api(spec)?);
        }
        Ok(&self.0[&key])
    }
}

/// Ingests the lines of `reader` (an output or error file) into the requests waiting in batch
/// `batch` (or, with `None`, in any open batch of `engine`).
pub(crate) fn ingest(
    pipeline: &Pipeline,
    db: &mut Db,
    apis: &mut Apis,
    reader: impl BufRead,
    batch: Option<i64>,
    engine: &str,
    source: &str,
) -> Result<Ingested> {
    let mut counts = Ingested::default();
    let mut outcomes: Vec<SpanOutcome> = Vec::with_capacity(CHUNK);
    let mut returns: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    // A line repeated in one file is the same answer: stored once.
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    let mut reader = reader;
    let mut line = String::new();
    for number in 0_u64.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_line(&mut line)
            .with_context(|| format!("cannot read line {} of {source}", number + 1))?;
        if read == 0 {
            break;
        }
        if read as u64 > MAX_LINE_BYTES {
            return Err(crate::exit::usage(format!(
                "line {} of {source} is longer than {MAX_LINE_BYTES} bytes; no answer to an \
                 enrichment request is that long, so the file is not a batch engine's output",
                number + 1
            )));
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed: OutputLine = serde_json::from_str(&line).map_err(|err| {
            crate::exit::usage(format!(
                "line {} of {source} is not a batch output line ({err}); a batch engine writes \
                 one JSON object per line with `custom_id` and `response` or `error`",
                number + 1
            ))
        })?;
        let Some(sent) = db
            .sent_request(&parsed.custom_id, batch, engine)
            .context("cannot look up a batch request")?
        else {
            counts.passed_over += 1;
            continue;
        };
        if !seen.insert((sent.batch_id, parsed.custom_id.clone())) {
            counts.passed_over += 1;
            continue;
        }
        let never_ran = parsed.error.as_ref().is_some_and(|e| e.never_ran());
        let span = if never_ran {
            None
        } else {
            db.span_by_hash(&sent.span_hash)
                .context("cannot read a batch request's span")?
        };
        let Some(span) = span else {
            returns
                .entry(sent.batch_id)
                .or_default()
                .push(parsed.custom_id);
            counts.returned += 1;
            continue;
        };
        let outcome = match pipeline.prepare_batch_span(span) {
            BatchPrep::Ready(prepared) => {
                let api = apis.get(pipeline, &sent.chain, &sent.backend)?;
                let generated = match (&parsed.response, &parsed.error) {
                    (Some(response), _) => {
                        let body = serde_json::to_vec(&response.body)
                            .context("cannot re-encode an answer")?;
                        api.adapter()
                            .read_answer(response.status_code, &body, &prepared.request)
                    }
                    (None, Some(error)) => Err(line_error(error)),
                    (None, None) => Err(BackendError::new(
                        FailureKind::ServerError,
                        "the batch engine's line has neither a response nor an error",
                    )),
                };
                let spec = api.adapter().spec();
                let answered = Answered {
                    backend: spec,
                    host: api.adapter().describe_host(),
                    attempt: 1,
                    started_at_ms: now_ms(),
                    duration_ms: 0,
                };
                let (outcome, status) =
                    pipeline.batch_outcome(&prepared, sent.run_id, &answered, generated);
                match status {
                    SpanStatus::Enriched => counts.enriched += 1,
                    SpanStatus::FellBack => counts.fell_back += 1,
                    SpanStatus::Unavailable => counts.unavailable += 1,
                    _ => counts.failed += 1,
                }
                outcome
            }
            BatchPrep::NotSent {
                span,
                kind,
                message,
            } => {
                counts.failed += 1;
                Pipeline::not_sent_outcome(sent.run_id, &span, kind, message)
            }
        };
        outcomes.push(outcome);
        if outcomes.len() >= CHUNK {
            flush(db, &mut outcomes, &mut returns)?;
        }
    }
    flush(db, &mut outcomes, &mut returns)?;
    Ok(counts)
}

/// The failure a line's `error` stands for when the request got no HTTP answer.
fn line_error(error: &super::lines::LineError) -> BackendError {
    let kind = match error.code.as_deref() {
        Some("request_timeout") => FailureKind::Timeout,
        _ => FailureKind::ServerError,
    };
    BackendError::new(
        kind,
        format!(
            "the batch engine failed the request ({}: {})",
            error.code.as_deref().unwrap_or("no code"),
            error.message.as_deref().unwrap_or("no message")
        ),
    )
}

/// Stores the outcomes gathered (their requests marked ingested in the same transaction) and
/// returns the requests that go back to pending.
fn flush(
    db: &mut Db,
    outcomes: &mut Vec<SpanOutcome>,
    returns: &mut BTreeMap<i64, Vec<String>>,
) -> Result<()> {
    if !outcomes.is_empty() {
        db.write_batch(outcomes)
            .context("cannot store a batch's answers")?;
        outcomes.clear();
    }
    for (batch, ids) in std::mem::take(returns) {
        db.return_requests(batch, &ids)
            .context("cannot return a batch's unanswered requests to pending")?;
    }
    Ok(())
}
