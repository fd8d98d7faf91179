//! Outages are the backends' state, not the spans': a span whose backends are unavailable is
//! never ledgered; the run waits for the earliest circuit to let a probe through, and stops
//! after `outage_grace` without an answer, leaving the spans it could not send pending.

use std::sync::Arc;
use std::time::Duration;

use enrich_backends::FailureKind;
use enrich_config::OnFailure;
use enrich_pipeline::{Event, RunControl, RunEnd, SpanStatus};
use tokio::time::Instant;

use crate::support::{Fixture, Reply, Scripted, config, pipeline, wall_ms};

/// The failure ledger's rows.
fn ledger_rows(fixture: &Fixture) -> u64 {
    fixture.count("enrich_failures")
}

/// Every `backend_waiting` event: backend and seconds to wait (rounded up).
fn waits(events: &[Event]) -> Vec<(String, Option<u64>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BackendWaiting {
                backend,
                retry_in_ms,
                ..
            } => Some((backend.clone(), retry_in_ms.map(|ms| ms.div_ceil(1000)))),
            _ => None,
        })
        .collect()
}

/// A backend refusing connections for its first `requests` requests, then answering.
fn down_at_first(name: &str, requests: usize) -> Scripted {
    Scripted::new(name).replies(move |_, call| {
        if call <= requests {
            Reply::Fail(FailureKind::Connect)
        } else {
            Reply::Valid
        }
    })
}

#[tokio::test(start_paused = true)]
async fn an_outage_of_any_kind_leaves_every_span_pending_and_unledgered() {
    // (failure every request gets, whether the run waits out the grace before it stops)
    let table = [
        (FailureKind::Connect, true),
        (FailureKind::ServerError, true),
        (FailureKind::Overloaded, true),
        (FailureKind::ModelNotFound, false),
        (FailureKind::Auth, false),
    ];
    for (kind, waits_for_grace) in table {
        let fixture = Fixture::new();
        let hashes = fixture.index_lines("a.py", 8);
        let down = Arc::new(Scripted::new("down").always(Reply::Fail(kind)));
        let mut config = config(&[&down]);
        // Not even the fallback policy may store an empty enrichment for an outage.
        config.on_failure = OnFailure::FallbackToEmpty;
        config.concurrency = 2;
        let (pipeline, events) = pipeline(&fixture, &config, &[&down], |s| {
            s.outage_grace = Duration::from_secs(120);
        });
        let started = Instant::now();

        let summary = pipeline.run(&RunControl::new()).await.expect("run");

        let label = format!("{kind}: {summary:?}");
        assert_eq!(summary.end, RunEnd::BackendsUnavailable, "{label}");
        assert_eq!(
            (summary.attempted, summary.failed, summary.fell_back),
            (0, 0, 0),
            "{label}"
        );
        // The run took no more than a page of spans to wait with; all of them stay pending.
        assert!((1..=8).contains(&summary.unsent), "{label}");
        assert_eq!(ledger_rows(&fixture), 0, "{label}");
        assert_eq!(fixture.count("enrichments"), 0, "{label}");
        assert_eq!(fixture.pending(), hashes.len() as u64, "{label}");
        assert_eq!(fixture.count("enrich_leases"), 0, "{label}");
        // Every request that was made is in the attempt log.
        assert_eq!(
            fixture.count("enrich_attempts"),
            down.calls() as u64,
            "{label}"
        );
        assert_eq!(summary.outages.len(), 1, "{label}");
        let outage = &summary.outages[0];
        assert_eq!(outage.backend, "down", "{label}");
        assert!(
            outage.last_error.starts_with(kind.as_str()),
            "{label}: {outage}"
        );
        let waited = started.elapsed();
        if waits_for_grace {
            assert!(waited >= Duration::from_secs(120), "{label}: {waited:?}");
        } else {
            // A backend skipped for the run never comes back in it: no waiting, one request.
            assert!(waited < Duration::from_secs(1), "{label}: {waited:?}");
            assert_eq!(down.calls(), 1, "{label}");
        }
        let statuses: Vec<SpanStatus> = events
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::SpanFinished { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert!(
            statuses.iter().all(|s| *s == SpanStatus::Unavailable),
            "{label}: {statuses:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_run_waits_for_the_circuit_and_enriches_every_span_when_the_backend_returns() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 12);
    // Down for its first four requests (the circuit opens after three, and its first probe
    // fails too), then answering.
    let flaky = Arc::new(down_at_first("flaky", 4));
    let mut config = config(&[&flaky]);
    config.concurrency = 3;
    let (pipeline, events) = pipeline(&fixture, &config, &[&flaky], |_| {});
    let started = Instant::now();

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.end, RunEnd::Exhausted, "{summary:?}");
    assert_eq!(
        (summary.succeeded, summary.failed, summary.unsent),
        (12, 0, 0)
    );
    assert_eq!(ledger_rows(&fixture), 0);
    assert_eq!(fixture.pending(), 0);
    // Three connect failures open the circuit for 30 s; the probe fails and doubles it to 60 s;
    // the next probe is answered. The run said what it waited for, and took no span meanwhile.
    assert_eq!(
        waits(&events.events()),
        [
            ("flaky".to_owned(), Some(30)),
            ("flaky".to_owned(), Some(60))
        ]
    );
    assert_eq!(flaky.calls(), 4 + 12);
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(90)..Duration::from_secs(91)).contains(&waited),
        "{waited:?}"
    );
    // The spans caught in the outage were tried again in the same run, numbered on.
    let attempts = fixture.count("enrich_attempts");
    assert_eq!(attempts, 16);
}

