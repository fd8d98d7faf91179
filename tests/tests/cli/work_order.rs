//! The work order through the binary: `plan --json` shows each span's weight, priority class and
//! place; `run` takes spans in that order; a weight change reorders without re-indexing;
//! `--no-code-first` and an LLMC `llmc.toml` with `[enrichment.runner]` and
//! `[enrichment.path_weights]` work as LLMC users expect.

use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// A span as the plan lists it: path, first line, last line.
type At = (String, u64, u64);

/// The fixture's repository plus test and vendored files: src/ (6 spans, weight 1), docs/ (1,
/// weight 8), tests/ (2, weight 6), vendor/ (2, weight 10), indexed in that order.
fn repo() -> TestRepo {
    let mut repo = TestRepo::new();
    repo.add_file(
        "tests/test_geometry.py",
        "python",
        b"def test_area():\n    assert Rect(2, 3).area() == 6\n\ndef test_square():\n    assert square(2).w == 2\n",
        &[
            ("test_area", "function", 1, 2),
            ("test_square", "function", 4, 5),
        ],
    );
    repo.add_file(
        "vendor/dep/util.py",
        "python",
        b"def clamp(x):\n    return max(0, x)\n\ndef wrap(x):\n    return x % 10\n",
        &[("clamp", "function", 1, 2), ("wrap", "function", 4, 5)],
    );
    repo
}

/// The planned spans: where each is, and its (order, weight, priority).
fn planned(plan: &Value) -> Vec<(At, (u64, u64, String))> {
    plan["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                (
                    s["path"].as_str().expect("path").to_owned(),
                    s["line_start"].as_u64().expect("line_start"),
                    s["line_end"].as_u64().expect("line_end"),
                ),
                (
                    s["order"].as_u64().expect("order"),
                    s["weight"].as_u64().expect("weight"),
                    s["priority"].as_str().expect("priority").to_owned(),
                ),
            )
        })
        .collect()
}

/// The files of the planned spans, in plan order.
fn paths(plan: &Value) -> Vec<String> {
    planned(plan).into_iter().map(|(at, _)| at.0).collect()
}

