//! `enrich run --refresh` and `enrich plan --refresh`: renewing stored enrichments chosen by
//! selectors, without ever losing the old one.

use std::collections::BTreeSet;

use enrich_testkit::{FakeOllamaConfig, Fault};
use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// A repository whose spans are all enriched by a healthy fake, with the config pointing at it.
fn enriched_repo(server: &Server) -> TestRepo {
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    let total = repo.spans.len() as u64;
    let first = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(first["succeeded"], total, "{first}");
    repo
}

/// A model that never answers JSON.
fn babbling_server() -> Server {
    Server::start(FakeOllamaConfig::default().with_fault_rate(Fault::Garbage, 1.0))
}

/// Sets `column = value` on the enrichments of `symbols`.
fn set(repo: &TestRepo, symbols: &[&str], column: &str, value: &str) {
    let table = if column == "score" {
        "enrich_quality"
    } else {
        "enrichments"
    };
    for symbol in symbols {
        repo.raw()
            .execute(
                &format!("UPDATE {table} SET {column} = {value} WHERE span_hash = ?1"),
                [&repo.span(symbol).hash],
            )
            .expect("update");
    }
}

/// Every enrichment row as text, by span hash: what a failed refresh must leave as it was.
fn rows(repo: &TestRepo) -> Vec<(i64, String, String)> {
    let conn = repo.raw();
    let mut stmt = conn
        .prepare(
            "SELECT e.rowid, e.span_hash, json_array(e.summary, e.model, e.created_at, e.inputs, \
             e.evidence, q.score) FROM enrichments AS e \
             LEFT JOIN enrich_quality AS q ON q.span_hash = e.span_hash ORDER BY e.span_hash",
        )
        .expect("prepare");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .map(|row| row.expect("row"))
        .collect()
}

/// The spans of `symbols`' hashes.
fn hashes(repo: &TestRepo, symbols: &[&str]) -> BTreeSet<String> {
    symbols.iter().map(|s| repo.span(s).hash.clone()).collect()
}

/// The span hashes the run's `span_finished` events name, in order.
fn finished(repo: &TestRepo, run_id: &Value) -> Vec<String> {
    let log = std::fs::read_to_string(repo.root.join("logs/enrichment_events.jsonl"))
        .expect("the event log");
    log.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .filter(|e| e["type"] == "span_finished" && e["run_id"] == *run_id)
        .map(|e| e["span_hash"].as_str().expect("hash").to_owned())
        .collect()
}

/// The spans whose enrichment model is `model`.
fn with_model(repo: &TestRepo, model: &str) -> BTreeSet<String> {
    let conn = repo.raw();
    let mut stmt = conn
        .prepare("SELECT span_hash FROM enrichments WHERE model = ?1")
        .expect("prepare");
    stmt.query_map([model], |row| row.get(0))
        .expect("query")
        .map(|row| row.expect("row"))
        .collect()
}

#[test]
fn a_refresh_renews_what_its_selectors_select_once_and_says_when_nothing_is_selected() {
    let server = Server::healthy();
    let repo = enriched_repo(&server);
    let calls = server.stats().generations();
    set(&repo, &["Rect", "add", "Guide"], "model", "'small'");
    let before = rows(&repo);

    let run = repo.enrich(&["--json", "run", "--refresh", "model=small"]);
    let ran = run.expect_code(0).json();
    assert_eq!(ran["refresh"], "'model=small'", "{ran}");
    assert!(
        run.stderr
            .contains("3 of 0 pending span(s) and 3 to renew to do"),
        "the progress counts the renewals: {}",
        run.stderr
    );
    assert_eq!(
        (
            ran["refresh_selected"].as_u64(),
            ran["refreshed"].as_u64(),
            ran["attempted"].as_u64(),
            ran["refresh_failed"].as_u64(),
        ),
        (Some(3), Some(3), Some(3), Some(0)),
        "{ran}"
    );
    assert_eq!(server.stats().generations(), calls + 3);
    assert!(with_model(&repo, "small").is_empty());
    // The other rows are untouched; the renewed ones keep their rowid.
    let after = rows(&repo);
    let renewed = hashes(&repo, &["Rect", "add", "Guide"]);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((old.0, &old.1), (new.0, &new.1));
        if !renewed.contains(&old.1) {
            assert_eq!(old, new);
        }
    }
    let finished: BTreeSet<String> = finished(&repo, &ran["run_id"]).into_iter().collect();
    assert_eq!(finished, renewed);

    // Nothing is `small` any more: said in the summary, and nothing is sent.
    let text = repo.enrich(&["run", "--refresh", "model=small"]);
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("--refresh 'model=small' selects no stored enrichment"),
        "{}",
        text.stdout
    );
    assert_eq!(server.stats().generations(), calls + 3);
}

