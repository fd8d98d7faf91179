//! The part of a repository a re-index covers: the paths that changed, as [`index_paths`] takes
//! them (files, and directories standing for everything under them).
//!
//! [`index_paths`]: crate::index_paths

use std::collections::BTreeSet;
use std::path::{Component, Path};

use crate::walk::RAGIGNORE;

/// Ignore files: a change to one re-indexes the directory it governs.
const IGNORE_FILES: [&str; 3] = [".gitignore", ".ignore", RAGIGNORE];

/// Relative, `/`-separated paths; the empty path is the whole repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    targets: BTreeSet<String>,
}

impl Scope {
    /// The scope of `paths` (absolute, or relative to the root): each path under `root` (as given
    /// or canonical) is a target; an ignore file stands for its whole directory, whose files it
    /// may have hidden or uncovered. Paths outside the root, or that are not UTF-8, are dropped;
    /// the root itself covers everything.
    pub(crate) fn new(root: &Path, canonical_root: &Path, paths: &[impl AsRef<Path>]) -> Self {
        let mut targets = BTreeSet::new();
        for path in paths {
            let path = path.as_ref();
            let rel = if path.is_absolute() {
                path.strip_prefix(canonical_root)
                    .or_else(|_| path.strip_prefix(root))
                    .ok()
            } else {
                Some(path)
            };
            let Some(mut rel) = rel.and_then(normalise) else {
                continue;
            };
            let name = rel.rsplit('/').next().unwrap_or_default();
            if IGNORE_FILES.contains(&name) {
                rel.truncate(rel.rfind('/').unwrap_or(0));
            }
            targets.insert(rel);
        }
        Self { targets }
    }

    /// Whether nothing is in scope.
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether the file (or directory) `rel` is in scope: it, or a directory above it, is a
    /// target.
    pub(crate) fn covers(&self, rel: &str) -> bool {
        self.targets.contains("")
            || self.targets.contains(rel)
            || rel
                .match_indices('/')
                .any(|(i, _)| self.targets.contains(&rel[..i]))
    }

    /// Whether the walk must enter the directory `rel`: it is in scope, or a target lies under it.
    pub(crate) fn enters(&self, rel: &str) -> bool {
        let prefix = format!("{rel}/");
        self.covers(rel)
            || self
                .targets
                .range(prefix.clone()..)
                .next()
                .is_some_and(|t| t.starts_with(&prefix))
    }
}

/// `rel` as a `/`-separated relative path; `None` when it climbs out (`..`) or is not UTF-8.
fn normalise(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn scope(paths: &[&str]) -> Scope {
        let root = PathBuf::from("/r/repo");
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        Scope::new(&root, Path::new("/real/repo"), &paths)
    }

    #[test]
    fn paths_become_relative_targets_and_outsiders_are_dropped() {
        let cases: [(&[&str], &[&str]); 7] = [
            (&["/r/repo/src/a.rs"], &["src/a.rs"]),
            (&["/real/repo/src/a.rs"], &["src/a.rs"]),
            (&["src/./a.rs"], &["src/a.rs"]),
            (&["/elsewhere/a.rs", "../a.rs", "/r/repo2/a.rs"], &[]),
            (&["/r/repo"], &[""]),
            (&["/r/repo/src/.gitignore", ".ragignore"], &["", "src"]),
            (
                &["/r/repo/docs/.ignore", "docs/x.md"],
                &["docs", "docs/x.md"],
            ),
        ];
        for (paths, expected) in cases {
            let got: Vec<String> = scope(paths).targets.into_iter().collect();
            assert_eq!(got, expected, "{paths:?}");
        }
    }

    #[test]
    fn a_target_covers_itself_and_what_is_under_it_and_opens_the_way_to_it() {
        let s = scope(&["src/a.rs", "old"]);
        let covered = [
            ("src/a.rs", true),
            ("src/ab.rs", false),
            ("src", false),
            ("old", true),
            ("old/deep/x.py", true),
            ("older/x.py", false),
            ("b.rs", false),
        ];
        for (rel, expected) in covered {
            assert_eq!(s.covers(rel), expected, "covers {rel}");
        }
        let entered = [
            ("src", true),
            ("sr", false),
            ("src/sub", false),
            ("old", true),
            ("old/deep", true),
            ("target", false),
        ];
        for (rel, expected) in entered {
            assert_eq!(s.enters(rel), expected, "enters {rel}");
        }
        let everything = scope(&["/r/repo"]);
        assert!(everything.covers("any/file.rs") && everything.enters("any"));
        assert!(scope(&[]).is_empty() && !scope(&["x"]).is_empty());
    }
}
