//! Full text: LLMC's `enrichments_fts` and enrich's `enrich_search` kept in step with every
//! write of an enrich connection, the search's ranking, filters and errors, reading while a
//! writer holds the lock, and LLMC's own writes unharmed.

use std::collections::BTreeSet;
use std::time::Duration;

use enrich_db::{
    Db, DbError, OpenMode, OpenOptions, QuerySyntax, SearchHit, SearchQuery, SearchSync,
};
use enrich_types::span_hash;
use rusqlite::Connection;

use crate::support::{Fixture, enriched, enrichment, file_record};

fn hash_of(lang: &str, content: &str) -> String {
    span_hash(lang, content.as_bytes())
}

/// Stores `summary` as the enrichment of `hash` through the writer.
fn enrich(db: &mut Db, hash: &str, summary: &str) {
    let run = db.start_run("fp").expect("run");
    let report = db
        .write_batch(&[enriched(hash, run, summary)])
        .expect("write");
    assert_eq!(report.enriched, 1, "{hash} stored");
}

/// Every row of `table`, as `rowid` and its columns joined by `|`.
fn fts_rows(conn: &Connection, table: &str, columns: &str) -> BTreeSet<String> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT rowid || '|' || concat_ws('|', {columns}) FROM {table}"
        ))
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// What LLMC's rebuild of `enrichments_fts` would put in it.
fn llmc_rebuild(conn: &Connection) -> BTreeSet<String> {
    let mut stmt = conn
        .prepare(
            "SELECT e.rowid || '|' || concat_ws('|', s.symbol, e.summary, f.path, s.start_line,
                    s.end_line)
             FROM enrichments e JOIN spans s ON s.span_hash = e.span_hash
             JOIN files f ON f.id = s.file_id",
        )
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// Both full-text tables hold exactly what their projection of the stored rows says.
fn check_in_step(fixture: &Fixture) {
    let conn = fixture.raw();
    assert_eq!(
        fts_rows(
            &conn,
            "enrichments_fts",
            "symbol, summary, path, start_line, end_line"
        ),
        llmc_rebuild(&conn),
        "enrichments_fts is LLMC's rebuild"
    );
    let search: BTreeSet<(i64, String, String)> = {
        let mut stmt = conn
            .prepare("SELECT rowid, span_hash, path FROM enrich_search")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    let expected: BTreeSet<(i64, String, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT e.rowid, e.span_hash, f.path FROM enrichments e
                 JOIN spans s ON s.span_hash = e.span_hash JOIN files f ON f.id = s.file_id",
            )
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    assert_eq!(
        search, expected,
        "enrich_search holds every indexed enrichment"
    );
}

/// The rowids LLMC's search finds for `query`.
fn llmc_match(fixture: &Fixture, query: &str) -> Vec<i64> {
    let conn = fixture.raw();
    let mut stmt = conn
        .prepare(
            "SELECT rowid FROM enrichments_fts WHERE enrichments_fts MATCH ?1
             ORDER BY bm25(enrichments_fts)",
        )
        .expect("prepare");
    stmt.query_map([query], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn rowid_of(fixture: &Fixture, hash: &str) -> i64 {
    fixture
        .raw()
        .query_row(
            "SELECT rowid FROM enrichments WHERE span_hash = ?1",
            [hash],
            |r| r.get(0),
        )
        .expect("enrichment rowid")
}

fn symbols(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.symbol.as_str()).collect()
}

fn search(db: &Db, words: &str) -> Vec<SearchHit> {
    db.search(&SearchQuery::words(words)).expect("search")
}

#[test]
fn llmc_fts_and_the_search_table_follow_inserts_replacements_and_removals() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(
        &[file_record(
            "src/zoo.py",
            "python",
            &[("feed", "def feed(): pass"), ("clean", "def clean(): pass")],
        )],
        &[],
    )
    .expect("index");
    let feed = hash_of("python", "def feed(): pass");
    let clean = hash_of("python", "def clean(): pass");

    // Insert: a word of the new summary finds it, in LLMC's table and in enrich's search.
    enrich(&mut db, &feed, "Gives the walrus its herring.");
    assert_eq!(
        llmc_match(&fixture, "walrus"),
        vec![rowid_of(&fixture, &feed)]
    );
    assert_eq!(symbols(&search(&db, "walrus")), ["feed"]);
    check_in_step(&fixture);

    // Replacement: the old words are gone, the new ones found, under the same rowid.
    enrich(&mut db, &feed, "Gives the penguin its sardine.");
    assert!(llmc_match(&fixture, "walrus").is_empty());
    assert_eq!(
        llmc_match(&fixture, "penguin"),
        vec![rowid_of(&fixture, &feed)]
    );
    assert!(search(&db, "walrus").is_empty());
    assert_eq!(symbols(&search(&db, "sardine")), ["feed"]);
    enrich(&mut db, &clean, "Hoses down the penguin pool.");
    check_in_step(&fixture);

    // The indexer moves a span (new line, new symbol): its rows follow.
    db.write_index_batch(
        &[file_record(
            "src/zoo.py",
            "python",
            &[("scrub", "def clean(): pass"), ("feed", "def feed(): pass")],
        )],
        &[],
    )
    .expect("reindex");
    check_in_step(&fixture);
    assert_eq!(symbols(&search(&db, "scrub")), ["scrub"]);

    // Removal: the span leaves the index (its enrichment is an orphan), then the orphan goes.
    db.write_index_batch(
        &[file_record(
            "src/zoo.py",
            "python",
            &[("scrub", "def clean(): pass")],
        )],
        &[],
    )
    .expect("reindex without feed");
    assert!(llmc_match(&fixture, "sardine").is_empty());
    assert!(search(&db, "sardine").is_empty());
    check_in_step(&fixture);
    db.remove_orphans().expect("orphans");
    check_in_step(&fixture);

    // A function moved to another file keeps its enrichment, and its rows name the new path.
    db.write_index_batch(
        &[file_record(
            "src/other.py",
            "python",
            &[("feed", "def feed(): pass")],
        )],
        &[],
    )
    .expect("index other");
    check_in_step(&fixture);
    db.write_index_batch(&[], &["src/zoo.py".to_owned()])
        .expect("remove zoo");
    check_in_step(&fixture);
    assert!(search(&db, "penguin").is_empty(), "clean went with zoo.py");
}

#[test]
fn the_migration_indexes_what_is_stored_and_later_opens_catch_up_with_llmc() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("lib.py", "python", "def a(): 1\ndef b(): 2\n");
    let conn = fixture.raw();
    // LLMC stored an enrichment before enrich ever opened the file.
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary, inputs, outputs, side_effects, pitfalls)
         VALUES (?1, 'Parses the manifest.', '[\"path to the manifest\"]', '[]', '[]', '[]')",
        [&hashes[0]],
    )
    .expect("LLMC's enrichment");
    let mut db = fixture.db();
    assert_eq!(symbols(&search(&db, "manifest")), ["name_1"]);
    assert!(!db.search_index_needs_sync().expect("check"));
    assert_eq!(db.sync_search_index().expect("sync"), SearchSync::Current);

    // LLMC stores another one while enrich is not looking (no triggers on its connection).
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary) VALUES (?1, 'Writes the lockfile.')",
        [&hashes[1]],
    )
    .expect("LLMC's second enrichment");
    assert!(search(&db, "lockfile").is_empty());
    assert!(db.search_index_needs_sync().expect("check"));
    assert_eq!(
        db.sync_search_index().expect("sync"),
        SearchSync::CaughtUp(1)
    );
    assert_eq!(symbols(&search(&db, "lockfile")), ["name_2"]);

    // A search table someone dropped is built again by the next read-write open.
    drop(db);
    conn.execute_batch("DROP TABLE enrich_search")
        .expect("drop");
    let db = fixture.db();
    assert_eq!(symbols(&search(&db, "lockfile")), ["name_2"]);
    assert_eq!(symbols(&search(&db, "manifest")), ["name_1"]);
}