#[test]
fn selectors_combine_within_a_flag_and_across_flags() {
    let server = Server::healthy();
    let repo = enriched_repo(&server);
    set(&repo, &["Rect", "add", "mul"], "model", "'small'");
    set(&repo, &["Rect", "square"], "score", "0.2");
    set(&repo, &["add"], "created_at", "0");

    let refreshed = |args: &[&str]| -> BTreeSet<String> {
        let mut all = vec!["--json", "run", "--concurrency", "1"];
        all.extend(args);
        let ran = repo.enrich(&all).expect_code(0).json();
        assert_eq!(ran["refreshed"], ran["refresh_selected"], "{ran}");
        finished(&repo, &ran["run_id"]).into_iter().collect()
    };
    // Both selectors of one flag.
    assert_eq!(
        refreshed(&["--refresh", "model=small,quality<0.5"]),
        hashes(&repo, &["Rect"])
    );
    // Either flag: `add` by its age, the Rust file by its path (`mul`; `add` once only).
    assert_eq!(
        refreshed(&["--refresh", "older-than=1w", "--refresh", "path=src/*.rs"]),
        hashes(&repo, &["add", "mul"])
    );
    // `square` is still scored low; `Rect` was renewed with the fake's score.
    assert_eq!(
        refreshed(&["--refresh", "quality<0.5"]),
        hashes(&repo, &["square"])
    );
}

#[test]
fn a_refresh_whose_new_enrichments_still_match_renews_each_span_once() {
    let server = Server::healthy();
    let repo = enriched_repo(&server);
    let total = repo.spans.len() as u64;
    // The same model writes the new enrichments: each span still matches after its renewal,
    // and is renewed once all the same.
    let calls = server.stats().generations();
    let ran = repo
        .enrich(&["--json", "run", "--refresh", "model=qwen2.5:7b-instruct"])
        .expect_code(0)
        .json();
    assert_eq!(ran["refreshed"], total, "{ran}");
    assert_eq!(server.stats().generations(), calls + total);
    assert_eq!(
        with_model(&repo, "qwen2.5:7b-instruct").len() as u64,
        total,
        "the new enrichments still match the selector"
    );
    let finished = finished(&repo, &ran["run_id"]);
    assert_eq!(finished.len() as u64, total, "{finished:?}");
}

#[test]
fn a_failed_refresh_keeps_the_old_row_and_never_dead_letters() {
    let server = Server::healthy();
    let repo = enriched_repo(&server);
    let total = repo.spans.len() as u64;
    let before = rows(&repo);

    // A model that never answers JSON, a threshold of one failed run, and the fallback policy
    // that would store an empty enrichment for a pending span.
    let babbler = babbling_server();
    repo.write_config(&config(
        &[("babbler", babbler.url())],
        "max_failures_per_span = 1\non_failure = \"fallback_to_empty\"",
    ));
    for _ in 0..2 {
        let ran = repo.enrich(&["--json", "run", "--refresh", "path=**"]);
        let summary = ran.expect_code(1).json();
        assert_eq!(
            (
                summary["refresh_failed"].as_u64(),
                summary["failed"].as_u64(),
                summary["refreshed"].as_u64(),
                summary["fell_back"].as_u64(),
                summary["dead_lettered"].as_u64(),
            ),
            (Some(total), Some(total), Some(0), Some(0), Some(0)),
            "{summary}"
        );
        assert!(
            !ran.stdout.contains("stay pending"),
            "a failed renewal is not pending: {}",
            ran.stdout
        );
        assert_eq!(rows(&repo), before, "the old enrichments stay as they were");
        assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    }
    // Each attempt is recorded: the answer and its corrective re-ask, per span and run.
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'failure' \
             AND failure_kind = 'malformed_output'"
        ),
        (2 * 2 * total) as i64
    );
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(status["dead_lettered"], 0, "{status}");
    assert_eq!(status["failing"], 0, "{status}");

    // A working model renews them.
    repo.write_config(&config(&[("fake", server.url())], ""));
    let ran = repo
        .enrich(&["--json", "run", "--refresh", "path=**"])
        .expect_code(0)
        .json();
    assert_eq!(ran["refreshed"], total, "{ran}");
}

