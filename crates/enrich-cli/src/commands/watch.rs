//! `enrich watch`: the service. It indexes every repository and enriches what is pending, then
//! follows the file system: each debounced batch of changes re-indexes exactly the paths that
//! changed ([`index_paths`], which applies the index's own walk rules, so an ignored path never
//! gets in) and enriches their new spans. A periodic pass every `--interval` (backing off while
//! idle) takes what is still pending: spans that failed, spans another indexer added. With
//! `--poll`, or where the file system cannot be followed, each periodic pass re-indexes the
//! whole repository instead. Ctrl-C or SIGTERM ends it gracefully.
//!
//! notify's callback runs on the debouncer's thread; it hands each batch to the async loop
//! through an unbounded channel (batches are small, and they merge while a pass runs). Changes
//! to enrich's own files (the index and its journals, the event log) are dropped before a pass:
//! reacting to them would make every pass start the next.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use enrich_config::EnrichmentConfig;
use enrich_db::Db;
use enrich_index::{IndexOptions, IndexReport, index_paths, index_repo};
use enrich_pipeline::{JsonlSink, Pipeline, RunSummary};
use notify_debouncer_full::notify::{self, EventKindMask, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{Config, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::{Global, WatchArgs};
use crate::commands::index::index_error;
use crate::commands::run::{
    DEFAULT_EVENTS_LOG, RunOptions, build_pipeline, check_chain, preflight,
};
use crate::context::Repo;
use crate::exit::{BackendUnusable, Exit, usage};
use crate::signals::Shutdown;

/// Idle passes double the sleep up to this many times the interval…
const IDLE_BACKOFF_FACTOR: u32 = 16;
/// …and never beyond an hour.
const IDLE_SLEEP_CAP: Duration = Duration::from_secs(3600);

/// The sleep after a pass: the interval, doubled `doublings` times, at most the cap (16 times
/// the interval, and an hour, but never less than the interval).
pub(crate) fn next_sleep(interval: Duration, doublings: u32) -> Duration {
    let cap = interval
        .saturating_mul(IDLE_BACKOFF_FACTOR)
        .min(IDLE_SLEEP_CAP)
        .max(interval);
    let factor = 2u32.saturating_pow(doublings.min(31));
    interval.saturating_mul(factor).min(cap)
}

/// The file system watcher: inotify on Linux, behind notify's full debouncer.
type Watcher = Debouncer<RecommendedWatcher, RecommendedCache>;

/// Serves every repository until a signal. Errors of the first pass (a bad config, an index
/// that cannot be opened) end the command, so a misconfigured service fails at once; later
/// ones, and backends that are down, are logged and the repository is tried again next pass.
pub(crate) async fn watch(global: &Global, args: &WatchArgs) -> Result<Exit> {
    let roots = if args.repos.is_empty() {
        vec![global.repo.clone()]
    } else {
        args.repos.clone()
    };
    if roots.len() > 1 && global.db.is_some() {
        return Err(usage(
            "--db names one index but watch was given several repositories; drop --db (each repository uses <repo>/.llmc/rag/index_v2.db)",
        ));
    }
    let mut served = roots
        .iter()
        .map(|root| {
            Repo::new(root, global.db.as_deref(), global.config.as_deref()).and_then(Served::new)
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RunOptions {
        limit: None,
        chain: args.run.chain.clone(),
        concurrency: args.run.concurrency,
        batch_size: args.run.batch_size,
        schedule: args.run.schedule,
        ..RunOptions::default()
    };
    let interval = Duration::from_secs(args.interval);
    let shutdown = Shutdown::install().context("cannot install the signal handlers")?;

    // Follow the file system before the first pass, so no change made during it is missed.
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let mut watcher = if args.poll {
        None
    } else {
        let debounce = Duration::from_millis(args.debounce_ms);
        match follow(&served, debounce, changes_tx) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(
                    "cannot follow file changes ({err}); re-indexing every {} s instead (on Linux, `sysctl fs.inotify.max_user_watches` raises the limit of watched directories)",
                    interval.as_secs()
                );
                None
            }
        }
    };
    tracing::info!(
        repos = served.len(),
        follow = watcher.is_some(),
        "watching; Ctrl-C or SIGTERM stops"
    );

    for repo in &mut served {
        if shutdown.requested.is_cancelled() {
            break;
        }
        match repo.pass(Reindex::All, &options, &shutdown).await {
            Ok(_) => {}
            // A backend that is down is waited for (a service may start before its model
            // server); any other error of the first pass means the service is misconfigured.
            Err(err) if !is_backend_outage(&err) => {
                return Err(err.context(format!("cannot serve {}", repo.repo.root.display())));
            }
            Err(err) => {
                tracing::error!(repo = %repo.repo.root.display(), "{err:#}; trying again next pass");
            }
        }
    }

    let mut idle_passes: u32 = 0;
    let mut next_periodic = Instant::now() + interval;
    while !shutdown.requested.is_cancelled() {
        let batch = tokio::select! {
            () = shutdown.requested.cancelled() => break,
            () = tokio::time::sleep_until(next_periodic) => None,
            received = changes.recv(), if watcher.is_some() => match received {
                Some(batch) => Some(batch),
                None => {
                    tracing::warn!(
                        "the file watcher stopped; re-indexing every {} s instead",
                        interval.as_secs()
                    );
                    watcher = None;
                    continue;
                }
            },
        };
        let mut worked = false;
        match batch {
            None => {
                // Without a watcher, the periodic pass is the only way changes come in.
                let reindex = || {
                    if watcher.is_some() {
                        Reindex::Nothing
                    } else {
                        Reindex::All
                    }
                };
                for repo in &mut served {
                    worked |= repo.pass_logged(reindex(), &options, &shutdown).await;
                }
                idle_passes = if worked {
                    0
                } else {
                    idle_passes.saturating_add(1)
                };
                // After work and after the first idle pass: the interval; then doubling. A poll
                // is what finds changes, so it never backs off.
                let sleep = if watcher.is_some() {
                    next_sleep(interval, idle_passes.saturating_sub(1))
                } else {
                    interval
                };
                tracing::debug!(seconds = sleep.as_secs(), "next periodic pass");
                next_periodic = Instant::now() + sleep;
            }
            Some(mut batch) => {
                // What came in while the last pass ran is one batch.
                while let Ok(more) = changes.try_recv() {
                    batch.merge(more);
                }
                for error in &batch.errors {
                    tracing::warn!("file watcher: {error}; re-indexing everything to be sure");
                }
                for repo in &mut served {
                    let reindex = repo.reindex_for(&batch);
                    if !matches!(reindex, Reindex::Nothing) {
                        worked |= repo.pass_logged(reindex, &options, &shutdown).await;
                    }
                }
                if worked {
                    idle_passes = 0;
                    next_periodic = Instant::now() + interval;
                }
            }
        }
    }
    drop(watcher);
    tracing::info!("stopped");
    Ok(Exit::Success)
}

/// Watches every root, recursively; each debounced batch goes to `tx`.
fn follow(
    served: &[Served],
    debounce: Duration,
    tx: mpsc::UnboundedSender<Changes>,
) -> notify::Result<Watcher> {
    // Content, creation, removal and renames; not metadata (chmod, atime) nor access (the
    // indexer's own reads).
    let kinds = EventKindMask::CREATE
        | EventKindMask::REMOVE
        | EventKindMask::MODIFY_DATA
        | EventKindMask::MODIFY_NAME;
    let config = Config::default()
        .with_timeout(debounce)
        .with_notify_config(notify::Config::default().with_event_kinds(kinds));
    let mut watcher = notify_debouncer_full::new_debouncer_opt(
        config,
        move |result: DebounceEventResult| {
            // The receiver is gone only when watch is ending.
            let _ = tx.send(Changes::from(result));
        },
        RecommendedCache::default(),
    )?;
    for repo in served {
        watcher.watch(&repo.root, RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}

/// Whether `err` says the backends are down (which a later pass may find fixed).
fn is_backend_outage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<BackendUnusable>())
}

/// One debounced batch of file system changes (or several, merged).
#[derive(Debug, Default)]
struct Changes {
    /// Every path an event named.
    paths: Vec<PathBuf>,
    /// Events were lost (the kernel's queue overflowed, or the watcher failed): only a whole
    /// re-index is sure to see every change.
    rescan: bool,
    /// The watcher's errors.
    errors: Vec<String>,
}

impl From<DebounceEventResult> for Changes {
    fn from(result: DebounceEventResult) -> Self {
        match result {
            Ok(events) => {
                let mut changes = Self::default();
                for event in events {
                    changes.rescan |= event.need_rescan();
                    changes.paths.extend(event.event.paths);
                }
                changes
            }
            Err(errors) => Self {
                paths: Vec::new(),
                rescan: true,
                errors: errors.iter().map(ToString::to_string).collect(),
            },
        }
    }
}

impl Changes {
    fn merge(&mut self, other: Self) {
        self.paths.extend(other.paths);
        self.rescan |= other.rescan;
        self.errors.extend(other.errors);
    }
}

/// What a pass re-indexes before it enriches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reindex {
    /// Nothing: enrich what is pending.
    Nothing,
    /// These paths (files or directories); enrich only if they changed the index.
    Paths(Vec<PathBuf>),
    /// The whole repository, then enrich what is pending.
    All,
}

/// A repository being served.
struct Served {
    repo: Repo,
    /// The root as the watcher reports it (canonical).
    root: PathBuf,
    /// enrich's own files, as path prefixes: the index and its journals (`-wal`, `-shm`), the
    /// event log and its rotations.
    own: Vec<PathBuf>,
    /// The indexer's connection, kept between passes.
    index_db: Option<Db>,
    /// The pipeline of the configuration in force, kept between passes (its adapters and their
    /// HTTP connections) and rebuilt when the configuration changes.
    built: Option<Built>,
}

/// A pipeline and what it was built from.
struct Built {
    config: EnrichmentConfig,
    pipeline: Pipeline,
    events: Arc<JsonlSink>,
}

impl Served {
    fn new(repo: Repo) -> Result<Self> {
        let root = repo
            .root
            .canonicalize()
            .with_context(|| format!("cannot resolve the repository {}", repo.root.display()))?;
        let own = [repo.db_path.clone(), repo.root.join(DEFAULT_EVENTS_LOG)]
            .iter()
            .map(|path| match path.strip_prefix(&repo.root) {
                Ok(rel) => root.join(rel),
                Err(_) => resolve_parent(path),
            })
            .collect();
        Ok(Self {
            repo,
            root,
            own,
            index_db: None,
            built: None,
        })
    }

    /// What `changes` ask of this repository: nothing when none of its paths changed but
    /// enrich's own files.
    fn reindex_for(&self, changes: &Changes) -> Reindex {
        if changes.rescan {
            return Reindex::All;
        }
        let paths: Vec<PathBuf> = changes
            .paths
            .iter()
            .filter(|path| path.starts_with(&self.root) && !self.is_own(path))
            .cloned()
            .collect();
        if paths.is_empty() {
            Reindex::Nothing
        } else {
            Reindex::Paths(paths)
        }
    }

    fn is_own(&self, path: &Path) -> bool {
        let path = path.as_os_str().as_encoded_bytes();
        self.own
            .iter()
            .any(|own| path.starts_with(own.as_os_str().as_encoded_bytes()))
    }

    /// [`pass`](Self::pass), its error logged; whether it did any work.
    async fn pass_logged(
        &mut self,
        reindex: Reindex,
        options: &RunOptions,
        shutdown: &Shutdown,
    ) -> bool {
        match self.pass(reindex, options, shutdown).await {
            Ok(worked) => worked,
            Err(err) => {
                tracing::error!(repo = %self.repo.root.display(), "{err:#}; trying again next pass");
                false
            }
        }
    }

    /// Re-indexes, then enriches; logs what it did in one line (at debug when nothing).
    /// Returns whether it did any work.
    async fn pass(
        &mut self,
        reindex: Reindex,
        options: &RunOptions,
        shutdown: &Shutdown,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        // The configuration is read at every pass, so an edit applies without a restart.
        let loaded = self.repo.load_config_quietly()?;
        check_chain(&loaded.config, options.chain.as_deref())?;
        let only_if_changed = matches!(reindex, Reindex::Paths(_));
        let indexed = self.reindex(reindex).await?;
        let changed = indexed.as_ref().is_some_and(changed_files);
        let run = if only_if_changed && !changed {
            Ok(None)
        } else {
            self.enrich(loaded.config, options, shutdown).await
        };
        let line = describe(indexed.as_ref(), run.as_ref().ok().and_then(Option::as_ref));
        let root = self.repo.root.display();
        let seconds = started.elapsed().as_secs_f64();
        match &line {
            Some(line) => tracing::info!(repo = %root, "{line} in {seconds:.1} s"),
            None => tracing::debug!(repo = %root, "idle pass: nothing changed, nothing pending"),
        }
        if let Some(summary) = run.as_ref().ok().and_then(Option::as_ref)
            && summary.dead_lettered > 0
        {
            tracing::warn!(
                repo = %root,
                "{} span(s) dead-lettered; `enrich failures` lists them",
                summary.dead_lettered
            );
        }
        run?;
        Ok(line.is_some())
    }

    /// Runs the indexer on a blocking thread, with the connection kept between passes (the
    /// index is created when there is none).
    async fn reindex(&mut self, reindex: Reindex) -> Result<Option<IndexReport>> {
        if reindex == Reindex::Nothing {
            return Ok(None);
        }
        let db = self.index_db.take();
        let (root, db_path) = (self.repo.root.clone(), self.repo.db_path.clone());
        let (db, report) = tokio::task::spawn_blocking(move || {
            let mut db = match db {
                Some(db) => db,
                None => match Db::open_or_create(&db_path) {
                    Ok(db) => db,
                    Err(err) => return (None, Err(index_error(err.into()))),
                },
            };
            let options = IndexOptions::default();
            let report = match &reindex {
                Reindex::Paths(paths) => index_paths(&mut db, &root, paths, &options, |_| {}),
                _ => index_repo(&mut db, &root, &options, |_| {}),
            };
            (Some(db), report.map_err(index_error))
        })
        .await
        .context("the indexer stopped")?;
        self.index_db = db;
        let report = report.context("cannot index the repository")?;
        for problem in &report.problems {
            tracing::warn!(repo = %self.repo.root.display(), "{}: {}", problem.path, problem.message);
        }
        Ok(Some(report))
    }

    /// Enriches what is pending with the pipeline of `config` (built again when the
    /// configuration changed); `None` when nothing is pending: then no run is started, and none
    /// is recorded in the index.
    async fn enrich(
        &mut self,
        config: EnrichmentConfig,
        options: &RunOptions,
        shutdown: &Shutdown,
    ) -> Result<Option<RunSummary>> {
        let built = match self.built.take() {
            Some(built) if built.config == config => built,
            stale => {
                if stale.is_some() {
                    tracing::info!(repo = %self.repo.root.display(), "the configuration changed; using it from this pass on");
                }
                drop(stale);
                // Again, with the warnings for keys enrich does not read.
                let config = self.repo.load_config()?.config;
                let events_path = self.repo.root.join(DEFAULT_EVENTS_LOG);
                let events =
                    Arc::new(JsonlSink::create(&events_path).context("cannot open the event log")?);
                // No progress display: a service's log is its output, and the pipeline's
                // tracing sink logs runs and batches at info and failed spans as warnings.
                let pipeline = build_pipeline(&self.repo, &config, options, vec![events.clone()])?;
                Built {
                    config,
                    pipeline,
                    events,
                }
            }
        };
        let built = self.built.insert(built);
        if built.pipeline.pending_count()? == 0 {
            return Ok(None);
        }
        preflight(&built.config, options.chain.as_deref()).await?;
        let summary = built
            .pipeline
            .run(&shutdown.control)
            .await
            .context("the run stopped")?;
        if let Err(err) = built.events.check() {
            tracing::warn!("{err}");
        }
        Ok(Some(summary))
    }
}

/// `path` with its directory resolved, when the directory exists.
fn resolve_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map_or_else(|_| path.to_path_buf(), |dir| dir.join(name)),
        _ => path.to_path_buf(),
    }
}

