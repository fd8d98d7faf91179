//! Pending selection: order, keyset paging, exclusions, the count.

use enrich_db::Db;

use crate::support::{Fixture, enriched, failed, python_lines};

/// Every pending span, read in pages of `page` through the keyset cursor.
fn all_pending(db: &Db, page: usize) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut cursor = 0;
    loop {
        let batch = db.pending_spans(cursor, page).expect("pending");
        assert!(batch.len() <= page);
        let Some(last) = batch.last() else { break };
        cursor = last.id;
        hashes.extend(batch.into_iter().map(|s| s.span_hash));
    }
    hashes
}

#[test]
fn pending_spans_come_in_span_id_order_through_every_page_size() {
    let fixture = Fixture::llmc();
    let mut expected = fixture.index_file("b.py", "python", &python_lines(4));
    expected.extend(fixture.index_file("a.md", "markdown", "# A\ntext\n"));
    let db = fixture.db();
    for page in [1, 2, 3, 100] {
        assert_eq!(all_pending(&db, page), expected, "page size {page}");
    }
}

#[test]
fn a_pending_span_carries_what_the_pipeline_needs() {
    let fixture = Fixture::llmc();
    let source = python_lines(2);
    let hashes = fixture.index_file("src/m.py", "python", &source);
    let db = fixture.db();
    let span = db.pending_spans(0, 1).expect("pending").remove(0);
    assert_eq!(span.span_hash, hashes[0]);
    assert_eq!(span.file_path, "src/m.py");
    assert_eq!(span.lang, "python");
    assert_eq!(
        (span.symbol.as_str(), span.kind.as_str()),
        ("name_1", "function")
    );
    assert_eq!((span.start_line, span.end_line), (1, 1));
    let first_line_len = source.lines().next().expect("line").len() as u64 + 1;
    assert_eq!((span.byte_start, span.byte_end), (0, first_line_len));
    assert_eq!(span.slice_type.as_deref(), Some("code"));
    assert_eq!(span.slice_language.as_deref(), Some("python"));
    assert_eq!(span.classifier_confidence, Some(0.9));
    assert_eq!(span.file_mtime, 1_700_000_000.5);
    assert_eq!(db.span_by_hash(&hashes[0]).expect("by hash"), Some(span));
}

#[test]
fn enriched_and_dead_lettered_spans_are_not_pending_and_the_count_follows() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(6));
    // An enrichment LLMC wrote itself, before enrich ever ran.
    fixture
        .raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary, created_at) VALUES (?1, 'by llmc', 1)",
            [&hashes[0]],
        )
        .expect("llmc enrichment");
    // An orphan enrichment must not count: Python's sqlite3 leaves foreign keys off, so LLMC
    // deleting a span can leave its enrichment behind.
    fixture
        .raw()
        .execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO enrichments (span_hash, summary) VALUES ('sha256:gone', 'orphan');",
        )
        .expect("orphan");
    let mut db = fixture.db_with_max_failures(1);
    assert_eq!(db.pending_count().expect("count"), 5);

    let run = db.start_run("fp").expect("run");
    let report = db
        .write_batch(&[enriched(&hashes[2], run, "two"), failed(&hashes[4], run)])
        .expect("write");
    assert_eq!(report.dead_lettered, vec![hashes[4].clone()]);

    let expected: Vec<String> = [1, 3, 5].iter().map(|&i| hashes[i].clone()).collect();
    assert_eq!(all_pending(&db, 2), expected);
    assert_eq!(db.pending_count().expect("count"), 3);
    let stats = db.stats().expect("stats");
    assert_eq!(
        (
            stats.spans,
            stats.enriched,
            stats.pending,
            stats.dead_lettered
        ),
        (6, 2, 3, 1)
    );

    assert_eq!(db.requeue(&hashes[4]).expect("requeue"), 1);
    assert_eq!(db.pending_count().expect("count"), 4);
    assert!(all_pending(&db, 10).contains(&hashes[4]));
}

#[test]
fn a_span_enriched_behind_the_cursor_does_not_disturb_the_next_page() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(5));
    let mut db = fixture.db();
    let first = db.pending_spans(0, 2).expect("page 1");
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&first[0].span_hash, run, "s")])
        .expect("write");
    let second = db.pending_spans(first[1].id, 2).expect("page 2");
    let ids: Vec<&str> = second.iter().map(|s| s.span_hash.as_str()).collect();
    assert_eq!(ids, [hashes[2].as_str(), hashes[3].as_str()]);
}
