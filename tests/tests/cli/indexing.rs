//! Where the user stands: `enrich index` and the commands run from inside a repository, without
//! `--repo`: finding the root, the message without an index, what re-indexing reports, `show`
//! on files with the same content, `index --help`, and the bounded event log; and what it
//! leaves out: never enrich's own files (the config, the event log a run just wrote, the index
//! database wherever `--db` puts it), and every skipped file by reason, named with `--verbose`
//! and in `--json`.

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
        ran.stdout.contains(
            "files   3 seen: 2 added, 0 changed, 0 removed, 0 unchanged\nskipped 1 too large"
        ),
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

/// The paths an `enrich --json index` document lists as skipped for `reason`.
fn skipped_for<'a>(index: &'a Value, reason: &str) -> Vec<&'a str> {
    index["skipped"]
        .as_array()
        .expect("skipped files")
        .iter()
        .filter(|f| f["reason"] == reason)
        .filter_map(|f| f["path"].as_str())
        .collect()
}

#[test]
fn an_index_after_a_run_leaves_the_event_log_and_the_config_out() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["index"]).expect_code(0);
    repo.enrich(&["run"]).expect_code(0);
    let log = repo.root.join("logs/enrichment_events.jsonl");
    assert!(log.is_file(), "the run wrote its event log");
    // An event log given with --events, inside the repository, is known by its content.
    let custom = repo.root.join("out/run.log");
    let custom = custom.to_str().expect("utf-8 path");
    repo.enrich(&["run", "--events", custom]).expect_code(0);
    assert!(repo.root.join("out/run.log").is_file());

    let index = repo.enrich(&["--json", "index"]).expect_code(0).json();
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM files WHERE path LIKE 'logs/%' OR path LIKE 'out/%' \
             OR path = 'enrich.toml'"
        ),
        0
    );
    let own = skipped_for(&index, "own");
    assert_eq!(
        own,
        ["enrich.toml", "logs/enrichment_events.jsonl", "out/run.log"],
        "{index}"
    );
    assert_eq!(index["files"]["own"], 3, "{index}");
    assert_eq!(index["spans"]["added"], 0, "nothing new to enrich: {index}");
}

#[test]
fn a_database_given_with_db_inside_the_repository_is_not_indexed() {
    let repo = TestRepo::new();
    let db = repo.root.join("data/index.db");
    std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
    let db_arg = db.to_str().expect("utf-8 path");
    repo.enrich(&["--db", db_arg, "index"]).expect_code(0);
    let again = repo
        .enrich(&["--db", db_arg, "--json", "index"])
        .expect_code(0)
        .json();
    let own = skipped_for(&again, "own");
    assert!(own.contains(&"data/index.db"), "{again}");
    assert_eq!(again["files"]["added"], 0, "{again}");
}

#[test]
fn skipped_files_are_counted_by_reason_and_named_with_verbose() {
    let repo = TestRepo::new();
    let write = |path: &str, bytes: &[u8]| {
        let full = repo.root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, bytes).expect("write");
    };
    write("assets/logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    write("data/huge.txt", &vec![b'a'; 2048]);
    write("certs/ca.pem", b"not a real certificate\n");
    write("package-lock.json", b"{}\n");
    write("vendor/lib.js", b"function lib() {}\n");
    repo.write_config("[enrichment.index]\nexclude = [\"vendor/**\"]\n");

    let text = repo
        .enrich(&["index", "--max-file-size", "1024"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        text.contains(
            "skipped 1 secret, 1 binary, 1 too large, 1 excluded, 1 generated, 1 enrich's own \
             (--verbose names them)"
        ),
        "{text}"
    );
    assert!(!text.contains("certs/ca.pem"), "{text}");

    let verbose = repo
        .enrich(&["-v", "index", "--max-file-size", "1024"])
        .expect_code(0)
        .stdout
        .clone();
    for line in [
        "  binary        assets/logo.png",
        "  secret        certs/ca.pem",
        "  too large     data/huge.txt",
        "  enrich's own  enrich.toml",
        "  generated     package-lock.json",
        "  excluded      vendor/lib.js",
    ] {
        assert!(verbose.contains(line), "{line:?} in\n{verbose}");
    }
    let json = repo
        .enrich(&["--json", "index", "--max-file-size", "1024"])
        .expect_code(0)
        .json();
    let reasons: Vec<(String, String)> = json["skipped"]
        .as_array()
        .expect("skipped files")
        .iter()
        .map(|f| (f["path"].to_string(), f["reason"].to_string()))
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(reasons.contains(&("\"data/huge.txt\"".to_owned(), "\"too_large\"".to_owned())));
}
