//! [`Pipeline`] and its builder: the parts of a run, assembled and checked once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use enrich_backends::{
    AdapterRegistry, BackendAdapter, HostPool, HostPoolPolicy, InFlightLimit, RateLimit,
    RateLimited,
};
use enrich_config::{BackendSpec, EnrichmentConfig, select_chain};
use enrich_db::{
    BackendUsage, Db, DbError, OpenMode, OpenOptions, PendingSpan, SourceReader, SpanSource,
};
use enrich_router::{Router, SliceView};
use enrich_types::SpanIdentity;

use crate::control::RunControl;
use crate::error::PipelineError;
use crate::events::{EventSink, FanOut};
use crate::prompt::{Prompt, PromptBuilder, PromptSpan};
use crate::result::{BatchResult, CostEstimate, Plan, PlannedSpan, RunOutcome, RunSummary};
use crate::run;
use crate::run::queue::WorkQueue;
use crate::secrets::{Guarded, SecretGuard};
use crate::settings::{PipelineSettings, max_in_flight};

/// The adapters of one chain, in the order the cascade tries them.
pub(crate) type ChainAdapters = Arc<[Arc<dyn BackendAdapter>]>;

/// Runs pending spans through routing, the backend cascade and the single DB writer.
///
/// Built once ([`Pipeline::builder`]); it owns the router, one adapter per distinct backend
/// (built once, shared by every span and every run, each behind its `max_in_flight` cap), the
/// prompt builder and the settings. Each [`run`](Self::run) or
/// [`process_batch`](Self::process_batch) is one run in the `runs` table, with its own cascade
/// state (circuit breakers, backends skipped for the run). Cheap to share: `Pipeline` is
/// `Send + Sync`, and runs on one pipeline may even overlap (each uses its own connections).
pub struct Pipeline {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chains: Vec<&String> = self.inner.chains.keys().collect();
        chains.sort();
        f.debug_struct("Pipeline")
            .field("settings", &self.inner.settings)
            .field("chains", &chains)
            .finish_non_exhaustive()
    }
}

/// What every run of a pipeline shares.
pub(crate) struct Inner {
    pub(crate) settings: PipelineSettings,
    pub(crate) router: Router,
    pub(crate) chains: HashMap<String, ChainAdapters>,
    pub(crate) prompts: PromptBuilder,
    pub(crate) events: Arc<dyn EventSink>,
    /// The write connection between runs (given to the builder, or kept from the last run).
    pub(crate) writer_db: Mutex<Option<Db>>,
    /// The host pools among the backends, for their per-host circuits.
    pub(crate) pools: Vec<Arc<HostPool>>,
    /// Reads each span's source under `settings.repo_root`, resolved once.
    pub(crate) sources: SourceReader,
    /// Scans each span's source before its prompt is built.
    pub(crate) secrets: SecretGuard,
}

impl Inner {
    /// The write connection: the one kept from before, or a new one.
    pub(crate) fn take_writer_db(&self) -> Result<Db, PipelineError> {
        let kept = self
            .writer_db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut db = match kept {
            Some(db) => db,
            None => {
                let options = OpenOptions {
                    mode: OpenMode::Existing,
                    max_failures_per_span: self.settings.max_failures_per_span,
                    ..OpenOptions::default()
                };
                Db::open_with(&self.settings.db_path, &options)
                    .map_err(PipelineError::db("open the index database"))?
            }
        };
        db.set_max_failures_per_span(self.settings.max_failures_per_span);
        db.set_busy_timeout(self.settings.busy_timeout)
            .map_err(PipelineError::db("set the busy timeout"))?;
        Ok(db)
    }

    /// Keeps the write connection for the next run.
    pub(crate) fn return_writer_db(&self, db: Db) {
        *self
            .writer_db
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(db);
    }

    /// A read-only connection for paging through pending spans.
    pub(crate) fn open_reader(&self) -> Result<Db, PipelineError> {
        Db::open_read_only(&self.settings.db_path)
            .map_err(PipelineError::db("open the index database for reading"))
    }

