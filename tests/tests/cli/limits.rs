//! Budgets and circuit breakers, seen from the command line: what stops a run, what a dead
//! backend costs, and what `enrich status` shows.

use serde_json::Value;

use super::reliability::add_python_files;
use super::support::{Server, TestRepo, config, refused_url};

/// The events of the run's JSONL log with this `type`.
fn events_of(repo: &TestRepo, kind: &str) -> Vec<Value> {
    let log = std::fs::read_to_string(repo.root.join("logs/enrichment_events.jsonl"))
        .expect("the event log");
    log.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON event"))
        .filter(|event| event["type"] == kind)
        .collect()
}

#[test]
fn a_token_budget_stops_the_run_taking_spans_and_says_which_budget() {
    let server = Server::healthy();
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 2, 5);
    let total = repo.spans.len() as u64;
    repo.write_config(&config(&[("fake", server.url())], "concurrency = 1"));

    // One span's answer already uses more than one token: the run stops after it.
    let ran = repo.enrich(&["--json", "run", "--max-tokens", "1"]);
    let summary = ran.expect_code(0).json();

    assert_eq!(summary["end"], "budget_reached", "{summary}");
    assert_eq!(summary["status"], "interrupted");
    assert_eq!(summary["succeeded"], 1);
    assert_eq!(summary["budget_stop"]["kind"], "tokens_per_run");
    assert!(summary["tokens"].as_u64().expect("tokens") > 1, "{summary}");
    assert_eq!(server.stats().generations(), 1, "no span after the budget");
    assert_eq!(events_of(&repo, "budget_reached").len(), 1);

    let text = repo.enrich(&["run", "--max-tokens", "1"]);
    let out = &text.expect_code(0).stdout;
    assert!(
        out.contains("stopped taking spans: budget max_tokens_per_run reached: this run used"),
        "{out}"
    );
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(status["pending"], total - 2, "the rest stays pending");
}

#[test]
fn a_dead_first_backend_costs_three_attempts_then_its_circuit_stays_open() {
    let live = Server::healthy();
    let dead = refused_url();
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 4, 5);
    let total = repo.spans.len() as i64;
    repo.write_config(&config(
        &[("dead", &dead), ("live", live.url())],
        "concurrency = 1",
    ));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    assert_eq!(summary["succeeded"], total, "{summary}");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE backend = 'dead'"),
        3,
        "failures_to_open = 3, then every span passes the dead backend over"
    );
    let opened = events_of(&repo, "circuit_changed");
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["transition"]["backend"], "dead");
    assert_eq!(opened[0]["transition"]["to"]["phase"], "open");

    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    let circuits = &status["circuits"];
    assert_eq!(circuits["run_id"], summary["run_id"], "{status}");
    let dead_circuit = circuits["circuits"]
        .as_array()
        .expect("circuits")
        .iter()
        .find(|c| c["backend"] == "dead")
        .expect("the dead backend's circuit");
    assert_eq!(dead_circuit["state"]["phase"], "open", "{status}");
    let text = repo.enrich(&["status"]).expect_code(0).stdout.clone();
    assert!(
        text.contains("dead at ") && text.contains(": open until"),
        "{text}"
    );
}

