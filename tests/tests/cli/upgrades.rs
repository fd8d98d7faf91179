//! Upgrades are invisible: an index whose enrich tables an older enrich wrote is migrated by
//! any command when the file is writable, and read as it is when it is not.

use enrich_db::{ENRICH_SCHEMA_VERSION, ENRICH_SCHEMA_VERSION_KEY, migrations};

use super::damaged::{Snapshot, chmod, enrich_unprivileged, open_to_every_user};
use super::support::{Server, TestRepo, config};

/// The older versions tried: the first, those right before and after each step that adds a
/// column to an existing table, and the one before this build's.
fn older_versions() -> Vec<u32> {
    let mut versions: Vec<u32> = migrations()
        .iter()
        .filter(|m| m.sql.contains("ADD COLUMN"))
        .flat_map(|m| [m.version - 1, m.version])
        .filter(|v| (1..ENRICH_SCHEMA_VERSION).contains(v))
        .chain([1, ENRICH_SCHEMA_VERSION - 1])
        .collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

/// A repository whose index LLMC built and LLMC enriched one span of (summary `Reads the
/// numbers.`), with enrich's tables as a build of schema `version` left them, one finished run
/// in them.
fn repo_at_version(server: &Server, version: u32) -> TestRepo {
    let repo = TestRepo::llmc();
    repo.write_config(&config(&[("fake", server.url())], ""));
    let conn = repo.raw();
    for migration in migrations().iter().filter(|m| m.version <= version) {
        conn.execute_batch(migration.sql).expect("migration");
    }
    conn.execute(
        "INSERT INTO llmc_meta (key, value) VALUES (?1, ?2)",
        (ENRICH_SCHEMA_VERSION_KEY, version.to_string()),
    )
    .expect("version");
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary, model, created_at)
         VALUES (?1, 'Reads the numbers.', 'old-model', 1700000000)",
        [&repo.spans[0].hash],
    )
    .expect("LLMC's enrichment");
    conn.execute(
        "INSERT INTO enrich_runs (started_at_ms, finished_at_ms, status, config_fingerprint,
             attempted, succeeded) VALUES (1700000000000, 1700000001000, 'completed', 'fp', 1, 1)",
        [],
    )
    .expect("a run");
    repo
}

fn stored_version(repo: &TestRepo) -> String {
    repo.raw()
        .query_row(
            "SELECT value FROM llmc_meta WHERE key = ?1",
            [ENRICH_SCHEMA_VERSION_KEY],
            |r| r.get(0),
        )
        .expect("enrich's version")
}

#[test]
fn every_reading_command_migrates_an_older_index_it_may_write() {
    let server = Server::healthy();
    for version in older_versions() {
        let hash = TestRepo::llmc().spans[0].hash.clone();
        let commands: [Vec<&str>; 6] = [
            vec!["status"],
            vec!["show", &hash],
            vec!["failures"],
            vec!["quality"],
            vec!["plan"],
            vec!["doctor"],
        ];
        for args in commands {
            let repo = repo_at_version(&server, version);
            let what = format!("`{}` on version {version}", args.join(" "));
            let ran = repo.enrich(&args);
            assert_eq!(ran.code, Some(0), "{what}: {}{}", ran.stdout, ran.stderr);
            assert_eq!(
                stored_version(&repo),
                ENRICH_SCHEMA_VERSION.to_string(),
                "{what}"
            );
        }
    }
    assert_eq!(server.stats().generations(), 0, "no span is sent");
}

#[test]
fn status_and_show_read_an_older_index_this_user_may_not_write_and_leave_it_as_it_was() {
    let server = Server::healthy();
    for version in older_versions() {
        for read_only_directory in [false, true] {
            let repo = repo_at_version(&server, version);
            let hash = repo.spans[0].hash.clone();
            let rag = open_to_every_user(&repo).to_path_buf();
            let (locked, mode) = if read_only_directory {
                (rag.as_path(), 0o555)
            } else {
                (repo.db.as_path(), 0o444)
            };
            chmod(locked, mode);
            let before = Snapshot::of(&repo);
            let what = |args: &str| {
                format!(
                    "`{args}` on version {version} (read-only directory: {read_only_directory})"
                )
            };

            let status = enrich_unprivileged(&repo, &["--json", "status"]);
            assert_eq!(
                status.code,
                Some(0),
                "{}: {}",
                what("status"),
                status.stderr
            );
            let status = status.json();
            assert_eq!(status["enriched"], 1, "{}: {status}", what("status"));
            assert_eq!(status["last_run"]["status"], "completed", "{status}");

            let shown = enrich_unprivileged(&repo, &["show", &hash]);
            assert_eq!(shown.code, Some(0), "{}: {}", what("show"), shown.stderr);
            assert!(
                shown.stdout.contains("Reads the numbers."),
                "{}",
                shown.stdout
            );

            before.check_unchanged(&repo, &what("status and show"));
            chmod(locked, if read_only_directory { 0o777 } else { 0o666 });
            assert_eq!(stored_version(&repo), version.to_string());
        }
    }
}
