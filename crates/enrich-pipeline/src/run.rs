//! One run: the scheduler that pages through pending spans, the per-span work, and the
//! bookkeeping of batches and counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use enrich_backends::{
    AttemptObserver, AttemptOutcome, AttemptRecord, Cascade, CascadeSuccess, Decision,
    GenerateRequest, SpanContext, ValidationContext, enrichment_v1_schema_for_lines,
};
use enrich_config::OnFailure;
use enrich_db::{self as db, PendingSpan, RunId};
use enrich_router::RouteDecision;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::{RunControl, StopLevel};
use crate::error::PipelineError;
use crate::events::{Event, EventSink, now_ms};
use crate::pipeline::Inner;
use crate::prompt::PromptSpan;
use crate::result::{RunEnd, RunSummary, SpanCounts, SpanResult, SpanStatus};
use crate::writer::{WriteTotals, Writer, WriterHandle, panic_message};

/// The failure kind recorded in the ledger for a span whose source cannot be read (missing
/// file, a path leaving the repo, a byte range beyond the file's end).
pub const SOURCE_UNREADABLE: &str = "source_unreadable";

/// The failure kind recorded when no chain can serve a span. The builder checks that the
/// default chain can, so this only happens with a router given to
/// [`PipelineBuilder::router`](crate::PipelineBuilder::router) that was built from another
/// configuration than the pipeline's.
pub const NO_ROUTE: &str = "no_route";

/// What every span task of one run shares.
struct RunCtx {
    inner: Arc<Inner>,
    run_id: RunId,
    cascade: Cascade,
    abort: CancellationToken,
    writer: WriterHandle,
}

/// Emits `attempt_finished` for every attempt the cascade makes.
struct AttemptEvents {
    sink: Arc<dyn EventSink>,
    run_id: RunId,
}

impl AttemptObserver for AttemptEvents {
    fn on_attempt(&self, span: &SpanContext, record: &AttemptRecord, next: Option<Decision>) {
        self.sink.on_event(&Event::AttemptFinished {
            at_ms: now_ms(),
            run_id: self.run_id,
            span_hash: span.span_hash.to_string(),
            attempt: record.clone(),
            next: next.map(Into::into),
        });
    }
}

/// One page of pending spans and how its spans ended.
#[derive(Default)]
struct BatchProgress {
    /// Spans of the page not yet handed out.
    open: bool,
    /// Spans handed out and not finished.
    outstanding: u64,
    counts: SpanCounts,
}

impl BatchProgress {
    fn spans(&self) -> u64 {
        self.counts.attempted() + self.counts.skipped + self.counts.cancelled
    }
}

/// The scheduler's state.
struct Scheduler<'a> {
    inner: &'a Arc<Inner>,
    run_id: RunId,
    reader: db::Db,
    cursor: i64,
    page: VecDeque<PendingSpan>,
    page_batch: u64,
    exhausted: bool,
    /// Spans of a page were dropped when the run stopped taking spans.
    left_behind: bool,
    taken: u64,
    counts: SpanCounts,
    batches: BTreeMap<u64, BatchProgress>,
    batches_done: u64,
}

