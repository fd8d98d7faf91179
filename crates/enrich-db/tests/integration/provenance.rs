//! Provenance: stored with each enrichment in the same transaction, replaced and removed with
//! it, unknown for rows enrich did not write (or wrote before provenance existed).

use enrich_db::{ENRICH_SCHEMA_VERSION, EnrichmentRow, Expectations, SpanOutcome, Stored};

use crate::support::{Fixture, enriched, enriched_with, failed, provenance, python_lines};

fn rows(fixture: &Fixture) -> i64 {
    fixture
        .raw()
        .query_row("SELECT COUNT(*) FROM enrich_provenance", [], |r| r.get(0))
        .expect("count")
}

#[test]
fn provenance_is_stored_with_the_enrichment_and_follows_it() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let made = provenance(run);
    db.write_batch(&[enriched_with(&hashes[0], made.clone())])
        .expect("write");

    // A plain SQL read of the real file, tied to the enrichment's own created_at.
    let (backend, digest, tied): (String, String, bool) = fixture
        .raw()
        .query_row(
            "SELECT p.backend, p.model_digest, p.enrichment_created_at = e.created_at
             FROM enrich_provenance AS p JOIN enrichments AS e USING (span_hash)
             WHERE span_hash = ?1",
            [&hashes[0]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("a provenance row");
    assert_eq!(
        (backend.as_str(), digest.as_str(), tied),
        ("backend-2", "d-1", true)
    );
    assert_eq!(db.provenance_of(&hashes[0]).unwrap(), Some(made.clone()));
    let stored = db.enrichment_by_hash(&hashes[0]).unwrap().unwrap();
    assert_eq!(stored.enrichment.provenance, Some(made.clone()));
    // An enrichment written without provenance has none.
    db.write_batch(&[enriched(&hashes[1], run, "Plain.")])
        .expect("write");
    assert_eq!(db.provenance_of(&hashes[1]).unwrap(), None);

    // A failed run of the span keeps the enrichment and its provenance.
    let later = db.start_run("fp").expect("run");
    db.write_batch(&[failed(&hashes[0], later)]).expect("write");
    assert_eq!(db.provenance_of(&hashes[0]).unwrap(), Some(made.clone()));

    // A new enrichment replaces it.
    let renewed = enrich_db::Provenance {
        model: "qwen3:8b".to_owned(),
        ..provenance(later)
    };
    db.write_batch(&[enriched_with(&hashes[0], renewed.clone())])
        .expect("write");
    assert_eq!(db.provenance_of(&hashes[0]).unwrap(), Some(renewed));
    assert_eq!(rows(&fixture), 1);

    // An empty fallback was made by no model: no provenance, even when one is handed over.
    let fallback = SpanOutcome {
        stored: Stored::Enriched(Box::new(EnrichmentRow {
            provenance: Some(provenance(later)),
            ..EnrichmentRow::fallback_empty()
        })),
        ..enriched(&hashes[0], later, "unused")
    };
    db.write_batch(&[fallback]).expect("write");
    assert_eq!(db.provenance_of(&hashes[0]).unwrap(), None);
    assert_eq!(rows(&fixture), 0);
}

/// An enrichment another program wrote over (LLMC's own pipeline stamps a new `created_at`)
/// is no longer described by enrich's row: unknown, never a guess.
#[test]
fn an_enrichment_written_over_by_another_program_has_unknown_provenance() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[enriched_with(&hashes[0], provenance(run))])
        .expect("write");
    fixture
        .raw()
        .execute(
            "UPDATE enrichments SET summary = 'LLMC', model = 'llmc-model',
                 created_at = created_at - 60 WHERE span_hash = ?1",
            [&hashes[0]],
        )
        .expect("LLMC writes over it");
    assert_eq!(db.provenance_of(&hashes[0]).unwrap(), None);
    let stored = db.enrichment_by_hash(&hashes[0]).unwrap().unwrap();
    assert_eq!(stored.enrichment.provenance, None);
    let counts = db.stale_counts(&Expectations::default()).unwrap();
    assert_eq!((counts.enriched, counts.unknown), (1, 1));
}

/// An index enrich left at schema 9 (enrichments, no provenance table) is migrated to the
/// current schema by the next open; its enrichments have unknown provenance, not a guessed one.
#[test]
fn enrichments_stored_before_provenance_are_unknown_after_the_migration() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched(&hashes[0], run, "Old one."),
        enriched(&hashes[1], run, "Old two."),
    ])
    .expect("write");
    drop(db);
    fixture
        .raw()
        .execute_batch(
            "DROP TABLE enrich_provenance;
             DROP TABLE enrich_search;
             DROP TABLE enrich_batches;
             DROP TABLE enrich_batch_requests;
             UPDATE llmc_meta SET value = '9' WHERE key = 'enrich_schema_version';",
        )
        .expect("back to version 9");

    let db = fixture.db();
    let version: String = fixture
        .raw()
        .query_row(
            "SELECT value FROM llmc_meta WHERE key = 'enrich_schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, ENRICH_SCHEMA_VERSION.to_string());
    assert_eq!(rows(&fixture), 0);
    for hash in &hashes {
        assert_eq!(db.provenance_of(hash).unwrap(), None);
    }
    let counts = db.stale_counts(&Expectations::default()).unwrap();
    assert_eq!((counts.enriched, counts.unknown, counts.stale), (2, 2, 0));
}

/// Removing the enrichments of vanished spans removes their provenance (and quality) rows.
#[test]
fn provenance_goes_with_an_orphaned_enrichment() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(2));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[
        enriched_with(&hashes[0], provenance(run)),
        enriched_with(&hashes[1], provenance(run)),
    ])
    .expect("write");
    // As LLMC deletes spans: foreign keys off, so the enrichment is left behind.
    let llmc = fixture.raw();
    llmc.pragma_update(None, "foreign_keys", false).unwrap();
    llmc.execute("DELETE FROM spans WHERE span_hash = ?1", [&hashes[0]])
        .expect("the span goes");
    let removed = db.remove_orphans().expect("remove");
    assert_eq!(removed.enrichments, 1);
    let left: Vec<String> = fixture
        .raw()
        .prepare("SELECT span_hash FROM enrich_provenance UNION ALL SELECT span_hash FROM enrich_quality")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, [hashes[1].clone(), hashes[1].clone()]);
}

/// The newest digest recorded for each backend's model.
#[test]
fn the_latest_digest_of_each_backend_is_the_newest_recorded() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(3));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let at = |ms: u64, digest: Option<&str>| enrich_db::Provenance {
        created_at_ms: ms,
        model_digest: digest.map(str::to_owned),
        ..provenance(run)
    };
    db.write_batch(&[
        enriched_with(&hashes[0], at(2, Some("new"))),
        enriched_with(&hashes[1], at(1, Some("old"))),
        enriched_with(&hashes[2], at(3, None)),
    ])
    .expect("write");
    let seen = db.latest_digests().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (
            seen[0].backend.as_str(),
            seen[0].model.as_str(),
            seen[0].digest.as_str()
        ),
        ("backend-2", "qwen3:4b", "new")
    );
}
