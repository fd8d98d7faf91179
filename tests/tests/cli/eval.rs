//! `enrich eval search`: questions ranked over the code alone and over the code and its
//! enrichments, with recall@1/5/10, MRR@10 and the lift.

use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// Writes the questions file into the repository and returns its path.
fn questions(repo: &TestRepo, lines: &[&str]) -> String {
    let path = repo.root.join("questions.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("questions");
    path.to_str().expect("utf-8").to_owned()
}

fn figure(report: &Value, ranking: &str, name: &str) -> f64 {
    report[ranking][name]
        .as_f64()
        .unwrap_or_else(|| panic!("{ranking}.{name} in {report}"))
}

const FIGURES: [&str; 4] = ["recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10"];

#[test]
fn what_only_an_enrichment_says_is_found_only_by_the_enriched_ranking() {
    let repo = TestRepo::new();
    // Enrichments as LLMC stores them, in words the code does not use.
    for (symbol, summary) in [
        ("square", "Builds a quadrilateral whose four edges match."),
        ("mul", "Product of two integers."),
    ] {
        repo.raw()
            .execute(
                "INSERT INTO enrichments (span_hash, summary, model, created_at) VALUES (?1, ?2, 'm', 1)",
                (&repo.span(symbol).hash, summary),
            )
            .expect("enrichment");
    }
    let file = questions(
        &repo,
        &[
            r#"{"id": "quad", "query": "Which function builds a quadrilateral?", "expect": "square"}"#,
            r#"{"query": "product of integers", "expect": ["mul", "nothing_like_it"]}"#,
            r#"{"query": "area", "expect": "src/geometry.py:6"}"#,
            r#"{"query": "anything", "expect": "no_such_symbol", "note": "not in this index"}"#,
        ],
    );
    let report = repo
        .enrich(&["--json", "eval", "search", &file])
        .expect_code(0)
        .json();
    assert_eq!(report["questions"], 4);
    assert_eq!(report["evaluated"], 3);
    assert_eq!(report["spans"], 7);
    assert_eq!(report["enriched_spans"], 2);
    let per_query = report["per_query"].as_array().expect("per query");
    let ranks: Vec<(&Value, &Value)> = per_query
        .iter()
        .map(|q| (&q["code_only_rank"], &q["enriched_rank"]))
        .collect();
    // quad and mul: code only finds nothing, enriched ranks them first; `area` is `Rect.area`'s
    // symbol and source word (line 6 is in `Rect` too: either counts) in both.
    let one = Value::from(1);
    assert_eq!(ranks[0], (&Value::Null, &one), "{report}");
    assert_eq!(ranks[1], (&Value::Null, &one));
    assert_eq!(ranks[2], (&one, &one));
    assert_eq!(per_query[0]["id"], "quad");
    assert_eq!(
        per_query[2]["relevant_spans"], 2,
        "Rect and Rect.area hold line 6"
    );
    assert_eq!(per_query[3]["relevant_spans"], 0);
    assert_eq!(per_query[3]["code_only_rank"], Value::Null);

    // By hand: code only 1 of 3 at every depth, MRR 1/3; enriched 3 of 3, MRR 1.
    for name in FIGURES {
        assert!(
            (figure(&report, "code_only", name) - 1.0 / 3.0).abs() < 1e-9,
            "{name}"
        );
        assert_eq!(figure(&report, "enriched", name), 1.0, "{name}");
        assert!(
            (figure(&report, "lift", name) - 2.0 / 3.0).abs() < 1e-9,
            "{name}"
        );
    }
    assert_eq!(report["answer_enriched"]["questions"], 2);
    assert_eq!(report["answer_enriched"]["lift"]["mrr_at_10"], 1.0);

    let text = repo.enrich(&["eval", "search", &file]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("4 questions, 3 evaluated (1 whose answer is not in the index left out)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("MRR@10"), "{}", text.stdout);
    assert!(
        text.stdout.contains("not in the index (no_such_symbol)"),
        "{}",
        text.stdout
    );
}

#[test]
fn with_the_fake_model_the_lift_is_the_difference_of_the_two_rankings() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);
    let file = questions(
        &repo,
        &[
            r#"{"query": "multiply two numbers", "expect": "mul"}"#,
            r#"{"query": "rectangle width and height", "expect": "Rect.__init__"}"#,
            r#"{"query": "square side", "expect": "src/geometry.py:10"}"#,
            r#"{"query": "deterministic test enrichment of lines 1-3", "expect": "src/lib.rs"}"#,
            r#"{"query": "Rect area", "expect": "src/*.py"}"#,
        ],
    );
    let report = repo
        .enrich(&["--json", "eval", "search", &file])
        .expect_code(0)
        .json();
    assert_eq!(report["evaluated"], 5);
    assert_eq!(report["enriched_spans"], 7, "the fake enriched every span");
    let per_query = report["per_query"].as_array().expect("per query");
    for ranking in ["code_only", "enriched"] {
        let ranks: Vec<Option<f64>> = per_query
            .iter()
            .map(|q| q[format!("{ranking}_rank")].as_f64())
            .collect();
        let n = ranks.len() as f64;
        let recall = |k: f64| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
        let mrr = ranks.iter().flatten().map(|r| 1.0 / r).sum::<f64>() / n;
        for (name, expected) in FIGURES
            .iter()
            .zip([recall(1.0), recall(5.0), recall(10.0), mrr])
        {
            assert!(
                (figure(&report, ranking, name) - expected).abs() < 1e-9,
                "{ranking} {name}"
            );
        }
    }
    for name in FIGURES {
        let lift = figure(&report, "enriched", name) - figure(&report, "code_only", name);
        assert!(
            (figure(&report, "lift", name) - lift).abs() < 1e-9,
            "{name}"
        );
    }
    // The fake's summaries name each span's lines: only the enriched ranking can use them.
    assert_eq!(per_query[3]["enriched_rank"], 1, "{report}");
}

#[test]
fn a_bad_questions_file_is_a_usage_error_naming_the_line() {
    let repo = TestRepo::new();
    let cases: [(&[&str], &str); 4] = [
        (
            &[r#"{"query": "q", "expect": "add"}"#, "not json"],
            "questions.jsonl:2 is not a question",
        ),
        (&[r#"{"query": "q"}"#], "missing field `expect`"),
        (&[""], "holds no question"),
        (
            &[r#"{"query": "q", "expect": "nothing_here"}"#],
            "none of the 1 questions has its answer in this index",
        ),
    ];
    for (lines, message) in cases {
        let file = questions(&repo, lines);
        let ran = repo.enrich(&["eval", "search", &file]);
        ran.expect_code(2);
        assert!(ran.stderr.contains(message), "{message}: {}", ran.stderr);
    }
    let ran = repo.enrich(&["eval", "search", "/nonexistent/questions.jsonl"]);
    ran.expect_code(2);
    assert!(
        ran.stderr.contains("/nonexistent/questions.jsonl"),
        "{}",
        ran.stderr
    );
}
