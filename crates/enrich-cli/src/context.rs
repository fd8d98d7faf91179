//! What every command starts from: the repository, its index and its configuration, resolved
//! from the global flags.

use std::path::{Path, PathBuf};

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
        })
    }

    /// Loads the configuration (defaults < file < env), logging a warning for each key it
    /// ignores.
    pub(crate) fn load_config(&self) -> Result<LoadedConfig> {
        let loaded = self.load_config_quietly()?;
        for key in loaded.ignored_keys() {
            tracing::warn!("{}", ignored_key_warning(key, loaded.file.as_deref()));
        }
        Ok(loaded)
    }

    /// Loads the configuration without logging anything (`enrich config` lists the ignored keys
    /// itself).
    pub(crate) fn load_config_quietly(&self) -> Result<LoadedConfig> {
        enrich_config::load(&self.root, self.config_path.as_deref())
            .context("cannot load the configuration")
    }

    /// Opens the index read-only, for commands that only look.
    pub(crate) fn open_read_only(&self) -> Result<Db> {
        Db::open_read_only(&self.db_path).with_context(|| self.open_failed())
    }

    /// Opens the existing index read-write, for commands that change a little.
    pub(crate) fn open_existing(&self) -> Result<Db> {
        Db::open(&self.db_path).with_context(|| self.open_failed())
    }

    /// Opens the existing index read-write for a run, with the configured dead-letter
    /// threshold. A missing index is an error, not created: without LLMC's indexer it would hold
    /// no span, and a mistyped `--repo` would leave an empty index behind.
    pub(crate) fn open_for_run(&self, max_failures_per_span: u32) -> Result<Db> {
        let options = OpenOptions {
            mode: OpenMode::Existing,
            max_failures_per_span,
            ..OpenOptions::default()
        };
        Db::open_with(&self.db_path, &options).with_context(|| self.open_failed())
    }

    fn open_failed(&self) -> String {
        format!("cannot open the index {}", self.db_path.display())
    }
}

/// The warning for a key enrich does not read; `key` comes from
/// [`LoadedConfig::ignored_keys`], which names the origin of `ENRICH_CHAIN_JSON` keys itself.
pub(crate) fn ignored_key_warning(key: &str, file: Option<&Path>) -> String {
    let origin = match file {
        Some(file) if !key.contains(" in env ") => format!(" in {}", file.display()),
        _ => String::new(),
    };
    format!(
        "{key}{origin} is ignored: enrich does not read it (if you meant a setting, check its spelling)"
    )
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