#[tokio::test(start_paused = true)]
async fn a_grace_of_zero_stops_at_the_first_outage_and_a_span_own_failures_still_count() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 6);
    // The first span gets an invalid answer twice (its own failure), the second a refused
    // connection (an outage), the rest would be answered.
    let model = Arc::new(Scripted::new("model").replies(|_, call| match call {
        1 | 2 => Reply::Text("no json here".to_owned()),
        3 => Reply::Fail(FailureKind::Connect),
        _ => Reply::Valid,
    }));
    let config = config(&[&model]);
    let (pipeline, _) = pipeline(&fixture, &config, &[&model], |s| {
        s.outage_grace = Duration::ZERO;
    });

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.end, RunEnd::BackendsUnavailable, "{summary:?}");
    assert_eq!((summary.failed, summary.unsent), (1, 1), "{summary:?}");
    assert_eq!(ledger_rows(&fixture), 1);
    assert_eq!(fixture.pending(), 6);
    assert_eq!(model.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn by_tier_an_unavailable_backend_defers_to_the_next_pass_and_the_last_one_is_waited_for() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 6);
    // The first tier lacks the model (skipped for the run); the last is down for its first four
    // requests, then answers.
    let small = Arc::new(Scripted::new("small").always(Reply::Fail(FailureKind::ModelNotFound)));
    let big = Arc::new(down_at_first("big", 4));
    let mut config = config(&[&small, &big]);
    config.concurrency = 2;
    let (pipeline, events) = pipeline(&fixture, &config, &[&small, &big], |s| {
        s.schedule = enrich_config::Schedule::ByTier;
    });

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.end, RunEnd::Exhausted, "{summary:?}");
    assert_eq!(
        (summary.succeeded, summary.failed, summary.unsent),
        (6, 0, 0)
    );
    assert_eq!(ledger_rows(&fixture), 0);
    assert_eq!(small.calls(), 1, "skipped for the run after its 404");
    assert!(!waits(&events.events()).is_empty());
    assert!(
        waits(&events.events())
            .iter()
            .all(|(backend, _)| backend == "big")
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_circuit_breaker_an_unavailable_span_backs_off_instead_of_hammering() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 3);
    let down = Arc::new(Scripted::new("down").always(Reply::Fail(FailureKind::Connect)));
    let mut config = config(&[&down]);
    config.circuit_breaker.failures_to_open = 0;
    let (pipeline, _) = pipeline(&fixture, &config, &[&down], |s| {
        s.outage_grace = Duration::from_secs(60);
    });

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.end, RunEnd::BackendsUnavailable, "{summary:?}");
    assert_eq!((summary.failed, summary.unsent), (0, 3));
    // Each span waits the backoff between its tries (0.5 s doubling to 30 s): a few requests a
    // minute, not one after the other.
    assert!(down.calls() <= 3 * 8, "{} requests", down.calls());
    assert_eq!(ledger_rows(&fixture), 0);
}

/// A run waiting for a backend holds its spans: it renews their leases every quarter of their
/// life (10 minutes here) while it waits, with no span in flight to wake it.
#[tokio::test(start_paused = true)]
async fn a_run_waiting_for_a_backend_renews_its_leases_on_time() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 3);
    // Down for its first five requests: three open the circuit for 30 s, the probes after
    // 30 s and 60 s more fail, the probe 210 s in is answered.
    // A short timeout keeps the leases at their shortest life, 10 minutes.
    let flaky = Arc::new(down_at_first("flaky", 5).timeout_seconds(2.0));
    let mut config = config(&[&flaky]);
    config.concurrency = 3;
    let (pipeline, events) = pipeline(&fixture, &config, &[&flaky], |_| {});
    let started = Instant::now();
    let run = tokio::spawn(async move { pipeline.run(&RunControl::new()).await });
    while waits(&events.events()).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The leases of the waiting spans as good as expired: only a renewal brings them back.
    let raw = fixture.raw();
    let held = raw
        .execute("UPDATE enrich_leases SET expires_at_ms = 1", [])
        .expect("age the leases");
    assert_eq!(held, 3, "the waiting spans are leased");

    // The first renewal is due 150 s in, while the run still waits (the next probe is 210 s in).
    tokio::time::sleep_until(started + Duration::from_secs(160)).await;
    assert_eq!(flaky.calls(), 5, "still waiting");
    let soonest: i64 = raw
        .query_row("SELECT MIN(expires_at_ms) FROM enrich_leases", [], |row| {
            row.get(0)
        })
        .expect("read leases");
    assert!(
        soonest - wall_ms() > 500_000,
        "renewed for about 10 minutes: {soonest}"
    );

    let summary = run.await.expect("run task").expect("run");
    assert_eq!(summary.end, RunEnd::Exhausted, "{summary:?}");
    assert_eq!((summary.succeeded, summary.unsent), (3, 0));
}