#[test]
fn llmc_keeps_writing_and_rebuilding_its_table_beside_enrich() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("lib.py", "python", "def a(): 1\ndef b(): 2\n");
    let mut db = fixture.db();
    enrich(&mut db, &hashes[0], "Sorts the otters.");
    let llmc = fixture.raw();
    // LLMC's rebuild on open, and its own store, with an enrich connection open beside it.
    llmc.execute_batch(
        "DELETE FROM enrichments_fts;
         INSERT INTO enrichments_fts(rowid, symbol, summary, path, start_line, end_line)
         SELECT e.rowid, s.symbol, e.summary, f.path, s.start_line, s.end_line
         FROM enrichments e JOIN spans s ON s.span_hash = e.span_hash
         JOIN files f ON f.id = s.file_id;",
    )
    .expect("LLMC's rebuild");
    llmc.execute(
        "INSERT OR REPLACE INTO enrichments (span_hash, summary) VALUES (?1, 'Feeds the otters.')",
        [&hashes[1]],
    )
    .expect("LLMC's store");
    assert_eq!(
        llmc_match(&fixture, "otters").len(),
        1,
        "LLMC's rows, as LLMC left them"
    );
    // Nothing enrich put in the file fires on LLMC's connection: with enrich's table gone,
    // LLMC still writes.
    drop(db);
    llmc.execute_batch("DROP TABLE enrich_search")
        .expect("drop");
    llmc.execute("DELETE FROM enrichments WHERE span_hash = ?1", [&hashes[0]])
        .expect("LLMC deletes");
    let triggers: i64 = llmc
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'enrich_fts%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        triggers, 0,
        "the triggers are TEMP, on enrich's connections only"
    );
}

