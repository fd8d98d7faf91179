//! The indexing run: walk, read and split in parallel, write in order in batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Instant, UNIX_EPOCH};

use enrich_db::{Db, DbError, FileRecord, IndexWriteReport, IndexedFile, OrphanCounts, SpanRecord};
use enrich_types::{file_hash, span_hash};

use crate::error::IndexError;
use crate::lang::{CLASSIFIER_VERSION, classify, language_for};
use enrich_secrets::Scanner;

use crate::report::{
    FileOutcome, FileProblem, IndexEvent, IndexReport, SecretSpan, SkipReason, SkippedFile,
};
use crate::scope::Scope;
use crate::split::FileSplitter;
use crate::walk::{Candidate, walk};

/// The default size limit: files larger than 1 MiB are not indexed.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The default window size for text that is neither code nor Markdown, in lines.
pub const DEFAULT_WINDOW_LINES: usize = 60;

/// The default number of changed files written per transaction.
pub const DEFAULT_BATCH_FILES: usize = 256;

/// How many bytes git looks at to decide that a file is binary.
const BINARY_SNIFF_BYTES: usize = 8000;

/// Settings of an indexing run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// Files larger than this many bytes are skipped (and removed from the index).
    pub max_file_bytes: u64,
    /// Target size of a window of lines, for text that is neither code nor Markdown and for
    /// oversized Markdown sections; a window is cut hard at twice this. At least 1.
    pub window_lines: usize,
    /// Threads that read and parse files; 0 uses every core.
    pub threads: usize,
    /// Changed files written per transaction. At least 1.
    pub batch_files: usize,
    /// Index hidden files and directories (names starting with `.`) too; `.git/` and `.llmc/`
    /// are never indexed.
    pub include_hidden: bool,
    /// Keep enrichments (and embeddings) whose span is gone instead of deleting them at the end
    /// of the run; they are counted either way. A kept enrichment comes back to life if its
    /// exact content is indexed again.
    pub keep_orphans: bool,
    /// Globs of more files to leave out (`[enrichment.index] exclude`): over paths relative to
    /// the root, `/`-separated; a glob without `/` matches the file name in any directory;
    /// case-insensitive.
    pub exclude: Vec<String>,
    /// Globs of files to index although the built-in secret-file list or [`Self::exclude`]
    /// names them (`[enrichment.index] include`).
    pub include: Vec<String>,
    /// Files enrich writes at paths of their own (the index database and its journals, an
    /// event log given with `--events`): never indexed when they lie inside the root.
    pub own_files: Vec<PathBuf>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            window_lines: DEFAULT_WINDOW_LINES,
            threads: 0,
            batch_files: DEFAULT_BATCH_FILES,
            include_hidden: false,
            keep_orphans: false,
            exclude: Vec::new(),
            include: Vec::new(),
            own_files: Vec::new(),
        }
    }
}

impl IndexOptions {
    fn validate(&self) -> Result<(), IndexError> {
        if self.window_lines == 0 {
            return Err(IndexError::InvalidOption {
                option: "window_lines",
                reason: "a window holds at least 1 line",
            });
        }
        if self.batch_files == 0 {
            return Err(IndexError::InvalidOption {
                option: "batch_files",
                reason: "a batch holds at least 1 file",
            });
        }
        Ok(())
    }

    fn thread_count(&self, files: usize) -> usize {
        let wanted = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        wanted.min(files).max(1)
    }
}

