//! The work order: file weights and span order refreshed from the index, pages in (weight, span
//! id) order, and a refresh that follows what LLMC's indexer changes.

use std::ops::RangeInclusive;

use enrich_db::{Db, WORK_ORDER_RULES_KEY, WorkOrderKey, WorkOrderRefresh};

use crate::support::{Fixture, enriched, failed};

/// The weighing rule of these tests: by top directory.
fn by_directory(path: &str) -> u8 {
    match path.split('/').next() {
        Some("src") => 1,
        Some("tests") => 6,
        Some("docs") => 8,
        Some("vendor") => 10,
        _ => 5,
    }
}

/// Every pending span with a weight in `weights`, read in pages of `page`: (weight, hash).
fn all_by_weight(db: &Db, weights: RangeInclusive<u8>, page: usize) -> Vec<(u8, String)> {
    let mut spans = Vec::new();
    let mut cursor = WorkOrderKey::START;
    loop {
        let batch = db
            .pending_by_weight(weights.clone(), cursor, page)
            .expect("pending by weight");
        assert!(batch.len() <= page);
        let Some(last) = batch.last() else { break };
        assert!(last.key() > cursor, "the cursor moves forward");
        cursor = last.key();
        spans.extend(batch.into_iter().map(|s| (s.weight, s.span.span_hash)));
    }
    spans
}

/// `count` lines of Python, one function per line, named after `tag` so that every file's spans
/// have their own hashes.
fn code(tag: &str, count: usize) -> String {
    (1..=count)
        .map(|i| format!("def {tag}_{i}(): return {i}\n"))
        .collect()
}

/// (weight, hash) pairs of `hashes`, all of one weight.
fn weighed(weight: u8, hashes: &[String]) -> Vec<(u8, String)> {
    hashes.iter().map(|h| (weight, h.clone())).collect()
}

#[test]
fn pages_follow_weight_then_span_id_through_every_page_size() {
    let fixture = Fixture::llmc();
    // Inserted so that span ids alone would mix every weight.
    let docs = fixture.index_file("docs/guide.md", "markdown", "# Guide\ntext\n");
    let src_b = fixture.index_file("src/b.py", "python", &code("b_src", 3));
    let vendor = fixture.index_file("vendor/dep.py", "python", &code("dep_vendor", 2));
    let tests = fixture.index_file("tests/test_b.py", "python", &code("test_b_tests", 2));
    let other = fixture.index_file("setup.py", "python", &code("setup_setup_py", 1));
    let src_a = fixture.index_file("src/a.py", "python", &code("a_src", 2));
    let mut db = fixture.db_with_max_failures(1);
    db.refresh_work_order("by-directory", by_directory)
        .expect("refresh");

    let first_queue: Vec<(u8, String)> = [
        weighed(1, &src_b),
        weighed(1, &src_a),
        weighed(5, &other),
        weighed(6, &tests),
    ]
    .concat();
    let low_queue: Vec<(u8, String)> = [weighed(8, &docs), weighed(10, &vendor)].concat();
    for page in [1, 2, 3, 100] {
        assert_eq!(all_by_weight(&db, 1..=6, page), first_queue, "page {page}");
        assert_eq!(all_by_weight(&db, 7..=10, page), low_queue, "page {page}");
        assert_eq!(
            all_by_weight(&db, 1..=10, page),
            [first_queue.clone(), low_queue.clone()].concat(),
            "page {page}"
        );
    }

    // A cursor inside a weight resumes there; enriched and dead-lettered spans drop out.
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&src_b[1], run, "b2"), failed(&tests[0], run)])
        .expect("write");
    let after_first = WorkOrderKey {
        weight: 1,
        span_id: db
            .span_by_hash(&src_b[0])
            .expect("span")
            .expect("exists")
            .id,
    };
    let rest: Vec<String> = db
        .pending_by_weight(1..=6, after_first, 100)
        .expect("page")
        .into_iter()
        .map(|s| s.span.span_hash)
        .collect();
    assert_eq!(
        rest,
        [&src_b[2], &src_a[0], &src_a[1], &other[0], &tests[1]].map(String::clone)
    );
}

