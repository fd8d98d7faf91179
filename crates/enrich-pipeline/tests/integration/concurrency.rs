//! Concurrency, per-backend caps, stop and abort, and paging (all on tokio's paused clock:
//! durations are virtual and exact).

use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{FailureKind, LimitReason};
use enrich_pipeline::{Event, RunControl, RunEnd, StopLevel};
use tokio::time::Instant;

use crate::support::{Fixture, Reply, Scripted, config, pipeline};

const CALL: Duration = Duration::from_secs(10);

/// Runs `spans` spans of one backend taking [`CALL`] each, with `concurrency` and the backend's
/// `max_in_flight` `cap`; checks the virtual time taken and the most requests seen in flight.
async fn check_overlap(
    spans: usize,
    concurrency: usize,
    cap: Option<usize>,
    expected_elapsed: Duration,
    expected_in_flight: usize,
) {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", spans);
    let mut backend = Scripted::new("gpu").delay(CALL).timeout_seconds(15.0);
    if let Some(cap) = cap {
        backend = backend.cap(cap);
    }
    let gpu = Arc::new(backend);
    let (pipeline, _) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| {
        s.concurrency = concurrency;
        s.batch_size = 2;
    });

    let started = Instant::now();
    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    let label = format!("{spans} spans, concurrency {concurrency}, cap {cap:?}");
    // Every span succeeds: waiting for a backend's slot does not count against its 15 s
    // timeout, although the last spans wait far longer than that.
    assert_eq!(summary.succeeded, spans as u64, "{label}");
    assert_eq!(started.elapsed(), expected_elapsed, "{label}");
    assert_eq!(gpu.max_in_flight(), expected_in_flight, "{label}");
}

#[tokio::test(start_paused = true)]
async fn spans_overlap_up_to_concurrency_and_each_backend_keeps_its_cap() {
    // Sequential by default: one request per backend (OLLAMA_NUM_PARALLEL's default).
    check_overlap(4, 4, None, CALL * 4, 1).await;
    // Enough slots on both sides: two waves of three.
    check_overlap(6, 3, Some(3), CALL * 2, 3).await;
    // The backend's cap binds before the pipeline's concurrency.
    check_overlap(8, 4, Some(2), CALL * 4, 2).await;
    // The pipeline's concurrency binds before a generous cap.
    check_overlap(6, 2, Some(8), CALL * 3, 2).await;
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_grows_to_its_ceiling_and_the_run_reports_each_change() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 12);
    // Answers take 10 s however many are in flight: the latency stays flat, so the limit
    // grows by one per round (1, then 2, then 3) and stops at max_in_flight.
    let gpu = Arc::new(
        Scripted::new("gpu")
            .delay(CALL)
            .timeout_seconds(120.0)
            .ceiling(3),
    );
    let (pipeline, events) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| {
        s.concurrency = 6;
    });

    let started = Instant::now();
    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.succeeded, 12);
    assert_eq!(gpu.max_in_flight(), 3, "the ceiling is never passed");
    // One span, then two, then three at a time: 1 + 2 + 3 × 3.
    assert_eq!(started.elapsed(), CALL * 5);
    let limit = &summary.limits[..];
    assert_eq!(limit.len(), 1);
    assert_eq!(
        (
            limit[0].adaptive,
            limit[0].limit,
            limit[0].peak_limit,
            limit[0].ceiling
        ),
        (true, 3, 3, 3)
    );
    assert_eq!((limit[0].peak_in_flight, limit[0].backoffs), (3, 0));
    let changes: Vec<(usize, usize, LimitReason)> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::LimitChanged { run_id, change, .. } if run_id == summary.run_id => {
                Some((change.from, change.to, change.reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (1, 2, LimitReason::LatencyFlat),
            (2, 3, LimitReason::LatencyFlat)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn backends_of_a_chain_each_have_their_own_cap() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 4);
    let first = Arc::new(Scripted::new("first").always(Reply::Fail(FailureKind::Connect)));
    let second = Arc::new(Scripted::new("second").delay(CALL).cap(2));
    let config = config(&[&first, &second]);
    // The circuit would otherwise take the refused backend out after three failures.
    let (pipeline, _) = pipeline(&fixture, &config, &[&first, &second], |s| {
        s.concurrency = 4;
        s.cascade = s.cascade.clone().with_circuit(None);
    });

    let started = Instant::now();
    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.succeeded, 4);
    assert_eq!(first.calls(), 4);
    assert_eq!(second.max_in_flight(), 2);
    assert_eq!(started.elapsed(), CALL * 2);
}

