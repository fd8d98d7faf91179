//! Two `enrich run` processes on one index at once: both finish, every span is enriched once and
//! generated once (span leases keep the runs apart), and neither meets "database is locked".

use std::time::Duration;

use enrich_testkit::FakeOllamaConfig;

use super::reliability::{add_python_files, busy_repo};
use super::support::{Server, TestRepo, config};

#[test]
fn two_runs_at_once_share_the_spans_without_doing_one_twice() {
    // A run of 300 spans lasts long enough for the two to overlap.
    let (repo, server) = busy_repo(20, "");
    let total = repo.spans.len() as u64;

    // The second starts once the first is surely under way (it has 300 spans to send and
    // claims them a page at a time), so the two overlap on any machine.
    let first = repo.start(&["--json", "run"]);
    server.wait_until(|stats| stats.generations() >= 20);
    let second = repo.start(&["--json", "run"]);
    let runs = [first.finish(), second.finish()];

    let mut succeeded = 0;
    for ran in &runs {
        let summary = ran.expect_code(0).json();
        assert_eq!(summary["failed"], 0, "{summary}");
        assert_eq!(summary["status"], "completed", "{summary}");
        succeeded += summary["succeeded"].as_u64().expect("succeeded");
        for stream in [&ran.stdout, &ran.stderr] {
            assert!(
                !stream.to_ascii_lowercase().contains("database is locked"),
                "{stream}"
            );
        }
    }
    assert_eq!(
        succeeded, total,
        "together the runs enriched every span once"
    );
    assert!(
        runs.iter()
            .all(|ran| ran.json()["succeeded"].as_u64() < Some(total)),
        "both runs took spans: {:?}",
        runs.iter()
            .map(|r| r.json()["succeeded"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        server.stats().generations(),
        total,
        "no span was generated twice"
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM (SELECT span_hash FROM enrich_attempts \
             GROUP BY span_hash HAVING COUNT(DISTINCT run_id) > 1)"
        ),
        0,
        "no span was attempted by both runs"
    );
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_leases"),
        0,
        "finished runs hold no lease"
    );
}

/// Milliseconds since the Unix epoch, as leases count them.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

#[test]
fn a_run_killed_on_another_host_holds_its_spans_only_until_its_leases_expire_and_is_named() {
    let server = Server::start(
        FakeOllamaConfig::default()
            .with_latency(Duration::from_millis(200))
            .with_recording(false),
    );
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 2, 10);
    let total = repo.spans.len() as i64;
    repo.write_config(&config(&[("fake", server.url())], ""));

    let run = repo.start(&["run"]);
    server.wait_until(|stats| stats.generations() >= 2);
    run.signal("KILL");
    run.finish();
    // As if that run had been on another host, where its process cannot be looked up.
    let raw = repo.raw();
    raw.execute_batch(
        "UPDATE enrich_leases SET host = 'gpu-elsewhere';
         UPDATE enrich_runs SET holder_host = 'gpu-elsewhere' WHERE status = 'running';",
    )
    .expect("move the killed run to another host");
    let held = repo.count(
        "SELECT COUNT(*) FROM enrich_leases AS l \
         WHERE NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = l.span_hash)",
    );
    assert!(held > 0, "the killed run held spans");
    // 2 × 3 attempts × (20 s timeout + 30 s longest backoff) = 300 s: the 10-minute minimum,
    // not weeks.
    let life_ms = repo.count("SELECT MAX(expires_at_ms) FROM enrich_leases") - now_ms();
    assert!(
        (500_000..=600_000).contains(&life_ms),
        "the leases live {life_ms} ms more"
    );

    // The next run takes every other span and says which ones it cannot take, and why.
    let pending = total - repo.count("SELECT COUNT(*) FROM enrichments");
    let ran = repo.enrich(&["--json", "run"]);
    let report = ran.expect_code(0).json();
    assert_eq!(report["total_pending"], pending - held, "{report}");
    let holder = &report["held_elsewhere"][0];
    assert_eq!(
        (&holder["run_id"], &holder["host"], &holder["spans"]),
        (&1.into(), &"gpu-elsewhere".into(), &held.into()),
        "{report}"
    );
    assert!(
        ran.stderr.contains(&format!(
            "{held} more pending span(s) are held by run 1 on host gpu-elsewhere"
        )),
        "{}",
        ran.stderr
    );
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(status["pending"], held, "status counts them pending");

    // Once the leases expire (here: as if their 10 minutes had passed), a run takes them.
    raw.execute(
        "UPDATE enrich_leases SET expires_at_ms = ?1",
        [now_ms() - 1],
    )
    .expect("expire");
    let report = repo.enrich(&["--json", "run"]).expect_code(0).json();
    assert_eq!(report["succeeded"], held, "{report}");
    assert_eq!(report["held_elsewhere"], serde_json::json!([]), "{report}");
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total);
}
