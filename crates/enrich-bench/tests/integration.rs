//! `enrich-bench` as `cargo xtask bench` runs it: a small synthetic index, the overhead run over
//! it, batch selection. These check what the commands report and store, never how fast.

use std::path::Path;
use std::process::Command;

use enrich_db::Db;
use serde_json::Value;

/// Runs `enrich-bench` and returns its one JSON line.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_enrich-bench"))
        .args(args)
        .output()
        .expect("enrich-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).expect("JSON output")
}

/// `report` is `command`'s, and each of `keys` is a number in it.
fn check_keys(report: &Value, command: &str, keys: &[&str]) {
    assert_eq!(report["command"], command, "{report}");
    for key in keys {
        assert!(report[key].is_number(), "{key} missing in {report}");
    }
}

fn gen_db(repo: &Path, spans: &str, per_file: &str) -> Value {
    let report = bench(&[
        "gen-db",
        "--spans",
        spans,
        "--spans-per-file",
        per_file,
        "--out",
        repo.to_str().unwrap(),
    ]);
    check_keys(
        &report,
        "gen-db",
        &["files", "spans", "source_bytes", "seconds"],
    );
    report
}

#[test]
fn gen_db_writes_an_index_whose_spans_are_real_source() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let report = gen_db(&repo, "250", "100");
    assert_eq!(report["files"], 3);
    assert_eq!(report["spans"], 250);

    let db = Db::open_read_only(enrich_db::default_db_path(&repo)).unwrap();
    let stats = db.stats().unwrap();
    assert_eq!((stats.files, stats.spans, stats.pending), (3, 250, 250));
    let page = db.pending_spans(0, 250).unwrap();
    assert_eq!(page.len(), 250);
    for span in [&page[0], &page[99], &page[100], &page[249]] {
        let source = span.read_source(&repo).unwrap();
        assert!(
            source.contains(&format!("pub fn {}(", span.symbol)),
            "{span:?}: {source}"
        );
        assert_eq!(
            source.lines().count() as u32,
            span.end_line - span.start_line + 1
        );
    }

    // A second gen-db into the same directory refuses to touch the index.
    let out = Command::new(env!("CARGO_BIN_EXE_enrich-bench"))
        .args(["gen-db", "--spans", "1", "--out", repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn overhead_enriches_every_pending_span_and_select_batch_times_pages() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    gen_db(&repo, "300", "120");
    let events = dir.path().join("events.jsonl");
    let report = bench(&[
        "overhead",
        "--repo",
        repo.to_str().unwrap(),
        "--concurrency",
        "4",
        "--events",
        events.to_str().unwrap(),
    ]);
    check_keys(
        &report,
        "overhead",
        &[
            "spans",
            "succeeded",
            "seconds",
            "spans_per_sec",
            "pending_after",
        ],
    );
    assert_eq!(report["spans"], 300);
    assert_eq!(report["succeeded"], 300);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["pending_after"], 0);

    // The enrichments are stored, with the instant backend's answer for each span's lines.
    let db = Db::open_read_only(enrich_db::default_db_path(&repo)).unwrap();
    let stats = db.stats().unwrap();
    assert_eq!((stats.enriched, stats.pending), (300, 0));
    let span = db.pending_spans(0, 1).unwrap();
    assert!(span.is_empty(), "nothing is pending any more");
    let log = std::fs::read_to_string(&events).unwrap();
    let finished = log
        .lines()
        .filter(|l| l.contains(r#""type":"span_finished""#))
        .count();
    assert_eq!(finished, 300);

    let report = bench(&[
        "select-batch",
        "--repo",
        repo.to_str().unwrap(),
        "--iterations",
        "3",
    ]);
    check_keys(
        &report,
        "select-batch",
        &["first_page_ms", "deep_page_ms", "deep_cursor", "pending"],
    );
    assert_eq!(report["pending"], 0);
    assert_eq!(report["first_page_rows"], 0);
}

#[test]
fn select_batch_reads_full_pages_of_a_fresh_index() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    gen_db(&repo, "1000", "400");
    let report = bench(&[
        "select-batch",
        "--repo",
        repo.to_str().unwrap(),
        "--batch-size",
        "7",
        "--iterations",
        "5",
    ]);
    assert_eq!(report["pending"], 1000);
    assert_eq!(report["first_page_rows"], 7);
    assert_eq!(report["deep_page_rows"], 7);
    // 90% of the way through ids 1..=1000.
    assert_eq!(report["deep_cursor"], 901);
}

#[test]
fn bad_arguments_exit_2_with_clap_s_message_and_help_lists_every_flag() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_enrich-bench"))
            .args(args)
            .output()
            .expect("enrich-bench runs")
    };
    for (args, message) in [
        (
            &["gen-db", "--spans", "0", "--out", "x"][..],
            "invalid value '0' for '--spans <N>'",
        ),
        (
            &["select-batch"][..],
            "the following required arguments were not provided",
        ),
        (
            &["overhead", "--repo", "r", "--bogus", "1"][..],
            "unexpected argument '--bogus'",
        ),
        (&["measure"][..], "unrecognized subcommand 'measure'"),
        (&[][..], "Usage: enrich-bench <COMMAND>"),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    for (command, flags) in [
        ("gen-db", &["--spans", "--spans-per-file", "--out"][..]),
        (
            "overhead",
            &[
                "--repo",
                "--db",
                "--concurrency",
                "--batch-size",
                "--commit-every",
                "--events",
            ][..],
        ),
        (
            "select-batch",
            &["--repo", "--db", "--batch-size", "--iterations"][..],
        ),
        ("span-prompts", &["--repo", "--db", "--limit"][..]),
    ] {
        let out = run(&[command, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command}");
        for flag in flags {
            assert!(
                help.contains(flag),
                "{command} --help lacks {flag}:\n{help}"
            );
        }
    }
}

#[test]
fn span_prompts_prints_each_pending_span_s_own_part_of_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    gen_db(&repo, "5", "5");
    let report = bench(&[
        "span-prompts",
        "--repo",
        repo.to_str().unwrap(),
        "--limit",
        "3",
    ]);
    assert_eq!(report["command"], "span-prompts");
    assert_eq!(report["fingerprint"].as_str().map(str::len), Some(12));
    let spans = report["spans"].as_array().unwrap();
    let db = Db::open_read_only(enrich_db::default_db_path(&repo)).unwrap();
    let pending = db.pending_spans(0, 3).unwrap();
    assert_eq!(spans.len(), 3, "--limit takes the first pending spans");
    let system = &spans[0]["system_bytes"];
    assert!(system.as_u64().is_some_and(|n| n > 500), "{system}");
    for (printed, span) in spans.iter().zip(&pending) {
        assert_eq!(printed["span_hash"], span.span_hash.as_str());
        assert_eq!(&printed["system_bytes"], system, "one shared part");
        let text = printed["text"].as_str().unwrap();
        // The span's part: its header and its numbered source, none of the shared part.
        assert!(
            text.starts_with(&format!(
                "Span: lines {}-{} of {}",
                span.start_line, span.end_line, span.file_path
            )),
            "{text}"
        );
        let first_line = span.read_source(&repo).unwrap();
        let first_line = first_line.lines().next().unwrap();
        assert!(
            text.contains(&format!("{} | {first_line}", span.start_line)),
            "{text}"
        );
        assert!(!text.contains("enrichment.v1"), "{text}");
    }
}
