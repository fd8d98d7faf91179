//! What every run of a [`Pipeline`](crate::Pipeline) shares: its settings, router, adapters,
//! prompt builder, event sinks, source reader and secrets guard, with the helpers a span's work
//! needs from them. The pipeline builds it; the run loop only reads it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use enrich_backends::{BackendAdapter, HostPool, InFlightLimit, LimitSnapshot};
use enrich_db::{Db, DbError, OpenMode, OpenOptions, PendingSpan, SourceReader, SpanSource};
use enrich_router::{Router, SliceView};
use enrich_types::SpanIdentity;

use crate::error::PipelineError;
use crate::events::EventSink;
use crate::prompt::{Prompt, PromptBuilder, PromptSpan};
use crate::secrets::SecretGuard;
use crate::settings::PipelineSettings;

/// The adapters of one chain, in the order the cascade tries them.
pub(crate) type ChainAdapters = Arc<[Arc<dyn BackendAdapter>]>;

/// What every run of a pipeline shares.
pub(crate) struct Inner {
    pub(crate) settings: PipelineSettings,
    pub(crate) router: Router,
    pub(crate) chains: HashMap<String, ChainAdapters>,
    pub(crate) prompts: PromptBuilder,
    pub(crate) events: Arc<dyn EventSink>,
    /// The host pools among the backends, for their per-host circuits.
    pub(crate) pools: Vec<Arc<HostPool>>,
    /// The in-flight limits of the single-host backends.
    pub(crate) limits: Vec<Arc<InFlightLimit>>,
    /// Reads each span's source under `settings.repo_root`, resolved once.
    pub(crate) sources: SourceReader,
    /// Scans each span's source before its prompt is built.
    pub(crate) secrets: SecretGuard,
}

impl Inner {
    /// Every host's in-flight limit now: the single-host backends', then each pool's hosts'.
    pub(crate) fn limits(&self) -> Vec<LimitSnapshot> {
        let single = self.limits.iter().map(|limit| limit.snapshot());
        let pooled = self.pools.iter().flat_map(|pool| pool.limits());
        single.chain(pooled).collect()
    }

    /// A new write connection: the one place that opens it, so the dead-letter threshold
    /// (`max_failures_per_span`) and the busy timeout are set once. A run moves it into its
    /// writer thread, gets it back when the writer ends, records its end on it and drops it.
    pub(crate) fn open_writer(&self) -> Result<Db, PipelineError> {
        let options = OpenOptions {
            mode: OpenMode::Existing,
            max_failures_per_span: self.settings.max_failures_per_span,
            ..OpenOptions::default()
        };
        let mut db = Db::open_with(&self.settings.db_path, &options)
            .map_err(PipelineError::db("open the index database"))?;
        db.set_busy_timeout(self.settings.busy_timeout)
            .map_err(PipelineError::db("set the busy timeout"))?;
        Ok(db)
    }

    /// A read-only connection for paging through pending spans (enrich's tables migrated first
    /// when they are older and the file is writable).
    pub(crate) fn open_reader(&self) -> Result<Db, PipelineError> {
        let options = OpenOptions {
            mode: OpenMode::ReadUpgrading,
            ..OpenOptions::default()
        };
        Db::open_with(&self.settings.db_path, &options)
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
