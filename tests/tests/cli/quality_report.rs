//! `enrich quality` and `enrich compare` on indexes filled through the real write path: runs
//! of the pipeline against the fake Ollama server (its `nonsense` fault makes the gate reject
//! answers), and runs written with enrich-db's API, as a run before the prompt fingerprint was
//! recorded left them.

use enrich_db::{Db, EnrichmentRow, QualityRow, RunStatus, SpanOutcome, Stored};
use enrich_testkit::{FakeOllamaConfig, Fault};
use enrich_types::{AttemptOutcome, AttemptRecord, Enrichment, FailureKind, RunId};
use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// The `--json` groups of `enrich quality ARGS`, by backend.
fn groups(repo: &TestRepo, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["--json", "quality"];
    argv.extend(args);
    let ran = repo.enrich(&argv);
    ran.expect_code(0);
    ran.json()["groups"].as_array().expect("groups").clone()
}

fn group<'a>(groups: &'a [Value], backend: &str) -> &'a Value {
    groups
        .iter()
        .find(|g| g["backend"] == backend)
        .unwrap_or_else(|| panic!("no group of {backend}: {groups:?}"))
}

#[test]
fn quality_reports_each_backend_s_rejections_scores_and_tokens_and_compare_puts_runs_side_by_side()
{
    let nonsense = Server::start(FakeOllamaConfig::default().with_fault_rate(Fault::Nonsense, 1.0));
    let healthy = Server::healthy();
    let repo = TestRepo::new();
    let spans = repo.spans.len() as u64;
    repo.write_config(&config(
        &[("small", nonsense.url()), ("big", healthy.url())],
        "",
    ));
    repo.enrich(&["run"]).expect_code(0);

    let report = groups(&repo, &[]);
    assert_eq!(report.len(), 2, "{report:?}");
    let small = group(&report, "small");
    assert_eq!(small["spans_tried"], spans);
    assert_eq!(small["attempts"], 2 * spans, "asked, then asked again");
    assert_eq!(small["spans_enriched"], 0);
    assert_eq!(small["first_attempts"], spans);
    assert_eq!(small["first_try_valid_rate"], 0.0);
    assert_eq!(small["gate_rejections"], 2 * spans);
    let by_check = small["rejections_by_check"].as_array().expect("checks");
    assert!(
        by_check
            .iter()
            .any(|c| c["check"] == "list_item_placeholder" && c["count"] == 2 * spans),
        "{by_check:?}"
    );
    assert!(small["prompt_tokens"].as_u64().unwrap() > 0, "{small}");
    assert_eq!(small["prompt_tokens_per_enrichment"], Value::Null);
    assert_eq!(small["quality_score"], Value::Null);

    let big = group(&report, "big");
    assert_eq!(
        (big["spans_enriched"].as_u64(), big["stored"].as_u64()),
        (Some(spans), Some(spans))
    );
    assert_eq!(
        big["first_attempts"], 0,
        "big only ever served third attempts"
    );
    assert_eq!(big["first_try_valid_rate"], Value::Null);
    assert_eq!(big["gate_rejections"], 0);
    let score = &big["quality_score"];
    assert_eq!(score["scored"], spans, "{big}");
    let mean = score["mean"].as_f64().unwrap();
    assert!(mean > 0.0 && mean <= 1.0, "{score}");
    assert!(score["p10"].as_f64() <= score["p50"].as_f64());
    assert!(score["p50"].as_f64() <= score["p90"].as_f64());
    assert!(big["mean_summary_words"].as_f64().unwrap() >= 2.0, "{big}");
    let per = big["output_tokens_per_enrichment"].as_f64().unwrap();
    let expected = big["output_tokens"].as_f64().unwrap() / spans as f64;
    assert!((per - expected).abs() < 1e-9, "{per} {expected}");
    // One run, one prompt: the built-in prompt's fingerprint, 12 hex digits.
    let fingerprint = big["prompt_fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(
        (small["chain"].as_str(), big["chain"].as_str()),
        (Some("local"), Some("local"))
    );
    assert_eq!(small["prompt_fingerprint"], fingerprint.as_str());
    assert!(
        fingerprint.len() == 12 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()),
        "{fingerprint}"
    );

    let text = repo.enrich(&["quality", "--worst", "2"]);
    text.expect_code(0);
    let out = &text.stdout;
    assert!(
        out.contains(&format!(
            "model qwen2.5:7b-instruct  chain local  backend small  prompt {fingerprint}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("first-try valid    0.0% (0 of {spans})")),
        "{out}"
    );
    let rejections = 2 * spans;
    assert!(
        out.contains(&format!(
            "gate rejections    {rejections}: list_item_placeholder {rejections}"
        )),
        "{out}"
    );
    assert!(out.contains("lowest scores"), "{out}");
    let show = out
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("enrich show sha256:"))
        .expect("an `enrich show` command");
    let hash = show.trim_start_matches("enrich show ");
    repo.enrich(&["show", hash]).expect_code(0);

    // A second run with another prompt, over the same spans made pending again.
    repo.raw().execute("DELETE FROM enrichments", []).unwrap();
    repo.write_config(&format!(
        "{}\n[enrichment.prompt]\ntemplate = \"Describe {{path}} lines {{line_start}}-{{line_end}}:\\n{{snippet}}\"\n",
        config(&[("big", healthy.url())], "")
    ));
    repo.enrich(&["run"]).expect_code(0);
    let both = groups(&repo, &["--run", "2"]);
    assert_eq!(both.len(), 1, "{both:?}");
    assert_ne!(
        both[0]["prompt_fingerprint"],
        fingerprint.as_str(),
        "another prompt"
    );
    assert_eq!(both[0]["first_try_valid_rate"], 1.0);
    // Run 1's enrichments were replaced: they are no longer stored.
    assert_eq!(group(&groups(&repo, &["--run", "1"]), "big")["stored"], 0);

    let compared = repo.enrich(&["--json", "compare", "--run", "1", "--run", "2"]);
    compared.expect_code(0);
    let doc = compared.json();
    assert_eq!(doc["spans_both_enriched"], spans, "{doc}");
    assert_eq!(doc["sides"][0]["label"], "run 1");
    assert_eq!(doc["sides"][0]["figures"]["gate_rejections"], 2 * spans);
    assert_eq!(doc["sides"][1]["figures"]["first_try_valid_rate"], 1.0);
    let examples = doc["examples"].as_array().expect("examples");
    assert_eq!(examples.len(), 3);
    let first = &examples[0];
    assert!(first["file_path"].is_string(), "{first}");
    assert_eq!(
        first["sides"][0]["stored"],
        Value::Null,
        "run 1's text is not kept"
    );
    assert_eq!(first["sides"][0]["attempts"], 3);
    assert_eq!(first["sides"][0]["first_try_valid"], false);
    assert!(
        first["sides"][1]["stored"]["summary"].is_string(),
        "{first}"
    );

    let text = repo.enrich(&["compare", "--run", "1", "--run", "2", "--examples", "1"]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains(&format!("run 1 vs run 2: {spans} span(s) both enriched")),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("summary not kept"), "{}", text.stdout);
    assert_eq!(
        text.stdout.matches("\nexample ").count(),
        1,
        "{}",
        text.stdout
    );

    let mixed = repo.enrich(&["compare", "--run", "1"]);
    mixed.expect_code(2);
}

