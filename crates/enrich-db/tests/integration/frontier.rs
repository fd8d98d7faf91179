//! Pending frontiers: a run's pages start after the enriched prefix of each lane, and every
//! change that could make a span in that prefix pending again, by whoever writes, voids them.

use enrich_db::{Db, FrontierLane, WorkOrderKey};
use rusqlite::Connection;

use crate::support::{Fixture, python_lines};

const IDS: FrontierLane = FrontierLane::SpanId;

fn at(span_id: i64) -> Option<WorkOrderKey> {
    Some(WorkOrderKey { weight: 0, span_id })
}

/// Enriches spans by id, as LLMC's `store_enrichment` does.
fn enrich(raw: &Connection, ids: std::ops::RangeInclusive<i64>) {
    raw.execute(
        "INSERT OR REPLACE INTO enrichments (span_hash, summary, model, schema_ver)
         SELECT span_hash, 'done', 'm', 'enrichment.v1' FROM spans WHERE id BETWEEN ?1 AND ?2",
        (ids.start(), ids.end()),
    )
    .expect("enrich");
}

fn hash_of(raw: &Connection, id: i64) -> String {
    raw.query_row("SELECT span_hash FROM spans WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .expect("span")
}

/// Ten spans (ids 1–10), the first six enriched, and the span-id frontier recorded.
fn ten_spans_six_enriched() -> (Fixture, Db) {
    let fixture = Fixture::llmc();
    fixture.index_file("m.py", "python", &python_lines(10));
    enrich(&fixture.raw(), 1..=6);
    let mut db = fixture.db();
    assert_eq!(db.frontier(&IDS).expect("read"), None);
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(6).unwrap());
    (fixture, db)
}

#[test]
fn the_frontier_sits_before_the_first_pending_span_and_follows_the_enrichments() {
    let (fixture, mut db) = ten_spans_six_enriched();
    assert_eq!(db.frontier(&IDS).expect("read"), at(6));
    // Pages from the frontier find every pending span.
    let pending: Vec<i64> = db
        .pending_spans(6, 100)
        .expect("page")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(pending, [7, 8, 9, 10]);
    // Counted from the frontier (it is near the end), as the full count would say.
    assert_eq!(db.pending_count().expect("count"), 4);
    fixture
        .raw()
        .execute_batch("DELETE FROM enrich_frontiers")
        .expect("forget");
    assert_eq!(db.pending_count().expect("count"), 4);
    db.advance_frontier(&IDS).expect("advance");

    enrich(&fixture.raw(), 7..=10);
    // Nothing pending: the frontier is the last span, and a new span comes after it.
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(10).unwrap());
    fixture.index_file("n.py", "python", &python_lines(1).replace("f1", "g1"));
    assert_eq!(db.frontier(&IDS).expect("read"), at(10));
    let after: Vec<i64> = db
        .pending_spans(10, 10)
        .expect("page")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(after, [11]);
}

#[test]
fn deleting_the_enrichment_of_a_span_that_exists_voids_the_frontier() {
    let (fixture, mut db) = ten_spans_six_enriched();
    let raw = fixture.raw();
    let third = hash_of(&raw, 3);
    raw.execute("DELETE FROM enrichments WHERE span_hash = ?1", [&third])
        .expect("delete");
    assert_eq!(db.frontier(&IDS).expect("read"), None);
    assert_eq!(db.pending_count().expect("count"), 5);
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(2).unwrap());
    // Re-keying an enrichment voids it too.
    raw.execute(
        "UPDATE enrichments SET span_hash = ?1 WHERE span_hash = ?2",
        [hash_of(&raw, 8), hash_of(&raw, 1)],
    )
    .expect("re-key");
    assert_eq!(db.frontier(&IDS).expect("read"), None);
}

/// LLMC's indexer replaces a changed span: it deletes the old row (its enrichment goes with it
/// through the foreign key) and inserts the new content as a new row after the others. Nothing
/// in front of the frontier became pending, so the frontier stands.
#[test]
fn llmc_replacing_a_changed_span_keeps_the_frontier() {
    let (fixture, db) = ten_spans_six_enriched();
    let raw = fixture.raw();
    raw.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
    let second = hash_of(&raw, 2);
    raw.execute("DELETE FROM spans WHERE span_hash = ?1", [&second])
        .expect("delete span");
    let enrichments: i64 = raw
        .query_row(
            "SELECT COUNT(*) FROM enrichments WHERE span_hash = ?1",
            [&second],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(enrichments, 0, "the enrichment went with its span");
    fixture.index_file("changed.py", "python", "def changed(): return 2\n");
    assert_eq!(db.frontier(&IDS).expect("read"), at(6));
}

/// SQLite gives a new row the id after the largest one left, so deleting the last spans and
/// inserting one reuses an id at or below a frontier that covered them.
#[test]
fn a_span_inserted_at_or_below_the_frontier_voids_it() {
    let fixture = Fixture::llmc();
    fixture.index_file("m.py", "python", &python_lines(10));
    enrich(&fixture.raw(), 1..=10);
    let mut db = fixture.db();
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(10).unwrap());
    let raw = fixture.raw();
    raw.execute("DELETE FROM spans WHERE id >= 9", [])
        .expect("delete");
    fixture.index_file("new.py", "python", "def brand_new(): pass\n");
    let reused: i64 = raw
        .query_row("SELECT MAX(id) FROM spans", [], |row| row.get(0))
        .expect("id");
    assert_eq!(reused, 9);
    assert_eq!(db.frontier(&IDS).expect("read"), None);
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(8).unwrap());
}

