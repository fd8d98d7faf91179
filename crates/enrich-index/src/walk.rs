//! Walking the repository: which files the index covers.

use std::path::{Component, Path, PathBuf};

use ignore::WalkBuilder;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::IndexError;
use crate::report::{FileProblem, SkipReason, SkippedFile};
use crate::scope::Scope;

/// The ignore file of LLMC's indexer, read with `.gitignore` syntax in every directory.
pub(crate) const RAGIGNORE: &str = ".ragignore";

/// Directories never walked, hidden files included or not: git's database, LLMC's index (and
/// so enrich's) and LLMC's older `.rag/` folder.
const SKIPPED_DIRS: [&str; 3] = [".git", ".llmc", ".rag"];

/// Files enrich or LLMC write, by name, in any directory: the config files and the event log
/// (`logs/enrichment_events.jsonl` by default, also when rotated). Indexed, each run would feed
/// the last one's events back to the model.
const OWN_FILES: [&str; 5] = [
    "enrich.toml",
    "llmc.toml",
    "enrichment_events.jsonl",
    "enrichment_events.jsonl.*",
    "enrichment_events.*.jsonl",
];

/// Generated files that are data rather than code: dependency lock files and minified bundles.
/// Indexed, they would be dozens of windows of hashes and versions, each an LLM call.
const GENERATED_NAMES: [&str; 10] = [
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "composer.lock",
    "go.sum",
];

/// Suffixes of minified files, skipped like [`GENERATED_NAMES`].
const GENERATED_SUFFIXES: [&str; 2] = [".min.js", ".min.css"];

/// Whether the walk skips the file named `name` as generated.
fn is_generated(name: &str) -> bool {
    GENERATED_NAMES.contains(&name) || GENERATED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A file the walk yielded.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Relative to the repo root, `/`-separated.
    pub(crate) rel: String,
    pub(crate) abs: PathBuf,
}

/// What the walk found.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Files to read, in path order.
    pub(crate) candidates: Vec<Candidate>,
    /// Files over the size limit (relative paths).
    pub(crate) too_large: Vec<String>,
    /// Files left out by a rule before reading them (secret, excluded, generated, enrich's own).
    pub(crate) skipped: Vec<SkippedFile>,
    /// Entries the walk could not read.
    pub(crate) problems: Vec<FileProblem>,
}

/// The rules that leave a file out by its path, compiled once per run.
#[derive(Debug)]
pub(crate) struct Exclusions {
    own: GlobSet,
    /// Files enrich writes elsewhere (the index database and its journals), relative paths.
    own_paths: Vec<String>,
    secret: GlobSet,
    exclude: GlobSet,
    include: GlobSet,
}

impl Exclusions {
    /// The built-in rules plus `exclude` and `include` (globs over relative paths; a glob
    /// without `/` matches the file name anywhere); `own_paths` are paths relative to the root.
    pub(crate) fn new(
        exclude: &[String],
        include: &[String],
        own_paths: Vec<String>,
    ) -> Result<Self, IndexError> {
        let secret: Vec<&str> = enrich_secrets::SECRET_FILES
            .iter()
            .map(|f| f.glob)
            .collect();
        Ok(Self {
            own: glob_set(&OWN_FILES, "own files")?,
            own_paths,
            secret: glob_set(&secret, "secret files")?,
            exclude: glob_set(exclude, "exclude")?,
            include: glob_set(include, "include")?,
        })
    }

    /// Why the file at `rel` is left out, if it is.
    pub(crate) fn reason(&self, rel: &str) -> Option<SkipReason> {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if self.own.is_match(rel) || self.own_paths.iter().any(|p| p == rel) {
            Some(SkipReason::Own)
        } else if is_generated(name) {
            Some(SkipReason::Generated)
        } else if self.include.is_match(rel) {
            None
        } else if self.secret.is_match(rel) {
            Some(SkipReason::Secret)
        } else if self.exclude.is_match(rel) {
            Some(SkipReason::Excluded)
        } else {
            None
        }
    }
}

/// Compiles `globs` as [`Exclusions`] reads them: case-insensitive, `*` not crossing `/`, and a
/// glob without `/` anchored at any directory.
fn glob_set<S: AsRef<str>>(globs: &[S], option: &'static str) -> Result<GlobSet, IndexError> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let glob = glob.as_ref().trim();
        let glob = glob.strip_prefix('/').unwrap_or(glob);
        let anchored = if glob.contains('/') {
            glob.to_owned()
        } else {
            format!("**/{glob}")
        };
        let compiled = GlobBuilder::new(&anchored)
            .case_insensitive(true)
            .literal_separator(true)
            .build()
            .map_err(|e| IndexError::InvalidGlob {
                option,
                glob: glob.to_owned(),
                reason: e.kind().to_string(),
            })?;
        set.add(compiled);
    }
    set.build().map_err(|e| IndexError::InvalidGlob {
        option,
        glob: String::new(),
        reason: e.to_string(),
    })
}