#[test]
fn an_older_llmc_table_of_another_shape_is_left_alone() {
    let fixture = Fixture::llmc();
    fixture
        .raw()
        .execute_batch(
            "DROP TABLE enrichments_fts;
             CREATE VIRTUAL TABLE enrichments_fts USING fts5(symbol, summary);",
        )
        .expect("old LLMC table");
    let hashes = fixture.index_file("lib.py", "python", "def a(): 1\n");
    let mut db = fixture.db();
    enrich(&mut db, &hashes[0], "Sorts the otters.");
    assert_eq!(symbols(&search(&db, "otters")), ["name_1"]);
    let rows: i64 = fixture
        .raw()
        .query_row("SELECT count(*) FROM enrichments_fts", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0);
}

/// An index of three spans whose words are placed to test the ranking.
fn ranking_fixture() -> (Fixture, Db) {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    db.write_index_batch(
        &[
            file_record(
                "src/cache.rs",
                "rust",
                &[
                    ("evict_oldest", "fn evict_oldest() {}"),
                    ("Cache::get", "fn get() {}"),
                ],
            ),
            file_record("lib/store.py", "python", &[("flush", "def flush(): pass")]),
        ],
        &[],
    )
    .expect("index");
    enrich(
        &mut db,
        &hash_of("rust", "fn evict_oldest() {}"),
        "Drops the least recently used entry when the cache is full.",
    );
    enrich(
        &mut db,
        &hash_of("rust", "fn get() {}"),
        "Looks a key up and may evict nothing; returns the cached value.",
    );
    enrich(
        &mut db,
        &hash_of("python", "def flush(): pass"),
        "Writes pending entries to disk so a crash loses nothing.",
    );
    (fixture, db)
}