/// Whether the re-index added, changed or removed a file.
fn changed_files(report: &IndexReport) -> bool {
    let files = &report.files;
    files.added + files.changed + files.removed > 0
}

/// The line saying what a pass did; `None` when it did nothing.
fn describe(indexed: Option<&IndexReport>, run: Option<&RunSummary>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(report) = indexed.filter(|r| changed_files(r)) {
        let (files, spans) = (&report.files, &report.spans);
        parts.push(format!(
            "re-indexed {} file(s) ({} added, {} changed, {} removed): {} span(s) added, {} removed",
            files.added + files.changed + files.removed,
            files.added,
            files.changed,
            files.removed,
            spans.added,
            spans.removed
        ));
    }
    if let Some(summary) = run.filter(|s| s.attempted + s.skipped + s.cancelled > 0) {
        let mut part = format!(
            "{} span(s) enriched, {} failed",
            summary.succeeded,
            summary.failed + summary.fell_back
        );
        for (count, what) in [
            (summary.skipped, "left for later (cooldown)"),
            (summary.cancelled, "cancelled"),
        ] {
            if count > 0 {
                part.push_str(&format!(", {count} {what}"));
            }
        }
        parts.push(part);
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_double_up_to_the_cap() {
        let minute = Duration::from_secs(60);
        let cases = [
            (minute, 0, 60),
            (minute, 1, 120),
            (minute, 2, 240),
            (minute, 4, 960),
            (minute, 5, 960),
            (minute, 40, 960),
            (Duration::from_secs(600), 3, 3600),
            (Duration::from_secs(7200), 2, 7200),
        ];
        for (interval, doublings, expected) in cases {
            assert_eq!(
                next_sleep(interval, doublings),
                Duration::from_secs(expected),
                "interval {interval:?}, {doublings} doublings"
            );
        }
    }
}
