//! Where the user stands: `enrich index` and the commands run from inside a repository, without
//! `--repo`: finding the root, the message without an index, what re-indexing reports, `show`
//! on files with the same content, `index --help`, and the bounded event log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::support::{Ran, Server, TestRepo, config, enrich_bin, finish};

/// Runs `enrich ARGS` in `dir`, without `--repo`, with a clean environment.
fn enrich_in(dir: &Path, args: &[&str]) -> Ran {
    let child = Command::new(enrich_bin())
        .env_clear()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start enrich");
    finish(child)
}

/// A repository (marked by an empty `.git/`) with `files`, and no index; returns the temp dir
/// and the root.
fn bare_repo(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join(".git")).expect("mkdir .git");
    for (path, text) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    (dir, root)
}

#[test]
fn commands_run_from_a_subdirectory_find_the_repository_and_its_index() {
    let repo = TestRepo::new();
    let deep = repo.root.join("src/deep");
    std::fs::create_dir_all(&deep).expect("mkdir");
    let status = enrich_in(&deep, &["--json", "status"])
        .expect_code(0)
        .json();
    assert_eq!(status["spans"], repo.spans.len(), "{status}");

    // A path from the current directory, and one from the repository root.
    let src = repo.root.join("src");
    for target in ["geometry.py:3", "src/geometry.py:3"] {
        let shown = enrich_in(&src, &["--json", "show", target])
            .expect_code(0)
            .json();
        assert_eq!(shown["span"]["symbol"], "Rect.__init__", "{target}");
    }
}

#[test]
fn without_an_index_the_error_says_to_run_enrich_index() {
    let (_dir, root) = bare_repo(&[("src/app.py", "def f():\n    return 1\n")]);
    let ran = enrich_in(&root.join("src"), &["status"]);
    ran.expect_code(2);
    let expected_db = root.join(".llmc/rag/index_v2.db");
    assert!(
        ran.stderr.contains(&expected_db.display().to_string()),
        "names the index it looked for: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("`enrich index`"), "{}", ran.stderr);
    assert!(ran.stderr.contains("LLMC"), "{}", ran.stderr);

    // Doing what it says works from where the user stands.
    enrich_in(&root.join("src"), &["index"]).expect_code(0);
    let status = enrich_in(&root.join("src"), &["--json", "status"])
        .expect_code(0)
        .json();
    assert_eq!(status["files"], 1, "{status}");
}

const LICENSE: &str = "\
Permission is hereby granted, free of charge, to any person obtaining a copy
of this software, to deal in the software without restriction.

The above copyright notice shall be included in all copies.
";

#[test]
fn identical_files_reindex_to_no_change_and_show_works_for_every_copy() {
    let copies = [
        "crates/regex/UNLICENSE",
        "UNLICENSE",
        "crates/cli/UNLICENSE",
    ];
    let mut files: Vec<(&str, &str)> = copies.iter().map(|p| (*p, LICENSE)).collect();
    files.push(("src/main.py", "def main():\n    return 0\n"));
    let (_dir, root) = bare_repo(&files);
    let first = enrich_in(&root, &["index"]).expect_code(0).stdout.clone();
    assert!(first.contains("4 added"), "{first}");
    for _ in 0..3 {
        let again = enrich_in(&root, &["index"]);
        let text = &again.expect_code(0).stdout;
        assert!(
            text.contains("files   4 seen: 0 added, 0 changed, 0 removed, 4 unchanged"),
            "{text}"
        );
        assert!(
            text.contains("spans   0 added, 0 kept, 0 moved, 0 removed"),
            "{text}"
        );
    }

    // The first path in byte order ("UNLICENSE" < "crates/…") holds the span.
    let owner = enrich_in(&root, &["--json", "show", "UNLICENSE:3"])
        .expect_code(0)
        .json();
    assert_eq!(owner["span"]["file_path"], "UNLICENSE");
    assert_eq!(owner.get("same_content_as"), None, "{owner}");
    for copy in ["crates/regex/UNLICENSE", "crates/cli/UNLICENSE"] {
        let shown = enrich_in(&root, &["--json", "show", &format!("{copy}:3")])
            .expect_code(0)
            .json();
        assert_eq!(shown["span"]["span_hash"], owner["span"]["span_hash"]);
        assert_eq!(
            shown["same_content_as"],
            serde_json::json!({ "path": copy, "owner": "UNLICENSE" })
        );
        let text = enrich_in(&root, &["show", &format!("{copy}:3")]);
        assert!(
            text.expect_code(0)
                .stdout
                .contains(&format!("{copy} has the same content as UNLICENSE")),
            "{}",
            text.stdout
        );
    }
}

#[test]
fn the_first_line_of_index_counts_what_the_summary_counts() {
    let big = "x = 1\n".repeat(100);
    let (_dir, root) = bare_repo(&[
        ("a.py", "def a():\n    return 1\n"),
        ("big.py", big.as_str()),
        ("c.md", "# C\n\nText.\n"),
    ]);
    let ran = enrich_in(&root, &["index", "--max-file-size", "100"]);
    ran.expect_code(0);
    assert!(ran.stderr.contains("indexing 3 files"), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("files   3 seen: 2 added, 0 changed, 0 removed, 0 unchanged; skipped 0 binary, 1 too large"),
        "{}",
        ran.stdout
    );
}

#[test]
fn index_help_describes_ragignore_and_the_default_exclusions() {
    let (_dir, root) = bare_repo(&[]);
    let help = enrich_in(&root, &["index", "--help"])
        .expect_code(0)
        .stdout
        .clone();
    for needle in [
        ".ragignore",
        ".gitignore",
        "Default exclusions",
        "own files",
        "secrets",
        "binary files",
        "lock files",
        "--max-file-size",
        "--include-hidden",
        "user guide",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn the_event_log_is_rotated_at_its_configured_size() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(
        &[("fake", server.url())],
        "event_log_max_bytes = 2048\nevent_log_keep = 2",
    ));
    repo.enrich(&["run"]).expect_code(0);
    let log = repo.root.join("logs/enrichment_events.jsonl");
    let mut files = vec![log.clone()];
    for n in 1..=3 {
        let mut name = log.clone().into_os_string();
        name.push(format!(".{n}"));
        files.push(PathBuf::from(name));
    }
    assert!(
        files[2].exists(),
        "the run wrote more than two files' worth"
    );
    assert!(!files[3].exists(), "only two rotated files are kept");
    for file in &files[..3] {
        let text = std::fs::read_to_string(file).expect("read log");
        assert!(
            text.len() <= 2048,
            "{}: {} bytes",
            file.display(),
            text.len()
        );
        assert!(text.ends_with('\n'), "{}: whole lines", file.display());
        for line in text.lines() {
            serde_json::from_str::<Value>(line).expect("each line is an event");
        }
    }
    let current = std::fs::read_to_string(&log).expect("read log");
    let last: Value = serde_json::from_str(current.lines().last().expect("a line")).expect("json");
    assert_eq!(
        last["type"], "run_finished",
        "the newest events are in the current file"
    );
}
