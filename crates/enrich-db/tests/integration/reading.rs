//! Reading enrichments (also ones LLMC wrote), lookups by symbol, stats.

use enrich_db::{DbError, GroupCount, RunCounts, RunStatus, SpanOutcome, Stored};

use crate::support::{Fixture, enriched, enrichment, failed, python_lines};

#[test]
fn rows_written_by_llmc_read_back_leniently() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    // Python's `strftime('%s','now')` text, lists with a non-string item, NULL columns.
    fixture
        .raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary, tags, evidence, model, created_at,
                 schema_ver, inputs, outputs, side_effects, pitfalls)
             VALUES (?1, 'Old summary', 'a,b', '[]', 'qwen2.5:7b', '1733000000',
                 'enrichment.v1', '[\"x\", 3]', NULL, 'null', '[]')",
            [&hashes[0]],
        )
        .expect("llmc row");
    let db = fixture.db();
    let stored = db
        .enrichment_by_hash(&hashes[0])
        .expect("read")
        .expect("row");
    assert_eq!(stored.created_at, Some(1_733_000_000));
    let e = &stored.enrichment;
    assert_eq!(e.enrichment.summary, "Old summary");
    assert_eq!(e.tags, ["a", "b"]);
    assert_eq!(e.enrichment.inputs, ["x", "3"]);
    assert!(
        e.enrichment.outputs.is_empty()
            && e.enrichment.side_effects.is_empty()
            && e.enrichment.pitfalls.is_empty()
    );
    assert_eq!(e.metrics.backend_host, None);
    assert_eq!(db.enrichment_by_hash(&hashes[1]).expect("read"), None);
}

#[test]
fn an_unreadable_list_column_is_reported_with_the_span_and_column() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    fixture
        .raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary, pitfalls) VALUES (?1, 's', '{\"not\": \"a list\"}')",
            [&hashes[0]],
        )
        .expect("bad row");
    let err = fixture
        .db()
        .enrichment_by_hash(&hashes[0])
        .expect_err("bad pitfalls");
    assert!(
        matches!(&err, DbError::BadRow { column: "pitfalls", span_hash, .. } if *span_hash == hashes[0]),
        "{err}"
    );
}

#[test]
fn enrichments_by_symbol_return_every_span_of_the_symbol() {
    let fixture = Fixture::llmc();
    let a = fixture.index_file("a.py", "python", &python_lines(2));
    let b = fixture.index_file("b.py", "python", "def other(): pass\n");
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched(&a[0], run, "in a"),
        enriched(&b[0], run, "in b"),
        enriched(&a[1], run, "second"),
    ])
    .expect("write");
    let found = db.enrichments_by_symbol("name_1").expect("by symbol");
    let summaries: Vec<&str> = found
        .iter()
        .map(|s| s.enrichment.enrichment.summary.as_str())
        .collect();
    assert_eq!(summaries, ["in a", "in b"]);
    assert!(db.enrichments_by_symbol("absent").expect("none").is_empty());
}

#[test]
fn stats_count_everything_and_group_by_model_and_host() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(6));
    let mut db = fixture.db_with_max_failures(2);
    let run = db.start_run("fp").expect("run");
    let mut other_model = enrichment("other");
    other_model.model = "llama3:8b".to_owned();
    other_model.metrics.backend_host = None;
    db.write_batch(&[
        enriched(&hashes[0], run, "a"),
        enriched(&hashes[1], run, "b"),
        SpanOutcome {
            stored: Stored::Enriched(Box::new(other_model)),
            ..enriched(&hashes[2], run, "c")
        },
        failed(&hashes[3], run),
        failed(&hashes[4], run),
    ])
    .expect("run 1");
    let counts = RunCounts {
        attempted: 5,
        succeeded: 3,
        failed: 2,
        skipped: 0,
    };
    assert_eq!(
        db.finish_run(run, 0, RunStatus::Completed).expect("finish"),
        counts,
        "the counts of what the run stored"
    );
    let run2 = db.start_run("fp").expect("run");
    db.write_batch(&[failed(&hashes[4], run2)]).expect("run 2");

    let stats = db.stats().expect("stats");
    assert_eq!(
        (stats.files, stats.spans, stats.enriched, stats.pending),
        (1, 6, 3, 2)
    );
    assert_eq!((stats.failing, stats.dead_lettered), (1, 1));
    let group = |key: Option<&str>, count| GroupCount {
        key: key.map(str::to_owned),
        count,
    };
    assert_eq!(
        stats.by_model,
        [group(Some("qwen3:4b"), 2), group(Some("llama3:8b"), 1)]
    );
    assert_eq!(
        stats.by_backend_host,
        [group(Some("gpu-box:11434"), 2), group(None, 1)]
    );
    let last = stats.last_run.expect("last run");
    assert_eq!((last.id, last.status), (run2, RunStatus::Running));
    assert!(db.quick_check().expect("quick_check").is_empty());
}

