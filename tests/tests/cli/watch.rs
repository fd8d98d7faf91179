//! `enrich watch` as a service: it follows the file system, re-indexes what is saved and
//! enriches it with no other command, leaves its own writes alone, and stops on a signal.
//!
//! Waits are deadlines on an observable state (rows in the index, a log line), never timed
//! assertions: a loaded machine only makes them slower.

use std::time::{Duration, Instant};

use super::support::{Running, Server, TestRepo, config};

/// The longest a change may take to be enriched before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it holds; fails the test after [`WAIT`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the span named `symbol` is indexed and enriched.
fn wait_for_enrichment(repo: &TestRepo, symbol: &str) {
    let sql = format!(
        "SELECT COUNT(*) FROM spans s JOIN enrichments e ON e.span_hash = s.span_hash
         WHERE s.symbol = '{symbol}'"
    );
    wait_until(&format!("the enrichment of {symbol}"), || {
        repo.count(&sql) == 1
    });
}

/// Saves `path` with one Python function named `symbol`, and waits until it is enriched.
fn save_function_and_wait(repo: &TestRepo, path: &str, symbol: &str) {
    std::fs::write(
        repo.root.join(path),
        format!("def {symbol}():\n    return 1\n"),
    )
    .unwrap_or_else(|e| panic!("write {path}: {e}"));
    wait_for_enrichment(repo, symbol);
}

/// Spans without an enrichment.
fn unenriched(repo: &TestRepo) -> i64 {
    repo.count(
        "SELECT COUNT(*) FROM spans s WHERE NOT EXISTS
            (SELECT 1 FROM enrichments e WHERE e.span_hash = s.span_hash)",
    )
}

/// A repository served by `server`, with the event log's directory in place, as after any
/// earlier run: the first run's creating it is then no change of the repository's.
fn watched_repo(server: &Server) -> TestRepo {
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    std::fs::create_dir_all(repo.root.join("logs")).expect("mkdir logs");
    repo
}

/// Starts `enrich watch ARGS` on `repo` and waits until its first pass has indexed and
/// enriched the repository.
fn start_watch(repo: &TestRepo, args: &[&str]) -> Running {
    let mut watch = repo.start(&[&["watch", "-v"], args].concat());
    watch.wait_for_stderr("span(s) enriched");
    assert_eq!(unenriched(repo), 0, "the first pass enriched everything");
    watch
}

/// The lines of the watch's own log (not the pipeline's) that follow the first pass's.
fn lines_after_first_pass(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("commands::watch") || line.contains("re-indexed"))
        .skip_while(|line| !line.contains("span(s) enriched"))
        .skip(1)
        .collect()
}

#[test]
fn a_saved_edit_is_enriched_and_a_deleted_files_spans_go_with_no_other_command() {
    let server = Server::healthy();
    let repo = watched_repo(&server);
    // Periodic passes are an hour apart: what happens below is the file watcher's doing.
    let watch = start_watch(&repo, &["--interval", "3600"]);
    let lib_spans = "SELECT COUNT(*) FROM spans s JOIN files f ON f.id = s.file_id
                     WHERE f.path = 'src/lib.rs'";
    let indexed = repo.count(lib_spans);

    // A real save: the file is rewritten with a new function.
    let lib = repo.root.join("src/lib.rs");
    let mut source = std::fs::read_to_string(&lib).expect("read src/lib.rs");
    source.push_str("\npub fn sub(a: i32, b: i32) -> i32 {\n    a - b\n}\n");
    std::fs::write(&lib, source).expect("save src/lib.rs");
    wait_for_enrichment(&repo, "sub");
    assert_eq!(repo.count(lib_spans), indexed + 1);
    assert_eq!(unenriched(&repo), 0);

    // An editor's save: a new file written beside it, then renamed over it.
    let geometry = repo.root.join("src/geometry.py");
    let mut source = std::fs::read_to_string(&geometry).expect("read src/geometry.py");
    source.push_str("\n\ndef cube(side):\n    return side ** 3\n");
    let swap = repo.root.join("src/.geometry.py.swp");
    std::fs::write(&swap, source).expect("write the editor's copy");
    std::fs::rename(&swap, &geometry).expect("rename it over src/geometry.py");
    wait_for_enrichment(&repo, "cube");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM files WHERE path LIKE '%.swp'"),
        0,
        "the editor's hidden copy was never indexed"
    );

    let guide: Vec<String> = {
        let conn = repo.raw();
        let mut stmt = conn
            .prepare(
                "SELECT s.span_hash FROM spans s JOIN files f ON f.id = s.file_id
                 WHERE f.path = 'docs/guide.md'",
            )
            .expect("prepare");
        stmt.query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("read")
    };
    assert!(!guide.is_empty(), "docs/guide.md was indexed");
    std::fs::remove_file(repo.root.join("docs/guide.md")).expect("delete docs/guide.md");
    wait_until("the deleted file's removal", || {
        repo.count("SELECT COUNT(*) FROM files WHERE path = 'docs/guide.md'") == 0
    });
    for hash in &guide {
        let left = repo.count(&format!(
            "SELECT (SELECT COUNT(*) FROM spans WHERE span_hash = '{hash}')
                  + (SELECT COUNT(*) FROM enrichments WHERE span_hash = '{hash}')"
        ));
        assert_eq!(left, 0, "span {hash} and its enrichment went");
    }

    watch.signal("INT");
    let ran = watch.finish();
    ran.expect_code(0);
    for line in [
        "re-indexed 1 file(s) (0 added, 1 changed, 0 removed): 1 span(s) added, 0 removed; 1 span(s) enriched, 0 failed",
        "re-indexed 1 file(s) (0 added, 0 changed, 1 removed)",
        "stopped",
    ] {
        assert!(ran.stderr.contains(line), "{line:?} in:\n{}", ran.stderr);
    }
}

