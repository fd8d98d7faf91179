//! Fault injection: a run against two fake servers that answer 500s, garbage, truncated
//! answers, hangs and "server busy" at fixed rates. Every span ends enriched and
//! valid, or in the failure ledger with a reason; and the attempt log, the run summary and the
//! servers' own counters tell the same story, request for request.

use std::collections::BTreeMap;
use std::time::Duration;

use enrich_testkit::{FakeOllamaConfig, Fault, Outcome};
use serde_json::Value;

use super::reliability::{
    add_python_files, check_attempt_log, check_every_span_accounted_for,
    check_stored_enrichments_are_valid,
};
use super::support::{Server, TestRepo};

/// The failure kind the attempt log records for each way a fake server answers a generation.
/// Hangs and requests abandoned while waiting for a slot both end in the client's timeout.
const KIND_OF_OUTCOME: &[(Outcome, &str)] = &[
    (Outcome::Ok, "success"),
    (Outcome::ServerError, "server_error"),
    (Outcome::Garbage, "malformed_output"),
    (Outcome::Truncated, "truncated"),
    (Outcome::Hang, "timeout"),
    (Outcome::Abandoned, "timeout"),
    (Outcome::QueueFull, "overloaded"),
];

/// A server with the fault mix: 10 % HTTP 500, 5 % garbage, 5 % truncated, 2 % hangs;
/// two slots and one queue place, so a client with four requests in flight meets a real 503
/// "server busy" whenever the other three are admitted.
fn faulty_server(seed: u64) -> Server {
    Server::start(
        fault_mix(seed)
            .with_latency(Duration::from_millis(5))
            .with_capacity(2, 1)
            .with_recording(false),
    )
}

/// The fault mix, drawn from `seed`: 10 % HTTP 500, 5 % garbage, 5 % truncated, 2 % hangs.
pub(crate) fn fault_mix(seed: u64) -> FakeOllamaConfig {
    FakeOllamaConfig::default()
        .with_fault_rate(Fault::ServerError, 0.10)
        .with_fault_rate(Fault::Garbage, 0.05)
        .with_fault_rate(Fault::Truncated, 0.05)
        .with_fault_rate(Fault::Hang, 0.02)
        .with_seed(seed)
}

/// Two backends in one chain, each on its own faulty server: a span the first gives up on
/// falls back to the second, so fallbacks, retries on the same backend and spans failing on
/// both are all exercised. A short timeout turns hangs into timeouts quickly.
fn two_backend_config(primary: &str, backup: &str) -> String {
    let mut toml =
        String::from("[enrichment]\ndefault_chain = \"local\"\nconcurrency = 8\nbatch_size = 16\n");
    for (name, url) in [("primary", primary), ("backup", backup)] {
        toml.push_str(&format!(
            "\n[[enrichment.chain]]\nname = \"{name}\"\nchain = \"local\"\nprovider = \"ollama\"\nmodel = \"qwen2.5:7b-instruct\"\nurl = \"{url}\"\ntimeout_seconds = 1\noptions = {{ max_in_flight = 4 }}\n"
        ));
    }
    toml
}