#[test]
fn plan_estimates_tokens_and_cost_from_prices_then_from_the_attempt_log() {
    let server = Server::healthy();
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 2, 5);
    let total = repo.spans.len() as f64;
    let mut toml = config(&[("fake", server.url())], "concurrency = 1");
    toml.push_str("price_input_per_1m = 2.0\nprice_output_per_1m = 8.0\n");
    repo.write_config(&toml);

    let plan = repo
        .enrich(&["--json", "plan", "--limit", "2"])
        .expect_code(0)
        .json();
    let e = &plan["estimate"];
    let (prompt, output) = (
        e["prompt_tokens"].as_f64().expect("prompt"),
        e["output_tokens"].as_f64().expect("output"),
    );
    assert_eq!(e["output_from_history"], false, "{plan}");
    assert_eq!(e["output_tokens_per_span"], 350);
    assert!(prompt > 0.0, "{plan}");
    let cost = e["cost"].as_f64().expect("a cost: the backend has a price");
    assert!(
        (cost - (prompt * 2.0 + output * 8.0) / 1e6).abs() < 1e-9,
        "{plan}"
    );
    let all = e["all_pending_cost"].as_f64().expect("all pending");
    assert!((all - cost * total / 2.0).abs() < 1e-9, "{plan}");
    assert_eq!(server.stats().generations(), 0, "plan calls no backend");

    repo.enrich(&["run", "--limit", "3"]).expect_code(0);
    let after = repo.enrich(&["--json", "plan"]).expect_code(0).json();
    let logged: i64 =
        repo.count("SELECT (SUM(eval_count) + COUNT(*) - 1) / COUNT(*) FROM enrich_attempts");
    assert_eq!(after["estimate"]["output_from_history"], true, "{after}");
    assert_eq!(
        after["estimate"]["output_tokens_per_span"], logged,
        "{after}"
    );
    let text = repo.enrich(&["plan"]).expect_code(0).stdout.clone();
    assert!(
        text.contains("per span: the attempt log's average") && text.contains("cost ~"),
        "{text}"
    );
}

#[test]
fn by_tier_from_the_command_line_finishes_every_span_and_counts_each_once() {
    let (small, big) = (Server::healthy(), Server::healthy());
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 3, 5);
    let total = repo.spans.len() as u64;
    // The small model lacks the model tag the config asks for: every span moves to the big one.
    let mut toml = config(
        &[("small", small.url()), ("big", big.url())],
        "batch_size = 4",
    );
    toml = toml.replacen(
        "model = \"qwen2.5:7b-instruct\"",
        "model = \"not-pulled:1b\"",
        1,
    );
    repo.write_config(&toml);

    let ran = repo.enrich(&["--json", "run", "--schedule", "by-tier"]);
    let summary = ran.expect_code(0).json();

    assert_eq!(
        (summary["succeeded"].clone(), summary["attempted"].clone()),
        (total.into(), total.into()),
        "{summary}"
    );
    assert_eq!(big.stats().generations(), total);
    // Progress lines count finished spans, never a span deferred to the next pass.
    let progress: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains(" spans ("))
        .collect();
    assert!(!progress.is_empty(), "{}", ran.stderr);
    for line in progress {
        let done: u64 = line
            .split('/')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("a progress line: {line}"));
        assert!(done <= total, "{line}");
    }
}

#[test]
fn an_oversized_answer_fails_its_attempt_and_the_next_backend_enriches_the_span() {
    // Every answer of the first server is 8 MiB: a valid enrichment padded with spaces, over
    // the default `max_response_bytes` of 4 MiB.
    let huge = Server::start(
        enrich_testkit::FakeOllamaConfig::default()
            .with_fault_rate(enrich_testkit::Fault::Oversized, 1.0),
    );
    let solid = Server::healthy();
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 1, 3);
    let total = repo.spans.len() as i64;
    repo.write_config(&config(
        &[("huge", huge.url()), ("solid", solid.url())],
        "concurrency = 2",
    ));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(summary["succeeded"], total, "{summary}");
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_attempts WHERE backend = 'huge' \
             AND failure_kind = 'response_too_large' AND message LIKE '%max_response_bytes%'"
        ),
        total,
        "one oversized attempt per span, recorded with its kind"
    );
    assert_eq!(
        repo.count(&format!(
            "SELECT COUNT(*) FROM enrichments WHERE backend_host = '{}'",
            solid.url()
        )),
        total,
        "every span was enriched by the next backend"
    );
    // The oversized kind is the span's own failure: the first backend stays in use, its
    // circuit closed, and no span is retried on it.
    assert_eq!(
        huge.stats().outcome(enrich_testkit::Outcome::Oversized),
        total as u64
    );
    assert_eq!(events_of(&repo, "circuit_changed").len(), 0);
}
