//! Shared fixtures: a repository with real source files and an index built the way LLMC's
//! indexer fills it (raw SQL), scripted in-process backends, and an event collector.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use enrich_backends::{
    AdapterRegistry, BackendAdapter, BackendError, FailureKind, GenerateRequest, Generation,
    UsageMetrics,
};
use enrich_config::{BackendSpec, EnrichmentConfig, OnFailure, PromptConfig};
use enrich_db::{Db, default_db_path};
use enrich_pipeline::{Event, EventSink, Pipeline, PipelineSettings};
use enrich_router::Router;
use enrich_types::{file_hash, span_hash};
use rusqlite::Connection;
use tempfile::TempDir;

/// The provider name the scripted adapters are registered under.
pub(crate) const PROVIDER: &str = "scripted";

/// An old file modification time (2023), outside any cooldown.
pub(crate) const OLD_MTIME: f64 = 1_700_000_000.5;

/// A temporary repository with an index at LLMC's default location.
pub(crate) struct Fixture {
    _dir: TempDir,
    pub(crate) repo: PathBuf,
    pub(crate) db_path: PathBuf,
}

impl Fixture {
    /// An empty index created by enrich-db, as `enrich` finds one after LLMC's first index.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        fs::create_dir_all(&repo).expect("mkdir repo");
        let db_path = default_db_path(&repo);
        drop(Db::open_or_create(&db_path).expect("create index"));
        Self {
            _dir: dir,
            repo,
            db_path,
        }
    }

    /// A plain connection, as LLMC (or another process) has.
    pub(crate) fn raw(&self) -> Connection {
        Connection::open(&self.db_path).expect("raw connection")
    }

    /// enrich's connection, to read results back.
    pub(crate) fn db(&self) -> Db {
        Db::open(&self.db_path).expect("open index")
    }

    /// Writes `source` to `repo/path` and indexes it as LLMC's indexer does: a `files` row and
    /// one span per line (symbol `f<line>`), with LLMC's span hash. Returns the span hashes.
    pub(crate) fn index_file(&self, path: &str, source: &str, mtime: f64) -> Vec<String> {
        let full = self.repo.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, source).expect("write source");
        self.index_rows(path, source, mtime)
    }

    /// Only the index rows for `path`, without writing the file.
    pub(crate) fn index_rows(&self, path: &str, source: &str, mtime: f64) -> Vec<String> {
        let lang = "python";
        let conn = self.raw();
        conn.execute(
            "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, ?3, ?4, ?5)",
            (
                path,
                lang,
                format!("sha256:{}", file_hash(source.as_bytes())),
                source.len(),
                mtime,
            ),
        )
        .expect("insert file");
        let file_id = conn.last_insert_rowid();
        let mut hashes = Vec::new();
        let mut offset = 0usize;
        for (i, line) in source.split_inclusive('\n').enumerate() {
            let (start, end) = (offset, offset + line.len());
            offset = end;
            let hash = span_hash(lang, &source.as_bytes()[start..end]);
            conn.execute(
                "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start,
                    byte_end, span_hash, slice_type, slice_language, classifier_confidence)
                 VALUES (?1, ?2, 'function', ?3, ?3, ?4, ?5, ?6, 'code', 'python', 0.9)",
                (file_id, format!("f{}", i + 1), i + 1, start, end, &hash),
            )
            .expect("insert span");
            hashes.push(hash);
        }
        hashes
    }

    /// Writes `source` to `repo/path` and indexes it as one span covering every line (LLMC's
    /// span for a whole module or section). Returns the span hash.
    pub(crate) fn index_single_span(&self, path: &str, source: &str) -> String {
        let full = self.repo.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, source).expect("write source");
        let conn = self.raw();
        conn.execute(
            "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, 'python', ?2, ?3, ?4)",
            (path, format!("sha256:{}", file_hash(source.as_bytes())), source.len(), OLD_MTIME),
        )
        .expect("insert file");
        let file_id = conn.last_insert_rowid();
        let hash = span_hash("python", source.as_bytes());
        let lines = source.lines().count();
        conn.execute(
            "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start, byte_end,
                span_hash, slice_type)
             VALUES (?1, 'module', 'module', 1, ?2, 0, ?3, ?4, 'code')",
            (file_id, lines, source.len(), &hash),
        )
        .expect("insert span");
        hash
    }

    /// Indexes `count` one-line functions in `path`.
    pub(crate) fn index_lines(&self, path: &str, count: usize) -> Vec<String> {
        self.index_file(path, &python_lines(path, count), OLD_MTIME)
    }

    /// Pending spans now.
    pub(crate) fn pending(&self) -> u64 {
        self.db().pending_count().expect("pending count")
    }

    /// Rows of a table.
    pub(crate) fn count(&self, table: &str) -> u64 {
        self.raw()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("count")
    }
}