#[tokio::test(start_paused = true)]
async fn stop_lets_spans_in_flight_finish_and_writes_them() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 8);
    let gpu = Arc::new(Scripted::new("gpu").delay(CALL).cap(2));
    let (pipeline, events) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| {
        s.concurrency = 2;
        s.batch_size = 3;
    });
    let control = RunControl::new();
    let run = tokio::spawn({
        let (pipeline, control) = (Arc::clone(&pipeline), control.clone());
        async move { pipeline.run(&control).await }
    });

    tokio::time::sleep(CALL / 2).await;
    assert_eq!(control.escalate(), StopLevel::Stop);
    let summary = run.await.expect("join").expect("run");

    assert_eq!(summary.end, RunEnd::Stopped);
    assert_eq!(
        (summary.attempted, summary.succeeded, summary.cancelled),
        (2, 2, 0)
    );
    assert_eq!(gpu.calls(), 2);
    assert_eq!(fixture.count("enrichments"), 2);
    assert_eq!(fixture.pending(), 6);
    let run = fixture.db().run(summary.run_id).unwrap().expect("run row");
    assert_eq!(run.status, enrich_db::RunStatus::Interrupted);
    // The first batch was cut short: it reports the two spans it handled.
    let batches: Vec<(u64, u64)> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::BatchFinished { batch, spans, .. } => Some((batch, spans)),
            _ => None,
        })
        .collect();
    assert_eq!(batches, [(1, 2)]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_abandons_it_and_nothing_goes_on_behind_the_caller() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 6);
    let gpu = Arc::new(Scripted::new("gpu").delay(CALL).cap(2));
    let (pipeline, _events) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| {
        s.concurrency = 2;
    });

    let dropped = tokio::time::timeout(CALL / 2, pipeline.run(&RunControl::new())).await;
    assert!(dropped.is_err(), "the run was still waiting for its calls");
    tokio::time::sleep(CALL * 5).await;

    assert_eq!(gpu.calls(), 2, "no call starts after the drop");
    assert_eq!(
        fixture.count("enrichments"),
        0,
        "the calls in flight were dropped"
    );
    assert_eq!(fixture.pending(), 6);
    assert_eq!(fixture.count("enrich_runs"), 1);
}

#[tokio::test(start_paused = true)]
async fn abort_cancels_spans_in_flight_and_writes_nothing_for_them() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 4);
    // Each span fails a first attempt at once, then is in flight on the second backend: an
    // abort must not leave that first attempt in the log either.
    let refused = Arc::new(Scripted::new("refused").always(Reply::Fail(FailureKind::Connect)));
    let slow = Arc::new(Scripted::new("slow").delay(CALL).cap(2));
    let (pipeline, events) = pipeline(
        &fixture,
        &config(&[&refused, &slow]),
        &[&refused, &slow],
        |s| {
            s.concurrency = 2;
        },
    );
    let control = RunControl::new();
    let run = tokio::spawn({
        let (pipeline, control) = (Arc::clone(&pipeline), control.clone());
        async move { pipeline.run(&control).await }
    });

    tokio::time::sleep(CALL / 2).await;
    assert_eq!(control.escalate(), StopLevel::Stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(control.escalate(), StopLevel::Abort);
    let aborted_at = Instant::now();
    let summary = run.await.expect("join").expect("run");

    assert!(
        aborted_at.elapsed() < Duration::from_secs(1),
        "abort does not wait for the calls"
    );
    assert_eq!(summary.end, RunEnd::Aborted);
    assert_eq!((summary.attempted, summary.cancelled), (0, 2));
    for table in ["enrichments", "enrich_attempts", "enrich_failures"] {
        assert_eq!(fixture.count(table), 0, "{table}");
    }
    assert_eq!(fixture.pending(), 4);
    let run = fixture.db().run(summary.run_id).unwrap().expect("run row");
    assert_eq!(run.status, enrich_db::RunStatus::Interrupted);
    let cancelled = events
        .events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::SpanFinished {
                    status: enrich_pipeline::SpanStatus::Cancelled,
                    ..
                }
            )
        })
        .count();
    assert_eq!(cancelled, 2);
}

#[tokio::test(start_paused = true)]
async fn pending_spans_are_read_page_by_page_as_slots_free_up() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 60);
    let gpu = Arc::new(Scripted::new("gpu").delay(CALL).cap(2));
    let (pipeline, events) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| {
        s.concurrency = 2;
        s.batch_size = 4;
    });
    let run = tokio::spawn({
        let pipeline = Arc::clone(&pipeline);
        async move { pipeline.run(&RunControl::new()).await }
    });

    // While the first two spans are in flight, another process enriches the second half. A
    // pipeline that had loaded every pending span up front would enrich them again.
    tokio::time::sleep(CALL / 2).await;
    let external = fixture
        .raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary, model, schema_ver)
             SELECT span_hash, 'written by another process', 'other', 'enrichment.v1'
             FROM spans WHERE id > 30",
            [],
        )
        .expect("external enrichments");
    assert_eq!(external, 30);
    let summary = run.await.expect("join").expect("run");

    assert_eq!((summary.total_pending, summary.attempted), (60, 30));
    assert_eq!(gpu.calls(), 30);
    let pages: Vec<u64> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::BatchFinished { spans, .. } => Some(spans),
            _ => None,
        })
        .collect();
    assert_eq!(pages, [4, 4, 4, 4, 4, 4, 4, 2]);
    assert_eq!(summary.batches, 8);
    let external_kept: u64 = fixture
        .raw()
        .query_row(
            "SELECT COUNT(*) FROM enrichments WHERE summary = 'written by another process'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(external_kept, 30);
}

#[tokio::test(start_paused = true)]
async fn a_backends_requests_per_minute_pace_the_run() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 5);
    let model = Arc::new(Scripted::new("model").requests_per_minute(2));
    let (pipeline, _) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
        s.concurrency = 5;
    });

    let started = Instant::now();
    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(summary.succeeded, 5);
    // A burst of a minute's budget (2), then one request every 30 s: 3 more take 90 s.
    let took = started.elapsed().as_secs_f64();
    assert!((90.0..91.0).contains(&took), "took {took} s");
    assert_eq!(model.calls(), 5);
}
