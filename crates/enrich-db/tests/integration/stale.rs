//! Stale enrichments by reason, against what the configuration would produce now: each reason
//! detected alone, counted, and paged by keyset.

use enrich_db::{
    Db, Expectations, ExpectedBackend, Provenance, SliceRoute, SpanOutcome, StaleReason, Stored,
};
use enrich_types::ENRICHMENT_SCHEMA_VERSION;

use crate::support::{Fixture, enriched, enriched_with, provenance, python_lines};

fn backend(chain: &str, name: &str, model: &str, digest: Option<&str>) -> ExpectedBackend {
    ExpectedBackend {
        chain: chain.to_owned(),
        backend: name.to_owned(),
        model: model.to_owned(),
        digest: digest.map(str::to_owned),
        options_fingerprint: "options-1".to_owned(),
    }
}

/// What the tests' configuration produces now: `code` spans go to chain `default`, whose
/// backend serves `qwen3:4b` with digest `d-1`; `docs` spans go to chain `docs`.
pub(crate) fn current() -> Expectations {
    Expectations {
        prompt_fingerprint: "prompt-1".to_owned(),
        schema_version: ENRICHMENT_SCHEMA_VERSION.to_owned(),
        min_quality: Some(0.5),
        default_chain: "default".to_owned(),
        routes: vec![
            SliceRoute {
                slice_type: Some("code".to_owned()),
                chain: "default".to_owned(),
            },
            SliceRoute {
                slice_type: Some("docs".to_owned()),
                chain: "docs".to_owned(),
            },
        ],
        backends: vec![
            backend("default", "backend-2", "qwen3:4b", Some("d-1")),
            backend("docs", "docs-1", "phi3", None),
        ],
    }
}

/// One span per case, each stored as the case says; returns the hashes in span order.
pub(crate) fn stored_cases(fixture: &Fixture, db: &mut Db) -> Vec<String> {
    let hashes = fixture.index_file("m.py", "python", &python_lines(10));
    let run = db.start_run("fp").expect("run");
    let made = |change: fn(&mut Provenance)| {
        let mut p = provenance(run);
        change(&mut p);
        p
    };
    let mut low = enriched_with(&hashes[6], provenance(run));
    if let Stored::Enriched(row) = &mut low.stored {
        row.quality.as_mut().expect("a score").score = 0.2;
    }
    let outcomes: Vec<SpanOutcome> = vec![
        enriched_with(&hashes[0], provenance(run)),
        enriched_with(
            &hashes[1],
            made(|p| p.prompt_fingerprint = "prompt-0".into()),
        ),
        enriched_with(&hashes[2], made(|p| p.model = "qwen2.5:7b".into())),
        enriched_with(&hashes[3], made(|p| p.model_digest = Some("d-0".into()))),
        enriched_with(
            &hashes[4],
            made(|p| p.schema_version = "enrichment.v0".into()),
        ),
        enriched_with(
            &hashes[5],
            made(|p| p.options_fingerprint = "options-0".into()),
        ),
        low,
        enriched(&hashes[7], run, "Written before provenance."),
        // Routed to `docs` now (see below), whose backend serves another model.
        enriched_with(&hashes[8], provenance(run)),
        // A digest the server no longer reports: unknown now, so not a change.
        enriched_with(&hashes[9], made(|p| p.model_digest = None)),
    ];
    db.write_batch(&outcomes).expect("write");
    fixture
        .raw()
        .execute(
            "UPDATE spans SET slice_type = 'docs' WHERE span_hash = ?1",
            [&hashes[8]],
        )
        .expect("reclassify");
    hashes
}

#[test]
fn each_reason_is_detected_alone_and_counted() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    let hashes = stored_cases(&fixture, &mut db);
    let expected = current();
    let every = db
        .stale_spans(&expected, &StaleReason::ALL, 0, 100)
        .expect("stale");
    let found: Vec<(usize, Vec<StaleReason>)> = every
        .iter()
        .map(|s| {
            let index = hashes
                .iter()
                .position(|h| *h == s.span_hash)
                .expect("known");
            (index, s.reasons.clone())
        })
        .collect();
    use StaleReason::*;
    assert_eq!(
        found,
        [
            (1, vec![Prompt]),
            (2, vec![Model]),
            (3, vec![Digest]),
            (4, vec![Schema]),
            (5, vec![Options]),
            (6, vec![Quality]),
            (7, vec![Unknown]),
            (8, vec![Model]),
        ]
    );
    let counts = db.stale_counts(&expected).expect("counts");
    assert_eq!(counts.enriched, 10);
    assert_eq!(counts.stale, 7, "every reason but unknown");
    for reason in StaleReason::ALL {
        let want = if reason == Model { 2 } else { 1 };
        assert_eq!(counts.of(reason), want, "{reason:?}");
    }

    // A backend whose digest is unknown now never makes a digest stale.
    let mut unknown_digest = current();
    unknown_digest.backends[0].digest = None;
    assert_eq!(db.stale_counts(&unknown_digest).unwrap().digest, 0);
    // No minimum: no quality reason.
    let no_minimum = Expectations {
        min_quality: None,
        ..current()
    };
    assert_eq!(db.stale_counts(&no_minimum).unwrap().quality, 0);
    // A second backend in the chain with the old options makes them current again.
    let mut both = current();
    both.backends.push(ExpectedBackend {
        options_fingerprint: "options-0".to_owned(),
        ..backend("default", "backend-3", "qwen3:4b", Some("d-1"))
    });
    assert_eq!(db.stale_counts(&both).unwrap().options, 0);
    // A slice type routed twice counts each span once: the first route wins.
    let mut twice = current();
    twice.routes.push(SliceRoute {
        slice_type: Some("code".to_owned()),
        chain: "docs".to_owned(),
    });
    assert_eq!(db.stale_counts(&twice).unwrap(), counts);
}

#[test]
fn stale_spans_come_in_keyset_pages_of_the_reasons_asked_for() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    let hashes = stored_cases(&fixture, &mut db);
    let expected = current();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = db
            .stale_spans(&expected, StaleReason::OUTDATED, after, 3)
            .expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.span_id;
        paged.extend(page.into_iter().map(|s| s.span_hash));
    }
    let want: Vec<String> = [1, 2, 3, 4, 5, 6, 8].map(|i| hashes[i].clone()).to_vec();
    assert_eq!(
        paged, want,
        "every outdated span once, in order, without unknown"
    );

    let prompt_only: Vec<String> = db
        .stale_spans(&expected, &[StaleReason::Prompt], 0, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.span_hash)
        .collect();
    assert_eq!(prompt_only, [hashes[1].clone()]);
    assert!(db.stale_spans(&expected, &[], 0, 100).unwrap().is_empty());
}

/// A read-only connection can ask too: the expectations go into its `TEMP` tables.
#[test]
fn a_read_only_connection_counts_stale_enrichments() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    stored_cases(&fixture, &mut db);
    drop(db);
    let before = fixture.bytes();
    let reader = Db::open_read_only(&fixture.db_path).expect("read-only");
    assert_eq!(reader.stale_counts(&current()).unwrap().stale, 7);
    let types = reader.slice_types().unwrap();
    assert_eq!(types, [Some("code".to_owned()), Some("docs".to_owned())]);
    drop(reader);
    assert_eq!(fixture.bytes(), before, "nothing written");
}
