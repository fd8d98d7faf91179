//! What a run reports as it goes: [`Event`]s, delivered to [`EventSink`]s.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enrich_backends::{AttemptRecord, CircuitState, CircuitTransition, Decision, LimitChange};
use enrich_config::EventLogLimit;
use enrich_db::{HeldLeases, RunId, RunStatus};
use serde::{Deserialize, Serialize};

use crate::budget::BudgetStop;
use crate::error::PipelineError;
use crate::result::{RunEnd, SpanStatus};

/// Milliseconds since the Unix epoch, the timestamp of every event.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One thing that happened during a run.
///
/// In JSON (the [`JsonlSink`] log) an event is one object whose `type` field names the variant
/// in snake_case (`run_started`, `span_finished`, …), next to the variant's fields. Every event
/// carries `at_ms` (when it happened, milliseconds since the Unix epoch) and the `run_id`.
///
/// Order: `run_started` first and `run_finished` last; for each span, `span_started`, then its
/// `attempt_finished` events, then `span_finished` (a skipped span only has `span_finished`);
/// `batch_finished` after the last `span_finished` of its batch. Spans run concurrently, so
/// events of different spans interleave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run is recorded and about to take spans.
    RunStarted {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run's id in the `runs` table.
        run_id: RunId,
        /// Spans pending when the run started, less those other runs hold.
        total_pending: u64,
        /// Pending spans other runs hold leases on, by run: this run does not take them until
        /// their leases end.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held_elsewhere: Vec<HeldLeases>,
        /// Stored enrichments the run's refresh selects, which it renews besides the pending
        /// spans (absent without a refresh).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_selected: Option<u64>,
        /// Spans in flight at most.
        concurrency: usize,
        /// Spans per page (batch).
        batch_size: usize,
        /// The most spans the run takes on, if limited.
        limit: Option<u64>,
        /// The configuration's fingerprint.
        config_fingerprint: String,
    },
    /// A span took a slot: it is routed and its prompt is built.
    SpanStarted {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// The batch (page of pending spans) it came in, from 1.
        batch: u64,
        /// The span.
        span_hash: String,
        /// Its file, relative to the repo root.
        path: String,
        /// Its first line.
        line_start: u32,
        /// Its last line.
        line_end: u32,
        /// The chain that serves it.
        chain: String,
        /// The chain's backends, in the order they are tried.
        backends: Vec<String>,
        /// The prompt's estimated size in tokens; `None` when the source could not be read.
        estimated_tokens: Option<u32>,
    },
    /// One backend attempt for a span ended.
    AttemptFinished {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// The span.
        span_hash: String,
        /// The attempt, as stored in the attempt log.
        attempt: AttemptRecord,
        /// What the cascade does next after a failure; `None` after a success.
        next: Option<NextStep>,
    },
    /// A span is done (its outcome is queued for the writer, or nothing is written for it).
    SpanFinished {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// The batch it came in.
        batch: u64,
        /// The span.
        span_hash: String,
        /// Its file.
        path: String,
        /// How it ended.
        status: SpanStatus,
        /// The backend whose answer was stored, on success.
        backend: Option<String>,
        /// The model that answered, on success.
        model: Option<String>,
        /// Backend attempts made.
        attempts: u32,
        /// How long the span took, in milliseconds.
        duration_ms: u64,
        /// Why it failed, fell back, was skipped or cancelled.
        message: Option<String>,
    },
    /// Every span of one page of pending spans is done.
    BatchFinished {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// The batch number, from 1.
        batch: u64,
        /// Spans the batch handled (at most `batch_size`; fewer when the run stopped).
        spans: u64,
        /// Spans enriched.
        succeeded: u64,
        /// Spans stored as empty enrichments by `on_failure = "fallback_to_empty"`.
        fell_back: u64,
        /// Spans that failed and were recorded in the failure ledger.
        failed: u64,
        /// Spans left for a later run.
        skipped: u64,
        /// Spans cancelled in flight (nothing written).
        cancelled: u64,
    },
    /// A circuit breaker changed state: a backend (or one host of a pool) opened after failing,
    /// went half-open for a probe, or closed again.
    CircuitChanged {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// Which circuit, from what state to what, and why.
        transition: CircuitTransition,
    },
    /// A backend host's adaptive in-flight limit changed: grown while the latency stayed flat,
    /// cut when it rose, on a 429/503/queue-full answer (with its `Retry-After`) or a timeout.
    LimitChanged {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// Which host, from what limit to what, why, and the latency that decided it.
        change: LimitChange,
    },
    /// A budget was reached: the run takes no more spans and finishes the ones in flight.
    BudgetReached {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// Which budget, its limit and what was used.
        budget: BudgetStop,
    },
    /// No backend can serve the spans the run has left: it takes no span and waits for the
    /// earliest circuit to let a probe through (at most `outage_grace_seconds` without an
    /// answer from any backend), or stops at once when the backends are skipped for the run.
    BackendWaiting {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// The backend whose circuit lets a request through first.
        backend: String,
        /// How long until it does, in milliseconds; `None` while another span's probe request
        /// decides.
        retry_in_ms: Option<u64>,
        /// Spans waiting for a backend.
        waiting_spans: u64,
    },
    /// The run is over and recorded; everything it produced is committed.
    RunFinished {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The run.
        run_id: RunId,
        /// The status stored in the `runs` table.
        status: RunStatus,
        /// Why the run ended.
        end: RunEnd,
        /// Spans pending when the run started.
        total_pending: u64,
        /// Spans taken on (enriched, fell back or failed).
        attempted: u64,
        /// Spans enriched.
        succeeded: u64,
        /// Spans stored empty by the fallback policy.
        fell_back: u64,
        /// Spans that failed.
        failed: u64,
        /// Spans left for a later run.
        skipped: u64,
        /// Spans cancelled in flight.
        cancelled: u64,
        /// Spans taken but left pending because no backend could serve them.
        #[serde(default)]
        unsent: u64,
        /// Spans this run dead-lettered.
        dead_lettered: u64,
        /// How long the run took, in milliseconds.
        duration_ms: u64,
    },
}

