//! `enrich run`: what gets enriched, written, ledgered and dead-lettered, and how a run stops.

use std::collections::BTreeSet;
use std::time::Duration;

use enrich_testkit::{Endpoint, FakeOllamaConfig, Fault, Outcome};
use serde_json::Value;

use super::support::{Server, TestRepo, config, refused_url};

/// Every stored enrichment is a complete enrichment.v1 row, as LLMC reads them.
fn check_rows_are_valid(repo: &TestRepo) {
    let conn = repo.raw();
    let mut stmt = conn
        .prepare("SELECT span_hash, summary, inputs, outputs, side_effects, pitfalls, evidence, schema_ver, model FROM enrichments")
        .expect("prepare");
    let rows = stmt
        .query_map([], |row| {
            (0..9)
                .map(|i| row.get::<_, Option<String>>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("query")
        .map(|row| row.expect("row"));
    for row in rows {
        let hash = row[0].as_deref().unwrap_or_default();
        assert!(
            !row[1].as_deref().unwrap_or_default().is_empty(),
            "{hash}: empty summary"
        );
        for (i, column) in [
            (2, "inputs"),
            (3, "outputs"),
            (4, "side_effects"),
            (5, "pitfalls"),
            (6, "evidence"),
        ] {
            let text = row[i].as_deref().unwrap_or("null");
            let value: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{hash}: {column} is not JSON ({e}): {text}"));
            assert!(value.is_array(), "{hash}: {column} is not a list: {text}");
        }
        assert_eq!(row[7].as_deref(), Some("enrichment.v1"), "{hash}");
        assert_eq!(row[8].as_deref(), Some("qwen2.5:7b-instruct"), "{hash}");
    }
}

#[test]
fn a_run_enriches_every_span_and_a_second_run_has_nothing_to_do() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));

    let ran = repo.enrich(&["--json", "run"]);
    let summary = ran.expect_code(0).json();
    let total = repo.spans.len() as u64;
    assert_eq!(summary["attempted"], total, "{summary}");
    assert_eq!(summary["succeeded"], total);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["backends"]["fake"]["succeeded"], total);
    assert!(
        summary["spans_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{summary}"
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
    check_rows_are_valid(&repo);
    assert_eq!(server.stats().generations(), total);

    // The event log, at LLMC's location, tells the same story.
    let log = std::fs::read_to_string(repo.root.join("logs/enrichment_events.jsonl"))
        .expect("the event log is written");
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).expect("each event line is JSON"))
        .collect();
    assert_eq!(
        events.first().map(|e| &e["type"]),
        Some(&Value::from("run_started"))
    );
    assert_eq!(
        events.last().map(|e| &e["type"]),
        Some(&Value::from("run_finished"))
    );
    let finished = events
        .iter()
        .filter(|e| e["type"] == "span_finished")
        .count();
    assert_eq!(finished as u64, total);

    let again = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(again["attempted"], 0, "{again}");
    assert_eq!(
        server.stats().generations(),
        total,
        "a re-run calls no backend"
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
}

#[test]
fn a_refused_first_backend_falls_through_to_the_second_and_both_attempts_are_logged() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let dead = refused_url();
    repo.write_config(&config(&[("dead", &dead), ("fake", server.url())], ""));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(summary["succeeded"], repo.spans.len() as u64, "{summary}");
    assert_eq!(summary["backends"]["dead"]["succeeded"], 0);
    assert!(summary["backends"]["dead"]["failures"]["connect"].as_u64() >= Some(1));

    // The first span (spans are taken in index order) met the dead backend first.
    let first = &repo.spans[0];
    let shown = repo
        .enrich(&["--json", "show", &first.hash])
        .expect_code(0)
        .json();
    let attempts: Vec<(String, String, Option<String>)> = shown["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            let a = &a["attempt"];
            (
                a["backend"].as_str().unwrap_or_default().to_owned(),
                a["outcome"].as_str().unwrap_or_default().to_owned(),
                a["failure_kind"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (
                "dead".to_owned(),
                "failure".to_owned(),
                Some("connect".to_owned())
            ),
            ("fake".to_owned(), "success".to_owned(), None),
        ],
        "{shown}"
    );
    assert!(
        shown["attempts"][0]["attempt"]["host"]
            .as_str()
            .is_some_and(|host| host.contains(dead.trim_start_matches("http://")))
    );
}

