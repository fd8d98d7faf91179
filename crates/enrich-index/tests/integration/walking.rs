//! Which files the index covers: ignore files, hidden files, `.git/` and `.llmc/`, binary and
//! big files, lock files and minified bundles, symbolic links.

use enrich_index::IndexOptions;

use crate::support::{Repo, options};

/// A PNG header: binary by git's rule (a NUL byte early on).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";

/// A repository with one file for every rule.
fn repo() -> Repo {
    let repo = Repo::with(&[
        (".gitignore", "build/\n*.log\n"),
        (".ragignore", "secret.md\ndocs/private/\n"),
        ("sub/.ignore", "local.txt\n"),
        ("sub/.gitignore", "!keep.log\n"),
        ("src/main.rs", "fn main() {}\n"),
        ("build/out.rs", "fn built() {}\n"),
        ("run.log", "log line\n"),
        ("sub/keep.log", "kept\n"),
        ("sub/local.txt", "local\n"),
        ("sub/ok.txt", "ok\n"),
        ("secret.md", "# Secret\n"),
        ("docs/private/plan.md", "# Plan\n"),
        ("docs/public.md", "# Public\n"),
        ("empty.txt", ""),
        ("Cargo.lock", "version = 3\n"),
        ("web/package-lock.json", "{}\n"),
        ("web/app.min.js", "var a=1;\n"),
        (".env", "TOKEN=x\n"),
        (".github/workflows/ci.yml", "on: push\n"),
        (".llmc/notes.md", "# LLMC's folder\n"),
        (".git/config", "[core]\n"),
    ]);
    repo.write("assets/logo.png", PNG);
    repo.write("big.txt", vec![b'a'; 1024 * 1024 + 1]);
    #[cfg(unix)]
    std::os::unix::fs::symlink(repo.root().join("src/main.rs"), repo.root().join("link.rs"))
        .expect("symlink");
    repo
}

fn check(options: &IndexOptions, expected: &[&str], seen: u64, binary: u64, too_large: u64) {
    let repo = repo();
    let report = repo.index_with(options);
    let paths: Vec<String> = repo.files().into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths, expected);
    assert_eq!(
        (
            report.files.seen,
            report.files.binary,
            report.files.too_large
        ),
        (seen, binary, too_large),
        "{report:?}"
    );
    assert_eq!(report.files.added, expected.len() as u64, "{report:?}");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn ignore_files_binary_and_big_files_are_left_out() {
    check(
        &options(),
        &[
            "docs/public.md",
            "empty.txt",
            "src/main.rs",
            "sub/keep.log",
            "sub/ok.txt",
        ],
        7,
        1,
        1,
    );
}

#[test]
fn hidden_files_can_be_included_but_never_git_or_llmc() {
    let options = IndexOptions {
        include_hidden: true,
        ..options()
    };
    check(
        &options,
        &[
            ".github/workflows/ci.yml",
            ".gitignore",
            ".ragignore",
            "docs/public.md",
            "empty.txt",
            "src/main.rs",
            "sub/.gitignore",
            "sub/.ignore",
            "sub/keep.log",
            "sub/ok.txt",
        ],
        12,
        1,
        1,
    );
}

#[test]
fn the_size_limit_is_configurable_and_a_file_that_outgrows_it_is_removed() {
    let options = IndexOptions {
        max_file_bytes: 10,
        ..options()
    };
    let repo = Repo::with(&[("small.txt", "0123456789"), ("large.txt", "0123456789A")]);
    let report = repo.index_with(&options);
    assert_eq!(repo.files(), [("small.txt".to_owned(), "text".to_owned())]);
    assert_eq!((report.files.added, report.files.too_large), (1, 1));

    repo.write("small.txt", "0123456789AB");
    let report = repo.index_with(&options);
    assert!(repo.files().is_empty());
    assert_eq!((report.files.removed, report.files.too_large), (1, 2));
    assert_eq!(repo.count("spans"), 0);
}

#[test]
fn a_file_that_turns_binary_is_removed() {
    let repo = Repo::with(&[("data.txt", "hello\n")]);
    repo.index();
    repo.write("data.txt", PNG);
    let report = repo.index();
    assert!(repo.files().is_empty());
    assert_eq!((report.files.removed, report.files.binary), (1, 1));
}

#[test]
fn a_file_that_becomes_ignored_is_removed() {
    let repo = Repo::with(&[("keep.rs", "fn keep() {}\n"), ("gen.rs", "fn gen() {}\n")]);
    repo.index();
    repo.write(".ragignore", "gen.rs\n");
    let report = repo.index();
    assert_eq!(repo.files(), [("keep.rs".to_owned(), "rust".to_owned())]);
    assert_eq!((report.files.removed, report.files.unchanged), (1, 1));
}
