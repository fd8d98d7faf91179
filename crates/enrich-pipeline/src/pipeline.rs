//! [`Pipeline`] and its builder: the parts of a run, assembled and checked once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use enrich_backends::{
    AdapterRegistry, AdaptivePolicy, BackendAdapter, HostPool, HostPoolPolicy, InFlightLimit,
    RateLimit, RateLimited,
};
use enrich_config::{BackendSpec, EnrichmentConfig, select_chain};
use enrich_db::SourceReader;
use enrich_router::{Router, SliceView};

use crate::control::RunControl;
use crate::error::PipelineError;
use crate::events::{EventSink, FanOut};
use crate::prompt::PromptBuilder;
use crate::result::{BatchResult, RunOutcome, RunSummary};
use crate::run;
use crate::secrets::SecretGuard;
use crate::settings::PipelineSettings;
use crate::shared::{ChainAdapters, Inner};

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

/// Assembles a [`Pipeline`]; see [`Pipeline::builder`].
pub struct PipelineBuilder<'a> {
    config: &'a EnrichmentConfig,
    settings: PipelineSettings,
    router: Option<Router>,
    prompts: Option<PromptBuilder>,
    events: FanOut,
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
    /// Adjusts the settings derived from the config, as the CLI's flags do (`--limit`,
    /// `--chain`, `--concurrency`, the index's path, …).
    #[must_use]
    pub fn configure(mut self, adjust: impl FnOnce(&mut PipelineSettings)) -> Self {
        adjust(&mut self.settings);
        self
    }

    /// Uses this router instead of [`Router::new`] on the config. It must be built from the
    /// same config.
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

    /// Checks the settings, the chain override and the prompt template, then builds one adapter
    /// per distinct backend the router can choose, through `registry` (the CLI registers every
    /// provider there), each behind its `max_in_flight` cap.
    ///
    /// # Errors
    ///
    /// [`PipelineError::InvalidSetting`], [`PipelineError::Chain`] (an override naming a
    /// missing or disabled chain), [`PipelineError::Route`] (the default chain cannot serve),
    /// [`PipelineError::PromptTemplate`], or
    /// [`PipelineError::Adapters`] (an unknown provider, a factory refusing its entry).
    pub fn build(self, registry: &AdapterRegistry) -> Result<Pipeline, PipelineError> {
        let Self {
            config,
            settings,
            router,
            prompts,
            events,
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
        let mut limits = Vec::new();
        let mut built = built.into_iter();
        let mut chains = HashMap::new();
        for (name, specs) in chain_specs {
            let mut adapters: Vec<Arc<dyn BackendAdapter>> = Vec::with_capacity(specs.len());
            for _ in &specs {
                let Some(adapter) = built.next() else { break };
                let wrapped = match limited.iter().find(|(raw, _)| Arc::ptr_eq(raw, &adapter)) {
                    Some((_, wrapped)) => Arc::clone(wrapped),
                    None => {
                        let wrapped =
                            decorate(registry, &adapter, &settings, &mut pools, &mut limits)?;
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
                pools,
                limits,
                sources,
            }),
        })
    }
}

/// The decorators around one distinct backend, innermost first: its in-flight limit (one
/// [`InFlightLimit`] for a single host; a [`HostPool`] with a limit and a circuit breaker per
/// host when the entry lists several `urls`), adaptive unless the entry says `adaptive =
/// false`, then its rate limit when it sets one. Every decorator that queues starts the
/// backend's timeout only once the request is sent.
fn decorate(
    registry: &AdapterRegistry,
    adapter: &Arc<dyn BackendAdapter>,
    settings: &PipelineSettings,
    pools: &mut Vec<Arc<HostPool>>,
    limits: &mut Vec<Arc<InFlightLimit>>,
) -> Result<Arc<dyn BackendAdapter>, PipelineError> {
    let spec = adapter.spec();
    let cap = spec.max_in_flight();
    let adaptive = spec.adaptive.then(|| {
        AdaptivePolicy::new(
            spec.max_in_flight.map(std::num::NonZeroUsize::get),
            spec.timeout(),
        )
    });
    let capped: Arc<dyn BackendAdapter> = if spec.hosts().len() > 1 {
        // The adapter build_all made for the first host is dropped: the pool builds one per host.
        let policy = HostPoolPolicy {
            adaptive,
            ..HostPoolPolicy::from_cascade(&settings.cascade, cap)
        };
        let pool = registry
            .build_pool(spec, policy)
            .map_err(PipelineError::Adapters)?;
        pools.push(Arc::clone(&pool));
        pool
    } else {
        let limit = Arc::new(match adaptive {
            Some(policy) => InFlightLimit::adaptive(Arc::clone(adapter), policy),
            None => InFlightLimit::new(Arc::clone(adapter), cap),
        });
        limits.push(Arc::clone(&limit));
        limit
    };
    let limit = RateLimit::of(spec);
    Ok(if limit.is_unlimited() {
        capped
    } else {
        Arc::new(RateLimited::new(capped, limit))
    })
}

impl Pipeline {
    /// Starts assembling a pipeline for `config` over the repository at `repo_root`, with the
    /// settings [`PipelineSettings::from_config`] derives from them; adjust those with
    /// [`PipelineBuilder::configure`].
    pub fn builder(
        config: &EnrichmentConfig,
        repo_root: impl Into<PathBuf>,
    ) -> PipelineBuilder<'_> {
        PipelineBuilder {
            settings: PipelineSettings::from_config(config, repo_root),
            config,
            router: None,
            prompts: None,
            events: FanOut::new(),
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
