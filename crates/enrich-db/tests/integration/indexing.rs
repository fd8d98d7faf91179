//! Writing the index: files and spans replaced by content hash, removed files, orphans.

use enrich_db::{
    Db, DbError, FileRecord, IndexWriteReport, OpenMode, OpenOptions, OrphanCounts, StoredFile,
};

use enrich_types::span_hash;

use crate::support::{Fixture, enriched, file_record};

/// A file record for `path` whose spans are named by their content; each span is one line.
fn record(path: &str, contents: &[&str]) -> FileRecord {
    let spans: Vec<(&str, &str)> = contents.iter().map(|c| (*c, *c)).collect();
    file_record(path, "python", &spans)
}

/// `(id, path, symbol, start_line)` of every span, in id order.
fn rows(fixture: &Fixture) -> Vec<(i64, String, String, u32)> {
    let conn = fixture.raw();
    let mut stmt = conn
        .prepare(
            "SELECT s.id, f.path, s.symbol, s.start_line FROM spans s
             JOIN files f ON f.id = s.file_id ORDER BY s.id",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn hash(content: &str) -> String {
    span_hash("python", content.as_bytes())
}

fn row(id: i64, path: &str, symbol: &str, line: u32) -> (i64, String, String, u32) {
    (id, path.to_owned(), symbol.to_owned(), line)
}

#[test]
fn new_files_are_inserted_and_listed_in_path_order() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    let report = db
        .write_index_batch(&[record("b.py", &["f", "g"]), record("a.py", &["h"])], &[])
        .expect("write");
    assert_eq!(
        report,
        IndexWriteReport {
            files_added: 2,
            spans_added: 3,
            ..IndexWriteReport::default()
        }
    );
    let files = db.indexed_files().expect("files");
    let expected = [
        StoredFile {
            file: record("a.py", &["h"]).file,
            spans: 1,
            shared: 0,
        },
        StoredFile {
            file: record("b.py", &["f", "g"]).file,
            spans: 2,
            shared: 0,
        },
    ];
    assert_eq!(files, expected);
    assert_eq!(
        rows(&fixture),
        [
            row(1, "b.py", "f", 1),
            row(2, "b.py", "g", 2),
            row(3, "a.py", "h", 1)
        ]
    );
}

#[test]
fn a_replaced_file_keeps_the_rows_of_unchanged_content() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(&[record("a.py", &["f", "g", "h"])], &[])
        .expect("first");
    // `g` changed to `g2` and a line was inserted before `h`.
    let report = db
        .write_index_batch(&[record("a.py", &["f", "g2", "new", "h"])], &[])
        .expect("second");
    assert_eq!(
        report,
        IndexWriteReport {
            files_updated: 1,
            spans_added: 2,
            spans_kept: 2,
            spans_removed: 1,
            ..IndexWriteReport::default()
        }
    );
    assert_eq!(
        rows(&fixture),
        [
            row(1, "a.py", "f", 1),
            row(3, "a.py", "h", 4),
            row(4, "a.py", "g2", 2),
            row(5, "a.py", "new", 3),
        ]
    );
}

#[test]
fn writing_the_same_batch_twice_leaves_the_same_rows() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    let batch = [record("a.py", &["f", "g"]), record("b.py", &["h"])];
    db.write_index_batch(&batch, &[]).expect("first");
    let first = rows(&fixture);
    let report = db.write_index_batch(&batch, &[]).expect("replay");
    assert_eq!(rows(&fixture), first);
    assert_eq!((report.spans_kept, report.spans_added), (3, 0));
}

#[test]
fn content_that_moved_to_another_file_keeps_its_row() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(&[record("a.py", &["f", "g"])], &[])
        .expect("first");
    // `b.py` now holds `g` and is written before `a.py` drops it.
    let report = db
        .write_index_batch(&[record("b.py", &["g"]), record("a.py", &["f"])], &[])
        .expect("second");
    assert_eq!((report.spans_moved, report.spans_removed), (1, 0));
    assert_eq!(
        rows(&fixture),
        [row(1, "a.py", "f", 1), row(2, "b.py", "g", 1)]
    );
}

