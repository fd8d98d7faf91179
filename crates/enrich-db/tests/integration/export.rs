//! Streaming every enriched span for an export: the row's fields, `since` by the time stored
//! (through its index), the path filter, and what an export leaves out.

use enrich_db::{Db, DbError, ExportFilter, ExportRow};

use crate::support::{Fixture, enriched, python_lines};

/// Every row `filter` selects, in the order they come.
fn export(db: &Db, filter: &ExportFilter<'_>) -> Vec<ExportRow> {
    let mut rows = Vec::new();
    let count = db
        .for_each_export_row(filter, |row| {
            rows.push(row);
            Ok::<_, DbError>(())
        })
        .expect("export");
    assert_eq!(count, rows.len() as u64);
    rows
}

#[test]
fn each_enriched_span_comes_with_its_enrichment_quality_and_provenance() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("pkg/m.py", "python", &python_lines(3));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched(&hashes[2], run, "Third."),
        enriched(&hashes[0], run, "First."),
    ])
    .expect("write");
    // An enrichment whose span is gone is not exported.
    fixture
        .raw()
        .execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO enrichments (span_hash, summary, created_at) VALUES ('sha256:gone', 'x', 1);",
        )
        .expect("orphan");

    let rows = export(&db, &ExportFilter::default());
    let symbols: Vec<&str> = rows.iter().map(|r| r.span.symbol.as_str()).collect();
    assert_eq!(symbols, ["name_1", "name_3"], "span order, enriched only");
    let row = &rows[0];
    assert_eq!(row.span.span_hash, hashes[0]);
    assert_eq!(row.span.file_path, "pkg/m.py");
    assert_eq!(row.span.lang, "python");
    assert_eq!((row.span.start_line, row.span.end_line), (1, 1));
    let expected = db
        .enrichment_by_hash(&hashes[0])
        .expect("read")
        .expect("row");
    assert_eq!(row.stored, expected, "the same decoding as `enrich show`");
    assert_eq!(row.provenance.model, "qwen3:4b");
    assert_eq!(row.provenance.created_at, expected.created_at);
    assert!(row.provenance.created_at.is_some());
    assert_eq!(row.provenance.quality_score, Some(0.9));
}

#[test]
fn since_selects_by_the_time_stored_in_that_order_through_the_index() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(4));
    let db = fixture.db();
    let conn = fixture.raw();
    for (hash, created_at) in [(&hashes[0], 300), (&hashes[1], 100), (&hashes[2], 200)] {
        conn.execute(
            "INSERT INTO enrichments (span_hash, summary, model, created_at) VALUES (?1, 's', 'm', ?2)",
            (hash, created_at),
        )
        .expect("row");
    }
    // No time: never selected by `since`; LLMC-style text seconds still compare as numbers.
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary, created_at) VALUES (?1, 's', NULL)",
        [&hashes[3]],
    )
    .expect("row");

    let since = |secs| {
        export(
            &db,
            &ExportFilter {
                since: Some(secs),
                ..ExportFilter::default()
            },
        )
        .into_iter()
        .map(|r| r.provenance.created_at)
        .collect::<Vec<_>>()
    };
    assert_eq!(since(150), [Some(200), Some(300)], "oldest first");
    assert_eq!(since(200), [Some(200), Some(300)], "at the time counts");
    assert!(since(301).is_empty());
    assert_eq!(export(&db, &ExportFilter::default()).len(), 4);

    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT e.span_hash FROM enrichments AS e \
             JOIN spans AS s ON s.span_hash = e.span_hash JOIN files AS f ON f.id = s.file_id \
             WHERE e.created_at >= 150 ORDER BY e.created_at, e.rowid",
            [],
            |row| row.get(3),
        )
        .expect("plan");
    assert!(
        plan.contains("enrich_enrichments_created_at") && plan.contains('>'),
        "a range of the created_at index, not a scan: {plan}"
    );
}

#[test]
fn the_path_filter_is_asked_about_each_file_path() {
    let fixture = Fixture::llmc();
    let a = fixture.index_file("src/a.py", "python", &python_lines(2));
    let b = fixture.index_file("tests/b.py", "python", "def other(): pass\n");
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched(&a[0], run, "A."),
        enriched(&a[1], run, "A2."),
        enriched(&b[0], run, "B."),
    ])
    .expect("write");
    let only_src = |path: &str| path.starts_with("src/");
    let rows = export(
        &db,
        &ExportFilter {
            path: Some(&only_src),
            ..ExportFilter::default()
        },
    );
    let paths: Vec<&str> = rows.iter().map(|r| r.span.file_path.as_str()).collect();
    assert_eq!(paths, ["src/a.py", "src/a.py"]);
}

#[test]
fn the_callers_error_stops_the_export() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(3));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched(&hashes[0], run, "A."),
        enriched(&hashes[1], run, "B."),
    ])
    .expect("write");

    #[derive(Debug)]
    enum Stop {
        Full,
        Db,
    }
    impl From<DbError> for Stop {
        fn from(_: DbError) -> Self {
            Self::Db
        }
    }
    let mut seen = 0;
    let result = db.for_each_export_row(&ExportFilter::default(), |_| {
        seen += 1;
        Err(Stop::Full)
    });
    assert!(matches!(result, Err(Stop::Full)));
    assert_eq!(seen, 1, "nothing is read after the first error");
}

#[test]
fn a_read_only_llmc_index_exports_without_enrichs_tables() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    fixture
        .raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary, model, created_at) \
             VALUES (?1, 'LLMC wrote it', 'llmc-model', '1733000000')",
            [&hashes[0]],
        )
        .expect("llmc row");
    let db = Db::open_read_only(&fixture.db_path).expect("read-only");
    let rows = export(
        &db,
        &ExportFilter {
            since: Some(1_700_000_000),
            ..ExportFilter::default()
        },
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].stored.enrichment.enrichment.summary,
        "LLMC wrote it"
    );
    assert_eq!(rows[0].provenance.created_at, Some(1_733_000_000));
    assert_eq!(rows[0].provenance.quality_score, None);
}