#[test]
fn a_summary_word_finds_its_span_and_a_symbol_match_outranks_a_summary_match() {
    let (_fixture, db) = ranking_fixture();
    // Only in a summary.
    let hits = search(&db, "crash");
    assert_eq!(symbols(&hits), ["flush"]);
    assert_eq!(hits[0].path, "lib/store.py");
    assert_eq!((hits[0].start_line, hits[0].end_line), (1, 1));
    assert_eq!(hits[0].language, "python");
    assert_eq!(hits[0].rank, 1);
    assert!(hits[0].excerpt.contains("**crash**"), "{}", hits[0].excerpt);
    // `evict` is the symbol of one span and a summary word of another.
    let hits = search(&db, "evict");
    assert_eq!(symbols(&hits), ["evict_oldest", "Cache::get"]);
    assert!(hits[0].score > hits[1].score, "{hits:?}");
    assert_eq!(hits.iter().map(|h| h.rank).collect::<Vec<_>>(), [1, 2]);
    // Any word matches; more words matched rank higher.
    let hits = search(&db, "cache crash");
    assert_eq!(hits.len(), 3, "{hits:?}");
    // Inputs and pitfalls are searched too (the fixture's enrichment has them).
    assert_eq!(search(&db, "overflows").len(), 3);
    // A prefix.
    assert_eq!(symbols(&search(&db, "recent*")), ["evict_oldest"]);
    // The limit.
    let limited = db
        .search(&SearchQuery {
            limit: 1,
            ..SearchQuery::words("nothing")
        })
        .expect("search");
    assert_eq!(limited.len(), 1);
}

#[test]
fn path_and_language_filters_narrow_the_hits() {
    let (_fixture, db) = ranking_fixture();
    let query = |path: Option<&str>, language: Option<&str>| {
        let hits = db
            .search(&SearchQuery {
                path: path.map(str::to_owned),
                language: language.map(str::to_owned),
                ..SearchQuery::words("cache nothing")
            })
            .expect("search");
        let mut found: Vec<String> = hits.into_iter().map(|h| h.symbol).collect();
        found.sort();
        found
    };
    assert_eq!(query(None, None), ["Cache::get", "evict_oldest", "flush"]);
    assert_eq!(query(Some("src/*"), None), ["Cache::get", "evict_oldest"]);
    assert_eq!(query(Some("*.py"), None), ["flush"]);
    assert_eq!(query(None, Some("Python")), ["flush"]);
    assert_eq!(query(Some("src/*"), Some("python")), Vec::<String>::new());
}

#[test]
fn the_path_glob_reads_like_export_s_star_stays_in_a_directory() {
    let fixture = Fixture::llmc();
    let mut db = fixture.db();
    let places = [
        ("src/cache.rs", "fn top() {}", "top"),
        ("src/store/disk.rs", "fn deep() {}", "deep"),
        ("lib/cache.py", "def lib(): pass", "lib"),
    ];
    let records: Vec<_> = places
        .iter()
        .map(|(path, source, symbol)| {
            let lang = if path.ends_with(".py") {
                "python"
            } else {
                "rust"
            };
            file_record(path, lang, &[(*symbol, *source)])
        })
        .collect();
    db.write_index_batch(&records, &[]).expect("index");
    for (path, source, _) in places {
        let lang = if path.ends_with(".py") {
            "python"
        } else {
            "rust"
        };
        enrich(
            &mut db,
            &hash_of(lang, source),
            "Keeps the cache of entries on disk.",
        );
    }
    let search = |glob: &str, limit: u32| -> Vec<String> {
        let hits = db
            .search(&SearchQuery {
                path: Some(glob.to_owned()),
                limit,
                ..SearchQuery::words("cache")
            })
            .expect("search");
        let mut found: Vec<String> = hits.into_iter().map(|h| h.symbol).collect();
        found.sort();
        found
    };
    // `*` does not cross `/` (SQLite's GLOB would also take src/store/disk.rs).
    assert_eq!(search("src/*", 10), ["top"]);
    assert_eq!(search("src/*.rs", 10), ["top"]);
    // `**` does.
    assert_eq!(search("src/**", 10), ["deep", "top"]);
    assert_eq!(search("src/**/*.rs", 10), ["deep", "top"]);
    // Without `/`, the file name at any depth; a leading `/` anchors at the root.
    assert_eq!(search("*.rs", 10), ["deep", "top"]);
    assert_eq!(search("cache.*", 10), ["lib", "top"]);
    assert_eq!(search("/cache.rs", 10), Vec::<String>::new());
    assert_eq!(search("nothing/**", 10), Vec::<String>::new());
    // The filter is applied before the limit, in SQL: the limit counts matching spans.
    assert_eq!(search("src/**", 1).len(), 1);
    assert_eq!(search("lib/*", 1), ["lib"]);
    // A glob that does not compile says so.
    match db.search(&SearchQuery {
        path: Some("src/[".to_owned()),
        ..SearchQuery::words("cache")
    }) {
        Err(DbError::BadPathGlob { glob, reason }) => {
            assert_eq!(glob, "src/[");
            assert!(reason.contains("is not a valid glob"), "{reason}");
        }
        other => panic!("expected BadPathGlob, got {other:?}"),
    }
}