impl Event {
    /// The `type` tag of this event (`run_started`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::SpanStarted { .. } => "span_started",
            Event::AttemptFinished { .. } => "attempt_finished",
            Event::SpanFinished { .. } => "span_finished",
            Event::BatchFinished { .. } => "batch_finished",
            Event::CircuitChanged { .. } => "circuit_changed",
            Event::LimitChanged { .. } => "limit_changed",
            Event::BudgetReached { .. } => "budget_reached",
            Event::BackendWaiting { .. } => "backend_waiting",
            Event::RunFinished { .. } => "run_finished",
        }
    }

    /// The run the event belongs to.
    pub fn run_id(&self) -> RunId {
        match self {
            Event::RunStarted { run_id, .. }
            | Event::SpanStarted { run_id, .. }
            | Event::AttemptFinished { run_id, .. }
            | Event::SpanFinished { run_id, .. }
            | Event::BatchFinished { run_id, .. }
            | Event::CircuitChanged { run_id, .. }
            | Event::LimitChanged { run_id, .. }
            | Event::BudgetReached { run_id, .. }
            | Event::BackendWaiting { run_id, .. }
            | Event::RunFinished { run_id, .. } => *run_id,
        }
    }

    /// When it happened, in milliseconds since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::RunStarted { at_ms, .. }
            | Event::SpanStarted { at_ms, .. }
            | Event::AttemptFinished { at_ms, .. }
            | Event::SpanFinished { at_ms, .. }
            | Event::BatchFinished { at_ms, .. }
            | Event::CircuitChanged { at_ms, .. }
            | Event::LimitChanged { at_ms, .. }
            | Event::BudgetReached { at_ms, .. }
            | Event::BackendWaiting { at_ms, .. }
            | Event::RunFinished { at_ms, .. } => *at_ms,
        }
    }
}

/// `waiting for backend X, retry in 12 s` (or `…, a probe request decides` while one is under
/// way): how a [`Event::BackendWaiting`] reads to people.
pub fn waiting_message(backend: &str, retry_in_ms: Option<u64>) -> String {
    match retry_in_ms {
        Some(ms) => format!(
            "waiting for backend {backend}, retry in {} s",
            ms.div_ceil(1000)
        ),
        None => format!("waiting for backend {backend}, a probe request decides"),
    }
}

