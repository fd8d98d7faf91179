//! LLMC's schema on a fresh file, opening LLMC's files, version checks, enrich's migrations.

use std::collections::BTreeSet;
use std::fs;

use enrich_db::{
    Db, DbError, ENRICH_SCHEMA_VERSION, ENRICH_SCHEMA_VERSION_KEY, LLMC_SCHEMA_VERSION, OpenMode,
    OpenOptions, ReportFilter, SpanOutcome, UNKNOWN_CHAIN, default_db_path, migrations,
};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::support::{Fixture, LLMC_DDL, enriched, raw};

/// A column as `PRAGMA table_info` reports it: name, declared type, NOT NULL, default, pk index.
type Column = (&'static str, &'static str, bool, Option<&'static str>, u8);

/// LLMC's version 8 tables, column for column, written from LLMC's `database.py`.
const LLMC_TABLES: &[(&str, &[Column])] = &[
    (
        "files",
        &[
            ("id", "INTEGER", false, None, 1),
            ("path", "TEXT", true, None, 0),
            ("lang", "TEXT", true, None, 0),
            ("file_hash", "TEXT", true, None, 0),
            ("size", "INTEGER", true, None, 0),
            ("mtime", "REAL", true, None, 0),
            ("sidecar_path", "TEXT", false, None, 0),
        ],
    ),
    (
        "spans",
        &[
            ("id", "INTEGER", false, None, 1),
            ("file_id", "INTEGER", true, None, 0),
            ("symbol", "TEXT", true, None, 0),
            ("kind", "TEXT", true, None, 0),
            ("start_line", "INTEGER", true, None, 0),
            ("end_line", "INTEGER", true, None, 0),
            ("byte_start", "INTEGER", true, None, 0),
            ("byte_end", "INTEGER", true, None, 0),
            ("span_hash", "TEXT", true, None, 0),
            ("doc_hint", "TEXT", false, None, 0),
            (
                "created_at",
                "DATETIME",
                false,
                Some("CURRENT_TIMESTAMP"),
                0,
            ),
            ("slice_type", "TEXT", false, None, 0),
            ("slice_language", "TEXT", false, None, 0),
            ("classifier_confidence", "REAL", false, None, 0),
            ("classifier_version", "TEXT", false, None, 0),
            ("imports", "TEXT", false, None, 0),
        ],
    ),
    (
        "embeddings_meta",
        &[
            ("profile", "TEXT", true, Some("'default'"), 1),
            ("model", "TEXT", true, None, 2),
            ("dim", "INTEGER", true, None, 0),
            ("created_at", "DATETIME", true, None, 0),
        ],
    ),
    (
        "embeddings",
        &[
            ("span_hash", "TEXT", false, None, 1),
            ("vec", "BLOB", true, None, 0),
            ("route_name", "TEXT", false, None, 0),
            ("profile_name", "TEXT", false, None, 0),
        ],
    ),
    (
        "emb_code",
        &[
            ("span_hash", "TEXT", false, None, 1),
            ("vec", "BLOB", true, None, 0),
            ("route_name", "TEXT", false, None, 0),
            ("profile_name", "TEXT", false, None, 0),
        ],
    ),
    (
        "enrichments",
        &[
            ("span_hash", "TEXT", false, None, 1),
            ("summary", "TEXT", false, None, 0),
            ("tags", "TEXT", false, None, 0),
            ("evidence", "TEXT", false, None, 0),
            ("model", "TEXT", false, None, 0),
            ("created_at", "DATETIME", false, None, 0),
            ("schema_ver", "TEXT", false, None, 0),
            ("inputs", "TEXT", false, None, 0),
            ("outputs", "TEXT", false, None, 0),
            ("side_effects", "TEXT", false, None, 0),
            ("pitfalls", "TEXT", false, None, 0),
            ("usage_snippet", "TEXT", false, None, 0),
            ("content_type", "TEXT", false, None, 0),
            ("content_language", "TEXT", false, None, 0),
            ("content_type_confidence", "REAL", false, None, 0),
            ("content_type_source", "TEXT", false, None, 0),
            ("tokens_per_second", "REAL", false, None, 0),
            ("eval_count", "INTEGER", false, None, 0),
            ("eval_duration_ns", "INTEGER", false, None, 0),
            ("prompt_eval_count", "INTEGER", false, None, 0),
            ("total_duration_ns", "INTEGER", false, None, 0),
            ("backend_host", "TEXT", false, None, 0),
        ],
    ),
    (
        "file_descriptions",
        &[
            ("id", "INTEGER", false, None, 1),
            ("file_id", "INTEGER", true, None, 0),
            ("file_path", "TEXT", true, None, 0),
            ("description", "TEXT", false, None, 0),
            ("source", "TEXT", false, None, 0),
            ("updated_at", "DATETIME", false, None, 0),
            ("content_hash", "TEXT", false, None, 0),
            ("input_hash", "TEXT", false, None, 0),
        ],
    ),
    (
        "llmc_meta",
        &[
            ("key", "TEXT", false, None, 1),
            ("value", "TEXT", false, None, 0),
        ],
    ),
];

/// LLMC's explicit indexes and the ones SQLite makes for its UNIQUE / PRIMARY KEY constraints:
/// (table, index, unique, columns).
const LLMC_INDEXES: &[(&str, &str, bool, &str)] = &[
    ("files", "idx_files_path", false, "path"),
    ("files", "sqlite_autoindex_files_1", true, "path"),
    ("spans", "idx_spans_file_id", false, "file_id"),
    ("spans", "idx_spans_span_hash", false, "span_hash"),
    ("spans", "sqlite_autoindex_spans_1", true, "span_hash"),
    (
        "embeddings_meta",
        "sqlite_autoindex_embeddings_meta_1",
        true,
        "profile,model",
    ),
    (
        "embeddings",
        "sqlite_autoindex_embeddings_1",
        true,
        "span_hash",
    ),
    ("emb_code", "sqlite_autoindex_emb_code_1", true, "span_hash"),
    (
        "enrichments",
        "sqlite_autoindex_enrichments_1",
        true,
        "span_hash",
    ),
    (
        "file_descriptions",
        "idx_file_descriptions_file_path",
        false,
        "file_path",
    ),
    (
        "file_descriptions",
        "idx_file_descriptions_input_hash",
        false,
        "input_hash",
    ),
    (
        "file_descriptions",
        "sqlite_autoindex_file_descriptions_1",
        true,
        "file_path",
    ),
    ("llmc_meta", "sqlite_autoindex_llmc_meta_1", true, "key"),
];

/// LLMC's foreign keys: (table, column, parent table, parent column, on delete).
const LLMC_FOREIGN_KEYS: &[(&str, &str, &str, &str, &str)] = &[
    ("spans", "file_id", "files", "id", "CASCADE"),
    ("embeddings", "span_hash", "spans", "span_hash", "CASCADE"),
    ("emb_code", "span_hash", "spans", "span_hash", "CASCADE"),
    ("enrichments", "span_hash", "spans", "span_hash", "CASCADE"),
    ("file_descriptions", "file_id", "files", "id", "CASCADE"),
];

fn table_info(conn: &Connection, table: &str) -> Vec<(String, String, bool, Option<String>, u8)> {
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")
        .expect("table_info");
    stmt.query_map([table], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn indexes(conn: &Connection, table: &str) -> BTreeSet<(String, bool, String)> {
    let mut stmt = conn
        .prepare(
            "SELECT il.name, il.\"unique\", group_concat(ii.name, ',')
             FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) AS ii
             GROUP BY il.name ORDER BY il.name",
        )
        .expect("index_list");
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn foreign_keys(conn: &Connection, table: &str) -> Vec<(String, String, String, String)> {
    let mut stmt = conn
        .prepare("SELECT \"from\", \"table\", \"to\", on_delete FROM pragma_foreign_key_list(?1)")
        .expect("foreign_key_list");
    stmt.query_map([table], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// Asserts that the database at `conn` has LLMC's version 8 schema, column for column.
fn check_llmc_v8(conn: &Connection) {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 8);
    for (table, expected) in LLMC_TABLES {
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, t, nn, d, pk)| {
                (
                    (*n).to_owned(),
                    (*t).to_owned(),
                    *nn,
                    d.map(str::to_owned),
                    *pk,
                )
            })
            .collect();
        assert_eq!(table_info(conn, table), expected, "columns of {table}");
        let expected_indexes: BTreeSet<_> = LLMC_INDEXES
            .iter()
            .filter(|(t, ..)| t == table)
            .map(|(_, name, unique, cols)| ((*name).to_owned(), *unique, (*cols).to_owned()))
            .collect();
        // enrich's own indexes on LLMC's tables are named `enrich_…` and add no column.
        let llmc_indexes: BTreeSet<_> = indexes(conn, table)
            .into_iter()
            .filter(|(name, ..)| !name.starts_with("enrich_"))
            .collect();
        assert_eq!(llmc_indexes, expected_indexes, "indexes of {table}");
        let expected_fks: Vec<_> = LLMC_FOREIGN_KEYS
            .iter()
            .filter(|(t, ..)| t == table)
            .map(|(_, from, parent, to, on_delete)| {
                (
                    (*from).to_owned(),
                    (*parent).to_owned(),
                    (*to).to_owned(),
                    (*on_delete).to_owned(),
                )
            })
            .collect();
        assert_eq!(
            foreign_keys(conn, table),
            expected_fks,
            "foreign keys of {table}"
        );
    }
}

fn table_names(conn: &Connection) -> BTreeSet<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("tables");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn fresh_database_has_llmc_v8_schema_plus_enrich_tables_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = default_db_path(&dir.path().join("repo"));
    assert!(path.ends_with(".llmc/rag/index_v2.db"));
    let db = Db::open_or_create(&path).expect("create");
    drop(db);

    let conn = raw(&path);
    check_llmc_v8(&conn);
    assert!(
        indexes(&conn, "enrichments").contains(&(
            "enrich_enrichments_created_at".to_owned(),
            false,
            "created_at".to_owned()
        )),
        "`enrich export --since` has its index"
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let mut expected: BTreeSet<String> = LLMC_TABLES.iter().map(|(t, _)| (*t).to_owned()).collect();
    expected.extend(
        [
            "enrich_attempts",
            "enrich_failures",
            "enrich_runs",
            "enrich_file_weights",
            "enrich_span_order",
            "enrich_leases",
            "enrich_frontiers",
            "enrich_shared_spans",
            "enrich_quality",
            "enrich_provenance",
            "enrich_search",
            "enrich_search_config",
            "enrich_search_content",
            "enrich_search_data",
            "enrich_search_docsize",
            "enrich_search_idx",
            "enrich_batches",
            "enrich_batch_requests",
        ]
        .map(str::to_owned),
    );
    assert_eq!(table_names(&conn), expected);
    let stored: String = conn
        .query_row(
            "SELECT value FROM llmc_meta WHERE key = ?1",
            [ENRICH_SCHEMA_VERSION_KEY],
            |r| r.get(0),
        )
        .expect("enrich version");
    assert_eq!(stored, ENRICH_SCHEMA_VERSION.to_string());
}

#[test]
fn the_reference_llmc_ddl_is_what_the_test_expects() {
    // Guards the fixture: the raw LLMC script used by the other tests builds the same schema.
    let fixture = Fixture::llmc();
    check_llmc_v8(&fixture.raw());
}

#[test]
fn opening_an_llmc_index_adds_only_enrich_tables_and_leaves_llmc_tables_alone() {
    let fixture = Fixture::llmc();
    let llmc_sql = |conn: &Connection| -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master
                 WHERE sql IS NOT NULL AND name NOT LIKE 'enrich_%' ORDER BY name",
            )
            .expect("schema");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let before = llmc_sql(&fixture.raw());
    drop(fixture.db());
    drop(fixture.db()); // A second open finds nothing to migrate.
    let conn = fixture.raw();
    assert_eq!(llmc_sql(&conn), before);
    check_llmc_v8(&conn);
    assert!(table_names(&conn).contains("enrich_failures"));
}

#[test]
fn open_existing_never_creates_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("index_v2.db");
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let options = OpenOptions {
            mode,
            ..OpenOptions::default()
        };
        let err = Db::open_with(&path, &options).expect_err("missing file");
        assert!(matches!(err, DbError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("index_v2.db"), "{err}");
    }
    assert!(!dir.path().join("nested").exists());
}