/// `path` (absolute, or relative to the current directory) relative to `root`, if inside it;
/// the file itself need not exist (a journal the database has not written yet).
fn relative_to(root: &Path, path: &Path) -> Option<String> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let parent = std::fs::canonicalize(parent).ok()?;
    let rel = parent.join(name);
    let rel = rel.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Walks `root` honouring `.gitignore`, `.ignore`, `.ragignore` (in every directory, even
/// outside a git repository) and git's own excludes, skipping `.git/`, `.llmc/` and `.rag/`,
/// symbolic links, hidden directories and files unless `options.include_hidden`, and the files
/// [`Exclusions`] built from `options` leave out (listed with their reason, hidden ones too: a
/// `.env` is reported as a secret, not silently passed over). `root` is canonical. With a
/// `scope`, only the files in it are yielded, and only the directories on the way to them are
/// read.
pub(crate) fn walk(
    root: &Path,
    options: &crate::IndexOptions,
    scope: Option<&Scope>,
) -> Result<Walked, IndexError> {
    let scope = scope.cloned().map(|scope| (root.to_path_buf(), scope));
    let own_paths = options
        .own_files
        .iter()
        .filter_map(|path| relative_to(root, path))
        .collect();
    let exclusions = Exclusions::new(&options.exclude, &options.include, own_paths)?;
    let (include_hidden, max_file_bytes) = (options.include_hidden, options.max_file_bytes);
    let mut builder = WalkBuilder::new(root);
    builder
        // Hidden files are judged below, so secret ones are reported.
        .hidden(false)
        // Ignore files above the root belong to another tree.
        .parents(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(RAGIGNORE)
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            let name = entry.file_name();
            !(is_dir
                && entry.depth() > 0
                && (SKIPPED_DIRS.iter().any(|d| name == std::ffi::OsStr::new(d))
                    || (!include_hidden && is_hidden(name))))
                && scope.as_ref().is_none_or(|(root, scope)| {
                    entry.depth() == 0
                        || relative(root, entry.path()).is_some_and(|rel| {
                            if is_dir {
                                scope.enters(&rel)
                            } else {
                                scope.covers(&rel)
                            }
                        })
                })
        });
    let mut walked = Walked::default();
    for result in builder.build() {
        let entry = match result {
            Ok(entry) => entry,
            Err(err) => {
                walked.problems.push(FileProblem {
                    path: error_path(&err)
                        .and_then(|p| relative(root, p))
                        .unwrap_or_default(),
                    message: format!("skipped by the walk: {err}"),
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some(rel) = relative(root, entry.path()) else {
            walked.problems.push(FileProblem {
                path: entry.path().to_string_lossy().into_owned(),
                message: "skipped: the path is not valid UTF-8, and index paths are text"
                    .to_owned(),
            });
            continue;
        };
        if let Some(reason) = exclusions.reason(&rel) {
            walked.skipped.push(SkippedFile { path: rel, reason });
            continue;
        }
        if !include_hidden && is_hidden(entry.file_name()) {
            continue;
        }
        match entry.metadata() {
            Ok(meta) if meta.len() > max_file_bytes => walked.too_large.push(rel),
            Ok(_) => walked.candidates.push(Candidate {
                rel,
                abs: entry.into_path(),
            }),
            Err(err) => walked.problems.push(FileProblem {
                path: rel,
                message: format!("skipped: cannot read its metadata: {err}"),
            }),
        }
    }
    walked.candidates.sort_by(|a, b| a.rel.cmp(&b.rel));
    walked.too_large.sort();
    walked.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walked)
}

/// The files an indexing run of `repo_root` with `options` leaves out by rule (secret files,
/// `exclude`, generated files, enrich's own) or for their size, in path order, found by walking
/// the tree without reading any file. For `enrich plan`, which reports them without indexing.
///
/// # Errors
///
/// [`IndexError::Root`] when the root cannot be resolved, [`IndexError::InvalidGlob`] for a
/// bad `exclude` or `include` glob.
pub fn skipped_files(
    repo_root: &Path,
    options: &crate::IndexOptions,
) -> Result<Vec<SkippedFile>, IndexError> {
    let root = std::fs::canonicalize(repo_root).map_err(|source| IndexError::Root {
        path: repo_root.to_path_buf(),
        source,
    })?;
    let walked = walk(&root, options, None)?;
    let mut skipped = walked.skipped;
    skipped.extend(walked.too_large.into_iter().map(|path| SkippedFile {
        path,
        reason: SkipReason::TooLarge,
    }));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(skipped)
}

/// Whether a file or directory name is hidden (starts with `.`).
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// `path` relative to `root`, `/`-separated; `None` outside the root or when not UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    Some(parts?.join("/"))
}

/// The path an ignore error is about, if it names one.
fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}