/// What the cascade does after a failed attempt (its [`Decision`], in serialisable form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum NextStep {
    /// Wait, then try the same backend again.
    Retry {
        /// The wait, in milliseconds.
        delay_ms: u64,
    },
    /// Try the next backend of the chain.
    NextBackend {
        /// The failed backend is also skipped for the rest of the run.
        skip_backend_for_run: bool,
    },
    /// Give up on the span.
    GiveUp,
}

impl From<Decision> for NextStep {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Retry { delay } => NextStep::Retry {
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            Decision::Next {
                skip_backend_for_run,
            } => NextStep::NextBackend {
                skip_backend_for_run,
            },
            Decision::Stop => NextStep::GiveUp,
        }
    }
}

/// Receives a run's events as they happen.
///
/// Called from the spans' tasks, concurrently, so an implementation must be quick and must not
/// block for long (a progress bar update, a line written to a file). Closures
/// `Fn(&Event) + Send + Sync` implement it.
pub trait EventSink: Send + Sync {
    /// One event happened.
    fn on_event(&self, event: &Event);
}

impl<F> EventSink for F
where
    F: Fn(&Event) + Send + Sync,
{
    fn on_event(&self, event: &Event) {
        self(event);
    }
}

/// Sends every event to several sinks, in the order they were added.
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn EventSink>>,
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl FanOut {
    /// A fan-out to no sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn push(&mut self, sink: Arc<dyn EventSink>) {
        self.sinks.push(sink);
    }

    /// Adds a sink, builder style.
    #[must_use]
    pub fn with(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.push(sink);
        self
    }

    /// Whether no sink was added.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl EventSink for FanOut {
    fn on_event(&self, event: &Event) {
        for sink in &self.sinks {
            sink.on_event(event);
        }
    }
}

/// How long an event may wait in a [`JsonlSink`]'s buffer before it is written.
const FLUSH_DELAY: Duration = Duration::from_millis(20);
/// Buffered bytes past which the event's own caller writes them at once.
const FLUSH_BYTES: usize = 64 * 1024;

/// Appends every event to a file as one line of JSON (JSON Lines).
///
/// Events are gathered in a buffer and appended in batches of whole lines by a background
/// thread, at most 20 ms after they happen; `run_finished` is written at once, and
/// [`check`](Self::check) and dropping the sink write whatever is left. One `write` call per
/// batch instead of one per event keeps the log's cost per span small (a run writes about three
/// events per span), while the file stays current for `tail -f`. A run killed at any point
/// leaves only whole lines behind (losing at most its last 20 ms of events), and several
/// processes can share one log, which is opened for appending. Writing never stops a run: the
/// first write error is logged and kept, and [`JsonlSink::check`] returns it.
///
/// The log is bounded by an [`EventLogLimit`] (by default 16 MiB, and 3 rotated files). Before
/// each batch the sink measures the file it holds open (one `fstat`) and rotates it by renames
/// when the batch would not fit; a batch is split only between lines, so no line is torn and
/// none is lost: a crash between two renames leaves every file in place under some name, and a
/// rotation that fails keeps appending to the current file. When another process sharing the
/// log has rotated it, the sink notices that `PATH` is a new file and follows it. Written by
/// hand rather than with a rotating-writer crate because of exactly these three needs: whole
/// lines, several writers, and renames that are safe at any point.
#[derive(Debug)]
pub struct JsonlSink {
    shared: Arc<LogShared>,
    /// The background writer; `None` when it could not be started (events are then written
    /// one by one, as they happen).
    flusher: Option<JoinHandle<()>>,
}

/// What the sink and its background writer share.
#[derive(Debug)]
struct LogShared {
    path: PathBuf,
    limit: EventLogLimit,
    buffer: Mutex<LogBuffer>,
    /// Wakes the background writer when the buffer gets its first line, or the sink closes.
    wake: Condvar,
    file: Mutex<LogFile>,
}

/// Lines not yet written.
#[derive(Debug, Default)]
struct LogBuffer {
    lines: Vec<u8>,
    closed: bool,
}