impl Scheduler<'_> {
    /// The next span to hand out, reading a page when the current one is used up; `None` when
    /// nothing is pending behind the cursor.
    fn next_span(&mut self) -> Result<Option<(PendingSpan, u64)>, PipelineError> {
        if self.page.is_empty() {
            if self.exhausted {
                return Ok(None);
            }
            let page = self
                .reader
                .pending_spans(self.cursor, self.inner.settings.batch_size)
                .map_err(PipelineError::db("read pending spans"))?;
            let Some(last) = page.last() else {
                self.exhausted = true;
                return Ok(None);
            };
            self.cursor = last.id;
            self.page_batch += 1;
            self.batches.insert(
                self.page_batch,
                BatchProgress {
                    open: true,
                    ..BatchProgress::default()
                },
            );
            self.page = page.into();
        }
        Ok(self.page.pop_front().map(|span| (span, self.page_batch)))
    }

    /// Called once a span of `batch` is handed out or skipped: the batch is complete once its
    /// page is used up and its spans are done.
    fn handed_out(&mut self, batch: u64) {
        if self.page.is_empty() {
            self.close_batch(batch);
        }
    }

    /// Drops the rest of the current page (the run stops taking spans).
    fn drop_page(&mut self) {
        if !self.page.is_empty() {
            self.page.clear();
            self.left_behind = true;
            self.close_batch(self.page_batch);
        }
    }

    fn close_batch(&mut self, batch: u64) {
        if let Some(progress) = self.batches.get_mut(&batch) {
            progress.open = false;
        }
        self.emit_if_done(batch);
    }

    fn record(&mut self, batch: u64, status: SpanStatus, dispatched: bool) {
        self.counts.add(status);
        if let Some(progress) = self.batches.get_mut(&batch) {
            progress.counts.add(status);
            if dispatched {
                progress.outstanding -= 1;
            }
        }
        self.emit_if_done(batch);
    }

    fn emit_if_done(&mut self, batch: u64) {
        let done = self
            .batches
            .get(&batch)
            .is_some_and(|p| !p.open && p.outstanding == 0);
        if !done {
            return;
        }
        let Some(progress) = self.batches.remove(&batch) else {
            return;
        };
        if progress.spans() == 0 {
            return;
        }
        self.batches_done += 1;
        let c = progress.counts;
        self.inner.events.on_event(&Event::BatchFinished {
            at_ms: now_ms(),
            run_id: self.run_id,
            batch,
            spans: progress.spans(),
            succeeded: c.succeeded,
            fell_back: c.fell_back,
            failed: c.failed,
            skipped: c.skipped,
            cancelled: c.cancelled,
        });
    }

    /// Whether spans remain pending that this run did not take.
    fn more_pending(&self) -> Result<bool, PipelineError> {
        if self.left_behind || !self.page.is_empty() {
            return Ok(true);
        }
        if self.exhausted {
            return Ok(false);
        }
        let next = self
            .reader
            .pending_spans(self.cursor, 1)
            .map_err(PipelineError::db("read pending spans"))?;
        Ok(!next.is_empty())
    }
}

