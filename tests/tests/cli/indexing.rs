//! `enrich index` end to end: it never indexes enrich's own files (the config, the event log a
//! run just wrote, the index database wherever `--db` puts it), and it says what it skipped, by
//! reason, naming the files with `--verbose` and in `--json`.

use serde_json::Value;

use super::support::{Server, TestRepo, config};

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
