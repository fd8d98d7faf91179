//! The writer: LLMC's column mapping, idempotency, batches, missing spans, attempts, runs.

use std::time::{SystemTime, UNIX_EPOCH};

use enrich_db::{DbError, EnrichmentRow, RunCounts, RunId, RunStatus, SpanOutcome, Stored};
use enrich_types::AttemptOutcome;

use crate::support::{Fixture, enriched, enrichment, failed, python_lines};

fn count(fixture: &Fixture, sql: &str) -> i64 {
    fixture
        .raw()
        .query_row(sql, [], |r| r.get(0))
        .expect("count")
}

/// A row read back the way LLMC reads it: plain SQL on its columns, `json.loads` on the lists,
/// `split(",")` on the tags.
#[derive(Debug, PartialEq)]
struct LlmcView {
    summary: String,
    tags: Vec<String>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    side_effects: Vec<String>,
    pitfalls: Vec<String>,
    evidence: serde_json::Value,
    usage_snippet: Option<String>,
    model: String,
    schema_ver: String,
    created_at: i64,
    metrics: (f64, i64, i64, i64, i64, String),
    content_type_source: Option<String>,
}

fn llmc_view(fixture: &Fixture, span_hash: &str) -> LlmcView {
    let list = |text: String| -> Vec<String> { serde_json::from_str(&text).expect("JSON array") };
    fixture
        .raw()
        .query_row(
            "SELECT summary, tags, inputs, outputs, side_effects, pitfalls, evidence,
                    usage_snippet, model, schema_ver, created_at, tokens_per_second, eval_count,
                    eval_duration_ns, prompt_eval_count, total_duration_ns, backend_host,
                    content_type_source, typeof(created_at)
             FROM enrichments WHERE span_hash = ?1",
            [span_hash],
            |r| {
                assert_eq!(
                    r.get::<_, String>(18)?,
                    "integer",
                    "created_at is Unix seconds"
                );
                Ok(LlmcView {
                    summary: r.get(0)?,
                    tags: r
                        .get::<_, Option<String>>(1)?
                        .map(|t| t.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    inputs: list(r.get(2)?),
                    outputs: list(r.get(3)?),
                    side_effects: list(r.get(4)?),
                    pitfalls: list(r.get(5)?),
                    evidence: serde_json::from_str(&r.get::<_, String>(6)?).expect("evidence"),
                    usage_snippet: r.get(7)?,
                    model: r.get(8)?,
                    schema_ver: r.get(9)?,
                    created_at: r.get(10)?,
                    metrics: (
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                        r.get(14)?,
                        r.get(15)?,
                        r.get(16)?,
                    ),
                    content_type_source: r.get(17)?,
                })
            },
        )
        .expect("LLMC reads the row")
}

pub(crate) fn now_secs() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    i64::try_from(secs).expect("seconds")
}

#[test]
fn an_enrichment_is_stored_the_way_llmc_stores_and_reads_it() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let mut content = enrichment("Adds one.");
    content.tags = vec!["math".to_owned(), "a, b".to_owned(), " ".to_owned()];
    let outcome = SpanOutcome {
        stored: Stored::Enriched(Box::new(content)),
        ..enriched(&hashes[0], run, "unused")
    };
    let report = db.write_batch(&[outcome]).expect("write");
    assert_eq!((report.enriched, report.failed), (1, 0));

    let view = llmc_view(&fixture, &hashes[0]);
    assert_eq!(view.summary, "Adds one.");
    assert_eq!(view.tags, ["math", "a  b"]);
    assert_eq!(view.inputs, ["x: int"]);
    assert_eq!(view.outputs, ["int", "None on error"]);
    assert!(view.side_effects.is_empty());
    assert_eq!(view.pitfalls, ["overflows, \"quoted\""]);
    assert_eq!(
        view.evidence,
        serde_json::json!([{"field": "summary_120w", "lines": [1, 1]}])
    );
    assert_eq!(view.usage_snippet.as_deref(), Some("f1()"));
    assert_eq!(
        (view.model.as_str(), view.schema_ver.as_str()),
        ("qwen3:4b", "enrichment.v1")
    );
    assert!(
        (now_secs() - view.created_at).abs() < 120,
        "created_at {}",
        view.created_at
    );
    assert_eq!(
        view.metrics,
        (
            73.5,
            88,
            1_200_000_000,
            321,
            1_500_000_000,
            "gpu-box:11434".to_owned()
        )
    );
    assert_eq!(view.content_type_source, None);

    // And enrich reads it back the same.
    let stored = db
        .enrichment_by_hash(&hashes[0])
        .expect("read")
        .expect("stored");
    assert_eq!(stored.symbol.as_deref(), Some("name_1"));
    assert_eq!(stored.enrichment.tags, ["math", "a  b"]);
    assert_eq!(
        stored.enrichment.enrichment.pitfalls,
        ["overflows, \"quoted\""]
    );
    assert!(!stored.enrichment.is_fallback());
}