/// `count` lines of distinct Python functions (distinct per path, so hashes differ).
pub(crate) fn python_lines(path: &str, count: usize) -> String {
    let tag: String = path.chars().filter(char::is_ascii_alphanumeric).collect();
    (1..=count)
        .map(|i| format!("def f{i}_{tag}(): return {i}\n"))
        .collect()
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Milliseconds since the Unix epoch, now, as leases count them.
pub(crate) fn wall_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

/// What a scripted backend answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A valid enrichment.v1 object for the requested span.
    Valid,
    /// This text.
    Text(String),
    /// A failure of this kind.
    Fail(FailureKind),
}

type Behaviour = Arc<dyn Fn(&GenerateRequest, usize) -> Reply + Send + Sync>;

/// An in-process backend with a scripted answer and a (virtual-clock) delay, that records its
/// requests and how many were in flight at once.
pub(crate) struct Scripted {
    spec: BackendSpec,
    delay: Duration,
    behaviour: Behaviour,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    requests: Mutex<Vec<GenerateRequest>>,
    digest: Option<String>,
    digests_asked: AtomicUsize,
}

impl Scripted {
    /// A backend `name` of chain `default` that answers valid enrichments at once.
    pub(crate) fn new(name: &str) -> Self {
        Self {
            spec: BackendSpec::new(name, "default", PROVIDER, format!("{name}-model:1b")),
            delay: Duration::ZERO,
            behaviour: Arc::new(|_, _| Reply::Valid),
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            digest: None,
            digests_asked: AtomicUsize::new(0),
        }
    }

    /// Sets its provider options.
    pub(crate) fn options(mut self, options: serde_json::Value) -> Self {
        self.spec.options = options.as_object().cloned().unwrap_or_default();
        self
    }

    /// Reports `digest` as its model's digest.
    pub(crate) fn digest(mut self, digest: &str) -> Self {
        self.digest = Some(digest.to_owned());
        self
    }

    /// How often it was asked for its model's digest.
    pub(crate) fn digests_asked(&self) -> usize {
        self.digests_asked.load(Ordering::SeqCst)
    }

    /// Puts it in another chain.
    pub(crate) fn chain(mut self, chain: &str) -> Self {
        self.spec.chain = chain.to_owned();
        self
    }

    /// Each call takes this long (on tokio's clock).
    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the backend's fixed cap on requests in flight (`max_in_flight`, `adaptive =
    /// false`).
    pub(crate) fn cap(mut self, max_in_flight: usize) -> Self {
        self.spec.max_in_flight = std::num::NonZeroUsize::new(max_in_flight);
        self.spec.adaptive = false;
        self
    }

    /// Sets `max_in_flight` as the ceiling of the backend's adaptive limit.
    pub(crate) fn ceiling(mut self, max_in_flight: usize) -> Self {
        self.spec.max_in_flight = std::num::NonZeroUsize::new(max_in_flight);
        self.spec.adaptive = true;
        self
    }

    /// Sets `requests_per_minute`.
    pub(crate) fn requests_per_minute(mut self, rpm: u32) -> Self {
        self.spec.requests_per_minute = Some(rpm);
        self
    }

    /// Sets `timeout_seconds`.
    pub(crate) fn timeout_seconds(mut self, secs: f64) -> Self {
        self.spec.timeout_seconds = Some(secs);
        self
    }

    /// Answers with `reply` on every call.
    pub(crate) fn always(self, reply: Reply) -> Self {
        self.replies(move |_, _| reply.clone())
    }