#[derive(Debug)]
struct LogFile {
    file: File,
    /// The first write error.
    error: Option<std::io::Error>,
}

impl LogFile {
    /// Keeps the first write error (and logs it); the sink goes on with the next lines.
    fn record(&mut self, path: &Path, error: std::io::Error) {
        if self.error.is_none() {
            tracing::warn!(path = %path.display(), %error, "cannot write to the event log");
            self.error = Some(error);
        }
    }
}

/// The length of the longest run of whole lines at the start of `lines` that fits in `room`
/// bytes (0 when even the first line does not).
fn whole_lines_within(lines: &[u8], room: usize) -> usize {
    if lines.len() <= room {
        return lines.len();
    }
    lines[..room]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1)
}

/// Opens `path` for appending, creating it.
fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Whether two metadata describe the same file (device and inode); always true where that
/// cannot be told, which only means a rotation by another process is not followed.
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogShared {
    /// Writes the buffered lines. The file's lock is taken before the buffer's is let go, so
    /// batches reach the file in the order they were buffered.
    fn flush(&self, mut buffer: MutexGuard<'_, LogBuffer>) {
        if buffer.lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut buffer.lines);
        let mut log = lock(&self.file);
        drop(buffer);
        self.write_lines(&mut log, &lines);
    }

    /// Appends `lines` (whole lines) to the log, rotating it first whenever the next lines
    /// would not fit under the limit.
    fn write_lines(&self, log: &mut LogFile, mut lines: &[u8]) {
        while !lines.is_empty() {
            let mut chunk = lines.len();
            if self.limit.max_bytes > 0 {
                let size = match self.measure(log) {
                    Ok(size) => size,
                    Err(error) => {
                        log.record(&self.path, error);
                        0
                    }
                };
                let room = usize::try_from(self.limit.max_bytes.saturating_sub(size))
                    .unwrap_or(usize::MAX);
                chunk = whole_lines_within(lines, room);
                if chunk == 0 && size > 0 {
                    match self.rotate(log) {
                        Ok(()) => continue,
                        // Never lose a line for a rotation: the current file takes the rest.
                        Err(error) => {
                            log.record(&self.path, error);
                            chunk = lines.len();
                        }
                    }
                }
                if chunk == 0 {
                    // A line longer than the limit, alone in a fresh file.
                    chunk = lines
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(lines.len(), |end| end + 1);
                }
            }
            if let Err(error) = log.file.write_all(&lines[..chunk]) {
                log.record(&self.path, error);
            }
            lines = &lines[chunk..];
        }
    }

    /// The size of the log at [`Self::path`], after following a rotation another process made
    /// (the path then names another file than the one held open).
    fn measure(&self, log: &mut LogFile) -> std::io::Result<u64> {
        let held = log.file.metadata()?;
        match std::fs::metadata(&self.path) {
            Ok(current) if same_file(&held, &current) => return Ok(held.len()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        log.file = open_append(&self.path)?;
        Ok(log.file.metadata()?.len())
    }

    /// Renames the log to `PATH.1` (shifting older ones up, dropping the one past `keep`) and
    /// opens a new, empty log at `PATH`. Each step is one rename, so a crash at any point loses
    /// no file but the dropped one.
    fn rotate(&self, log: &mut LogFile) -> std::io::Result<()> {
        let gone_is_fine = |result: std::io::Result<()>| match result {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
        if self.limit.keep == 0 {
            gone_is_fine(std::fs::remove_file(&self.path))?;
        } else {
            for n in (1..self.limit.keep).rev() {
                gone_is_fine(std::fs::rename(
                    JsonlSink::rotated_path(&self.path, n),
                    JsonlSink::rotated_path(&self.path, n + 1),
                ))?;
            }
            gone_is_fine(std::fs::rename(
                &self.path,
                JsonlSink::rotated_path(&self.path, 1),
            ))?;
        }
        log.file = open_append(&self.path)?;
        Ok(())
    }

    /// The background writer: waits for a first line, lets [`FLUSH_DELAY`] pass so more can
    /// gather, writes them; until the sink closes.
    fn flush_loop(&self) {
        let mut buffer = lock(&self.buffer);
        loop {
            while buffer.lines.is_empty() && !buffer.closed {
                buffer = self
                    .wake
                    .wait(buffer)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if buffer.closed {
                self.flush(buffer);
                return;
            }
            let (gathered, _) = self
                .wake
                .wait_timeout_while(buffer, FLUSH_DELAY, |b| !b.closed)
                .unwrap_or_else(PoisonError::into_inner);
            self.flush(gathered);
            buffer = lock(&self.buffer);
        }
    }
}

impl JsonlSink {
    /// Opens `path` for appending, creating it and its parent directories if needed, bounded
    /// by the default [`EventLogLimit`].
    ///
    /// # Errors
    ///
    /// [`PipelineError::EventLog`] naming the path.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, PipelineError> {
        Self::with_limit(path, EventLogLimit::default())
    }

    /// Opens `path` for appending like [`create`](Self::create), bounded by `limit`.
    ///
    /// # Errors
    ///
    /// [`PipelineError::EventLog`] naming the path.
    pub fn with_limit(path: impl AsRef<Path>, limit: EventLogLimit) -> Result<Self, PipelineError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| PipelineError::EventLog {
            action: "open",
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        let file = open_append(&path).map_err(open_err)?;
        let shared = Arc::new(LogShared {
            path,
            limit,
            buffer: Mutex::new(LogBuffer::default()),
            wake: Condvar::new(),
            file: Mutex::new(LogFile { file, error: None }),
        });
        let background = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("enrich-event-log".to_owned())
            .spawn(move || background.flush_loop())
            .inspect_err(|error| {
                tracing::warn!(
                    path = %shared.path.display(),
                    %error,
                    "cannot start the event log's writer thread; writing each event as it happens"
                );
            })
            .ok();
        Ok(Self { shared, flusher })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The path of the `n`th rotated file of the log at `path` (`PATH.n`; `PATH.1` is the
    /// newest).
    pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Writes what is buffered and reports the first write error, if any happened.
    ///
    /// # Errors
    ///
    /// [`PipelineError::EventLog`] with the first failed write (later events may be missing).
    pub fn check(&self) -> Result<(), PipelineError> {
        self.shared.flush(lock(&self.shared.buffer));
        let mut log = lock(&self.shared.file);
        let flushed = log.file.flush();
        match log.error.take().map_or(flushed, Err) {
            Ok(()) => Ok(()),
            Err(source) => Err(PipelineError::EventLog {
                action: "write to",
                path: self.shared.path.clone(),
                source,
            }),
        }
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        let mut buffer = lock(&self.shared.buffer);
        buffer.closed = true;
        match self.flusher.take() {
            Some(flusher) => {
                drop(buffer);
                self.shared.wake.notify_one();
                // The writer only panics on a bug; the lines it held are lost either way.
                let _ = flusher.join();
            }
            None => self.shared.flush(buffer),
        }
    }
}

impl EventSink for JsonlSink {
    fn on_event(&self, event: &Event) {
        let mut line = Vec::with_capacity(512);
        if let Err(error) = serde_json::to_writer(&mut line, event) {
            // Events hold plain data with string keys: this does not happen.
            tracing::error!(%error, event = event.name(), "cannot serialise an event");
            return;
        }
        line.push(b'\n');
        let mut buffer = lock(&self.shared.buffer);
        let first = buffer.lines.is_empty();
        buffer.lines.extend_from_slice(&line);
        let now = self.flusher.is_none()
            || buffer.closed
            || buffer.lines.len() >= FLUSH_BYTES
            || matches!(event, Event::RunFinished { .. });
        if now {
            self.shared.flush(buffer);
        } else if first {
            drop(buffer);
            self.shared.wake.notify_one();
        }
    }
}

/// Logs every event through `tracing` (target `enrich_pipeline::events`): runs, batches and
/// backoffs of an in-flight limit at `info`, spans, attempts and other limit changes at
/// `debug`, a failed span at `warn`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

/// The `tracing` target of [`TracingSink`].
const TARGET: &str = "enrich_pipeline::events";

impl EventSink for TracingSink {
    fn on_event(&self, event: &Event) {
        match event {
            Event::RunStarted {
                at_ms,
                run_id,
                total_pending,
                held_elsewhere,
                concurrency,
                limit,
                ..
            } => trace_run_started(
                *at_ms,
                run_id,
                *total_pending,
                held_elsewhere,
                *concurrency,
                *limit,
            ),
            Event::SpanStarted {
                span_hash,
                path,
                line_start,
                line_end,
                chain,
                ..
            } => tracing::debug!(
                target: TARGET,
                span = %span_hash,
                "span started: {path} lines {line_start}-{line_end} via chain {chain:?}"
            ),
            Event::AttemptFinished {
                span_hash,
                attempt,
                next,
                ..
            } => tracing::debug!(
                target: TARGET,
                span = %span_hash,
                backend = %attempt.backend,
                attempt = attempt.attempt,
                outcome = attempt.outcome.as_str(),
                kind = attempt.failure_kind.map(|k| k.as_str()),
                duration_ms = attempt.duration_ms,
                ?next,
                "attempt finished"
            ),
            Event::SpanFinished {
                span_hash,
                path,
                status,
                message,
                duration_ms,
                ..
            } => trace_span_finished(span_hash, path, *status, message.as_deref(), *duration_ms),
            Event::BatchFinished {
                batch,
                spans,
                succeeded,
                failed,
                ..
            } => tracing::info!(target: TARGET, batch, spans, succeeded, failed, "batch finished"),
            Event::CircuitChanged { transition, .. } => trace_circuit(transition),
            Event::LimitChanged { change, .. } if change.reason.is_backoff() => {
                tracing::info!(target: TARGET, "in-flight limit lowered: {change} ({})", change.why());
            }
            Event::LimitChanged { change, .. } => {
                tracing::debug!(target: TARGET, "in-flight limit: {change} ({})", change.why());
            }
            Event::BudgetReached { budget, .. } => {
                tracing::warn!(target: TARGET, "{budget}; taking no more spans");
            }
            Event::BackendWaiting {
                backend,
                retry_in_ms,
                waiting_spans,
                ..
            } => tracing::info!(
                target: TARGET,
                waiting_spans,
                "{}",
                waiting_message(backend, *retry_in_ms)
            ),
            Event::RunFinished {
                run_id,
                status,
                attempted,
                succeeded,
                failed,
                skipped,
                duration_ms,
                ..
            } => tracing::info!(
                target: TARGET,
                run = run_id.0,
                status = status.as_str(),
                attempted,
                succeeded,
                failed,
                skipped,
                duration_ms,
                "run finished"
            ),
        }
    }
}

/// A run's start, and a warning for each run that holds pending spans this run leaves alone.
fn trace_run_started(
    at_ms: u64,
    run_id: &RunId,
    total_pending: u64,
    held_elsewhere: &[HeldLeases],
    concurrency: usize,
    limit: Option<u64>,
) {
    tracing::info!(
        target: TARGET,
        run = run_id.0,
        total_pending,
        concurrency,
        limit,
        "run started"
    );
    for held in held_elsewhere {
        tracing::warn!(
            target: TARGET,
            run = run_id.0,
            "{} more pending span(s) are held by run {} on host {} (pid {}) for up \
             to {} s more; this run takes them once that run ends or its leases \
             expire",
            held.spans,
            held.run_id.0,
            held.host,
            held.pid,
            held.until_ms.saturating_sub(at_ms).div_ceil(1000)
        );
    }
}

/// A finished span: a warning when it failed.
fn trace_span_finished(
    span_hash: &str,
    path: &str,
    status: SpanStatus,
    message: Option<&str>,
    duration_ms: u64,
) {
    let message = message.unwrap_or("");
    if status == SpanStatus::Failed {
        tracing::warn!(target: TARGET, span = %span_hash, duration_ms, "{path}: failed: {message}");
    } else {
        tracing::debug!(target: TARGET, span = %span_hash, duration_ms, status = status.as_str(), "{path}: {message}");
    }
}

/// A circuit's change: a warning when it opens.
fn trace_circuit(t: &CircuitTransition) {
    let reason = t.reason.as_deref().unwrap_or("");
    match t.to {
        CircuitState::Open { remaining_ms } => tracing::warn!(
            target: TARGET,
            backend = %t.backend,
            host = %t.host,
            trips = t.trips,
            "circuit opened: skipping it for {:.1} s ({reason})",
            remaining_ms as f64 / 1000.0
        ),
        CircuitState::HalfOpen { .. } => tracing::info!(
            target: TARGET,
            backend = %t.backend,
            host = %t.host,
            "circuit half-open: one probe request decides"
        ),
        CircuitState::Closed => tracing::info!(
            target: TARGET,
            backend = %t.backend,
            host = %t.host,
            "circuit closed: the backend answers again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(run: i64, batch: u64) -> Event {
        Event::BatchFinished {
            at_ms: 1,
            run_id: RunId(run),
            batch,
            spans: 5,
            succeeded: 5,
            fell_back: 0,
            failed: 0,
            skipped: 0,
            cancelled: 0,
        }
    }

    fn finished(run: i64) -> Event {
        Event::RunFinished {
            at_ms: 2,
            run_id: RunId(run),
            status: RunStatus::Completed,
            end: RunEnd::Exhausted,
            total_pending: 5,
            attempted: 5,
            succeeded: 5,
            fell_back: 0,
            failed: 0,
            skipped: 0,
            cancelled: 0,
            unsent: 0,
            dead_lettered: 0,
            duration_ms: 3,
        }
    }

    fn read(path: &Path) -> Vec<Event> {
        let text = std::fs::read_to_string(path).expect("read the log");
        assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
        text.lines()
            .map(|line| serde_json::from_str(line).expect("an event per line"))
            .collect()
    }

    #[test]
    fn buffered_lines_are_whole_and_in_order_for_each_producer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/events.jsonl");
        let sink = Arc::new(JsonlSink::create(&path).expect("create"));
        // Enough lines to pass FLUSH_BYTES several times, from concurrent producers.
        let producers: Vec<_> = (0..4)
            .map(|run| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    for n in 0..1500 {
                        sink.on_event(&batch(run, n));
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().expect("producer");
        }
        sink.check().expect("written");
        let events = read(&path);
        assert_eq!(events.len(), 6000);
        for run in 0..4 {
            let batches: Vec<u64> = events
                .iter()
                .filter(|e| e.run_id() == RunId(run))
                .map(|e| match e {
                    Event::BatchFinished { batch, .. } => *batch,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(batches, (0..1500).collect::<Vec<_>>(), "run {run}");
        }

        // Dropping the sink writes what is still buffered.
        sink.on_event(&batch(9, 0));
        drop(sink);
        assert_eq!(read(&path).len(), 6001);
    }

    #[test]
    fn batches_are_cut_between_lines_and_a_long_line_gets_a_file_of_its_own() {
        let cases: [(&[u8], usize, usize); 5] = [
            (b"ab\ncd\n", 100, 6),
            (b"ab\ncd\n", 6, 6),
            (b"ab\ncd\n", 5, 3),
            (b"ab\ncd\n", 2, 0),
            (b"", 0, 0),
        ];
        for (lines, room, fit) in cases {
            assert_eq!(whole_lines_within(lines, room), fit, "{lines:?} in {room}");
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let one_line = {
            let mut line = serde_json::to_vec(&batch(1, 1)).expect("json");
            line.push(b'\n');
            line.len() as u64
        };
        // Smaller than one line, nothing kept: every line replaces the file.
        let limit = EventLogLimit {
            max_bytes: one_line / 2,
            keep: 0,
        };
        let sink = JsonlSink::with_limit(&path, limit).expect("create");
        for n in 0..3 {
            sink.on_event(&batch(1, n));
            sink.check().expect("written");
        }
        assert_eq!(read(&path), [batch(1, 2)]);
        assert!(!JsonlSink::rotated_path(&path, 1).exists());
    }

    #[test]
    fn the_end_of_a_run_is_written_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let sink = JsonlSink::create(&path).expect("create");
        sink.on_event(&batch(1, 1));
        sink.on_event(&finished(1));
        // Neither check nor drop: run_finished took every line before it to the file.
        assert_eq!(read(&path), [batch(1, 1), finished(1)]);
        sink.check().expect("no write error");
    }
}