#[test]
fn the_quality_score_is_stored_in_enrichs_table_with_the_enrichment() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let before = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    db.write_batch(&[enriched(&hashes[0], run, "Adds one.")])
        .expect("write");

    // A plain SQL read of the real file: enrich's own table, LLMC's columns untouched.
    let row: (f64, String, String, String, String, i64) = fixture
        .raw()
        .query_row(
            "SELECT score, level, failed_checks, repairs, gate_version, scored_at_ms \
             FROM enrich_quality WHERE span_hash = ?1",
            [&hashes[0]],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("a quality row");
    assert_eq!(row.0, 0.9);
    assert_eq!(
        (
            row.1.as_str(),
            row.2.as_str(),
            row.3.as_str(),
            row.4.as_str()
        ),
        (
            "strict",
            r#"["usage_without_symbol"]"#,
            r#"["evidence_range_swapped"]"#,
            "gate-1"
        )
    );
    assert!(u128::try_from(row.5).unwrap() >= before);
    let llmc_columns: Vec<String> = fixture
        .raw()
        .prepare("SELECT name FROM pragma_table_info('enrichments')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !llmc_columns
            .iter()
            .any(|c| c.contains("score") || c.contains("quality"))
    );

    // Read back with the enrichment.
    let stored = db.enrichment_by_hash(&hashes[0]).unwrap().unwrap();
    assert_eq!(stored.enrichment.quality, enrichment("x").quality);
    assert_eq!(db.quality_of(&hashes[1]).unwrap(), None);

    // An enrichment without a verdict (a fallback) replaces the old one's score.
    let run2 = db.start_run("fp").expect("run");
    let fallback = SpanOutcome {
        stored: Stored::Enriched(Box::new(EnrichmentRow::fallback_empty())),
        ..enriched(&hashes[0], run2, "unused")
    };
    db.write_batch(&[fallback]).expect("write");
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrich_quality"), 0);
    assert_eq!(db.quality_of(&hashes[0]).unwrap(), None);
}

#[test]
fn writing_the_same_outcomes_twice_leaves_the_same_rows() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(3));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let batch = [enriched(&hashes[0], run, "first"), failed(&hashes[1], run)];
    let first = db.write_batch(&batch).expect("first write");
    let before = db.failure_entry(&hashes[1]).expect("ledger");
    let second = db.write_batch(&batch).expect("second write");
    assert_eq!(first, second);
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrichments"), 1);
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrich_attempts"), 3);
    let after = db.failure_entry(&hashes[1]).expect("ledger");
    assert_eq!(
        after.map(|e| e.consecutive_failures),
        before.map(|e| e.consecutive_failures),
        "the same run counts once"
    );

    // A new enrichment for the same span replaces the old one.
    let run2 = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&hashes[0], run2, "second")])
        .expect("rewrite");
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrichments"), 1);
    assert_eq!(llmc_view(&fixture, &hashes[0]).summary, "second");
}

#[test]
fn a_large_batch_commits_in_one_transaction() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("big.py", "python", &python_lines(500));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let outcomes: Vec<SpanOutcome> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i % 5 == 0 {
                failed(h, run)
            } else {
                enriched(h, run, &format!("span {i}"))
            }
        })
        .collect();
    let report = db.write_batch(&outcomes).expect("batch");
    assert_eq!((report.enriched, report.failed), (400, 100));
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrichments"), 400);
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrich_failures"), 100);
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrich_attempts"), 900);
    assert_eq!(db.pending_count().expect("count"), 100);
}

#[test]
fn an_outcome_for_a_span_that_vanished_is_reported_and_the_batch_goes_on() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let report = db
        .write_batch(&[
            enriched("sha256:reindexed-away", run, "gone"),
            failed("sha256:also-gone", run),
            enriched(&hashes[1], run, "kept"),
        ])
        .expect("batch");
    assert_eq!(report.enriched, 1);
    assert_eq!(report.failed, 0);
    assert_eq!(
        report.missing_spans,
        ["sha256:reindexed-away", "sha256:also-gone"]
    );
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrichments"), 1);
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrich_failures"), 0);
    // The attempts stay in the log: they happened.
    assert_eq!(
        db.attempts_for_span("sha256:reindexed-away")
            .expect("log")
            .len(),
        2
    );
}

#[test]
fn an_unknown_run_rolls_the_whole_batch_back() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let err = db
        .write_batch(&[
            enriched(&hashes[0], run, "ok"),
            enriched(&hashes[1], RunId(run.0 + 41), "bad run"),
        ])
        .expect_err("unknown run");
    assert!(
        matches!(err, DbError::UnknownRun { run: RunId(r), .. } if r == run.0 + 41),
        "{err}"
    );
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrichments"), 0);
    assert_eq!(count(&fixture, "SELECT COUNT(*) FROM enrich_attempts"), 0);
}