#[test]
fn usage_since_sums_the_tokens_of_runs_started_since_then_per_backend() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(3));
    let mut db = fixture.db();
    let old_run = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&hashes[0], old_run, "old")])
        .expect("write");
    // The first run started long ago: a day budget must not count it.
    fixture
        .raw()
        .execute(
            "UPDATE enrich_runs SET started_at_ms = 1000 WHERE id = ?1",
            [old_run.0],
        )
        .expect("backdate");
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched(&hashes[1], run, "a"),
        enriched(&hashes[2], run, "b"),
    ])
    .expect("write");

    let usage = db.usage_since(2000).expect("usage");
    // `enriched` = a failed attempt on backend-1 (no tokens), a success on backend-2.
    let got: Vec<_> = usage
        .iter()
        .map(|u| {
            (
                u.backend.as_str(),
                u.attempts,
                u.prompt_tokens,
                u.output_tokens,
            )
        })
        .collect();
    assert_eq!(got, [("backend-1", 2, 0, 0), ("backend-2", 2, 642, 176)]);
    let all = db.usage_since(0).expect("usage");
    assert_eq!(all[1].prompt_tokens, 963);
    assert!(db.usage_since(i64::MAX).expect("usage").is_empty());
}

#[test]
fn enrich_keeps_its_own_facts_in_llmc_meta_and_leaves_llmcs_keys_alone() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    assert_eq!(db.meta(enrich_db::CIRCUITS_META_KEY).expect("read"), None);
    db.set_meta(enrich_db::CIRCUITS_META_KEY, "[1]")
        .expect("write");
    db.set_meta(enrich_db::CIRCUITS_META_KEY, "[2]")
        .expect("overwrite");
    assert_eq!(
        db.meta(enrich_db::CIRCUITS_META_KEY)
            .expect("read")
            .as_deref(),
        Some("[2]")
    );
    let err = db.set_meta("schema_version", "9").expect_err("LLMC's key");
    assert!(
        matches!(&err, DbError::ForeignMetaKey { key } if key == "schema_version"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "llmc_meta key \"schema_version\" is not enrich's (its keys start with `enrich_`); refusing to write it"
    );
}

#[test]
fn span_at_finds_the_innermost_span_of_a_line_or_says_why_not() {
    use enrich_db::SpanAt;
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("pkg/m.py", "python", &python_lines(3));
    // A class span around all three lines: the one-line spans inside it are innermost.
    fixture
        .raw()
        .execute(
            "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start, byte_end,
                span_hash) VALUES (1, 'K', 'class', 1, 3, 0, 10, 'sha256:outer')",
            [],
        )
        .expect("outer span");
    // A copy of it (same content: hash, size, language) that owns no span, and a blank file.
    let size = python_lines(3).len();
    for (path, hash, size) in [("vendor/m.py", "h", size), ("blank.py", "e", 0)] {
        fixture
            .raw()
            .execute(
                "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, 'python', ?2, ?3, 1.0)",
                (path, hash, size),
            )
            .expect("file row");
    }
    let db = fixture.db();
    let copy = |i: usize| SpanAt::SameContent {
        span_hash: hashes[i].clone(),
        owner: "pkg/m.py".to_owned(),
    };
    for (path, line, want) in [
        ("pkg/m.py", 2, SpanAt::Found(hashes[1].clone())),
        ("pkg/m.py", 3, SpanAt::Found(hashes[2].clone())),
        ("pkg/m.py", 9, SpanAt::NoSpan { first: 1, last: 3 }),
        ("pkg/other.py", 1, SpanAt::NoFile),
        ("m.py", 1, SpanAt::NoFile),
        ("vendor/m.py", 2, copy(1)),
        ("vendor/m.py", 3, copy(2)),
        ("vendor/m.py", 9, SpanAt::NoSpan { first: 1, last: 3 }),
        ("blank.py", 1, SpanAt::NoSpans),
    ] {
        assert_eq!(
            db.span_at(path, line).expect("lookup"),
            want,
            "{path}:{line}"
        );
    }
}

#[test]
fn span_by_id_reads_a_span_or_none_when_it_is_gone() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let db = fixture.db();
    let first = db.span_by_hash(&hashes[1]).expect("read").expect("span");
    let again = db.span_by_id(first.id).expect("read").expect("span");
    assert_eq!(again, first);
    assert_eq!(db.span_by_id(first.id + 100).expect("read"), None);
}
