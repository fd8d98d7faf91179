//! The failure ledger: consecutive failed runs, dead letters, requeue.

use enrich_db::{Db, RunId};
use enrich_types::{FailureKind, LedgerKind};

use crate::support::{Fixture, enriched, failed, python_lines};

/// Fails `span` in `runs` new runs with threshold `max`, and returns after each run whether the
/// span was dead-lettered, its consecutive count, and whether it is still pending.
fn fail_runs(db: &mut Db, span: &str, runs: usize) -> Vec<(bool, u32, bool)> {
    (0..runs)
        .map(|_| {
            let run = db.start_run("fp").expect("run");
            db.write_batch(&[failed(span, run)]).expect("write");
            let entry = db.failure_entry(span).expect("ledger").expect("row");
            let pending = db
                .pending_spans(0, 100)
                .expect("pending")
                .iter()
                .any(|s| s.span_hash == span);
            (entry.dead_lettered, entry.consecutive_failures, pending)
        })
        .collect()
}

#[test]
fn a_span_is_dead_lettered_when_its_failed_runs_reach_the_threshold() {
    let check = |max: u32, runs: usize, expected: &[(bool, u32, bool)]| {
        let fixture = Fixture::llmc();
        let hashes = fixture.index_file("m.py", "python", &python_lines(1));
        let mut db = fixture.db_with_max_failures(max);
        assert_eq!(fail_runs(&mut db, &hashes[0], runs), expected, "max {max}");
    };
    check(1, 1, &[(true, 1, false)]);
    check(
        3,
        4,
        &[
            (false, 1, true),
            (false, 2, true),
            (true, 3, false),
            (true, 4, false),
        ],
    );
    // 0 never dead-letters.
    check(
        0,
        3,
        &[(false, 1, true), (false, 2, true), (false, 3, true)],
    );
}

#[test]
fn a_failure_reports_the_dead_letter_once_and_keeps_its_time() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/m.py", "python", &python_lines(1));
    let mut db = fixture.db_with_max_failures(2);
    let run1 = db.start_run("fp").expect("run");
    let report = db.write_batch(&[failed(&hashes[0], run1)]).expect("1");
    assert!(report.dead_lettered.is_empty());
    let run2 = db.start_run("fp").expect("run");
    let report = db.write_batch(&[failed(&hashes[0], run2)]).expect("2");
    assert_eq!(report.dead_lettered, [hashes[0].clone()]);
    let first = db.failure_entry(&hashes[0]).expect("ledger").expect("row");
    let run3 = db.start_run("fp").expect("run");
    let report = db.write_batch(&[failed(&hashes[0], run3)]).expect("3");
    assert!(report.dead_lettered.is_empty(), "already dead");
    let later = db.failure_entry(&hashes[0]).expect("ledger").expect("row");
    assert_eq!(later.dead_lettered_at_ms, first.dead_lettered_at_ms);
    assert_eq!(later.last_run_id, Some(run3));

    let dead = db.dead_letters().expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].span_hash, hashes[0]);
    assert_eq!(dead[0].file_path.as_deref(), Some("src/m.py"));
    assert_eq!(dead[0].symbol.as_deref(), Some("name_1"));
    assert_eq!(dead[0].last_failure_kind, FailureKind::Timeout.into());
    assert_eq!(dead[0].last_message, "no answer within 60s");
}

#[test]
fn a_success_clears_the_ledger_row() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db_with_max_failures(3);
    fail_runs(&mut db, &hashes[0], 2);
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&hashes[0], run, "finally")])
        .expect("write");
    assert_eq!(db.failure_entry(&hashes[0]).expect("ledger"), None);
    // A later failure (say after a forced re-enrichment) starts counting from one again.
    assert_eq!(fail_runs(&mut db, &hashes[0], 1), [(false, 1, false)]);
}