    /// The part of a span's source its prompt can use: never more than
    /// [`PromptBuilder::source_limit`] bytes, however long the span is.
    pub(crate) fn read_source(&self, span: &PendingSpan) -> Result<SpanSource, DbError> {
        self.sources.read_prefix(span, self.prompts.source_limit())
    }

    /// The prompt for `span` (whose identity is `identity`) from the text
    /// [`read_source`](Self::read_source) read (after the secrets guard), the whole span being
    /// `span_bytes` long.
    pub(crate) fn prompt(
        &self,
        span: &PendingSpan,
        identity: &SpanIdentity,
        text: &str,
        span_bytes: u64,
    ) -> Prompt {
        let span_bytes = usize::try_from(span_bytes).unwrap_or(usize::MAX);
        self.prompts
            .build_from_prefix(&PromptSpan::of(identity, span), text, span_bytes)
    }

    /// What the router sees of a span.
    pub(crate) fn slice_view<'a>(span: &'a PendingSpan) -> SliceView<'a> {
        let bytes = span.byte_end.saturating_sub(span.byte_start);
        SliceView {
            span: None,
            slice_type: span.slice_type.as_deref(),
            slice_language: span.slice_language.as_deref(),
            classifier_confidence: span.classifier_confidence,
            approx_tokens: u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX),
            importance: None,
        }
    }

    /// How long ago the span's file changed, when that is within the cooldown.
    pub(crate) fn in_cooldown(&self, span: &PendingSpan) -> Option<f64> {
        let cooldown = self.settings.cooldown.as_secs_f64();
        if cooldown <= 0.0 {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let age = now - span.file_mtime;
        (age < cooldown).then_some(age)
    }
}

/// Assembles a [`Pipeline`]; see [`Pipeline::builder`].
pub struct PipelineBuilder<'a> {
    config: &'a EnrichmentConfig,
    settings: PipelineSettings,
    router: Option<Router>,
    prompts: Option<PromptBuilder>,
    events: FanOut,
    db: Option<Db>,
}

impl std::fmt::Debug for PipelineBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("settings", &self.settings)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<'a> PipelineBuilder<'a> {
    /// Uses this router instead of [`Router::new`] on the config (which reads
    /// `LLMC_ENRICH_DISABLE_ROUTING`). It must be built from the same config.
    #[must_use]
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// Uses this prompt builder instead of one made from `[enrichment.prompt]`.
    #[must_use]
    pub fn prompt_builder(mut self, prompts: PromptBuilder) -> Self {
        self.prompts = Some(prompts);
        self
    }