#[test]
fn an_idle_watch_does_not_react_to_its_own_writes() {
    let server = Server::healthy();
    let repo = watched_repo(&server);
    let watch = start_watch(&repo, &["--interval", "3600", "--debounce-ms", "100"]);
    let runs = repo.count("SELECT COUNT(*) FROM enrich_runs");
    let generations = server.stats().generations();

    // The first pass wrote the index and the event log; a watch that followed its own writes
    // would re-index and run again within a debounce or two.
    std::thread::sleep(Duration::from_secs(3));
    watch.signal("INT");
    let ran = watch.finish();
    ran.expect_code(0);
    let after = lines_after_first_pass(&ran.stderr);
    assert!(
        after.iter().all(|line| line.contains("stopped")),
        "no pass after the first, idle or not: {after:#?}"
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_runs"), runs);
    assert_eq!(server.stats().generations(), generations);
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM files WHERE path LIKE 'logs/%' OR path LIKE '.llmc/%'"),
        0,
        "enrich's own files are not indexed"
    );
}

#[test]
fn with_poll_each_periodic_pass_reindexes_the_repository() {
    let server = Server::healthy();
    let repo = watched_repo(&server);
    let watch = start_watch(&repo, &["--poll", "--interval", "1"]);
    save_function_and_wait(&repo, "src/extra.py", "polled");
    watch.signal("TERM");
    let ran = watch.finish();
    ran.expect_code(0);
    let after = lines_after_first_pass(&ran.stderr);
    assert!(
        after
            .iter()
            .any(|line| line.contains("re-indexed") && line.contains("span(s) enriched")),
        "a periodic pass re-indexed and enriched: {after:#?}"
    );
    assert!(ran.stderr.contains("follow=false"), "{}", ran.stderr);
}

#[test]
fn watch_serves_several_repositories_until_sigterm() {
    let server = Server::healthy();
    let (first, second) = (TestRepo::new(), TestRepo::new());
    for repo in [&first, &second] {
        repo.write_config(&config(&[("fake", server.url())], ""));
    }
    let second_root = second.root.to_str().expect("utf-8 path");
    let first_root = first.root.to_str().expect("utf-8 path");

    let watch = first.start(&["watch", "--interval", "1", first_root, second_root]);
    for repo in [&first, &second] {
        wait_until("every span's enrichment", || {
            repo.count("SELECT COUNT(*) FROM enrichments") > 0 && unenriched(repo) == 0
        });
    }
    // Each repository's edits go to its own index.
    save_function_and_wait(&second, "src/more.py", "more");
    assert_eq!(
        first.count("SELECT COUNT(*) FROM spans WHERE symbol = 'more'"),
        0
    );
    watch.signal("TERM");
    let ran = watch.finish();
    ran.expect_code(0);
    assert!(ran.stderr.contains("stopped"), "{}", ran.stderr);
    for repo in [&first, &second] {
        assert_eq!(unenriched(repo), 0, "{}", ran.stderr);
    }
}

#[test]
fn a_configuration_edit_applies_from_the_next_pass() {
    let (first, second) = (Server::healthy(), Server::healthy());
    let repo = watched_repo(&first);
    let watch = start_watch(&repo, &["--interval", "3600"]);
    let served = first.stats().generations();
    assert!(served > 0, "the first pass used the first server");

    repo.write_config(&config(&[("other", second.url())], ""));
    save_function_and_wait(&repo, "src/later.py", "later");
    watch.signal("INT");
    watch.finish().expect_code(0);
    assert!(
        second.stats().generations() >= 1,
        "the new chain served the edit"
    );
    assert_eq!(first.stats().generations(), served, "the old one no more");
}

#[test]
fn a_save_the_index_rules_leave_out_stays_out() {
    let server = Server::healthy();
    let repo = watched_repo(&server);
    repo.write_config(&config(
        &[("fake", server.url())],
        "[enrichment.index]\nexclude = [\"fixtures/**\"]",
    ));
    std::fs::write(repo.root.join(".gitignore"), "build/\n").expect("write .gitignore");
    let watch = start_watch(&repo, &["--interval", "3600"]);
    let files = repo.count("SELECT COUNT(*) FROM files");

    // Saved first, so their changes are taken no later than the one waited for below.
    for (path, text) in [
        ("fixtures/generated.py", "def generated():\n    return 1\n"),
        ("build/out.py", "def built():\n    return 2\n"),
        ("certs/server.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
        (".hidden.py", "def hidden():\n    return 3\n"),
    ] {
        let full = repo.root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    save_function_and_wait(&repo, "src/kept.py", "kept");
    watch.signal("INT");
    watch.finish().expect_code(0);
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM files"),
        files + 1,
        "only src/kept.py came in"
    );
}
