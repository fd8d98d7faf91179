//! Two `enrich run` processes on one index at once: both finish, every span is enriched once and
//! generated once (span leases keep the runs apart), and neither meets "database is locked".

use std::time::Duration;

use enrich_testkit::FakeOllamaConfig;

use super::reliability::add_python_files;
use super::support::{Server, TestRepo, config};

#[test]
fn two_runs_at_once_share_the_spans_without_doing_one_twice() {
    // Four slots at 20 ms: a run of 300 spans lasts long enough for the two to overlap.
    let server = Server::start(
        FakeOllamaConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_capacity(4, 64)
            .with_recording(false),
    );
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 30, 10);
    let total = repo.spans.len() as u64;
    let mut toml = config(&[("fake", server.url())], "concurrency = 4\nbatch_size = 8");
    toml.push_str("options = { max_in_flight = 4 }\n");
    repo.write_config(&toml);

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