    /// Adds an event sink; every sink gets every event, in the order they were added.
    #[must_use]
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events.push(sink);
        self
    }

    /// Uses an open connection as the first run's write connection (it is kept for later runs).
    /// Without one, each run opens `settings.db_path`, which must exist.
    #[must_use]
    pub fn db(mut self, db: Db) -> Self {
        self.db = Some(db);
        self
    }

    /// Checks the settings, the chain override and the prompt template, then builds one adapter
    /// per distinct backend the router can choose, through `registry` (the CLI registers every
    /// provider there), each behind its `max_in_flight` cap.
    ///
    /// # Errors
    ///
    /// [`PipelineError::InvalidSetting`], [`PipelineError::Chain`] (an override naming a
    /// missing or disabled chain), [`PipelineError::Route`] (the default chain cannot serve),
    /// [`PipelineError::PromptTemplate`], [`PipelineError::InvalidInFlightOption`], or
    /// [`PipelineError::Adapters`] (an unknown provider, a factory refusing its entry).
    pub fn build(self, registry: &AdapterRegistry) -> Result<Pipeline, PipelineError> {
        let Self {
            config,
            settings,
            router,
            prompts,
            events,
            db,
        } = self;
        settings.validate()?;
        let sources =
            SourceReader::new(&settings.repo_root).map_err(|_| PipelineError::InvalidSetting {
                key: "repo_root",
                value: settings.repo_root.display().to_string(),
                fix: "it cannot be resolved; pass the root of the indexed repository",
            })?;
        if let Some(chain) = &settings.chain_override {
            select_chain(config, chain).map_err(PipelineError::Chain)?;
        }
        let prompts = match prompts {
            Some(prompts) => prompts,
            None => PromptBuilder::new(&config.prompt)?,
        };
        let router = router.unwrap_or_else(|| Router::new(config));
        let probe = SliceView::default();
        router
            .choose_chain(&probe, settings.chain_override.as_deref())
            .map_err(PipelineError::Route)?;

        // Every chain the router can choose, with its backends after the tier filter.
        let mut chain_specs: Vec<(String, Vec<BackendSpec>)> = Vec::new();
        for name in config.chain_names() {
            let decision = router
                .choose_chain(&probe, Some(name))
                .map_err(PipelineError::Route)?;
            if &*decision.chain_name == name {
                chain_specs.push((name.to_owned(), decision.backends.to_vec()));
            }
        }
        let built = registry
            .build_all(chain_specs.iter().flat_map(|(_, specs)| specs))
            .map_err(PipelineError::Adapters)?;

        // One set of decorators per distinct adapter: build_all shares an adapter between
        // identical entries, and so do their caps, pools and limiters.
        let mut limited: Vec<(Arc<dyn BackendAdapter>, Arc<dyn BackendAdapter>)> = Vec::new();
        let mut pools = Vec::new();
        let mut built = built.into_iter();
        let mut chains = HashMap::new();
        for (name, specs) in chain_specs {
            let mut adapters: Vec<Arc<dyn BackendAdapter>> = Vec::with_capacity(specs.len());
            for _ in &specs {
                let Some(adapter) = built.next() else { break };
                let wrapped = match limited.iter().find(|(raw, _)| Arc::ptr_eq(raw, &adapter)) {
                    Some((_, wrapped)) => Arc::clone(wrapped),
                    None => {
                        let wrapped = decorate(registry, &adapter, &settings, &mut pools)?;
                        limited.push((adapter, Arc::clone(&wrapped)));
                        wrapped
                    }
                };
                adapters.push(wrapped);
            }
            chains.insert(name, ChainAdapters::from(adapters));
        }

        Ok(Pipeline {
            inner: Arc::new(Inner {
                secrets: SecretGuard::new(settings.secrets),
                settings,
                router,
                chains,
                prompts,
                events: Arc::new(events),
                writer_db: Mutex::new(db),
                pools,
                sources,
            }),
        })
    }
}

/// The tokens and cost of `spans`, and extrapolated to `total_pending` spans; output tokens per
/// span from `history` (the attempt log) when it has any.
fn estimate(spans: &[PlannedSpan], total_pending: u64, history: &[BackendUsage]) -> CostEstimate {
    let (attempts, output) = history.iter().fold((0, 0), |(attempts, output), usage| {
        (attempts + usage.attempts, output + usage.output_tokens)
    });
    let output_from_history = attempts > 0 && output > 0;
    let per_span = if output_from_history {
        output.div_ceil(attempts)
    } else {
        CostEstimate::ASSUMED_OUTPUT_TOKENS
    };
    let mut prompt_tokens = 0;
    let mut cost: Option<f64> = None;
    for span in spans {
        let prompt = span.estimated_tokens.map_or(0, u64::from);
        prompt_tokens += prompt;
        if let Some(price) = span.route.backends.first().and_then(|b| b.price) {
            *cost.get_or_insert(0.0) += price.cost(prompt, per_span);
        }
    }
    let planned = spans.len() as u64;
    let output_tokens = per_span * planned;
    let scale = if planned == 0 {
        0.0
    } else {
        total_pending as f64 / planned as f64
    };
    CostEstimate {
        prompt_tokens,
        output_tokens,
        output_tokens_per_span: per_span,
        output_from_history,
        cost,
        all_pending_tokens: ((prompt_tokens + output_tokens) as f64 * scale).round() as u64,
        all_pending_cost: cost.map(|c| c * scale),
    }
}