#[test]
fn faulty_answers_store_no_row_and_ledger_each_failed_span() {
    // Garbage twice: the answer and its one corrective re-ask; then a truncated answer twice
    // (the re-ask asks for a shorter one); then a server error and its one retry, an outage:
    // that span waits and is enriched when the server answers again, never ledgered.
    let server = Server::start(FakeOllamaConfig::default().with_faults([
        Fault::Garbage,
        Fault::Garbage,
        Fault::Truncated,
        Fault::Truncated,
        Fault::ServerError,
        Fault::ServerError,
    ]));
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], "concurrency = 1"));

    let summary = repo.enrich(&["--json", "run"]).expect_code(1).json();
    let total = repo.spans.len() as u64;
    assert_eq!(summary["failed"], 2, "{summary}");
    assert_eq!(summary["succeeded"], total - 2);
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrichments"),
        (total - 2) as i64
    );
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE failure_kind = 'server_error'"),
        2
    );
    check_rows_are_valid(&repo);

    let mut kinds = BTreeSet::new();
    for span in &repo.spans {
        let shown = repo
            .enrich(&["--json", "show", &span.hash])
            .expect_code(0)
            .json();
        match (&shown["enrichment"], &shown["failure"]) {
            (Value::Null, Value::Null) => panic!("{} is neither enriched nor ledgered", span.hash),
            (Value::Null, failure) => {
                assert_eq!(failure["consecutive_failures"], 1, "{shown}");
                assert_eq!(failure["dead_lettered"], false);
                kinds.insert(
                    failure["last_failure_kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            (_, Value::Null) => {}
            _ => panic!("{} is both enriched and ledgered: {shown}", span.hash),
        }
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["malformed_output", "truncated"].map(String::from))
    );

    // The failed spans are still pending: the next run enriches them.
    let retry = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(retry["succeeded"], 2, "{retry}");
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
}

#[test]
fn spans_are_dead_lettered_after_failed_runs_and_requeued_by_failures() {
    // A model that never answers JSON.
    let babbler = Server::start(FakeOllamaConfig::default().with_fault_rate(Fault::Garbage, 1.0));
    let repo = TestRepo::new();
    let total = repo.spans.len() as u64;
    repo.write_config(&config(
        &[("babbler", babbler.url())],
        "max_failures_per_span = 2",
    ));

    let first = repo.enrich(&["--json", "run"]).expect_code(1).json();
    assert_eq!(first["failed"], total, "{first}");
    // Each span's answer and its one corrective re-ask.
    assert_eq!(
        first["backends"]["babbler"]["failures"]["malformed_output"],
        2 * total
    );
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(
        (status["failing"].clone(), status["dead_lettered"].clone()),
        (total.into(), 0.into()),
        "{status}"
    );

    let second = repo.enrich(&["--json", "run"]).expect_code(1).json();
    assert_eq!(second["dead_lettered"], total, "{second}");
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(status["dead_lettered"], total, "{status}");
    assert_eq!(status["pending"], 0);
    let dead = repo.enrich(&["--json", "failures"]).expect_code(0).json();
    let dead = dead.as_array().expect("a list of dead letters");
    assert_eq!(dead.len() as u64, total);
    assert!(dead.iter().all(|d| d["consecutive_failures"] == 2
        && d["dead_lettered"] == true
        && d["last_failure_kind"] == "malformed_output"));

    // Dead letters are not retried.
    let idle = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(idle["attempted"], 0, "{idle}");
    assert_eq!(
        babbler.stats().generations(),
        2 * 2 * total,
        "two runs of two attempts"
    );

    // One span back, then the rest; requeueing a span with no failure is a usage error.
    let one = &repo.spans[0].hash;
    let requeued = repo
        .enrich(&["--json", "failures", "--requeue", one])
        .expect_code(0)
        .json();
    assert_eq!(requeued["requeued"], 1);
    let again = repo.enrich(&["failures", "--requeue", one]);
    again.expect_code(2);
    assert!(again.stderr.contains(one.as_str()), "{}", again.stderr);
    let all = repo
        .enrich(&["--json", "failures", "--requeue-all"])
        .expect_code(0)
        .json();
    assert_eq!(all["requeued"], total - 1);

    let server = Server::healthy();
    repo.write_config(&config(
        &[("fake", server.url())],
        "max_failures_per_span = 2",
    ));
    let fixed = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(fixed["succeeded"], total, "{fixed}");
}

#[test]
fn a_run_whose_backends_are_all_down_takes_no_span_and_exits_3() {
    let repo = TestRepo::new();
    let dead = refused_url();
    repo.write_config(&config(&[("dead", &dead)], ""));

    let ran = repo.enrich(&["run"]);
    ran.expect_code(3);
    assert!(
        ran.stderr.contains(&dead) && ran.stderr.contains("enrich doctor"),
        "{}",
        ran.stderr
    );
    // An outage is not the spans' fault: nothing counts toward their dead-lettering.
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_runs"), 0);
}

#[test]
fn an_index_created_by_llmc_is_enriched_in_place_and_stays_llmc_readable() {
    let server = Server::healthy();
    let repo = TestRepo::llmc();
    repo.write_config(&config(&[("fake", server.url())], ""));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(summary["succeeded"], repo.spans.len() as u64, "{summary}");

    let conn = repo.raw();
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(user_version, 8, "LLMC's schema version is untouched");
    let (summary_text, created_at, host): (String, i64, String) = conn
        .query_row(
            "SELECT summary, created_at, backend_host FROM enrichments WHERE span_hash = ?1",
            [&repo.span("square").hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the span's enrichment, as LLMC reads it");
    assert!(!summary_text.is_empty());
    assert!(
        created_at > 1_700_000_000,
        "created_at is Unix seconds: {created_at}"
    );
    assert!(
        server
            .url()
            .ends_with(host.rsplit(':').next().unwrap_or("?")),
        "{host}"
    );
    check_rows_are_valid(&repo);
    for table in ["embeddings", "emb_code", "embeddings_meta"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        assert_eq!(repo.count(&sql), 0, "LLMC's {table} is still there");
    }
    // One description per enriched file, as LLMC's pipeline keeps it (`file_descriptions.rs`).
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM file_descriptions WHERE source = 'cheap'"),
        repo.count("SELECT COUNT(*) FROM files")
    );
}

#[test]
fn the_first_sigint_finishes_and_writes_the_spans_in_flight() {
    let server =
        Server::start(FakeOllamaConfig::default().with_latency(Duration::from_millis(300)));
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], "concurrency = 1"));

    let run = repo.start(&["--json", "run"]);
    // One span at a time: the third request arriving means two spans are done.
    server.wait_until(|s| s.generations() >= 3);
    run.signal("INT");
    let ran = run.finish();
    ran.expect_code(130);
    let summary = ran.json();
    assert_eq!(summary["end"], "stopped", "{summary}");
    assert_eq!(summary["status"], "interrupted");

    // Every request the server got was answered, and every answer is stored.
    let stats = server.stats();
    let enriched = repo.count("SELECT COUNT(*) FROM enrichments") as u64;
    assert_eq!(stats.running, 0);
    assert_eq!(enriched, stats.generations(), "{}", ran.stderr);
    assert_eq!(summary["succeeded"], enriched);
    assert!(enriched < repo.spans.len() as u64, "the run stopped early");
    let run_status: String = repo
        .raw()
        .query_row(
            "SELECT status FROM enrich_runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the run is recorded");
    assert_eq!(run_status, "interrupted");
}

