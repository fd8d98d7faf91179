//! Failing spans: fallback between backends, invalid output, the ledger and dead letters, the
//! fallback policy, unreadable sources, the cooldown.

use std::sync::Arc;

use enrich_backends::FailureKind;
use enrich_config::OnFailure;
use enrich_db::RunStatus;
use enrich_pipeline::{Event, PipelineError, RunControl, SpanStatus};
use enrich_types::{AttemptOutcome, LedgerKind};

use crate::support::{
    Fixture, OLD_MTIME, Reply, Scripted, config, now_secs, pipeline, python_lines,
};

#[tokio::test(start_paused = true)]
async fn a_refused_first_backend_falls_through_to_the_second() {
    let fixture = Fixture::new();
    let hash = fixture.index_lines("a.py", 1).remove(0);
    let down = Arc::new(Scripted::new("down").always(Reply::Fail(FailureKind::Connect)));
    let up = Arc::new(Scripted::new("up"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&down, &up]), &[&down, &up], |_| {});

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!((summary.succeeded, summary.failed), (1, 0));
    let db = fixture.db();
    let stored = db.enrichment_by_hash(&hash).unwrap().expect("enrichment");
    assert_eq!(stored.enrichment.model, "up-model:1b");
    let log: Vec<_> = db
        .attempts_for_span(&hash)
        .unwrap()
        .into_iter()
        .map(|entry| {
            let a = entry.attempt;
            (a.attempt, a.backend, a.outcome, a.failure_kind)
        })
        .collect();
    assert_eq!(
        log,
        [
            (
                1,
                "down".to_owned(),
                AttemptOutcome::Failure,
                Some(FailureKind::Connect)
            ),
            (2, "up".to_owned(), AttemptOutcome::Success, None),
        ]
    );
    assert!(db.failure_entry(&hash).unwrap().is_none());
}

/// One backend answering `text` fails the span with `kind`; nothing is stored but the attempt
/// and the ledger row.
async fn check_invalid_output(text: &str, enforce_latin1: bool, kind: FailureKind, needle: &str) {
    let fixture = Fixture::new();
    let hash = fixture.index_lines("a.py", 1).remove(0);
    let model = Arc::new(Scripted::new("model").always(Reply::Text(text.to_owned())));
    let (pipeline, _) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
        s.enforce_latin1 = enforce_latin1;
    });

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!((summary.succeeded, summary.failed), (0, 1), "{text}");
    let db = fixture.db();
    assert!(db.enrichment_by_hash(&hash).unwrap().is_none(), "{text}");
    let ledger = db.failure_entry(&hash).unwrap().expect("ledger row");
    assert_eq!(ledger.last_failure_kind, kind.into(), "{text}");
    assert!(
        ledger.last_message.contains(needle),
        "{}",
        ledger.last_message
    );
    assert_eq!(
        (ledger.consecutive_failures, ledger.dead_lettered),
        (1, false)
    );
    // The first answer and the one corrective re-ask the default policy allows.
    let attempts = db.attempts_for_span(&hash).unwrap();
    assert_eq!(attempts.len(), 2, "{text}");
    for logged in &attempts {
        assert_eq!(logged.attempt.failure_kind, Some(kind), "{text}");
    }
    assert_eq!(fixture.pending(), 1, "a failed span stays pending");
}

#[tokio::test(start_paused = true)]
async fn invalid_output_is_never_stored_and_is_ledgered() {
    check_invalid_output(
        "I cannot help with that.",
        false,
        FailureKind::MalformedOutput,
        "no JSON object",
    )
    .await;
    check_invalid_output(
        r#"{"summary_120w": "Adds two numbers and returns the sum.", "evidence": [{"field": "summary_120w", "lines": [40, 41]}]}"#,
        false,
        FailureKind::QualityRejected,
        "quality check `evidence_outside_span` failed: evidence for `summary_120w` cites lines [40, 41], outside the span (lines 1-1)",
    )
    .await;
    check_invalid_output(
        r#"{"summary_120w": "renvoie \u2192 un entier"}"#,
        true,
        FailureKind::SchemaInvalid,
        "outside Latin-1",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_span_is_dead_lettered_after_max_failed_runs_and_never_tried_again() {
    let fixture = Fixture::new();
    let hash = fixture.index_lines("a.py", 1).remove(0);
    let model = Arc::new(Scripted::new("model").always(Reply::Text("nope".to_owned())));
    let (pipeline, _) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
        s.max_failures_per_span = 2;
    });

    let first = pipeline.run(&RunControl::new()).await.expect("first run");
    assert_eq!((first.failed, first.dead_lettered), (1, 0));
    let ledger = fixture.db().failure_entry(&hash).unwrap().expect("ledger");
    assert_eq!(
        (ledger.consecutive_failures, ledger.dead_lettered),
        (1, false)
    );

    let second = pipeline.run(&RunControl::new()).await.expect("second run");
    assert_eq!((second.failed, second.dead_lettered), (1, 1));
    let dead: Vec<String> = fixture
        .db()
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|d| d.span_hash)
        .collect();
    assert_eq!(dead, [hash]);

    let third = pipeline.run(&RunControl::new()).await.expect("third run");
    assert_eq!((third.total_pending, third.attempted), (0, 0));
    // Two runs of an answer and its corrective re-ask; nothing after the dead letter.
    assert_eq!(model.calls(), 4, "a dead-lettered span is never attempted");
}

