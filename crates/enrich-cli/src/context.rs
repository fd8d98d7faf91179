//! What every command starts from: the repository, its index and its configuration, resolved
//! from the global flags.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use enrich_config::LoadedConfig;
use enrich_db::{Db, OpenMode, OpenOptions, default_db_path};

use crate::cli::Global;
use crate::exit::usage;

/// What marks a repository root, looked for from the current directory up when `--repo` is not
/// given: LLMC's (and enrich's) index directory, the two config files, git's directory (or the
/// `.git` file of a worktree or submodule).
pub(crate) const ROOT_MARKERS: [&str; 4] = [".llmc", "enrich.toml", "llmc.toml", ".git"];

/// The repository around `start`: the nearest of `start` and its ancestors that holds one of
/// [`ROOT_MARKERS`], as git finds its work tree; `start` itself when none does.
pub(crate) fn find_repo_root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|dir| ROOT_MARKERS.iter().any(|m| dir.join(m).exists()))
        .unwrap_or(start)
        .to_path_buf()
}

/// The repository a command works on.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    /// The repository root, as given or found (span paths are relative to it).
    pub(crate) root: PathBuf,
    /// The index database.
    pub(crate) db_path: PathBuf,
    /// `--config`, if given.
    pub(crate) config_path: Option<PathBuf>,
    /// Whether a writing command of this process has checked the index (SQLite's
    /// `quick_check`): the first read-write open checks, later ones (`watch`'s passes) trust it.
    checked: Arc<AtomicBool>,
}

impl Repo {
    /// The repository of the global flags.
    pub(crate) fn from_flags(global: &Global) -> Result<Self> {
        Self::new(&global.repo, global.db.as_deref(), global.config.as_deref())
    }

    /// The repository at `root`; `db` and `config` as the flags give them.
    pub(crate) fn new(root: &Path, db: Option<&Path>, config: Option<&Path>) -> Result<Self> {
        if !root.is_dir() {
            return Err(usage(format!(
                "repository {} is not a directory; give the repository's root directory",
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
            db_path: db.map_or_else(|| default_db_path(root), Path::to_path_buf),
            config_path: config.map(Path::to_path_buf),
            checked: Arc::default(),
        })
    }

    /// Loads the configuration (defaults < file < env), logging a warning for each key it
    /// ignores.
    pub(crate) fn load_config(&self) -> Result<LoadedConfig> {
        let loaded = self.load_config_quietly()?;
        for key in loaded.ignored_keys() {
            tracing::warn!("{key}");
        }
        Ok(loaded)
    }

    /// Loads the configuration without logging anything (`enrich config` lists the ignored keys
    /// itself).
    pub(crate) fn load_config_quietly(&self) -> Result<LoadedConfig> {
        enrich_config::load(&self.root, self.config_path.as_deref())
            .context("cannot load the configuration")
    }

    /// Opens the index for commands that only look: enrich's tables migrated first when they
    /// are older and the file is writable, read as they are otherwise
    /// ([`OpenMode::ReadUpgrading`]); the connection is read-only.
    pub(crate) fn open_read_only(&self) -> Result<Db> {
        let options = OpenOptions {
            mode: OpenMode::ReadUpgrading,
            ..OpenOptions::default()
        };
        Db::open_with(&self.db_path, &options).with_context(|| self.open_failed())
    }

    /// Opens the index as [`Self::open_read_only`] does, after SQLite's `quick_check` of every
    /// page, for `enrich doctor`: a damaged file is [`enrich_db::DbError::Damaged`], and nothing
    /// is migrated in it.
    pub(crate) fn open_checked(&self) -> Result<Db> {
        let options = OpenOptions {
            mode: OpenMode::ReadUpgrading,
            quick_check: true,
            ..OpenOptions::default()
        };
        Db::open_with(&self.db_path, &options).with_context(|| self.open_failed())
    }

    /// Opens the existing index read-write, for commands that change a little, checked as
    /// [`Self::open_for_run`] says.
    pub(crate) fn open_existing(&self) -> Result<Db> {
        self.open_writable(OpenOptions::default())
    }

    /// Opens the existing index read-write, as a run does. A missing index is an error, not
    /// created: without LLMC's indexer it would hold no span, and a mistyped `--repo` would
    /// leave an empty index behind.
    ///
    /// A damaged index is refused before anything is written: the first read-write open of
    /// the process runs SQLite's `quick_check` of every page first (0.4 s on the bench's index
    /// of a million spans; docs/database.md). Later opens (the passes of `watch`) skip it;
    /// damage that appears after the check is reported when SQLite meets it.
    pub(crate) fn open_for_run(&self) -> Result<Db> {
        self.open_writable(OpenOptions {
            mode: OpenMode::Existing,
            ..OpenOptions::default()
        })
    }

    /// Opens the index read-write for the indexer (`enrich index`, `watch`'s re-index),
    /// creating it when there is none. An existing index is checked as [`Self::open_for_run`]
    /// says, so the indexer never writes into a damaged one; a new index needs no check.
    pub(crate) fn open_for_index(&self) -> Result<Db> {
        if !self.db_path.exists() {
            self.checked.store(true, Ordering::Relaxed);
        }
        self.open_writable(OpenOptions {
            mode: OpenMode::CreateIfMissing,
            ..OpenOptions::default()
        })
    }

    fn open_writable(&self, options: OpenOptions) -> Result<Db> {
        let options = OpenOptions {
            quick_check: !self.checked.load(Ordering::Relaxed),
            ..options
        };
        let db = Db::open_with(&self.db_path, &options).with_context(|| self.open_failed())?;
        self.checked.store(true, Ordering::Relaxed);
        Ok(db)
    }

    fn open_failed(&self) -> String {
        format!("cannot open the index {}", self.db_path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_directory_with_a_marker_is_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outer = dir.path().join("outer");
        let inner = outer.join("vendor/inner");
        let deep = inner.join("src/deep");
        std::fs::create_dir_all(&deep).expect("mkdir");
        for marker in ROOT_MARKERS {
            let marked = dir.path().join(format!("m{}", marker.replace('.', "_")));
            let sub = marked.join("a/b");
            std::fs::create_dir_all(&sub).expect("mkdir");
            if marker.ends_with(".toml") {
                std::fs::write(marked.join(marker), "").expect("write marker");
            } else {
                std::fs::create_dir_all(marked.join(marker)).expect("mkdir marker");
            }
            assert_eq!(find_repo_root(&sub), marked, "{marker}");
            assert_eq!(find_repo_root(&marked), marked, "{marker}");
        }
        // The nearest wins: a `.git` file (a submodule) inside a repository with an index.
        std::fs::create_dir_all(outer.join(".llmc")).expect("mkdir");
        std::fs::write(inner.join(".git"), "gitdir: ../.git/modules/inner").expect("write");
        assert_eq!(find_repo_root(&deep), inner);
        assert_eq!(find_repo_root(&outer.join("vendor")), outer);
    }
}
