//! Refresh selection and renewal writes: which stored enrichments a filter selects (count,
//! pages, claims), and that a renewal replaces a row only when it succeeds.

use std::time::Duration;

use enrich_db::{
    Db, Lease, LeaseHolder, RefreshClause, RefreshFilter, SpanOutcome, Stored, WorkOrderKey,
};
use enrich_types::{AttemptOutcome, FailureKind, LedgerKind};

use crate::support::{Fixture, attempt, enriched, enrichment, failed, python_lines};

/// An index of `src/a.py` (4 spans) and `docs/b.py` (2 spans), each span enriched, with:
/// models `small` (spans 0, 1, 4) and `big` (2, 3, 5); spans 0 and 2 stored 40 days ago,
/// span 4 with no time; quality scores 0.3 (0, 3), 0.8 (1, 2, 5) and none (4).
fn enriched_index() -> (Fixture, Vec<String>) {
    let fx = Fixture::llmc();
    let mut hashes = fx.index_file("src/a.py", "python", &python_lines(4));
    hashes.extend(fx.index_file("docs/b.py", "python", "def g1(): pass\ndef g2(): pass\n"));
    let mut db = fx.db();
    let run = db.start_run("fp").expect("run");
    let outcomes: Vec<SpanOutcome> = hashes
        .iter()
        .map(|hash| enriched(hash, run, "Adds one."))
        .collect();
    db.write_batch(&outcomes).expect("write");
    db.finish_run(run, 0, enrich_db::RunStatus::Completed)
        .expect("finish");
    let conn = fx.raw();
    for (i, hash) in hashes.iter().enumerate() {
        let model = if [0, 1, 4].contains(&i) {
            "small"
        } else {
            "big"
        };
        conn.execute(
            "UPDATE enrichments SET model = ?2 WHERE span_hash = ?1",
            (hash, model),
        )
        .expect("model");
        match i {
            0 | 3 => conn.execute(
                "UPDATE enrich_quality SET score = 0.3 WHERE span_hash = ?1",
                [hash],
            ),
            4 => conn.execute("DELETE FROM enrich_quality WHERE span_hash = ?1", [hash]),
            _ => conn.execute(
                "UPDATE enrich_quality SET score = 0.8 WHERE span_hash = ?1",
                [hash],
            ),
        }
        .expect("quality");
    }
    conn.execute(
        "UPDATE enrichments SET created_at = CAST(strftime('%s', 'now') AS INTEGER) - 40 * 86400 \
         WHERE span_hash IN (?1, ?2)",
        (&hashes[0], &hashes[2]),
    )
    .expect("age");
    conn.execute(
        "UPDATE enrichments SET created_at = NULL WHERE span_hash = ?1",
        [&hashes[4]],
    )
    .expect("no time");
    (fx, hashes)
}

fn filter(flags: &[&str]) -> RefreshFilter {
    let clauses = flags
        .iter()
        .map(|flag| flag.parse::<RefreshClause>().expect(flag))
        .collect();
    RefreshFilter::new(clauses).expect("a filter")
}

/// The indexes (into `hashes`) of the spans `flags` select, from a page read without a lease;
/// the count must agree.
fn selected(db: &mut Db, hashes: &[String], flags: &[&str]) -> Vec<usize> {
    let filter = filter(flags);
    let page = db.refresh_spans(&filter, None, 0, 100).expect("page");
    assert!(page.iter().all(|span| span.renewal), "marked as renewals");
    let found: Vec<usize> = page
        .iter()
        .map(|span| {
            hashes
                .iter()
                .position(|h| *h == span.span_hash)
                .expect("known")
        })
        .collect();
    assert_eq!(
        db.refresh_count(&filter).expect("count"),
        found.len() as u64,
        "{flags:?}"
    );
    found
}