#[test]
fn pending_spans_come_first_unless_refresh_first() {
    let server = Server::healthy();
    let mut repo = enriched_repo(&server);
    let mut pending = repo.add_file(
        "src/more.py",
        "python",
        b"def one():\n    return 1\n\ndef two():\n    return 2\n",
        &[("one", "function", 1, 2), ("two", "function", 4, 5)],
    );
    set(&repo, &["Rect", "add"], "model", "'small'");
    let renewals = hashes(&repo, &["Rect", "add"]);

    let ran = repo
        .enrich(&[
            "--json",
            "run",
            "--concurrency",
            "1",
            "--refresh",
            "model=small",
        ])
        .expect_code(0)
        .json();
    assert_eq!(
        (ran["succeeded"].as_u64(), ran["refreshed"].as_u64()),
        (Some(4), Some(2))
    );
    let order = finished(&repo, &ran["run_id"]);
    assert_eq!(
        order[..2].iter().cloned().collect::<BTreeSet<_>>(),
        pending.iter().cloned().collect(),
        "{order:?}"
    );
    assert_eq!(
        order[2..].iter().cloned().collect::<BTreeSet<_>>(),
        renewals
    );

    // Again, with new pending spans and the renewals first.
    pending = repo.add_file(
        "src/again.py",
        "python",
        b"def three():\n    return 3\n",
        &[("three", "function", 1, 2)],
    );
    set(&repo, &["Rect", "add"], "model", "'small'");
    let ran = repo
        .enrich(&[
            "--json",
            "run",
            "--concurrency",
            "1",
            "--refresh",
            "model=small",
            "--refresh-first",
        ])
        .expect_code(0)
        .json();
    let order = finished(&repo, &ran["run_id"]);
    assert_eq!(
        order[..2].iter().cloned().collect::<BTreeSet<_>>(),
        renewals
    );
    assert_eq!(order[2..], pending[..]);

    // A limit covers renewals too: with pending spans first, none is renewed.
    let mut more = repo.add_file(
        "src/last.py",
        "python",
        b"def four():\n    return 4\n",
        &[("four", "function", 1, 2)],
    );
    set(&repo, &["Rect"], "model", "'small'");
    let ran = repo
        .enrich(&["--json", "run", "--limit", "1", "--refresh", "model=small"])
        .expect_code(0)
        .json();
    assert_eq!(ran["refreshed"], 0, "{ran}");
    assert_eq!(finished(&repo, &ran["run_id"]), [more.remove(0)]);
}

#[test]
fn plan_refresh_counts_lists_and_prices_the_renewals() {
    let server = Server::healthy();
    let mut repo = enriched_repo(&server);
    repo.add_file(
        "src/more.py",
        "python",
        b"def one():\n    return 1\n",
        &[("one", "function", 1, 2)],
    );
    set(&repo, &["Rect", "add", "mul"], "model", "'small'");
    let calls = server.stats().generations();

    let plan = repo
        .enrich(&["--json", "plan", "--refresh", "model=small"])
        .expect_code(0)
        .json();
    assert_eq!(
        (
            plan["total_pending"].as_u64(),
            plan["refresh_selected"].as_u64(),
            plan["planned"].as_u64(),
            plan["planned_renewals"].as_u64()
        ),
        (Some(1), Some(3), Some(4), Some(3)),
        "{plan}"
    );
    let spans = plan["spans"].as_array().expect("spans");
    assert_eq!(spans[0]["renewal"], false, "the pending span first");
    assert!(spans[1..].iter().all(|s| s["renewal"] == true));
    let planned_tokens = plan["estimate"]["prompt_tokens"].as_u64().expect("tokens")
        + plan["estimate"]["output_tokens"].as_u64().expect("tokens");
    assert_eq!(plan["estimate"]["all_pending_tokens"], planned_tokens);

    // Limited, the estimate extrapolates to the pending span and every renewal.
    let first = repo
        .enrich(&[
            "--json",
            "plan",
            "--limit",
            "2",
            "--refresh",
            "model=small",
            "--refresh-first",
        ])
        .expect_code(0)
        .json();
    assert_eq!(first["planned_renewals"], 2, "{first}");
    let text = repo.enrich(&["plan", "--refresh", "model=small"]);
    text.expect_code(0);
    assert!(
        text.stdout.contains(
            "--refresh 'model=small': 3 stored enrichment(s) to renew; planned 3 of them"
        ),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("all 4 pending and to renew"),
        "{}",
        text.stdout
    );

    let none = repo.enrich(&["plan", "--refresh", "model=big"]);
    none.expect_code(0);
    assert!(
        none.stdout
            .contains("--refresh 'model=big' selects no stored enrichment"),
        "{}",
        none.stdout
    );
    assert_eq!(server.stats().generations(), calls, "a plan calls no model");
}

