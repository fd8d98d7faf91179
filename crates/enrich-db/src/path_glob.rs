//! `--path GLOB`: which files of the index a command looks at, by a glob over the path relative
//! to the repository root. One glob language for every command that takes one (`search`,
//! `export`, `eval search`, the MCP server's `search` tool).

use globset::{GlobBuilder, GlobMatcher};

/// A path glob as `.gitignore` reads one: `*` and `?` stay inside one directory, `**` crosses
/// directories, a glob without `/` matches the file name at any depth (`*.py`), and a glob
/// with one is anchored at the root (`src/**`, `/setup.py`). Case-sensitive, like the paths.
#[derive(Debug, Clone)]
pub struct PathGlob {
    matcher: GlobMatcher,
}

impl PathGlob {
    /// Compiles `glob`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with the glob (an unclosed `[`, `{`).
    pub fn new(glob: &str) -> Result<Self, String> {
        let trimmed = glob.trim();
        let anchored = match trimmed.strip_prefix('/') {
            Some(rooted) => rooted.to_owned(),
            None if trimmed.contains('/') => trimmed.to_owned(),
            None => format!("**/{trimmed}"),
        };
        let matcher = GlobBuilder::new(&anchored)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("{glob:?} is not a valid glob: {}", e.kind()))?
            .compile_matcher();
        Ok(Self { matcher })
    }

    /// Whether the repository-relative `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    /// Whether `text` has glob syntax (`*`, `?`, `[`, `{`), so is not a plain path.
    pub fn is_glob(text: &str) -> bool {
        text.contains(['*', '?', '[', '{'])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_read_like_gitignore_lines() {
        let cases = [
            ("*.py", "src/requests/api.py", true),
            ("*.py", "api.py", true),
            ("*.py", "api.pyc", false),
            ("src/*.py", "src/api.py", true),
            ("src/*.py", "src/requests/api.py", false),
            ("src/**/*.py", "src/requests/api.py", true),
            ("src/**", "src/a/b/c.rs", true),
            ("/setup.py", "setup.py", true),
            ("/setup.py", "pkg/setup.py", false),
            ("setup.py", "pkg/setup.py", true),
            ("*.PY", "api.py", false),
            ("src/{a,b}.rs", "src/b.rs", true),
        ];
        for (glob, path, matches) in cases {
            let compiled = PathGlob::new(glob).unwrap();
            assert_eq!(compiled.matches(path), matches, "{glob} against {path}");
        }
        let err = PathGlob::new("src/[").unwrap_err();
        assert!(err.contains("\"src/[\" is not a valid glob"), "{err}");
        assert!(PathGlob::is_glob("src/*.rs") && !PathGlob::is_glob("src/lib.rs"));
    }
}