/// Opens an index prepared by `setup` in every mode, expects `expected`, and checks the file
/// was not modified.
fn check_refused(setup: &str, expected: fn(&DbError) -> bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index_v2.db");
    raw(&path).execute_batch(setup).expect("setup");
    let before = fs::read(&path).expect("read");
    for mode in [
        OpenMode::Existing,
        OpenMode::CreateIfMissing,
        OpenMode::ReadOnly,
    ] {
        let options = OpenOptions {
            mode,
            ..OpenOptions::default()
        };
        let err = Db::open_with(&path, &options).expect_err(setup);
        assert!(expected(&err), "{mode:?} on {setup:?}: {err}");
        assert!(err.to_string().contains("index_v2.db"), "{err}");
        assert_eq!(
            fs::read(&path).expect("read"),
            before,
            "{mode:?} changed {setup:?}"
        );
    }
}

#[test]
fn indexes_of_other_versions_or_other_apps_are_refused_untouched() {
    let v7 = LLMC_DDL.replace("PRAGMA user_version = 8", "PRAGMA user_version = 7");
    check_refused(&v7, |e| {
        matches!(e, DbError::LlmcSchemaTooOld { found: 7, .. }) && e.to_string().contains("LLMC")
    });
    let v9 = LLMC_DDL.replace("PRAGMA user_version = 8", "PRAGMA user_version = 9");
    check_refused(&v9, |e| {
        matches!(e, DbError::LlmcSchemaTooNew { found: 9, .. })
    });
    let unversioned = LLMC_DDL.replace("PRAGMA user_version = 8;", "");
    check_refused(
        &unversioned,
        |e| matches!(e, DbError::NotAnIndex { reason, .. } if reason.contains("no schema version")),
    );
    check_refused(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        |e| matches!(e, DbError::NotAnIndex { .. }),
    );
    let without_metrics = LLMC_DDL.replace("backend_host TEXT,\n", "");
    check_refused(&without_metrics, |e| {
        matches!(
            e,
            DbError::MissingColumn {
                table: "enrichments",
                column: "backend_host",
                ..
            }
        )
    });
}