#[test]
fn a_fallback_enrichment_is_stored_marked_and_ends_pending() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[SpanOutcome {
        span_hash: hashes[0].clone(),
        run_id: run,
        chain: None,
        attempts: vec![crate::support::attempt(1, AttemptOutcome::Failure)],
        stored: Stored::Enriched(Box::new(EnrichmentRow::fallback_empty())),
    }])
    .expect("write");
    assert_eq!(db.pending_count().expect("count"), 0);
    let view = llmc_view_lenient(&fixture, &hashes[0]);
    assert_eq!(
        view,
        (
            None,
            None,
            "[]".to_owned(),
            Some("enrich:fallback_to_empty".to_owned())
        )
    );
    let stored = db
        .enrichment_by_hash(&hashes[0])
        .expect("read")
        .expect("row");
    assert!(stored.enrichment.is_fallback());
    assert!(stored.enrichment.enrichment.inputs.is_empty());
}

/// summary, tags, inputs and content_type_source as LLMC sees them, for rows with empty fields.
fn llmc_view_lenient(
    fixture: &Fixture,
    span_hash: &str,
) -> (Option<String>, Option<String>, String, Option<String>) {
    fixture
        .raw()
        .query_row(
            "SELECT summary, tags, inputs, content_type_source FROM enrichments WHERE span_hash = ?1",
            [span_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("row")
}

#[test]
fn the_attempt_history_of_a_span_spans_runs_in_order() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db();
    let run1 = db.start_run("fp").expect("run");
    db.write_batch(&[failed(&hashes[0], run1)]).expect("run 1");
    let run2 = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&hashes[0], run2, "ok")])
        .expect("run 2");
    let history = db.attempts_for_span(&hashes[0]).expect("history");
    let summary: Vec<(RunId, u32, AttemptOutcome)> = history
        .iter()
        .map(|e| (e.run_id, e.attempt.attempt, e.attempt.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            (run1, 1, AttemptOutcome::Failure),
            (run2, 1, AttemptOutcome::Failure),
            (run2, 2, AttemptOutcome::Success),
        ]
    );
    assert_eq!(
        history[2].attempt,
        crate::support::attempt(2, AttemptOutcome::Success)
    );
    assert!(history.iter().all(|e| e.span_hash == hashes[0]));
}

#[test]
fn runs_record_their_start_end_and_status_and_count_what_they_committed() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("a.py", "python", &python_lines(6));
    let mut db = fixture.db();
    assert_eq!(db.last_run().expect("none"), None);
    let first = db.start_run("config-a").expect("run");
    let second = db.start_run("config-b").expect("run");
    assert!(second > first);
    db.write_batch(&[
        enriched(&hashes[0], second, "a"),
        enriched(&hashes[1], second, "b"),
        failed(&hashes[2], second),
        SpanOutcome {
            stored: Stored::Enriched(Box::new(EnrichmentRow::fallback_empty())),
            ..enriched(&hashes[3], second, "fallback")
        },
        enriched(&hashes[4], first, "the other run's"),
        enriched("sha256:gone", second, "a span re-indexed away"),
    ])
    .expect("write");
    // A batch that fails (here: its run is unknown) stores nothing and counts nothing.
    db.write_batch(&[
        enriched(&hashes[5], second, "lost"),
        enriched(&hashes[5], RunId(999), "lost"),
    ])
    .expect_err("an unknown run fails the batch");
    let open = db.run(second).expect("read").expect("run");
    assert_eq!(
        (open.status, open.counts.succeeded, open.counts.failed),
        (RunStatus::Running, 2, 2),
        "counted as committed, before the run ends"
    );

    let counts = db
        .finish_run(second, 1, RunStatus::Interrupted)
        .expect("finish");
    let expected = RunCounts {
        attempted: 4,
        succeeded: 2,
        failed: 2,
        skipped: 1,
    };
    assert_eq!(counts, expected);
    let run = db.last_run().expect("read").expect("run");
    assert_eq!(run.id, second);
    assert_eq!(run.config_fingerprint, "config-b");
    assert_eq!(run.status, RunStatus::Interrupted);
    assert_eq!(run.counts, expected);
    assert!(run.finished_at_ms.expect("finished") >= run.started_at_ms);
    let open = db.run(first).expect("read").expect("run");
    assert_eq!(
        (open.status, open.finished_at_ms, open.counts.succeeded),
        (RunStatus::Running, None, 1)
    );

    let err = db
        .finish_run(RunId(999), 0, RunStatus::Completed)
        .expect_err("unknown");
    assert!(
        matches!(
            err,
            DbError::UnknownRun {
                run: RunId(999),
                ..
            }
        ),
        "{err}"
    );
}