#[tokio::test(start_paused = true)]
async fn fallback_to_empty_stores_a_marked_empty_enrichment_and_logs_the_attempts() {
    let fixture = Fixture::new();
    let hash = fixture.index_lines("a.py", 1).remove(0);
    let down = Arc::new(Scripted::new("down").always(Reply::Fail(FailureKind::ContextExceeded)));
    let mut config = config(&[&down]);
    config.on_failure = OnFailure::FallbackToEmpty;
    let (pipeline, events) = pipeline(&fixture, &config, &[&down], |_| {});

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(
        (
            summary.attempted,
            summary.succeeded,
            summary.fell_back,
            summary.failed
        ),
        (1, 0, 1, 0)
    );
    let db = fixture.db();
    let stored = db.enrichment_by_hash(&hash).unwrap().expect("fallback row");
    assert!(stored.enrichment.is_fallback());
    assert_eq!(stored.enrichment.enrichment.summary, "");
    assert!(db.failure_entry(&hash).unwrap().is_none());
    let attempts = db.attempts_for_span(&hash).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].attempt.failure_kind,
        Some(FailureKind::ContextExceeded)
    );
    let finished = events.events().into_iter().find_map(|e| match e {
        Event::SpanFinished {
            status, message, ..
        } => Some((status, message)),
        _ => None,
    });
    let (status, message) = finished.expect("span_finished");
    assert_eq!(status, SpanStatus::FellBack);
    assert!(message.unwrap_or_default().contains("fallback_to_empty"));

    let again = pipeline.run(&RunControl::new()).await.expect("second run");
    assert_eq!((again.total_pending, again.attempted), (0, 0));
    let run = db.run(summary.run_id).unwrap().expect("run row");
    assert_eq!((run.counts.succeeded, run.counts.failed), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_source_fails_its_span_with_a_clear_ledger_message() {
    let fixture = Fixture::new();
    let good = fixture.index_lines("ok.py", 2);
    let missing = fixture
        .index_rows("gone.py", &python_lines("gone.py", 1), OLD_MTIME)
        .remove(0);
    let escaping = fixture
        .index_rows("../outside.py", &python_lines("outside.py", 1), OLD_MTIME)
        .remove(0);
    let model = Arc::new(Scripted::new("model"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&model]), &[&model], |_| {});

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!((summary.succeeded, summary.failed), (2, 2));
    assert_eq!(
        model.calls(),
        2,
        "no backend is asked about an unreadable span"
    );
    let db = fixture.db();
    for hash in &good {
        assert!(db.enrichment_by_hash(hash).unwrap().is_some());
    }
    for (hash, needle) in [
        (&missing, "cannot read the source of a span from"),
        (&escaping, "leads outside the repo root"),
    ] {
        let ledger = db.failure_entry(hash).unwrap().expect("ledger row");
        assert_eq!(ledger.last_failure_kind, LedgerKind::SourceUnreadable);
        assert!(
            ledger.last_message.contains(needle),
            "{}",
            ledger.last_message
        );
        assert!(db.attempts_for_span(hash).unwrap().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn spans_of_files_changed_within_the_cooldown_are_skipped() {
    let fixture = Fixture::new();
    let fresh = fixture.index_file("fresh.py", &python_lines("fresh.py", 2), now_secs() - 30.0);
    let old = fixture.index_lines("old.py", 2);
    let model = Arc::new(Scripted::new("model"));
    let (pipeline, events) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
        s.cooldown = std::time::Duration::from_secs(600);
    });

    let plan = pipeline.plan(10).expect("plan");
    let cooling: Vec<bool> = plan.spans.iter().map(|s| s.in_cooldown).collect();
    assert_eq!(cooling, [true, true, false, false]);

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(
        (summary.succeeded, summary.skipped, summary.attempted),
        (2, 2, 2)
    );
    let db = fixture.db();
    for hash in &fresh {
        assert!(db.enrichment_by_hash(hash).unwrap().is_none());
        assert!(db.failure_entry(hash).unwrap().is_none());
    }
    for hash in &old {
        assert!(db.enrichment_by_hash(hash).unwrap().is_some());
    }
    assert_eq!(fixture.pending(), 2);
    let skipped: Vec<String> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::SpanFinished {
                status: SpanStatus::Skipped,
                message,
                ..
            } => message,
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped[0].contains("within the cooldown of 600s"),
        "{}",
        skipped[0]
    );
    let run = db.run(summary.run_id).unwrap().expect("run row");
    assert_eq!((run.status, run.counts.skipped), (RunStatus::Completed, 2));
}