/// The decorators around one distinct backend, innermost first: its in-flight cap (one
/// [`InFlightLimit`] for a single host; a [`HostPool`] with a cap and a circuit breaker per host when
/// the entry lists several `urls`), then its rate limit when it sets one. Every decorator that
/// queues starts the backend's timeout only once the request is sent.
fn decorate(
    registry: &AdapterRegistry,
    adapter: &Arc<dyn BackendAdapter>,
    settings: &PipelineSettings,
    pools: &mut Vec<Arc<HostPool>>,
) -> Result<Arc<dyn BackendAdapter>, PipelineError> {
    let spec = adapter.spec();
    let cap = max_in_flight(spec)?;
    let capped: Arc<dyn BackendAdapter> = if spec.hosts().len() > 1 {
        // The adapter build_all made for the first host is dropped: the pool builds one per host.
        let pool = registry
            .build_pool(spec, HostPoolPolicy::from_cascade(&settings.cascade, cap))
            .map_err(PipelineError::Adapters)?;
        pools.push(Arc::clone(&pool));
        pool
    } else {
        Arc::new(InFlightLimit::new(Arc::clone(adapter), cap))
    };
    let limit = RateLimit::of(spec);
    Ok(if limit.is_unlimited() {
        capped
    } else {
        Arc::new(RateLimited::new(capped, limit))
    })
}

impl Pipeline {
    /// Starts assembling a pipeline for `config` with `settings` (usually
    /// [`PipelineSettings::from_config`] with the CLI's flags applied).
    pub fn builder(config: &EnrichmentConfig, settings: PipelineSettings) -> PipelineBuilder<'_> {
        PipelineBuilder {
            config,
            settings,
            router: None,
            prompts: None,
            events: FanOut::new(),
            db: None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &PipelineSettings {
        &self.inner.settings
    }

    /// The spans pending now (exact; about 0.3 s per million enrichments).
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when the index cannot be opened or read.
    pub fn pending_count(&self) -> Result<u64, PipelineError> {
        self.inner
            .open_reader()?
            .pending_count()
            .map_err(PipelineError::db("count pending spans"))
    }

    /// Runs until every span pending at the start was taken on, `settings.limit` spans were
    /// taken, or `control` stops it; one run in the `runs` table.
    ///
    /// Spans are claimed by keyset pages of `batch_size` as slots free up, in work order (see
    /// [`PipelineSettings::work_order`](crate::PipelineSettings::work_order)), so memory does not
    /// grow with the number of pending spans; each span is taken at most once per run (a span
    /// that fails stays pending for a later run), and never while another run holds it. Up to `concurrency` spans are in flight, and at
    /// most `max_in_flight` requests per backend. Outcomes are committed in batches by one
    /// writer thread; everything is committed before this returns.
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when the index cannot be opened or the run cannot be recorded;
    /// [`PipelineError::Write`] when storing results failed (the run stops taking spans, lets
    /// those in flight finish, and is recorded as failed); [`PipelineError::SpanPanicked`] and
    /// [`PipelineError::WriterPanicked`] for bugs.
    ///
    /// Dropping the future instead of stopping through `control` abandons the run: spans in
    /// flight are dropped, what was committed stays, and the `runs` row keeps status `running`.
    ///
    /// The run goes on as a task of the current tokio runtime (which it needs anyway), so its
    /// scheduler is woken like any other task rather than through whatever thread awaits this.
    pub async fn run(&self, control: &RunControl) -> Result<RunSummary, PipelineError> {
        self.run_to_end(control).await.into_result()
    }

    /// As [`run`](Self::run), but a run that an error stopped still returns its summary
    /// (`end = Failed`, counts of what it stored) along with the error, so it can be reported.
    pub async fn run_to_end(&self, control: &RunControl) -> RunOutcome {
        let inner = Arc::clone(&self.inner);
        let control = control.clone();
        as_task(async move { run::execute(&inner, inner.settings.limit, &control, |_| {}).await })
            .await
    }

    /// One run of at most `limit` spans that also returns every span's result (LLMC's
    /// `process_batch`). Otherwise the same as [`run`](Self::run), whose errors it shares.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn process_batch(
        &self,
        limit: u64,
        control: &RunControl,
    ) -> Result<BatchResult, PipelineError> {
        let inner = Arc::clone(&self.inner);
        let control = control.clone();
        as_task(async move {
            let mut results = Vec::new();
            let summary = run::execute(&inner, Some(limit), &control, |result| {
                results.push(result);
            })
            .await
            .into_result()?;
            Ok(BatchResult::new(summary, results))
        })
        .await
    }

