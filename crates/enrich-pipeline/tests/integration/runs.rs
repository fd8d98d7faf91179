//! Whole runs: every pending span enriched with the right rows, re-runs, limits, batches.

use std::sync::Arc;

use enrich_db::RunStatus;
use enrich_pipeline::{RunControl, RunEnd, config_fingerprint};
use enrich_types::AttemptOutcome;

use crate::support::{Fixture, Scripted, config, pipeline, wall_ms};

#[tokio::test(start_paused = true)]
async fn a_full_run_enriches_every_pending_span_with_the_right_rows() {
    let fixture = Fixture::new();
    let mut hashes = fixture.index_lines("src/a.py", 3);
    hashes.extend(fixture.index_lines("lib/b.py", 4));
    let gpu = Arc::new(Scripted::new("gpu"));
    let config = config(&[&gpu]);
    let (pipeline, _) = pipeline(&fixture, &config, &[&gpu], |s| {
        s.batch_size = 3;
        s.concurrency = 2;
    });

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!(
        (
            summary.total_pending,
            summary.attempted,
            summary.succeeded,
            summary.failed
        ),
        (7, 7, 7, 0)
    );
    assert_eq!((summary.end, summary.batches), (RunEnd::Exhausted, 3));
    assert_eq!(summary.success_rate(), 1.0);
    assert_eq!(gpu.calls(), 7);
    assert_eq!(fixture.pending(), 0);

    let db = fixture.db();
    for hash in &hashes {
        let span = db.span_by_hash(hash).unwrap().expect("span");
        let line = span.start_line;
        let stored = db.enrichment_by_hash(hash).unwrap().expect("enrichment");
        let e = &stored.enrichment.enrichment;
        assert_eq!(
            e.summary,
            format!(
                "Returns a constant from {} lines {line}-{line}.",
                span.file_path
            )
        );
        assert_eq!(e.outputs, ["an int"]);
        assert_eq!(e.pitfalls, ["none known"]);
        assert!(e.inputs.is_empty() && e.side_effects.is_empty());
        assert_eq!(e.usage_snippet.as_deref(), Some("f()"));
        let evidence: Vec<(&str, [u32; 2])> = e
            .evidence
            .iter()
            .map(|ev| (ev.field.as_str(), ev.lines))
            .collect();
        // The validator adds evidence covering the span for filled fields that cite none.
        assert_eq!(
            evidence,
            [
                ("summary_120w", [line, line]),
                ("outputs", [line, line]),
                ("pitfalls", [line, line]),
                ("usage_snippet", [line, line]),
            ]
        );
        let row = &stored.enrichment;
        assert_eq!(
            (row.model.as_str(), row.schema_ver.as_str()),
            ("gpu-model:1b", "enrichment.v1")
        );
        assert!(!row.is_fallback());
        let m = &row.metrics;
        assert_eq!((m.eval_count, m.prompt_eval_count), (Some(42), Some(120)));
        assert_eq!(
            (m.eval_duration_ns, m.total_duration_ns),
            (Some(2_000_000_000), Some(3_000_000_000))
        );
        assert_eq!(m.tokens_per_second, Some(21.0));
        assert_eq!(m.backend_host.as_deref(), Some("scripted://gpu"));

        let attempts = db.attempts_for_span(hash).unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].run_id, summary.run_id);
        let a = &attempts[0].attempt;
        assert_eq!(
            (a.attempt, a.backend.as_str(), a.outcome),
            (1, "gpu", AttemptOutcome::Success)
        );
        assert!(db.failure_entry(hash).unwrap().is_none());
    }

    let run = db.run(summary.run_id).unwrap().expect("run row");
    assert_eq!(run.status, RunStatus::Completed);
    assert!(run.finished_at_ms.is_some());
    assert_eq!(run.config_fingerprint, config_fingerprint(&config));
    assert_eq!(
        (
            run.counts.attempted,
            run.counts.succeeded,
            run.counts.failed,
            run.counts.skipped
        ),
        (7, 7, 0, 0)
    );
}

