//! `enrich export`: every enriched span as JSON lines or CSV, with `--since`, `--path`,
//! `--include-source`, and `--out` written whole or not at all.

use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// A summary LLMC might have written: quotes, commas and a line break, which CSV must quote.
const AWKWARD_SUMMARY: &str = "Adds \"a\" and b, then\nreturns the sum; 100% safe, \"quoted\"";

/// The fixture repository with every span enriched by the fake model, then `add`'s enrichment
/// replaced by one LLMC wrote (awkward text, an old time, no quality score).
fn enriched_repo() -> (TestRepo, Server) {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);
    let add = repo.span("add").hash.clone();
    repo.raw()
        .execute(
            "UPDATE enrichments SET summary = ?2, inputs = '[\"a, b\", \"x\\ny\"]', tags = 'math,pure',
                 model = 'llmc-model', created_at = 1700000000 WHERE span_hash = ?1",
            (&add, AWKWARD_SUMMARY),
        )
        .expect("LLMC's row");
    repo.raw()
        .execute("DELETE FROM enrich_quality WHERE span_hash = ?1", [&add])
        .expect("no score");
    (repo, server)
}

/// The JSON lines of an export, each parsed.
fn records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn by_symbol<'a>(records: &'a [Value], symbol: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["symbol"] == symbol)
        .unwrap_or_else(|| panic!("no record of {symbol}"))
}