    /// A dry run: what the next run would do with its first `limit` pending spans, in the order
    /// it would take them (weight, priority class, route, prompt size, cut, cooldown), without
    /// calling any backend or storing any result. A code-first plan brings the database's copy
    /// of the work order up to date first, as a run does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when the index cannot be read or the work order refreshed;
    /// [`PipelineError::Route`] when the default chain cannot serve.
    pub fn plan(&self, limit: usize) -> Result<Plan, PipelineError> {
        let inner = &self.inner;
        let order = &inner.settings.work_order;
        if order.code_first {
            let mut db = inner.take_writer_db()?;
            let refreshed = run::queue::refresh_work_order(order, &mut db);
            inner.return_writer_db(db);
            refreshed?;
        }
        let mut reader = inner.open_reader()?;
        let total_pending = reader
            .pending_count()
            .map_err(PipelineError::db("count pending spans"))?;
        let mut queue = WorkQueue::new(
            order,
            inner.settings.batch_size,
            Some(u64::try_from(limit).unwrap_or(u64::MAX)),
        );
        queue
            .start_at_frontiers(&reader)
            .map_err(PipelineError::db("read the pending frontiers"))?;
        let mut spans = Vec::with_capacity(limit.min(4096));
        let mut plan_spans = || {
            while spans.len() < limit {
                let Some(taken) = queue
                    .next(&mut reader, None)
                    .map_err(PipelineError::db("read pending spans"))?
                else {
                    break;
                };
                let position = spans.len() as u64 + 1;
                spans.push(self.plan_span(taken.span, position)?);
            }
            Ok::<_, PipelineError>(())
        };
        let planned = plan_spans();
        inner.sources.close_files();
        planned?;
        let history = reader
            .usage_since(0)
            .map_err(PipelineError::db("read the token usage of past runs"))?;
        let estimate = estimate(&spans, total_pending, &history);
        Ok(Plan {
            total_pending,
            code_first: order.code_first,
            spans,
            estimate,
        })
    }

    fn plan_span(&self, span: PendingSpan, order: u64) -> Result<PlannedSpan, PipelineError> {
        let inner = &self.inner;
        let identity = span.identity();
        let route = inner
            .router
            .choose_chain(
                &Inner::slice_view(&span),
                inner.settings.chain_override.as_deref(),
            )
            .map_err(PipelineError::Route)?;
        let (estimated_tokens, cut, source_error, secrets, withheld) =
            match inner.read_source(&span) {
                Ok(read) => match inner.secrets.guard(&read.text) {
                    Guarded::Send { source, redacted } => {
                        let prompt = inner.prompt(&span, &identity, &source, read.span_bytes);
                        (
                            Some(prompt.estimated_tokens),
                            prompt.cut,
                            None,
                            redacted,
                            false,
                        )
                    }
                    Guarded::Withheld { rules } => (None, None, None, rules, true),
                },
                Err(error) => (None, None, Some(error.to_string()), Vec::new(), false),
            };
        let in_cooldown = inner.in_cooldown(&span).is_some();
        let decision = inner
            .settings
            .work_order
            .path_weights
            .weigh(&span.file_path);
        Ok(PlannedSpan {
            order,
            span_id: span.id,
            span: identity,
            symbol: span.symbol,
            weight: decision.weight,
            priority: decision.priority(),
            weight_glob: decision.glob.map(str::to_owned),
            route,
            estimated_tokens,
            cut,
            in_cooldown,
            source_error,
            secrets,
            withheld,
        })
    }
}

/// Runs `future` as a task of the current runtime and waits for it; dropping the returned future
/// aborts the task (which drops `future` at its next await), as dropping `future` itself would.
/// A panic in the task goes on in the caller.
async fn as_task<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    /// Aborts the task when the waiting future is dropped.
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(future));
    match (&mut task.0).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only `AbortOnDrop` aborts the task, and it cannot while this waits; a runtime
            // shutting down drops this future along with the task.
            Err(error) => panic!("the run's task ended without a result: {error}"),
        },
    }
}
