//! Which language a file is, how it is split, and how its slices are classified.
//!
//! Language names are LLMC's (`llmc/rag/lang.py`), because the language is part of the span hash:
//! the same bytes under another name would be another span. LLMC knows a file's language from
//! its extension alone; enrich also reads a shebang on a file without a known extension.

/// How a file's bytes become spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Splitter {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    C,
    Cpp,
    Markdown,
    /// Windows of lines cut at blank lines.
    Lines,
}

/// A file's language: the name stored in `files.lang` and hashed into every span, and its
/// splitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lang {
    pub(crate) name: &'static str,
    pub(crate) splitter: Splitter,
}

/// The language of a file that no rule recognises.
pub(crate) const TEXT: Lang = Lang {
    name: "text",
    splitter: Splitter::Lines,
};

/// Extension (lowercase, without the dot) → language. LLMC's table, plus a few extensions of
/// the same languages it does not list (`pyi`, `mts`, `cts`, `cxx`, `hxx`); LLMC does not index
/// those files at all, so their names cannot disagree with it.
const EXTENSIONS: &[(&str, &str, Splitter)] = &[
    ("rs", "rust", Splitter::Rust),
    ("py", "python", Splitter::Python),
    ("pyi", "python", Splitter::Python),
    ("js", "javascript", Splitter::JavaScript),
    ("mjs", "javascript", Splitter::JavaScript),
    ("cjs", "javascript", Splitter::JavaScript),
    ("jsx", "javascript", Splitter::JavaScript),
    ("ts", "typescript", Splitter::TypeScript),
    ("mts", "typescript", Splitter::TypeScript),
    ("cts", "typescript", Splitter::TypeScript),
    ("tsx", "tsx", Splitter::Tsx),
    ("go", "go", Splitter::Go),
    ("java", "java", Splitter::Java),
    ("c", "c", Splitter::C),
    ("h", "c", Splitter::C),
    ("cc", "cpp", Splitter::Cpp),
    ("cpp", "cpp", Splitter::Cpp),
    ("cxx", "cpp", Splitter::Cpp),
    ("hpp", "cpp", Splitter::Cpp),
    ("hh", "cpp", Splitter::Cpp),
    ("hxx", "cpp", Splitter::Cpp),
    ("md", "markdown", Splitter::Markdown),
    ("markdown", "markdown", Splitter::Markdown),
    ("sh", "bash", Splitter::Lines),
    ("bash", "bash", Splitter::Lines),
    ("json", "json", Splitter::Lines),
    ("yaml", "yaml", Splitter::Lines),
    ("yml", "yaml", Splitter::Lines),
    ("sql", "sql", Splitter::Lines),
];

/// The file's language from its extension, else from a shebang, else [`TEXT`].
pub(crate) fn language_for(path: &str, source: &[u8]) -> Lang {
    if let Some(ext) = extension(path) {
        let ext = ext.to_ascii_lowercase();
        if let Some(&(_, name, splitter)) = EXTENSIONS.iter().find(|(e, _, _)| *e == ext) {
            return Lang { name, splitter };
        }
    }
    match shebang(source) {
        Some(Interpreter::Python) => Lang {
            name: "python",
            splitter: Splitter::Python,
        },
        Some(Interpreter::Node) => Lang {
            name: "javascript",
            splitter: Splitter::JavaScript,
        },
        Some(Interpreter::Shell) => Lang {
            name: "bash",
            splitter: Splitter::Lines,
        },
        None => TEXT,
    }
}

/// The extension of the path's last component (`None` for `Makefile` or `.bashrc`).
fn extension(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rfind('.') {
        Some(0) | None => None,
        Some(dot) => Some(&name[dot + 1..]),
    }
}

/// The classifier version written to `spans.classifier_version`: LLMC's `v1.0` rules (extension
/// table, then shebang) with the extensions of LLMC's own language table that its classifier
/// misses (`.cc`, `.hh`, `.mjs`, `.sh`, …) added, so it is a version of its own.
pub(crate) const CLASSIFIER_VERSION: &str = "enrich-v1";

/// The slice classification of a file, shared by all its spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Classification {
    /// `code`, `docs`, `config`, `data` or `other`.
    pub(crate) slice_type: &'static str,
    /// The programming language, for code.
    pub(crate) slice_language: Option<&'static str>,
    /// 1.0 when a rule matched, else 0.0 (as LLMC).
    pub(crate) confidence: f64,
}