#[test]
fn plain_words_never_fail_and_bad_fts5_syntax_is_explained() {
    let (_fixture, db) = ranking_fixture();
    for words in [
        "foo-bar",
        "a.b",
        "\"",
        "say \"hi",
        "(evict",
        "AND",
        "NOT evict",
        "symbol:evict",
        "*",
        "-",
        "evict*)",
        "NEAR(a b)",
        "^start",
        "",
    ] {
        db.search(&SearchQuery::words(words))
            .unwrap_or_else(|e| panic!("{words:?}: {e}"));
    }
    assert_eq!(symbols(&search(&db, "evict_oldest")), ["evict_oldest"]);
    assert_eq!(symbols(&search(&db, "least-recently")), ["evict_oldest"]);

    let fts = |text: &str| {
        db.search(&SearchQuery {
            syntax: QuerySyntax::Fts5,
            ..SearchQuery::words(text)
        })
    };
    assert_eq!(
        symbols(&fts("symbol:evict").expect("column filter")),
        ["evict_oldest"]
    );
    assert_eq!(
        symbols(&fts("cache NOT evict").expect("NOT")),
        Vec::<&str>::new()
    );
    assert_eq!(symbols(&fts("crash OR full").expect("OR")).len(), 2);
    for bad in [
        "\"unclosed",
        "evict AND",
        "(evict",
        "colour:red",
        "NEAR(evict",
    ] {
        match fts(bad) {
            Err(DbError::BadSearchQuery { query, reason }) => {
                assert_eq!(query, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let message = fts("evict AND").expect_err("bad").to_string();
    assert!(message.contains("not valid FTS5 syntax"), "{message}");

    // A pasted page is refused, not looked up word by word.
    let page = "word ".repeat(enrich_db::MAX_SEARCH_WORDS + 1);
    assert!(matches!(
        db.search(&SearchQuery::words(page)),
        Err(DbError::SearchQueryTooLong { words: 65, max: 64 })
    ));
    let most = "word ".repeat(enrich_db::MAX_SEARCH_WORDS);
    db.search(&SearchQuery::words(most)).expect("64 words");
}

#[test]
fn a_search_reads_the_committed_state_while_a_writer_holds_the_lock() {
    let (fixture, mut reader) = ranking_fixture();
    // The reader must not wait at all: any lock it needed would fail at once.
    reader.set_busy_timeout(Duration::ZERO).expect("timeout");
    let mut writer = fixture.db();
    let hash = hash_of("python", "def flush(): pass");
    let run = writer.start_run("fp").expect("run");
    // A batch in progress: the writer's transaction is open, its enrichment not committed.
    let raw_writer = fixture.raw();
    raw_writer
        .execute_batch("BEGIN IMMEDIATE")
        .expect("writer takes the lock");
    raw_writer
        .execute(
            "UPDATE enrichments SET summary = 'Renamed' WHERE span_hash = ?1",
            [&hash],
        )
        .expect("uncommitted write");
    assert_eq!(symbols(&search(&reader, "crash")), ["flush"]);
    raw_writer.execute_batch("ROLLBACK").expect("rollback");
    // The same through enrich's writer: committed, it is searchable at once.
    writer
        .write_batch(&[enriched(&hash, run, "Syncs the journal to the platter.")])
        .expect("write");
    assert_eq!(symbols(&search(&reader, "platter")), ["flush"]);
    assert!(search(&reader, "crash").is_empty());
}

#[test]
fn a_read_only_index_without_the_table_is_searched_from_a_temporary_one() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("lib.py", "python", "def a(): 1\n");
    fixture
        .raw()
        .execute(
            "INSERT INTO enrichments (span_hash, summary) VALUES (?1, 'Parses the manifest.')",
            [&hashes[0]],
        )
        .expect("LLMC's enrichment");
    let before = fixture.bytes();
    let options = OpenOptions {
        mode: OpenMode::ReadOnly,
        ..OpenOptions::default()
    };
    let db = Db::open_with(&fixture.db_path, &options).expect("read-only");
    assert!(db.search_index_needs_sync().expect("check"));
    assert_eq!(symbols(&search(&db, "manifest")), ["name_1"]);
    drop(db);
    assert_eq!(fixture.bytes(), before, "the file was not written");
}

#[test]
fn the_list_fields_are_searched_as_text() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("lib.py", "python", "def a(): 1\n");
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    let mut row = enrichment("Does a thing.");
    row.enrichment.side_effects = vec!["deletes the \u{e9}tag\u{e8}re".to_owned()];
    db.write_batch(&[enrich_db::SpanOutcome {
        stored: enrich_db::Stored::Enriched(Box::new(row)),
        ..enriched(&hashes[0], run, "unused")
    }])
    .expect("write");
    // Stored as a JSON array (`\u00e9`-free here, but the words come out of the array).
    assert_eq!(symbols(&search(&db, "etagere")), ["name_1"]);
    assert_eq!(
        symbols(&search(&db, "quoted")),
        ["name_1"],
        "a pitfall's word"
    );
}

#[test]
fn a_word_in_most_spans_is_left_out_when_rarer_words_find_something() {
    let fixture = Fixture::llmc();
    {
        let mut conn = fixture.raw();
        let tx = conn.transaction().expect("begin");
        tx.execute(
            "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES ('big.py', 'python', 'h', 1, 0)",
            [],
        )
        .expect("file");
        for n in 0..12_000 {
            let hash = format!("sha256:{n:064x}");
            tx.execute(
                "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start,
                    byte_end, span_hash) VALUES (1, ?1, 'function', ?2, ?2, 0, 1, ?3)",
                (format!("f{n}"), n + 1, &hash),
            )
            .expect("span");
            let summary = if n % 4000 == 7 {
                "Returns the walrus."
            } else {
                "Returns a value."
            };
            tx.execute(
                "INSERT INTO enrichments (span_hash, summary) VALUES (?1, ?2)",
                (&hash, summary),
            )
            .expect("enrichment");
        }
        tx.commit().expect("commit");
    }
    let db = fixture.db();
    // `returns` is in every span: ranking it would rank all 12,000; the rarer word decides.
    let hits = search(&db, "returns walrus");
    let mut found = symbols(&hits);
    found.sort_unstable();
    assert_eq!(found, ["f4007", "f7", "f8007"], "{hits:?}");
    // When the rarer words find nothing, the common word's hits are what there is.
    assert_eq!(search(&db, "returns zebra").len(), 10);
    assert_eq!(search(&db, "returns").len(), 10);
}