#[test]
fn each_selector_selects_the_enrichments_it_names() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db();
    let mut check = |flags: &[&str], want: &[usize]| {
        assert_eq!(selected(&mut db, &hashes, flags), want, "{flags:?}");
    };
    check(&["model=small"], &[0, 1, 4]);
    check(&["model=big"], &[2, 3, 5]);
    check(&["model=none"], &[]);
    // Stored 40 days ago; the span without a time is not taken to be old.
    check(&["older-than=30d"], &[0, 2]);
    check(&["older-than=5w"], &[0, 2]);
    check(&["older-than=900h"], &[0, 2]);
    check(&["older-than=90m"], &[0, 2]);
    check(&["older-than=6w"], &[]);
    // Globs as every `--path` reads them: `*` stays in a directory, a glob without `/`
    // matches file names at any depth.
    check(&["path=src/*"], &[0, 1, 2, 3]);
    check(&["path=src*"], &[]);
    check(&["path=b.py"], &[4, 5]);
    check(&["path=**/b.py"], &[4, 5]);
    check(&["path={docs,lib}/*.py"], &[4, 5]);
    // A span without a score does not match.
    check(&["quality<0.5"], &[0, 3]);
    check(&["quality<0.9"], &[0, 1, 2, 3, 5]);
    check(&["quality<0"], &[]);
}

#[test]
fn selectors_of_one_flag_must_all_match_and_any_flag_may() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db();
    assert_eq!(
        selected(&mut db, &hashes, &["model=small,quality<0.5"]),
        [0]
    );
    assert_eq!(
        selected(&mut db, &hashes, &["model=big,path=src/*,older-than=30d"]),
        [2]
    );
    assert_eq!(
        selected(
            &mut db,
            &hashes,
            &["model=small,quality<0.5", "path=docs/*"]
        ),
        [0, 4, 5]
    );
    assert_eq!(
        selected(&mut db, &hashes, &["model=small,model=big"]),
        Vec::<usize>::new()
    );
}

#[test]
fn pending_spans_and_dead_letters_are_never_selected() {
    let (fx, mut hashes) = enriched_index();
    hashes.extend(fx.index_file("c.py", "python", "def pending(): pass\n"));
    let mut db = fx.db_with_max_failures(1);
    // A dead letter that also has an enrichment (stored, then failed in a later run).
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[failed(&hashes[1], run)]).expect("write");
    assert!(
        db.failure_entry(&hashes[1])
            .expect("ledger")
            .expect("row")
            .dead_lettered
    );
    assert_eq!(selected(&mut db, &hashes, &["path=**"]), [0, 2, 3, 4, 5]);
    // Requeued, it is selected again.
    db.requeue(&hashes[1]).expect("requeue");
    assert_eq!(selected(&mut db, &hashes, &["path=**"]), [0, 1, 2, 3, 4, 5]);
}

fn lease(db: &mut Db) -> Lease {
    Lease {
        run_id: db.start_run("fp").expect("run"),
        holder: LeaseHolder::current(),
        ttl: Duration::from_secs(600),
    }
}

#[test]
fn a_claim_leaves_out_spans_any_run_holds_and_spans_its_run_attempted() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db();
    let all = filter(&["path=**"]);
    let first = lease(&mut db);
    let taken = db.refresh_spans(&all, Some(&first), 0, 2).expect("claim");
    assert_eq!(taken.len(), 2);

    // Another run takes the rest, not the two the first holds.
    let second = lease(&mut db);
    let rest: Vec<String> = db
        .refresh_spans(&all, Some(&second), 0, 100)
        .expect("claim")
        .into_iter()
        .map(|span| span.span_hash)
        .collect();
    assert_eq!(rest, hashes[2..].to_vec());

    // The first run stores a renewal of span 0 (its lease ends) and fails one of span 1: a
    // claim of the first run from the start finds neither again, though both still match.
    let renewed = SpanOutcome {
        stored: Stored::Refreshed(Box::new(enrichment("Adds one again."))),
        ..enriched(&hashes[0], first.run_id, "")
    };
    let failed = SpanOutcome {
        span_hash: hashes[1].clone(),
        run_id: first.run_id,
        attempts: vec![attempt(1, AttemptOutcome::Failure)],
        chain: None,
        stored: Stored::RefreshFailed {
            failure_kind: LedgerKind::Attempt(FailureKind::Timeout),
            message: "slow".to_owned(),
        },
    };
    db.write_batch(&[renewed, failed]).expect("write");
    db.release_leases(second.run_id).expect("release");
    let again: Vec<String> = db
        .refresh_spans(&all, Some(&first), 0, 100)
        .expect("claim")
        .into_iter()
        .map(|span| span.span_hash)
        .collect();
    assert_eq!(again, hashes[2..].to_vec());
    // Another run may renew them.
    let third = lease(&mut db);
    db.release_leases(first.run_id).expect("release");
    let theirs = db.refresh_spans(&all, Some(&third), 0, 100).expect("claim");
    assert_eq!(theirs.len(), hashes.len());
}

