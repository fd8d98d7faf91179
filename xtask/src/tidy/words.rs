//! No doc, comment, test or manifest names the development process: docs and code describe the
//! product as it is, and history belongs in git.
//!
//! The patterns are precise rather than broad, so ordinary words keep their ordinary meaning:
//! - a process noun (see [`NUMBERED`]) followed by a number, with or without `#`, alone or in a
//!   list of numbers, and the same joined by `_` in test names;
//! - a process noun pointed at in time by a word before it (see [`POINTED`]: `this`, `last`,
//!   `previous`, …);
//! - an issue number on its own: `#12` after a space, `(`, `,`, `/` or `[`;
//! - the words `sprint` and `sprints`, and `TODO` / `FIXME` (upper case): unfinished work is
//!   finished or dropped, never left as a note.
//!
//! What stays legal: an HTTP or TLS `session`, `turn off`, `in turn`, a GitHub URL of a cited
//! source (`…/issues/123`: a `/` before the number), `#[derive]`, `r#"…"#`, `{:#?}`, a list
//! numbered at the start of a line (`#1 src/…`, the plan's output). What the patterns would
//! still catch wrongly goes in [`ALLOWED`], each entry with its reason.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Nouns of the development process that become a reference when a number follows them.
const NUMBERED: &[&str] = &["session", "sessions", "turn", "turns", "issue", "issues"];

/// Nouns of the development process, with the words before them that make them a reference to
/// the process (a demonstrative or a word of time before the noun). `turn` takes fewer, since
/// "the next turn" of a round robin is the product's own word.
const POINTED: &[(&str, &[&str])] = &[
    (
        "session",
        &[
            "this", "that", "last", "previous", "prior", "earlier", "next", "later", "same",
        ],
    ),
    (
        "issue",
        &[
            "this", "that", "previous", "prior", "earlier", "next", "later", "same",
        ],
    ),
    ("turn", &["this", "previous", "prior", "earlier"]),
];

/// Words that always name the process, compared case-insensitively.
const BANNED: &[&str] = &["sprint", "sprints"];

/// Markers of unfinished work, compared case-sensitively (`todo` is also a word, and clippy's
/// `todo` lint already covers the macro).
const MARKERS: &[&str] = &["TODO", "FIXME"];

/// Text the patterns would flag that is no reference to the process, with the reason.
pub(super) const ALLOWED: &[(&str, &str)] = &[(
    "PKCS #12",
    "the name of a key-store standard (the secret-file rules and the user guide cite it)",
)];

/// Files never scanned, with the reason: kept to the one file that must spell the patterns out.
const EXEMPT_FILES: &[(&str, &str)] = &[(
    "xtask/src/tidy/words.rs",
    "this check's own documentation of its patterns and the planted violations of its tests",
)];

/// Directories never scanned: build outputs, version control, installed packages.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules"];
/// The kinds of file scanned: Rust sources, docs and manifests.
const SCANNED_EXTENSIONS: &[&str] = &["rs", "md", "toml"];

/// Scans every Rust, Markdown and TOML file of the workspace at `root`.
pub(super) fn check(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        if EXEMPT_FILES
            .iter()
            .any(|(exempt, _)| relative == Path::new(exempt))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("could not read {}", file.display()))?;
        let shown = relative.display();
        for (line, found) in find(&text) {
            problems.push(format!(
                "{shown}:{line}: `{found}` names the development process: describe the product as it is (history belongs in git)"
            ));
        }
    }
    Ok(problems)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry
            .file_type()
            .with_context(|| format!("could not stat {}", path.display()))?;
        if kind.is_dir() {
            if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                collect(&path, files)?;
            }
        } else if kind.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SCANNED_EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// One word of a line: its bytes' range and its text.
struct Word<'a> {
    start: usize,
    end: usize,
    text: &'a str,
}

/// The references to the development process in `text`: (1-based line number, the words found).
pub(super) fn find(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut line = line.to_owned();
        for (allowed, _) in ALLOWED {
            line = line.replace(allowed, &" ".repeat(allowed.len()));
        }
        for hit in find_in_line(&line) {
            found.push((index + 1, hit));
        }
    }
    found
}

fn find_in_line(line: &str) -> Vec<String> {
    let words: Vec<Word<'_>> = words(line);
    // Byte ranges of the hits; one inside another (the `#` and number of a numbered process
    // noun) is reported once.
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let lower = word.text.to_ascii_lowercase();
        if MARKERS.contains(&word.text) || BANNED.contains(&lower.as_str()) {
            hits.push((word.start, word.end));
        }
        if let Some(next) = words.get(i + 1)
            && NUMBERED.contains(&lower.as_str())
            && is_number(next.text)
            && gap(line, word, next).chars().all(|c| " \t#_-".contains(c))
        {
            hits.push((word.start, next.end));
        }
        if let Some(before) = i.checked_sub(1).map(|b| &words[b])
            && gap(line, before, word)
                .chars()
                .all(|c| c == ' ' || c == '_' || c == '-')
            && POINTED.iter().any(|(noun, pointers)| {
                (lower == *noun || lower.strip_suffix('s') == Some(noun))
                    && pointers.contains(&before.text.to_ascii_lowercase().as_str())
            })
        {
            hits.push((before.start, word.end));
        }
        if is_number(word.text)
            && line[..word.start].ends_with('#')
            && line[..word.start - 1]
                .chars()
                .next_back()
                .is_some_and(|c| " (,/[".contains(c))
        {
            hits.push((word.start - 1, word.end));
        }
    }
    hits.iter()
        .filter(|&&(s, e)| {
            !hits
                .iter()
                .any(|&(os, oe)| (os, oe) != (s, e) && os <= s && e <= oe)
        })
        .map(|&(s, e)| line[s..e].to_owned())
        .collect()
}

