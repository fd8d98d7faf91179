//! [`PipelineError`]: everything that stops a run, or stops one from starting.
//!
//! A span that fails is not an error here: it is a [`SpanResult`](crate::SpanResult) with a failed
//! status, recorded in the failure ledger. These errors are about the run itself.

use std::path::PathBuf;
use std::time::Duration;

use enrich_backends::BackendsError;
use enrich_config::ConfigError;
use enrich_db::DbError;
use enrich_router::RouterError;

/// Why a pipeline could not be built, or a run could not start or finish.
///
/// Every message says which thing failed and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A setting has a value the pipeline cannot work with.
    #[error("setting `{key}` is {value}: {fix}")]
    InvalidSetting {
        /// The setting's name, as in the config file.
        key: &'static str,
        /// The value found.
        value: String,
        /// What it must be.
        fix: &'static str,
    },

    /// The prompt template cannot be used.
    #[error(
        "[enrichment.prompt] template: {problem}; the placeholders are {{path}} {{line_start}} \
         {{line_end}} {{snippet}}, and literal braces are written {{{{ and }}}} (as in LLMC's \
         Python format strings)"
    )]
    PromptTemplate {
        /// What is wrong, with the byte offset in the template.
        problem: String,
    },

    /// The chain asked for with `--chain` (the chain override) cannot be used.
    #[error("cannot use the chain override: {0}")]
    Chain(#[source] ConfigError),

    /// No chain can serve a span: the default chain has no enabled backend.
    #[error("cannot route spans: {0}")]
    Route(#[source] RouterError),

    /// An adapter could not be built for a backend entry.
    #[error("cannot set up the backends: {0}")]
    Adapters(#[source] BackendsError),

    /// The index database could not be opened or read, or a run could not be recorded.
    #[error("cannot {action}: {source}")]
    Db {
        /// What the pipeline was doing.
        action: &'static str,
        /// The database's error (it names the file and the fix).
        #[source]
        source: Box<DbError>,
    },

    /// The writer could not store results; the run stopped taking spans.
    #[error(
        "stopped the run: storing results failed ({source}); the spans of the failed batch stay \
         pending and the next run does them again"
    )]
    Write {
        /// The database's error.
        #[source]
        source: Box<DbError>,
    },

    /// Another process held the index's write lock through the whole busy timeout: the run
    /// stopped rather than count its spans as failures of the backends.
    #[error(
        "the index database {path} is locked by another process: it held the write lock through \
         the whole busy timeout ({}s) while the run tried to {action}; the run stopped and what it \
         had not stored stays pending: wait for the other enrich or LLMC process to finish, or \
         raise `busy_timeout_seconds` in [enrichment]",
        timeout.as_secs_f64()
    )]
    Locked {
        /// The index file.
        path: PathBuf,
        /// What the run was doing.
        action: &'static str,
        /// How long it waited.
        timeout: Duration,
    },

    /// The writer thread could not be started.
    #[error(
        "cannot start the database writer thread: {source}; the system may be out of threads or memory"
    )]
    WriterThread {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The writer thread died; nothing it had not committed was stored.
    #[error(
        "the database writer thread panicked ({message}); results it had not committed are lost \
         and those spans stay pending; please report this as a bug"
    )]
    WriterPanicked {
        /// The panic message.
        message: String,
    },

    /// The task processing a span panicked; the run stopped taking spans.
    #[error(
        "processing span {span_hash} panicked ({message}); nothing was stored for it; please \
         report this as a bug"
    )]
    SpanPanicked {
        /// The span.
        span_hash: String,
        /// The panic message.
        message: String,
    },

    /// The event log could not be opened or written.
    #[error("cannot {action} the event log {path}: {source}; check that the directory is writable")]
    EventLog {
        /// What failed (`open`, `write to`).
        action: &'static str,
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl PipelineError {
    /// A closure wrapping a [`DbError`] with what the pipeline was doing; a lock held past the
    /// busy timeout is [`PipelineError::Locked`].
    pub(crate) fn db(action: &'static str) -> impl FnOnce(DbError) -> Self {
        move |source| {
            Self::locked(&source).unwrap_or_else(|| Self::Db {
                action,
                source: Box::new(source),
            })
        }
    }

    /// The writer's failure to store results; a lock held past the busy timeout is
    /// [`PipelineError::Locked`].
    pub(crate) fn write(source: DbError) -> Self {
        Self::locked(&source).unwrap_or_else(|| Self::Write {
            source: Box::new(source),
        })
    }

    fn locked(source: &DbError) -> Option<Self> {
        match source {
            DbError::Busy {
                path,
                action,
                timeout,
            } => Some(Self::Locked {
                path: path.clone(),
                action,
                timeout: *timeout,
            }),
            _ => None,
        }
    }
}
