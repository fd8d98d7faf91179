//! LLMC's `file_descriptions` ("cheap" tier, `v1.1`) kept by the writer after each batch.

use enrich_db::{Db, RunId, SpanOutcome, default_db_path};
use enrich_types::span_hash;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::support::{Fixture, enriched, raw};
use crate::writing::now_secs;

/// A span to index: kind, symbol, start line.
type SpanSpec<'a> = (&'a str, &'a str, i64);

/// Indexes `path` with one span per spec (content hashed from the spec) and returns the span
/// hashes in spec order.
fn index(conn: &Connection, path: &str, file_hash: &str, spans: &[SpanSpec<'_>]) -> Vec<String> {
    conn.execute(
        "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, 'python', ?2, 1, 1.0)",
        (path, file_hash),
    )
    .expect("file");
    let file_id = conn.last_insert_rowid();
    spans
        .iter()
        .map(|(kind, symbol, line)| {
            let hash = span_hash(
                "python",
                format!("{path}:{kind}:{symbol}:{line}").as_bytes(),
            );
            conn.execute(
                "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start,
                    byte_end, span_hash, slice_type, slice_language)
                 VALUES (?1, ?2, ?3, ?4, ?4, 0, 1, ?5, 'code', 'python')",
                (file_id, symbol, kind, line, &hash),
            )
            .expect("span");
            hash
        })
        .collect()
}