#[test]
fn refresh_pages_follow_the_work_order() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db();
    db.refresh_work_order(
        "rules",
        |path| if path.starts_with("docs/") { 2 } else { 8 },
    )
    .expect("work order");
    let all = filter(&["path=**"]);
    let page = db
        .refresh_by_weight(&all, None, 1..=10, WorkOrderKey::START, 100)
        .expect("page");
    let order: Vec<(u8, &str)> = page
        .iter()
        .map(|w| (w.weight, w.span.file_path.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (2, "docs/b.py"),
            (2, "docs/b.py"),
            (8, "src/a.py"),
            (8, "src/a.py"),
            (8, "src/a.py"),
            (8, "src/a.py"),
        ]
    );
    // Claimed after the third, within the low weights.
    let lease = lease(&mut db);
    let after = page[2].key();
    let claimed = db
        .refresh_by_weight(&all, Some(&lease), 7..=10, after, 2)
        .expect("claim");
    let claimed: Vec<&str> = claimed.iter().map(|w| w.span.span_hash.as_str()).collect();
    assert_eq!(claimed, [hashes[1].as_str(), hashes[2].as_str()]);
}

#[test]
fn a_failed_renewal_keeps_the_old_row_and_never_dead_letters() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db_with_max_failures(1);
    let before = db.enrichment_by_hash(&hashes[0]).expect("read");
    let quality_before = db
        .enrichment_by_hash(&hashes[0])
        .expect("read")
        .and_then(|e| e.enrichment.quality);
    for _ in 0..3 {
        let run = db.start_run("fp").expect("run");
        let report = db
            .write_batch(&[SpanOutcome {
                span_hash: hashes[0].clone(),
                run_id: run,
                attempts: vec![attempt(1, AttemptOutcome::Failure)],
                chain: Some("default".to_owned()),
                stored: Stored::RefreshFailed {
                    failure_kind: LedgerKind::Attempt(FailureKind::SchemaInvalid),
                    message: "bad answer".to_owned(),
                },
            }])
            .expect("write");
        assert_eq!((report.refresh_failed, report.failed), (1, 0));
        assert!(report.dead_lettered.is_empty());
        let counts = db
            .finish_run(run, 0, enrich_db::RunStatus::Completed)
            .expect("finish");
        assert_eq!((counts.attempted, counts.failed), (1, 1));
    }
    assert_eq!(db.enrichment_by_hash(&hashes[0]).expect("read"), before);
    assert_eq!(
        db.enrichment_by_hash(&hashes[0])
            .expect("read")
            .and_then(|e| e.enrichment.quality),
        quality_before
    );
    assert_eq!(db.failure_entry(&hashes[0]).expect("ledger"), None);
    let attempts = db.attempts_for_span(&hashes[0]).expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .filter(|a| a.attempt.outcome == AttemptOutcome::Failure)
            .count(),
        4,
        "the first write's failed attempt and one per failed renewal"
    );
}

#[test]
fn a_renewal_replaces_the_row_in_place() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db();
    let rowid = |fx: &Fixture| -> i64 {
        fx.raw()
            .query_row(
                "SELECT rowid FROM enrichments WHERE span_hash = ?1",
                [&hashes[3]],
                |row| row.get(0),
            )
            .expect("rowid")
    };
    let before = rowid(&fx);
    let run = db.start_run("fp").expect("run");
    let report = db
        .write_batch(&[SpanOutcome {
            stored: Stored::Refreshed(Box::new(enrichment("Adds one, renewed."))),
            ..enriched(&hashes[3], run, "")
        }])
        .expect("write");
    assert_eq!((report.enriched, report.refreshed), (1, 1));
    let stored = db
        .enrichment_by_hash(&hashes[3])
        .expect("read")
        .expect("a row");
    assert_eq!(stored.enrichment.enrichment.summary, "Adds one, renewed.");
    assert_eq!(stored.enrichment.model, "qwen3:4b");
    assert_eq!(
        stored.enrichment.quality.map(|q| q.score),
        Some(0.9),
        "the new score"
    );
    assert_eq!(rowid(&fx), before, "LLMC's rowid stays");
    // LLMC's search table follows the renewal in the same transaction.
    let found: Vec<i64> = fx
        .raw()
        .prepare("SELECT rowid FROM enrichments_fts WHERE enrichments_fts MATCH 'renewed'")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .expect("search");
    assert_eq!(found, [before]);
    // No longer old, no longer low-scored, no longer `big`.
    assert!(!selected(&mut db, &hashes, &["quality<0.5"]).contains(&3));
    assert!(!selected(&mut db, &hashes, &["model=big"]).contains(&3));
}