#[test]
fn content_several_files_hold_belongs_to_the_smallest_path_in_any_order() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(&[record("b.py", &["g"])], &[])
        .expect("b first");
    // A smaller path takes the row over, keeping its id.
    let report = db
        .write_index_batch(&[record("a.py", &["g"])], &[])
        .expect("a");
    assert_eq!((report.spans_moved, report.spans_shared), (1, 0));
    assert_eq!(rows(&fixture), [row(1, "a.py", "g", 1)]);
    // A larger path written again shares it, and its unchanged row is not written.
    let report = db
        .write_index_batch(&[record("b.py", &["g"])], &[])
        .expect("b again");
    assert_eq!(
        report,
        IndexWriteReport {
            files_unchanged: 1,
            spans_shared: 1,
            ..IndexWriteReport::default()
        }
    );
    assert_eq!(rows(&fixture), [row(1, "a.py", "g", 1)]);
    // The owner removed in the same batch: the next path takes it.
    let report = db
        .write_index_batch(&[record("b.py", &["g"])], &["a.py".to_owned()])
        .expect("a removed");
    assert_eq!((report.spans_moved, report.files_removed), (1, 1));
    assert_eq!(rows(&fixture), [row(1, "b.py", "g", 1)]);
}

/// How many spans each file shares, as [`Db::indexed_files`] lists them.
fn shared(db: &Db) -> Vec<(String, u64)> {
    let files = db.indexed_files().expect("files");
    files.into_iter().map(|f| (f.file.path, f.shared)).collect()
}

#[test]
fn when_the_owner_lets_go_of_shared_content_the_next_path_holding_it_takes_it_over() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    // `g` is in three files; `c.py` has a span of its own before it, so its `g` is on line 2.
    db.write_index_batch(
        &[
            record("a.py", &["f", "g"]),
            record("b.py", &["g"]),
            record("c.py", &["h", "g"]),
        ],
        &[],
    )
    .expect("first");
    assert_eq!(
        shared(&db),
        [
            ("a.py".to_owned(), 0),
            ("b.py".to_owned(), 1),
            ("c.py".to_owned(), 1)
        ]
    );

    // The owner's new content lacks `g`: the next path takes the row over, with its id, in a
    // batch it is not part of.
    let report = db
        .write_index_batch(&[record("a.py", &["f"])], &[])
        .expect("a drops g");
    assert_eq!(
        report,
        IndexWriteReport {
            files_updated: 1,
            spans_kept: 1,
            spans_moved: 1,
            ..IndexWriteReport::default()
        }
    );
    assert_eq!(
        rows(&fixture),
        [
            row(1, "a.py", "f", 1),
            row(2, "b.py", "g", 1),
            row(3, "c.py", "h", 1)
        ]
    );

    // The owner removed: the next one takes it over at the place its split recorded.
    let report = db
        .write_index_batch(&[], &["b.py".to_owned()])
        .expect("b removed");
    assert_eq!(
        report,
        IndexWriteReport {
            files_removed: 1,
            spans_moved: 1,
            ..IndexWriteReport::default()
        }
    );
    assert_eq!(
        rows(&fixture),
        [
            row(1, "a.py", "f", 1),
            row(2, "c.py", "g", 2),
            row(3, "c.py", "h", 1)
        ]
    );
    assert_eq!(
        shared(&db),
        [("a.py".to_owned(), 0), ("c.py".to_owned(), 0)]
    );

    // A smaller path takes the row over; the file it came from is recorded as sharing it and
    // gets it back when the smaller one goes.
    db.write_index_batch(&[record("a.py", &["f", "g"])], &[])
        .expect("a holds g again");
    assert_eq!(
        shared(&db),
        [("a.py".to_owned(), 0), ("c.py".to_owned(), 1)]
    );
    db.write_index_batch(&[], &["a.py".to_owned()])
        .expect("a removed");
    assert_eq!(
        rows(&fixture),
        [row(2, "c.py", "g", 2), row(3, "c.py", "h", 1)]
    );
}

