//! A write lock another process holds on the index: the run waits for it without stalling the
//! requests in flight (a backend's timeout measures only the backend), and a lock held past the
//! busy timeout stops the run with a clear error, not with backend failures.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::reliability::busy_repo;

/// Takes the index's write lock (`BEGIN IMMEDIATE`) as another process would, waiting for it if
/// enrich holds it, and keeps it for `hold`.
fn hold_write_lock(db: &Path, hold: Duration) {
    let conn = Connection::open(db).expect("open the index");
    conn.busy_timeout(Duration::from_secs(60))
        .expect("busy timeout");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    std::thread::sleep(hold);
    conn.execute_batch("COMMIT")
        .expect("release the write lock");
}

#[test]
fn a_lock_held_elsewhere_within_the_busy_timeout_times_no_request_out() {
    let (repo, server) = busy_repo(2, "");
    let total = repo.spans.len() as u64;

    // Four times, the lock is held 3 s (more than the backend's 2 s timeout, well within the
    // 30 s busy timeout) while the run has requests in flight.
    let run = repo.start(&["--json", "run"]);
    for round in 1..=4 {
        server.wait_until(|stats| stats.generations() >= round * 50);
        hold_write_lock(&repo.db, Duration::from_secs(3));
    }
    let ran = run.finish();

    let summary = ran.expect_code(0).json();
    assert_eq!(summary["succeeded"], total, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'failure'"),
        0,
        "no attempt failed, none timed out"
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
    assert_eq!(server.stats().generations(), total, "one request per span");
}

#[test]
fn a_lock_held_past_the_busy_timeout_stops_the_run_with_a_clear_error_and_no_backend_failure() {
    let (repo, server) = busy_repo(2, "busy_timeout_seconds = 1");

    let run = repo.start(&["--json", "run"]);
    server.wait_until(|stats| stats.generations() >= 50);
    hold_write_lock(&repo.db, Duration::from_secs(4));
    let ran = run.finish();

    assert!(
        ran.code.is_some_and(|code| code != 0),
        "a failed run: {ran:?}"
    );
    assert!(
        ran.stderr.contains("is locked by another process")
            && ran.stderr.contains("busy_timeout_seconds"),
        "{}",
        ran.stderr
    );
    // `--json` prints the report of the failed run, with why it ended.
    let report = ran.json();
    assert_eq!(report["end"], "failed", "{report}");
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"].as_str().expect("the error");
    assert!(
        error.contains(&repo.db.display().to_string())
            && error.contains("locked by another process"),
        "{error}"
    );
    // Nothing was blamed on the backend, and what was reported is what was stored.
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'failure'"),
        0
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    let stored = repo.count("SELECT COUNT(*) FROM enrichments");
    assert!(stored < repo.spans.len() as i64, "the run stopped early");
    assert_eq!(report["succeeded"], stored, "{report}");
    assert_eq!(
        repo.count("SELECT succeeded FROM enrich_runs ORDER BY id DESC LIMIT 1"),
        stored
    );
}