#[test]
fn an_enrich_schema_newer_than_this_build_is_refused_untouched() {
    let fixture = Fixture::llmc();
    fixture
        .raw()
        .execute(
            "INSERT INTO llmc_meta (key, value) VALUES (?1, '99')",
            [ENRICH_SCHEMA_VERSION_KEY],
        )
        .expect("future version");
    let before = fixture.bytes();
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let options = OpenOptions {
            mode,
            ..OpenOptions::default()
        };
        let err = Db::open_with(&fixture.db_path, &options).expect_err("too new");
        assert!(
            matches!(err, DbError::EnrichSchemaTooNew { found: 99, supported, .. } if supported == ENRICH_SCHEMA_VERSION),
            "{err}"
        );
    }
    assert_eq!(fixture.bytes(), before);
    assert!(!table_names(&fixture.raw()).contains("enrich_runs"));
}

#[test]
fn read_only_open_of_a_pristine_llmc_index_reports_without_writing() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/a.py", "python", &crate::support::python_lines(3));
    let before = fixture.bytes();

    let mut db = Db::open_read_only(&fixture.db_path).expect("read-only");
    assert!(db.is_read_only());
    let stats = db.stats().expect("stats");
    assert_eq!((stats.spans, stats.pending, stats.dead_lettered), (3, 3, 0));
    assert_eq!(db.pending_spans(0, 10).expect("pending").len(), 3);
    assert!(
        db.attempts_for_span(&hashes[0])
            .expect("attempts")
            .is_empty()
    );
    let err = db.start_run("fp").expect_err("read-only");
    assert!(matches!(err, DbError::ReadOnly { .. }), "{err}");
    drop(db);

    assert_eq!(fixture.bytes(), before);
    assert!(!table_names(&fixture.raw()).contains("enrich_runs"));
}