/// One run; `on_result` sees every span's result as it finishes.
pub(crate) async fn execute(
    inner: &Arc<Inner>,
    limit: Option<u64>,
    control: &RunControl,
    mut on_result: impl FnMut(SpanResult),
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let settings = &inner.settings;
    let (db, run_id, reader, total_pending) = start(inner)?;
    let writer = Writer::spawn(db, settings.commit_every, settings.commit_interval)?;
    let cascade = Cascade::new(settings.cascade.clone()).with_observer(Arc::new(AttemptEvents {
        sink: Arc::clone(&inner.events),
        run_id,
    }));
    let ctx = Arc::new(RunCtx {
        inner: Arc::clone(inner),
        run_id,
        cascade,
        abort: control.abort_token().clone(),
        writer: writer.handle(),
    });
    inner.events.on_event(&Event::RunStarted {
        at_ms: now_ms(),
        run_id,
        total_pending,
        concurrency: settings.concurrency,
        batch_size: settings.batch_size,
        limit,
        config_fingerprint: settings.config_fingerprint.clone(),
    });

    let mut sched = Scheduler::new(inner, run_id, reader);
    let mut failure = sched
        .drive(&ctx, &writer, control, limit, &mut on_result)
        .await;
    drop(ctx);

    // Everything queued is committed before the run is recorded as over.
    let (db, totals) = match writer.finish().await {
        Ok(output) => {
            if let Some(error) = output.error {
                failure = Some(PipelineError::Write {
                    source: Box::new(error),
                });
            }
            (Some(output.db), output.totals)
        }
        Err(panicked) => {
            failure.get_or_insert(panicked);
            (None, WriteTotals::default())
        }
    };
    let end = match (&failure, sched.end(control)) {
        (Some(_), _) => RunEnd::Failed,
        (None, Ok(end)) => end,
        (None, Err(error)) => {
            failure = Some(error);
            RunEnd::Failed
        }
    };
    let counts = sched.counts;
    if let Err(error) = record_end(inner, db, run_id, counts, end) {
        tracing::error!(run = run_id.0, "cannot record the end of the run: {error}");
        failure.get_or_insert(PipelineError::db("record the end of the run")(error));
    }

    let summary = RunSummary {
        run_id,
        end,
        total_pending,
        attempted: counts.attempted(),
        succeeded: counts.succeeded,
        fell_back: counts.fell_back,
        failed: counts.failed,
        skipped: counts.skipped,
        cancelled: counts.cancelled,
        dead_lettered: totals.dead_lettered,
        vanished: totals.vanished,
        batches: sched.batches_done,
        duration: started.elapsed(),
    };
    inner.events.on_event(&Event::RunFinished {
        at_ms: now_ms(),
        run_id,
        status: end.status(),
        end,
        total_pending,
        attempted: summary.attempted,
        succeeded: summary.succeeded,
        fell_back: summary.fell_back,
        failed: summary.failed,
        skipped: summary.skipped,
        cancelled: summary.cancelled,
        dead_lettered: summary.dead_lettered,
        duration_ms: millis(summary.duration),
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(summary),
    }
}

/// Records the run's start and opens the reader: the write connection, the run's id, the read
/// connection and the number of pending spans.
fn start(inner: &Inner) -> Result<(db::Db, RunId, db::Db, u64), PipelineError> {
    let mut db = inner.take_writer_db()?;
    let run_id = match db.start_run(&inner.settings.config_fingerprint) {
        Ok(id) => id,
        Err(error) => {
            inner.return_writer_db(db);
            return Err(PipelineError::db("record the start of the run")(error));
        }
    };
    let counted = inner.open_reader().and_then(|reader| {
        let total = reader
            .pending_count()
            .map_err(PipelineError::db("count pending spans"))?;
        Ok((reader, total))
    });
    match counted {
        Ok((reader, total)) => Ok((db, run_id, reader, total)),
        Err(error) => {
            // Best effort: the run row says it failed; the error says why.
            let _ = db.finish_run(run_id, db::RunCounts::default(), db::RunStatus::Failed);
            inner.return_writer_db(db);
            Err(error)
        }
    }
}

/// Stores the run's counts and status, on the writer's connection, or on a new one when the
/// writer thread took its connection down with it.
fn record_end(
    inner: &Inner,
    db: Option<db::Db>,
    run_id: RunId,
    counts: SpanCounts,
    end: RunEnd,
) -> Result<(), db::DbError> {
    let mut db = match db {
        Some(db) => db,
        None => match inner.take_writer_db() {
            Ok(db) => db,
            Err(error) => {
                tracing::error!(run = run_id.0, "cannot record the end of the run: {error}");
                return Ok(());
            }
        },
    };
    let recorded = db.finish_run(run_id, counts.to_db(), end.status());
    inner.return_writer_db(db);
    recorded
}

impl<'a> Scheduler<'a> {
    fn new(inner: &'a Arc<Inner>, run_id: RunId, reader: db::Db) -> Self {
        Self {
            inner,
            run_id,
            reader,
            cursor: 0,
            page: VecDeque::new(),
            page_batch: 0,
            exhausted: false,
            left_behind: false,
            taken: 0,
            counts: SpanCounts::default(),
            batches: BTreeMap::new(),
            batches_done: 0,
        }
    }

    /// Hands spans out to tasks while slots are free and the run may go on, and collects their
    /// results, until nothing is in flight and nothing more may be taken. Returns what stopped
    /// the run early, if anything did.
    async fn drive(
        &mut self,
        ctx: &Arc<RunCtx>,
        writer: &Writer,
        control: &RunControl,
        limit: Option<u64>,
        on_result: &mut impl FnMut(SpanResult),
    ) -> Option<PipelineError> {
        let inner = self.inner;
        let settings = &inner.settings;
        let mut tasks: JoinSet<SpanResult> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, (String, u64)> = HashMap::new();
        let mut failure: Option<PipelineError> = None;
        loop {
            while tasks.len() < settings.concurrency {
                let may_take = failure.is_none()
                    && !control.is_stopping()
                    && !writer.has_failed()
                    && limit.is_none_or(|limit| self.taken < limit);
                if !may_take {
                    self.drop_page();
                    break;
                }
                let (span, batch) = match self.next_span() {
                    Ok(Some(next)) => next,
                    Ok(None) => break,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                };
                if let Some(age) = inner.in_cooldown(&span) {
                    let result = skipped(&span, age, settings.cooldown.as_secs());
                    emit_finished(inner, self.run_id, batch, &result);
                    self.record(batch, SpanStatus::Skipped, false);
                    self.handed_out(batch);
                    on_result(result);
                    continue;
                }
                self.taken += 1;
                if let Some(progress) = self.batches.get_mut(&batch) {
                    progress.outstanding += 1;
                }
                self.handed_out(batch);
                let span_hash = span.span_hash.clone();
                let ctx = Arc::clone(ctx);
                let task = tasks.spawn(async move { process_span(&ctx, span, batch).await });
                in_flight.insert(task.id(), (span_hash, batch));
            }

            let Some(joined) = tasks.join_next_with_id().await else {
                return failure;
            };
            match joined {
                Ok((id, result)) => {
                    let batch = in_flight.remove(&id).map_or(0, |(_, batch)| batch);
                    self.record(batch, result.status, true);
                    on_result(result);
                }
                Err(join_error) => {
                    let (span_hash, batch) = in_flight
                        .remove(&join_error.id())
                        .unwrap_or_else(|| (String::from("(unknown)"), 0));
                    let message = match join_error.try_into_panic() {
                        Ok(panic) => panic_message(&*panic),
                        Err(join_error) => join_error.to_string(),
                    };
                    tracing::error!(span = %span_hash, "processing a span panicked: {message}");
                    // Nothing was written for it; it stays pending.
                    if let Some(progress) = self.batches.get_mut(&batch) {
                        progress.outstanding -= 1;
                    }
                    self.emit_if_done(batch);
                    failure.get_or_insert(PipelineError::SpanPanicked { span_hash, message });
                }
            }
        }
    }

    /// Why the run ended, once nothing is in flight (for a run no error stopped).
    fn end(&self, control: &RunControl) -> Result<RunEnd, PipelineError> {
        Ok(
            if self.exhausted && self.page.is_empty() && self.counts.cancelled == 0 {
                RunEnd::Exhausted
            } else if control.level() == StopLevel::Abort {
                RunEnd::Aborted
            } else if control.level() == StopLevel::Stop {
                RunEnd::Stopped
            } else if self.more_pending()? {
                RunEnd::LimitReached
            } else {
                RunEnd::Exhausted
            },
        )
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The result of a span left alone because its file changed within the cooldown.
fn skipped(span: &PendingSpan, age: f64, cooldown_secs: u64) -> SpanResult {
    SpanResult {
        span_hash: span.span_hash.clone(),
        path: span.file_path.clone(),
        line_start: span.start_line,
        line_end: span.end_line,
        status: SpanStatus::Skipped,
        enrichment: None,
        attempts: Vec::new(),
        route: None,
        duration: std::time::Duration::ZERO,
        error: Some(format!(
            "its file changed {:.0}s ago, within the cooldown of {cooldown_secs}s; left for a \
             later run",
            age.max(0.0)
        )),
    }
}

fn emit_finished(inner: &Inner, run_id: RunId, batch: u64, result: &SpanResult) {
    let stored = result.attempts.iter().rev().find(|a| a.succeeded());
    inner.events.on_event(&Event::SpanFinished {
        at_ms: now_ms(),
        run_id,
        batch,
        span_hash: result.span_hash.clone(),
        path: result.path.clone(),
        status: result.status,
        backend: stored.map(|a| a.backend.clone()),
        model: stored.map(|a| a.model.clone()),
        attempts: u32::try_from(result.attempts.len()).unwrap_or(u32::MAX),
        duration_ms: millis(result.duration),
        message: result.error.clone(),
    });
}

/// What becomes of a span once its backends are done with it.
struct Ending {
    status: SpanStatus,
    enrichment: Option<enrich_backends::Enrichment>,
    attempts: Vec<AttemptRecord>,
    error: Option<String>,
    /// What to store; `None` writes nothing (a cancelled span).
    stored: Option<db::SpanResult>,
}

impl Ending {
    fn failed(kind: &str, message: String, attempts: Vec<AttemptRecord>) -> Self {
        Self {
            status: SpanStatus::Failed,
            enrichment: None,
            attempts,
            stored: Some(db::SpanResult::Failed {
                failure_kind: kind.to_owned(),
                message: message.clone(),
            }),
            error: Some(message),
        }
    }
}

/// Routes, prompts, runs the cascade for, and queues the outcome of one span.
async fn process_span(ctx: &RunCtx, span: PendingSpan, batch: u64) -> SpanResult {
    let started = Instant::now();
    let inner = &ctx.inner;
    let settings = &inner.settings;
    let view = Inner::slice_view(&span);
    let route = inner
        .router
        .choose_chain(&view, settings.chain_override.as_deref());
    let source = span.read_source(&settings.repo_root);
    let prompt = source
        .as_ref()
        .ok()
        .map(|source| inner.prompts.build(&PromptSpan::of(&span), source));

    let (chain, backends) = match &route {
        Ok(decision) => (
            decision.chain_name.to_string(),
            decision.backends.iter().map(|b| b.name.clone()).collect(),
        ),
        Err(_) => (String::new(), Vec::new()),
    };
    inner.events.on_event(&Event::SpanStarted {
        at_ms: now_ms(),
        run_id: ctx.run_id,
        batch,
        span_hash: span.span_hash.clone(),
        path: span.file_path.clone(),
        line_start: span.start_line,
        line_end: span.end_line,
        chain,
        backends,
        estimated_tokens: prompt.as_ref().map(|p| p.estimated_tokens),
    });

    let ending = match (&route, source, prompt) {
        (Err(error), _, _) => Ending::failed(NO_ROUTE, error.to_string(), Vec::new()),
        (Ok(_), Err(error), _) => Ending::failed(SOURCE_UNREADABLE, error.to_string(), Vec::new()),
        (Ok(decision), Ok(_), Some(prompt)) => enrich(ctx, &span, decision, prompt.text).await,
        // A prompt is built whenever the source was read.
        (Ok(_), Ok(_), None) => Ending::failed(
            SOURCE_UNREADABLE,
            "no prompt could be built for the span".to_owned(),
            Vec::new(),
        ),
    };

    let mut error = ending.error;
    if let Some(result) = ending.stored {
        let outcome = db::SpanOutcome {
            span_hash: span.span_hash.clone(),
            run_id: ctx.run_id,
            attempts: ending.attempts.iter().map(to_db_attempt).collect(),
            result,
        };
        if !ctx.writer.send(outcome).await {
            let note = "not stored: the database writer stopped";
            error = Some(match error {
                Some(e) => format!("{e}; {note}"),
                None => note.to_owned(),
            });
        }
    }

    let result = SpanResult {
        span_hash: span.span_hash,
        path: span.file_path,
        line_start: span.start_line,
        line_end: span.end_line,
        status: ending.status,
        enrichment: ending.enrichment,
        attempts: ending.attempts,
        route: route.ok(),
        duration: started.elapsed(),
        error,
    };
    emit_finished(inner, ctx.run_id, batch, &result);
    result
}

/// Runs the cascade for a span and decides what to store.
async fn enrich(
    ctx: &RunCtx,
    span: &PendingSpan,
    decision: &RouteDecision,
    prompt: String,
) -> Ending {
    let settings = &ctx.inner.settings;
    let Some(adapters) = ctx.inner.chains.get(&*decision.chain_name) else {
        return Ending::failed(
            NO_ROUTE,
            format!("no adapters were built for chain '{}'", decision.chain_name),
            Vec::new(),
        );
    };
    let span_context = SpanContext::new(
        span.span_hash.as_str(),
        span.file_path.as_str(),
        span.start_line,
        span.end_line,
    );
    let validation = ValidationContext::for_span(&span_context, settings.enforce_latin1);
    let schema = enrichment_v1_schema_for_lines(span.start_line, span.end_line);
    let request = GenerateRequest::new(prompt, span_context).with_schema(schema);
    match ctx
        .cascade
        .run(adapters, 0, &request, &validation, &ctx.abort)
        .await
    {
        Ok(success) => {
            let stored = to_db_enrichment(&success);
            Ending {
                status: SpanStatus::Enriched,
                enrichment: Some(success.enrichment),
                attempts: success.attempts,
                error: None,
                stored: Some(db::SpanResult::Enriched(Box::new(stored))),
            }
        }
        Err(failure) if failure.is_cancelled() => Ending {
            status: SpanStatus::Cancelled,
            enrichment: None,
            error: Some(failure.to_string()),
            attempts: failure.attempts,
            stored: None,
        },
        Err(failure) => match settings.on_failure {
            OnFailure::FallbackToEmpty => Ending {
                status: SpanStatus::FellBack,
                enrichment: None,
                error: Some(format!(
                    "{failure}; stored an empty enrichment (on_failure = fallback_to_empty)"
                )),
                attempts: failure.attempts,
                stored: Some(db::SpanResult::Enriched(Box::new(
                    db::Enrichment::fallback_empty(),
                ))),
            },
            OnFailure::Error => {
                let kind = failure.kind().as_str();
                let message = failure.to_string();
                Ending::failed(kind, message, failure.attempts)
            }
        },
    }
}

fn to_db_attempt(record: &AttemptRecord) -> db::Attempt {
    db::Attempt {
        attempt: record.attempt,
        backend: record.backend.clone(),
        provider: record.provider.clone(),
        model: record.model.clone(),
        host: record.host.clone(),
        outcome: match record.outcome {
            AttemptOutcome::Success => db::AttemptOutcome::Success,
            AttemptOutcome::Failure => db::AttemptOutcome::Failure,
        },
        failure_kind: record.failure_kind.map(|k| k.as_str().to_owned()),
        message: record.message.clone(),
        started_at_ms: record.started_at_ms,
        duration_ms: record.duration_ms,
        prompt_eval_count: record.prompt_eval_count,
        eval_count: record.eval_count,
        tokens_per_second: record.tokens_per_second,
    }
}

/// The `enrichments` row for a validated enrichment, with the answering backend's metrics.
fn to_db_enrichment(success: &CascadeSuccess) -> db::Enrichment {
    let e = &success.enrichment;
    let metrics = &success.generation.metrics;
    let last = success.attempts.last();
    let model = if metrics.model.is_empty() {
        last.map(|a| a.model.clone()).unwrap_or_default()
    } else {
        metrics.model.clone()
    };
    let host = if metrics.host.is_empty() {
        last.map(|a| a.host.clone())
    } else {
        Some(metrics.host.clone())
    };
    db::Enrichment {
        summary: e.summary_120w.clone(),
        inputs: e.inputs.clone(),
        outputs: e.outputs.clone(),
        side_effects: e.side_effects.clone(),
        pitfalls: e.pitfalls.clone(),
        usage_snippet: e.usage_snippet.clone(),
        evidence: e
            .evidence
            .iter()
            .map(|ev| db::Evidence {
                field: ev.field.clone(),
                lines: ev.lines,
            })
            .collect(),
        tags: Vec::new(),
        model,
        schema_ver: db::ENRICHMENT_SCHEMA_VERSION.to_owned(),
        content_type: None,
        content_language: None,
        content_type_confidence: None,
        content_type_source: None,
        metrics: db::EnrichmentMetrics {
            tokens_per_second: metrics.derived_tokens_per_second(),
            eval_count: metrics.eval_count,
            eval_duration_ns: metrics.eval_duration_ns,
            prompt_eval_count: metrics.prompt_eval_count,
            total_duration_ns: metrics.total_duration_ns,
            backend_host: host,
        },
    }
}
