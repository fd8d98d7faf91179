//! `enrich search` end to end: spans enriched by a run are found at once, ranked, filtered and
//! printed as text or JSON; a bad FTS5 query is a usage error; LLMC's own `enrichments_fts`
//! follows the run.

use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// A repository whose spans a run against the fake server enriched.
fn enriched(repo: &TestRepo) -> Server {
    let server = Server::healthy();
    repo.write_config(&config(&[("local", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);
    server
}

fn symbols(report: &Value) -> Vec<String> {
    report["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["symbol"].as_str().expect("symbol").to_owned())
        .collect()
}

#[test]
fn enriched_spans_are_found_ranked_and_filtered() {
    let repo = TestRepo::new();
    let _server = enriched(&repo);

    // The fake's summaries all say "Deterministic test enrichment of lines …".
    let all = repo.enrich(&["--json", "search", "deterministic"]);
    all.expect_code(0);
    let report = all.json();
    assert_eq!(symbols(&report).len(), repo.spans.len(), "{report}");
    assert_eq!(report["query"]["text"], "deterministic");
    let first = &report["hits"][0];
    for key in [
        "rank",
        "path",
        "start_line",
        "end_line",
        "symbol",
        "kind",
        "language",
        "span_hash",
        "score",
        "excerpt",
    ] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    assert!(
        first["excerpt"]
            .as_str()
            .expect("excerpt")
            .contains("**Deterministic**"),
        "{first}"
    );

    // A symbol match comes first, with its place.
    let square = repo
        .enrich(&["--json", "search", "square", "enrichment"])
        .json();
    assert_eq!(symbols(&square)[0], "square", "{square}");
    assert_eq!(square["hits"][0]["path"], "src/geometry.py");
    assert_eq!(square["hits"][0]["start_line"], 10);
    assert_eq!(square["hits"][0]["end_line"], 11);
    assert_eq!(square["hits"][0]["span_hash"], repo.span("square").hash);

    // Filters and the limit.
    let rust = repo.enrich(&["--json", "search", "--lang", "rust", "deterministic"]);
    let mut found = symbols(&rust.json());
    found.sort();
    assert_eq!(found, ["add", "mul"]);
    let docs = repo.enrich(&["--json", "search", "--path", "docs/*", "deterministic"]);
    assert_eq!(symbols(&docs.json()), ["Guide"]);
    let two = repo.enrich(&["--json", "search", "--limit", "2", "deterministic"]);
    assert_eq!(symbols(&two.json()).len(), 2);

    // Text: rank, place, symbol, score, then the excerpt.
    let text = repo.enrich(&["search", "square"]);
    text.expect_code(0);
    let first_line = text.stdout.lines().next().expect("a line");
    assert!(
        first_line.starts_with("1. src/geometry.py:10-11  square  (score "),
        "{}",
        text.stdout
    );
    let none = repo.enrich(&["search", "zebra"]);
    none.expect_code(0);
    assert!(
        none.stdout.starts_with("no enrichment matches"),
        "{}",
        none.stdout
    );
}

#[test]
fn punctuation_is_a_word_and_a_bad_fts5_query_is_a_usage_error() {
    let repo = TestRepo::new();
    let _server = enriched(&repo);
    for words in ["Rect.area", "square-root", "\"square", "(mul"] {
        repo.enrich(&["search", words]).expect_code(0);
    }
    let area = repo.enrich(&["--json", "search", "Rect.area"]).json();
    assert_eq!(symbols(&area)[0], "Rect.area", "{area}");

    let bad = repo.enrich(&["search", "--fts", "square AND"]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("is not valid FTS5 syntax"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("SqliteFailure"), "{}", bad.stderr);
    let column = repo.enrich(&["search", "--fts", "colour:red"]);
    column.expect_code(2);
    let glob = repo.enrich(&["search", "--path", "src/[", "square"]);
    glob.expect_code(2);
    assert!(
        glob.stderr.contains("the path glob \"src/[\" is not valid"),
        "{}",
        glob.stderr
    );
    let near = repo.enrich(&["--json", "search", "--fts", "NEAR(deterministic lines, 3)"]);
    near.expect_code(0);
    assert_eq!(symbols(&near.json()).len(), repo.spans.len());

    let empty = repo.enrich(&["search", "--", "---"]);
    empty.expect_code(2);
    assert!(
        empty.stderr.contains("no word to search for"),
        "{}",
        empty.stderr
    );
}

#[test]
fn llmc_s_search_table_follows_what_a_run_writes() {
    let repo = TestRepo::llmc();
    repo.raw()
        .execute_batch(
            "CREATE VIRTUAL TABLE enrichments_fts USING fts5(
                 symbol, summary, path, start_line, end_line, tokenize='unicode61')",
        )
        .expect("LLMC's table");
    let _server = enriched(&repo);
    assert_eq!(
        repo.count(
            "SELECT count(*) FROM enrichments_fts WHERE enrichments_fts MATCH 'deterministic'"
        ),
        repo.spans.len() as i64
    );
    assert_eq!(
        repo.count(
            "SELECT count(*) FROM enrichments_fts f JOIN enrichments e ON e.rowid = f.rowid
             JOIN spans s ON s.span_hash = e.span_hash
             WHERE enrichments_fts MATCH 'square' AND s.symbol = 'square'
               AND f.path = 'src/geometry.py' AND f.start_line = 10"
        ),
        1
    );
}

#[test]
fn enrichments_llmc_stored_are_searchable() {
    let repo = TestRepo::llmc();
    repo.raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary) VALUES (?1, 'Multiplies two integers.')",
            [&repo.span("mul").hash],
        )
        .expect("LLMC's enrichment");
    let found = repo.enrich(&["--json", "search", "integers"]);
    found.expect_code(0);
    assert_eq!(symbols(&found.json()), ["mul"]);
}

#[test]
fn enrich_index_builds_a_missing_search_table() {
    let repo = TestRepo::new();
    // Spans as enrich's indexer splits them, so the second index keeps them.
    repo.enrich(&["index"]).expect_code(0);
    let _server = enriched(&repo);
    repo.raw()
        .execute_batch("DROP TABLE enrich_search")
        .expect("drop");
    repo.enrich(&["index"]).expect_code(0);
    let indexed = repo.count(
        "SELECT count(*) FROM enrichments e JOIN spans s ON s.span_hash = e.span_hash
         JOIN files f ON f.id = s.file_id",
    );
    assert!(indexed > 0, "the indexer kept some enrichments");
    assert_eq!(repo.count("SELECT count(*) FROM enrich_search"), indexed);
}