/// Extension → (slice type, slice language): LLMC's `content_type.py` tables plus the
/// extensions its language table knows.
const SLICE_TYPES: &[(&str, &str, Option<&str>)] = &[
    ("py", "code", Some("python")),
    ("pyi", "code", Some("python")),
    ("js", "code", Some("javascript")),
    ("mjs", "code", Some("javascript")),
    ("cjs", "code", Some("javascript")),
    ("jsx", "code", Some("javascript")),
    ("ts", "code", Some("typescript")),
    ("mts", "code", Some("typescript")),
    ("cts", "code", Some("typescript")),
    ("tsx", "code", Some("typescript")),
    ("c", "code", Some("c")),
    ("h", "code", Some("c")),
    ("cc", "code", Some("cpp")),
    ("cpp", "code", Some("cpp")),
    ("cxx", "code", Some("cpp")),
    ("hpp", "code", Some("cpp")),
    ("hh", "code", Some("cpp")),
    ("hxx", "code", Some("cpp")),
    ("java", "code", Some("java")),
    ("go", "code", Some("go")),
    ("rs", "code", Some("rust")),
    ("cs", "code", Some("csharp")),
    ("php", "code", Some("php")),
    ("rb", "code", Some("ruby")),
    ("kt", "code", Some("kotlin")),
    ("swift", "code", Some("swift")),
    ("sh", "code", Some("shell")),
    ("bash", "code", Some("shell")),
    ("sql", "code", Some("sql")),
    ("yml", "config", None),
    ("yaml", "config", None),
    ("toml", "config", None),
    ("ini", "config", None),
    ("cfg", "config", None),
    ("json", "config", None),
    ("xml", "config", None),
    ("md", "docs", None),
    ("markdown", "docs", None),
    ("rst", "docs", None),
    ("txt", "docs", None),
    ("adoc", "docs", None),
    ("csv", "data", None),
    ("tsv", "data", None),
];

/// Classifies a file as LLMC's `classify_slice` does: by extension, then a script shebang on
/// the first line overrides it.
pub(crate) fn classify(path: &str, source: &[u8]) -> Classification {
    let mut class = Classification {
        slice_type: "other",
        slice_language: None,
        confidence: 0.0,
    };
    if let Some(ext) = extension(path) {
        let ext = ext.to_ascii_lowercase();
        if let Some(&(_, slice_type, slice_language)) =
            SLICE_TYPES.iter().find(|(e, _, _)| *e == ext)
        {
            class = Classification {
                slice_type,
                slice_language,
                confidence: 1.0,
            };
        }
    }
    if let Some(interpreter) = shebang(source) {
        class = Classification {
            slice_type: "code",
            slice_language: Some(match interpreter {
                Interpreter::Python => "python",
                Interpreter::Node => "javascript",
                Interpreter::Shell => "shell",
            }),
            confidence: 1.0,
        };
    }
    class
}

/// A script interpreter named by a shebang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interpreter {
    Python,
    Node,
    Shell,
}

/// The interpreter of a `#!` first line, read as LLMC's pattern
/// `^#!.*(python|bash|sh|node|env python|env bash)` reads it: the alternative that starts last
/// on the line wins (`#!/bin/bash` is `sh`, so shell; `#!/usr/bin/env python3` is python).
fn shebang(source: &[u8]) -> Option<Interpreter> {
    let rest = source.strip_prefix(b"#!")?;
    let line_end = rest
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(rest.len());
    let line = &rest[..line_end];
    const NAMES: [(&[u8], Interpreter); 4] = [
        (b"python", Interpreter::Python),
        (b"bash", Interpreter::Shell),
        (b"sh", Interpreter::Shell),
        (b"node", Interpreter::Node),
    ];
    (0..line.len()).rev().find_map(|at| {
        NAMES
            .iter()
            .find(|(name, _)| line[at..].starts_with(name))
            .map(|&(_, interpreter)| interpreter)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_follow_llmc_names_then_shebangs() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("src/lib.rs", b"", "rust"),
            ("a/B.PY", b"", "python"),
            ("ui/app.tsx", b"", "tsx"),
            ("ui/app.jsx", b"", "javascript"),
            ("inc/x.h", b"", "c"),
            ("inc/x.hh", b"", "cpp"),
            ("README.markdown", b"", "markdown"),
            ("ci/run.sh", b"", "bash"),
            ("Cargo.toml", b"", "text"),
            (".bashrc", b"alias x=y\n", "text"),
            ("bin/tool", b"#!/usr/bin/env python3\nprint(1)\n", "python"),
            ("bin/serve", b"#!/usr/bin/env node\n", "javascript"),
            ("bin/run", b"#!/bin/bash\n", "bash"),
            ("bin/perl", b"#!/usr/bin/perl\n", "text"),
        ];
        for (path, source, expected) in cases {
            assert_eq!(language_for(path, source).name, *expected, "{path}");
        }
    }

    #[test]
    fn classification_follows_llmc_rules() {
        type Case<'a> = (&'a str, &'a [u8], &'a str, Option<&'a str>, f64);
        let cases: &[Case<'_>] = &[
            ("a.py", b"", "code", Some("python"), 1.0),
            ("a.tsx", b"", "code", Some("typescript"), 1.0),
            ("a.cc", b"", "code", Some("cpp"), 1.0),
            ("README.md", b"", "docs", None, 1.0),
            ("Cargo.toml", b"", "config", None, 1.0),
            ("data.csv", b"", "data", None, 1.0),
            ("LICENSE", b"MIT\n", "other", None, 0.0),
            ("notes.txt", b"#!/bin/sh\n", "code", Some("shell"), 1.0),
        ];
        for &(path, source, slice_type, slice_language, confidence) in cases {
            let class = classify(path, source);
            assert_eq!(
                (class.slice_type, class.slice_language, class.confidence),
                (slice_type, slice_language, confidence),
                "{path}"
            );
        }
    }
}
