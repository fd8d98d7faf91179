//! `schedule = "by-tier"`: every span on its chain's first backend, then the failures on the
//! second, against the default per-span cascade.

use std::sync::Arc;

use enrich_backends::FailureKind;
use enrich_config::Schedule;
use enrich_pipeline::RunControl;

use crate::support::{Fixture, Reply, Scripted, config, pipeline};

/// A small model that cannot take the spans starting on an even line, and a big one that
/// enriches anything.
fn small_and_big() -> (Arc<Scripted>, Arc<Scripted>) {
    let small = Arc::new(Scripted::new("small").replies(|request, _| {
        if request.span.line_start % 2 == 0 {
            Reply::Fail(FailureKind::ContextExceeded)
        } else {
            Reply::Valid
        }
    }));
    (small, Arc::new(Scripted::new("big")))
}

/// `(backend, attempt)` of every attempt row, in the order they were written.
fn attempt_log(fixture: &Fixture) -> Vec<(String, u32)> {
    let conn = fixture.raw();
    let mut stmt = conn
        .prepare("SELECT backend, attempt FROM enrich_attempts ORDER BY id")
        .expect("query");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("attempts")
}

async fn run_with(schedule: Schedule) -> (Fixture, Vec<(String, u32)>, Arc<Scripted>) {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 6);
    let (small, big) = small_and_big();
    let (pipeline, _) = pipeline(&fixture, &config(&[&small, &big]), &[&small, &big], |s| {
        s.schedule = schedule;
        s.concurrency = 1;
    });
    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!((summary.succeeded, summary.failed), (6, 0), "{summary:?}");
    assert_eq!(fixture.pending(), 0);
    let log = attempt_log(&fixture);
    (fixture, log, big)
}

#[tokio::test(start_paused = true)]
async fn by_tier_runs_every_span_on_the_first_model_before_any_on_the_second() {
    let (_, log, big) = run_with(Schedule::ByTier).await;
    let small_then_big: Vec<&str> = log.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(
        small_then_big,
        [
            "small", "small", "small", "small", "small", "small", "big", "big", "big"
        ],
        "one model at a time"
    );
    // The second pass numbers its attempts after the first pass's.
    assert!(log[6..].iter().all(|(_, attempt)| *attempt == 2), "{log:?}");
    assert_eq!(big.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn per_span_runs_each_span_through_its_chain_before_the_next() {
    let (_, log, _) = run_with(Schedule::PerSpan).await;
    let order: Vec<&str> = log.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(
        order,
        [
            "small", "small", "big", "small", "small", "big", "small", "small", "big"
        ],
        "the models alternate span by span"
    );
}

#[tokio::test(start_paused = true)]
async fn by_tier_ledgers_a_span_only_when_its_last_backend_failed_too() {
    let fixture = Fixture::new();
    let hashes = fixture.index_lines("a.py", 2);
    let small = Arc::new(Scripted::new("small").always(Reply::Fail(FailureKind::ContextExceeded)));
    let big = Arc::new(Scripted::new("big").replies(|request, _| {
        if request.span.line_start == 1 {
            Reply::Valid
        } else {
            Reply::Fail(FailureKind::ContextExceeded)
        }
    }));
    let (pipeline, _) = pipeline(&fixture, &config(&[&small, &big]), &[&small, &big], |s| {
        s.schedule = Schedule::ByTier;
    });

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!((summary.succeeded, summary.failed), (1, 1), "{summary:?}");
    let db = fixture.db();
    assert!(db.failure_entry(&hashes[0]).unwrap().is_none());
    let ledger = db.failure_entry(&hashes[1]).unwrap().expect("ledgered");
    assert_eq!(
        ledger.consecutive_failures, 1,
        "one failed run, not one per pass"
    );
    assert_eq!(
        ledger.last_failure_kind,
        FailureKind::ContextExceeded.into()
    );
    let attempts = db.attempts_for_span(&hashes[1]).unwrap();
    let backends: Vec<&str> = attempts
        .iter()
        .map(|a| a.attempt.backend.as_str())
        .collect();
    assert_eq!(backends, ["small", "big"]);
    assert_eq!(fixture.pending(), 1, "a failed span stays pending");
}