#[test]
fn a_second_sigint_aborts_the_span_in_flight_and_writes_nothing_for_it() {
    let server = Server::start(FakeOllamaConfig::default().with_latency(Duration::from_secs(30)));
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], "concurrency = 1"));

    let mut run = repo.start(&["run"]);
    server.wait_until(|s| s.running == 1);
    run.signal("INT");
    run.wait_for_stderr("stopping");
    run.signal("INT");
    let ran = run.finish();
    ran.expect_code(130);
    assert!(ran.stderr.contains("aborting"), "{}", ran.stderr);
    // It did not wait for the answer: the server answered the health check before the run
    // (version, tags, show), never the generation; and nothing was stored.
    let stats = server.stats();
    let info = [Endpoint::Version, Endpoint::Tags, Endpoint::Show].map(|e| stats.endpoint(e));
    assert_eq!(
        stats.outcome(Outcome::Ok),
        info.iter().sum::<u64>(),
        "{:?}",
        stats.to_json()
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), 0);
}

#[test]
fn an_unknown_chain_is_a_usage_error_naming_the_chains() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    for command in ["run", "plan"] {
        let ran = repo.enrich(&[command, "--chain", "nope"]);
        ran.expect_code(2);
        assert!(
            ran.stderr.contains("\"nope\"") && ran.stderr.contains("local"),
            "{command}: {}",
            ran.stderr
        );
    }
    assert_eq!(server.stats().total, 0);
    assert!(!repo.root.join("logs").exists(), "nothing was started");
}