/// The ASCII alphanumeric runs of `line` (`_`, `-` and everything else separate words).
fn words(line: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        match (c.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push(Word {
                    start: s,
                    end: i,
                    text: &line[s..i],
                });
                start = None;
            }
            _ => {}
        }
    }
    words
}

fn gap<'a>(line: &'a str, before: &Word<'_>, after: &Word<'_>) -> &'a str {
    &line[before.end..after.start]
}

fn is_number(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The planted text without its `¦` marks: this file would otherwise hold what the check
    /// and the project's other greps look for.
    fn planted(text: &str) -> String {
        text.replace('¦', "")
    }

    fn flags(text: &str, expect: &[&str]) {
        let text = planted(text);
        let found: Vec<String> = find(&text).into_iter().map(|(_, w)| w).collect();
        let expect: Vec<String> = expect.iter().map(|w| planted(w)).collect();
        assert_eq!(found, expect, "in {text:?}");
    }

    #[test]
    fn references_to_the_process_are_caught() {
        flags("## ses¦sion 4: the writer", &["ses¦sion 4"]);
        flags("ses¦sions 2-6 measured", &["ses¦sions 2"]);
        flags("fixed in iss¦ue #20", &["iss¦ue #20"]);
        flags("(see iss¦ues #10/#7)", &["iss¦ues #10", "#7"]);
        flags("fn issue_20_regression() {}", &["issue_20"]);
        flags("done in this ses¦sion", &["this ses¦sion"]);
        flags("as the previous issue said", &["previous issue"]);
        flags("added in turn 3", &["turn 3"]);
        flags("fn earlier_turn_case()", &["earlier_turn"]);
        flags("the fix (#12) holds", &["#12"]);
        flags("see [#3] and #45, and a/#6", &["#3", "#45", "#6"]);
        flags("planned for the next sprint", &["sprint"]);
        flags("// TODO: handle it", &["TODO"]);
        flags("/* FIXME */", &["FIXME"]);
    }

    #[test]
    fn ordinary_words_pass() {
        flags(
            "the rustls ses¦sion's protocol version; an HTTP ses¦sion",
            &[],
        );
        flags("pid (comm) state ppid pgrp ses¦sion tty tpgid", &[]);
        flags(
            "0 turns the breaker off; lanes take turns; sent in turn",
            &[],
        );
        flags(
            "the other lane's turn; the next turn of the round robin",
            &[],
        );
        flags("https://github.com/gitleaks/gitleaks/issues/123", &[]);
        flags("#[derive(Debug)] r#\"x\"# {:#?} {:#10x}", &[]);
        flags("#1 src/geometry.py:1-7 Rect  weight 1", &[]);
        flags("a PKCS #12 key bundle", &[]);
        flags("a todo list; the spans' hashes 0x12#34", &[]);
        flags("the issuer of the ticket; issued at once", &[]);
    }

    #[test]
    fn lines_are_numbered_from_one() {
        let text = "clean\nalso clean\nin ses¦sion 9\n";
        assert_eq!(find(&planted(text)), [(3, planted("ses¦sion 9"))]);
    }

    #[test]
    fn the_tree_walk_scans_sources_docs_and_manifests_and_skips_build_outputs() {
        let root = std::env::temp_dir().join(format!("xtask-words-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, planted(text)).unwrap();
        };
        write(
            "docs/guide.md",
            "# Guide\n\nAs of ses¦sion 3 the writer batches.\n",
        );
        write(
            "crates/a/src/lib.rs",
            "//! Clean.\n\n// see #41\nfn f() {}\n",
        );
        write("crates/a/Cargo.toml", "# the dependency (issue 7)\n");
        write("crates/a/notes.txt", "ses¦sion 3\n");
        write("target/debug/x.rs", "// ses¦sion 3\n");
        write(".git/x.md", "ses¦sion 3\n");
        write("xtask/src/tidy/words.rs", "// ses¦sion 3\n");
        let problems = check(&root).expect("the planted tree is readable");
        std::fs::remove_dir_all(&root).unwrap();
        let shown: Vec<&str> = problems
            .iter()
            .map(|p| p.split(" names").next().unwrap())
            .collect();
        assert_eq!(
            shown,
            [
                "crates/a/Cargo.toml:1: `issue 7`",
                "crates/a/src/lib.rs:3: `#41`",
                planted("docs/guide.md:3: `ses¦sion 3`").as_str(),
            ]
        );
    }
}
