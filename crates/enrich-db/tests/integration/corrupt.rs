//! Files that are not (or no longer) SQLite databases are reported and left byte for byte.

use std::fs;
use std::path::Path;

use enrich_db::{Db, DbError, OpenMode, OpenOptions};

use crate::support::{Fixture, python_lines};

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
    matches!(e, DbError::NotADatabase { .. } | DbError::Corrupt { .. })
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