#[test]
fn a_span_read_again_by_id_is_a_renewal_when_it_has_an_enrichment() {
    let (fx, mut hashes) = enriched_index();
    hashes.extend(fx.index_file("c.py", "python", "def pending(): pass\n"));
    let db = fx.db();
    let renewal = |id: i64| db.span_by_id(id).expect("read").expect("a span").renewal;
    assert!(renewal(1));
    assert!(!renewal(7), "the pending span");
}

#[test]
fn refresh_pages_are_keyset_pages_in_span_id_order() {
    let (fx, hashes) = enriched_index();
    let mut db = fx.db();
    let page = db
        .refresh_spans(&filter(&["model=small"]), None, 0, 1)
        .expect("page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].span_hash, hashes[0]);
    let next = db
        .refresh_spans(&filter(&["model=small"]), None, page[0].id, 10)
        .expect("page");
    let next: Vec<&str> = next.iter().map(|span| span.span_hash.as_str()).collect();
    assert_eq!(next, [hashes[1].as_str(), hashes[4].as_str()]);
}

#[test]
fn stale_selectors_select_what_the_stale_query_finds() {
    use enrich_db::StaleReason;

    let fx = Fixture::llmc();
    let mut db = fx.db();
    let hashes = crate::stale::stored_cases(&fx, &mut db);
    let expected = crate::stale::current();
    let select = |db: &mut Db, flags: &[&str]| -> Vec<usize> {
        let filter = filter(flags).with_expectations(expected.clone());
        assert!(filter.uses_stale());
        let page = db.refresh_spans(&filter, None, 0, 100).expect("page");
        assert_eq!(
            db.refresh_count(&filter).expect("count"),
            page.len() as u64,
            "{flags:?}"
        );
        page.iter()
            .map(|s| {
                hashes
                    .iter()
                    .position(|h| *h == s.span_hash)
                    .expect("known")
            })
            .collect()
    };
    for reason in StaleReason::ALL {
        let found: Vec<usize> = db
            .stale_spans(&expected, &[reason], 0, 100)
            .expect("stale")
            .iter()
            .map(|s| {
                hashes
                    .iter()
                    .position(|h| *h == s.span_hash)
                    .expect("known")
            })
            .collect();
        assert!(!found.is_empty(), "{reason:?}");
        let flag = format!("stale={}", reason.as_str());
        assert_eq!(select(&mut db, &[&flag]), found, "{flag}");
    }
    // `stale` is every reason but unknown.
    assert_eq!(select(&mut db, &["stale"]), [1, 2, 3, 4, 5, 6, 8]);
    // Combined with the other selectors, and claimed under a lease.
    assert_eq!(select(&mut db, &["stale,quality<0.5"]), [6]);
    assert_eq!(
        select(&mut db, &["stale=model", "stale=unknown"]),
        [2, 7, 8]
    );
    let lease = lease(&mut db);
    let claimed = db
        .refresh_spans(
            &filter(&["stale=prompt"]).with_expectations(expected.clone()),
            Some(&lease),
            0,
            100,
        )
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].span_hash, hashes[1]);

    // Without expectations the stale selectors are refused, not taken to select nothing.
    let error = db
        .refresh_count(&filter(&["stale"]))
        .expect_err("no expectations");
    assert!(
        error
            .to_string()
            .contains("judged against the configuration"),
        "{error}"
    );
}

#[test]
fn a_renewal_keeps_llmc_s_file_description_as_an_enrichment_does() {
    let (fx, hashes) = enriched_index();
    let conn = fx.raw();
    let described = |path: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM file_descriptions WHERE file_path = ?1 AND source = 'cheap'",
            [path],
            |row| row.get(0),
        )
        .expect("count")
    };
    assert_eq!((described("src/a.py"), described("docs/b.py")), (1, 1));
    conn.execute("DELETE FROM file_descriptions", [])
        .expect("forget");
    let mut db = fx.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[SpanOutcome {
        stored: Stored::Refreshed(Box::new(enrichment("Adds one, renewed."))),
        ..enriched(&hashes[0], run, "")
    }])
    .expect("write");
    assert_eq!((described("src/a.py"), described("docs/b.py")), (1, 0));
}