#[test]
fn a_selector_that_does_not_parse_is_a_usage_error_with_an_example() {
    let repo = TestRepo::new();
    for (args, wrong) in [
        (
            &["run", "--refresh", "modle=x"][..],
            "unknown selector \"modle\"",
        ),
        (
            &["plan", "--refresh", "older-than=30y"][..],
            "unknown unit \"y\"",
        ),
        (&["run", "--refresh", "quality<2"][..], "from 0 to 1"),
        (&["run", "--refresh-first"][..], "--refresh"),
    ] {
        let ran = repo.enrich(args);
        ran.expect_code(2);
        assert!(ran.stderr.contains(wrong), "{args:?}: {}", ran.stderr);
        if args.len() > 2 {
            assert!(
                ran.stderr
                    .contains("e.g. --refresh 'model=qwen2.5:0.5b,older-than=30d'"),
                "{}",
                ran.stderr
            );
        }
    }
}

/// A by-tier run renewing every stored enrichment.
const BY_TIER_REFRESH: &[&str] = &[
    "--json",
    "run",
    "--schedule",
    "by-tier",
    "--refresh",
    "path=**",
];

#[test]
fn a_renewal_deferred_to_a_later_pass_stays_a_renewal() {
    let server = Server::healthy();
    let repo = enriched_repo(&server);
    let total = repo.spans.len() as u64;
    let before = rows(&repo);
    // By tier: every renewal fails on the chain's first backend and is read again for the
    // second pass.
    let babbler = babbling_server();
    let also = babbling_server();
    repo.write_config(&config(
        &[("babbler", babbler.url()), ("also", also.url())],
        "max_failures_per_span = 1",
    ));
    let failed = repo.enrich(BY_TIER_REFRESH).expect_code(1).json();
    assert_eq!(failed["refresh_failed"], total, "{failed}");
    assert!(also.stats().generations() > 0, "the second pass ran");
    assert_eq!(rows(&repo), before);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);

    // With a working second backend, the second pass renews them.
    repo.write_config(&config(
        &[("babbler", babbler.url()), ("fake", server.url())],
        "max_failures_per_span = 1",
    ));
    let renewed = repo.enrich(BY_TIER_REFRESH).expect_code(0).json();
    assert_eq!(renewed["refreshed"], total, "{renewed}");
}

#[test]
fn stale_selectors_renew_what_status_counts_as_stale() {
    let server = Server::healthy();
    let repo = enriched_repo(&server);
    // Two enrichments made with another prompt, one whose provenance is unknown.
    for symbol in ["Rect", "add"] {
        repo.raw()
            .execute(
                "UPDATE enrich_provenance SET prompt_fingerprint = 'older' WHERE span_hash = ?1",
                [&repo.span(symbol).hash],
            )
            .expect("older prompt");
    }
    repo.raw()
        .execute(
            "DELETE FROM enrich_provenance WHERE span_hash = ?1",
            [&repo.span("mul").hash],
        )
        .expect("unknown provenance");
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(
        (
            status["stale"]["prompt"].as_u64(),
            status["stale"]["unknown"].as_u64()
        ),
        (Some(2), Some(1)),
        "{status}"
    );

    let plan = repo
        .enrich(&["--json", "plan", "--refresh", "stale"])
        .expect_code(0)
        .json();
    assert_eq!(plan["refresh_selected"], status["stale"]["stale"], "{plan}");
    let ran = repo
        .enrich(&[
            "--json",
            "run",
            "--concurrency",
            "1",
            "--refresh",
            "stale=prompt",
        ])
        .expect_code(0)
        .json();
    assert_eq!(ran["refreshed"], 2, "{ran}");
    let renewed: BTreeSet<String> = finished(&repo, &ran["run_id"]).into_iter().collect();
    assert_eq!(renewed, hashes(&repo, &["Rect", "add"]));
    let ran = repo
        .enrich(&["--json", "run", "--refresh", "stale=unknown"])
        .expect_code(0)
        .json();
    assert_eq!(ran["refreshed"], 1, "{ran}");
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(
        (
            status["stale"]["stale"].as_u64(),
            status["stale"]["unknown"].as_u64()
        ),
        (Some(0), Some(0)),
        "{status}"
    );
    let none = repo.enrich(&["run", "--refresh", "stale"]);
    none.expect_code(0);
    assert!(
        none.stdout
            .contains("--refresh 'stale' selects no stored enrichment"),
        "{}",
        none.stdout
    );

    let wrong = repo.enrich(&["run", "--refresh", "stale=fresh"]);
    wrong.expect_code(2);
    assert!(
        wrong
            .stderr
            .contains("unknown reason \"fresh\"; the reasons are prompt, model"),
        "{}",
        wrong.stderr
    );
}