#[test]
fn requeue_one_or_all_puts_spans_back_and_returns_counts() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(4));
    let mut db = fixture.db_with_max_failures(1);
    for hash in &hashes[..3] {
        fail_runs(&mut db, hash, 1);
    }
    db = fixture.db_with_max_failures(5);
    fail_runs(&mut db, &hashes[3], 1); // failing, not dead
    assert_eq!(db.stats().expect("stats").dead_lettered, 3);
    assert_eq!(db.stats().expect("stats").failing, 1);

    assert_eq!(db.requeue(&hashes[0]).expect("one"), 1);
    assert_eq!(db.requeue(&hashes[0]).expect("again"), 0);
    assert_eq!(db.requeue("sha256:unknown").expect("unknown"), 0);
    assert_eq!(db.requeue_all_dead_letters().expect("all"), 2);
    assert!(db.dead_letters().expect("dead").is_empty());
    assert_eq!(db.pending_count().expect("count"), 4);
    // The failing (not dead) row is not a dead letter and stays.
    assert!(db.failure_entry(&hashes[3]).expect("ledger").is_some());
}

#[test]
fn record_failed_run_updates_the_ledger_outside_a_batch() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db_with_max_failures(2);
    let run = db.start_run("fp").expect("run");
    let entry = db
        .record_failed_run(
            &hashes[0],
            run,
            FailureKind::SchemaInvalid.into(),
            "missing summary_120w",
        )
        .expect("record")
        .expect("row");
    assert_eq!(
        (
            entry.consecutive_failures,
            entry.dead_lettered,
            entry.last_run_id
        ),
        (1, false, Some(run))
    );
    assert_eq!(entry.last_failure_kind, FailureKind::SchemaInvalid.into());
    assert_eq!(
        db.record_failed_run("sha256:gone", run, FailureKind::Timeout.into(), "x")
            .expect("missing span"),
        None
    );
    let err = db
        .record_failed_run(
            &hashes[0],
            RunId(run.0 + 1),
            FailureKind::Timeout.into(),
            "x",
        )
        .expect_err("unknown run");
    assert!(err.to_string().contains("no run"), "{err}");
}

#[test]
fn a_ledger_row_of_an_unknown_failure_kind_is_an_error_naming_it() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let db = fixture.db();
    // Every kind the ledger stores reads back as itself, ledger-only ones included.
    fixture
        .raw()
        .execute(
            "INSERT INTO enrich_failures (span_hash, consecutive_failures, last_failure_kind,
                last_message, dead_lettered, updated_at_ms)
             VALUES (?1, 1, 'secret_detected', 'held a key', 0, 0),
                    (?2, 1, 'busy', 'from a future version', 0, 0)",
            [&hashes[0], &hashes[1]],
        )
        .expect("ledger rows");
    let entry = db.failure_entry(&hashes[0]).expect("read").expect("a row");
    assert_eq!(entry.last_failure_kind, LedgerKind::SecretDetected);
    let err = db.failure_entry(&hashes[1]).unwrap_err().to_string();
    assert!(err.contains("unknown failure kind \"busy\""), "{err}");
}

#[test]
fn an_attempt_of_an_unknown_failure_kind_is_an_error_naming_it() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    fixture
        .raw()
        .execute(
            "INSERT INTO enrich_attempts (span_hash, run_id, attempt, backend, provider, model,
                host, outcome, failure_kind, message, started_at_ms, duration_ms)
             VALUES (?1, ?2, 1, 'b', 'ollama', 'm', 'h', 'failure', 'timeout', 'slow', 0, 1),
                    (?1, ?2, 2, 'b', 'ollama', 'm', 'h', 'failure', 'busy', 'new', 0, 1)",
            rusqlite::params![&hashes[0], run.0],
        )
        .expect("attempt rows");
    let err = db.attempts_for_span(&hashes[0]).unwrap_err().to_string();
    assert!(err.contains("unknown failure kind \"busy\""), "{err}");
    fixture
        .raw()
        .execute("DELETE FROM enrich_attempts WHERE attempt = 2", [])
        .expect("delete");
    let attempts = db.attempts_for_span(&hashes[0]).expect("read");
    assert_eq!(attempts[0].attempt.failure_kind, Some(FailureKind::Timeout));
}