/// Indexes the repository at `repo_root` into `db`, incrementally.
///
/// Walks the tree (`.gitignore`, `.ignore` and `.ragignore` honoured; `.git/`, `.llmc/`,
/// `.rag/`, hidden files, symbolic links, binary files, files over the size limit, dependency
/// lock files and minified bundles, files holding secrets and enrich's own files skipped, each
/// skipped file reported with its reason), reads and hashes every file on [`IndexOptions::threads`] threads,
/// and splits the files whose content hash differs from the index's into spans. Files are
/// written in path order, many per transaction: a changed file keeps the row, id and enrichment
/// of every span whose content did not change. Files the walk no longer yields are removed with
/// their spans. At the end, enrichments and embeddings left without a span are deleted (or
/// kept, see [`IndexOptions::keep_orphans`]).
///
/// An unchanged repository is read but nothing is written. `on_event` is called on this
/// thread as the run goes (for a progress bar). A file that cannot be read is reported in
/// [`IndexReport::problems`] and keeps its rows; only a database failure or an unusable root
/// stops the run, after which the batches already written stay and a new run resumes.
pub fn index_repo(
    db: &mut Db,
    repo_root: &Path,
    options: &IndexOptions,
    on_event: impl FnMut(&IndexEvent<'_>),
) -> Result<IndexReport, IndexError> {
    index(db, repo_root, None, options, on_event)
}

/// Re-indexes exactly `paths` of the repository at `repo_root`, as [`index_repo`] would have
/// indexed them, and nothing else: what a file watcher calls with the paths that changed.
///
/// A path is absolute (under `repo_root`, as given or canonical) or relative to it; paths
/// outside the repository are ignored. A file is added, updated or removed by what is on disk
/// now and by the same rules as the walk of [`index_repo`] (ignore files, hidden files,
/// `.git/` and `.llmc/`, secret files, enrich's own files, [`IndexOptions::exclude`], binaries,
/// size limit, generated files): an ignored path is never indexed, and an indexed file that is
/// now ignored or gone is removed. A directory stands for
/// every file under it (a directory renamed or deleted), the root for the whole repository,
/// and an ignore file (`.gitignore`, `.ignore`, `.ragignore`) for the directory it governs.
/// Only the directories on the way to the paths are read. Orphaned enrichments are handled as
/// in [`index_repo`] when the run wrote something; a run that wrote nothing does not look for
/// them (and reports none).
///
/// # Errors
///
/// As [`index_repo`].
pub fn index_paths(
    db: &mut Db,
    repo_root: &Path,
    paths: &[PathBuf],
    options: &IndexOptions,
    on_event: impl FnMut(&IndexEvent<'_>),
) -> Result<IndexReport, IndexError> {
    index(db, repo_root, Some(paths), options, on_event)
}

/// [`index_repo`] when `paths` is `None`, else [`index_paths`].
fn index(
    db: &mut Db,
    repo_root: &Path,
    paths: Option<&[PathBuf]>,
    options: &IndexOptions,
    mut on_event: impl FnMut(&IndexEvent<'_>),
) -> Result<IndexReport, IndexError> {
    let started = Instant::now();
    options.validate()?;
    if db.is_read_only() {
        return Err(DbError::ReadOnly {
            path: db.path().to_path_buf(),
            action: "index the repository",
        }
        .into());
    }
    let root = std::fs::canonicalize(repo_root).map_err(|source| IndexError::Root {
        path: repo_root.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(IndexError::NotADirectory {
            path: repo_root.to_path_buf(),
        });
    }

    let scope = paths.map(|paths| Scope::new(repo_root, &root, paths));
    if scope.as_ref().is_some_and(Scope::is_empty) {
        return Ok(IndexReport::default());
    }
    let mut walked = walk(&root, options, scope.as_ref())?;
    // Files over the size limit go through the same stream as the others (without being
    // opened), so the count announced after the walk, the progress and the summary agree.
    let too_large: HashSet<String> = walked.too_large.drain(..).collect();
    walked
        .candidates
        .extend(too_large.iter().map(|rel| Candidate {
            rel: rel.clone(),
            abs: root.join(rel),
        }));
    walked.candidates.sort_by(|a, b| a.rel.cmp(&b.rel));
    let known: HashMap<String, Known> = db
        .indexed_files()?
        .into_iter()
        .filter(|f| scope.as_ref().is_none_or(|s| s.covers(&f.file.path)))
        .map(|f| {
            let known = Known {
                file_hash: f.file.file_hash,
                split: f.spans + f.shared > 0,
            };
            (f.file.path, known)
        })
        .collect();
    let mut report = IndexReport::default();
    report.files.seen = walked.candidates.len() as u64;
    // Files left out by rule; binary and too large ones are counted as the stream reaches them.
    for skipped in &walked.skipped {
        let files = &mut report.files;
        match skipped.reason {
            SkipReason::Secret => files.secret += 1,
            SkipReason::Excluded => files.excluded += 1,
            SkipReason::Generated => files.generated += 1,
            SkipReason::Own => files.own += 1,
            SkipReason::TooLarge | SkipReason::Binary => {}
        }
    }
    report.skipped = std::mem::take(&mut walked.skipped);

    // Indexed files the walk did not yield go, unless the walk failed on them.
    let yielded: HashSet<&str> = walked.candidates.iter().map(|c| c.rel.as_str()).collect();
    let unreadable: Vec<&str> = walked.problems.iter().map(|p| p.path.as_str()).collect();
    let mut removed: Vec<String> = known
        .keys()
        .filter(|path| !yielded.contains(path.as_str()))
        .filter(|path| !unreadable.iter().any(|u| is_under(path, u)))
        .cloned()
        .collect();
    removed.sort();
    report.problems = walked.problems;

    let total = walked.candidates.len() as u64;
    on_event(&IndexEvent::Walked { files: total });
    let mut writer = Writer {
        db,
        known: &known,
        batch: Vec::new(),
        removed,
        batch_files: options.batch_files,
        written: IndexWriteReport::default(),
        report: &mut report,
        done: 0,
        total,
    };
    process_in_parallel(
        &root,
        &walked.candidates,
        &known,
        &too_large,
        options,
        &mut writer,
        |e| on_event(e),
    )?;
    writer.flush()?;
    let written = writer.written;
    report.skipped.sort_by(|a, b| a.path.cmp(&b.path));

    report.files.added = written.files_added;
    report.files.changed = written.files_updated;
    report.files.unchanged += written.files_unchanged;
    report.files.removed = written.files_removed;
    report.spans.added = written.spans_added;
    report.spans.kept = written.spans_kept;
    report.spans.moved = written.spans_moved;
    report.spans.shared = written.spans_shared;
    report.spans.removed = written.spans_removed;
    report.spans.duplicate = written.spans_duplicate;

    // A re-index of some paths that wrote nothing left no orphan: no need to count them (three
    // scans of the span-keyed tables), which a watcher would do for every change it ignores.
    let orphans = if scope.is_some() && written == IndexWriteReport::default() {
        OrphanCounts::default()
    } else {
        db.orphan_counts()?
    };
    if options.keep_orphans {
        report.orphans.enrichments_kept = orphans.enrichments;
        report.orphans.embeddings_kept = orphans.embeddings;
    } else if orphans.enrichments + orphans.embeddings > 0 {
        let removed = db.remove_orphans()?;
        report.orphans.enrichments_removed = removed.enrichments;
        report.orphans.embeddings_removed = removed.embeddings;
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// What the index knows of a file before the run.
struct Known {
    file_hash: String,
    /// Whether the file has spans, its own or shared with the file that owns them. LLMC's
    /// indexer stores files of the languages it cannot split (Rust, C, JSON, …) without spans;
    /// such a file is split even when its hash matches (as is a copy of another file indexed
    /// before shared spans were recorded).
    split: bool,
}

/// Whether `path` is `dir` or lies under it (`dir` empty: unknown, matches nothing).
fn is_under(path: &str, dir: &str) -> bool {
    !dir.is_empty()
        && path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a worker made of one file.
enum Processed {
    Unchanged,
    Split(FileRecord, Vec<SecretSpan>),
    Binary,
    TooLarge,
    /// Holds enrich's events.
    Own,
    Vanished,
    Failed(String),
}

/// Reads and splits the candidates on worker threads; hands the results to `writer` on this
/// thread in candidate order, so span ids follow path order and runs are reproducible.
fn process_in_parallel(
    root: &Path,
    candidates: &[Candidate],
    known: &HashMap<String, Known>,
    too_large: &HashSet<String>,
    options: &IndexOptions,
    writer: &mut Writer<'_>,
    mut on_event: impl FnMut(&IndexEvent<'_>),
) -> Result<(), IndexError> {
    let threads = options.thread_count(candidates.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Room for a whole batch, so workers keep parsing while the writer commits one.
    let capacity = options.batch_files.max(threads * 16);
    let scanner = Scanner::new();
    let scanner = &scanner;
    let (tx, rx) = mpsc::sync_channel::<(usize, Processed)>(capacity);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    let mut splitter = FileSplitter::new(options.window_lines);
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(candidate) = candidates.get(i) else {
                            break;
                        };
                        let processed = if too_large.contains(&candidate.rel) {
                            Processed::TooLarge
                        } else {
                            let known = known.get(&candidate.rel);
                            process(candidate, known, &mut splitter, scanner, options)
                        };
                        if tx.send((i, processed)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);

        // Results arrive roughly in order; the few that overtake wait here.
        let mut waiting = BTreeMap::new();
        let mut next_to_write = 0usize;
        let mut outcome = Ok(());
        'receive: for (i, processed) in rx.iter() {
            waiting.insert(i, processed);
            while let Some(processed) = waiting.remove(&next_to_write) {
                let candidate = &candidates[next_to_write];
                next_to_write += 1;
                if let Err(e) = writer.handle(candidate, processed, &mut on_event) {
                    outcome = Err(e);
                    stop.store(true, Ordering::Relaxed);
                    break 'receive;
                }
            }
        }
        // Dropping the receiver unblocks workers waiting to send after a failure.
        drop(rx);
        let panicked = workers.into_iter().any(|w| w.join().is_err());
        match (outcome, panicked) {
            (Err(e), _) => Err(e),
            (Ok(()), true) => Err(IndexError::WorkerPanicked {
                root: root.to_path_buf(),
            }),
            (Ok(()), false) => Ok(()),
        }
    })
}

/// Reads, hashes and (when changed) splits one file.
fn process(
    candidate: &Candidate,
    known: Option<&Known>,
    splitter: &mut FileSplitter,
    scanner: &Scanner,
    options: &IndexOptions,
) -> Processed {
    let mut file = match File::open(&candidate.abs) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Processed::Vanished,
        Err(e) => return Processed::Failed(format!("cannot open it: {e}")),
    };
    let mtime = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let mut bytes = Vec::new();
    // One byte over the limit is enough to know the file grew past it.
    if let Err(e) = (&mut file)
        .take(options.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
    {
        return Processed::Failed(format!("cannot read it: {e}"));
    }
    if bytes.len() as u64 > options.max_file_bytes {
        return Processed::TooLarge;
    }
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Processed::Binary;
    }
    if is_event_log(&bytes) {
        return Processed::Own;
    }
    let hash = file_hash(&bytes);
    // A file that is not blank always has a span once split.
    if known.is_some_and(|k| k.file_hash == hash && (k.split || bytes.trim_ascii().is_empty())) {
        return Processed::Unchanged;
    }
    let lang = language_for(&candidate.rel, &bytes);
    let class = classify(&candidate.rel, &bytes);
    let mut secrets = Vec::new();
    let spans = splitter
        .split(lang, &candidate.rel, &bytes)
        .into_iter()
        .map(|s| {
            // Scanned as a run reads it, so the report and the run agree on every span.
            let source = String::from_utf8_lossy(&bytes[s.byte_start..s.byte_end]);
            let rules = scanner.rules_in(&source);
            if !rules.is_empty() {
                secrets.push(SecretSpan {
                    path: candidate.rel.clone(),
                    start_line: s.start_line,
                    end_line: s.end_line,
                    rules,
                });
            }
            SpanRecord {
                span_hash: span_hash(lang.name, &bytes[s.byte_start..s.byte_end]),
                symbol: s.symbol,
                kind: s.kind.to_owned(),
                start_line: s.start_line,
                end_line: s.end_line,
                byte_start: s.byte_start as u64,
                byte_end: s.byte_end as u64,
                // A doc comment is stored in the index as it is: redact it like a prompt.
                doc_hint: s
                    .doc_hint
                    .map(|hint| scanner.redact(&hint).text.into_owned()),
                slice_type: Some(class.slice_type.to_owned()),
                slice_language: class.slice_language.map(str::to_owned),
                classifier_confidence: Some(class.confidence),
                classifier_version: Some(CLASSIFIER_VERSION.to_owned()),
            }
        })
        .collect();
    Processed::Split(
        FileRecord {
            file: IndexedFile {
                path: candidate.rel.clone(),
                lang: lang.name.to_owned(),
                file_hash: hash,
                size: bytes.len() as u64,
                mtime,
            },
            spans,
        },
        secrets,
    )
}

/// Whether `bytes` are an enrich event log (at a path of its own, `enrich run --events`): its
/// first line is one of enrich's events, a JSON object that starts with its `type` tag and
/// carries a `run_id` (see `enrich_pipeline::Event`).
fn is_event_log(bytes: &[u8]) -> bool {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    first.starts_with(br#"{"type":""#) && first.windows(9).any(|w| w == br#""run_id":"#)
}

/// The single writer: counts outcomes, batches changed files and removals, reports progress.
struct Writer<'a> {
    db: &'a mut Db,
    known: &'a HashMap<String, Known>,
    batch: Vec<FileRecord>,
    removed: Vec<String>,
    batch_files: usize,
    written: IndexWriteReport,
    report: &'a mut IndexReport,
    done: u64,
    total: u64,
}

impl Writer<'_> {
    fn handle(
        &mut self,
        candidate: &Candidate,
        processed: Processed,
        on_event: &mut impl FnMut(&IndexEvent<'_>),
    ) -> Result<(), IndexError> {
        let indexed = self.known.contains_key(&candidate.rel);
        let files = &mut self.report.files;
        let outcome = match processed {
            Processed::Unchanged => {
                files.unchanged += 1;
                FileOutcome::Unchanged
            }
            Processed::Split(record, secrets) => {
                self.batch.push(record);
                self.report.spans.with_secrets += secrets.len() as u64;
                self.report.secret_spans.extend(secrets);
                if indexed {
                    FileOutcome::Changed
                } else {
                    FileOutcome::Added
                }
            }
            Processed::Binary => {
                files.binary += 1;
                FileOutcome::Binary
            }
            Processed::Own => {
                files.own += 1;
                FileOutcome::Own
            }
            Processed::TooLarge => {
                files.too_large += 1;
                FileOutcome::TooLarge
            }
            Processed::Vanished => FileOutcome::Vanished,
            Processed::Failed(message) => {
                self.report.problems.push(FileProblem {
                    path: candidate.rel.clone(),
                    message,
                });
                FileOutcome::Failed
            }
        };
        let skipped = match outcome {
            FileOutcome::Binary => Some(SkipReason::Binary),
            FileOutcome::TooLarge => Some(SkipReason::TooLarge),
            FileOutcome::Own => Some(SkipReason::Own),
            _ => None,
        };
        if let Some(reason) = skipped {
            self.report.skipped.push(SkippedFile {
                path: candidate.rel.clone(),
                reason,
            });
        }
        if indexed && (skipped.is_some() || outcome == FileOutcome::Vanished) {
            self.removed.push(candidate.rel.clone());
        }
        self.done += 1;
        on_event(&IndexEvent::File {
            path: &candidate.rel,
            outcome,
            done: self.done,
            total: self.total,
        });
        if self.batch.len() >= self.batch_files {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending files and removals in one transaction; nothing when there are none.
    fn flush(&mut self) -> Result<(), IndexError> {
        if self.batch.is_empty() && self.removed.is_empty() {
            return Ok(());
        }
        let written = self.db.write_index_batch(&self.batch, &self.removed)?;
        self.written.add(&written);
        self.batch.clear();
        self.removed.clear();
        Ok(())
    }
}