#[test]
fn jsonl_has_one_record_per_enriched_span_with_every_field() {
    let (repo, _server) = enriched_repo();
    let ran = repo.enrich(&["export"]);
    ran.expect_code(0);
    let records = records(&ran.stdout);
    assert_eq!(records.len(), repo.spans.len(), "{}", ran.stdout);

    // A span the fake model enriched, against what `enrich show` reads from the index.
    let area = by_symbol(&records, "Rect.area");
    let show = repo
        .enrich(&["--json", "show", &repo.span("Rect.area").hash])
        .expect_code(0)
        .json();
    let stored = &show["enrichment"]["enrichment"];
    assert_eq!(area["export_version"], 1);
    assert_eq!(area["span_hash"], show["span"]["span_hash"]);
    assert_eq!(area["path"], "src/geometry.py");
    assert_eq!(
        (&area["start_line"], &area["end_line"]),
        (&Value::from(6), &Value::from(7))
    );
    assert_eq!(area["kind"], "function");
    assert_eq!(area["language"], "python");
    for field in [
        "summary",
        "inputs",
        "outputs",
        "side_effects",
        "pitfalls",
        "usage_snippet",
        "evidence",
        "tags",
        "content_type",
        "content_language",
    ] {
        assert_eq!(area[field], stored[field], "{field}");
    }
    assert_eq!(area["schema_version"], "enrichment.v1");
    let provenance = &area["provenance"];
    assert_eq!(provenance["model"], "qwen2.5:7b-instruct");
    assert_eq!(
        provenance["created_at_unix"],
        show["enrichment"]["created_at"]
    );
    assert!(
        provenance["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
        "{provenance}"
    );
    let score = provenance["quality_score"]
        .as_f64()
        .expect("the gate scored it");
    assert!((0.0..=1.0).contains(&score));
    assert!(
        area.get("source").is_none(),
        "no source without --include-source"
    );

    // LLMC's row: its own text, time and model, and no score.
    let add = by_symbol(&records, "add");
    assert_eq!(add["summary"], AWKWARD_SUMMARY);
    assert_eq!(add["inputs"], serde_json::json!(["a, b", "x\ny"]));
    assert_eq!(add["tags"], serde_json::json!(["math", "pure"]));
    assert_eq!(add["provenance"]["model"], "llmc-model");
    assert_eq!(add["provenance"]["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(add["provenance"]["quality_score"], Value::Null);
    // LLMC wrote it over: how enrich made the earlier one no longer describes it.
    for field in PROVENANCE_FIELDS {
        assert_eq!(add["provenance"][field.0], Value::Null, "{}", field.0);
    }
}

/// The record's provenance fields recorded by enrich, each with its name in `enrich show
/// --json`'s `provenance`.
const PROVENANCE_FIELDS: [(&str, &str); 11] = [
    ("backend", "backend"),
    ("provider", "provider"),
    ("model_digest", "model_digest"),
    ("chain", "chain"),
    ("prompt_fingerprint", "prompt_fingerprint"),
    ("output_schema_version", "schema_version"),
    ("options_fingerprint", "options_fingerprint"),
    ("enrich_version", "enrich_version"),
    ("run_id", "run_id"),
    ("prompt_tokens", "prompt_tokens"),
    ("output_tokens", "output_tokens"),
];

#[test]
fn the_records_provenance_is_what_show_prints() {
    let (repo, _server) = enriched_repo();
    let records = records(&repo.enrich(&["export"]).expect_code(0).stdout);
    for symbol in ["Rect.area", "square", "Guide"] {
        let record = by_symbol(&records, symbol);
        let show = repo
            .enrich(&["--json", "show", &repo.span(symbol).hash])
            .expect_code(0)
            .json();
        let shown = &show["enrichment"]["enrichment"]["provenance"];
        assert!(shown.is_object(), "{symbol}: enrich recorded it: {show}");
        for (field, shown_as) in PROVENANCE_FIELDS {
            assert_eq!(
                record["provenance"][field], shown[shown_as],
                "{symbol}: {field}"
            );
        }
        assert_eq!(record["provenance"]["backend"], "fake", "{symbol}");
        assert_eq!(
            record["provenance"]["output_schema_version"], "enrichment.v1",
            "{symbol}"
        );
        assert!(record["provenance"]["run_id"].is_i64(), "{symbol}");
    }
}

#[test]
fn csv_quotes_what_needs_it_and_holds_the_same_records() {
    let (repo, _server) = enriched_repo();
    let jsonl = records(
        &repo
            .enrich(&["export", "--include-source"])
            .expect_code(0)
            .stdout,
    );
    let ran = repo.enrich(&["export", "--format", "csv", "--include-source"]);
    ran.expect_code(0);
    assert!(
        ran.stdout
            .contains("\"Adds \"\"a\"\" and b, then\nreturns the sum; 100% safe, \"\"quoted\"\"\""),
        "quotes doubled, the field quoted:\n{}",
        ran.stdout
    );
    let mut reader = csv::Reader::from_reader(ran.stdout.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[..3], ["export_version", "span_hash", "path"]);
    assert_eq!(header.last().map(String::as_str), Some("source"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(rows.len(), jsonl.len());
    for (row, record) in rows.iter().zip(&jsonl) {
        for (column, cell) in header.iter().zip(row.iter()) {
            // The provenance object's fields are flattened into columns of their own names.
            let value = record["provenance"].get(column).unwrap_or(&record[column]);
            let expected = match value {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            assert_eq!(cell, expected, "{column} of {}", record["symbol"]);
        }
    }

    let without = repo
        .enrich(&["export", "--format", "csv"])
        .expect_code(0)
        .stdout
        .clone();
    let first_line = without.lines().next().expect("header");
    assert!(
        !first_line.contains("source") && first_line.ends_with("output_tokens"),
        "{first_line}"
    );
}

#[test]
fn since_takes_a_time_or_an_age_and_path_takes_a_glob() {
    let (repo, _server) = enriched_repo();
    let symbols = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["export"];
        all.extend_from_slice(args);
        let mut found: Vec<String> = records(&repo.enrich(&all).expect_code(0).stdout)
            .iter()
            .map(|r| r["symbol"].as_str().expect("symbol").to_owned())
            .collect();
        found.sort();
        found
    };
    let fresh = [
        "Guide",
        "Rect",
        "Rect.__init__",
        "Rect.area",
        "mul",
        "square",
    ];
    assert_eq!(
        symbols(&["--since", "1d"]),
        fresh,
        "`add` was stored in 2023"
    );
    assert_eq!(
        symbols(&["--since", "2023-11-14T22:13:20Z"]).len(),
        7,
        "at the time counts"
    );
    assert_eq!(
        symbols(&["--since", "2023-11-14T23:13:21+01:00"]),
        fresh,
        "one second later"
    );
    assert_eq!(symbols(&["--since", "2023-11-15"]), fresh);
    assert_eq!(symbols(&["--path", "*.rs"]), ["add", "mul"]);
    assert_eq!(
        symbols(&["--path", "src/*.py", "--since", "1d"]),
        ["Rect", "Rect.__init__", "Rect.area", "square"]
    );
    assert!(symbols(&["--path", "lib/**"]).is_empty());

    for bad in [
        ["--since", "yesterday"],
        ["--since", "2023-02-30"],
        ["--path", "src/["],
    ] {
        let mut args = vec!["export"];
        args.extend_from_slice(&bad);
        let ran = repo.enrich(&args);
        ran.expect_code(2);
        assert!(ran.stderr.contains(bad[1]), "{}", ran.stderr);
    }
}

#[test]
fn include_source_adds_each_spans_text_and_null_for_a_file_gone() {
    let (repo, _server) = enriched_repo();
    let ran = repo.enrich(&["export", "--include-source", "--path", "*.rs"]);
    ran.expect_code(0);
    let records = records(&ran.stdout);
    assert_eq!(
        by_symbol(&records, "add")["source"],
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"
    );
    assert_eq!(
        by_symbol(&records, "mul")["source"],
        "pub fn mul(a: i32, b: i32) -> i32 {\n    a * b\n}\n"
    );

    std::fs::remove_file(repo.root.join("src/lib.rs")).expect("remove");
    let ran = repo.enrich(&["export", "--include-source", "--path", "*.rs"]);
    ran.expect_code(0);
    let records = self::records(&ran.stdout);
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|r| r["source"].is_null()),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("source of 2 span(s) could not be read"),
        "{}",
        ran.stderr
    );
}

#[test]
fn out_is_replaced_whole_or_left_as_it_was() {
    let (repo, _server) = enriched_repo();
    let out_dir = repo.root.join("exports");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let out = out_dir.join("all.jsonl");
    std::fs::write(&out, "the previous export\n").expect("old file");
    let out_arg = out.to_str().expect("utf-8 path");

    let ran = repo.enrich(&["--json", "export", "--out", out_arg]);
    ran.expect_code(0);
    assert_eq!(ran.json()["exported"], 7);
    let written = std::fs::read_to_string(&out).expect("written");
    assert_eq!(records(&written).len(), 7);
    let names = || -> Vec<String> {
        std::fs::read_dir(&out_dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(), ["all.jsonl"], "no temporary file left");

    // A row that cannot be decoded half way through: the export fails, the old file stays.
    repo.raw()
        .execute(
            "UPDATE enrichments SET pitfalls = '{\"not\": \"a list\"}' WHERE span_hash = ?1",
            [&repo.span("mul").hash],
        )
        .expect("damage one row");
    let ran = repo.enrich(&["export", "--out", out_arg]);
    assert_ne!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("pitfalls"), "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&out).expect("kept"), written);
    assert_eq!(names(), ["all.jsonl"], "the partial file is removed");

    // A directory that does not exist is reported, nothing written.
    let ran = repo.enrich(&["export", "--out", "/nonexistent-dir/x.jsonl"]);
    assert_ne!(ran.code, Some(0));
    assert!(ran.stderr.contains("/nonexistent-dir"), "{}", ran.stderr);
}
