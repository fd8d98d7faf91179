//! Upgrades: an index whose enrich tables an older build wrote is migrated by a reading open
//! when the file is writable, and read as it is when it is not, at every older version.

use enrich_db::{
    Db, ENRICH_SCHEMA_VERSION, ENRICH_SCHEMA_VERSION_KEY, OpenMode, OpenOptions, ReportFilter,
    UNKNOWN_CHAIN, migrations,
};
use rusqlite::Connection;

use crate::support::{Fixture, python_lines};

/// An LLMC index with three spans, the first enriched by LLMC, and enrich's first `n`
/// migrations applied with the rows a build of that version wrote: a run, an attempt of the
/// first span and the dead-lettered second span (from version 1), the first span's quality
/// score (from version 7).
fn index_at_version(n: u32) -> (Fixture, Vec<String>) {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/a.py", "python", &python_lines(3));
    let conn = fixture.raw();
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary, model, created_at) \
         VALUES (?1, 'Old summary.', 'old-model', 1700000000)",
        [&hashes[0]],
    )
    .expect("LLMC's enrichment");
    for migration in migrations().iter().filter(|m| m.version <= n) {
        conn.execute_batch(migration.sql).expect("migration");
    }
    if n >= 1 {
        conn.execute(
            "INSERT INTO llmc_meta (key, value) VALUES (?1, ?2)",
            (ENRICH_SCHEMA_VERSION_KEY, n.to_string()),
        )
        .expect("version");
        conn.execute_batch(&format!(
            "INSERT INTO enrich_runs (id, started_at_ms, config_fingerprint, status, attempted,
                 succeeded) VALUES (1, 1700000000000, 'fp', 'completed', 1, 1);
             INSERT INTO enrich_attempts (span_hash, run_id, attempt, backend, provider, model,
                 host, outcome, started_at_ms, duration_ms)
             VALUES ('{first}', 1, 1, 'b', 'ollama', 'old-model', 'h', 'success', 1, 2);
             INSERT INTO enrich_failures (span_hash, consecutive_failures, last_run_id,
                 last_failure_kind, last_message, dead_lettered, updated_at_ms)
             VALUES ('{second}', 3, 1, 'timeout', 'no answer', 1, 1);",
            first = hashes[0],
            second = hashes[1],
        ))
        .expect("rows of the older build");
    }
    if n >= 7 {
        conn.execute(
            "INSERT INTO enrich_quality (span_hash, score, level, failed_checks, repairs,
                 gate_version, scored_at_ms) VALUES (?1, 0.5, 'basic', '[]', '[]', 'g', 1)",
            [&hashes[0]],
        )
        .expect("quality");
    }
    (fixture, hashes)
}

fn open(fixture: &Fixture, mode: OpenMode) -> Db {
    let options = OpenOptions {
        mode,
        ..OpenOptions::default()
    };
    Db::open_with(&fixture.db_path, &options).expect("open")
}

/// What `status`, `show`, `failures` and `quality` read, checked against the rows the older
/// build wrote.
fn check_reads(db: &Db, hashes: &[String], n: u32) {
    let what = format!("version {n}");
    let stats = db.stats().expect(&what);
    assert_eq!((stats.spans, stats.enriched), (3, 1), "{what}");
    let enrichment = db
        .enrichment_by_hash(&hashes[0])
        .expect(&what)
        .expect("enriched");
    assert_eq!(enrichment.enrichment.enrichment.summary, "Old summary.");
    assert_eq!(enrichment.enrichment.quality.is_some(), n >= 7, "{what}");
    let attempts = db.attempts_for_span(&hashes[0]).expect(&what);
    let groups = db
        .quality_groups(&ReportFilter::default(), |_| Vec::new())
        .expect(&what);
    if n == 0 {
        assert_eq!((stats.pending, stats.dead_lettered), (2, 0), "{what}");
        assert!(attempts.is_empty() && stats.last_run.is_none(), "{what}");
        assert!(db.dead_letters().expect(&what).is_empty());
    } else {
        assert_eq!((stats.pending, stats.dead_lettered), (1, 1), "{what}");
        assert_eq!(attempts.len(), 1, "{what}");
        let run = stats.last_run.expect("the older build's run");
        assert_eq!(run.prompt_fingerprint, None, "{what}");
        assert_eq!(db.dead_letters().expect(&what).len(), 1, "{what}");
        assert_eq!(
            groups
                .iter()
                .map(|g| g.key.chain.as_str())
                .collect::<Vec<_>>(),
            [UNKNOWN_CHAIN],
            "{what}"
        );
    }
}

/// enrich's version in the file, and the schema of every object but enrich's and `llmc_meta`'s
/// rows.
fn version_and_llmc_schema(conn: &Connection) -> (Option<String>, Vec<(String, String)>) {
    let version = conn
        .query_row(
            "SELECT value FROM llmc_meta WHERE key = ?1",
            [ENRICH_SCHEMA_VERSION_KEY],
            |r| r.get(0),
        )
        .ok();
    let mut stmt = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE sql IS NOT NULL AND name NOT LIKE 'enrich_%' ORDER BY name",
        )
        .expect("schema");
    let llmc = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    (version, llmc)
}

#[test]
fn a_read_only_open_reads_every_older_enrich_schema_without_writing() {
    for n in 0..ENRICH_SCHEMA_VERSION {
        let (fixture, hashes) = index_at_version(n);
        let before = fixture.bytes();
        let db = open(&fixture, OpenMode::ReadOnly);
        check_reads(&db, &hashes, n);
        drop(db);
        assert_eq!(fixture.bytes(), before, "version {n} was written");
    }
}

#[test]
fn a_reading_open_migrates_every_older_enrich_schema_of_a_writable_file() {
    for n in 1..ENRICH_SCHEMA_VERSION {
        let (fixture, hashes) = index_at_version(n);
        let (_, llmc_before) = version_and_llmc_schema(&fixture.raw());
        let db = open(&fixture, OpenMode::ReadUpgrading);
        assert!(db.is_read_only());
        check_reads(&db, &hashes, n);
        drop(db);
        let (version, llmc_after) = version_and_llmc_schema(&fixture.raw());
        assert_eq!(
            version,
            Some(ENRICH_SCHEMA_VERSION.to_string()),
            "version {n}"
        );
        assert_eq!(
            llmc_after, llmc_before,
            "version {n}: LLMC's schema changed"
        );
        // The migrated file is what a read-write open finds: nothing left to do.
        let bytes = fixture.bytes();
        drop(fixture.db());
        assert_eq!(fixture.bytes(), bytes, "version {n}");
    }
}

#[test]
fn a_reading_open_leaves_an_index_enrich_never_wrote_without_enrich_tables() {
    let (fixture, hashes) = index_at_version(0);
    let before = fixture.bytes();
    let db = open(&fixture, OpenMode::ReadUpgrading);
    check_reads(&db, &hashes, 0);
    drop(db);
    assert_eq!(fixture.bytes(), before);
    let (version, _) = version_and_llmc_schema(&fixture.raw());
    assert_eq!(version, None);
}