fn owned(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

#[test]
fn plan_and_run_take_spans_by_weight_with_the_starvation_ratio() {
    let server = Server::healthy();
    let repo = repo();
    repo.write_config(&config(
        &[("fake", server.url())],
        "starvation_ratio_high = 2",
    ));

    let plan = repo.enrich(&["--json", "plan"]).expect_code(0).json();
    assert_eq!(plan["work_order"]["code_first"], true, "{plan}");
    assert_eq!(
        plan["by_priority"],
        serde_json::json!({"high": 6, "medium": 2, "low": 3})
    );
    // First queue (weights 1-6) by weight then span id: src/ 6, then tests/ 2. Low queue
    // (7-10): docs 1 (8), vendor 2 (10). Two of the first, one of the low, and so on.
    let geometry = "src/geometry.py";
    let lib = "src/lib.rs";
    let tests = "tests/test_geometry.py";
    let expected = owned(&[
        geometry,
        geometry,
        "docs/guide.md",
        geometry,
        geometry,
        "vendor/dep/util.py",
        lib,
        lib,
        "vendor/dep/util.py",
        tests,
        tests,
    ]);
    assert_eq!(paths(&plan), expected, "{plan}");
    for (index, (at, (order, weight, priority))) in planned(&plan).into_iter().enumerate() {
        assert_eq!(order, index as u64 + 1, "{at:?}");
        let (want_weight, want_priority) = match at.0.split('/').next() {
            Some("src") => (1, "high"),
            Some("tests") => (6, "medium"),
            Some("docs") => (8, "low"),
            _ => (10, "low"),
        };
        assert_eq!(
            (weight, priority.as_str()),
            (want_weight, want_priority),
            "{at:?}"
        );
    }
    let ran = repo.enrich(&["plan"]);
    let text = &ran.expect_code(0).stdout;
    assert!(
        text.contains("#1 src/geometry.py:1-7 Rect  weight 1 (high, \"src/**\")"),
        "{text}"
    );
    assert!(
        text.contains("code first: by weight, 2 high or medium then 1 low"),
        "{text}"
    );

    // One span in flight: the server sees the spans in the plan's order.
    let ran = repo
        .enrich(&["--json", "run", "--concurrency", "1"])
        .expect_code(0)
        .json();
    assert_eq!(ran["succeeded"], 11, "{ran}");
    let seen: Vec<At> = server
        .prompts()
        .iter()
        .map(|prompt| {
            planned(&plan)
                .into_iter()
                .map(|(at, _)| at)
                .find(|(path, start, end)| {
                    let head = prompt.lines().next().unwrap_or_default();
                    let named = format!("Span: lines {start}-{end} of {path}");
                    head == format!("{named}.") || head.starts_with(&format!("{named}, "))
                })
                .unwrap_or_else(|| panic!("a prompt of no planned span:\n{prompt}"))
        })
        .collect();
    let in_plan_order: Vec<At> = planned(&plan).into_iter().map(|(at, _)| at).collect();
    assert_eq!(seen, in_plan_order);
}

#[test]
fn a_weight_change_reorders_without_reindexing_and_no_code_first_keeps_span_id_order() {
    let server = Server::healthy();
    let repo = repo();
    let base = config(&[("fake", server.url())], "");
    repo.write_config(&base);
    let first = repo
        .enrich(&["--json", "plan", "--limit", "1"])
        .expect_code(0)
        .json();
    assert_eq!(paths(&first), owned(&["src/geometry.py"]));

    let spans_before = repo.count("SELECT COUNT(*) FROM spans");
    repo.write_config(&format!(
        "{base}\n[enrichment.path_weights]\n\"docs/**\" = 1\n\"vendor/**\" = 2\n\"src/**\" = 9\n"
    ));
    let reweighed = repo
        .enrich(&["--json", "plan", "--limit", "4"])
        .expect_code(0)
        .json();
    assert_eq!(
        paths(&reweighed),
        owned(&[
            "docs/guide.md",
            "vendor/dep/util.py",
            "vendor/dep/util.py",
            "tests/test_geometry.py"
        ]),
        "{reweighed}"
    );
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM spans"),
        spans_before,
        "not re-indexed"
    );

    let by_id = repo
        .enrich(&["--json", "plan", "--no-code-first"])
        .expect_code(0)
        .json();
    assert_eq!(by_id["work_order"]["code_first"], false);
    let ids: Vec<u64> = by_id["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["span_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (1..=11).collect::<Vec<u64>>());
}

#[test]
fn an_llmc_toml_with_runner_keys_and_path_weights_orders_the_run() {
    let server = Server::healthy();
    let repo = repo();
    // LLMC's spelling, as an LLMC user's llmc.toml has it, with keys enrich does not read.
    let toml = format!(
        r#"[enrichment]
default_chain = "athena"
batch_size = 50
est_tokens_per_span = 350

[enrichment.runner]
code_first_default = true
starvation_ratio_high = 1
starvation_ratio_low = 1
max_concurrent = 4
code_frist_default = false

[enrichment.path_weights]
"src/**"        = 1
"**/tests/**"   = 6
"docs/**"       = 8
"vendor/**"     = 10

[[enrichment.chain]]
name = "athena"
chain = "athena"
provider = "ollama"
model = "qwen2.5:7b-instruct"
url = "{}"
"#,
        server.url()
    );
    std::fs::write(repo.root.join("llmc.toml"), toml).expect("write llmc.toml");

    let plan = repo.enrich(&["--json", "plan", "--limit", "5"]);
    plan.expect_code(0);
    // LLMC's own keys pass in silence; a misspelt one is warned about and left unread.
    assert!(
        plan.stderr.contains(&format!(
            "enrichment.runner.code_frist_default in {}, line 11 is ignored: enrich does not \
             read it (did you mean `code_first_default`?)",
            repo.root.join("llmc.toml").display()
        )),
        "a misspelt runner key is reported: {}",
        plan.stderr
    );
    for silent in ["max_concurrent", "est_tokens_per_span"] {
        assert!(!plan.stderr.contains(silent), "{silent}: {}", plan.stderr);
    }
    let plan = plan.json();
    assert_eq!(
        paths(&plan),
        owned(&[
            "src/geometry.py",
            "docs/guide.md",
            "src/geometry.py",
            "vendor/dep/util.py",
            "src/geometry.py"
        ]),
        "one of each queue in turn: {plan}"
    );
    assert_eq!(plan["work_order"]["starvation_ratio_high"], 1);
}