#[test]
fn a_dead_letter_counts_as_done_until_it_is_lifted() {
    let fixture = Fixture::llmc();
    fixture.index_file("m.py", "python", &python_lines(4));
    let raw = fixture.raw();
    enrich(&raw, 1..=2);
    enrich(&raw, 4..=4);
    let mut db = fixture.db();
    // The ledger table exists once enrich opened the index read-write.
    raw.execute(
        "INSERT OR REPLACE INTO enrich_failures (span_hash, consecutive_failures,
            last_failure_kind, last_message, dead_lettered, updated_at_ms)
         SELECT span_hash, 3, 'timeout', 'slow', 1, 0 FROM spans WHERE id = 3",
        [],
    )
    .expect("dead letter");
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(4).unwrap());
    // A failure counted for a span that is not dead-lettered changes nothing.
    raw.execute(
        "INSERT INTO enrich_failures (span_hash, consecutive_failures, last_failure_kind,
            last_message, dead_lettered, updated_at_ms)
         SELECT span_hash, 1, 'timeout', 'slow', 0, 0 FROM spans WHERE id = 1",
        [],
    )
    .expect("failure");
    raw.execute("DELETE FROM enrich_failures WHERE dead_lettered = 0", [])
        .expect("clear");
    assert_eq!(db.frontier(&IDS).expect("read"), at(4));
    // Lifting the dead letter makes span 3 pending again.
    raw.execute(
        "UPDATE enrich_failures SET dead_lettered = 0 WHERE dead_lettered = 1",
        [],
    )
    .expect("lift");
    assert_eq!(db.frontier(&IDS).expect("read"), None);
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(2).unwrap());
}

#[test]
fn weight_frontiers_are_voided_by_a_span_placed_in_front_of_them() {
    let fixture = Fixture::llmc();
    fixture.index_file("src/a.py", "python", &python_lines(3));
    fixture.index_file("docs/b.md", "markdown", "# b\ntext\n");
    let weigh = |path: &str| if path.starts_with("src/") { 2 } else { 8 };
    let mut db = fixture.db();
    db.refresh_work_order("rules", weigh).expect("refresh");
    enrich(&fixture.raw(), 1..=5);
    let first = FrontierLane::Weights(1..=6);
    let low = FrontierLane::Weights(7..=10);
    let last_first = db.advance_frontier(&first).expect("advance");
    assert_eq!(
        last_first,
        WorkOrderKey {
            weight: 2,
            span_id: 3
        }
    );
    db.advance_frontier(&low).expect("advance");
    assert_eq!(db.frontier(&first).expect("read"), Some(last_first));

    // A new docs file lands after the low lane's frontier key (weight 8, larger id): both
    // frontiers stand. A new src file's spans (weight 2, larger ids) come after the first
    // lane's frontier too.
    fixture.index_file("docs/c.md", "markdown", "# c\n");
    db.refresh_work_order("rules", weigh).expect("refresh");
    assert_eq!(db.frontier(&first).expect("read"), Some(last_first));
    assert!(db.frontier(&low).expect("read").is_some());

    // New weights move spans: every frontier is void.
    db.refresh_work_order(
        "rules-2",
        |path: &str| {
            if path.starts_with("docs/") { 1 } else { 9 }
        },
    )
    .expect("refresh");
    assert_eq!(db.frontier(&first).expect("read"), None);
    assert_eq!(db.frontier(&low).expect("read"), None);
}

#[test]
fn a_missing_trigger_voids_frontiers_until_it_is_created_again() {
    let (fixture, mut db) = ten_spans_six_enriched();
    let raw = fixture.raw();
    raw.execute_batch("DROP TRIGGER enrich_epoch_enrichment_deleted")
        .expect("drop");
    assert_eq!(db.frontier(&IDS).expect("read"), None);
    // While it was missing, a deletion went unnoticed: recreating it starts over.
    let second = hash_of(&raw, 2);
    raw.execute("DELETE FROM enrichments WHERE span_hash = ?1", [&second])
        .expect("delete");
    assert_eq!(db.advance_frontier(&IDS).expect("advance"), at(1).unwrap());
    assert_eq!(db.frontier(&IDS).expect("read"), at(1));
}

/// The triggers on LLMC's tables read and write only LLMC's tables: with enrich's tables gone,
/// LLMC's indexer and enricher still write.
#[test]
fn llmc_keeps_writing_when_enrich_s_tables_are_dropped() {
    let (fixture, db) = ten_spans_six_enriched();
    drop(db);
    let raw = fixture.raw();
    let tables: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'enrich_*'")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names");
    assert!(tables.contains(&"enrich_frontiers".to_owned()));
    // `IF EXISTS`: dropping the search table drops its FTS5 shadow tables with it.
    for table in tables {
        raw.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))
            .expect("drop");
    }
    raw.execute(
        "DELETE FROM enrichments WHERE span_hash = ?1",
        [hash_of(&raw, 1)],
    )
    .expect("LLMC deletes an enrichment");
    raw.execute("DELETE FROM spans WHERE id = 10", [])
        .expect("LLMC deletes a span");
    fixture.index_file("again.py", "python", "def again(): pass\n");
    enrich(&raw, 1..=10);
}

#[test]
fn a_read_only_connection_to_an_index_enrich_never_wrote_has_no_frontier() {
    let fixture = Fixture::llmc();
    fixture.index_file("m.py", "python", &python_lines(2));
    let db = Db::open_read_only(&fixture.db_path).expect("open");
    assert_eq!(db.frontier(&IDS).expect("read"), None);
}
