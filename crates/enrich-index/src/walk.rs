//! Walking the repository: which files the index covers.

use std::path::{Component, Path, PathBuf};

use ignore::WalkBuilder;

use crate::report::FileProblem;
use crate::scope::Scope;

/// The ignore file of LLMC's indexer, read with `.gitignore` syntax in every directory.
pub(crate) const RAGIGNORE: &str = ".ragignore";

/// Directories never walked, hidden files included or not: git's database and LLMC's (and so
/// enrich's) index.
const SKIPPED_DIRS: [&str; 2] = [".git", ".llmc"];

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
    /// Entries the walk could not read.
    pub(crate) problems: Vec<FileProblem>,
}

/// Walks `root` honouring `.gitignore`, `.ignore`, `.ragignore` (in every directory, even
/// outside a git repository) and git's own excludes, skipping `.git/` and `.llmc/`, symbolic
/// links, generated files (lock files, minified bundles), and hidden files unless
/// `include_hidden`. With a `scope`, only the files in it are yielded, and only the directories
/// on the way to them are read.
pub(crate) fn walk(
    root: &Path,
    include_hidden: bool,
    max_file_bytes: u64,
    scope: Option<&Scope>,
) -> Walked {
    let scope = scope.cloned().map(|scope| (root.to_path_buf(), scope));
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(!include_hidden)
        // Ignore files above the root belong to another tree.
        .parents(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(RAGIGNORE)
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            !(is_dir
                && entry.depth() > 0
                && SKIPPED_DIRS
                    .iter()
                    .any(|d| entry.file_name() == std::ffi::OsStr::new(d)))
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
        if !entry.file_type().is_some_and(|t| t.is_file())
            || entry.file_name().to_str().is_some_and(is_generated)
        {
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
    walked
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