    /// Answers as `behaviour` says, given the request and the 1-based call number.
    pub(crate) fn replies(
        mut self,
        behaviour: impl Fn(&GenerateRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.behaviour = Arc::new(behaviour);
        self
    }

    pub(crate) fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> Vec<GenerateRequest> {
        self.requests.lock().expect("requests").clone()
    }
}

/// Counts a request out of flight even when the cascade drops it (cancellation, timeout).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The valid enrichment.v1 answer for a request's span.
pub(crate) fn valid_answer(request: &GenerateRequest) -> String {
    let (path, s, e) = (
        &request.span.path,
        request.span.line_start,
        request.span.line_end,
    );
    serde_json::json!({
        "summary_120w": format!("Returns a constant from {path} lines {s}-{e}."),
        "inputs": [],
        "outputs": ["an int"],
        "side_effects": [],
        "pitfalls": ["none known"],
        "usage_snippet": "f()",
        "evidence": [{"field": "summary_120w", "lines": [s, e]}],
    })
    .to_string()
}

#[async_trait]
impl BackendAdapter for Scripted {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        format!("scripted://{}", self.spec.name)
    }

    async fn model_digest(&self) -> Option<String> {
        self.digests_asked.fetch_add(1, Ordering::SeqCst);
        self.digest.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.requests
            .lock()
            .expect("requests")
            .push(request.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _guard = InFlight(&self.in_flight);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let text = match (self.behaviour)(request, call) {
            Reply::Valid => valid_answer(request),
            Reply::Text(text) => text,
            Reply::Fail(kind) => {
                return Err(BackendError::new(kind, format!("scripted {kind} failure")));
            }
        };
        let mut metrics = UsageMetrics::new(&self.spec.model, self.describe_host());
        metrics.prompt_eval_count = Some(120);
        metrics.eval_count = Some(42);
        metrics.eval_duration_ns = Some(2_000_000_000);
        metrics.total_duration_ns = Some(3_000_000_000);
        metrics.done_reason = Some("stop".to_owned());
        Ok(Generation { text, metrics })
    }
}

/// A configuration with these backends (LLMC's defaults otherwise, routing off).
pub(crate) fn config(backends: &[&Arc<Scripted>]) -> EnrichmentConfig {
    EnrichmentConfig {
        default_chain: "default".to_owned(),
        batch_size: 5,
        concurrency: 1,
        cooldown_seconds: 0,
        max_retries_per_span: 6,
        max_failures_per_span: 3,
        outage_grace_seconds: 300,
        enforce_latin1_enrichment: false,
        enable_routing: false,
        routes: BTreeMap::new(),
        max_tier: None,
        on_failure: OnFailure::Error,
        prompt: PromptConfig::default(),
        backends: backends.iter().map(|b| b.spec().clone()).collect(),
        ..EnrichmentConfig::default()
    }
}

/// A registry serving the scripted backends by name.
pub(crate) fn registry(backends: &[&Arc<Scripted>]) -> AdapterRegistry {
    let by_name: HashMap<String, Arc<Scripted>> = backends
        .iter()
        .map(|b| (b.spec().name.clone(), Arc::clone(b)))
        .collect();
    let mut registry = AdapterRegistry::new();
    registry.register(
        PROVIDER,
        move |spec: &BackendSpec| -> Result<Arc<dyn BackendAdapter>, BackendError> {
            let adapter = by_name.get(&spec.name).ok_or_else(|| {
                BackendError::new(
                    FailureKind::InvalidRequest,
                    format!("no scripted {}", spec.name),
                )
            })?;
            Ok(Arc::clone(adapter) as Arc<dyn BackendAdapter>)
        },
    );
    registry
}

/// Keeps every event, in order.
#[derive(Default)]
pub(crate) struct Collector(Mutex<Vec<Event>>);

impl Collector {
    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.lock().expect("events").clone()
    }
}

impl EventSink for Collector {
    fn on_event(&self, event: &Event) {
        self.0.lock().expect("events").push(event.clone());
    }
}

/// A pipeline over `fixture` with `config`, the scripted `backends`, settings adjusted by
/// `tweak`, and a collector of its events.
pub(crate) fn pipeline(
    fixture: &Fixture,
    config: &EnrichmentConfig,
    backends: &[&Arc<Scripted>],
    tweak: impl FnOnce(&mut PipelineSettings),
) -> (Arc<Pipeline>, Arc<Collector>) {
    let events = Arc::new(Collector::default());
    let pipeline = Pipeline::builder(config, &fixture.repo)
        .configure(tweak)
        .router(Router::new(config))
        .event_sink(Arc::clone(&events) as Arc<dyn EventSink>)
        .build(&registry(backends))
        .expect("build pipeline");
    (Arc::new(pipeline), events)
}