#[test]
fn a_refresh_follows_the_indexer_and_the_rules() {
    let fixture = Fixture::llmc();
    let src = fixture.index_file("src/a.py", "python", &code("a_src", 3));
    let docs = fixture.index_file("docs/a.md", "markdown", "# A\ntext\n");
    let mut db = fixture.db();
    let order = |db: &Db| all_by_weight(db, 1..=10, 100);

    let first = db.refresh_work_order("v1", by_directory).expect("refresh");
    assert_eq!(
        first,
        WorkOrderRefresh {
            rules_changed: true,
            files_weighed: 2,
            files_changed: 2,
            spans_placed: 5,
            spans_removed: 0,
        }
    );
    assert_eq!(
        db.meta(WORK_ORDER_RULES_KEY).expect("meta").as_deref(),
        Some("v1")
    );
    let again = db.refresh_work_order("v1", by_directory).expect("refresh");
    assert_eq!(again, WorkOrderRefresh::default(), "nothing changed");

    // LLMC indexes a new file: only it is weighed.
    let vendor = fixture.index_file("vendor/v.py", "python", &code("v_vendor", 1));
    let added = db.refresh_work_order("v1", by_directory).expect("refresh");
    assert_eq!(
        (added.files_weighed, added.spans_placed, added.rules_changed),
        (1, 1, false)
    );
    assert_eq!(
        order(&db),
        [weighed(1, &src), weighed(8, &docs), weighed(10, &vendor)].concat()
    );

    // New rules: every file is weighed again, only the changed ones are written.
    let docs_first = |path: &str| {
        if path.starts_with("docs/") {
            1
        } else {
            by_directory(path)
        }
    };
    let reweighed = db.refresh_work_order("v2", docs_first).expect("refresh");
    assert_eq!(
        (
            reweighed.rules_changed,
            reweighed.files_weighed,
            reweighed.files_changed,
            reweighed.spans_placed
        ),
        (true, 3, 1, 2)
    );
    assert_eq!(
        order(&db),
        [weighed(1, &src), weighed(1, &docs), weighed(10, &vendor)].concat(),
        "same weight: span id order"
    );

    // Before the next refresh LLMC deletes the vendored file and a span of docs/a.md, moves a
    // span of src/a.py to docs/a.md, and indexes a new file, which gets the vendored file's id
    // and the deleted span's id back (SQLite reuses the highest ids).
    let raw = fixture.raw();
    raw.execute_batch(
        "DELETE FROM spans WHERE file_id = (SELECT id FROM files WHERE path = 'vendor/v.py');
         DELETE FROM files WHERE path = 'vendor/v.py';",
    )
    .expect("delete a file");
    raw.execute("DELETE FROM spans WHERE span_hash = ?1", [&docs[1]])
        .expect("delete a span");
    raw.execute(
        "UPDATE spans SET file_id = (SELECT id FROM files WHERE path = 'docs/a.md')
         WHERE span_hash = ?1",
        [&src[2]],
    )
    .expect("move a span");
    let tests = fixture.index_file("tests/t.py", "python", &code("t_tests", 1));
    let reused: (i64, i64) = raw
        .query_row(
            "SELECT s.id, f.id FROM spans AS s JOIN files AS f ON f.id = s.file_id
             WHERE s.span_hash = ?1",
            [&tests[0]],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the new span");
    assert_eq!(reused, (5, 3), "the ids were reused");
    let changed = db.refresh_work_order("v2", docs_first).expect("refresh");
    assert_eq!(
        (
            changed.files_weighed,
            changed.files_changed,
            changed.spans_placed,
            changed.spans_removed
        ),
        (1, 1, 2, 1)
    );
    assert_eq!(
        order(&db),
        [weighed(1, &src), weighed(1, &docs[..1]), weighed(6, &tests),].concat(),
        "the moved span weighs what its new file weighs; reused ids weigh anew"
    );
}

#[test]
fn spans_indexed_after_the_refresh_wait_for_the_next_one() {
    let fixture = Fixture::llmc();
    let src = fixture.index_file("src/a.py", "python", &code("a_src", 1));
    let mut db = fixture.db();
    db.refresh_work_order("v1", by_directory).expect("refresh");
    let late = fixture.index_file("src/b.py", "python", &code("b_src", 1));
    assert_eq!(all_by_weight(&db, 1..=10, 10), weighed(1, &src));
    db.refresh_work_order("v1", by_directory).expect("refresh");
    assert_eq!(
        all_by_weight(&db, 1..=10, 10),
        [weighed(1, &src), weighed(1, &late)].concat()
    );
}

#[test]
fn a_read_only_connection_cannot_refresh() {
    let fixture = Fixture::llmc();
    fixture.index_file("src/a.py", "python", &code("a_src", 1));
    let mut db = Db::open_read_only(&fixture.db_path).expect("read-only");
    let err = db
        .refresh_work_order("v1", by_directory)
        .expect_err("read-only");
    assert!(err.to_string().contains("refresh the work order"), "{err}");
}