/// Attempt rows of `backend` by outcome: `success`, or the failure kind.
fn attempts_by_kind(repo: &TestRepo, backend: &str) -> BTreeMap<String, u64> {
    let conn = repo.raw();
    let mut stmt = conn
        .prepare(
            "SELECT COALESCE(failure_kind, outcome), COUNT(*) FROM enrich_attempts
             WHERE backend = ?1 GROUP BY 1",
        )
        .expect("prepare");
    stmt.query_map([backend], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .map(|row| row.expect("row"))
        .collect()
}

/// What the server's counters say the attempt log must hold, by the same keys.
fn expected_by_kind(server: &Server) -> BTreeMap<String, u64> {
    let stats = server.stats();
    let mut expected = BTreeMap::new();
    for &(outcome, kind) in KIND_OF_OUTCOME {
        let n = stats.generation_outcome(outcome);
        if n > 0 {
            *expected.entry(kind.to_owned()).or_insert(0) += n;
        }
    }
    let accounted: u64 = expected.values().sum();
    assert_eq!(
        accounted,
        stats.generations(),
        "every generation request ended in an outcome this test maps: {}",
        stats.to_json()
    );
    expected
}

#[test]
fn under_the_issue_fault_mix_every_span_is_enriched_or_ledgered_and_counts_reconcile() {
    const SEEDS: (u64, u64) = (7, 1007);
    let primary = faulty_server(SEEDS.0);
    let backup = faulty_server(SEEDS.1);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 25, 10);
    let total = repo.spans.len() as u64;
    repo.write_config(&two_backend_config(primary.url(), backup.url()));

    let ran = repo.enrich(&["--json", "run"]);
    let summary = ran.json();
    let context = format!("seeds {SEEDS:?}\n{summary}");

    // Each server has let go of every request: nothing running, nothing queued.
    for server in [&primary, &backup] {
        server.wait_until(|s| s.running == 0 && s.waiting == 0);
    }

    // Every span is enriched and valid, or ledgered with a kind and a message.
    let (enriched, ledgered) = check_every_span_accounted_for(&repo);
    assert_eq!((enriched + ledgered) as u64, total, "{context}");
    assert_eq!(check_stored_enrichments_are_valid(&repo) as i64, enriched);
    check_attempt_log(&repo);
    assert_eq!(summary["attempted"], total, "{context}");
    assert_eq!(summary["succeeded"], enriched, "{context}");
    assert_eq!(summary["failed"], ledgered, "{context}");
    ran.expect_code(if ledgered > 0 { 1 } else { 0 });
    // The ledger names the failure that ended each failed span: its last attempt's.
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_failures AS f
             WHERE f.last_failure_kind != (SELECT a.failure_kind FROM enrich_attempts AS a
                 WHERE a.span_hash = f.span_hash AND a.run_id = f.last_run_id
                 ORDER BY a.attempt DESC LIMIT 1)"
        ),
        0,
        "{context}"
    );

    // Request for request: the attempt log, the servers' counters and the run summary agree.
    for (backend, server) in [("primary", &primary), ("backup", &backup)] {
        let logged = attempts_by_kind(&repo, backend);
        let expected = expected_by_kind(server);
        assert_eq!(
            logged,
            expected,
            "{backend}: attempt log vs server counters {}\n{context}",
            server.stats().to_json()
        );
        let reported = &summary["backends"][backend];
        let logged_total: u64 = logged.values().sum();
        assert_eq!(reported["attempts"], logged_total, "{backend}: {context}");
        assert_eq!(
            reported["succeeded"],
            logged.get("success").copied().unwrap_or(0),
            "{backend}: {context}"
        );
        let mut failures = logged.clone();
        failures.remove("success");
        let failures: serde_json::Map<String, Value> = failures
            .into_iter()
            .map(|(kind, n)| (kind, Value::from(n)))
            .collect();
        assert_eq!(
            reported["failures"],
            Value::Object(failures),
            "{backend}: {context}"
        );
    }

    // The mix really was exercised: every fault, on the primary at least, and fallbacks.
    let stats = primary.stats();
    for outcome in [
        Outcome::ServerError,
        Outcome::Garbage,
        Outcome::Truncated,
        Outcome::Hang,
        Outcome::QueueFull,
    ] {
        assert!(
            stats.generation_outcome(outcome) > 0,
            "the primary never answered {}: {}",
            outcome.as_str(),
            stats.to_json()
        );
    }
    // Which spans fall back depends on how the primary's faults meet them in time, and the
    // backup's own faults may fail the few that do: that some did is what the mix promises.
    assert!(
        attempts_by_kind(&repo, "backup").values().sum::<u64>() > 0,
        "spans fell back to the backup: {context}"
    );

    // Failed spans stay pending and a healthy backend enriches them: nothing was lost.
    let healthy = Server::healthy();
    repo.write_config(&two_backend_config(healthy.url(), healthy.url()));
    let retry = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(retry["succeeded"], ledgered, "{retry}");
    assert_eq!(check_every_span_accounted_for(&repo), (total as i64, 0));
    assert_eq!(check_stored_enrichments_are_valid(&repo) as u64, total);
    check_attempt_log(&repo);
}