#[test]
fn quality_groups_attempts_by_the_chain_their_span_was_routed_to() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let spans = repo.spans.len() as u64;
    // Two chains whose only backend has the same name and model: only the chain tells their
    // attempts apart.
    let mut toml = config(&[("gpu", server.url())], "");
    toml.push_str(&format!(
        "\n[[enrichment.chain]]\nname = \"gpu\"\nchain = \"docs\"\nprovider = \"ollama\"\nmodel = \"qwen2.5:7b-instruct\"\nurl = \"{}\"\ntimeout_seconds = 20\n",
        server.url()
    ));
    repo.write_config(&toml);
    repo.enrich(&["run", "--chain", "local"]).expect_code(0);
    repo.raw().execute("DELETE FROM enrichments", []).unwrap();
    repo.enrich(&["run", "--chain", "docs"]).expect_code(0);

    // The pipeline stored each attempt's chain in the attempt log.
    let conn = repo.raw();
    let mut stmt = conn
        .prepare("SELECT run_id, chain, COUNT(*) FROM enrich_attempts GROUP BY 1, 2 ORDER BY 1")
        .unwrap();
    let logged: Vec<(i64, Option<String>, u64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(stmt);
    drop(conn);
    assert_eq!(
        logged,
        [
            (1, Some("local".to_owned()), spans),
            (2, Some("docs".to_owned()), spans)
        ]
    );

    let report = groups(&repo, &[]);
    let keys: Vec<(&str, &str, &str)> = report
        .iter()
        .map(|g| {
            let field = |name: &str| g[name].as_str().unwrap_or_default();
            (field("model"), field("chain"), field("backend"))
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("qwen2.5:7b-instruct", "docs", "gpu"),
            ("qwen2.5:7b-instruct", "local", "gpu")
        ],
        "{report:?}"
    );
    for g in &report {
        assert_eq!(
            (g["spans_enriched"].as_u64(), g["attempts"].as_u64()),
            (Some(spans), Some(spans))
        );
    }
    assert_eq!(
        report[0]["stored"], spans,
        "the second run's enrichments are stored"
    );
    assert_eq!(report[1]["stored"], 0);
    let text = repo.enrich(&["quality"]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("model qwen2.5:7b-instruct  chain docs  backend gpu  prompt ")
            && text
                .stdout
                .contains("model qwen2.5:7b-instruct  chain local  backend gpu  prompt "),
        "{}",
        text.stdout
    );

    let compared = repo.enrich(&["--json", "compare", "--run", "1", "--run", "2"]);
    compared.expect_code(0);
    let doc = compared.json();
    assert_eq!(doc["sides"][0]["figures"]["chain"], "local", "{doc}");
    assert_eq!(doc["sides"][1]["figures"]["chain"], "docs", "{doc}");
    let text = repo.enrich(&["compare", "--run", "1", "--run", "2"]);
    text.expect_code(0);
    for chain in ["local", "docs"] {
        let line = format!("  chain              {chain}\n");
        assert!(text.stdout.contains(&line), "{}", text.stdout);
    }
}

