//! Files that are not (or no longer) SQLite databases are reported and left byte for byte.

use std::fs;
use std::path::Path;

use enrich_db::{Db, DbError, OpenMode, OpenOptions};

use crate::support::{Fixture, enriched, python_lines};

/// Writes `bytes` to a file, opens it in every mode, expects `expected`, and checks the file
/// is byte-identical afterwards. SQLite may leave the empty `-wal` and `-shm` companions of a
/// WAL-mode file it could not read; nothing may be written into them.
fn check_untouched(bytes: &[u8], expected: fn(&DbError) -> bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index_v2.db");
    fs::write(&path, bytes).expect("write");
    for mode in [
        OpenMode::Existing,
        OpenMode::CreateIfMissing,
        OpenMode::ReadOnly,
    ] {
        let options = OpenOptions {
            mode,
            ..OpenOptions::default()
        };
        let err = Db::open_with(&path, &options).expect_err("refused");
        assert!(expected(&err), "{mode:?}: unexpected {err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("was not modified"), "{message}");
        assert_eq!(
            fs::read(&path).expect("read"),
            bytes,
            "{mode:?} modified the file"
        );
    }
    for entry in fs::read_dir(dir.path()).expect("read_dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            "index_v2.db" | "index_v2.db-shm" => {}
            "index_v2.db-wal" => assert_eq!(len(&dir.path().join(&name)), 0, "WAL written"),
            other => panic!("unexpected file {other}"),
        }
    }
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

fn not_a_database(e: &DbError) -> bool {
    matches!(e, DbError::NotADatabase { .. })
}

fn damaged(e: &DbError) -> bool {
    matches!(e, DbError::NotADatabase { .. } | DbError::Damaged { .. })
}

/// The bytes of a real index with a few hundred spans, checkpointed into the main file.
fn real_index_bytes() -> Vec<u8> {
    let fixture = Fixture::llmc();
    fixture.index_file("src/big.py", "python", &python_lines(400));
    drop(fixture.db());
    let bytes = fixture.bytes();
    assert!(bytes.len() > 8 * 4096, "fixture too small: {}", bytes.len());
    bytes
}

#[test]
fn a_text_file_is_refused_untouched() {
    let text = "[enrichment]\ndefault_chain = \"local\"\n".repeat(20);
    check_untouched(text.as_bytes(), not_a_database);
}

#[test]
fn a_file_shorter_than_the_sqlite_header_is_refused_untouched() {
    check_untouched(b"SQLite format 3\0short", not_a_database);
}

#[test]
fn a_truncated_sqlite_file_is_refused_untouched() {
    let bytes = real_index_bytes();
    check_untouched(&bytes[..3 * 4096], damaged);
}

#[test]
fn a_garbled_sqlite_file_is_refused_untouched() {
    let mut bytes = real_index_bytes();
    // Keep the 100-byte header, overwrite the schema page after it.
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    check_untouched(&bytes, damaged);
}

#[test]
fn an_empty_file_is_refused_when_opening_and_initialised_when_creating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index_v2.db");
    fs::write(&path, b"").expect("write");
    let err = Db::open(&path).expect_err("empty");
    assert!(matches!(err, DbError::NotAnIndex { .. }), "{err}");
    assert_eq!(fs::read(&path).expect("read").len(), 0);

    let db = Db::open_or_create(&path).expect("create over an empty file");
    assert_eq!(db.stats().expect("stats").spans, 0);
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Db::open(dir.path()).expect_err("directory");
    assert!(matches!(err, DbError::NotADatabase { .. }), "{err}");
}

/// A real index with a few hundred spans whose `span_hash` index (LLMC's `UNIQUE` on `spans`)
/// has its root page overwritten with garbage. The schema still reads: only a check of every
/// page, or a statement that goes through that index, finds the damage. Returns the fixture and
/// a span hash.
fn index_with_a_damaged_page() -> (Fixture, String) {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/big.py", "python", &python_lines(400));
    drop(fixture.db());
    let conn = fixture.raw();
    let (root, page_size): (u64, u64) = conn
        .query_row(
            "SELECT (SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_spans_1'),
                    (SELECT page_size FROM pragma_page_size())",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("root page");
    drop(conn);
    let mut bytes = fixture.bytes();
    let start = usize::try_from((root - 1) * page_size).expect("offset");
    let end = start + usize::try_from(page_size).expect("page size");
    for b in &mut bytes[start..end] {
        *b = 0xA5;
    }
    fs::write(&fixture.db_path, &bytes).expect("write the damaged copy");
    (fixture, hashes[0].clone())
}

#[test]
fn a_damaged_page_is_refused_by_the_check_before_anything_is_written() {
    let (fixture, _) = index_with_a_damaged_page();
    let before = fixture.bytes();
    // Reading the schema does not notice; the full check does.
    let findings = Db::open_read_only(&fixture.db_path)
        .expect("the schema reads")
        .quick_check()
        .expect("the check runs");
    assert!(!findings.is_empty(), "quick_check found nothing");
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let options = OpenOptions {
            mode,
            quick_check: true,
            ..OpenOptions::default()
        };
        let err = Db::open_with(&fixture.db_path, &options).expect_err("refused");
        assert!(matches!(err, DbError::Damaged { .. }), "{mode:?}: {err:?}");
        let message = err.to_string();
        for needle in [
            fixture.db_path.display().to_string().as_str(),
            "is a damaged SQLite database",
            "restore it from a backup",
            "enrich index",
            "(the file was not modified)",
        ] {
            assert!(
                message.contains(needle),
                "{mode:?}: {needle:?} missing: {message}"
            );
        }
        assert_eq!(fixture.bytes(), before, "{mode:?} modified the file");
    }
}

#[test]
fn damage_found_after_a_write_never_claims_the_file_was_not_modified() {
    let (fixture, hash) = index_with_a_damaged_page();
    // Without the check the file opens, and enrich writes to it before the damage shows.
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("a run starts: a write");
    let err = db
        .write_batch(&[enriched(&hash, run, "Adds one to x.")])
        .expect_err("the foreign key goes through the damaged index");
    assert!(matches!(err, DbError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains("not modified"), "{message}");
    assert!(message.contains("restore it from a backup"), "{message}");
}
