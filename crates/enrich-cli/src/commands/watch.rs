//! `enrich watch`: the service. It indexes every repository and enriches what is pending, then
//! follows the file system: each debounced batch of changes re-indexes exactly the paths that
//! changed ([`index_paths`], which applies the index's own walk rules, so an ignored path never
//! gets in) and enriches their new spans. A periodic pass every `--interval` (backing off while
//! idle) takes what is still pending: spans that failed, spans another indexer added. With
//! `--poll`, or where the file system cannot be followed, each periodic pass re-indexes the
//! whole repository instead. Ctrl-C or SIGTERM ends it gracefully.
//!
//! notify's callback runs on the debouncer's thread; it merges each batch into an [`Inbox`]
//! that the async loop empties (a channel whose messages fold into one: a build writing
//! thousands of files while a long pass runs costs a bounded set of paths, not a queue of
//! batches). Changes to enrich's own files (the index and its journals, the event log) are
//! dropped before a pass: reacting to them would make every pass start the next.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use enrich_config::EnrichmentConfig;
use enrich_db::Db;
use enrich_index::{IndexOptions, IndexReport, index_paths, index_repo};
use enrich_pipeline::{JsonlSink, Pipeline, RunEnd, RunSummary};
use notify_debouncer_full::notify::{self, EventKindMask, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{Config, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cli::{Global, WatchArgs};
use crate::commands::index::{index_error, rule_options};
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

/// Changed paths kept for the next pass; beyond this many, the next pass re-indexes the whole
/// repository instead (cheaper than re-indexing as many paths one by one, and flat in memory).
const MAX_CHANGED_PATHS: usize = 10_000;

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
    let inbox = Arc::new(Inbox::default());
    let watcher = if args.poll {
        None
    } else {
        let debounce = Duration::from_millis(args.debounce_ms);
        match follow(&served, debounce, Arc::clone(&inbox)) {
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
            () = inbox.wake.notified(), if watcher.is_some() => Some(inbox.take()),
        };
        let mut worked = false;
        match batch {
            None => {
                for repo in &mut served {
                    // Without a watcher, the periodic pass is the only way changes come in.
                    let reindex = if watcher.is_none() || repo.reindex_owed {
                        Reindex::All
                    } else {
                        Reindex::Nothing
                    };
                    worked |= repo.pass_logged(reindex, &options, &shutdown).await;
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
            Some(batch) => {
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

/// Watches every root, recursively; each debounced batch goes to `inbox`.
fn follow(served: &[Served], debounce: Duration, inbox: Arc<Inbox>) -> notify::Result<Watcher> {
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
        move |result: DebounceEventResult| inbox.put(Changes::from(result)),
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

/// Where the watcher's thread leaves changes for the async loop.
#[derive(Debug, Default)]
struct Inbox {
    /// The changes not taken yet, merged.
    pending: Mutex<Changes>,
    /// Woken when changes come in (a wake-up with nobody waiting is kept for the next wait).
    wake: Notify,
}

impl Inbox {
    fn put(&self, changes: Changes) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(changes);
        self.wake.notify_one();
    }

    fn take(&self) -> Changes {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One debounced batch of file system changes (or several, merged).
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    /// Every path an event named, once (none when `rescan`).
    paths: BTreeSet<PathBuf>,
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
                changes.bound();
                changes
            }
            Err(errors) => Self {
                paths: BTreeSet::new(),
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
        // One of each is enough to say what went wrong.
        for error in other.errors {
            if !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
        self.bound();
    }

    /// A rescan needs no paths; too many paths become a rescan.
    fn bound(&mut self) {
        if self.paths.len() > MAX_CHANGED_PATHS {
            self.rescan = true;
        }
        if self.rescan {
            self.paths.clear();
        }
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
    /// A re-index failed (the index was locked, say): the changes it was given are not in the
    /// index, so the next periodic pass re-indexes the whole repository.
    reindex_owed: bool,
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
            reindex_owed: false,
        })
    }

    /// What `changes` ask of this repository: nothing when none of its paths changed but
    /// enrich's own files.
    /// A re-index that failed before is owed first.
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
        } else if self.reindex_owed {
            Reindex::All
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
        // The rules of `enrich index`: `[enrichment.index]`, and the index's own files.
        let index_options = rule_options(&self.repo, &loaded.config.index);
        let indexed = self.reindex(reindex, index_options).await?;
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
            None => tracing::debug!(repo = %root, "idle pass: nothing to re-index or enrich"),
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
        if let Some(summary) = run.as_ref().ok().and_then(Option::as_ref)
            && summary.end == RunEnd::BackendsUnavailable
        {
            let backends: Vec<String> = summary.outages.iter().map(ToString::to_string).collect();
            tracing::warn!(
                repo = %root,
                "no backend could serve ({}); {} span(s) stay pending for the next pass",
                backends.join("; "),
                summary.unsent
            );
        }
        run?;
        Ok(line.is_some())
    }

    /// Runs the indexer on a blocking thread, with the connection kept between passes (the
    /// index is created when there is none, and an existing one checked before the first
    /// write, as [`Repo::open_for_index`] says).
    async fn reindex(
        &mut self,
        reindex: Reindex,
        options: IndexOptions,
    ) -> Result<Option<IndexReport>> {
        if reindex == Reindex::Nothing {
            return Ok(None);
        }
        let whole = reindex == Reindex::All;
        let db = self.index_db.take();
        let repo = self.repo.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut db = match db {
                Some(db) => db,
                None => match repo.open_for_index() {
                    Ok(db) => db,
                    Err(err) => return (None, Err(err)),
                },
            };
            let root = &repo.root;
            let report = match &reindex {
                Reindex::Paths(paths) => index_paths(&mut db, root, paths, &options, |_| {}),
                _ => index_repo(&mut db, root, &options, |_| {}),
            };
            (Some(db), report.map_err(index_error))
        })
        .await
        .context("the indexer stopped");
        let report = match outcome {
            Ok((db, Ok(report))) => {
                self.index_db = db;
                report
            }
            Ok((db, Err(err))) => {
                self.index_db = db;
                self.reindex_owed = true;
                return Err(err.context("cannot index the repository"));
            }
            Err(err) => {
                self.reindex_owed = true;
                return Err(err);
            }
        };
        self.reindex_owed &= !whole;
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
                let events = Arc::new(
                    JsonlSink::with_limit(&events_path, config.event_log)
                        .context("cannot open the event log")?,
                );
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
    use enrich_db::RunId;
    use enrich_index::{FileCounts, SpanCounts};
    use enrich_pipeline::RunEnd;

    use super::*;

    /// A served repository at a temporary root, its index and event log in the default places.
    fn served(dir: &Path, db: Option<&Path>) -> Served {
        Served::new(Repo::new(dir, db, None).expect("repo")).expect("served")
    }

    fn changes(paths: &[PathBuf]) -> Changes {
        Changes {
            paths: paths.iter().cloned().collect(),
            ..Changes::default()
        }
    }

    #[test]
    fn changes_to_enrichs_own_files_or_other_trees_ask_for_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let outside = tempfile::tempdir().expect("tempdir");
        let elsewhere_db = outside.path().join("index.db");
        let repo = served(dir.path(), None);
        let own = [
            ".llmc/rag/index_v2.db",
            ".llmc/rag/index_v2.db-wal",
            ".llmc/rag/index_v2.db-shm",
            "logs/enrichment_events.jsonl",
            "logs/enrichment_events.jsonl.1",
        ];
        for path in own {
            assert_eq!(
                repo.reindex_for(&changes(&[root.join(path)])),
                Reindex::Nothing,
                "{path}"
            );
        }
        assert_eq!(
            repo.reindex_for(&changes(&[outside.path().join("a.rs")])),
            Reindex::Nothing
        );
        // Everything else goes to the indexer, whose walk decides (`.git/`, ignored files).
        let others = [
            root.join("src/a.rs"),
            root.join(".git/index"),
            root.join("logs"),
        ];
        let mut all = others.to_vec();
        all.push(root.join(own[0]));
        assert_eq!(
            repo.reindex_for(&changes(&all)),
            Reindex::Paths(
                others
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            )
        );
        // An index elsewhere (`--db`) is enrich's own there.
        let repo = served(dir.path(), Some(&elsewhere_db));
        let wal = outside
            .path()
            .canonicalize()
            .expect("canonical")
            .join("index.db-wal");
        assert_eq!(repo.reindex_for(&changes(&[wal])), Reindex::Nothing);
    }

    #[test]
    fn lost_events_too_many_paths_or_a_failed_reindex_mean_the_whole_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let mut repo = served(dir.path(), None);
        let rescan = Changes {
            rescan: true,
            ..Changes::default()
        };
        assert_eq!(repo.reindex_for(&rescan), Reindex::All);

        let mut many = Changes::default();
        for batch in 0..3 {
            let paths: Vec<PathBuf> = (0..MAX_CHANGED_PATHS / 2)
                .map(|i| root.join(format!("f{batch}-{i}.rs")))
                .collect();
            many.merge(changes(&paths));
        }
        assert!(
            many.rescan && many.paths.is_empty(),
            "{} paths",
            many.paths.len()
        );
        assert_eq!(repo.reindex_for(&many), Reindex::All);

        let one = changes(&[root.join("a.rs")]);
        assert_eq!(
            repo.reindex_for(&one),
            Reindex::Paths(vec![root.join("a.rs")])
        );
        repo.reindex_owed = true;
        assert_eq!(repo.reindex_for(&one), Reindex::All);
        assert_eq!(repo.reindex_for(&Changes::default()), Reindex::Nothing);
    }

    #[tokio::test]
    async fn a_failed_reindex_is_owed_until_a_whole_one_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.py"), "def a():\n    return 1\n").expect("write");
        let not_an_index = dir.path().join("notes.txt");
        std::fs::write(&not_an_index, "not a database, and never overwritten\n").expect("write");
        let mut repo = served(dir.path(), Some(&not_an_index));
        let changed = Reindex::Paths(vec![dir.path().join("a.py")]);
        let err = repo
            .reindex(changed.clone(), IndexOptions::default())
            .await
            .expect_err("not an index");
        assert!(format!("{err:#}").contains("notes.txt"), "{err:#}");
        assert!(repo.reindex_owed);

        std::fs::remove_file(&not_an_index).expect("remove");
        let report = repo
            .reindex(changed, IndexOptions::default())
            .await
            .expect("reindex");
        assert_eq!(report.map(|r| r.files.added), Some(1));
        assert!(repo.reindex_owed, "some paths are no whole re-index");
        repo.reindex(Reindex::All, IndexOptions::default())
            .await
            .expect("reindex all");
        assert!(!repo.reindex_owed);
    }

    #[test]
    fn merged_changes_keep_each_path_and_error_once() {
        let inbox = Inbox::default();
        for _ in 0..2 {
            inbox.put(Changes {
                errors: vec!["too many open files".to_owned()],
                ..changes(&[PathBuf::from("/r/a.rs")])
            });
        }
        let taken = inbox.take();
        assert_eq!(taken.errors, ["too many open files"]);
        assert_eq!(taken.paths.len(), 1);
        assert_eq!(inbox.take(), Changes::default(), "taking empties the inbox");
    }

    #[test]
    fn a_pass_says_what_it_did_and_nothing_when_idle() {
        let indexed = IndexReport {
            files: FileCounts {
                changed: 1,
                removed: 1,
                unchanged: 5,
                ..FileCounts::default()
            },
            spans: SpanCounts {
                added: 2,
                removed: 3,
                ..SpanCounts::default()
            },
            ..IndexReport::default()
        };
        let run = RunSummary {
            run_id: RunId(7),
            end: RunEnd::Exhausted,
            total_pending: 2,
            held_elsewhere: Vec::new(),
            refresh_selected: None,
            attempted: 2,
            succeeded: 1,
            refreshed: 0,
            fell_back: 0,
            failed: 1,
            refresh_failed: 0,
            skipped: 1,
            cancelled: 0,
            unsent: 0,
            outages: Vec::new(),
            dead_lettered: 0,
            vanished: 0,
            batches: 1,
            duration: Duration::from_millis(5),
            budget_stop: None,
            tokens: 0,
            cost: 0.0,
            limits: Vec::new(),
        };
        let unchanged = IndexReport {
            files: FileCounts {
                unchanged: 6,
                ..FileCounts::default()
            },
            ..IndexReport::default()
        };
        let cases = [
            (
                Some(&indexed),
                Some(&run),
                Some(
                    "re-indexed 2 file(s) (0 added, 1 changed, 1 removed): 2 span(s) added, 3 removed; 1 span(s) enriched, 1 failed, 1 left for later (cooldown)",
                ),
            ),
            (
                Some(&indexed),
                None,
                Some(
                    "re-indexed 2 file(s) (0 added, 1 changed, 1 removed): 2 span(s) added, 3 removed",
                ),
            ),
            (
                None,
                Some(&run),
                Some("1 span(s) enriched, 1 failed, 1 left for later (cooldown)"),
            ),
            (Some(&unchanged), None, None),
            (None, None, None),
        ];
        for (indexed, run, expected) in cases {
            assert_eq!(describe(indexed, run).as_deref(), expected);
        }
    }

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