/// The first 16 hex digits of SHA-256 over `parts` concatenated (LLMC's `compute_input_hash`).
fn expected_hash(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.concat().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A file's row: description, source, content hash, input hash, updated at.
type Row = (String, String, String, String, i64);

fn row(conn: &Connection, path: &str) -> Option<Row> {
    conn.query_row(
        "SELECT description, source, content_hash, input_hash, CAST(updated_at AS INTEGER)
         FROM file_descriptions WHERE file_path = ?1",
        [path],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .ok()
}

fn write(db: &mut Db, outcomes: Vec<SpanOutcome>) {
    db.write_batch(&outcomes).expect("write");
}

#[test]
fn a_batch_writes_the_description_of_each_file_it_touched() {
    let fixture = Fixture::llmc();
    let conn = fixture.raw();
    let spans = index(
        &conn,
        "src/parser.py",
        "filehash1",
        &[
            ("function", "Parser.parse", 30),
            ("function", "helper", 20),
            ("class", "Parser", 10),
            ("module", "parser", 1),
            ("function", "main", 90),
            ("variable", "X", 2),
            ("function", "zeta", 95),
        ],
    );
    let other = index(
        &conn,
        "src/other.py",
        "filehash2",
        &[("function", "run", 1)],
    );
    let untouched = index(
        &conn,
        "src/untouched.py",
        "filehash3",
        &[("function", "idle", 1)],
    );
    drop(conn);
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    write(
        &mut db,
        vec![
            enriched(&spans[0], run, "Parses one line. Returns a token."),
            enriched(
                &spans[1],
                run,
                "Helps with config.py and setup.cfg files. More text.",
            ),
            enriched(&spans[2], run, "The parser class"),
            enriched(
                &spans[3],
                run,
                "Tokenises and parses source text. Used by the CLI.",
            ),
            enriched(&spans[4], run, "Entry point."),
            enriched(&spans[5], run, "A constant."),
            enriched(&spans[6], run, "Last top-level function."),
            enriched(&other[0], run, "Runs it."),
        ],
    );
    drop(db);

    let conn = fixture.raw();
    let (description, source, content_hash, input_hash, updated_at) =
        row(&conn, "src/parser.py").expect("parser.py described");
    // Module, class, the three top-level functions by line; the constant and the method rank
    // last and are not among the first five.
    assert_eq!(
        description,
        "Tokenises and parses source text. The parser class. \
         Helps with config.py and setup.cfg files. Entry point. Last top-level function."
    );
    assert_eq!(source, "cheap");
    assert_eq!(content_hash, "filehash1");
    let selection = [&spans[3], &spans[2], &spans[1], &spans[4], &spans[6]];
    let mut parts = vec!["filehash1"];
    parts.extend(selection.iter().map(|h| h.as_str()));
    parts.push("v1.1");
    assert_eq!(input_hash, expected_hash(&parts));
    assert!(
        (now_secs() - updated_at).abs() < 120,
        "updated_at is now: {updated_at}"
    );
    let file_id: i64 = conn
        .query_row(
            "SELECT d.file_id = f.id FROM file_descriptions d JOIN files f ON f.path = d.file_path
             WHERE d.file_path = 'src/parser.py'",
            [],
            |r| r.get(0),
        )
        .expect("file id");
    assert_eq!(file_id, 1);
    assert_eq!(
        row(&conn, "src/other.py").map(|r| r.0).as_deref(),
        Some("Runs it.")
    );
    assert_eq!(row(&conn, "src/untouched.py"), None);
    assert!(!untouched.is_empty());
}

#[test]
fn an_unchanged_input_hash_writes_nothing_and_a_changed_one_rewrites_the_row() {
    let fixture = Fixture::llmc();
    let spans = index(
        &fixture.raw(),
        "a.py",
        "h1",
        &[
            ("function", "a", 1),
            ("function", "b", 2),
            ("function", "c", 3),
            ("function", "d", 4),
            ("function", "e", 5),
            ("function", "f", 6),
            ("function", "g", 7),
        ],
    );
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let first: Vec<SpanOutcome> = spans[..5]
        .iter()
        .map(|h| enriched(h, run, "Does a thing."))
        .collect();
    write(&mut db, first);
    let conn = fixture.raw();
    let (_, _, _, hash, _) = row(&conn, "a.py").expect("described");
    // Mark the row, as LLMC's own description would be.
    conn.execute(
        "UPDATE file_descriptions SET description = 'kept', updated_at = 7",
        [],
    )
    .expect("mark");

    // A sixth span is enriched: the selection (the first five) does not change, so neither
    // does the input hash, and the row is not written.
    write(&mut db, vec![enriched(&spans[5], run, "Sixth.")]);
    // Re-enriching a selected span keeps its hash too.
    write(
        &mut db,
        vec![enriched(&spans[0], run, "Does another thing.")],
    );
    assert_eq!(
        row(&conn, "a.py"),
        Some(("kept".into(), "cheap".into(), "h1".into(), hash.clone(), 7))
    );

    // The file changes (LLMC's indexer writes a new file hash): the next batch rewrites it.
    conn.execute("UPDATE files SET file_hash = 'h2'", [])
        .expect("new file hash");
    write(&mut db, vec![enriched(&spans[6], run, "Seventh.")]);
    let (description, _, content_hash, new_hash, updated_at) = row(&conn, "a.py").expect("row");
    assert_eq!(
        description,
        "Does another thing. Does a thing. Does a thing. Does a thing. Does a thing."
    );
    assert_eq!(content_hash, "h2");
    assert_ne!(new_hash, hash);
    assert!(updated_at > 7);
    assert_eq!(
        conn.query_row("SELECT COUNT(*) FROM file_descriptions", [], |r| r
            .get::<_, i64>(0))
            .expect("count"),
        1,
        "upserted by file_path"
    );
}

#[test]
fn a_batch_without_enrichments_or_summaries_writes_no_description() {
    let fixture = Fixture::llmc();
    let spans = index(&fixture.raw(), "a.py", "h", &[("function", "a", 1)]);
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    write(&mut db, vec![crate::support::failed(&spans[0], run)]);
    // An empty summary is stored as NULL, which LLMC's selection leaves out.
    write(&mut db, vec![enriched(&spans[0], run, "")]);
    assert_eq!(row(&fixture.raw(), "a.py"), None);
}

#[test]
fn an_index_without_the_table_is_written_as_before() {
    let fixture = Fixture::llmc();
    let conn = fixture.raw();
    let spans = index(&conn, "a.py", "h", &[("function", "a", 1)]);
    conn.execute_batch("DROP TABLE file_descriptions")
        .expect("drop");
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    write(&mut db, vec![enriched(&spans[0], run, "Works.")]);
    let summary: String = conn
        .query_row("SELECT summary FROM enrichments", [], |r| r.get(0))
        .expect("stored");
    assert_eq!(summary, "Works.");
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'file_descriptions'",
            [],
            |r| r.get(0),
        )
        .expect("tables");
    assert_eq!(tables, 0, "never created by the writer");
}

#[test]
fn an_index_enrich_created_has_the_table_and_gets_descriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = default_db_path(dir.path());
    drop(Db::open_or_create(&path).expect("create"));
    let spans = index(&raw(&path), "a.py", "h", &[("class", "A", 1)]);
    let mut db = Db::open(&path).expect("open");
    let run: RunId = db.start_run("fp").expect("run");
    write(
        &mut db,
        vec![enriched(&spans[0], run, "Holds state. Second.")],
    );
    assert_eq!(
        row(&raw(&path), "a.py").map(|r| r.0).as_deref(),
        Some("Holds state.")
    );
}

#[test]
fn values_llmc_stored_with_other_types_are_read_leniently_and_never_fail_the_batch() {
    let fixture = Fixture::llmc();
    let conn = fixture.raw();
    let spans = index(
        &conn,
        "a.py",
        "h",
        &[("class", "A", 1), ("function", "b", 2)],
    );
    // A summary Python stored as a number, and one as bytes.
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary) VALUES (?1, 42)",
        [&spans[0]],
    )
    .expect("a number");
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    write(&mut db, vec![enriched(&spans[1], run, "Does b.")]);
    assert_eq!(
        row(&conn, "a.py").map(|r| r.0).as_deref(),
        Some("42. Does b.")
    );
    conn.execute(
        "UPDATE enrichments SET summary = X'ff' WHERE span_hash = ?1",
        [&spans[0]],
    )
    .expect("bytes");
    conn.execute("UPDATE files SET file_hash = 'h2'", [])
        .expect("new hash");
    write(&mut db, vec![enriched(&spans[1], run, "Does b.")]);
    assert_eq!(row(&conn, "a.py").map(|r| r.0).as_deref(), Some("Does b."));
}