/// The source files a run kept open are closed when it ends: nothing stays open between the
/// runs of `enrich watch`, and a file deleted meanwhile frees its space.
#[cfg(target_os = "linux")]
#[tokio::test(start_paused = true)]
async fn a_run_leaves_no_source_file_open() {
    let fixture = Fixture::new();
    fixture.index_lines("src/a.py", 3);
    let gpu = Arc::new(Scripted::new("gpu"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |_| {});
    let repo = fixture.repo.canonicalize().expect("canonical repo");
    let open_in_repo = || {
        std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| {
                target.starts_with(&repo) && target.extension().is_some_and(|e| e == "py")
            })
            .count()
    };

    let plan = pipeline.plan(10).expect("plan");
    assert_eq!(plan.spans.len(), 3);
    assert_eq!(
        open_in_repo(),
        0,
        "a plan reads the sources and closes them"
    );
    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!(summary.succeeded, 3);
    assert_eq!(open_in_repo(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_second_run_finds_nothing_to_do() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 4);
    let gpu = Arc::new(Scripted::new("gpu"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |_| {});
    pipeline.run(&RunControl::new()).await.expect("first run");
    let enrichments = fixture.count("enrichments");

    let again = pipeline.run(&RunControl::new()).await.expect("second run");

    assert_eq!(
        (again.total_pending, again.attempted, again.batches),
        (0, 0, 0)
    );
    assert_eq!(again.end, RunEnd::Exhausted);
    assert_eq!(gpu.calls(), 4);
    assert_eq!(fixture.count("enrichments"), enrichments);
    assert_eq!(fixture.count("enrich_attempts"), 4);
    let run = fixture.db().run(again.run_id).unwrap().expect("run row");
    assert_eq!(
        (run.status, run.counts.attempted),
        (RunStatus::Completed, 0)
    );
}

/// A run records where pending spans begin; the next starts there, and still finds a span an
/// outside writer made pending again in front of it, and a span indexed since.
#[tokio::test(start_paused = true)]
async fn the_next_run_starts_at_the_frontier_and_still_finds_what_became_pending() {
    let fixture = Fixture::new();
    let hashes = fixture.index_lines("a.py", 6);
    let gpu = Arc::new(Scripted::new("gpu"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |_| {});
    pipeline.run(&RunControl::new()).await.expect("first run");
    let frontier = fixture
        .db()
        .frontier(&enrich_db::FrontierLane::SpanId)
        .expect("read");
    assert_eq!(frontier.map(|f| f.span_id), Some(6));

    fixture
        .raw()
        .execute("DELETE FROM enrichments WHERE span_hash = ?1", [&hashes[1]])
        .expect("an outside writer deletes an enrichment");
    let new = fixture.index_lines("b.py", 1);
    let again = pipeline.run(&RunControl::new()).await.expect("second run");

    assert_eq!((again.total_pending, again.attempted), (2, 2));
    let asked: Vec<String> = gpu.requests()[6..]
        .iter()
        .map(|request| request.span.span_hash.to_string())
        .collect();
    assert_eq!(asked, [hashes[1].clone(), new[0].clone()]);
    assert_eq!(fixture.pending(), 0);
    let frontier = fixture
        .db()
        .frontier(&enrich_db::FrontierLane::SpanId)
        .expect("read");
    assert_eq!(frontier.map(|f| f.span_id), Some(7));
}

#[tokio::test(start_paused = true)]
async fn process_batch_returns_each_result_and_stops_at_its_limit() {
    let fixture = Fixture::new();
    let hashes = fixture.index_lines("a.py", 5);
    let gpu = Arc::new(Scripted::new("gpu"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| s.batch_size = 2);
    let control = RunControl::new();

    let first = pipeline
        .process_batch(3, &control)
        .await
        .expect("first batch");
    assert_eq!(
        (
            first.summary.total_pending,
            first.summary.attempted,
            first.summary.succeeded
        ),
        (5, 3, 3)
    );
    assert_eq!(first.summary.end, RunEnd::LimitReached);
    assert_eq!(first.success_rate(), 1.0);
    let mut done: Vec<&str> = first.results.iter().map(|r| &*r.span.span_hash).collect();
    done.sort_unstable();
    let mut expected: Vec<&str> = hashes[..3].iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(done, expected, "spans are taken in index order");
    for result in &first.results {
        assert!(result.success(), "{result:?}");
        let route = result.route.as_ref().expect("route");
        assert_eq!(&*route.chain_name, "default");
        assert_eq!(result.attempts.len(), 1);
        let summary = &result.enrichment.as_ref().expect("enrichment").summary;
        assert!(
            summary.starts_with("Returns a constant from a.py"),
            "{summary}"
        );
        assert_eq!(result.error, None);
    }
    let run = fixture
        .db()
        .run(first.summary.run_id)
        .unwrap()
        .expect("run row");
    assert_eq!(run.status, RunStatus::Interrupted);

    // Exactly the rest: the run ends because nothing is left, not because of the limit.
    let second = pipeline
        .process_batch(2, &control)
        .await
        .expect("second batch");
    assert_eq!(
        (
            second.summary.total_pending,
            second.summary.attempted,
            second.summary.end
        ),
        (2, 2, RunEnd::Exhausted)
    );

    let empty = pipeline
        .process_batch(2, &control)
        .await
        .expect("third batch");
    assert_eq!((empty.summary.attempted, empty.results.len()), (0, 0));
    assert_eq!(empty.success_rate(), 0.0);
    assert_eq!(gpu.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_limit_setting_caps_a_run() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 4);
    let gpu = Arc::new(Scripted::new("gpu"));
    let (pipeline, _) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |s| s.limit = Some(3));

    let summary = pipeline.run(&RunControl::new()).await.expect("run");

    assert_eq!((summary.attempted, summary.end), (3, RunEnd::LimitReached));
    assert_eq!(fixture.pending(), 1);
}

/// A run's span leases live twice the longest a span's cascade may take (every attempt at the
/// backend's own `timeout_seconds` plus the longest backoff), at least 10 minutes: computed from
/// the configured timeout, also behind the in-flight cap every backend is wrapped in, whose
/// queueing needs no deadline of its own.
#[tokio::test(start_paused = true)]
async fn a_run_s_leases_live_as_long_as_its_backends_timeouts_say() {
    // 3 attempts per span; the longest backoff: 30 s (the default).
    for (timeout, expected_secs) in [(2.0, 600), (200.0, 2 * 3 * (200 + 30))] {
        let fixture = Fixture::new();
        fixture.index_lines("a.py", 3);
        let model = Arc::new(
            Scripted::new("model")
                .timeout_seconds(timeout)
                .delay(std::time::Duration::from_secs(1)),
        );
        let (pipeline, _) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
            s.cascade = s.cascade.clone().with_max_attempts_per_span(3);
        });
        let run = tokio::spawn(async move { pipeline.run(&RunControl::new()).await });
        let raw = fixture.raw();
        let life_ms = loop {
            let expires: Option<i64> = raw
                .query_row("SELECT MAX(expires_at_ms) FROM enrich_leases", [], |row| {
                    row.get(0)
                })
                .expect("read leases");
            if let Some(expires) = expires {
                break expires - wall_ms();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let expected_ms = expected_secs * 1000;
        assert!(
            (expected_ms - 10_000..=expected_ms).contains(&life_ms),
            "timeout {timeout}s: leases live {life_ms} ms, not about {expected_secs} s"
        );
        let summary = run.await.expect("run task").expect("run");
        assert_eq!(summary.succeeded, 3);
        assert_eq!(fixture.count("enrich_leases"), 0, "released at the end");
    }
}

/// Each run records the fingerprint of what its prompts share: a template's SHA-256 (short
/// hex) while the template is the same, another one when it changes, and the built-in
/// prompt's own.
#[tokio::test(start_paused = true)]
async fn a_run_records_its_prompt_fingerprint_which_follows_the_template() {
    let fixture = Fixture::new();
    let gpu = Arc::new(Scripted::new("gpu"));
    let first = "Summarise {path} lines {line_start}-{line_end}:\n{snippet}\nAs {{json}}.";
    let second = "Describe {path}:\n{snippet}";
    let mut fingerprints = Vec::new();
    for (i, template) in [Some(first), Some(first), Some(second), None]
        .into_iter()
        .enumerate()
    {
        fixture.index_lines(&format!("f{i}.py"), 1);
        let mut settings = config(&[&gpu]);
        settings.prompt.template = template.map(str::to_owned);
        let (pipeline, _) = pipeline(&fixture, &settings, &[&gpu], |_| {});
        let summary = pipeline.run(&RunControl::new()).await.expect("run");
        assert_eq!(summary.succeeded, 1);
        let run = fixture.db().run(summary.run_id).unwrap().expect("run row");
        let fingerprint = run.prompt_fingerprint.expect("a prompt fingerprint");
        let built = enrich_pipeline::PromptBuilder::new(&settings.prompt).expect("prompts");
        assert_eq!(fingerprint, built.fingerprint());
        fingerprints.push(fingerprint);
    }
    // sha256 of the template's text, as `printf %s "$TEMPLATE" | sha256sum` prints it.
    let expected = &enrich_types::file_hash(first.as_bytes())[..12];
    assert_eq!(fingerprints[0], expected);
    assert_eq!(
        fingerprints[0], fingerprints[1],
        "same template, same fingerprint"
    );
    assert_ne!(fingerprints[1], fingerprints[2], "another template");
    assert_ne!(fingerprints[2], fingerprints[3], "the built-in prompt");
    assert_ne!(fingerprints[0], fingerprints[3]);
    assert!(fingerprints.iter().all(|f| f.len() == 12));
}

/// Every enrichment a run stores carries its provenance: the backend that answered, its model,
/// the digest asked once per run (not per span), the chain, the run's prompt fingerprint, the
/// schema version, the options fingerprint, enrich's version and the tokens.
#[tokio::test(start_paused = true)]
async fn each_enrichment_records_how_it_was_made() {
    let fixture = Fixture::new();
    let hashes = fixture.index_lines("src/a.py", 4);
    let small = Scripted::new("small")
        .always(crate::support::Reply::Fail(
            enrich_types::FailureKind::ServerError,
        ))
        .options(serde_json::json!({"temperature": 0}));
    let small = Arc::new(small);
    let gpu = Arc::new(Scripted::new("gpu").digest("sha256:feed"));
    let config = config(&[&small, &gpu]);
    let (pipeline, _) = pipeline(&fixture, &config, &[&small, &gpu], |s| s.batch_size = 2);
    pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!((small.digests_asked(), gpu.digests_asked()), (1, 1));

    let db = fixture.db();
    let run = db.last_run().unwrap().expect("a run");
    for hash in &hashes {
        let made = db.provenance_of(hash).unwrap().expect("provenance");
        assert_eq!(made.run_id, run.id);
        assert_eq!(
            (
                made.backend.as_str(),
                made.provider.as_str(),
                made.model.as_str()
            ),
            ("gpu", gpu.spec().provider.as_str(), "gpu-model:1b")
        );
        assert_eq!(made.model_digest.as_deref(), Some("sha256:feed"));
        assert_eq!(made.chain, "default");
        assert_eq!(
            Some(&made.prompt_fingerprint),
            run.prompt_fingerprint.as_ref()
        );
        assert_eq!(made.schema_version, enrich_types::ENRICHMENT_SCHEMA_VERSION);
        assert_eq!(made.options_fingerprint, gpu.spec().options_fingerprint());
        assert_ne!(made.options_fingerprint, small.spec().options_fingerprint());
        assert_eq!(made.enrich_version, enrich_pipeline::ENRICH_VERSION);
        assert_eq!(
            (made.prompt_tokens, made.output_tokens),
            (Some(120), Some(42))
        );
        assert!(made.created_at_ms > 0);
    }
}