#[test]
fn a_file_that_shared_content_and_loses_it_in_the_same_batch_does_not_take_it_over() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(
        &[
            record("a.py", &["g"]),
            record("b.py", &["g", "h"]),
            record("c.py", &["g"]),
            record("d.py", &["g"]),
        ],
        &[],
    )
    .expect("first");
    // `b.py` drops `g` and `c.py` goes in the batch that removes the owner: `d.py` takes it.
    let report = db
        .write_index_batch(
            &[record("b.py", &["h"])],
            &["a.py".to_owned(), "c.py".to_owned()],
        )
        .expect("second");
    assert_eq!(
        (report.spans_moved, report.spans_removed),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(
        rows(&fixture),
        [row(1, "d.py", "g", 1), row(2, "b.py", "h", 1)]
    );

    // A file LLMC re-indexed since (another content hash) is not taken for a holder: the span
    // goes, and the stale record with it.
    db.write_index_batch(&[record("e.py", &["g"])], &[])
        .expect("e shares g");
    fixture
        .raw()
        .execute(
            "UPDATE files SET file_hash = 'llmc' WHERE path = 'e.py'",
            [],
        )
        .expect("llmc rewrote e.py");
    let report = db
        .write_index_batch(&[], &["d.py".to_owned()])
        .expect("d removed");
    assert_eq!(
        (report.spans_moved, report.spans_removed),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(rows(&fixture), [row(2, "b.py", "h", 1)]);
    let records: i64 = fixture
        .raw()
        .query_row("SELECT count(*) FROM enrich_shared_spans", [], |r| r.get(0))
        .expect("count");
    assert_eq!(records, 0);
}

#[test]
fn a_hash_listed_twice_in_a_file_is_stored_once() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    let report = db
        .write_index_batch(&[record("a.py", &["f", "f"])], &[])
        .expect("write");
    assert_eq!((report.spans_added, report.spans_duplicate), (1, 1));
    assert_eq!(rows(&fixture), [row(1, "a.py", "f", 1)]);
}

#[test]
fn removed_files_lose_their_spans_and_description() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(&[record("a.py", &["f", "g"]), record("b.py", &["h"])], &[])
        .expect("first");
    fixture
        .raw()
        .execute(
            "INSERT INTO file_descriptions (file_id, file_path, description) VALUES (1, 'a.py', 'x')",
            [],
        )
        .expect("description");
    let report = db
        .write_index_batch(&[], &["a.py".to_owned(), "never-indexed.py".to_owned()])
        .expect("remove");
    assert_eq!((report.files_removed, report.spans_removed), (1, 2));
    assert_eq!(rows(&fixture), [row(3, "b.py", "h", 1)]);
    let descriptions: i64 = fixture
        .raw()
        .query_row("SELECT count(*) FROM file_descriptions", [], |r| r.get(0))
        .expect("count");
    assert_eq!(descriptions, 0);
}

#[test]
fn enrichments_of_deleted_spans_wait_for_the_orphan_cleanup() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(&[record("a.py", &["f", "g"])], &[])
        .expect("first");
    let run = db.start_run("test").expect("run");
    db.write_batch(&[
        enriched(&hash("f"), run, "F"),
        enriched(&hash("g"), run, "G"),
    ])
    .expect("enrich");
    fixture
        .raw()
        .execute(
            "INSERT INTO embeddings (span_hash, vec) VALUES (?1, x'00')",
            [hash("g")],
        )
        .expect("embedding");

    // `g` leaves `a.py`: its enrichment and embedding stay, orphaned.
    db.write_index_batch(&[record("a.py", &["f"])], &[])
        .expect("second");
    assert_eq!(
        db.orphan_counts().expect("count"),
        OrphanCounts {
            enrichments: 1,
            embeddings: 1
        }
    );
    // It comes back in another file before the cleanup: attached again.
    db.write_index_batch(&[record("b.py", &["g"])], &[])
        .expect("third");
    assert_eq!(db.orphan_counts().expect("count"), OrphanCounts::default());
    let stored = db
        .enrichment_by_hash(&hash("g"))
        .expect("read")
        .expect("kept");
    assert_eq!(stored.enrichment.enrichment.summary, "G");

    // Gone for good: the cleanup deletes what the cascade would have.
    db.write_index_batch(&[], &["b.py".to_owned()])
        .expect("remove");
    assert_eq!(
        db.remove_orphans().expect("cleanup"),
        OrphanCounts {
            enrichments: 1,
            embeddings: 1
        }
    );
    assert_eq!(db.enrichment_by_hash(&hash("g")).expect("read"), None);
    assert!(db.enrichment_by_hash(&hash("f")).expect("read").is_some());
    assert_eq!(db.orphan_counts().expect("count"), OrphanCounts::default());
}

#[test]
fn a_read_only_index_refuses_index_writes() {
    let fixture = Fixture::llmc();
    drop(fixture.db());
    let options = OpenOptions {
        mode: OpenMode::ReadOnly,
        ..OpenOptions::default()
    };
    let mut db = Db::open_with(&fixture.db_path, &options).expect("read-only");
    let err = db
        .write_index_batch(&[record("a.py", &["f"])], &[])
        .expect_err("refused");
    assert!(matches!(err, DbError::ReadOnly { .. }), "{err}");
    let err = db.remove_orphans().expect_err("refused");
    assert!(matches!(err, DbError::ReadOnly { .. }), "{err}");
    assert!(db.indexed_files().expect("files").is_empty());
}