#[test]
fn attempts_logged_before_the_chain_column_report_an_unknown_chain_after_the_upgrade() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/a.py", "python", &crate::support::python_lines(2));
    // The database as a build with migrations 1 to 8 left it, with one run's attempts.
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    db.write_batch(&[enriched(&hashes[0], run, "old")])
        .expect("write");
    drop(db);
    let conn = fixture.raw();
    conn.execute_batch(
        "ALTER TABLE enrich_attempts DROP COLUMN chain;
         DROP TABLE enrich_provenance;
         DROP TABLE enrich_search;
         DROP TABLE enrich_batches;
         DROP TABLE enrich_batch_requests;
         UPDATE llmc_meta SET value = '8' WHERE key = 'enrich_schema_version';",
    )
    .expect("back to version 8");
    drop(conn);

    let mut db = fixture.db();
    let later = db.start_run("fp").expect("run");
    db.write_batch(&[SpanOutcome {
        chain: Some("docs".to_owned()),
        ..enriched(&hashes[1], later, "new")
    }])
    .expect("write");
    let groups = db
        .quality_groups(&ReportFilter::default(), |_| Vec::new())
        .expect("report");
    let keys: Vec<(&str, &str, u64)> = groups
        .iter()
        .map(|g| (g.key.chain.as_str(), g.key.backend.as_str(), g.attempts))
        .collect();
    // Each run made a failed attempt on backend-1 and a successful one on backend-2.
    assert_eq!(
        keys,
        [
            ("docs", "backend-1", 1),
            ("docs", "backend-2", 1),
            (UNKNOWN_CHAIN, "backend-1", 1),
            (UNKNOWN_CHAIN, "backend-2", 1),
        ]
    );
    let stored: Option<String> = fixture
        .raw()
        .query_row(
            "SELECT chain FROM enrich_attempts WHERE run_id = ?1 AND attempt = 1",
            [run.0],
            |r| r.get(0),
        )
        .expect("old attempt");
    assert_eq!(stored, None);
    // The attempt log as `enrich show` reads it names each attempt's chain, when known.
    let chains = |hash: &str| -> Vec<Option<String>> {
        db.attempts_for_span(hash)
            .expect("attempts")
            .into_iter()
            .map(|a| a.chain)
            .collect()
    };
    assert_eq!(
        chains(&hashes[1]),
        [Some("docs".to_owned()), Some("docs".to_owned())]
    );
    assert_eq!(chains(&hashes[0]), [None, None]);
}