/// Building over `backend` with `adjust`ed settings (or a registry without the provider) fails
/// with an error matching `expected` whose message contains `needle`.
#[track_caller]
fn check_refused(
    backend: Scripted,
    adjust: impl FnOnce(&mut enrich_pipeline::PipelineSettings),
    empty_registry: bool,
    expected: fn(&PipelineError) -> bool,
    needle: &str,
) {
    let fixture = Fixture::new();
    let backend = Arc::new(backend);
    let config = config(&[&backend]);
    let registry = if empty_registry {
        enrich_backends::AdapterRegistry::new()
    } else {
        crate::support::registry(&[&backend])
    };
    let err = enrich_pipeline::Pipeline::builder(&config, &fixture.repo)
        .configure(adjust)
        .build(&registry)
        .expect_err("refused");
    assert!(expected(&err), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(needle), "{message}");
}

#[test]
fn building_refuses_unusable_settings_with_clear_messages() {
    check_refused(
        Scripted::new("model"),
        |s| s.chain_override = Some("nope".into()),
        false,
        |e| matches!(e, PipelineError::Chain(_)),
        "cannot use the chain override: chain \"nope\" does not exist",
    );
    check_refused(
        Scripted::new("model"),
        |s| s.repo_root = s.repo_root.join("missing"),
        false,
        |e| {
            matches!(
                e,
                PipelineError::InvalidSetting {
                    key: "repo_root",
                    ..
                }
            )
        },
        "is not a directory; pass the root of the indexed repository",
    );
    check_refused(
        Scripted::new("model"),
        |s| s.concurrency = 0,
        false,
        |e| {
            matches!(
                e,
                PipelineError::InvalidSetting {
                    key: "concurrency",
                    ..
                }
            )
        },
        "setting `concurrency` is 0: it must be at least 1",
    );
    check_refused(
        Scripted::new("model"),
        |_| {},
        true,
        |e| matches!(e, PipelineError::Adapters(_)),
        "cannot set up the backends: backend 'model' in chain 'default' uses provider 'scripted'",
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_write_stops_the_run_and_records_it_as_failed() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 6);
    // Every commit now fails, as on a full disk.
    fixture
        .raw()
        .execute_batch(
            "CREATE TRIGGER disk_full BEFORE INSERT ON enrich_attempts
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .expect("trigger");
    let model = Arc::new(Scripted::new("model").delay(std::time::Duration::from_secs(1)));
    let (pipeline, events) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
        s.commit_every = 1;
    });

    let err = pipeline
        .run(&RunControl::new())
        .await
        .expect_err("writes fail");

    assert!(matches!(err, PipelineError::Write { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("database or disk is full"), "{message}");
    assert!(message.contains("stay pending"), "{message}");
    // Nothing half-written: each failed batch rolled back whole.
    assert_eq!(fixture.count("enrichments"), 0);
    assert_eq!(fixture.pending(), 6);
    let run = fixture.db().last_run().unwrap().expect("run row");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(matches!(
        events.events().last(),
        Some(Event::RunFinished {
            status: RunStatus::Failed,
            end: enrich_pipeline::RunEnd::Failed,
            ..
        })
    ));
}

/// A run that a failing write stops (a full disk after four enrichments) reports and records
/// the counts of what it committed, not of the spans its backends answered: the spans answered
/// after the failure were never stored.
#[tokio::test(start_paused = true)]
async fn a_run_that_fails_half_way_counts_what_it_committed() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 12);
    fixture
        .raw()
        .execute_batch(
            "CREATE TRIGGER disk_full BEFORE INSERT ON enrich_attempts
             WHEN (SELECT COUNT(*) FROM enrichments) >= 4
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .expect("trigger");
    let model = Arc::new(
        Scripted::new("model")
            .delay(std::time::Duration::from_secs(1))
            .cap(4),
    );
    let (pipeline, _) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
        s.commit_every = 1;
        s.concurrency = 4;
    });

    let outcome = pipeline.run_to_end(&RunControl::new()).await;

    assert!(
        matches!(outcome.error, Some(PipelineError::Write { .. })),
        "{:?}",
        outcome.error
    );
    let summary = outcome.summary.expect("a failed run is reported");
    assert_eq!(summary.end, enrich_pipeline::RunEnd::Failed);
    assert_eq!(fixture.count("enrichments"), 4);
    assert!(model.calls() > 4, "spans were answered after the failure");
    assert_eq!(
        (summary.attempted, summary.succeeded, summary.failed),
        (4, 4, 0)
    );
    let run = fixture.db().last_run().unwrap().expect("run row");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!((run.counts.attempted, run.counts.succeeded), (4, 4));
}
