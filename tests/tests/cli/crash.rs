//! Crash safety: `enrich run` killed with SIGKILL at random points, again and again, and rerun,
//! ends with every span enriched exactly once in a sound, consistent index.

use std::time::SystemTime;

use super::reliability::{
    Rng, busy_repo, check_attempt_log, check_every_span_accounted_for,
    check_stored_enrichments_are_valid, integrity,
};
use super::support::TestRepo;

/// Runs killed before the run that may finish.
const KILLS: usize = 10;

/// The seed of the kill points: `ENRICH_TEST_SEED` when set (to replay a failure), else the
/// clock, so every CI run kills at other points. Every assertion message carries it.
fn seed() -> u64 {
    std::env::var("ENRICH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

fn pending(repo: &TestRepo) -> u64 {
    let spans = repo.count("SELECT COUNT(*) FROM spans");
    let enriched = repo.count("SELECT COUNT(*) FROM enrichments");
    u64::try_from(spans - enriched).expect("no more enrichments than spans")
}

#[test]
fn sigkill_at_random_points_then_rerunning_enriches_every_span_exactly_once() {
    let seed = seed();
    let replay = format!("seed {seed} (replay with ENRICH_TEST_SEED={seed})");
    let mut rng = Rng::new(seed);

    // A run of 300 spans lasts long enough to be killed in the middle, and the whole test
    // stays within a few seconds.
    let (repo, server) = busy_repo(20, "");
    let total = repo.spans.len() as u64;

    let mut history = Vec::new();
    for round in 0..KILLS {
        let before = pending(&repo);
        if before == 0 {
            break;
        }
        // The kill point, counted in generation requests the server has received from this
        // run rather than in wall-clock time: no sleep, and every kill lands inside the run
        // whatever the machine's speed (the run sends `before` requests if it is not killed,
        // so it cannot end before the `k`-th). `k` = 0 kills it while it starts up.
        let k = rng.below(before.min(80));
        let sent = server.stats().generations();
        let run = repo.start(&["run"]);
        if k > 0 {
            server.wait_until(|s| s.generations() >= sent + k);
        }
        run.signal("KILL");
        let killed = run.finish();
        assert_eq!(
            killed.code, None,
            "round {round}: enrich ended before the SIGKILL; {replay}\n{}",
            killed.stderr
        );
        let verdict = integrity(&repo);
        assert_eq!(verdict, ["ok"], "round {round}: {replay}");
        history.push(format!(
            "round {round}: killed after {k} requests, {before} pending"
        ));

        // Sometimes a short run right after the kill: it must see every span the dead run did
        // not store as pending at once, and enrich as many as it is allowed.
        if rng.below(3) == 0 {
            let pending_now = pending(&repo);
            let limit = 1 + rng.below(20);
            let limit_arg = limit.to_string();
            let ran = repo.enrich(&["--json", "run", "--limit", &limit_arg]);
            let summary = ran.expect_code(0).json();
            assert_eq!(
                summary["total_pending"], pending_now,
                "round {round}: a rerun right after the kill sees all pending spans; {replay}\n{summary}"
            );
            assert_eq!(
                summary["succeeded"],
                limit.min(pending_now),
                "round {round}: {replay}\n{summary}"
            );
            history.push(format!("round {round}: rerun --limit {limit}"));
        }
    }

    let last = repo.enrich(&["--json", "run"]);
    let summary = last.expect_code(0).json();
    assert_eq!(summary["failed"], 0, "{replay}\n{summary}");
    assert_eq!(summary["status"], "completed", "{replay}\n{summary}");

    let history = history.join("\n");
    assert_eq!(integrity(&repo), ["ok"], "{replay}\n{history}");
    let (enriched, ledgered) = check_every_span_accounted_for(&repo);
    assert_eq!(
        (enriched as u64, ledgered),
        (total, 0),
        "every span enriched, none failed; {replay}\n{history}"
    );
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrichments"),
        total as i64,
        "no enrichment without a span; {replay}"
    );
    assert_eq!(check_stored_enrichments_are_valid(&repo) as u64, total);
    check_attempt_log(&repo);
    // Work a kill lost is redone, never stored twice: the server answered at least one
    // generation per span, and the succeeded attempts are exactly one per span.
    assert!(server.stats().generations() >= total, "{replay}");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'success'"),
        total as i64,
        "{replay}\n{history}"
    );
    // Every killed run is recorded as interrupted, not as running forever.
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_runs WHERE status = 'running'"),
        0,
        "{replay}\n{history}"
    );
    // Every run's counts, the killed ones' too, are what it committed: one success attempt per
    // span it enriched, and together the runs enriched every span once.
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_runs AS r WHERE r.succeeded != \
             (SELECT COUNT(*) FROM enrich_attempts AS a \
              WHERE a.run_id = r.id AND a.outcome = 'success') \
             OR r.attempted != r.succeeded + r.failed"
        ),
        0,
        "{replay}\n{history}"
    );
    assert_eq!(
        repo.count("SELECT SUM(succeeded) FROM enrich_runs"),
        total as i64,
        "{replay}\n{history}"
    );
    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    assert_eq!(
        (status["pending"].clone(), status["enriched"].clone()),
        (0.into(), total.into()),
        "{status}"
    );
}