/// A successful attempt of `model` for a span.
fn success(model: &str, attempt: u32, tokens: u64) -> AttemptRecord {
    AttemptRecord {
        backend: "gpu".to_owned(),
        provider: "ollama".to_owned(),
        model: model.to_owned(),
        host: "localhost".to_owned(),
        attempt,
        started_at_ms: 1,
        duration_ms: 10,
        outcome: AttemptOutcome::Success,
        failure_kind: None,
        message: None,
        prompt_eval_count: Some(tokens),
        eval_count: Some(tokens / 10),
        tokens_per_second: None,
    }
}

fn stored(model: &str, summary: &str, score: f64) -> Stored {
    Stored::Enriched(Box::new(EnrichmentRow {
        enrichment: Enrichment {
            summary: summary.to_owned(),
            ..Enrichment::default()
        },
        model: model.to_owned(),
        quality: Some(QualityRow {
            score,
            level: "basic".to_owned(),
            failed_checks: vec!["usage_without_symbol".to_owned()],
            repairs: Vec::new(),
            gate_version: "gate-1".to_owned(),
        }),
        ..EnrichmentRow::default()
    }))
}

#[test]
fn runs_without_a_prompt_fingerprint_report_unknown_and_worst_lists_the_lowest_scores_first() {
    let repo = TestRepo::new();
    let empty = repo.enrich(&["quality", "--worst", "3"]);
    empty.expect_code(0);
    assert!(
        empty.stdout.contains("no attempts recorded")
            && empty.stdout.contains("no stored enrichment"),
        "{}",
        empty.stdout
    );
    repo.enrich(&["quality", "--worst", "0"]).expect_code(2);
    let mut db = Db::open(&repo.db).expect("open");
    // Runs started as before the fingerprint was recorded.
    let run = db.start_run("fp").expect("run");
    let scores = [0.9, 0.25, 0.6, 1.0, 0.5, 0.75];
    let mut outcomes = Vec::new();
    for (span, score) in repo.spans.iter().zip(scores) {
        let rejected = AttemptRecord {
            outcome: AttemptOutcome::Failure,
            failure_kind: Some(FailureKind::QualityRejected),
            message: Some(
                "quality check `summary_bare_value` failed: the summary is only a number"
                    .to_owned(),
            ),
            ..success("small", 1, 100)
        };
        outcomes.push(SpanOutcome {
            span_hash: span.hash.clone(),
            run_id: run,
            chain: None,
            attempts: vec![rejected, success("small", 2, 100)],
            stored: stored("small", "one two three four", score),
        });
    }
    db.write_batch(&outcomes).expect("write");
    db.finish_run(run, 0, RunStatus::Completed).expect("finish");

    let ran = repo.enrich(&["--json", "quality", "--worst", "3"]);
    ran.expect_code(0);
    let doc = ran.json();
    let listed = doc["groups"].as_array().expect("groups");
    assert_eq!(listed.len(), 1);
    let g = &listed[0];
    assert_eq!(g["prompt_fingerprint"], "unknown");
    assert_eq!(g["chain"], "unknown", "attempts logged without their chain");
    assert_eq!(g["model"], "small");
    assert_eq!(g["first_try_valid_rate"], 0.0);
    assert_eq!(g["spans_enriched"], 6);
    assert_eq!(g["gate_rejections"], 6);
    assert_eq!(g["rejections_by_check"][0]["check"], "summary_bare_value");
    assert_eq!(
        g["failed_checks_let_through"][0]["check"],
        "usage_without_symbol"
    );
    assert_eq!(g["failed_checks_let_through"][0]["count"], 6);
    assert_eq!(g["mean_summary_words"], 4.0);
    // 12 attempts of 100 prompt and 10 output tokens, over 6 enrichments.
    assert_eq!(g["prompt_tokens_per_enrichment"], 200.0);
    assert_eq!(g["output_tokens_per_enrichment"], 20.0);
    let score = &g["quality_score"];
    assert_eq!(
        (score["min"].as_f64(), score["max"].as_f64()),
        (Some(0.25), Some(1.0))
    );
    assert_eq!(
        (
            score["p10"].as_f64(),
            score["p50"].as_f64(),
            score["p90"].as_f64()
        ),
        (Some(0.25), Some(0.6), Some(1.0))
    );

    let worst: Vec<f64> = doc["worst"]
        .as_array()
        .expect("worst")
        .iter()
        .map(|w| w["score"].as_f64().unwrap())
        .collect();
    assert_eq!(worst, [0.25, 0.5, 0.6]);
    let lowest = &doc["worst"][0];
    assert_eq!(lowest["span_hash"], repo.spans[1].hash.as_str());
    assert_eq!(lowest["symbol"], repo.spans[1].symbol);
    assert_eq!(
        lowest["show"],
        format!("enrich show {}", repo.spans[1].hash).as_str()
    );

    // Another model re-enriches two spans in a later run: compared by model, on those two.
    let later = db.start_run("fp").expect("run");
    let outcomes: Vec<SpanOutcome> = repo.spans[..2]
        .iter()
        .map(|span| SpanOutcome {
            span_hash: span.hash.clone(),
            run_id: later,
            chain: None,
            attempts: vec![success("large", 1, 300)],
            stored: stored("large", "a longer summary of five", 1.0),
        })
        .collect();
    db.write_batch(&outcomes).expect("write");
    let ran = repo.enrich(&["--json", "compare", "--model", "small", "--model", "large"]);
    ran.expect_code(0);
    let doc = ran.json();
    assert_eq!(doc["spans_both_enriched"], 2, "{doc}");
    let (small, large) = (&doc["sides"][0]["figures"], &doc["sides"][1]["figures"]);
    assert_eq!(
        (small["spans_enriched"].as_u64(), small["stored"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(large["first_try_valid_rate"], 1.0);
    assert_eq!(large["quality_score"]["mean"], 1.0);
    assert_eq!(large["prompt_tokens_per_enrichment"], 300.0);
    assert_eq!(
        doc["examples"][0]["sides"][1]["stored"]["summary"],
        "a longer summary of five"
    );
    assert_eq!(RunId(2), later);

    // `--since` keeps the runs started within that age: the first run is made ten days old.
    repo.raw()
        .execute(
            "UPDATE enrich_runs SET started_at_ms = started_at_ms - 864000000 WHERE id = ?1",
            [run.0],
        )
        .unwrap();
    let recent = groups(&repo, &["--since", "7d"]);
    let models: Vec<&Value> = recent.iter().map(|g| &g["model"]).collect();
    assert_eq!(models, ["large"], "{recent:?}");
    assert_eq!(groups(&repo, &["--since", "11d"]).len(), 2);
}