#[test]
fn migrations_are_append_only() {
    // Each released migration's SQL is pinned: change nothing, append a new migration instead.
    const PINNED: &[(u32, &str)] = &[
        (
            1,
            "acc8ab42c320462dc26ddda4daa64463d22bbd08c6545d56a6b79b313df5ab97",
        ),
        (
            2,
            "99071364c0a192003c368e500ac444cadff6dba3cd0c003092323c91e20a4f18",
        ),
        (
            3,
            "703430e31c4e3c8571dc79025d7d8bcd41919c6939a6a633ca521662ddf1315d",
        ),
        (
            4,
            "ea3e0eaa296d4520a8cee928aef6edcc77d3b4397dc4b2073da9e5027dc89034",
        ),
        (
            5,
            "14516117a47c2ac8a25969fb67f5d03bb2538287ddfff38450daab9540f51bb4",
        ),
        (
            6,
            "81a0ef86311da23e4e321b2626d19360d31190eba075ebd9eb812e5fa63394d2",
        ),
        (
            7,
            "3078d610c097eba563e00258d47f70c25e30dd1d6e8f491bd11b8e210123a5d1",
        ),
        (
            8,
            "6a0b038765bafee03662cf1a9a8fb16e334af1a7e562f1cbb14a96994c76dff2",
        ),
        (
            9,
            "67ea1591356845559fa4d849b38d59256337b8fc508cc4e38b1963ca45c7ee91",
        ),
        (
            10,
            "6948de32d21f51c0d251013a4b05044af8accc9b03ed3ef22c2ba9956240a55a",
        ),
        (
            11,
            "807fc2bfbe3d4409d5c40fa3f05125a315e4bd8be9659a0c85dc196faf17c395",
        ),
        (
            12,
            "282df55dee63c7c81bcacdabb7e23cc48314ef2281d617fbf30faef0276611b5",
        ),
        (
            13,
            "1c0ff91334906f9d24cf07ff68935b1253e5d7441bafeed65ea5e9efc8f2247e",
        ),
    ];
    let all = migrations();
    assert_eq!(
        all.len(),
        PINNED.len(),
        "a new migration needs its hash pinned here"
    );
    for (migration, (version, hash)) in all.iter().zip(PINNED) {
        assert_eq!(
            migration.version, *version,
            "versions count up from 1 without gaps"
        );
        let digest = Sha256::digest(migration.sql.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, *hash,
            "migration {} ({}) changed",
            migration.version, migration.name
        );
    }
    assert_eq!(
        ENRICH_SCHEMA_VERSION,
        all.last().expect("migrations").version
    );
    assert_eq!(LLMC_SCHEMA_VERSION, 8);
}
